"""Tests for jalign.evalsets: the four loaders on the real benchmark files (../shared/data, skipped when
absent), our own evaluation set, and bad input written to temp files."""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
from pathlib import Path

import pytest

from jalign.config import ConfigError, from_dict
from jalign.evalsets import (
    MT_BENCH_TEMPERATURES,
    EvalItem,
    EvalSet,
    answer_temperature,
    decontaminate,
    load_eval_items,
    load_eval_prompts,
    load_eval_sets,
)
from jalign.records import RecordError

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    # ../shared/data beside the checkout (CI lays it there); JALIGN_SHARED_DATA for a checkout elsewhere
    candidate = Path(os.environ.get("JALIGN_SHARED_DATA") or REPO.parent / "shared" / "data")
    if candidate.is_dir():
        return candidate
    pytest.skip("../shared/data is absent (a fresh clone has no shared/)")


def shared_file(relative: str) -> str:
    path = shared_data() / relative
    if not path.is_file():
        pytest.skip(f"{relative} is absent from shared/data")
    return str(path)


def write_jsonl(path: Path, rows: list) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


# --- the real benchmark files ----------------------------------------------------------------------


def test_elyza_tasks_100():
    items = load_eval_items(
        EvalSet("elyza", format="elyza", path=shared_file("elyza_tasks_100/elyza100_jp.jsonl"))
    )
    assert len(items) == 100
    assert [i.id for i in items] == [str(n) for n in range(1, 101)]  # no id field: the row number
    assert all(len(i.turns) == 1 and i.turns[0].strip() for i in items)
    assert all(i.references is not None and len(i.references) == 1 for i in items)  # `output`
    assert all(i.grading_notes for i in items)  # `eval_aspect`
    assert {i.category for i in items} == {None}
    assert {answer_temperature(i) for i in items} == {None}
    first = json.loads(Path(shared_file("elyza_tasks_100/elyza100_jp.jsonl")).read_text().split("\n")[0])
    assert items[0].turns == (first["input"],)
    assert items[0].references == (first["output"],)
    assert items[0].grading_notes == first["eval_aspect"]


@pytest.mark.parametrize(
    "reference", ["reference_answer_gpt-4.jsonl", "reference_answer_base-gpt4o-with-human-annotation.jsonl"]
)
def test_japanese_mt_bench_full(reference):
    eval_set = EvalSet(
        "mt_bench_ja",
        format="mt_bench",
        path=shared_file("japanese_mt_bench/question_full.jsonl"),
        reference_path=shared_file(f"japanese_mt_bench/{reference}"),
    )
    items = load_eval_items(eval_set)
    assert len(items) == 80
    assert all(len(i.turns) == 2 for i in items)
    assert collections.Counter(i.category for i in items) == {c: 10 for c in MT_BENCH_TEMPERATURES}
    with_refs = {i.category for i in items if i.references is not None}
    assert with_refs == {"math", "reasoning", "coding"}
    assert all(len(i.references) == 2 for i in items if i.references is not None)
    assert sum(i.references is not None for i in items) == 30
    assert {i.id for i in items} == {str(n) for n in range(1, 81)}
    for item in items:
        assert answer_temperature(item) == MT_BENCH_TEMPERATURES[item.category]
    assert answer_temperature(next(i for i in items if i.category == "writing")) == 0.7
    assert answer_temperature(next(i for i in items if i.category == "stem")) == 0.1
    # Every turn feeds the contamination check: 160 prompts, second turns marked.
    prompts = load_eval_prompts([eval_set])
    assert len(prompts) == 160
    assert {p.id for p in prompts if p.id.endswith("#t2")} == {f"{n}#t2" for n in range(1, 81)}
    second = next(p for p in prompts if p.id == "1#t2")
    assert second.prompt == next(i for i in items if i.id == "1").turns[1]


