"""End-to-end: `dvc repro` of the whole data pipeline on shrunken params, every LLM role pointed at a
local OpenAI-compatible server (the params switch a production run would make), then the DVC
contract: a second repro does nothing, a downstream param change reruns only that stage and pays for
no answered request again, a run killed mid-stage resumes without paying twice, and the API key
never lands in any file."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import fake_openai  # tests/ is on sys.path (conftest.py)
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SECRET = f"sk-test-{uuid.uuid4().hex}"  # made at run time: no file of the repo holds it

pytestmark = pytest.mark.slow

# Distinct Japanese tasks the fake "generator" hands out (by prompt hash): collisions become
# near-duplicates, which the pipeline must catch.
TASKS = [
    "日本の四季のうち、一番好きな季節とその理由を書いてください。",
    "次の文を小学生にも分かる言葉に言い換えてください。",
    "味噌汁をおいしく作るこつを三つ教えてください。",
    "通勤電車で読書を続けるための工夫を提案してください。",
    "二次方程式の解の公式を使う手順を説明してください。",
    "地震に備えて家庭で用意すべきものを挙げてください。",
    "敬語の誤りを含む文を正しく直してください。",
    "初めての一人暮らしで気をつけることを助言してください。",
    "俳句と川柳の違いを簡単に説明してください。",
    "会議の議事録を三行で要約する方法を示してください。",
    "日本の伝統工芸を一つ選び、その魅力を紹介してください。",
    "睡眠の質を上げる生活習慣を説明してください。",
]


def last_user(body: dict) -> str:
    return fake_openai.prompt_text(body)


def digest(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16)


def responder(body: dict) -> str:
    """Answers shaped like what each stage's prompt asks for."""
    text = last_user(body)
    if "観点:" in text and "タスク" in text:  # self_instruct
        task = TASKS[digest(text) % len(TASKS)]
        return f"指示: {task}\n入力: なし\n出力: {task[:6]}については、次の点が大切です。まず基本を押さえることです。"
    if "#書き換えた指示#" in text:  # evolve: mutation
        original = text.rsplit("#元の指示#:\n", 1)[1].split("\n#書き換えた指示#")[0]
        return f"{original.rstrip('。')}。その際、具体例を二つ挙げてください。"
    if text.rstrip().endswith("改善訳:"):  # translate: review
        draft = text.rsplit("下訳: ", 1)[1].split("\n")[0]
        return draft.rstrip("。") + "。"
    if text.rstrip().endswith("日本語:"):  # translate: first pass
        english = text.rsplit("英語: ", 1)[1].split("\n")[0]
        return f"次の依頼に答えてください(原文{digest(english) % 1000}番)。"
    if "### 回答" in text:  # evolve / respond: answers; the two responders differ by system message
        system = " ".join(m["content"] for m in body.get("messages", []) if m["role"] == "system")
        base = "ご質問にお答えします。要点は三つあります。"
        return base + ("詳しく順に説明します。" * 3 if "親しみ" in system else "")
    return "了解しました。"


def top_logprobs(body: dict) -> dict[str, float]:
    text = last_user(body)
    if text.endswith("答え: ["):  # evolve: information gain
        return {"はい": -0.1, "いいえ": -2.5}
    if text.endswith("評価: [") or text.endswith("難易度: ["):  # curate: ordinal tags
        return {"4": -0.2, "3": -1.8, "2": -3.0}
    if text.endswith("分類: ["):
        return {"A": -0.3, "D": -1.5}
    if text.endswith("最終判定: [["):  # judge: prefers the longer answer, whichever position it is in
        a = re.findall(r"⟪回答A:開始:\w+⟫\n(.*?)\n⟪回答A:終了:\w+⟫", text, re.S)[-1]
        b = re.findall(r"⟪回答B:開始:\w+⟫\n(.*?)\n⟪回答B:終了:\w+⟫", text, re.S)[-1]
        return {"A": -0.1, "B": -3.0} if len(a) > len(b) else {"B": -0.1, "A": -3.0}
    return {"A": -0.7, "B": -0.7}


