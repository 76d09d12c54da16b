"""Small Japanese text measures shared by the filters."""

from __future__ import annotations

import re
import unicodedata

# Hiragana, katakana (incl. half-width and the prolonged sound mark), CJK ideographs, iteration marks.
_JAPANESE = re.compile(
    r"[\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f\u4e00-\u9fff\u3400-\u4dbf々〆ヵヶ]"
)


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


# A few-shot template's field label: a short name at a line start, then a colon ("英語: ...", "改善訳:").
_TEMPLATE_LABEL = re.compile(r"^([^\s:：{}。、「」]{1,12})[:：]", re.MULTILINE)


def template_labels(template: str) -> tuple[str, ...]:
    """The field labels of a few-shot template, in order ("英語", "日本語" for the translate prompt)."""
    return tuple(dict.fromkeys(_TEMPLATE_LABEL.findall(template)))


def template_residue(text: str, labels: tuple[str, ...]) -> str | None:
    """Why a model's answer to a few-shot template is not a clean text: "no_content" when nothing but
    the template's labels and punctuation is left ("英語:\n日本語:": every character Japanese, so a
    Japanese-ratio gate passes it), "template_residue" when a line starts with one of its labels (the
    model went on with the pattern: "英語: ...\n日本語: ..."); None for a clean answer."""
    norm = unicodedata.normalize("NFKC", text)  # a full-width colon is a colon
    if not labels:
        return "no_content" if is_punctuation_only(norm) else None
    names = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    label_line = re.compile(rf"^[\s*#_]*(?:{names})[\s*_]*:", re.MULTILINE)  # "**改善訳:**" too
    if is_punctuation_only(label_line.sub("", norm)):
        return "no_content"
    return "template_residue" if label_line.search(norm) else None
