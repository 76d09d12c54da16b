"""Sections -> one self-contained HTML page (templates/page.html.j2, report.css, report.js).

Jinja2 with autoescape escapes every value the template prints, quotes included, so a model's
`<img src=x onerror=...>` is text. Only the page's own stylesheet and script go in unescaped, and a
Content-Security-Policy allows that one script (by its SHA-256) and nothing else: no other script, no
inline event handler, no request to any address.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from jalign.report.cards import TONES, Card, Section, ordered

TEMPLATES = Path(__file__).resolve().parent / "templates"

# Stage filter values -> labels, in pipeline order.
STAGES = {
    "self_instruct": "instructions · self_instruct",
    "evolve": "instructions · evolve",
    "curate": "instructions · curate",
    "decide": "pairs · judge (decide)",
    "verify": "pairs · verifier (verify)",
    "games": "evaluation · games",
    "ifeval": "evaluation · IFEval",
}
OUTCOMES = ("kept", "dropped", "failed", "win", "tie", "loss", "split", "invalid", "pass", "mixed", "fail")


def script_hash(script: str) -> str:
    """The CSP source that allows exactly this inline script."""
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")


def filter_options(cards: list[Card]) -> dict[str, list]:
    """The values the filters offer: stages and outcomes present, categories grouped by stage."""
    categories: dict[str, list[str]] = {}
    for stage in ordered([c.stage for c in cards], list(STAGES)):
        found = sorted({cat for c in cards if c.stage == stage for cat in c.categories if cat})
        if found:
            categories[stage] = found
    return {
        "stages": [(s, STAGES.get(s, s)) for s in ordered([c.stage for c in cards], list(STAGES))],
        "categories": [(STAGES.get(s, s), values) for s, values in categories.items()],
        "outcomes": ordered([c.outcome for c in cards], OUTCOMES),
    }


def render(sections: list[Section], sources: list[str], settings: dict[str, int]) -> str:
    """The page. `sources` lists the files it was built from; `settings` the report params in effect."""
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    script = (TEMPLATES / "report.js").read_text(encoding="utf-8")
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    cards = [c for s in sections for c in s.cards]
    return env.get_template("page.html.j2").render(
        sections=sections,
        sources=sources,
        settings=settings,
        options=filter_options(cards),
        stage_labels=STAGES,
        tones=TONES,
        css=Markup(css),
        script=Markup(script),
        script_hash=script_hash(script),
    )
