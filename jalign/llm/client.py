"""The one LLM client every stage uses: cache first, then the backend, with usage, cost and budget.

Stages never talk to a backend directly. All uncached requests of a call go to the backend at once and
stream back: the openai backend keeps `max_concurrency` requests in flight through one sliding window
(a new request starts the moment a slot frees; no chunk waits for its slowest answer). Each answer is
committed to the cache the moment it arrives, before the backend sends its next request, so an
interrupted stage resumes where it stopped and a `kill -9` repeats at most the requests that were in
flight. Identical requests are sent once.

The budget is exact under concurrency: before a request is sent, its worst-case cost is reserved; when
its answer arrives the reservation is replaced by the real cost. A request whose reservation would
take spending past the limit is not sent: the backend stops sending and lets the requests in flight
finish, then the client hands it the unanswered rest again, admitted while the budget holds one more
worst case (real answers cost far less than theirs). BudgetExceeded, naming what was spent once every
answer settled, only when nothing is in flight and the next request still does not fit.

Failed rows come back with `error` set (never None); an empty or whitespace-only answer is a failure,
never a success, and failures are never cached (an empty answer found in an older cache is a miss).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol, TypeVar

from jalign.errors import JalignError
from jalign.llm.cache import ResponseCache, cache_key
from jalign.llm.types import Admit, Choice, Generation, LLMConfig, OnResult, Price, Request, request_url
from jalign.redact import redact, redact_url

log = logging.getLogger(__name__)

R = TypeVar("R", Generation, Choice)

# Chat formats add a few tokens around every message and the reply.
_TOKENS_PER_MESSAGE = 8


class BudgetExceeded(JalignError, RuntimeError):
    """Raised instead of sending a request whose worst-case cost would take spending past the budget."""


class Backend(Protocol):
    """Every request handed over gets exactly one `on_result(i, answer)` call (answer or failure), as
    soon as it exists; `admit(i)` is called right before request i is sent and may raise
    BudgetExceeded, after which the backend sends nothing more and re-raises once in-flight requests
    are back (the client then calls again with the requests still unanswered)."""

    def generate(
        self, requests: list[Request], on_result: OnResult, admit: Admit | None = None
    ) -> list[Generation]: ...

    def choose(
        self,
        requests: list[Request],
        choices: tuple[str, ...],
        on_result: OnResult,
        admit: Admit | None = None,
    ) -> list[Choice]: ...


@dataclass
class Budget:
    """A stage's spending limit, shared by all its clients (roles); safe to use from several threads."""

    limit_usd: float | None = None
    spent_usd: float = 0.0
    reserved_usd: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def reserve(self, usd: float) -> None:
        with self._lock:
            if self.limit_usd is not None and self.spent_usd + self.reserved_usd + usd > self.limit_usd:
                raise BudgetExceeded(
                    f"stopping before exceeding budget_usd={self.limit_usd}: spent {self.spent_usd:.4f} USD, "
                    f"{self.reserved_usd:.4f} USD reserved by requests in flight, the next request may cost "
                    f"up to {usd:.4f} USD (answers so far are cached; raise the budget and rerun to continue)"
                )
            self.reserved_usd += usd

    def exceeded(self, next_usd: float) -> BudgetExceeded:
        """The error a stage ends with, once every answer in flight has settled (so `spent` is final)."""
        return BudgetExceeded(
            f"stopping before exceeding budget_usd={self.limit_usd}: spent {self.spent_usd:.4f} USD with "
            f"every answer settled; the next request may cost up to {next_usd:.4f} USD (answers so far are "
            "cached; raise the budget and rerun to continue)"
        )

    def settle(self, reserved: float, actual: float) -> None:
        with self._lock:
            self.reserved_usd = max(0.0, self.reserved_usd - reserved)
            self.spent_usd += actual


@dataclass
class Usage:
    requests: int = 0
    cached: int = 0
    new_calls: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float = 0.0

    def add(self, other: Usage) -> Usage:
        return Usage(**{k: getattr(self, k) + getattr(other, k) for k in asdict(self)})

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "usd": round(self.usd, 6)}


def make_backend(config: LLMConfig) -> Backend:
    """Backends are imported lazily: a fully cached rerun never loads a model or opens a socket."""
    if config.backend == "transformers":
        from jalign.llm.transformers_backend import TransformersBackend

        return TransformersBackend(config)
    if config.backend == "openai":
        from jalign.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(config)
    if config.backend == "vllm":
        from jalign.llm.vllm_backend import VLLMBackend

        return VLLMBackend(config)
    if config.backend == "ray":
        from jalign.llm.ray_backend import RayBackend

        return RayBackend(config)
    if config.backend == "openai_batch":
        from jalign.llm.openai_batch_backend import OpenAIBatchBackend

        return OpenAIBatchBackend(config)
    raise ValueError(f"unknown backend {config.backend!r}")


