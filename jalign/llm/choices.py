"""Mapping next-token log-probs onto a fixed answer set (shared by the openai and vllm backends)."""

from __future__ import annotations

import math

_WRAPPERS = "[]【】「」()（）.。:：*\"'`"


def choice_probs(candidates: list[tuple[str, float]], choices: tuple[str, ...]) -> dict[str, float]:
    """Sum the probability of top tokens that spell a choice ("A", " A", "[A", "A." ...) or the unique
    first piece of one (a tokenizer may split a longer choice)."""
    probs = dict.fromkeys(choices, 0.0)
    for token, logprob in candidates:
        piece = token.strip().strip(_WRAPPERS)
        if not piece:
            continue
        if piece in probs:
            probs[piece] += math.exp(logprob)
            continue
        matches = [c for c in choices if c.startswith(piece)]
        if len(matches) == 1:
            probs[matches[0]] += math.exp(logprob)
    return probs
