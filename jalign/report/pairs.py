"""Preference pairs: the prompt, both answers, the judge's raw output in both orders, the verdict, and
why a pair was dropped (decide's rule: an invalid order loses the pair, `echoed_verdict` when every
invalid order only echoed an answer's verdict; orders that disagree, or agree on a tie, lose it too).
Pairs the verify stage labelled by rule (which answer follows the verifiable instructions) follow.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from jalign.judging import pair_drop_reason
from jalign.records import Record
from jalign.report.cards import Card, Section, Table, by_outcome, capped, clip, counts_text

ORDERS = ("forward", "swapped")


def pair_outcome(forward: Record, swapped: Record) -> tuple[str, str | None]:
    """(kept | dropped, why) of one pair from its two decided judgments: decide's own rule."""
    reason = pair_drop_reason(forward, swapped)
    return ("dropped", reason) if reason else ("kept", None)


def raw_output(raw: Any, max_chars: int) -> tuple[str, Any]:
    """How to show a judge's raw output: ('text', Clip) for a text judge, ('scores', [(label, value)])
    for choice probabilities or rewards."""
    if isinstance(raw, dict):
        return "scores", [(str(k), round(v, 4) if isinstance(v, float) else v) for k, v in raw.items()]
    if raw is None:
        return "none", None
    return "text", clip(raw, max_chars)


def _judgment_row(j: Record, max_chars: int) -> dict[str, Any]:
    kind, shown = raw_output(j.get("raw"), max_chars)
    attempts = [
        clip(a.get("text") if "text" in a else f"error: {a.get('error')}", max_chars)
        for a in j.get("attempts") or []
    ]
    canary = j.get("canary") or None
    return {
        "order": j.get("order"),
        "a": j.get("first"),
        "b": j.get("second"),
        "raw_kind": kind,
        "raw": shown,
        "attempts": attempts if len(attempts) > 1 else [],
        "mass": None if j.get("mass") is None else round(j["mass"], 3),
        "verdict": j.get("verdict"),
        "invalid_reason": j.get("invalid_reason"),
        "winner": j.get("winner"),
        "calibrated": bool(j.get("calibrated")),
        "canary": {"target": canary.get("target"), "text": clip(canary.get("text"), max_chars)}
        if canary
        else None,
    }


def _answer(
    name: str | None, text: Any, model: Any, role: str | None, note: str | None, max_chars: int
) -> dict:
    return {"name": name, "text": clip(text, max_chars), "model": model, "role": role, "note": note}


def _pair_card(
    pair_id: str,
    group: dict[str, Record],
    canaries: list[Record],
    row: Record,
    kept: Record | None,
    max_chars: int,
) -> Card:
    """One judged pair: the two answers in forward order (A, B), both decided judgments, any canaries."""
    outcome, why = pair_outcome(group["forward"], group["swapped"])
    forward = group["forward"]
    chosen = (kept or {}).get("chosen_responder")
    answers = []
    for name in (forward["first"], forward["second"]):
        response = row["responses"].get(name) or {}
        role = None if chosen is None else "chosen" if name == chosen else "rejected"
        finish = response.get("finish_reason")
        note = f"finish_reason {finish}" if finish not in (None, "stop") else None
        answers.append(_answer(name, response.get("text"), response.get("model"), role, note, max_chars))
    data = {
        "prompt": clip(row.get("prompt"), max_chars),
        "origin": row.get("origin"),
        "answers": answers,
        "method": forward.get("method"),
        "judge": forward.get("judge"),
        "judgments": [_judgment_row(group[o], max_chars) for o in ORDERS],
        "canaries": [_judgment_row(j, max_chars) for j in canaries],
        "reason": why,
    }
    return Card(pair_id, "decide", outcome, (str(row.get("origin") or ""),), "pair", data)


