"""DPO training throughput (tokens/s) and peak memory, configurations side by side in one run.

Each configuration trains in its own process (clean peak-memory reading) through the dpo stage's own
`train()` on the same synthetic Japanese preference pairs. Usage:

    python benchmarks/bench_dpo.py --model models/base/gemma-3-270m --steps 2
    python benchmarks/bench_dpo.py --model /path/to/qwen2.5-7b-shaped --steps 3 --device-note "H100"  # GPU

Prints a Markdown table (ratios against the first configuration) to paste into RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# name -> overrides of jalign.params.DPOConfig. "trl-lora" is what TRL does by default with a LoRA
# config (no quantisation, bf16); "qlora-nf4" is our configuration (the Karasu setup).
CONFIGS = {
    "trl-lora-bf16": {"quantization": "none", "dtype": "bfloat16"},
    "lora-fp32": {"quantization": "none", "dtype": "float32"},
    "qlora-nf4-bf16": {"quantization": "nf4", "dtype": "bfloat16"},
    "qlora-nf4-bf16+precompute-ref": {
        "quantization": "nf4",
        "dtype": "bfloat16",
        "precompute_ref_log_probs": True,
    },
}


def synthetic_pairs(n: int) -> list[dict]:
    topics = ["季節の行事", "健康的な食事", "仕事の段取り", "旅行の計画", "家計の管理", "読書の習慣"]
    pairs = []
    for i in range(n):
        topic = topics[i % len(topics)]
        pairs.append({
            "pair_id": f"b{i}",
            "prompt": f"{topic}について、初心者向けに要点を説明してください。(例{i})",
            "chosen": f"{topic}の要点は三つあります。" + "基本を押さえ、具体例で確かめ、振り返ります。" * 6,
            "rejected": f"{topic}はよく分かりません。" * 4,
        })  # fmt: skip
    return pairs


def child(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from jalign.params import DPOConfig
    from jalign.records import write_jsonl
    from stages import dpo
    from stages.preferences import to_pairwise

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "sets"
        pairs = synthetic_pairs(args.batch * args.steps + 2)
        write_jsonl(data / "pairwise_train.jsonl", [to_pairwise(p) for p in pairs[:-2]])
        write_jsonl(data / "pairwise_eval.jsonl", [to_pairwise(p) for p in pairs[-2:]])
        config = DPOConfig(
            model=args.model,
            per_device_train_batch_size=args.batch,
            per_device_eval_batch_size=args.batch,
            gradient_accumulation_steps=1,
            max_steps=args.steps,
            optim="adamw_torch" if not _cuda() else "paged_adamw_8bit",
            max_length=args.max_length,
            max_eval_samples=2,
            **CONFIGS[args.child],
        )
        metrics = dpo.train(config, data, None, Path(tmp) / "out", str(Path(tmp) / "live"))
    print("RESULT " + json.dumps(metrics))


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="models/base/gemma-3-270m")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    rows = []
    for name in args.configs.split(","):
        cmd = [sys.executable, __file__, "--child", name, "--model", args.model, "--steps", str(args.steps),
               "--batch", str(args.batch), "--max-length", str(args.max_length)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"TQDM_DISABLE": "1"})
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            rows.append((name, None, proc.stderr.strip().splitlines()[-1:] or ["no output"]))
            continue
        rows.append((name, json.loads(line[7:]), None))
    base = next((m for _, m, _ in rows if m), None)
    print("| config | steps | train s | tokens/s | x tokens/s | peak MB | x peak | train loss |")
    print("|---|---|---|---|---|---|---|---|")
    for name, m, err in rows:
        if m is None:
            print(f"| {name} | failed: {err[0][:80]} | | | | | | |")
            continue
        tps, peak = m["tokens_per_second"] or 0.0, m["peak_memory_mb"]
        ratio = tps / (base["tokens_per_second"] or 1)
        print(f"| {name} | {m['steps']} | {m['train_seconds']} | {tps:.1f} | {ratio:.2f} "
              f"| {peak:.0f} | {peak / base['peak_memory_mb']:.2f} | {m['train_loss']} |")  # fmt: skip


if __name__ == "__main__":
    main()
