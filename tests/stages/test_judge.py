"""Judge: both orders for every pair, swap consistency, calibration, statistics, and the reward seam."""

from __future__ import annotations

from pathlib import Path

import pytest

from jalign.llm import LLMConfig
from jalign.stage import Failures
from stages.judge import (
    JudgeConfig,
    Task,
    calibrate,
    judge_pairs,
    judgment,
    outcome_from_margin,
    score_judgments,
    tasks_for,
)

CONFIG = JudgeConfig(judge=LLMConfig(model="org/judge@abc"), method="text")


def row(pid: str, **answers: str) -> dict:
    return {
        "prompt_id": pid,
        "prompt": f"質問{pid}",
        "responses": {n: {"text": t, "model": f"m-{n}"} for n, t in answers.items()},
    }


def test_tasks_cover_both_orders_of_every_pair_and_count_missing_answers():
    rows = [row("p1", x="a", y="bb", z="ccc"), row("p2", x="a", y="b")]
    tasks, missing = tasks_for(rows)
    p1 = [(t.first, t.second) for t in tasks if t.prompt_id == "p1"]
    assert sorted(p1) == sorted([("x", "y"), ("y", "x"), ("x", "z"), ("z", "x"), ("y", "z"), ("z", "y")])
    assert missing == 2  # p2 lacks z: (x, z) and (y, z)
    assert Task("p", "q", "y", "x").pair_id == Task("p", "q", "x", "y").pair_id == "p|x|y"


def judged(pid: str, first: str, second: str, outcome, reason: str = "") -> dict:
    return judgment(
        Task(pid, f"質問{pid}", first, second),
        CONFIG,
        outcome,
        1 if outcome in ("A", "B") else 0,
        reason,
        raw="...",
    )


ROWS = {p: row(p, x="短い", y="ずっと長い回答です") for p in ("p1", "p2", "p3", "p4", "p5")}


def test_swap_consistency_keeps_only_agreeing_decisive_pairs():
    judgments = [
        judged("p1", "x", "y", "B"),
        judged("p1", "y", "x", "A"),  # y wins both orders: kept
        judged("p2", "x", "y", "A"),
        judged("p2", "y", "x", "A"),  # position bias: disagreement
        judged("p3", "x", "y", "tie"),
        judged("p3", "y", "x", "tie"),  # tie both: dropped as tie
        judged("p4", "x", "y", None, "no_verdict"),
        judged("p4", "y", "x", "A"),  # invalid: dropped
        judged("p5", "x", "y", "A"),
        judged("p5", "y", "x", "B"),  # x wins both: kept
    ]
    pairs, stats = score_judgments(judgments, ROWS)
    assert [(p["prompt_id"], p["chosen_responder"], p["rejected_responder"]) for p in pairs] == [
        ("p1", "y", "x"),
        ("p5", "x", "y"),
    ]
    assert pairs[0]["chosen"] == "ずっと長い回答です" and pairs[0]["rejected"] == "短い"
    assert stats["dropped"] == {"disagreement": 1, "invalid": 1, "tie": 1}
    assert stats["pairs_judged"] == 5 and stats["judgments"] == 10
    assert stats["agreement_rate"] == 0.75  # p1, p3, p5 agree among 4 fully valid pairs
    decisive = [j for j in judgments if j["verdict"] in ("A", "B")]
    assert stats["position_bias_rate"] == round(sum(j["verdict"] == "A" for j in decisive) / len(decisive), 4)
    assert stats["invalid_rate"] == 0.1 and stats["invalid_reasons"] == {"no_verdict": 1}
    assert stats["tie_rate"] == round(2 / 9, 4)
    assert stats["length_bias"] == 0.5  # p1 chose the longer answer, p5 the shorter
    assert stats["win_share"] == {"x": 0.5, "y": 0.5}


def test_an_unparseable_answer_is_never_a_win():
    judgments = [
        judged("p1", "x", "y", None, "no_verdict"),
        judged("p1", "y", "x", None, "conflicting_verdicts"),
    ]
    pairs, stats = score_judgments(judgments, ROWS)
    assert pairs == [] and stats["dropped"] == {"invalid": 1} and stats["invalid_rate"] == 1.0


def test_missing_order_is_an_error_not_a_silent_pair():
    with pytest.raises(ValueError, match="expected 2 judgments"):
        score_judgments([judged("p1", "x", "y", "A")], ROWS)


def logprob(pid: str, first: str, second: str, p_a: float) -> dict:
    config = JudgeConfig(judge=CONFIG.judge, method="logprob")
    outcome = outcome_from_margin(p_a - (1 - p_a), 0.05)
    return judgment(
        Task(pid, "q", first, second), config, outcome, 1, "", raw={"A": p_a, "B": 1 - p_a}, mass=0.9
    )


