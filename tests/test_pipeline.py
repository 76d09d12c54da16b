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
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import fake_openai  # tests/ is on sys.path (conftest.py)
import pytest
import yaml
from helpers import copy_repo, git_commit

REPO = Path(__file__).resolve().parents[1]
SECRET = f"sk-test-{uuid.uuid4().hex}"
# The repo's own eval set at its CPU-profile limit (the test presets keep `evaluate.sets`).
EVAL_ITEMS = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))["evaluate"]["sets"][0][
    "limit"
]  # made at run time: no file of the repo holds it

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
    if 500 <= (body.get("seed") or 0) < 600:  # verify: the policy's samples, with or without 、 by seed
        return "はい、読点を使って答えます。" if body["seed"] % 2 else "読点を使わずに答えます。"
    if body.get("model") == "fake-dpo":  # evaluate: the candidate answers at more length than the base
        return "ご質問ありがとうございます。順を追って丁寧に説明します。まず要点を整理します。"
    if body.get("model") == "fake-base":
        return "はい、説明します。"
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
    if text.endswith("評価：[["):  # evaluate: 1-5 grade
        return {"4": -0.3, "3": -1.6, "5": -2.5}
    if text.endswith("最終判定: [["):  # judge / evaluate: prefers the longer answer, whichever position
        a = re.findall(r"⟪回答A:開始:\w+⟫\n(.*?)\n⟪回答A:終了:\w+⟫", text, re.S)[-1]
        b = re.findall(r"⟪回答B:開始:\w+⟫\n(.*?)\n⟪回答B:終了:\w+⟫", text, re.S)[-1]
        return {"A": -0.1, "B": -3.0} if len(a) > len(b) else {"B": -0.1, "A": -3.0}
    return {"A": -0.7, "B": -0.7}


GROUP_ROLES = (
    "self_instruct.generator",
    "evolve.generator",
    "evolve.judge",
    "evolve.responder",
    "curate.tagger",
    "translate.translator",
    "translate.reviewer",
    "judge.judge",
    "evaluate.judge",
    "verify.policy",
)


def fake_llm(model: str = "fake-model") -> dict:
    """An `llms` entry on the local OpenAI-compatible server (a loopback base_url needs no price)."""
    return {
        "backend": "openai", "model": model, "prompt_format": "chat", "terms": "apache-2.0",
        "base_url": "http://127.0.0.1:9/v1", "api_key_env": "OPENAI_API_KEY", "max_concurrency": 4,
        "timeout_s": 10.0, "max_retries": 2, "retry_base_delay_s": 0.01,
    }  # fmt: skip


def role(llm: str = "fake", **sampling) -> dict:
    """A role naming the `llms` entry `llm`, greedy unless `sampling` says otherwise."""
    return {"llm": llm, "sampling": {"temperature": 0.0, "max_tokens": 64, "seed": 0, **sampling}}


def write_preset(project: Path, **sections) -> None:
    """The test's own preset (conf/preset/e2e.yaml), made the config's default and written to params.yaml
    (`jalign params compose`, i.e. `jalign params use e2e`), as in a user's repo."""
    preset = {
        "llms": {"fake": fake_llm(), "fake-base": fake_llm("fake-base"), "fake-dpo": fake_llm("fake-dpo")},
        "models": {"packaged": []},
        "self_instruct": {"rounds": 2, "prompts_per_round": 4},
        "translate": {"sources": [{"name": "jalign-en", "license": "cc0-1.0", "path": "data/sources/en_prompts.jsonl",
                                   "prompt_field": "prompt", "id_field": "id", "limit": 10}]},
        "respond": {"responders": [
            {"name": "careful", "system": "あなたは正確さを最も大切にする日本語のアシスタントです。", "template": "respond",
             "llm": role()},
            {"name": "lively", "system": "あなたは親しみやすい日本語のアシスタントです。", "template": "respond",
             "llm": role()},
        ]},
        "judge": {"canary_pairs": 2},
        "verify": {"policy": {"llm": "fake", "sampling": {"temperature": 0.7, "top_p": 1.0, "max_tokens": 32,
                                                          "seed": 500, "stop": [], "repetition_penalty": 1.0}},
                   "max_prompts": 12},
        "preferences": {"eval_size": 2},
        "sft": {"enabled": False},
        "evaluate": {
            "baseline": {"name": "base", "llm": role("fake-base")},
            "candidates": [{"name": "dpo", "system": "", "llm": role("fake-dpo")}],
        },
        "score": {"bootstrap": 200},
    }  # fmt: skip
    for dotted in GROUP_ROLES:  # every other role on the fake server, with the config's own sampling
        section, name = dotted.split(".")
        preset.setdefault(section, {}).setdefault(name, {})["llm"] = "fake"
    for name, values in sections.items():
        preset[name] = {**preset.get(name, {}), **values} if isinstance(values, dict) else values
    text = "# @package _global_\n" + yaml.safe_dump(preset, allow_unicode=True, sort_keys=False)
    (project / "conf/preset/e2e.yaml").write_text(text, encoding="utf-8")
    config = (project / "conf/config.yaml").read_text(encoding="utf-8")
    (project / "conf/config.yaml").write_text(
        config.replace("- preset: cpu", "- preset: e2e"), encoding="utf-8"
    )
    compose(project)


