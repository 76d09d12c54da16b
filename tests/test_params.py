"""One source of configuration: conf/ (Hydra) composes params.yaml; every preset validates against the
schema; params.yaml and docs/params.md are never stale; light commands never import torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from commands.params import compose, docs_markdown, presets, sweep_grid, sweep_runs, validate, with_overrides
from jalign.config import ConfigError, read_params

REPO = Path(__file__).resolve().parents[1]


def test_the_presets_the_issue_asks_for_exist():
    assert {"cpu", "karasu", "atheus", "sweep-001"} <= set(presets(REPO))


@pytest.mark.parametrize("preset", presets(REPO))
def test_every_preset_composes_and_validates_against_the_schema(preset):
    params = compose(REPO, preset)
    validate(params, f"preset {preset}")


def test_presets_switch_what_they_say():
    karasu = compose(REPO, "karasu")
    assert karasu["dpo"]["model"].startswith("Qwen/Qwen2.5-7B-Instruct@")
    assert karasu["dpo"]["learning_rate"] == 5e-6 and karasu["dpo"]["optim"] == "paged_adamw_8bit"
    assert (
        karasu["dpo"]["gradient_accumulation_steps"] == 4
        and karasu["dpo"]["per_device_train_batch_size"] == 4
    )
    assert karasu["judge"]["judge"]["llm"] == "gpt-4o-mini" and karasu["judge"]["method"] == "text"
    assert karasu["llms"][karasu["translate"]["translator"]["llm"]]["backend"] == "vllm"
    assert [r["llm"]["llm"] for r in karasu["respond"]["responders"]][1] == "gpt-4o-mini"
    atheus = compose(REPO, "atheus")
    assert atheus["llms"][atheus["self_instruct"]["generator"]["llm"]]["model"] == (
        "mistralai/Mistral-Small-24B-Instruct-2501@9527884be6e5616bdd54de542f9ae13384489724"
    )
    assert atheus["evaluate"]["sets"][0]["format"] == "elyza"
    cpu = compose(REPO, "cpu")
    assert cpu["dpo"]["model"] == "models/base/gemma-3-270m" and cpu["judge"]["method"] == "logprob"


def test_sweep_001_declares_the_article_grid():
    grid = sweep_grid(REPO, "sweep-001")
    assert set(grid["dpo.loss"].split(",")) == {"sigmoid", "ipo", "kto"}
    assert {0.01, 0.6, 0.3} <= {float(b) for b in grid["dpo.beta"].split(",")}  # each method's best
    with pytest.raises(ConfigError, match="declares no sweep"):
        sweep_grid(REPO, "karasu")


def test_a_sweep_grid_expands_to_every_combination_and_each_run_validates():
    runs = sweep_runs(sweep_grid(REPO, "sweep-001"))
    assert len(runs) == 30 and len(set(runs)) == 30
    assert runs[0] == ("dpo.loss=sigmoid", "dpo.beta=0.01") and runs[-1] == (
        "dpo.loss=kto",
        "dpo.beta=0.9",
    )
    run = with_overrides(compose(REPO, "sweep-001"), runs[-1])
    assert run["dpo"]["loss"] == "kto" and run["dpo"]["beta"] == 0.9
    validate(run)
    with pytest.raises(ConfigError, match=r"dpo\.beta: -1\.0 is out of range"):
        validate(with_overrides(run, ("dpo.beta=-1",)))


def conf_copy(root: Path) -> None:
    """conf/ of the repository under `root` (its files linked), as a project's own."""
    (root / "conf").mkdir(parents=True)
    for item in (REPO / "conf").iterdir():
        (root / "conf" / item.name).symlink_to(item)


