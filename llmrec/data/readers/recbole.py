"""RecBole atomic files: `NAME.inter` and `NAME.item`, tab-separated, typed headers like `rating:float`.

See RecBole's "Atomic Files" documentation. Only the fields llmrec uses are read; the item file is required
because an LLM recommender needs item text.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from llmrec.data.schema import RawDataset, split_list
from llmrec.data.skips import SkipLog
from llmrec.data.tabular import Column, read_delimited
from llmrec.errors import DataError, LlmrecError

# Canonical item field -> RecBole field names seen across its dataset collection.
ITEM_ALIASES = {
    "title": ("movie_title", "title", "item_name", "name"),
    "year": ("release_year", "year"),
    "categories": ("class", "genre", "genres", "categories", "category"),
    "description": ("description", "desc"),
}
_KIND = {"token": "str", "token_seq": "str", "float": "float", "float_seq": "str"}


def _header(path: Path, encoding: str) -> dict[str, tuple[int, str]]:
    """`user_id:token<TAB>rating:float` -> {"user_id": (0, "token"), "rating": (1, "float")}."""
    try:
        with open(path, encoding=encoding) as f:
            first = f.readline().rstrip("\r\n")
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except UnicodeDecodeError:
        raise DataError(path, f"header is not valid {encoding}", line=1) from None
    if not first:
        raise DataError(path, "empty file (expected a typed header like 'user_id:token')", line=1)
    fields = {}
    for i, spec in enumerate(first.split("\t")):
        name, sep, kind = spec.partition(":")
        if not sep or kind not in _KIND:
            raise DataError(path, f"header field {spec!r} is not NAME:TYPE (types: {', '.join(_KIND)})", line=1)
        fields[name] = (i, kind)
    return fields


def _find(folder: Path, suffix: str) -> Path | None:
    found = sorted(folder.glob(f"*{suffix}"))
    if len(found) > 1:
        raise LlmrecError(f"{folder}: several {suffix} files ({', '.join(f.name for f in found)}); pass one file")
    return found[0] if found else None


def read_recbole(path: Path, *, encoding: str | None, on_bad_lines: str, skips: SkipLog) -> RawDataset:
    """Read `path` (a folder with one `.inter` file, or the `.inter` file itself) and its `.item` file."""
    inter = path if path.is_file() else _find(path, ".inter")
    if inter is None:
        raise LlmrecError(f"{path}: no .inter file")
    item = inter.with_suffix(".item")
    if not item.exists():
        raise DataError(item, "missing item file: llmrec needs item titles (NAME.item beside NAME.inter)")
    encoding = encoding or "utf-8"

    fields = _header(inter, encoding)
    for required in ("user_id", "item_id"):
        if required not in fields:
            raise DataError(inter, f"header has no '{required}' field", line=1)
    columns = [Column("user_id", fields["user_id"][0]), Column("item_id", fields["item_id"][0])]
    if "rating" in fields:
        columns.append(Column("rating", fields["rating"][0], "float"))
    if "timestamp" in fields:
        columns.append(Column("timestamp", fields["timestamp"][0], "timestamp"))
    common = dict(delimiter="\t", header_lines=1, encoding=encoding, on_bad_lines=on_bad_lines, skips=skips)
    interactions = read_delimited(inter, columns, n_fields=len(fields), **common)

    ifields = _header(item, encoding)
    if "item_id" not in ifields:
        raise DataError(item, "header has no 'item_id' field", line=1)
    chosen = {canon: next((a for a in aliases if a in ifields), None) for canon, aliases in ITEM_ALIASES.items()}
    if chosen["title"] is None:
        raise DataError(item, f"header has no title field (one of {', '.join(ITEM_ALIASES['title'])})", line=1)
    icols = [Column("item_id", ifields["item_id"][0])]
    # The year is parsed, so validated: a malformed one is stored as missing and counted under its own name.
    icols += [
        Column(c, ifields[src][0], "year" if c == "year" else "str", required=c == "title", label=src)
        for c, src in chosen.items()
        if src
    ]
    raw = read_delimited(item, icols, n_fields=len(ifields), **common)
    items = {"item_id": raw["item_id"], "title": raw["title"]}
    if chosen["year"]:
        items["year"] = raw["year"]
    if chosen["categories"]:
        items["categories"] = split_list(raw["categories"], " ")
    if chosen["description"]:
        items["description"] = raw["description"]
    return RawDataset(interactions, pa.table(items), files=[inter, item], format="recbole")
