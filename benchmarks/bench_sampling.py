"""Sampled generation and adapter loading in the transformers backend, side by side in one process.

1. Sampling, batch 64 x 32 new tokens (the verify stage's shape): transformers' own top-p and
   multinomial draw; jalign's previous NucleusFromTopK + transformers' multinomial; jalign's
   GumbelMaxSampler (temperature, nucleus and draw as one processor, greedy argmax); greedy as the floor.
2. An adapter merged by PEFT (merge_and_unload) against the same merged weights loaded into a fresh
   model (what `jalign.llm.transformers_backend.load` does): one generate() call of 16 rows x 16 tokens.

Medians of `--repeats` runs after a warm-up; the dtype is the CPU profile's `native`.

    python benchmarks/bench_sampling.py --model models/base/gemma-3-270m
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from bench_cpu_generation import median_seconds  # the same timing: warm-up, then the median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/base/gemma-3-270m")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList

    from jalign.llm.transformers_backend import GumbelMaxSampler, NucleusFromTopK
    from jalign.models import resolve_dtype, torch_dtype

    dtype = resolve_dtype("native", "cpu")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch_dtype(dtype)).eval()
    prompts = tokenizer(["日本の四季について説明してください。"] * 64, return_tensors="pt", padding=True)

    def generate(model, batch, new_tokens: int, **kwargs) -> None:
        with torch.inference_mode():
            model.generate(
                **batch, max_new_tokens=new_tokens, min_new_tokens=new_tokens, top_k=None,
                pad_token_id=tokenizer.pad_token_id, **kwargs,
            )  # fmt: skip

    def seeded(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            torch.manual_seed(0)
            fn()

        return run

    ways = {
        "greedy (floor)": lambda: generate(model, prompts, 32, do_sample=False, top_p=None),
        "transformers top_p + multinomial": seeded(
            lambda: generate(model, prompts, 32, do_sample=True, temperature=0.8, top_p=0.95)
        ),
        "NucleusFromTopK + multinomial": seeded(
            lambda: generate(
                model,
                prompts,
                32,
                do_sample=True,
                temperature=0.8,
                top_p=None,
                logits_processor=LogitsProcessorList([NucleusFromTopK(0.95)]),
            )
        ),
        "GumbelMaxSampler + argmax (jalign)": lambda: generate(
            model,
            prompts,
            32,
            do_sample=False,
            top_p=None,
            logits_processor=LogitsProcessorList([GumbelMaxSampler(0.8, 0.95, seed=0)]),
        ),
    }
    times = {name: median_seconds(fn, args.repeats) for name, fn in ways.items()}
    reference = times["transformers top_p + multinomial"]
    print(f"\n| sampling 64 x 32 tokens, {dtype} | s | tokens/s | vs transformers |\n|---|---:|---:|---:|")
    for name, seconds in times.items():
        print(f"| {name} | {seconds:.2f} | {64 * 32 / seconds:.0f} | {reference / seconds:.2f}x |")

    from peft import LoraConfig, get_peft_model

    small = tokenizer(["日本の四季について説明してください。"] * 16, return_tensors="pt", padding=True)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    base = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch_dtype(dtype)).eval()
    merged = get_peft_model(base, lora).merge_and_unload().eval()
    fresh = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch_dtype(dtype)).eval()
    fresh.load_state_dict(merged.state_dict())
    peft_s = median_seconds(lambda: generate(merged, small, 16, do_sample=False, top_p=None), args.repeats)
    fresh_s = median_seconds(lambda: generate(fresh, small, 16, do_sample=False, top_p=None), args.repeats)
    print(
        f"\n| merged adapter, 16 x 16 tokens, {dtype} | s per generate() |\n|---|---:|\n"
        f"| model PEFT merged into | {peft_s:.2f} |\n| fresh model, same weights (jalign) | {fresh_s:.2f} |\n"
        f"| ratio | {peft_s / fresh_s:.1f}x |"
    )


if __name__ == "__main__":
    main()
