"""What every stage command does around its pure function: logging, provenance, LLM clients with prices
and a shared budget, failures, the failure-rate check, usage metrics.

An LLM stage's `main()` reads like example-get-started's:

    run = StageRun("judge", config, params_path, outputs=[out_path, failures_path, metrics_path])
    client = run.client("judge.judge", config.judge)
    records = judge(rows, client, config, run.failures)          # the pure(ish) work
    run.finish(inputs=len(pairs), failures_path=..., max_failure_rate=config.max_failure_rate)
    write_jsonl(out_path, records); write_json(metrics_path, {...,  **run.metrics()})
"""

from __future__ import annotations

import importlib.metadata
import ipaddress
import json
import logging
import platform
import subprocess
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jalign.config import ConfigError, as_dict, from_dict, read_params
from jalign.llm.client import Budget, LLMClient, Usage
from jalign.llm.types import LLMConfig, Price
from jalign.records import Record, clean_stale_temp, write_jsonl
from jalign.redact import RedactingFilter, redact

log = logging.getLogger("jalign")

_PACKAGES = ("jalign", "torch", "transformers", "trl", "peft", "bitsandbytes", "openai", "dvc")
# Backends that run on this machine's (or this job's) own hardware: no per-token price.
LOCAL_BACKENDS = ("transformers", "vllm")


class FailureRateExceeded(RuntimeError):
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


def is_local_url(url: str | None) -> bool:
    """A base_url on this machine (loopback): a self-hosted server, not a paid API."""
    if not url:
        return False
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def price_for(role: str, llm: LLMConfig, params_path: str | Path = "params.yaml") -> Price:
    """USD per 1M tokens for a role's model, from params.yaml `prices`.

    A remote model with no price would run uncapped and report $0, so it is refused before its first
    request, unless it runs on local hardware (transformers, vllm), on a loopback base_url, or the
    role says `free: true` (a self-hosted endpoint elsewhere).
    """
    table = read_params(params_path).get("prices") or {}
    entry = table.get(llm.model)
    if entry is not None:
        return from_dict(Price, entry, f"prices.{llm.model}")
    if llm.backend in LOCAL_BACKENDS or llm.free or is_local_url(llm.base_url):
        return Price(input=0.0, output=0.0)
    raise ConfigError(
        f"{role}: model {llm.model!r} has no entry in prices, so its spending could not be capped; add "
        f"`prices: {{{llm.model}: {{input: <USD per 1M tokens>, output: <USD per 1M tokens>}}}}` to params, "
        f"or set {role}.free: true if it is a self-hosted endpoint"
    )


class StageRun:
    """The skeleton every LLM stage shares. Construct it first: it logs the resolved params, removes
    temp files a killed run left in the stage's outputs, and hands out clients that share one budget."""

    def __init__(
        self,
        name: str,
        config: Any,
        params_path: str | Path,
        *,
        outputs: Sequence[str | Path] = (),
        budget_usd: float | None = None,
    ) -> None:
        setup_logging()
        log_params(name, config)
        for stale in clean_stale_temp(outputs):
            log.info("removed a temp file left by an interrupted run: %s", stale)
        self.name = name
        self.params_path = params_path
        self.budget = Budget(budget_usd)
        self.failures = Failures(name)
        self.clients: dict[str, LLMClient] = {}

    def client(self, role: str, llm: LLMConfig) -> LLMClient:
        """The client of one role (`judge.judge`, `respond.responders[0].llm` ...), priced and on the
        stage's shared budget. Checked before any request: a missing price fails here."""
        client = LLMClient(llm, price=price_for(role, llm, self.params_path), budget=self.budget)
        self.clients[role] = client
        return client

    def finish(
        self, *, input_rows: int, failures_path: str | Path, max_failure_rate: float
    ) -> None:
        """Write the failures file, then fail loudly if too many input rows were lost."""
        self.failures.write(failures_path)
        self.failures.check(input_rows, max_failure_rate)
        self._input_rows = input_rows

    def metrics(self) -> dict[str, Any]:
        """usage (tokens, calls, USD per role and in total), failures, provenance."""
        return {
            "failures": self.failures.summary(getattr(self, "_input_rows", 0)),
            "usage": usage_metrics(self.clients),
            "provenance": provenance(),
        }


def usage_metrics(clients: dict[str, LLMClient]) -> dict[str, Any]:
    """Tokens, calls and USD per role and in total, with each role's model identity (backend, model,
    revision or content fingerprint) so every metric names the exact weights behind it."""
    total = Usage()
    for client in clients.values():
        total = total.add(client.usage)
    roles = {role: {**c.usage.as_dict(), "model": c.identity} for role, c in clients.items()}
    return {"total": total.as_dict(), **roles}


def mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0

