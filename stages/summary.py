"""The headline figures of a run in one small metrics file, `metrics/summary.json`.

Each stage's metrics file keeps its detail; this one holds the twenty or so numbers a reviewer compares
first, with short flat keys so `dvc metrics show metrics/summary.json` fits one terminal line and
`dvc exp show` puts them in its first columns. `summarize` is a pure function of the stage reports.

Headline candidate and sets: the first candidate of `evaluate.candidates`, the first pairwise-judged
evaluation set and the first IFEval set, in the order the score stage wrote them (the params' order).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from jalign.errors import JalignError
from jalign.records import write_json
from jalign.stage import log, setup_logging

# key -> what it is (README and `jalign review` show these descriptions next to the figures).
HEADLINE: dict[str, str] = {
    "score": "evaluation score of the candidate against the baseline (50 = as good), first judged set",
    "score_lo": "its 95% bootstrap CI, low end",
    "score_hi": "its 95% bootstrap CI, high end",
    "if_base": "IFEval strict prompt-level accuracy (%) of the baseline",
    "if_cand": "IFEval strict prompt-level accuracy (%) of the candidate",
    "if_gain": "IFEval paired difference candidate - baseline (points)",
    "if_lo": "its 95% paired-bootstrap CI, low end",
    "if_hi": "its 95% paired-bootstrap CI, high end",
    "if_p": "McNemar's exact p of the paired difference",
    "judge_agree": "evaluation judge: share of games whose verdict survives swapping the answers",
    "pairs": "preference pairs kept for training and evaluation (after decontamination)",
    "train_loss": "DPO final training loss",
    "eval_loss": "DPO held-out loss",
    "rm_acc": "preference classifier pairwise accuracy (chosen scored above rejected)",
    "usd": "USD spent on LLM calls by every stage",
    "rows_lost": "input rows the stages lost to failures (each stage's data/failures file says why)",
}


class SummaryError(JalignError, ValueError):
    """A stage report the summary needs is malformed."""


def _get(tree: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def first(mapping: Any) -> tuple[str | None, Any]:
    """The first (key, value) of a report's dict, in the order the stage wrote it."""
    if isinstance(mapping, dict) and mapping:
        key = next(iter(mapping))
        return key, mapping[key]
    return None, None


def eval_figures(report: dict[str, Any]) -> dict[str, Any]:
    """Score, IFEval and judge-reliability figures from the score stage's report (eval.meta.json)."""
    out: dict[str, Any] = {}
    cand, per_set = first(report.get("candidates"))
    set_name, result = first(per_set)
    if result:
        out |= {
            "score": result.get("score"),
            "score_lo": result.get("ci_low"),
            "score_hi": result.get("ci_high"),
        }
    _, ifeval = first(report.get("ifeval"))
    if ifeval:
        baseline = ifeval.get("baseline") or report.get("baseline")
        models = ifeval.get("models") or {}
        paired = ifeval.get("paired") or {}
        ifeval_cand = cand if cand in paired else next(iter(paired), None)
        strict = _get(paired, ifeval_cand, "strict", "prompt") if ifeval_cand else None
        out |= {
            "if_base": _get(models, baseline, "strict", "prompt", "accuracy"),
            "if_cand": _get(models, ifeval_cand, "strict", "prompt", "accuracy") if ifeval_cand else None,
            "if_gain": _get(strict, "diff"),
            "if_lo": _get(strict, "ci_low"),
            "if_hi": _get(strict, "ci_high"),
            "if_p": _get(strict, "mcnemar_p"),
        }
    reliability = _get(report, "judge_reliability", set_name) if set_name else None
    if reliability:
        out["judge_agree"] = reliability.get("swap_agreement")
    return out


def classifier_figures(classifiers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One classifier: `rm_acc`; several: `rm_acc_<name>` each (names sorted)."""
    if len(classifiers) == 1:
        return {"rm_acc": next(iter(classifiers.values())).get("pairwise_accuracy")}
    return {f"rm_acc_{name}": classifiers[name].get("pairwise_accuracy") for name in sorted(classifiers)}


def summarize(
    eval_report: dict[str, Any],
    preferences: dict[str, Any],
    dpo: dict[str, Any],
    classifiers: dict[str, dict[str, Any]],
    stage_reports: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Pure: the headline figures, in HEADLINE's order; a figure the run did not produce is left out
    (never a made-up 0). `stage_reports` are every stage's `.meta.json`, for money and lost rows."""
    rows = preferences.get("rows") or {}
    figures: dict[str, Any] = {
        **eval_figures(eval_report),
        "pairs": (rows["pairwise_train"] + rows.get("pairwise_eval", 0))
        if "pairwise_train" in rows
        else None,
        "train_loss": dpo.get("train_loss"),
        "eval_loss": dpo.get("eval_loss"),
        **classifier_figures(classifiers),
        "usd": round(sum(_get(r, "usage", "total", "usd") or 0.0 for r in stage_reports.values()), 4),
        "rows_lost": sum(_get(r, "failures", "lost_rows") or 0 for r in stage_reports.values()),
    }
    order = {key: i for i, key in enumerate(HEADLINE)}
    # Four decimals (p three) keep every column of `dvc metrics show` as narrow as its key.
    kept = {
        k: round(v, 3 if k == "if_p" else 4)
        for k, v in figures.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    return dict(sorted(kept.items(), key=lambda kv: order.get(kv[0], order["rm_acc"])))


def read_report(path: str | Path) -> dict[str, Any]:
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SummaryError(f"{path}: cannot read this stage report ({exc}); rerun its stage") from exc
    if not isinstance(report, dict):
        raise SummaryError(f"{path}: a stage report must be a JSON object, got {type(report).__name__}")
    return report


@click.command("summary")
@click.option("--eval", "eval_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--preferences", "preferences_path", required=True, type=click.Path(exists=True, dir_okay=False)
)
@click.option("--dpo", "dpo_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--classifiers",
    "classifiers_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="metrics/classifier: one <name>.json per classifier",
)
@click.option(
    "--report",
    "report_paths",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="a stage's .meta.json (repeat): its usage and failures count into usd and rows_lost",
)
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
def main(
    eval_path: str,
    preferences_path: str,
    dpo_path: str,
    classifiers_dir: str,
    report_paths: tuple[str, ...],
    out_path: str,
) -> None:
    """Write metrics/summary.json: the run's headline figures."""
    setup_logging()
    classifiers = {
        path.stem: read_report(path)
        for path in sorted(Path(classifiers_dir).glob("*.json"))
        if not path.name.endswith(".meta.json")
    }
    summary = summarize(
        read_report(eval_path),
        read_report(preferences_path),
        read_report(dpo_path),
        classifiers,
        {path: read_report(path) for path in report_paths},
    )
    log.info("summary: %s", json.dumps(summary))
    write_json(out_path, summary)
