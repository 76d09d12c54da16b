"""Evol-Instruct (Xu et al., WizardLM, arXiv:2304.12244) with Japanese mutation prompts.

Each round rewrites every surviving instruction with one mutation: in-depth (add constraints, deepen,
concretise, increase reasoning steps, complicate the input) or in-breadth (a new, rarer task in the
same domain). Then WizardLM's elimination: the rewrite must gain information over its parent (judged
by the LLM as a constrained yes/no), must not copy the template's words, and its answer must be
neither a refusal / short apology nor punctuation only. Every record keeps its lineage.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources

import click
import yaml

from jalign import prompts
from jalign.config import load_section
from jalign.llm import Budget, LLMClient, LLMConfig, Request
from jalign.records import Record, read_jsonl, write_json, write_jsonl
from jalign.stage import Failures, log, log_params, mean, price_for, provenance, setup_logging, usage_metrics
from jalign.text import is_punctuation_only, japanese_ratio

INPUT_FIELDS = ("id", "instruction", "output")


@cache
def operations() -> dict[str, dict[str, str]]:
    return yaml.safe_load((resources.files("jalign.prompts") / "evolve_operations.yaml").read_text("utf-8"))


@dataclass(frozen=True)
class EvolveConfig:
    """params.yaml `evolve`."""

    generator: LLMConfig  # writes the mutated instruction
    responder: LLMConfig  # answers it
    judge: LLMConfig  # decides "information gain" (choice-constrained はい/いいえ)
    rounds: int = 1  # WizardLM ran 4; each round evolves the previous round's survivors
    operations: tuple[str, ...] = (
        "constraints",
        "deepen",
        "concretize",
        "reasoning",
        "complicate_input",
        "breadth",
    )
    max_instructions: int | None = None  # evolve only the first N inputs (small CPU profiles)
    seed: int = 42
    min_gain_prob: float = 0.5  # P(はい) below this: "no information gain", eliminated
    min_choice_mass: float = 0.05  # P(はい) + P(いいえ) below this: the judge answered neither
    min_output_chars: int = 10
    max_instruction_chars: int = 400
    min_japanese_ratio: float = 0.6
    refusal_markers: tuple[str, ...] = (
        "申し訳",
        "できません",
        "お答えでき",
        "わかりません",
        "分かりません",
        "AIとして",
    )
    refusal_max_chars: int = 80  # a refusal marker in an answer shorter than this: a refusal / apology
    template_markers: tuple[str, ...] = (
        "#元の指示#",
        "#書き換えた指示#",
        "元の指示",
        "書き換えた指示",
        "### 指示",
        "方針:",
    )
    max_failure_rate: float = 0.1
    budget_usd: float | None = None
    license: str = "apache-2.0"

    def __post_init__(self) -> None:
        unknown = [op for op in self.operations if op not in operations()]
        if unknown or not self.operations:
            raise ValueError(f"operations: unknown {unknown}; known: {sorted(operations())}")
        if self.rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {self.rounds}")


def mutation_prompt(instruction: str, operation: str) -> str:
    op = operations()[operation]
    return prompts.render(
        "evolve",
        method=op["method"],
        example_before=op["example_before"],
        example_after=op["example_after"],
        instruction=instruction,
    )


def full_instruction(record: Record) -> str:
    """Instruction with its input appended, as the user would send it."""
    return f"{record['instruction']}\n{record['input']}" if record.get("input") else record["instruction"]


def clean_rewrite(text: str) -> str:
    """First paragraph of the generated rewrite, without a leading label or quotes."""
    text = text.strip().split("\n\n")[0].strip()
    return re.sub(r"^(#?書き換えた指示#?\s*[:：]?)", "", text).strip().strip('「」"')


def instruction_reason(parent: Record, rewrite: str, config: EvolveConfig) -> str | None:
    if not rewrite:
        return "empty"
    if rewrite == parent["instruction"] or rewrite == full_instruction(parent):
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
    gen_cfg = config.generator
    rewrites = clients["generator"].generate(
        [
            Request(
                messages=({"role": "user", "content": mutation_prompt(full_instruction(p), op)},),
                sampling=replace(gen_cfg.sampling, seed=gen_cfg.sampling.seed + round_no),
            )
            for p, op in zip(parents, ops, strict=True)
        ]
    )
    candidates = []
    for parent, op, gen in zip(parents, ops, rewrites, strict=True):
        if not gen.ok:
            failures.add(parent["id"], f"mutate:{op}", gen.error or "")
            drops["llm_failure"] += 1
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
                        "content": prompts.render("evolve_gain", before=full_instruction(p), after=r),
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
            drops["llm_failure"] += 1
        elif gain.mass < config.min_choice_mass:
            drops["gain_judge_low_mass"] += 1  # no usable yes/no: not evidence of a gain
        elif gain.probs["はい"] < config.min_gain_prob:
            drops["no_information_gain"] += 1
        else:
            gained.append((parent, op, rewrite, gain.probs["はい"]))

    answers = clients["responder"].generate(
        [response_request(rewrite, config.responder, round_no) for _, _, rewrite, _ in gained]
    )
    survivors = []
    for (parent, op, rewrite, gain_prob), answer in zip(gained, answers, strict=True):
        if not answer.ok:
            failures.add(parent["id"], "respond", answer.error or "")
            drops["llm_failure"] += 1
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
                    "kind": operations()[op]["kind"],
                    "round": round_no,
                    "gain_prob": round(gain_prob, 4),
                },
                "generator": config.generator.model,
                "responder": config.responder.model,
                "license": config.license,
            }
        )
    log.info("round %d: %d of %d evolved instructions survive", round_no, len(survivors), len(parents))
    return survivors


def evolve(
    records: list[Record], clients: dict[str, LLMClient], config: EvolveConfig, failures: Failures
) -> tuple[list[Record], dict[str, dict[str, int]]]:
    """Return the inputs followed by every round's survivors, and per-round drop counts."""
    parents = records if config.max_instructions is None else records[: config.max_instructions]
    out = list(records)
    per_round: dict[str, dict[str, int]] = {}
    for round_no in range(1, config.rounds + 1):
        if not parents:
            break
        drops: Counter = Counter()
        parents = evolve_round(parents, round_no, clients, config, failures, drops)
        out += parents
        per_round[str(round_no)] = {"evolved": len(parents), "dropped": dict(sorted(drops.items()))}
    return out, per_round


