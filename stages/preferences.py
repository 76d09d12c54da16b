"""Write the preference sets in the formats TRL expects, split by prompt, decontaminated.

- pairwise (DPO / IPO): conversational `prompt` / `chosen` / `rejected`;
- unpaired (KTO): `prompt` / `completion` / `label` (True = chosen);
- binary (GENIAC classifiers): single `text` with `label` 1 = chosen, 0 = rejected.

Judged pairs (`decide`) and verifier-labelled pairs (`verify`) are merged; each row keeps its
`label_source`. Train and eval are split by prompt, so no prompt is in both. Pairs whose prompt is too
similar to an evaluation prompt are dropped first (the dedup core's ROUGE-L; a verifiable prompt is
compared by its question, since its appended instructions are shared with the evaluation by design).
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import click

from jalign.config import load_section
from jalign.evalsets import decontaminate, load_eval_prompts, load_eval_sets
from jalign.params import PreferencesConfig
from jalign.records import Record, RecordError, licence_list, read_jsonl, write_jsonl
from jalign.reward import classifier_text
from jalign.stage import log, setup_logging, start_stage, write_metrics

FORMATS = ("pairwise", "kto", "binary")


def split_by_prompt(pairs: list[Record], eval_size: int, seed: int) -> dict[str, list[Record]]:
    prompts = sorted({p["prompt_id"] for p in pairs})
    random.Random(seed).shuffle(prompts)
    held_out = set(prompts[: min(eval_size, len(prompts) // 2)])
    return {
        "train": [p for p in pairs if p["prompt_id"] not in held_out],
        "eval": [p for p in pairs if p["prompt_id"] in held_out],
    }


def provenance_fields(pair: Record) -> Record:
    """What every row of every set carries besides its training fields (the trainers drop them)."""
    return {
        "pair_id": pair["pair_id"],
        "label_source": pair.get("label_source", "judge"),
        "license": licence_list(pair.get("license")),
        "model_terms": sorted(pair.get("model_terms") or ()),
    }


def to_pairwise(pair: Record) -> Record:
    return {
        "prompt": [{"role": "user", "content": pair["prompt"]}],
        "chosen": [{"role": "assistant", "content": pair["chosen"]}],
        "rejected": [{"role": "assistant", "content": pair["rejected"]}],
        **provenance_fields(pair),
    }


def to_kto(pair: Record) -> list[Record]:
    prompt = [{"role": "user", "content": pair["prompt"]}]
    return [
        {
            "prompt": prompt,
            "completion": [{"role": "assistant", "content": pair["chosen"]}],
            "label": True,
            **provenance_fields(pair),
        },
        {
            "prompt": prompt,
            "completion": [{"role": "assistant", "content": pair["rejected"]}],
            "label": False,
            **provenance_fields(pair),
        },
    ]


def to_binary(pair: Record) -> list[Record]:
    return [
        {"text": classifier_text(pair["prompt"], pair["chosen"]), "label": 1, **provenance_fields(pair)},
        {"text": classifier_text(pair["prompt"], pair["rejected"]), "label": 0, **provenance_fields(pair)},
    ]


def build_sets(pairs: list[Record], eval_prompts: list, config: PreferencesConfig) -> tuple[dict, dict]:
    clean, contaminated = decontaminate(
        pairs,
        [p.get("question") or p["prompt"] for p in pairs],
        eval_prompts,
        config.contamination_threshold,
        id_field="pair_id",
    )
    splits = split_by_prompt(clean, config.eval_size, config.seed)
    sets = {}
    for split, rows in splits.items():
        sets[("pairwise", split)] = [to_pairwise(p) for p in rows]
        sets[("kto", split)] = [r for p in rows for r in to_kto(p)]
        sets[("binary", split)] = [r for p in rows for r in to_binary(p)]
    report = {
        "pairs_in": len(pairs),
        "dropped": {"contaminated": len(contaminated)},
        "contamination_examples": contaminated[:20],
        "prompts": {s: len({p["prompt_id"] for p in rows}) for s, rows in splits.items()},
        "rows": {f"{fmt}_{split}": len(rows) for (fmt, split), rows in sets.items()},
        "label_sources": {
            split: dict(sorted(Counter(p.get("label_source", "judge") for p in rows).items()))
            for split, rows in splits.items()
        },
        "chosen_responders": dict(Counter(p["chosen_responder"] for p in clean)),
        "licenses": dict(
            sorted(Counter(lic for p in clean for lic in licence_list(p.get("license"))).items())
        ),
        "model_terms": dict(sorted(Counter(t for p in clean for t in p.get("model_terms") or ()).items())),
    }
    return sets, report


@click.command("preferences")
@click.option(
    "--pairs",
    "pairs_paths",
    required=True,
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="A pairs JSONL (decide's judged pairs, verify's verifier pairs); repeat to merge.",
)
@click.option("--out-dir", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--metrics", "metrics_path", required=True, type=click.Path(dir_okay=False))
@click.option("--params", "params_path", default="params.yaml", show_default=True)
def main(pairs_paths: tuple[str, ...], out_dir: str, metrics_path: str, params_path: str) -> None:
    """Write pairwise / KTO / binary preference sets, split by prompt and decontaminated."""
    setup_logging()
    config = load_section(PreferencesConfig, "preferences", params_path)
    start_stage("preferences", config, [out_dir, metrics_path])
    pairs: list[Record] = []
    seen: dict[str, str] = {}
    for path in pairs_paths:
        for pair in read_jsonl(path, required=("pair_id", "prompt_id", "prompt", "chosen", "rejected")):
            if pair["pair_id"] in seen:
                raise RecordError(
                    f"{path}: pair_id {pair['pair_id']!r} repeated (first in {seen[pair['pair_id']]})"
                )
            seen[pair["pair_id"]] = path
            pairs.append(pair)
    sets, report = build_sets(pairs, load_eval_prompts(load_eval_sets(params_path)), config)
    for (fmt, split), rows in sets.items():
        write_jsonl(Path(out_dir) / f"{fmt}_{split}.jsonl", rows)
    log.info("preference rows: %s", report["rows"])
    write_metrics(metrics_path, {**report})
