"""`llmrec eval compare`: is report B better than report A? A paired test on the users both scored.

Each report folder's per_user.json holds every user's metric values; users are paired by id, so two runs
on the same split (and sample) are compared user by user (sign-flip permutation test, `stats.py`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.artifacts import read_json, write_json
from llmrec.errors import LlmrecError, check_at_least
from llmrec.evaluation.stats import paired_permutation_test


@dataclass
class CompareConfig:
    a: str = field(metadata={"help": "Report folder A (the reference), from `llmrec eval rank` or `eval zeroshot`."})
    b: str = field(metadata={"help": "Report folder B, scored on the same split."})
    metrics: list[str] = field(
        default_factory=lambda: ["ndcg@10", "recall@10", "mrr@10"], metadata={"help": "Per-user metrics to test."}
    )
    n_resamples: int = field(default=10000, metadata={"help": "Sign-flip resamples of the permutation test."})
    output: str | None = field(default=None, metadata={"help": "Also write the comparison as JSON here."})


def compare_reports(a: str | Path, b: str | Path, metrics: list[str], n_resamples: int = 10000) -> dict[str, Any]:
    """{metric: {a, b, diff, p_value}} over the users present in both reports, plus `n_paired_users`."""
    per_user = []
    for folder in (a, b):
        path = Path(folder) / "per_user.json"
        if not path.exists():
            raise LlmrecError(f"{path}: not found (is {folder} a report folder from this version of llmrec?)")
        per_user.append(read_json(path))
    ua, ub = ({u: n for n, u in enumerate(p["user_id"])} for p in per_user)
    common = [u for u in ua if u in ub]
    if not common:
        raise LlmrecError(f"{a} and {b} share no users: were they scored on the same split?")
    ia, ib = np.array([ua[u] for u in common]), np.array([ub[u] for u in common])
    out: dict[str, Any] = {"n_paired_users": len(common), "only_in_a": len(ua) - len(common),
                           "only_in_b": len(ub) - len(common)}
    for name in metrics:
        if name not in per_user[0] or name not in per_user[1]:
            raise LlmrecError(f"metric {name!r} is not in both reports; available: "
                              f"{', '.join(k for k in per_user[0] if k != 'user_id')}")
        va, vb = np.asarray(per_user[0][name])[ia], np.asarray(per_user[1][name])[ib]
        out[name] = {"a": float(va.mean()), "b": float(vb.mean()), "diff": float(vb.mean() - va.mean()),
                     "p_value": paired_permutation_test(va, vb, n_resamples=n_resamples)}
    return out


def main(argv: list[str] | None = None) -> None:
    from llmrec.cli import parse_args

    (config,) = parse_args(CompareConfig, argv, prog="llmrec eval compare")
    check_at_least(config, {"n_resamples": 1})
    result = compare_reports(config.a, config.b, config.metrics, config.n_resamples)
    r = result
    print(f"{r['n_paired_users']} paired users (only in A: {r['only_in_a']}, only in B: {r['only_in_b']})")
    print(f"{'metric':<14}{'A':>9}{'B':>9}{'B - A':>9}{'p':>9}")
    for name in config.metrics:
        r = result[name]
        print(f"{name:<14}{r['a']:>9.4f}{r['b']:>9.4f}{r['diff']:>+9.4f}{r['p_value']:>9.4f}")
    if config.output:
        Path(config.output).parent.mkdir(parents=True, exist_ok=True)  # as every other --output
        write_json(config.output, result)


if __name__ == "__main__":
    main(sys.argv[1:])
