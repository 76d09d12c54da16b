"""The OpenAI Batch API as a backend: half the price, answers within the completion window (24 h).

Requests become JSONL lines whose bodies are exactly what the online backend sends, split into batches
of at most `batch_max_requests` lines and MAX_FILE_BYTES, uploaded, created, polled and downloaded; each
result line is parsed as the online backend parses an answer.

Never paying twice: right after a batch is uploaded and again after it is created, its ids (file, batch,
the custom_ids it holds) are written to a small SQLite file next to the LLM cache, before any polling.
A later call (a rerun after a crash, a kill or a budget stop) first resumes every unfinished batch that
holds a request it needs, and sends only the requests no such batch holds. A batch is marked done once
its results are delivered; its failed rows then go into a new batch on the next run. The state file holds
ids and statuses only, never the API key or any text from the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import openai
from openai.types import Completion
from openai.types.chat import ChatCompletion
from tqdm.auto import tqdm

from jalign.llm.cache import cache_key, cache_path
from jalign.llm.openai_backend import api_key as resolve_api_key
from jalign.llm.openai_backend import classify, endpoint, parse_choice, parse_generation, request_body
from jalign.llm.retry import FatalError, RetryableError, RetryPolicy, with_retries
from jalign.llm.types import (
    Admit,
    BatchSettings,
    Choice,
    Generation,
    LLMConfig,
    OnResult,
    Request,
    endpoint_url,
)

log = logging.getLogger(__name__)

STATE_FILE = "openai-batches.sqlite"
MAX_FILE_BYTES = 190_000_000  # OpenAI takes batch input files up to 200 MB; keep a margin
TERMINAL = ("completed", "expired", "failed", "cancelled")
TRANSFER_TIMEOUT_S = 600.0  # uploads and downloads of files up to 200 MB
R = TypeVar("R", Generation, Choice)
T = TypeVar("T")


def state_path() -> Path:
    return cache_path().parent / STATE_FILE


@dataclass
class _Batch:
    key: str  # hash of the batch's contents (scope + JSONL lines)
    indices: dict[str, int]  # custom_id -> index of the request in this call
    lines: list[str] | None = None  # JSONL lines; None for a batch resumed from the state file
    file_id: str | None = None
    batch_id: str | None = None


class BatchState:
    """Which batches exist and which are done: SQLite (WAL, busy timeout) next to the LLM cache."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else state_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=60.0)
        self._conn.execute("PRAGMA busy_timeout=60000")
        self._conn.execute("PRAGMA journal_mode=WAL")
        with self._conn:
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS batches (key TEXT PRIMARY KEY, scope TEXT NOT NULL,"
                " file_id TEXT, batch_id TEXT, status TEXT, done INTEGER NOT NULL DEFAULT 0,"
                " created REAL NOT NULL, updated REAL NOT NULL)"
            )
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS items (key TEXT NOT NULL, custom_id TEXT NOT NULL,"
                " PRIMARY KEY (key, custom_id))"
            )

    def unfinished(self, scope: str) -> list[tuple[str, str | None, str | None, float, list[str]]]:
        """(key, file_id, batch_id, created, custom_ids) of every batch not yet delivered, oldest first."""
        rows = self._conn.execute(
            "SELECT key, file_id, batch_id, created FROM batches"
            " WHERE scope = ? AND done = 0 ORDER BY created",
            (scope,),
        ).fetchall()
        out = []
        for key, file_id, batch_id, created in rows:
            ids = [r[0] for r in self._conn.execute("SELECT custom_id FROM items WHERE key = ?", (key,))]
            out.append((key, file_id, batch_id, created, ids))
        return out

    def uploaded(self, key: str, scope: str, file_id: str, custom_ids: list[str]) -> None:
        now = time.time()
        with self._conn:
            self._conn.execute("DELETE FROM items WHERE key = ?", (key,))
            self._conn.execute(
                "INSERT OR REPLACE INTO batches"
                " (key, scope, file_id, batch_id, status, done, created, updated)"
                " VALUES (?, ?, ?, NULL, 'uploaded', 0, ?, ?)",
                (key, scope, file_id, now, now),
            )
            self._conn.executemany(
                "INSERT INTO items (key, custom_id) VALUES (?, ?)", [(key, c) for c in custom_ids]
            )

    def update(self, key: str, *, status: str, batch_id: str | None = None, done: bool = False) -> None:
        with self._conn:
            self._conn.execute(
                "UPDATE batches SET status = ?, batch_id = COALESCE(?, batch_id), done = ?, updated = ?"
                " WHERE key = ?",
                (status, batch_id, int(done), time.time(), key),
            )

    def rows(self) -> list[dict[str, Any]]:
        cursor = self._conn.execute("SELECT key, scope, file_id, batch_id, status, done FROM batches")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def close(self) -> None:
        self._conn.close()


