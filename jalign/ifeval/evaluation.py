"""Validate instructions, check a response in strict or loose mode, read an IFEval JSONL, tabulate.

**Strict** (IFEval, arXiv 2311.07911): each instruction's checker on the response as given; an empty
or all-whitespace response follows nothing. **Loose**: an instruction is followed if the checker
passes on any of eight variants that are not blank: the response, the response with its first line,
its last line or both removed (each of those three stripped), and each of these four with every `*`
removed (markdown emphasis). M-IFEval's evaluation_main.py builds exactly these eight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from jalign.errors import JalignError
from jalign.ifeval.checkers import CHECKERS, RELATIONS, Param
from jalign.ifeval.japanese import LANGDETECT_CODES
from jalign.records import read_jsonl_lines

Mode = Literal["strict", "loose"]
MODES: tuple[str, ...] = ("strict", "loose")
_BLOCK = 32  # rows per task when evaluate_rows runs in several processes
INSTRUCTION_IDS: tuple[str, ...] = tuple(sorted(CHECKERS))


class IFEvalInputError(JalignError, ValueError):
    """Bad IFEval input: the message names the place (file:line), the instruction id and the kwarg."""


def _kind_error(param: Param, value: Any) -> str | None:
    """Why `value` is not a valid `param`, with the fix, or None when it is valid."""
    kind, got = param.kind, f"got {value!r}"
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return None if ok else f"must be an integer >= 0, {got}"
    if kind == "relation":
        return None if value in RELATIONS else f"must be '未満' (fewer than) or '以上' (at least), {got}"
    if kind == "words":
        ok = isinstance(value, list) and value and all(isinstance(w, str) and w for w in value)
        return None if ok else f"must be a non-empty list of non-empty strings, {got}"
    if kind == "language":
        ok = isinstance(value, str) and value in LANGDETECT_CODES
        return None if ok else f"must be a language code langdetect knows (e.g. 'ja', 'en', 'zh-cn'), {got}"
    if kind == "hiragana":
        ok = isinstance(value, str) and len(value) == 1 and "ぁ" <= value <= "ん"
        return None if ok else f"must be one hiragana letter (ぁ..ん), {got}"
    ok = isinstance(value, str) and bool(value.strip())
    return None if ok else f"must be a non-empty string, {got}"


def _check_one(instruction_id: Any, kwargs: Any, where: str) -> None:
    if not isinstance(instruction_id, str) or instruction_id not in CHECKERS:
        raise IFEvalInputError(
            f"{where}: unknown instruction id {instruction_id!r}; use one of the {len(INSTRUCTION_IDS)} "
            f"ids of M-IFEval's Japanese set (jalign.ifeval.INSTRUCTION_IDS), e.g. 'ja:punctuation:no_comma'"
        )
    if not isinstance(kwargs, Mapping):
        raise IFEvalInputError(
            f"{where}: {instruction_id}: kwargs must be an object ({{}} when none), got {kwargs!r}"
        )
    params = CHECKERS[instruction_id].params
    names = {p.name for p in params}
    # upstream files carry null for keys an instruction does not use: those are ignored
    extra = sorted(k for k, v in kwargs.items() if k not in names and v is not None)
    if extra:
        allowed = ", ".join(sorted(names)) or "none"
        raise IFEvalInputError(
            f"{where}: {instruction_id}: unexpected kwarg '{extra[0]}' (allowed: {allowed}); remove it"
        )
    for param in params:
        if kwargs.get(param.name) is None:
            raise IFEvalInputError(f"{where}: {instruction_id}: missing kwarg '{param.name}'; add it")
        problem = _kind_error(param, kwargs[param.name])
        if problem:
            raise IFEvalInputError(f"{where}: {instruction_id}: kwarg '{param.name}' {problem}")
    if instruction_id.endswith("nth_paragraph_first_word") and not (
        1 <= kwargs["nth_paragraph"] <= kwargs["num_paragraphs"]
    ):
        raise IFEvalInputError(
            f"{where}: {instruction_id}: kwarg 'nth_paragraph' must be between 1 and num_paragraphs "
            f"({kwargs['num_paragraphs']}), got {kwargs['nth_paragraph']}"
        )


def validate_instructions(
    instruction_ids: Sequence[str], kwargs: Sequence[Mapping[str, Any]], where: str
) -> None:
    """Raise IFEvalInputError (message starting with `where`) unless every id is known and its kwargs
    are exactly the ones it needs, with the right types; the two lists must pair up one to one."""
    if not isinstance(instruction_ids, list | tuple) or not instruction_ids:
        raise IFEvalInputError(
            f"{where}: instruction_id_list must be a non-empty list of ids, got {instruction_ids!r}"
        )
    if not isinstance(kwargs, list | tuple) or len(kwargs) != len(instruction_ids):
        count = len(kwargs) if isinstance(kwargs, list | tuple) else repr(kwargs)
        raise IFEvalInputError(
            f"{where}: kwargs must be a list with one object per instruction id: "
            f"{len(instruction_ids)} ids, kwargs {count}"
        )
    for instruction_id, kw in zip(instruction_ids, kwargs, strict=True):
        _check_one(instruction_id, kw, where)


def loose_variants(response: str) -> list[str]:
    """The eight texts loose mode tries (see the module docstring), blanks and repeats left out."""
    lines = response.split("\n")
    trimmed = [
        response,
        "\n".join(lines[1:]).strip(),
        "\n".join(lines[:-1]).strip(),
        "\n".join(lines[1:-1]).strip(),
    ]
    variants = [*trimmed, *(t.replace("*", "") for t in trimmed)]
    return [v for v in dict.fromkeys(variants) if v.strip()]


def follows_instructions(
    response: str,
    instruction_ids: Sequence[str],
    kwargs: Sequence[Mapping[str, Any]],
    prompt: str,
    mode: Mode,
) -> list[bool]:
    """Whether `response` follows each instruction, in order. `prompt` is part of IFEval's interface
    (some English instructions read it); the Japanese ones take what they need from kwargs."""
    if mode not in MODES:
        raise IFEvalInputError(f"mode must be 'strict' or 'loose', got {mode!r}")
    validate_instructions(instruction_ids, kwargs, "follows_instructions")
    if not isinstance(response, str):
        texts: list[str] = []  # no answer (null): nothing is followed
    elif mode == "strict":
        texts = [response] if response.strip() else []
    else:
        texts = loose_variants(response)
    return [
        any(CHECKERS[i].check(text, kw) for text in texts)
        for i, kw in zip(instruction_ids, kwargs, strict=True)
    ]


def _read_row(record: dict[str, Any], where: str) -> dict[str, Any]:
    for field in ("prompt", "instruction_id_list", "kwargs"):
        if field not in record:
            raise IFEvalInputError(f"{where}: missing field '{field}'")
    if not isinstance(record["prompt"], str):
        raise IFEvalInputError(f"{where}: field 'prompt' must be a string, got {record['prompt']!r}")
    if "response" not in record:
        raise IFEvalInputError(f"{where}: missing field 'response' (the model's answer to score)")
    response = record["response"]
    # null is kept: an unanswered prompt follows nothing (M-IFEval's evaluation does the same)
    if response is not None and not isinstance(response, str):
        raise IFEvalInputError(f"{where}: field 'response' must be a string or null, got {response!r}")
    key = record.get("key")
    if key is not None and (isinstance(key, bool) or not isinstance(key, int | str)):
        raise IFEvalInputError(f"{where}: field 'key' must be an integer or a string, got {key!r}")
    validate_instructions(record["instruction_id_list"], record["kwargs"], where)
    return {
        "key": key,
        "prompt": record["prompt"],
        "response": response,
        "instruction_id_list": list(record["instruction_id_list"]),
        "kwargs": [dict(kw) for kw in record["kwargs"]],
    }


def read_ifeval_file(path: str | Path) -> list[dict[str, Any]]:
    """Rows of an IFEval JSONL (prompt, response, instruction_id_list, kwargs, optional key), validated;
    an error names file:line, the field, and for an instruction its id and kwarg."""
    return [_read_row(record, f"{path}:{line}") for line, record in read_jsonl_lines(path)]


def _evaluate_serial(rows: Sequence[Mapping[str, Any]], mode: Mode) -> list[dict[str, Any]]:
    results = []
    for row in rows:
        followed = follows_instructions(
            row["response"], row["instruction_id_list"], row["kwargs"], row["prompt"], mode
        )
        results.append(
            {
                "key": row.get("key"),
                "follow_instruction_list": followed,
                "follow_all_instructions": all(followed),
            }
        )
    return results


def evaluate_rows(rows: Sequence[Mapping[str, Any]], mode: Mode, jobs: int = 1) -> list[dict[str, Any]]:
    """One result per row, in order: key, follow_instruction_list, follow_all_instructions.

    jobs > 1 checks blocks of rows in that many worker processes (janome, pure Python, takes nearly
    all the time). Same results; faster only with idle cores: on the shared 2-vCPU VM beside another
    busy process, 2 jobs were 1.28x slower than 1 (benchmarks/RESULTS.md, ifeval).
    """
    if jobs <= 1 or len(rows) < 2 * _BLOCK:
        return _evaluate_serial(rows, mode)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork: the workers start with everything already imported (the command has no threads)
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    # small blocks balance the load: answer lengths (so janome's work) vary a lot between models
    blocks = [list(rows[i : i + _BLOCK]) for i in range(0, len(rows), _BLOCK)]
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        done = pool.map(_evaluate_serial, blocks, [mode] * len(blocks))
        return [result for block in done for result in block]


def _share(correct: int, total: int) -> dict[str, Any]:
    return {"correct": correct, "total": total, "accuracy": correct / total if total else 0.0}


def accuracy_table(results: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Prompt-level accuracy (all of a row's instructions followed), instruction-level accuracy, and
    accuracy per instruction id (ids in sorted order), as IFEval reports them."""
    if len(results) != len(rows):
        raise ValueError(f"{len(results)} results for {len(rows)} rows")
    per_id: dict[str, list[int]] = {}
    followed_total = instructions_total = prompts_followed = 0
    for result, row in zip(results, rows, strict=True):
        flags = result["follow_instruction_list"]
        prompts_followed += all(flags)
        followed_total += sum(flags)
        instructions_total += len(flags)
        for instruction_id, flag in zip(row["instruction_id_list"], flags, strict=True):
            counts = per_id.setdefault(instruction_id, [0, 0])
            counts[0] += flag
            counts[1] += 1
    return {
        "prompt_level": _share(prompts_followed, len(rows)),
        "instruction_level": _share(followed_total, instructions_total),
        "per_instruction": {i: _share(*per_id[i]) for i in sorted(per_id)},
    }
