"""What every stage command does around its pure function: logging, provenance, failures, usage."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import platform
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from jalign.config import as_dict, from_dict, read_params
from jalign.llm.client import LLMClient, Usage
from jalign.llm.types import LLMConfig, Price
from jalign.records import Record, write_jsonl

log = logging.getLogger("jalign")

_PACKAGES = ("jalign", "torch", "transformers", "trl", "peft", "bitsandbytes", "openai", "dvc")


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
    """Rows that failed after retries, with the reason: written to a file, never silently dropped."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.rows: list[Record] = []

    def add(self, row_id: str, step: str, reason: str) -> None:
        self.rows.append({"id": row_id, "step": step, "reason": reason})

    def write(self, path: str | Path) -> None:
        write_jsonl(path, self.rows)

    def check(self, total: int, max_failure_rate: float) -> None:
        rate = len(self.rows) / total if total else 0.0
        if rate > max_failure_rate:
            reasons = Counter(r["reason"][:80] for r in self.rows).most_common(3)
            raise RuntimeError(
                f"{self.stage}: {len(self.rows)}/{total} LLM calls failed ({rate:.1%} > max_failure_rate "
                f"{max_failure_rate:.1%}); most common reasons: {reasons}"
            )


def usage_metrics(clients: dict[str, LLMClient]) -> dict[str, Any]:
    """Tokens, calls and USD per role and in total, with each role's model identity (backend, model,
    revision or content fingerprint) so every metric names the exact weights behind it."""
    total = Usage()
    for client in clients.values():
        total = total.add(client.usage)
    roles = {role: {**c.usage.as_dict(), "model": c.identity} for role, c in clients.items()}
    return {"total": total.as_dict(), **roles}


def price_for(llm: LLMConfig, params_path: str | Path = "params.yaml") -> Price:
    """USD per 1M tokens for this role's model, from params.yaml `prices` (0 when not listed: local)."""
    table = read_params(params_path).get("prices") or {}
    entry = table.get(llm.model)
    price = from_dict(Price, entry, f"prices.{llm.model}") if entry is not None else Price()
    if llm.backend == "openai_batch":  # `prices` lists online rates; the Batch API bills a fraction
        price = Price(
            input=price.input * llm.batch_price_factor, output=price.output * llm.batch_price_factor
        )
    return price


def mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0
