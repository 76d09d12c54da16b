"""The openai_batch backend through the real `openai` SDK, the real LLMClient and ResponseCache, against
the fake server's Batch API (/v1/files, /v1/batches) on 127.0.0.1."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import fake_openai  # tests/ is on sys.path (conftest.py)
import openai
import pytest
from helpers import llm_config
from helpers import sampling as make_sampling

from jalign.llm.cache import ResponseCache
from jalign.llm.client import BudgetExceeded, LLMClient
from jalign.llm.openai_batch_backend import BatchState, OpenAIBatchBackend
from jalign.llm.types import BatchSettings, LLMConfig, Request, Sampling

FakeOpenAIServer = fake_openai.FakeOpenAIServer
BatchPlan = fake_openai.BatchPlan

KEY_ENV = "JALIGN_TEST_OPENAI_KEY"
KEY = "sk-test-Bt77qLw2-not-a-real-key"
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def env(monkeypatch, tmp_path):
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("JALIGN_LLM_CACHE", str(tmp_path / "llm" / "cache.sqlite"))


BATCH = {"poll_interval_s": 0.01, "max_requests": 50000, "completion_window": "24h", "price_factor": 0.5}


def config(server, batch_max_requests: int | None = None, **overrides) -> LLMConfig:
    batch = BatchSettings(**(BATCH | ({"max_requests": batch_max_requests} if batch_max_requests else {})))
    fields = {
        "model": "fake-model",
        "backend": "openai_batch",
        "base_url": server.url,
        "api_key_env": KEY_ENV,
        "timeout_s": 5.0,
        "max_retries": 2,
        "retry_base_delay_s": 0.001,
        "batch": batch,
    } | overrides
    return llm_config(**fields)


def make_client(server, **overrides) -> LLMClient:
    return LLMClient(config(server, **overrides), cache=ResponseCache())  # the cache path from the env


def user(text: str, sampling: Sampling | None = None) -> Request:
    return Request(({"role": "user", "content": text},), sampling or make_sampling())


def state_rows(tmp_path) -> list[dict]:
    state = BatchState(tmp_path / "llm" / "openai-batches.sqlite")
    try:
        return state.rows()
    finally:
        state.close()


def uploaded_lines(server) -> list[list[dict]]:
    """The JSONL lines of every uploaded batch file, per upload."""
    files = [f for f in server.files.values() if f.purpose == "batch"]
    return [[json.loads(line) for line in f.data.decode().splitlines()] for f in files]


def reply(prompt: str) -> str:
    return fake_openai.default_reply({"messages": [{"role": "user", "content": prompt}]})


# -- round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt_format", ["chat", "raw"])
def test_generate_round_trip_sends_the_online_bodies(tmp_path, prompt_format):
    sampling = make_sampling(
        temperature=0.3, top_p=0.9, max_tokens=32, seed=7, stop=("\n\n",), repetition_penalty=1.1
    )
    requests = [user(f"質問 {i}", sampling) for i in range(4)]
    with FakeOpenAIServer() as server:
        server.default_plan = BatchPlan(polls=3)
        client = make_client(server, prompt_format=prompt_format)
        out = client.generate(requests)
        # the same requests through the online backend: the bodies must be identical
        online = LLMClient(
            config(server, backend="openai", prompt_format=prompt_format),
            cache=ResponseCache(tmp_path / "online.sqlite"),
        )
        online.generate(requests)

    url = COMPLETIONS if prompt_format == "raw" else CHAT
    online_bodies = [r.body for r in server.calls(url)]
    [lines] = uploaded_lines(server)
    assert sorted(json.dumps(x["body"], sort_keys=True) for x in lines) == sorted(
        json.dumps(b, sort_keys=True) for b in online_bodies
    )
    assert {(x["method"], x["url"]) for x in lines} == {("POST", url)}
    assert len({x["custom_id"] for x in lines}) == 4
    assert len(server.uploads()) == 1 and len(server.creates()) == 1
    assert server.creates()[0].body["endpoint"] == url
    assert server.creates()[0].body["completion_window"] == "24h"
    assert len(server.polls()) == 4  # three in progress, then completed

    [batch] = server.batches.values()
    answers = {
        json.loads(line)["custom_id"]: json.loads(line)["response"]["body"]
        for line in server.files[batch.output_file_id].data.decode().splitlines()
    }
    for request, gen, line in zip(requests, out, lines, strict=True):
        # lines are in request order; each answer is found by its custom_id
        assert request.messages[-1]["content"] in json.dumps(line["body"], ensure_ascii=False)
        answer = answers[line["custom_id"]]
        assert gen.ok and not gen.cached
        assert gen.text == fake_openai.default_reply(line["body"])
        assert gen.input_tokens == answer["usage"]["prompt_tokens"] > 0
        assert gen.output_tokens == answer["usage"]["completion_tokens"] > 0
        assert gen.finish_reason == "stop"
    assert client.usage.new_calls == 4 and client.usage.failed == 0
    assert client.usage.input_tokens == sum(a["usage"]["prompt_tokens"] for a in answers.values())
    assert client.usage.output_tokens == sum(a["usage"]["completion_tokens"] for a in answers.values())
    assert len(ResponseCache()) == 4
    assert [(r["status"], r["done"]) for r in state_rows(tmp_path)] == [("completed", 1)]


@pytest.mark.parametrize("prompt_format", ["chat", "raw"])
def test_choose_round_trip(tmp_path, prompt_format):
    top = {" A": -0.5, "B": -1.0, "[A": -2.0, "Hmm": -4.0}
    with FakeOpenAIServer(top_logprobs=top) as server:
        client = make_client(server, prompt_format=prompt_format)
        out = client.choose(
            [user("A or B?", make_sampling(stop=("\n",), temperature=0.9)), user("again?")], ["A", "B"]
        )
    pa, pb = math.exp(-0.5) + math.exp(-2.0), math.exp(-1.0)
    for choice in out:
        assert choice.ok, choice.error
        assert choice.probs == pytest.approx({"A": pa / (pa + pb), "B": pb / (pa + pb)})
        assert choice.mass == pytest.approx(pa + pb)
        assert choice.input_tokens > 0
    [lines] = uploaded_lines(server)
    for line in lines:
        body = line["body"]
        assert body["max_tokens"] == 1 and body["temperature"] == 0.0 and "stop" not in body
        if prompt_format == "chat":
            assert line["url"] == CHAT and body["logprobs"] is True and body["top_logprobs"] == 20
        else:
            assert line["url"] == COMPLETIONS and body["logprobs"] == 20
    assert len(ResponseCache()) == 2


def test_choose_without_any_choice_fails_the_row(tmp_path):
    with FakeOpenAIServer(top_logprobs={"X": -0.1}) as server:
        client = make_client(server)
        [choice] = client.choose([user("?")], ["A", "B"])
    assert not choice.ok and "A" in choice.error
    assert len(ResponseCache()) == 0


def test_results_map_back_by_custom_id_when_output_is_shuffled(tmp_path):
    prompts = [f"p{i}" for i in range(20)]
    with FakeOpenAIServer() as server:
        server.default_plan = BatchPlan(shuffle=True)
        out = make_client(server).generate([user(p) for p in prompts])
        [batch] = server.batches.values()
        order = [
            json.loads(x)["custom_id"] for x in server.files[batch.output_file_id].data.decode().splitlines()
        ]
    [lines] = uploaded_lines(server)
    assert order != [x["custom_id"] for x in lines]  # really shuffled
    assert [g.text for g in out] == [reply(p) for p in prompts]


def test_identical_requests_get_distinct_custom_ids(tmp_path):
    # the client sends identical requests once; the backend alone must still map each one back
    with FakeOpenAIServer() as server:
        backend = OpenAIBatchBackend(config(server))
        seen: dict[int, str] = {}
        out = backend.generate(
            [user("same"), user("other"), user("same")], lambda i, g: seen.update({i: g.text})
        )
    [lines] = uploaded_lines(server)
    ids = [x["custom_id"] for x in lines]
    assert len(set(ids)) == 3 and ids[0].rsplit("-", 1)[0] == ids[2].rsplit("-", 1)[0]
    assert [g.text for g in out] == [reply("same"), reply("other"), reply("same")]
    assert seen == {0: reply("same"), 1: reply("other"), 2: reply("same")}  # on_result once per request


# -- failures --------------------------------------------------------------------------------------


def test_partly_failed_batch_fails_rows_caches_successes_and_resends_only_failures(tmp_path):
    faults = {"p1": "500", "p2": "line_error", "p3": "empty_choices", "p4": None}
    prompts = ["p0", "p1", "p2", "p3", "p4", "p5"]

    def responder(body):
        return "   \n" if fake_openai.prompt_text(body) == "p4" else fake_openai.default_reply(body)

    with FakeOpenAIServer(responder=responder) as server:
        server.line_fault = lambda url, body: faults.get(fake_openai.prompt_text(body))
        client = make_client(server)
        out = client.generate([user(p) for p in prompts])
        assert [g.ok for g in out] == [True, False, False, False, False, True]
        assert "HTTP 500" in out[1].error and "injected fault 500" in out[1].error
        assert "line_error" in out[2].error
        assert "malformed response" in out[3].error
        assert "empty answer" in out[4].error  # whitespace-only is a failure, never an answer
        assert all(g.text is None for g in out if not g.ok)
        assert client.usage.failed == 4
        assert len(ResponseCache()) == 2
        assert [r["done"] for r in state_rows(tmp_path)] == [1]

        # the rerun sends only the four failures, in a new batch
        server.line_fault = None
        server.responder = fake_openai.default_reply
        again = make_client(server).generate([user(p) for p in prompts])
    assert all(g.ok for g in again)
    assert [g.cached for g in again] == [True, False, False, False, False, True]
    first, second = uploaded_lines(server)
    assert len(first) == 6
    assert [x["body"]["messages"][0]["content"] for x in second] == ["p1", "p2", "p3", "p4"]
    assert len(ResponseCache()) == 6


@pytest.mark.parametrize("in_error_file", [False, True])
def test_expired_batch_delivers_what_was_answered(tmp_path, in_error_file):
    prompts = [f"e{i}" for i in range(5)]
    with FakeOpenAIServer() as server:
        server.default_plan = BatchPlan(outcome="expired", answered=2, expired_in_error_file=in_error_file)
        client = make_client(server)
        out = client.generate([user(p) for p in prompts])
    assert [g.text for g in out[:2]] == [reply("e0"), reply("e1")]
    for gen in out[2:]:
        assert not gen.ok and "expired" in gen.error
    assert len(ResponseCache()) == 2
    assert [(r["status"], r["done"]) for r in state_rows(tmp_path)] == [("expired", 1)]


def test_failed_batch_fails_every_row_with_its_errors(tmp_path):
    errors = [{"code": "token_limit_exceeded", "line": None, "message": "enqueued token limit reached"}]
    with FakeOpenAIServer() as server:
        server.default_plan = BatchPlan(outcome="failed", errors=errors)
        client = make_client(server)
        out = client.generate([user("a"), user("b")])
    for gen in out:
        assert not gen.ok and "token_limit_exceeded" in gen.error and "enqueued token limit" in gen.error
    assert len(ResponseCache()) == 0
    assert [(r["status"], r["done"]) for r in state_rows(tmp_path)] == [("failed", 1)]


def test_invalid_batch_file_fails_validation(tmp_path):
    # the fake validates like OpenAI: one model per file; a hand-made mixed file must fail the batch
    with FakeOpenAIServer() as server:
        sdk = openai.OpenAI(api_key=KEY, base_url=server.url)
        lines = [
            {"custom_id": str(i), "method": "POST", "url": CHAT, "body": {"model": m, "messages": []}}
            for i, m in enumerate(["a", "b"])
        ]
        data = "".join(json.dumps(x) + "\n" for x in lines).encode()
        file = sdk.files.create(file=("x.jsonl", data), purpose="batch")
        batch = sdk.batches.create(input_file_id=file.id, endpoint=CHAT, completion_window="24h")
        assert batch.status == "validating"
        batch = sdk.batches.retrieve(batch.id)
    assert batch.status == "failed" and batch.errors.data[0].code == "mixed_models"


def test_cancelled_batch_delivers_finished_rows_and_fails_the_rest(tmp_path):
    prompts = [f"c{i}" for i in range(4)]
    with FakeOpenAIServer() as server:
        server.default_plan = BatchPlan(polls=10**6, answered=1)
        client = make_client(server)
        result: list = []
        worker = threading.Thread(
            target=lambda: result.extend(client.generate([user(p) for p in prompts])), daemon=True
        )
        worker.start()
        deadline = time.monotonic() + 30
        while not server.polls() and time.monotonic() < deadline:
            time.sleep(0.01)
        sdk = openai.OpenAI(api_key=KEY, base_url=server.url)
        [batch_id] = server.batches
        assert sdk.batches.cancel(batch_id).status == "cancelling"
        worker.join(timeout=30)
    assert result[0].ok and result[0].text == reply("c0")  # paid for: delivered and cached
    for gen in result[1:]:
        assert not gen.ok and "cancelled" in gen.error
    assert len(ResponseCache()) == 1


def test_transient_errors_are_retried(tmp_path):
    poll_faults = iter(["500", "503"])

    def fault_for(path, body):
        if path.startswith("/v1/batches/"):
            return next(poll_faults, None)
        return None

    # the upload gets 503, its retry 429, then succeeds; the first two polls get 500 and 503
    with FakeOpenAIServer(["503", "429"], fault_for=fault_for) as server:
        [gen] = make_client(server).generate([user("x")])
    assert gen.ok and gen.text == reply("x")
    assert [r.fault for r in server.uploads()] == ["503", "429", None]
    assert [r.fault for r in server.polls()][:3] == ["500", "503", None]
    assert len(server.creates()) == 1


def test_failed_upload_fails_the_rows_and_a_rerun_sends_them(tmp_path):
    with FakeOpenAIServer(fault_for=lambda path, body: "400" if path == "/v1/files" else None) as server:
        [gen] = make_client(server).generate([user("x")])
        assert not gen.ok and "could not submit" in gen.error and "HTTP 400" in gen.error
        assert server.creates() == [] and state_rows(tmp_path) == []
        server.fault_for = None
        [gen] = make_client(server).generate([user("x")])
    assert gen.ok


# -- never twice -----------------------------------------------------------------------------------


def test_rerun_after_success_sends_nothing(tmp_path):
    requests = [user(f"r{i}") for i in range(3)]
    with FakeOpenAIServer() as server:
        make_client(server).generate(requests)
        sent = server.count
        client = make_client(server)
        out = client.generate(requests)
        assert server.count == sent
    assert all(g.cached for g in out)
    assert client.usage.new_calls == 0


def test_online_and_batch_share_the_cache(tmp_path):
    with FakeOpenAIServer() as server:
        online = LLMClient(config(server, backend="openai"), cache=ResponseCache())
        online.generate([user("shared")])
        sent = server.count
        [gen] = make_client(server).generate([user("shared")])
        assert server.count == sent
    assert gen.cached and gen.text == reply("shared")


CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[3])
    from helpers import llm_config, sampling
    from jalign.llm.client import LLMClient
    from jalign.llm.types import Request
    from jalign.llm.types import BatchSettings
    config = llm_config(model="fake-model", backend="openai_batch", base_url=sys.argv[1], api_key_env=sys.argv[2],
                        batch=BatchSettings(poll_interval_s=0.01, max_requests=50000, completion_window="24h",
                                            price_factor=0.5))
    requests = [Request(({"role": "user", "content": f"k{i}"},), sampling()) for i in range(5)]
    LLMClient(config).generate(requests)
    print("finished")
    """
)


