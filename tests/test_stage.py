"""jalign.stage: failures counted per input row, deduplicated, redacted; the failure-rate check; the
error base class every user-facing error shares."""

from __future__ import annotations

import json

import pytest

from jalign.config import ConfigError
from jalign.errors import JalignError
from jalign.llm.client import BudgetExceeded
from jalign.models import ModelSourceError
from jalign.records import RecordError
from jalign.stage import (
    FailureRateExceeded,
    Failures,
    mean,
    numbers_only,
    provenance,
    start_stage,
    write_metrics,
)


def test_failures_count_lost_rows_not_failed_calls(tmp_path):
    failures = Failures("judge")
    failures.add("p1|x|y", "judge", "HTTP 500", order="forward")
    failures.add("p1|x|y", "judge", "HTTP 500", order="swapped")  # the same row's other call
    failures.add("p1|x|y", "judge", "HTTP 500 again", order="forward")  # a repeat: recorded once
    failures.add("p2|x|y", "judge", "timeout", order="forward")
    assert [(r["id"], r["order"]) for r in failures.rows] == [
        ("p1|x|y", "forward"),
        ("p1|x|y", "swapped"),
        ("p2|x|y", "forward"),
    ]
    assert failures.lost_rows == 2
    failures.check(input_rows=10, max_failure_rate=0.2)  # 2 of 10 rows: allowed
    with pytest.raises(FailureRateExceeded) as info:
        failures.check(input_rows=9, max_failure_rate=0.2)  # 2 of 9 = 22.2%
    message = str(info.value)
    assert message.startswith("judge: 2 of 9 input rows lost to failures (22.2% > max_failure_rate 20.0%)")
    assert "HTTP 500" in message
    assert failures.summary(9) == {
        "input_rows": 9,
        "lost_rows": 2,
        "failure_rate": 0.2222,
        "reasons": {"HTTP 500": 2, "timeout": 1},
    }
    path = tmp_path / "failures.jsonl"
    failures.write(path)
    assert [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()] == [
        "p1|x|y",
        "p1|x|y",
        "p2|x|y",
    ]


def test_no_input_rows_is_no_failure_rate():
    failures = Failures("s")
    failures.check(input_rows=0, max_failure_rate=0.0)
    assert failures.summary(0)["failure_rate"] == 0.0


def test_failure_reasons_are_redacted(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-0123456789abcdef")
    failures = Failures("s")
    failures.add("r1", "generate", "401: bad key sk-secret-0123456789abcdef at https://u:pw@host/v1")
    assert failures.rows[0]["reason"] == "401: bad key *** at https://***@host/v1"


def test_mean_and_provenance():
    assert mean([1.0, 2.0, 2.0]) == 1.6667 and mean([]) == 0.0
    info = provenance()
    assert set(info) == {"git_commit", "python", "packages"}
    assert "torch" in info["packages"] and "transformers" in info["packages"]


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (ConfigError, ValueError),
        (RecordError, ValueError),
        (ModelSourceError, ValueError),
        (BudgetExceeded, RuntimeError),
        (FailureRateExceeded, RuntimeError),
    ],
)
def test_user_facing_errors_share_one_base_and_keep_their_builtin(error, builtin):
    assert issubclass(error, JalignError) and issubclass(error, builtin)


def test_start_stage_logs_params_and_removes_only_its_outputs_stale_temps(tmp_path, caplog):
    """Every stage (training ones too) starts this way: a kill during an atomic write leaves
    `.<name>.<hex>.tmp` files that DVC, which removes only declared outputs, would never delete."""
    adapter, metrics = tmp_path / "models" / "dpo", tmp_path / "metrics" / "dpo.json"
    adapter.mkdir(parents=True)
    metrics.parent.mkdir()
    stale = [adapter / ".adapter_config.json.0a1b2c3d.tmp", metrics.parent / ".dpo.json.0a1b2c3d.tmp"]
    other = metrics.parent / ".sft.json.0a1b2c3d.tmp"  # another stage's: left alone
    for path in (*stale, other):
        path.write_text("half", encoding="utf-8")
    with caplog.at_level("INFO", logger="jalign"):
        start_stage("train", {"beta": 0.1}, [adapter, metrics])
    assert not any(p.exists() for p in stale) and other.exists()
    assert 'train params: {"beta": 0.1}' in caplog.text and "removed a temp file" in caplog.text


def test_write_metrics_keeps_figures_in_the_metric_and_everything_in_the_report_beside(tmp_path):
    failures = Failures("judge")
    failures.add("p1", "judge", "HTTP 500: upstream\nmulti-line")
    report = {
        "kept": 6,
        "agreement_rate": 0.5,
        "method": "logprob",  # a description, not a figure
        "enabled": True,  # a bool is no figure either
        "unset": None,
        "failures": failures.summary(10),  # its counts stay; its free-text reasons move out
        "usage": {"total": {"requests": 3, "usd": 0.01}},  # differs on every rerun (cache hits)
        "policy": {"strong_weight": 3},  # an echo of params, already in dvc params diff
        "train_seconds": 12.5,  # the machine's speed
        "tokens_per_second": 40.1,
        "per_set": {"a": {"score": 51.0, "judge": "gpt"}, "b": {"judge": "gpt"}},  # b: nothing left
    }
    metrics_path = tmp_path / "metrics" / "judge.json"
    write_metrics(metrics_path, report)
    assert json.loads(metrics_path.read_text()) == {
        "kept": 6,
        "agreement_rate": 0.5,
        "failures": {"input_rows": 10, "lost_rows": 1, "failure_rate": 0.1},
        "per_set": {"a": {"score": 51.0}},
    }
    meta = json.loads((tmp_path / "metrics" / "judge.meta.json").read_text())
    assert {k: v for k, v in meta.items() if k != "provenance"} == report
    assert set(meta["provenance"]) == {"git_commit", "python", "packages"}
    assert numbers_only({"provenance": {"python": 3.11}}) == {}
