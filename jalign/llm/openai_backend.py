"""Any OpenAI-compatible endpoint: OpenAI itself, `vllm serve`, or a local test server.

One sliding window per call: `max_concurrency` workers share one event loop and one HTTP client, and
each takes the next request the moment its previous one is answered, so a slow answer holds one slot,
not a whole chunk. Our own retry policy (the SDK's retries are switched off so that there is exactly
one). The API key is read from the environment variable named in params, never stored.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import openai
from tqdm.auto import tqdm

from jalign import redact
from jalign.llm.choices import choice_probs
from jalign.llm.retry import FatalError, RetryableError, RetryPolicy, with_retries
from jalign.llm.types import (
    OPENAI_URL,
    Admit,
    Choice,
    Generation,
    LLMConfig,
    MissingAPIKey,
    OnResult,
    Request,
    Sampling,
    endpoint_url,
    render_raw,
    request_url,
)

# The OpenAI API accepts at most 20 top log-probs.
TOP_LOGPROBS = 20


# -- one HTTP error classification for every backend that speaks HTTP --------------------------------
# openai and openai_batch (through the SDK) and ray's http engine (through aiohttp on Ray workers) map
# a fault onto the retry policy here, so the same fault retries or fails the same way on each of them.

# What a parser raises on a body that is not the answer expected (UnicodeDecodeError is a ValueError).
MALFORMED = (ValueError, LookupError, TypeError, AttributeError)


def status_error(status: int, body: str, retry_after: str | None) -> RetryableError | FatalError:
    """An HTTP error response: 408, 409, 429 and 5xx are worth another try (after Retry-After when the
    server sends one), any other status is final. The reason carries the server's own message."""
    reason = redact.redact(f"HTTP {status}: {error_message(body)}")  # retries log it
    if status in (408, 409, 429) or status >= 500:
        return RetryableError(reason, _seconds(retry_after))
    return FatalError(reason)


def transport_error(exc: BaseException) -> RetryableError:
    """A timeout or a failed connection: worth another try."""
    return RetryableError(redact.redact(f"{type(exc).__name__}: {exc}"))


def malformed(exc: BaseException) -> RetryableError:
    """A body that is not the answer expected (not UTF-8, not JSON, fields missing): worth another try."""
    return RetryableError(redact.redact(f"malformed response: {type(exc).__name__}: {exc}"))


def error_message(body: str) -> str:
    """The server's message from an error body ({"error": {"message": ...}}), else the body itself."""
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, LookupError, TypeError):
        message = body
    return str(message)[:300]


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: the policy's own backoff instead


def classify(exc: Exception) -> Exception:
    """Map SDK exceptions onto the retry policy's two kinds."""
    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError):
        return transport_error(exc)
    if isinstance(exc, openai.APIStatusError):
        return status_error(exc.status_code, _body(exc), exc.response.headers.get("retry-after"))
    if isinstance(exc, (openai.APIResponseValidationError, *MALFORMED)):
        return malformed(exc)
    return exc


def _body(exc: openai.APIStatusError) -> str:
    try:
        return exc.response.text  # undecodable bytes replaced, as ray's http engine reads them
    except Exception:  # a body that could not be read at all
        return exc.message


def api_key(config: LLMConfig) -> str:
    """The key from the environment variable named in params; servers other than the OpenAI API may
    accept any key. The variable and any credentials in the URL become secrets `redact` masks."""
    url = request_url(config)
    redact.register(config.api_key_env)
    redact.register_url(url)
    key = os.environ.get(config.api_key_env)
    if key:
        return key
    if url == OPENAI_URL:
        raise MissingAPIKey(
            f"environment variable {config.api_key_env} is not set (needed for the OpenAI API)"
        )
    return "EMPTY"


def request_body(config: LLMConfig, request: Request, *, choose: bool = False) -> dict[str, Any]:
    """The JSON body the chat (`messages`) or completions (`prompt`) endpoint gets for `request`."""
    sampling: Sampling = request.sampling
    body: dict[str, Any] = {
        "model": config.model,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
        "seed": sampling.seed,
    }
    if sampling.stop and not choose:
        body["stop"] = list(sampling.stop)[:4]  # the OpenAI API takes at most 4
    if sampling.repetition_penalty != 1.0:
        body["repetition_penalty"] = sampling.repetition_penalty  # vLLM extension
    if choose:
        body |= {"max_tokens": 1, "temperature": 0.0}
    if config.prompt_format == "raw":
        body["prompt"] = render_raw(request.messages)
        if choose:
            body["logprobs"] = TOP_LOGPROBS
    else:
        body["messages"] = list(request.messages)
        if choose:
            body |= {"logprobs": True, "top_logprobs": TOP_LOGPROBS}
    return body


def endpoint(config: LLMConfig) -> str:
    """The path under base_url that `request_body` is posted to."""
    return "completions" if config.prompt_format == "raw" else "chat/completions"


