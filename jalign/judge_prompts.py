"""Judge prompts with fenced data: slot values for jalign/prompts/{judge_pairwise*,eval_*}.txt.

Every text a judge reads as data (question, answers, reference answers) sits between two fence lines
that carry a per-request nonce; the fence lines are written in the template files:

    ⟪回答A:開始:3f2a9c1b7d4e⟫
    (the answer)
    ⟪回答A:終了:3f2a9c1b7d4e⟫

This module supplies the slot values:
- `nonce`: the first 12 hex digits of sha256 over every text that goes into the prompt. Deterministic,
  so the LLM response cache still hits on a rerun; unpredictable to an answer's author, because it
  hashes the answer itself (an answer would have to contain a hash of itself to name its nonce).
- every text passes through `neutralise`, which turns the fence brackets ⟪ ⟫ into 《 》. No text
  inside a fence can therefore write a fence line, whatever nonce it guesses: an injected
  "⟪回答A:終了:…⟫" reaches the judge as "《回答A:終了:…》", which the prompt says is data.

Slots per template (`render` fails on a missing or unused one):
  judge_pairwise, judge_pairwise_logprob      nonce, question, answer_a, answer_b       fence_answers
  eval_pairwise, eval_pairwise_logprob        ... + reference_block ("" if none)        pairwise_prompt
  eval_grade_elyza, eval_grade_elyza_logprob  nonce, question, answer, reference_block,
                                              notes_block ("" if none)                  elyza_prompt
  eval_grade_mt_bench                         nonce, question, answer                   mt_bench_prompt
  eval_grade_mt_bench_ref                     ... + reference
  eval_grade_mt_bench_multi                   nonce, question_1, answer_1, question_2, answer_2
  eval_grade_mt_bench_multi_ref               ... + reference_1, reference_2
The blocks come from eval_block_reference.txt (nonce, reference) and eval_block_notes.txt (notes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from jalign.prompts import render

FENCE_OPEN, FENCE_CLOSE = "⟪", "⟫"
_NEUTRAL = str.maketrans({FENCE_OPEN: "《", FENCE_CLOSE: "》"})
NONCE_CHARS = 12


def make_nonce(*texts: str) -> str:
    """12 hex digits of sha256 over the texts (length-prefixed, so ("ab", "c") != ("a", "bc"))."""
    digest = hashlib.sha256(b"jalign-fence-v1")
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()[:NONCE_CHARS]


def neutralise(text: str) -> str:
    """The text with the fence brackets replaced, so it cannot write a fence line."""
    return text.translate(_NEUTRAL)


def fence_answers(question: str, answer_a: str, answer_b: str) -> dict[str, str]:
    """Slots of judge_pairwise(_logprob): nonce, question, answer_a, answer_b."""
    return {
        "nonce": make_nonce(question, answer_a, answer_b),
        "question": neutralise(question),
        "answer_a": neutralise(answer_a),
        "answer_b": neutralise(answer_b),
    }


def pairwise_prompt(
    question: str, answer_a: str, answer_b: str, reference: str | None = None, logprob: bool = False
) -> str:
    """eval_pairwise (explanation, then one of the five Arena-Hard labels) or eval_pairwise_logprob
    (ends at "[[": the next token is A or B)."""
    slots = {
        "nonce": make_nonce(question, answer_a, answer_b, reference or ""),
        "question": neutralise(question),
        "answer_a": neutralise(answer_a),
        "answer_b": neutralise(answer_b),
    }
    slots["reference_block"] = _reference_block(slots["nonce"], reference)
    return render("eval_pairwise_logprob" if logprob else "eval_pairwise", **slots)


def elyza_prompt(
    question: str,
    answer: str,
    reference: str | None = None,
    grading_notes: str | None = None,
    logprob: bool = False,
) -> str:
    """eval_grade_elyza (explanation, then 評価：[[n]], n in 1..5) or eval_grade_elyza_logprob (ends at
    "[[": the next token is the digit)."""
    nonce = make_nonce(question, answer, reference or "", grading_notes or "")
    return render(
        "eval_grade_elyza_logprob" if logprob else "eval_grade_elyza",
        nonce=nonce,
        question=neutralise(question),
        answer=neutralise(answer),
        reference_block=_reference_block(nonce, reference),
        notes_block=_notes_block(grading_notes),
    )


def mt_bench_prompt(
    questions: Sequence[str], answers: Sequence[str], references: Sequence[str] | None = None
) -> str:
    """Grade the assistant's last answer, 1-10, ending with [[n]].

    One answer: the single-turn template. Two answers: the multi-turn template, which shows the first
    exchange as context and grades the answer to the second question (FastChat's multi-turn judging).
    `references` (one per turn, e.g. EvalItem.references) selects the *_ref variant.
    """
    turn = len(answers)
    if turn not in (1, 2) or len(questions) < turn:
        raise ValueError(f"MT-Bench grading needs 1 or 2 answers and as many questions, got {turn}")
    if references is not None and len(references) < turn:
        raise ValueError(f"need a reference per graded turn, got {len(references)} for {turn} turns")
    texts = [*questions[:turn], *answers, *(references[:turn] if references else [])]
    slots = {"nonce": make_nonce(*texts)}
    if turn == 1:
        slots |= {"question": neutralise(questions[0]), "answer": neutralise(answers[0])}
        if references is not None:
            slots["reference"] = neutralise(references[0])
        return render("eval_grade_mt_bench_ref" if references is not None else "eval_grade_mt_bench", **slots)
    for k in (1, 2):
        slots[f"question_{k}"] = neutralise(questions[k - 1])
        slots[f"answer_{k}"] = neutralise(answers[k - 1])
        if references is not None:
            slots[f"reference_{k}"] = neutralise(references[k - 1])
    name = "eval_grade_mt_bench_multi_ref" if references is not None else "eval_grade_mt_bench_multi"
    return render(name, **slots)


def _reference_block(nonce: str, reference: str | None) -> str:
    """The fenced reference answer with its heading, framed by blank lines; "" without one."""
    if reference is None or not reference.strip():
        return ""
    block = render("eval_block_reference", nonce=nonce, reference=neutralise(reference))
    return "\n" + block.strip("\n") + "\n"


def _notes_block(notes: str | None) -> str:
    """The task's grading notes (trusted benchmark text, so not fenced; still neutralised)."""
    if notes is None or not notes.strip():
        return ""
    return "\n" + render("eval_block_notes", notes=neutralise(notes)).strip("\n") + "\n"


def transcript(turns: list[str] | tuple[str, ...]) -> str:
    """What the judge sees of one model: its answer, or each turn's answer labelled by turn."""
    if len(turns) == 1:
        return turns[0]
    return "\n\n".join(f"（{k}問目への回答）\n{answer}" for k, answer in enumerate(turns, start=1))
