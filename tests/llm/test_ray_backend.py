"""backend: ray on a local 2-CPU Ray: the HTTP engine against the real test server (tests/fake_openai.py),
through the real LLMClient and ResponseCache; the vLLM engine's wiring (no GPU here) against Ray's own
processor builder and output model."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections import Counter
from pathlib import Path

import fake_openai  # tests/ is on sys.path (conftest.py)
import pytest

ray = pytest.importorskip("ray", reason="backend: ray needs the optional extra: pip install -e '.[ray]'")
pytest.importorskip("ray.data.llm")

from helpers import llm_config  # noqa: E402
from helpers import sampling as make_sampling  # noqa: E402

from jalign.config import ConfigError, from_value  # noqa: E402
from jalign.llm.cache import ResponseCache  # noqa: E402
from jalign.llm.client import BudgetExceeded, LLMClient, identity  # noqa: E402
from jalign.llm.ray_backend import RayBackend, _vllm_output  # noqa: E402
from jalign.llm.transformers_backend import TransformersBackend  # noqa: E402
from jalign.llm.types import EngineSettings, LLMConfig, RayLLM, RaySettings, Request, Sampling, VLLMSettings  # noqa: E402

FakeOpenAIServer = fake_openai.FakeOpenAIServer
KEY_ENV = "JALIGN_TEST_RAY_KEY"
KEY = "sk-test-Ray7731-not-a-real-key"
BATCH, REPLICAS = 4, 2


@pytest.fixture(scope="module")
def local_ray():
    """One small local Ray for the module: 2 CPUs, a 100 MB object store, no dashboard."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def ray_settings(**fields) -> RaySettings:
    return RaySettings(
        **({"engine": "vllm", "concurrency": 1, "batch_size": 64, "engine_kwargs": {}} | fields)
    )


def http_config(server, **ray_fields) -> LLMConfig:
    settings = ray_settings(**({"engine": "http", "batch_size": BATCH, "concurrency": REPLICAS} | ray_fields))
    return llm_config(
        model="fake-model",
        backend="ray",
        base_url=server.url,
        api_key_env=KEY_ENV,
        timeout_s=5.0,
        max_retries=1,
        retry_base_delay_s=0.001,
        ray=settings,
    )


def user(text: str, sampling: Sampling | None = None) -> Request:
    return Request(({"role": "user", "content": text},), sampling or make_sampling())


def sent(server) -> list[tuple[str, str]]:
    """(path, body) of every request, bodies as canonical JSON, sorted."""
    return sorted((r.path, json.dumps(r.body, sort_keys=True, ensure_ascii=False)) for r in server.calls())


def no_key_in_ray_logs() -> None:
    """Driver, raylet and worker logs of this Ray session (ray is pinned: the private path is stable)."""
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    logs = [path for path in (session / "logs").rglob("*") if path.is_file()]
    assert any(path.name.startswith("worker-") for path in logs)
    for path in logs:
        assert KEY.encode() not in path.read_bytes(), f"API key in Ray log {path}"


# -- engine: http ------------------------------------------------------------------------------------

SAMPLINGS = [
    make_sampling(),
    make_sampling(stop=("\n\n",), temperature=0.2, max_tokens=40, seed=3),
    make_sampling(repetition_penalty=1.1, top_p=0.8),
]
FAILING = {"bad", "blank", "broken", "echo"}


def fault_for(path, body):
    return {"bad": "400", "broken": "empty_choices", "echo": "echo_auth"}.get(fake_openai.prompt_text(body))


def responder(body):
    text = fake_openai.prompt_text(body)
    if text == "blank":
        return " \n "
    if text == "leak":  # a server that repeats the credentials in its answer
        return f"your key is {KEY}"
    return fake_openai.default_reply(body)


