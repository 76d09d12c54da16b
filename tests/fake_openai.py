"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests: scripted fault injection, recorded requests.

Not a mock: the code under test talks HTTP to it through the real `openai` SDK. Behaviour:

* `faults` is a queue consumed one per request, in arrival order; once empty the server answers normally.
  `fault_for(path, body)` may return a fault for a particular request (checked before the queue), for
  rows that must fail persistently while others succeed.
* Fault names: an HTTP status ("400", "401", "404", "500", "503" ...); "429" (with `Retry-After: 0`) or
  "429:<seconds>" (that Retry-After); "timeout" (hold the request longer than any client timeout);
  "garbage" (200, text/html body); "garbage_json" (200, application/json that is not JSON);
  "empty_choices" (200, valid JSON with `choices: []`); "no_logprobs" (200, normal answer without logprobs);
  "echo_auth" / "echo_auth_401" (400 / 401 whose message repeats the request's Authorization header,
  like a careless proxy); "empty_content" / "blank_content" (200 with an empty / whitespace-only answer);
  "bad_utf8" (200, a normal JSON answer with one byte that is not UTF-8, like a proxy that cut a character).
* Normal answers are deterministic: `responder(body)` gives the text (default: a digest of the last user
  message or of the prompt). Stop sequences and max_tokens are honoured; usage counts tokens with a simple
  word/punctuation tokenizer. When logprobs are requested the first token's `top_logprobs` come from
  `top_logprobs` (a dict token -> logprob, or a callable body -> dict), in the chat format or the
  completions format.
* Every request is recorded (path, headers, raw bytes, parsed body, the fault applied, the response sent,
  arrival time, method); `max_in_flight` is the most requests the server was handling at the same time.
* The Batch API (`/v1/files`, `/v1/batches`) lives in its own section at the end of this file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

Responder = Callable[[dict[str, Any]], str]
TopLogprobs = dict[str, float] | Callable[[dict[str, Any]], dict[str, float]]

_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def prompt_text(body: dict[str, Any]) -> str:
    """The text a request asks about: the last user message (chat) or the prompt (completions)."""
    if "messages" in body:
        users = [m["content"] for m in body["messages"] if m.get("role") == "user"]
        return users[-1] if users else ""
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else "".join(prompt)


def default_reply(body: dict[str, Any]) -> str:
    return "answer " + hashlib.sha256(prompt_text(body).encode("utf-8")).hexdigest()[:12]


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]  # names lower-cased
    raw: bytes
    body: dict[str, Any] | None
    fault: str | None
    arrived: float
    response: dict[str, Any] | None = None  # the JSON sent back, when one was
    method: str = "POST"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeOpenAIServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    def do_GET(self) -> None:
        self.server.fake._handle(self)


