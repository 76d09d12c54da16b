"""The verify stage: verifier-labelled pairs from hand-written Japanese answers checked by the real
M-IFEval checkers (no model), the prompts it samples, its config checks, and on-policy sampling through a
real LLMClient against the fake OpenAI server (a failed sample loses its whole prompt)."""

from __future__ import annotations

import json
from pathlib import Path

import fake_openai
import pytest
from helpers import llm_config, repo_config

from jalign.config import load_section
from jalign.ifeval.compose import compose_rows, read_questions
from jalign.ifeval.evaluation import IFEvalInputError, follows_instructions, validate_instructions
from jalign.llm.cache import ResponseCache
from jalign.llm.client import LLMClient
from jalign.params import VerifyConfig
from jalign.stage import Failures
from stages.verify import load_prompts, pair_of, sample_answers, verify, well_formed

REPO = Path(__file__).resolve().parents[2]
CONFIG = repo_config(VerifyConfig, "verify", policy=llm_config(model="org/policy@abc", terms="gemma"))

NO_COMMA = "ja:punctuation:no_comma"
KEYWORD = "ja:keywords:existence"
LOOP = "学習目標" * 20  # no 、 at all: "follows" no_comma, but it is a loop


def row(key: str = "verify-001", ids=(NO_COMMA, KEYWORD), kwargs=({}, {"keywords": ["笑顔"]})) -> dict:
    return {
        "key": key,
        "prompt": "挨拶のコツを教えてください。読点を使わずに答えてください。「笑顔」を入れてください。",
        "question": "挨拶のコツを教えてください。",
        "instruction_id_list": list(ids),
        "kwargs": [dict(k) for k in kwargs],
        "origin": "questions",
        "license": ["apache-2.0"],
        "model_terms": [],
    }


BOTH = "笑顔で相手の目を見て挨拶しましょう。毎朝続けると自然にできるようになります。"  # no 、, 笑顔
KEYWORD_ONLY = "笑顔で、相手の目を見て挨拶しましょう。毎朝続けると、自然にできます。"  # 、 used
COMMA_ONLY = "大きな声で挨拶しましょう。毎朝続けると自然に身につきます。"  # no 、, no 笑顔
NEITHER = "大きな声で、はっきりと挨拶しましょう。相手の名前も、添えるとよいです。"


def outcomes_of(r: dict, answers: list[str]) -> list[list[bool]]:
    return [
        follows_instructions(a, r["instruction_id_list"], r["kwargs"], r["prompt"], "strict") for a in answers
    ]


def test_the_hand_written_answers_are_checked_as_intended():
    r = row()
    assert outcomes_of(r, [BOTH, KEYWORD_ONLY, COMMA_ONLY, NEITHER, LOOP]) == [
        [True, True], [False, True], [True, False], [False, False], [True, False],
    ]  # fmt: skip
    assert all(well_formed(a, CONFIG) for a in (BOTH, KEYWORD_ONLY, COMMA_ONLY, NEITHER))
    assert not well_formed(LOOP, CONFIG)  # few distinct 4-grams
    assert not well_formed("Say hello with a smile every morning to everyone.", CONFIG)  # not Japanese


def test_chosen_is_the_first_answer_following_most_and_rejected_the_first_following_fewest():
    r = row()
    answers = [KEYWORD_ONLY, NEITHER, BOTH, COMMA_ONLY, NEITHER, BOTH + "ぜひ。"]
    pair, why = pair_of(r, answers, outcomes_of(r, answers), CONFIG)
    assert why == "" and pair is not None
    assert (pair["chosen"], pair["rejected"]) == (BOTH, NEITHER)
    assert (pair["chosen_responder"], pair["rejected_responder"]) == ("sample2", "sample1")
    assert pair["chosen_follow"] == [True, True] and pair["rejected_follow"] == [False, False]
    assert pair["label_source"] == "verifier"
    assert pair["pair_id"] == "verify/verify-001" and pair["prompt_id"] == "verify-001"
    assert pair["instruction_id_list"] == [NO_COMMA, KEYWORD]
    assert pair["kwargs"] == [{}, {"keywords": ["笑顔"]}]
    assert pair["question"] == r["question"] and pair["prompt"] == r["prompt"]
    assert pair["chosen_model"] == pair["rejected_model"] == "org/policy@abc"


