"""Validation, the JSONL reader, evaluate_rows, accuracy_table and the real M-IFEval Japanese inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from jalign.errors import JalignError
from jalign.ifeval.evaluation import (
    INSTRUCTION_IDS,
    IFEvalInputError,
    accuracy_table,
    evaluate_rows,
    follows_instructions,
    loose_variants,
    read_ifeval_file,
    validate_instructions,
)
from jalign.records import read_jsonl_lines

REPO = Path(__file__).resolve().parents[2]


def shared_file(relative: str) -> Path:
    # ../shared/data beside the checkout (CI lays it there); JALIGN_SHARED_DATA for a checkout elsewhere
    path = Path(os.environ.get("JALIGN_SHARED_DATA") or REPO.parent / "shared" / "data") / relative
    if not path.is_file():
        pytest.skip(f"{relative} is absent from shared/data (a fresh clone has no shared/)")
    return path


def write_rows(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def row(key: int, response: str | None, ids: list[str], kwargs: list[dict]) -> dict:
    return {"key": key, "prompt": "質問", "response": response, "instruction_id_list": ids, "kwargs": kwargs}


def test_ids_are_sorted_and_complete() -> None:
    assert list(INSTRUCTION_IDS) == sorted(INSTRUCTION_IDS)
    assert len(INSTRUCTION_IDS) == 33
    assert all(i.startswith("ja:") for i in INSTRUCTION_IDS)
    assert issubclass(IFEvalInputError, JalignError) and issubclass(IFEvalInputError, ValueError)


@pytest.mark.parametrize(
    ("ids", "kwargs", "expected"),
    [
        (["ja:nope"], [{}], "unknown instruction id 'ja:nope'"),
        (["ja:letters:kanji"], [{"relation": "未満"}], "ja:letters:kanji: missing kwarg 'kanji_limit'"),
        (["ja:letters:kanji"], [{"kanji_limit": None, "relation": "未満"}], "missing kwarg 'kanji_limit'"),
        (
            ["ja:letters:kanji"],
            [{"kanji_limit": "3", "relation": "未満"}],
            "'kanji_limit' must be an integer >= 0",
        ),
        (
            ["ja:letters:kanji"],
            [{"kanji_limit": True, "relation": "未満"}],
            "'kanji_limit' must be an integer",
        ),
        (
            ["ja:letters:kanji"],
            [{"kanji_limit": -1, "relation": "未満"}],
            "'kanji_limit' must be an integer >= 0",
        ),
        (["ja:letters:kanji"], [{"kanji_limit": 3, "relation": "より多い"}], "'relation' must be '未満'"),
        (["ja:punctuation:no_comma"], [{"ending": "です"}], "unexpected kwarg 'ending' (allowed: none)"),
        (["ja:keywords:existence"], [{"keywords": []}], "'keywords' must be a non-empty list"),
        (["ja:keywords:existence"], [{"keywords": "猫"}], "'keywords' must be a non-empty list"),
        (["ja:language:response_language"], [{"language": "Japanese"}], "'language' must be a language code"),
        (
            ["ja:keywords:letter_frequency"],
            [{"letter": "ア", "let_frequency": 1, "let_relation": "以上"}],
            "one hiragana",
        ),
        (["ja:startend:end_checker"], [{"end_phrase": "  "}], "'end_phrase' must be a non-empty string"),
        (
            ["ja:length_constraints:nth_paragraph_first_word"],
            [{"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "猫"}],
            "'nth_paragraph' must be between 1 and num_paragraphs (2), got 3",
        ),
        (["ja:punctuation:no_comma", "ja:punctuation:no_period"], [{}], "2 ids, kwargs 1"),
        ([], [], "instruction_id_list must be a non-empty list"),
        (["ja:punctuation:no_comma"], ["x"], "kwargs must be an object"),
    ],
)
def test_validation_names_place_id_kwarg_and_fix(ids: list, kwargs: list, expected: str) -> None:
    with pytest.raises(IFEvalInputError) as info:
        validate_instructions(ids, kwargs, "answers.jsonl:12")
    message = str(info.value)
    assert message.startswith("answers.jsonl:12: ")
    assert expected in message


def test_unused_null_kwargs_are_accepted() -> None:
    # upstream files may carry null for keys an instruction does not use
    validate_instructions(["ja:punctuation:no_comma"], [{"num_sentences": None}], "x")
    validate_instructions(["ja:letters:kanji"], [{"kanji_limit": 0, "relation": "以上", "ending": None}], "x")


def test_follows_instructions_validates_and_rejects_a_bad_mode() -> None:
    with pytest.raises(IFEvalInputError, match="unknown instruction id"):
        follows_instructions("はい", ["ja:nope"], [{}], "", "strict")
    with pytest.raises(IFEvalInputError, match="mode must be"):
        follows_instructions("はい", ["ja:punctuation:no_comma"], [{}], "", "lenient")  # type: ignore[arg-type]


def test_loose_variants_are_the_eight_of_ifeval_without_blanks_or_repeats() -> None:
    variants = loose_variants("# **見出し**\n本文 *強調*\n終わり")
    assert variants == [
        "# **見出し**\n本文 *強調*\n終わり",
        "本文 *強調*\n終わり",
        "# **見出し**\n本文 *強調*",
        "本文 *強調*",
        "# 見出し\n本文 強調\n終わり",
        "本文 強調\n終わり",
        "# 見出し\n本文 強調",
        "本文 強調",
    ]
    assert loose_variants("一行だけ") == ["一行だけ"]


def test_read_ifeval_file_reads_keys_nulls_and_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    lines = [
        json.dumps(row(1, "はい", ["ja:punctuation:no_comma"], [{}]), ensure_ascii=False),
        "",
        json.dumps({**row(2, None, ["ja:punctuation:no_period"], [{}]), "key": "b"}, ensure_ascii=False),
        json.dumps({k: v for k, v in row(3, "x", ["ja:letters:kansuuji"], [{}]).items() if k != "key"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = read_ifeval_file(path)
    assert [r["key"] for r in rows] == [1, "b", None]
    assert rows[1]["response"] is None


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (
            {"prompt": "p", "instruction_id_list": ["ja:punctuation:no_comma"], "kwargs": [{}]},
            "missing field 'response'",
        ),
        ({"prompt": "p", "response": "r", "kwargs": [{}]}, "missing field 'instruction_id_list'"),
        (
            {
                "prompt": "p",
                "response": 3,
                "instruction_id_list": ["ja:punctuation:no_comma"],
                "kwargs": [{}],
            },
            "'response' must be a string or null",
        ),
        (
            {"prompt": "p", "response": "r", "instruction_id_list": ["ja:letters:kanjii"], "kwargs": [{}]},
            "unknown instruction id 'ja:letters:kanjii'",
        ),
        (
            {
                "prompt": "p",
                "response": "r",
                "instruction_id_list": ["ja:letters:kanji"],
                "kwargs": [{"relation": "以上"}],
            },
            "ja:letters:kanji: missing kwarg 'kanji_limit'",
        ),
        (
            {
                "prompt": "p",
                "response": "r",
                "instruction_id_list": ["ja:punctuation:no_comma"],
                "kwargs": [{}],
                "key": [1],
            },
            "'key' must be an integer or a string",
        ),
    ],
)
def test_read_ifeval_file_errors_name_file_and_line(tmp_path: Path, record: dict, expected: str) -> None:
    good = row(1, "はい", ["ja:punctuation:no_comma"], [{}])
    path = write_rows(tmp_path, [good, record])
    with pytest.raises(IFEvalInputError) as info:
        read_ifeval_file(path)
    assert str(info.value).startswith(f"{path}:2: ")
    assert expected in str(info.value)


def test_evaluate_rows_and_accuracy_table() -> None:
    rows = [
        row(
            1,
            "はい、そうです。",
            ["ja:detectable_format:constrained_response", "ja:punctuation:no_comma"],
            [{}, {}],
        ),
        row(2, "カタカナ", ["ja:letters:katakana_only"], [{}]),
        row(3, "", ["ja:letters:katakana_only"], [{}]),
    ]
    results = evaluate_rows(rows, "strict")
    assert results == [
        {"key": 1, "follow_instruction_list": [True, False], "follow_all_instructions": False},
        {"key": 2, "follow_instruction_list": [True], "follow_all_instructions": True},
        {"key": 3, "follow_instruction_list": [False], "follow_all_instructions": False},
    ]
    table = accuracy_table(results, rows)
    assert table["prompt_level"] == {"correct": 1, "total": 3, "accuracy": 1 / 3}
    assert table["instruction_level"] == {"correct": 2, "total": 4, "accuracy": 0.5}
    assert list(table["per_instruction"]) == sorted(table["per_instruction"])
    assert table["per_instruction"]["ja:letters:katakana_only"] == {"correct": 1, "total": 2, "accuracy": 0.5}
    assert table["per_instruction"]["ja:punctuation:no_comma"]["correct"] == 0


def test_several_processes_give_the_same_results_in_order() -> None:
    answers = ["猫です。", "猫だ。", "", "犬です！猫です。"]
    rows = [
        row(
            i,
            answers[i % 4],
            ["ja:startend:sentence_unified_end", "ja:keywords:existence"],
            [{"ending": "です"}, {"keywords": ["猫"]}],
        )
        for i in range(200)
    ]
    serial = evaluate_rows(rows, "loose")
    assert evaluate_rows(rows, "loose", jobs=2) == serial
    assert [r["key"] for r in serial] == list(range(200))


def test_the_real_japanese_inputs_all_validate(tmp_path: Path) -> None:
    source = shared_file("m_ifeval_ja/ja_input_data.jsonl")
    pairs = read_jsonl_lines(source)
    assert len(pairs) == 172
    seen = set()
    for line, record in pairs:
        validate_instructions(record["instruction_id_list"], record["kwargs"], f"{source}:{line}")
        seen.update(record["instruction_id_list"])
    assert seen == set(INSTRUCTION_IDS)
    # with an answer added, the whole file reads and scores
    rows = read_ifeval_file(write_rows(tmp_path, [{**r, "response": "はい、そうです。"} for _, r in pairs]))
    results = evaluate_rows(rows, "loose")
    assert len(results) == 172 and [r["key"] for r in results] == [r["key"] for _, r in pairs]
