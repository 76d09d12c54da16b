"""Evaluation sets (params.yaml `evaluate.sets`): loaders for our own JSONL, ELYZA-tasks-100, Japanese
MT-Bench, Arena-Hard (v0.1, v2.0, m-arena-hard-ja) and verifiable-instruction sets (IFEval / M-IFEval
input format), plus the contamination check that keeps every user turn of every evaluation item out of
the training data.

A loader turns each row into one `EvalItem` (the user turns, category, per-turn references, grading
notes). Bad rows fail with `file:line: field ...` (for Hub sets the line is the 1-based row number).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jalign.config import ConfigError, from_dict, param, read_params
from jalign.records import RecordError, read_jsonl_lines

EvalFormat = Literal["jalign", "elyza", "mt_bench", "arena_hard", "ifeval"]

# FastChat llm_judge: the categories judged against a reference answer (NEED_REF_CATS) and the
# sampling temperature used to answer each category (temperature_config in gen_model_answer).
MT_BENCH_REFERENCE_CATEGORIES = ("math", "reasoning", "coding")
MT_BENCH_TEMPERATURES = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
}

# Per format, the fields read when no override is given. Tuples are tried in order (the first field a
# row has is used): Arena-Hard calls its id `uid` (v0.1, v2.0) or `question_id` (m-arena-hard-ja), its
# text `prompt` or `turns`.
_DEFAULTS: dict[str, dict[str, tuple[str, ...]]] = {
    "jalign": {"id": ("id",), "text": ("prompt",), "category": ("category",), "notes": ("grading_notes",)},
    "elyza": {"id": ("id",), "text": ("input",), "reference": ("output",), "notes": ("eval_aspect",)},
    "mt_bench": {"id": ("question_id",), "text": ("turns",), "category": ("category",)},
    "arena_hard": {
        "id": ("uid", "question_id"),
        "text": ("prompt", "turns"),
        "category": ("category",),
        "subcategory": ("subcategory",),
    },
    # M-IFEval / IFEval input rows: key, prompt, instruction_id_list, kwargs (+ jalign's `question`).
    "ifeval": {"id": ("key",), "text": ("prompt",), "question": ("question",)},
}


@dataclass(frozen=True)
class EvalSet:
    """One entry of `evaluate.sets` in params.yaml."""

    name: str = param("Short stable name; prefixes reports, battles and contamination hits.")
    format: EvalFormat = param(
        "Row layout: jalign (id, prompt, category, grading_notes), elyza (ELYZA-tasks-100: input, output, "
        "eval_aspect), mt_bench (Japanese MT-Bench: question_id, category, two turns), arena_hard "
        "(uid / question_id, prompt or turns, category), ifeval (IFEval / M-IFEval: key, prompt, "
        "instruction_id_list, kwargs; scored by program, strict and loose, not by the judge)."
    )
    path: str | None = param("Local JSONL file (exactly one of path / hf_dataset).", default=None)
    hf_dataset: str | None = param(
        "Hugging Face dataset id, loaded with datasets.load_dataset.", default=None
    )
    hf_config: str | None = param("Dataset configuration name, if any.", default=None)
    revision: str | None = param("Dataset commit or tag; needed with hf_dataset (pin it).", default=None)
    split: str | None = param("Dataset split; needed with hf_dataset.", default=None)
    prompt_field: str | None = param(
        "Field holding the prompt (a string, or a list of turns as strings or {content: ...}); null: the "
        "format's own (jalign prompt, elyza input, mt_bench turns, arena_hard prompt or turns).",
        default=None,
    )
    id_field: str | None = param(
        "Id field; null: the format's own (elyza: the row number when there is no id).", default=None
    )
    category_field: str | None = param("Category field; null: the format's own (elyza: none).", default=None)
    reference_field: str | None = param(
        "Per-row reference answer field; null: elyza output, else none.", default=None
    )
    notes_field: str | None = param(
        "Grading-notes field; null: jalign grading_notes, elyza eval_aspect, else none.", default=None
    )
    reference_path: str | None = param(
        "FastChat-format reference answers (question_id, choices[0].turns), JSONL.", default=None
    )
    reference_hf_dataset: str | None = param(
        "The reference answers as a Hugging Face dataset id.", default=None
    )
    reference_hf_config: str | None = param("Configuration of reference_hf_dataset.", default=None)
    reference_revision: str | None = param("Commit or tag of reference_hf_dataset (pin it).", default=None)
    reference_split: str | None = param("Split of reference_hf_dataset.", default=None)
    reference_categories: tuple[str, ...] | None = param(
        "Categories that get reference answers (a missing one is an error); null: mt_bench math, "
        "reasoning, coding (FastChat); other formats: every item the file covers.",
        default=None,
    )
    limit: int | None = param(
        "Evaluate only the first N items (contamination checks still use all).", ge=1, default=None
    )

    def __post_init__(self) -> None:
        if (self.path is None) == (self.hf_dataset is None):
            raise ValueError(f"eval set {self.name!r}: set exactly one of path or hf_dataset")
        if self.reference_path is not None and self.reference_hf_dataset is not None:
            raise ValueError(
                f"eval set {self.name!r}: set at most one of reference_path, reference_hf_dataset"
            )
        for dataset, revision, split, prefix in (
            (self.hf_dataset, self.revision, self.split, ""),
            (self.reference_hf_dataset, self.reference_revision, self.reference_split, "reference_"),
        ):
            if dataset is not None and (revision is None or split is None):
                raise ValueError(
                    f"eval set {self.name!r}: {dataset} needs {prefix}revision "
                    "(pin it: the Hub may change it "
                    f"under you) and {prefix}split"
                )

    @property
    def source(self) -> str:
        """Where the rows come from, as error messages name it."""
        if self.path is not None:
            return self.path
        config = f"/{self.hf_config}" if self.hf_config else ""
        return f"{self.hf_dataset}{config}@{self.revision or 'main'}[{self.split}]"


@dataclass(frozen=True)
class EvalItem:
    """One evaluation question; `turns` are the user turns (MT-Bench has 2)."""

    set_name: str
    id: str
    turns: tuple[str, ...]
    category: str | None  # Arena-Hard v2.0: "category/subcategory", e.g. "hard_prompt/math"
    references: tuple[str, ...] | None  # one per turn, when known
    grading_notes: str | None  # ELYZA eval_aspect / our grading_notes
    format: EvalFormat = "jalign"
    # ifeval: the verifiable instructions and their kwargs, and the prompt without them when known
    instruction_ids: tuple[str, ...] | None = None
    instruction_kwargs: tuple[dict[str, Any], ...] | None = None
    question: str | None = None


@dataclass(frozen=True)
class EvalPrompt:
    """One user turn, as the contamination checks see it (a verifiable prompt: its question without the
    appended instructions, which training prompts share by design)."""

    set_name: str
    id: str
    prompt: str


def load_eval_sets(params_path: str | Path = "params.yaml") -> list[EvalSet]:
    raw = (read_params(params_path).get("evaluate") or {}).get("sets")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(
            f"{params_path}: evaluate.sets must be a non-empty list of {{name, format, path, ...}}"
        )
    sets = [from_dict(EvalSet, item, f"evaluate.sets[{i}]") for i, item in enumerate(raw)]
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise ConfigError(f"{params_path}: evaluate.sets names must be unique, got {names}")
    return sets


def load_eval_items(eval_set: EvalSet, apply_limit: bool = True) -> list[EvalItem]:
    """Every item of one set, in file order (the first `limit` when `apply_limit`)."""
    references = _load_references(eval_set) if _has_references(eval_set) else {}
    items: list[EvalItem] = []
    seen: dict[str, int] = {}
    for lineno, row in _rows(eval_set):
        where = f"{eval_set.source}:{lineno}"
        item = _item(eval_set, row, len(items) + 1, where, references)
        if item.id in seen:
            raise RecordError(
                f"{where}: field '{_id_name(eval_set, row)}': duplicate id {item.id!r} "
                f"(first at line {seen[item.id]})"
            )
        seen[item.id] = lineno
        items.append(item)
    if not items:
        raise RecordError(f"{eval_set.source}: no evaluation items")
    missing = _missing_references(eval_set, items, references)
    if missing:
        raise RecordError(
            f"{_reference_source(eval_set)}: no reference answer for question_id {missing[0]!r} "
            f"({len(missing)} missing) needed by categories {list(_reference_categories(eval_set) or [])}"
        )
    return items[: eval_set.limit] if apply_limit and eval_set.limit else items


def load_eval_prompts(sets: list[EvalSet]) -> list[EvalPrompt]:
    """Every user turn of every item of every set (limits ignored: contamination checks use all).

    A multi-turn item gives one prompt per turn, with ids `<id>#t<k>` for turns after the first.
    """
    prompts = []
    for eval_set in sets:
        for item in load_eval_items(eval_set, apply_limit=False):
            for k, turn in enumerate(item.turns, start=1):
                rid = item.id if k == 1 else f"{item.id}#t{k}"
                prompts.append(EvalPrompt(eval_set.name, rid, item.question or turn))
    return prompts


def answer_temperature(item: EvalItem) -> float | None:
    """FastChat's answer temperature for an MT-Bench item's category; None for other sets (use yours)."""
    if item.format != "mt_bench" or item.category is None:
        return None
    return MT_BENCH_TEMPERATURES.get(item.category)


def decontaminate(
    records: list[dict],
    texts: list[str],
    eval_prompts: list[EvalPrompt],
    threshold: float,
    id_field: str = "id",
) -> tuple[list[dict], list[dict]]:
    """Split records into (clean, contaminated): contaminated when the character ROUGE-L F1 of its text
    to any eval prompt exceeds `threshold`. Each contaminated entry names the eval prompt it hit."""
    from jalign.dedup import max_similarity

    scores, nearest = max_similarity(texts, [p.prompt for p in eval_prompts])
    clean, contaminated = [], []
    for record, score, idx in zip(records, scores, nearest, strict=True):
        if score > threshold:
            hit = eval_prompts[idx]
            contaminated.append(
                {id_field: record[id_field], "eval": f"{hit.set_name}/{hit.id}", "rouge_l": round(score, 4)}
            )
        else:
            clean.append(record)
    return clean, contaminated


# --- rows ------------------------------------------------------------------------------------------


def _rows(eval_set: EvalSet) -> list[tuple[int, dict[str, Any]]]:
    if eval_set.path is not None:
        return _jsonl_rows(Path(eval_set.path))
    return _hub_rows(eval_set.hf_dataset, eval_set.hf_config, eval_set.split, eval_set.revision)


def _jsonl_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; the line numbers are the file's."""
    if not path.is_file():
        raise RecordError(f"{path}: file not found")
    return read_jsonl_lines(path)


