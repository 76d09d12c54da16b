"""Any OpenAI-compatible endpoint: OpenAI itself, `vllm serve`, or a local test server.

Async with bounded concurrency; our own retry policy (the SDK's retries are switched off so that there
is exactly one). The API key is read from the environment variable named in params, never stored.
"""

from __future__ import annotations

import asyncio
import math
import os
from typing import Any

import openai
from tqdm.auto import tqdm

from jalign.llm.client import OnResult, render_raw
from jalign.llm.retry import FatalError, RetryableError, RetryPolicy, with_retries
from jalign.llm.types import Choice, Generation, LLMConfig, Request, Sampling

# The OpenAI API accepts at most 20 top log-probs.
TOP_LOGPROBS = 20


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _classify(exc: Exception) -> Exception:
    """Map SDK exceptions onto the retry policy's two kinds."""
    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError):
        return RetryableError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code in (408, 409, 429) or exc.status_code >= 500:
            return RetryableError(f"HTTP {exc.status_code}: {exc.message}", _retry_after(exc))
        return FatalError(f"HTTP {exc.status_code}: {exc.message}")
    if isinstance(
        exc, openai.APIResponseValidationError | ValueError | LookupError | TypeError | AttributeError
    ):
        return RetryableError(f"malformed response: {type(exc).__name__}: {exc}")
    return exc


class OpenAIBackend:
    def __init__(self, config: LLMConfig) -> None:
        self.config = config
        self.chunk_size = config.max_concurrency * 4
        api_key = os.environ.get(config.api_key_env)
        if not api_key:
            if config.base_url is None:
                raise RuntimeError(
                    f"environment variable {config.api_key_env} is not set (needed for the OpenAI API)"
                )
            api_key = "EMPTY"  # local servers (vllm serve) accept any key
        self.policy = RetryPolicy(max_retries=config.max_retries, base_delay_s=config.retry_base_delay_s)
        self._client_kwargs = {
            "api_key": api_key,
            "base_url": config.base_url,
            "timeout": config.timeout_s,
            "max_retries": 0,
        }

    # -- public, synchronous ---------------------------------------------------------------------
    def generate(self, requests: list[Request], on_result: OnResult | None = None) -> list[Generation]:
        return asyncio.run(self._gather(requests, self._generate_one, Generation, "generate", on_result))

    def choose(
        self, requests: list[Request], choices: tuple[str, ...], on_result: OnResult | None = None
    ) -> list[Choice]:
        async def one(client: openai.AsyncOpenAI, request: Request) -> Choice:
            return await self._choose_one(client, request, choices)

        return asyncio.run(self._gather(requests, one, Choice, "choose", on_result))

    # -- plumbing ---------------------------------------------------------------------------------
    async def _gather(self, requests, one, result_type, desc, on_result):
        semaphore = asyncio.Semaphore(self.config.max_concurrency)
        bar = tqdm(total=len(requests), desc=f"{desc} {self.config.model}", unit="req")
        async with openai.AsyncOpenAI(**self._client_kwargs) as client:

            async def guarded(index: int, request: Request):
                async with semaphore:
                    try:
                        result = await with_retries(
                            lambda: self._call(one, client, request), self.policy, desc
                        )
                    except (RetryableError, FatalError) as exc:
                        result = result_type(error=str(exc))
                    bar.update(1)
                    if on_result:
                        on_result(index, result)  # cached now, before the rest of the chunk returns
                    return result

            results = await asyncio.gather(*(guarded(i, r) for i, r in enumerate(requests)))
        bar.close()
        return list(results)

    async def _call(self, one, client, request):
        try:
            return await one(client, request)
        except (RetryableError, FatalError):
            raise
        except Exception as exc:
            raise _classify(exc) from exc

    async def _generate_one(self, client: openai.AsyncOpenAI, request: Request) -> Generation:
        create = (
            client.completions.create
            if self.config.prompt_format == "raw"
            else client.chat.completions.create
        )
        resp = await create(**request_kwargs(self.config, request))
        return parse_generation(resp, self.config.prompt_format)

    async def _choose_one(
        self, client: openai.AsyncOpenAI, request: Request, choices: tuple[str, ...]
    ) -> Choice:
        create = (
            client.completions.create
            if self.config.prompt_format == "raw"
            else client.chat.completions.create
        )
        resp = await create(**request_kwargs(self.config, request, choose=True))
        return parse_choice(resp, self.config.prompt_format, choices)