class FakeOpenAIServer:
    def __init__(
        self,
        faults: Iterable[str] = (),
        *,
        responder: Responder | None = None,
        top_logprobs: TopLogprobs | None = None,
        fault_for: Callable[[str, dict[str, Any]], str | None] | None = None,
        delay_s: float = 0.0,
        hang_s: float = 10.0,
    ) -> None:
        self.faults: deque[str] = deque(faults)
        self.responder = responder or default_reply
        self.top_logprobs: TopLogprobs = top_logprobs if top_logprobs is not None else {"A": -0.1, "B": -2.5}
        self.fault_for = fault_for
        self.delay_s = delay_s  # every request is held this long (to observe concurrency)
        self.hang_s = hang_s  # how long a "timeout" fault holds the request
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ids = itertools.count(1)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._init_batch_api()

    # -- lifecycle ----------------------------------------------------------------------------------
    def __enter__(self) -> FakeOpenAIServer:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01})
        self._thread.daemon = True
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()  # wakes requests held by "timeout"
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        assert self._httpd is not None, "use FakeOpenAIServer as a context manager"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """The base_url for the SDK (ends in /v1)."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- queries for tests --------------------------------------------------------------------------
    def calls(self, path: str | None = None) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    # -- request handling ---------------------------------------------------------------------------
    def _handle(self, h: _Handler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = h.path.split("?", 1)[0]
        with self._lock:
            fault = self.fault_for(path, body or {}) if self.fault_for is not None else None
            if fault is None and self.faults:
                fault = self.faults.popleft()
            headers = {k.lower(): v for k, v in h.headers.items()}
            record = Recorded(path, headers, raw, body, fault, time.monotonic(), method=h.command)
            self.requests.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                self._stop.wait(self.delay_s)
            self._respond(h, path, body, fault, record)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _respond(
        self, h: _Handler, path: str, body: dict[str, Any] | None, fault: str | None, record: Recorded
    ) -> None:
        if path.startswith(("/v1/files", "/v1/batches")):
            return self._batch_api(h, path, fault, record)
        if h.command != "POST" or path not in ("/v1/chat/completions", "/v1/completions"):
            return self._send_error(h, 404, f"no route {h.command} {path}")
        if body is None:
            return self._send_error(h, 400, "request body is not JSON")
        if fault == "timeout":
            self._stop.wait(self.hang_s)
            h.close_connection = True  # too late: the client has given up; not recorded as received
            return self._send(h, 200, json.dumps(self._answer(path, body)).encode(), "application/json")
        if fault == "garbage":
            return self._send(h, 200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        if fault == "garbage_json":
            return self._send(h, 200, b'{"id": "chatcmpl-1", "choices": [', "application/json")
        if fault == "empty_choices":
            return self._send_json(h, 200, self._answer(path, body) | {"choices": []}, record)
        if fault == "no_logprobs":
            answer = self._answer(path, body)
            for choice in answer["choices"]:
                choice["logprobs"] = None
            return self._send_json(h, 200, answer, record)
        if fault in ("echo_auth", "echo_auth_401"):
            status = 401 if fault == "echo_auth_401" else 400
            return self._send_error(h, status, f"rejected credentials {record.headers.get('authorization')}")
        if fault in ("empty_content", "blank_content"):
            answer = self._answer(path, body)
            for choice in answer["choices"]:
                text = "" if fault == "empty_content" else " \n\t "
                if "message" in choice:
                    choice["message"]["content"] = text
                else:
                    choice["text"] = text
            return self._send_json(h, 200, answer, record)
        if fault == "bad_utf8":
            data = json.dumps(self._answer(path, body)).encode()
            marker = b'"content": "' if path == "/v1/chat/completions" else b'"text": "'
            cut = data.index(marker) + len(marker)  # inside the answer text
            return self._send(h, 200, data[:cut] + b"\xff" + data[cut:], "application/json")
        if fault is not None:
            status, _, retry_after = fault.partition(":")
            headers = {"Retry-After": retry_after or "0"} if status == "429" else {}
            return self._send_error(h, int(status), f"injected fault {fault}", headers)
        return self._send_json(h, 200, self._answer(path, body), record)

    def _answer(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        chat = path == "/v1/chat/completions"
        wants_logprobs = bool(body.get("logprobs")) if chat else body.get("logprobs") is not None
        top: dict[str, float] = {}
        if wants_logprobs:
            top = self.top_logprobs(body) if callable(self.top_logprobs) else dict(self.top_logprobs)
            top = dict(sorted(top.items(), key=lambda kv: -kv[1]))
            n = int(body.get("top_logprobs") or 0) if chat else int(body["logprobs"])
            top = dict(itertools.islice(top.items(), n))
        # with logprobs, answer greedily: the most likely token
        text = next(iter(top)) if top else self.responder(body)
        finish = "stop"
        stops = body.get("stop") or []
        for stop in [stops] if isinstance(stops, str) else stops:
            if stop in text:
                text = text[: text.index(stop)]
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        tokens = _TOKEN.findall(text)
        if max_tokens is not None and len(tokens) > max_tokens:
            # keep the text up to the end of the max_tokens-th token
            ends = [m.end() for m in _TOKEN.finditer(text)]
            text = text[: ends[max_tokens - 1]]
            tokens = tokens[:max_tokens]
            finish = "length"
        if chat:
            prompt_tokens = sum(count_tokens(m.get("content") or "") + 3 for m in body["messages"])
        else:
            prompt_tokens = count_tokens(prompt_text(body))
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(tokens),
            "total_tokens": prompt_tokens + len(tokens),
        }
        n = next(self._ids)
        common = {"created": int(time.time()), "model": body.get("model", "unknown"), "usage": usage}
        if chat:
            logprobs = None
            if top:
                entries = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top.items()]
                first = entries[0] | {"top_logprobs": entries}
                logprobs = {"content": [first], "refusal": None}
            return {
                "id": f"chatcmpl-fake{n}",
                "object": "chat.completion",
                **common,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "finish_reason": finish,
                        "logprobs": logprobs,
                    }
                ],
            }
        logprobs = None
        if top:
            first_token, first_lp = next(iter(top.items()))
            logprobs = {
                "tokens": [first_token],
                "token_logprobs": [first_lp],
                "top_logprobs": [top],
                "text_offset": [0],
            }
        return {
            "id": f"cmpl-fake{n}",
            "object": "text_completion",
            **common,
            "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": logprobs}],
        }

    # -- wire -----------------------------------------------------------------------------------------
    def _send(
        self,
        h: _Handler,
        status: int,
        payload: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(payload)
        h.wfile.flush()

    def _send_json(self, h: _Handler, status: int, obj: dict[str, Any], record: Recorded) -> None:
        record.response = obj
        self._send(h, status, json.dumps(obj).encode(), "application/json")

    def _send_error(
        self, h: _Handler, status: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        kind = (
            "rate_limit_error"
            if status == 429
            else "server_error"
            if status >= 500
            else "invalid_request_error"
        )
        payload = {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}
        self._send(h, status, json.dumps(payload).encode(), "application/json", headers)

    # == Batch API: /v1/files and /v1/batches =====================================================
    # Uploaded JSONL files are answered line by line with `_answer` (the online logic) when a batch
    # reaches its outcome. How each batch runs is scripted by `BatchPlan`s (one per created batch, in
    # order; `default_plan` once they run out); `line_fault(url, body)` makes single lines fail.

    def _init_batch_api(self) -> None:
        self.files: dict[str, FakeFile] = {}
        self.batches: dict[str, FakeBatch] = {}
        self.batch_plans: deque[BatchPlan] = deque()
        self.default_plan = BatchPlan()
        # Faults (the queue / fault_for) on these routes: "<status>" answers that error; "lost_response"
        # on a create creates the batch, then drops the connection unanswered.
        # fault name for one line: "<status>" (non-200 line in the error file), "line_error" (an error
        # object, no response), or "empty_choices" / "no_logprobs" (a malformed 200 answer)
        self.line_fault: Callable[[str, dict[str, Any]], str | None] | None = None
        self.echo_auth = False  # error texts repeat the request's Authorization header (a leaky server)
        self._batch_ids = itertools.count(1)

    def uploads(self) -> list[Recorded]:
        return [r for r in self.calls("/v1/files") if r.method == "POST"]

    def creates(self) -> list[Recorded]:
        return [r for r in self.calls("/v1/batches") if r.method == "POST"]

    def polls(self) -> list[Recorded]:
        return [r for r in self.calls() if r.method == "GET" and r.path.startswith("/v1/batches/")]

    def _batch_api(self, h: _Handler, path: str, fault: str | None, record: Recorded) -> None:
        if fault is not None and fault.split(":")[0].isdigit():
            status, _, retry_after = fault.partition(":")
            headers = {"Retry-After": retry_after or "0"} if status == "429" else {}
            return self._send_error(h, int(status), f"injected fault {fault}", headers)
        parts = path.strip("/").split("/")[1:]  # drop "v1"
        with self._lock:
            if h.command == "POST" and parts == ["files"]:
                return self._send_json(h, 200, self._upload(h, record), record)
            if h.command == "GET" and len(parts) == 3 and parts[0] == "files" and parts[2] == "content":
                file = self.files.get(parts[1])
                if file is None:
                    return self._send_error(h, 404, f"no file {parts[1]}")
                return self._send(h, 200, file.data, "application/octet-stream")
            if h.command == "POST" and parts == ["batches"]:
                return self._create_batch(h, record, lose_response=fault == "lost_response")
            if h.command == "GET" and parts == ["batches"]:
                return self._send_json(h, 200, self._list_batches(h.path), record)
            batch = self.batches.get(parts[1]) if len(parts) >= 2 and parts[0] == "batches" else None
            if batch is None:
                return self._send_error(h, 404, f"no route {h.command} {path}")
            if h.command == "GET" and len(parts) == 2:
                self._advance(batch)
            elif h.command == "POST" and parts[2:] == ["cancel"]:
                batch.cancel_requested = True
                if batch.status not in _FINAL:
                    batch.status = "cancelling"
            else:
                return self._send_error(h, 404, f"no route {h.command} {path}")
            return self._send_json(h, 200, self._batch_json(batch), record)

    def _upload(self, h: _Handler, record: Recorded) -> dict[str, Any]:
        head = f"Content-Type: {h.headers.get('Content-Type', '')}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + record.raw)
        fields: dict[str, Any] = {}
        filename = "upload"
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[name] = part.get_payload(decode=True)
            filename = part.get_filename() or filename
        file = FakeFile(
            f"file-fake{len(self.files) + 1}", fields["file"], fields["purpose"].decode(), filename
        )
        self.files[file.id] = file
        return file.json()

    def _create_batch(self, h: _Handler, record: Recorded, lose_response: bool = False) -> None:
        """Create a batch; `lose_response`: create it, then drop the connection without an answer."""
        body = record.body or {}
        file = self.files.get(body.get("input_file_id", ""))
        if file is None or file.purpose != "batch":
            return self._send_error(h, 400, f"no batch input file {body.get('input_file_id')!r}")
        plan = self.batch_plans.popleft() if self.batch_plans else self.default_plan
        batch = FakeBatch(
            id=f"batch_fake{next(self._batch_ids)}",
            input_file_id=file.id,
            endpoint=body["endpoint"],
            completion_window=body["completion_window"],
            metadata=body.get("metadata"),
            plan=plan,
            polls=plan.polls,
            auth=h.headers.get("Authorization", ""),
        )
        batch.lines, batch.errors = self._validate(file, batch.endpoint)
        self.batches[batch.id] = batch
        if lose_response:
            h.close_connection = True
            return None
        return self._send_json(h, 200, self._batch_json(batch), record)

    def _list_batches(self, raw_path: str) -> dict[str, Any]:
        query = parse_qs(urlsplit(raw_path).query)
        limit = int(query.get("limit", ["20"])[0])
        newest_first = list(reversed(self.batches.values()))
        after = query.get("after", [None])[0]
        if after is not None:
            ids = [b.id for b in newest_first]
            newest_first = newest_first[ids.index(after) + 1 :] if after in ids else []
        page = newest_first[:limit]
        return {
            "object": "list",
            "data": [self._batch_json(b) for b in page],
            "has_more": len(newest_first) > limit,
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
        }

    def _validate(self, file: FakeFile, endpoint: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The checks OpenAI runs while `validating`: any failure fails the whole batch."""
        lines: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        ids: set[str] = set()
        models: set[str] = set()
        for n, raw in enumerate(file.data.decode("utf-8").splitlines(), 1):
            try:
                line = json.loads(raw)
                custom_id, url, body = line["custom_id"], line["url"], line["body"]
                if line["method"] != "POST" or url != endpoint:
                    raise ValueError(f"method/url {line['method']} {url} != POST {endpoint}")
            except (ValueError, KeyError, TypeError) as exc:
                errors.append({"code": "invalid_request", "line": n, "message": str(exc), "param": None})
                continue
            if custom_id in ids:
                errors.append({"code": "duplicate_custom_id", "line": n, "message": custom_id, "param": None})
            ids.add(custom_id)
            models.add(body.get("model"))
            lines.append(line)
        if len(models) > 1:
            errors.append({"code": "mixed_models", "line": None, "message": str(models), "param": None})
        return lines, errors

    def _advance(self, batch: FakeBatch) -> None:
        """One poll: stay in `validating` / `in_progress` / `finalizing` for `polls` polls, then the plan's
        outcome (or `failed` when validation failed, `cancelled` after a cancel)."""
        if batch.status in _FINAL:
            return
        if batch.errors:
            return self._finish(batch, "failed")
        if batch.cancel_requested:
            return self._finish(batch, "cancelled")
        if batch.polls > 0:
            batch.polls -= 1
            batch.polled += 1
            batch.status = "finalizing" if batch.polls == 0 else "in_progress"
            batch.completed = len(batch.lines) * batch.polled // (batch.polled + batch.polls + 1)
            return None
        outcome = batch.plan.outcome
        if outcome == "failed":
            batch.errors = batch.plan.errors or [
                {"code": "server_error", "line": None, "message": "injected batch failure", "param": None}
            ]
            if self.echo_auth:
                batch.errors = [e | {"message": f"{e['message']} ({batch.auth})"} for e in batch.errors]
        return self._finish(batch, outcome)

    def _finish(self, batch: FakeBatch, status: str) -> None:
        batch.status = status
        if status == "failed":
            return
        answered = batch.lines if batch.plan.answered is None else batch.lines[: batch.plan.answered]
        outputs: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for line in answered:
            ok, entry = self._answer_line(batch, line)
            (outputs if ok else errors).append(entry)
        if status == "expired" and batch.plan.expired_in_error_file:
            for line in batch.lines[len(answered) :]:
                error = {"code": "batch_expired", "message": "not executed before the window expired"}
                errors.append({"id": f"batch_req_{line['custom_id']}", "custom_id": line["custom_id"],
                               "response": None, "error": error})  # fmt: skip
        if batch.plan.shuffle:
            random.Random(batch.id).shuffle(outputs)
        batch.completed, batch.failed = len(outputs), len(errors)
        batch.answered_lines = [line["custom_id"] for line in answered]
        batch.output_file_id = self._store_jsonl(outputs) if outputs else None
        batch.error_file_id = self._store_jsonl(errors) if errors else None

    def _answer_line(self, batch: FakeBatch, line: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        url, body = line["url"], line["body"]
        fault = self.line_fault(url, body) if self.line_fault is not None else None
        entry: dict[str, Any] = {"id": f"batch_req_{line['custom_id']}", "custom_id": line["custom_id"]}
        message = f"injected fault {fault}" + (f" for {batch.auth}" if self.echo_auth else "")
        if fault == "line_error":
            return False, entry | {"response": None, "error": {"code": "line_error", "message": message}}
        if fault is not None and fault.isdigit():
            error = {"error": {"message": message, "type": "invalid_request_error", "code": fault}}
            response = {"status_code": int(fault), "request_id": "req_fake", "body": error}
            return False, entry | {"response": response, "error": None}
        answer = self._answer(url, body)
        if fault == "empty_choices":
            answer["choices"] = []
        elif fault == "no_logprobs":
            for choice in answer["choices"]:
                choice["logprobs"] = None
        response = {"status_code": 200, "request_id": "req_fake", "body": answer}
        return True, entry | {"response": response, "error": None}

    def _store_jsonl(self, rows: list[dict[str, Any]]) -> str:
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
        file = FakeFile(f"file-fake{len(self.files) + 1}", data, "batch_output", "output.jsonl")
        self.files[file.id] = file
        return file.id

    def _batch_json(self, batch: FakeBatch) -> dict[str, Any]:
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": batch.endpoint,
            "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
            "input_file_id": batch.input_file_id,
            "completion_window": batch.completion_window,
            "status": batch.status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "created_at": batch.created_at,
            "expires_at": batch.created_at + 86400,
            "request_counts": {
                "total": len(batch.lines),
                "completed": batch.completed,
                "failed": batch.failed,
            },
            "metadata": batch.metadata,
        }


_FINAL = ("completed", "expired", "failed", "cancelled")


@dataclass
class BatchPlan:
    """How the fake runs one batch."""

    polls: int = 1  # polls answered `validating` / `in_progress` / `finalizing` before the outcome
    outcome: Literal["completed", "expired", "failed"] = "completed"
    answered: int | None = None  # expired / cancelled: lines answered before the end (None: all)
    expired_in_error_file: bool = False  # expired: unanswered lines appear in the error file
    errors: list[dict[str, Any]] = field(default_factory=list)  # failed: the batch's errors
    shuffle: bool = False  # output lines in a shuffled order


@dataclass
class FakeFile:
    id: str
    data: bytes
    purpose: str
    filename: str

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": int(time.time()),
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


@dataclass
class FakeBatch:
    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None
    plan: BatchPlan
    polls: int  # polls left before the outcome (tests may change it)
    auth: str
    status: str = "validating"
    polled: int = 0  # polls answered before the outcome
    lines: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    completed: int = 0
    failed: int = 0
    cancel_requested: bool = False
    output_file_id: str | None = None
    error_file_id: str | None = None
    answered_lines: list[str] = field(default_factory=list)
    created_at: int = field(default_factory=lambda: int(time.time()))