def parse_generation(config: LLMConfig, resp: Any) -> Generation:
    """A completion response -> Generation; no choices or an empty answer is a retryable failure."""
    if not resp.choices:
        raise RetryableError("malformed response: no choices")
    choice = resp.choices[0]
    text = choice.text if config.prompt_format == "raw" else choice.message.content
    usage = resp.usage
    if not isinstance(text, str) or not text.strip():
        raise RetryableError(
            f"empty answer (finish_reason={choice.finish_reason})",
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
        )
    return Generation(
        text=text,
        input_tokens=usage.prompt_tokens if usage else 0,
        output_tokens=usage.completion_tokens if usage else 0,
        finish_reason=choice.finish_reason,
    )


def parse_choice(config: LLMConfig, resp: Any, choices: tuple[str, ...]) -> Choice:
    if not resp.choices:
        raise RetryableError("malformed response: no choices")
    if config.prompt_format == "raw":
        top = resp.choices[0].logprobs.top_logprobs[0]  # {token: logprob}
        candidates = list(top.items())
    else:
        candidates = [(t.token, t.logprob) for t in resp.choices[0].logprobs.content[0].top_logprobs]
    probs = choice_probs(candidates, choices)
    mass = sum(probs.values())
    if mass <= 0:
        return Choice(error=f"none of {choices} among the top {TOP_LOGPROBS} next tokens")
    usage = resp.usage
    return Choice(
        probs={c: p / mass for c, p in probs.items()},
        mass=mass,
        input_tokens=usage.prompt_tokens if usage else 0,
    )


class OpenAIBackend:
    def __init__(self, config: LLMConfig) -> None:
        self.config = config
        self.policy = RetryPolicy(max_retries=config.max_retries, base_delay_s=config.retry_base_delay_s)
        self._client_kwargs = {
            "api_key": api_key(config),
            "base_url": endpoint_url(config),
            "timeout": config.timeout_s,
            "max_retries": 0,
        }

    def generate(
        self, requests: list[Request], on_result: OnResult, admit: Admit | None = None
    ) -> list[Generation]:
        async def one(client: openai.AsyncOpenAI, request: Request) -> Generation:
            body = request_body(self.config, request)
            endpoint = client.completions if "prompt" in body else client.chat.completions
            return parse_generation(self.config, await endpoint.create(**_sdk_kwargs(body)))

        return asyncio.run(self._stream(requests, one, Generation, "generate", on_result, admit))

    def choose(
        self,
        requests: list[Request],
        choices: tuple[str, ...],
        on_result: OnResult,
        admit: Admit | None = None,
    ) -> list[Choice]:
        async def one(client: openai.AsyncOpenAI, request: Request) -> Choice:
            body = request_body(self.config, request, choose=True)
            endpoint = client.completions if "prompt" in body else client.chat.completions
            return parse_choice(self.config, await endpoint.create(**_sdk_kwargs(body)), choices)

        return asyncio.run(self._stream(requests, one, Choice, "choose", on_result, admit))

    async def _stream(self, requests, one, result_type, desc, on_result, admit):
        """`max_concurrency` workers over one shared cursor: a sliding window, not chunks."""
        results: list[Any] = [None] * len(requests)
        cursor = iter(range(len(requests)))
        stopped: list[BaseException] = []
        bar = tqdm(total=len(requests), desc=f"{desc} {self.config.model}", unit="req")

        async def worker(client: openai.AsyncOpenAI) -> None:
            for i in cursor:  # shared iterator: each index is taken by exactly one worker
                if stopped:
                    return
                if admit is not None:
                    try:
                        admit(i)
                    except Exception as exc:  # e.g. BudgetExceeded: send nothing more
                        stopped.append(exc)
                        return
                paid = [0, 0]  # tokens billed for attempts that failed after an answer (empty ones)

                async def attempt(i: int = i, paid: list[int] = paid) -> Any:
                    try:
                        return await self._call(one, client, requests[i])
                    except RetryableError as exc:
                        paid[0], paid[1] = paid[0] + exc.input_tokens, paid[1] + exc.output_tokens
                        raise

                try:
                    result = await with_retries(attempt, self.policy, desc)
                except (RetryableError, FatalError) as exc:
                    result = result_type(error=str(exc))
                result.failed_input_tokens, result.failed_output_tokens = paid  # usage, not the answer
                results[i] = result
                bar.update(1)
                on_result(i, result)

        async with openai.AsyncOpenAI(**self._client_kwargs) as client:
            workers = min(self.config.max_concurrency, len(requests))
            await asyncio.gather(*(worker(client) for _ in range(workers)))
        bar.close()
        if stopped:
            raise stopped[0]
        return results

    async def _call(self, one, client, request):
        try:
            return await one(client, request)
        except (RetryableError, FatalError):
            raise
        except Exception as exc:
            raise classify(exc) from exc


def _sdk_kwargs(body: dict[str, Any]) -> dict[str, Any]:
    """The body as SDK keyword arguments (non-standard fields travel in extra_body)."""
    kwargs = dict(body)
    if "repetition_penalty" in kwargs:
        kwargs["extra_body"] = {"repetition_penalty": kwargs.pop("repetition_penalty")}
    return kwargs
