"""Records -> the report page: the one pure entry point of the `report` stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jalign.records import Record
from jalign.report.cards import Section
from jalign.report.funnel import funnel
from jalign.report.games import games_section
from jalign.report.ifeval_results import ifeval_section
from jalign.report.pairs import pairs
from jalign.report.render import render


@dataclass(frozen=True)
class ReportData:
    """Everything the page shows, as read from the stages' files (dvc.yaml names them)."""

    generated: list[Record]  # data/instructions/self_instruct.jsonl
    evolved: list[Record]  # data/instructions/evolved.jsonl
    curated: list[Record]  # data/instructions/curated.jsonl
    failures: dict[str, list[Record]]  # stage -> data/failures/<stage>.jsonl
    meta: dict[str, dict[str, Any]]  # stage -> its full metrics report (metrics/*.meta.json): self_instruct,
    # evolve, curate (metrics/instructions.meta.json) and decide (metrics/judge.meta.json)
    responses: list[Record]  # data/preferences/responses.jsonl
    decided: list[Record]  # data/preferences/decided.jsonl (raw judgments + verdicts)
    pairs: list[Record]  # data/preferences/pairs.jsonl
    verified: list[Record]  # data/preferences/verified_pairs.jsonl
    answers: list[Record]  # data/eval/answers.jsonl
    judgments: list[Record]  # data/eval/judgments.jsonl
    games: list[Record]  # data/eval/games.jsonl
    baseline: str  # evaluate.baseline.name
    questions: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (set, item) -> turns


def sections(data: ReportData, max_examples: int, max_chars: int) -> list[Section]:
    return [
        funnel(data.generated, data.evolved, data.curated, data.failures, data.meta, max_examples, max_chars),
        pairs(
            data.responses,
            data.decided,
            data.pairs,
            data.verified,
            data.meta.get("decide") or {},
            max_examples,
            max_chars,
        ),
        games_section(data.answers, data.judgments, data.games, data.questions, max_examples, max_chars),
        ifeval_section(data.answers, data.baseline, max_examples, max_chars),
    ]


def build_page(data: ReportData, max_examples: int, max_chars: int, sources: list[str]) -> str:
    """The whole HTML page; `sources` names the files it came from (shown in its footer)."""
    settings = {"max_examples": max_examples, "max_chars": max_chars}
    return render(sections(data, max_examples, max_chars), sources, settings)
