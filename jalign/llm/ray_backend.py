"""`backend: ray`: each call is one Ray Data job (`ray.data.llm`), on a local Ray or a cluster of nodes.

engine vllm: one vLLM engine per data-parallel replica (`ray.concurrency`), each spanning
  tensor_parallel_size x pipeline_parallel_size GPUs (or the `placement_group` given, e.g. CPUs for vLLM's
  CPU build). Rows carry the prompt tokens, made in the driver by the code the in-process engines use
  (jalign.llm.prompting): Ray's own chat-template and tokenize stages put a second <bos> before Gemma's
  chat prompts. Needs vllm on every node; run in CI on a local Ray with vLLM's CPU build.
engine http: Ray's HTTP request processor against any OpenAI-compatible endpoint (`vllm serve`, OpenAI),
  sending the openai backend's request bodies, parsing answers and classifying faults with its code.

Every row carries its request index through the job, and answers are handed to `on_result` as rows
stream out of it, so a job that dies keeps (and the client caches) every answer that already arrived.
Rows that fail come back with `error` set and are never cached. ray and vllm are imported inside
functions only: ray is an optional extra, vllm lives on the GPU nodes. Workers import this module
(the postprocess functions and the HTTP session below), so jalign is installed on every node.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
from collections.abc import Callable, Iterator
from typing import Any

from jalign import redact
from jalign.llm.choices import choice_probs
from jalign.llm.openai_backend import (
    MALFORMED,
    TOP_LOGPROBS,
    api_key,
    endpoint,
    malformed,
    parse_choice,
    parse_generation,
    request_body,
    status_error,
    transport_error,
)
from jalign.llm.prompting import end_token_ids, generation_eos, load_tokenizer, render_prompt
from jalign.llm.retry import FatalError, RetryableError, RetryPolicy, with_retries
from jalign.llm.types import (
    Admit,
    Choice,
    Generation,
    LLMConfig,
    OnResult,
    RaySettings,
    Request,
    request_url,
)

log = logging.getLogger(__name__)

# Engine arguments that decide where and how fast answers are computed, not what they are. Every other
# engine argument (quantization, max_logprobs, ...) becomes part of the cache identity.
SCHEDULING_KWARGS = frozenset(
    {
        "tensor_parallel_size",
        "pipeline_parallel_size",
        "data_parallel_size",
        "distributed_executor_backend",
        "gpu_memory_utilization",
        "max_model_len",
        "max_num_seqs",
        "max_num_batched_tokens",
        "enable_prefix_caching",
        "enable_chunked_prefill",
        "enforce_eager",
        "swap_space",
        "disable_log_stats",
        "max_lora_rank",
        "max_loras",
        "enable_lora",
    }
)


def settings_of(config: LLMConfig) -> RaySettings:
    assert config.ray is not None, "backend ray needs its `ray` settings"
    return config.ray


def answer_changing_engine_kwargs(config: LLMConfig) -> dict[str, Any]:
    """vllm engine: the engine arguments that may change answers (quantization ...), for the cache key;
    parallelism and scheduling do not. The model, revision, dtype and adapter are keyed by the client."""
    if settings_of(config).engine != "vllm":
        return {}
    return {
        k: v
        for k, v in vllm_engine_kwargs(config).items()
        if k not in SCHEDULING_KWARGS | {"dtype", "revision"}
    }


def vllm_engine_kwargs(config: LLMConfig) -> dict[str, Any]:
    from jalign.models import resolve

    settings = settings_of(config)
    source = resolve(config.model)
    kwargs: dict[str, Any] = {"dtype": config.dtype}
    if source.kind == "hub" and source.revision != "unpinned":
        kwargs["revision"] = source.revision
    if config.adapter:
        kwargs["enable_lora"] = True
    return kwargs | dict(settings.engine_kwargs)


class RayBackend:
    def __init__(self, config: LLMConfig) -> None:
        try:
            import ray  # noqa: F401
        except ImportError as exc:
            raise RuntimeError("backend: ray needs the optional extra: pip install -e '.[ray]'") from exc
        self.config = config
        self.settings = settings_of(config)
        # the openai backend's key rule (EMPTY for servers that take any key), registered with `redact`
        self._key = api_key(config) if self.settings.engine == "http" else "EMPTY"

    # -- Backend protocol -------------------------------------------------------------------------
    def generate(
        self, requests: list[Request], on_result: OnResult | None = None, admit: Admit | None = None
    ) -> list[Generation]:
        return self._run(requests, None, on_result, admit)

    def choose(
        self,
        requests: list[Request],
        choices: tuple[str, ...],
        on_result: OnResult | None = None,
        admit: Admit | None = None,
    ) -> list[Choice]:
        return self._run(requests, tuple(choices), on_result, admit)

    # -- the job ------------------------------------------------------------------------------------
    def _run(self, requests, choices, on_result, admit):
        """`choices` None: generate. Requests are admitted before the job is built; after a refusal the
        rows admitted so far still run (their budget is reserved), then BudgetExceeded is re-raised."""
        admitted, refusal = len(requests), None
        if admit is not None:
            for i in range(len(requests)):
                try:
                    admit(i)
                except Exception as exc:  # e.g. BudgetExceeded: run what was admitted, then re-raise
                    admitted, refusal = i, exc
                    break
        results: list[Any] = [None] * admitted
        if admitted:
            for index, answer in self._stream(requests[:admitted], choices):
                results[index] = answer
                if on_result is not None:
                    on_result(index, answer)
        if refusal is not None:
            raise refusal
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:  # Ray guarantees one output row per input row; never return a silent None
            raise RuntimeError(f"ray job returned no row for requests {missing[:10]}")
        return results

    def _stream(self, requests: list[Request], choices: tuple[str, ...] | None) -> Iterator[tuple[int, Any]]:
        import ray

        if not ray.is_initialized():
            ray.init(address=self.settings.address)  # None: RAY_ADDRESS, else a local Ray
        if self.settings.engine == "http":
            rows = [self._http_row(i, r, choices) for i, r in enumerate(requests)]
            processor, answer = self._http_processor(choices), self._http_answer
        else:
            rows = [self._vllm_row(i, r, choices) for i, r in enumerate(requests)]
            processor, answer = self._vllm_processor(), self._vllm_answer
        log.info(
            "ray %s job: %d rows, concurrency %d, batch_size %d",
            self.settings.engine,
            len(rows),
            self.settings.concurrency,
            self.settings.batch_size,
        )
        out = iter(processor(ray.data.from_items(rows)).iter_rows())
        done = 0
        while True:
            try:
                row = next(out)
            except StopIteration:
                return
            except Exception as exc:  # the job died; what arrived is already with on_result (cached)
                raise RuntimeError(
                    f"ray job failed after {done} of {len(rows)} rows: {redact.redact(_short(exc))} "
                    "(answers so far are cached; rerun to continue)"
                ) from exc
            done += 1
            index = int(row["index"])
            yield index, answer(row, requests[index], choices)

    # -- engine: http -----------------------------------------------------------------------------
    def _http_row(self, index: int, request: Request, choices: tuple[str, ...] | None) -> dict[str, Any]:
        body = request_body(self.config, request, choose=choices is not None)
        # JSON text, not a dict: see HttpSession
        return {"index": index, "payload": {"json": json.dumps(body, ensure_ascii=False)}}

    def _http_processor(self, choices: tuple[str, ...] | None):
        from ray.data.llm import HttpRequestProcessorConfig, build_processor

        session = functools.partial(
            HttpSession,
            api_key=Secret(self._key),
            timeout_s=self.config.timeout_s,
            max_retries=self.config.max_retries,
            base_delay_s=self.config.retry_base_delay_s,
            check=functools.partial(parse_http, config=self.config, choices=choices),
        )
        config = HttpRequestProcessorConfig(
            url=f"{request_url(self.config)}/{endpoint(self.config)}",
            qps=self.settings.qps,
            max_retries=0,  # HttpSession retries, with the openai backend's policy
            session_factory=session,
            concurrency=self.settings.concurrency,
            batch_size=self.settings.batch_size,
        )
        return build_processor(config, postprocess=_http_output)

    def _http_answer(self, row: dict[str, Any], request: Request, choices: tuple[str, ...] | None):
        answer = self._http_answer_alone(row, choices)
        # attempts the server billed before the last one: usage and cost, not the answer
        answer.failed_input_tokens, answer.failed_output_tokens = row["paid"]
        return answer

    def _http_answer_alone(self, row: dict[str, Any], choices: tuple[str, ...] | None):
        failed = Generation if choices is None else Choice
        if row["error"]:
            return failed(error=row["error"])
        try:
            return parse_http(row["text"], config=self.config, choices=choices)
        except RetryableError as exc:  # empty after the session's retries: a failed row, never a success
            return failed(error=str(exc))

    # -- engine: vllm -----------------------------------------------------------------------------
    def _vllm_row(self, index: int, request: Request, choices: tuple[str, ...] | None) -> dict[str, Any]:
        s = request.sampling
        # Same key set in every row: Ray Data stores rows as Arrow tables (see HttpSession).
        params: dict[str, Any] = {
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
            "seed": s.seed,
            "stop": list(s.stop),
            "stop_token_ids": self._prompting[1],  # the end-of-turn set of the in-process engines
            "repetition_penalty": s.repetition_penalty,
        }
        if choices is not None:
            params |= {"max_tokens": 1, "temperature": 0.0, "logprobs": TOP_LOGPROBS}
        tokenizer = self._prompting[0]
        text = render_prompt(tokenizer, request, self.config.prompt_format, self.config.model)
        row: dict[str, Any] = {
            "index": index,
            "sampling_params": params,
            "tokenized_prompt": tokenizer(text, add_special_tokens=False)["input_ids"],
        }
        if self.config.adapter:
            row["model"] = self.config.adapter  # a model other than the engine's: a LoRA request
        return row

    @functools.cached_property
    def _prompting(self) -> tuple[Any, list[int]]:
        """The role's tokenizer and end-of-turn ids, loaded on the first vllm row."""
        tokenizer = load_tokenizer(self.config.model, self.config.adapter)
        return tokenizer, end_token_ids(tokenizer, generation_eos(self.config.model))

    def _vllm_processor(self):
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig

        from jalign.models import resolve

        config = vLLMEngineProcessorConfig(
            model_source=resolve(self.config.model).location,
            engine_kwargs=vllm_engine_kwargs(self.config),
            concurrency=self.settings.concurrency,
            batch_size=self.settings.batch_size,
            accelerator_type=self.settings.accelerator_type,
            max_tasks_in_flight_per_actor=self.settings.max_tasks_in_flight_per_actor,
            placement_group_config=self.settings.placement_group,
            # Ray's default exports engine metrics through vLLM's Ray logger, which imports ray.serve:
            # with the `ray` extra (ray[data]) every engine replica died at start-up.
            log_engine_metrics=False,
            chat_template_stage=False,  # rows carry their tokens (see the module docstring)
            tokenize_stage=False,
            # the engine detokenizes its own output (SamplingParams.detokenize); a detokenize actor would
            # hold one more CPU, and on two CPUs the job's preprocess task then waited for ever
            detokenize_stage=False,
            should_continue_on_error=True,  # an engine error fails its row, not the whole job
        )
        return build_processor(config, postprocess=_vllm_output)

    def _vllm_answer(self, row: dict[str, Any], request: Request, choices: tuple[str, ...] | None):
        if row.get("__inference_error__"):
            failed = Generation if choices is None else Choice
            return failed(error=f"vllm: {row['__inference_error__']}")
        if choices is not None:
            probs = choice_probs([tuple(c) for c in json.loads(row["top"])], choices)
            mass = sum(probs.values())
            if mass <= 0 or math.isnan(mass):
                return Choice(error=f"none of {choices} among the top {TOP_LOGPROBS} next tokens")
            return Choice(
                probs={c: p / mass for c, p in probs.items()}, mass=mass, input_tokens=row["input_tokens"]
            )
        text, out_tokens = row["text"], row["output_tokens"]
        # Ray's vLLM output has no finish reason; hitting max_tokens is what "length" means.
        finish = "length" if out_tokens >= request.sampling.max_tokens else "stop"
        if not text.strip():
            return Generation(
                error=f"empty answer (finish_reason={finish})",
                input_tokens=row["input_tokens"],
                output_tokens=out_tokens,
            )
        return Generation(
            text=text, input_tokens=row["input_tokens"], output_tokens=out_tokens, finish_reason=finish
        )


