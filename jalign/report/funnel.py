"""The instruction funnel: self_instruct -> evolve -> curate, counts per step and examples.

What each step records, and so what the page can show:
- self_instruct writes only the tasks it accepted; a rejected generation (unparseable, truncated,
  blocklist, near duplicate ...) is counted in its metrics and written nowhere, so the page shows the
  counts and says so. Failed LLM calls are rows of data/failures/self_instruct.jsonl.
- evolve writes its inputs followed by every round's surviving rewrites (each names its parent), so a
  parent with no child in a round is one whose rewrite was eliminated or failed; why is counted per
  round in its metrics, not per row (a failure, which is per row, is named).
- curate writes the rows it kept; a row of its input missing from its output was dropped. The metrics
  name the contaminated rows (and the eval prompt each hit) and the failures file the failed ones; any
  other reason is per row only when a single reason accounts for every unexplained drop.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from jalign.records import Record
from jalign.report.cards import Card, Section, Table, by_outcome, capped, clip, counts_text

STAGES = ("self_instruct", "evolve", "curate")


def funnel(
    generated: list[Record],
    evolved: list[Record],
    curated: list[Record],
    failures: dict[str, list[Record]],
    meta: dict[str, dict[str, Any]],
    max_examples: int,
    max_chars: int,
) -> Section:
    """The funnel section. `failures` and `meta` are keyed by stage (self_instruct, evolve, curate):
    each stage's failure rows and its full metrics report (metrics/<name>.meta.json)."""
    si, ev, cu = (meta.get(s) or {} for s in STAGES)
    lost = {s: _by_id(failures.get(s) or []) for s in STAGES}
    rounds = _evolve_rounds(evolved, ev)
    section = Section(
        "funnel",
        "Instruction funnel",
        "Self-Instruct generates tasks, Evol-Instruct rewrites them, curation deduplicates, "
        "decontaminates and tags them. Counts come from each stage's metrics; examples from its data files.",
    )
    rows = [
        (
            "self_instruct",
            si.get("generated"),
            si.get("accepted"),
            counts_text(si.get("dropped")),
            len(lost["self_instruct"]),
            "counts only",
        ),
        *[
            (
                f"evolve round {r}",
                len(parents),
                len(children),
                counts_text(((ev.get("rounds") or {}).get(r) or {}).get("dropped")),
                sum(p["id"] in lost["evolve"] for p in parents),
                "parents whose rewrite did not survive",
            )
            for r, (parents, children) in rounds.items()
        ],
        (
            "curate",
            cu.get("inputs"),
            cu.get("curated"),
            counts_text(cu.get("dropped")),
            len(lost["curate"]),
            "rows missing from its output",
        ),
    ]
    section.tables.append(
        Table(
            "Rows per step",
            ("step", "in", "out", "dropped (why)", "LLM failures", "dropped rows shown"),
            rows,
        )
    )
    section.notes += _mismatches(generated, evolved, curated, si, ev, cu)
    section.notes.append(
        "self_instruct: rejected generations are not written to any file, only counted (metrics/"
        "self_instruct.json `dropped`); the examples below are the tasks it accepted and its failed calls."
    )
    cards = _self_instruct_cards(generated, lost["self_instruct"], max_chars)
    cards += _evolve_cards(rounds, lost["evolve"], ev, max_chars)
    cards += _curate_cards(evolved, curated, lost["curate"], cu, max_chars)
    section.cards, section.totals = capped(by_outcome(cards, ("failed", "dropped", "kept")), max_examples)
    return section


def _by_id(rows: list[Record]) -> dict[str, str]:
    """Failure rows -> {row id: 'step: reason'} (the first failure of each row)."""
    out: dict[str, str] = {}
    for row in rows:
        out.setdefault(str(row.get("id")), f"{row.get('step')}: {row.get('reason')}")
    return out


def _evolve_rounds(evolved: list[Record], ev: dict[str, Any]) -> dict[str, tuple[list[Record], list[Record]]]:
    """Round -> (its parents, its surviving rewrites). Round 1's parents are evolve's first inputs (as
    many as its metrics say, max_instructions may cut them); a later round's are the last one's
    survivors."""
    inputs = [r for r in evolved if r.get("source") != "evol_instruct"]
    children = [r for r in evolved if r.get("source") == "evol_instruct"]
    per_round = ev.get("rounds") or {}
    n_first = (per_round.get("1") or {}).get("parents", len(inputs))
    rounds: dict[str, tuple[list[Record], list[Record]]] = {}
    parents = inputs[:n_first]
    for r in sorted({int(k) for k in per_round} | {int(c["lineage"]["round"]) for c in children}):
        kids = [c for c in children if int(c["lineage"]["round"]) == r]
        rounds[str(r)] = (parents, kids)
        parents = kids
    return rounds


