"""Small Japanese text measures shared by the filters."""

from __future__ import annotations

import re
import unicodedata

# Hiragana, katakana (incl. half-width and the prolonged sound mark), CJK ideographs, iteration marks.
_JAPANESE = re.compile(
    r"[\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f\u4e00-\u9fff\u3400-\u4dbf々〆ヵヶ]"
)
_KANA = re.compile(r"[\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f]")  # incl. half-width


class _CharKinds(dict):
    """Code point -> "j" (Japanese), "o" (another letter or number) or "_" (not counted: punctuation,
    digits, spaces, symbols), each worked out the first time it is seen: `str.translate` then classifies
    a whole text in C, where a per-character Unicode look-up in Python was most of a cached translate
    rerun (filters call `japanese_ratio` several times per row)."""

    def __missing__(self, code_point: int) -> str:
        ch = chr(code_point)
        if unicodedata.category(ch)[0] not in "LN" or ch.isdigit():
            kind = "_"
        else:
            kind = "j" if _JAPANESE.match(ch) else "o"
        self[code_point] = kind
        return kind


_KINDS = _CharKinds()  # at most one entry per character ever seen


def japanese_ratio(text: str) -> float:
    """Share of Japanese characters among the letters and ideographs (punctuation, digits and spaces
    do not count either way, so '12 × 15 = 180。答えは180です。' is all Japanese)."""
    kinds = text.translate(_KINDS)
    japanese = kinds.count("j")
    counted = japanese + kinds.count("o")
    return japanese / counted if counted else 0.0


def has_kana(text: str) -> bool:
    """Chinese text is all ideographs; Japanese prose almost always carries kana."""
    return bool(_KANA.search(text))


def contains_any(text: str, keywords: tuple[str, ...]) -> str | None:
    """The first keyword found in the NFKC-normalised text, or None."""
    norm = unicodedata.normalize("NFKC", text)
    for keyword in keywords:
        if unicodedata.normalize("NFKC", keyword) in norm:
            return keyword
    return None


def is_punctuation_only(text: str) -> bool:
    return not any(unicodedata.category(ch)[0] in "LN" for ch in text)


def first_paragraph(text: str) -> str:
    """The text up to its first blank line (a small model's answer often runs on into more)."""
    return text.strip().split("\n\n")[0].strip()


def distinct_ngram_ratio(text: str, n: int = 4) -> float:
    """Distinct character n-grams / all n-grams (whitespace ignored): near 1 for prose, near 0 for a
    degenerate loop ('学習目標学習目標…'); 0.0 for text shorter than n. A verifier rewards a looping
    answer for what it lacks (no 、, no forbidden word), so the pair builder refuses it as chosen."""
    chars = "".join(text.split())
    grams = [chars[i : i + n] for i in range(len(chars) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0
