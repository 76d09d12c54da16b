"""Curation: tag values from choice distributions, thresholds, dedup and contamination."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from helpers import llm_config, repo_config

from jalign.evalsets import load_eval_prompts, load_eval_sets
from jalign.llm.types import Choice
from jalign.params import CATEGORY, CurateConfig
from stages.curate import DIFFICULTY, QUALITY, tag_reason, tag_value

REPO = Path(__file__).resolve().parents[2]
CONFIG = repo_config(CurateConfig, "curate", tagger=llm_config(model="org/model@abc"), min_quality=3.0,
                     min_difficulty=1.0, max_difficulty=4.0, drop_categories=("others",))  # fmt: skip


def test_ordinal_tag_has_label_level_and_expected_score():
    value = tag_value(Choice(probs={"1": 0.1, "2": 0.1, "3": 0.2, "4": 0.5, "5": 0.1}, mass=0.9), QUALITY)
    assert value["label"] == "good" and value["level"] == 4
    assert value["score"] == pytest.approx(1 * 0.1 + 2 * 0.1 + 3 * 0.2 + 4 * 0.5 + 5 * 0.1)
    assert value["probs"]["excellent"] == 0.1


def test_category_tag_maps_letters_to_magpie_categories():
    probs = dict.fromkeys("ABCDEFGHIJKL", 0.0) | {"F": 0.7, "B": 0.3}
    value = tag_value(Choice(probs=probs, mass=0.5), CATEGORY)
    assert value["label"] == "math" and "level" not in value


def tags(quality: float, difficulty: float, category: str, quality_level: int | None = None) -> dict:
    """Tags as tag_value writes them; the most likely quality level defaults to the rounded score."""
    level = round(quality) if quality_level is None else quality_level
    return {"quality": {"score": quality, "label": QUALITY[str(level)], "level": level},
            "difficulty": {"score": difficulty, "label": DIFFICULTY[str(round(difficulty))],
                           "level": round(difficulty)},
            "category": {"label": category}}  # fmt: skip


@pytest.mark.parametrize(
    ("t", "reason"),
    [
        (tags(2.9, 3, "math"), "low_quality"),
        # an expected score above the threshold, but the tagger's own tag below it: "poor or better"
        # must not admit a row tagged very_poor (4 of 5 curated rows of the default run were)
        (tags(3.2, 3, "math", quality_level=2), "low_quality_tag"),
        (tags(3, 4.2, "math"), "difficulty_out_of_range"),
        (tags(5, 2, "others"), "category_dropped"),
        (tags(3.0, 4.0, "reasoning"), None),
    ],
)
def test_tag_thresholds(t, reason):
    assert tag_reason(t, CONFIG) == reason


def test_config_validates_ranges_and_categories():
    with pytest.raises(ValueError, match="min_difficulty"):
        dataclasses.replace(CONFIG, min_difficulty=4.0, max_difficulty=2.0)
    with pytest.raises(ValueError, match=r"drop_categories: unknown \['poetry'\]"):
        dataclasses.replace(CONFIG, drop_categories=("poetry",))


def test_repo_eval_set_loads_from_params():
    sets = load_eval_sets(REPO / "params.yaml")
    sets = [dataclasses.replace(s, path=str(REPO / s.path)) for s in sets]
    prompts = load_eval_prompts(sets)
    assert len(prompts) >= 20
    assert len({p.id for p in prompts}) == len(prompts)


@pytest.mark.parametrize("template", ["curate_quality", "curate_difficulty", "curate_category"])
def test_choice_prompts_end_at_the_open_bracket(template):
    """The next token must be the answer itself: no trailing newline or space after '['."""
    from jalign import prompts

    assert prompts.render(template, instruction="x", input="なし").endswith(": [")


def test_a_tag_the_tagger_barely_answered_drops_the_row_instead_of_guessing(tmp_path):
    """Low probability mass on the offered answers is no tag: counted, not turned into a label."""
    import fake_openai

    from jalign.llm.cache import ResponseCache
    from jalign.llm.client import LLMClient
    from jalign.stage import Failures
    from stages.curate import curate

    def top(body):
        text = fake_openai.prompt_text(body)
        if "ほぼ答えない" in text and text.endswith("評価: ["):
            return {"x": -0.01, "4": -6.0}  # the tagger wanted to write something else
        return {"4": -0.1, "3": -2.5, "A": -0.2}

    records = [
        {"id": "ok", "instruction": "味噌汁の作り方を教えてください。", "output": "だしを取ります。"},
        {"id": "low", "instruction": "ほぼ答えない指示です。", "output": "はい。"},
    ]
    with fake_openai.FakeOpenAIServer(top_logprobs=top) as server:
        tagger = llm_config(model="tagger", backend="openai", base_url=server.url, prompt_format="chat")
        config = repo_config(CurateConfig, "curate", tagger=tagger, min_quality=1.0)
        client = LLMClient(tagger, cache=ResponseCache(tmp_path / "c.sqlite"))
        kept, report = curate(records, [], client, config, Failures("curate"))
    assert [r["id"] for r in kept] == ["ok"]
    assert report["dropped"]["tag_low_mass"] == 1
    assert kept[0]["tags"]["quality"]["label"] == "good" and kept[0]["tags"]["quality"]["mass"] > 0.5


def test_a_row_tagged_below_the_quality_threshold_is_dropped_and_counted(tmp_path):
    """The default run's case: P(very_poor) is the largest, yet the expected score (2.06) passes
    min_quality 2.0. The tag is very_poor: the row is dropped, and the funnel says why."""
    import math

    import fake_openai

    from jalign.llm.cache import ResponseCache
    from jalign.llm.client import LLMClient
    from jalign.stage import Failures
    from stages.curate import curate, funnel

    very_poor = {"1": 0.41, "2": 0.32, "3": 0.11, "4": 0.12, "5": 0.04}
    good = {"4": 0.8, "3": 0.2}

    def top(body):
        text = fake_openai.prompt_text(body)
        if text.endswith("評価: ["):
            return {k: math.log(p) for k, p in (very_poor if "例のやつ" in text else good).items()}
        if text.endswith("難易度: ["):
            return {"3": -0.1}
        return {"A": -0.1}

    records = [
        {"id": "ok", "instruction": "味噌汁の作り方を教えてください。", "output": "だしを取ります。"},
        {"id": "vague", "instruction": "例のやつを説明して", "output": "はい。"},
    ]
    with fake_openai.FakeOpenAIServer(top_logprobs=top) as server:
        tagger = llm_config(model="tagger", backend="openai", base_url=server.url, prompt_format="chat")
        config = repo_config(CurateConfig, "curate", tagger=tagger, min_quality=2.0)
        client = LLMClient(tagger, cache=ResponseCache(tmp_path / "c.sqlite"))
        kept, report = curate(records, [], client, config, Failures("curate"))
    assert [r["id"] for r in kept] == ["ok"]
    assert report["dropped"]["low_quality_tag"] == 1
    assert funnel({}, report)["curate_dropped"]["low_quality_tag"] == 1
