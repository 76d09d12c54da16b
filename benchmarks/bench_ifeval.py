"""Benchmark of `jalign ifeval` on M-IFEval's real Japanese answers, whole processes, start-up included.

Usage: python benchmarks/bench_ifeval.py --upstream PATH [--runs 3] [--upstream-python PYTHON]

1. Builds, in a temp dir, one JSONL of every model's answers in the checkout PATH of
   lightblue-tech/M-IFEval (data/ja_input_response_data_<model>.jsonl matched to
   data/ja_input_data.jsonl by prompt: 17 models x 172 prompts). Nothing of it is kept.
2. Times `jalign ifeval --mode strict --json` and `--mode loose --json` as processes, RUNS times each
   (median, min, max wall seconds), and checks that every run prints the same verdicts.
3. With --upstream-python (the python of a venv holding upstream's requirements: absl-py, immutabledict,
   janome 0.5.0, ja_sentence_segmenter 0.0.2, langdetect 1.0.9), times upstream's own
   evaluation_main.test_instruction_following_{strict,loose} over the same rows, one process per
   mode. Upstream's registry imports its Spanish and French modules, which load spaCy models and
   download NLTK data at import time; offline, two stub modules stand in for spacy and nltk (the
   Japanese checkers never call them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ifeval_agreement import Upstream  # the sibling script: the same checkout reader

JALIGN = [sys.executable, "-m", "commands", "ifeval"]
REPO = Path(__file__).resolve().parents[1]

# One process per mode: upstream's own per-row functions over the merged rows.
UPSTREAM_DRIVER = """
import json, sys
import evaluation_main as em
mode, path = sys.argv[1], sys.argv[2]
test = em.test_instruction_following_strict if mode == "strict" else em.test_instruction_following_loose
for line in open(path, encoding="utf-8"):
    row = json.loads(line)
    inp = em.InputExample(key=row["key"], instruction_id_list=row["instruction_id_list"],
                          prompt=row["prompt"], kwargs=row["kwargs"])
    out = test(inp, {row["prompt"]: row["response"]})
    print(json.dumps(out.follow_instruction_list))
"""
STUBS = {
    "spacy/__init__.py": "def load(name):\n    return None\n",
    "nltk/__init__.py": "def download(*args, **kwargs):\n    return True\n",
}


def build_merged(upstream: Upstream, path: Path) -> int:
    rows = [row for model in upstream.models() for row in upstream.merged_rows(model)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return len(rows)


def time_runs(command: list[str], runs: int, env: dict[str, str], cwd: Path) -> tuple[list[float], set[str]]:
    """Wall seconds of each run, and the distinct outputs seen."""
    times, outputs = [], set()
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, check=True)
        times.append(time.perf_counter() - start)
        outputs.add(done.stdout)
    return times, outputs


def upstream_tree(upstream: Upstream, folder: Path) -> Path:
    """A work tree of upstream's code (from `git archive` when PATH is a git directory) plus the stubs."""
    if upstream.work_tree:
        code = upstream.path
    else:
        code = folder / "upstream"
        code.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(upstream.path), "archive", "HEAD"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(code)], input=archive.stdout, check=True)
    for name, text in STUBS.items():
        (folder / "stubs" / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / "stubs" / name).write_text(text)
    (folder / "driver.py").write_text(UPSTREAM_DRIVER)
    return code


def report(label: str, times: list[float]) -> None:
    print(
        f"  {label:<28} median {statistics.median(times):6.2f} s (min {min(times):.2f}, max {max(times):.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", required=True, help="M-IFEval checkout (work tree or git dir)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--upstream-python", help="python of a venv with upstream's requirements")
    args = parser.parse_args()
    upstream = Upstream(args.upstream)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        merged = folder / "merged.jsonl"
        n = build_merged(upstream, merged)
        print(
            f"{n} answers ({len(upstream.models())} models); {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs; {args.runs} runs each"
        )
        verdicts = {}
        for mode in ("strict", "loose"):
            times, outputs = time_runs([*JALIGN, "--mode", mode, "--json", str(merged)], args.runs, env, REPO)
            assert len(outputs) == 1, f"jalign {mode}: runs disagree"
            verdicts[mode] = [
                json.loads(line)["follow_instruction_list"] for line in outputs.pop().splitlines()
            ]
            report(f"jalign ifeval --mode {mode}", times)
        if args.upstream_python:
            code = upstream_tree(upstream, folder)
            up_env = {**env, "PYTHONPATH": f"{folder / 'stubs'}{os.pathsep}{code}"}
            for mode in ("strict", "loose"):
                command = [args.upstream_python, str(folder / "driver.py"), mode, str(merged)]
                times, outputs = time_runs(command, args.runs, up_env, code)
                theirs = [json.loads(line) for line in next(iter(outputs)).splitlines()]
                same = sum(a == b for a, b in zip(verdicts[mode], theirs, strict=True))
                report(f"upstream {mode}", times)
                print(
                    f"    rows with the same verdicts as jalign: {same}/{n}; distinct outputs: {len(outputs)}"
                )


if __name__ == "__main__":
    main()