# -- run on the Ray workers -----------------------------------------------------------------------


def _vllm_output(row: dict[str, Any]) -> dict[str, Any]:
    """After the engine: only what the driver needs. Top log-probs travel as JSON text (Arrow)."""
    top = []
    logprobs = row.get("logprobs")  # one {token_id: {logprob, rank, decoded_token}} per generated token
    first = logprobs[0] if logprobs is not None and len(logprobs) else None
    for lp in (first or {}).values():
        if lp is not None:  # Arrow may fill tokens of other rows in as null
            top.append((lp.get("decoded_token") or "", float(lp["logprob"])))
    return {
        "index": int(row["index"]),
        "text": str(row["generated_text"]),
        "input_tokens": int(row["num_input_tokens"]),
        "output_tokens": int(row["num_generated_tokens"]),
        "top": json.dumps(top, ensure_ascii=False),
    }


def _http_output(row: dict[str, Any]) -> dict[str, Any]:
    reply = row["http_response"]
    return {
        "index": int(row["index"]),
        "error": reply["error"],
        "text": reply["text"],
        "paid": [int(reply["paid_input_tokens"]), int(reply["paid_output_tokens"])],
    }


def parse_http(text: str, *, config: LLMConfig, choices: tuple[str, ...] | None) -> Generation | Choice:
    """A 200 body -> Generation / Choice, through the SDK's types and the openai backend's parsers;
    raises (ValueError, LookupError, TypeError, AttributeError) when malformed and RetryableError when
    empty or without choices."""
    from openai.types import Completion
    from openai.types.chat import ChatCompletion

    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"response is a JSON {type(data).__name__}, not an object")
    resp = (Completion if config.prompt_format == "raw" else ChatCompletion).construct(**data)
    return parse_generation(config, resp) if choices is None else parse_choice(config, resp, choices)


