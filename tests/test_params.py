"""params.yaml is the one file a run reads; conf/ (Hydra) composes it from a preset (`jalign params use`),
which it records; every preset validates against the schema; `jalign params check` validates the whole
file (references, files) and names each key that differs from its preset; every stage checks the whole
file first; params.yaml and docs/params.md are never stale; light commands never import torch.
The same contract under real DVC (`dvc exp run`, `dvc exp apply`, two runs at once): test_params_dvc.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from commands import main as jalign
from commands.params import (
    STAMP_TEXT,
    compose,
    docs_markdown,
    presets,
    sweep_grid,
    sweep_plan,
    sweep_runs,
    validate,
    with_overrides,
)
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
        "# @package _global_\nhydra:\n  sweeper:\n    params:\n      dpo.beta: 0.1,0.2\n", encoding="utf-8"
    )
    stage = {"stages": {"s": {"cmd": "python -c pass", "params": ["dpo.beta"]}}}
    (root / "dvc.yaml").write_text(json.dumps(stage), encoding="utf-8")
    monkeypatch.chdir(root)

    def run(*args: str) -> str:
        return subprocess.run(args, cwd=root, check=True, capture_output=True, text=True, timeout=300).stdout

    run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    assert CliRunner().invoke(jalign, ["params", "compose", "--preset", "tiny"]).exit_code == 0
    run("git", "add", "-A")
    run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    result = CliRunner().invoke(jalign, ["sweep", "tiny", "--queue"])
    assert result.exit_code == 0, result.output
    queued = [
        line for line in run(sys.executable, "-m", "dvc", "queue", "status").splitlines() if "Queued" in line
    ]
    assert len(queued) == 2, queued


def test_committed_params_yaml_is_the_default_composition_of_conf(monkeypatch):
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(jalign, ["params", "check", "--strict"])
    assert result.exit_code == 0, result.output  # else: run `jalign params use cpu` after editing conf/
    assert read_params(REPO / "params.yaml")["preset"] == {"name": "cpu", "overrides": []}


# Issue 19 asked for "about 250 or fewer" (the file then had 440); 261 when this was written. Every key
# left out is documented with its `absent:` value in docs/params.md, and added back with `-S +key=...`.
MAX_LEAF_KEYS = 265


def leaf_keys(node: Any, key: str = "") -> list[str]:
    """Dotted keys of every scalar (or scalar list) in params.yaml; a list of records counts each field
    of each record, as a reader of the file has to."""
    if isinstance(node, dict):
        return [k for name, value in node.items() for k in leaf_keys(value, f"{key}.{name}" if key else name)]
    if isinstance(node, list) and node and all(isinstance(item, dict) for item in node):
        return [k for i, item in enumerate(node) for k in leaf_keys(item, f"{key}[{i}]")]
    return [key]


def test_params_yaml_stays_small_enough_to_read():
    keys = leaf_keys(read_params(REPO / "params.yaml"))
    assert len(keys) <= MAX_LEAF_KEYS, f"{len(keys)} leaf keys; leave out what equals its documented default"
    assert leaf_keys({"a": {"b": 1, "c": [1, 2]}, "d": [{"e": 1, "f": {"g": 2}}, {"e": 3}]}) == [
        "a.b", "a.c", "d[0].e", "d[0].f.g", "d[1].e",
    ]  # fmt: skip


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


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """A folder with the repository's conf/, data/ and dvc.yaml (linked) and its own params.yaml."""
    for name in ("conf", "data", "dvc.yaml"):
        (tmp_path / name).symlink_to(REPO / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(jalign, list(args))
    return result.exit_code, result.output.splitlines()


def edit_params(path: Path, edit) -> None:
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(params)
    path.write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")


def test_params_use_records_the_preset_and_its_overrides(workspace):
    code, lines = run_cli("params", "use", "karasu", "dpo.beta=0.05")
    assert code == 0 and lines == ["wrote params.yaml (preset karasu, 1 override)"], lines
    params = read_params(workspace / "params.yaml")
    assert params["preset"] == {"name": "karasu", "overrides": ["dpo.beta=0.05"]}
    assert params["dpo"]["beta"] == 0.05 and params["dpo"]["model"].startswith("Qwen/")
    assert {k: v for k, v in params.items() if k != "preset"} == compose(REPO, "karasu", ("dpo.beta=0.05",))
    text = (workspace / "params.yaml").read_text(encoding="utf-8")
    assert text.startswith("# Written by `jalign params use karasu dpo.beta=0.05` from conf/")
    # `compose` is the same with the config's default preset
    assert run_cli("params", "compose", "--out", "default.yaml")[0] == 0
    assert read_params(workspace / "default.yaml")["preset"] == {"name": "cpu", "overrides": []}


def test_check_names_every_key_that_differs_from_the_preset_with_both_values(workspace):
    assert run_cli("params", "use", "cpu")[0] == 0
    code, lines = run_cli("params", "check", "--strict")
    assert code == 0 and lines == ["params.yaml: valid and equal to `jalign params use cpu`"], lines

    def applied(params: dict) -> None:  # what `dvc exp apply` or a commit of an experiment leaves
        params["dpo"]["beta"] = 0.3
        params["decide"]["tie_margin"] = 0.05
        params["evaluate"]["candidates"][0]["system"] = "丁寧に答えてください。"

    edit_params(workspace / "params.yaml", applied)
    code, lines = run_cli("params", "check")
    assert code == 0, lines
    assert lines == [
        "params.yaml: valid; 3 keys differ from `jalign params use cpu`:",
        "decide.tie_margin: params.yaml 0.05, preset cpu 0.02",
        "dpo.beta: params.yaml 0.3, preset cpu 0.1",
        'evaluate.candidates[0].system: params.yaml "丁寧に答えてください。", preset cpu (absent)',
    ], lines  # in params.yaml's order
    code, strict = run_cli("params", "check", "--strict")
    assert code == 1 and strict[:-1] == lines
    assert strict[-1] == (
        "error: params.yaml differs from `jalign params use cpu` in 3 key(s) (listed above): "
        "edit conf/ and run `jalign params use`"
    )


def test_dvc_exp_run_set_preset_fails_in_one_line_naming_params_use(workspace):
    assert run_cli("params", "use", "cpu")[0] == 0
    # what `dvc exp run -S preset=karasu` does to params.yaml now that DVC composes nothing
    edit_params(workspace / "params.yaml", lambda p: p.update(preset="karasu"))
    code, lines = run_cli("params", "check")
    assert code == 1 and lines == [
        "error: preset: 'karasu': `dvc exp run -S preset=...` no longer switches presets; run "
        "`jalign params use karasu` (it rewrites params.yaml from conf/), then `dvc exp run`"
    ], lines


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda p: p["evaluate"]["sets"][0].update(path="data/eval/missing.jsonl"),
            "error: evaluate.sets[0].path: data/eval/missing.jsonl: file not found "
            "(and no dvc.yaml stage makes it)",
        ),
        (
            lambda p: p["hub"].update(classifiers=["e5-large"]),
            "error: hub.classifiers: 'e5-large' is not a classifier.encoders entry (defined: e5-small)",
        ),
        (lambda p: p["dpo"].update(betta=0.1), "error: dpo.betta: unknown key (allowed: "),
        (lambda p: p["report"].update(max_examples=-1), "error: report.max_examples: -1 is out of range"),
    ],
)
def test_check_refuses_a_missing_file_a_broken_reference_or_a_bad_value_in_one_line(workspace, edit, message):
    assert run_cli("params", "use", "cpu")[0] == 0
    edit_params(workspace / "params.yaml", edit)
    code, lines = run_cli("params", "check", "--stamp", "ok")
    assert code == 1 and len(lines) == 1 and lines[0].startswith(message), lines
    assert not (workspace / "ok").exists()


