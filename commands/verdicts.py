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

    The stages' rows say their kind (judge stage: pair; evaluate: arena games, rating grades): a file
    with none of --kind's rows is refused, naming the kind to use; in a file that mixes kinds (evaluate
    writes games and grades), a row of another kind prints {"verdict": null, "reason": "other_kind: ..."}.
    """
    if kind == "rating" and low >= high:
        raise click.BadParameter(f"--low {low} must be below --high {high}")
    rows = _read(path)
    _check_kind(rows, kind, path)
    for _, detected, judgment, answers in rows:
        if detected not in (None, kind):
            out = {"verdict": None, "reason": f"other_kind: {_KINDS[detected]}, use --kind {detected}"}
        elif isinstance(judgment, dict):  # choice probabilities: nothing for a text parser to read
            out = {"verdict": None, "reason": f"no_text: {sorted(judgment)} probabilities"}
        else:
            out = _verdict(kind, judgment, answers, low, high)
        click.echo(json.dumps(out, ensure_ascii=False))


# What each stage's judgment rows hold, by the --kind that parses them.
_KINDS = {
    "pair": "a preference judgment (judge stage)",
    "arena": "an Arena-Hard game judgment (evaluate stage)",
    "rating": "a grade judgment (evaluate stage)",
}

Row = tuple[int, str | None, str | dict, list[str]]  # (line, detected kind, judgment, answers)


def _detected_kind(record: dict) -> str | None:
    """The --kind a stage's judgment row needs; None for a plain {"judgment": ...} row (any kind)."""
    if record.get("kind") == "pair":  # evaluate's pairwise games: Arena-Hard labels
        return "arena"
    if record.get("kind") == "grade":
        return "rating"
    if "pair_id" in record:  # the judge stage's (and decide's) preference judgments
        return "pair"
    return None


def _check_kind(rows: list[Row], kind: str, path: Path) -> None:
    """Refuse a file whose stage rows are all of another kind: parsing them as --kind prints only nulls."""
    detected = [(lineno, k) for lineno, k, _, _ in rows if k is not None]
    if detected and all(k != kind for _, k in detected):
        lineno, other = detected[0]
        raise click.ClickException(f"{path}:{lineno}: {_KINDS[other]}, not --kind {kind}: use --kind {other}")


def _read(path: Path) -> list[Row]:
    """Check every line before printing anything, so a bad file gives an error, not half an output."""
    try:
        rows = []
        for lineno, record in read_jsonl_lines(path):
            judgment, answers = _row(record, f"{path}:{lineno}")  # refuses a record that is no object
            rows.append((lineno, _detected_kind(record), judgment, answers))
        return rows
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
