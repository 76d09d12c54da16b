"""jalign.hub_cards: card metadata, sections and whole cards from plain data (no project on disk).

The publish stage's tests check cards end to end through the fake Hub; these pin the pure pieces.
"""

from __future__ import annotations

from huggingface_hub import DatasetCard

from jalign.hub import LicenseTally
from jalign.hub_cards import (
    CardFacts,
    card_license,
    dataset_card,
    eval_results,
    flatten,
    fmt,
    git_commit,
    provenance_section,
    usage_models,
)


def test_card_license_is_one_hub_id_or_other_with_a_name():
    assert card_license(["apache-2.0"]) == {"license": "apache-2.0"}
    assert card_license(["gemma-terms"]) == {"license": "other", "license_name": "gemma-terms"}
    assert card_license(["apache-2.0", "cc0-1.0"]) == {
        "license": "other",
        "license_name": "apache-2-0-and-cc0-1-0",
    }


def test_usage_models_lists_roles_with_a_model_in_file_order():
    reports = {
        "metrics/b.meta.json": {
            "usage": {"zeta": {"model": {"model": "m2", "backend": "openai"}}, "total": {}}
        },
        "metrics/missing.meta.json": None,
        "metrics/a.meta.json": {"usage": {"alpha": {"model": {"model": "m1", "revision": 3}}, "bad": 1}},
    }
    assert usage_models(reports) == [
        {"report": "metrics/b.meta.json", "role": "zeta", "backend": "openai", "model": "m2"},
        {"report": "metrics/a.meta.json", "role": "alpha", "model": "m1", "revision": "3"},
    ]


def test_numbers_and_params_render_compactly():
    assert fmt(0.123456) == "0.1235" and fmt(None) == "n/a" and fmt(3) == "3"
    assert flatten({"train": {"beta": 0.1, "lora": {"r": 4}}}) == [
        ["`train.beta`", "0.1"],
        ["`train.lora.r`", "4"],
    ]


def test_provenance_names_commit_stage_and_input_md5s():
    assert git_commit(None) == "unknown" and git_commit({"provenance": {"git_commit": "abc"}}) == "abc"
    assert provenance_section("abc", None).endswith("- dvc.lock: no entry for this artifact")
    entry = {
        "stage": "dpo",
        "out": {"path": "models/dpo", "md5": "f6.dir"},
        "deps": [{"path": "x", "md5": "e5"}],
    }
    text = provenance_section("abc", entry)
    assert "- dvc.lock stage `dpo`, output `models/dpo` md5 `f6.dir`" in text
    assert text.endswith("| `x` | `e5` |")


def test_eval_results_without_the_candidate_report_none_and_say_why():
    entries, text = eval_results(None, "metrics/eval.json", "dpo", "repo")
    assert entries == [] and "`metrics/eval.json` was not found" in text
    entries, text = eval_results({"candidates": {"other": {}}}, "metrics/eval.json", "dpo", "repo")
    assert entries == [] and "has no candidate `dpo`" in text


def test_eval_results_give_model_index_entries_and_a_ci_table():
    metrics = {
        "candidates": {"dpo": {"set-a": {"score": 61.5, "ci_low": 55.0, "ci_high": 68.25, "wins": 2}}},
        "baseline": "base",
        "judge": {"model": "judge-m"},
    }
    entries, text = eval_results(metrics, "metrics/eval.json", "dpo", "my-adapter")
    assert [(e.metric_type, e.metric_value, e.metric_name) for e in entries] == [
        ("win_rate", 61.5, "win rate vs base")
    ]  # no style-controlled score: no entry for it
    assert "`my-adapter` against `base`, judged pairwise by `judge-m`" in text
    assert "| set-a | 61.5 | [55, 68.25] | n/a | 2/n/a/n/a | n/a |" in text


def test_dataset_card_parses_back_with_configs_licence_and_sections():
    tally = LicenseTally()
    tally.add_rows([{"license": "apache-2.0"}, {"license": "cc0-1.0", "source": "seed"}], "train.jsonl")
    facts = CardFacts(
        tally=tally,
        license=card_license(tally.licenses),
        overridden=[],
        models=[],
        commit="abc",
        lock_entry=None,
    )
    card = {
        "pretty_name": "Test set",
        "summary": "A summary.",
        "source_datasets": ["original"],
        "task_categories": ["text-generation"],
        "tags": ["t"],
        "extra": ["## Extra\n\nmore"],
    }
    configs = {"default": [{"split": "train", "path": "data/train-00000-of-00001.parquet"}]}
    text = dataset_card(card, facts, {"default/train": 2}, configs)
    parsed = DatasetCard(text)
    assert parsed.data.license == "other" and parsed.data.license_name == "apache-2-0-and-cc0-1-0"
    assert parsed.data.size_categories == "n<1K"
    assert parsed.data.configs == [{"config_name": "default", "data_files": configs["default"]}]
    headings = [line for line in parsed.text.splitlines() if line.startswith("#")]
    assert headings == [
        "# Test set",
        "## Configs and splits",
        "## Licence",
        "## Models that generated and judged the data",
        "## Extra",
        "## Provenance",
    ]
    assert "| `cc0-1.0` | 1 | train.jsonl (1); row sources: seed (1) |" in parsed.text
