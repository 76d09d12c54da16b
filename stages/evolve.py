"""Evol-Instruct (Xu et al., WizardLM, arXiv:2304.12244) with Japanese mutation prompts.

Each round rewrites every surviving instruction with one mutation: in-depth (add constraints, deepen,
concretise, increase reasoning steps, complicate the input) or in-breadth (a new, rarer task in the
same domain). The `verifiable` operation is a rule, not a rewrite: it appends 1-3 verifiable
instructions (M-IFEval ids and kwargs, recorded on the row) that the verify stage checks by program.
Then WizardLM's elimination: the rewrite must gain information over its parent (judged by the LLM as
a constrained yes/no; a rule-made rewrite gains by construction), must not copy the template's words,
and its answer must be neither a refusal / short apology nor punctuation only. Every record keeps its
lineage.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import replace

import click

from jalign import prompts
from jalign.config import load_section
from jalign.ifeval.compose import constrain
from jalign.llm.client import LLMClient
from jalign.llm.types import LLMConfig, Request
from jalign.llm_stage import StageRun
from jalign.params import EvolveConfig, evolve_operations
from jalign.records import Record, provenance_of, read_jsonl, user_prompt, write_jsonl
from jalign.stage import Failures, log, mean, write_metrics
from jalign.text import first_paragraph, is_punctuation_only, japanese_ratio

INPUT_FIELDS = ("id", "instruction", "output")


def mutation_prompt(instruction: str, operation: str) -> str:
    op = evolve_operations()[operation]
    return prompts.render(
        "evolve",
        method=op["method"],
        example_before=op["example_before"],
        example_after=op["example_after"],
        instruction=instruction,
    )


def clean_rewrite(text: str) -> str:
    """First paragraph of the generated rewrite, without a leading label or quotes."""
    text = first_paragraph(text)
    return re.sub(r"^(#?書き換えた指示#?\s*[:：]?)", "", text).strip().strip('「」"')


def instruction_reason(parent: Record, rewrite: str, config: EvolveConfig) -> str | None:
    if not rewrite:
        return "empty"
    if rewrite == parent["instruction"] or rewrite == user_prompt(parent):
        return "unchanged"
    if any(marker in rewrite for marker in config.template_markers):
        return "copied_template"
    if len(rewrite) > config.max_instruction_chars:
        return "instruction_too_long"
    if japanese_ratio(rewrite) < config.min_japanese_ratio:
        return "not_japanese"
    return None


def output_reason(output: str, config: EvolveConfig) -> str | None:
    if is_punctuation_only(output):
        return "punctuation_only"
    if len(output) < config.min_output_chars:
        return "output_too_short"
    if len(output) < config.refusal_max_chars and any(m in output for m in config.refusal_markers):
        return "refusal"
    if any(marker in output for marker in config.template_markers):
        return "copied_template"
    return None


def response_request(instruction: str, llm: LLMConfig, seed_offset: int) -> Request:
    return Request(
        messages=({"role": "user", "content": prompts.render("respond", instruction=instruction)},),
        sampling=replace(llm.sampling, seed=llm.sampling.seed + seed_offset),
    )


def evolve_round(
    parents: list[Record],
    round_no: int,
    clients: dict[str, LLMClient],
    config: EvolveConfig,
    failures: Failures,
    drops: Counter,
) -> list[Record]:
    rng = random.Random(f"{config.seed}-{round_no}")
    ops = [rng.choice(config.operations) for _ in parents]
    by_rule = [(p, op) for p, op in zip(parents, ops, strict=True) if evolve_operations()[op].get("rule")]
    by_llm = [(p, op) for p, op in zip(parents, ops, strict=True) if not evolve_operations()[op].get("rule")]
    gen_cfg = config.generator
    rewrites = clients["generator"].generate(
        [
            Request(
                messages=({"role": "user", "content": mutation_prompt(user_prompt(p), op)},),
                sampling=replace(gen_cfg.sampling, seed=gen_cfg.sampling.seed + round_no),
            )
            for p, op in by_llm
        ]
    )
    candidates = []
    for (parent, op), gen in zip(by_llm, rewrites, strict=True):
        if not gen.ok:
            failures.add(parent["id"], f"mutate:{op}", gen.error or "")
            continue
        rewrite = clean_rewrite(gen.text or "")
        reason = instruction_reason(parent, rewrite, config)
        if reason:
            drops[reason] += 1
            continue
        candidates.append((parent, op, rewrite))

    gains = clients["judge"].choose(
        [
            Request(
                messages=(
                    {
                        "role": "user",
                        "content": prompts.render("evolve_gain", before=user_prompt(p), after=r),
                    },
                ),
                sampling=config.judge.sampling,
            )
            for p, _, r in candidates
        ],
        choices=("はい", "いいえ"),
    )
    gained = []
    for (parent, op, rewrite), gain in zip(candidates, gains, strict=True):
        if not gain.ok:
            failures.add(parent["id"], "gain_judge", gain.error or "")
        elif gain.mass < config.min_choice_mass:
            drops["gain_judge_low_mass"] += 1  # no usable yes/no: not evidence of a gain
        elif gain.probs["はい"] < config.min_gain_prob:
            drops["no_information_gain"] += 1
        else:
            gained.append((parent, op, rewrite, gain.probs["はい"]))
    # A rule-made rewrite gains by construction (its instructions are new and checkable): no gain judge.
    verifiable: dict[str, dict] = {}
    for parent, op in by_rule:
        rule_rng = random.Random(f"{config.seed}-{round_no}-{parent['id']}")
        held = tuple(parent.get("instruction_id_list") or ())  # an earlier round's, kept
        row = constrain(user_prompt(parent), rule_rng, rule_rng.randint(1, 3), taken=held)
        if not row["instruction_id_list"]:
            drops["no_compatible_instruction"] += 1
            continue
        row = {
            **row,
            "question": parent.get("question") or row["question"],
            "instruction_id_list": [*held, *row["instruction_id_list"]],
            "kwargs": [*(parent.get("kwargs") or ()), *row["kwargs"]],
        }
        verifiable[parent["id"]] = row
        gained.append((parent, op, row["prompt"], 1.0))

    answers = clients["responder"].generate(
        [response_request(rewrite, config.responder, round_no) for _, _, rewrite, _ in gained]
    )
    survivors = []
    for (parent, op, rewrite, gain_prob), answer in zip(gained, answers, strict=True):
        if not answer.ok:
            failures.add(parent["id"], "respond", answer.error or "")
            continue
        output = (answer.text or "").strip()
        reason = output_reason(output, config)
        if reason:
            drops[reason] += 1
            continue
        survivors.append(
            {
                **{k: parent[k] for k in ("viewpoint",) if k in parent},
                "id": f"{parent['id']}-e{round_no}",
                "instruction": rewrite,
                "input": "",
                "output": output,
                "source": "evol_instruct",
                "lineage": {
                    "parent_id": parent["id"],
                    "root_id": parent.get("lineage", {}).get("root_id") or parent["id"],
                    "operation": op,
                    "kind": evolve_operations()[op]["kind"],
                    "round": round_no,
                    "gain_prob": round(gain_prob, 4),
                },
                "generator": config.generator.model,
                "responder": config.responder.model,
                **provenance_of([parent], (config.generator.terms, config.responder.terms)),
                **(
                    {
                        "question": verifiable[parent["id"]]["question"],
                        "instruction_id_list": verifiable[parent["id"]]["instruction_id_list"],
                        "kwargs": verifiable[parent["id"]]["kwargs"],
                    }
                    if op == "verifiable"
                    else {}
                ),
            }
        )
    log.info("round %d: %d of %d evolved instructions survive", round_no, len(survivors), len(parents))
    return survivors


def evolve(
    records: list[Record], clients: dict[str, LLMClient], config: EvolveConfig, failures: Failures
) -> tuple[list[Record], dict[str, dict]]:
    """Return the inputs followed by every round's survivors, and per-round drop counts."""
    parents = records if config.max_instructions is None else records[: config.max_instructions]
    out = list(records)
    per_round: dict[str, dict] = {}
    for round_no in range(1, config.rounds + 1):
        if not parents:
            break
        drops: Counter = Counter()
        n_parents = len(parents)
        parents = evolve_round(parents, round_no, clients, config, failures, drops)
        out += parents
        per_round[str(round_no)] = {
            "parents": n_parents,
            "evolved": len(parents),
            "dropped": dict(sorted(drops.items())),
        }
    return out, per_round


