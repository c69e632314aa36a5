"""Every reader on small fixture files: canonical tables out, clear errors for bad input."""

import pytest

from llmrec.data.readers import read_source
from llmrec.errors import DataError, LlmrecError

from conftest import write, write_jsonl


def test_recbole_atomic_files(recbole_dir, skips):
    raw = read_source(recbole_dir, skips=skips)
    assert raw.format == "recbole"
    assert raw.interactions.num_rows == 8
    assert raw.interactions.slice(0, 1).to_pylist() == [
        {"user_id": "u1", "item_id": "i1", "rating": 5.0, "timestamp": 100}
    ]
    items = {r["item_id"]: r for r in raw.items.to_pylist()}
    assert items["i1"]["title"] == "Toy Story" and items["i1"]["year"] == 1995
    assert items["i1"]["categories"] == ["Animation", "Comedy"]
    assert items["i3"]["year"] is None and items["i3"]["categories"] == []


def test_recbole_missing_item_file(recbole_dir, skips):
    (recbole_dir / "toy.item").unlink()
    with pytest.raises(DataError, match=r"toy\.item: missing item file"):
        read_source(recbole_dir, skips=skips)


def test_recbole_header_without_user_id(tmp_path, skips):
    write(tmp_path / "x.inter", "uid:token\titem_id:token\n1\t2\n")
    write(tmp_path / "x.item", "item_id:token\ttitle:token_seq\n2\tA\n")
    with pytest.raises(DataError, match=r"x\.inter:1: header has no 'user_id'"):
        read_source(tmp_path, skips=skips)


def test_ml100k_raw(tmp_path, skips):
    write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    flags = "|".join(["0"] * 19)
    genres_242 = "|".join("1" if g in (3, 5) else "0" for g in range(19))  # Animation, Comedy
    u_item = (
        f"242|Kolya (1996)|24-Jan-1997||http://x|{genres_242}\n302|Café Society (1995)|01-Jan-1995||http://y|{flags}\n"
    )
    write(tmp_path / "u.item", u_item.encode("latin-1"))
    raw = read_source(tmp_path, skips=skips)
    items = {r["item_id"]: r for r in raw.items.to_pylist()}
    assert items["242"] == {
        "item_id": "242",
        "title": "Kolya",
        "year": 1996,
        "categories": ["Animation", "Comedy"],
        "description": None,
    }
    assert items["302"]["title"] == "Café Society"
    assert raw.interactions["timestamp"].to_pylist() == [881250949, 891717742]


def test_ml1m_double_colon_files(tmp_path, skips):
    write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    write(
        tmp_path / "movies.dat",
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::Star Wars: Episode IV (1977)::Action|Sci-Fi\n",
    )
    raw = read_source(tmp_path, skips=skips)
    assert raw.interactions.to_pydict()["item_id"] == ["1193", "661"]
    items = {r["item_id"]: r for r in raw.items.to_pylist()}
    assert items["661"]["title"] == "Star Wars: Episode IV"
    assert items["661"]["categories"] == ["Action", "Sci-Fi"]


def test_ml1m_bad_rating_names_line(tmp_path, skips):
    write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::x::978302109\n")
    write(tmp_path / "movies.dat", "1193::A (1975)::Drama\n")
    with pytest.raises(DataError, match=r"ratings\.dat:2: field 'rating'"):
        read_source(tmp_path, skips=skips)


def test_ml_latest_csv_with_quoted_titles(tmp_path, skips):
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,3.5,964981247\n")
    write(
        tmp_path / "movies.csv",
        'movieId,title,genres\n1,"American President, The (1995)",Comedy|Drama|Romance\n'
        "2,Heat (1995),(no genres listed)\n",
    )
    raw = read_source(tmp_path, skips=skips)
    items = {r["item_id"]: r for r in raw.items.to_pylist()}
    assert items["1"]["title"] == "American President, The" and items["1"]["year"] == 1995
    assert items["2"]["categories"] == []
    assert raw.interactions["rating"].to_pylist() == [4.0, 3.5]


