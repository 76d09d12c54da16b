"""Verifiable-instruction scores of evaluated models: pure functions of per-prompt outcomes.

Per model: IFEval's prompt-level accuracy (every instruction of a prompt followed) and instruction-level
accuracy (instructions followed / instructions), strict and loose, each with a bootstrap 95% CI over
prompts. Per candidate against the baseline, on the same prompts: the paired difference with a paired
bootstrap CI (prompts resampled, both models kept together) and McNemar's exact p-value on the
discordant prompts (improved: only the candidate follows all; worsened: only the baseline does).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from math import comb
from typing import Any

import numpy as np

Outcomes = Sequence[Sequence[bool]]  # one list of per-instruction verdicts per prompt


def answer_outcomes(answer: dict[str, Any], mode: str) -> list[bool]:
    """Per-instruction verdicts of one answer to a verifiable prompt (an evaluate answer row); a failed
    answer follows none. The score stage and the report page both read verdicts through this."""
    from jalign.ifeval.evaluation import follows_instructions

    ids, kwargs = answer["instruction_id_list"], answer["kwargs"]
    if not answer.get("turns"):
        return [False] * len(ids)
    return follows_instructions(answer["turns"][0], ids, kwargs, answer.get("prompt") or "", mode)


def mcnemar_exact(improved: int, worsened: int) -> float:
    """Two-sided exact McNemar p-value: the discordant prompts as Binomial(n, 1/2)."""
    n = improved + worsened
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(min(improved, worsened) + 1)) / 2**n
    return min(1.0, 2 * tail)


def _bootstrap_indices(n: int, rounds: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(rounds, n))


def _interval(samples: np.ndarray) -> tuple[float, float]:
    return float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))


def _pct(value: float) -> float:
    return round(100 * value, 2)


def accuracy(outcomes: Outcomes, rounds: int, seed: int) -> dict[str, Any]:
    """Prompt- and instruction-level accuracy (percent) with bootstrap 95% CIs over prompts."""
    n = len(outcomes)
    if n == 0:
        return {"prompt": None, "instruction": None, "prompts": 0}
    all_followed = np.array([all(o) for o in outcomes], dtype=float)
    followed = np.array([sum(o) for o in outcomes], dtype=float)
    counts = np.array([len(o) for o in outcomes], dtype=float)
    idx = _bootstrap_indices(n, rounds, seed)
    prompt_lo, prompt_hi = _interval(all_followed[idx].mean(axis=1))
    inst_lo, inst_hi = _interval(followed[idx].sum(axis=1) / counts[idx].sum(axis=1))
    return {
        "prompt": {
            "accuracy": _pct(all_followed.mean()),
            "ci_low": _pct(prompt_lo),
            "ci_high": _pct(prompt_hi),
        },
        "instruction": {
            "accuracy": _pct(followed.sum() / counts.sum()),
            "ci_low": _pct(inst_lo),
            "ci_high": _pct(inst_hi),
        },
        "prompts": n,
        "instructions": int(counts.sum()),
    }


def paired_difference(baseline: Outcomes, candidate: Outcomes, rounds: int, seed: int) -> dict[str, Any]:
    """Candidate minus baseline on the same prompts, in percentage points, with paired bootstrap CIs."""
    if len(baseline) != len(candidate):
        raise ValueError(f"paired outcomes differ in length: {len(baseline)} vs {len(candidate)}")
    if any(len(b) != len(c) for b, c in zip(baseline, candidate, strict=True)):
        raise ValueError("paired outcomes differ in their instruction counts")
    n = len(baseline)
    if n == 0:
        return {"prompt": None, "instruction": None, "prompts": 0}
    base_all = np.array([all(o) for o in baseline], dtype=float)
    cand_all = np.array([all(o) for o in candidate], dtype=float)
    delta_followed = np.array(
        [sum(c) - sum(b) for b, c in zip(baseline, candidate, strict=True)], dtype=float
    )
    counts = np.array([len(o) for o in baseline], dtype=float)
    idx = _bootstrap_indices(n, rounds, seed)
    prompt_lo, prompt_hi = _interval((cand_all - base_all)[idx].mean(axis=1))
    inst_lo, inst_hi = _interval(delta_followed[idx].sum(axis=1) / counts[idx].sum(axis=1))
    improved = int(((cand_all == 1) & (base_all == 0)).sum())
    worsened = int(((cand_all == 0) & (base_all == 1)).sum())
    return {
        "prompt": {
            "diff": _pct((cand_all - base_all).mean()),
            "ci_low": _pct(prompt_lo),
            "ci_high": _pct(prompt_hi),
            "improved": improved,
            "worsened": worsened,
            "mcnemar_p": round(mcnemar_exact(improved, worsened), 6),
        },
        "instruction": {
            "diff": _pct(delta_followed.sum() / counts.sum()),
            "ci_low": _pct(inst_lo),
            "ci_high": _pct(inst_hi),
        },
        "prompts": n,
    }


def per_instruction(ids: Sequence[Sequence[str]], outcomes: Outcomes) -> dict[str, dict[str, Any]]:
    """Accuracy (percent) and count per instruction id."""
    total: dict[str, int] = defaultdict(int)
    followed: dict[str, int] = defaultdict(int)
    for row_ids, row in zip(ids, outcomes, strict=True):
        for iid, ok in zip(row_ids, row, strict=True):
            total[iid] += 1
            followed[iid] += bool(ok)
    return {iid: {"accuracy": _pct(followed[iid] / total[iid]), "n": total[iid]} for iid in sorted(total)}
