"""The openai backend against a real OpenAI-compatible HTTP server on 127.0.0.1 (fault injection)."""

from __future__ import annotations

import math

import fake_openai  # tests/ is on sys.path (conftest.py)
import pytest
from helpers import llm_config, sampling

from jalign.llm.cache import ResponseCache
from jalign.llm.client import LLMClient
from jalign.llm.types import Request, Sampling

FakeOpenAIServer = fake_openai.FakeOpenAIServer

KEY_ENV = "JALIGN_TEST_OPENAI_KEY"
KEY = "sk-test-Zq81xVf0-not-a-real-key"
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


def make_client(server, tmp_path, **overrides) -> LLMClient:
    fields = {
        "model": "fake-model",
        "backend": "openai",
        "base_url": server.url,
        "api_key_env": KEY_ENV,
        "timeout_s": 5.0,
        "max_retries": 3,
        "retry_base_delay_s": 0.001,
        "max_concurrency": 4,
    } | overrides
    return LLMClient(llm_config(**fields), cache=ResponseCache(tmp_path / "cache.sqlite"))


def user(text: str, params: Sampling | None = None, system: str | None = None) -> Request:
    messages = ({"role": "system", "content": system},) if system else ()
    return Request((*messages, {"role": "user", "content": text}), params or sampling())


def assert_key_only_in_auth_header(server) -> None:
    assert server.requests
    for rec in server.requests:
        assert rec.headers["authorization"] == f"Bearer {KEY}"
        assert KEY.encode() not in rec.raw
        others = {k: v for k, v in rec.headers.items() if k.lower() != "authorization"}
        assert KEY not in repr(others)


# -- normal generation ---------------------------------------------------------------------------


def test_chat_generate_sends_sampling_and_counts_usage(tmp_path):
    params = sampling(
        temperature=0.3, top_p=0.9, max_tokens=32, seed=7, stop=("\n\n",), repetition_penalty=1.1
    )
    with FakeOpenAIServer() as server:
        client = make_client(server, tmp_path)
        requests = [user(f"質問 {i}", params, system="あなたは日本語で答えます。") for i in range(3)]
        out = client.generate(requests)

        assert len(server.requests) == 3
        assert {r.path for r in server.requests} == {CHAT}
        by_prompt = {r.body["messages"][-1]["content"]: r for r in server.requests}
        for req, gen in zip(requests, out, strict=True):
            rec = by_prompt[req.messages[-1]["content"]]
            body = rec.body
            assert body["messages"] == list(req.messages)
            assert body["model"] == "fake-model"
            assert body["temperature"] == 0.3
            assert body["top_p"] == 0.9
            assert body["max_tokens"] == 32
            assert body["seed"] == 7
            assert body["stop"] == ["\n\n"]
            assert body["repetition_penalty"] == 1.1  # extra_body lands in the JSON body
            assert gen.ok and not gen.cached
            assert gen.text == fake_openai.default_reply(body)
            assert gen.input_tokens == rec.response["usage"]["prompt_tokens"] > 0
            assert gen.output_tokens == rec.response["usage"]["completion_tokens"] > 0
            assert gen.finish_reason == "stop"
        assert_key_only_in_auth_header(server)

    assert client.usage.requests == 3
    assert client.usage.new_calls == 3
    assert client.usage.failed == 0
    assert client.usage.input_tokens == sum(r.response["usage"]["prompt_tokens"] for r in server.requests)
    assert client.usage.output_tokens == sum(
        r.response["usage"]["completion_tokens"] for r in server.requests
    )


def test_defaults_omit_repetition_penalty_and_cap_stop_sequences(tmp_path):
    params = sampling(stop=("a", "b", "c", "d", "e"))
    with FakeOpenAIServer() as server:
        make_client(server, tmp_path).generate([user("x", params)])
    body = server.requests[0].body
    assert "repetition_penalty" not in body
    assert body["stop"] == ["a", "b", "c", "d"]  # the OpenAI API takes at most 4


def test_finish_reason_length_when_max_tokens_reached(tmp_path):
    with FakeOpenAIServer(responder=lambda body: "one two three four five six") as server:
        [gen] = make_client(server, tmp_path).generate([user("count", sampling(max_tokens=3))])
    assert gen.ok
    assert gen.text == "one two three"
    assert gen.finish_reason == "length"
    assert gen.output_tokens == 3


