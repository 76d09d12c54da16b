"""What every stage command does around its pure function: logging (secrets masked), the resolved
params, provenance, failures and the failure-rate check. LLM stages add clients, prices and a budget
on top of this (jalign/llm_stage.py); training stages need only this module."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import platform
import subprocess
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jalign.config import as_dict
from jalign.errors import JalignError
from jalign.records import Record, clean_stale_temp, write_json, write_jsonl
from jalign.redact import RedactingFilter, redact

log = logging.getLogger("jalign")

_PACKAGES = ("jalign", "torch", "transformers", "trl", "peft", "bitsandbytes", "openai", "dvc")


class FailureRateExceeded(JalignError, RuntimeError):
    """A stage lost more of its input rows to failures than its max_failure_rate allows."""


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    # Request-level logs of the HTTP stack would be noise, and could echo headers.
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_params(stage: str, config: object) -> None:
    log.info("%s params: %s", stage, json.dumps(as_dict(config), ensure_ascii=False))


def start_stage(stage: str, config: object, outputs: Iterable[str | Path]) -> None:
    """Log the resolved params and remove the temp files a killed run left next to (or inside) this
    stage's outputs: DVC deletes only declared outputs, so they would otherwise stay forever."""
    log_params(stage, config)
    for stale in clean_stale_temp(outputs):
        log.info("removed a temp file left by an interrupted run: %s", stale)


def provenance() -> dict[str, Any]:
    """Git commit and package versions, written next to every metric."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {"git_commit": commit or None, "python": platform.python_version(), "packages": versions}


# What a metrics file never holds: who made it (provenance, model identities, usage and spending per
# role: the summary stage totals the money), how it was configured (echoes of params, which
# `dvc params diff` already shows), free text (failure reasons) and the machine's speed. All of it goes to the
# `.meta.json` file beside, which stays tracked but is not a DVC metric, so `dvc metrics diff` lists only
# figures a reviewer compares across runs.
META_ONLY_KEYS = frozenset(
    {
        "provenance",
        "usage",
        "pipeline_usage",
        "total_tokens",
        "total_usd",
        "policy",
        "beta",
        "threshold",
        "reasons",
    }
)
MACHINE_KEYS = frozenset({"tokens_per_second", "peak_memory_mb"})


def is_metric_key(key: str) -> bool:
    return key not in META_ONLY_KEYS and key not in MACHINE_KEYS and not key.endswith("_seconds")


def numbers_only(record: dict[str, Any]) -> dict[str, Any]:
    """The comparable figures of a stage report: int and float leaves (bools, strings and None are
    descriptions, not figures), without the META_ONLY_KEYS / machine-speed subtrees; empty dicts drop."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if not is_metric_key(str(key)):
            continue
        if isinstance(value, dict):
            nested = numbers_only(value)
            if nested:
                out[key] = nested
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value
    return out


def meta_path_for(metrics_path: str | Path) -> Path:
    """metrics/dpo.json -> metrics/dpo.meta.json (declared in dvc.yaml as a plain, uncached out)."""
    path = Path(metrics_path)
    return path.with_name(f"{path.stem}.meta.json")


def write_metrics(metrics_path: str | Path, report: dict[str, Any]) -> None:
    """Write a stage's report as two files: its figures to `metrics_path` (a DVC metric) and the whole
    report, provenance included, to the `.meta.json` beside it."""
    write_json(
        meta_path_for(metrics_path), {**report, "provenance": report.get("provenance") or provenance()}
    )
    write_json(metrics_path, numbers_only(report))


class Failures:
    """Rows that failed after retries, with the reason: written to a file, never silently dropped.

    The failure rate a stage checks counts the *input rows* that produced no (complete) output row
    because of a failure, not the requests it sent: a row whose two calls both failed is one lost row.
    Rows dropped by a filter on purpose are not failures; stages report them separately.
    """

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.rows: list[Record] = []
        self._seen: set[tuple] = set()

    def add(self, row_id: str, step: str, reason: str, **detail: Any) -> None:
        """Record one failure of `row_id` at `step` (each distinct row/step/detail once)."""
        key = (row_id, step, *sorted(detail.items()))
        if key in self._seen:
            return
        self._seen.add(key)
        self.rows.append({"id": row_id, "step": step, **detail, "reason": redact(reason)})

    @property
    def lost_rows(self) -> int:
        return len({r["id"] for r in self.rows})

    def write(self, path: str | Path) -> None:
        write_jsonl(path, self.rows)

    def check(self, input_rows: int, max_failure_rate: float) -> None:
        rate = self.lost_rows / input_rows if input_rows else 0.0
        if rate > max_failure_rate:
            reasons = Counter(r["reason"][:80] for r in self.rows).most_common(3)
            raise FailureRateExceeded(
                f"{self.stage}: {self.lost_rows} of {input_rows} input rows lost to failures ({rate:.1%} > "
                f"max_failure_rate {max_failure_rate:.1%}); most common reasons: {reasons}"
            )

    def summary(self, input_rows: int) -> dict[str, Any]:
        return {
            "input_rows": input_rows,
            "lost_rows": self.lost_rows,
            "failure_rate": round(self.lost_rows / input_rows, 4) if input_rows else 0.0,
            "reasons": dict(Counter(r["reason"][:80] for r in self.rows).most_common(5)),
        }


def mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0


def rate(num: float, den: float) -> float | None:
    """num / den to four places; None (not 0) when there is nothing to divide by."""
    return round(num / den, 4) if den else None