def test_resume_after_sigkill_while_polling_creates_and_uploads_once(tmp_path):
    prompts = [f"k{i}" for i in range(5)]
    with FakeOpenAIServer() as server:
        server.default_plan = BatchPlan(polls=10**9)  # runs "forever" while the first process polls
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(tmp_path / "child.log", "wb") as log:
            child = subprocess.Popen(
                [sys.executable, "-c", CHILD, server.url, KEY_ENV, str(REPO / "tests")],
                env=env,
                stdout=log,
                stderr=log,
            )
            try:
                deadline = time.monotonic() + 60
                while len(server.polls()) < 3 and child.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert len(server.polls()) >= 3, (tmp_path / "child.log").read_text()
            finally:
                os.kill(child.pid, signal.SIGKILL)
                child.wait()
        assert child.returncode == -signal.SIGKILL
        [row] = state_rows(tmp_path)
        assert row["batch_id"] in server.batches and row["done"] == 0
        assert len(ResponseCache()) == 0

        server.batches[row["batch_id"]].polls = 2  # the batch finishes while nobody watches
        server.default_plan = BatchPlan()  # (a wrongly created second batch would finish too, and show)
        client = make_client(server)
        out = client.generate([user(p) for p in prompts])
    assert [g.text for g in out] == [reply(p) for p in prompts]
    assert len(server.uploads()) == 1 and len(server.creates()) == 1
    assert [(r["batch_id"], r["done"]) for r in state_rows(tmp_path)] == [(row["batch_id"], 1)]
    assert len(ResponseCache()) == 5


