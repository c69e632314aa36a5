"""Metrics against values computed by hand (RecBole's definitions), and the bootstrap."""

import numpy as np
import pytest

from llmrec.evaluation.metrics import auc, beyond_accuracy, long_tail, ranking_metrics, rating_errors
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


def test_popularity_bias_metrics_by_hand():
    popularity = np.array([10, 20, 30, 40])
    ranked = np.array([[2, 3], [3, 2], [-1, -1]])
    targets = np.array([2, 0, 3])
    assert long_tail(popularity, 0.5).tolist() == [True, True, False, False]
    m = beyond_accuracy(ranked, popularity, ks=[2], n_users=50, target_codes=targets, head_share=0.5)
    d2 = 1 / np.log2(3)
    user0 = ((1 - 30 / 50) + (1 - 40 / 50) * d2) / (1 + d2)
    user1 = ((1 - 40 / 50) + (1 - 30 / 50) * d2) / (1 + d2)
    assert m["novelty@2"] == pytest.approx((user0 + user1 + 0) / 3)
    assert m["aclt@2"] == 0  # items 2 and 3 are the head
    # head targets (users 0, 2): 1 of 2 found; tail target (user 1): 0 of 1 -> p = [0.5, 0], std/mean = 1.
    assert m["popreo@2"] == pytest.approx(1.0)
    wider_head = beyond_accuracy(ranked, popularity, ks=[2], target_codes=targets, head_share=0.25)
    assert wider_head["aclt@2"] == pytest.approx(2 / 3)  # item 2 is now long tail: one per non-empty list
    assert (
        beyond_accuracy(ranked, popularity, ks=[2], target_codes=np.array([2, 3, 3]), head_share=0.5)["popreo@2"]
        is None
    )  # no tail targets: undefined, not 0


def test_rating_errors_and_auc_by_hand():
    m = rating_errors(np.array([3, 4, 5]), np.array([4, 4, 3]))
    assert m["rmse"] == pytest.approx(np.sqrt(5 / 3)) and m["mae"] == pytest.approx(1.0)
    # positive-negative pairs ranked correctly: (0.9, 0.8), (0.9, 0.1), (0.3, 0.1); wrong: (0.3, 0.8).
    assert auc(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 0, 1, 0])) == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="both"):
        auc(np.array([0.5, 0.6]), np.array([1, 1]))


def test_bootstrap_ci_by_hand_and_narrowing_with_more_users():
    assert bootstrap_ci(np.full(7, 0.25), seed=0) == (0.25, 0.25)  # every resample has the same mean
    # Two users, 0 and 1: a resample's mean is 0, 1/2 or 1 with probabilities 1/4, 1/2, 1/4, so the 2.5% and
    # 97.5% quantiles of 1000 resamples lie in the outer masses.
    assert bootstrap_ci(np.array([0.0, 1.0]), seed=0) == (0.0, 1.0)
    assert np.isnan(bootstrap_ci(np.array([]), seed=0)).all()  # no users: no interval
    rng = np.random.default_rng(1)
    small, large = rng.random(50), rng.random(5000)
    lo, hi = bootstrap_ci(small, seed=0)
    assert lo < small.mean() < hi
    lo2, hi2 = bootstrap_ci(large, seed=0)
    assert hi2 - lo2 < (hi - lo) / 5  # width shrinks as 1 / sqrt(U): 100 times the users, about 1/10
    assert bootstrap_ci(small, seed=0) == (lo, hi)  # seeded: reproducible


def test_paired_permutation_test_by_hand():
    a = np.random.default_rng(0).random(300)
    # A constant difference: only flips with all 300 signs equal (probability 2**-299) reach the observed
    # |mean|, so none of the 10000 resamples does and p = (1 + 0) / (10000 + 1).
    assert paired_permutation_test(a, a + 0.1) == 1 / 10001
    # Differences +1 and -1 cancel: the observed |mean| is 0, which every resample reaches, so p = 1.
    assert paired_permutation_test(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == 1.0
    assert paired_permutation_test(a, a + 0.1, n_resamples=99) == 1 / 100
