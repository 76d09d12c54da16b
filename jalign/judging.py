"""Asking an LLM judge: every raw answer kept, an unparseable or failed answer re-asked once.

Shared by the preference judge (`judge` stage) and the evaluation (`evaluate` stage). Deciding what a
judgment means (ties, calibration, the invalid policy, scores) is not done here: it is a pure function
of the stored judgments, in the `decide` and `score` stages, so changing a scoring param re-judges
nothing. llm-jp-judge re-asks an unparseable judgment once; so do we, with a new seed (an identical
request would be answered from the cache), and the stored record shows both attempts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from jalign.llm import LLMClient, Request


@dataclass
class JudgeCall:
    """The outcome of asking one judgment: each attempt's raw text (or error), and the parse of the
    last attempt (None when no attempt parsed)."""

    attempts: list[dict[str, Any]]  # [{"text": ...} | {"error": ...}, ...]
    parsed: Any = None
    reason: str | None = None  # why the last attempt gave no verdict: llm_failure, no_verdict, ...

    @property
    def failed(self) -> bool:
        """Every attempt was an LLM failure (no text at all)."""
        return all("error" in a for a in self.attempts)

    @property
    def raw(self) -> str | None:
        texts = [a["text"] for a in self.attempts if "text" in a]
        return texts[-1] if texts else None


Parse = Callable[[str, int], tuple[Any, str | None]]  # (text, request index) -> (verdict | None, reason)


def ask(client: LLMClient, requests: Sequence[Request], parse: Parse, reask: bool = True) -> list[JudgeCall]:
    """Generate one judgment per request; re-ask (once, seed + 1) those that failed or did not parse."""
    calls = [JudgeCall(attempts=[]) for _ in requests]
    todo = list(range(len(requests)))
    for attempt in range(2 if reask else 1):
        if not todo:
            break
        batch = [_reseeded(requests[i], attempt) for i in todo]
        retry = []
        for i, gen in zip(todo, client.generate(batch), strict=True):
            call = calls[i]
            if not gen.ok:
                call.attempts.append({"error": gen.error or "unknown error"})
                call.parsed, call.reason = None, "llm_failure"
            else:
                call.attempts.append({"text": gen.text})
                call.parsed, call.reason = parse(gen.text or "", i)
            if call.parsed is None:
                retry.append(i)
        todo = retry
    return calls


def _reseeded(request: Request, attempt: int) -> Request:
    if attempt == 0:
        return request
    return replace(request, sampling=replace(request.sampling, seed=request.sampling.seed + attempt))
