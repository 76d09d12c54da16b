"""params.yaml under real DVC, in a git copy of the project (no model runs: the `params` stage, the
first of every run, is the target or the stage that stops it):
- `dvc exp run -S`, `dvc exp apply` and commits: the next `dvc exp run -S other.key=...` keeps every
  applied value (DVC composes nothing at run time any more);
- a bad value, an unknown key or `-S preset=...` stops the run at the `params` stage, before DVC
  deletes any stage's outputs;
- two `dvc exp run` at once in one workspace: the one refused changes neither params.yaml nor dvc.lock.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import copy_repo, git_commit

REPO = Path(__file__).resolve().parents[1]
GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A clone-like copy of the repository's files (tracked and new), committed."""
    dest = copy_repo(tmp_path / "repo")
    # No dvc.lock: the copy has none of the outputs it records (and no cache), which `dvc exp` would try to
    # check out; without it every stage is due, as after a change of its params.
    (dest / "dvc.lock").unlink()
    git_commit(dest, "init")
    return dest


def env_for(project: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return os.environ | {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "DVC_SITE_CACHE_DIR": str(project.parent / "dvc-site"),
        "DVC_NO_ANALYTICS": "1",
        "PYTHONPATH": str(REPO),  # the stages' `jalign` runs this checkout's code
    }


def dvc(project: Path, *args: str, ok: bool = True) -> str:
    proc = subprocess.run(["dvc", *args], cwd=project, env=env_for(project), capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert (proc.returncode == 0) == ok, out[-3000:]
    return out


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '([\w@.-]+)'", output)


def params_of(project: Path) -> dict:
    return yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))


def lock_of(project: Path) -> dict:
    return yaml.safe_load((project / "dvc.lock").read_text(encoding="utf-8"))["stages"]


def only_stages(project: Path, *names: str, **extra: dict) -> None:
    """Cut dvc.yaml to these stages (plus `extra` ones), committed: `dvc exp apply` then checks out no
    output the copy lacks."""
    pipeline = yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8"))
    pipeline["stages"] = {name: pipeline["stages"][name] for name in names} | extra
    (project / "dvc.yaml").write_text(yaml.safe_dump(pipeline, allow_unicode=True, sort_keys=False))
    git_commit(project, "stages " + " ".join([*names, *extra]))


def test_an_applied_or_committed_experiment_is_never_reverted_by_the_next_run(project: Path):
    """The issue's sequence: beta applied, then another key set; beta stays (it was silently reverted
    to conf/'s value while DVC recomposed params.yaml from conf/ on every run)."""
    only_stages(project, "params")
    out = dvc(project, "exp", "run", "--temp", "-S", "dpo.beta=0.3", "params")
    assert ran_stages(out) == ["params"]
    assert params_of(project)["dpo"]["beta"] == 0.1  # --temp: the workspace is untouched
    name = re.search(r"Ran experiment\(s\): ([\w-]+)", out).group(1)
    dvc(project, "exp", "apply", name)
    assert params_of(project)["dpo"]["beta"] == 0.3

    out = dvc(project, "exp", "run", "-S", "score.invalid=tie", "params")
    params = params_of(project)
    assert params["dpo"]["beta"] == 0.3 and params["score"]["invalid"] == "tie"
    # what the stage ran with: the check lists both keys against the preset, with both values
    assert "dpo.beta: params.yaml 0.3, preset cpu 0.1" in out.splitlines()
    assert 'score.invalid: params.yaml "tie", preset cpu "loss"' in out.splitlines()
    lock = lock_of(project)["params"]["deps"]
    assert next(d for d in lock if d["path"] == "params.yaml")["md5"] == md5(project / "params.yaml")

    git_commit(project, "applied")  # a commit of the applied state: the same
    dvc(project, "exp", "run", "-S", "decide.tie_margin=0.05", "params")
    params = params_of(project)
    assert (params["dpo"]["beta"], params["score"]["invalid"], params["decide"]["tie_margin"]) == (
        0.3,
        "tie",
        0.05,
    )


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def trained_dpo(project: Path) -> dict[Path, bytes]:
    """dpo's outputs as after a run (made-up content; dvc.lock and the DVC cache record them, as `dvc
    repro` would), with stand-ins for its inputs. Returns every output file and its bytes."""
    files = {
        "data/preferences/sets/pairwise_train.jsonl": b"{}\n",
        "models/base/gemma-3-270m/model.gguf": b"base",
        "models/sft/adapter/adapter_model.safetensors": b"sft",
        "models/dpo/adapter/adapter_model.safetensors": b"weights",
        "models/dpo/adapter/adapter_config.json": b"{}",
        "dvclive/dpo/metrics.json": b"{}",
        "metrics/dpo.meta.json": b"{}",
    }
    for name, content in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_bytes(content)
    dvc(project, "commit", "--force", "dpo")
    git_commit(project, "dpo trained")
    assert "dpo" not in dvc(project, "status", "dpo")  # up to date: a change of dpo.* would rerun it
    outputs = [p for d in ("models/dpo", "dvclive/dpo") for p in (project / d).rglob("*") if p.is_file()]
    outputs += [project / "metrics/dpo.json", project / "metrics/dpo.meta.json"]  # git-tracked (cache: false)
    return {path: path.read_bytes() for path in outputs}