def roles(params: dict) -> list[dict]:
    """Every LLMConfig in params.yaml."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "model" in node and "sampling" in node:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(params)
    return found


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh clone-like copy of the repo with shrunken params and openai roles."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    dest = tmp_path / "repo"
    for name in files:
        if (REPO / name).is_file() and not name.startswith(
            ("data/instructions", "data/preferences", "metrics/")
        ):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    (dest / "dvc.lock").unlink(missing_ok=True)
    params = yaml.safe_load((dest / "params.yaml").read_text(encoding="utf-8"))
    params["models"]["packaged"] = []
    params["self_instruct"].update(rounds=2, prompts_per_round=4)
    params["translate"]["sources"][0]["limit"] = 10
    params["preferences"]["eval_size"] = 2
    for role in roles(params):
        role.update(
            backend="openai",
            model="fake-model",
            base_url="http://127.0.0.1:9/v1",
            prompt_format="chat",
            max_concurrency=4,
            retry_base_delay_s=0.01,
        )
    (dest / "params.yaml").write_text(
        yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"],
    ):
        subprocess.run(cmd, cwd=dest, check=True)  # fmt: skip
    return dest


def point_at(project: Path, url: str) -> None:
    text = (project / "params.yaml").read_text(encoding="utf-8")
    (project / "params.yaml").write_text(re.sub(r"http://127\.0\.0\.1:\d+/v1", url, text), encoding="utf-8")


def env_for(tmp: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return os.environ | {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "OPENAI_API_KEY": SECRET,
        "JALIGN_LLM_CACHE": str(tmp / "llm-cache.sqlite"),
        "DVC_SITE_CACHE_DIR": str(tmp / "dvc-site"),
        "DVC_NO_ANALYTICS": "1",
    }


def dvc(project: Path, *args: str) -> str:
    proc = subprocess.run(["dvc", *args], cwd=project, env=env_for(project.parent), capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_repro_cache_and_param_change(project: Path):
    with fake_openai.FakeOpenAIServer(responder=responder, top_logprobs=top_logprobs) as server:
        point_at(project, server.url)
        out = dvc(project, "repro", "preferences")
        assert ran_stages(out) == ["models", "self_instruct", "evolve", "curate", "translate", "respond", "judge",
                                   "preferences"]  # fmt: skip
        paid = server.count
        assert paid > 0

        curated = read_jsonl(project / "data/instructions/curated.jsonl")
        assert curated, "the instruction half produced nothing"
        assert len({r["id"] for r in curated}) == len(curated)
        evolved = [r for r in curated if r["source"] == "evol_instruct"]
        assert evolved and all(r["lineage"]["parent_id"] and r["lineage"]["operation"] for r in evolved)
        assert all({"quality", "difficulty", "category"} <= set(r["tags"]) for r in curated)
        metrics = json.loads((project / "metrics/instructions.json").read_text())
        assert metrics["funnel"]["self_instruct_generated"] == 8
        assert (
            metrics["dropped"]["near_duplicate"]
            + metrics["funnel"]["self_instruct_dropped"].get("near_duplicate", 0)
            > 0
        )  # 12 tasks for 8 prompts: the hash collides
        judge = json.loads((project / "metrics/judge.json").read_text())
        assert judge["kept_pairs"] > 0 and judge["agreement_rate"] == 1.0  # the fake judge is consistent
        assert judge["length_bias"] == 1.0  # ... and always prefers the longer answer
        prefs = json.loads((project / "metrics/preferences.json").read_text())
        train = read_jsonl(project / "data/preferences/sets/pairwise_train.jsonl")
        held = read_jsonl(project / "data/preferences/sets/pairwise_eval.jsonl")
        assert prefs["rows"]["pairwise_train"] == len(train) > 0 and held
        assert not {r["prompt"][0]["content"] for r in train} & {r["prompt"][0]["content"] for r in held}

        # Nothing changed: nothing runs, nothing is sent.
        assert ran_stages(dvc(project, "repro", "preferences")) == []
        assert server.count == paid

        # A curate param change reruns curate (and what depends on its output) from the cache alone.
        params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
        params["curate"]["dedup_threshold"] = 0.69
        (project / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False))
        assert ran_stages(dvc(project, "repro", "curate")) == ["curate"]
        assert server.count == paid

        # The key went over HTTP as a header, and nowhere else.
        assert all(r.headers.get("authorization") == f"Bearer {SECRET}" for r in server.calls())
        for path in [*project.rglob("*"), project.parent / "llm-cache.sqlite"]:
            if path.is_file() and ".git" not in path.parts:
                assert SECRET.encode() not in path.read_bytes(), path


def test_killed_run_resumes_without_paying_twice(project: Path):
    with fake_openai.FakeOpenAIServer(responder=responder, top_logprobs=top_logprobs, delay_s=0.05) as server:
        point_at(project, server.url)
        dvc(project, "repro", "curate")
        before = server.count
        proc = subprocess.Popen(["dvc", "repro", "translate"], cwd=project, env=env_for(project.parent),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 120
        while server.count < before + 6 and time.monotonic() < deadline:  # mid-stage: some answers in
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not (project / "data/preferences/translated.jsonl").exists()  # no half output that looks done
        first_run = [r.raw for r in server.calls()[before:] if r.response is not None]
        dvc(project, "repro", "translate")
        second_run = [r.raw for r in server.calls()[before + len(first_run) :]]
        # Answers received before the kill were cached as they arrived: none is asked for again,
        # except requests still in flight at the kill (their answers never reached the client).
        in_flight = 4  # max_concurrency
        assert len(set(first_run) & set(second_run)) <= in_flight
        rows = read_jsonl(project / "data/preferences/translated.jsonl")
        assert len(rows) == len({r["id"] for r in rows}) == 10


def test_dpo_experiments_and_sweep(project: Path, tiny_lm64_dir: Path):
    """`dvc exp run -S train.beta=...`, `-S train.loss=...` and the article-001 sweep through the queue,
    on the tiny model; each run changes metrics/dpo.json and `dvc exp show` compares them."""
    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    params["sft"]["enabled"] = False
    params["train"].update(model=str(tiny_lm64_dir), dtype="float32", max_steps=2, learning_rate=1e-3,
                           per_device_train_batch_size=2, max_length=96, optim="adamw_torch")  # fmt: skip
    (project / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False))
    with fake_openai.FakeOpenAIServer(responder=responder, top_logprobs=top_logprobs) as server:
        point_at(project, server.url)
        dvc(project, "repro", "dpo")
        git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
        subprocess.run(["git", "add", "-A"], cwd=project, check=True)
        subprocess.run([*git, "commit", "-qm", "baseline"], cwd=project, check=True)
        baseline = json.loads((project / "metrics/dpo.json").read_text())
        assert baseline["loss_type"] == "sigmoid" and baseline["steps"] == 2
        plots = json.loads(dvc(project, "plots", "show", "--json"))["data"]
        assert {"DPO loss", "DPO reward margin", "DPO reward accuracy"} <= set(plots)

        dvc(project, "exp", "run", "-S", "train.beta=0.1", "dpo")
        changed = json.loads((project / "metrics/dpo.json").read_text())
        assert changed["beta"] == 0.1 and changed["eval_loss"] != baseline["eval_loss"]
        assert "eval_loss" in dvc(project, "metrics", "diff")
        for loss in ("ipo", "kto"):
            dvc(project, "exp", "run", "-S", f"train.loss={loss}", "dpo")
            assert json.loads((project / "metrics/dpo.json").read_text())["loss_type"] == loss

        dvc(
            project,
            "exp",
            "run",
            "--queue",
            "-S",
            "train.beta=0.01,0.1",
            "-S",
            "train.loss=sigmoid,ipo",
            "dpo",
        )
        dvc(project, "queue", "start", "-j", "1")
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            status = dvc(project, "queue", "status")
            if "Queued" not in status and "Running" not in status:
                break
            time.sleep(2)
        assert "Failed" not in status, status
        shown = json.loads(dvc(project, "exp", "show", "--json"))
        runs = [exp for commit in shown for exp in (commit.get("experiments") or [])]
        grid = set()
        for exp in runs:
            data = exp["revs"][0]["data"]
            train = data["params"]["params.yaml"]["data"]["train"]
            metrics = data["metrics"]["metrics/dpo.json"]["data"]
            grid.add((train["beta"], train["loss"], metrics["eval_loss"]))
        assert {(b, lt) for b, lt, _ in grid} >= {
            (0.01, "sigmoid"),
            (0.01, "ipo"),
            (0.1, "sigmoid"),
            (0.1, "ipo"),
        }
        assert len({loss for *_, loss in grid}) >= 4  # every setting gives its own eval loss
