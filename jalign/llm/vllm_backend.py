"""Offline vLLM on a GPU machine (`pip install -e '.[vllm]'` there; never next to the CPU torch wheel).

vllm is imported inside the constructor only, so nothing else in jalign needs it installed. Without a
local GPU, run `vllm serve MODEL` anywhere and use the openai backend with base_url instead.

Engine arguments come from the role's `vllm` params (tensor / pipeline parallel sizes, context length,
memory share, prefix caching, quantisation, max_num_seqs, anything else by name). An `adapter` is served
as a LoRARequest on the base model. Requests stream: all are added to the engine at once (vLLM
schedules its own batches) and each answer is handed on the moment its sequence finishes, so nothing
waits for a chunk's slowest answer and a killed run keeps every answer already finished.

Not run in CI (no GPU there); the mapping of log-probs to choices is the tested `choice_probs`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from jalign.llm.choices import choice_probs
from jalign.llm.types import Admit, Choice, Generation, LLMConfig, OnResult, Request, Sampling, VLLMSettings
from jalign.models import resolve

TOP_LOGPROBS = 20


def engine_kwargs(config: LLMConfig) -> dict[str, Any]:
    """`vllm.LLM(**kwargs)` for a role: model, revision, dtype and the `vllm` params block."""
    assert config.vllm is not None
    settings = config.vllm
    source = resolve(config.model)
    kwargs: dict[str, Any] = {
        "model": source.location,
        "dtype": "auto" if config.dtype == "native" else config.dtype,  # vLLM picks the GPU's own
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
        except ImportError as exc:  # pragma: no cover - GPU machines only
            raise RuntimeError(
                "backend: vllm needs the optional extra: pip install -e '.[vllm]' (GPU only)"
            ) from exc
        assert config.vllm is not None
        check_engine_args(config.vllm, config.model)
        self._vllm = vllm
        self.config = config
        self.llm = vllm.LLM(**engine_kwargs(config))
        self.lora = None
        if config.adapter:
            from vllm.lora.request import LoRARequest

            adapter = resolve(config.adapter)
            self.lora = LoRARequest("adapter", 1, adapter.location)

    def _params(self, sampling: Sampling, **override):
        kwargs = {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "seed": sampling.seed,
            "stop": list(sampling.stop) or None,
            "repetition_penalty": sampling.repetition_penalty,
        } | override
        return self._vllm.SamplingParams(**kwargs)

    def _prompt(self, request: Request) -> str:
        if self.config.prompt_format == "raw":
            return "\n\n".join(m["content"] for m in request.messages)
        return self.llm.get_tokenizer().apply_chat_template(
            list(request.messages), tokenize=False, add_generation_prompt=True
        )

    def _stream(self, requests: list[Request], params: list, on_finished, admit: Admit | None) -> None:
        """Add every request to the engine, then step it and hand on each sequence as it finishes."""
        engine = self.llm.llm_engine
        for i, (request, p) in enumerate(zip(requests, params, strict=True)):
            if admit is not None:
                admit(i)
            engine.add_request(str(i), self._prompt(request), p, lora_request=self.lora)
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

        self._stream(requests, [self._params(r.sampling) for r in requests], finished, admit)
        return results

    def choose(
        self,
        requests: list[Request],
        choices: tuple[str, ...],
        on_result: OnResult,
        admit: Admit | None = None,
    ) -> list[Choice]:
        results: list[Any] = [None] * len(requests)

        def finished(i: int, o) -> None:
            top = o.outputs[0].logprobs[0]  # {token_id: Logprob(logprob, rank, decoded_token)}
            probs = choice_probs([(lp.decoded_token or "", lp.logprob) for lp in top.values()], choices)
            mass = sum(probs.values())
            if mass <= 0 or math.isnan(mass):
                results[i] = Choice(error=f"none of {choices} among the top {TOP_LOGPROBS} next tokens")
            else:
                results[i] = Choice(
                    probs={c: p / mass for c, p in probs.items()},
                    mass=mass,
                    input_tokens=len(o.prompt_token_ids or ()),
                )
            on_result(i, results[i])

        params = [
            self._params(r.sampling, max_tokens=1, temperature=0.0, logprobs=TOP_LOGPROBS) for r in requests
        ]
        self._stream(requests, params, finished, admit)
        return results
