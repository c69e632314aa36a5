"""Prompt template families: YAML files of Jinja templates, validated when loaded.

A family file (see prompts/*.yaml) names its `task`, which fixes the fields its templates may use; each
template has an `id`, an `input` and a `target` template, and `seen` (default true; false holds the
template out of training for unseen-template evaluation, as OpenP5 does). A misspelt field fails here,
naming the file and template, before any row is built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2 import meta

from llmrec.errors import LlmrecError
from llmrec.templating import compile_template

# What a template needs from the dataset beyond items and histories (`PreparedDataset.provides`): these
# fields are made from ratings, and these tasks' targets are ratings or review text.
RATING_FIELDS = {"rated_history", "liked", "disliked", "rating"}
TASK_NEEDS = {"preference": {"ratings"}, "rating": {"ratings"}, "explanation": {"reviews"}}
NEED_TEXT = {"ratings": "ratings", "reviews": "review text"}
WHY_NONE = {"ratings": "it is implicit feedback", "reviews": "only Amazon reviews carry review text"}

# The fields each task's rows provide to templates.
TASK_FIELDS: dict[str, set[str]] = {
    "sequential": {"user_id", "history", "n_history", "target"},
    "candidates": {"user_id", "history", "n_history", "candidates", "n_candidates", "target"},
    "preference": {"user_id", "liked", "disliked", "item", "target"},
    "rating": {"user_id", "rated_history", "item", "target"},
    "explanation": {"user_id", "item", "rating", "target"},
    "alignment": {"item_title", "item_index", "item_text"},
    "zeroshot": {"user_id", "rated_history", "history", "k", "target"},
    "rerank": {"user_id", "rated_history", "history", "candidates", "n_candidates", "k", "target"},
}


def need_words(needs: Iterable[str]) -> str:
    return " and ".join(NEED_TEXT[n] for n in sorted(needs))


def needs_none(needs: Iterable[str]) -> str:
    """`needs ratings, and this dataset has none (it is implicit feedback)`: the reason a refusal gives."""
    why = "; ".join(WHY_NONE[n] for n in sorted(needs))
    return f"needs {need_words(needs)}, and this dataset has none ({why})"


def family_dir() -> Path:
    """The shipped families: prompts/, reached as llmrec/prompt_families (a symlink in a checkout, a copy
    in an installed wheel)."""
    return Path(__file__).resolve().parents[1] / "prompt_families"


def shipped_families() -> list[str]:
    return sorted(p.stem for p in family_dir().glob("*.yaml"))


@dataclass(frozen=True)
class Template:
    id: str
    family: str
    input: str
    target: str
    seen: bool = True
    needs: frozenset[str] = frozenset()  # "ratings", "reviews": what the dataset must provide

    def render(self, fields: dict[str, Any]) -> tuple[str, str]:
        text = _compiled(self.input).render(**fields).strip()
        if self.target == "{{ target }}":  # the common case, without a Jinja context per row
            return text, str(fields["target"]).strip()
        return text, _compiled(self.target).render(**fields).strip()


_CACHE: dict[str, jinja2.Template] = {}
_PARSER = jinja2.Environment()


def _needs(task: str, *sources: str) -> frozenset[str]:
    used = set().union(*(meta.find_undeclared_variables(_PARSER.parse(s)) for s in sources))
    return frozenset(TASK_NEEDS.get(task, set()) | ({"ratings"} if used & RATING_FIELDS else set()))


def _compiled(source: str) -> jinja2.Template:
    # Compiled lazily per process: jinja2 templates do not pickle, and datasets.map(num_proc>1) forks workers.
    if source not in _CACHE:
        _CACHE[source] = compile_template(source, set().union(*TASK_FIELDS.values()), "template")
    return _CACHE[source]


@dataclass(frozen=True)
class Family:
    name: str
    task: str
    templates: tuple[Template, ...]

    def pick(self, seen: bool) -> list[Template]:
        chosen = [t for t in self.templates if t.seen == seen]
        if not chosen:
            raise LlmrecError(f"family {self.name} has no {'seen' if seen else 'unseen'} templates")
        return chosen

    def usable(self, provided: frozenset[str]) -> Family:
        """This family with only the templates a dataset providing `provided` can fill (maybe none)."""
        return dataclasses.replace(self, templates=tuple(t for t in self.templates if t.needs <= provided))

    def lacking(self, provided: frozenset[str]) -> list[str]:
        """What a dataset providing `provided` lacks for this family: what every template it cannot fill
        needs (explanation: review text, though some of its templates also show ratings), else all of it."""
        gaps = [set(t.needs - provided) for t in self.templates if t.needs - provided]
        common = set.intersection(*gaps) if gaps else set()
        return sorted(common or set().union(*gaps))


def load_family(name_or_path: str) -> Family:
    """A shipped family by name (`sequential`) or a YAML file path; validated against its task's fields."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = family_dir() / f"{name_or_path}.yaml"
        if not path.exists():
            raise LlmrecError(f"unknown prompt family {name_or_path!r}; shipped: {', '.join(shipped_families())}, "
                              "or pass a path to a .yaml file")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise LlmrecError(f"{path}: cannot read prompt family: {e}") from None
    if not isinstance(spec, dict) or spec.get("task") not in TASK_FIELDS or not spec.get("templates"):
        raise LlmrecError(f"{path}: a family needs `task` (one of {', '.join(TASK_FIELDS)}) and `templates`")
    fields, templates = TASK_FIELDS[spec["task"]], []
    for n, t in enumerate(spec["templates"]):
        where = f"{path}: template {t.get('id', n) if isinstance(t, dict) else n}"
        if not isinstance(t, dict) or not {"id", "input", "target"} <= t.keys():
            raise LlmrecError(f"{where}: needs id, input and target")
        for part in ("input", "target"):
            compile_template(t[part], fields, f"{where} ({part})")
        templates.append(Template(str(t["id"]), spec.get("family", path.stem), t["input"], t["target"],
                                  bool(t.get("seen", True)), _needs(spec["task"], t["input"], t["target"])))
    ids = [t.id for t in templates]
    if len(set(ids)) != len(ids):
        raise LlmrecError(f"{path}: template ids repeat")
    return Family(spec.get("family", path.stem), spec["task"], tuple(templates))