def compose(project: Path, *overrides: str) -> None:
    jalign(project, "params", "compose", *overrides)


@pytest.fixture
def project(tmp_path: Path, tiny_lm64_dir: Path) -> Path:
    """A fresh clone-like copy of the repo whose test preset points every role at a local server and
    trains the tiny model."""
    dest = copy_repo(
        tmp_path / "repo", skip=("data/instructions", "data/preferences", "metrics/", "data/eval/plots")
    )
    (dest / "dvc.lock").unlink(missing_ok=True)
    write_preset(dest, dpo=tiny_train(tiny_lm64_dir))
    git_commit(dest, "init")
    return dest


def tiny_train(model: Path) -> dict:
    return {"model": str(model), "dtype": "float32", "max_steps": 2, "learning_rate": 1e-3,
            "per_device_train_batch_size": 2, "max_length": 96, "optim": "adamw_torch"}  # fmt: skip


def point_at(project: Path, url: str) -> None:
    path = project / "conf/preset/e2e.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(re.sub(r"http://127\.0\.0\.1:\d+/v1", url, text), encoding="utf-8")
    compose(project)


def env_for(tmp: Path, shared_cache: bool = True) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    env = os.environ | {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "OPENAI_API_KEY": SECRET,
        "DVC_SITE_CACHE_DIR": str(tmp / "dvc-site"),
        "DVC_NO_ANALYTICS": "1",
    }
    if shared_cache:
        env["JALIGN_LLM_CACHE"] = str(tmp / "llm-cache.sqlite")
    else:  # the default: found from the repository root, in every DVC execution mode
        env.pop("JALIGN_LLM_CACHE", None)
    return env