def test_japanese_mt_bench_reduced_set_and_custom_reference_categories():
    """question.jsonl has no math/coding: only reasoning needs references; the file covers a superset."""
    path = shared_file("japanese_mt_bench/question.jsonl")
    ref = shared_file("japanese_mt_bench/reference_answer_gpt-4.jsonl")
    items = load_eval_items(EvalSet("mt", format="mt_bench", path=path, reference_path=ref))
    assert len(items) == 60
    assert {i.category for i in items if i.references} == {"reasoning"}
    items = load_eval_items(
        EvalSet("mt", format="mt_bench", path=path, reference_path=ref, reference_categories=("stem",))
    )
    assert {i.category for i in items if i.references} == {"stem"}
    assert load_eval_items(EvalSet("mt", format="mt_bench", path=path))[0].references is None


@pytest.mark.parametrize(
    ("relative", "count", "categories"),
    [
        ("arena_hard/arena-hard-v0.1_question.jsonl", 500, {"arena-hard-v0.1": 500}),
        (
            "arena_hard/arena-hard-v2.0_question.jsonl",
            750,
            {"hard_prompt/coding": 253, "hard_prompt/math": 247, "creative_writing": 250},
        ),
        ("arena_hard/m-arena-hard-ja/question.jsonl", 500, {"m-arena-hard-ja": 500}),
    ],
)
def test_arena_hard(relative, count, categories):
    items = load_eval_items(EvalSet("arena", format="arena_hard", path=shared_file(relative)))
    assert len(items) == count
    assert all(len(i.turns) == 1 and i.turns[0].strip() for i in items)
    assert collections.Counter(i.category for i in items) == categories
    assert all(i.references is None and i.grading_notes is None for i in items)


def test_m_arena_hard_ja_is_v01_translated_with_gpt4_answers_as_references():
    """Same ids as v0.1 (uid vs question_id), {content} turns; FastChat answers with {content} turns."""
    v01 = load_eval_items(
        EvalSet("v01", format="arena_hard", path=shared_file("arena_hard/arena-hard-v0.1_question.jsonl"))
    )
    ja = load_eval_items(
        EvalSet(
            "ja",
            format="arena_hard",
            path=shared_file("arena_hard/m-arena-hard-ja/question.jsonl"),
            reference_path=shared_file("arena_hard/m-arena-hard-ja/model_answer_gpt-4.jsonl"),
        )
    )
    assert {i.id for i in ja} == {i.id for i in v01}
    assert all(i.references is not None and len(i.references) == 1 for i in ja)
    assert ja[0].turns[0] != v01[0].turns[0]  # translated


# --- our own set (always present) ------------------------------------------------------------------