def test_http_generate_round_trip_failures_and_rerun(local_ray, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    prompts = [f"質問{i}" for i in range(8)] + ["bad", "blank", "broken", "echo", "leak"]
    requests = [user(p, SAMPLINGS[i % len(SAMPLINGS)]) for i, p in enumerate(prompts)]
    cache = ResponseCache(tmp_path / "cache.sqlite")
    with FakeOpenAIServer(fault_for=fault_for, responder=responder) as server:
        client = LLMClient(http_config(server), cache=cache)
        out = client.generate(requests)
        first_calls = server.calls()

        # results in request order, answers and usage as the server sent them
        answered = {fake_openai.prompt_text(r.body): r for r in first_calls if r.fault is None}
        for prompt, gen in zip(prompts, out, strict=True):
            if prompt in FAILING:
                continue
            rec = answered[prompt]
            assert gen.ok and not gen.cached, gen.error
            if prompt != "leak":
                assert gen.text == fake_openai.default_reply(rec.body)
            assert gen.input_tokens == rec.response["usage"]["prompt_tokens"] > 0
            assert gen.output_tokens == rec.response["usage"]["completion_tokens"] > 0
            assert gen.finish_reason == "stop"
        failed = dict(zip(prompts, out, strict=True))
        assert "HTTP 400" in failed["bad"].error and "injected fault 400" in failed["bad"].error
        assert failed["blank"].error.startswith("empty answer")
        assert failed["broken"].error.startswith("malformed response")
        assert "HTTP 400" in failed["echo"].error and "***" in failed["echo"].error
        assert failed["leak"].text == "your key is ***"
        for prompt in FAILING:
            assert not failed[prompt].ok and failed[prompt].text is None

        # 400s are not retried; malformed and empty answers are, max_retries times; nothing else twice
        tries = [fake_openai.prompt_text(r.body) for r in first_calls]
        assert sorted(tries) == sorted([*prompts, "broken", "blank"])
        assert server.max_in_flight <= BATCH * REPLICAS
        assert client.usage.new_calls == len(prompts)
        assert client.usage.failed == len(FAILING)
        paid = [r for r in first_calls if r.fault is None]  # "blank" was answered (and paid): counted
        assert client.usage.input_tokens == sum(r.response["usage"]["prompt_tokens"] for r in paid)
        assert len(cache) == len(prompts) - len(FAILING)  # failures are never cached

        # the key only ever travels in the Authorization header
        for rec in first_calls:
            assert rec.headers["authorization"] == f"Bearer {KEY}"
            assert KEY.encode() not in rec.raw

        # a rerun answers every success from the cache and sends only the failed rows again
        again = LLMClient(http_config(server), cache=cache)
        out2 = again.generate(requests)
        resent = [fake_openai.prompt_text(r.body) for r in server.calls()[len(first_calls) :]]
    assert sorted(resent) == sorted([*FAILING, "broken", "blank"])
    assert again.usage.cached == len(prompts) - len(FAILING)
    for first, second in zip(out, out2, strict=True):
        assert (first.text, first.ok) == (second.text, second.ok)
        assert second.cached == second.ok

    everything = repr(out) + repr(out2) + "".join(r.getMessage() for r in caplog.records)
    assert KEY not in everything
    no_key_in_ray_logs()


def test_http_bodies_are_the_openai_backends(local_ray, tmp_path):
    """The same requests through the online openai backend and a ray job reach the server identically."""
    requests = [user(f"本文{i}", s) for i, s in enumerate(SAMPLINGS)]
    bodies = {}
    for backend in ("openai", "ray"):
        with FakeOpenAIServer() as server:
            config = http_config(server, batch_size=2)
            if backend == "openai":
                config = dataclasses.replace(config, backend="openai", ray=None)
            gens = LLMClient(config, cache=ResponseCache(tmp_path / f"{backend}.sqlite")).generate(requests)
            assert all(g.ok for g in gens)
            bodies[backend] = sent(server)
    assert bodies["ray"] == bodies["openai"]
    assert any('"stop"' in body for _, body in bodies["ray"])
    assert not any("null" in body for _, body in bodies["ray"])  # no missing key is filled in as null


def tops(body):
    """Different token sets per row: a job must not merge them (Arrow would fill in nulls)."""
    return {
        "q0": {"A": -0.1, "B": -2.5},
        "q1": {" B": -0.2, "[A": -1.5, "Hmm": -3.0},
        "none": {"X": -0.1, "Y": -1.0},
    }[fake_openai.prompt_text(body)]


@pytest.mark.parametrize("prompt_format", ["chat", "raw"])
def test_http_choose(local_ray, tmp_path, prompt_format):
    requests = [user(p, make_sampling(stop=("\n",))) for p in ("q0", "q1", "none")]
    bodies, answers = {}, {}
    for backend in ("ray", "openai"):
        with FakeOpenAIServer(top_logprobs=tops) as server:
            config = dataclasses.replace(http_config(server), prompt_format=prompt_format)
            if backend == "openai":
                config = dataclasses.replace(config, backend="openai", ray=None)
            cache = ResponseCache(tmp_path / f"{backend}.sqlite")
            answers[backend] = LLMClient(config, cache=cache).choose(requests, ["A", "B"])
            bodies[backend] = sent(server)
    assert bodies["ray"] == bodies["openai"]
    assert answers["ray"] == answers["openai"]
    q0, q1, none = answers["ray"]
    pa, pb = math.exp(-0.1), math.exp(-2.5)
    assert q0.probs == pytest.approx({"A": pa / (pa + pb), "B": pb / (pa + pb)})
    assert q0.mass == pytest.approx(pa + pb) and q0.input_tokens > 0
    pa, pb = math.exp(-1.5), math.exp(-0.2)
    assert q1.probs == pytest.approx({"A": pa / (pa + pb), "B": pb / (pa + pb)})
    assert q1.best == "B"
    assert not none.ok and "A" in none.error
    assert len(ResponseCache(tmp_path / "ray.sqlite")) == 2


def test_budget_refusal_runs_the_admitted_rows_then_raises(local_ray):
    arrived = {}

    def admit(i):
        if i == 2:
            raise BudgetExceeded("stop before request 2")

    with FakeOpenAIServer() as server:
        backend = RayBackend(http_config(server))
        with pytest.raises(BudgetExceeded, match="request 2"):
            backend.generate([user(f"r{i}") for i in range(5)], arrived.__setitem__, admit)
        sent = sorted(fake_openai.prompt_text(r.body) for r in server.calls())
    assert sent == ["r0", "r1"]
    assert sorted(arrived) == [0, 1] and all(g.ok for g in arrived.values())


def test_unreachable_endpoint_fails_rows_with_the_reason(local_ray):
    with FakeOpenAIServer() as server:
        config = http_config(server, http_base_url=server.url)
    # the server is closed now: connection refused, retried, then a failed row (the job goes on)
    out = RayBackend(config).generate([user("a"), user("b")])
    assert [g.ok for g in out] == [False, False]
    assert all("Connect" in g.error for g in out)


SAME_FAULTS = (
    "400",
    "404",
    "500",
    "429",
    "echo_auth",
    "bad_utf8",
    "garbage_json",
    "empty_choices",
    "blank_content",
)


def test_http_rows_fail_as_the_openai_backends_do(local_ray, tmp_path):
    """One HTTP error classification and one `redact` for both backends: the same faults give the same
    row errors after the same number of tries, and a body that is not UTF-8 fails its row (retried, as
    the openai backend does), never the whole job."""

    def fault_for(path, body):
        prompt = fake_openai.prompt_text(body)
        return None if prompt == "ok" else prompt

    prompts = ["ok", *SAME_FAULTS]
    outcome = {}
    for backend in ("openai", "ray"):
        with FakeOpenAIServer(fault_for=fault_for) as server:
            config = http_config(server)
            if backend == "openai":
                config = dataclasses.replace(config, backend="openai", ray=None)
            client = LLMClient(config, cache=ResponseCache(tmp_path / f"{backend}.sqlite"))
            out = client.generate([user(p) for p in prompts])
            tries = Counter(fake_openai.prompt_text(r.body) for r in server.calls())
        outcome[backend] = ([g.error for g in out], tries)
    assert outcome["ray"] == outcome["openai"]
    errors, tries = outcome["ray"]
    errors = dict(zip(prompts, errors, strict=True))
    assert errors["ok"] is None and errors["400"] == "HTTP 400: injected fault 400"
    assert errors["echo_auth"] == "HTTP 400: rejected credentials Bearer ***"
    assert errors["bad_utf8"].startswith("malformed response: UnicodeDecodeError")
    assert tries == {p: 1 if p in ("ok", "400", "404", "echo_auth") else 2 for p in prompts}


def test_http_failed_attempts_are_paid_in_usage_not_recorded_in_the_answer(local_ray, tmp_path):
    """An empty answer billed before the good one counts in usage, not in the answer or its cache entry."""
    seen = set()

    def fault_for(path, body):
        prompt = fake_openai.prompt_text(body)
        if prompt == "twice" and prompt not in seen:
            seen.add(prompt)
            return "empty_content"
        return None

    with FakeOpenAIServer(fault_for=fault_for) as server:
        client = LLMClient(http_config(server), cache=ResponseCache(tmp_path / "cache.sqlite"))
        once, twice = client.generate([user("once"), user("twice")])
        usage = {(fake_openai.prompt_text(r.body), r.fault): r.response["usage"] for r in server.calls()}
    assert once.ok and twice.ok
    good = usage[("twice", None)]
    assert (twice.input_tokens, twice.output_tokens) == (good["prompt_tokens"], good["completion_tokens"])
    cached = client.cache.get(client.key(user("twice"), {"mode": "generate"}))
    assert (cached["input_tokens"], cached["output_tokens"]) == (twice.input_tokens, twice.output_tokens)
    assert client.usage.input_tokens == sum(u["prompt_tokens"] for u in usage.values())
    assert client.usage.output_tokens == sum(u["completion_tokens"] for u in usage.values())
    assert len(usage) == 3 and usage[("twice", "empty_content")]["completion_tokens"] > 0


# -- engine: vllm (wiring only: vllm needs a GPU) -------------------------------------------------------


def test_vllm_processor_wiring(local_ray, tiny_lm_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # Ray creates a kernels dir there
    settings = ray_settings(
        concurrency=3,
        batch_size=16,
        accelerator_type="H100",
        engine_kwargs={"tensor_parallel_size": 2, "max_model_len": 512},
        max_tasks_in_flight_per_actor=8,
    )
    config = llm_config(model=str(tiny_lm_dir), backend="ray", ray=settings)
    backend = RayBackend(config)
    processor = backend._vllm_processor()
    # rows carry their prompt tokens: no chat-template or tokenize stage (a second <bos> for Gemma)
    assert processor.list_stage_names() == ["vLLMEngineStage"]
    engine = processor.get_stage_by_name("vLLMEngineStage")
    assert engine.fn_constructor_kwargs["engine_kwargs"] | {"task_type": None} == {
        "dtype": "bfloat16",
        "tensor_parallel_size": 2,
        "max_model_len": 512,
        "distributed_executor_backend": "ray",  # tp 2: Ray places the two GPUs of a replica
        "task_type": None,
    }
    assert engine.fn_constructor_kwargs["should_continue_on_error"] is True
    assert engine.map_batches_kwargs["accelerator_type"] == "H100"
    pool = engine.map_batches_kwargs["compute"]
    assert (pool.min_size, pool.max_size) == (1, 3)
    assert pool.max_tasks_in_flight_per_actor == 8

    row = backend._vllm_row(7, user("こんにちは", make_sampling(stop=("。",))), None)
    assert set(engine.get_required_input_keys()) <= set(row)
    assert row["sampling_params"]["stop"] == ["。"]
    local = TransformersBackend(dataclasses.replace(config, backend="transformers", ray=None))
    chat = local.render(user("こんにちは"))
    assert row["tokenized_prompt"] == local.tokenizer(chat, add_special_tokens=False)["input_ids"]
    assert row["sampling_params"]["stop_token_ids"] == local.eos_ids

    raw = dataclasses.replace(config, prompt_format="raw", ray=ray_settings())
    raw_processor = RayBackend(raw)._vllm_processor()
    tokens = RayBackend(raw)._vllm_row(0, user("これは"), None)["tokenized_prompt"]
    assert local.tokenizer.decode(tokens) == "<bos>これは"  # raw text after BOS, as transformers sends it
    single = raw_processor.get_stage_by_name("vLLMEngineStage")
    assert single.map_batches_kwargs["num_gpus"] == 1


def test_vllm_outputs_cross_ray_and_parse(local_ray, tiny_lm_dir):
    """Rows shaped by Ray's own vLLM output model, through a real Ray Data map (Arrow between stages)."""
    from ray.llm._internal.batch.stages.vllm_engine_stage import vLLMOutputData

    def engine_row(index, text, n_out, logprobs=None):
        data = vLLMOutputData(
            prompt="p",
            prompt_token_ids=[1, 2, 3],
            num_input_tokens=3,
            generated_tokens=list(range(n_out)),
            generated_text=text,
            num_generated_tokens=n_out,
            logprobs=logprobs,
        )
        return {"index": index, **data.model_dump()}

    lp = {
        5: {"logprob": -0.1, "rank": 1, "decoded_token": "A"},
        9: {"logprob": -2.5, "rank": 2, "decoded_token": " B"},
    }
    rows = [
        engine_row(0, "答え", 8),
        engine_row(1, "長い答え", 16),
        engine_row(2, "  ", 1),
        engine_row(3, "A", 1, [lp]),
        engine_row(4, "X", 1, [{11: {"logprob": -0.2, "rank": 1, "decoded_token": "X"}}]),
    ]
    out = {
        r["index"]: r for r in ray.data.from_items(rows, override_num_blocks=1).map(_vllm_output).iter_rows()
    }
    backend = RayBackend(llm_config(model=str(tiny_lm_dir), backend="ray", ray=ray_settings()))
    gen = [backend._vllm_answer(out[i], user("q", make_sampling(max_tokens=16)), None) for i in range(3)]
    assert (gen[0].text, gen[0].finish_reason, gen[0].input_tokens, gen[0].output_tokens) == (
        "答え",
        "stop",
        3,
        8,
    )
    assert gen[1].finish_reason == "length"
    assert not gen[2].ok and gen[2].error.startswith("empty answer")
    choice = backend._vllm_answer(out[3], user("q"), ("A", "B"))
    pa, pb = math.exp(-0.1), math.exp(-2.5)
    assert choice.probs == pytest.approx({"A": pa / (pa + pb), "B": pb / (pa + pb)})
    assert not backend._vllm_answer(out[4], user("q"), ("A", "B")).ok
    failed = backend._vllm_answer(
        {"index": 5, "__inference_error__": "ValueError: prompt too long"}, user("q"), None
    )
    assert not failed.ok and "prompt too long" in failed.error


# -- params and cache identity (no job) --------------------------------------------------------------


def test_ray_section_from_params():
    data = {
        "backend": "ray",
        "model": "org/model@abc123",
        "prompt_format": "chat",
        "terms": "apache-2.0",
        "dtype": "bfloat16",
        "api_key_env": "OPENAI_API_KEY",
        "timeout_s": 60.0,
        "max_retries": 2,
        "retry_base_delay_s": 1.0,
        "ray": {
            "engine": "vllm",
            "address": "ray://head:10001",
            "concurrency": 4,
            "batch_size": 64,
            "accelerator_type": "A100",
            "engine_kwargs": {"tensor_parallel_size": 2, "max_model_len": 8192},
        },
    }
    config = from_value(EngineSettings, data, "judge.llm")
    assert isinstance(config, RayLLM) and config.ray == ray_settings(
        address="ray://head:10001",
        concurrency=4,
        accelerator_type="A100",
        engine_kwargs={"tensor_parallel_size": 2, "max_model_len": 8192},
    )
    with pytest.raises(ConfigError, match=r"judge\.llm\.ray\.engine"):
        from_value(EngineSettings, data | {"ray": data["ray"] | {"engine": "sglang"}}, "judge.llm")
    with pytest.raises(ConfigError, match=r"judge\.llm\.ray\.replicas: unknown key"):
        from_value(EngineSettings, data | {"ray": data["ray"] | {"replicas": 2}}, "judge.llm")
    with pytest.raises(ConfigError, match=r"judge\.llm\.ray\.concurrency: 0 is out of range"):
        from_value(EngineSettings, data | {"ray": data["ray"] | {"concurrency": 0}}, "judge.llm")
    with pytest.raises(ConfigError, match=r"^judge\.llm\.ray: expected a mapping, got NoneType"):
        from_value(EngineSettings, data | {"ray": None}, "judge.llm")
    with pytest.raises(ConfigError, match=r"^judge\.llm\.batch_size: unknown key for backend 'ray'"):
        from_value(EngineSettings, data | {"batch_size": 8}, "judge.llm")
    for field in dataclasses.fields(RaySettings):
        assert field.metadata["help"], field.name


def llm_fields(**overrides) -> dict:
    """A complete LLMConfig as a params mapping."""
    return {**dataclasses.asdict(llm_config()), "sampling": dataclasses.asdict(make_sampling())} | overrides


def test_identity_shares_the_cache_of_the_backend_it_stands_in_for(tiny_lm_dir, tmp_path):
    http = llm_config(model="m", backend="ray", base_url="http://h:8000/v1", ray=ray_settings(engine="http"))
    assert identity(http) == identity(dataclasses.replace(http, backend="openai", ray=None))
    own_url = dataclasses.replace(http, ray=ray_settings(engine="http", http_base_url="http://other/v1"))
    assert identity(own_url)["base_url"] == "http://other/v1"

    vllm_settings = VLLMSettings(1, 1, None, 0.9, True, None, None, 16, {})
    vllm = llm_config(model=str(tiny_lm_dir), backend="vllm", vllm=vllm_settings)
    on_ray = dataclasses.replace(
        vllm, backend="ray", vllm=None, ray=ray_settings(engine_kwargs={"tensor_parallel_size": 4})
    )
    assert identity(on_ray) == identity(vllm)  # parallelism does not change answers
    quantized = dataclasses.replace(on_ray, ray=ray_settings(engine_kwargs={"quantization": "fp8"}))
    assert identity(quantized)["engine_kwargs"] == {"quantization": "fp8"}

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    (adapter / "adapter_model.safetensors").write_bytes(b"weights v1")
    with_adapter = dataclasses.replace(on_ray, adapter=str(adapter))
    before = identity(with_adapter)
    assert before["adapter"] == str(adapter) and before != identity(vllm)
    (adapter / "adapter_model.safetensors").write_bytes(b"weights v2")  # retrained in place
    assert identity(with_adapter) != before


@pytest.mark.slow
def test_the_vllm_engine_runs_on_a_local_ray_on_cpus(local_ray, tiny_vllm_lm_dir, tmp_path):
    """The real `ray.data.llm` vLLM processor with vLLM's CPU build, one engine replica on one CPU
    bundle: its greedy answers are the transformers backend's, and a prompt past max_model_len is a
    failure row while the job goes on."""
    from helpers import require_vllm

    require_vllm()
    settings = ray_settings(
        concurrency=1,
        batch_size=4,
        engine_kwargs={"enforce_eager": True, "kv_cache_memory_bytes": 1 << 30, "max_model_len": 256},
        placement_group={"bundles": [{"CPU": 1}]},
    )
    config = llm_config(
        model=str(tiny_vllm_lm_dir), backend="ray", dtype="float32", device="cpu", ray=settings
    )
    greedy = make_sampling(temperature=0.0, top_p=1.0, max_tokens=12)
    requests = [
        user(q, greedy)
        for q in ("日本の首都はどこですか？", "1+1は？", "日本語の文章を書いてください。" * 20)
    ]
    client = LLMClient(config, cache=ResponseCache(tmp_path / "ray.sqlite"))
    answers = client.generate(requests)
    local = LLMClient(
        dataclasses.replace(config, backend="transformers", ray=None),
        cache=ResponseCache(tmp_path / "tf.sqlite"),
    ).generate(requests[:2])
    assert [a.text for a in answers[:2]] == [a.text for a in local]
    assert [a.input_tokens for a in answers[:2]] == [a.input_tokens for a in local]
    assert not answers[2].ok and "vllm:" in answers[2].error
