"""`llmrec data prepare`: raw files or a named dataset -> a validated, split dataset folder.

Output folder (written atomically):
  items.parquet         item_id, title, year, categories, description, popularity (train counts only)
  interactions.parquet  user_id, item_id, rating, timestamp, split (+ review where the source has review text);
                        sorted by user, then time
  split.json            the protocol: method, ordering, tie rule
  stats.json            n_users, n_items, n_interactions, per-split counts, every drop with its reason
                        (and every malformed optional value stored as missing, `*_stored_as_missing`)
  meta.json             what made it: source files with sha256, settings, library versions
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow.parquet as pq

from llmrec.artifacts import atomic_dir, provenance, write_json
from llmrec.data.process import ProcessOptions, Processed, process
from llmrec.data.readers import FORMATS, read_source
from llmrec.data.skips import MISSING, SkipLog
from llmrec.data.sources import DATASETS, fetch_dataset, sha256_file
from llmrec.errors import LlmrecError


@dataclass
class PrepareConfig:
    output: str = field(metadata={"help": "Folder to write the prepared dataset to (written atomically)."})
    dataset: str | None = field(
        default=None,
        metadata={"help": f"A named dataset, fetched once and cached ({', '.join(DATASETS)}). Or use --input."},
    )
    input: str | None = field(
        default=None,
        metadata={"help": "Raw data: a folder of RecBole atomic or MovieLens files, or an Amazon reviews .jsonl(.gz)."},
    )
    format: str | None = field(
        default=None, metadata={"help": f"Format of --input ({', '.join(FORMATS)}); detected when omitted."}
    )
    meta: str | None = field(default=None, metadata={"help": "Amazon metadata .jsonl(.gz) with titles (Amazon only)."})
    encoding: str | None = field(
        default=None,
        metadata={"help": "Text encoding of the item file (default: the format's own, e.g. latin-1 for ml-100k)."},
    )
    on_bad_lines: Literal["error", "skip"] = field(
        default="error",
        metadata={"help": "Malformed lines: stop with file:line (error) or skip and count them (skip)."},
    )
    positive_threshold: float | None = field(
        default=None, metadata={"help": "Keep only ratings >= this as positives (e.g. 4). Default: every interaction."}
    )
    dedup: Literal["first", "last", "none"] = field(
        default="first", metadata={"help": "Repeated (user, item) pairs: keep the earliest, the latest, or all."}
    )
    min_user_interactions: int = field(default=0, metadata={"help": "k-core: drop users with fewer interactions."})
    min_item_interactions: int = field(default=0, metadata={"help": "k-core: drop items with fewer interactions."})
    split: Literal["loo", "temporal"] = field(
        default="loo",
        metadata={"help": "loo: per user, last -> test, second last -> valid. temporal: global time cut-offs."},
    )
    valid_fraction: float = field(default=0.1, metadata={"help": "temporal split: share of interactions for valid."})
    test_fraction: float = field(default=0.1, metadata={"help": "temporal split: share of interactions for test."})
    overwrite: bool = field(default=False, metadata={"help": "Replace --output if it exists."})


def prepare(config: PrepareConfig) -> Processed:
    """Read, validate, process and write a dataset folder; returns what was written."""
    if (config.dataset is None) == (config.input is None):
        raise LlmrecError("pass exactly one of --dataset NAME or --input PATH")
    skips = SkipLog()
    path, fmt = (fetch_dataset(config.dataset), None) if config.dataset else (Path(config.input), config.format)
    raw = read_source(
        path, format=fmt, meta=config.meta, encoding=config.encoding, on_bad_lines=config.on_bad_lines, skips=skips
    )
    names = {f.name for f in dataclasses.fields(ProcessOptions)}
    result = process(raw, ProcessOptions(**{k: v for k, v in vars(config).items() if k in names}), skips)

    meta = provenance(dataclasses.asdict(config))
    meta["source"] = {
        "dataset": config.dataset,
        "format": raw.format,
        "files": {str(f): sha256_file(f) for f in raw.files if f.exists()},
    }
    with atomic_dir(config.output, overwrite=config.overwrite) as out:
        pq.write_table(result.items, out / "items.parquet")
        pq.write_table(result.interactions, out / "interactions.parquet")
        write_json(out / "split.json", _protocol(config, raw.has_timestamps))
        write_json(out / "stats.json", result.stats)
        write_json(out / "meta.json", meta)
    return result


def _protocol(config: PrepareConfig, has_time: bool) -> dict:
    order = "timestamp, ties in source-file order" if has_time else "source-file order (no timestamps)"
    protocol = {"method": config.split, "order": order}
    if config.split == "loo":
        protocol["rule"] = "per user: last -> test, second last -> valid, rest -> train; users with < 3 -> train"
    else:
        protocol["rule"] = f"global time cut-offs: valid {config.valid_fraction}, test {config.test_fraction}"
    return protocol


def format_stats(stats: dict) -> str:
    s = stats["splits"]
    lines = [
        f"users {stats['n_users']}  items {stats['n_items']}  interactions {stats['n_interactions']}  "
        f"density {stats['density']:.2%}",
        "  ".join(f"{name} {s[name]['n_interactions']}" for name in ("train", "valid", "test")),
    ]
    if "interactions_with_review" in stats:
        lines.append(f"interactions with review text: {stats['interactions_with_review']}")
    if "users_with_tied_timestamps_in_last_3" in stats:
        lines.append(f"users with tied timestamps in their last 3: {stats['users_with_tied_timestamps_in_last_3']}")
    # Malformed optional values are counted in the same ledger, but their lines were kept: list them apart.
    kept = [d for d in stats["drops"] if d["reason"].endswith(MISSING)]
    drops = [d for d in stats["drops"] if d not in kept]
    lines.append("dropped:" if drops else "dropped: nothing")
    lines += [f"  {d['count']:>8}  {d['where']}: {d['reason']}" for d in drops]
    if kept:
        lines.append("stored as missing (malformed optional values; their lines were kept):")
        lines += [f"  {d['count']:>8}  {d['where']}: {d['reason']}" for d in kept]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from llmrec.cli import parse_args

    (config,) = parse_args(PrepareConfig, argv, prog="llmrec data prepare")
    result = prepare(config)
    print(f"wrote {config.output}")
    print(format_stats(result.stats))


if __name__ == "__main__":
    main(sys.argv[1:])
