"""What the page is made of: sections holding summary tables, notes and example cards.

A card is one example (an instruction, a preference pair, an evaluation item, an IFEval prompt) with the
three values the page filters on: its section's stage, its categories and its outcome. Texts are kept
as `Clip`s: a long answer is cut to `max_chars`, and the page says how much was cut.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Outcome -> badge tone (the page colours good / bad / neutral / warn).
TONES = {
    "kept": "good",
    "win": "good",
    "pass": "good",
    "dropped": "bad",
    "failed": "bad",
    "loss": "bad",
    "fail": "bad",
    "tie": "neutral",
    "split": "warn",
    "mixed": "warn",
    "invalid": "warn",
}


@dataclass(frozen=True)
class Clip:
    """A text as shown: at most `max_chars` characters, and how many were cut."""

    text: str
    cut: int = 0


def clip(text: Any, max_chars: int) -> Clip:
    """`text` cut to `max_chars` characters (None or a non-string shows as its JSON-ish repr)."""
    if text is None:
        return Clip("")
    text = text if isinstance(text, str) else repr(text)
    if len(text) <= max_chars:
        return Clip(text)
    return Clip(text[:max_chars], len(text) - max_chars)


@dataclass(frozen=True)
class Table:
    """A small summary table: a caption, column names and rows of plain values."""

    caption: str
    header: tuple[str, ...]
    rows: list[tuple[Any, ...]]


@dataclass(frozen=True)
class Card:
    """One example. `kind` names the template macro that draws `data` (see each section's builder)."""

    id: str
    stage: str
    outcome: str
    categories: tuple[str, ...]
    kind: str
    data: dict[str, Any]

    @property
    def tone(self) -> str:
        return TONES.get(self.outcome, "neutral")


@dataclass
class Section:
    """A part of the page: `key` is its anchor; `cards` are already capped, `totals` counts every card
    per outcome before the cap."""

    key: str
    title: str
    intro: str
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cards: list[Card] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)

    @property
    def hidden(self) -> int:
        """Cards left out by the cap."""
        return sum(self.totals.values()) - len(self.cards)


def capped(cards: Iterable[Card], max_examples: int) -> tuple[list[Card], dict[str, int]]:
    """The first `max_examples` cards of each (stage, outcome), in order, and every outcome's count."""
    shown, seen, totals = [], Counter(), Counter()
    for card in cards:
        totals[card.outcome] += 1
        seen[(card.stage, card.outcome)] += 1
        if seen[(card.stage, card.outcome)] <= max_examples:
            shown.append(card)
    return shown, dict(totals)


def by_outcome(cards: list[Card], order: Sequence[str]) -> list[Card]:
    """`cards` grouped by stage (first appearance) and, within a stage, by `order` of outcomes (stable)."""
    stages = {c.stage: i for i, c in reversed(list(enumerate(cards)))}
    rank = {o: i for i, o in enumerate(order)}
    return sorted(cards, key=lambda c: (stages[c.stage], rank.get(c.outcome, len(rank))))


def counts_text(counts: dict[str, Any] | None) -> str:
    """{'truncated': 3, 'unparseable': 2} -> 'truncated 3, unparseable 2' ('none' when empty)."""
    items = [(k, v) for k, v in (counts or {}).items() if v]
    return ", ".join(f"{k} {v}" for k, v in items) if items else "none"


def ordered(values: Sequence[str], first: Sequence[str]) -> list[str]:
    """`values` deduplicated, those in `first` leading in that order, the rest sorted."""
    unique = set(values)
    return [v for v in first if v in unique] + sorted(unique - set(first))
