"""The `report` stage: one static HTML page of the pipeline's data (reports/index.html).

It shows the instruction funnel with what each filter dropped, the preference pairs with the judge's
raw output in both orders, the evaluation games side by side and the IFEval results per instruction
(jalign/report). It reads only files other stages wrote, plus the local evaluation sets for their
questions, and calls no model: rebuilding it is cheap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from jalign.config import load_section
from jalign.evalsets import load_eval_items
from jalign.params import EvaluateConfig, ReportConfig
from jalign.records import Record, RecordError, read_jsonl, write_text
from jalign.report import ReportData, build_page
from jalign.stage import log, setup_logging, start_stage


def read_meta(path: str) -> dict[str, Any]:
    """A stage's metrics report (its .meta.json: the full report, provenance and reasons included)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path}: expected a JSON object (a stage's metrics report)")
    return data


def eval_questions(config: EvaluateConfig) -> dict[tuple[str, str], list[str]]:
    """(set, item id) -> the user turns, for the evaluation sets that are local files (a Hub set would
    need the network or its cache; its questions are left out and the page says so)."""
    return {(s.name, item.id): list(item.turns) for s in config.sets if s.path for item in load_eval_items(s)}


def _jsonl(path: str, *required: str) -> list[Record]:
    return list(read_jsonl(path, required=required))


_IN = click.Path(exists=True, dir_okay=False)


@click.command("report")
@click.option("--self-instruct", "self_instruct_path", required=True, type=_IN)
@click.option("--self-instruct-failures", "self_instruct_failures", required=True, type=_IN)
@click.option("--self-instruct-metrics", "self_instruct_metrics", required=True, type=_IN)
@click.option("--evolved", "evolved_path", required=True, type=_IN)
@click.option("--evolve-failures", "evolve_failures", required=True, type=_IN)
@click.option("--evolve-metrics", "evolve_metrics", required=True, type=_IN)
@click.option("--curated", "curated_path", required=True, type=_IN)
@click.option("--curate-failures", "curate_failures", required=True, type=_IN)
@click.option("--curate-metrics", "curate_metrics", required=True, type=_IN)
@click.option("--decide-metrics", "decide_metrics", required=True, type=_IN)
@click.option("--responses", "responses_path", required=True, type=_IN)
@click.option("--decided", "decided_path", required=True, type=_IN)
@click.option("--pairs", "pairs_path", required=True, type=_IN)
@click.option("--verified-pairs", "verified_path", required=True, type=_IN)
@click.option("--answers", "answers_path", required=True, type=_IN)
@click.option("--eval-judgments", "eval_judgments_path", required=True, type=_IN)
@click.option("--games", "games_path", required=True, type=_IN)
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
@click.option("--params", "params_path", default="params.yaml", show_default=True)
def main(out_path: str, params_path: str, **paths: str) -> None:
    """Write a static HTML page of the pipeline's data: funnel, pairs, games, IFEval."""
    setup_logging()
    config = load_section(ReportConfig, "report", params_path)
    evaluate = load_section(EvaluateConfig, "evaluate", params_path)
    start_stage("report", config, [out_path])
    data = ReportData(
        generated=_jsonl(paths["self_instruct_path"], "id"),
        evolved=_jsonl(paths["evolved_path"], "id"),
        curated=_jsonl(paths["curated_path"], "id"),
        failures={
            stage: _jsonl(paths[f"{stage}_failures"]) for stage in ("self_instruct", "evolve", "curate")
        },
        meta={
            stage: read_meta(paths[f"{stage}_metrics"])
            for stage in ("self_instruct", "evolve", "curate", "decide")
        },
        responses=_jsonl(paths["responses_path"], "prompt_id"),
        decided=_jsonl(paths["decided_path"], "pair_id", "order"),
        pairs=_jsonl(paths["pairs_path"], "pair_id"),
        verified=_jsonl(paths["verified_path"], "pair_id"),
        answers=_jsonl(paths["answers_path"], "set", "item_id", "model"),
        judgments=_jsonl(paths["eval_judgments_path"], "kind", "set", "item_id"),
        games=_jsonl(paths["games_path"], "set", "item_id", "candidate"),
        baseline=evaluate.baseline.name,
        questions=eval_questions(evaluate),
    )
    sources = sorted(paths.values()) + [s.path for s in evaluate.sets if s.path]
    page = build_page(data, config.max_examples, config.max_chars, sources)
    write_text(out_path, page)
    log.info("wrote %s (%.1f KiB)", out_path, len(page.encode("utf-8")) / 1024)
