"""Self-Instruct (Wang et al., arXiv:2212.10560) in Japanese, from hand-written seed tasks.

Each prompt shows k tasks (6 human seeds + 2 machine tasks from earlier rounds, as in the paper), each
tagged with a QA4AI quality viewpoint, and asks for one more task under a chosen viewpoint. New tasks
pass length bounds, a keyword blocklist, a Japanese-character gate and character-level ROUGE-L
near-duplicate rejection against the seeds and everything accepted so far.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import replace

import click

from jalign import prompts
from jalign.config import load_section
from jalign.dedup import dedup_with_reasons
from jalign.llm.client import LLMClient
from jalign.llm.types import Request
from jalign.llm_stage import StageRun
from jalign.params import SelfInstructConfig
from jalign.records import (
    Record,
    RecordError,
    check_unique_ids,
    line_of,
    read_jsonl,
    write_jsonl,
)
from jalign.stage import Failures, log, mean, write_metrics
from jalign.text import contains_any, japanese_ratio

SEED_FIELDS = ("id", "viewpoint", "instruction", "output")


def load_seeds(path: str) -> list[Record]:
    seeds = read_jsonl(path, required=SEED_FIELDS)
    check_unique_ids(seeds, path)
    for i, seed in enumerate(seeds):
        if not isinstance(seed.get("input", ""), str):
            raise RecordError(f"{path}:{line_of(seeds, i)}: field 'input' must be a string")
    return seeds


def format_example(task: Record, number: int) -> str:
    return prompts.render(
        "self_instruct_example",
        number=number,
        viewpoint=task["viewpoint"],
        instruction=task["instruction"],
        input=task.get("input") or "なし",
        output=task["output"],
    ).strip()


def build_prompt(examples: list[Record], viewpoint: str) -> str:
    shown = "\n\n".join(format_example(task, i) for i, task in enumerate(examples, start=1))
    return prompts.render("self_instruct", examples=shown, next_number=len(examples) + 1, viewpoint=viewpoint)


_TASK = re.compile(
    r"^指示\s*[:：](?P<instruction>.+?)\n\s*入力\s*[:：](?P<input>.*?)\n\s*出力\s*[:：](?P<output>.+)$",
    re.DOTALL,
)


_FIELD_LABEL = re.compile(r"(指示|入力|出力|観点)\s*[:：]")


def parse_task(text: str) -> dict[str, str] | None:
    """The generated continuation ('指示: ...\n入力: ...\n出力: ...') -> fields, or None."""
    match = _TASK.match(text.strip())
    if not match:
        return None
    task = {k: v.strip() for k, v in match.groupdict().items()}
    if task["input"] in ("なし", "無し", "(なし)", "（なし）", "-"):
        task["input"] = ""
    return task


def rejection_reason(task: dict[str, str], config: SelfInstructConfig) -> str | None:
    """Per-task filters before dedup; None means the task passes."""
    n = len(task["instruction"])
    if n < config.min_instruction_chars:
        return "instruction_too_short"
    if n > config.max_instruction_chars:
        return "instruction_too_long"
    if not config.min_output_chars <= len(task["output"]) <= config.max_output_chars:
        return "output_length"
    if _FIELD_LABEL.search(task["output"]) or _FIELD_LABEL.search(task["instruction"]):
        return "malformed"  # the model ran on into another task's fields
    if contains_any(task["instruction"] + task["input"], config.blocklist):
        return "blocklist"
    if japanese_ratio(task["instruction"] + task["output"]) < config.min_japanese_ratio:
        return "not_japanese"
    return None


def sample_prompts(
    seeds: list[Record],
    machine: list[Record],
    config: SelfInstructConfig,
    rng: random.Random,
    viewpoints: list[str],
) -> list[tuple[list[Record], str]]:
    out = []
    for _ in range(config.prompts_per_round):
        examples = rng.sample(seeds, min(config.human_shots, len(seeds)))
        examples += rng.sample(machine, min(config.machine_shots, len(machine)))
        rng.shuffle(examples)
        out.append((examples, rng.choice(viewpoints)))
    return out


def self_instruct(
    seeds: list[Record], client: LLMClient, config: SelfInstructConfig, failures: Failures
) -> tuple[list[Record], Counter]:
    """Run the rounds; return accepted task records and the drop counts by reason."""
    rng = random.Random(config.seed)
    viewpoints = sorted({s["viewpoint"] for s in seeds})
    accepted: list[Record] = []
    drops: Counter = Counter()
    sampling = config.generator.sampling
    for round_no in range(1, config.rounds + 1):
        plans = sample_prompts(seeds, accepted, config, rng, viewpoints)
        requests = [
            Request(
                messages=({"role": "user", "content": build_prompt(ex, vp)},),
                sampling=replace(sampling, seed=sampling.seed + 1000 * round_no + i),
            )
            for i, (ex, vp) in enumerate(plans)
        ]
        candidates = []
        for i, (gen, (_, viewpoint)) in enumerate(zip(client.generate(requests), plans, strict=True)):
            row_id = f"si-r{round_no}-{i:04d}"
            if not gen.ok:
                failures.add(row_id, "generate", gen.error or "")
                continue
            task = parse_task(gen.text or "")
            reason = "unparseable" if task is None else rejection_reason(task, config)
            if task is not None and reason is None and gen.finish_reason == "length":
                reason = "truncated"
            if reason:
                drops[reason] += 1
                continue
            candidates.append({"id": row_id, "viewpoint": viewpoint, **task})
        pool = [s["instruction"] for s in seeds] + [a["instruction"] for a in accepted]
        verdict = dedup_with_reasons(
            [c["instruction"] for c in candidates], config.rouge_threshold, prior=pool
        )
        for candidate, keep in zip(candidates, verdict.keep, strict=True):
            if keep:
                accepted.append(candidate)
            else:
                drops["near_duplicate"] += 1
        log.info("round %d: %d accepted so far", round_no, len(accepted))
    generator = config.generator.model
    records = [
        {
            "id": a["id"],
            "instruction": a["instruction"],
            "input": a["input"],
            "output": a["output"],
            "viewpoint": a["viewpoint"],
            "source": "self_instruct",
            # a task is its own root, as evolve names the root of every descendant
            "lineage": {"parent_id": None, "root_id": a["id"], "operation": "self_instruct", "round": 0},
            "generator": generator,
            "license": [config.license],
            "model_terms": [config.generator.terms],
        }
        for a in accepted
    ]
    return records, drops


@click.command("self-instruct")
@click.option("--seeds", "seeds_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
@click.option("--failures", "failures_path", required=True, type=click.Path(dir_okay=False))
@click.option("--metrics", "metrics_path", required=True, type=click.Path(dir_okay=False))
@click.option("--params", "params_path", default="params.yaml", show_default=True)
def main(seeds_path: str, out_path: str, failures_path: str, metrics_path: str, params_path: str) -> None:
    """Generate Japanese instructions from seed tasks (Self-Instruct)."""
    config = load_section(SelfInstructConfig, "self_instruct", params_path)
    run = StageRun(
        "self_instruct",
        config,
        params_path,
        outputs=(out_path, failures_path, metrics_path),
        budget_usd=config.budget_usd,
    )
    seeds = load_seeds(seeds_path)
    client = run.client("self_instruct.generator", config.generator)
    records, drops = self_instruct(seeds, client, config, run.failures)
    generated = config.rounds * config.prompts_per_round
    run.finish(input_rows=generated, failures_path=failures_path, max_failure_rate=config.max_failure_rate)
    write_jsonl(out_path, records)
    write_metrics(
        metrics_path,
        {
            "seeds": len(seeds),
            "generated": generated,
            "accepted": len(records),
            "acceptance_rate": round(len(records) / generated, 4) if generated else 0.0,
            "dropped": dict(sorted(drops.items())),
            "mean_japanese_ratio": mean([japanese_ratio(r["instruction"] + r["output"]) for r in records]),
            "viewpoints": dict(sorted(Counter(r["viewpoint"] for r in records).items())),
            **run.metrics(),
        },
    )
