"""Make verifiable prompts: append 1-3 M-IFEval instructions (Japanese wording, kwargs) to a question.

Tülu 3 and M-IFEval build instruction-following data this way: a plain task plus constraints a program
can check. The wordings and argument choices are data (`jalign/prompts/ifeval_constraints.yaml`); the
row written is M-IFEval's input format (`key`, `prompt`, `instruction_id_list`, `kwargs`) plus
`question`, the prompt without its constraints, which the contamination check compares.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from jalign.errors import JalignError

SPECS_PATH = Path(__file__).resolve().parent.parent / "prompts" / "ifeval_constraints.yaml"


class ComposeError(JalignError, ValueError):
    """A constraint spec or a questions file that cannot be used."""


@dataclass(frozen=True)
class ConstraintSpec:
    """One instruction id the composer can append: its wordings, argument sets and conflicts."""

    instruction_id: str
    phrasings: tuple[str, ...]
    kwargs: tuple[dict[str, Any], ...]
    conflicts: frozenset[str]

    def render(self, phrasing: str, kwargs: dict[str, Any]) -> str:
        fields = dict(kwargs)
        if kwargs.get("keywords"):
            fields["keyword"] = kwargs["keywords"][0]
        if kwargs.get("forbidden_words"):
            fields["word"] = kwargs["forbidden_words"][0]
        try:
            return phrasing.format(**fields)
        except KeyError as exc:
            raise ComposeError(
                f"{SPECS_PATH.name}: {self.instruction_id}: phrasing {phrasing!r} needs {exc} "
                "that none of its kwargs give"
            ) from exc


@cache
def load_specs(path: str | Path = SPECS_PATH) -> dict[str, ConstraintSpec]:
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    specs = {}
    for iid, entry in raw.items():
        if not isinstance(entry, dict) or not entry.get("phrasings") or not entry.get("kwargs"):
            raise ComposeError(f"{path}: {iid}: needs non-empty 'phrasings' and 'kwargs'")
        specs[iid] = ConstraintSpec(
            iid,
            tuple(entry["phrasings"]),
            tuple(dict(k or {}) for k in entry["kwargs"]),
            frozenset(entry.get("conflicts") or ()),
        )
    for iid, spec in specs.items():
        unknown = spec.conflicts - specs.keys()
        if unknown:
            raise ComposeError(f"{path}: {iid}: conflicts name unknown ids {sorted(unknown)}")
    return specs


def read_questions(path: str | Path) -> list[str]:
    """One question per line; blank lines and '#' comments skipped; a repeated question is an error."""
    questions: list[str] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text in seen:
            raise ComposeError(f"{path}:{lineno}: question repeated (first at line {seen[text]})")
        seen[text] = lineno
        questions.append(text)
    if not questions:
        raise ComposeError(f"{path}: no questions")
    return questions


def constrain(
    question: str,
    rng: random.Random,
    count: int,
    specs: dict[str, ConstraintSpec] | None = None,
    taken: tuple[str, ...] = (),
) -> dict[str, Any]:
    """`question` plus `count` compatible instructions drawn with `rng` (one per id, none conflicting
    with each other or with the ids in `taken`, which the question already carries)."""
    specs = specs if specs is not None else load_specs()
    all_specs = load_specs()
    held = [all_specs[i] for i in taken if i in all_specs]
    chosen: list[ConstraintSpec] = []
    for iid in rng.sample(sorted(specs), len(specs)):
        spec = specs[iid]
        if iid in taken or any(
            iid in c.conflicts or c.instruction_id in spec.conflicts for c in (*held, *chosen)
        ):
            continue
        chosen.append(spec)
        if len(chosen) == count:
            break
    sentences, kwargs = [], []
    for spec in chosen:
        args = dict(rng.choice(spec.kwargs))
        sentences.append(spec.render(rng.choice(spec.phrasings), args))
        kwargs.append(args)
    return {
        "prompt": question + "".join(sentences),
        "question": question,
        "instruction_id_list": [s.instruction_id for s in chosen],
        "kwargs": kwargs,
    }


def compose_rows(
    questions: Sequence[str],
    seed: int,
    min_instructions: int = 1,
    max_instructions: int = 2,
    key: str = "q",
    specs: dict[str, ConstraintSpec] | None = None,
) -> list[dict[str, Any]]:
    """One verifiable prompt per question, reproducible from `seed`; keys `<key>-<n>` (1-based);
    `specs` limits the ids drawn (default: every id of the constraints file)."""
    if not 1 <= min_instructions <= max_instructions <= 3:
        raise ComposeError(
            f"need 1 <= min_instructions <= max_instructions <= 3, got {min_instructions}, {max_instructions}"
        )
    rng = random.Random(seed)
    rows = []
    for n, question in enumerate(questions, start=1):
        row = constrain(question, rng, rng.randint(min_instructions, max_instructions), specs)
        rows.append({"key": f"{key}-{n:03d}", **row})
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """Write a verifiable eval (or train) set: `python -m jalign.ifeval.compose QUESTIONS OUT --seed N
    --key K [--ids ID ...] [--min 1] [--max 2]` (data/ifeval/README.md has the committed set's command)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(
        description="Append verifiable instructions to questions (M-IFEval rows)."
    )
    parser.add_argument("questions")
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--ids", nargs="+", default=None, help="instruction ids to draw (default: all)")
    parser.add_argument("--min", dest="min_instructions", type=int, default=1)
    parser.add_argument("--max", dest="max_instructions", type=int, default=2)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.ids or ()) - set(load_specs()))
    if unknown:
        parser.error(f"--ids: {unknown} not in {SPECS_PATH.name}; known: {sorted(load_specs())}")
    specs = {i: load_specs()[i] for i in args.ids} if args.ids else None
    rows = compose_rows(
        read_questions(args.questions),
        args.seed,
        args.min_instructions,
        args.max_instructions,
        args.key,
        specs,
    )
    Path(args.out).write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )


if __name__ == "__main__":
    main()