def test_a_looping_answer_is_never_chosen_even_when_it_follows_most():
    r = row(ids=(NO_COMMA,), kwargs=({},))
    answers = [LOOP, KEYWORD_ONLY, COMMA_ONLY]  # the loop and COMMA_ONLY follow no_comma
    pair, _ = pair_of(r, answers, outcomes_of(r, answers), CONFIG)
    assert pair is not None and pair["chosen"] == COMMA_ONLY and pair["rejected"] == KEYWORD_ONLY
    # only the loop follows: no well-formed answer beats another, so no pair
    answers = [LOOP, KEYWORD_ONLY, NEITHER]
    pair, why = pair_of(r, answers, outcomes_of(r, answers), CONFIG)
    assert pair is None and why == "tie"


def test_a_looping_answer_can_be_rejected():
    r = row(ids=(KEYWORD,), kwargs=({"keywords": ["笑顔"]},))
    answers = [BOTH, LOOP, KEYWORD_ONLY]
    pair, _ = pair_of(r, answers, outcomes_of(r, answers), CONFIG)
    assert pair is not None and pair["chosen"] == BOTH and pair["rejected"] == LOOP
    assert pair["rejected_responder"] == "sample1"


def test_prompts_without_a_preference_are_dropped_with_the_reason():
    r = row()
    cases = {
        "all_pass": [BOTH, BOTH + "毎日。", "笑顔で挨拶しましょう。"],
        "tie": [KEYWORD_ONLY, COMMA_ONLY, KEYWORD_ONLY],
        "none_well_formed": [LOOP, "Smile and say hello.", "学習" * 30],
    }
    for reason, answers in cases.items():
        pair, why = pair_of(r, answers, outcomes_of(r, answers), CONFIG)
        assert (pair, why) == (None, reason)


def test_verify_pairs_samples_and_stats():
    rows = [
        row("a"),  # a pair: BOTH over NEITHER
        row("b"),  # all pass: dropped
        row("c", ids=(NO_COMMA,), kwargs=({},)),  # none well formed: dropped
        row("d"),  # not answered (its sampling failed): skipped
        {**row("e", ids=(KEYWORD,), kwargs=({"keywords": ["笑顔"]},)), "origin": "instructions"},
    ]
    answers = {
        "a": [NEITHER, BOTH, KEYWORD_ONLY],
        "b": [BOTH, BOTH, BOTH],
        "c": [LOOP, LOOP, "学習" * 30],
        "e": [LOOP, COMMA_ONLY, BOTH],
    }
    pairs, samples, stats = verify(rows, answers, CONFIG)
    assert [p["prompt_id"] for p in pairs] == ["a", "e"]
    assert (pairs[1]["chosen"], pairs[1]["rejected"]) == (BOTH, LOOP)
    assert all(p["model_terms"] == ["gemma"] for p in pairs)  # the policy's terms are added
    assert len(samples) == 12 and {s["prompt_id"] for s in samples} == {"a", "b", "c", "e"}
    assert samples[0] == {"prompt_id": "a", "sample": 0, "answer": NEITHER, "follow": [False, False],
                          "well_formed": True}  # fmt: skip
    assert [s["well_formed"] for s in samples if s["prompt_id"] == "c"] == [False] * 3
    assert stats["prompts"] == 5 and stats["prompts_answered"] == 4 and stats["answers"] == 12
    assert stats["pairs"] == 2 and stats["dropped"] == {"all_pass": 1, "none_well_formed": 1}
    assert stats["origins"] == {"instructions": 1, "questions": 1}
    per = stats["per_instruction"]
    assert set(per) == {NO_COMMA, KEYWORD}
    assert per[NO_COMMA]["prompts"] == 3 and per[NO_COMMA]["pairs"] == 1  # a, b, c
    assert per[KEYWORD]["prompts"] == 3 and per[KEYWORD]["pairs"] == 2  # a, b, e
    # no_comma over 9 answers: a: NEITHER no, BOTH yes, KEYWORD_ONLY no; b: 3 yes; c: 3 yes (loops)
    assert per[NO_COMMA]["followed"] == pytest.approx(7 / 9, abs=1e-3)
    # 笑顔 over 9 answers: a: 2 (BOTH, KEYWORD_ONLY); b: 3; e: 1 (BOTH)
    assert per[KEYWORD]["followed"] == pytest.approx(6 / 9, abs=1e-3)
    assert per[KEYWORD]["chosen_followed"] == 1.0 and per[KEYWORD]["rejected_followed"] == 0.0
    assert stats["chosen_instruction_followed"] == 1.0 and stats["rejected_instruction_followed"] == 0.0


