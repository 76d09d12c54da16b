"""Asking an LLM judge, and the rules every reader of its judgments shares.

Shared by the preference judge (`judge` stage) and the evaluation (`evaluate` stage). Asking keeps every
raw answer; an unparseable or failed answer is re-asked once (llm-jp-judge does so too), with a new seed
(an identical request would be answered from the cache), and the stored record shows both attempts.

Deciding what a judgment means is a pure function of the stored judgments, in the `decide` and `score`
stages, so changing a scoring param re-judges nothing. The pieces both stages need live here, once:
`shown_answer` (an answer as the judge saw it, a canary's plea included, for every method), and the
position calibration and tie rule of choice probabilities (`position_prior`, `calibrated_margin`,
`outcome_from_margin`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from jalign.llm.client import LLMClient
from jalign.llm.types import Request
from jalign.verdicts import Outcome


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


def shown_answer(text: str, responder: str, target: str | None, plea: str | None) -> str:
    """The answer of `responder` as the judge is shown it: a canary's `plea` follows the answer of its
    `target`, for every judge method (text, logprob and reward alike), so that a canary tests what it
    claims to."""
    return f"{text}\n\n{plea}" if plea and responder == target else text


Choice = tuple[Mapping[str, float] | None, float | None]  # (P(A), P(B) | None for a failure, mass)


def position_prior(choices: Iterable[Choice], min_choice_mass: float) -> dict[str, float]:
    """Mean P(A) and P(B) over the valid choices ('Calibrate Before Use', Zhao et al. 2021): a judge's
    constant lean to one position, divided out by calibrated_margin; {} when no choice is valid.
    A failed choice, or one with less than min_choice_mass on A+B, is no evidence of the lean."""
    valid = [probs for probs, mass in choices if probs is not None and (mass or 0.0) >= min_choice_mass]
    if not valid:
        return {}
    return {c: sum(p[c] for p in valid) / len(valid) for c in ("A", "B")}


def calibrated_margin(probs: Mapping[str, float], prior: Mapping[str, float]) -> float:
    """(a - b) / (a + b) with a, b = P(A), P(B) each divided by its prior mean (none: {})."""
    a, b = probs["A"], probs["B"]
    if prior:
        a, b = a / prior["A"], b / prior["B"]
    return (a - b) / (a + b)


def outcome_from_margin(margin: float, tie_margin: float) -> Outcome:
    """The tie rule: a margin of at most tie_margin either way is a tie."""
    return "A" if margin > tie_margin else "B" if margin < -tie_margin else "tie"


def pair_drop_reason(forward: dict[str, Any], swapped: dict[str, Any]) -> str | None:
    """Why a pair judged in both orders is dropped, or None when it is kept (both orders name the same
    winner, not a tie). A pair with an unparseable order is `echoed_verdict` when every invalid order only
    echoed verdict tokens an answer carried (the echo defence vetoed them), else `invalid`. The decide
    stage applies this rule; the report page shows it."""
    if forward["winner"] is None or swapped["winner"] is None:
        reasons = {j.get("invalid_reason") for j in (forward, swapped) if j["verdict"] is None}
        return "echoed_verdict" if reasons == {"echoed_verdict"} else "invalid"
    if forward["winner"] != swapped["winner"]:
        return "disagreement"
    return "tie" if forward["winner"] == "tie" else None