def test_a_file_a_dvc_stage_makes_need_not_exist_yet(workspace):
    assert run_cli("params", "use", "cpu")[0] == 0
    edit_params(
        workspace / "params.yaml", lambda p: p["evaluate"]["sets"][0].update(path="data/eval/plots/q.jsonl")
    )
    code, lines = run_cli("params", "check", "--stamp", "ok")
    assert code == 0, lines  # data/eval/plots is an output of the score stage
    assert (
        (workspace / "ok").read_text(encoding="utf-8").startswith("params.yaml passed `jalign params check`")
    )


def test_every_stage_checks_the_whole_params_file_before_it_starts(tmp_path):
    """A bad value in a section the stage does not read still stops it before any work."""
    bad = tmp_path / "params.yaml"
    bad.write_text((REPO / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    edit_params(bad, lambda p: p["dpo"].update(beta=-1))
    out = tmp_path / "sets"
    code, lines = run_cli(
        "preferences", "--pairs", str(REPO / "data/eval/ja_eval.jsonl"), "--out-dir", str(out),
        "--metrics", str(tmp_path / "m.json"), "--params", str(bad),
    )  # fmt: skip
    assert code == 1 and lines == ["error: dpo.beta: -1.0 is out of range (allowed: > 0)"], lines
    assert not out.exists() and not (tmp_path / "m.json").exists()


def test_the_whole_file_check_imports_no_torch():
    """Every stage runs this check first: it must not pay for torch or transformers (their import is what
    makes it slow; its time is in benchmarks/RESULTS.md, `Checking params.yaml`)."""
    code = (
        "import sys\nfrom commands.params import check_file\n"
        f"check_file({str(REPO / 'params.yaml')!r})\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_trainer_choices_read_from_the_source_are_transformers_own():
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    from jalign.training import transformers_choices

    assert transformers_choices("training_args", "OptimizerNames") == tuple(
        sorted(o.value for o in OptimizerNames)
    )
    assert transformers_choices("trainer_utils", "SchedulerType") == tuple(
        sorted(s.value for s in SchedulerType)
    )


GUARD = (
    "import sys\nfrom jalign.params_guard import guard\n"
    "try:\n    guard('params.yaml')\nexcept Exception as exc:\n    print(exc)\n    sys.exit(1)\n"
)


def guard_in(folder: Path, *, via_another_process: bool = False) -> subprocess.CompletedProcess:
    """The guard as a stage command runs it (DVC_STAGE set): its parent, this test process, plays the
    DVC run; `via_another_process` puts one more process between them, which plays a second run."""
    command = [sys.executable, "-c", GUARD]
    if via_another_process:
        command = [
            sys.executable,
            "-c",
            f"import subprocess, sys\nsys.exit(subprocess.run({command!r}).returncode)",
        ]
    env = os.environ | {"DVC_STAGE": "stage", "PYTHONPATH": str(REPO)}
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=60)


def test_a_run_keeps_the_params_it_started_with_and_a_second_run_is_refused(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("dpo:\n  beta: 0.3\n", encoding="utf-8")
    assert guard_in(tmp_path).returncode == 0  # the run's first stage records params.yaml
    # a second `dvc exp run -S` writes its value while the first run's stage is going
    params.write_text("dpo:\n  beta: 0.3\nevaluate:\n  invalid: tie\n", encoding="utf-8")
    later = guard_in(tmp_path)  # the first run's next stage (or the end of this one)
    assert later.returncode == 0 and "restored the values this run started with" in later.stderr
    assert params.read_text(encoding="utf-8") == "dpo:\n  beta: 0.3\n"
    assert "invalid: tie" in (tmp_path / ".jalign/params.rejected.yaml").read_text(encoding="utf-8")
    # a stage of another run, while the first is alive: refused, and the first run's file kept
    params.write_text("dpo:\n  beta: 0.5\n", encoding="utf-8")
    other = guard_in(tmp_path, via_another_process=True)
    assert other.returncode == 1 and other.stdout.strip() == (
        f"params.yaml: another DVC run (pid {os.getpid()}) is using this workspace; its params.yaml is "
        "kept. Run one `dvc exp run` at a time here, or queue them: `dvc exp run --queue`"
    )
    assert params.read_text(encoding="utf-8") == "dpo:\n  beta: 0.3\n"


def test_a_finished_run_leaves_no_claim_and_outside_dvc_nothing_is_recorded(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("dpo:\n  beta: 0.3\n", encoding="utf-8")
    subprocess.run(
        [sys.executable, "-c", GUARD], cwd=tmp_path, check=True, env=os.environ | {"PYTHONPATH": str(REPO)}
    )
    assert not (tmp_path / ".jalign").exists()  # no DVC_STAGE: not a DVC run
    record = tmp_path / ".jalign/params-owner.json"
    record.parent.mkdir()
    record.write_text(json.dumps({"owner": [2**22 + 1, 0.0], "sha256": "0", "text": "old: 1\n"}))
    params.write_text("dpo:\n  beta: 0.5\n", encoding="utf-8")
    assert guard_in(tmp_path).returncode == 0  # the recorded run is gone: this one claims the file
    assert params.read_text(encoding="utf-8") == "dpo:\n  beta: 0.5\n"
    assert json.loads(record.read_text())["owner"][0] == os.getpid()


def test_params_use_waits_for_a_running_dvc_run(workspace):
    import psutil

    record = workspace / ".jalign/params-owner.json"
    record.parent.mkdir()
    me = psutil.Process()
    record.write_text(json.dumps({"owner": [me.pid, me.create_time()], "sha256": "0", "text": ""}))
    code, lines = run_cli("params", "use", "karasu")
    assert code == 1 and lines == [
        f"error: params.yaml: a DVC run (pid {me.pid}) is using it; wait for it to finish"
    ]
    assert not (workspace / "params.yaml").exists()


def test_sweep_queues_the_preset_s_params_with_its_grid_and_no_preset_override():
    text, args, runs = sweep_plan(REPO, "sweep-001")
    assert runs == 30 and args[:3] == ["exp", "run", "--queue"]
    assert not any(a.startswith("preset=") for a in args)
    grid = dict(a.split("=", 1) for a in args[4::2])
    assert set(grid) == {"dpo.loss", "dpo.beta"}
    params = yaml.safe_load(text)
    assert params["preset"] == {"name": "sweep-001", "overrides": []}
    assert params["dpo"]["model"] == compose(REPO, "sweep-001")["dpo"]["model"]


def test_dvc_yaml_runs_the_params_check_before_every_stage():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    assert list(stages)[:2] == ["summary", "params"]  # summary first on purpose: see its comment
    check = stages["params"]
    assert check["cmd"] == "jalign params check --stamp data/params.ok"
    assert "params.yaml" in check["deps"] and "conf" in check["deps"] and "params" not in check
    for name, stage in stages.items():
        body = stage.get("do", stage)
        if body.get("params"):
            assert "data/params.ok" in body["deps"], name
    assert (REPO / "data/params.ok").read_text(encoding="utf-8") == STAMP_TEXT
