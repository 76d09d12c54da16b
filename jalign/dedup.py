"""Near-duplicate filtering with character-level ROUGE-L F1.

Self-Instruct filters generated instructions with word-level ROUGE-L, which tokenises
on whitespace and therefore scores Japanese (no spaces) as 0. Here ROUGE-L is computed
over characters instead:

* both strings are normalised with :func:`normalize_for_rouge` (NFKC, then every
  Unicode whitespace character removed);
* ``L`` is the length of their longest common subsequence (LCS) of characters;
* ``F1 = 2 * L / (len(a') + len(b'))`` (β = 1, the harmonic mean of ``L/len(a')`` and
  ``L/len(b')``). If both normalised strings are empty F1 is 1.0; if exactly one is
  empty it is 0.0.

Deduplication is greedy in input order: a text is kept iff its F1 against every text
kept so far (and every ``prior`` text) is ``<= threshold``. The fast implementation
computes LCS lengths with rapidfuzz's bit-parallel C++ code
(:func:`rapidfuzz.process.cdist`) block by block and gives exactly the same decisions as
the brute-force pairwise definition: F1 is evaluated as ``2 * L / (la + lb)`` in IEEE
float64 (identical to Python's ``int / int``), and the only pruning used skips pairs whose
length-based upper bound ``2 * min(la, lb) / (la + lb)`` already rules out ``F1 > T``.
"""

from __future__ import annotations

import itertools
import math
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rapidfuzz.distance import LCSseq
from rapidfuzz.process import cdist

__all__ = [
    "DedupResult",
    "dedup_with_reasons",
    "lcs_length_reference",
    "max_similarity",
    "near_duplicate_mask",
    "normalize_for_rouge",
    "rouge_l_f1",
]

# Queries of one block are sorted by length and sent to cdist in groups of this size, so
# that each group only needs the pool texts whose lengths are compatible with it.
_GROUP_SIZE = 64
# rapidfuzz's cdist uses SIMD (several queries per vector) for queries up to this length.
_SIMD_MAX_LEN = 64
# cdist calls with fewer (query, choice) pairs than this run on one thread.
_PARALLEL_MIN_CELLS = 4096
# Upper bound on the number of cells of one cdist result in max_similarity.
_MAX_CELLS = 1 << 22


def normalize_for_rouge(text: str) -> str:
    """NFKC-normalise ``text`` and remove all (Unicode) whitespace."""
    return "".join(unicodedata.normalize("NFKC", text).split())


def lcs_length_reference(a: str, b: str) -> int:
    """Length of the longest common subsequence of ``a`` and ``b`` (plain O(len a * len b) DP).

    Works on the strings as given (no normalisation). This is the slow reference
    implementation used to validate the fast path.
    """
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for ca in a:
        cur = [0] * (len(b) + 1)
        for j, cb in enumerate(b, start=1):
            if ca == cb:
                cur[j] = prev[j - 1] + 1
            else:
                cur[j] = cur[j - 1] if cur[j - 1] >= prev[j] else prev[j]
        prev = cur
    return prev[-1]


def _f1_from_lcs(lcs: int, la: int, lb: int) -> float:
    if la + lb == 0:
        return 1.0
    return 2 * lcs / (la + lb)


def rouge_l_f1(a: str, b: str) -> float:
    """Character-level ROUGE-L F1 of two raw strings (normalised inside)."""
    na, nb = normalize_for_rouge(a), normalize_for_rouge(b)
    if not na or not nb:
        return 1.0 if na == nb else 0.0
    return _f1_from_lcs(int(LCSseq.similarity(na, nb)), len(na), len(nb))


def _check_threshold(threshold: float) -> float:
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}") from None
    if math.isnan(t) or not 0.0 <= t <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    return t


def _check_block_size(block_size: int) -> int:
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be an integer >= 1, got {block_size!r}")
    return int(block_size)


def _object_array(items: list[str]) -> np.ndarray:
    """1-D object array holding the given strings (for cheap fancy indexing)."""
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr


