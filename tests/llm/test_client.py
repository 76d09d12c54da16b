"""LLMClient: cache, deduplication, failed rows, budget and cost, through a real local HTTP server."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing

import fake_openai  # tests/ is on sys.path (conftest.py)
import pytest
from helpers import llm_config, sampling

from jalign.llm.cache import ResponseCache
from jalign.llm.client import Budget, BudgetExceeded, LLMClient
from jalign.llm.types import Price, Request, Sampling

FakeOpenAIServer = fake_openai.FakeOpenAIServer

KEY_ENV = "JALIGN_TEST_OPENAI_KEY"
KEY = "sk-test-cacheK3y-0a9f7e-never-stored"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.fixture
def server():
    with FakeOpenAIServer(top_logprobs={"A": -0.2, "B": -1.7}) as srv:
        yield srv


def make_client(server, tmp_path, *, price=None, budget=None, **overrides) -> LLMClient:
    fields = {
        "model": "fake-model",
        "backend": "openai",
        "base_url": server.url,
        "api_key_env": KEY_ENV,
        "timeout_s": 5.0,
        "max_retries": 2,
        "retry_base_delay_s": 0.001,
        "max_concurrency": 4,
    } | overrides
    return LLMClient(
        llm_config(**fields), price=price, budget=budget, cache=ResponseCache(tmp_path / "cache.sqlite")
    )


def user(text: str, params: Sampling | None = None) -> Request:
    return Request(({"role": "user", "content": text},), params or sampling())


# -- cache hits and misses -------------------------------------------------------------------------


def test_second_identical_call_makes_no_requests(server, tmp_path):
    requests = [user(f"問題{i}") for i in range(6)]
    first = make_client(server, tmp_path).generate(requests)
    assert server.count == 6
    assert all(g.ok and not g.cached for g in first)

    client = make_client(server, tmp_path)  # a rerun: new client, same cache file
    second = client.generate(requests)
    assert server.count == 6  # zero new HTTP requests
    assert client.usage.cached == 6
    assert client.usage.new_calls == 0
    assert client.usage.usd == 0.0
    assert client.usage.input_tokens == 0  # cached answers are not paid again
    assert client._backend is None  # no backend built, no socket opened
    for a, b in zip(first, second, strict=True):
        assert b.cached
        assert (b.text, b.input_tokens, b.output_tokens, b.finish_reason) == (
            a.text,
            a.input_tokens,
            a.output_tokens,
            a.finish_reason,
        )


def test_choose_is_cached_separately_from_generate(server, tmp_path):
    requests = [user("A か B か"), user("もう一問")]
    first = make_client(server, tmp_path).choose(requests, ["A", "B"])
    assert server.count == 2
    client = make_client(server, tmp_path)
    second = client.choose(requests, ["A", "B"])
    assert server.count == 2
    assert client.usage.cached == 2 and client.usage.new_calls == 0
    assert [c.probs for c in second] == [c.probs for c in first]
    assert [c.mass for c in second] == [c.mass for c in first]
    assert all(c.cached for c in second)
    # same messages, different mode or choices: not the same answer
    client.generate(requests)
    assert server.count == 4
    client.choose(requests, ["B", "A"])
    assert server.count == 6


@pytest.mark.parametrize(
    ("changed_request", "changed_config"),
    [
        (user("q", sampling(seed=1)), {}),
        (user("q", sampling(temperature=0.1)), {}),
        (user("q", sampling(max_tokens=17)), {}),
        (user("q", sampling(stop=("。",))), {}),
        (user("q ", sampling()), {}),
        (Request(({"role": "system", "content": "s"}, {"role": "user", "content": "q"}), sampling()), {}),
        (user("q"), {"model": "another-model"}),
        (user("q"), {"prompt_format": "raw"}),
    ],
    ids=["seed", "temperature", "max_tokens", "stop", "message", "system", "model", "prompt_format"],
)
def test_changes_that_miss_the_cache(server, tmp_path, changed_request, changed_config):
    make_client(server, tmp_path).generate([user("q")])
    assert server.count == 1
    client = make_client(server, tmp_path, **changed_config)
    [gen] = client.generate([changed_request])
    assert server.count == 2
    assert not gen.cached and gen.ok
    assert client.usage.cached == 0 and client.usage.new_calls == 1


def test_settings_that_do_not_change_answers_still_hit(server, tmp_path):
    make_client(server, tmp_path).generate([user("q")])
    client = make_client(server, tmp_path, max_concurrency=1, timeout_s=9.0, max_retries=0)
    [gen] = client.generate([user("q")])
    assert gen.cached
    assert server.count == 1


def test_identical_uncached_requests_are_sent_once(server, tmp_path):
    client = make_client(server, tmp_path)
    requests = [user("same"), user("other"), user("same"), user("same")]
    out = client.generate(requests)
    assert server.count == 2
    assert sorted(fake_openai.prompt_text(r.body) for r in server.requests) == ["other", "same"]
    assert out[0].text == out[2].text == out[3].text != out[1].text
    assert client.usage.requests == 4
    assert client.usage.new_calls == 2
    assert client.usage.cached == 0


def test_partial_cache_sends_only_the_missing(server, tmp_path):
    make_client(server, tmp_path).generate([user("a"), user("b")])
    client = make_client(server, tmp_path)
    out = client.generate([user("a"), user("c"), user("b"), user("d")])
    assert server.count == 4
    assert sorted(fake_openai.prompt_text(r.body) for r in server.requests[2:]) == ["c", "d"]
    assert [g.cached for g in out] == [True, False, True, False]
    assert client.usage.cached == 2 and client.usage.new_calls == 2


def test_an_answer_is_committed_before_its_worker_sends_again(tmp_path):
    """What a `kill -9` can make a rerun repeat is bounded by max_concurrency: a worker takes its next
    request only once its answer is committed. Checked at the server: when a request arrives, every one
    sent before it is committed but for at most max_concurrency - 1 still in flight. From the first
    request on, another writer (a parallel experiment, `jalign cache import`) holds the cache for a
    while, so an answer that only waited in a queue for a writer thread would show as a wider gap."""
    concurrency = 4
    path = tmp_path / "cache.sqlite"
    ResponseCache(path)  # the table exists before the other writer takes the lock
    other = sqlite3.connect(path, check_same_thread=False)
    release = threading.Timer(0.5, other.rollback)
    gaps: list[int] = []

    def fault_for(route, body):  # runs as each request arrives, before it is answered
        if not gaps:
            other.execute("BEGIN IMMEDIATE")  # the other writer's transaction, until `release`
            release.start()
        with closing(sqlite3.connect(path)) as reader:
            committed = reader.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        gaps.append(len(server.requests) - committed)  # sent before this one, not committed
        return None

    try:
        with FakeOpenAIServer(fault_for=fault_for) as server:
            client = make_client(server, tmp_path, max_concurrency=concurrency)
            out = client.generate([user(f"問{i}") for i in range(24)])
    finally:
        if gaps:
            release.join()
        other.close()
    assert all(g.ok for g in out) and len(gaps) == 24
    assert max(gaps) <= concurrency - 1, gaps


# -- failed rows -----------------------------------------------------------------------------------


def test_failed_rows_are_not_cached_and_retried_on_rerun(tmp_path):
    broken = {"bad"}

    def fault_for(path, body):
        return "400" if fake_openai.prompt_text(body) in broken else None

    requests = [user("good1"), user("bad"), user("good2")]
    with FakeOpenAIServer(fault_for=fault_for) as server:
        client = make_client(server, tmp_path)
        out = client.generate(requests)
        assert [g.ok for g in out] == [True, False, True]
        assert out[1].text is None and "400" in out[1].error
        assert client.usage.failed == 1
        assert len(client.cache) == 2

        rerun = make_client(server, tmp_path)
        out = rerun.generate(requests)
        assert server.count == 4  # only the failed row went out again
        assert prompts(server)[-1] == "bad"
        assert [g.ok for g in out] == [True, False, True]
        assert rerun.usage.cached == 2 and rerun.usage.new_calls == 1 and rerun.usage.failed == 1

        broken.clear()  # the server recovers
        out = make_client(server, tmp_path).generate(requests)
        assert server.count == 5
        assert all(g.ok for g in out)
        assert len(client.cache) == 3

        last = make_client(server, tmp_path)
        assert all(g.cached for g in last.generate(requests))
        assert server.count == 5


def test_an_empty_answer_already_in_the_cache_is_asked_again_not_served(server, tmp_path):
    """A cache written before empty answers became failures (or merged from one) may hold "": such an
    entry is a miss, never a successful empty answer, and the new answer replaces it."""
    requests = [user("空の答えが残っている"), user("普通の問題")]
    client = make_client(server, tmp_path)
    client.cache.put_many(
        {
            client.key(r, {"mode": "generate"}): {
                "text": text, "input_tokens": 3, "output_tokens": 0, "finish_reason": "stop"
            }
            for r, text in zip(requests, (" \n", "前の答え"), strict=True)
        }
    )  # fmt: skip
    out = client.generate(requests)
    assert server.count == 1 and prompts(server) == ["空の答えが残っている"]
    assert all(g.ok and g.text.strip() for g in out) and [g.cached for g in out] == [False, True]
    assert client.usage.cached == 1 and client.usage.new_calls == 1
    again = make_client(server, tmp_path).generate(requests)
    assert server.count == 1 and all(g.cached and g.text.strip() for g in again)


def test_failed_choose_rows_are_not_cached(tmp_path):
    with FakeOpenAIServer(top_logprobs={"X": -0.1}) as server:
        client = make_client(server, tmp_path)
        [choice] = client.choose([user("?")], ["A", "B"])
        assert not choice.ok
        assert len(client.cache) == 0
        make_client(server, tmp_path).choose([user("?")], ["A", "B"])
        assert server.count == 2


def prompts(server) -> list[str]:
    return [fake_openai.prompt_text(r.body) for r in server.requests]


# -- budget and cost -------------------------------------------------------------------------------


def test_cost_ledger_is_tokens_times_price(server, tmp_path):
    price = Price(input=3.0, output=15.0)
    budget = Budget()
    client = make_client(server, tmp_path, price=price, budget=budget)
    client.generate([user(f"長めの質問です、番号 {i}。") for i in range(5)])
    client.choose([user("A or B")], ["A", "B"])

    usages = [r.response["usage"] for r in server.requests]
    tokens_in = sum(u["prompt_tokens"] for u in usages)
    tokens_out_generate = sum(u["completion_tokens"] for u in usages[:5])
    assert client.usage.input_tokens == tokens_in
    assert client.usage.output_tokens == tokens_out_generate  # choose counts its prompt only
    expected = (tokens_in * 3.0 + tokens_out_generate * 15.0) / 1e6
    assert client.usage.usd == pytest.approx(expected)
    assert budget.spent_usd == pytest.approx(expected)
    assert client.usage.as_dict()["usd"] == round(expected, 6)


def worst_usd(text: str, max_tokens: int, price: Price) -> float:
    """The budget's worst case of a one-message request, by hand: every UTF-8 byte may be a token,
    plus 8 tokens of chat overhead per message and 8 for the reply; the answer is max_tokens long."""
    tokens_in = len(text.encode("utf-8")) + 8 + 8
    return (tokens_in * price.input + max_tokens * price.output) / 1e6


def actual_usd(usage: dict, price: Price) -> float:
    return (usage["prompt_tokens"] * price.input + usage["completion_tokens"] * price.output) / 1e6


def test_budget_stops_before_the_request_that_could_exceed_it(server, tmp_path):
    price = Price(input=1000.0, output=2000.0)  # USD per 1M tokens: 0.001 / 0.002 per token
    requests = [user(f"q{i}", sampling(max_tokens=4)) for i in range(8)]
    worst = worst_usd("q0", 4, price)
    assert worst == pytest.approx((18 * 1000.0 + 4 * 2000.0) / 1e6)  # 0.026
    budget = Budget(limit_usd=0.04)
    # max_concurrency=1: one request at a time, each admitted only if spent + its worst case fits
    client = make_client(server, tmp_path, price=price, budget=budget, max_concurrency=1)

    with pytest.raises(BudgetExceeded, match="budget"):
        client.generate(requests)

    sent = server.count
    assert 0 < sent < len(requests)
    assert prompts(server) == [f"q{i}" for i in range(sent)]
    costs = [actual_usd(r.response["usage"], price) for r in server.requests]
    assert all(0 < c < worst for c in costs)  # real answers cost less than their reservation
    for k in range(sent):  # every sent request fitted what was spent before it ...
        assert sum(costs[:k]) + worst <= budget.limit_usd
    assert sum(costs) + worst > budget.limit_usd  # ... and the next one did not: why it stopped
    assert budget.spent_usd == pytest.approx(sum(costs))
    assert budget.reserved_usd == 0.0  # every reservation settled
    assert len(client.cache) == sent  # answers already received stay cached

    # raise the budget and rerun: what was answered is free, only the rest is sent
    rerun = make_client(server, tmp_path, price=price, budget=Budget(limit_usd=1.0), max_concurrency=1)
    out = rerun.generate(requests)
    assert all(g.ok for g in out)
    assert server.count == len(requests)
    assert rerun.usage.cached == sent and rerun.usage.new_calls == len(requests) - sent


def test_budget_reserves_the_worst_case_of_every_request_in_flight(tmp_path):
    """Concurrent requests each hold their worst case until answered: with room for two reservations,
    a window of four never has more than two in flight, however cheap their answers turn out to be."""
    price = Price(input=1000.0, output=2000.0)
    worst = worst_usd("q0", 4, price)
    budget = Budget(limit_usd=2.5 * worst)
    with FakeOpenAIServer(delay_s=0.2) as server:
        client = make_client(server, tmp_path, price=price, budget=budget, max_concurrency=4)
        with pytest.raises(BudgetExceeded):
            client.generate([user(f"q{i}", sampling(max_tokens=4)) for i in range(8)])
        first_two = [r.response["usage"] for r in server.requests[:2]]
    # a budget that only counted spending would have let all four start: two answers cost less than one
    # worst case
    assert sum(actual_usd(u, price) for u in first_two) < worst
    assert server.max_in_flight == 2  # the third reservation would pass the limit while two are in flight
    assert budget.spent_usd == pytest.approx(
        sum(actual_usd(r.response["usage"], price) for r in server.requests)
    )
    assert budget.spent_usd <= budget.limit_usd and budget.reserved_usd == 0.0
    assert len(client.cache) == server.count  # the answers in flight when it stopped are kept


def test_a_refused_reservation_lets_the_requests_in_flight_settle_then_spends_the_rest(tmp_path):
    """At concurrency 16 the first refused reservation used to end the stage with a tenth of the cap
    billed, reporting what was spent before the answers in flight settled. A refusal now stops sending,
    lets the requests in flight finish and admits more while the budget still holds one worst case: at
    least 80% of the cap is used, never more than the cap, and the error reports the settled figure."""
    price = Price(input=1000.0, output=2000.0)
    worst = worst_usd("q00", 8, price)  # 0.035; an answer costs about 0.008 of it
    budget = Budget(limit_usd=12 * worst)
    requests = [user(f"q{i:02d}", sampling(max_tokens=8)) for i in range(100)]
    with FakeOpenAIServer(delay_s=0.02) as server:
        client = make_client(server, tmp_path, price=price, budget=budget, max_concurrency=16)
        with pytest.raises(BudgetExceeded) as info:
            client.generate(requests)
    billed = sum(actual_usd(r.response["usage"], price) for r in server.requests)
    assert 0.8 * budget.limit_usd <= billed <= budget.limit_usd
    assert budget.limit_usd - billed < worst  # it ended because one more worst case did not fit
    assert server.count < len(requests) and server.max_in_flight > 1
    assert budget.spent_usd == pytest.approx(billed) and budget.reserved_usd == 0.0
    assert f"spent {billed:.4f} USD with every answer settled" in str(info.value)
    assert len(client.cache) == server.count  # every answer paid for is kept


def test_budget_worst_case_counts_utf8_bytes_not_characters(server, tmp_path):
    """Japanese text is 3 bytes a character; a byte-level tokenizer may make a token of each."""
    price = Price(input=1e6, output=0.0)  # 1 USD per input token
    text = "日本語"  # 3 characters, 9 bytes: worst case 9 + 16 = 25 input tokens
    assert worst_usd(text, 4, price) == pytest.approx(25.0)
    with pytest.raises(BudgetExceeded):
        make_client(server, tmp_path, price=price, budget=Budget(limit_usd=24.99)).generate([user(text)])
    assert server.count == 0
    client = make_client(server, tmp_path, price=price, budget=Budget(limit_usd=25.0))
    [gen] = client.generate([user(text)])
    assert gen.ok and server.count == 1


def test_answers_without_usage_are_charged_their_worst_case(tmp_path):
    """An endpoint that reports no token usage is never free: it is charged its reservation."""

    class NoUsage(FakeOpenAIServer):
        def _answer(self, path, body):
            return {**super()._answer(path, body), "usage": None}

    price = Price(input=1000.0, output=2000.0)
    budget = Budget(limit_usd=1.0)
    with NoUsage() as server:
        client = make_client(server, tmp_path, price=price, budget=budget)
        [gen] = client.generate([user("q0", sampling(max_tokens=4))])
    assert gen.ok and gen.input_tokens == 0
    assert client.usage.usd == pytest.approx(worst_usd("q0", 4, price))
    assert budget.spent_usd == pytest.approx(worst_usd("q0", 4, price))
    assert budget.reserved_usd == 0.0


def test_budget_too_small_for_the_first_request_sends_nothing(server, tmp_path):
    client = make_client(server, tmp_path, price=Price(input=1e6, output=1e6), budget=Budget(limit_usd=0.5))
    with pytest.raises(BudgetExceeded):
        client.generate([user("x")])
    assert server.count == 0


def test_budget_is_shared_across_clients(server, tmp_path):
    price = Price(input=1000.0, output=1000.0)
    assert worst_usd("abc", 4, price) == pytest.approx(0.023)
    assert worst_usd("xxxxx", 10, price) == pytest.approx(0.031)
    budget = Budget(limit_usd=0.032)
    generator = make_client(server, tmp_path, price=price, budget=budget)
    judge = make_client(server, tmp_path, price=price, budget=budget, model="judge-model")
    generator.generate([user("abc", sampling(max_tokens=4))])  # reserves 0.023, spends far less
    assert 0.001 < budget.spent_usd < 0.023
    judged = [user("xxxxx", sampling(max_tokens=10))]  # 0.031: fits an unspent budget of 0.032 ...
    with pytest.raises(BudgetExceeded):
        judge.generate(judged)  # ... but not what the generator left of the shared one
    assert server.count == 1
    alone = make_client(server, tmp_path, price=price, budget=Budget(limit_usd=0.032), model="judge-model")
    assert all(g.ok for g in alone.generate(judged))
    assert server.count == 2


def test_free_models_ignore_the_budget(server, tmp_path):
    client = make_client(server, tmp_path, budget=Budget(limit_usd=0.0))
    assert all(g.ok for g in client.generate([user("free")]))
    assert client.usage.usd == 0.0


# -- secrets ---------------------------------------------------------------------------------------


def test_api_key_never_reaches_the_cache_file(tmp_path):
    def fault_for(path, body):
        return "401" if fake_openai.prompt_text(body) == "unauthorised" else None

    with FakeOpenAIServer(fault_for=fault_for, top_logprobs={"A": -0.1, "B": -0.9}) as server:
        client = make_client(server, tmp_path)
        client.generate([user("秘密はどこ?"), user("unauthorised")])
        client.choose([user("A/B")], ["A", "B"])
        make_client(server, tmp_path, prompt_format="raw").generate([user("raw")])
    assert len(client.cache) == 3
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in server.requests)
    files = sorted(tmp_path.glob("cache.sqlite*"))
    assert files  # the database (and its WAL while connections are open)
    for path in files:
        data = path.read_bytes()
        assert KEY.encode() not in data
        assert KEY_ENV.encode() not in data


def test_a_key_echoed_in_an_answer_is_masked_before_it_is_cached(tmp_path):
    """Every backend alike (the ray and batch backends did it on their own, the openai backend not)."""

    def responder(body):
        return f"your key is {KEY}" if fake_openai.prompt_text(body) == "leak" else "nothing to see"

    with FakeOpenAIServer(responder=responder) as server:
        client = make_client(server, tmp_path)
        leak, fine = client.generate([user("leak"), user("fine")])
    assert (leak.text, fine.text) == ("your key is ***", "nothing to see")
    for path in sorted(tmp_path.glob("cache.sqlite*")):
        assert KEY.encode() not in path.read_bytes()


# -- failed attempts -------------------------------------------------------------------------------


def empty_first_time(prompts: set[str]):
    """A fault_for that answers each of `prompts` empty once (billed), then normally."""
    seen: set[str] = set()

    def fault_for(path, body):
        prompt = fake_openai.prompt_text(body)
        if prompt in prompts and prompt not in seen:
            seen.add(prompt)
            return "empty_content"
        return None

    return fault_for


def test_failed_attempts_are_paid_in_usage_but_not_recorded_in_the_answer(tmp_path):
    """An answer's tokens are its own: the empty attempts billed before it go to usage and cost, not
    into the answer (and its cache entry), so an answer does not depend on the faults met on the way."""
    requests = [user(f"質問{i}") for i in range(6)]
    price = Price(input=1000.0, output=2000.0)
    with FakeOpenAIServer() as server:
        clean = make_client(server, tmp_path / "clean", price=price).generate(requests)
    with FakeOpenAIServer(fault_for=empty_first_time({"質問1", "質問4"})) as server:
        client = make_client(server, tmp_path / "faulty", price=price)
        faulty = client.generate(requests)
        billed = [r.response["usage"] for r in server.requests]
    assert len(billed) == 8 and all(u["completion_tokens"] > 0 for u in billed)

    def record(g):
        return g.text, g.input_tokens, g.output_tokens, g.finish_reason

    assert [record(g) for g in faulty] == [record(g) for g in clean]
    cached = [client.cache.get(client.key(r, {"mode": "generate"})) for r in requests]
    assert [(c["text"], c["input_tokens"], c["output_tokens"]) for c in cached] == [
        (g.text, g.input_tokens, g.output_tokens) for g in clean
    ]
    tokens_in = sum(u["prompt_tokens"] for u in billed)
    tokens_out = sum(u["completion_tokens"] for u in billed)
    assert (client.usage.input_tokens, client.usage.output_tokens) == (tokens_in, tokens_out)
    assert client.usage.usd == pytest.approx((tokens_in * price.input + tokens_out * price.output) / 1e6)
    assert client.budget.spent_usd == pytest.approx(client.usage.usd)