# -- prompts ----------------------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def instruction(i: int, **extra) -> dict:
    return {"id": f"evol-{i}", "instruction": f"指示{i}です。", "input": "", "output": "答え",
            "license": ["cc-by-4.0"], "model_terms": ["gemma"], **extra}  # fmt: skip


def test_load_prompts_composes_questions_and_adds_constrained_curated_instructions(tmp_path):
    questions = tmp_path / "q.txt"
    questions.write_text("# comment\n質問一を教えてください。\n質問二を教えてください。\n", encoding="utf-8")
    constrained = instruction(
        2,
        instruction="指示2です。読点を使わないでください。",
        question="指示2です。",
        instruction_id_list=[NO_COMMA],
        kwargs=[{}],
    )
    path = write_jsonl(tmp_path / "i.jsonl", [instruction(1), constrained, instruction(3)])
    config = repo_config(VerifyConfig, "verify", policy=CONFIG.policy, min_instructions=2, max_instructions=3)
    rows = load_prompts(str(questions), path, config)
    composed = compose_rows(read_questions(questions), config.seed, 2, 3, key="verify")
    assert [r["key"] for r in rows] == ["verify-001", "verify-002", "evol-2"]
    for got, want in zip(rows[:2], composed, strict=True):
        assert {k: got[k] for k in want} == want
        assert (got["origin"], got["license"], got["model_terms"]) == ("questions", ["apache-2.0"], [])
        assert 2 <= len(got["instruction_id_list"]) <= 3
        validate_instructions(got["instruction_id_list"], got["kwargs"], got["key"])
    assert rows[2] == {
        "key": "evol-2",
        "prompt": "指示2です。読点を使わないでください。",
        "question": "指示2です。",
        "instruction_id_list": [NO_COMMA],
        "kwargs": [{}],
        "origin": "instructions",
        "license": ["cc-by-4.0"],
        "model_terms": ["gemma"],
    }
    without = repo_config(VerifyConfig, "verify", policy=CONFIG.policy, include_instructions=False)
    assert [r["origin"] for r in load_prompts(str(questions), path, without)] == ["questions"] * 2
    capped = repo_config(VerifyConfig, "verify", policy=CONFIG.policy, max_prompts=1)
    assert len(load_prompts(str(questions), path, capped)) == 1


def test_a_curated_instruction_without_a_question_is_its_own_question(tmp_path):
    questions = tmp_path / "q.txt"
    questions.write_text("質問です。\n", encoding="utf-8")
    path = write_jsonl(tmp_path / "i.jsonl", [instruction(1, instruction_id_list=[NO_COMMA], kwargs=[{}])])
    rows = load_prompts(str(questions), path, CONFIG)
    assert rows[-1]["question"] == rows[-1]["prompt"] == "指示1です。"