def run(project: Path, *cmd: str, shared_cache: bool = True) -> str:
    proc = subprocess.run(list(cmd), cwd=project, env=env_for(project.parent, shared_cache), capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def dvc(project: Path, *args: str, shared_cache: bool = True) -> str:
    return run(project, "dvc", *args, shared_cache=shared_cache)


def jalign(project: Path, *args: str) -> str:
    return run(project, "jalign", *args)


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '([\w@.-]+)'", output)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_repro_evaluate_cache_and_param_changes(project: Path):
    with fake_openai.FakeOpenAIServer(responder=responder, top_logprobs=top_logprobs) as server:
        point_at(project, server.url)
        out = dvc(project, "repro", "score")
        assert ran_stages(out) == ["params", "fetch", "models", "self_instruct", "evolve", "curate", "translate",
                                   "respond", "judge", "decide", "verify", "preferences", "sft", "dpo", "evaluate",
                                   "score"]  # fmt: skip
        paid = server.count
        assert paid > 0

        curated = read_jsonl(project / "data/instructions/curated.jsonl")
        assert curated, "the instruction half produced nothing"
        assert len({r["id"] for r in curated}) == len(curated)
        evolved = [r for r in curated if r["source"] == "evol_instruct"]
        assert evolved and all(r["lineage"]["parent_id"] and r["lineage"]["operation"] for r in evolved)
        assert all({"quality", "difficulty", "category"} <= set(r["tags"]) for r in curated)
        assert all(r["license"] == ["apache-2.0"] and r["model_terms"] == ["apache-2.0"] for r in curated)
        metrics = read_json(project / "metrics/instructions.json")
        assert metrics["funnel"]["self_instruct_generated"] == 8
        assert (
            metrics["dropped"]["near_duplicate"]
            + metrics["funnel"]["self_instruct_dropped"].get("near_duplicate", 0)
            > 0
        )  # 12 tasks for 8 prompts: the hash collides
        judge = read_json(project / "metrics/judge.json")
        assert judge["kept_pairs"] > 0 and judge["agreement_rate"] == 1.0  # the fake judge is consistent
        assert judge["length_bias"] == 1.0  # ... and always prefers the longer answer
        assert judge["injection"]["canary_pairs"] == 2  # re-judged with a plea appended to one answer
        assert 0 <= judge["injection"]["changed_outcome"] <= 2
        # Verifier pairs: the fake policy's samples differ in 、 by seed, so no-comma prompts give pairs.
        verified = read_json(project / "metrics/verify.json")
        assert verified["prompts"] == 12 and verified["pairs"] > 0
        assert verified["per_instruction"]["ja:punctuation:no_comma"]["chosen_followed"] == 1.0
        pairs = read_jsonl(project / "data/preferences/verified_pairs.jsonl")
        assert all(p["label_source"] == "verifier" and "、" not in p["chosen"] for p in pairs if
                   p["instruction_id_list"] == ["ja:punctuation:no_comma"])  # fmt: skip
        prefs = read_json(project / "metrics/preferences.json")
        train = read_jsonl(project / "data/preferences/sets/pairwise_train.jsonl")
        held = read_jsonl(project / "data/preferences/sets/pairwise_eval.jsonl")
        assert prefs["rows"]["pairwise_train"] == len(train) > 0 and held
        assert not {r["prompt"][0]["content"] for r in train} & {r["prompt"][0]["content"] for r in held}
        assert {lic for r in train for lic in r["license"]} <= {"cc0-1.0", "apache-2.0"}

        # Evaluation: the set's limit of items, both orders, the longer (candidate) answer always wins.
        evaluation = read_json(project / "metrics/eval.json")
        score = evaluation["candidates"]["dpo"]["jalign-ja-eval"]
        assert score["wins"] == 2 * EVAL_ITEMS and score["losses"] == 0 and score["invalid"] == 0
        assert score["score"] > 90 and score["ci_low"] <= score["score"] <= score["ci_high"]
        assert evaluation["judge_reliability"]["jalign-ja-eval"]["length_bias"] == 1.0
        assert evaluation["grades"]["dpo"]["jalign-ja-eval"]["mean"] is not None
        assert "| dpo | jalign-ja-eval |" in (project / "metrics/eval_report.md").read_text(encoding="utf-8")
        ifeval = evaluation["ifeval"]["ifeval-ja"]
        assert (
            ifeval["models"]["base"]["strict"]["prompts"] == 72
            and ifeval["paired"]["dpo"]["strict"]["prompts"] == 72
        )
        battles = read_jsonl(project / "data/eval/battles.jsonl")
        assert {b["model_a"] for b in battles} == {"base"} and {b["winner"] for b in battles} == {"model_b"}
        # Anyone can rescore the battles with the same code and get the same number.
        rescored = json.loads(
            jalign(project, "score", "--battles", "data/eval/battles.jsonl", "--baseline", "base", "--bootstrap",
                   "200", "--seed", "0", "--json")
        )  # fmt: skip
        assert rescored["dpo"]["score"] == score["score"]

        # Nothing changed: nothing runs, nothing is sent.
        assert ran_stages(dvc(project, "repro", "score")) == []
        assert server.count == paid

        # A scoring param reruns score alone; a deciding param reruns decide (and what its output
        # feeds); a curate param reruns curate: all from stored judgments or the cache, nothing paid.
        # Each time the params check runs first; its output does not change, so nothing else reruns.
        compose(project, "score.invalid=tie")
        assert ran_stages(dvc(project, "repro", "score")) == ["params", "score"]
        compose(project, "decide.tie_margin=0.05")
        assert ran_stages(dvc(project, "repro", "decide")) == ["params", "decide"]
        compose(project, "curate.dedup_threshold=0.69")
        assert ran_stages(dvc(project, "repro", "curate")) == ["params", "curate"]
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


def answers_of(project: Path, model: str) -> list[list[str]]:
    return [r["turns"] for r in read_jsonl(project / "data/eval/answers.jsonl") if r["model"] == model]


def test_dpo_experiments_evaluate_fresh_adapters_and_queue_from_the_shared_cache(
    project: Path, tiny_lm64_dir: Path
):
    """`dvc exp run -S dpo.beta=...`: the retrained adapter answers afresh (its cache identity is its
    content) and `dvc metrics diff` shows the evaluation; `-S dpo.loss=...`; the article-001 sweep
    through the queue, whose temporary workspaces use the repository's LLM cache (nothing paid twice)."""
    tiny = {"model": str(tiny_lm64_dir), "backend": "transformers", "dtype": "float32", "device": "cpu",
            "prompt_format": "chat", "terms": "apache-2.0", "batch_size": 8}  # fmt: skip
    tiny_dpo = tiny | {"adapter": "models/dpo/adapter"}
    write_preset(
        project,
        # a large step, so that one beta or the other gives a visibly different adapter
        dpo=tiny_train(tiny_lm64_dir) | {"learning_rate": 0.01, "max_steps": 3},
        llms={"tiny": tiny, "tiny-dpo": tiny_dpo},
        evaluate={
            "baseline": {"name": "base", "llm": role("tiny", max_tokens=12)},
            "candidates": [{"name": "dpo", "system": "", "llm": role("tiny-dpo", max_tokens=12)}],
            # the jalign set alone: the random tiny model answers the 72 ifeval-ja prompts mostly empty
            "sets": [
                {"name": "jalign-ja-eval", "format": "jalign", "path": "data/eval/ja_eval.jsonl", "limit": 12}
            ],
            # the random tiny model ends a few answers with EOS at once: empty answers, counted as the
            # failures they are (4 of 36 rows at the CPU profile's 12 tasks)
            "max_failure_rate": 0.2,
        },
        # the summary stage reads the classifier's figures: the packaged e5-small, one short epoch
        models={"packaged": ["multilingual-e5-small"]},
        classifier={"encoders": {"e5-small": {"model": "models/base/multilingual-e5-small", "max_length": 64,
                                              "epochs": 1}}},
    )  # fmt: skip
    git_commit(project, "tiny models")
    with fake_openai.FakeOpenAIServer(responder=responder, top_logprobs=top_logprobs) as server:
        point_at(project, server.url)
        dvc(project, "repro", "summary", shared_cache=False)
        git_commit(project, "baseline")
        baseline = read_json(project / "metrics/dpo.json")
        assert (
            read_json(project / "metrics/dpo.meta.json")["loss_type"] == "sigmoid" and baseline["steps"] == 3
        )
        first_answers = answers_of(project, "dpo")
        plots = json.loads(dvc(project, "plots", "show", "--json"))["data"]
        assert {
            "DPO loss",
            "DPO reward margin",
            "DPO reward accuracy",
            "Eval score vs baseline (95% CI)",
        } <= set(plots)

        out = dvc(project, "exp", "run", "-S", "dpo.beta=0.3", "summary", shared_cache=False)
        assert ran_stages(out) == ["params", "dpo", "evaluate", "score", "summary"]
        changed = read_json(project / "metrics/dpo.json")
        assert read_json(project / "metrics/dpo.meta.json")["beta"] == 0.3
        assert changed["eval_loss"] != baseline["eval_loss"]
        usage = read_json(project / "metrics/evaluate.meta.json")["usage"]
        items = EVAL_ITEMS
        assert usage["evaluate.candidates[0].llm"]["new_calls"] == items  # the new adapter answered afresh
        assert usage["evaluate.candidates[0].llm"]["cached"] == 0
        assert usage["evaluate.baseline.llm"]["cached"] == items  # the base did not change
        assert answers_of(project, "dpo") != first_answers
        diff = dvc(project, "metrics", "diff")
        assert "eval_loss" in diff and "metrics/summary.json" in diff
        # Only figures: no commit, package version, usage counter or param echo is a metric.
        for noise in ("git_commit", "provenance", "usage", "beta", "packages"):
            assert noise not in diff, noise
        headline = dvc(project, "metrics", "show", "metrics/summary.json").splitlines()
        assert max(map(len, headline)) <= 200, headline
        # `dvc exp show` leads with the headline: the score is among its first 8 columns.
        shown = dvc(project, "exp", "show", "--only-changed", "--no-pager", "--md", shared_cache=False)
        columns = [c.strip() for c in shown.splitlines()[0].strip("|").split("|")]
        assert "score" in columns[:8], columns
        for loss in ("ipo", "kto"):
            dvc(project, "exp", "run", "-S", f"dpo.loss={loss}", "dpo", shared_cache=False)
            assert read_json(project / "metrics/dpo.meta.json")["loss_type"] == loss

        requests_before_queue = server.count
        dvc(project, "exp", "run", "--queue", "-S", "dpo.beta=0.01,0.1", "-S", "dpo.loss=sigmoid,ipo", "dpo",
            shared_cache=False)  # fmt: skip
        dvc(project, "queue", "start", "-j", "1", shared_cache=False)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            status = dvc(project, "queue", "status", shared_cache=False)
            if "Queued" not in status and "Running" not in status:
                break
            time.sleep(2)
        assert "Failed" not in status, status
        shown = json.loads(dvc(project, "exp", "show", "--json", shared_cache=False))
        runs = [exp for commit in shown for exp in (commit.get("experiments") or [])]
        grid = set()
        for exp in runs:
            data = exp["revs"][0]["data"]
            train = data["params"]["params.yaml"]["data"]["dpo"]
            metrics = data["metrics"]["metrics/dpo.json"]["data"]
            grid.add((train["beta"], train["loss"], metrics["eval_loss"]))
        assert {(b, lt) for b, lt, _ in grid} >= {
            (0.01, "sigmoid"),
            (0.01, "ipo"),
            (0.1, "sigmoid"),
            (0.1, "ipo"),
        }
        assert len({loss for *_, loss in grid}) >= 4  # every setting gives its own eval loss
        # Queued runs (in .dvc/tmp/exps copies) found the workspace's cache: the LLM stages they
        # repeated sent nothing, and the cache is the one at the repository root.
        assert server.count == requests_before_queue
        assert (project / ".jalign" / "llm-cache.sqlite").exists()
