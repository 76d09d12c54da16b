"""Evaluation games: per item and candidate, the question, the baseline's and the candidate's answers
side by side, and each game (one per position order) with the judge's raw output, the label it gave
the positions, the label from the candidate's side and the final label after the language penalty and
the invalid policy (data/eval/games.jsonl, written by the score stage)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from jalign.records import Record
from jalign.report.cards import Card, Section, Table, capped, clip
from jalign.report.pairs import raw_output

# A candidate-side Arena-Hard label -> the candidate's outcome (stages/score.py's reading).
LABEL_OUTCOME = {"A>>B": "win", "A>B": "win", "A=B": "tie", "B>A": "loss", "B>>A": "loss"}


def item_outcome(labels: list[str | None]) -> str:
    """win / loss / tie when every game of an item agrees, split when they differ, invalid when no game
    counted (a label of None is a game the drop policy left out)."""
    outcomes = {LABEL_OUTCOME[label] for label in labels if label is not None}
    if not outcomes:
        return "invalid"
    return outcomes.pop() if len(outcomes) == 1 else "split"


def expected_grade(raw: Any) -> float | None:
    """Σ k·P(k) / Σ P(k) of a logprob grade ({'1': p, ...}); None for a text grade."""
    if not isinstance(raw, dict) or not raw:
        return None
    try:
        total = sum(raw.values())
        return round(sum(int(k) * p for k, p in raw.items()) / total, 2) if total else None
    except (TypeError, ValueError):
        return None


def _grade(j: Record, max_chars: int) -> dict[str, Any]:
    return {"expected": expected_grade(j.get("raw")), "raw": raw_output(j.get("raw"), max_chars)}


def _turns(
    question: list[str] | None,
    answers: tuple[Record, Record],
    grades: tuple[list[Record], list[Record]],
    max_chars: int,
) -> list[dict[str, Any]]:
    """Per turn: the question (a Clip, None when not read) and, for the baseline and the candidate, the
    answer (a Clip, None when absent) and its grades by the judge."""
    n = max(len(question or []), *(len(a.get("turns") or []) for a in answers), 1)

    def at(seq: list[str] | None, k: int):
        return clip(seq[k], max_chars) if seq and k < len(seq) else None

    return [
        {
            "question": at(question, k),
            "answers": [
                (at(a.get("turns"), k), [_grade(j, max_chars) for j in g if (j.get("turn") or 1) == k + 1])
                for a, g in zip(answers, grades, strict=True)
            ],
        }
        for k in range(n)
    ]


def _game_row(game: Record, judgment: Record | None, max_chars: int) -> dict[str, Any]:
    kind, raw = raw_output((judgment or {}).get("raw"), max_chars)
    first = game["candidate"] if game["candidate_first"] else game["baseline"]
    second = game["baseline"] if game["candidate_first"] else game["candidate"]
    label = game.get("label")
    return {
        "a": first,
        "b": second,
        "raw_kind": kind,
        "raw": raw,
        "mass": None if (judgment or {}).get("mass") is None else round(judgment["mass"], 3),  # type: ignore[index]
        "position_label": game.get("position_label"),
        "judge_label": game.get("judge_label"),
        "invalid_reason": game.get("invalid_reason"),
        "decided_by": game.get("decided_by"),
        "label": label,
        "outcome": LABEL_OUTCOME.get(label, "invalid") if label else "invalid",
    }


def _game_card(
    key: tuple[str, str, str],
    unit: list[Record],
    answers: dict[tuple, Record],
    judgments: dict[tuple, Record],
    grades: dict[tuple, list[Record]],
    question: list[str] | None,
    max_chars: int,
) -> Card:
    """One item and candidate: both answers per turn, and its games, candidate first."""
    set_name, item_id, cand = key
    base_name = unit[0]["baseline"]
    base = answers.get((set_name, item_id, base_name)) or {}
    candidate = answers.get((set_name, item_id, cand)) or {}
    category = unit[0].get("category") or set_name
    data = {
        "set": set_name,
        "names": (base_name, cand),
        "errors": (base.get("error"), candidate.get("error")),
        "turns": _turns(
            question,
            (base, candidate),
            (grades.get((set_name, item_id, base_name), []), grades.get((set_name, item_id, cand), [])),
            max_chars,
        ),
        "question_missing": question is None,
        "games": [
            _game_row(g, judgments.get((*key, g["candidate_first"])), max_chars)
            for g in sorted(unit, key=lambda g: not g["candidate_first"])
        ],
    }
    outcome = item_outcome([g.get("label") for g in unit])
    return Card(f"{set_name}/{item_id} · {cand}", "games", outcome, (str(category),), "game", data)


def _tally(cards: list[Card]) -> Table:
    """Game outcomes per candidate and set, counted from the cards' games."""
    tally: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for card in cards:
        key = (card.data["names"][1], card.data["set"])
        for game in card.data["games"]:
            tally[key][game["outcome"]] += 1
            tally[key]["language penalty"] += game["decided_by"] == "language_penalty"
    columns = ("win", "tie", "loss", "invalid", "language penalty")
    rows = [
        (cand, s, sum(t[k] for k in columns[:4]), *(t[k] for k in columns))
        for (cand, s), t in sorted(tally.items())
    ]
    caption = "Games per candidate and set (one row per game, from the candidate's side)"
    return Table(caption, ("candidate", "set", "games", *columns), rows)


def games_section(
    answers: list[Record],
    judgments: list[Record],
    games: list[Record],
    questions: dict[tuple[str, str], list[str]],
    max_examples: int,
    max_chars: int,
) -> Section:
    """The evaluation-games section. `questions`: (set, item_id) -> the user turns, where the eval
    set's file was read (a Hub set is not read here; its questions are left out)."""
    by_answer = {(a["set"], a["item_id"], a["model"]): a for a in answers}
    pair_judgments = {
        (j["set"], j["item_id"], j["candidate"], j["candidate_first"]): j
        for j in judgments
        if j["kind"] == "pair"
    }
    grades: dict[tuple, list[Record]] = defaultdict(list)
    for j in judgments:
        if j["kind"] == "grade":
            grades[(j["set"], j["item_id"], j["model"])].append(j)
    units: dict[tuple[str, str, str], list[Record]] = defaultdict(list)
    for g in games:
        units[(g["set"], g["item_id"], g["candidate"])].append(g)
    cards = [
        _game_card(key, unit, by_answer, pair_judgments, grades, questions.get(key[:2]), max_chars)
        for key, unit in units.items()
    ]
    section = Section(
        "games",
        "Evaluation games",
        "Every candidate answer is judged against the baseline's twice, with the positions swapped. "
        "An item is a win or a loss when both games say so, split when they differ. With position "
        "calibration (score.calibrate_position) a logprob judge's label compares P(A) and P(B) after "
        "dividing out the set's mean P(A) and P(B), so P(A) above 0.5 can still be labelled B>A.",
        tables=[_tally(cards)],
    )
    missing = sorted({s for (s, _, _) in units if not any(k[0] == s for k in questions)})
    if missing:
        section.notes.append(f"questions of {', '.join(missing)} are not shown: the set is not a local file")
    section.cards, section.totals = capped(cards, max_examples)
    return section
