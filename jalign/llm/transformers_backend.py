"""Local batched generation and choice scoring with transformers (CPU or GPU)."""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import replace
from itertools import groupby

import torch
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    TopPLogitsWarper,
)

from jalign.llm.prompting import choice_token_ids, cut_at_stop, end_token_ids, load_tokenizer, render_prompt
from jalign.llm.types import Admit, Choice, Generation, LLMConfig, OnResult, Request
from jalign.models import (
    ModelSource,
    pick_device,
    resolve,
    resolve_dtype,
    torch_dtype,
    warn_if_bf16_is_emulated,
)

log = logging.getLogger(__name__)


@functools.cache
def load(ref: str, dtype: str, device: str, adapter: str | None = None):
    """Load once per process: roles that share a model (generator, judge, responder) share weights.

    With `adapter`, the PEFT (LoRA) adapter is loaded on the base and merged into its weights: the
    same answers as the unmerged model at the speed of the plain one. The adapter directory's
    tokenizer (saved with the adapter by the training stages) is used when it has one.
    """
    source = resolve(ref)
    adapter_source = resolve(adapter) if adapter else None
    with source.downloading(), adapter_source.downloading() if adapter_source else contextlib.nullcontext():
        return _load(source, adapter_source, dtype, device)


def _load(source: ModelSource, adapter_source: ModelSource | None, dtype: str, device: str):
    """`load`'s work, inside the guards that turn a Hub the model cannot come from into one line."""
    kwargs = source.pretrained_kwargs()
    tokenizer = load_tokenizer(source.ref, adapter_source.ref if adapter_source else None)
    dtype = resolve_dtype(dtype, device)
    warn_if_bf16_is_emulated(dtype, device)
    model = AutoModelForCausalLM.from_pretrained(**kwargs, dtype=torch_dtype(dtype))
    if adapter_source is not None:
        from peft import PeftModel

        adapter_kwargs = adapter_source.pretrained_kwargs()
        merged = PeftModel.from_pretrained(
            model, adapter_kwargs["pretrained_model_name_or_path"], revision=adapter_kwargs.get("revision")
        ).merge_and_unload()
        # The merged weights go into a freshly loaded model: generate() on the model PEFT merged into
        # took 10.5x as long per call, and GBs more memory, as a fresh model holding the very same
        # weights (benchmarks/RESULTS.md "Sampling and adapters").
        model = AutoModelForCausalLM.from_pretrained(**kwargs, dtype=torch_dtype(dtype))
        model.load_state_dict(merged.state_dict())
        del merged
    model.to(device).eval()
    adapter_note = f" + {adapter_source.ref}" if adapter_source else ""
    log.info("loaded %s%s on %s (%s)", source.ref, adapter_note, device, model.dtype)
    return tokenizer, model


