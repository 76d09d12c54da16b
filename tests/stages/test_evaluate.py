"""Evaluation: answering (multi-turn, per-category temperatures), judging with one re-ask, grading, and the
pure scoring step (invalid policy, language penalty, calibration, battles), plus adapter cache identity."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import fake_openai
import pytest

from jalign.config import from_dict, load_section
from jalign.evalsets import EvalItem
from jalign.llm.cache import ResponseCache
from jalign.llm.client import LLMClient
from jalign.llm.types import LLMConfig, Request, Sampling
from jalign.models import fingerprint
from jalign.params import EvaluateConfig, ModelEntry, ScoreConfig
from jalign.scoring import score_battles
from jalign.stage import Failures
from stages.evaluate import answer_all, answer_request, grade_all, grade_tasks, judge_games, pair_games
from stages.score import score

REPO = Path(__file__).resolve().parents[2]


def fake_llm(url: str, model: str = "fake-judge", **overrides) -> LLMConfig:
    fields = {
        "model": model, "backend": "openai", "prompt_format": "chat", "terms": "apache-2.0",
        "sampling": {"temperature": 0.0, "top_p": 1.0, "max_tokens": 64, "seed": 0, "stop": [],
                     "repetition_penalty": 1.0},
        "base_url": url, "api_key_env": "JALIGN_TEST_KEY", "batch_size": 8, "max_concurrency": 4,
        "timeout_s": 5.0, "max_retries": 1, "retry_base_delay_s": 0.001, "dtype": "auto", "device": "cpu",
    } | overrides  # fmt: skip
    return flat_llm(fields)


def flat_llm(fields: dict) -> LLMConfig:
    """The flat LLMConfig a role resolves to, from a plain mapping (sampling checked as params are)."""
    return LLMConfig(**{**fields, "sampling": from_dict(Sampling, fields["sampling"], "sampling")})


def config(**overrides) -> EvaluateConfig:
    return dataclasses.replace(load_section(EvaluateConfig, "evaluate", REPO / "params.yaml"), **overrides)


def scoring(**overrides) -> ScoreConfig:
    return dataclasses.replace(load_section(ScoreConfig, "score", REPO / "params.yaml"), **overrides)


def client(llm: LLMConfig, tmp_path: Path) -> LLMClient:
    return LLMClient(llm, cache=ResponseCache(tmp_path / "cache.sqlite"))


ITEMS = [
    EvalItem(
        "set", "q1", ("日本の首都はどこですか。",), "知識", ("東京です。",), "東京と答えれば正解。", "jalign"
    ),
    EvalItem("set", "q2", ("俳句を一つ作ってください。",), "創作", None, None, "jalign"),
]
MT = EvalItem("mt", "81", ("12の約数を挙げてください。", "その和はいくつですか。"), "math", ("1,2,3,4,6,12", "28"), None,
              "mt_bench")  # fmt: skip


# -- answering ------------------------------------------------------------------------------------


def test_second_turn_sees_the_models_own_first_answer_and_mt_bench_temperatures(tmp_path, monkeypatch):
    monkeypatch.setenv("JALIGN_TEST_KEY", "k" * 12)
    with fake_openai.FakeOpenAIServer(responder=lambda b: f"回答{len(b['messages'])}") as server:
        entry = ModelEntry("base", fake_llm(server.url, "fake-base", sampling={
            "temperature": 0.9, "top_p": 1.0, "max_tokens": 32, "seed": 0, "stop": [], "repetition_penalty": 1.0}), "")  # fmt: skip
        rows = answer_all([MT], entry, client(entry.llm, tmp_path), config(mt_bench_temperatures=True))
        bodies = [r.body for r in server.calls()]
    assert rows[0]["turns"] == ["回答1", "回答3"]
    assert bodies[1]["messages"][1] == {"role": "assistant", "content": "回答1"}  # its own answer, in context
    assert {b["temperature"] for b in bodies} == {0.0}  # FastChat: math is answered greedily
    request = answer_request(entry, ITEMS[0], [], mt_temperatures=True)
    assert request.sampling.temperature == 0.9  # not MT-Bench: the role's own sampling


# -- judging ----------------------------------------------------------------------------------------


def test_an_unparseable_judgment_is_re_asked_once_and_every_raw_answer_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("JALIGN_TEST_KEY", "k" * 12)

    def judge(body):  # the first attempt (seed 0) never gives a label; the re-ask (seed 1) does
        return "どちらも良い回答です。" if body["seed"] == 0 else "Aの方が具体的です。\n最終判定: [[A>B]]"

    answers = {("set", i.id, m): [f"{m}の答え{i.id}"] for i in ITEMS for m in ("base", "dpo")}
    with fake_openai.FakeOpenAIServer(responder=judge) as server:
        cfg = config(method="text", judge=fake_llm(server.url))
        games = pair_games(ITEMS, answers, cfg)
        records = judge_games(games, client(cfg.judge, tmp_path), cfg, Failures("evaluate"))
        assert server.count == 2 * len(games)
    assert len(games) == 4 and {g.candidate_first for g in games} == {True, False}
    assert all(len(r["attempts"]) == 2 and "最終判定: [[A>B]]" in r["raw"] for r in records)


def test_failed_judgments_are_failures_charged_to_the_game(tmp_path, monkeypatch):
    monkeypatch.setenv("JALIGN_TEST_KEY", "k" * 12)
    answers = {("set", i.id, m): [f"{m}の答え{i.id}"] for i in ITEMS for m in ("base", "dpo")}
    with fake_openai.FakeOpenAIServer(fault_for=lambda p, b: "400") as server:
        cfg = config(method="text", judge=fake_llm(server.url))
        failures = Failures("evaluate")
        records = judge_games(pair_games(ITEMS, answers, cfg), client(cfg.judge, tmp_path), cfg, failures)
    assert all(r["raw"] is None for r in records)
    assert {f["id"] for f in failures.rows} == {"set/q1/dpo", "set/q2/dpo"}
    assert {(f["id"], f["candidate_first"]) for f in failures.rows} == {
        (u, first) for u in ("set/q1/dpo", "set/q2/dpo") for first in (True, False)
    }


def test_mt_bench_grades_each_turn_with_references_and_elyza_style_grades_once(tmp_path, monkeypatch):
    monkeypatch.setenv("JALIGN_TEST_KEY", "k" * 12)
    answers = {("mt", "81", m): ["1,2,3,4,6,12です。", "28です。"] for m in ("base", "dpo")}
    answers |= {("set", i.id, m): ["答え"] for i in ITEMS for m in ("base", "dpo")}
    tasks = grade_tasks([MT, *ITEMS], answers, config(method="text"))
    mt = [t for t in tasks if t.item.id == "81"]
    assert [(t.model, t.turn) for t in mt] == [("base", 1), ("base", 2), ("dpo", 1), ("dpo", 2)]
    assert "28" in mt[1].prompt and "12の約数" in mt[1].prompt  # turn 2 in context, with its reference
    assert len([t for t in tasks if t.item.format == "jalign"]) == 4
    with fake_openai.FakeOpenAIServer(responder=lambda b: "的確です。評価：[[8]]") as server:
        cfg = config(method="text", judge=fake_llm(server.url))
        records = grade_all(mt, client(cfg.judge, tmp_path), cfg, Failures("evaluate"))
    assert [r["scale"] for r in records] == [[1, 10]] * 4 and all(r["raw"].endswith("[[8]]") for r in records)


# -- scoring (pure) -----------------------------------------------------------------------------------


def game(item: str, first: bool, raw, method="text", mass=None) -> dict:
    return {"kind": "pair", "set": "set", "item_id": item, "category": "c", "candidate": "dpo", "baseline": "base",
            "candidate_first": first, "method": method, "judge": "j", "raw": raw, "mass": mass, "attempts": None}  # fmt: skip


def answer(item: str, model: str, text: str) -> dict:
    return {"set": "set", "item_id": item, "category": "c", "model": model, "turns": [text], "error": None}


ANSWERS = [
    answer(i, m, f"{m}による日本語の回答です{i}。") for i in ("q1", "q2", "q3") for m in ("base", "dpo")
]


def test_invalid_policy_loss_tie_drop_and_the_count_is_always_reported():
    judgments = [
        game("q1", True, "最終判定: [[A>B]]"), game("q1", False, "最終判定: [[B>A]]"),  # dpo wins twice
        game("q2", True, "判定できません"), game("q2", False, "最終判定: [[B>>A]]"),  # one invalid, one strong win
        game("q3", True, None), game("q3", False, "最終判定: [[A=B]]"),  # one failed call, one tie
    ]  # fmt: skip
    results = {}
    for policy in ("loss", "tie", "drop"):
        _, battles, metrics = score(ANSWERS, judgments, scoring(invalid=policy, bootstrap=50), "base")
        entry = metrics["candidates"]["dpo"]["set"]
        assert entry["invalid"] == 2 and entry["invalid_rate"] == pytest.approx(2 / 6, abs=1e-4)
        assert entry["invalid_reasons"] == {"no_verdict": 1, "llm_failure": 1}
        results[policy] = (
            entry["wins"],
            entry["ties"],
            entry["losses"],
            sorted(b["winner"] for b in battles),
        )
    assert results["loss"][:3] == (3, 1, 2)  # the invalid ones count against the candidate
    assert results["tie"][:3] == (3, 3, 0)
    assert results["drop"][:3] == (3, 1, 0)
    # strong win: strong_weight (3) rows; invalid dropped: no row at all
    assert results["drop"][3] == ["model_b"] * 5 + ["tie"]


def test_a_non_japanese_answer_loses_whatever_the_judge_said():
    answers = [
        answer("q1", "base", "東京は日本の首都です。"),
        answer("q1", "dpo", "Tokyo is the capital of Japan."),
    ]
    judgments = [game("q1", True, "最終判定: [[A>>B]]"), game("q1", False, "最終判定: [[B>>A]]")]
    games, battles, metrics = score(answers, judgments, scoring(language_penalty=True, bootstrap=50), "base")
    assert {g["decided_by"] for g in games} == {"language_penalty"}
    assert {b["winner"] for b in battles} == {"model_a"}
    assert metrics["candidates"]["dpo"]["set"]["language_penalties"] == 2
    _, battles, _ = score(answers, judgments, scoring(language_penalty=False, bootstrap=50), "base")
    assert {b["winner"] for b in battles} == {"model_b"}


def test_logprob_games_are_decided_after_dividing_out_the_sets_position_prior():
    # The judge always leans to position A (0.8 / 0.2); only q1 leans towards the candidate beyond that.
    judgments = [
        game("q1", True, {"A": 0.95, "B": 0.05}, "logprob", 0.9), game("q1", False, {"A": 0.6, "B": 0.4}, "logprob", 0.9),
        game("q2", True, {"A": 0.8, "B": 0.2}, "logprob", 0.9), game("q2", False, {"A": 0.8, "B": 0.2}, "logprob", 0.9),
        game("q3", True, {"A": 0.7, "B": 0.3}, "logprob", 0.9), game("q3", False, {"A": 0.9, "B": 0.1}, "logprob", 0.9),
    ]  # fmt: skip
    _, _, raw = score(
        ANSWERS, judgments, scoring(calibrate_position=False, tie_margin=0.02, bootstrap=50), "base"
    )
    cal_games, _, cal = score(
        ANSWERS, judgments, scoring(calibrate_position=True, tie_margin=0.02, bootstrap=50), "base"
    )
    assert raw["judge_reliability"]["set"]["position_bias"] == 1.0  # every decisive game went to A
    assert cal["judge_reliability"]["set"]["position_bias"] < 1.0
    outcome = {(g["item_id"], g["candidate_first"]): g["label"] for g in cal_games}
    assert outcome[("q1", True)] == "A>B" and outcome[("q1", False)] == "A>B"  # the candidate, both orders
    assert outcome[("q3", True)] == "B>A" and outcome[("q3", False)] == "B>A"  # the baseline, both orders
    assert (
        cal["judge_reliability"]["set"]["swap_agreement"] > raw["judge_reliability"]["set"]["swap_agreement"]
    )


def test_battles_score_like_jalign_score_and_carry_style_metadata(tmp_path):
    judgments = [
        game(i, first, "最終判定: [[A>B]]" if first else "最終判定: [[B>A]]")
        for i in ("q1", "q2")
        for first in (True, False)
    ]
    judgments += [game("q3", True, "最終判定: [[B>A]]"), game("q3", False, "最終判定: [[A>B]]")]
    _, battles, metrics = score(ANSWERS, judgments, scoring(bootstrap=200, seed=3), "base")
    assert all({"question_id", "model_a", "model_b", "winner", "conv_metadata"} <= set(b) for b in battles)
    direct = score_battles(battles, "base", bootstrap=200, seed=3, style_control=True)
    mine = metrics["candidates"]["dpo"]["set"]
    assert (mine["score"], mine["ci_low"], mine["ci_high"]) == (
        direct["dpo"]["score"],
        direct["dpo"]["ci_low"],
        direct["dpo"]["ci_high"],
    )
    assert mine["score"] == pytest.approx(100 * 4 / 6, abs=0.01)  # 4 wins of 6 games: BT's closed form
    assert "style_controlled" in mine


# -- adapter cache identity ---------------------------------------------------------------------------


def write_adapter(base: Path, out: Path, seed: int) -> None:
    """A LoRA adapter with random, non-zero weights (same shapes whatever the seed)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=4, lora_alpha=32, target_modules="all-linear"),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    model.save_pretrained(out)


