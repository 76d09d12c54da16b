"""jalign.llm_stage: the price guard (no uncapped spending), the shared budget and the metrics every LLM
stage writes."""

from __future__ import annotations

import fake_openai  # tests/ is on sys.path (conftest.py)
import pytest
import yaml
from helpers import llm_config, sampling

from jalign.config import ConfigError
from jalign.llm.client import BudgetExceeded
from jalign.llm.types import LLMConfig, Price, RaySettings, Request
from jalign.llm_stage import StageRun, is_local_url, price_for, usage_metrics
from jalign.stage import FailureRateExceeded

KEY_ENV = "JALIGN_TEST_STAGE_KEY"


def params(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({}), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8000/v1", True),
        ("http://localhost:8000/v1", True),
        ("http://[::1]:8000/v1", True),
        ("http://127.5.6.7/v1", True),
        ("http://gpu-box:8000/v1", False),
        ("https://api.openai.com/v1", False),
        ("http://10.0.0.3:8000/v1", False),
        (None, False),
        ("", False),
    ],
)
def test_is_local_url(url, local):
    assert is_local_url(url) is local


def test_a_remote_model_without_a_price_is_refused_before_any_request(tmp_path):
    remote = llm_config(model="gpt-4o", backend="openai", base_url="http://gpu-box:8000/v1", name="gpt")
    with pytest.raises(ConfigError) as info:
        price_for("judge.judge", remote)
    message = str(info.value)
    assert message.startswith("judge.judge: model 'gpt-4o' has no price")
    assert "set llms.gpt.price: {input: " in message and "{input: 0, output: 0} for a self-hosted" in message
    # on the OpenAI API itself too
    with pytest.raises(ConfigError, match="has no price"):
        price_for("r", llm_config(model="gpt-4o", backend="openai"))


def test_prices_local_hardware_and_free_endpoints():
    priced = llm_config(model="gpt-4o", backend="openai", price=Price(input=2.5, output=10.0))
    assert price_for("r", priced) == Price(input=2.5, output=10.0)
    assert price_for("r", llm_config(backend="transformers")) == Price(input=0.0, output=0.0)
    loopback = llm_config(model="served", backend="openai", base_url="http://127.0.0.1:8000/v1")
    assert price_for("r", loopback) == Price(input=0.0, output=0.0)
    zero = Price(input=0.0, output=0.0)  # a self-hosted endpoint elsewhere says so with a zero price
    own = llm_config(model="served", backend="openai", base_url="http://gpu-box:8000/v1", price=zero)
    assert price_for("r", own) == zero


