"""`jalign dedup --threshold T IN OUT`: the command the team leans on, end to end through click."""

from __future__ import annotations

import json

from click.testing import CliRunner

from commands import main


def write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def test_keeps_records_in_order_and_drops_near_duplicates(tmp_path):
    rows = [
        {"id": 1, "instruction": "日本の首都はどこですか。"},
        {
            "id": 2,
            "instruction": "日本の首都は どこですか？",
        },  # whitespace + full-width ?: near-duplicate of 1
        {"id": 3, "instruction": "味噌汁の作り方を教えてください。"},
        {"id": 4, "instruction": "ＡＢＣ順に並べてください。"},
        {"id": 5, "instruction": "ABC順に並べてください。"},  # NFKC-equal to 4
    ]
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write(src, rows)
    result = CliRunner().invoke(main, ["dedup", "--threshold", "0.7", str(src), str(dst)])
    assert result.exit_code == 0, result.output
    kept = [json.loads(line) for line in dst.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in kept] == [1, 3, 4]
    assert kept[0] == rows[0]  # records pass through untouched
    assert "kept 3 of 5" in result.output


def test_threshold_one_keeps_everything_but_exact_duplicates_too(tmp_path):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write(src, [{"instruction": "同じ"}, {"instruction": "同じ"}])
    assert CliRunner().invoke(main, ["dedup", "--threshold", "1.0", str(src), str(dst)]).exit_code == 0
    assert len(dst.read_text(encoding="utf-8").splitlines()) == 2  # F1 = 1.0 is not greater than 1.0


def test_bad_input_names_file_line_and_field_and_writes_nothing(tmp_path):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text('{"instruction": "一つ目"}\n{"prompt": "二つ目"}\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["dedup", "--threshold", "0.7", str(src), str(dst)])
    assert result.exit_code == 1  # a JalignError: one line, no traceback
    assert f"error: {src}:2: missing field 'instruction'" in result.output
    assert "Traceback" not in result.output
    assert not dst.exists()


def test_threshold_out_of_range_is_rejected(tmp_path):
    src = tmp_path / "in.jsonl"
    write(src, [{"instruction": "x"}])
    result = CliRunner().invoke(main, ["dedup", "--threshold", "1.5", str(src), str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and "1.5" in result.output