@pytest.mark.parametrize(
    ("how", "message"),
    [
        (
            ["exp", "run", "-S", "dpo.beta=0.3", "-S", "score.invalid=maybe"],
            "score.invalid: 'maybe' is not one of",
        ),
        (["exp", "run", "-S", "+dpo.betta=0.3"], "dpo.betta: unknown key (allowed: "),
        (["exp", "run", "-S", "preset=karasu"], "run `jalign params use karasu`"),
        (["repro", "score"], "dpo.betta: unknown key (allowed: "),  # a typo made by hand in params.yaml
    ],
)
def test_a_bad_param_stops_the_run_before_any_output_is_deleted(project: Path, how, message):
    """The `params` stage runs first and fails: dpo (whose beta changed in the first case) never starts,
    so DVC deletes none of its outputs."""
    outputs = trained_dpo(project)
    if how[0] == "repro":
        text = (project / "params.yaml").read_text(encoding="utf-8")
        (project / "params.yaml").write_text(text.replace("\n  beta: 0.1\n", "\n  beta: 0.1\n  betta: 0.3\n"))
    out = dvc(project, *how, ok=False)
    assert ran_stages(out) == ["params"], out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], out[-3000:]
    for path, content in outputs.items():
        assert path.read_bytes() == content, path


def test_a_key_params_yaml_lacks_is_refused_by_dvc_before_anything(project: Path):
    outputs = trained_dpo(project)
    before = (project / "params.yaml").read_bytes()
    out = dvc(project, "exp", "run", "-S", "dpo.betta=0.3", ok=False)
    assert ran_stages(out) == [] and "Could not override 'dpo.betta'" in out, out[-3000:]
    assert (project / "params.yaml").read_bytes() == before
    assert all(path.read_bytes() == content for path, content in outputs.items())


def test_a_second_dvc_exp_run_at_once_changes_nothing(project: Path):
    """Run A sets dpo.beta and is inside a long stage when run B sets score.invalid. DVC releases its
    lock while a stage runs: B writes params.yaml before DVC refuses it (an output A holds). A's next
    jalign process restores A's params.yaml: the workspace and dvc.lock hold A's values only."""
    pipeline = yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8"))
    pipeline["stages"]["slow"] = {  # a stage that takes a while, as training does
        "cmd": "sleep 8 && jalign params check --stamp data/slow.ok",
        "deps": ["data/params.ok"],
        "params": ["dpo.beta", "score.invalid"],
        "outs": [{"data/slow.ok": {"cache": False}}],
    }
    (project / "dvc.yaml").write_text(yaml.safe_dump(pipeline, allow_unicode=True, sort_keys=False))
    git_commit(project, "a slow stage")
    before = params_of(project)
    log = project.parent / "a.log"
    with log.open("w") as sink:
        run_a = subprocess.Popen(["dvc", "exp", "run", "-S", "dpo.beta=0.3", "slow"], cwd=project,
                                 env=env_for(project), stdout=sink, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 120
        while "Running stage 'slow'" not in log.read_text() and time.monotonic() < deadline:
            assert run_a.poll() is None, log.read_text()
            time.sleep(0.2)
        out_b = dvc(project, "exp", "run", "-S", "score.invalid=tie", "slow", ok=False)
        run_a.wait(timeout=180)
    out_a = log.read_text()
    assert "slow" not in ran_stages(out_b), out_b

    params = params_of(project)
    assert params["dpo"]["beta"] == 0.3, out_a
    assert params["score"]["invalid"] == before["score"]["invalid"] != "tie"
    lock = lock_of(project)
    assert lock["slow"]["params"]["params.yaml"] == {
        "dpo.beta": 0.3,
        "score.invalid": before["score"]["invalid"],
    }
    assert next(d for d in lock["params"]["deps"] if d["path"] == "params.yaml")["md5"] == md5(
        project / "params.yaml"
    )
    assert "invalid: tie" in (project / ".jalign/params.rejected.yaml").read_text(encoding="utf-8")
