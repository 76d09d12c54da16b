"""Side-by-side timing of `jalign.text.japanese_ratio` against its earlier per-character definition.

Usage: python benchmarks/bench_japanese_ratio.py [--repeat 200]

The texts are the prompts and grading notes of data/eval/ja_eval.jsonl and the prompts of
data/eval/ifeval_ja.jsonl (Japanese with digits, punctuation and some Latin). Both functions are
checked to give identical values on every text first; then each is timed over all texts, `--repeat`
times, and the best of five runs is reported per call.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import timeit
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jalign.text import japanese_ratio

ROOT = Path(__file__).resolve().parents[1]

_JAPANESE = re.compile(
    r"[\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f\u4e00-\u9fff\u3400-\u4dbf々〆ヵヶ]"
)


def reference_ratio(text: str) -> float:
    """The definition before issue 20: a Unicode category look-up per character."""
    counted = [ch for ch in text if unicodedata.category(ch)[0] in "LN" and not ch.isdigit()]
    if not counted:
        return 0.0
    return sum(1 for ch in counted if _JAPANESE.match(ch)) / len(counted)


def texts() -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "data/eval/ja_eval.jsonl").read_text("utf-8").splitlines()]
    ifeval = (ROOT / "data/eval/ifeval_ja.jsonl").read_text("utf-8").splitlines()
    return (
        [r["prompt"] for r in rows]
        + [r["grading_notes"] for r in rows]
        + [json.loads(line)["prompt"] for line in ifeval]
    )


def best_per_call(function, corpus: list[str], repeat: int) -> float:
    runs = timeit.repeat(lambda: [function(t) for t in corpus], number=repeat, repeat=5)
    return min(runs) / (repeat * len(corpus))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    corpus = texts()
    assert all(japanese_ratio(t) == reference_ratio(t) for t in corpus), "values differ"
    chars = sum(map(len, corpus)) / len(corpus)
    print(f"python {platform.python_version()}; {len(corpus)} texts, mean {chars:.0f} characters")
    old = best_per_call(reference_ratio, corpus, args.repeat)
    new = best_per_call(japanese_ratio, corpus, args.repeat)
    print(f"per-character loop  {old * 1e6:8.1f} us per call")
    print(f"japanese_ratio      {new * 1e6:8.1f} us per call  ({old / new:.1f}x)")


if __name__ == "__main__":
    main()
