"""The skeleton every LLM stage shares, in the spirit of example-get-started's thin `main()`:

config = load_section(JudgeConfig, "judge", params_path)
run = StageRun("judge", config, params_path, outputs=(out_path, failures_path, metrics_path),
               budget_usd=config.budget_usd)
client = run.client("judge.judge", config.judge)           # priced, on the stage's budget
records = judge(rows, client, config, run.failures)         # the work: records in, records out
run.finish(input_rows=len(rows), failures_path=..., max_failure_rate=config.max_failure_rate)
write_jsonl(out_path, records); write_json(metrics_path, {..., **run.metrics()})
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jalign.config import ConfigError
from jalign.llm.client import Budget, LLMClient, Usage
from jalign.llm.types import LLMConfig, Price, request_url
from jalign.stage import Failures, provenance, setup_logging, start_stage


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


def price_for(role: str, llm: LLMConfig) -> Price:
    """USD per 1M tokens for a role's model: its `llms` entry's `price`.

    A remote model with no price would run uncapped and report $0, so it is refused before its first
    request, unless it runs on the run's own hardware (transformers, vllm, ray's vllm engine) or its
    requests go to a loopback URL (judged on the URL they are really sent to: `ray.http_base_url` for
    ray's http engine). A self-hosted endpoint elsewhere says `price: {input: 0, output: 0}`.
    """
    if llm.price is not None:
        if llm.batch is not None:  # `price` lists online rates; the Batch API bills a fraction of them
            factor = llm.batch.price_factor
            return Price(input=llm.price.input * factor, output=llm.price.output * factor)
        return llm.price
    url = request_url(llm)
    if url is None or is_local_url(url):
        return Price(input=0.0, output=0.0)
    entry = f"llms.{llm.name}" if llm.name else f"{role}'s llms entry"
    raise ConfigError(
        f"{role}: model {llm.model!r} has no price, so its spending could not be capped; set "
        f"{entry}.price: {{input: <USD per 1M tokens>, output: <USD per 1M tokens>}} "
        "({input: 0, output: 0} for a self-hosted endpoint that costs nothing)"
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
        start_stage(name, config, outputs)
        self.name = name
        self.params_path = params_path
        self.budget = Budget(budget_usd)
        self.failures = Failures(name)
        self.clients: dict[str, LLMClient] = {}

    def client(self, role: str, llm: LLMConfig) -> LLMClient:
        """The client of one role (`judge.judge`, `respond.responders[0].llm` ...), priced and on the
        stage's shared budget. Checked before any request: a missing price fails here."""
        client = LLMClient(llm, price=price_for(role, llm), budget=self.budget)
        self.clients[role] = client
        return client

    def finish(self, *, input_rows: int, failures_path: str | Path, max_failure_rate: float) -> None:
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
