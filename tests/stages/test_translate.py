"""Translate: English-specific detection and the per-row plan; source loading."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest
from helpers import llm_config, repo_config

from jalign.params import TranslateConfig
from jalign.records import RecordError
from jalign.sources import SourceConfig, load_source
from jalign.text import first_paragraph
from stages.translate import english_specific_kind, plan

REPO = Path(__file__).resolve().parents[2]
# ../shared/data beside the checkout (CI lays it there); JALIGN_SHARED_DATA for a checkout elsewhere
SHARED = Path(os.environ.get("JALIGN_SHARED_DATA") or REPO.parent / "shared" / "data")


def source(**fields: Any) -> SourceConfig:
    """A complete SourceConfig: prompt/id fields named prompt and id, no limit, a local path."""
    return SourceConfig(**({"prompt_field": "prompt", "id_field": "id", "limit": None} | fields))


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Sort these fruits alphabetically: pear, apple, fig.", "alphabetical_order"),
        ("Put the names in alphabetical order.", "alphabetical_order"),
        ("Give me five words that rhyme with 'light'.", "rhyme"),
        ("How do you spell 'necessary'?", "spelling"),
        ("Write the word 'stressed' backwards.", "spelling"),
        ("How many letters are in the word 'Mississippi'?", "letters"),
        ("Count the vowels in 'education'.", "letters"),
        ("Make an acronym for our team values.", "acronym"),
        ("Correct the grammar in: 'She don't like apples.'", "english_grammar"),
        ("Put this sentence into the past tense: I eat rice.", "english_grammar"),
        ("Tell me a pun about cheese.", "wordplay"),
        ("Write a tongue twister about sea shells.", "wordplay"),
        # Not about English itself: must be translated literally.
        ("Write a letter to my landlord about a broken heater.", None),
        ("How do I boil an egg so the yolk stays soft?", None),
        ("Summarise the plot of a novel about a lighthouse keeper.", None),
    ],
)
def test_english_specific_detection(text, kind):
    assert english_specific_kind(text) == kind


def config(action: str) -> TranslateConfig:
    llm = llm_config(model="org/m@abc")
    return repo_config(
        TranslateConfig,
        "translate",
        translator=llm,
        reviewer=llm,
        english_specific=action,
        max_chars=60,
        sources=(source(name="s", license="cc0-1.0", path="x.jsonl"),),
    )


ROWS = [
    {"id": "s:1", "prompt_en": "Sort these words alphabetically: b, a."},
    {"id": "s:2", "prompt_en": "Explain photosynthesis simply."},
    {"id": "s:3", "prompt_en": "Explain, in detail, how a bill becomes a law in a parliament."},  # 61 chars
]


def test_plan_localizes_drops_or_keeps_per_param():
    assert len(ROWS[2]["prompt_en"]) == 61
    todo, drops = plan(ROWS, config("localize"))
    assert [(r["id"], t, k) for r, t, k in todo] == [
        ("s:1", "translate_localize", "alphabetical_order"),
        ("s:2", "translate", None),
    ]
    assert drops == {"too_long": 1}  # longer than max_chars=60, whatever english_specific says
    todo, drops = plan(ROWS, config("drop"))
    assert [r["id"] for r, _, _ in todo] == ["s:2"]
    assert drops == {"english_specific:alphabetical_order": 1, "too_long": 1}
    todo, _ = plan(ROWS, config("keep"))
    assert [t for _, t, _ in todo] == ["translate", "translate"]


def test_first_paragraph_stops_at_a_blank_line():
    assert first_paragraph("  一行目です。\n続きです。\n\n次の英語: ...") == "一行目です。\n続きです。"


def test_source_config_needs_exactly_one_location_and_a_pinned_hub_dataset():
    with pytest.raises(ValueError, match="exactly one"):
        source(name="s", license="cc0-1.0")
    with pytest.raises(ValueError, match="exactly one"):
        source(name="s", license="cc0-1.0", path="a.jsonl", hf_dataset="org/ds", split="train", revision="r")
    with pytest.raises(ValueError, match=r"'s': a Hub dataset needs split and revision"):
        source(name="s", license="cc0-1.0", hf_dataset="org/ds")
    with pytest.raises(ValueError, match="needs split and revision"):
        source(name="s", license="cc0-1.0", hf_dataset="org/ds", split="train")
    with pytest.raises(ValueError, match="needs split and revision"):
        source(name="s", license="cc0-1.0", hf_dataset="org/ds", revision="abc123")
    pinned = source(name="s", license="cc0-1.0", hf_dataset="org/ds", split="train", revision="abc123")
    assert (pinned.split, pinned.revision) == ("train", "abc123")


def test_translate_config_needs_distinct_source_names():
    with pytest.raises(ValueError, match="distinct names"):
        repo_config(
            TranslateConfig,
            "translate",
            sources=(source(name="s", license="mit", path="a"), source(name="s", license="mit", path="b")),
        )
    with pytest.raises(ValueError, match="at least one"):
        repo_config(TranslateConfig, "translate", sources=())


def test_load_source_maps_fields_filters_and_limits(tmp_path):
    path = tmp_path / "src.jsonl"
    rows = [{"mid": i, "text": f"prompt {i}", "lang": "en" if i % 2 else "de"} for i in range(10)]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    oa = source(
        name="oa",
        license="apache-2.0",
        path=str(path),
        prompt_field="text",
        id_field="mid",
        where={"lang": "en"},
        limit=3,
    )
    out = load_source(oa)
    assert [r["id"] for r in out] == ["oa:1", "oa:3", "oa:5"]
    assert all(r["license"] == "apache-2.0" and r["source"] == "oa" for r in out)


def test_load_source_names_file_line_and_field(tmp_path):
    path = tmp_path / "src.jsonl"
    path.write_text('{"id": 1, "prompt": "ok"}\n{"id": 2, "prompt": ""}\n', encoding="utf-8")
    with pytest.raises(RecordError, match=r"src.jsonl:2: field 'prompt'"):
        load_source(source(name="s", license="cc0-1.0", path=str(path)))
    path.write_text('{"id": 1, "prompt": "a"}\n\n{"id": 2, "prompt": "b"}\n{"id": 1, "prompt": "c"}\n')
    with pytest.raises(RecordError, match=r"src.jsonl:4: field 'id': duplicate id 1 \(first at line 1\)"):
        load_source(source(name="s", license="cc0-1.0", path=str(path)))


def test_repo_source_prompts_include_english_specific_tasks():
    [repo_source] = repo_config(TranslateConfig, "translate").sources
    rows = load_source(dataclasses.replace(repo_source, path=str(REPO / repo_source.path), limit=None))
    assert {r["license"] for r in rows} == {repo_source.license}
    kinds = [english_specific_kind(r["prompt_en"]) for r in rows]
    assert len(rows) == 40 and sum(k is not None for k in kinds) >= 6


@pytest.mark.skipif(not (SHARED / "hh_rlhf").exists(), reason="../shared/data is not present")
def test_loads_a_public_preference_file_as_a_source():
    """hh-rlhf rows through the same loader (the prompt is the first human turn; here the whole text)."""
    hh = SourceConfig(
        name="hh",
        license="mit",
        path=str(SHARED / "hh_rlhf/harmless-base_test_first300.jsonl"),
        prompt_field="chosen",
        id_field=None,
        limit=5,
    )
    rows = load_source(hh)
    assert len(rows) == 5 and rows[0]["id"] == "hh:1" and "Human:" in rows[0]["prompt_en"]


def test_template_residue_and_empty_prompts_are_dropped_and_counted(tmp_path):
    """A small translator continues the few-shot pattern: '英語:\\n日本語:' passed every gate (its
    characters are all Japanese). A draft with no content or with template labels is dropped with its
    reason; a review that is only residue falls back to the draft, as an empty review does."""
    import fake_openai

    from jalign.llm.cache import ResponseCache
    from jalign.llm.client import LLMClient
    from jalign.stage import Failures
    from stages.translate import translate

    drafts = {
        "Only the labels.": "英語:\n日本語:",
        "Labels and text.": "英語: 私は質問したいです。\n日本語: 質問は何ですか？",
        "Boil an egg.": "卵のゆで方を教えてください。",
        "Thank a colleague.": "同僚にお礼を書いてください。",
    }
    reviews = {
        "Boil an egg.": "改善訳:",
        "Thank a colleague.": "手伝ってくれた同僚へのお礼を書いてください。",
    }

    def responder(body: dict) -> str:
        text = fake_openai.prompt_text(body)
        if text.rstrip().endswith("改善訳:"):  # the review: as scripted, else the draft copied
            source = text.rsplit("原文: ", 1)[1].split("\n")[0]
            return reviews.get(source) or text.rsplit("下訳: ", 1)[1].rsplit("\n改善訳:", 1)[0]
        return drafts[text.rsplit("英語: ", 1)[1].split("\n")[0]]

    rows = [
        {"id": f"s:{i}", "source": "s", "prompt_en": en, "license": "cc0-1.0"} for i, en in enumerate(drafts)
    ]
    with fake_openai.FakeOpenAIServer(responder=responder) as server:
        llm = llm_config(model="translator", backend="openai", base_url=server.url, prompt_format="chat")
        config = repo_config(TranslateConfig, "translate", translator=llm, reviewer=llm)
        client = LLMClient(llm, cache=ResponseCache(tmp_path / "c.sqlite"))
        out, drops = translate(rows, {"translator": client, "reviewer": client}, config, Failures("t"))
    assert drops == {"no_content": 1, "template_residue": 1}
    assert [(r["id"], r["prompt"], r["review_used"]) for r in out] == [
        ("s:2", "卵のゆで方を教えてください。", False),
        ("s:3", "手伝ってくれた同僚へのお礼を書いてください。", True),
    ]
