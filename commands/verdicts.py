"""`jalign verdicts`: re-parse stored raw judge outputs with the parsers the stages use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from jalign.records import RecordError, read_jsonl_lines
from jalign.verdicts import parse_arena, parse_rating, parse_verdict


@click.command("verdicts")
@click.option(
    "--kind",
    required=True,
    type=click.Choice(["pair", "arena", "rating"]),
    help="pair: our preference judge ([[A]]/[[B]]/[[C]]; the last line with a final-verdict marker "
    "(最終判定, Final verdict, ...) decides, without one all tokens must agree); "
    "arena: Arena-Hard labels [[A>>B]]..[[B>>A]], the LAST label counts "
    "(Arena-Hard v2); rating: the FIRST [[n]] counts (FastChat), outside --low..--high is invalid.",
)
@click.option("--low", default=1.0, show_default=True, type=float, help="rating: lowest valid grade")
@click.option("--high", default=10.0, show_default=True, type=float, help="rating: highest valid grade")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def main(kind: str, low: float, high: float, path: Path) -> None:
    """Print one JSON object per line of PATH: {"verdict": V} with V = "A" / "B" / "tie" (pair), the
    label (arena) or the number (rating), or {"verdict": null, "reason": "..."}.

    PATH is JSONL: the judge's raw text in `judgment` (null reads as empty), optionally the judged
    answers in `answers` (a list of strings). The judgment files the stages write (judge, evaluate) are
    read as they are: their `raw` field is the text; a logprob or reward judgment holds probabilities,
    not text, and prints {"verdict": null, "reason": "no_text: ..."}.

    Tokens in quoted material, and tokens the judge copied from one of the `answers`, are ignored (the
    prompt-injection defence of jalign.verdicts). Blank lines are skipped; a bad line fails with its
    file:line and nothing is printed.
    """
    if kind == "rating" and low >= high:
        raise click.BadParameter(f"--low {low} must be below --high {high}")
    rows = _read(path)
    for judgment, answers in rows:
        if isinstance(judgment, dict):  # choice probabilities: nothing for a text parser to read
            out = {"verdict": None, "reason": f"no_text: {sorted(judgment)} probabilities"}
        else:
            out = _verdict(kind, judgment, answers, low, high)
        click.echo(json.dumps(out, ensure_ascii=False))


def _read(path: Path) -> list[tuple[str | dict, list[str]]]:
    """Check every line before printing anything, so a bad file gives an error, not half an output."""
    try:
        return [_row(record, f"{path}:{lineno}") for lineno, record in read_jsonl_lines(path)]
    except RecordError as exc:
        raise click.ClickException(str(exc)) from exc


def _row(record: Any, where: str) -> tuple[str | dict, list[str]]:
    if not isinstance(record, dict):
        raise RecordError(f"{where}: expected a JSON object, got {type(record).__name__}")
    field = "judgment" if "judgment" in record else "raw"  # `raw`: the stages' own judgment files
    if field not in record:
        raise RecordError(f"{where}: missing field 'judgment' (or 'raw', as the stages write it)")
    judgment = record[field]
    if judgment is None:  # a stored LLM failure: no text, parsed as an empty answer
        judgment = ""
    if field == "raw" and isinstance(judgment, dict):
        return judgment, []
    if not isinstance(judgment, str):
        raise RecordError(f"{where}: field '{field}' must be a string or null, got {judgment!r:.80}")
    answers = record.get("answers", [])
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise RecordError(f"{where}: field 'answers' must be a list of strings")
    return judgment, answers


def _verdict(kind: str, judgment: str, answers: list[str], low: float, high: float) -> dict[str, Any]:
    if kind == "pair":
        verdict = parse_verdict(judgment, answers)
        value, reason = verdict.outcome, verdict.reason
    elif kind == "arena":
        arena = parse_arena(judgment, answers)
        value, reason = arena.label, arena.reason
    else:
        rating = parse_rating(judgment, low, high, answers)
        value, reason = rating.value, rating.reason
    return {"verdict": value} if value is not None else {"verdict": None, "reason": reason}
