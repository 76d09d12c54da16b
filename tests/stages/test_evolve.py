"""Evol-Instruct: mutation prompts, rewrite cleaning and WizardLM's elimination rules."""

from __future__ import annotations

import json
from collections import Counter

import fake_openai
import pytest
from helpers import llm_config, repo_config

from jalign.ifeval.compose import load_specs
from jalign.ifeval.evaluation import validate_instructions
from jalign.llm.cache import ResponseCache
from jalign.llm.client import LLMClient
from jalign.llm.types import LLMConfig
from jalign.params import EvolveConfig, evolve_operations
from jalign.stage import Failures
from stages.evolve import (
    clean_rewrite,
    evolve,
    evolve_round,
    instruction_reason,
    mutation_prompt,
    output_reason,
)

LLM = llm_config(model="org/model@abc")
CONFIG = repo_config(EvolveConfig, "evolve", generator=LLM, responder=LLM, judge=LLM)
PARENT = {"id": "p1", "instruction": "日本の祝日を一つ説明してください。", "input": ""}


def test_every_operation_has_a_japanese_prompt_with_a_worked_example():
    ops = evolve_operations()
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


# -- the rule-made `verifiable` operation (real clients against the fake OpenAI server) ----------------


def openai_llm(server: fake_openai.FakeOpenAIServer, model: str) -> LLMConfig:
    return llm_config(
        model=model, backend="openai", base_url=server.url, api_key_env="JALIGN_TEST_KEY", max_retries=1,
        retry_base_delay_s=0.001, timeout_s=5.0,
    )  # fmt: skip


def test_verifiable_rewrites_skip_the_generator_and_the_gain_judge(tmp_path, monkeypatch):
    monkeypatch.setenv("JALIGN_TEST_KEY", "k" * 12)
    parents = [
        {"id": f"p{i}", "instruction": q, "input": "", "output": "答え", "license": ["cc-by-4.0"], "model_terms": []}
        for i, q in enumerate(["日本の祝日を一つ説明してください。", "おすすめの朝ご飯を教えてください。",
                               "雨の日の過ごし方を提案してください。"])
    ]  # fmt: skip
    answer = "朝は味噌汁とご飯がおすすめです。体が温まり一日を元気に始められます。"
    with fake_openai.FakeOpenAIServer(responder=lambda body: answer) as server:
        clients = {
            role: LLMClient(openai_llm(server, role), cache=ResponseCache(tmp_path / f"{role}.sqlite"))
            for role in ("generator", "judge", "responder")
        }
        config = repo_config(
            EvolveConfig, "evolve", operations=("verifiable",), rounds=1,
            generator=clients["generator"].config, judge=clients["judge"].config,
            responder=clients["responder"].config,
        )  # fmt: skip
        failures, drops = Failures("evolve"), Counter()
        survivors = evolve_round(parents, 1, clients, config, failures, drops)
        models = [r.body["model"] for r in server.calls() if r.body]
    assert models == ["responder"] * 3  # no rewrite asked of the generator, no gain judged
    assert not failures.rows and not drops
    assert [s["id"] for s in survivors] == ["p0-e1", "p1-e1", "p2-e1"]
    for parent, child in zip(parents, survivors, strict=True):
        assert child["question"] == parent["instruction"]
        assert (
            child["instruction"].startswith(parent["instruction"])
            and child["instruction"] != parent["instruction"]
        )
        assert 1 <= len(child["instruction_id_list"]) <= 3
        validate_instructions(child["instruction_id_list"], child["kwargs"], child["id"])
        assert child["output"] == answer
        assert child["lineage"] == {
            "parent_id": parent["id"], "root_id": parent["id"], "operation": "verifiable", "kind": "in-depth",
            "round": 1, "gain_prob": 1.0,
        }  # fmt: skip
    # the rewrite is a rule of the seed, the round and the parent: the same again
    again = evolve_round(parents, 1, clients, config, Failures("evolve"), Counter())
    assert [(s["instruction"], s["kwargs"]) for s in again] == [
        (s["instruction"], s["kwargs"]) for s in survivors
    ]
    # the responder answered the constrained prompt (requests run concurrently: any order)
    bodies = [json.dumps(r.body, ensure_ascii=False) for r in server.calls() if r.body]
    assert all(any(s["instruction"] in b for b in bodies) for s in survivors)


def test_llm_operations_carry_no_instruction_fields(tmp_path, monkeypatch):
    monkeypatch.setenv("JALIGN_TEST_KEY", "k" * 12)
    parent = {"id": "p0", "instruction": "日本の祝日を一つ説明してください。", "input": "", "license": [],
              "model_terms": []}  # fmt: skip
    rewrite = "日本の祝日を一つ選び、小学生向けに百字以内で由来を説明してください。"
    answer = "建国記念の日は二月十一日です。日本の始まりをお祝いする日とされています。"

    def responder(body):
        return rewrite if body["model"] == "generator" else answer

    with fake_openai.FakeOpenAIServer(
        responder=responder, top_logprobs={"はい": -0.05, "いいえ": -3.0}
    ) as server:
        clients = {
            role: LLMClient(openai_llm(server, role), cache=ResponseCache(tmp_path / f"{role}.sqlite"))
            for role in ("generator", "judge", "responder")
        }
        config = repo_config(
            EvolveConfig, "evolve", operations=("constraints",), generator=clients["generator"].config,
            judge=clients["judge"].config, responder=clients["responder"].config,
        )  # fmt: skip
        survivors = evolve_round([parent], 1, clients, config, Failures("evolve"), Counter())
        models = [r.body["model"] for r in server.calls() if r.body]
    assert models == ["generator", "judge", "responder"]
    assert len(survivors) == 1 and survivors[0]["instruction"] == rewrite
    assert not {"question", "instruction_id_list", "kwargs"} & set(survivors[0])


def test_a_second_verifiable_round_keeps_the_question_and_every_instruction(tmp_path, monkeypatch):
    monkeypatch.setenv("JALIGN_TEST_KEY", "k" * 12)
    records = [
        {"id": f"p{i}", "instruction": f"日本の祝日を一つ説明してください{i}。", "input": "", "license": [],
         "model_terms": []}
        for i in range(5)
    ]  # fmt: skip
    answer = "朝は味噌汁とご飯がおすすめです。体が温まり一日を元気に始められます。"
    with fake_openai.FakeOpenAIServer(responder=lambda body: answer) as server:
        clients = {
            role: LLMClient(openai_llm(server, role), cache=ResponseCache(tmp_path / f"{role}.sqlite"))
            for role in ("generator", "judge", "responder")
        }
        config = repo_config(
            EvolveConfig, "evolve", operations=("verifiable",), rounds=2, generator=clients["generator"].config,
            judge=clients["judge"].config, responder=clients["responder"].config,
        )  # fmt: skip
        out, _ = evolve(records, clients, config, Failures("evolve"))
    by_id = {r["id"]: r for r in out}
    specs = load_specs()
    for record in records:
        first, second = by_id[f"{record['id']}-e1"], by_id[f"{record['id']}-e1-e2"]
        assert second["question"] == record["instruction"]
        assert set(first["instruction_id_list"]) <= set(second["instruction_id_list"])
        for a in second["instruction_id_list"]:
            assert not specs[a].conflicts & set(second["instruction_id_list"])