@click.command("evolve")
@click.option("--in", "in_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
@click.option("--failures", "failures_path", required=True, type=click.Path(dir_okay=False))
@click.option("--metrics", "metrics_path", required=True, type=click.Path(dir_okay=False))
@click.option("--params", "params_path", default="params.yaml", show_default=True)
def main(in_path: str, out_path: str, failures_path: str, metrics_path: str, params_path: str) -> None:
    """Evolve instructions (Evol-Instruct in-depth / in-breadth) and eliminate failed evolutions."""
    setup_logging()
    config = load_section(EvolveConfig, "evolve", params_path)
    log_params("evolve", config)
    records = read_jsonl(in_path, required=INPUT_FIELDS)
    budget = Budget(config.budget_usd)
    clients = {
        role: LLMClient(llm, price=price_for(llm, params_path), budget=budget)
        for role, llm in (
            ("generator", config.generator),
            ("judge", config.judge),
            ("responder", config.responder),
        )
    }
    failures = Failures("evolve")
    out, per_round = evolve(records, clients, config, failures)
    failures.write(failures_path)
    failures.check(sum(c.usage.requests for c in clients.values()), config.max_failure_rate)
    write_jsonl(out_path, out)
    evolved = [r for r in out if r["source"] == "evol_instruct"]
    write_json(
        metrics_path,
        {
            "inputs": len(records),
            "evolved": len(evolved),
            "total": len(out),
            "rounds": per_round,
            "operations": dict(sorted(Counter(r["lineage"]["operation"] for r in evolved).items())),
            "mean_japanese_ratio": mean([japanese_ratio(r["instruction"] + r["output"]) for r in evolved]),
            "usage": usage_metrics(clients),
            "provenance": provenance(),
        },
    )
