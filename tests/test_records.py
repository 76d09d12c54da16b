"""jalign.records: JSONL readers that name file:line and field; atomic JSONL/JSON writers."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from jalign import records
from jalign.records import (
    RecordError,
    atomic_path,
    check_text_field,
    check_unique_ids,
    clean_stale_temp,
    licence_list,
    provenance_of,
    read_jsonl,
    user_prompt,
    write_json,
    write_jsonl,
    write_text,
)


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# read_jsonl
# ---------------------------------------------------------------------------------------------
def test_reads_objects_and_skips_blank_lines(tmp_path):
    path = write_lines(
        tmp_path / "a.jsonl",
        '{"id": "1", "instruction": "日本語で答えて"}',
        "",
        "   \t",
        '{"id": "2", "instruction": "x", "extra": [1, 2]}',
    )
    records = read_jsonl(path, required=("id", "instruction"))
    assert records == [
        {"id": "1", "instruction": "日本語で答えて"},
        {"id": "2", "instruction": "x", "extra": [1, 2]},
    ]
    # No trailing newline, CRLF line ends: still read.
    crlf = tmp_path / "crlf.jsonl"
    crlf.write_bytes(b'{"id": "1"}\r\n{"id": "2"}')
    assert read_jsonl(crlf, required=("id",)) == [{"id": "1"}, {"id": "2"}]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert read_jsonl(empty) == []


def test_bad_json_names_file_and_line(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", '{"id": "1"}', "", '{"id": "3",', '{"id": "4"}')
    with pytest.raises(RecordError) as info:
        read_jsonl(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: not valid JSON")  # blank line 2 still counts as a line
    assert "column" in message


@pytest.mark.parametrize(
    ("line", "message"),
    [
        # json's own message ends in "at" in these two
        (b'{"id": "3', "Unterminated string starting at column 8"),  # the last line, cut short
        (b'{"id": "3\n', "Invalid control character at column 10"),
        (b'{"id": }\n', "Expecting value at column 8"),
        (b'{"id": "1"}}\n', "Extra data at column 12"),
    ],
)
def test_a_json_error_reads_as_one_phrase_naming_its_column(tmp_path, line, message):
    """Not "starting at at column 8" (issue 20, item 10)."""
    path = tmp_path / "bad.jsonl"
    path.write_bytes(line)
    with pytest.raises(RecordError) as info:
        read_jsonl(path)
    assert str(info.value) == f"{path}:1: not valid JSON ({message})"


def test_non_object_line(tmp_path):
    path = write_lines(tmp_path / "list.jsonl", '{"id": "1"}', '["id", "2"]')
    with pytest.raises(RecordError, match=r":2: expected a JSON object, got list$") as info:
        read_jsonl(path)
    assert str(path) in str(info.value)
    with pytest.raises(RecordError, match=r":1: expected a JSON object, got str$"):
        read_jsonl(write_lines(tmp_path / "str.jsonl", '"just text"'))


def test_missing_required_field_names_line_and_field(tmp_path):
    path = write_lines(tmp_path / "m.jsonl", '{"id": "1", "output": "a"}', '{"id": "2"}')
    with pytest.raises(RecordError) as info:
        read_jsonl(path, required=("id", "output"))
    assert str(info.value) == f"{path}:2: missing field 'output'"


@pytest.mark.parametrize("value", ["", "   ", "\n", 3, None, ["a"]])
def test_empty_or_non_string_field(tmp_path, value):
    path = write_lines(
        tmp_path / "e.jsonl", '{"id": "1", "output": "ok"}', json.dumps({"id": "2", "output": value})
    )
    with pytest.raises(RecordError) as info:
        read_jsonl(path, required=("id", "output"))
    message = str(info.value)
    assert message.startswith(f"{path}:2: field 'output' must be a non-empty string, got ")
    assert repr(value)[:20] in message


def test_fields_are_not_checked_unless_required(tmp_path):
    path = write_lines(tmp_path / "n.jsonl", '{"id": "1", "output": ""}')
    assert read_jsonl(path) == [{"id": "1", "output": ""}]


def test_missing_file(tmp_path):
    with pytest.raises(RecordError, match="file not found"):
        read_jsonl(tmp_path / "absent.jsonl")


def test_check_text_field():
    assert check_text_field({"a": "値"}, "a", "here") == "値"
    with pytest.raises(RecordError, match=r"^here: missing field 'b'$"):
        check_text_field({"a": "x"}, "b", "here")
    long = "x" * 500
    with pytest.raises(RecordError) as info:
        check_text_field({"a": [long]}, "a", "here")
    assert len(str(info.value)) < 200  # the bad value is shown truncated


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"id": "\xe6\x97"}\n', r":2: not valid UTF-8 \(byte 0xe6 at byte 9\)$"),  # a cut 3-byte character
        (b'{"id": "\xff"}\n', r":2: not valid UTF-8 \(byte 0xff at byte 9\)$"),
        (b'{"id": "\\ud800"}\n', r":2: field 'id' holds a lone surrogate escape"),
        (b'{"a": {"b": ["ok", "\\udfff"]}}\n', r":2: field 'a.b\[1\]' holds a lone surrogate escape"),
        (b'{"\\ud83d": 1}\n', r":2: field '\\ud83d' holds a lone surrogate escape"),
    ],
)
def test_invalid_text_names_file_line_and_field(tmp_path, raw, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes('{"id": "日本語"}\n'.encode() + raw)
    with pytest.raises(RecordError, match="^" + re.escape(str(path)) + message) as info:
        read_jsonl(path)
    str(info.value).encode("utf-8")  # the message itself can be printed and written to a file


def test_a_surrogate_pair_escape_is_valid_text(tmp_path):
    path = tmp_path / "ok.jsonl"
    path.write_bytes(b'{"id": "\\ud83d\\ude00"}\n')  # one emoji, escaped as a pair
    assert read_jsonl(path, required=("id",)) == [{"id": "\U0001f600"}]


def test_only_a_line_with_a_surrogate_escape_is_walked_for_one(tmp_path, monkeypatch):
    """Decoded from valid UTF-8, a string can hold a lone surrogate only through a `\\ud800`-style escape:
    lines without one are not walked field by field (issue 20, item 14), with the same results."""
    walked = []
    real = records._unencodable_field

    def spy(value, path=""):
        if not path:  # a record, not one of its fields
            walked.append(value)
        return real(value, path)

    monkeypatch.setattr(records, "_unencodable_field", spy)
    path = tmp_path / "many.jsonl"
    plain = [
        {"id": str(i), "text": "日本語の文章 \\u escape-like text", "nested": {"a": [1, "x"]}}
        for i in range(50)
    ]
    escaped = {"id": "e", "text": "\U0001f600"}  # written as the pair \\ud83d\\ude00: valid, and walked
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in plain) + json.dumps(escaped) + "\n",
        encoding="utf-8",
    )
    assert read_jsonl(path) == [*plain, escaped]
    assert walked == [escaped]
    path.write_bytes(b'{"id": "\\uD800"}\n')  # upper-case hex is an escape too
    with pytest.raises(RecordError, match="field 'id' holds a lone surrogate escape"):
        read_jsonl(path)


def test_user_prompt_appends_the_input_when_there_is_one():
    assert user_prompt({"instruction": "要約して", "input": "本文"}) == "要約して\n本文"
    assert user_prompt({"instruction": "要約して", "input": ""}) == "要約して"
    assert user_prompt({"instruction": "要約して"}) == "要約して"


# ---------------------------------------------------------------------------------------------
# licence provenance
# ---------------------------------------------------------------------------------------------
def test_licence_list_accepts_strings_lists_and_nothing():
    assert licence_list("mit") == ["mit"]
    assert licence_list(["mit", "apache-2.0", "mit"]) == ["apache-2.0", "mit"]
    assert licence_list(None) == [] and licence_list("") == [] and licence_list([]) == []


def test_provenance_of_unions_input_licences_and_model_terms():
    inputs = [
        {"license": "cc-by-4.0"},
        {"license": ["apache-2.0", "cc-by-4.0"], "model_terms": ["gemma"]},
        {"model_terms": ["openai-terms"]},
    ]
    assert provenance_of(inputs, ["qwen", "gemma"]) == {
        "license": ["apache-2.0", "cc-by-4.0"],
        "model_terms": ["gemma", "openai-terms", "qwen"],
    }
    assert provenance_of([]) == {"license": [], "model_terms": []}


# ---------------------------------------------------------------------------------------------
# check_unique_ids
# ---------------------------------------------------------------------------------------------
def test_check_unique_ids():
    check_unique_ids([{"id": "a"}, {"id": "b"}, {"id": "c"}], "seeds.jsonl")
    with pytest.raises(RecordError) as info:
        check_unique_ids([{"id": "a"}, {"id": "b"}, {"id": "a"}], "seeds.jsonl")
    assert str(info.value) == "seeds.jsonl:3: field 'id': duplicate id 'a' (first at record 1)"
    with pytest.raises(
        RecordError, match=r"^x\.jsonl:2: field 'key': duplicate id 'k' \(first at record 1\)$"
    ):
        check_unique_ids([{"key": "k"}, {"key": "k"}], "x.jsonl", field="key")
    check_unique_ids([{"key": "k"}, {"key": "l"}], "x.jsonl", field="key")
    check_unique_ids([], "x.jsonl")


# ---------------------------------------------------------------------------------------------
# atomic writers
# ---------------------------------------------------------------------------------------------
def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_clean_stale_temp_removes_what_a_killed_run_left(tmp_path):
    out = tmp_path / "data" / "out.jsonl"
    folder = tmp_path / "model"
    out.parent.mkdir()
    (folder / "sub").mkdir(parents=True)
    stale = [
        out.parent / ".out.jsonl.0a1b2c.tmp",
        folder / ".weights.bin.ffee00.tmp",
        folder / "sub" / ".x.1.tmp",
    ]
    keep = [out.parent / ".other.jsonl.0a1b2c.tmp", out.parent / "out.jsonl.tmp", folder / "weights.bin"]
    for path in stale + keep:
        path.write_text("x")
    out.write_text("old output\n")
    assert sorted(clean_stale_temp([out, folder, tmp_path / "absent" / "o.json"])) == sorted(stale)
    assert all(p.exists() for p in [*keep, out]) and not any(p.exists() for p in stale)
    assert clean_stale_temp([out, folder]) == []
    # what atomic_path leaves when the process dies inside the block is exactly such a file
    with pytest.raises(KeyboardInterrupt), atomic_path(out) as tmp:
        os.link(tmp, tmp_path / "survivor")  # the temp file as a kill would leave it
        raise KeyboardInterrupt
    os.link(tmp_path / "survivor", tmp)
    assert clean_stale_temp([out]) == [tmp]


def test_write_text_is_atomic(tmp_path):
    path = tmp_path / "docs" / "params.md"
    write_text(path, "# 見出し\n")
    assert path.read_text(encoding="utf-8") == "# 見出し\n"
    assert [p.name for p in path.parent.iterdir()] == ["params.md"]


def test_write_jsonl_round_trip(tmp_path):
    path = tmp_path / "deep" / "dir" / "out.jsonl"  # parents are created
    records = [{"id": "1", "text": "日本語"}, {"id": "2", "n": [1, 2.5, None]}]
    assert write_jsonl(path, iter(records)) == 2
    assert read_jsonl(path) == records
    assert "日本語" in path.read_text(encoding="utf-8")  # not \\u-escaped
    assert len(path.read_text(encoding="utf-8").splitlines()) == 2
    assert leftovers(path.parent) == []
    assert write_jsonl(path, []) == 0
    assert path.read_text() == ""


def test_write_jsonl_is_atomic_when_the_iterable_raises(tmp_path):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [{"id": "old"}])
    before = path.read_bytes()

    def records():
        yield {"id": "new-1"}
        yield {"id": "new-2"}
        raise RuntimeError("stage crashed midway")

    with pytest.raises(RuntimeError, match="crashed midway"):
        write_jsonl(path, records())
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_write_jsonl_failure_leaves_no_file_when_there_was_none(tmp_path):
    path = tmp_path / "new.jsonl"
    with pytest.raises(TypeError):
        write_jsonl(path, [{"ok": 1}, {"bad": object()}])  # not JSON-serialisable
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_write_json_round_trip_and_atomic(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"accepted": 3, "名前": "値"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"accepted": 3, "名前": "値"}
    assert path.read_text(encoding="utf-8").endswith("}\n")
    assert "名前" in path.read_text(encoding="utf-8")
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_json(path, {"accepted": object()})
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_written_files_get_normal_permissions(tmp_path):
    """Outputs are created with the permissions a plain open() would give (umask), not 0600."""
    umask = os.umask(0o022)
    try:
        write_jsonl(tmp_path / "a.jsonl", [{"id": "1"}])
        write_json(tmp_path / "b.json", {"x": 1})
    finally:
        os.umask(umask)
    for name in ("a.jsonl", "b.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
