"""The learning signal, end to end on the real packaged Gemma-3-270M (slow).

One verifiable instruction that shows in a short answer (no 、, ja:punctuation:no_comma) on 48 of
jalign's training questions; the policy samples 4 answers of 32 tokens per prompt, the verify stage
pairs them, DPO trains a LoRA adapter with the default profile's `train` params (at most 32 pairs),
and the baseline and the adapter answer the 72 held-out questions as the evaluate stage does (32
tokens); the score stage's ifeval report compares them. Shrunk so that CI's two cores run it in
minutes; two torch threads here, whatever OMP_NUM_THREADS says for the fast tests.

- DPO on the verifier's pairs must raise held-out strict prompt-level accuracy, paired 95% CI above 0;
- the control, the same run with chosen and rejected swapped, must lower it.

This catches the chain's silent bugs: swapped labels, a chat template at training that evaluation does
not use, an adapter that is not applied, answers mapped to the wrong model.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from jalign.config import load_section
from jalign.evalsets import EvalSet, load_eval_items
from jalign.ifeval.compose import compose_rows, load_specs, read_questions
from jalign.llm.client import LLMClient
from jalign.params import DPOConfig, EvaluateConfig, ModelEntry, ScoreConfig, VerifyConfig
from jalign.stage import Failures
from stages.dpo import train
from stages.evaluate import answer_all
from stages.preferences import to_pairwise
from stages.score import ifeval_report
from stages.verify import load_prompts, sample_answers, verify

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
MODEL = "pkg:gemma-3-270m"
INSTRUCTION = "ja:punctuation:no_comma"
TRAIN_QUESTIONS = 48
MAX_TOKENS = 32
MAX_PAIRS = 32


def eval_items(tmp: Path) -> list:
    specs = {INSTRUCTION: load_specs()[INSTRUCTION]}
    rows = compose_rows(read_questions(REPO / "data/ifeval/eval_questions.txt"), 11, 1, 1, "heldout", specs)
    path = tmp / "heldout.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return load_eval_items(EvalSet(name="no-comma", format="ifeval", path=str(path)))


def adapter(pairs: list[dict], tmp: Path, name: str, swap: bool) -> str:
    data = tmp / name / "sets"
    data.mkdir(parents=True)
    rows = [
        to_pairwise({**p, "chosen": p["rejected"], "rejected": p["chosen"]} if swap else p) for p in pairs
    ]
    (data / "pairwise_train.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    (data / "pairwise_eval.jsonl").write_text("", encoding="utf-8")
    config = dataclasses.replace(
        load_section(DPOConfig, "dpo", REPO / "params.yaml"), model=MODEL, max_train_samples=MAX_PAIRS
    )
    train(config, data, None, tmp / name, str(tmp / name / "live"))
    return str(tmp / name / "adapter")


@pytest.fixture
def two_threads():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def short(llm):
    return dataclasses.replace(
        llm, model=MODEL, sampling=dataclasses.replace(llm.sampling, max_tokens=MAX_TOKENS)
    )


def test_dpo_on_verifier_pairs_raises_held_out_accuracy_and_swapped_pairs_lower_it(
    tmp_path, monkeypatch, two_threads
):
    monkeypatch.setenv("JALIGN_LLM_CACHE", str(tmp_path / "cache.sqlite"))
    params = REPO / "params.yaml"
    verify_config = load_section(VerifyConfig, "verify", params)
    policy = short(verify_config.policy)
    verify_config = dataclasses.replace(
        verify_config,
        policy=policy,
        include_instructions=False,
        instruction_ids=(INSTRUCTION,),
        min_instructions=1,
        max_instructions=1,
    )
    questions = tmp_path / "questions.txt"
    questions.write_text(
        "\n".join(read_questions(REPO / "data/ifeval/train_questions.txt")[:TRAIN_QUESTIONS]),
        encoding="utf-8",
    )
    rows = load_prompts(str(questions), None, verify_config)
    failures = Failures("verify")
    answers = sample_answers(rows, LLMClient(policy), verify_config, failures)
    assert not failures.rows
    pairs, _, stats = verify(rows, answers, verify_config)
    assert len(pairs) >= 16, stats

    tuned = adapter(pairs, tmp_path, "dpo", swap=False)
    swapped = adapter(pairs, tmp_path, "swapped", swap=True)

    evaluate = load_section(EvaluateConfig, "evaluate", params)
    base_llm = short(evaluate.baseline.llm)
    models = [
        ModelEntry(name="base", llm=base_llm, system=""),
        ModelEntry(name="dpo", llm=dataclasses.replace(base_llm, adapter=tuned), system=""),
        ModelEntry(name="swapped", llm=dataclasses.replace(base_llm, adapter=swapped), system=""),
    ]
    items = eval_items(tmp_path)
    answer_rows = [
        row for entry in models for row in answer_all(items, entry, LLMClient(entry.llm), evaluate)
    ]
    report = ifeval_report(answer_rows, load_section(ScoreConfig, "score", params), "base")["no-comma"]

    accuracy = {m: report["models"][m]["strict"]["prompt"]["accuracy"] for m in ("base", "dpo", "swapped")}
    tuned_diff = report["paired"]["dpo"]["strict"]["prompt"]
    swapped_diff = report["paired"]["swapped"]["strict"]["prompt"]
    assert tuned_diff["ci_low"] > 0, (accuracy, tuned_diff)
    assert swapped_diff["diff"] < 0, (accuracy, swapped_diff)