def test_own_eval_set_from_params():
    sets = {s.name: s for s in load_eval_sets(REPO / "params.yaml")}
    assert {s.format for s in sets.values()} == {"jalign", "ifeval"}
    eval_set = sets["jalign-ja-eval"]
    eval_set = dataclasses.replace(eval_set, path=str(REPO / eval_set.path))
    rows = [json.loads(line) for line in Path(eval_set.path).read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 20
    # The default profile evaluates the first `limit` tasks; contamination checks see all of them.
    assert [i.id for i in load_eval_items(eval_set)] == [r["id"] for r in rows][: eval_set.limit]
    items = load_eval_items(eval_set, apply_limit=False)
    assert len(items) == len(rows)
    assert [i.id for i in items] == [r["id"] for r in rows]
    assert [i.turns for i in items] == [(r["prompt"],) for r in rows]
    assert [i.category for i in items] == [r["category"] for r in rows]
    assert [i.grading_notes for i in items] == [r["grading_notes"] for r in rows]
    assert {i.format for i in items} == {"jalign"}
    assert [p.prompt for p in load_eval_prompts([eval_set])] == [r["prompt"] for r in rows]


def test_limit_applies_to_evaluation_not_to_contamination(tmp_path):
    path = write_jsonl(tmp_path / "e.jsonl", [{"id": f"q{n}", "prompt": f"問題{n}"} for n in range(5)])
    eval_set = EvalSet("own", format="jalign", path=path, limit=2)
    assert [i.id for i in load_eval_items(eval_set)] == ["q0", "q1"]
    assert len(load_eval_items(eval_set, apply_limit=False)) == 5
    assert len(load_eval_prompts([eval_set])) == 5


def test_every_turn_is_checked_for_contamination(tmp_path):
    path = write_jsonl(
        tmp_path / "mt.jsonl",
        [
            {
                "question_id": 7,
                "category": "writing",
                "turns": ["京都の紅葉の名所を三つ紹介して", "それを俳句にして"],
            }
        ],
    )
    prompts = load_eval_prompts([EvalSet("mt", format="mt_bench", path=path)])
    records = [{"id": "r1"}, {"id": "r2"}]
    clean, hits = decontaminate(records, ["それを俳句にして", "全く別の話題"], prompts, threshold=0.7)
    assert [r["id"] for r in clean] == ["r2"]
    assert hits == [{"id": "r1", "eval": "mt/7#t2", "rouge_l": 1.0}]


def test_elyza_id_field_is_used_when_present_and_turn_messages_keep_user_turns(tmp_path):
    path = write_jsonl(
        tmp_path / "e.jsonl", [{"id": "t-9", "input": "質問", "output": "答え", "eval_aspect": "観点"}]
    )
    assert load_eval_items(EvalSet("e", format="elyza", path=path))[0].id == "t-9"
    path = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {
                "question_id": "x",
                "turns": [
                    {"role": "user", "content": "一つ目"},
                    {"role": "assistant", "content": "答え"},
                    {"role": "user", "content": "二つ目"},
                ],
            }
        ],
    )
    assert load_eval_items(EvalSet("a", format="arena_hard", path=path))[0].turns == ("一つ目", "二つ目")


def test_field_overrides(tmp_path):
    path = write_jsonl(
        tmp_path / "c.jsonl", [{"qid": 3, "q": "質問", "kind": "数学", "ans": "42", "memo": "注意"}]
    )
    eval_set = EvalSet(
        "custom",
        format="jalign",
        path=path,
        prompt_field="q",
        id_field="qid",
        category_field="kind",
        reference_field="ans",
        notes_field="memo",
    )
    assert load_eval_items(eval_set) == [
        EvalItem("custom", "3", ("質問",), "数学", ("42",), "注意", "jalign")
    ]


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "lines", "message"),
    [
        ("jalign", ['{"id": "a", "prompt": "x"}', "{not json"], r":2: not valid JSON"),
        ("jalign", ['["a"]'], r":1: expected a JSON object"),
        ("jalign", ['{"id": "a"}'], r":1: missing field 'prompt'"),
        ("jalign", ['{"id": "a", "prompt": "  "}'], r":1: field 'prompt' must be a non-empty string"),
        ("jalign", ['{"id": "a", "prompt": 3}'], r":1: field 'prompt' must be a non-empty string"),
        ("jalign", ['{"prompt": "x"}'], r":1: missing field 'id'"),
        ("jalign", ['{"id": null, "prompt": "x"}'], r":1: field 'id' must be a non-empty string"),
        (
            "jalign",
            ['{"id": "a", "prompt": "x"}', "", '{"id": "a", "prompt": "y"}'],
            r":3: field 'id': duplicate id 'a' \(first at line 1\)",
        ),
        ("jalign", ['{"id": "a", "prompt": "x", "category": 5}'], r":1: field 'category' must be a string"),
        ("jalign", ['{"id": "a", "prompt": "x", "grading_notes": ["n"]}'], r":1: field 'grading_notes' must"),
        ("elyza", ['{"input": "x", "output": "y"}', '{"output": "y"}'], r":2: missing field 'input'"),
        (
            "mt_bench",
            ['{"question_id": 1, "category": "stem", "turns": ["x"]}'],
            r":1: field 'turns': MT-Bench items have 2 turns",
        ),
        (
            "mt_bench",
            ['{"question_id": 1, "category": "stem", "turns": ["x", ""]}'],
            r":1: field 'turns\[1\]' must be",
        ),
        (
            "mt_bench",
            ['{"question_id": 1, "category": "stem", "turns": []}'],
            r":1: field 'turns' must be a non-empty",
        ),
        ("arena_hard", ['{"prompt": "x"}'], r":1: missing field 'uid' or 'question_id'"),
        ("arena_hard", ['{"uid": "u", "turns": [{"content": ""}]}'], r":1: field 'turns\[0\]' must be"),
        ("arena_hard", ['{"uid": "u"}'], r":1: missing field 'prompt' or 'turns'"),
        (
            "arena_hard",
            ['{"uid": "u", "turns": [{"role": "assistant", "content": "a"}]}'],
            r":1: field 'turns' has no user turn",
        ),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, fmt, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(RecordError, match="^" + re.escape(str(path)) + message):
        load_eval_items(EvalSet("bad", format=fmt, path=str(path)))


def test_bad_bytes_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"id": "a", "prompt": "x"}\n\xff\n')
    with pytest.raises(RecordError, match="^" + re.escape(str(path)) + ":2: not valid UTF-8"):
        load_eval_items(EvalSet("bad", format="jalign", path=str(path)))


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(RecordError, match="no evaluation items"):
        load_eval_items(EvalSet("e", format="jalign", path=str(tmp_path / "empty.jsonl")))
    with pytest.raises(RecordError, match="file not found"):
        load_eval_items(EvalSet("e", format="jalign", path=str(tmp_path / "absent.jsonl")))


