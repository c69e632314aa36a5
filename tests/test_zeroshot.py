"""`llmrec eval zeroshot`: scenarios, the cached OpenAI-compatible client, failures, and a real server."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmrec.errors import LlmrecError
from llmrec.generation.backends import ChatBackend, Completion
from llmrec.zeroshot.run import ZeroShotConfig, main, parse_rating, run_zeroshot
from llmrec.zeroshot.scenarios import sample_users

from conftest import synthetic_dataset

ANSWER = "Sure! Here you go:\n1. **Fargo (1996)**\n2. Heat\n3. Not A Real Movie (2031)"
SECRET = "sk-test-7f3a9c1e-never-write-me"


class ScriptedLLM(ChatBackend):
    """An in-process backend: answers from a function, can crash after a number of answers."""

    name, model, endpoint = "scripted", "scripted", "scripted://"

    def __init__(self, answer=lambda conversation: ANSWER, crash_after=None):
        self.answer, self.crash_after, self.asked = answer, crash_after, []

    def complete(self, conversations, settings, on_answer, users=None):
        for n, c in enumerate(conversations):
            if self.crash_after is not None and len(self.asked) >= self.crash_after:
                raise LlmrecError("connection lost")
            self.asked.append(c)
            on_answer(n, Completion(self.answer(c), 10, 5))


class LoopbackServer(ThreadingHTTPServer):
    """A fake OpenAI-compatible endpoint on 127.0.0.1 that fails its first `fail_first` requests."""

    def __init__(self, fail_first=0, status=500):
        self.hits, self.auth, self.fail_first, self.status = 0, [], fail_first, status
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        server = self.server
        server.hits += 1
        server.auth.append(self.headers.get("Authorization"))
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if server.hits <= server.fail_first:
            payload, status = {"error": {"message": "try later"}}, server.status
        else:
            payload, status = {
                "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": ANSWER}}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
            }, 200
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("retry-after-ms", "10")  # keeps the client's backoff short in tests
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def config(ds, tmp_path, **kw):
    defaults = dict(data=str(ds.path), output=str(tmp_path / "report"), cache=str(tmp_path / "cache"), k=3,
                    ks=[1, 3], n_bootstrap=50, n_users=None)
    return ZeroShotConfig(**{**defaults, **kw})


def test_answers_are_grounded_and_scored_like_rankings(toy_dataset, tmp_path):
    m = run_zeroshot(config(toy_dataset, tmp_path), ScriptedLLM(), progress=False)
    # u1's target Fargo is named first; u2's target Heat second. The made-up film is a hallucination, and
    # Heat is u1's history, so it leaves u1's list: 5 listed items, 2 of them unknown.
    assert m["hit@1"]["value"] == 0.5 and m["hit@3"]["value"] == 1.0
    assert (m["grounded_exact"], m["grounded_none"], m["unknown_items"], m["history_items_removed"]) == (4, 2, 2, 1)
    assert m["hallucination_rate"] == pytest.approx(2 / 5)
    ranked = [json.loads(line) for line in (tmp_path / "report" / "rankings.jsonl").read_text().splitlines()]
    assert ranked[0]["ranked_items"] == ["i4", "unmatched: Not A Real Movie (2031)"]
    assert ranked[1]["ranked_items"] == ["i4", "i2", "unmatched: Not A Real Movie (2031)"]
    sample = json.loads((tmp_path / "report" / "samples.jsonl").read_text().splitlines()[0])
    assert sample["answer"] == ANSWER and sample["grounded"][0] == {"mention": "Fargo (1996)", "item_id": "i4",
                                                                    "method": "exact"}
    assert {"metrics.json", "report.md", "per_user.json", "metrics_at_k.png"} <= {
        p.name for p in (tmp_path / "report").iterdir()}
    meta = json.loads((tmp_path / "report" / "meta.json").read_text())
    assert meta["config"]["scenario"] == "history" and meta["config"]["k"] == 3  # the run's own settings


def test_scenarios_ask_what_they_say(tmp_path):
    ds = synthetic_dataset(tmp_path, n_users=6)
    seen = {}
    for scenario in ("history", "cold_start", "rerank", "rating"):
        llm = ScriptedLLM(answer=lambda c: "4 stars")
        m = run_zeroshot(config(ds, tmp_path, scenario=scenario, output=str(tmp_path / scenario), n_users=4,
                                cold_start_history=2, n_candidates=5), llm, progress=False)
        seen[scenario] = llm.asked[0][-1]["content"]
        assert m["n_requests"] == 4
    history = sample_users(ds, "test", 4, seed=0)[0]  # the first user asked
    titles = dict(zip(ds.items["item_id"].to_pylist(), ds.items["title"].to_pylist()))
    last = [f"{titles[i]} (" for i in history["history"][-3:]]  # "Film 7 (1997)": the year ends a title
    assert all(t in seen["history"] for t in last)
    assert last[-1] in seen["cold_start"] and last[0] not in seen["cold_start"]  # only 2 items shown
    assert seen["rerank"].count("\n- ") == 5 and "Rank these 5 candidate" in seen["rerank"]
    assert f"{titles[history['target']]} (" in seen["rating"]
    rating = json.loads((tmp_path / "rating" / "metrics.json").read_text())
    assert rating["invalid_answers"] == 0  # "4 stars" parsed as 4
    truth = [r["target_rating"] for r in sample_users(ds, "test", 4, seed=0)]
    assert rating["mae"]["value"] == pytest.approx(sum(abs(4 - t) for t in truth) / 4)
    assert rating["rmse"]["value"] == pytest.approx((sum((4 - t) ** 2 for t in truth) / 4) ** 0.5)
    with pytest.raises(LlmrecError, match="needs a rerank family"):
        run_zeroshot(config(ds, tmp_path, scenario="rerank", family="zeroshot"), ScriptedLLM(), progress=False)


def test_parse_rating_accepts_numbers_in_words_and_refuses_the_rest():
    assert parse_rating("4") == 4 and parse_rating("I'd say 3.5/5 stars.") == 3.5
    assert parse_rating("Rating: 5") == 5
    assert parse_rating("") is None and parse_rating("great film") is None and parse_rating("10/10") is None


def test_crashed_run_resumes_and_rerun_asks_nothing(toy_dataset, tmp_path):
    with pytest.raises(LlmrecError, match="connection lost"):
        run_zeroshot(config(toy_dataset, tmp_path), ScriptedLLM(crash_after=1), progress=False)
    assert not (tmp_path / "report").exists()  # no partial report presented as complete
    second = ScriptedLLM()
    m = run_zeroshot(config(toy_dataset, tmp_path), second, progress=False)
    assert len(second.asked) == 1 and (m["n_requests"], m["n_cache_hits"]) == (1, 1)
    third = ScriptedLLM()
    again = run_zeroshot(config(toy_dataset, tmp_path, overwrite=True), third, progress=False)
    assert third.asked == [] and (again["n_requests"], again["n_cache_hits"]) == (0, 2)
    assert again["ndcg@3"] == m["ndcg@3"]


def test_client_retries_a_failing_endpoint_and_never_writes_the_key(toy_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_TEST_KEY", SECRET)
    server = LoopbackServer(fail_first=2, status=500)
    try:
        m = run_zeroshot(config(toy_dataset, tmp_path, base_url=server.url, model="m", api_key_env="LLMREC_TEST_KEY",
                                max_retries=3, concurrency=2), progress=False)
    finally:
        server.shutdown()
    assert server.hits == 4 and m["n_requests"] == 2  # two 500s retried, then both users answered
    assert server.auth[-1] == f"Bearer {SECRET}"  # the key was sent ...
    assert m["prompt_tokens"] == 14 and m["hit@3"]["value"] == 1.0
    for path in tmp_path.rglob("*"):  # ... and appears in no file written
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_unreachable_endpoint_and_wrong_key_fail_fast(toy_dataset, tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.time()
    with pytest.raises(LlmrecError, match=f"cannot reach http://127.0.0.1:{port}/v1"):
        run_zeroshot(config(toy_dataset, tmp_path, base_url=f"http://127.0.0.1:{port}/v1", model="m",
                            max_retries=1), progress=False)
    assert time.time() - start < 15
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = LoopbackServer(fail_first=100, status=401)
    try:
        with pytest.raises(LlmrecError, match=r"rejected the API key \(401\): check \$OPENAI_API_KEY"):
            run_zeroshot(config(toy_dataset, tmp_path, base_url=server.url, model="m"), progress=False)
    finally:
        server.shutdown()
    assert server.hits == 1 and not (tmp_path / "report").exists()  # first request only: no fan-out


def test_cli_error_is_one_line(toy_dataset, tmp_path):
    from llmrec.cli import run

    assert run("llmrec.zeroshot.run", ["--data", str(toy_dataset.path), "--output", str(tmp_path / "r")]) == 2


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.network
def test_end_to_end_against_transformers_serve(ml100k, tmp_path):
    """The embedded SmolLM2-135M-Instruct behind `transformers serve` on 127.0.0.1, a few ml-100k users."""
    from llmrec.data import PrepareConfig, PreparedDataset, prepare
    from llmrec.hub.resolve import resolve_model

    prepare(PrepareConfig(output=str(tmp_path / "ml"), dataset="ml-100k"))
    model, port = resolve_model("smollm2-135m"), _free_port()
    cli = Path(sys.executable).with_name("transformers")
    command = [str(cli), "serve", model, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # /health answers once the server is up (/v1/models needs the hub)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("transformers serve did not start within 120 s")
        args = ["--base_url", f"http://127.0.0.1:{port}/v1", "--model", model, "--data", str(tmp_path / "ml"),
                "--n_users", "3", "--k", "5", "--ks", "1", "5", "--max_tokens", "96", "--output", str(tmp_path / "zs"),
                "--cache", str(tmp_path / "cache"), "--n_bootstrap", "100", "--overwrite"]
        main(args)
        first = json.loads((tmp_path / "zs" / "metrics.json").read_text())
        main(args)
        second = json.loads((tmp_path / "zs" / "metrics.json").read_text())
    finally:
        server.terminate()
        server.wait(30)
    assert (first["n_requests"], first["n_cache_hits"]) == (3, 0) and first["completion_tokens"] > 0
    assert (second["n_requests"], second["n_cache_hits"]) == (0, 3)
    assert first["users_evaluated"] == 3 and first["mentions"] > 0  # SmolLM2 answered with parseable lists
    assert second["ndcg@5"] == first["ndcg@5"]
    assert first["hallucination_rate"] == first["unknown_items"] / first["listed_items"]
    assert "zero-shot top-k from history" in first["protocol"]
    samples = [json.loads(line) for line in (tmp_path / "zs" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 and all(s["answer"] for s in samples)
    assert PreparedDataset.load(tmp_path / "ml").items.num_rows == 1682


def test_local_transformers_backend(toy_dataset, tmp_path):
    m = run_zeroshot(config(toy_dataset, tmp_path, backend="hf", model="smollm2-135m", max_tokens=24, batch_size=2),
                     progress=False)
    assert m["n_requests"] == 2 and 0 < m["completion_tokens"] <= 48 and m["prompt_tokens"] > 50
    samples = [json.loads(line) for line in (tmp_path / "report" / "samples.jsonl").read_text().splitlines()]
    assert all(s["answer"].strip() for s in samples)
    again = run_zeroshot(config(toy_dataset, tmp_path, backend="hf", model="smollm2-135m", max_tokens=24,
                                batch_size=2, overwrite=True), progress=False)
    assert again["n_requests"] == 0 and again["ndcg@3"] == m["ndcg@3"]


def test_rerank_candidates_from_another_tools_rankings(toy_dataset, tmp_path):
    # A SASRec run, say: u1's list names its history items i1 and i2 (skipped), u2's names i3 (history too).
    ranked = tmp_path / "sasrec.jsonl"
    ranked.write_text('{"user_id": "u1", "ranked_items": ["i1", "i4", "i2"]}\n'
                      '{"user_id": "u2", "ranked_items": ["i3", "i4", "i2"]}\n')
    llm = ScriptedLLM()
    m = run_zeroshot(config(toy_dataset, tmp_path, scenario="rerank", candidates_from=str(ranked), n_candidates=2),
                     llm, progress=False)
    u1_candidates = llm.asked[0][-1]["content"].split("next:\n")[1]
    assert u1_candidates.startswith("- Fargo (1996)\nAnswer")  # i4 only: i1 and i2 are u1's history
    assert m["targets_in_candidates"] == 2 and "re-rank 2 candidates from sasrec.jsonl" in m["protocol"]
    ranked.write_text('{"user_id": "u1", "ranked_items": ["i4"]}\n')
    with pytest.raises(LlmrecError, match=r"sasrec\.jsonl: no candidates for 1 of 2 users \(first: u2\)"):
        run_zeroshot(config(toy_dataset, tmp_path, scenario="rerank", candidates_from=str(ranked)), llm,
                     progress=False)


def test_empty_and_refused_answers_are_counted_as_misses(toy_dataset, tmp_path):
    class Flaky(ScriptedLLM):
        def complete(self, conversations, settings, on_answer, users=None):
            on_answer(0, Completion("", 10, 0))  # an empty answer
            on_answer(1, Completion("", error="request refused: prompt too long"))

    m = run_zeroshot(config(toy_dataset, tmp_path), Flaky(), progress=False)
    assert (m["answers_without_items"], m["n_refused_requests"], m["users_evaluated"]) == (2, 1, 2)
    assert m["hit@3"]["value"] == 0.0
    sample = [json.loads(line) for line in (tmp_path / "report" / "samples.jsonl").read_text().splitlines()]
    assert sample[1]["error"] == "request refused: prompt too long"


def test_zero_shot_and_checkpoint_evaluation_sample_the_same_users(tmp_path):
    from llmrec.evaluation.sampling import sample_rows
    from llmrec.prompts.build import PromptBuildConfig, build_prompt_datasets

    ds = synthetic_dataset(tmp_path, n_users=20)
    rows = build_prompt_datasets(PromptBuildConfig(data=str(ds.path), max_train_rows=1), ds)["test"]
    for n, seed in ((5, 0), (5, 1), (12, 3)):  # same n and seed: the same users, so reports pair up
        assert sample_rows(rows, n, seed)["user_id"] == [r["user_id"] for r in sample_users(ds, "test", n, seed)]
    assert len({tuple(sample_rows(rows, 5, s)["user_id"]) for s in range(4)}) > 1  # the seed matters


def test_implicit_feedback_refuses_the_rating_scenario_and_asks_without_ratings(implicit_dataset, tmp_path):
    with pytest.raises(LlmrecError, match=r"--scenario rating needs ratings, and this dataset has none "
                                          r"\(it is implicit feedback\)"):
        run_zeroshot(config(implicit_dataset, tmp_path, scenario="rating"), ScriptedLLM(), progress=False)
    with pytest.raises(LlmrecError, match=r"--template zs-1 needs ratings.*use one of zs-2, zs-4, zs-6"):
        run_zeroshot(config(implicit_dataset, tmp_path, template="zs-1"), ScriptedLLM(), progress=False)
    llm = ScriptedLLM()
    m = run_zeroshot(config(implicit_dataset, tmp_path), llm, progress=False)
    assert m["template"] == "zs-2" and m["hit@1"]["value"] == 0.5  # the first template without ratings
    assert llm.asked[0][-1]["content"] == ("I liked these movies: Toy Story (1995), Heat (1995), {{ 7*7 }}. "
                                           "Recommend 3 other movies I might like. Reply with a numbered list of "
                                           "titles only.")
    llm = ScriptedLLM()
    m = run_zeroshot(config(implicit_dataset, tmp_path, scenario="rerank", output=str(tmp_path / "rr")), llm,
                     progress=False)
    assert m["template"] == "rr-2" and "None" not in llm.asked[0][-1]["content"]


def test_rating_scenario_on_partly_rated_data_asks_only_about_rated_targets(tmp_path):
    ds = synthetic_dataset(tmp_path, n_users=6)
    rows = ds.interactions.to_pylist()
    unrated_targets = {"u0", "u1"}  # their test targets lose their ratings; u2 loses its first history rating
    first_of_u2 = next(n for n, r in enumerate(rows) if r["user_id"] == "u2")
    ratings = [None if (r["split"] == "test" and r["user_id"] in unrated_targets) or n == first_of_u2
               else r["rating"] for n, r in enumerate(rows)]
    inter = ds.interactions.set_column(ds.interactions.column_names.index("rating"), "rating",
                                       pa.array(ratings, pa.float32()))
    pq.write_table(inter, ds.path / "interactions.parquet")
    llm = ScriptedLLM(answer=lambda c: "4")
    m = run_zeroshot(config(ds, tmp_path, scenario="rating"), llm, progress=False)
    assert (m["sampled_users_without_target_rating"], m["users_evaluated"], len(llm.asked)) == (2, 4, 4)
    predictions = [json.loads(line) for line in (tmp_path / "report" / "predictions.jsonl").read_text().splitlines()]
    assert {p["user_id"] for p in predictions} == {"u2", "u3", "u4", "u5"}
    assert all(p["rating"] is not None and p["predicted"] == 4 for p in predictions)
    assert "user_mean_baseline" in m  # u2's mean comes from its rated history items only
    assert not any(word in c[-1]["content"] for c in llm.asked for word in ("nan", "None"))
