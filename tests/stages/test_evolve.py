"""Evol-Instruct: mutation prompts, rewrite cleaning and WizardLM's elimination rules."""

from __future__ import annotations

import pytest
from helpers import llm_config, repo_config

from stages.evolve import (
    EvolveConfig,
    clean_rewrite,
    instruction_reason,
    mutation_prompt,
    operations,
    output_reason,
)

LLM = llm_config(model="org/model@abc")
CONFIG = repo_config(EvolveConfig, "evolve", generator=LLM, responder=LLM, judge=LLM)
PARENT = {"id": "p1", "instruction": "日本の祝日を一つ説明してください。", "input": ""}


def test_every_operation_has_a_japanese_prompt_with_a_worked_example():
    ops = operations()
    assert {"constraints", "deepen", "concretize", "reasoning", "complicate_input", "breadth"} <= set(ops)
    assert {op["kind"] for op in ops.values()} == {"in-depth", "in-breadth"}
    for name in ops:
        prompt = mutation_prompt(PARENT["instruction"], name)
        assert ops[name]["method"] in prompt and ops[name]["example_after"] in prompt
        assert prompt.endswith(f"#元の指示#:\n{PARENT['instruction']}\n#書き換えた指示#:\n")


def test_unknown_operation_is_rejected_with_the_known_ones():
    with pytest.raises(ValueError, match=r"operations: unknown \['shorten'\]; known: \['breadth', "):
        repo_config(EvolveConfig, "evolve", operations=("constraints", "shorten"))
    with pytest.raises(ValueError, match=r"operations: unknown \[\]"):
        repo_config(EvolveConfig, "evolve", operations=())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "  祝日を二つ選び、由来を説明してください。\n\n次の段落",
            "祝日を二つ選び、由来を説明してください。",
        ),
        ("#書き換えた指示#: 「祝日の由来を説明して」", "祝日の由来を説明して"),
        ("\n\n", ""),
    ],
)
def test_clean_rewrite(text, expected):
    assert clean_rewrite(text) == expected


@pytest.mark.parametrize(
    ("rewrite", "reason"),
    [
        ("", "empty"),
        (PARENT["instruction"], "unchanged"),
        ("元の指示に条件を加えて祝日を説明してください。", "copied_template"),
        ("Explain a Japanese national holiday in detail.", "not_japanese"),
        ("あ" * 401, "instruction_too_long"),
        ("日本の祝日を一つ選び、小学生向けに百字以内で由来を説明してください。", None),
    ],
)
def test_instruction_reason(rewrite, reason):
    assert instruction_reason(PARENT, rewrite, CONFIG) == reason


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("。。、！", "punctuation_only"),
        ("はい。", "output_too_short"),
        ("申し訳ありませんが、その質問にはお答えできません。", "refusal"),
        ("AIとしてお答えすることはできません。ご了承ください。", "refusal"),
        ("### 指示\n次の文を要約してください。", "copied_template"),
        # A long, helpful answer that merely mentions "できません" is not a refusal.
        ("建国記念の日は2月11日です。" + "由来は神武天皇の即位とされ、" * 5 + "法律で変更できません。", None),
    ],
)
def test_output_reason(output, reason):
    assert output_reason(output, CONFIG) == reason
