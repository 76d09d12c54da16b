"""Verifier-labelled preference pairs (Tülu 3's constraint-satisfaction pairs, with M-IFEval's checkers).

Prompts that carry verifiable instructions (our training questions with instructions appended, and
curated instructions that the `verifiable` evolve operation constrained) are answered N times by the
policy itself (on-policy, the chat format the evaluation uses). Each answer is checked by program,
strict mode; the answer that satisfies the most instructions is chosen, the one that satisfies the
fewest rejected. Prompts whose answers all satisfy equally many carry no preference and are dropped
(counted). No judge is involved, so the label cannot be wrong the way a 270M judge is.

A verifier rewards what an answer lacks as much as what it has: a looping '学習目標学習目標…' has no 、, no
。 and no forbidden word. Measured here: DPO on such pairs collapsed the policy into that loop while
its strict accuracy rose. So only a well-formed answer (enough distinct character 4-grams, mostly
Japanese) may be chosen; a degenerate one can still be rejected.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace
from typing import Any

import click

from jalign.config import load_section
from jalign.ifeval.compose import compose_rows, load_specs, read_questions
from jalign.ifeval.evaluation import follows_instructions, validate_instructions
from jalign.llm.client import LLMClient
from jalign.llm.types import Request
from jalign.llm_stage import StageRun
from jalign.params import VerifyConfig
from jalign.records import Record, line_of, provenance_of, read_jsonl, write_jsonl
from jalign.stage import Failures, log, rate, write_metrics
from jalign.text import distinct_ngram_ratio, japanese_ratio


def load_prompts(questions_path: str, instructions_path: str | None, config: VerifyConfig) -> list[Record]:
    """Training questions with instructions appended, then constrained curated instructions."""
    rows = [
        {**row, "origin": "questions", "license": [config.license], "model_terms": []}
        for row in compose_rows(
            read_questions(questions_path),
            config.seed,
            config.min_instructions,
            config.max_instructions,
            key="verify",
            specs={i: load_specs()[i] for i in config.instruction_ids} if config.instruction_ids else None,
        )
    ]
    if config.include_instructions and instructions_path:
        records = read_jsonl(instructions_path)
        for index, record in enumerate(records):
            if not record.get("instruction_id_list"):
                continue
            validate_instructions(
                record["instruction_id_list"],
                record.get("kwargs") or [],
                f"{instructions_path}:{line_of(records, index)}",
            )
            rows.append(
                {
                    "key": record["id"],
                    "prompt": record["instruction"],
                    "question": record.get("question") or record["instruction"],
                    "instruction_id_list": record["instruction_id_list"],
                    "kwargs": record["kwargs"],
                    "origin": "instructions",
                    **provenance_of([record]),
                }
            )
    return rows if config.max_prompts is None else rows[: config.max_prompts]


def sample_answers(
    rows: list[Record], client: LLMClient, config: VerifyConfig, failures: Failures
) -> dict[str, list[str]]:
    """N answers per prompt (seeds seed..seed+N-1). A prompt with any failed answer is lost whole, so
    which answers are paired never depends on which calls failed."""
    sampling = config.policy.sampling
    requests = [
        Request(
            messages=({"role": "user", "content": row["prompt"]},),
            sampling=replace(sampling, seed=sampling.seed + k),
        )
        for row in rows
        for k in range(config.samples)
    ]
    generations = client.generate(requests)
    answers: dict[str, list[str]] = {}
    for n, row in enumerate(rows):
        gens = generations[n * config.samples : (n + 1) * config.samples]
        bad = [(k, g) for k, g in enumerate(gens) if not g.ok]
        for k, gen in bad:
            failures.add(row["key"], "sample", gen.error or "unknown error", sample=k)
        if not bad:
            answers[row["key"]] = [(g.text or "").strip() for g in gens]
    return answers


def well_formed(answer: str, config: VerifyConfig) -> bool:
    """May be chosen: not a loop, mostly Japanese."""
    return (
        distinct_ngram_ratio(answer) >= config.min_distinct_4grams
        and japanese_ratio(answer) >= config.min_japanese_ratio
    )


def pair_of(
    row: Record, answers: list[str], outcomes: list[list[bool]], config: VerifyConfig
) -> tuple[Record | None, str]:
    """Chosen: the first well-formed answer satisfying the most instructions; rejected: the first
    answer satisfying the fewest. (None, why) when no well-formed answer satisfies more than another."""
    counts = [sum(o) for o in outcomes]
    eligible = [k for k, a in enumerate(answers) if well_formed(a, config)]
    if not eligible:
        return None, "none_well_formed"
    best = max(eligible, key=lambda k: (counts[k], -k))
    worst = counts.index(min(counts))
    if counts[best] <= counts[worst]:
        return None, "all_pass" if all(all(o) for o in outcomes) else "tie"
    return {
        "pair_id": f"verify/{row['key']}",
        "prompt_id": row["key"],
        "prompt": row["prompt"],
        "question": row["question"],
        "origin": row["origin"],
        "license": row["license"],
        "model_terms": row["model_terms"],
        "label_source": "verifier",
        "instruction_id_list": row["instruction_id_list"],
        "kwargs": row["kwargs"],
        "chosen": answers[best],
        "rejected": answers[worst],
        "chosen_follow": outcomes[best],
        "rejected_follow": outcomes[worst],
        "chosen_responder": f"sample{best}",
        "rejected_responder": f"sample{worst}",
        "chosen_model": config.policy.model,
        "rejected_model": config.policy.model,
    }, ""


def verify(
    rows: list[Record], answers: dict[str, list[str]], config: VerifyConfig
) -> tuple[list[Record], list[Record], dict[str, Any]]:
    """(pairs, every checked sample, statistics) from the sampled answers of each prompt."""
    pairs, samples = [], []
    drops: Counter = Counter()
    per_id: dict[str, Counter] = defaultdict(Counter)
    terms = [config.policy.terms] if config.policy.terms else []
    for row in rows:
        if row["key"] not in answers:
            continue
        row = {**row, "model_terms": sorted({*row["model_terms"], *terms})}
        texts = answers[row["key"]]
        outcomes = [
            follows_instructions(t, row["instruction_id_list"], row["kwargs"], row["prompt"], "strict")
            for t in texts
        ]
        for k, (text, outcome) in enumerate(zip(texts, outcomes, strict=True)):
            samples.append(
                {
                    "prompt_id": row["key"],
                    "sample": k,
                    "answer": text,
                    "follow": outcome,
                    "well_formed": well_formed(text, config),
                }
            )
        pair, why = pair_of(row, texts, outcomes, config)
        if pair is None:
            drops[why] += 1
        else:
            pairs.append(pair)
        for i, iid in enumerate(row["instruction_id_list"]):
            per_id[iid]["prompts"] += 1
            per_id[iid]["answers"] += len(outcomes)
            per_id[iid]["followed"] += sum(o[i] for o in outcomes)
            per_id[iid]["pairs"] += pair is not None
            if pair is not None:
                per_id[iid]["chosen_followed"] += pair["chosen_follow"][i]
                per_id[iid]["rejected_followed"] += pair["rejected_follow"][i]
    checked = [s["follow"] for s in samples]
    stats = {
        "prompts": len(rows),
        "prompts_answered": len(answers),
        "answers": len(samples),
        "pairs": len(pairs),
        "dropped": dict(sorted(drops.items())),
        "well_formed": rate(sum(s["well_formed"] for s in samples), len(samples)),
        "prompt_level_followed": rate(sum(all(f) for f in checked), len(checked)),
        "instruction_level_followed": rate(sum(map(sum, checked)), sum(map(len, checked))),
        "chosen_instruction_followed": rate(
            sum(sum(p["chosen_follow"]) for p in pairs), sum(len(p["chosen_follow"]) for p in pairs)
        ),
        "rejected_instruction_followed": rate(
            sum(sum(p["rejected_follow"]) for p in pairs), sum(len(p["rejected_follow"]) for p in pairs)
        ),
        "origins": dict(sorted(Counter(p["origin"] for p in pairs).items())),
        "per_instruction": {
            iid: {
                "prompts": c["prompts"],
                "followed": rate(c["followed"], c["answers"]),
                "pairs": c["pairs"],
                "chosen_followed": rate(c["chosen_followed"], c["pairs"]),
                "rejected_followed": rate(c["rejected_followed"], c["pairs"]),
            }
            for iid, c in sorted(per_id.items())
        },
    }
    return pairs, samples, stats


@click.command("verify")
@click.option("--questions", "questions_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--instructions", "instructions_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
@click.option("--samples", "samples_path", required=True, type=click.Path(dir_okay=False))
@click.option("--failures", "failures_path", required=True, type=click.Path(dir_okay=False))
@click.option("--metrics", "metrics_path", required=True, type=click.Path(dir_okay=False))
@click.option("--params", "params_path", default="params.yaml", show_default=True)
def main(
    questions_path: str,
    instructions_path: str | None,
    out_path: str,
    samples_path: str,
    failures_path: str,
    metrics_path: str,
    params_path: str,
) -> None:
    """Sample the policy N times per verifiable prompt; pair the answer that follows the most
    instructions (chosen) with the one that follows the fewest (rejected)."""
    config = load_section(VerifyConfig, "verify", params_path)
    run = StageRun(
        "verify",
        config,
        params_path,
        outputs=(out_path, samples_path, failures_path, metrics_path),
        budget_usd=config.budget_usd,
    )
    rows = load_prompts(questions_path, instructions_path, config)
    answers = sample_answers(rows, run.client("verify.policy", config.policy), config, run.failures)
    run.finish(input_rows=len(rows), failures_path=failures_path, max_failure_rate=config.max_failure_rate)
    pairs, samples, stats = verify(rows, answers, config)
    write_jsonl(out_path, pairs)
    write_jsonl(samples_path, samples)
    log.info("verify: %d pairs from %d prompts (%s dropped)", len(pairs), len(rows), stats["dropped"])
    write_metrics(metrics_path, {**stats, **run.metrics()})