class TransformersBackend:
    def __init__(self, config: LLMConfig) -> None:
        self.config = config
        self.device = pick_device(config.device)
        self.tokenizer, self.model = load(config.model, config.dtype, self.device, config.adapter)
        self.eos_ids = end_token_ids(self.tokenizer, self.model.generation_config.eos_token_id)

    def render(self, request: Request) -> str:
        return render_prompt(self.tokenizer, request, self.config.prompt_format, self.config.model)

    def _encode(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        # The rendered text already holds BOS (chat templates add it; render() adds it for raw).
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        return {k: v.to(self.device) for k, v in enc.items()}

    def _batches(self, requests: list[Request]) -> list[list[int]]:
        """Indices grouped by sampling params (seed aside: one generate() call has one RNG), then by
        length (less padding), in batch_size chunks."""

        def group(i: int) -> str:
            return repr(replace(requests[i].sampling, seed=0))

        order = sorted(range(len(requests)), key=lambda i: (group(i), len(str(requests[i].messages))))
        batches = []
        for _, members in groupby(order, key=group):
            idx = list(members)
            batches += [
                idx[s : s + self.config.batch_size] for s in range(0, len(idx), self.config.batch_size)
            ]
        return batches

    @torch.inference_mode()
    def generate(
        self, requests: list[Request], on_result: OnResult, admit: Admit | None = None
    ) -> list[Generation]:
        results: list[Generation] = [Generation(error="not run")] * len(requests)
        for batch in tqdm(self._batches(requests), desc=f"generate {self.config.model}", unit="batch"):
            for i in batch:
                if admit is not None:
                    admit(i)
            sampling = requests[batch[0]].sampling
            enc = self._encode([self.render(requests[i]) for i in batch])
            # Sampling is a processor (GumbelMaxSampler) and generate() then takes the argmax: the same
            # distribution as transformers' multinomial draw over Gemma's 262k-token vocabulary, 2.9x
            # faster at batch 64 (benchmarks/RESULTS.md "Sampling and adapters").
            sampler = (
                [GumbelMaxSampler(sampling.temperature, sampling.top_p, sampling.seed)]
                if sampling.temperature > 0
                else []
            )
            out = self.model.generate(
                **enc,
                max_new_tokens=sampling.max_tokens,
                do_sample=False,
                top_p=None,
                top_k=None,
                logits_processor=LogitsProcessorList(sampler),
                repetition_penalty=sampling.repetition_penalty,
                stopping_criteria=StoppingCriteriaList(
                    [StopOnText(self.tokenizer, sampling.stop, enc["input_ids"].shape[1])]
                    if sampling.stop
                    else []
                ),
                eos_token_id=self.eos_ids,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            new = out[:, enc["input_ids"].shape[1] :]
            for row, i in enumerate(batch):
                tokens = new[row]
                keep = tokens[(tokens != self.tokenizer.pad_token_id)]
                ended = len(keep) > 0 and int(keep[-1]) in self.eos_ids  # EOS as the last allowed token
                finish = "length" if len(keep) >= sampling.max_tokens and not ended else "stop"
                text = self.tokenizer.decode(keep, skip_special_tokens=True)
                text, stopped = cut_at_stop(text, sampling.stop)
                results[i] = Generation(
                    text=text,
                    input_tokens=int(enc["attention_mask"][row].sum()),
                    output_tokens=len(keep),
                    finish_reason="stop" if stopped else finish,
                )
                on_result(i, results[i])
        return results

    @torch.inference_mode()
    def choose(
        self,
        requests: list[Request],
        choices: tuple[str, ...],
        on_result: OnResult,
        admit: Admit | None = None,
    ) -> list[Choice]:
        choice_ids = choice_token_ids(self.tokenizer, choices)
        results: list[Choice] = [Choice(error="not run")] * len(requests)
        for batch in tqdm(self._batches(requests), desc=f"choose {self.config.model}", unit="batch"):
            for i in batch:
                if admit is not None:
                    admit(i)
            enc = self._encode([self.render(requests[i]) for i in batch])
            # Only the last position's logits: the full-vocabulary logits at every position cost
            # several times the time and gigabytes of memory (262k-token vocabulary for Gemma).
            # Positions count from each row's first real token, as generate() does: with left padding,
            # models with absolute position embeddings (GPT-2, OPT ...) otherwise score padded rows wrongly.
            position_ids = (enc["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
            logits = self.model(**enc, position_ids=position_ids, logits_to_keep=1).logits[:, -1, :].float()
            full = torch.softmax(logits, dim=-1)
            probs = torch.stack([full[:, ids].sum(dim=-1) for ids in choice_ids], dim=-1)  # (batch, choices)
            for row, i in enumerate(batch):
                p = probs[row]
                mass = float(p.sum())
                results[i] = Choice(
                    probs={c: float(v / mass) if mass > 0 else 0.0 for c, v in zip(choices, p, strict=True)},
                    mass=mass,
                    input_tokens=int(enc["attention_mask"][row].sum()),
                )
                on_result(i, results[i])
        return results


class NucleusFromTopK(LogitsProcessor):
    """Top-p (nucleus) filtering that keeps exactly the tokens transformers' TopPLogitsWarper keeps (a
    token stays while the probability of the tokens ranked above it is below top_p), without sorting
    the whole vocabulary at every step: the nucleus is sought among the `k` most probable tokens
    (torch.topk), and only a row whose nucleus is larger than that is sorted in full. Sorting Gemma's
    262k-token vocabulary for a batch of 16 took about 0.23 s per decode step on two cores."""

    def __init__(self, top_p: float, k: int = 4096) -> None:
        self.top_p, self.k = top_p, k

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = scores.float().softmax(dim=-1)
        top, index = probs.topk(min(self.k, probs.shape[-1]), dim=-1)  # (batch, k), descending
        above = top.cumsum(dim=-1) - top  # probability of the tokens ranked above each one
        kept = scores.gather(-1, index).masked_fill(above >= self.top_p, -float("inf"))
        out = torch.full_like(scores, -float("inf")).scatter_(-1, index, kept)
        beyond = (top.sum(dim=-1) < self.top_p).nonzero().squeeze(-1)  # nucleus not within the top k
        if beyond.numel():
            out[beyond] = TopPLogitsWarper(self.top_p)(input_ids[beyond], scores[beyond])
        return out


class GumbelMaxSampler(LogitsProcessor):
    """Temperature, top-p (NucleusFromTopK) and a draw, as one logits processor for greedy decoding:
    the Gumbel-max trick (argmax of log-probabilities plus Gumbel noise is an exact sample of the
    softmax) leaves every row's scores -inf except the drawn token, which generate()'s argmax then
    takes. transformers' own draw is torch.multinomial over the whole vocabulary; this draws among the
    nucleus only (2.9x transformers' sampled generation, benchmarks/RESULTS.md).
    Seeded per generate() call by its own torch.Generator: the same seed, the same answers."""

    def __init__(self, temperature: float, top_p: float, seed: int, k: int = 4096) -> None:
        if temperature <= 0:
            raise ValueError("GumbelMaxSampler needs temperature > 0 (greedy decoding needs no sampler)")
        self.temperature, self.top_p, self.k = temperature, top_p, k
        self.generator = torch.Generator().manual_seed(seed)

    def _gumbel(self, shape: torch.Size) -> torch.Tensor:
        uniform = torch.rand(shape, generator=self.generator).clamp_(min=1e-20, max=1 - 1e-7)
        return -torch.log(-torch.log(uniform))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logits = scores.float() / self.temperature
        probs = logits.softmax(dim=-1)
        top, index = probs.topk(min(self.k, probs.shape[-1]), dim=-1)  # (batch, k), descending
        above = top.cumsum(dim=-1) - top  # the nucleus: what TopPLogitsWarper keeps (NucleusFromTopK)
        kept = logits.gather(-1, index).masked_fill(above >= self.top_p, -float("inf"))
        choice = index.gather(-1, (kept + self._gumbel(kept.shape)).argmax(dim=-1, keepdim=True))
        beyond = (top.sum(dim=-1) < self.top_p).nonzero().squeeze(-1)  # nucleus wider than the top k
        if beyond.numel():
            full = TopPLogitsWarper(self.top_p)(input_ids[beyond], logits[beyond])
            choice[beyond] = (full + self._gumbel(full.shape)).argmax(dim=-1, keepdim=True)
        return torch.full_like(scores, -float("inf")).scatter_(-1, choice, 0.0)


class StopOnText(StoppingCriteria):
    """Ends a row once its generated text contains a stop sequence (checked in the new tokens only, as
    the OpenAI API does). transformers' own `stop_strings` builds tables over the whole vocabulary
    first: about 8 s per process and stop set for Gemma's 262k tokens on two cores, for stops that
    decoding each row's last few tokens at every step finds in well under a millisecond."""

    def __init__(self, tokenizer, stops: tuple[str, ...], prompt_length: int) -> None:
        self.tokenizer, self.stops, self.start = tokenizer, tuple(s for s in stops if s), prompt_length
        # A stop of n characters ends within the last 4n tokens (byte-fallback tokens: 3 per kana).
        self.window = 4 * max((len(s) for s in self.stops), default=0) + 4

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        new = input_ids[:, self.start :]
        tails = self.tokenizer.batch_decode(new[:, -self.window :], skip_special_tokens=True)
        done = [any(stop in tail for stop in self.stops) for tail in tails]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
