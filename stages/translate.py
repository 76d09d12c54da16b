"""Translate English source prompts into Japanese, then review and improve the translation (Karasu).

Prompts whose task is about English itself (alphabetical order, rhymes, spelling, letter counts,
English grammar, wordplay) do not survive literal translation (ATHEUS): they are detected and either
localised (あいうえお順 ...) or dropped with the reason, per `english_specific`. A draft that is only the
prompt's own labels (`英語:\n日本語:`, `no_content`) or carries them (`template_residue`) is dropped with
that reason; a review that does falls back to the draft. Outputs are gated on their share of Japanese
characters. Every record keeps its source id, licence and both drafts.
"""

from __future__ import annotations

import re
from collections import Counter

import click

from jalign import prompts
from jalign.config import load_section
from jalign.llm.client import LLMClient
from jalign.llm.types import Request
from jalign.llm_stage import StageRun
from jalign.params import TranslateConfig
from jalign.records import Record, check_unique_ids, provenance_of, write_jsonl
from jalign.sources import load_source
from jalign.stage import Failures, log, mean, write_metrics
from jalign.text import first_paragraph, japanese_ratio, template_labels, template_residue

# Tasks about the English language itself. Patterns are deliberately narrow ("letter" alone would
# catch "write a letter to my landlord").
ENGLISH_SPECIFIC: dict[str, re.Pattern[str]] = {
    "alphabetical_order": re.compile(r"\balphabetic(al(ly)?)?\b|\balphabeti[sz]e|\bA to Z\b", re.I),
    "rhyme": re.compile(r"\brhym(e|es|ing)\b", re.I),
    "spelling": re.compile(r"\bspell(ing|ed|s)?\b|\bbackwards?\b|\bpalindrom|\banagram", re.I),
    "letters": re.compile(
        r"\bhow many letters\b|\bletters? (are )?(in|of)\b|\bletter [A-Z]\b"
        r"|\bvowels?\b|\bconsonants?\b|\bsyllables?\b",
        re.I,
    ),
    "acronym": re.compile(r"\bacronyms?\b|\binitialisms?\b", re.I),
    "english_grammar": re.compile(
        r"\bgrammar\b|\bgrammatical|\b(past|present|future) tense\b|\bplural\b", re.I
    ),
    "wordplay": re.compile(r"\bpuns?\b|\balliterat|\btongue[- ]twisters?\b", re.I),
}


def english_specific_kind(text: str) -> str | None:
    for kind, pattern in ENGLISH_SPECIFIC.items():
        if pattern.search(text):
            return kind
    return None


def plan(rows: list[Record], config: TranslateConfig) -> tuple[list[tuple[Record, str, str | None]], Counter]:
    """Decide per row: translate literally, localise, or drop (with the reason)."""
    todo, drops = [], Counter()
    for row in rows:
        kind = english_specific_kind(row["prompt_en"])
        if len(row["prompt_en"]) > config.max_chars:
            drops["too_long"] += 1
        elif kind and config.english_specific == "drop":
            drops[f"english_specific:{kind}"] += 1
        elif kind and config.english_specific == "localize":
            todo.append((row, "translate_localize", kind))
        else:
            todo.append((row, "translate", kind))
    return todo, drops


def translate_labels() -> tuple[str, ...]:
    """The field labels of the translate prompts ("英語", "日本語", "原文", "下訳", "改善訳"): a line
    that starts with one is the model continuing the few-shot pattern, not a translation."""
    names = ("translate", "translate_localize", "translate_review")
    return tuple(dict.fromkeys(label for name in names for label in template_labels(prompts.load(name))))


