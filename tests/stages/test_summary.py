"""stages/summary.py: the headline figures, from the stage reports the pipeline writes."""

from __future__ import annotations

import json

from click.testing import CliRunner

from stages import summary

EVAL_REPORT = {
    "baseline": "base",
    "candidates": {
        "dpo": {"jalign-ja-eval": {"score": 61.25, "ci_low": 52.5, "ci_high": 70.0, "battles": 40}},
        "sft": {"jalign-ja-eval": {"score": 40.0, "ci_low": 30.0, "ci_high": 50.0}},
    },
    "judge_reliability": {"jalign-ja-eval": {"swap_agreement": 0.8125, "position_bias": 0.1}},
    "ifeval": {
        "ifeval-ja": {
            "baseline": "base",
            "models": {
                "base": {"strict": {"prompt": {"accuracy": 6.94}}},
                "dpo": {"strict": {"prompt": {"accuracy": 12.5}}},
            },
            "paired": {
                "dpo": {
                    "strict": {
                        "prompt": {"diff": 5.56, "ci_low": -1.39, "ci_high": 13.89, "mcnemar_p": 0.289062}
                    }
                }
            },
        }
    },
}
PREFERENCES = {"rows": {"pairwise_train": 23, "pairwise_eval": 8, "kto_train": 46}}
DPO = {"train_loss": 0.618253, "eval_loss": 1.364708, "eval_reward_accuracy": 0.25}
REPORTS = {
    "metrics/respond.meta.json": {"failures": {"lost_rows": 2}, "usage": {"total": {"usd": 0.125}}},
    "metrics/evaluate.meta.json": {"failures": {"lost_rows": 10}, "usage": {"total": {"usd": 0.5}}},
    "metrics/verify.meta.json": {"failures": {"lost_rows": 0}},  # no LLM spending: counts as $0
}


def test_summary_takes_the_first_candidate_and_sets_in_headline_order():
    figures = summary.summarize(
        EVAL_REPORT, PREFERENCES, DPO, {"e5-small": {"pairwise_accuracy": 0.5}}, REPORTS
    )
    assert figures == {
        "score": 61.25,
        "score_lo": 52.5,
        "score_hi": 70.0,
        "if_base": 6.94,
        "if_cand": 12.5,
        "if_gain": 5.56,
        "if_lo": -1.39,
        "if_hi": 13.89,
        "if_p": 0.289,
        "judge_agree": 0.8125,
        "pairs": 31,
        "train_loss": 0.6183,
        "eval_loss": 1.3647,
        "rm_acc": 0.5,
        "usd": 0.625,
        "rows_lost": 12,
    }
    assert list(figures) == [k for k in summary.HEADLINE if k in figures]  # dvc exp show's column order
    assert len(figures) <= 25


def test_a_figure_the_run_did_not_produce_is_left_out_never_zero():
    """No IFEval set, no classifier, DPO not run: those keys are absent, the rest stays."""
    no_ifeval = {k: v for k, v in EVAL_REPORT.items() if k != "ifeval"}
    figures = summary.summarize(no_ifeval, {"rows": {}}, {}, {}, {})
    assert set(figures) == {"score", "score_lo", "score_hi", "judge_agree", "usd", "rows_lost"}


def test_several_classifiers_get_one_key_each():
    classifiers = {"e5-small": {"pairwise_accuracy": 0.5}, "bge-m3": {"pairwise_accuracy": 0.75}}
    figures = summary.summarize({}, {}, {}, classifiers, {})
    assert figures["rm_acc_bge-m3"] == 0.75 and figures["rm_acc_e5-small"] == 0.5


def test_the_command_reads_the_files_dvc_yaml_names_and_refuses_a_broken_report(tmp_path):
    metrics = tmp_path / "metrics"
    (metrics / "classifier").mkdir(parents=True)
    files = {
        "eval.meta.json": EVAL_REPORT,
        "preferences.json": PREFERENCES,
        "dpo.json": DPO,
        "classifier/e5-small.json": {"pairwise_accuracy": 0.5},
        "classifier/e5-small.meta.json": {"model": "not a classifier's figures"},
        "evaluate.meta.json": REPORTS["metrics/evaluate.meta.json"],
    }
    for name, content in files.items():
        (metrics / name).write_text(json.dumps(content), encoding="utf-8")
    args = ["--eval", str(metrics / "eval.meta.json"), "--preferences", str(metrics / "preferences.json"),
            "--dpo", str(metrics / "dpo.json"), "--classifiers", str(metrics / "classifier"),
            "--report", str(metrics / "evaluate.meta.json"), "--out", str(metrics / "summary.json")]  # fmt: skip
    result = CliRunner().invoke(summary.main, args)
    assert result.exit_code == 0, result.output
    written = json.loads((metrics / "summary.json").read_text())
    assert written["rm_acc"] == 0.5 and written["rows_lost"] == 10 and written["usd"] == 0.5

    (metrics / "dpo.json").write_text("{not json", encoding="utf-8")
    result = CliRunner().invoke(summary.main, args)
    assert isinstance(result.exception, summary.SummaryError)
    assert str(result.exception).startswith(f"{metrics / 'dpo.json'}: cannot read this stage report")
