"""The one LLM client every stage uses: cache first, then the backend, with usage, cost and budget.

Stages never talk to a backend directly. Uncached requests go to the backend in chunks; each chunk's
answers are written to the cache as soon as they arrive, so an interrupted stage resumes where it
stopped and nothing answered is paid twice. Failed rows come back with `error` set (never None).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar

from jalign.llm.cache import ResponseCache, cache_key
from jalign.llm.types import Choice, Generation, LLMConfig, Price, Request

log = logging.getLogger(__name__)

R = TypeVar("R", Generation, Choice)


class BudgetExceeded(RuntimeError):
    """Raised before a chunk whose worst-case cost would take spending past the stage's budget."""


OnResult = Callable[[int, Any], None]


class Backend(Protocol):
    """`on_result(i, answer)` is called as soon as answer i exists, so the client can cache it at once:
    a run killed mid-chunk loses no answer it already received."""

    chunk_size: int

    def generate(self, requests: list[Request], on_result: OnResult | None = None) -> list[Generation]: ...

    def choose(
        self, requests: list[Request], choices: tuple[str, ...], on_result: OnResult | None = None
    ) -> list[Choice]: ...


@dataclass
class Budget:
    """A stage's spending limit, shared by all its clients (roles)."""

    limit_usd: float | None = None
    spent_usd: float = 0.0


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


def render_raw(messages: Sequence[dict[str, str]]) -> str:
    """`prompt_format: raw`: the message texts joined, for a base model to continue."""
    return "\n\n".join(m["content"] for m in messages)


def make_backend(config: LLMConfig) -> Backend:
    """Backends are imported lazily: a fully cached rerun never loads a model or opens a socket."""
    if config.backend == "transformers":
        from jalign.llm.transformers_backend import TransformersBackend

        return TransformersBackend(config)
    if config.backend == "openai":
        from jalign.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(config)
    if config.backend == "openai_batch":
        from jalign.llm.openai_batch_backend import OpenAIBatchBackend

        return OpenAIBatchBackend(config)
    if config.backend == "vllm":
        from jalign.llm.vllm_backend import VLLMBackend

        return VLLMBackend(config)
    raise ValueError(f"unknown backend {config.backend!r}")


def identity(config: LLMConfig) -> dict[str, Any]:
    """Everything about the model that determines a response (part of every cache key)."""
    if config.backend in ("openai", "openai_batch"):
        # The Batch API runs the same model as the online endpoint: both share one cache entry.
        return {
            "backend": "openai",
            "model": config.model,
            "base_url": (config.base_url or "https://api.openai.com/v1").rstrip("/"),
            "prompt_format": config.prompt_format,
        }
    from jalign.models import resolve

    source = resolve(config.model)
    return {
        "backend": config.backend,
        "model": source.location if source.kind == "hub" else source.ref,
        "revision": source.revision,
        "dtype": config.dtype,
        "prompt_format": config.prompt_format,
    }


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
        self.price = price or Price()
        self.budget = budget or Budget()
        self.cache = cache if cache is not None else ResponseCache()
        self._backend = backend
        self._identity = identity(config)
        self.usage = Usage()

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
            call=lambda reqs, on_result: self.backend.generate(reqs, on_result),
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
            call=lambda reqs, on_result: self.backend.choose(reqs, choices, on_result),
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
        call: Callable[[list[Request], OnResult], list[R]],
        from_cache: Callable[[dict[str, Any]], R],
        to_cache: Callable[[R], dict[str, Any]],
    ) -> list[R]:
        keys = [self.key(r, mode) for r in requests]
        hits = self.cache.get_many(sorted(set(keys)))
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
        chunk = max(1, self.backend.chunk_size) if todo else 1
        for start in range(0, len(todo), chunk):
            chunk_keys = todo[start : start + chunk]
            chunk_requests = [requests[pending[k][0]] for k in chunk_keys]
            self._check_budget(chunk_requests)

            def save(j: int, answer: R, chunk_keys: list[str] = chunk_keys) -> None:
                if answer.ok:  # failures are not cached: a rerun retries them
                    self.cache.put_many({chunk_keys[j]: to_cache(answer)})

            answers = call(chunk_requests, save)
            for key, answer in zip(chunk_keys, answers, strict=True):
                self.usage.new_calls += 1
                self._account(answer)
                for i in pending[key]:
                    results[i] = answer
        self.usage.failed += sum(1 for r in results if r is not None and not r.ok)
        return results  # type: ignore[return-value]

    def _account(self, answer: Generation | Choice) -> None:
        out_tokens = answer.output_tokens if isinstance(answer, Generation) else 0
        self.usage.input_tokens += answer.input_tokens
        self.usage.output_tokens += out_tokens
        usd = (answer.input_tokens * self.price.input + out_tokens * self.price.output) / 1e6
        self.usage.usd += usd
        self.budget.spent_usd += usd

    def _check_budget(self, requests: list[Request]) -> None:
        limit = self.budget.limit_usd
        if limit is None or (self.price.input == 0 and self.price.output == 0):
            return
        # Worst case: one token per prompt character (Japanese is ~1 char/token, English less) and
        # every answer running to max_tokens.
        est_in = sum(len(m["content"]) for r in requests for m in r.messages)
        est_out = sum(r.sampling.max_tokens for r in requests)
        worst = (est_in * self.price.input + est_out * self.price.output) / 1e6
        if self.budget.spent_usd + worst > limit:
            raise BudgetExceeded(
                f"stopping before exceeding budget_usd={limit}: spent {self.budget.spent_usd:.4f} USD, "
                f"the next {len(requests)} requests may cost up to {worst:.4f} USD "
                "(answers so far are cached; raise the budget and rerun to continue)"
            )
