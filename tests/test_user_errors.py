"""Errors a user sees (issue 20, item 9): each is one line naming the path or cause and the fix, through
the `jalign` CLI, never a traceback. A traceback shows here as an exception that escaped the command
(click's runner keeps it in `result.exception`): `one_line_error` fails on it."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from commands import main as jalign

REPO = Path(__file__).resolve().parents[1]


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(jalign, [str(a) for a in args])


def one_line_error(result: Result) -> str:
    """The one `error:` line of a failed command; fails on an escaped exception (a traceback)."""
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
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


# -- decide inputs ---------------------------------------------------------------


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