class Secret:
    """The API key inside a stage argument, with a repr that does not show it (errors, debug logs)."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "Secret(***)"


class _Reply:
    """What Ray's HTTP stage reads from a response: always status 200 (so Ray neither retries nor raises)
    and a flat JSON object, {"text": the body, "error": why the row failed or ""}."""

    status = 200
    reason = "OK"

    def __init__(self, text: str, error: str, paid: list[int]) -> None:
        self._json = {
            "text": text,
            "error": error,
            "paid_input_tokens": paid[0],
            "paid_output_tokens": paid[1],
        }

    async def __aenter__(self) -> _Reply:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def json(self) -> dict[str, Any]:
        return self._json


class HttpSession:
    """The session Ray's HTTP stage posts through (its `session_factory`; one per batch, on a worker).

    * Bodies travel as JSON text. Ray Data stores rows as Arrow tables, which merge dicts with different
      keys into one struct: a body without `stop` would gain `"stop": null`, a completions top_logprobs
      dict the other rows' tokens as nulls. The payload is {"json": text}; the reply is flat text.
    * A batch's requests start together: Ray awaits them one after another, which alone would send one
      request at a time per worker. `qps` still spaces their starts.
    * Every outcome is a row. Faults are classified by the openai backend's own functions (429/408/409/
      5xx, timeouts, connection errors, malformed or undecodable answers; Retry-After honoured); a row
      that still fails carries its reason and never raises, which would end the whole job.
    * The API key is added here, not passed to Ray as headers of the processor config. Workers do not
      share the driver's registry of secrets: the key and the URL's credentials are registered with
      `redact` here, so a server that echoes them back is masked before anything is logged or returned.
    """

    def __init__(
        self,
        *,
        api_key: Secret,
        timeout_s: float,
        max_retries: int,
        base_delay_s: float,
        check: Callable[[str], Any],
    ) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))
        self._headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key.value}"}
        redact.register_value(api_key.value)
        self._policy = RetryPolicy(max_retries=max_retries, base_delay_s=base_delay_s)
        self._check = check

    async def __aenter__(self) -> HttpSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()

    def post(self, url: str, *, headers: Any = None, data: str = "") -> asyncio.Future[_Reply]:
        body = json.loads(data)["json"]
        redact.register_url(url)
        return asyncio.ensure_future(self._post(url, body))

    async def _post(self, url: str, body: str) -> _Reply:
        paid = [0, 0]  # tokens billed for attempts that failed after an answer (empty ones)

        async def attempt() -> str:
            try:
                return await self._once(url, body)
            except RetryableError as exc:
                paid[0], paid[1] = paid[0] + exc.input_tokens, paid[1] + exc.output_tokens
                raise

        try:
            text = await with_retries(attempt, self._policy, "ray http")
        except (RetryableError, FatalError) as exc:
            return _Reply("", str(exc), paid)
        return _Reply(text, "", paid)

    async def _once(self, url: str, body: str) -> str:
        try:
            async with self._session.post(url, data=body.encode("utf-8"), headers=self._headers) as resp:
                status, raw, retry_after = resp.status, await resp.read(), resp.headers.get("retry-after")
        except (TimeoutError, self._aiohttp.ClientError) as exc:
            raise transport_error(exc) from exc
        if status != 200:
            raise status_error(status, raw.decode("utf-8", errors="replace"), retry_after)
        try:
            text = raw.decode("utf-8")  # strict, as the SDK reads an answer: a cut character is malformed
            self._check(text)
        except RetryableError:
            raise  # an empty answer (its billed tokens ride on the error)
        except MALFORMED as exc:
            raise malformed(exc) from exc
        return text


def _short(exc: BaseException) -> str:
    """Ray wraps worker errors in long tracebacks: keep the type and the last line."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1][:300] if lines else ''}"