# -- request bodies and answers, shared with the Batch API backend ---------------------------------


def endpoint(config: LLMConfig) -> str:
    """The API path a request goes to: raw prompts continue text, chat prompts are chat."""
    return "/v1/completions" if config.prompt_format == "raw" else "/v1/chat/completions"


def request_kwargs(config: LLMConfig, request: Request, *, choose: bool = False) -> dict[str, Any]:
    """The SDK keyword arguments of one request (`extra_body` holds fields the OpenAI API lacks).

    `choose` asks for one greedy token with its top log-probs instead of an answer."""
    sampling: Sampling = request.sampling
    kwargs: dict[str, Any] = {
        "model": config.model,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
        "seed": sampling.seed,
    }
    if sampling.stop:
        kwargs["stop"] = list(sampling.stop)[:4]  # the OpenAI API takes at most 4
    if sampling.repetition_penalty != 1.0:
        kwargs["extra_body"] = {"repetition_penalty": sampling.repetition_penalty}  # vLLM extension
    if choose:
        kwargs |= {"max_tokens": 1, "temperature": 0.0}
        kwargs.pop("stop", None)
    if config.prompt_format == "raw":
        kwargs["prompt"] = render_raw(request.messages)
        if choose:
            kwargs["logprobs"] = TOP_LOGPROBS
    else:
        kwargs["messages"] = list(request.messages)
        if choose:
            kwargs |= {"logprobs": True, "top_logprobs": TOP_LOGPROBS}
    return kwargs


def json_body(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The JSON body the SDK sends for `kwargs`: `extra_body` merged into the top level."""
    body = {k: v for k, v in kwargs.items() if k != "extra_body"}
    return body | kwargs.get("extra_body", {})


def parse_generation(resp: Any, prompt_format: str) -> Generation:
    """A chat.completion / text_completion -> Generation. Raises on a malformed answer; an empty or
    whitespace-only text is malformed too (never a silent success)."""
    choice = resp.choices[0]
    text = choice.text if prompt_format == "raw" else choice.message.content
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"no text in response: {text!r} (finish_reason={choice.finish_reason})")
    usage = resp.usage
    return Generation(
        text=text,
        input_tokens=usage.prompt_tokens if usage else 0,
        output_tokens=usage.completion_tokens if usage else 0,
        finish_reason=choice.finish_reason,
    )


def parse_choice(resp: Any, prompt_format: str, choices: tuple[str, ...]) -> Choice:
    """A one-token answer with top log-probs -> Choice (an error when no choice is among them)."""
    if prompt_format == "raw":
        top = resp.choices[0].logprobs.top_logprobs[0]  # {token: logprob}
        candidates = list(top.items())
    else:
        candidates = [(t.token, t.logprob) for t in resp.choices[0].logprobs.content[0].top_logprobs]
    probs = choice_probs(candidates, choices)
    usage = resp.usage
    mass = sum(probs.values())
    if mass <= 0:
        return Choice(error=f"none of {choices} among the top {TOP_LOGPROBS} next tokens")
    return Choice(
        probs={c: p / mass for c, p in probs.items()},
        mass=mass,
        input_tokens=usage.prompt_tokens if usage else 0,
    )


def choice_probs(candidates: list[tuple[str, float]], choices: tuple[str, ...]) -> dict[str, float]:
    """Sum the probability of top tokens that spell a choice ("A", " A", "[A", "A." ...) or the unique
    first piece of one (a tokenizer may split a longer choice)."""
    probs = dict.fromkeys(choices, 0.0)
    for token, logprob in candidates:
        piece = token.strip().strip(_WRAPPERS)
        if not piece:
            continue
        if piece in probs:
            probs[piece] += math.exp(logprob)
            continue
        matches = [c for c in choices if c.startswith(piece)]
        if len(matches) == 1:
            probs[matches[0]] += math.exp(logprob)
    return probs


_WRAPPERS = "[]【】「」()（）.。:：*\"'`"
