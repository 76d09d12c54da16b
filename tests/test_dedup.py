"""Tests for jalign.dedup: character-level ROUGE-L and exact near-duplicate filtering."""

from __future__ import annotations

import random

import pytest
from rapidfuzz.distance import LCSseq

from jalign.dedup import (
    DedupResult,
    dedup_with_reasons,
    lcs_length_reference,
    max_similarity,
    near_duplicate_mask,
    normalize_for_rouge,
    rouge_l_f1,
)

ALPHABET = "あいうえおか"  # small, so that near-duplicates are frequent
THRESHOLDS = [0.0, 0.3, 0.5, 0.7, 0.9, 1.0]
BLOCK_SIZES = [1, 2, 7, 512]


# ---------------------------------------------------------------------------------------------
# Brute-force reference implementations (pure Python, straight from the definition)
# ---------------------------------------------------------------------------------------------
def ref_f1(a: str, b: str) -> float:
    na, nb = normalize_for_rouge(a), normalize_for_rouge(b)
    if len(na) + len(nb) == 0:
        return 1.0
    return 2 * lcs_length_reference(na, nb) / (len(na) + len(nb))


def brute_reasons(texts, threshold, prior=(), f1=None):
    """Returns (keep, nearest, nearest_f1) with the conventions of DedupResult.

    ``f1(x, y)`` gives the F1 between items identified as ("t", i) / ("p", k)."""
    if f1 is None:
        cache: dict = {}

        def f1(x, y):
            key = (x, y)
            if key not in cache:
                sx = texts[x[1]] if x[0] == "t" else prior[x[1]]
                sy = texts[y[1]] if y[0] == "t" else prior[y[1]]
                cache[key] = ref_f1(sx, sy)
            return cache[key]

    kept = [("p", k) for k in range(len(prior))]
    keep, nearest, nearest_f1 = [], [], []
    for i in range(len(texts)):
        best, best_id = -1.0, None
        for item in kept:
            v = f1(("t", i), item)
            if v > best:
                best, best_id = v, item
        if best > threshold:
            keep.append(False)
            nearest.append(best_id[1] if best_id[0] == "t" else -(best_id[1] + 1))
            nearest_f1.append(best)
        else:
            keep.append(True)
            nearest.append(-1)
            nearest_f1.append(0.0)
            kept.append(("t", i))
    return keep, nearest, nearest_f1


def random_text(rng: random.Random, max_len: int = 12) -> str:
    chars = [rng.choice(ALPHABET) for _ in range(rng.randint(0, max_len))]
    # sprinkle whitespace (ignored after normalisation) and full-width variants
    if chars and rng.random() < 0.2:
        chars.insert(rng.randrange(len(chars)), rng.choice([" ", "\u3000", "\n"]))
    if rng.random() < 0.1:
        chars.append("Ａ")  # NFKC -> "A"
    if rng.random() < 0.1:
        chars.append("A")
    return "".join(chars)


def random_corpus(seed: int, n: int, max_len: int = 12) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(n):
        if out and rng.random() < 0.3:  # small edit of an earlier text
            base = list(rng.choice(out))
            if base:
                base[rng.randrange(len(base))] = rng.choice(ALPHABET)
            out.append("".join(base))
        else:
            out.append(random_text(rng, max_len))
    return out


# ---------------------------------------------------------------------------------------------
# rouge_l_f1 / normalisation / LCS
# ---------------------------------------------------------------------------------------------
def test_rouge_hand_checked_japanese():
    # 東京都 vs 京都府: LCS = 京都 (2); F1 = 2*2/(3+3)
    assert rouge_l_f1("東京都", "京都府") == 2 * 2 / 6
    # 日本語を勉強する vs 英語を勉強した: LCS = 語を勉強 (4); lengths 8 and 7
    assert rouge_l_f1("日本語を勉強する", "英語を勉強した") == 2 * 4 / 15
    # identical -> 1.0, disjoint -> 0.0
    assert rouge_l_f1("すし", "すし") == 1.0
    assert rouge_l_f1("すし", "てんぷら") == 0.0
    # order matters for LCS: あいう vs ういあ -> LCS 1
    assert rouge_l_f1("あいう", "ういあ") == 2 * 1 / 6
    # symmetry
    assert rouge_l_f1("京都府", "東京都") == rouge_l_f1("東京都", "京都府")


def test_rouge_nfkc_and_whitespace():
    assert normalize_for_rouge("ＡＢＣ１２３") == "ABC123"
    assert rouge_l_f1("ＡＢＣ１２３", "ABC123") == 1.0
    assert rouge_l_f1("ｶﾀｶﾅ", "カタカナ") == 1.0  # half-width katakana
    assert normalize_for_rouge("東京\u3000都\n に\t行く ") == "東京都に行く"
    assert rouge_l_f1("東京\u3000都\nに 行く", "東京都に行く") == 1.0
    # LCS 東京都 (3) of 東京都 (3) and 東京都に行く (6)
    assert rouge_l_f1("東 京 都", "東京都に行く") == 2 * 3 / 9


