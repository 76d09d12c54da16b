"""Stored pair judgments (the `judge` stage's output), checked against the responses file they judged.

`decide` reads files another stage wrote, or a person edited: a judgments file made from other responses
(prompts or responders this file lacks) or holding a field of the wrong shape is refused here, in one line
naming file, line and field, instead of a KeyError or TypeError deep inside deciding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jalign.records import Record, RecordError, check_unique_ids, line_of, read_jsonl

METHODS = ("text", "logprob", "reward")
ORDERS = ("forward", "swapped")
_AGAIN = "judge these responses again (`dvc repro judge`), or pass the responses file they were judged from"
_RAW = {"logprob": "the probabilities of A and B", "reward": "the rewards of A and B"}


def load_responses(path: str) -> list[Record]:
    """Responses with every field judging needs, named by file, line and field when missing."""
    rows = read_jsonl(path, required=("prompt_id", "prompt"))
    for i, row in enumerate(rows):
        lineno = line_of(rows, i)
        responses = row.get("responses")
        if not isinstance(responses, dict):
            raise RecordError(f"{path}:{lineno}: field 'responses' must be a mapping of responder -> answer")
        for name, answer in responses.items():
            if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
                raise RecordError(f"{path}:{lineno}: field 'responses.{name}.text' must be a string")
    check_unique_ids(rows, path, field="prompt_id")
    return rows


def check_judgments(
    judgments: Sequence[Record],
    rows: dict[str, Record],
    judgments_path: str | Path,
    responses_path: str | Path,
) -> None:
    """Raise RecordError at the first judgment `decide` could not read, or that judged other responses
    than `rows` (prompt_id -> the responses file's row)."""
    for i, judgment in enumerate(judgments):
        where = f"{judgments_path}:{line_of(judgments, i)}"
        _check_shape(judgment, where)
        _check_judged(judgment, rows, where, responses_path)


def _check_judged(judgment: Record, rows: dict[str, Record], where: str, responses_path: str | Path) -> None:
    prompt_id = judgment["prompt_id"]
    row = rows.get(prompt_id)
    if row is None:
        raise RecordError(f"{where}: prompt {prompt_id!r} is not in {responses_path}: {_AGAIN}")
    for field in ("first", "second"):
        if judgment[field] not in row["responses"]:
            raise RecordError(
                f"{where}: field '{field}': prompt {prompt_id!r} has no answer by {judgment[field]!r} in "
                f"{responses_path}: {_AGAIN}"
            )


def _check_shape(judgment: Record, where: str) -> None:
    for field in ("raw", "canary"):  # null when there is none, but always written by the judge stage
        if field not in judgment:
            raise RecordError(f"{where}: missing field '{field}'")
    _one_of(judgment, "order", ORDERS, where)
    _one_of(judgment, "method", METHODS, where)
    _check_raw(judgment, where)
    _check_canary(judgment, where)


def _check_raw(judgment: Record, where: str) -> None:
    method, raw = judgment["method"], judgment["raw"]
    if raw is None:  # the judge failed: decided as invalid
        return
    if method == "text":
        if not isinstance(raw, str):
            raise RecordError(
                f"{where}: field 'raw' must be null or the judge's text for method text, got {raw!r:.80}"
            )
        return
    if not (isinstance(raw, dict) and all(_number(raw.get(choice)) for choice in "AB")):
        raise RecordError(
            f"{where}: field 'raw' must be null or {_RAW[method]} for method {method}, got {raw!r:.80}"
        )
    if method == "logprob" and not _number(judgment.get("mass")):
        mass = judgment.get("mass")
        raise RecordError(f"{where}: field 'mass' must be a number for method logprob, got {mass!r:.80}")


def _check_canary(judgment: Record, where: str) -> None:
    canary = judgment["canary"]
    if canary is None:
        return
    pair = (judgment["first"], judgment["second"])
    if (
        not isinstance(canary, dict)
        or canary.get("target") not in pair
        or not isinstance(canary.get("text"), str)
    ):
        raise RecordError(
            f"{where}: field 'canary' must be null or name a target among {list(pair)} and the injected "
            f"text, got {canary!r:.80}"
        )


def _one_of(judgment: Record, field: str, allowed: tuple[str, ...], where: str) -> None:
    if judgment[field] not in allowed:
        raise RecordError(
            f"{where}: field '{field}' must be one of {', '.join(allowed)}, got {judgment[field]!r:.80}"
        )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
