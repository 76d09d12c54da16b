"""vLLM's CPU build against the transformers backend, on the default profile's own local workloads.

Usage: python benchmarks/bench_vllm_cpu.py [--prompts 16] [--games 48]

Both engines run the roles exactly as params.yaml defines them (model, dtype `native`, prompt format,
sampling), through LLMClient with an empty cache each, one after the other in one process:
1. generation: the verify stage's sampling, `verify.samples` answers (seeds seed..seed+N-1) for each of
   the first `--prompts` verifiable training prompts (`verify.policy`: chat, temperature 1.0, top-p,
   repetition penalty, at most max_tokens new tokens);
2. choice: the evaluate judge's logprob games (`evaluate.judge`: raw prompt, P(A) against P(B)) on
   `--games` pairs of the answers from 1.
Start-up (loading the weights; for vLLM starting its engine process) is timed apart. vLLM gets the
engine settings a CPU needs: eager mode, a 2 GiB KV cache, prefix caching on (the judge prompts share
their preamble). Prints one JSON line per engine and workload, then a side-by-side table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--games", type=int, default=48)
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    args = parser.parse_args()

    from jalign.config import load_section
    from jalign.judge_prompts import pairwise_prompt
    from jalign.llm import vllm_backend
    from jalign.llm.cache import ResponseCache
    from jalign.llm.client import LLMClient
    from jalign.llm.types import Request, VLLMSettings
    from jalign.params import EvaluateConfig, VerifyConfig
    from stages.verify import load_prompts

    verify = load_section(VerifyConfig, "verify", args.params)
    judge = load_section(EvaluateConfig, "evaluate", args.params).judge
    rows = load_prompts(str(REPO / "data/ifeval/train_questions.txt"), None, verify)[: args.prompts]
    sampling = verify.policy.sampling
    generation = [
        Request(
            ({"role": "user", "content": row["prompt"]},),
            dataclasses.replace(sampling, seed=sampling.seed + k),
        )
        for row in rows
        for k in range(verify.samples)
    ]
    cpu_vllm = VLLMSettings(
        tensor_parallel_size=1,
        pipeline_parallel_size=1,
        max_model_len=2048,
        gpu_memory_utilization=0.5,
        enable_prefix_caching=True,
        quantization=None,
        max_num_seqs=None,
        max_lora_rank=16,
        extra={"enforce_eager": True, "kv_cache_memory_bytes": 2 << 30},
    )
    engines = {
        "transformers": (verify.policy, judge),
        "vllm": (
            dataclasses.replace(verify.policy, backend="vllm", vllm=cpu_vllm),
            dataclasses.replace(judge, backend="vllm", vllm=cpu_vllm),
        ),
    }
    results: dict[str, dict[str, float]] = {}
    games: list[Request] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for name, (policy, judge_config) in engines.items():
            cache = ResponseCache(Path(tmp) / f"{name}.sqlite")
            policy_client = LLMClient(policy, cache=cache)
            judge_client = LLMClient(judge_config, cache=cache)
            start = time.perf_counter()
            policy_client.backend  # noqa: B018 - load the weights / start the engine
            judge_client.backend  # noqa: B018 - the same weights (transformers) or engine (vllm)
            startup = time.perf_counter() - start

            start = time.perf_counter()
            answers = policy_client.generate(generation)
            gen_s = time.perf_counter() - start
            tokens = sum(a.output_tokens for a in answers if a.ok)
            if games is None:  # the same games for both engines: the transformers answers
                texts = [a.text or "" for a in answers]
                prompts = [
                    pairwise_prompt(rows[i % len(rows)]["prompt"], texts[i], texts[-1 - i], logprob=True)
                    for i in range(args.games)
                ]
                games = [Request(({"role": "user", "content": p},), judge_config.sampling) for p in prompts]
            start = time.perf_counter()
            choices = judge_client.choose(games, ("A", "B"))
            choose_s = time.perf_counter() - start
            prompt_tokens = sum(c.input_tokens for c in choices if c.ok)
            results[name] = {
                "startup_s": round(startup, 1),
                "generate_s": round(gen_s, 1),
                "generated_tokens": tokens,
                "generate_tok_per_s": round(tokens / gen_s, 1),
                "choose_s": round(choose_s, 1),
                "choices": sum(c.ok for c in choices),
                "prompt_tokens_per_s": round(prompt_tokens / choose_s, 1),
            }
            print(json.dumps({"engine": name, **results[name]}), flush=True)
            if name == "vllm":
                vllm_backend.shutdown_engines()

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}")
    print(
        f"generation: {len(generation)} answers ({args.prompts} prompts x {verify.samples}), "
        f"choice: {args.games} logprob games"
    )
    print("| | transformers | vLLM-CPU | vLLM / transformers |\n|---|---|---|---|")
    for key in ("startup_s", "generate_s", "generate_tok_per_s", "choose_s", "prompt_tokens_per_s"):
        a, b = results["transformers"][key], results["vllm"][key]
        print(f"| {key} | {a} | {b} | {b / a:.2f} |")


if __name__ == "__main__":  # vLLM starts its engine in a spawned process: the guard is required
    main()