def test_rouge_empty_strings():
    assert rouge_l_f1("", "") == 1.0
    assert rouge_l_f1(" \u3000\n", "") == 1.0  # whitespace-only normalises to empty
    assert rouge_l_f1("", "あ") == 0.0
    assert rouge_l_f1("あ", "\u3000") == 0.0


def test_lcs_reference_hand_checked():
    assert lcs_length_reference("", "abc") == 0
    assert lcs_length_reference("abcbdab", "bdcaba") == 4
    assert lcs_length_reference("東京都", "京都府") == 2


def test_lcs_reference_matches_rapidfuzz():
    rng = random.Random(0)
    for _ in range(300):
        a = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40)))
        b = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40)))
        assert lcs_length_reference(a, b) == LCSseq.similarity(a, b)
        assert rouge_l_f1(a, b) == ref_f1(a, b)


# ---------------------------------------------------------------------------------------------
# near_duplicate_mask
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("with_prior", [False, True])
def test_mask_matches_brute_force(seed, with_prior):
    texts = random_corpus(seed, 45)
    prior = random_corpus(seed + 100, 8) if with_prior else []
    items = {("t", i): s for i, s in enumerate(texts)} | {("p", k): s for k, s in enumerate(prior)}
    memo: dict = {}

    def f1(x, y):
        if (x, y) not in memo:
            memo[(x, y)] = ref_f1(items[x], items[y])
        return memo[(x, y)]

    for threshold in THRESHOLDS:
        expected, exp_nearest, exp_nf1 = brute_reasons(texts, threshold, prior, f1)
        for bs in BLOCK_SIZES:
            assert near_duplicate_mask(texts, threshold, prior=prior, block_size=bs) == expected
            res = dedup_with_reasons(texts, threshold, prior=prior, block_size=bs)
            assert res == DedupResult(expected, exp_nearest, exp_nf1)


def test_mask_larger_corpus_crosses_length_groups():
    # Wider length range and more texts than one length group (64) per block; uses rapidfuzz
    # pairwise (validated against the reference above) as the brute force to stay fast.
    texts = random_corpus(7, 260, max_len=40)
    prior = random_corpus(8, 90, max_len=40)
    norm = {("t", i): normalize_for_rouge(s) for i, s in enumerate(texts)}
    norm |= {("p", k): normalize_for_rouge(s) for k, s in enumerate(prior)}

    def f1(x, y):
        a, b = norm[x], norm[y]
        return 1.0 if not a and not b else 2 * LCSseq.similarity(a, b) / (len(a) + len(b))

    for threshold in [0.5, 0.7]:
        expected = brute_reasons(texts, threshold, prior, f1)
        for bs in [7, 100, 512]:
            res = dedup_with_reasons(texts, threshold, prior=prior, block_size=bs)
            assert (res.keep, res.nearest, res.nearest_f1) == expected
            assert near_duplicate_mask(texts, threshold, prior=prior, block_size=bs) == expected[0]


def test_mask_long_strings_and_large_alphabet():
    # Lengths on both sides of 64 (the fast path orients cdist calls by length) and more than
    # 256 distinct characters incl. non-BMP ones (the fast path relabels the alphabet).
    rng = random.Random(5)
    big = [chr(0x4E00 + k) for k in range(400)] + ["😀", "𠮷", "a", "Ａ"]
    texts: list[str] = []
    for _ in range(150):
        if texts and rng.random() < 0.4:
            base = list(rng.choice(texts))
            for _ in range(rng.randint(0, 6)):
                if base:
                    base[rng.randrange(len(base))] = rng.choice(big[:8])
            texts.append("".join(base))
        else:
            alphabet = big[: rng.choice([8, 30, len(big)])]
            texts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 140))))
    prior, texts = texts[:30], texts[30:]
    norm = {("t", i): normalize_for_rouge(s) for i, s in enumerate(texts)}
    norm |= {("p", k): normalize_for_rouge(s) for k, s in enumerate(prior)}

    def f1(x, y):
        a, b = norm[x], norm[y]
        return 1.0 if not a and not b else 2 * LCSseq.similarity(a, b) / (len(a) + len(b))

    for threshold in [0.2, 0.6, 0.8]:
        expected = brute_reasons(texts, threshold, prior, f1)
        for bs in [5, 512]:
            res = dedup_with_reasons(texts, threshold, prior=prior, block_size=bs)
            assert (res.keep, res.nearest, res.nearest_f1) == expected
    best, idx = max_similarity(texts, prior, block_size=16)
    for i, (b, j) in enumerate(zip(best, idx, strict=True)):
        scores = [f1(("t", i), ("p", k)) for k in range(len(prior))]
        assert (b, j) == (max(scores), scores.index(max(scores)))