def identity(config: LLMConfig) -> dict[str, Any]:
    """Everything about the model that determines a response (part of every cache key): for local
    weights and adapters a hash of their content, so a retrained adapter at the same path is a new
    model whose answers are never served from the old one's cache entries."""
    url = request_url(config)
    if url is not None:
        # The Batch API answers the exact bodies the online endpoint gets: the two share cache entries.
        # A ray http job sends exactly what the openai backend sends: they share cache entries.
        return {
            "backend": "openai",
            "model": config.model,
            "base_url": redact_url(url),
            "prompt_format": config.prompt_format,
        }
    from jalign.models import pick_device, resolve, resolve_dtype

    source = resolve(config.model)
    ident = {
        # A ray vllm job runs what in-process vLLM runs: the same identity, plus answer-changing engine args.
        "backend": "vllm" if config.backend == "ray" else config.backend,
        "model": source.location if source.kind == "hub" else source.ref,
        "revision": source.revision,
        # `native` resolves per machine: a bfloat16 answer and a float32 one are different answers
        "dtype": resolve_dtype(config.dtype, pick_device(config.device)),
        "prompt_format": config.prompt_format,
    }
    if config.adapter:
        adapter = resolve(config.adapter)
        ident["adapter"] = adapter.location if adapter.kind == "hub" else adapter.ref
        ident["adapter_revision"] = adapter.revision
    if config.backend == "ray":
        from jalign.llm.ray_backend import answer_changing_engine_kwargs

        extra = answer_changing_engine_kwargs(config)
        if extra:
            ident["engine_kwargs"] = extra
    return ident


@dataclass
class _Ledger:
    """Per request of one call: its worst-case cost, the part of it reserved now, and whether answered."""

    worst: list[float]
    reserved: list[float] = field(default_factory=list)
    answered: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reserved = [0.0] * len(self.worst)
        self.answered = [False] * len(self.worst)


def worst_case_tokens(request: Request) -> tuple[int, int]:
    """An upper bound of (input, output) tokens: byte-level tokenizers never make more tokens than
    UTF-8 bytes, plus the chat format's per-message overhead; the answer at most max_tokens."""
    est_in = sum(len(m["content"].encode("utf-8")) + _TOKENS_PER_MESSAGE for m in request.messages)
    return est_in + _TOKENS_PER_MESSAGE, request.sampling.max_tokens