def test_raw_prompt_format_uses_completions_endpoint(tmp_path):
    with FakeOpenAIServer(responder=lambda body: f"続き: {body['prompt'][-3:]}") as server:
        client = make_client(server, tmp_path, prompt_format="raw")
        req = Request(
            ({"role": "system", "content": "例1。"}, {"role": "user", "content": "例2。"}), sampling(seed=3)
        )
        [gen] = client.generate([req])
    [rec] = server.requests
    assert rec.path == COMPLETIONS
    assert rec.body["prompt"] == "例1。\n\n例2。"
    assert "messages" not in rec.body
    assert rec.body["seed"] == 3
    assert gen.ok and gen.text == "続き: 例2。"
    assert gen.input_tokens == rec.response["usage"]["prompt_tokens"] > 0
    assert gen.output_tokens == rec.response["usage"]["completion_tokens"] > 0
    assert client.usage.input_tokens == gen.input_tokens
    assert_key_only_in_auth_header(server)


# -- faults ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "faults",
    [
        ["429"],
        ["500"],
        ["503"],
        ["timeout"],
        ["garbage"],
        ["garbage_json"],
        ["empty_choices"],
        ["429", "500", "timeout"],
    ],
    ids=lambda f: "+".join(f),
)
@pytest.mark.parametrize("prompt_format", ["chat", "raw"])
def test_transient_fault_then_success(tmp_path, faults, prompt_format):
    with FakeOpenAIServer(faults) as server:
        client = make_client(server, tmp_path, prompt_format=prompt_format, timeout_s=0.2, max_concurrency=1)
        [gen] = client.generate([user("retry me")])
    assert gen.ok, gen.error
    assert gen.text == fake_openai.default_reply(server.requests[-1].body)
    assert len(server.requests) == len(faults) + 1  # one attempt per fault, then the success
    assert [r.fault for r in server.requests] == [*faults, None]
    assert gen.input_tokens == server.requests[-1].response["usage"]["prompt_tokens"]
    assert client.usage.failed == 0


def test_retry_after_is_honoured(tmp_path):
    with FakeOpenAIServer(["429:0.3"]) as server:
        [gen] = make_client(server, tmp_path).generate([user("slow down")])
    assert gen.ok
    first, second = server.requests
    # the backoff alone would wait ~1 ms (retry_base_delay_s=0.001): the gap is the server's Retry-After
    assert second.arrived - first.arrived >= 0.29


def test_persistent_500_fails_that_row_only(tmp_path):
    def fault_for(path, body):
        return "500" if fake_openai.prompt_text(body) == "doomed" else None

    with FakeOpenAIServer(fault_for=fault_for) as server:
        client = make_client(server, tmp_path, max_retries=2)
        prompts = ["a", "b", "doomed", "c", "d"]
        out = client.generate([user(p) for p in prompts])

    doomed = out[2]
    assert not doomed.ok
    assert doomed.text is None
    assert "500" in doomed.error
    assert sum(1 for r in server.requests if r.fault == "500") == 3  # 1 try + max_retries
    for prompt, gen in zip(prompts, out, strict=True):
        if prompt != "doomed":
            assert gen.ok and gen.text == fake_openai.default_reply(
                {"messages": [{"role": "user", "content": prompt}]}
            )
    assert len(server.requests) == 3 + 4
    assert client.usage.failed == 1
    assert client.usage.new_calls == 5


@pytest.mark.parametrize("status", ["400", "401", "404"])
def test_client_errors_fail_immediately(tmp_path, status):
    def fault_for(path, body):
        return status if fake_openai.prompt_text(body) == "bad" else None

    with FakeOpenAIServer(fault_for=fault_for) as server:
        client = make_client(server, tmp_path, max_retries=5)
        good, bad = client.generate([user("good"), user("bad")])
    assert good.ok
    assert not bad.ok and bad.text is None
    assert f"HTTP {status}" in bad.error
    assert KEY not in bad.error
    assert sum(1 for r in server.requests if r.fault == status) == 1  # no retries
    assert len(server.requests) == 2


