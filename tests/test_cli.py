"""Every `llmrec` command on bad input: one line on stderr, exit status 2, no traceback, nothing written."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmrec.cli import COMMANDS, run

from conftest import synthetic_dataset, write, write_jsonl

ROOT = Path(__file__).resolve().parents[1]


def status_of(command: str, *args) -> int:
    """Run `llmrec COMMAND ARGS` (command as in "index build") in this process; its exit status."""
    return run(COMMANDS[tuple(command.split())][0], [str(a) for a in args])


def llmrec(capsys, command: str, *args) -> str:
    """The stderr of `llmrec COMMAND ARGS`, after checking that it exited with status 2."""
    status = status_of(command, *args)
    err = capsys.readouterr().err
    assert status == 2, err
    return err


def one_line(err: str) -> str:
    """The error line (library warnings may come before it), checked to be alone and complete."""
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return synthetic_dataset(tmp_path_factory.mktemp("cli"), n_users=8, n_items=12, per_user=5)


# --- unknown flags and config keys ---------------------------------------------------------------------


def test_a_misspelt_flag_is_named_with_the_closest_valid_one(capsys, tmp_path):
    err = llmrec(capsys, "index build", "--data", "d", "--output", tmp_path / "o", "--n_levels", "3")
    assert one_line(err) == "error: unknown flag --n_levels (did you mean --levels?)"
    err = llmrec(capsys, "prompts build", "--data", "d", "--output", tmp_path / "o", "--family", "titles")
    assert one_line(err) == "error: unknown flag --family (did you mean --families?)"


def test_several_unknown_flags_are_named_together_and_a_stray_value_too(capsys, tmp_path):
    err = llmrec(capsys, "data prepare", "--output", tmp_path / "o", "--min_user_interactons=5", "--zzz")
    assert one_line(err) == (
        "error: unknown flags --min_user_interactons (did you mean --min_user_interactions?), --zzz"
    )
    err = llmrec(capsys, "data prepare", "--output", tmp_path / "o", "--input", "a", "b")
    assert one_line(err) == "error: unexpected argument 'b'"


def test_unknown_config_keys_are_named_alone_with_suggestions(capsys, tmp_path):
    config = write(tmp_path / "c.yaml", "data: d\noutput: o\nlevles: 2\ncodebook_size: 8\nseed: 3\n")
    err = llmrec(capsys, "index build", "--config", config)
    assert one_line(err) == f"error: {config}: unknown key 'levles' (did you mean 'levels'?)"


def test_a_bad_value_is_one_line_not_argparse_usage(capsys, tmp_path):
    err = llmrec(capsys, "index build", "--data", "d", "--output", tmp_path / "o", "--levels", "two")
    assert one_line(err) == "error: argument --levels: invalid int value: 'two'"
    err = llmrec(capsys, "index build", "--output", tmp_path / "o")
    assert one_line(err) == "error: the following arguments are required: --data"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "no such file"),
        ("data: [d\n", "invalid YAML"),
        ("- data\n- output\n", "must contain a YAML mapping"),
    ],
)
def test_a_config_file_that_cannot_be_read_is_one_line(capsys, tmp_path, text, message):
    config = tmp_path / "c.yaml" if text is None else write(tmp_path / "c.yaml", text)
    err = llmrec(capsys, "eval compare", "--config", config)
    assert one_line(err).startswith(f"error: {config}: {message}")
    err = llmrec(capsys, "eval compare", "--config")
    assert one_line(err) == "error: --config needs a YAML file"


def test_the_command_and_its_script_print_no_traceback(tmp_path):
    def stderr_of(*command):
        done = subprocess.run([sys.executable, *command], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        return done.stderr.strip().splitlines()[-1]

    out = str(tmp_path / "o")
    assert stderr_of("-m", "llmrec.cli", "data", "prepare", "--output", out, "--dedupe", "last") == (
        "error: unknown flag --dedupe (did you mean --dedup?)"
    )
    config = write(tmp_path / "c.yaml", f"dataset: ml-100k\noutput: {out}\nspilt: loo\n")
    assert stderr_of("data_prep/prepare.py", "--config", str(config)) == (
        f"error: {config}: unknown key 'spilt' (did you mean 'split'?)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


# --- the bad-input sweep -------------------------------------------------------------------------------

URL = "http://127.0.0.1:9"  # nothing listens on port 9: a check that came after connecting would say so

CASES = [
    ("data prepare", "--input {missing} --output {out}", "missing: not found"),
    ("data prepare", "--input {raw_empty} --output {out}", "no data rows"),
    ("data prepare", "--input {raw} --output {out} --min_user_interactions 100", "no interactions left"),
    ("data prepare", "--input {raw} --output {out} --split temporal --valid_fraction 1.5", "--valid_fraction"),
    ("index build", "--data {missing} --output {out}", "not a prepared dataset"),
    ("index build", "--data {corrupt} --output {out} --method random", "items.parquet: not a readable Parquet"),
    ("index build", "--data {ds} --output {out} --levels 0", "--levels must be at least 1, got 0"),
    ("index build", "--data {ds} --output {out} --codebook_size -4", "--codebook_size must be at least 1, got -4"),
    ("index build", "--data {ds} --output {out} --method rqvae --batch_size 0", "--batch_size must be at least 1"),
    ("index build", "--data {ds} --output {out} --method collaborative --n_clusters 1", "--n_clusters must be at"),
    ("prompts build", "--data {missing} --output {out}", "not a prepared dataset"),
    ("prompts build", "--data {corrupt} --output {out}", "items.parquet: not a readable Parquet"),
    ("prompts build", "--data {ds} --output {out} --families nope", "unknown prompt family 'nope'"),
    ("prompts build", "--data {ds} --output {out} --index {missing}", "missing/meta.json: missing"),
    ("prompts build", "--data {ds} --output {out} --max_history -1", "--max_history must be at least 1"),
    ("prompts build", "--data {ds} --output {out} --families zeroshot --k 0", "--k must be at least 1"),
    ("train collab", "--data {missing} --output {out}", "not a prepared dataset"),
    ("train collab", "--data {ds} --output {out} --epochs 0", "--epochs must be positive"),
    ("train collab", "--data {ds} --output {out} --lr -0.1", "--lr must be positive"),
    ("train rerank", "--data {missing} --retriever {missing} --output_dir {out}", "not a prepared dataset"),
    ("train rerank", "--data {ds} --retriever {missing} --output_dir {out}", "no candidates for the train split"),
    ("train rerank", "--data {ds} --retriever {missing} --output_dir {out} --n_candidates 1", "at least 2"),
    ("train sft", "--data {missing} --output_dir {out}", "not a prepared dataset"),
    ("train sft", "--data {ds} --output_dir {out} --ranking_k 0", "--ranking_k must be at least 1"),
    ("train sft", "--data {ds} --output_dir {out} --lerning_rate 1", "did you mean --learning_rate?"),
    (
        "train sft",
        "--data {ds} --output_dir {out} --load_best_model_at_end true --eval_strategy steps --save_strategy epoch",
        "requires the save and eval strategy to match",
    ),
    ("train dpo", "--sft_checkpoint {missing} --output_dir {out}", "not an output folder of recipes/sft.py"),
    ("train dpo", "--sft_checkpoint {missing} --output_dir {out} --rounds 0", "--rounds must be at least 1"),
    ("train dpo", "--sft_checkpoint {missing} --output_dir {out} --negatives hard", "--negatives"),
    ("train grpo", "--sft_checkpoint {missing} --output_dir {out}", "not an output folder of recipes/sft.py"),
    ("train grpo", "--sft_checkpoint {missing} --output_dir {out} --ranking_k 0", "--ranking_k must be at least 1"),
    ("train grpo", "--sft_checkpoint {missing} --output_dir {out} --rollout greedy", "--rollout"),
    ("eval rank", "--data {ds} --output {out} --rankings {missing}", "missing: file not found"),
    ("eval rank", "--data {ds} --output {out} --rankings {broken_jsonl}", "broken.jsonl:2: malformed JSON"),
    ("eval rank", "--data {ds} --output {out} --rankings {empty_jsonl}", "no rankings in it"),
    ("eval rank", "--data {ds} --output {out} --baseline most_popular --ks -1", "--ks must be positive"),
    ("eval rank", "--data {ds} --output {out} --baseline most_popular --n_bootstrap 0", "--n_bootstrap must be"),
    ("eval rank", "--data {ds} --output {out} --baseline most_popular --max_users 0", "--max_users must be at least 1"),
    ("eval rank", "--data {ds} --output {out} --checkpoint {missing} --batch_size 0", "--batch_size must be at"),
    ("eval zeroshot", "--data {missing} --output {out} --base_url " + URL, "not a prepared dataset"),
    ("eval zeroshot", "--data {ds} --output {out}", "needs --base_url"),
    ("eval zeroshot", "--data {ds} --output {out} --base_url " + URL + " --k -1", "--k -1"),
    ("eval zeroshot", "--data {ds} --output {out} --base_url " + URL + " --timeout -1", "--timeout must be"),
    ("eval zeroshot", "--data {ds} --output {out} --base_url " + URL + " --n_bootstrap 0", "--n_bootstrap must"),
    ("eval compare", "--a {missing} --b {report}", "per_user.json: not found"),
    ("eval compare", "--a {report} --b {report} --metrics ndcg@7", "'ndcg@7' is not in both reports"),
    ("eval compare", "--a {report} --b {report} --n_resamples 0", "--n_resamples must be at least 1"),
    ("models fetch", "--names smollm2-135m --revision main", "unknown flag --revision"),
]


@pytest.fixture(scope="module")
def inputs(ds, tmp_path_factory):
    """Paths the sweep's arguments name: good inputs, and broken ones of every kind."""
    root = tmp_path_factory.mktemp("inputs")
    corrupt = root / "corrupt"
    corrupt.mkdir()
    for f in ds.path.iterdir():
        (corrupt / f.name).write_bytes(f.read_bytes())
    (corrupt / "items.parquet").write_bytes(b"PAR1 cut short")
    write(root / "raw_empty" / "x.inter", "user_id:token\titem_id:token\ttimestamp:float\n")
    write(root / "raw_empty" / "x.item", "item_id:token\ttitle:token_seq\n")
    write_jsonl(root / "broken.jsonl", [{"user_id": "u0", "ranked_items": ["m1"]}])
    with open(root / "broken.jsonl", "a") as f:
        f.write('{"user_id": "u1", "ranked_items": [\n')
    report = ["--output", root / "report", "--baseline", "most_popular", "--n_bootstrap", "10"]
    assert status_of("eval rank", "--data", ds.path, *report) == 0
    return {
        "ds": ds.path,
        "raw": ds.path.parent / "raw",
        "missing": root / "missing",
        "corrupt": corrupt,
        "raw_empty": root / "raw_empty",
        "broken_jsonl": root / "broken.jsonl",
        "empty_jsonl": write(root / "empty.jsonl", ""),
        "report": root / "report",
    }


@pytest.mark.parametrize(("command", "args", "message"), CASES, ids=[f"{c}: {a}" for c, a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(inputs, capsys, tmp_path, command, args, message):
    argv = [a.format(out=tmp_path / "out", **inputs) for a in args.split()]
    err = llmrec(capsys, command, *argv)
    assert message in one_line(err)
    assert list(tmp_path.iterdir()) == []  # no output folder, and no temporary one either


def test_compare_writes_its_json_into_a_folder_it_makes(inputs, tmp_path):
    out = tmp_path / "new" / "compare.json"
    report = inputs["report"]
    assert status_of("eval compare", "--a", report, "--b", report, "--n_resamples", "10", "--output", out) == 0
    assert json.loads(out.read_text())["ndcg@10"]["diff"] == 0.0