def _hub_rows(
    dataset: str | None, config: str | None, split: str, revision: str | None
) -> list[tuple[int, dict[str, Any]]]:
    from jalign.hub_reads import load_dataset

    rows = load_dataset(dataset, config, split=split, revision=revision)
    return [(i, dict(row)) for i, row in enumerate(rows, start=1)]


# --- items -----------------------------------------------------------------------------------------


def _fields(eval_set: EvalSet, key: str) -> tuple[str, ...]:
    override = {
        "id": eval_set.id_field,
        "text": eval_set.prompt_field,
        "category": eval_set.category_field,
        "reference": eval_set.reference_field,
        "notes": eval_set.notes_field,
    }.get(key)
    return (override,) if override else _DEFAULTS[eval_set.format].get(key, ())


def _first_present(row: dict[str, Any], names: tuple[str, ...]) -> str | None:
    return next((name for name in names if name in row), None)


def _id_name(eval_set: EvalSet, row: dict[str, Any]) -> str:
    return _first_present(row, _fields(eval_set, "id")) or "id"


def _item(
    eval_set: EvalSet, row: dict[str, Any], rownum: int, where: str, references: dict[str, tuple[str, ...]]
) -> EvalItem:
    id_names = _fields(eval_set, "id")
    id_name = _first_present(row, id_names)
    if id_name is None:
        if eval_set.format != "elyza" or eval_set.id_field:  # ELYZA rows have no id: the row number is it
            raise RecordError(f"{where}: missing field {' or '.join(map(repr, id_names))}")
        rid = str(rownum)
    else:
        rid = _id_value(row[id_name], where, id_name)

    text_names = _fields(eval_set, "text")
    text_name = _first_present(row, text_names)
    if text_name is None:
        raise RecordError(f"{where}: missing field {' or '.join(map(repr, text_names))}")
    turns = _turns(row[text_name], where, text_name)
    if eval_set.format == "mt_bench" and len(turns) != 2:
        raise RecordError(f"{where}: field '{text_name}': MT-Bench items have 2 turns, got {len(turns)}")

    category = _optional_text(row, _fields(eval_set, "category"), where)
    subcategory = _optional_text(row, _DEFAULTS[eval_set.format].get("subcategory", ()), where)
    if subcategory and subcategory != category:
        category = f"{category}/{subcategory}" if category else subcategory

    reference = _optional_text(row, _fields(eval_set, "reference"), where)
    item_refs = references.get(rid) if _needs_reference(eval_set, category) else None
    if reference is not None:
        item_refs = (reference,)
    if item_refs is not None and len(item_refs) != len(turns):
        raise RecordError(
            f"{where}: field 'turns': {len(turns)} turns but {len(item_refs)} reference turns "
            f"(reference {_reference_source(eval_set)})"
        )
    instruction_ids = instruction_kwargs = None
    if eval_set.format == "ifeval":
        instruction_ids, instruction_kwargs = _instructions(row, where)
    return EvalItem(
        set_name=eval_set.name,
        id=rid,
        turns=turns,
        category=category,
        references=item_refs,
        grading_notes=_optional_text(row, _fields(eval_set, "notes"), where),
        format=eval_set.format,
        instruction_ids=instruction_ids,
        instruction_kwargs=instruction_kwargs,
        question=_optional_text(row, _DEFAULTS[eval_set.format].get("question", ()), where),
    )