def test_no_api_key_with_base_url_sends_placeholder(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with FakeOpenAIServer() as server:
        [gen] = make_client(server, tmp_path).generate([user("hi")])
    assert gen.ok
    assert server.requests[0].headers["authorization"] == "Bearer EMPTY"


def test_missing_api_key_without_base_url_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    config = llm_config(model="gpt-test", backend="openai", api_key_env=KEY_ENV)
    client = LLMClient(config, cache=ResponseCache(tmp_path / "cache.sqlite"))
    with pytest.raises(RuntimeError, match=KEY_ENV):
        client.generate([user("hi")])


def test_api_key_itself_in_params_is_rejected():
    with pytest.raises(ValueError, match="environment variable"):
        llm_config(model="m", backend="openai", api_key_env=KEY)


# -- concurrency -----------------------------------------------------------------------------------


@pytest.mark.parametrize("max_concurrency", [1, 2, 5])
def test_bounded_concurrency(tmp_path, max_concurrency):
    with FakeOpenAIServer(delay_s=0.03) as server:
        client = make_client(server, tmp_path, max_concurrency=max_concurrency)
        out = client.generate([user(f"q{i}") for i in range(10)])
    assert all(g.ok for g in out)
    assert len(server.requests) == 10
    assert server.max_in_flight == max_concurrency  # reached, never exceeded


# -- choose ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt_format", ["chat", "raw"])
def test_choose_renormalises_top_logprobs(tmp_path, prompt_format):
    top = {"A": -0.1, "B": -2.5, "C": -3.0}
    with FakeOpenAIServer(top_logprobs=top) as server:
        client = make_client(server, tmp_path, prompt_format=prompt_format)
        [choice] = client.choose([user("A or B?", sampling(stop=("\n",), temperature=0.9))], ["A", "B"])
    pa, pb = math.exp(-0.1), math.exp(-2.5)
    assert choice.ok, choice.error
    assert choice.probs == pytest.approx({"A": pa / (pa + pb), "B": pb / (pa + pb)})
    assert sum(choice.probs.values()) == pytest.approx(1.0)
    assert choice.mass == pytest.approx(pa + pb)
    assert choice.best == "A"
    [rec] = server.requests
    assert choice.input_tokens == rec.response["usage"]["prompt_tokens"] > 0
    assert rec.body["max_tokens"] == 1
    assert rec.body["temperature"] == 0.0
    assert "stop" not in rec.body
    if prompt_format == "chat":
        assert rec.path == CHAT
        assert rec.body["logprobs"] is True
        assert rec.body["top_logprobs"] == 20
    else:
        assert rec.path == COMPLETIONS
        assert rec.body["logprobs"] == 20
    assert_key_only_in_auth_header(server)


@pytest.mark.parametrize("prompt_format", ["chat", "raw"])
def test_choose_maps_token_variants_onto_choices(tmp_path, prompt_format):
    top = {" A": -0.5, "B": -1.0, "[A": -2.0, "A.": -3.0, "「B」": -3.5, "Hmm": -4.0}
    with FakeOpenAIServer(top_logprobs=top) as server:
        [choice] = make_client(server, tmp_path, prompt_format=prompt_format).choose([user("?")], ["A", "B"])
    pa = math.exp(-0.5) + math.exp(-2.0) + math.exp(-3.0)
    pb = math.exp(-1.0) + math.exp(-3.5)
    assert choice.ok
    assert choice.mass == pytest.approx(pa + pb)
    assert choice.probs == pytest.approx({"A": pa / (pa + pb), "B": pb / (pa + pb)})


def test_choose_first_piece_of_longer_choice(tmp_path):
    # a tokenizer may split "はい" / "いいえ": the unique first piece counts for its choice
    top = {"は": -0.2, "いい": -1.5, "x": -2.0}
    with FakeOpenAIServer(top_logprobs=top) as server:
        [choice] = make_client(server, tmp_path).choose([user("?")], ["はい", "いいえ"])
    ph, pi = math.exp(-0.2), math.exp(-1.5)
    assert choice.probs == pytest.approx({"はい": ph / (ph + pi), "いいえ": pi / (ph + pi)})


def test_choose_without_any_choice_in_top_logprobs_is_an_error(tmp_path):
    with FakeOpenAIServer(top_logprobs={"X": -0.1, "Y": -1.0}) as server:
        client = make_client(server, tmp_path)
        [choice] = client.choose([user("?")], ["A", "B"])
    assert not choice.ok
    assert choice.probs is None and choice.best is None
    assert "A" in choice.error and "B" in choice.error
    assert len(server.requests) == 1  # a valid answer: not retried
    assert client.usage.failed == 1


@pytest.mark.parametrize("faults", [["no_logprobs"], ["empty_choices"], ["500", "garbage"]], ids="+".join)
def test_choose_retries_malformed_answers(tmp_path, faults):
    with FakeOpenAIServer(faults, top_logprobs={"A": -0.3, "B": -1.4}) as server:
        [choice] = make_client(server, tmp_path).choose([user("?")], ["A", "B"])
    assert choice.ok, choice.error
    assert choice.best == "A"
    assert len(server.requests) == len(faults) + 1


def test_whitespace_only_answer_is_a_failure_not_a_success(tmp_path):
    # the parse the Batch API backend shares: an empty answer is malformed (retried), never cached
    with FakeOpenAIServer(responder=lambda body: " \n ") as server:
        client = make_client(server, tmp_path, max_retries=1)
        [gen] = client.generate([user("x")])
    assert not gen.ok and gen.text is None and "empty answer" in gen.error
    assert len(server.requests) == 2
    assert len(client.cache) == 0


def test_one_slow_answer_holds_one_slot_not_a_chunk(tmp_path):
    """One sliding window: while a slow request holds one slot, the other slot sends all the rest.
    The slow answer is held until the 12 others have arrived (at most 10 s): with chunks (even of
    4 x max_concurrency, as before) the rest would wait for the slow answer instead."""
    import threading

    lock, fast_seen, all_fast = threading.Lock(), [], threading.Event()

    def reply(body):
        if fake_openai.prompt_text(body) == "slow":
            all_fast.wait(timeout=10)
        else:
            with lock:
                fast_seen.append(fake_openai.prompt_text(body))
                if len(fast_seen) == 12:
                    all_fast.set()
        return fake_openai.default_reply(body)

    with FakeOpenAIServer(responder=reply) as server:
        client = make_client(server, tmp_path, max_concurrency=2, timeout_s=20.0)
        out = client.generate([user("slow"), *(user(f"fast{i}") for i in range(12))])
    assert all(g.ok for g in out)
    assert all_fast.is_set()  # all 12 arrived while the slow one held its slot
    assert len(server.requests) == 13 and server.max_in_flight == 2


def test_empty_or_whitespace_answers_are_retried(tmp_path):
    replies = iter(["", "  \n\t", "本当の答え"])
    with FakeOpenAIServer(responder=lambda body: next(replies)) as server:
        client = make_client(server, tmp_path, max_concurrency=1)
        [gen] = client.generate([user("答えて")])
    assert gen.ok and gen.text == "本当の答え"
    assert len(server.requests) == 3
    assert client.usage.failed == 0 and len(client.cache) == 1


def test_an_answer_that_stays_empty_is_a_failure_and_not_cached(tmp_path):
    with FakeOpenAIServer(responder=lambda body: " ") as server:
        client = make_client(server, tmp_path, max_retries=1)
        [gen] = client.generate([user("答えて")])
    assert not gen.ok and gen.text is None
    assert gen.error.startswith("empty answer")
    assert len(server.requests) == 2  # 1 try + max_retries
    assert len(client.cache) == 0 and client.usage.failed == 1


def test_a_key_echoed_by_the_server_is_redacted_in_the_error(tmp_path):
    class EchoingServer(FakeOpenAIServer):
        def _send_error(self, h, status, message, headers=None):
            super()._send_error(
                h, status, f"{message}: bad credentials {h.headers['Authorization']}", headers
            )

    with EchoingServer(["401"]) as server:
        [gen] = make_client(server, tmp_path).generate([user("x")])
    assert not gen.ok
    assert "bad credentials Bearer ***" in gen.error
    assert KEY not in gen.error


@pytest.mark.parametrize("mode", ["generate", "choose"])
def test_backend_reports_each_answer_once_and_admits_before_sending(tmp_path, mode):
    """The backend protocol: `admit(i)` before request i goes out, `on_result(i, answer)` exactly once."""
    from jalign.llm.openai_backend import OpenAIBackend

    events: list[tuple[str, int]] = []
    with FakeOpenAIServer(delay_s=0.01) as server:
        config = llm_config(
            model="m", backend="openai", base_url=server.url, api_key_env=KEY_ENV, max_concurrency=3
        )
        backend = OpenAIBackend(config)
        requests = [user(f"q{i}") for i in range(7)]
        on_result = lambda i, answer: events.append(("result", i))  # noqa: E731
        admit = lambda i: events.append(("admit", i))  # noqa: E731
        if mode == "generate":
            out = backend.generate(requests, on_result, admit)
        else:
            out = backend.choose(requests, ("A", "B"), on_result, admit)
    assert all(a.ok for a in out) and len(out) == 7
    results = [i for kind, i in events if kind == "result"]
    assert sorted(results) == list(range(7))  # each once
    for i in range(7):
        assert events.index(("admit", i)) < events.index(("result", i))
    assert len(server.requests) == 7


def test_backend_stops_sending_when_admit_refuses(tmp_path):
    from jalign.llm.client import BudgetExceeded
    from jalign.llm.openai_backend import OpenAIBackend

    def admit(i: int) -> None:
        if i >= 3:
            raise BudgetExceeded("no budget left")

    answered: list[int] = []
    with FakeOpenAIServer() as server:
        config = llm_config(
            model="m", backend="openai", base_url=server.url, api_key_env=KEY_ENV, max_concurrency=1
        )
        with pytest.raises(BudgetExceeded, match="no budget left"):
            OpenAIBackend(config).generate(
                [user(f"q{i}") for i in range(6)], lambda i, a: answered.append(i), admit
            )
    assert answered == [0, 1, 2]  # what was sent is still reported
    assert len(server.requests) == 3