@click.command("evolve")
@click.option("--in", "in_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
@click.option("--failures", "failures_path", required=True, type=click.Path(dir_okay=False))
@click.option("--metrics", "metrics_path", required=True, type=click.Path(dir_okay=False))
@click.option("--params", "params_path", default="params.yaml", show_default=True)
def main(in_path: str, out_path: str, failures_path: str, metrics_path: str, params_path: str) -> None:
    """Evolve instructions (Evol-Instruct in-depth / in-breadth) and eliminate failed evolutions."""
    config = load_section(EvolveConfig, "evolve", params_path)
    run = StageRun(
        "evolve",
        config,
        params_path,
        outputs=(out_path, failures_path, metrics_path),
        budget_usd=config.budget_usd,
    )
    records = read_jsonl(in_path, required=INPUT_FIELDS)
    clients = {
        role: run.client(f"evolve.{role}", llm)
        for role, llm in (
            ("generator", config.generator),
            ("judge", config.judge),
            ("responder", config.responder),
        )
    }
    out, per_round = evolve(records, clients, config, run.failures)
    parents = sum(v["parents"] for v in per_round.values())
    run.finish(input_rows=parents, failures_path=failures_path, max_failure_rate=config.max_failure_rate)
    write_jsonl(out_path, out)
    evolved = [r for r in out if r["source"] == "evol_instruct"]
    write_metrics(
        metrics_path,
        {
            "inputs": len(records),
            "evolved": len(evolved),
            "total": len(out),
            "rounds": per_round,
            "operations": dict(sorted(Counter(r["lineage"]["operation"] for r in evolved).items())),
            "mean_japanese_ratio": mean([japanese_ratio(r["instruction"] + r["output"]) for r in evolved]),
            **run.metrics(),
        },
    )