def _judged_cards(
    responses: list[Record], decided: list[Record], kept: list[Record], max_chars: int
) -> tuple[list[Card], list[str]]:
    """A card per pair judged in both orders, and notes on pairs the files disagree about."""
    rows = {r["prompt_id"]: r for r in responses}
    kept_by_id = {p["pair_id"]: p for p in kept}
    groups: dict[str, dict[str, Record]] = defaultdict(dict)
    canaries: dict[str, list[Record]] = defaultdict(list)
    for j in decided:
        if j.get("canary"):
            canaries[j["pair_id"]].append(j)
        else:
            groups[j["pair_id"]][j["order"]] = j
    cards, notes = [], []
    for pair_id, group in groups.items():
        if set(group) != set(ORDERS):
            notes.append(f"pair {pair_id}: judged in {sorted(group)} only, not shown")
            continue
        row = rows.get(group["forward"]["prompt_id"]) or {"prompt": None, "responses": {}}
        card = _pair_card(pair_id, group, canaries[pair_id], row, kept_by_id.get(pair_id), max_chars)
        if (card.outcome == "kept") != (pair_id in kept_by_id):
            notes.append(
                f"pair {pair_id}: decided.jsonl says {card.outcome}, pairs.jsonl does not (different runs?)"
            )
        cards.append(card)
    return cards, notes


def _verified_cards(verified: list[Record], max_chars: int) -> list[Card]:
    """Pairs the verify stage labelled by rule: which answer follows the prompt's checked instructions."""
    cards = []
    for p in verified:
        follows = (
            p.get("instruction_id_list") or [],
            p.get("chosen_follow") or [],
            p.get("rejected_follow") or [],
        )
        data = {
            "prompt": clip(p.get("prompt"), max_chars),
            "origin": p.get("origin"),
            "answers": [
                _answer(
                    p.get(f"{role}_responder"), p.get(role), p.get(f"{role}_model"), role, None, max_chars
                )
                for role in ("chosen", "rejected")
            ],
            "checks": list(zip(*follows, strict=False)),
        }
        origin = (str(p.get("origin") or ""),)
        cards.append(Card(str(p.get("pair_id")), "verify", "kept", origin, "verified", data))
    return cards


# decide's judge-reliability figures shown above the pairs (metrics/judge.meta.json), as labelled.
RELIABILITY = (
    ("agreement_rate", "both orders agree (valid pairs)"),
    ("position_bias_rate", "share of decisive verdicts for position A"),
    ("position_bias_rate_uncalibrated", "... before position calibration"),
    ("position_prior", "position prior divided out (mean P(A), P(B))"),
    ("tie_rate", "tie rate"),
    ("invalid_rate", "invalid rate"),
    ("injection", "injection canaries"),
)


def reliability_table(stats: dict[str, Any]) -> Table | None:
    """The figures of RELIABILITY that decide's report holds, as a two-column table."""
    rows = [
        (label, counts_text(stats[key]) if isinstance(stats[key], dict) else stats[key])
        for key, label in RELIABILITY
        if stats.get(key) is not None
    ]
    return Table("Judge reliability (metrics/judge.json)", ("figure", "value"), rows) if rows else None


def pairs(
    responses: list[Record],
    decided: list[Record],
    kept: list[Record],
    verified: list[Record],
    decide_stats: dict[str, Any],
    max_examples: int,
    max_chars: int,
) -> Section:
    """The preference-pair section: judge-labelled pairs (responses, decided judgments, kept pairs,
    decide's report) and rule-labelled ones (verified pairs)."""
    judged, notes = _judged_cards(responses, decided, kept, max_chars)
    reasons = Counter(c.data["reason"] or "kept" for c in judged)
    section = Section(
        "pairs",
        "Preference pairs",
        "Each pair of answers is judged twice with the positions swapped; a pair is kept only when both "
        "orders name the same winner. Canary rows repeat a judgment with an injected plea in one answer "
        "(a prompt-injection probe); they never decide a pair. A logprob verdict marked calibrated compares "
        "P(A) and P(B) after dividing out the run's position prior, so P(A) above 0.5 can still be B.",
        notes=notes,
    )
    dropped = {k: v for k, v in reasons.items() if k != "kept"}
    canary_pairs = len({j["pair_id"] for j in decided if j.get("canary")})
    section.tables.append(
        Table(
            "Pairs",
            ("source", "judged", "kept", "dropped (why)", "canary pairs"),
            [
                ("judge (decide)", len(judged), reasons["kept"], counts_text(dropped), canary_pairs),
                ("verifier (verify)", len(verified), len(verified), "–", "–"),
            ],
        )
    )
    table = reliability_table(decide_stats)
    if table is not None:
        section.tables.append(table)
    judged = by_outcome(judged, ("dropped", "kept"))
    section.cards, section.totals = capped([*judged, *_verified_cards(verified, max_chars)], max_examples)
    return section
