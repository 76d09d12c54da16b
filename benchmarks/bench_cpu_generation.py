"""Generation on a CPU: bfloat16 against float32, and jalign's top-p against transformers' own.

Usage: python benchmarks/bench_cpu_generation.py [--model models/base/gemma-3-270m] [--repeats 3]

1. Is bf16 native here (AVX512-BF16 / AMX) or emulated? Times, in one process and side by side, each
   workload in float32 and in bfloat16 (medians of `--repeats`, after one warm-up):
   a. a matmul of the shape a 270M model's MLP sees when decoding a batch of 16 (16x640 @ 640x2048);
   b. a prefill of 4 x 512 tokens (logits of the last position only, as choice scoring does);
   c. greedy generation of 16 new tokens for a batch of 8 short prompts.
   The default CPU profile picks float32 from these numbers (conf/: every local role and both trainers).
2. Sampling 64 new tokens for a batch of 12 (temperature 0.8, top_p 0.95, repetition penalty 1.1) with
   transformers' TopPLogitsWarper (a full sort of the vocabulary at every step) and with jalign's
   NucleusFromTopK (the same tokens kept, found among the top 4,096), float32, same seed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first-call allocations and kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_dtype(dtype, model_path: str, prompts, prefill_ids, repeats: int) -> dict[str, float]:
    """Median seconds of each workload with weights and activations in `dtype`."""
    import torch
    from transformers import AutoModelForCausalLM

    x, w = torch.randn(16, 640, dtype=dtype), torch.randn(640, 2048, dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).eval()
    with torch.no_grad():
        return {
            "matmul 16x640 @ 640x2048 (x100)": median_seconds(lambda: [x @ w for _ in range(100)], repeats),
            "prefill 4 x 512 tokens": median_seconds(
                lambda: model(input_ids=prefill_ids, logits_to_keep=1), repeats
            ),
            "generate 8 x 16 new tokens": median_seconds(
                lambda: model.generate(**prompts, max_new_tokens=16, min_new_tokens=16, do_sample=False),
                repeats,
            ),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="models/base/gemma-3-270m")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    native = {
        probe: bool(getattr(torch.cpu, probe, lambda: False)())
        for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    }
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "?",
    )  # fmt: skip
    print(
        f"# CPU {cpu!r}, nproc={os.cpu_count()}, torch threads {torch.get_num_threads()}, "
        f"torch {torch.__version__}, Python {platform.python_version()}; native bf16: {native}"
    )
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    prompts = tokenizer(["日本の首都はどこですか。答え:"] * 8, return_tensors="pt")
    prefill_ids = torch.randint(1000, 20000, (4, 512), generator=torch.Generator().manual_seed(0))
    rows: dict[str, dict[str, float]] = {}
    for dtype in (torch.float32, torch.bfloat16):
        name = str(dtype).removeprefix("torch.")
        rows[name] = time_dtype(dtype, args.model, prompts, prefill_ids, args.repeats)
        print(f"{name}: " + ", ".join(f"{k} {v:.3f} s" for k, v in rows[name].items()), flush=True)
    print("\n| workload | float32 s | bfloat16 s | bfloat16 / float32 |\n|---|---:|---:|---:|")
    for workload, fp32 in rows["float32"].items():
        bf16 = rows["bfloat16"][workload]
        print(f"| {workload} | {fp32:.3f} | {bf16:.3f} | {bf16 / fp32:.2f}x |")
    hf, ours = time_top_p(args.model, tokenizer, args.repeats)
    print(
        "\n| sampling 12 x 64 tokens, float32 | transformers top_p s | jalign NucleusFromTopK s | ratio |\n"
        f"|---|---:|---:|---:|\n| top_p 0.95, temperature 0.8 | {hf:.2f} | {ours:.2f} | {hf / ours:.2f}x |"
    )


def time_top_p(model_path: str, tokenizer, repeats: int) -> tuple[float, float]:
    """Median seconds of sampled generation with transformers' top-p and with jalign's."""
    import torch
    from transformers import AutoModelForCausalLM, LogitsProcessorList

    from jalign.llm.transformers_backend import NucleusFromTopK

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    prompts = tokenizer(["日本の四季について説明してください。"] * 12, return_tensors="pt")

    def sample(ours: bool) -> None:
        torch.manual_seed(0)
        with torch.inference_mode():
            model.generate(
                **prompts, max_new_tokens=64, min_new_tokens=64, do_sample=True, temperature=0.8,
                top_k=None, top_p=None if ours else 0.95, repetition_penalty=1.1,
                pad_token_id=tokenizer.pad_token_id,
                logits_processor=LogitsProcessorList([NucleusFromTopK(0.95)] if ours else []),
            )  # fmt: skip

    return median_seconds(lambda: sample(False), repeats), median_seconds(lambda: sample(True), repeats)


if __name__ == "__main__":
    main()
