"""MovieLens as GroupLens ships it: ml-100k (`u.data`, `u.item`), ml-1m/10m (`::`-separated `.dat`),
and ml-latest / ml-20m / ml-25m (`ratings.csv`, `movies.csv`). See the README in each GroupLens zip.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from llmrec.data.schema import RawDataset, split_list, split_title_year
from llmrec.data.skips import SkipLog
from llmrec.data.tabular import Column, read_delimited
from llmrec.errors import DataError

# ml-100k's u.genre, in flag order; used when u.genre is absent.
ML100K_GENRES = (
    "unknown Action Adventure Animation Children's Comedy Crime Documentary Drama Fantasy Film-Noir "
    "Horror Musical Mystery Romance Sci-Fi Thriller War Western"
).split()


def read_movielens(folder: Path, *, encoding: str | None, on_bad_lines: str, skips: SkipLog) -> RawDataset:
    common = dict(on_bad_lines=on_bad_lines, skips=skips)
    rating_cols = [
        Column("user_id", 0, "id"),
        Column("item_id", 1, "id"),
        Column("rating", 2, "float"),
        Column("timestamp", 3, "timestamp"),
    ]
    if (folder / "u.data").exists():
        inter = read_delimited(folder / "u.data", rating_cols, n_fields=4, delimiter="\t", **common)
        return RawDataset(
            inter,
            _ml100k_items(folder, encoding or "latin-1", common),
            files=[folder / "u.data", folder / "u.item"],
            format="movielens",
        )
    if (folder / "ratings.dat").exists():
        inter = _read_double_colon(folder / "ratings.dat", rating_cols, 4, "utf-8", common)
        movies = _read_double_colon(
            folder / "movies.dat",
            [Column("item_id", 0, "id"), Column("title", 1), Column("genres", 2, required=False)],
            3,
            encoding,
            common,
        )
        return RawDataset(
            inter, _titled_items(movies), files=[folder / "ratings.dat", folder / "movies.dat"], format="movielens"
        )
    if (folder / "ratings.csv").exists():
        csv = dict(delimiter=",", header_lines=1, quote_char='"', **common)
        inter = read_delimited(folder / "ratings.csv", rating_cols, n_fields=4, **csv)
        movies = read_delimited(
            folder / "movies.csv",
            [Column("item_id", 0, "id"), Column("title", 1), Column("genres", 2, required=False)],
            n_fields=3,
            encoding=encoding or "utf-8",
            **csv,
        )
        return RawDataset(
            inter, _titled_items(movies), files=[folder / "ratings.csv", folder / "movies.csv"], format="movielens"
        )
    raise DataError(folder, "no MovieLens ratings file (u.data, ratings.dat or ratings.csv)")


def _ml100k_items(folder: Path, encoding: str, common: dict) -> pa.Table:
    """u.item: id|title|release date|video release date|IMDb URL|19 genre flags (latin-1).

    The release date and the genre flags are optional: a malformed one is stored as missing (no year from
    the date; no categories for the item) and counted, and the line is kept."""
    genres = _ml100k_genres(folder / "u.genre", encoding) if (folder / "u.genre").exists() else ML100K_GENRES
    flags = [Column(f"g{i}", 5 + i, "flag", required=False, label="genre_flags") for i in range(len(genres))]
    path = folder / "u.item"
    if not path.exists():
        raise DataError(path, "missing item file: llmrec needs item titles")
    released = Column("released", 2, "date", required=False, label="release_date")
    raw = read_delimited(
        path,
        [Column("item_id", 0, "id"), Column("title", 1), released, *flags],
        n_fields=5 + len(genres),
        delimiter="|",
        encoding=encoding,
        **common,
    )
    title, year = split_title_year(raw["title"])
    # Genre flags -> "Action|Comedy" -> list, without a Python loop over rows; unknown if any flag is.
    joined = pc.binary_join_element_wise(*[pc.if_else(raw[f"g{i}"], g, "") for i, g in enumerate(genres)], "|")
    known = functools.reduce(pc.and_, [pc.is_valid(raw[f"g{i}"]) for i in range(len(genres))])
    categories = split_list(joined, "|")
    categories = pc.if_else(known, categories, pa.nulls(len(categories), categories.type))
    released_year = pc.cast(pc.year(raw["released"]), pa.int32())
    return pa.table(
        {
            "item_id": raw["item_id"],
            "title": title,
            "year": pc.coalesce(year, released_year),
            "categories": categories,
        }
    )


def _ml100k_genres(path: Path, encoding: str) -> list[str]:
    """u.genre: `name|flag position` per line; the positions must count 0, 1, 2, ... as u.item's columns do."""
    try:
        lines = path.read_text(encoding=encoding).splitlines()
    except UnicodeDecodeError as e:
        raise DataError(path, f"not valid {encoding} ({e.reason}); pass --encoding") from None
    genres: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        name, sep, position = line.strip().partition("|")
        if not sep or not name or position != str(len(genres)):
            problem = f"expected 'name|{len(genres)}' (genres in flag order), got {line.strip()!r}"
            raise DataError(path, problem, line=number, field="genre")
        genres.append(name)
    if not genres:
        raise DataError(path, "no genres (expected 'name|0', 'name|1', ... per line)")
    return genres


def _read_double_colon(path: Path, columns, n_fields, encoding, common) -> pa.Table:
    """`::` is two characters, which Arrow's CSV reader cannot split on: swap it for a tab first.

    Titles never contain tabs or `::`, and line numbers are unchanged, so errors still point at the file.
    """
    try:
        data = path.read_bytes().replace(b"::", b"\t")
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    encoding = encoding or _utf8_or_latin1(data)
    return read_delimited(path, columns, n_fields=n_fields, delimiter="\t", encoding=encoding, data=data, **common)


def _utf8_or_latin1(data: bytes) -> str:
    """ml-1m's movies.dat is latin-1 and later releases are UTF-8; latin-1 decodes anything, so try UTF-8 first."""
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        return "latin-1"


def _titled_items(movies: pa.Table) -> pa.Table:
    title, year = split_title_year(movies["title"])
    genres = pc.replace_substring(movies["genres"], "(no genres listed)", "")
    return pa.table({"item_id": movies["item_id"], "title": title, "year": year, "categories": split_list(genres, "|")})