def _compact_alphabet(strings: list[str]) -> list[str]:
    """Relabel characters by descending frequency (most frequent -> code point 0, 1, ...).

    The relabelling is a bijection, so LCS lengths are unchanged; rapidfuzz looks characters
    below 256 up in a flat table instead of a hash map, which makes the LCS ~3-4x faster for
    Japanese text. Surrogate code points are skipped.
    """
    counts = Counter(itertools.chain.from_iterable(strings))
    table = {}
    for rank, (ch, _) in enumerate(counts.most_common()):
        code = rank if rank < 0xD800 else rank + 0x800
        table[ord(ch)] = chr(code)
    return [s.translate(table) for s in strings]


def _cdist(queries: list[str], choices: list[str]) -> np.ndarray:
    # Small matrices: starting worker threads costs more than it saves.
    workers = -1 if len(queries) * len(choices) >= _PARALLEL_MIN_CELLS else 1
    return cdist(queries, choices, scorer=LCSseq.similarity, dtype=np.int32, workers=workers)


def _lcs_matrix(queries: np.ndarray, choices: np.ndarray, qlen: np.ndarray, clen: np.ndarray) -> np.ndarray:
    """LCS lengths of every (query, choice) pair, shape (nq, nc).

    ``queries``/``choices`` are 1-D object arrays of strings with lengths ``qlen``/``clen``.
    rapidfuzz's cdist runs the LCS of several queries at once with SIMD when the query has at
    most 64 characters, so the matrix is assembled from up to three calls oriented so that
    the short side is the query side whenever possible (LCS is symmetric).
    """
    if len(queries) == 0 or len(choices) == 0:
        return np.zeros((len(queries), len(choices)), dtype=np.int32)
    q_short, q_long = qlen <= _SIMD_MAX_LEN, qlen > _SIMD_MAX_LEN
    c_short, c_long = clen <= _SIMD_MAX_LEN, clen > _SIMD_MAX_LEN
    if q_short.all():
        return _cdist(queries.tolist(), choices.tolist())
    out = np.empty((len(queries), len(choices)), dtype=np.int32)
    if q_short.any():
        out[q_short] = _cdist(queries[q_short].tolist(), choices.tolist())
    ql = np.flatnonzero(q_long)
    if c_short.any():
        cs = np.flatnonzero(c_short)
        out[np.ix_(ql, cs)] = _cdist(choices[cs].tolist(), queries[ql].tolist()).T
    if c_long.any():
        cl = np.flatnonzero(c_long)
        out[np.ix_(ql, cl)] = _cdist(queries[ql].tolist(), choices[cl].tolist())
    return out


def _f1_matrix(lcs: np.ndarray, la: np.ndarray, lb: np.ndarray) -> np.ndarray:
    """F1 = 2L / (la + lb) in float64, 1.0 where both strings are empty.

    All operands are integers exactly representable in float64 and IEEE division is
    correctly rounded, so every entry is bit-identical to Python's ``2 * L / (la + lb)``.
    """
    denom = la.astype(np.float64)[:, None] + lb.astype(np.float64)[None, :]
    with np.errstate(invalid="ignore"):  # 0/0 where both are empty, fixed below
        f1 = (2.0 * lcs) / denom
    empty_q, empty_c = la == 0, lb == 0
    if empty_q.any() and empty_c.any():
        f1[np.ix_(empty_q, empty_c)] = 1.0
    return f1


def _allowed_lengths(query_lengths: np.ndarray, lb: np.ndarray, t: float) -> np.ndarray:
    """For each length in ``lb``: can a text of that length have F1 > t with a text of one of
    ``query_lengths``? Uses the bound F1 <= 2*min(la, lb)/(la + lb), evaluated with the same
    float formula, so no pair with F1 > t is ever excluded."""
    la = np.unique(query_lengths)
    bound = _f1_matrix(np.minimum(la[:, None], lb[None, :]), la, lb)
    return (bound > t).any(axis=0)