def test_resume_with_changed_requests_keeps_the_running_batch(tmp_path):
    # the first run loses the connection while polling (its rows fail, the batch runs on); the rerun
    # needs some of that batch's requests and a new one: it resumes the batch and sends only the new one
    def outage(path, body):
        return "503" if path.startswith("/v1/batches/") else None

    with FakeOpenAIServer(fault_for=outage) as server:
        first = make_client(server).generate([user("a"), user("b"), user("c")])
        assert all(not g.ok and "rerun to resume" in g.error for g in first)
        assert [r["done"] for r in state_rows(tmp_path)] == [0]
        server.fault_for = None
        out = make_client(server).generate([user("b"), user("d"), user("a")])
    assert [g.text for g in out] == [reply("b"), reply("d"), reply("a")]
    _, second_lines = uploaded_lines(server)
    assert [x["body"]["messages"][0]["content"] for x in second_lines] == ["d"]
    assert len(server.creates()) == 2
    assert [r["done"] for r in state_rows(tmp_path)] == [1, 1]


def test_lost_create_response_is_found_not_created_again(tmp_path):
    lost = iter(["lost_response"])

    def fault_for(path, body):
        return next(lost, None) if path == "/v1/batches" and body else None

    with FakeOpenAIServer(fault_for=fault_for) as server:
        [gen] = make_client(server).generate([user("x")])
    assert gen.ok
    assert len(server.creates()) == 1 and len(server.batches) == 1  # the retry listed, found it
    assert any(r.method == "GET" and r.path == "/v1/batches" for r in server.requests)


