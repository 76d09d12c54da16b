"""jalign.text: the Japanese-character measures the stage filters use."""

from __future__ import annotations

import importlib
import random
import sys
import unicodedata
from pathlib import Path

import pytest

from jalign import prompts
from jalign import text as text_module
from jalign.text import (
    contains_any,
    is_punctuation_only,
    japanese_ratio,
    template_labels,
    template_residue,
)

# The definition before issue 20 (item 14), a per-character loop: the measure must not change. One copy,
# in the benchmark that times the two side by side.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
reference_ratio = importlib.import_module("bench_japanese_ratio").reference_ratio


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("日本語の文章です", 1.0),
        ("ひらがなとカタカナと漢字", 1.0),
        ("ｶﾀｶﾅ", 1.0),  # half-width katakana
        ("コーヒー", 1.0),  # prolonged sound mark
        ("人々", 1.0),  # iteration mark
        ("This is English.", 0.0),
        ("abc", 0.0),
        ("日本abc", 0.4),  # 2 Japanese of 5 letters
        ("Pythonで書く", 3 / 9),
        ("12 × 15 = 180。答えは180です。", 1.0),  # digits, symbols, punctuation do not count
        ("１２３：答え", 1.0),  # full-width digits do not count either
        ("「はい」、そうです！", 1.0),
        ("", 0.0),
        ("123 456", 0.0),  # nothing counted at all
        ("。、！？…", 0.0),
        ("   \n\t", 0.0),
        ("안녕하세요", 0.0),  # Hangul is not Japanese
    ],
)
def test_japanese_ratio(text, expected):
    assert japanese_ratio(text) == pytest.approx(expected)


def test_japanese_ratio_ignores_digits_and_punctuation_in_mixed_text():
    base = japanese_ratio("答えはabcです")
    assert base == pytest.approx(5 / 8)
    assert japanese_ratio("答えは 12,345 abc です!!!。") == pytest.approx(base)


MIXED = [
    "日本語の文章です。ひらがな、カタカナ、漢字。",
    "ｶﾀｶﾅ ﾊﾝｶｸ｡｢ｶｷﾞ｣",  # half-width katakana and half-width punctuation
    "ＡＢＣ　ａｂｃ　１２３　！？",  # full-width Latin, digits and punctuation
    "絵文字😀👍🏽👨‍👩‍👧 と ❤️",  # emoji, skin tone, ZWJ sequence, variation selector
    "²³¹ ①②③ ⅠⅡⅫ ½ ㊀ 〇 一二三",  # digits that are not decimal, Roman numerals, fractions
    "・゛゜゠ー々〆ヵヶゝゞヽヾ",  # kana punctuation and marks inside the Japanese ranges
    "が\u304b\u3099 é\u0065\u0301",  # combining marks
    "𠮷野家 𪚲 𠀋",  # CJK Extension B (outside the counted ranges)
    "한국어 中文 English Ελληνικά Русский العربية",
    "\u200b\u00a0\ufeff\t\n",
    "",
]


@pytest.mark.parametrize("text", MIXED)
def test_japanese_ratio_equals_the_per_character_definition(text):
    assert japanese_ratio(text) == reference_ratio(text)


def test_japanese_ratio_classifies_every_bmp_character_as_before():
    """Each character between a Japanese and a Latin letter: 1/2 when it does not count, 1/3 when it
    is a non-Japanese letter, 2/3 when it is Japanese."""
    for cp in range(0x10000):
        probe = f"{chr(cp)}あa"
        assert japanese_ratio(probe) == reference_ratio(probe), hex(cp)


def test_japanese_ratio_equals_the_definition_on_random_mixed_text():
    rng = random.Random(20)
    pool = "".join(MIXED) + "".join(chr(cp) for cp in range(0x3000, 0x3100)) + "abcXYZ0129 .,"
    for _ in range(300):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 400)))
        assert japanese_ratio(text) == reference_ratio(text)


def test_japanese_ratio_classifies_each_distinct_character_once(monkeypatch):
    """The measure runs three times per translated row: each character's Unicode category is looked up
    once, not once per occurrence (issue 20, item 14). Counted, not timed."""
    calls = []

    class CountingUnicodedata:
        def __getattr__(self, name):
            return getattr(unicodedata, name)

        def category(self, ch):
            calls.append(ch)
            return unicodedata.category(ch)

    monkeypatch.setattr(text_module, "unicodedata", CountingUnicodedata())
    text = "日本語のテキストとEnglish、数字123。" * 200
    assert japanese_ratio(text) == reference_ratio(text)
    assert len(calls) <= len(set(text))  # the loop before: one per character


@pytest.mark.parametrize(
    ("text", "keywords", "expected"),
    [
        ("このＵＲＬを開いてください", ("URL", "リンク"), "URL"),  # full-width text, ASCII keyword
        ("このURLを開いてください", ("ＵＲＬ",), "ＵＲＬ"),  # the keyword is normalised too
        ("ｶﾞｿﾞｳを見て", ("ガゾウ",), "ガゾウ"),  # half-width katakana with voiced marks
        ("画像を説明して", ("図", "画像"), "画像"),  # the first keyword found, in keyword order
        ("図と画像", ("画像", "図"), "画像"),
        ("添付ファイル", ("ファイル", "添付"), "ファイル"),
        ("普通の質問です", ("画像", "URL"), None),
        ("url", ("URL",), None),  # NFKC does not fold case
        ("何か", (), None),
        ("", ("画像",), None),
    ],
)
def test_contains_any(text, keywords, expected):
    assert contains_any(text, keywords) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("。", True),
        ("、。！？「」…・", True),
        ("!!! ??? ...", True),
        ("★☆♪", True),
        ("", True),
        ("  \n", True),
        ("はい。", False),
        ("A", False),
        ("1", False),
        ("１。", False),
    ],
)
def test_is_punctuation_only(text, expected):
    assert is_punctuation_only(text) is expected


def test_template_labels_are_the_field_names_of_a_few_shot_template():
    assert template_labels(prompts.load("translate")) == ("英語", "日本語")
    assert template_labels(prompts.load("translate_review")) == ("原文", "下訳", "改善訳")
    assert template_labels("説明の文です。時刻は10:30です。\n指示: {{x}}\n出力：") == ("指示", "出力")


LABELS = ("英語", "日本語", "原文", "下訳", "改善訳")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("英語:\n日本語:", "no_content"),  # seen in the default run: it passed every gate
        ("改善訳:", "no_content"),
        ("日本語：「」。", "no_content"),
        ("「」。", "no_content"),
        ("英語: I want to ask.\n日本語: 質問は何ですか？", "template_residue"),
        ("日本語: 卵のゆで方を教えてください。", "template_residue"),
        ("**改善訳:** 卵のゆで方を教えてください。", "template_residue"),
        ("卵のゆで方を教えてください。", None),
        ("次の文を英語に訳してください: 日本語は難しい。", None),  # a label mid-line is prose
        ("12:30に起こしてください。", None),
    ],
)
def test_template_residue(text, expected):
    assert template_residue(text, LABELS) == expected