def test_a_retrained_adapter_at_the_same_path_answers_afresh(tmp_path, tiny_lm_dir):
    adapter = tmp_path / "models" / "dpo" / "adapter"
    write_adapter(tiny_lm_dir, adapter, seed=1)
    llm = flat_llm({
        "model": str(tiny_lm_dir), "adapter": str(adapter), "backend": "transformers", "prompt_format": "chat",
        "terms": "apache-2.0", "sampling": {"temperature": 0.0, "top_p": 1.0, "max_tokens": 8, "seed": 0,
        "stop": [], "repetition_penalty": 1.0}, "api_key_env": "OPENAI_API_KEY", "batch_size": 4,
        "max_concurrency": 1, "timeout_s": 1.0, "max_retries": 0, "retry_base_delay_s": 0.0, "dtype": "float32",
        "device": "cpu"})  # fmt: skip
    requests = [Request(({"role": "user", "content": f"質問{i}"},), llm.sampling) for i in range(4)]
    cache = ResponseCache(tmp_path / "cache.sqlite")
    first = LLMClient(llm, cache=cache)
    before = [g.text for g in first.generate(requests)]
    size_before = {p.name: p.stat().st_size for p in adapter.iterdir()}
    old_fingerprint = fingerprint(adapter)

    write_adapter(tiny_lm_dir, adapter, seed=2)  # retrained: same path, same shapes, new weights
    assert {p.name: p.stat().st_size for p in adapter.iterdir()} == size_before
    assert fingerprint(adapter) != old_fingerprint
    from jalign.llm.transformers_backend import load

    load.cache_clear()  # a new process would load the new weights
    second = LLMClient(llm, cache=cache)
    after = [g.text for g in second.generate(requests)]
    assert second.usage.cached == 0 and second.usage.new_calls == len(requests)
    assert after != before
    again = LLMClient(llm, cache=cache)
    again.generate(requests)
    assert again.usage.cached == len(requests)  # and the new adapter's answers are cached in turn


def test_metrics_name_the_adapter_by_content(tmp_path, tiny_lm_dir):
    adapter = tmp_path / "adapter"
    write_adapter(tiny_lm_dir, adapter, seed=1)
    ident = json.dumps(LLMClient(flat_llm({
        "model": str(tiny_lm_dir), "adapter": str(adapter), "backend": "transformers", "prompt_format": "chat",
        "terms": "x", "sampling": {"temperature": 0.0, "top_p": 1.0, "max_tokens": 8, "seed": 0, "stop": [],
        "repetition_penalty": 1.0}, "api_key_env": "OPENAI_API_KEY", "batch_size": 4,
        "max_concurrency": 1, "timeout_s": 1.0, "max_retries": 0, "retry_base_delay_s": 0.0, "dtype": "float32",
        "device": "cpu"}), cache=ResponseCache(tmp_path / "c.sqlite")).identity)  # fmt: skip
    assert fingerprint(adapter) in ident and str(adapter) in ident
