"""P5 item indices (Hua et al. 2023, "How to Index Item IDs for Recommendation Foundation Models").

- random (RID): each item gets a distinct random number, written as plain digits.
- sequential (SID): numbers follow the order in which items first appear in the *training* interactions,
  users in id order and each user's items in time order, so items seen together get nearby numbers that
  share leading digit tokens. Validation and test interactions are never read (no leakage); items absent
  from training are numbered last, in catalog order.
- collaborative (CID): recursive spectral clustering of the training co-occurrence graph (Sec. 4.3): split
  into `n_clusters` groups, recurse into groups larger than `n_clusters`, number items inside a leaf.
  The code of an item is its path of cluster numbers plus its leaf number, one new token per level.
- title: the item's title (with year when known); repeated titles get " #2", " #3" so IDs stay distinct.
Each function returns codes per item in catalog order: tuples of ints (empty for titles).
"""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from sklearn.cluster import SpectralClustering

from llmrec.data.schema import title_with_year

DENSE_MAX = 20_000  # items; a dense float64 affinity of this size takes 3.2 GB


def random_codes(n_items: int, seed: int) -> list[tuple[int, ...]]:
    numbers = np.random.default_rng(seed).permutation(n_items) + 1
    return [(int(v),) for v in numbers]


def sequential_codes(items: pa.Table, interactions: pa.Table) -> list[tuple[int, ...]]:
    """Numbers by first appearance in training rows (interactions are stored sorted by user, then time)."""
    train = interactions.filter(pc.equal(interactions["split"], "train"))
    order = pc.sort_indices(train, [("user_id", "ascending")])  # stable: keeps time order inside a user
    seen_order = pc.unique(pc.take(train["item_id"], order)).to_pylist()
    seen = set(seen_order)
    rest = [i for i in items["item_id"].to_pylist() if i not in seen]
    number = {item: n + 1 for n, item in enumerate(seen_order + rest)}
    return [(number[i],) for i in items["item_id"].to_pylist()]


def cooccurrence(items: pa.Table, interactions: pa.Table) -> sp.csr_matrix:
    """(I, I) counts of users who interacted with both items in training; diagonal zero."""
    train = interactions.filter(pc.equal(interactions["split"], "train"))
    col = pc.index_in(train["item_id"], value_set=items["item_id"]).to_numpy()
    users, row = np.unique(train["user_id"].to_numpy(zero_copy_only=False), return_inverse=True)
    x = sp.csr_matrix((np.ones(len(row), np.float32), (row, col)), shape=(len(users), len(items)))  # (U, I)
    x.data[:] = 1.0  # repeated (user, item) pairs count once
    co = (x.T @ x).tocsr()
    co.setdiag(0)
    co.eliminate_zeros()
    return co


def collaborative_codes(co: sp.csr_matrix, n_clusters: int = 20, seed: int = 0) -> list[tuple[int, ...]]:
    codes: list[tuple[int, ...]] = [()] * co.shape[0]

    def split(members: np.ndarray, path: tuple[int, ...]) -> None:
        if len(members) <= n_clusters:
            for leaf, item in enumerate(members):
                codes[item] = (*path, leaf)
            return
        labels = _spectral(co[members][:, members], n_clusters, seed)
        if len(np.unique(labels)) == 1:  # a graph with no usable structure: split evenly to make progress
            labels = np.arange(len(members)) * n_clusters // len(members)
        for c in np.unique(labels):
            split(members[labels == c], (*path, int(c)))

    split(np.arange(co.shape[0]), ())
    return codes


def _spectral(affinity: sp.csr_matrix, k: int, seed: int) -> np.ndarray:
    # A tiny constant affinity keeps items without co-occurrence (cold items) connected, so the graph
    # Laplacian is well defined. Dense up to DENSE_MAX items; above, the sparse graph is used as is.
    graph = affinity.toarray() + 1e-9 if affinity.shape[0] <= DENSE_MAX else affinity
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Graph is not fully connected" (sparse path)
        model = SpectralClustering(k, affinity="precomputed", random_state=seed, assign_labels="cluster_qr")
        return model.fit_predict(graph)


def title_strings(items: pa.Table) -> tuple[list[str], float]:
    """Titles with year, repeats numbered; and the share of items whose plain title repeats an earlier one."""
    titles = items["title"].to_pylist()
    years = items["year"].to_pylist() if "year" in items.column_names else [None] * len(titles)
    out, seen = [], {}
    for title, year in zip(titles, years):
        text = title_with_year(title, year)
        seen[text] = seen.get(text, 0) + 1
        out.append(text if seen[text] == 1 else f"{text} #{seen[text]}")
    return out, 1.0 - len(seen) / max(len(titles), 1)
