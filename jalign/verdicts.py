"""Parse a pairwise judge's answer into a verdict: A wins, B wins, tie, or an invalid answer.

Judges are asked to end with `最終判定: [[A]]`, `[[B]]` or `[[C]]` (C = tie); Arena-Hard style
`[[A>>B]]` … `[[B>>A]]` and spelled-out ties (`[[引き分け]]`, `[[tie]]`, `[[同等]]`) are read too.
Only bracketed tokens count: a bare "Aの方が良い" is not a verdict, because we trust only the format
the prompt asks for. Tokens inside quoted material (code fences, `>` blockquotes, 「」『』“” and
"...") are ignored: the judged answers may carry injected tokens that the judge quotes back.

An unreadable answer is a `Verdict` with `outcome=None` and a `reason`, never a bare `None`, so the
caller can count and show rejects instead of dropping them.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["A", "B", "tie"]


@dataclass(frozen=True)
class Verdict:
    """One parsed judgment; `outcome is None` means invalid and never counts as a win."""

    outcome: Outcome | None
    strength: int  # 2 for A>>B / B>>A; 1 for A>B, [[A]], [[B]]; 0 for a tie or an invalid answer
    reason: str  # "" when valid, else "no_verdict", "conflicting_verdicts" or "empty"
    token: str  # the matched token after NFKC normalisation, e.g. "[[A>B]]"; "" when invalid


# Longer forms first so that "A>>B" is not read as "A>B" or "A".
_COMPARISONS = [
    r"A\s*(?:>>|≫)\s*B",
    r"B\s*(?:>>|≫)\s*A",
    r"A\s*>\s*B",
    r"B\s*>\s*A",
    r"A\s*=\s*B",
    r"B\s*=\s*A",
]
_INNER = "|".join([*_COMPARISONS, "A", "B", "C", "tie", "引き分け", "引分け", "同等"])
_TOKEN = re.compile(
    rf"(?P<open>\[\[|【【|【)[\s*_]*(?P<inner>{_INNER})[\s*_]*(?P<close>\]\]|】】|】)", re.IGNORECASE
)
_CLOSE_OF = {"[[": "]]", "【【": "】】", "【": "】"}
_OUTCOMES: dict[str, tuple[Outcome, int]] = {
    "A": ("A", 1),
    "B": ("B", 1),
    "A>>B": ("A", 2),
    "A>B": ("A", 1),
    "B>A": ("B", 1),
    "B>>A": ("B", 2),
    "C": ("tie", 0),
    "A=B": ("tie", 0),
    "B=A": ("tie", 0),
    "TIE": ("tie", 0),
    "引き分け": ("tie", 0),
    "引分け": ("tie", 0),
    "同等": ("tie", 0),
}
# "判定" covers 最終判定 and 最終的な判定; "verdict" covers "Final verdict" and "My final verdict is".
_MARKER = re.compile(
    r"最終判定|最終的な判定|判定|結論|final verdict|my final verdict is|verdict", re.IGNORECASE
)
_FENCE = re.compile(r"^\s*(```|~~~)")
_STRAIGHT_QUOTED = re.compile(r'"[^"\n]*"')
_BRACKET_QUOTES = {"「": "」", "『": "』", "“": "”"}
# What may surround a token on the line after a bare marker line ("最終判定:\n**[[A]]**").
_DECORATION = re.compile(r"[\s*_#`:.。、!-]*")


def parse_verdict(text: str) -> Verdict:
    """Read the verdict token a judge wrote; see the module docstring for the rules."""
    norm = unicodedata.normalize("NFKC", text)
    if not norm.strip():
        return _invalid("empty")
    lines = _blank_quotes(_blank_quoted_lines(norm)).split("\n")
    tokens = [_tokens(line) for line in lines]
    marked = _marker_line_tokens(lines, tokens)
    if marked:
        return _decide(marked[-1])
    return _decide([tok for line_tokens in tokens for tok in line_tokens])


def swap_outcome(outcome: Outcome | None) -> Outcome | None:
    """Map a verdict on swapped positions back: A <-> B; tie and None unchanged."""
    if outcome == "A":
        return "B"
    if outcome == "B":
        return "A"
    return outcome


def _invalid(reason: str) -> Verdict:
    return Verdict(outcome=None, strength=0, reason=reason, token="")


def _blank_quoted_lines(text: str) -> str:
    """Empty the lines of fenced code blocks and `>` blockquotes (an unclosed fence runs to the end)."""
    out, fence = [], None
    for line in text.split("\n"):
        match = _FENCE.match(line)
        if fence is None and match:
            rest = line.strip()[3:]
            if not rest.endswith(match.group(1)):  # "```[[A]]```" on one line opens nothing
                fence = match.group(1)
            out.append("")
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
            out.append("")
        else:
            out.append("" if line.lstrip().startswith(">") else line)
    return "\n".join(out)


def _blank_quotes(text: str) -> str:
    """Blank the inside of "..." (within a line) and of balanced 「」『』“” (may span lines).

    An opener that is never closed is left as a literal character, so a stray 「 cannot hide the
    verdict that follows it. Newlines are kept so that line numbers do not move.
    """
    text = _STRAIGHT_QUOTED.sub(lambda m: " " * len(m.group()), text)
    chars = list(text)
    stack: list[tuple[str, int]] = []  # (expected closer, index of the opener)
    for i, ch in enumerate(text):
        if ch in _BRACKET_QUOTES:
            stack.append((_BRACKET_QUOTES[ch], i))
        elif any(closer == ch for closer, _ in stack):
            while stack:
                closer, start = stack.pop()
                if closer == ch:
                    break
            for j in range(start, i + 1):
                if chars[j] != "\n":
                    chars[j] = " "
    return "".join(chars)


def _tokens(line: str) -> list[tuple[Outcome, int, str]]:
    """The verdict tokens on one line as (outcome, strength, token), in order."""
    found = []
    for match in _TOKEN.finditer(line):
        if _CLOSE_OF[match.group("open")] != match.group("close"):
            continue
        inner = re.sub(r"\s+", "", match.group("inner")).replace("≫", ">>").upper()
        outcome, strength = _OUTCOMES[inner]
        found.append((outcome, strength, match.group()))
    return found


def _marker_line_tokens(
    lines: list[str], tokens: list[list[tuple[Outcome, int, str]]]
) -> list[list[tuple[Outcome, int, str]]]:
    """Tokens of each line that carries a final-verdict marker, in order.

    A marker line without a token takes the next non-blank line when that line is only a token
    with decoration ("最終判定:" then "**[[A]]**" below it).
    """
    marked = []
    for i, line in enumerate(lines):
        if not _MARKER.search(line):
            continue
        if tokens[i]:
            marked.append(tokens[i])
            continue
        nxt = next((j for j in range(i + 1, len(lines)) if lines[j].strip()), None)
        if nxt is not None and tokens[nxt] and _DECORATION.fullmatch(_TOKEN.sub("", lines[nxt])):
            marked.append(tokens[nxt])
    return marked


def _decide(found: list[tuple[Outcome, int, str]]) -> Verdict:
    """One distinct outcome wins with its last token's strength; several conflict; none is no verdict."""
    if not found:
        return _invalid("no_verdict")
    if len({outcome for outcome, _, _ in found}) > 1:
        return _invalid("conflicting_verdicts")
    outcome, strength, token = found[-1]
    return Verdict(outcome=outcome, strength=strength, reason="", token=token)
