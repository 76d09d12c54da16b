"""Curation, Magpie-style (Xu et al., arXiv:2406.08464): global near-duplicate removal, a contamination
check against the evaluation prompts, then LLM tags for input quality, difficulty and task category
(choice-constrained, so every tag is a probability distribution, not a parsed string) with thresholds.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import click

from jalign import prompts
from jalign.config import load_section
from jalign.dedup import dedup_with_reasons
from jalign.evalsets import decontaminate, load_eval_prompts, load_eval_sets
from jalign.llm.client import LLMClient
from jalign.llm.types import Choice, LLMConfig, Request
from jalign.llm_stage import StageRun
from jalign.params import CATEGORY, CurateConfig
from jalign.records import Record, read_jsonl, user_prompt, write_jsonl
from jalign.stage import Failures, log, mean, write_metrics
from jalign.text import japanese_ratio

QUALITY = {"1": "very_poor", "2": "poor", "3": "average", "4": "good", "5": "excellent"}
DIFFICULTY = {"1": "very_easy", "2": "easy", "3": "medium", "4": "hard", "5": "very_hard"}
TAGS = {
    "quality": ("curate_quality", QUALITY),
    "difficulty": ("curate_difficulty", DIFFICULTY),
    "category": ("curate_category", CATEGORY),
}


def tag_requests(records: list[Record], template: str, tagger: LLMConfig) -> list[Request]:
    return [
        Request(
            messages=(
                {
                    "role": "user",
                    "content": prompts.render(
                        template, instruction=r["instruction"], input=r.get("input") or "なし"
                    ),
                },
            ),
            sampling=tagger.sampling,
        )
        for r in records
    ]


def tag_value(choice: Choice, labels: dict[str, str]) -> dict:
    """The most likely label, its expected score on ordinal scales, and the full distribution."""
    assert choice.probs is not None
    best = choice.best or ""
    value = {"label": labels[best], "probs": {labels[k]: round(v, 4) for k, v in choice.probs.items()}}
    if best.isdigit():
        value["score"] = round(sum(int(k) * p for k, p in choice.probs.items()), 3)
        value["level"] = int(best)
    return value


def tag_reason(tags: dict, config: CurateConfig) -> str | None:
    """Why a tagged row is dropped, or None. min_quality holds for the expected score and for the most
    likely level alike: a row tagged very_poor (1) never passes a "poor or better" gate (2.0), even
    when the probability spread over better levels lifts its expected score above 2."""
    if tags["quality"]["score"] < config.min_quality:
        return "low_quality"
    if tags["quality"]["level"] < config.min_quality:
        return "low_quality_tag"
    if not config.min_difficulty <= tags["difficulty"]["score"] <= config.max_difficulty:
        return "difficulty_out_of_range"
    if tags["category"]["label"] in config.drop_categories:
        return "category_dropped"
    return None


def curate(
    records: list[Record], eval_prompts: list, client: LLMClient, config: CurateConfig, failures: Failures
) -> tuple[list[Record], dict]:
    drops: Counter = Counter()
    verdict = dedup_with_reasons([user_prompt(r) for r in records], config.dedup_threshold)
    unique = [r for r, keep in zip(records, verdict.keep, strict=True) if keep]
    drops["near_duplicate"] = len(records) - len(unique)

    clean, contaminated = decontaminate(
        unique, [user_prompt(r) for r in unique], eval_prompts, config.contamination_threshold
    )
    drops["contaminated"] = len(contaminated)

    answers = {
        tag: client.choose(tag_requests(clean, template, config.tagger), choices=tuple(labels))
        for tag, (template, labels) in TAGS.items()
    }
    kept = []
    for i, record in enumerate(clean):
        failed = [tag for tag in TAGS if not answers[tag][i].ok]
        for tag in failed:
            failures.add(record["id"], f"tag:{tag}", answers[tag][i].error or "")
        if failed:
            drops["tag_failure"] += 1
            continue
        if any(answers[tag][i].mass < config.min_choice_mass for tag in TAGS):
            drops["tag_low_mass"] += 1  # the tagger wanted to say something else: no tag, not a guess
            continue
        tags = {tag: tag_value(answers[tag][i], TAGS[tag][1]) for tag in TAGS}
        for tag in TAGS:
            tags[tag]["mass"] = round(answers[tag][i].mass, 4)
        reason = tag_reason(tags, config)
        if reason:
            drops[reason] += 1
            continue
        kept.append({**record, "tags": tags, "tagger": config.tagger.model})  # tags shape no text: no terms
    report = {
        "inputs": len(records),
        "curated": len(kept),
        "dropped": dict(sorted(drops.items())),
        "dedup_rate": round(drops["near_duplicate"] / len(records), 4) if records else 0.0,
        "contamination": {
            "eval_prompts": len(eval_prompts),
            "threshold": config.contamination_threshold,
            "dropped": len(contaminated),
            "examples": contaminated[:20],
        },
        "categories": dict(sorted(Counter(r["tags"]["category"]["label"] for r in kept).items())),
        "mean_quality": mean([r["tags"]["quality"]["score"] for r in kept]),
        "mean_difficulty": mean([r["tags"]["difficulty"]["score"] for r in kept]),
        "mean_japanese_ratio": mean([japanese_ratio(r["instruction"] + r["output"]) for r in kept]),
    }
    return kept, report


def funnel(upstream: dict[str, dict], report: dict) -> dict:
    """The whole instruction half in one place: counts after each filter, and why rows were dropped."""
    si, ev = upstream.get("self_instruct", {}), upstream.get("evolve", {})
    return {
        "self_instruct_generated": si.get("generated"),
        "self_instruct_accepted": si.get("accepted"),
        "self_instruct_dropped": si.get("dropped"),
        "evolve_inputs": ev.get("inputs"),
        "evolve_evolved": ev.get("evolved"),
        "evolve_dropped": {r: v["dropped"] for r, v in (ev.get("rounds") or {}).items()},
        "curate_inputs": report["inputs"],
        "curated": report["curated"],
        "curate_dropped": report["dropped"],
    }


@click.command("curate")
@click.option("--in", "in_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
@click.option("--failures", "failures_path", required=True, type=click.Path(dir_okay=False))
@click.option("--metrics", "metrics_path", required=True, type=click.Path(dir_okay=False))
@click.option(
    "--upstream-report",
    "upstream",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="reports (.meta.json) of earlier instruction stages, folded into one funnel with their usage",
)
@click.option("--params", "params_path", default="params.yaml", show_default=True)
def main(
    in_path: str,
    out_path: str,
    failures_path: str,
    metrics_path: str,
    upstream: tuple[str, ...],
    params_path: str,
) -> None:
    """Tag, filter, deduplicate and decontaminate the instruction data."""
    config = load_section(CurateConfig, "curate", params_path)
    run = StageRun(
        "curate",
        config,
        params_path,
        outputs=(out_path, failures_path, metrics_path),
        budget_usd=config.budget_usd,
    )
    records = read_jsonl(in_path, required=("id", "instruction", "output"))
    eval_prompts = load_eval_prompts(load_eval_sets(params_path))
    client = run.client("curate.tagger", config.tagger)
    kept, report = curate(records, eval_prompts, client, config, run.failures)
    run.finish(input_rows=len(records), failures_path=failures_path, max_failure_rate=config.max_failure_rate)
    write_jsonl(out_path, kept)
    # metrics/self_instruct.meta.json -> self_instruct
    previous = {Path(p).name.split(".")[0]: json.loads(Path(p).read_text()) for p in upstream}
    stage_metrics = run.metrics()
    usage = {"curate": stage_metrics["usage"]["total"]} | {
        k: v.get("usage", {}).get("total") for k, v in previous.items()
    }
    log.info("curated %d of %d instructions", len(kept), len(records))
    write_metrics(
        metrics_path,
        {
            **report,
            "funnel": funnel(previous, report),
            **stage_metrics,
            "pipeline_usage": usage,
            "total_tokens": sum(
                (u or {}).get("input_tokens", 0) + (u or {}).get("output_tokens", 0) for u in usage.values()
            ),
            "total_usd": round(sum((u or {}).get("usd", 0.0) for u in usage.values()), 6),
        },
    )
