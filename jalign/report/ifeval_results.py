"""IFEval results per instruction, and the prompts behind them.

The score stage keeps only aggregates (metrics/eval.json); per-prompt verdicts are recomputed here from
data/eval/answers.jsonl with the same checker (`jalign.ifeval.follows_instructions`, strict and loose;
a failed answer follows nothing), so the page shows which instruction each answer missed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from jalign.ifeval.stats import answer_outcomes, per_instruction
from jalign.records import Record
from jalign.report.cards import Card, Section, Table, capped, clip, ordered

OUTCOME_ORDER = {"mixed": 0, "fail": 1, "pass": 2}


def _kwargs_text(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in kwargs.items() if v is not None)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def ifeval_section(answers: list[Record], baseline: str, max_examples: int, max_chars: int) -> Section:
    """The IFEval section: per set, accuracy per instruction id and model (strict, loose in brackets),
    then one card per prompt with every model's answer and which instructions it followed."""
    rows = [a for a in answers if a.get("instruction_id_list")]
    section = Section(
        "ifeval",
        "IFEval: verifiable instructions",
        "Each prompt carries instructions a program checks (length, forbidden words, quotes ...). Strict "
        "checks the answer as written, loose also without its first / last line and markdown stars.",
    )
    cards = []
    for set_name in sorted({a["set"] for a in rows}):
        by_item: dict[str, dict[str, Record]] = defaultdict(dict)
        for a in rows:
            if a["set"] == set_name:
                by_item[a["item_id"]][a["model"]] = a
        models = ordered([m for item in by_item.values() for m in item], [baseline])
        results = {
            (item, m): {mode: answer_outcomes(a, mode) for mode in ("strict", "loose")}
            for item, per_model in by_item.items()
            for m, a in per_model.items()
        }
        section.tables.append(_table(set_name, by_item, models, results))
        for item, per_model in by_item.items():
            cards.append(_card(set_name, item, per_model, models, results, max_chars))
    cards.sort(key=lambda c: OUTCOME_ORDER.get(c.outcome, 3))
    section.cards, section.totals = capped(cards, max_examples)
    return section


def _table(
    set_name: str, by_item: dict[str, dict[str, Record]], models: list[str], results: dict[tuple, dict]
) -> Table:
    """Accuracy (%) per instruction id: strict, loose in brackets; the first row is prompt-level."""
    per_model = {}
    for m in models:
        answered = [(item, a) for item, p in by_item.items() for name, a in p.items() if name == m]
        ids = [a["instruction_id_list"] for _, a in answered]
        per_model[m] = {
            mode: per_instruction(ids, [results[(item, m)][mode] for item, _ in answered])
            for mode in ("strict", "loose")
        }
        per_model[m]["prompt"] = {
            mode: 100 * sum(all(results[(item, m)][mode]) for item, _ in answered) / len(answered)
            for mode in ("strict", "loose")
        }
    all_ids = sorted({i for m in models for i in per_model[m]["strict"]})
    rows = [
        (
            "(prompt: all followed)",
            len(by_item),
            *[
                f"{_pct(per_model[m]['prompt']['strict'])} ({_pct(per_model[m]['prompt']['loose'])})"
                for m in models
            ],
        )
    ]
    for iid in all_ids:
        n = max(per_model[m]["strict"].get(iid, {}).get("n", 0) for m in models)
        cells = [
            f"{_pct(per_model[m]['strict'].get(iid, {}).get('accuracy'))} "
            f"({_pct(per_model[m]['loose'].get(iid, {}).get('accuracy'))})"
            for m in models
        ]
        rows.append((iid, n, *cells))
    return Table(
        f"{set_name}: accuracy % per instruction, strict (loose)", ("instruction", "n", *models), rows
    )


def _card(
    set_name: str,
    item: str,
    per_model: dict[str, Record],
    models: list[str],
    results: dict[tuple, dict],
    max_chars: int,
) -> Card:
    first = next(iter(per_model.values()))
    ids, kwargs = first["instruction_id_list"], first["kwargs"]
    columns = []
    for m in models:
        if m not in per_model:
            continue
        verdict = results[(item, m)]
        columns.append(
            {
                "name": m,
                "text": clip((per_model[m].get("turns") or [None])[0], max_chars),
                "error": per_model[m].get("error"),
                "passed": all(verdict["strict"]),
                "checks": list(zip(ids, verdict["strict"], verdict["loose"], strict=True)),
            }
        )
    passed = [c["passed"] for c in columns]
    outcome = "pass" if all(passed) else "fail" if not any(passed) else "mixed"
    data = {
        "prompt": clip(first.get("prompt"), max_chars),
        "instructions": [(iid, _kwargs_text(kw or {})) for iid, kw in zip(ids, kwargs, strict=True)],
        "columns": columns,
    }
    return Card(f"{set_name}/{item}", "ifeval", outcome, tuple(ids), "ifeval", data)
