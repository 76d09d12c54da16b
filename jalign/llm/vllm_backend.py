"""Offline vLLM on a GPU machine (`pip install -e '.[vllm]'` there; never next to the CPU torch wheel).

vllm is imported inside the constructor only, so nothing else in jalign needs it installed. Without a
local GPU, run `vllm serve MODEL` anywhere and use the openai backend with base_url instead.
"""

from __future__ import annotations

import math

from jalign.llm.client import OnResult, render_raw
from jalign.llm.openai_backend import TOP_LOGPROBS, choice_probs
from jalign.llm.types import Choice, Generation, LLMConfig, Request, Sampling
from jalign.models import resolve


class VLLMBackend:
    def __init__(self, config: LLMConfig) -> None:
        try:
            import vllm
        except ImportError as exc:  # pragma: no cover - GPU machines only
            raise RuntimeError(
                "backend: vllm needs the optional extra: pip install -e '.[vllm]' (GPU only)"
            ) from exc
        self._vllm = vllm
        self.config = config
        self.chunk_size = 4096  # vLLM schedules its own batches; cache every few thousand rows
        source = resolve(config.model)
        self.llm = vllm.LLM(
            model=source.location,
            revision=source.revision if source.kind == "hub" and source.revision != "unpinned" else None,
            dtype=config.dtype,
        )

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

    def _run(self, requests: list[Request], params: list):
        if self.config.prompt_format == "raw":
            return self.llm.generate([render_raw(r.messages) for r in requests], params)
        return self.llm.chat([list(r.messages) for r in requests], params)

    def generate(self, requests: list[Request], on_result: OnResult | None = None) -> list[Generation]:
        outputs = self._run(requests, [self._params(r.sampling) for r in requests])
        results = [
            Generation(
                text=o.outputs[0].text,
                input_tokens=len(o.prompt_token_ids),
                output_tokens=len(o.outputs[0].token_ids),
                finish_reason=o.outputs[0].finish_reason,
            )
            for o in outputs
        ]
        for i, result in enumerate(results):
            if on_result:
                on_result(i, result)
        return results

    def choose(
        self, requests: list[Request], choices: tuple[str, ...], on_result: OnResult | None = None
    ) -> list[Choice]:
        params = [
            self._params(r.sampling, max_tokens=1, temperature=0.0, logprobs=TOP_LOGPROBS) for r in requests
        ]
        results = []
        for o in self._run(requests, params):
            top = o.outputs[0].logprobs[0]  # {token_id: Logprob(logprob, rank, decoded_token)}
            probs = choice_probs([(lp.decoded_token or "", lp.logprob) for lp in top.values()], choices)
            mass = sum(probs.values())
            if mass <= 0 or math.isnan(mass):
                results.append(Choice(error=f"none of {choices} among the top {TOP_LOGPROBS} next tokens"))
            else:
                results.append(
                    Choice(
                        probs={c: p / mass for c, p in probs.items()},
                        mass=mass,
                        input_tokens=len(o.prompt_token_ids),
                    )
                )
            if on_result:
                on_result(len(results) - 1, results[-1])
        return results