REVIEWS_2018 = [
    {"overall": 5.0, "reviewerID": "A1", "asin": "B1", "unixReviewTime": 1400000000, "style": {"Size:": "L"}},
    {"overall": 2.0, "reviewerID": "A2", "asin": "B2", "unixReviewTime": 1400000100},
]
META_2018 = [
    {"asin": "B1", "title": "Kettle", "category": ["Home", "Kitchen"], "description": ["Boils", "water."]},
    {"asin": "B2", "title": "Mug", "category": [], "description": "Holds tea."},
]


@pytest.mark.parametrize("suffix", [".json", ".json.gz"])
def test_amazon_2018(tmp_path, skips, suffix):
    reviews = write_jsonl(tmp_path / "r.json", REVIEWS_2018)
    if suffix == ".json.gz":
        reviews = write(tmp_path / f"r{suffix}", reviews.read_bytes())
    meta = write_jsonl(tmp_path / "meta.json", META_2018)
    raw = read_source(reviews, meta=meta, skips=skips)
    assert raw.format == "amazon-2018"
    assert raw.interactions.to_pydict() == {
        "user_id": ["A1", "A2"],
        "item_id": ["B1", "B2"],
        "rating": [5.0, 2.0],
        "timestamp": [1400000000, 1400000100],
    }
    assert raw.items.to_pydict()["description"] == ["Boils water.", "Holds tea."]


def test_amazon_2023_uses_parent_asin(tmp_path, skips):
    reviews = write_jsonl(
        tmp_path / "All_Beauty.jsonl",
        [
            {
                "rating": 4.0,
                "title": "ok",
                "text": "fine",
                "asin": "V1",
                "parent_asin": "P1",
                "user_id": "U1",
                "timestamp": 1588687728923,
                "verified_purchase": True,
            },
        ],
    )
    meta = write_jsonl(
        tmp_path / "meta_All_Beauty.jsonl",
        [
            {
                "main_category": "Beauty",
                "title": "Soap",
                "parent_asin": "P1",
                "categories": [],
                "description": [],
                "details": {"Brand": "X"},
            },
        ],
    )
    raw = read_source(reviews, meta=meta, skips=skips)
    assert raw.format == "amazon-2023"
    assert raw.interactions["item_id"].to_pylist() == ["P1"]
    assert raw.interactions["timestamp"].to_pylist() == [1588687728923]


def test_amazon_malformed_line_error_and_skip(tmp_path, skips):
    lines = [__import__("json").dumps(r) for r in REVIEWS_2018]
    reviews = write(tmp_path / "r.json", lines[0] + "\n{not json\n" + lines[1] + "\n")
    meta = write_jsonl(tmp_path / "meta.json", META_2018)
    with pytest.raises(DataError, match=r"r\.json:2: malformed JSON"):
        read_source(reviews, meta=meta, skips=skips)
    raw = read_source(reviews, meta=meta, skips=skips, on_bad_lines="skip")
    clean = read_source(write_jsonl(tmp_path / "clean.json", REVIEWS_2018), meta=meta, skips=skips)
    assert raw.interactions.equals(clean.interactions)  # the slow path gives what the fast path gives
    assert [(e["reason"], e["count"], e["first_line"]) for e in skips.as_list()] == [("malformed_json", 1, 2)]


def test_amazon_wrong_type_names_field(tmp_path, skips):
    reviews = write_jsonl(tmp_path / "r.json", [REVIEWS_2018[0], {**REVIEWS_2018[1], "unixReviewTime": "soon"}])
    meta = write_jsonl(tmp_path / "meta.json", META_2018)
    with pytest.raises(DataError, match=r"r\.json:2: field 'unixReviewTime': expected a number"):
        read_source(reviews, meta=meta, skips=skips)


def test_amazon_needs_meta_and_matching_versions(tmp_path, skips):
    reviews = write_jsonl(tmp_path / "r.json", REVIEWS_2018)
    with pytest.raises(LlmrecError, match="--meta"):
        read_source(reviews, skips=skips)
    meta23 = write_jsonl(tmp_path / "m.jsonl", [{"parent_asin": "P1", "title": "Soap"}])
    with pytest.raises(DataError, match="metadata is Amazon 2023 but the reviews are Amazon 2018"):
        read_source(reviews, meta=meta23, skips=skips)


def test_unknown_folder_format(tmp_path, skips):
    write(tmp_path / "notes.txt", "hello")
    with pytest.raises(LlmrecError, match="cannot tell the format"):
        read_source(tmp_path, skips=skips)