class LLMClient:
    def __init__(
        self,
        config: LLMConfig,
        *,
        price: Price | None = None,
        budget: Budget | None = None,
        cache: ResponseCache | None = None,
        backend: Backend | None = None,
    ) -> None:
        self.config = config
        self.price = price or Price(input=0.0, output=0.0)
        self.budget = budget or Budget()
        self.cache = cache if cache is not None else ResponseCache()
        self._backend = backend
        self._identity = identity(config)
        self.usage = Usage()
        if config.backend == "vllm":
            from jalign.llm.vllm_backend import plan

            plan(config)  # before any engine starts: roles sharing a base model share one engine

    @property
    def identity(self) -> dict[str, Any]:
        return dict(self._identity)

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = make_backend(self.config)
        return self._backend

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        return self._run(
            requests,
            mode={"mode": "generate"},
            call=lambda reqs, on_result, admit: self.backend.generate(reqs, on_result, admit),
            from_cache=lambda v: Generation(
                text=v["text"],
                input_tokens=v["input_tokens"],
                output_tokens=v["output_tokens"],
                finish_reason=v.get("finish_reason"),
                cached=True,
            ),
            to_cache=lambda g: {
                "text": g.text,
                "input_tokens": g.input_tokens,
                "output_tokens": g.output_tokens,
                "finish_reason": g.finish_reason,
            },
        )

    def choose(self, requests: Sequence[Request], choices: Sequence[str]) -> list[Choice]:
        choices = tuple(choices)
        if len(set(choices)) != len(choices) or len(choices) < 2:
            raise ValueError(f"choices must be at least two distinct strings, got {choices}")
        return self._run(
            requests,
            mode={"mode": "choose", "choices": list(choices)},
            call=lambda reqs, on_result, admit: self.backend.choose(reqs, choices, on_result, admit),
            from_cache=lambda v: Choice(
                probs=v["probs"], mass=v["mass"], input_tokens=v["input_tokens"], cached=True
            ),
            to_cache=lambda c: {"probs": c.probs, "mass": c.mass, "input_tokens": c.input_tokens},
        )

    def key(self, request: Request, mode: dict[str, Any]) -> str:
        return cache_key(
            {
                "v": 1,
                **self._identity,
                **mode,
                "sampling": asdict(request.sampling),
                "messages": list(request.messages),
            }
        )

    def _run(
        self,
        requests: Sequence[Request],
        *,
        mode: dict[str, Any],
        call: Callable[[list[Request], OnResult, Admit], list[R]],
        from_cache: Callable[[dict[str, Any]], R],
        to_cache: Callable[[R], dict[str, Any]],
    ) -> list[R]:
        keys = [self.key(r, mode) for r in requests]
        hits = self.cache.get_many(sorted(set(keys)))
        # A cache written before empty answers became failures (or merged from one) may hold "": that is
        # a miss, asked again, never a successful empty answer; the new answer replaces the entry.
        hits = {k: v for k, v in hits.items() if "text" not in v or (v["text"] or "").strip()}
        results: list[R | None] = [from_cache(hits[k]) if k in hits else None for k in keys]
        self.usage.requests += len(requests)
        self.usage.cached += sum(r is not None for r in results)
        # Identical uncached requests are sent once.
        pending: dict[str, list[int]] = {}
        for i, (key, result) in enumerate(zip(keys, results, strict=True)):
            if result is None:
                pending.setdefault(key, []).append(i)
        todo = list(pending)
        if todo:
            log.info(
                "%s: %d requests, %d cached, %d to send", mode["mode"], len(requests), len(hits), len(todo)
            )

            def deliver(j: int, answer: R) -> None:
                # Committed before the backend sends its next request, so what a kill -9 can make a rerun
                # repeat is the requests in flight (openai: at most max_concurrency), nothing queued.
                # Failures are not cached: a rerun retries them.
                if answer.ok:
                    self.cache.put_many({todo[j]: to_cache(answer)})
                for i in pending[todo[j]]:
                    results[i] = answer

            self._send([requests[pending[k][0]] for k in todo], call, deliver)
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:  # a backend bug, never a silent gap
            raise RuntimeError(
                f"backend {self.config.backend} returned no answer for {len(missing)} requests"
            )
        self.usage.failed += sum(1 for r in results if r is not None and not r.ok)
        return results  # type: ignore[return-value]

    def _send(
        self,
        requests: list[Request],
        call: Callable[[list[Request], OnResult, Admit], list[R]],
        deliver: Callable[[int, R], None],
    ) -> None:
        """Send `requests` through the backend within the budget, in rounds. A refused reservation ends
        a round: the backend sends nothing more and lets the requests in flight finish. Their real cost
        is usually far below the worst case they reserved, so the next round admits the rest again as
        long as the budget holds one more worst case. BudgetExceeded, with what was spent once every
        answer settled, when a round with nothing in flight could not send a single request."""
        ledger = _Ledger([self._cost(*worst_case_tokens(r)) for r in requests])
        left = list(range(len(requests)))
        while left:
            refused = self._round(left, requests, call, deliver, ledger)
            if refused is None:
                return
            still = [j for j in left if not ledger.answered[j]]
            if len(still) == len(left):  # nothing in flight and still no room: the budget is spent
                raise self.budget.exceeded(ledger.worst[refused]) from None
            left = still

    def _round(
        self,
        ids: list[int],
        requests: list[Request],
        call: Callable[[list[Request], OnResult, Admit], list[R]],
        deliver: Callable[[int, R], None],
        ledger: _Ledger,
    ) -> int | None:
        """One backend call over the requests `ids`; the one whose reservation was refused, else None."""
        refused: list[int] = []

        def admit(k: int) -> None:
            try:
                self.budget.reserve(ledger.worst[ids[k]])
            except BudgetExceeded:
                refused.append(ids[k])
                raise
            ledger.reserved[ids[k]] = ledger.worst[ids[k]]

        def on_result(k: int, answer: R) -> None:
            j = ids[k]
            answer = _redacted(_as_failure_if_empty(answer))
            self._account(answer, ledger.reserved[j], ledger.worst[j])
            ledger.reserved[j], ledger.answered[j] = 0.0, True
            deliver(j, answer)

        try:
            call([requests[j] for j in ids], on_result, admit)
        except BudgetExceeded:
            if not refused:  # not this client's refusal
                raise
        finally:  # admitted but never sent (a batch cut short): the reservation is free again
            for j in ids:
                if ledger.reserved[j] and not ledger.answered[j]:
                    self.budget.settle(ledger.reserved[j], 0.0)
                    ledger.reserved[j] = 0.0
        return refused[0] if refused else None

    def _cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.price.input + output_tokens * self.price.output) / 1e6

    def _account(self, answer: Generation | Choice, reserved: float, worst: float) -> None:
        self.usage.new_calls += 1
        out_tokens = answer.output_tokens if isinstance(answer, Generation) else 0
        # failed attempts billed before the answer are paid for: usage and cost, never the answer record
        self.usage.input_tokens += answer.input_tokens + answer.failed_input_tokens
        self.usage.output_tokens += out_tokens + answer.failed_output_tokens
        usd = self._cost(answer.input_tokens, out_tokens)
        if usd == 0 and answer.ok and answer.input_tokens == 0 and reserved:
            usd = worst  # an endpoint that reports no usage is charged the worst case, never nothing
        usd += self._cost(answer.failed_input_tokens, answer.failed_output_tokens)
        self.usage.usd += usd
        self.budget.settle(reserved, usd)


def _redacted(answer: R) -> R:
    """Secrets masked, for every backend alike, before an answer is cached or written: a server may echo
    the key in an error text, or in an answer."""
    if answer.error:
        answer.error = redact(answer.error)
    if isinstance(answer, Generation) and answer.text:
        answer.text = redact(answer.text)
    return answer


def _as_failure_if_empty(answer: R) -> R:
    if isinstance(answer, Generation) and answer.ok and not (answer.text or "").strip():
        return replace(answer, text=None, error=f"empty answer (finish_reason={answer.finish_reason})")
    return answer