def mt_row(qid: int, category: str) -> dict:
    return {"question_id": qid, "category": category, "turns": [f"問{qid}-1", f"問{qid}-2"]}


def ref_row(qid: int, turns: list) -> dict:
    return {"question_id": qid, "model_id": "ref", "choices": [{"index": 0, "turns": turns}]}


def test_mt_bench_reference_errors(tmp_path):
    questions = write_jsonl(tmp_path / "q.jsonl", [mt_row(1, "math"), mt_row(2, "writing")])
    ok = write_jsonl(tmp_path / "ok.jsonl", [ref_row(1, ["答1", "答2"])])
    items = load_eval_items(EvalSet("mt", format="mt_bench", path=questions, reference_path=ok))
    assert [i.references for i in items] == [("答1", "答2"), None]  # writing needs none

    missing = write_jsonl(tmp_path / "missing.jsonl", [ref_row(2, ["w1", "w2"])])
    with pytest.raises(
        RecordError, match="^" + re.escape(missing) + r": no reference answer for question_id '1'"
    ):
        load_eval_items(EvalSet("mt", format="mt_bench", path=questions, reference_path=missing))

    short = write_jsonl(tmp_path / "short.jsonl", [ref_row(1, ["only one"])])
    with pytest.raises(RecordError, match=r"q.jsonl:1: field 'turns': 2 turns but 1 reference turns"):
        load_eval_items(EvalSet("mt", format="mt_bench", path=questions, reference_path=short))

    dup = write_jsonl(tmp_path / "dup.jsonl", [ref_row(1, ["a", "b"]), ref_row(1, ["a", "b"])])
    with pytest.raises(
        RecordError, match="^" + re.escape(dup) + r":2: field 'question_id': duplicate id '1'"
    ):
        load_eval_items(EvalSet("mt", format="mt_bench", path=questions, reference_path=dup))

    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question_id": 1, "choices": []}])
    with pytest.raises(
        RecordError, match="^" + re.escape(bad) + r":1: field 'choices' must be a non-empty list"
    ):
        load_eval_items(EvalSet("mt", format="mt_bench", path=questions, reference_path=bad))

    empty_turn = write_jsonl(tmp_path / "empty_turn.jsonl", [ref_row(1, ["a", " "])])
    with pytest.raises(RecordError, match=r":1: field 'choices\[0\].turns\[1\]' must be a non-empty string"):
        load_eval_items(EvalSet("mt", format="mt_bench", path=questions, reference_path=empty_turn))