def _instructions(row: dict[str, Any], where: str) -> tuple[tuple[str, ...], tuple[dict[str, Any], ...]]:
    """An ifeval row's instruction ids and kwargs, checked against jalign.ifeval's checkers."""
    from jalign.ifeval.evaluation import validate_instructions

    ids, kwargs = row.get("instruction_id_list"), row.get("kwargs")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise RecordError(f"{where}: field 'instruction_id_list' must be a non-empty list of instruction ids")
    if not isinstance(kwargs, list) or not all(isinstance(k, dict) for k in kwargs):
        raise RecordError(f"{where}: field 'kwargs' must be a list of objects, one per instruction")
    validate_instructions(ids, kwargs, where)
    return tuple(ids), tuple(kwargs)


def _id_value(value: Any, where: str, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        raise RecordError(
            f"{where}: field '{name}' must be a non-empty string or an integer, got {value!r:.80}"
        )
    return str(value).strip()


def _turns(value: Any, where: str, name: str, role: str = "user") -> tuple[str, ...]:
    """A prompt string, or a list of turns: strings or chat messages ({content}, role optional; messages
    with another role than `role` are skipped)."""
    if isinstance(value, str):
        if not value.strip():
            raise RecordError(f"{where}: field '{name}' must be a non-empty string")
        return (value,)
    if not isinstance(value, list) or not value:
        raise RecordError(f"{where}: field '{name}' must be a non-empty string or a non-empty list of turns")
    turns = []
    for k, turn in enumerate(value):
        if isinstance(turn, dict):
            if turn.get("role", role) != role:
                continue  # e.g. a stored assistant message is not a user turn
            turn = turn.get("content")
        if not isinstance(turn, str) or not turn.strip():
            raise RecordError(f"{where}: field '{name}[{k}]' must be a non-empty string, got {turn!r:.80}")
        turns.append(turn)
    if not turns:
        raise RecordError(f"{where}: field '{name}' has no {role} turn")
    return tuple(turns)


def _optional_text(row: dict[str, Any], names: tuple[str, ...], where: str) -> str | None:
    name = _first_present(row, names)
    if name is None or row[name] is None:
        return None
    value = row[name]
    if not isinstance(value, str):
        raise RecordError(f"{where}: field '{name}' must be a string, got {value!r:.80}")
    return value if value.strip() else None


# --- reference answers -----------------------------------------------------------------------------


def _has_references(eval_set: EvalSet) -> bool:
    return eval_set.reference_path is not None or eval_set.reference_hf_dataset is not None


def _reference_source(eval_set: EvalSet) -> str:
    if eval_set.reference_path is not None:
        return eval_set.reference_path
    if eval_set.reference_hf_dataset is not None:
        revision = eval_set.reference_revision or "main"
        return f"{eval_set.reference_hf_dataset}@{revision}[{eval_set.reference_split}]"
    return "(row field)"


def _reference_categories(eval_set: EvalSet) -> tuple[str, ...] | None:
    if eval_set.reference_categories is not None:
        return eval_set.reference_categories
    return MT_BENCH_REFERENCE_CATEGORIES if eval_set.format == "mt_bench" else None


def _needs_reference(eval_set: EvalSet, category: str | None) -> bool:
    if not _has_references(eval_set):
        return False
    cats = _reference_categories(eval_set)
    return cats is None or category in cats


def _load_references(eval_set: EvalSet) -> dict[str, tuple[str, ...]]:
    """question_id -> reference turns, from FastChat's answer format (choices[0].turns)."""
    if eval_set.reference_path is not None:
        rows = _jsonl_rows(Path(eval_set.reference_path))
    else:
        rows = _hub_rows(
            eval_set.reference_hf_dataset,
            eval_set.reference_hf_config,
            eval_set.reference_split,
            eval_set.reference_revision,
        )
    source = _reference_source(eval_set)
    refs: dict[str, tuple[str, ...]] = {}
    for lineno, row in rows:
        where = f"{source}:{lineno}"
        if "question_id" not in row:
            raise RecordError(f"{where}: missing field 'question_id'")
        qid = _id_value(row["question_id"], where, "question_id")
        choices = row.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise RecordError(f"{where}: field 'choices' must be a non-empty list of {{turns: [...]}}")
        if qid in refs:
            raise RecordError(f"{where}: field 'question_id': duplicate id {qid!r}")
        refs[qid] = _turns(choices[0].get("turns"), where, "choices[0].turns", role="assistant")
    return refs


def _missing_references(
    eval_set: EvalSet, items: list[EvalItem], references: dict[str, tuple[str, ...]]
) -> list[str]:
    if not _has_references(eval_set):
        return []
    cats = _reference_categories(eval_set)
    if cats is None:  # "every item the reference file covers": nothing is required
        return []
    return [item.id for item in items if item.category in cats and item.references is None]