def test_create_failing_transiently_resumes_from_the_uploaded_file(tmp_path):
    def fault_for(path, body):
        return "503" if path == "/v1/batches" and body else None

    with FakeOpenAIServer(fault_for=fault_for) as server:
        [gen] = make_client(server).generate([user("x")])
        assert not gen.ok and "503" in gen.error
        [row] = state_rows(tmp_path)
        assert row["file_id"] and row["batch_id"] is None and row["done"] == 0
        server.fault_for = None
        [gen] = make_client(server).generate([user("x")])
    assert gen.ok
    assert len(server.uploads()) == 1
    assert [r.fault for r in server.creates()] == ["503"] * 3 + [None]


# -- splitting -------------------------------------------------------------------------------------


def test_splits_above_batch_max_requests(tmp_path):
    prompts = [f"s{i}" for i in range(7)]
    with FakeOpenAIServer() as server:
        out = make_client(server, batch_max_requests=3).generate([user(p) for p in prompts])
    assert [len(lines) for lines in uploaded_lines(server)] == [3, 3, 1]
    assert len(server.creates()) == 3
    assert [g.text for g in out] == [reply(p) for p in prompts]
    assert [r["done"] for r in state_rows(tmp_path)] == [1, 1, 1]


def test_splits_above_the_file_size_limit(tmp_path):
    prompts = [f"b{i}" * 50 for i in range(5)]
    with FakeOpenAIServer() as server:
        line_bytes = len(json.dumps({"x": prompts[0]})) + 250
        backend = OpenAIBatchBackend(config(server), max_file_bytes=2 * line_bytes)
        out = backend.generate([user(p) for p in prompts])
    sizes = [len(f.data) for f in server.files.values() if f.purpose == "batch"]
    assert len(sizes) >= 3 and max(sizes) <= 2 * line_bytes
    assert [g.text for g in out] == [reply(p) for p in prompts]