def test_config_validation():
    with pytest.raises(ValueError, match="exactly one of path or hf_dataset"):
        EvalSet("x", format="jalign")
    with pytest.raises(ValueError, match="exactly one of path or hf_dataset"):
        EvalSet("x", format="jalign", path="a.jsonl", hf_dataset="elyza/ELYZA-tasks-100", revision="r")
    with pytest.raises(ValueError, match="at most one of reference_path"):
        EvalSet(
            "x",
            format="jalign",
            path="a.jsonl",
            reference_path="r.jsonl",
            reference_hf_dataset="d",
            reference_revision="r",
        )
    with pytest.raises(ConfigError, match=r"^evaluate.sets\[0\].limit: 0 is out of range \(allowed: >= 1\)$"):
        from_dict(
            EvalSet, {"name": "x", "format": "jalign", "path": "a.jsonl", "limit": 0}, "evaluate.sets[0]"
        )
    with pytest.raises(ConfigError, match=r"^evaluate.sets\[0\].format: required key is missing$"):
        from_dict(EvalSet, {"name": "x", "path": "a.jsonl"}, "evaluate.sets[0]")
    with pytest.raises(ConfigError, match=r"^evaluate.sets\[0\]: eval set 'x': set exactly one of path"):
        from_dict(EvalSet, {"name": "x", "format": "jalign"}, "evaluate.sets[0]")
    with pytest.raises(ConfigError, match=r"evaluate.sets\[0\].format: 'mtbench' is not one of"):
        from_dict(EvalSet, {"name": "x", "path": "a.jsonl", "format": "mtbench"}, "evaluate.sets[0]")
    with pytest.raises(ConfigError, match=r"evaluate.sets\[0\].promt_field: unknown key"):
        from_dict(EvalSet, {"name": "x", "path": "a.jsonl", "promt_field": "p"}, "evaluate.sets[0]")


def test_hub_sets_need_a_revision_and_a_split():
    """An unpinned Hub set may change under you: a revision and a split are required, not a warning."""
    with pytest.raises(ValueError, match=r"'e': elyza/ELYZA-tasks-100 needs revision .* and split$"):
        EvalSet("e", format="elyza", hf_dataset="elyza/ELYZA-tasks-100")
    with pytest.raises(ValueError, match=r"needs revision"):
        EvalSet("e", format="elyza", hf_dataset="elyza/ELYZA-tasks-100", split="test")
    with pytest.raises(ValueError, match=r"and split"):
        EvalSet("e", format="elyza", hf_dataset="elyza/ELYZA-tasks-100", revision="abc123")
    with pytest.raises(ValueError, match=r"refs/answers needs reference_revision .* and reference_split$"):
        EvalSet("m", format="mt_bench", path="q.jsonl", reference_hf_dataset="refs/answers")
    with pytest.raises(ValueError, match=r"refs/answers needs reference_revision"):
        EvalSet(
            "m", format="mt_bench", path="q.jsonl", reference_hf_dataset="refs/answers", reference_split="t"
        )
    pinned = EvalSet("e", format="elyza", hf_dataset="elyza/ELYZA-tasks-100", revision="abc123", split="test")
    assert pinned.source == "elyza/ELYZA-tasks-100@abc123[test]"
    configured = dataclasses.replace(pinned, hf_config="ja")
    assert configured.source == "elyza/ELYZA-tasks-100/ja@abc123[test]"
    refs = EvalSet(
        "m",
        format="mt_bench",
        path="q.jsonl",
        reference_hf_dataset="refs/answers",
        reference_revision="r1",
        reference_split="train",
    )
    assert refs.source == "q.jsonl"


def test_every_config_field_is_documented():
    assert all(f.metadata.get("help") for f in dataclasses.fields(EvalSet))


def test_duplicate_set_names_are_rejected(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(
        "evaluate:\n  sets:\n    - {name: a, format: jalign, path: x.jsonl}\n"
        "    - {name: a, path: y.jsonl, format: elyza}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="names must be unique"):
        load_eval_sets(params)
