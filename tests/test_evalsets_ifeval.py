"""jalign.evalsets' ifeval format: our composed IFEval-ja set, M-IFEval's Japanese inputs (../shared/data,
skipped when absent), bad instruction rows, and the contamination prompts of composed rows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from jalign.errors import JalignError
from jalign.evalsets import EvalSet, load_eval_items, load_eval_prompts
from jalign.ifeval.compose import compose_rows, read_questions

REPO = Path(__file__).resolve().parents[1]
IFEVAL_JA = REPO / "data" / "eval" / "ifeval_ja.jsonl"


def shared_file(relative: str) -> str:
    # ../shared/data beside the checkout (CI lays it there); JALIGN_SHARED_DATA for a checkout elsewhere
    path = Path(os.environ.get("JALIGN_SHARED_DATA") or REPO.parent / "shared" / "data") / relative
    if not path.is_file():
        pytest.skip(f"{relative} is absent from shared/data (a fresh clone has no shared/)")
    return str(path)


def write_jsonl(path: Path, rows: list) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def rows_of(path: Path | str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def test_our_ifeval_ja_set_loads_with_instructions_and_questions():
    items = load_eval_items(EvalSet("ifeval-ja", format="ifeval", path=str(IFEVAL_JA)))
    rows = rows_of(IFEVAL_JA)
    assert len(items) == len(rows) > 0
    for item, row in zip(items, rows, strict=True):
        assert item.format == "ifeval" and item.set_name == "ifeval-ja"
        assert item.id == row["key"] and item.turns == (row["prompt"],)
        assert item.question == row["question"] and item.turns[0].startswith(item.question)
        assert item.instruction_ids == tuple(row["instruction_id_list"])
        assert item.instruction_kwargs == tuple(row["kwargs"])
        assert item.references is None


def test_params_yaml_names_the_ifeval_ja_set():
    from jalign.evalsets import load_eval_sets

    sets = {s.name: s for s in load_eval_sets(REPO / "params.yaml")}
    assert sets["ifeval-ja"].format == "ifeval" and sets["ifeval-ja"].path == "data/eval/ifeval_ja.jsonl"


def test_m_ifeval_japanese_inputs_load_as_ifeval():
    path = shared_file("m_ifeval_ja/ja_input_data.jsonl")
    items = load_eval_items(EvalSet("m-ifeval-ja", format="ifeval", path=path))
    rows = rows_of(path)
    assert len(items) == len(rows) == 172
    assert isinstance(rows[0]["key"], int)
    assert [i.id for i in items] == [str(r["key"]) for r in rows]  # int keys become strings
    assert all(i.question is None and len(i.turns) == 1 for i in items)  # no question field upstream
    assert items[0].instruction_ids == tuple(rows[0]["instruction_id_list"])
    assert items[0].instruction_kwargs == tuple(rows[0]["kwargs"])
    prompts = load_eval_prompts([EvalSet("m-ifeval-ja", format="ifeval", path=path)])
    assert [p.prompt for p in prompts] == [r["prompt"] for r in rows]  # no question: the full prompt


GOOD = {"key": "k1", "prompt": "質問です。読点を使わないでください。", "question": "質問です。",
        "instruction_id_list": ["ja:punctuation:no_comma"], "kwargs": [{}]}  # fmt: skip


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"instruction_id_list": ["ja:no_such:id"]}, r"ja:no_such:id"),
        ({"instruction_id_list": ["ja:keywords:existence"], "kwargs": [{}]}, r"keywords"),
        ({"instruction_id_list": []}, r"instruction_id_list"),
        ({"instruction_id_list": "ja:punctuation:no_comma"}, r"instruction_id_list"),
        ({"kwargs": "nope"}, r"kwargs"),
        ({"kwargs": [{}, {}]}, r"kwargs"),
    ],
)
def test_a_bad_instruction_row_names_file_and_line(tmp_path, bad, message):
    path = write_jsonl(tmp_path / "s.jsonl", [GOOD, {**GOOD, "key": "k2", **bad}])
    with pytest.raises(JalignError, match=rf"{path}:2: .*{message}"):
        load_eval_items(EvalSet("s", format="ifeval", path=path))


def test_a_row_without_instructions_is_an_error(tmp_path):
    row = {k: v for k, v in GOOD.items() if k != "kwargs"}
    path = write_jsonl(tmp_path / "s.jsonl", [row])
    with pytest.raises(JalignError, match=rf"{path}:1: .*kwargs"):
        load_eval_items(EvalSet("s", format="ifeval", path=path))


def test_contamination_prompts_of_composed_rows_are_their_questions(tmp_path):
    composed = compose_rows(
        ["日本の四季を教えてください。", "朝ご飯の献立を考えてください。"], seed=3, key="c"
    )
    plain = {"key": "plain", "prompt": "読点を使わずに答えてください。", "instruction_id_list": ["ja:punctuation:no_comma"],
             "kwargs": [{}]}  # fmt: skip
    path = write_jsonl(tmp_path / "s.jsonl", [*composed, plain])
    prompts = load_eval_prompts([EvalSet("s", format="ifeval", path=path)])
    assert [(p.id, p.prompt) for p in prompts] == [
        ("c-001", "日本の四季を教えてください。"),
        ("c-002", "朝ご飯の献立を考えてください。"),
        ("plain", "読点を使わずに答えてください。"),
    ]
    assert all(c["prompt"] != c["question"] for c in composed)  # the prompt would have been different


def test_the_committed_set_contaminates_by_question_only():
    prompts = load_eval_prompts([EvalSet("ifeval-ja", format="ifeval", path=str(IFEVAL_JA))])
    assert [p.prompt for p in prompts] == read_questions(REPO / "data" / "ifeval" / "eval_questions.txt")