# -- budget and secrets ----------------------------------------------------------------------------


def test_admit_raising_uploads_nothing(tmp_path):
    def admit(i):
        raise BudgetExceeded("over budget")

    with FakeOpenAIServer() as server:
        backend = OpenAIBatchBackend(config(server))
        with pytest.raises(BudgetExceeded):
            backend.generate([user("a"), user("b")], None, admit)
    assert server.requests == []
    assert state_rows(tmp_path) == []


def test_admit_raising_at_the_second_batch_collects_the_first(tmp_path):
    admitted: list[int] = []

    def admit(i):
        if i >= 2:
            raise BudgetExceeded("over budget")
        admitted.append(i)

    delivered: dict[int, str] = {}
    with FakeOpenAIServer() as server:
        backend = OpenAIBatchBackend(config(server, batch_max_requests=2))
        with pytest.raises(BudgetExceeded):
            backend.generate(
                [user(p) for p in ["a", "b", "c", "d"]], lambda i, g: delivered.update({i: g.text}), admit
            )
    assert admitted == [0, 1]
    assert delivered == {0: reply("a"), 1: reply("b")}  # already paid for: collected before re-raising
    assert len(server.uploads()) == 1 and len(server.creates()) == 1


def test_echoed_api_key_never_reaches_state_cache_or_results(tmp_path, caplog):
    def responder(body):
        return f"echo {KEY}" if fake_openai.prompt_text(body) == "leak" else fake_openai.default_reply(body)

    with FakeOpenAIServer(responder=responder) as server:
        server.echo_auth = True
        server.line_fault = lambda url, body: {"bad": "400", "err": "line_error"}.get(
            fake_openai.prompt_text(body)
        )
        client = make_client(server)
        out = client.generate([user("fine"), user("bad"), user("err"), user("leak")])
        server.default_plan = BatchPlan(outcome="failed")
        failed = client.generate([user("doomed")])
    assert out[0].ok and out[3].ok
    assert out[3].text == "echo ***"
    assert not out[1].ok and not out[2].ok and not failed[0].ok
    assert KEY in server.files[server.batches["batch_fake1"].error_file_id].data.decode()  # it was echoed
    assert KEY in json.dumps(server.batches["batch_fake2"].errors)
    for gen in [*out, *failed]:
        assert KEY not in (gen.text or "") + (gen.error or "")
    assert "***" in out[1].error and "***" in failed[0].error
    for path in (tmp_path / "llm").iterdir():  # state, cache and their WAL files
        assert KEY.encode() not in path.read_bytes(), path
    for lines in uploaded_lines(server):
        assert KEY not in json.dumps(lines)
    assert KEY not in caplog.text
    for rec in server.requests:
        assert rec.headers["authorization"] == f"Bearer {KEY}"
        assert KEY.encode() not in rec.raw


def test_missing_api_key_without_base_url_names_the_variable(monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(RuntimeError, match=KEY_ENV):
        OpenAIBatchBackend(
            llm_config(
                model="gpt-test", backend="openai_batch", api_key_env=KEY_ENV, batch=BatchSettings(**BATCH)
            )
        )


def test_batch_price_factor_halves_the_listed_price():
    from jalign.llm.types import Price
    from jalign.llm_stage import price_for

    listed = Price(input=0.2, output=0.8)
    batch = price_for(
        "r", llm_config(model="gpt-x", backend="openai_batch", batch=BatchSettings(**BATCH), price=listed)
    )
    online = price_for("r", llm_config(model="gpt-x", backend="openai", price=listed))
    assert (online.input, online.output) == (0.2, 0.8)
    assert (batch.input, batch.output) == pytest.approx((0.1, 0.4))
