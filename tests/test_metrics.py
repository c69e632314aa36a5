"""Metrics against values computed by hand (RecBole's definitions), and the bootstrap."""

import numpy as np
import pytest

from llmrec.evaluation.metrics import beyond_accuracy, ranking_metrics
from llmrec.evaluation.stats import bootstrap_ci, paired_permutation_test

L3, L4 = np.log2(3), np.log2(4)


def test_accuracy_metrics_by_hand():
    # User A: one relevant item, found at rank 2. User B: two relevant, found at ranks 1 and 3.
    hits = np.array([[0, 1, 0], [1, 0, 1]], bool)
    m = ranking_metrics(hits, np.array([1, 2]), ks=[1, 3])
    expected = {
        "hit@1": [0, 1],
        "hit@3": [1, 1],
        "recall@1": [0, 1 / 2],
        "recall@3": [1, 1],
        "precision@1": [0, 1],
        "precision@3": [1 / 3, 2 / 3],
        "f1@3": [2 * (1 / 3) / (4 / 3), 2 * (2 / 3) / (5 / 3)],
        "ndcg@1": [0, 1],
        "ndcg@3": [1 / L3, (1 + 1 / L4) / (1 + 1 / L3)],
        "mrr@1": [0, 1],
        "mrr@3": [1 / 2, 1],
        "map@1": [0, 1],
        "map@3": [1 / 2, (1 + 2 / 3) / 2],
    }
    for name, values in expected.items():
        np.testing.assert_allclose(m[name], values, err_msg=name)


def test_short_lists_count_missing_positions_as_misses():
    m = ranking_metrics(np.array([[False]]), np.array([1]), ks=[5])
    assert m["hit@5"][0] == 0 and m["precision@5"][0] == 0


def test_beyond_accuracy_by_hand():
    popularity = np.array([10, 20, 30, 40])
    ranked = np.array([[2, 3], [3, 2], [-1, -1]])  # the third user got nothing valid
    m = beyond_accuracy(ranked, popularity, ks=[1, 2])
    assert m["coverage@2"] == 0.5 and m["coverage@1"] == 0.5
    # counts@2 = [0, 0, 2, 2] -> sorted, sum((2i - 5) c_i) = 2*1 + 2*3 = 8, / (4 * 4)
    assert m["gini@2"] == pytest.approx(0.5)
    assert m["arp@1"] == pytest.approx((30 + 40 + 0) / 3)
    one_item = beyond_accuracy(np.array([[3], [3]]), popularity, ks=[1])
    assert one_item["gini@1"] == pytest.approx(3 / 4)  # (n - 1) / n: maximal concentration


def test_bootstrap_ci_brackets_the_mean_and_narrows_with_more_users():
    rng = np.random.default_rng(1)
    small, large = rng.random(50), rng.random(5000)
    lo, hi = bootstrap_ci(small, seed=0)
    assert lo < small.mean() < hi
    lo2, hi2 = bootstrap_ci(large, seed=0)
    assert hi2 - lo2 < (hi - lo) / 5
    assert bootstrap_ci(small, seed=0) == (lo, hi)  # seeded: reproducible


def test_paired_permutation_test():
    rng = np.random.default_rng(0)
    a = rng.random(300)
    assert paired_permutation_test(a, a + 0.1) < 0.001
    assert paired_permutation_test(a, a + rng.normal(0, 0.01, 300)) > 0.05