def test_exact_threshold_tie_is_kept():
    a, b = "あいうえおかきくけこ", "あいうえおかきさしす"  # LCS 7 of lengths 10 + 10 -> 14/20
    assert rouge_l_f1(a, b) == 0.7
    assert near_duplicate_mask([a, b], 0.7) == [True, True]
    assert near_duplicate_mask([a, b], 0.69) == [True, False]
    c, d = "あいうえ", "あいかき"  # 2*2/8
    assert rouge_l_f1(c, d) == 0.5
    for bs in BLOCK_SIZES:
        assert near_duplicate_mask([c, d], 0.5, block_size=bs) == [True, True]
        assert near_duplicate_mask([d], 0.5, prior=[c], block_size=bs) == [True]
        assert near_duplicate_mask([d], 0.4999, prior=[c], block_size=bs) == [False]


def test_mask_special_cases():
    assert near_duplicate_mask([], 0.7) == []
    # exact and whitespace/NFKC duplicates
    assert near_duplicate_mask(["東京都", "東 京 都", "ＡＢＣ", "ABC"], 0.9) == [True, False, True, False]
    # empty strings: two empties are duplicates (F1 = 1), empty vs non-empty are not (F1 = 0)
    assert near_duplicate_mask(["", "あ", " ", "\u3000"], 0.0) == [True, True, False, False]
    # threshold 1.0 keeps everything; threshold 0.0 rejects anything sharing a character
    assert near_duplicate_mask(["あ", "あ", "あ"], 1.0) == [True, True, True]
    assert near_duplicate_mask(["あい", "いう", "うえ", "えお"], 0.0) == [True, False, True, False]
    # prior texts count as kept but are not returned
    assert near_duplicate_mask(["東京都", "大阪府"], 0.7, prior=["東京都"]) == [False, True]


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan")])
def test_invalid_threshold(bad):
    with pytest.raises(ValueError, match=r"threshold.*\[0, 1\]"):
        near_duplicate_mask(["あ"], bad)
    with pytest.raises(ValueError, match="threshold"):
        dedup_with_reasons(["あ"], bad)


def test_invalid_block_size():
    with pytest.raises(ValueError, match="block_size"):
        near_duplicate_mask(["あ"], 0.5, block_size=0)


# ---------------------------------------------------------------------------------------------
# max_similarity / dedup_with_reasons
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bs", [1, 3, 512])
def test_max_similarity_matches_brute_force(bs):
    queries = random_corpus(11, 30)
    refs = random_corpus(12, 25)
    best, idx = max_similarity(queries, refs, block_size=bs)
    for q, b, j in zip(queries, best, idx, strict=True):
        scores = [ref_f1(q, r) for r in refs]
        assert b == max(scores)
        assert j == scores.index(max(scores))  # first index on ties
        assert rouge_l_f1(q, refs[j]) == b


def test_max_similarity_edge_cases():
    assert max_similarity(["あ", "い"], []) == ([0.0, 0.0], [-1, -1])
    assert max_similarity([], ["あ"]) == ([], [])
    assert max_similarity(["", "東京都"], ["京都府", "", "東京都"]) == ([1.0, 1.0], [1, 2])


def test_dedup_with_reasons_consistent_with_mask():
    texts = random_corpus(21, 80, max_len=20)
    prior = random_corpus(22, 10, max_len=20)
    for threshold in [0.3, 0.6, 0.8]:
        res = dedup_with_reasons(texts, threshold, prior=prior, block_size=16)
        assert res.keep == near_duplicate_mask(texts, threshold, prior=prior)
        for i, (k, j, v) in enumerate(zip(res.keep, res.nearest, res.nearest_f1, strict=True)):
            if k:
                assert (j, v) == (-1, 0.0)
                continue
            other = prior[-j - 1] if j < 0 else texts[j]
            assert j < i
            assert j < 0 or res.keep[j]
            assert v > threshold
            assert v == rouge_l_f1(texts[i], other)


def test_dedup_with_reasons_simple():
    res = dedup_with_reasons(["東京都", "大阪府", "東京都だ", "大阪府"], 0.7, prior=["大阪府"])
    assert res.keep == [True, False, False, False]
    assert res.nearest == [-1, -1, 0, -1]  # -1 for a rejected text is prior[0]
    assert res.nearest_f1 == [0.0, 1.0, 2 * 3 / 7, 1.0]