def test_a_bad_instruction_id_in_the_instructions_file_names_its_line(tmp_path):
    questions = tmp_path / "q.txt"
    questions.write_text("質問です。\n", encoding="utf-8")
    bad = instruction(2, instruction_id_list=["ja:no_such:thing"], kwargs=[{}])
    path = write_jsonl(tmp_path / "i.jsonl", [instruction(1), bad])
    with pytest.raises(IFEvalInputError, match=rf"{path}:2: .*ja:no_such:thing"):
        load_prompts(str(questions), path, CONFIG)
    # the file's own line, after a blank line (not the record's position)
    blank = tmp_path / "b.jsonl"
    blank.write_text(Path(path).read_text(encoding="utf-8").replace("\n", "\n\n", 1), encoding="utf-8")
    with pytest.raises(IFEvalInputError, match=rf"{blank}:3: .*ja:no_such:thing"):
        load_prompts(str(questions), str(blank), CONFIG)
    missing = instruction(1, instruction_id_list=[KEYWORD], kwargs=[{}])  # keywords not given
    path = write_jsonl(tmp_path / "j.jsonl", [missing])
    with pytest.raises(IFEvalInputError, match=rf"{path}:1: "):
        load_prompts(str(questions), path, CONFIG)


# -- config ---------------------------------------------------------------------------------------------


def test_params_yaml_verify_section_loads():
    config = load_section(VerifyConfig, "verify", REPO / "params.yaml")
    assert config.policy.sampling.temperature > 0 and config.min_instructions <= config.max_instructions


def test_config_rejects_greedy_sampling_and_min_above_max():
    with pytest.raises(ValueError, match="temperature is 0"):
        repo_config(VerifyConfig, "verify", policy=llm_config(sampling={"temperature": 0.0}))
    with pytest.raises(ValueError, match=r"min_instructions \(3\) > max_instructions \(2\)"):
        repo_config(VerifyConfig, "verify", policy=CONFIG.policy, min_instructions=3, max_instructions=2)


# -- sampling through a real client -----------------------------------------------------------------------


def test_a_failed_sample_loses_its_whole_prompt_and_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("JALIGN_TEST_KEY", "k" * 12)
    rows = [
        row("a"),
        {**row("b"), "prompt": "二つ目の質問です。"},
        {**row("c"), "prompt": "三つ目の質問です。"},
    ]

    def fault_for(path, body):  # the second sample of prompt b fails, every time
        return (
            "400"
            if body.get("messages", [{}])[-1].get("content") == "二つ目の質問です。" and body["seed"] == 8
            else None
        )

    def responder(body):
        return f"{fake_openai.prompt_text(body)}の答え{body['seed']}"

    with fake_openai.FakeOpenAIServer(responder=responder, fault_for=fault_for) as server:
        policy = llm_config(
            model="fake-policy", backend="openai", base_url=server.url, api_key_env="JALIGN_TEST_KEY",
            max_retries=1, retry_base_delay_s=0.001, timeout_s=5.0,
            sampling={"temperature": 0.8, "seed": 7, "max_tokens": 32},
        )  # fmt: skip
        config = repo_config(VerifyConfig, "verify", policy=policy, samples=3)
        client = LLMClient(policy, cache=ResponseCache(tmp_path / "cache.sqlite"))
        failures = Failures("verify")
        answers = sample_answers(rows, client, config, failures)
        seeds = sorted(r.body["seed"] for r in server.calls() if r.body)
    assert set(answers) == {"a", "c"}
    assert answers["a"] == [f"{rows[0]['prompt']}の答え{s}" for s in (7, 8, 9)]  # seeds seed..seed+N-1
    assert answers["c"] == [f"三つ目の質問です。の答え{s}" for s in (7, 8, 9)]
    assert [(f["id"], f["step"], f["sample"]) for f in failures.rows] == [("b", "sample", 1)]
    assert failures.lost_rows == 1
    assert {7, 8, 9} <= set(seeds)
    pairs, _, stats = verify(rows, answers, config)
    assert stats["prompts_answered"] == 2 and all(p["prompt_id"] != "b" for p in pairs)
