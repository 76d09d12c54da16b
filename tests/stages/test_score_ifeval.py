"""The score stage on verifiable-instruction sets: answers as the evaluate stage writes them for ifeval
items, checked by program (strict and loose), per-model accuracies, the paired comparison to the baseline
(bootstrap CI, McNemar counts), and no judged games for ifeval items."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from jalign.config import load_section
from jalign.evalsets import EvalItem
from jalign.params import EvaluateConfig, ScoreConfig
from stages.evaluate import pair_games, verifiable_fields
from stages.score import ifeval_report, score

REPO = Path(__file__).resolve().parents[2]

NO_COMMA = "ja:punctuation:no_comma"
KEYWORD = "ja:keywords:existence"
END = "ja:startend:end_checker"


CONFIG = load_section(EvaluateConfig, "evaluate", REPO / "params.yaml")
SCORE = dataclasses.replace(load_section(ScoreConfig, "score", REPO / "params.yaml"), bootstrap=200)
BASE, CAND = CONFIG.baseline.name, CONFIG.candidates[0].name


def item(iid: str, ids: tuple[str, ...], kwargs: tuple[dict, ...]) -> EvalItem:
    question = f"質問{iid}について教えてください。"
    return EvalItem(
        "ifeval-ja", iid, (question + "条件を守ってください。",), None, None, None, "ifeval",
        instruction_ids=ids, instruction_kwargs=kwargs, question=question,
    )  # fmt: skip


ITEMS = [
    item("i1", (NO_COMMA,), ({},)),
    item("i2", (NO_COMMA, KEYWORD), ({}, {"keywords": ["笑顔"]})),
    item("i3", (KEYWORD,), ({"keywords": ["笑顔"]},)),
    item("i4", (NO_COMMA,), ({},)),
    item("i5", (END,), ({"end_phrase": "以上です。"},)),
]
# strict: it ends with the note, not the end phrase; loose mode drops the last line
LOOSE_ONLY = "本文です。以上です。\n（補足があります）"
ANSWERS = {  # item -> (baseline answer, candidate answer); None: the call failed
    "i1": ("今日は、晴れです。", "今日は晴れです。"),  # improved
    "i2": ("笑顔で挨拶しましょう。", "笑顔で、挨拶しましょう。"),  # worsened (1 of 2)
    "i3": ("笑顔が大切です。", None),  # the candidate failed: worsened
    "i4": (None, "今日は晴れです。"),  # the baseline failed: out of the paired comparison
    "i5": (LOOSE_ONLY, "本文です。以上です。"),  # improved in strict only
}


def answer_row(it: EvalItem, model: str, text: str | None) -> dict:
    """An answers row as stages.evaluate.answer_all writes it."""
    return {
        "set": it.set_name,
        "item_id": it.id,
        "category": it.category,
        "model": model,
        "turns": [text] if text is not None else None,
        "error": None if text is not None else "HTTP 500",
        **verifiable_fields(it),
    }


ROWS = [answer_row(it, m, ANSWERS[it.id][k]) for it in ITEMS for k, m in enumerate((BASE, CAND))]


def test_the_evaluate_stage_writes_what_the_checks_need():
    row = ROWS[2]
    assert row["prompt"] == ITEMS[1].turns[0]  # the constrained prompt, not the question
    assert row["instruction_id_list"] == [NO_COMMA, KEYWORD]
    assert row["kwargs"] == [{}, {"keywords": ["笑顔"]}]
    plain = EvalItem("s", "q", ("質問です。",), None, None, None, "jalign")
    assert verifiable_fields(plain) == {}


def test_accuracies_strict_and_loose_with_failed_answers_following_nothing():
    report = ifeval_report(ROWS, SCORE, BASE)
    assert list(report) == ["ifeval-ja"]
    entry = report["ifeval-ja"]
    assert entry["baseline"] == BASE and set(entry["models"]) == {BASE, CAND}
    base, cand = entry["models"][BASE], entry["models"][CAND]
    assert base["failed_answers"] == 1 and cand["failed_answers"] == 1
    # baseline, strict: i1 no, i2 yes (2/2), i3 yes, i4 failed (0/1), i5 no -> prompts 2/5, instr. 3/6
    assert base["strict"]["prompt"]["accuracy"] == 40.0 and base["strict"]["instruction"]["accuracy"] == 50.0
    assert base["strict"]["prompts"] == 5 and base["strict"]["instructions"] == 6
    # loose mode rescues i5 (the trailing note dropped): prompts 3/5, instructions 4/6
    assert base["loose"]["prompt"]["accuracy"] == 60.0
    assert base["loose"]["instruction"]["accuracy"] == pytest.approx(66.67)
    # candidate: i1 yes, i2 1/2, i3 failed, i4 yes, i5 yes -> prompts 3/5, instructions 4/6 (both modes)
    for mode in ("strict", "loose"):
        assert cand[mode]["prompt"]["accuracy"] == 60.0
        assert cand[mode]["instruction"]["accuracy"] == pytest.approx(66.67)
        acc = cand[mode]["prompt"]
        assert acc["ci_low"] <= acc["accuracy"] <= acc["ci_high"]
    assert base["per_instruction"]["strict"] == {
        END: {"accuracy": 0.0, "n": 1},
        KEYWORD: {"accuracy": 100.0, "n": 2},  # i2, i3
        NO_COMMA: {"accuracy": 33.33, "n": 3},  # i1 no, i2 yes, i4 failed
    }
    assert base["per_instruction"]["loose"][END] == {"accuracy": 100.0, "n": 1}
    assert cand["per_instruction"]["strict"][KEYWORD] == {"accuracy": 50.0, "n": 2}  # i2 yes, i3 failed


def test_the_paired_comparison_leaves_out_prompts_the_baseline_failed():
    paired = ifeval_report(ROWS, SCORE, BASE)["ifeval-ja"]["paired"]
    assert list(paired) == [CAND]
    strict, loose = paired[CAND]["strict"], paired[CAND]["loose"]
    assert strict["prompts"] == loose["prompts"] == 4  # i4 left out
    # strict: i1 improved, i5 improved, i2 and i3 worsened
    assert (strict["prompt"]["improved"], strict["prompt"]["worsened"]) == (2, 2)
    assert strict["prompt"]["diff"] == 0.0 and strict["prompt"]["mcnemar_p"] == 1.0
    # instructions over i1, i2, i3, i5 (5): +1 (i1), -1 (i2), -1 (i3), +1 (i5)
    assert strict["instruction"]["diff"] == 0.0
    # loose: i5 followed by both, so only i1 improved
    assert (loose["prompt"]["improved"], loose["prompt"]["worsened"]) == (1, 2)
    assert loose["prompt"]["diff"] == -25.0 and loose["prompt"]["mcnemar_p"] == 1.0
    assert loose["instruction"]["diff"] == -20.0
    for mode in (strict, loose):
        assert mode["prompt"]["ci_low"] <= mode["prompt"]["diff"] <= mode["prompt"]["ci_high"]


def test_a_clearly_better_candidate_is_significant():
    items = [item(f"q{n}", (NO_COMMA,), ({},)) for n in range(30)]
    rows = [answer_row(it, BASE, "今日は、晴れです。") for it in items]
    rows += [answer_row(it, CAND, "今日は晴れです。") for it in items]
    prompt = ifeval_report(rows, SCORE, BASE)["ifeval-ja"]["paired"][CAND]["strict"]["prompt"]
    assert (prompt["diff"], prompt["improved"], prompt["worsened"]) == (100.0, 30, 0)
    assert prompt["ci_low"] == 100.0 and prompt["mcnemar_p"] < 1e-6


def test_score_reports_ifeval_and_judges_nothing_for_it():
    plain = EvalItem("ja", "q1", ("日本の首都はどこですか。",), "知識", None, None, "jalign")
    answers = {(i.set_name, i.id, m): ["答え"] for i in [*ITEMS, plain] for m in (BASE, CAND)}
    games = pair_games([*ITEMS, plain], answers, CONFIG)
    assert {(g.item.set_name, g.item.id) for g in games} == {("ja", "q1")}  # no game for an ifeval item
    assert pair_games(ITEMS, answers, CONFIG) == []
    plain_rows = [
        {"set": "ja", "item_id": "q1", "category": "知識", "model": m, "turns": ["東京です。"], "error": None}
        for m in (BASE, CAND)
    ]
    _, battles, metrics = score([*ROWS, *plain_rows], [], SCORE, BASE)
    assert battles == [] and metrics["candidates"] == {}
    assert list(metrics["ifeval"]) == ["ifeval-ja"]  # the jalign set has no instructions: not in it
    assert metrics["ifeval"] == ifeval_report(ROWS, SCORE, BASE)
    assert metrics["answers"][CAND]["ifeval-ja"]["failed"] == 1