def translate(
    rows: list[Record], clients: dict[str, LLMClient], config: TranslateConfig, failures: Failures
) -> tuple[list[Record], Counter]:
    todo, drops = plan(rows, config)
    drafts = clients["translator"].generate(
        [
            Request(
                messages=({"role": "user", "content": prompts.render(t, text=r["prompt_en"])},),
                sampling=config.translator.sampling,
            )
            for r, t, _ in todo
        ]
    )
    labels = translate_labels()
    reviewable = []
    for (row, template, kind), draft in zip(todo, drafts, strict=True):
        text = first_paragraph(draft.text or "")
        if not draft.ok:
            failures.add(row["id"], "translate", draft.error or "")
        elif not text:
            drops["empty_translation"] += 1
        elif residue := template_residue(text, labels):
            drops[residue] += 1  # the translator went on with the few-shot pattern: no prompt to review
        else:
            reviewable.append((row, template, kind, text))
    reviews = clients["reviewer"].generate(
        [
            Request(
                messages=(
                    {
                        "role": "user",
                        "content": prompts.render("translate_review", source=r["prompt_en"], draft=d),
                    },
                ),
                sampling=config.reviewer.sampling,
            )
            for r, _, _, d in reviewable
        ]
    )
    out = []
    for (row, template, kind, draft), review in zip(reviewable, reviews, strict=True):
        if not review.ok:
            failures.add(row["id"], "review", review.error or "")
            continue
        improved = first_paragraph(review.text or "")
        # The review may only improve: an empty, template-residue or non-Japanese review falls back to
        # the draft (which passed the residue gate above).
        reviewed = (
            bool(improved)
            and template_residue(improved, labels) is None
            and japanese_ratio(improved) >= config.min_japanese_ratio
        )
        final = improved if reviewed else draft
        if japanese_ratio(final) < config.min_japanese_ratio:
            drops["not_japanese"] += 1
            continue
        out.append(
            {
                "id": row["id"],
                "source": row["source"],
                **provenance_of([row], (config.translator.terms, config.reviewer.terms)),
                "prompt_en": row["prompt_en"],
                "draft_ja": draft,
                "reviewed_ja": improved,
                "prompt": final,
                "review_used": reviewed,
                "english_specific": {"kind": kind, "action": "localized"}
                if template == "translate_localize"
                else ({"kind": kind, "action": "kept"} if kind else None),
                "translator": config.translator.model,
                "reviewer": config.reviewer.model,
            }
        )
    return out, drops


@click.command("translate")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
@click.option("--failures", "failures_path", required=True, type=click.Path(dir_okay=False))
@click.option("--metrics", "metrics_path", required=True, type=click.Path(dir_okay=False))
@click.option("--params", "params_path", default="params.yaml", show_default=True)
def main(out_path: str, failures_path: str, metrics_path: str, params_path: str) -> None:
    """Translate source prompts to Japanese in two passes (translate, review-and-improve)."""
    config = load_section(TranslateConfig, "translate", params_path)
    run = StageRun(
        "translate",
        config,
        params_path,
        outputs=(out_path, failures_path, metrics_path),
        budget_usd=config.budget_usd,
    )
    rows = [row for source in config.sources for row in load_source(source)]
    check_unique_ids(rows, "translate.sources")
    clients = {
        "translator": run.client("translate.translator", config.translator),
        "reviewer": run.client("translate.reviewer", config.reviewer),
    }
    out, drops = translate(rows, clients, config, run.failures)
    run.finish(input_rows=len(rows), failures_path=failures_path, max_failure_rate=config.max_failure_rate)
    write_jsonl(out_path, out)
    log.info("translated %d of %d source prompts", len(out), len(rows))
    write_metrics(
        metrics_path,
        {
            "sources": dict(Counter(r["source"] for r in rows)),
            "inputs": len(rows),
            "translated": len(out),
            "dropped": dict(sorted(drops.items())),
            "localized": sum(1 for r in out if (r["english_specific"] or {}).get("action") == "localized"),
            "review_used": sum(r["review_used"] for r in out),
            "mean_japanese_ratio": mean([japanese_ratio(r["prompt"]) for r in out]),
            **run.metrics(),
        },
    )
