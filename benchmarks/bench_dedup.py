"""Benchmark of jalign.dedup.near_duplicate_mask against the straightforward pure-Python dedup.

Usage: python benchmarks/bench_dedup.py --n 20000 [--threshold 0.7] [--ref-seconds 30] [--ref-n N]

1. Builds a reproducible synthetic corpus of Japanese-like instructions (20-120 characters,
   ~15% near-duplicates made by small edits of earlier items).
2. Times ``near_duplicate_mask`` on the full corpus.
3. Times the straightforward pure-Python implementation (``lcs_length_reference`` against
   every kept-so-far text) on a prefix chosen to take about ``--ref-seconds`` (estimated from a
   calibration sample; ``--ref-n`` fixes it instead), plus the fast path and a per-pair
   rapidfuzz loop on that same prefix, checks that all decisions are identical and prints
   throughput and the speed-up ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rapidfuzz.distance import LCSseq

from jalign.dedup import lcs_length_reference, near_duplicate_mask, normalize_for_rouge

NOUNS = [
    "東京", "富士山", "日本料理", "寿司", "天ぷら", "新幹線", "桜", "温泉", "俳句", "歌舞伎",
    "人工知能", "機械学習", "量子コンピュータ", "気候変動", "再生可能エネルギー", "経済", "歴史",
    "江戸時代", "明治維新", "プログラミング", "Python", "データベース", "クラウド", "スマートフォン",
    "健康", "睡眠", "運動", "読書", "音楽", "映画", "アニメ", "漫画", "旅行", "京都", "大阪",
    "北海道", "沖縄", "猫", "犬", "宇宙", "火星", "月", "太陽", "地震", "台風", "教育", "大学",
    "就職活動", "会議", "メール", "契約書", "税金", "年金", "投資", "株式", "為替", "料理", "野菜",
    "コーヒー", "お茶", "和菓子", "祭り", "神社", "お寺", "城", "庭園", "茶道", "書道", "柔道",
]  # fmt: skip
VERBS = [
    "説明して", "要約して", "比較して", "紹介して", "分析して", "評価して", "翻訳して", "まとめて",
    "書いて", "考えて", "提案して", "列挙して", "解説して", "教えて", "作成して", "整理して",
]  # fmt: skip
ADJS = [
    "簡単に", "詳しく", "わかりやすく", "丁寧に", "短く", "具体的に", "論理的に", "面白く",
    "小学生にもわかるように", "専門家向けに", "三つのポイントで", "箇条書きで", "200字以内で",
]  # fmt: skip
TEMPLATES = [
    "{n1}について{a}{v}ください。",
    "{n1}と{n2}の違いを{a}{v}ください。",
    "{n1}の長所と短所を{a}{v}ください。",
    "{n1}に関する{n2}の役割を{a}{v}ください。",
    "初心者のために{n1}の基本を{a}{v}ください。",
    "{n1}を使って{n2}を改善する方法を{v}ください。",
    "あなたが{n1}の専門家だとしたら、{n2}についてどう{v}くれますか。",
    "{n1}をテーマにした短い物語を{a}{v}ください。",
    "{n1}の歴史と{n2}への影響を{a}{v}ください。",
    "次の文章を{a}{v}ください：{n1}は{n2}と深く関係している。",
    "{n1}、{n2}、{n3}の共通点を{a}{v}ください。",
    "なぜ{n1}は{n2}にとって重要なのか{a}{v}ください。",
]
EDIT_CHARS = "のをにがはでとへもやかなあいうえおアイウエオ。、"


def _clause(rng: random.Random) -> str:
    n1, n2, n3 = rng.sample(NOUNS, 3)
    return rng.choice(TEMPLATES).format(n1=n1, n2=n2, n3=n3, a=rng.choice(ADJS), v=rng.choice(VERBS))


def _near_duplicate(rng: random.Random, base: str) -> str:
    chars = list(base)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        pos = rng.randrange(len(chars))
        if op < 0.4:
            chars[pos] = rng.choice(EDIT_CHARS)
        elif op < 0.7:
            chars.insert(pos, rng.choice(EDIT_CHARS))
        elif len(chars) > 20:
            del chars[pos]
    if rng.random() < 0.3:  # whitespace variation (removed by normalisation)
        chars.insert(rng.randrange(len(chars)), rng.choice([" ", "\u3000"]))
    return "".join(chars)[:120]


def make_corpus(n: int, seed: int = 0, dup_rate: float = 0.15) -> list[str]:
    """Reproducible corpus of Japanese-like instructions, 20-120 characters."""
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(n):
        if out and rng.random() < dup_rate:
            out.append(_near_duplicate(rng, rng.choice(out)))
            continue
        target = rng.randint(20, 120)
        text = _clause(rng)
        while len(text) < target:
            text += _clause(rng)
        out.append(text[:target])
    return out


def reference_mask(texts: list[str], threshold: float) -> tuple[list[bool], int]:
    """Straightforward pure-Python dedup: returns (keep, number of LCS evaluations)."""
    kept: list[str] = []
    keep: list[bool] = []
    pairs = 0
    for text in texts:
        a = normalize_for_rouge(text)
        dup = False
        for b in kept:
            pairs += 1
            la, lb = len(a), len(b)
            f1 = 1.0 if la + lb == 0 else 2 * lcs_length_reference(a, b) / (la + lb)
            if f1 > threshold:
                dup = True
                break
        keep.append(not dup)
        if not dup:
            kept.append(a)
    return keep, pairs


def rapidfuzz_loop_mask(texts: list[str], threshold: float) -> list[bool]:
    """Same loop as reference_mask, but one rapidfuzz LCS call per pair."""
    kept: list[str] = []
    keep: list[bool] = []
    for text in texts:
        a = normalize_for_rouge(text)
        dup = any(
            (1.0 if not a and not b else 2 * LCSseq.similarity(a, b) / (len(a) + len(b))) > threshold
            for b in kept
        )
        keep.append(not dup)
        if not dup:
            kept.append(a)
    return keep


def logical_pairs(keep: list[bool], upto: int) -> int:
    """Number of (text, kept-so-far) pairs the definition covers for texts[:upto]."""
    total = kept = 0
    for k in keep[:upto]:
        total += kept
        kept += k
    return total


def machine_info() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
                break
    except OSError:
        pass
    import numpy
    import rapidfuzz

    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": ram,
        "python": platform.python_version(),
        "rapidfuzz": rapidfuzz.__version__,
        "numpy": numpy.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20000, help="corpus size for the fast path")
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--block-size", type=int, default=512)
    parser.add_argument("--ref-seconds", type=float, default=30.0, help="target time of the pure-Python run")
    parser.add_argument("--ref-n", type=int, default=None, help="fix the pure-Python prefix size")
    args = parser.parse_args(argv)

    info = machine_info()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    texts = make_corpus(args.n, seed=args.seed)
    lens = [len(normalize_for_rouge(t)) for t in texts]
    print(f"corpus: n={len(texts)}, mean normalised length {sum(lens) / len(lens):.1f} chars")

    t0 = time.perf_counter()
    fast_full = near_duplicate_mask(texts, args.threshold, block_size=args.block_size)
    t_full = time.perf_counter() - t0
    pairs_full = logical_pairs(fast_full, len(texts))
    print(
        f"fast, full n={len(texts)}: {t_full:.2f} s, kept {sum(fast_full)}, "
        f"{pairs_full:,} pairs, {pairs_full / t_full:,.0f} pairs/s"
    )

    # Choose the prefix for the pure-Python reference.
    if args.ref_n is not None:
        m = min(args.ref_n, len(texts))
    else:
        rng = random.Random(1)
        sample = [(rng.choice(texts), rng.choice(texts)) for _ in range(300)]
        t0 = time.perf_counter()
        for a, b in sample:
            lcs_length_reference(normalize_for_rouge(a), normalize_for_rouge(b))
        per_pair = (time.perf_counter() - t0) / len(sample)
        m, total, kept = 0, 0, 0
        while m < len(texts) and (total + kept) * per_pair <= args.ref_seconds:
            total += kept
            kept += fast_full[m]
            m += 1
    prefix = texts[:m]
    print(f"reference prefix: first {m} texts")

    t0 = time.perf_counter()
    ref_keep, ref_pairs = reference_mask(prefix, args.threshold)
    t_ref = time.perf_counter() - t0
    # The fast runs on the prefix are short: best of 3 to reduce timer noise.
    t_fast = t_loop = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        fast_keep = near_duplicate_mask(prefix, args.threshold, block_size=args.block_size)
        t_fast = min(t_fast, time.perf_counter() - t0)
        t0 = time.perf_counter()
        loop_keep = rapidfuzz_loop_mask(prefix, args.threshold)
        t_loop = min(t_loop, time.perf_counter() - t0)

    identical = ref_keep == fast_keep == loop_keep == fast_full[:m]
    pairs_prefix = logical_pairs(ref_keep, m)
    print(f"identical decisions on the prefix: {identical} (kept {sum(ref_keep)} of {m})")
    print(
        f"pure Python: {t_ref:.2f} s, {ref_pairs:,} LCS evaluations "
        f"({pairs_prefix:,} logical pairs), {ref_pairs / t_ref:,.0f} pairs/s"
    )
    print(f"rapidfuzz per-pair loop (best of 3): {t_loop:.3f} s, {pairs_prefix / t_loop:,.0f} pairs/s")
    print(f"fast (near_duplicate_mask, best of 3): {t_fast:.3f} s, {pairs_prefix / t_fast:,.0f} pairs/s")
    print(f"speed-up fast vs pure Python on the same prefix: {t_ref / t_fast:,.0f}x")
    print(f"speed-up fast vs rapidfuzz per-pair loop: {t_loop / t_fast:,.1f}x")
    print(
        f"per-pair throughput ratio, fast on full n vs pure Python on the prefix: "
        f"{(pairs_full / t_full) / (ref_pairs / t_ref):,.0f}x"
    )
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
