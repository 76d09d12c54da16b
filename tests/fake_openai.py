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
  like a careless proxy); "empty_content" / "blank_content" (200 with an empty / whitespace-only answer).
* Normal answers are deterministic: `responder(body)` gives the text (default: a digest of the last user
  message or of the prompt). Stop sequences and max_tokens are honoured; usage counts tokens with a simple
  word/punctuation tokenizer. When logprobs are requested the first token's `top_logprobs` come from
  `top_logprobs` (a dict token -> logprob, or a callable body -> dict), in the chat format or the
  completions format.
* Every request is recorded (path, headers, raw bytes, parsed body, the fault applied, the response sent,
  arrival time); `max_in_flight` is the most requests the server was handling at the same time.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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
            record = Recorded(path, headers, raw, body, fault, time.monotonic())
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