class OpenAIBatchBackend:
    def __init__(
        self, config: LLMConfig, *, state: str | Path | None = None, max_file_bytes: int = MAX_FILE_BYTES
    ) -> None:
        assert config.batch is not None, "backend openai_batch needs its `batch` settings"
        self.config = config
        self.settings: BatchSettings = config.batch
        api_key = resolve_api_key(config)  # registered with `redact`: the client masks it in every answer
        self.policy = RetryPolicy(max_retries=config.max_retries, base_delay_s=config.retry_base_delay_s)
        self._client_kwargs = {
            "api_key": api_key,
            "base_url": endpoint_url(config),
            "timeout": config.timeout_s,
            "max_retries": 0,
        }
        self.state_path = Path(state) if state is not None else state_path()
        self.max_file_bytes = max_file_bytes
        self.endpoint = "/v1/" + endpoint(config)  # a batch line names the API path
        base_url = (endpoint_url(config) or "https://api.openai.com/v1").rstrip("/")
        self.scope = cache_key({"model": config.model, "base_url": base_url, "endpoint": self.endpoint})

    # -- public, synchronous ---------------------------------------------------------------------
    def generate(
        self, requests: list[Request], on_result: OnResult | None = None, admit: Admit | None = None
    ) -> list[Generation]:
        return asyncio.run(
            self._run(
                requests, False, lambda r: parse_generation(self.config, r), Generation, on_result, admit
            )
        )

    def choose(
        self,
        requests: list[Request],
        choices: tuple[str, ...],
        on_result: OnResult | None = None,
        admit: Admit | None = None,
    ) -> list[Choice]:
        return asyncio.run(
            self._run(
                requests, True, lambda r: parse_choice(self.config, r, choices), Choice, on_result, admit
            )
        )

    # -- one call ---------------------------------------------------------------------------------
    async def _run(
        self,
        requests: list[Request],
        choose: bool,
        parse: Callable[[Any], R],
        result_type: type[R],
        on_result: OnResult | None,
        admit: Admit | None,
    ) -> list[R]:
        results: list[R | None] = [None] * len(requests)

        def deliver(i: int, result: R) -> None:
            if results[i] is None:  # one answer per request, the first
                results[i] = result  # the client masks secrets in it before it is cached
                if on_result:
                    on_result(i, results[i])

        lines = self._lines(requests, choose)
        state = BatchState(self.state_path)
        try:
            batches = self._resume(state, lines)
            claimed = {cid for b in batches for cid in b.indices}
            batches += self._split([cid for cid in lines if cid not in claimed], lines, result_type, deliver)
            async with openai.AsyncOpenAI(**self._client_kwargs) as client:
                started, stop = [], None
                for batch in batches:
                    try:  # the whole batch is "sent" at once: admit all of it before uploading any
                        for i in batch.indices.values():
                            if admit is not None:
                                admit(i)
                    except Exception as exc:  # e.g. BudgetExceeded
                        stop = exc  # send nothing more; collect what was already sent, then re-raise
                        break
                    if batch.batch_id is None and not await self._submit(
                        client, state, batch, result_type, deliver
                    ):
                        continue
                    started.append(batch)
                await self._collect(client, state, started, parse, result_type, deliver)
            if stop is not None:
                raise stop
        finally:
            state.close()
        missing = [i for i, r in enumerate(results) if r is None]
        assert not missing, f"batch backend left requests {missing[:5]} without an answer"
        return results  # type: ignore[return-value]

    def _lines(self, requests: list[Request], choose: bool) -> dict[str, tuple[int, str]]:
        """custom_id -> (request index, JSONL line). The custom_id is a hash of the line's url and body
        (plus a counter for identical requests), so a rerun maps results back to the same requests."""
        out: dict[str, tuple[int, str]] = {}
        seen: dict[str, int] = {}
        for i, request in enumerate(requests):
            body = request_body(self.config, request, choose=choose)
            digest = cache_key({"url": self.endpoint, "body": body})[:32]
            seen[digest] = seen.get(digest, -1) + 1
            custom_id = f"{digest}-{seen[digest]}"
            line = {"custom_id": custom_id, "method": "POST", "url": self.endpoint, "body": body}
            out[custom_id] = (i, json.dumps(line, ensure_ascii=False, sort_keys=True, separators=(",", ":")))
        return out

    def _resume(self, state: BatchState, lines: dict[str, tuple[int, str]]) -> list[_Batch]:
        """Every unfinished batch that holds a request of this call, with the requests it holds."""
        batches: list[_Batch] = []
        claimed: set[str] = set()
        for key, file_id, batch_id, _, custom_ids in state.unfinished(self.scope):
            mine = {cid: lines[cid][0] for cid in custom_ids if cid in lines and cid not in claimed}
            if mine:
                claimed |= set(mine)
                batches.append(_Batch(key, mine, file_id=file_id, batch_id=batch_id))
                log.info("resuming batch %s (%d of this call's requests)", batch_id or file_id, len(mine))
        return batches

    def _split(
        self,
        todo: list[str],
        lines: dict[str, tuple[int, str]],
        result_type: type[R],
        deliver: Callable[[int, R], None],
    ) -> list[_Batch]:
        """New batches of at most batch_max_requests lines and max_file_bytes bytes, in request order."""
        chunks: list[list[str]] = []
        size = 0
        for cid in todo:
            line_bytes = len(lines[cid][1].encode("utf-8")) + 1
            if line_bytes > self.max_file_bytes:
                deliver(
                    lines[cid][0], result_type(error=f"request of {line_bytes} bytes exceeds a batch file")
                )
                continue
            if (
                not chunks
                or len(chunks[-1]) >= self.settings.max_requests
                or size + line_bytes > self.max_file_bytes
            ):
                chunks.append([])
                size = 0
            chunks[-1].append(cid)
            size += line_bytes
        batches = []
        for ids in chunks:
            text = [lines[cid][1] for cid in ids]
            key = cache_key({"scope": self.scope, "lines": text})
            batches.append(_Batch(key, {cid: lines[cid][0] for cid in ids}, lines=text))
        return batches

    # -- remote steps -----------------------------------------------------------------------------
    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        async def once() -> T:
            try:
                return await call()
            except (RetryableError, FatalError):
                raise
            except Exception as exc:
                raise classify(exc) from exc

        return await with_retries(once, self.policy, what)

    async def _submit(
        self,
        client: openai.AsyncOpenAI,
        state: BatchState,
        batch: _Batch,
        result_type: type[R],
        deliver: Callable[[int, R], None],
    ) -> bool:
        """Upload (unless a previous run did) and create the batch; ids are persisted at each step.
        On failure the batch's rows fail; False."""
        try:
            resumed = batch.file_id is not None
            if batch.file_id is None:
                assert batch.lines is not None
                data = ("\n".join(batch.lines) + "\n").encode("utf-8")
                file = await self._call(
                    "upload",
                    lambda: client.files.create(
                        file=(f"jalign-{batch.key[:16]}.jsonl", data, "application/jsonl"),
                        purpose="batch",
                        timeout=max(self.config.timeout_s, TRANSFER_TIMEOUT_S),
                    ),
                )
                batch.file_id = file.id
                state.uploaded(batch.key, self.scope, file.id, list(batch.indices))
            created = await self._call("create", self._creator(client, batch.file_id, check_first=resumed))
        except (RetryableError, FatalError) as exc:
            if isinstance(exc, FatalError) and batch.file_id is not None:
                # the file is unusable (rejected, deleted): the next run uploads the requests again
                state.update(batch.key, status="not created", done=True)
            self._fail(batch, f"could not submit the batch: {exc}", result_type, deliver)
            return False
        batch.batch_id = created.id
        state.update(batch.key, status=created.status, batch_id=created.id)
        log.info("batch %s: %d requests to %s", created.id, len(batch.indices), self.endpoint)
        return True

    def _creator(
        self, client: openai.AsyncOpenAI, file_id: str, *, check_first: bool
    ) -> Callable[[], Awaitable[Any]]:
        """`batches.create` is not idempotent: before a retry (or when a previous run uploaded the file
        and died), look for a batch already created from the file, so a lost response never pays twice."""
        tries = int(check_first)

        async def create() -> Any:
            nonlocal tries
            if tries and (found := await self._created_from(client, file_id)) is not None:
                return found
            tries += 1
            return await client.batches.create(
                input_file_id=file_id,
                endpoint=self.endpoint,
                completion_window=self.settings.completion_window,
                metadata={"source": "jalign"},
            )

        return create

    async def _created_from(self, client: openai.AsyncOpenAI, file_id: str) -> Any | None:
        """The batch created from `file_id`, if any (the newest batches come first)."""
        examined = 0
        async for batch in client.batches.list(limit=100):
            if batch.input_file_id == file_id:
                return batch
            examined += 1
            if examined >= 1000:
                break
        return None

    async def _collect(
        self,
        client: openai.AsyncOpenAI,
        state: BatchState,
        batches: list[_Batch],
        parse: Callable[[Any], R],
        result_type: type[R],
        deliver: Callable[[int, R], None],
    ) -> None:
        """Poll until every batch has ended, delivering each batch's results as soon as it has."""
        if not batches:
            return
        bar = tqdm(total=sum(len(b.indices) for b in batches), desc=f"batch {self.config.model}", unit="req")
        counts: dict[str, tuple[int, int]] = {}  # batch key -> (done, total) from request_counts
        active = list(batches)
        while active:
            for batch in list(active):
                info = await self._poll(client, state, batch, result_type, deliver)
                if info is None:
                    active.remove(batch)
                    continue
                rc = info.request_counts
                if rc is not None:
                    counts[batch.key] = (rc.completed + rc.failed, rc.total)
                if info.status in TERMINAL:
                    await self._deliver(client, state, batch, info, parse, result_type, deliver)
                    active.remove(batch)
            bar.total = max(bar.total, sum(t for _, t in counts.values()))
            bar.n = sum(d for d, _ in counts.values())
            bar.refresh()
            if active:
                await asyncio.sleep(self.settings.poll_interval_s)
        bar.close()

    async def _poll(
        self,
        client: openai.AsyncOpenAI,
        state: BatchState,
        batch: _Batch,
        result_type: type[R],
        deliver: Callable[[int, R], None],
    ) -> Any | None:
        """The batch's current status, or None when it cannot be had (its rows then fail)."""
        try:
            return await self._call("poll", lambda: client.batches.retrieve(batch.batch_id))
        except (RetryableError, FatalError) as exc:
            if isinstance(exc.__cause__, openai.NotFoundError):
                # gone (another account, deleted): the next run sends these requests again
                state.update(batch.key, status="lost", done=True)
                reason = f"batch {batch.batch_id} not found; rerun to send its requests again"
            else:  # still on the server: the next run resumes it
                reason = f"could not poll batch {batch.batch_id}: {exc}; rerun to resume it"
            self._fail(batch, reason, result_type, deliver)
            return None

    async def _deliver(
        self,
        client: openai.AsyncOpenAI,
        state: BatchState,
        batch: _Batch,
        info: Any,
        parse: Callable[[Any], R],
        result_type: type[R],
        deliver: Callable[[int, R], None],
    ) -> None:
        """Map every result line back by custom_id; rows without one fail with the batch's outcome."""
        seen: set[str] = set()
        for file_id in (info.output_file_id, info.error_file_id):
            if not file_id:
                continue
            try:
                content = await self._call(
                    "download",
                    lambda f=file_id: client.files.content(
                        f, timeout=max(self.config.timeout_s, TRANSFER_TIMEOUT_S)
                    ),
                )
            except (RetryableError, FatalError) as exc:
                reason = (
                    f"could not download the results of batch {batch.batch_id}: {exc}; rerun to resume it"
                )
                self._fail(batch, reason, result_type, deliver, skip=seen)
                return  # not marked done: the next run downloads again
            for n, raw in enumerate(content.text.splitlines(), 1):
                if not raw.strip():
                    continue
                try:
                    line = json.loads(raw)
                    custom_id = line["custom_id"]
                except (ValueError, KeyError, TypeError):
                    log.warning("batch %s: file %s line %d is not a result line", batch.batch_id, file_id, n)
                    continue
                if custom_id in batch.indices and custom_id not in seen:
                    seen.add(custom_id)
                    deliver(batch.indices[custom_id], self._parse_line(line, parse, result_type))
        reason = {
            "completed": f"batch {batch.batch_id} completed without a result for this request",
            "expired": "batch expired",
            "cancelled": f"batch {batch.batch_id} cancelled",
        }.get(info.status) or f"batch {batch.batch_id} failed: {_batch_errors(info)}"
        self._fail(batch, reason, result_type, deliver, skip=seen)
        state.update(batch.key, status=info.status, done=True)
        log.info("batch %s %s: %d results", batch.batch_id, info.status, len(seen))

    def _parse_line(self, line: dict[str, Any], parse: Callable[[Any], R], result_type: type[R]) -> R:
        """One result line -> Generation / Choice, exactly as the online backend reads an answer."""
        error = line.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else error
            code = error.get("code") if isinstance(error, dict) else None
            return result_type(error=f"{code or 'error'}: {message}")
        response = line.get("response") or {}
        status, body = response.get("status_code"), response.get("body")
        if status != 200:
            detail = body.get("error") if isinstance(body, dict) else body
            message = detail.get("message") if isinstance(detail, dict) else detail
            return result_type(error=f"HTTP {status}: {message}")
        model = Completion if self.config.prompt_format == "raw" else ChatCompletion
        try:
            return parse(model.construct(**body))
        except RetryableError as exc:  # empty answer, no choices: a failed row (a rerun resends it)
            return result_type(error=str(exc))
        except (ValueError, LookupError, TypeError, AttributeError) as exc:
            return result_type(error=f"malformed response: {type(exc).__name__}: {exc}")

    # -- helpers ----------------------------------------------------------------------------------
    def _fail(
        self,
        batch: _Batch,
        reason: str,
        result_type: type[R],
        deliver: Callable[[int, R], None],
        skip: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        for custom_id, i in batch.indices.items():
            if custom_id not in skip:
                deliver(i, result_type(error=reason))


def _batch_errors(info: Any) -> str:
    data = (info.errors.data if info.errors is not None else None) or []
    parts = [f"{'line ' + str(e.line) + ': ' if e.line else ''}{e.code}: {e.message}" for e in data[:5]]
    return "; ".join(parts) or "no reason given"
