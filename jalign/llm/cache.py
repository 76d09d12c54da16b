"""Persistent LLM response cache.

Lives outside DVC outputs (DVC deletes a stage's outputs before rerunning it), so rerunning a stage
after an interrupt or a downstream param change costs zero new calls. Its default place is found from
the repository root, not the working directory: `dvc exp run --temp` and `--queue` run stages in copies
of the repository under `.dvc/tmp/exps/`, and those must share the workspace's cache (else every queued
experiment pays again for answers already bought).

SQLite in WAL mode with a busy timeout: several processes (parallel `dvc exp` runs, test workers) may
write at once without corrupting it. Answers are written by one writer thread with group commit
(`synchronous=NORMAL`: durable across a killed process), so the event loop that receives answers never
waits on the disk. The key is a hash of everything that determines a response; API keys are never
part of it and never stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jalign.errors import JalignError

CACHE_RELATIVE = Path(".jalign") / "llm-cache.sqlite"
_EXPERIMENT_COPIES = (".dvc", "tmp", "exps")


def project_root(start: Path | None = None) -> Path:
    """The repository this process works for: the one that owns a DVC experiment copy, else the nearest
    folder upwards holding `.dvc` or `.git`, else `start` itself."""
    here = (start or Path.cwd()).resolve()
    parts = here.parts
    for i in range(len(parts) - len(_EXPERIMENT_COPIES) + 1):
        if parts[i : i + len(_EXPERIMENT_COPIES)] == _EXPERIMENT_COPIES:
            return Path(*parts[:i])
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir() or (folder / ".git").exists():
            return folder
    return here


def cache_path() -> Path:
    """`JALIGN_LLM_CACHE` (a file path; a relative one is taken from the repository root, so DVC's
    experiment copies resolve it to the same file) if set, else `<root>/.jalign/llm-cache.sqlite`."""
    configured = os.environ.get("JALIGN_LLM_CACHE")
    return project_root() / (configured or CACHE_RELATIVE)


class CacheError(JalignError, RuntimeError):
    """The LLM cache cannot be opened or written: the message names its file and the fix."""


_FIX = "make its folder writable, or set JALIGN_LLM_CACHE to a writable file path"


def cache_key(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=60.0, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=60000")
    conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across a killed process
    return conn


class ResponseCache:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else cache_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(
                f"LLM cache {self.path}: cannot create its folder ({exc.strerror}): {_FIX}"
            ) from None
        self._local = threading.local()
        try:
            conn = self._conn()
            conn.execute("PRAGMA journal_mode=WAL")
            with conn:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL,"
                    " created REAL DEFAULT (julianday('now')))"
                )
        except sqlite3.Error as exc:  # SQLite's own message names no file
            raise CacheError(f"LLM cache {self.path}: cannot open it ({exc}): {_FIX}") from None
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._writer_error: BaseException | None = None
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            self._local.conn = conn
        return conn

    # -- reads -----------------------------------------------------------------------------------
    def get(self, key: str) -> dict[str, Any] | None:
        row = self._conn().execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        conn = self._conn()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, value in conn.execute(f"SELECT key, value FROM responses WHERE key IN ({marks})", chunk):
                found[key] = json.loads(value)
        return found

    def items(self) -> Iterator[tuple[str, str]]:
        """(key, JSON value) of every stored answer (for export)."""
        yield from self._conn().execute("SELECT key, value FROM responses ORDER BY key")

    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    # -- writes ----------------------------------------------------------------------------------
    def put_many(self, items: dict[str, dict[str, Any]]) -> None:
        """Write now, in one transaction (all or nothing)."""
        self._write([(k, json.dumps(v, ensure_ascii=False)) for k, v in items.items()])

    def add_missing(self, items: dict[str, dict[str, Any]]) -> int:
        """Insert the entries whose key is not cached yet (one transaction); return how many were new."""
        conn = self._conn()
        try:
            with conn:
                before = conn.total_changes
                conn.executemany(
                    "INSERT OR IGNORE INTO responses (key, value) VALUES (?, ?)",
                    [(k, json.dumps(v, ensure_ascii=False)) for k, v in items.items()],
                )
                return conn.total_changes - before
        except sqlite3.Error as exc:
            raise CacheError(f"LLM cache {self.path}: cannot write it ({exc}): {_FIX}") from None

    def put_soon(self, key: str, value: dict[str, Any]) -> None:
        """Queue one answer for the writer thread; returns at once. `flush()` waits for it."""
        self._raise_writer_error()
        with self._lock:
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(
                    target=self._write_loop, name="jalign-cache-writer", daemon=True
                )
                self._writer.start()
        self._queue.put((key, json.dumps(value, ensure_ascii=False)))

    def flush(self) -> None:
        """Block until every queued answer is committed; re-raise a writer failure."""
        with self._lock:
            writer = self._writer
            if writer is not None and writer.is_alive():
                self._queue.put(None)
                writer.join()
            self._writer = None
        self._raise_writer_error()

    def _write(self, rows: list[tuple[str, str]]) -> None:
        if not rows:
            return
        conn = self._conn()
        with conn:
            conn.executemany("INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)", rows)

    def _write_loop(self) -> None:
        """Commit whatever is queued, as one transaction, as soon as it is there (group commit: under
        load answers batch up naturally; when idle each answer is committed at once)."""
        while True:
            item = self._queue.get()
            rows, stop = ([] if item is None else [item]), item is None
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                else:
                    rows.append(more)
            try:
                self._write(rows)
            except BaseException as exc:  # surfaced to the caller by flush() / the next put_soon()
                self._writer_error = exc
                return
            if stop:
                return

    def _raise_writer_error(self) -> None:
        if self._writer_error is not None:
            error, self._writer_error = self._writer_error, None
            raise CacheError(f"LLM cache {self.path}: writing answers failed ({error}): {_FIX}") from error