def test_sweep_shows_every_run_and_queues_nothing_by_default(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from commands import main as jalign

    conf_copy(tmp_path)  # no DVC project here: queueing anything would fail
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(jalign, ["sweep", "sweep-001"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "sweep-001: 30 runs of preset sweep-001 (dpo.loss x dpo.beta)"
    assert (
        lines[1] == "   1  dpo.loss=sigmoid dpo.beta=0.01" and lines[30] == "  30  dpo.loss=kto dpo.beta=0.9"
    )
    assert lines[31] == (
        "30 runs, nothing queued: `jalign sweep sweep-001 --queue` queues them, `--run` queues and starts them"
    )
    assert len(lines) == 32


@pytest.mark.slow
def test_sweep_queue_queues_every_run_as_a_dvc_experiment(tmp_path, monkeypatch):
    """A real DVC project whose preset declares a 2-run grid: --queue leaves 2 queued experiments."""
    from click.testing import CliRunner

    from commands import main as jalign

    root = tmp_path / "project"
    shutil.copytree(REPO / "conf", root / "conf")
    (root / "conf/preset/tiny.yaml").write_text(
        "# @package _global_\nhydra:\n  sweeper:\n    params:\n      train.beta: 0.1,0.2\n", encoding="utf-8"
    )
    stage = {"stages": {"s": {"cmd": "python -c pass", "params": ["train.beta"]}}}
    (root / "dvc.yaml").write_text(json.dumps(stage), encoding="utf-8")
    monkeypatch.chdir(root)

    def run(*args: str) -> str:
        return subprocess.run(args, cwd=root, check=True, capture_output=True, text=True, timeout=300).stdout

    run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    run(sys.executable, "-m", "dvc", "config", "hydra.enabled", "true")
    assert CliRunner().invoke(jalign, ["params", "compose", "--preset", "tiny"]).exit_code == 0
    run("git", "add", "-A")
    run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    result = CliRunner().invoke(jalign, ["sweep", "tiny", "--queue"])
    assert result.exit_code == 0, result.output
    queued = [
        line for line in run(sys.executable, "-m", "dvc", "queue", "status").splitlines() if "Queued" in line
    ]
    assert len(queued) == 2, queued


def test_committed_params_yaml_is_the_default_composition_of_conf():
    assert read_params(REPO / "params.yaml") == compose(REPO), (
        "run `jalign params compose` after editing conf/"
    )


def test_docs_params_md_is_current():
    assert (REPO / "docs/params.md").read_text(encoding="utf-8") == docs_markdown(), (
        "run `jalign params docs`"
    )


def test_every_documented_field_has_help():
    lines = [line for line in docs_markdown().splitlines() if line.startswith("| `")]
    assert lines and all(not line.rstrip().endswith("|  |") for line in lines), [
        line for line in lines if line.rstrip().endswith("|  |")
    ]


def test_an_override_is_validated_like_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"dpo.beta: -0.1 is out of range"):
        validate(compose(REPO, None, ("dpo.beta=-0.1",)))


@pytest.mark.parametrize(
    "code",
    [
        "from commands import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
        "from commands import main\ntry:\n    main(['dedup', '--threshold', '0.7', 'in.jsonl', 'out.jsonl'])\nexcept SystemExit:\n    pass",
        "from commands import main\ntry:\n    main(['verdicts', '--kind', 'pair', 'v.jsonl'])\nexcept SystemExit:\n    pass",
    ],
)
def test_light_commands_never_import_torch(tmp_path, code):
    (tmp_path / "in.jsonl").write_text('{"instruction": "日本の首都はどこですか。"}\n', encoding="utf-8")
    (tmp_path / "v.jsonl").write_text(json.dumps({"judgment": "最終判定: [[A]]"}) + "\n", encoding="utf-8")
    probe = code + "\nimport sys\nprint('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.strip().splitlines()[-1] == "NO-TORCH", out.stdout + out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["params", "compose", "--preset", "karasuu", "--out", "p.yaml"],
            "preset 'karasuu' is not in conf/preset/ (known: atheus, cpu, karasu, sweep-001)",
        ),
        (["params", "check", "--preset", "karasuu"], "preset 'karasuu' is not in conf/preset/"),
        (
            ["params", "compose", "--out", "p.yaml", "dpo.betta=0.1"],
            "Could not override 'dpo.betta'.; To append to your config use +dpo.betta=0.1",
        ),
        (["params", "compose", "--out", "p.yaml", "dpo.beta=[0.1,"], "dpo.beta=[0.1,"),
    ],
)
def test_a_preset_or_override_typo_is_one_line_naming_it(tmp_path, monkeypatch, args, message):
    from click.testing import CliRunner

    from commands import main as jalign

    root = tmp_path / "repo"
    (root / "conf").mkdir(parents=True)
    for item in (REPO / "conf").iterdir():
        (root / "conf" / item.name).symlink_to(item)
    monkeypatch.chdir(root)
    result = CliRunner().invoke(jalign, args)
    output = result.output  # click >= 8.2: stdout and stderr interleaved
    assert result.exit_code == 1 and message in output, output
    assert "Traceback" not in output and output.strip().count("\n") == 0, output
    assert not (root / "p.yaml").exists()