def test_stage_run_shares_one_budget_cleans_stale_temps_and_reports_usage(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-stage-run-key-000")
    out = tmp_path / "out.jsonl"
    stale = tmp_path / ".out.jsonl.a1b2c3.tmp"
    stale.write_text("half a file")
    with fake_openai.FakeOpenAIServer() as server:
        run = StageRun("demo", {"k": 1}, params(tmp_path), outputs=(out,), budget_usd=0.05)
        assert not stale.exists()
        common = {"backend": "openai", "base_url": server.url, "api_key_env": KEY_ENV}
        gen = run.client("demo.generator", llm_config(model="gen", price=Price(1000.0, 1000.0), **common))
        judge = run.client("demo.judge", llm_config(model="judge", price=Price(1000.0, 0.0), **common))
        assert gen.budget is judge.budget is run.budget
        ask = [Request(({"role": "user", "content": "abc"},), sampling(max_tokens=4))]
        gen.generate(ask)  # reserves (3 + 16) * 0.001 + 4 * 0.001 = 0.023; spends 4 + 2 tokens: 0.006
        judge.generate(ask)  # reserves 0.019; spends 4 input tokens: 0.004
        assert run.budget.spent_usd == pytest.approx(0.010)
        # (22 + 16) * 0.001 + 4 * 0.001 = 0.042: fits what the generator alone spent (0.048 <= 0.05),
        # not what the two roles spent together (0.052)
        with pytest.raises(BudgetExceeded):
            gen.generate([Request(({"role": "user", "content": "x" * 22},), sampling(max_tokens=4))])
    assert server.count == 2
    run.failures.add("row-1", "generate", "boom")
    run.finish(input_rows=4, failures_path=tmp_path / "failures.jsonl", max_failure_rate=0.25)
    metrics = run.metrics()
    assert metrics["failures"] == {
        "input_rows": 4,
        "lost_rows": 1,
        "failure_rate": 0.25,
        "reasons": {"boom": 1},
    }
    usage = metrics["usage"]
    assert set(usage) == {"total", "demo.generator", "demo.judge"}
    assert usage["demo.generator"]["model"]["model"] == "gen"
    assert usage["demo.judge"]["model"]["base_url"] == server.url
    assert (
        usage["total"]["new_calls"]
        == 2
        == usage["demo.generator"]["new_calls"] + usage["demo.judge"]["new_calls"]
    )
    assert (
        usage["total"]["usd"] == pytest.approx(run.budget.spent_usd, abs=1e-6) and usage["total"]["usd"] > 0
    )
    assert metrics["provenance"]["python"]
    assert usage_metrics({}) == {"total": usage_metrics({})["total"]}
    with pytest.raises(FailureRateExceeded):
        run.finish(input_rows=3, failures_path=tmp_path / "failures.jsonl", max_failure_rate=0.25)
    assert (tmp_path / "failures.jsonl").read_text(encoding="utf-8").count("\n") == 1  # written first


def test_stage_run_refuses_an_unpriced_role_before_any_request(tmp_path):
    with fake_openai.FakeOpenAIServer() as server:
        run = StageRun("demo", {}, params(tmp_path), budget_usd=None)
        remote = llm_config(
            model="unpriced", backend="openai", base_url=server.url.replace("127.0.0.1", "gpu-box")
        )
        with pytest.raises(ConfigError, match=r"^demo\.judge: model 'unpriced' has no price"):
            run.client("demo.judge", remote)
        assert server.count == 0 and run.clients == {}


def ray_http(base_url: str | None, http_base_url: str | None) -> LLMConfig:
    settings = RaySettings(
        engine="http", concurrency=1, batch_size=4, engine_kwargs={}, http_base_url=http_base_url
    )
    return llm_config(model="unpriced", backend="ray", base_url=base_url, ray=settings)


def test_the_price_guard_judges_the_url_ray_http_really_sends_to(tmp_path):
    """backend: ray, engine: http sends to ray.http_base_url: a loopback base_url beside a remote
    http_base_url must not make an unpriced model free (it ran uncapped at $0)."""
    run = StageRun("demo", {}, params(tmp_path), budget_usd=0.01)
    sneaky = ray_http("http://127.0.0.1:8000/v1", "http://gpu-box:8000/v1")
    with pytest.raises(ConfigError, match=r"^demo\.judge: model 'unpriced' has no price"):
        run.client("demo.judge", sneaky)
    with pytest.raises(ConfigError, match="has no price"):  # nothing set: the OpenAI API
        price_for("r", ray_http(None, None))
    # the other way round the requests stay on this machine: free
    loopback = ray_http("http://gpu-box:8000/v1", "http://127.0.0.1:8000/v1")
    assert price_for("r", loopback) == Price(input=0.0, output=0.0)
    assert price_for("r", ray_http("http://localhost:8000/v1", None)) == Price(0.0, 0.0)
    # ray's vllm engine runs on the job's own GPUs, like backend: vllm; base_url plays no part
    engines = RaySettings(engine="vllm", concurrency=1, batch_size=4, engine_kwargs={})
    on_cluster = llm_config(model="org/model", backend="ray", base_url="http://gpu-box:8000/v1", ray=engines)
    assert price_for("r", on_cluster) == Price(input=0.0, output=0.0)
