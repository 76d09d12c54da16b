"""jalign.ifeval.compose: questions files, compatible instruction draws, reproducible rows, and the
committed IFEval-ja evaluation set (reproducible from the code, held out from the training questions)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from jalign.dedup import max_similarity
from jalign.ifeval.compose import ComposeError, compose_rows, constrain, load_specs, read_questions
from jalign.ifeval.evaluation import validate_instructions

REPO = Path(__file__).resolve().parents[2]
EVAL_QUESTIONS = REPO / "data" / "ifeval" / "eval_questions.txt"
TRAIN_QUESTIONS = REPO / "data" / "ifeval" / "train_questions.txt"
EVAL_SET = REPO / "data" / "eval" / "ifeval_ja.jsonl"
QUESTION = "日本の四季について教えてください。"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "questions.txt"
    path.write_text(text, encoding="utf-8")
    return path


# -- read_questions -------------------------------------------------------------------------------------


def test_read_questions_skips_comments_and_blank_lines_and_strips(tmp_path):
    path = write(tmp_path, "# 見出し\n\n  質問一です。  \n#質問二です。\n\n質問三です。\n")
    assert read_questions(path) == ["質問一です。", "質問三です。"]


def test_a_repeated_question_names_the_file_line_and_first_line(tmp_path):
    path = write(tmp_path, "# c\n質問一です。\n質問二です。\n\n 質問一です。\n")
    with pytest.raises(ComposeError, match=rf"{path}:5: question repeated \(first at line 2\)"):
        read_questions(path)


def test_a_file_of_only_comments_is_an_error(tmp_path):
    with pytest.raises(ComposeError, match="no questions"):
        read_questions(write(tmp_path, "# only a comment\n\n"))


# -- constrain ------------------------------------------------------------------------------------------


def test_constrain_never_picks_two_conflicting_ids_over_many_seeds():
    specs = load_specs()
    assert any(spec.conflicts for spec in specs.values())  # otherwise this test proves nothing
    seen_ids: set[str] = set()
    for seed in range(400):
        row = constrain(QUESTION, random.Random(seed), 3)
        ids = row["instruction_id_list"]
        assert len(ids) == 3 and len(set(ids)) == 3
        seen_ids |= set(ids)
        for a in ids:
            for b in ids:
                assert b not in specs[a].conflicts, (seed, a, b)
    assert seen_ids == set(specs)  # every id is drawn at some seed


def test_constrain_appends_the_rendered_sentences_and_records_kwargs_per_id():
    specs = load_specs()
    for seed in range(60):
        count = 1 + seed % 3
        row = constrain(QUESTION, random.Random(seed), count)
        assert row["question"] == QUESTION
        assert row["prompt"].startswith(QUESTION) and len(row["prompt"]) > len(QUESTION)
        assert len(row["instruction_id_list"]) == count == len(row["kwargs"])
        rest = row["prompt"][len(QUESTION) :]
        for iid, kwargs in zip(row["instruction_id_list"], row["kwargs"], strict=True):
            spec = specs[iid]
            assert kwargs in spec.kwargs  # one of the spec's own argument sets, for this id
            rendered = [spec.render(p, kwargs) for p in spec.phrasings]
            hit = next((r for r in rendered if rest.startswith(r)), None)
            assert hit is not None, (seed, iid, rest)  # appended in order, one sentence per id
            rest = rest[len(hit) :]
            for value in kwargs.values():  # the kwargs are the ones the sentence states
                shown = value[0] if isinstance(value, list) else value
                assert str(shown) in hit
        assert rest == ""
        validate_instructions(row["instruction_id_list"], row["kwargs"], f"seed {seed}")


def test_constrain_stops_at_the_ids_compatible_with_each_other():
    specs = {
        k: v for k, v in load_specs().items() if k in ("ja:keywords:existence", "ja:keywords:forbidden_words")
    }
    row = constrain(QUESTION, random.Random(0), 2, specs)
    assert len(row["instruction_id_list"]) == 1  # the two conflict: only one can be asked


def test_render_names_a_field_no_kwargs_give():
    spec = load_specs()["ja:punctuation:no_comma"]
    with pytest.raises(ComposeError, match=r"ja:punctuation:no_comma: phrasing .* needs 'end_phrase'"):
        spec.render("「{end_phrase}」で終えてください。", {})


def test_specs_with_an_unknown_conflict_or_no_phrasings_are_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a:\n  phrasings: [x]\n  kwargs: [{}]\n  conflicts: [nope]\n", encoding="utf-8")
    with pytest.raises(ComposeError, match=r"a: conflicts name unknown ids \['nope'\]"):
        load_specs(bad)
    bad.write_text("a:\n  phrasings: []\n  kwargs: [{}]\n", encoding="utf-8")
    with pytest.raises(ComposeError, match="needs non-empty 'phrasings' and 'kwargs'"):
        load_specs(str(bad))


def test_every_spec_is_a_known_instruction_with_valid_kwargs():
    for iid, spec in load_specs().items():
        for kwargs in spec.kwargs:
            validate_instructions([iid], [kwargs], iid)
            for phrasing in spec.phrasings:
                assert spec.render(phrasing, kwargs)  # every wording renders with every argument set


# -- compose_rows ---------------------------------------------------------------------------------------

QUESTIONS = [f"質問{n}について教えてください。" for n in range(1, 41)]


def test_compose_rows_is_reproducible_from_its_seed():
    rows = compose_rows(QUESTIONS, seed=5, min_instructions=1, max_instructions=3, key="t")
    assert rows == compose_rows(QUESTIONS, seed=5, min_instructions=1, max_instructions=3, key="t")
    assert rows != compose_rows(QUESTIONS, seed=6, min_instructions=1, max_instructions=3, key="t")


def test_compose_rows_keys_counts_and_validity():
    rows = compose_rows(QUESTIONS, seed=1, min_instructions=1, max_instructions=3, key="abc")
    assert [r["key"] for r in rows] == [f"abc-{n:03d}" for n in range(1, 41)]
    assert [r["question"] for r in rows] == QUESTIONS
    counts = [len(r["instruction_id_list"]) for r in rows]
    assert set(counts) == {1, 2, 3}  # 40 draws of 1..3 hit every count
    for row in rows:
        validate_instructions(row["instruction_id_list"], row["kwargs"], row["key"])
        assert set(row) == {"key", "prompt", "question", "instruction_id_list", "kwargs"}
    assert {len(r["instruction_id_list"]) for r in compose_rows(QUESTIONS, 1, 2, 2)} == {2}
    assert compose_rows(QUESTIONS[:1], 1)[0]["key"] == "q-001"  # default key


@pytest.mark.parametrize(("low", "high"), [(0, 2), (2, 1), (1, 4), (3, 2), (-1, 1)])
def test_compose_rows_rejects_bad_instruction_counts(low, high):
    with pytest.raises(ComposeError, match="need 1 <= min_instructions <= max_instructions <= 3"):
        compose_rows(QUESTIONS, seed=0, min_instructions=low, max_instructions=high)


# -- the committed data ---------------------------------------------------------------------------------


def test_the_committed_eval_set_is_reproducible_from_its_questions():
    committed = [
        json.loads(line) for line in EVAL_SET.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    expected = compose_rows(read_questions(EVAL_QUESTIONS), seed=11, key="ifeval-ja")
    assert len(committed) == len(expected)
    for got, want in zip(committed, expected, strict=True):
        assert got == want, f"{EVAL_SET}: {got['key']} differs from compose_rows (regenerate the file)"


def test_train_questions_are_held_out_from_the_eval_questions():
    """Disjoint, and no near-copy. Short requests share their ending (〜方法を教えてください。), so character
    ROUGE-L between unrelated questions reaches 0.75; the profile's contamination threshold (0.75) drops
    the few above it at the preferences stage, counted there."""
    train, held_out = read_questions(TRAIN_QUESTIONS), read_questions(EVAL_QUESTIONS)
    assert not set(train) & set(held_out)
    scores, nearest = max_similarity(train, held_out)
    close = [
        (q, held_out[i], round(s, 3)) for q, s, i in zip(train, scores, nearest, strict=True) if s >= 0.8
    ]
    assert close == []
