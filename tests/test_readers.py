"""Every reader on small fixture files: canonical tables out, clear errors for bad input."""

import pytest

from llmrec.data.readers import read_source
from llmrec.errors import DataError, LlmrecError

from conftest import RECBOLE_ITEM, write, write_jsonl


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


def test_amazon_review_text_is_kept_2018_and_2023(tmp_path, skips):
    reviews = [{**REVIEWS_2018[0], "reviewText": "Boils fast."}, {**REVIEWS_2018[1], "reviewText": ""}]
    raw = read_source(
        write_jsonl(tmp_path / "r.json", reviews), meta=write_jsonl(tmp_path / "m.json", META_2018), skips=skips
    )
    assert raw.interactions["review"].to_pylist() == ["Boils fast.", None]  # an empty review is no review
    r23 = {"rating": 4.0, "text": "Smells nice.", "parent_asin": "P1", "user_id": "U1", "timestamp": 1588687728923}
    raw = read_source(
        write_jsonl(tmp_path / "r.jsonl", [r23]),
        meta=write_jsonl(tmp_path / "m.jsonl", [{"parent_asin": "P1", "title": "Soap"}]),
        skips=skips,
    )
    assert raw.interactions["review"].to_pylist() == ["Smells nice."]


def test_sources_without_reviews_have_no_review_column(recbole_dir, skips):
    assert "review" not in read_source(recbole_dir, skips=skips).interactions.column_names


def test_ml100k_malformed_release_date_and_genre_flag_are_missing_and_counted(tmp_path, skips):
    write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    animation = ["1" if g == 3 else "0" for g in range(19)]
    broken = ["x" if g == 5 else "0" for g in range(19)]
    u_item = (
        f"242|Kolya|unknown||http://x|{'|'.join(animation)}\n302|Heat (1995)|01-Jan-1995||http://y|{'|'.join(broken)}\n"
    )
    write(tmp_path / "u.item", u_item)
    items = {r["item_id"]: r for r in read_source(tmp_path, skips=skips).items.to_pylist()}
    assert (items["242"]["year"], items["242"]["categories"]) == (None, ["Animation"])  # no year anywhere
    assert (items["302"]["year"], items["302"]["categories"]) == (1995, None)  # its genres are unknown
    assert [(e["where"], e["reason"], e["count"], e["first_line"]) for e in skips.as_list()] == [
        ("u.item", "malformed_release_date_stored_as_missing", 1, 1),
        ("u.item", "malformed_genre_flags_stored_as_missing", 1, 2),
    ]


def test_u_genre_out_of_flag_order_names_its_line(tmp_path, skips):
    write(tmp_path / "u.data", "196\t242\t3\t881250949\n")
    write(tmp_path / "u.item", "242|Kolya (1996)|24-Jan-1997||http://x|0|1\n")
    write(tmp_path / "u.genre", "unknown|0\nAction|2\n")
    with pytest.raises(DataError, match=r"u\.genre:2: field 'genre': expected 'name\|1' .*got 'Action\|2'"):
        read_source(tmp_path, skips=skips)


def test_recbole_malformed_release_year_is_missing_and_counted(recbole_dir, skips):
    write(recbole_dir / "toy.item", RECBOLE_ITEM.replace("i4\tFargo\t1996", "i4\tFargo\tnineteen96"))
    items = {r["item_id"]: r["year"] for r in read_source(recbole_dir, skips=skips).items.to_pylist()}
    assert items == {"i1": 1995, "i2": 1995, "i3": None, "i4": None}  # i3's year is empty: missing, not malformed
    assert skips.as_list() == [
        {"where": "toy.item", "reason": "malformed_release_year_stored_as_missing", "count": 1, "first_line": 5}
    ]


def test_amazon_malformed_optional_values_are_missing_and_a_bad_time_names_its_line(tmp_path, skips):
    reviews = write_jsonl(tmp_path / "r.json", [REVIEWS_2018[0], {**REVIEWS_2018[1], "overall": float("nan")}])
    meta = write_jsonl(tmp_path / "meta.json", [META_2018[0], {**META_2018[1], "category": {"Home": 1}}])
    raw = read_source(reviews, meta=meta, skips=skips)
    assert raw.interactions["rating"].to_pylist() == [5.0, None]
    assert raw.items["categories"].to_pylist() == [["Home", "Kitchen"], None]
    assert [(e["where"], e["reason"], e["count"], e["first_line"]) for e in skips.as_list()] == [
        ("r.json", "malformed_overall_stored_as_missing", 1, 2),
        ("meta.json", "malformed_category_stored_as_missing", 1, 2),
    ]
    late = write_jsonl(tmp_path / "t.json", [{**REVIEWS_2018[0], "unixReviewTime": 1e30}])
    with pytest.raises(DataError, match=r"t\.json:1: field 'unixReviewTime': expected a whole-number timestamp"):
        read_source(late, meta=meta, skips=skips)
