"""Every shipped YAML config parses with the command that runs it, so a renamed or removed option fails here
rather than in a user's run. Parsing only: the command's work is replaced, no model or dataset is loaded."""

import importlib
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def yaml_files(folder: str) -> list[Path]:
    return sorted(p.relative_to(ROOT) for p in (ROOT / folder).rglob("*.y*ml"))


CONFIGS = yaml_files("recipes/configs") + yaml_files("data_prep/configs")
ACCELERATE = yaml_files("recipes/accelerate")
WORK = {  # the function each command's main hands its parsed options to
    "llmrec.data.prepare": "prepare",
    "llmrec.collab.train": "train_collab",
    "llmrec.rerank.train": "train_rerank",
    "llmrec.training.sft": "train_sft",
    "llmrec.alignment.train": "train_dpo",
    "llmrec.rl.train": "train_grpo",
    "llmrec.plora.train": "train_plora",
}


class Parsed(Exception):
    """Raised in place of the command's work, carrying what main parsed."""


def script_of(config: Path) -> Path:
    """data_prep/configs/* belong to data_prep/prepare.py; a recipe config names its script in a comment that
    runs it: `python recipes/collab.py --config <this file>`."""
    if config.parts[0] == "data_prep":
        return Path("data_prep/prepare.py")
    found = re.search(rf"(recipes/\w+\.py) --config {re.escape(str(config))}\b", (ROOT / config).read_text())
    assert found, f"{config}: no comment line saying which recipe runs it"
    return Path(found.group(1))


def module_of(script: Path) -> str:
    return re.search(r'run\("([\w.]+)"', (ROOT / script).read_text()).group(1)  # scripts are run("module", argv)


def parsed_by_main(module_name: str, argv: list[str], monkeypatch) -> tuple:
    module = importlib.import_module(module_name)

    def stop(*parsed, **_):
        raise Parsed(parsed)

    monkeypatch.setattr(module, WORK[module_name], stop)
    with pytest.raises(Parsed) as done:
        module.main(argv)
    return done.value.args[0]


def test_every_config_directory_is_covered():
    assert len(CONFIGS) >= 10 and {c.parts[0] for c in CONFIGS} == {"recipes", "data_prep"}
    assert {module_of(script_of(c)) for c in CONFIGS} == set(WORK)


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_shipped_config_parses_with_its_command(config, monkeypatch):
    parsed = parsed_by_main(module_of(script_of(config)), ["--config", str(ROOT / config)], monkeypatch)
    values = yaml.safe_load((ROOT / config).read_text())
    for key, value in values.items():
        owners = [p for p in parsed if hasattr(p, key)]
        assert owners, f"{config}: {key} reached no option"
        if isinstance(value, (int, float, list)) and not isinstance(value, bool):  # strings may be normalised
            assert getattr(owners[0], key) == value, f"{config}: {key}"


@pytest.mark.parametrize("config", ACCELERATE, ids=str)
def test_accelerate_config_loads(config):
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(ROOT / config))  # refuses keys this accelerate does not know
    assert loaded.num_processes == yaml.safe_load((ROOT / config).read_text())["num_processes"]