def test_calibration_removes_a_constant_position_prior():
    # The judge always leans to A (0.8 / 0.7); underneath, y is preferred in p1 and x in p2.
    judgments = [
        logprob("p1", "x", "y", 0.70),
        logprob("p1", "y", "x", 0.80),
        logprob("p2", "x", "y", 0.80),
        logprob("p2", "y", "x", 0.70),
    ]
    raw_pairs, raw_stats = score_judgments(judgments, ROWS)
    assert raw_pairs == [] and raw_stats["position_bias_rate"] == 1.0
    pairs, stats = score_judgments(judgments, ROWS, calibrate_position=True, tie_margin=0.05)
    assert {(p["prompt_id"], p["chosen_responder"]) for p in pairs} == {("p1", "y"), ("p2", "x")}
    assert stats["position_bias_rate"] == 0.5 and stats["position_bias_rate_uncalibrated"] == 1.0
    assert stats["position_prior"] == {"A": 0.75, "B": 0.25}
    calibrated, prior = calibrate(judgments, 0.05)
    assert all(j["calibrated"] for j in calibrated) and prior == {"A": 0.75, "B": 0.25}


def test_reward_method_scores_with_a_trained_classifier(tmp_path: Path):
    """The `judge.method: reward` seam, with a real (tiny, random) sequence classifier on disk."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    chars = sorted(set("### 指示回答質問短いずっと長い回答です\n0123456789pq"))
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *chars])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    tokenizer.save_pretrained(tmp_path)
    torch.manual_seed(0)
    BertForSequenceClassification(
        BertConfig(
            vocab_size=len(vocab),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            num_labels=2,
        )
    ).save_pretrained(tmp_path)
    config = JudgeConfig(judge=CONFIG.judge, method="reward", reward_model=str(tmp_path), tie_margin=0.0)
    rows = [row("p1", x="短い", y="ずっと長い回答です")]
    tasks, _ = tasks_for(rows)
    answers = {"p1": {"x": "短い", "y": "ずっと長い回答です"}}
    judgments = judge_pairs(tasks, answers, None, config, Failures("judge"))
    assert [j["method"] for j in judgments] == ["reward", "reward"]
    # Order-independent by construction: both orders name the same winner.
    assert judgments[0]["winner"] == judgments[1]["winner"] in ("x", "y")
    assert judgments[0]["raw"]["A"] == judgments[1]["raw"]["B"]


def test_reward_method_needs_a_model():
    with pytest.raises(ValueError, match="reward_model"):
        JudgeConfig(judge=CONFIG.judge, method="reward")


def test_text_method_keeps_raw_answers_and_counts_unparseable_ones_invalid(tmp_path):
    """Free-text judging over a real OpenAI-compatible HTTP server: the raw text sits next to the verdict."""
    import fake_openai

    from jalign.llm import LLMClient, ResponseCache

    def reply(body):
        text = fake_openai.prompt_text(body)
        if "質問p2" in text:
            return "どちらも良いが、Aの方が丁寧です。"  # no verdict token: invalid, never a win
        return "Bの方が具体的で正確です。\n最終判定: [[B]]"

    with fake_openai.FakeOpenAIServer(responder=reply) as server:
        llm = LLMConfig(
            model="judge",
            backend="openai",
            base_url=server.url,
            prompt_format="chat",
            retry_base_delay_s=0.01,
        )
        config = JudgeConfig(judge=llm, method="text")
        client = LLMClient(llm, cache=ResponseCache(tmp_path / "cache.sqlite"))
        rows = [row("p1", x="a", y="b"), row("p2", x="a", y="b")]
        tasks, _ = tasks_for(rows)
        answers = {r["prompt_id"]: {n: v["text"] for n, v in r["responses"].items()} for r in rows}
        judgments = judge_pairs(tasks, answers, client, config, Failures("judge"))
    assert len(server.calls()) == 4
    by_prompt = {(j["prompt_id"], j["first"]): j for j in judgments}
    assert by_prompt[("p1", "x")]["winner"] == "y" and by_prompt[("p1", "y")]["winner"] == "x"  # always "B"
    assert by_prompt[("p1", "x")]["raw"].endswith("[[B]]")
    assert (
        by_prompt[("p2", "x")]["verdict"] is None and by_prompt[("p2", "x")]["invalid_reason"] == "no_verdict"
    )
    pairs, stats = score_judgments(judgments, {r["prompt_id"]: r for r in rows})
    assert pairs == [] and stats["dropped"] == {"disagreement": 1, "invalid": 1}
    assert stats["position_bias_rate"] == 0.0 and stats["invalid_rate"] == 0.5
