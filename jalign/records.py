"""Record I/O: JSONL in, JSONL/JSON out, atomically.

Readers name the file, line and field of bad input. Writers go through a temp file in the same
directory and `os.replace`, so an interrupted stage never leaves a half-written output that looks
complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from jalign.errors import JalignError

Record = dict[str, Any]

# Decoded from valid UTF-8, a string can hold a lone surrogate only through a JSON escape of one
# (\ud800-\udfff): lines without such an escape, nearly all of them, need no walk over their fields.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class RecordError(JalignError, ValueError):
    """Bad input record: the message names file, line and field."""


class Records(list):
    """What `read_jsonl` returns: the records, plus each one's line number in its file (`lines`), so
    a check made after reading still names the right line when the file has blank lines."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[int] = []


def line_of(records: Sequence[Record], index: int) -> int:
    """The file line of records[index] when `records` came from `read_jsonl`, else its 1-based index."""
    lines = getattr(records, "lines", None)
    return lines[index] if lines is not None and len(lines) == len(records) else index + 1


def read_jsonl(path: str | Path, required: Sequence[str] = ()) -> Records:
    """Read a JSONL file; every non-blank line must be an object holding the `required` fields.

    Every error names file, line and (where there is one) field (see `iter_jsonl`).
    """
    path = Path(path)
    if not path.exists():
        raise RecordError(f"{path}: file not found")
    records = Records()
    with path.open("rb") as fh:
        for lineno, record in iter_jsonl(fh, path, required):
            records.append(record)
            records.lines.append(lineno)
    return records


def iter_jsonl(
    stream: Iterable[bytes], name: str | Path, required: Sequence[str] = ()
) -> Iterator[tuple[int, Record]]:
    """(line number, object) of each non-blank line of an opened binary stream (a file, a gzip stream):
    the one JSONL decoder, so that every reader reports bad input the same way.

    Errors name `name`, the line and (where there is one) the field: invalid UTF-8, invalid JSON, a lone
    surrogate escape (`"\\ud800"`: valid JSON, but no text can hold it), a missing or empty field.
    Lines are split at b"\\n" only: a text-mode reader also splits at a bare "\\r", which JSON allows
    as whitespace.
    """
    for lineno, raw in enumerate(stream, start=1):
        where = f"{name}:{lineno}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordError(
                f"{where}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1})"
            ) from None
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RecordError(f"{where}: not valid JSON ({json_error(exc)})") from None
        if not isinstance(record, dict):
            raise RecordError(f"{where}: expected a JSON object, got {type(record).__name__}")
        bad = _unencodable_field(record) if _SURROGATE_ESCAPE.search(raw) else None
        if bad is not None:
            raise RecordError(
                f"{where}: field '{bad}' holds a lone surrogate escape (not valid Unicode text)"
            )
        for field in required:
            check_text_field(record, field, where)
        yield lineno, record


def json_error(exc: json.JSONDecodeError) -> str:
    """What is wrong and where on its line: "Expecting value at column 15", "Unterminated string starting
    at column 9" (some of json's messages already end in "at")."""
    joint = " " if exc.msg.endswith(" at") else " at "
    return f"{exc.msg}{joint}column {exc.colno}"


def read_jsonl_lines(path: str | Path, required: Sequence[str] = ()) -> list[tuple[int, Record]]:
    """(line number, record) pairs of `read_jsonl`."""
    records = read_jsonl(path, required)
    return list(zip(records.lines, records, strict=True))


def _unencodable_field(value: Any, path: str = "") -> str | None:
    """Dotted path of the first string (or key) that UTF-8 cannot encode, else None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "(value)"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            # the name goes into an error message: escape a lone surrogate so that it can be printed
            name = str(key).encode("utf-8", "backslashreplace").decode("utf-8")
            child = f"{path}.{name}" if path else name
            found = _unencodable_field(key, child) or _unencodable_field(item, child)
            if found:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _unencodable_field(item, f"{path}[{i}]")
            if found:
                return found
    return None


def user_prompt(record: Record) -> str:
    """An instruction record as the user would send it: the instruction, then its input if any."""
    return f"{record['instruction']}\n{record['input']}" if record.get("input") else record["instruction"]


def check_text_field(record: Record, field: str, where: str) -> str:
    """Return record[field] if it is a non-empty string, else raise naming the place and the field."""
    if field not in record:
        raise RecordError(f"{where}: missing field '{field}'")
    value = record[field]
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"{where}: field '{field}' must be a non-empty string, got {value!r:.80}")
    return value


def check_unique_ids(records: Sequence[Record], path: str | Path, field: str = "id") -> None:
    """Reject a repeated id before any work is paid for (later stages key their results by id)."""
    seen: dict[str, int] = {}
    unit = "line" if isinstance(records, Records) else "record"
    for i, record in enumerate(records):
        rid, lineno = record.get(field), line_of(records, i)
        if rid in seen:
            raise RecordError(
                f"{path}:{lineno}: field '{field}': duplicate id {rid!r} (first at {unit} {seen[rid]})"
            )
        seen[rid] = lineno


def clean_stale_temp(outputs: Iterable[str | Path]) -> list[Path]:
    """Remove the temp files (`.<name>.<hex>.tmp`, see `atomic_path`) that a killed run left next to
    or inside these outputs; return what was removed."""
    removed = []
    for output in map(Path, outputs):
        candidates = list(output.parent.glob(f".{output.name}.*.tmp")) if output.parent.is_dir() else []
        if output.is_dir():
            candidates += list(output.rglob(".*.tmp"))
        for tmp in candidates:
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


class OutputError(JalignError, OSError):
    """An output cannot be written where it was asked for (a read-only or unwritable folder)."""


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to `path`; rename it over `path` only if the block succeeds. A folder that
    refuses the file is an OutputError naming the path and the fix, before any work is written."""
    path = Path(path)
    # Not tempfile.mkstemp: its 0600 mode would survive the rename. O_EXCL with 0666 lets the umask
    # decide, as for a plain open().
    tmp = path.parent / f".{path.name}.{os.urandom(6).hex()}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        raise _unwritable(path, exc) from None
    try:
        yield Path(tmp)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise _unwritable(path, exc) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _unwritable(path: Path, exc: OSError) -> OutputError:
    folder = next((p for p in path.parents if p.exists()), path.parent)  # the one that refused
    return OutputError(
        f"{path}: cannot write it ({exc.strerror or exc}): make {folder} writable, or choose another "
        "output path"
    )


def write_jsonl(path: str | Path, records: Iterable[Record]) -> int:
    n = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(
            json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=False) + "\n", encoding="utf-8"
        )


def licence_list(value: Any) -> list[str]:
    """A record's `license` as a sorted list (older files hold a plain string)."""
    if value is None or value == "":
        return []
    return sorted({value} if isinstance(value, str) else set(value))


def provenance_of(inputs: Iterable[Record], model_terms: Iterable[str] = ()) -> Record:
    """Licence provenance of a derived record: the set of its inputs' licences and model terms, plus the
    terms of the models that produced it (GENIAC shelved a dataset over one unknown licence; an API's
    terms may forbid training competing models on its outputs)."""
    licences: set[str] = set()
    terms: set[str] = set(model_terms)
    for record in inputs:
        licences.update(licence_list(record.get("license")))
        terms.update(record.get("model_terms") or ())
    return {"license": sorted(licences), "model_terms": sorted(terms)}


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (pins, Hub uploads)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
