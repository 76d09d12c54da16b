"""Evaluation prompt sets (params.yaml `evaluate.sets`), shared by the contamination checks and the
evaluation stage: training data must never contain anything too close to an eval prompt."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jalign.config import ConfigError, from_dict, read_params
from jalign.records import read_jsonl


@dataclass(frozen=True)
class EvalSet:
    name: str
    path: str  # local JSONL
    prompt_field: str = "prompt"
    id_field: str = "id"


@dataclass(frozen=True)
class EvalPrompt:
    set_name: str
    id: str
    prompt: str


def load_eval_sets(params_path: str | Path = "params.yaml") -> list[EvalSet]:
    raw = (read_params(params_path).get("evaluate") or {}).get("sets")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(
            f"{params_path}: evaluate.sets must be a non-empty list of {{name, path, prompt_field}}"
        )
    return [from_dict(EvalSet, item, f"evaluate.sets[{i}]") for i, item in enumerate(raw)]


def load_eval_prompts(sets: list[EvalSet]) -> list[EvalPrompt]:
    prompts = []
    for eval_set in sets:
        for lineno, record in enumerate(
            read_jsonl(eval_set.path, required=(eval_set.prompt_field,)), start=1
        ):
            rid = str(record.get(eval_set.id_field, lineno))
            prompts.append(EvalPrompt(eval_set.name, rid, record[eval_set.prompt_field]))
    return prompts


def decontaminate(
    records: list[dict],
    texts: list[str],
    eval_prompts: list[EvalPrompt],
    threshold: float,
    id_field: str = "id",
) -> tuple[list[dict], list[dict]]:
    """Split records into (clean, contaminated): contaminated when the character ROUGE-L F1 of its text
    to any eval prompt exceeds `threshold`. Each contaminated entry names the eval prompt it hit."""
    from jalign.dedup import max_similarity

    scores, nearest = max_similarity(texts, [p.prompt for p in eval_prompts])
    clean, contaminated = [], []
    for record, score, idx in zip(records, scores, nearest, strict=True):
        if score > threshold:
            hit = eval_prompts[idx]
            contaminated.append(
                {id_field: record[id_field], "eval": f"{hit.set_name}/{hit.id}", "rouge_l": round(score, 4)}
            )
        else:
            clean.append(record)
    return clean, contaminated