@dataclass(frozen=True)
class DedupResult:
    """Outcome of :func:`dedup_with_reasons`, one entry per input text.

    * ``keep[i]``: True if ``texts[i]`` is kept.
    * ``nearest[i]``: for a rejected text, the kept/prior text with the highest F1 against it
      (necessarily above the threshold): an index ``j >= 0`` into ``texts`` (always ``j < i``),
      or ``-(k + 1)`` for ``prior[k]``. Ties go to the earliest one (prior before texts).
      For a kept text it is ``-1`` (note: ``-1`` means "none" only when ``keep[i]`` is True;
      for a rejected text ``-1`` would denote ``prior[0]``).
    * ``nearest_f1[i]``: the F1 of that pair for a rejected text; 0.0 for a kept text (the
      similarities of kept texts are not computed exhaustively; use :func:`max_similarity`).
    """

    keep: list[bool]
    nearest: list[int]
    nearest_f1: list[float]


def _dedup(
    texts: Sequence[str], threshold: float, prior: Sequence[str], block_size: int, with_reasons: bool
) -> DedupResult:
    t = _check_threshold(threshold)
    bs = _check_block_size(block_size)
    n = len(texts)
    keep = np.ones(n, dtype=bool)
    nearest = np.full(n, -1, dtype=np.int64)
    nearest_f1 = np.zeros(n, dtype=np.float64)
    if n == 0 or t >= 1.0:  # F1 never exceeds 1.0, so everything is kept
        return DedupResult(keep.tolist(), nearest.tolist(), nearest_f1.tolist())

    compact = _compact_alphabet([normalize_for_rouge(s) for s in itertools.chain(texts, prior)])
    norm = _object_array(compact[:n])
    lengths = np.fromiter((len(s) for s in norm), dtype=np.int64, count=n)
    # The pool of already-kept texts, in "kept order": prior first, then texts in input order.
    pool_str = _object_array(compact[n:])
    pool_len = np.fromiter((len(s) for s in pool_str), dtype=np.int64, count=len(pool_str))
    pool_id = -np.arange(1, len(pool_str) + 1, dtype=np.int64)  # -(k+1) for prior[k]

    for start in range(0, n, bs):
        blk = np.arange(start, min(start + bs, n))
        bstr = norm[blk]
        blen = lengths[blk]
        rejected = np.zeros(len(blk), dtype=bool)
        best_f1 = np.full(len(blk), -1.0)
        best_id = np.full(len(blk), -1, dtype=np.int64)

        # 1) Block against the pool, in groups of similar length (for length pruning).
        if len(pool_str):
            uniq_len, len_class = np.unique(pool_len, return_inverse=True)
            order = np.argsort(blen, kind="stable")
            for g in range(0, len(order), _GROUP_SIZE):
                rows = order[g : g + _GROUP_SIZE]
                allowed = _allowed_lengths(blen[rows], uniq_len, t)
                cols = np.flatnonzero(allowed[len_class])
                if len(cols) == 0:
                    continue
                lcs = _lcs_matrix(bstr[rows], pool_str[cols], blen[rows], pool_len[cols])
                f1 = _f1_matrix(lcs, blen[rows], pool_len[cols])
                rejected[rows] = (f1 > t).any(axis=1)
                if with_reasons:
                    arg = f1.argmax(axis=1)  # first maximum: the earliest in kept order
                    best_f1[rows] = f1[np.arange(len(rows)), arg]
                    best_id[rows] = pool_id[cols[arg]]

        # 2) Sequential resolution inside the block. Columns: the survivors of step 1 (only
        # they can be kept); rows: the survivors, or the whole block when reasons are wanted.
        surv = np.flatnonzero(~rejected)
        rows_local = np.arange(len(blk)) if with_reasons else surv
        if len(surv):
            col_of = np.full(len(blk), -1, dtype=np.int64)
            col_of[surv] = np.arange(len(surv))
            row_of = np.full(len(blk), -1, dtype=np.int64)
            row_of[rows_local] = np.arange(len(rows_local))
            lcs = _lcs_matrix(bstr[rows_local], bstr[surv], blen[rows_local], blen[surv])
            f1 = _f1_matrix(lcs, blen[rows_local], blen[surv])
            over = f1 > t
            kept_cols = np.zeros(len(surv), dtype=bool)
            for p in range(len(blk)):
                r = row_of[p]
                if r < 0:
                    continue  # rejected in step 1 and no reasons wanted
                # Kept block texts before p are exactly the kept survivors with column < ncols.
                ncols = np.searchsorted(surv, p)
                earlier = kept_cols[:ncols]
                if not rejected[p] and over[r, :ncols][earlier].any():
                    rejected[p] = True
                if with_reasons and rejected[p] and earlier.any():
                    cand = np.flatnonzero(earlier)
                    j = cand[f1[r, cand].argmax()]
                    if f1[r, j] > best_f1[p]:  # strict: pool entries come earlier in kept order
                        best_f1[p] = f1[r, j]
                        best_id[p] = blk[surv[j]]
                if not rejected[p]:
                    kept_cols[col_of[p]] = True

        keep[blk] = ~rejected
        if with_reasons:
            nearest[blk[rejected]] = best_id[rejected]
            nearest_f1[blk[rejected]] = best_f1[rejected]

        # 3) Grow the pool with the texts kept in this block.
        new = blk[~rejected]
        if len(new):
            pool_str = np.concatenate([pool_str, norm[new]])
            pool_len = np.concatenate([pool_len, lengths[new]])
            pool_id = np.concatenate([pool_id, new.astype(np.int64)])

    return DedupResult(keep.tolist(), nearest.tolist(), nearest_f1.tolist())