def _mismatches(
    generated: list[Record], evolved: list[Record], curated: list[Record], si: dict, ev: dict, cu: dict
) -> list[str]:
    """Notes where a data file and its stage's metrics disagree (files from different runs)."""
    checks = (
        ("data/instructions/self_instruct.jsonl", len(generated), si.get("accepted")),
        ("data/instructions/evolved.jsonl", len(evolved), ev.get("total")),
        ("data/instructions/curated.jsonl", len(curated), cu.get("curated")),
    )
    return [
        f"{name} holds {n} rows but its stage's metrics say {m}: the file and the metrics come from "
        "different runs, so counts and examples may not match."
        for name, n, m in checks
        if m is not None and n != m
    ]


def _instruction(row: Record, max_chars: int) -> dict[str, Any]:
    return {
        "instruction": clip(row.get("instruction"), max_chars),
        "input": clip(row.get("input"), max_chars),
        "output": clip(row.get("output"), max_chars),
    }


def _self_instruct_cards(generated: list[Record], lost: dict[str, str], max_chars: int) -> list[Card]:
    cards = [
        Card(
            str(r["id"]),
            "self_instruct",
            "kept",
            (str(r.get("viewpoint") or ""),),
            "instruction",
            {**_instruction(r, max_chars), "facts": [], "reason": None},
        )
        for r in generated
    ]
    cards += [
        Card(row_id, "self_instruct", "failed", (), "instruction", {"facts": [], "reason": reason})
        for row_id, reason in lost.items()
    ]
    return cards


def _evolve_cards(
    rounds: dict[str, tuple[list[Record], list[Record]]], lost: dict[str, str], ev: dict, max_chars: int
) -> list[Card]:
    cards = []
    for r, (parents, children) in rounds.items():
        by_parent = {c["lineage"]["parent_id"]: c for c in children}
        dropped = ((ev.get("rounds") or {}).get(r) or {}).get("dropped")
        for parent in parents:
            child = by_parent.get(parent["id"])
            if child is None:
                failed = lost.get(str(parent["id"]))
                reason = failed or (
                    f"rewrite eliminated in round {r}; evolve counts reasons per round, not per row "
                    f"(round {r}: {counts_text(dropped)})"
                )
                data = {**_instruction(parent, max_chars), "facts": [("round", r)], "reason": reason}
                cards.append(
                    Card(
                        str(parent["id"]),
                        "evolve",
                        "failed" if failed else "dropped",
                        (),
                        "instruction",
                        data,
                    )
                )
                continue
            lineage = child["lineage"]
            facts = [("round", r), ("information gain P(yes)", lineage.get("gain_prob"))]
            data = {
                **_instruction(child, max_chars),
                "facts": facts,
                "reason": None,
                "parent": {"id": parent["id"], **_instruction(parent, max_chars)},
            }
            cards.append(
                Card(
                    str(child["id"]),
                    "evolve",
                    "kept",
                    (str(lineage.get("operation") or ""),),
                    "instruction",
                    data,
                )
            )
    return cards


def _curate_reasons(dropped_ids: list[str], lost: dict[str, str], cu: dict) -> dict[str, str]:
    """Why each dropped row was dropped, as far as the files say (see the module docstring)."""
    contamination = {
        str(e.get("id")): f"contaminated: ROUGE-L {e.get('rouge_l')} to {e.get('eval')}"
        for e in (cu.get("contamination") or {}).get("examples") or []
    }
    reasons = {i: lost.get(i) or contamination.get(i) for i in dropped_ids}
    unexplained = [i for i, why in reasons.items() if why is None]
    counts = Counter({k: v for k, v in (cu.get("dropped") or {}).items() if v})
    counts["contaminated"] -= len(contamination)
    counts["tag_failure"] -= sum(i in lost for i in dropped_ids)
    left = {k: v for k, v in counts.items() if v > 0}
    if len(left) == 1 and next(iter(left.values())) == len(unexplained):
        only = next(iter(left))
        text = f"{only} (inferred: the only other reason curate counted, {len(unexplained)} rows)"
    else:
        text = f"reason not recorded per row (curate counted: {counts_text(cu.get('dropped'))})"
    return {i: why or text for i, why in reasons.items()}


def _curate_cards(
    evolved: list[Record], curated: list[Record], lost: dict[str, str], cu: dict, max_chars: int
) -> list[Card]:
    kept_ids = {str(r["id"]) for r in curated}
    dropped = [r for r in evolved if str(r["id"]) not in kept_ids]
    reasons = _curate_reasons([str(r["id"]) for r in dropped], lost, cu)
    cards = []
    for r in curated:
        tags = r.get("tags") or {}
        facts = [
            (
                name,
                f"{tags[name].get('label')} ({tags[name]['score']})"
                if "score" in tags[name]
                else tags[name].get("label"),
            )
            for name in ("quality", "difficulty", "category")
            if name in tags
        ]
        category = ((tags.get("category") or {}).get("label") or "",)
        cards.append(
            Card(
                str(r["id"]),
                "curate",
                "kept",
                category,
                "instruction",
                {**_instruction(r, max_chars), "facts": facts, "reason": None},
            )
        )
    for r in dropped:
        row_id = str(r["id"])
        outcome = "failed" if row_id in lost else "dropped"
        cards.append(
            Card(
                row_id,
                "curate",
                outcome,
                (),
                "instruction",
                {**_instruction(r, max_chars), "facts": [], "reason": reasons[row_id]},
            )
        )
    return cards
