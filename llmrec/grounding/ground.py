"""Map item mentions to catalog items: exact normalised title, then fuzzy, then embedding nearest neighbour.

Exact and fuzzy matching fail honestly (`item_id=None`), so hallucinated titles are counted, not hidden.
The embedding step is BIGRec's grounding (Bao et al., 2023, "A Bi-Step Grounding Paradigm for Large
Language Models in Recommendation Systems", Sec. 3.2): L2 distance between the mention's and each item's
embedding, scaled by popularity as D_i * (1 + p_i)^-gamma with p_i the item's min-max normalised training
popularity; gamma = 0 is plain nearest neighbour. It always returns an item, so use it knowingly.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from llmrec.data.schema import title_with_year

_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
_TRAILING_ARTICLE = re.compile(r"^(.*),\s*(the|a|an|il|la|le|les|el|das|der|die)$", re.IGNORECASE)
_LEADING_ARTICLE = re.compile(r"^(the|a|an) ")


def normalize_title(title: str) -> tuple[str, int | None]:
    """`Shawshank Redemption, The (1994)` and `the shawshank redemption` -> (`shawshank redemption`, year)."""
    year_match = _YEAR.search(title)
    year = int(year_match.group(1)) if year_match else None
    text = _YEAR.sub("", title).strip()
    text = _TRAILING_ARTICLE.sub(r"\2 \1", text).lower().replace("&", " and ")
    text = " ".join(re.sub(r"[^\w\s]", " ", text).split())
    return _LEADING_ARTICLE.sub("", text), year


@dataclass
class Grounded:
    mention: str
    item_id: str | None  # None: not grounded (a hallucination, or a mention of something off-catalog)
    method: str  # "exact", "fuzzy", "embedding" or "none"
    score: float  # exact: 1; fuzzy: similarity 0-100; embedding: adjusted distance (lower is closer)


class TitleGrounder:
    def __init__(
        self, items: pa.Table, *, fuzzy_cutoff: float | None = 85.0, encoder: str | None = None, gamma: float = 0.0
    ) -> None:
        """items: a dataset's items table (item_id, title, year, popularity). fuzzy_cutoff None disables
        fuzzy matching; encoder (a sentence-transformers name or path) enables the embedding step."""
        self.ids = items["item_id"].to_pylist()
        titles, years = items["title"].to_pylist(), items["year"].to_pylist()
        self.popularity = items["popularity"].to_numpy().astype(np.float64)
        self.years = years
        self.normalized = [normalize_title(t)[0] for t in titles]
        self.exact: dict[str, list[int]] = defaultdict(list)
        for i, norm in enumerate(self.normalized):
            self.exact[norm].append(i)
        self.fuzzy_cutoff, self.gamma = fuzzy_cutoff, gamma
        self.texts = [title_with_year(t, y) for t, y in zip(titles, years)]
        self.encoder, self._item_emb = None, None
        if encoder is not None:
            from sentence_transformers import SentenceTransformer

            from llmrec.hub import resolve_model

            self.encoder = SentenceTransformer(resolve_model(encoder), device="cpu")

    def ground(self, mentions: list[str]) -> list[Grounded]:
        results: list[Grounded | None] = [self._by_text(m) for m in mentions]
        missing = [k for k, r in enumerate(results) if r is None]
        if missing and self.encoder is not None:
            for k, g in zip(missing, self._by_embedding([mentions[k] for k in missing])):
                results[k] = g
        return [r if r is not None else Grounded(m, None, "none", 0.0) for m, r in zip(mentions, results)]

    def rank(self, mentions: list[str], exclude: set[str] = frozenset()) -> tuple[list[str], list[Grounded]]:
        """Distinct grounded items in mention order (minus `exclude`), and every mention's outcome."""
        grounded = self.ground(mentions)
        ranked, seen = [], set(exclude)
        for g in grounded:
            if g.item_id is not None and g.item_id not in seen:
                seen.add(g.item_id)
                ranked.append(g.item_id)
        return ranked, grounded

    def _by_text(self, mention: str) -> Grounded | None:
        norm, year = normalize_title(mention)
        if norm in self.exact:
            return Grounded(mention, self.ids[self._pick(self.exact[norm], year)], "exact", 1.0)
        if self.fuzzy_cutoff is None or not norm:
            return None
        from rapidfuzz import fuzz, process

        matches = process.extract(norm, self.normalized, scorer=fuzz.ratio, limit=5, score_cutoff=self.fuzzy_cutoff)
        if not matches:
            return None
        best = max(score for _, score, _ in matches)
        tied = [i for _, score, i in matches if score == best]
        return Grounded(mention, self.ids[self._pick(tied, year)], "fuzzy", float(best))

    def _pick(self, candidates: list[int], year: int | None) -> int:
        """Among equally good titles (remakes share titles), the one from the mentioned year, else the most popular."""
        same_year = [i for i in candidates if year is not None and self.years[i] == year]
        pool = same_year or candidates
        return max(pool, key=lambda i: (self.popularity[i], -i))

    def _distances(self, mentions: list[str]):
        """(M, N) tensor: L2 distance between each mention's and each item's normalised embedding."""
        import torch

        if self.encoder is None:
            raise ValueError("embedding grounding needs an encoder (TitleGrounder(..., encoder=...))")
        if self._item_emb is None:
            self._item_emb = self.encoder.encode(self.texts, convert_to_tensor=True, normalize_embeddings=True)
        query = self.encoder.encode(mentions, convert_to_tensor=True, normalize_embeddings=True)  # (M, D)
        return torch.cdist(query, self._item_emb)  # (M, N)

    def _adjust(self, dist, gamma: float | None = None):
        """D_i * (1 + p_i)^-gamma (BIGRec Eq. 4), p the min-max normalised training popularity."""
        import torch

        p = self.popularity
        p = (p - p.min()) / (p.max() - p.min()) if p.max() > p.min() else np.zeros_like(p)
        gamma = self.gamma if gamma is None else gamma
        return dist * torch.as_tensor((1 + p) ** -gamma, dtype=dist.dtype)  # (M, N)

    def _by_embedding(self, mentions: list[str]) -> list[Grounded]:
        adjusted = self._adjust(self._distances(mentions))
        best = adjusted.argmin(dim=1)
        return [
            Grounded(m, self.ids[int(b)], "embedding", float(adjusted[k, b]))
            for k, (m, b) in enumerate(zip(mentions, best))
        ]

    def nearest(self, mentions: list[str], k: int, exclude: list[set[str]] | None = None,
                gamma: float | None = None) -> list[list[str]]:
        """BIGRec's full ranking: for each generated text, the k catalog items closest after the popularity
        adjustment, minus that user's `exclude` items (their history)."""
        return self._top_k(self._distances(mentions), k, exclude, gamma)

    def _top_k(self, dist, k: int, exclude: list[set[str]] | None, gamma: float | None) -> list[list[str]]:
        adjusted = self._adjust(dist, gamma)  # (M, N), a new tensor: `dist` stays reusable
        position = {item: n for n, item in enumerate(self.ids)}
        for row, items in enumerate(exclude or []):
            adjusted[row, [position[i] for i in items if i in position]] = float("inf")
        top = adjusted.topk(min(k, adjusted.shape[1]), dim=1, largest=False).indices  # (M, k)
        return [[self.ids[i] for i in row] for row in top.tolist()]


def select_gamma(grounder: TitleGrounder, generated: list[str], targets: list[str], k: int = 10,
                 exclude: list[set[str]] | None = None,
                 gammas: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)) -> tuple[float, dict[float, float]]:
    """Pick the popularity exponent on validation users as BIGRec does: the gamma whose `nearest` lists
    have the highest NDCG@k against the validation targets (ties: the smallest gamma). Returns it and
    every gamma's NDCG@k; set `grounder.gamma` to the choice before grounding test answers."""
    from llmrec.evaluation.metrics import ranking_metrics

    dist = grounder._distances(generated)  # (M, N): encoded once, re-weighted per gamma
    scores = {}
    for gamma in gammas:
        ranked = grounder._top_k(dist, k, exclude, gamma)
        hits = np.array([[item == t for item in row] + [False] * (k - len(row)) for row, t in zip(ranked, targets)])
        scores[gamma] = float(ranking_metrics(hits, np.ones(len(targets)), [k])[f"ndcg@{k}"].mean())
    best = max(scores.values())
    return min(g for g, s in scores.items() if s == best), scores
