"""Persistent LLM response cache.

Lives outside DVC outputs (DVC deletes a stage's outputs before rerunning it), so rerunning a stage
after an interrupt or a downstream param change costs zero new calls. Its default place is found from
the repository root, not the working directory: `dvc exp run --temp` and `--queue` run stages in copies
of the repository under `.dvc/tmp/exps/`, and those must share the workspace's cache (else every queued
experiment pays again for answers already bought).

SQLite in WAL mode with a busy timeout: several processes (parallel `dvc exp` runs, test workers) may
write at once without corrupting it. The client commits each answer as it arrives, before the backend
sends its next request (`synchronous=NORMAL`: durable across a killed process, no fsync per commit),
so a `kill -9` can only lose the answers of requests still in flight. The key is a hash of everything
that determines a response; API keys are never part of it and never stored.
"""

from __future__ import annotations

import hashlib
import json
import os
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
        """Commit now, in one transaction (all or nothing); the client commits each answer this way the
        moment it arrives (one transaction costs about 18 us of CPU: benchmarks/RESULTS.md)."""
        rows = [(k, json.dumps(v, ensure_ascii=False)) for k, v in items.items()]
        if not rows:
            return
        try:
            with self._conn() as conn:
                conn.executemany("INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)", rows)
        except sqlite3.Error as exc:
            raise CacheError(f"LLM cache {self.path}: writing answers failed ({exc}): {_FIX}") from exc

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