def near_duplicate_mask(
    texts: Sequence[str], threshold: float, prior: Sequence[str] = (), block_size: int = 512
) -> list[bool]:
    """Greedy near-duplicate filter; returns ``keep`` (True = keep) per text.

    ``texts[i]`` is rejected iff its character-level ROUGE-L F1 against some earlier kept
    text or some ``prior`` text is strictly greater than ``threshold`` (a text exactly at
    the threshold is kept). ``prior`` texts count as already kept but are not returned.
    ``block_size`` only affects speed and memory, never the result.
    """
    return _dedup(texts, threshold, prior, block_size, with_reasons=False).keep


def dedup_with_reasons(
    texts: Sequence[str], threshold: float, prior: Sequence[str] = (), block_size: int = 512
) -> DedupResult:
    """Like :func:`near_duplicate_mask`, plus for every rejected text the most similar
    kept/prior text and its F1 (see :class:`DedupResult` for the conventions)."""
    return _dedup(texts, threshold, prior, block_size, with_reasons=True)


def max_similarity(
    queries: Sequence[str], references: Sequence[str], block_size: int = 512
) -> tuple[list[float], list[int]]:
    """For each query, the highest F1 against any reference and that reference's index.

    Ties go to the lowest reference index. With no references every query gets
    ``(0.0, -1)``. Useful as a contamination check of training prompts against eval prompts.
    """
    bs = _check_block_size(block_size)
    nq = len(queries)
    if nq == 0:
        return [], []
    if len(references) == 0:
        return [0.0] * nq, [-1] * nq
    compact = _compact_alphabet([normalize_for_rouge(s) for s in itertools.chain(queries, references)])
    qn, rn = _object_array(compact[:nq]), _object_array(compact[nq:])
    qlen = np.fromiter((len(s) for s in qn), dtype=np.int64, count=nq)
    rlen = np.fromiter((len(s) for s in rn), dtype=np.int64, count=len(rn))
    best = np.full(nq, -1.0)
    best_idx = np.full(nq, -1, dtype=np.int64)
    rchunk = max(1, _MAX_CELLS // bs)
    for qs in range(0, nq, bs):
        qe = min(qs + bs, nq)
        for rs in range(0, len(rn), rchunk):
            re_ = min(rs + rchunk, len(rn))
            lcs = _lcs_matrix(qn[qs:qe], rn[rs:re_], qlen[qs:qe], rlen[rs:re_])
            f1 = _f1_matrix(lcs, qlen[qs:qe], rlen[rs:re_])
            arg = f1.argmax(axis=1)
            val = f1[np.arange(qe - qs), arg]
            better = val > best[qs:qe]  # strict: earlier chunks win ties
            best[qs:qe] = np.where(better, val, best[qs:qe])
            best_idx[qs:qe] = np.where(better, arg + rs, best_idx[qs:qe])
    return best.tolist(), best_idx.tolist()
