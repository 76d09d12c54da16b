"""Presets that run as written: every Hub reference names a commit, every local file exists or is made by
a stage (the fetch stage's files included), and `jalign params check` fails otherwise."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from commands import main as cli
from commands.params import compose, presets
from jalign.pins import missing_files, problems, stage_outputs, unpinned_refs

REPO = Path(__file__).resolve().parents[1]
SHA = "a09a35458c702b33eeacc393d103063234e8bc28"
ELYZA_UNPINNED = (
    "unpinned Hub reference evaluate.sets[0].revision: elyza/ELYZA-tasks-100 at '1.0.0' "
    "(pin it: revision: <40-hex commit>)"
)


def test_unpinned_hub_models_and_datasets_are_named_by_key():
    params = {
        "train": {"model": "Qwen/Qwen2.5-7B-Instruct"},
        "sft": {"model": "Qwen/Qwen2.5-7B-Instruct@main"},  # a branch moves
        "llms": {"qwen": {"backend": "vllm", "model": "Qwen/Qwen2.5-7B-Instruct", "revision": SHA}},
        "judge": {"judge": {"backend": "openai", "model": "Qwen/Qwen2.5-7B-Instruct"}},  # a served name
        "respond": {
            "responders": [
                {
                    "llm": {
                        "backend": "transformers",
                        "model": "models/base/gemma-3-270m",
                        "adapter": "org/adapter",
                    }
                }
            ]
        },
        "evaluate": {
            "sets": [
                {"hf_dataset": "elyza/ELYZA-tasks-100", "revision": "main"},
                {"hf_dataset": "org/bench", "revision": SHA, "reference_hf_dataset": "org/refs"},
            ]
        },
        "classifier": {"encoders": {"e5": {"model": "pkg:multilingual-e5-small"}}},
        "fetch": {"files": [{"out": "data/eval/external/q.jsonl", "hub": "org/qs", "revision": "v1"}]},
    }
    assert unpinned_refs(params) == [
        "train.model: Qwen/Qwen2.5-7B-Instruct (pin it: Qwen/Qwen2.5-7B-Instruct@<40-hex commit>)",
        "sft.model: Qwen/Qwen2.5-7B-Instruct@main (pin it: Qwen/Qwen2.5-7B-Instruct@<40-hex commit>)",
        "respond.responders[0].llm.adapter: org/adapter (pin it: org/adapter@<40-hex commit>)",
        "evaluate.sets[0].revision: elyza/ELYZA-tasks-100 at 'main' (pin it: revision: <40-hex commit>)",
        "evaluate.sets[1].reference_revision: org/refs at None (pin it: reference_revision: <40-hex commit>)",
        "fetch.files[0].revision: org/qs at 'v1' (pin it: revision: <40-hex commit>)",
    ]
    assert unpinned_refs({"train": {"model": f"Qwen/Qwen2.5-7B-Instruct@{SHA}"}}) == []


def test_missing_files_count_what_a_stage_makes_as_present(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/here.jsonl").write_text("{}\n", encoding="utf-8")
    (tmp_path / "data/eval/external").mkdir(parents=True)
    (tmp_path / "data/eval/external/by-hand.jsonl").write_text("{}\n", encoding="utf-8")
    params = {
        "evaluate": {
            "sets": [
                {"path": "data/here.jsonl"},
                {"path": "data/eval/external/q.jsonl", "reference_path": "data/eval/external/by-hand.jsonl"},
                {"path": "data/typo.jsonl", "reference_path": "data/refs.jsonl"},
            ],
            "candidates": [{"llm": {"model": "models/base/m", "adapter": "models/dpo/adapter"}}],
        },
        "train": {
            "model": "./local-model",
            "other": {"model": "Qwen/Qwen2.5-7B-Instruct"},
        },  # Hub: not a file
        "fetch": {"files": [{"out": "data/eval/external/q.jsonl"}]},
    }
    produced = ["models/base", "models/dpo", "data/eval/external"]  # the fetch stage's folder: not enough
    assert missing_files(params, tmp_path, produced) == [
        "evaluate.sets[1].reference_path: data/eval/external/by-hand.jsonl is not fetched (add it to fetch.files)",
        "evaluate.sets[2].path: data/typo.jsonl does not exist and no stage makes it",
        "evaluate.sets[2].reference_path: data/refs.jsonl does not exist and no stage makes it",
        "train.model: ./local-model does not exist and no stage makes it",
    ]


def test_stage_outputs_are_read_from_dvc_yaml():
    outs = stage_outputs(REPO)
    assert {"data/eval/external", "models/base", "models/dpo", "models/classifier"} <= set(outs)


@pytest.mark.parametrize("preset", presets(REPO))
def test_every_preset_runs_as_written(preset):
    assert problems(compose(REPO, preset), REPO) == []


def test_a_preset_naming_an_unfetched_file_is_reported():
    params = compose(REPO, "karasu", ("fetch.files=[]",))
    assert problems(params, REPO) == [
        "missing file evaluate.sets[1].path: data/eval/external/arena-hard-ja/question.jsonl is not fetched "
        "(add it to fetch.files)"
    ]


def test_params_check_fails_naming_each_problem(monkeypatch, tmp_path):
    """A preset reading ELYZA-tasks-100 from the Hub at its release tag, not a commit, is refused."""
    for name in ("conf", "data/eval", "data/seeds", "data/sources", "data/ifeval"):
        shutil.copytree(REPO / name, tmp_path / name)
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    atheus = tmp_path / "conf/preset/atheus.yaml"
    text = atheus.read_text(encoding="utf-8")
    local = "{name: elyza-tasks-100, format: elyza, path: data/eval/external/elyza-tasks-100/test.jsonl}"
    assert local in text
    hub = '{name: elyza-tasks-100, format: elyza, hf_dataset: elyza/ELYZA-tasks-100, split: test, revision: "1.0.0"}'
    atheus.write_text(text.replace(local, hub), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["params", "check", "--preset", "atheus"])
    assert result.exit_code == 1, result.output
    assert "1 problem(s) keep params from running as written" in result.output
    assert f"preset atheus: {ELYZA_UNPINNED}" in result.output
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(cli, ["params", "check", "--preset", "karasu"])
    assert result.exit_code == 0, result.output
