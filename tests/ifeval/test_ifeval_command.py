"""`jalign ifeval --mode strict|loose [--json] FILE`, through click and as a process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from commands import COMMANDS, main

ROWS = [
    {
        "key": "b",
        "prompt": "挨拶して",
        "response": "はい、どうぞ。\n「こんにちは」",
        "instruction_id_list": ["ja:startend:quotation", "ja:punctuation:no_period"],
        "kwargs": [{}, {}],
    },
    {
        "key": 7,
        "prompt": "カタカナで",
        "response": "コンニチハ",
        "instruction_id_list": ["ja:letters:katakana_only"],
        "kwargs": [{}],
    },
    {"prompt": "空", "response": "", "instruction_id_list": ["ja:punctuation:no_comma"], "kwargs": [{}]},
]


def write(tmp_path: Path, rows: list[dict], extra: str = "") -> Path:
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + extra, encoding="utf-8")
    return path


def invoke(*args: str):
    return CliRunner().invoke(main, ["ifeval", *args])


def test_registered_in_the_lazy_group() -> None:
    assert COMMANDS["ifeval"] == "commands.ifeval:main"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("strict", [[False, False], [True], [False]]),
        # loose: without its first line the answer is one quotation with no period
        ("loose", [[True, True], [True], [False]]),
    ],
)
def test_json_is_one_line_per_row_in_input_order(tmp_path: Path, mode: str, expected: list) -> None:
    result = invoke("--mode", mode, "--json", str(write(tmp_path, ROWS)))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["key"] for line in lines] == ["b", 7, None]
    assert [line["follow_instruction_list"] for line in lines] == expected
    assert [line["follow_all_instructions"] for line in lines] == [all(e) for e in expected]
    assert all(set(line) == {"key", "follow_instruction_list", "follow_all_instructions"} for line in lines)


def test_table_reports_prompt_instruction_and_per_id_accuracy(tmp_path: Path) -> None:
    result = invoke("--mode", "loose", str(write(tmp_path, ROWS)))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "prompt-level accuracy (loose): 2/3 66.7%"
    assert lines[1] == "instruction-level accuracy (loose): 3/4 75.0%"
    per_id = {line.split()[0]: line.split()[1:] for line in lines[4:]}
    assert per_id == {
        "ja:letters:katakana_only": ["1", "1", "100.0%"],
        "ja:punctuation:no_comma": ["0", "1", "0.0%"],
        "ja:punctuation:no_period": ["1", "1", "100.0%"],
        "ja:startend:quotation": ["1", "1", "100.0%"],
    }


def test_strict_is_the_default_mode(tmp_path: Path) -> None:
    result = invoke(str(write(tmp_path, ROWS)))
    assert result.stdout.startswith("prompt-level accuracy (strict): 1/3 33.3%")


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (
            {**ROWS[1], "instruction_id_list": ["ja:letters:romaji"]},
            "unknown instruction id 'ja:letters:romaji'",
        ),
        (
            {**ROWS[1], "instruction_id_list": ["ja:letters:kanji"]},
            "ja:letters:kanji: missing kwarg 'kanji_limit'",
        ),
    ],
)
def test_bad_input_is_one_error_line_and_exit_1(tmp_path: Path, bad: dict, expected: str) -> None:
    path = write(tmp_path, [ROWS[0], bad])
    result = invoke("--json", str(path))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {path}:2: ")
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_invalid_json_and_a_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path, ROWS[:1], extra="{not json\n")
    result = invoke(str(path))
    assert result.exit_code == 1 and result.stderr.startswith(f"error: {path}:2: not valid JSON")
    missing = invoke(str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 1 and "file not found" in missing.stderr


def test_as_a_process(tmp_path: Path) -> None:
    path = write(tmp_path, ROWS)
    done = subprocess.run(
        [sys.executable, "-m", "commands", "ifeval", "--mode", "strict", "--json", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["key"] for line in done.stdout.splitlines()] == ["b", 7, None]
