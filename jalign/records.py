"""Record I/O: JSONL in, JSONL/JSON out, atomically.

Readers name the file, line and field of bad input. Writers go through a temp file in the same
directory and `os.replace`, so an interrupted stage never leaves a half-written output that looks
complete.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

Record = dict[str, Any]


class RecordError(ValueError):
    """Bad input record: the message names file, line and field."""


def read_jsonl(path: str | Path, required: Sequence[str] = ()) -> list[Record]:
    """Read a JSONL file; every non-blank line must be an object holding the `required` fields."""
    path = Path(path)
    if not path.exists():
        raise RecordError(f"{path}: file not found")
    records = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordError(
                    f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})"
                ) from exc
            if not isinstance(record, dict):
                raise RecordError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            for field in required:
                check_text_field(record, field, f"{path}:{lineno}")
            records.append(record)
    return records


def check_text_field(record: Record, field: str, where: str) -> str:
    """Return record[field] if it is a non-empty string, else raise naming the place and the field."""
    if field not in record:
        raise RecordError(f"{where}: missing field '{field}'")
    value = record[field]
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"{where}: field '{field}' must be a non-empty string, got {value!r:.80}")
    return value


def check_unique_ids(records: Sequence[Record], path: str | Path, field: str = "id") -> None:
    seen: dict[str, int] = {}
    for lineno, record in enumerate(records, start=1):
        rid = record.get(field)
        if rid in seen:
            raise RecordError(f"{path}:{lineno}: duplicate {field} {rid!r} (first at record {seen[rid]})")
        seen[rid] = lineno


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: its 0600 mode would survive the rename. O_EXCL with 0666 lets the umask
    # decide, as for a plain open().
    tmp = path.parent / f".{path.name}.{os.urandom(6).hex()}.tmp"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl(path: str | Path, records: Iterable[Record]) -> int:
    n = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(
            json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=False) + "\n", encoding="utf-8"
        )
