"""Grounding free text to catalog items: list parsing, exact/fuzzy/embedding matching, honest failures."""

import pyarrow as pa

from llmrec.grounding import TitleGrounder, parse_list, select_gamma
from llmrec.grounding.ground import normalize_title

ITEMS = pa.table(
    {
        "item_id": ["1", "2", "3", "4", "5"],
        "title": ["Shawshank Redemption, The", "Toy Story", "Heat", "Heat", "Postino, Il"],
        "year": [1994, 1995, 1995, 1986, 1994],
        "popularity": [50, 40, 30, 5, 10],
    }
)


def test_parse_numbered_bulleted_and_json_answers():
    answer = 'Sure! Here are some picks:\n1. **Toy Story (1995)**\n2) Heat\n\n3. "The Matrix"\nEnjoy!'
    assert parse_list(answer) == ["Toy Story (1995)", "Heat", "The Matrix"]
    assert parse_list("- Heat\n* Toy Story\n• Fargo") == ["Heat", "Toy Story", "Fargo"]
    assert parse_list('Here: ["Heat", {"title": "Toy Story"}, 3]') == ["Heat", "Toy Story"]
    assert parse_list("Heat\nToy Story") == ["Heat", "Toy Story"]
    assert parse_list("   ") == []


def test_parse_drops_echoed_ratings_but_not_numbers_in_titles():
    answer = "1. Blues Brothers, The (1980) (4/5)\n2. Heat - 5 stars\n3. **Fargo (1996)**: 4.5/5\n" \
             "4. Apollo 13 (1995)\n5. Fahrenheit 9/11 (2004)\n6. Heat (1995) [3 stars]"
    assert parse_list(answer) == ["Blues Brothers, The (1980)", "Heat", "Fargo (1996)", "Apollo 13 (1995)",
                                  "Fahrenheit 9/11 (2004)", "Heat (1995)"]


def test_normalize_title_handles_articles_years_and_punctuation():
    assert normalize_title("Shawshank Redemption, The (1994)") == ("shawshank redemption", 1994)
    assert normalize_title("the shawshank redemption") == ("shawshank redemption", None)
    assert normalize_title("Il Postino")[0] == normalize_title("Postino, Il")[0]


def test_exact_then_fuzzy_with_typos_and_year_disambiguation():
    g = TitleGrounder(ITEMS)
    got = g.ground(["The Shawshank Redemption (1994)", "Toy Stroy", "Heat (1986)", "Heat", "Il Postino"])
    assert [(r.item_id, r.method) for r in got] == [
        ("1", "exact"),
        ("2", "fuzzy"),
        ("4", "exact"),
        ("3", "exact"),
        ("5", "exact"),
    ]
    assert 85 <= got[1].score < 100


def test_hallucinations_are_reported_not_dropped():
    ranked, outcomes = TitleGrounder(ITEMS).rank(["Toy Story", "A Movie That Does Not Exist", "toy story"])
    assert ranked == ["2"]  # repeats collapse
    assert [o.method for o in outcomes] == ["exact", "none", "exact"]
    assert outcomes[1].item_id is None


def test_rank_excludes_history():
    ranked, _ = TitleGrounder(ITEMS).rank(["Toy Story", "Heat"], exclude={"2"})
    assert ranked == ["3"]


def test_embedding_nearest_neighbour_and_popularity_adjustment():
    g = TitleGrounder(ITEMS, fuzzy_cutoff=None, encoder="all-minilm-l6-v2")
    (r,) = g.ground(["Shawshank prison escape drama"])
    assert (r.item_id, r.method) == ("1", "embedding")
    # Two "Heat"s, near-equal in embedding space: a mild popularity adjustment picks the popular one
    # (p = 25/45 -> factor 0.80), while a huge gamma lets the most popular item of all win any query.
    g.gamma = 0.0
    assert g.ground(["Heat, the film"])[0].item_id in {"3", "4"}
    g.gamma = 0.5
    assert g.ground(["Heat, the film"])[0].item_id == "3"
    g.gamma = 50.0
    assert g.ground(["Heat, the film"])[0].item_id == "1"


def test_bigrec_full_ranking_and_gamma_chosen_on_validation():
    g = TitleGrounder(ITEMS, fuzzy_cutoff=None, encoder="all-minilm-l6-v2")
    ranked = g.nearest(["Heat, the film", "Toy Story"], k=3, exclude=[{"3", "4"}, set()])
    assert len(ranked[0]) == 3 and not {"3", "4"} & set(ranked[0])  # history never comes back
    assert ranked[1][0] == "2"
    # Validation users whose answer says "Heat" but who went on to watch the most popular film: only a
    # strong popularity adjustment ranks it first, so that gamma must win; with the popular Heat as
    # target, the strong adjustment is the worst choice.
    texts = ["Heat, the film"] * 3
    best, scores = select_gamma(g, texts, ["1"] * 3, k=1, gammas=(0.0, 0.5, 50.0))
    assert best == 50.0 and scores[50.0] == 1.0 and scores[0.0] == 0.0
    best, scores = select_gamma(g, texts, ["3"] * 3, k=1, gammas=(0.0, 0.5, 50.0))
    assert best in (0.0, 0.5) and scores[best] == 1.0 and scores[50.0] == 0.0
