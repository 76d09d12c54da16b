"""One checker per instruction id of M-IFEval's Japanese set (arXiv 2502.04688), with its kwargs.

A checker is a pure function `(response, kwargs) -> bool`. Semantics follow M-IFEval's Japanese
checkers exactly, quirks included, because a score is only comparable with the published ones if the
verdicts agree; the quirks are named where they are surprising. Counts are compared as the set's
relations say: 未満 is "fewer than", 以上 is "at least".
"""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jalign.ifeval import japanese

RELATIONS = ("未満", "以上")
CONSTRAINED_OPTIONS = ("はい、そうです。", "いいえ、違います。", "どちらとも言えません。")
# CJK unified ideographs as M-IFEval counts kanji (U+4E00..U+9FAF; 々 and extension A are not kanji here)
_KANJI = "\u4e00-\u9faf"

Kwargs = Mapping[str, Any]


@dataclass(frozen=True)
class Param:
    """A kwarg: its name and kind (int: a count >= 0; str; words: a non-empty list of strings; relation;
    language: a langdetect code; hiragana: one letter ぁ..ん)."""

    name: str
    kind: str


@dataclass(frozen=True)
class Checker:
    params: tuple[Param, ...]
    check: Callable[[str, Kwargs], bool]


def _compare(count: int, relation: str, threshold: int) -> bool:
    return count < threshold if relation == "未満" else count >= threshold


# --- keywords ---------------------------------------------------------------------------------------


def keyword_existence(text: str, kw: Kwargs) -> bool:
    # a keyword counts only as a whole janome token: 猫 is not found in 猫舌 (one word)
    if not all(word in text for word in kw["keywords"]):
        return False  # not even a substring: no need to tokenise
    words = set(japanese.surfaces(text))
    return all(word in words for word in kw["keywords"])


def keyword_frequency(text: str, kw: Kwargs) -> bool:
    keyword = kw["keyword"].strip()
    # tokens equal to the keyword are disjoint, so there are at most text.count(keyword) of them: below
    # the threshold, the verdict is known without tokenising
    if text.count(keyword) < kw["frequency"]:
        return kw["relation"] == "未満"
    return _compare(japanese.surfaces(text).count(keyword), kw["relation"], kw["frequency"])


def forbidden_words(text: str, kw: Kwargs) -> bool:
    present = [word for word in kw["forbidden_words"] if word in text]
    if not present:
        return True
    words = set(japanese.surfaces(text))
    return not any(word in words for word in present)


def letter_frequency(text: str, kw: Kwargs) -> bool:
    # the hiragana letter and its katakana twin (same sound, code point + 0x60) both count
    letter = kw["letter"]
    count = text.count(letter) + text.count(chr(ord(letter) + 0x60))
    return _compare(count, kw["let_relation"], kw["let_frequency"])


# --- language and length ----------------------------------------------------------------------------


def response_language(text: str, kw: Kwargs) -> bool:
    detected = japanese.detect_language(text)
    # M-IFEval gives the benefit of the doubt where langdetect finds nothing to go on
    return detected is None or detected == kw["language"]


def number_sentences(text: str, kw: Kwargs) -> bool:
    return _compare(japanese.count_sentences(text), kw["relation"], kw["num_sentences"])


def number_paragraphs(text: str, kw: Kwargs) -> bool:
    # paragraphs are separated by a markdown rule ***; an empty one is allowed only at either end
    parts = re.split(r"\s?\*\*\*\s?", text)
    inner_empty = any(not part.strip() for part in parts[1:-1])
    if inner_empty:
        return False
    count = len(parts) - sum(1 for i in {0, len(parts) - 1} if not parts[i].strip())
    return count == kw["num_paragraphs"]


def number_letters(text: str, kw: Kwargs) -> bool:
    return _compare(len(text), kw["relation"], kw["num_letters"])


def nth_paragraph_first_word(text: str, kw: Kwargs) -> bool:
    # paragraphs are separated by a blank line ("\n\n"); empty ones are not counted, yet the nth is
    # taken from the list with them (M-IFEval's indexing), and first_word is lower-cased first.
    parts = text.split("\n\n")
    count = sum(1 for part in parts if part.strip())
    nth = kw["nth_paragraph"]
    if nth > count:
        return False
    paragraph = parts[nth - 1].strip()
    if not paragraph:
        return False
    first_word = kw["first_word"].lower()
    # an opening bracket before the first word is not part of it
    paragraph = paragraph.lstrip("「").lstrip("『")
    return count == kw["num_paragraphs"] and paragraph[: len(first_word)] == first_word


# --- content and format -----------------------------------------------------------------------------


def number_placeholders(text: str, kw: Kwargs) -> bool:
    return len(re.findall(r"\[.*?\]", text)) >= kw["num_placeholders"]


def postscript(text: str, kw: Kwargs) -> bool:
    marker = kw["postscript_marker"].strip()
    # the Latin markers also match lower case and an optional space after each dot (p. s.)
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + re.escape(marker) + r".*$"
    return re.search(pattern, text, flags=re.IGNORECASE | re.MULTILINE) is not None


def number_bullet_lists(text: str, kw: Kwargs) -> bool:
    # a bullet is a line starting with the Japanese middle dot ・ (not ・・); markdown - or * do not count
    return len(re.findall(r"^\s*・[^・].*$", text, flags=re.MULTILINE)) == kw["num_bullets"]


def number_numbered_lists(text: str, kw: Kwargs) -> bool:
    # "1. item": any Unicode digits (full-width too), a dot and a space
    return len(re.findall(r"^\s*\d+\.\s.*$", text, flags=re.MULTILINE)) == kw["num_items"]


def constrained_response(text: str, kw: Kwargs) -> bool:
    stripped = text.strip()
    return any(option in stripped for option in CONSTRAINED_OPTIONS)


def number_highlighted_sections(text: str, kw: Kwargs) -> bool:
    # 《...》 on one line with something other than spaces inside
    found = re.findall(r"《[^\n《》]*》", text)
    return sum(1 for h in found if h.strip("《》").strip()) >= kw["num_highlights"]


def multiple_sections(text: str, kw: Kwargs) -> bool:
    # a section starts with 第<digits><splitter>, e.g. 第1章 or 第１節 (full-width digits too)
    splitter = re.escape(kw["section_spliter"].strip())
    parts = re.split(r"\s?第[\d\uFF10-\uFF19]+" + splitter + r"\s?", text)
    return len(parts) - 1 >= kw["num_sections"]


def json_format(text: str, kw: Kwargs) -> bool:
    body = text.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):
        body = body.removeprefix(fence)
    body = body.removesuffix("```").strip()
    try:
        json.loads(body)
    except (ValueError, RecursionError):
        return False
    return True


def title(text: str, kw: Kwargs) -> bool:
    # greedy on one line, like M-IFEval: 『』 and 『』 around other text count as a title
    return any(t.lstrip("『").rstrip("』").strip() for t in re.findall(r"『[^\n]+』", text))


def nominal_ending(text: str, kw: Kwargs) -> bool:
    # 体言止め: a sentence mark right after a noun. A mark token must be made of 。！？ only, so a
    # text with fewer such characters than required cannot pass (and needs no tokenising).
    marks = sum(text.count(c) for c in "。！？")
    if marks < kw["count"]:
        return False
    toks = japanese.tokens(japanese.without_quotes(text))
    # `in` on the string, as M-IFEval does: a token such as ！？ counts too
    found = sum(
        1 for prev, cur in itertools.pairwise(toks) if cur[0] in "。！？" and prev[1].startswith("名詞")
    )
    return found >= kw["count"]


# --- combination and start/end ----------------------------------------------------------------------


def two_responses(text: str, kw: Kwargs) -> bool:
    parts = text.split("******")
    answers = []
    for i, part in enumerate(parts):
        if part.strip():
            answers.append(part)
        elif 0 < i < len(parts) - 1:
            return False  # an empty answer between two separators
    return len(answers) == 2 and answers[0].strip() != answers[1].strip()


def repeat_prompt(text: str, kw: Kwargs) -> bool:
    return text.strip().startswith(kw["prompt_to_repeat"].strip())


def end_checker(text: str, kw: Kwargs) -> bool:
    # a closing bracket after the phrase is allowed (「...他にご質問はありますか？」)
    phrase = kw["end_phrase"].strip().strip("」』")
    return text.strip().strip("」』").endswith(phrase)


def quotation(text: str, kw: Kwargs) -> bool:
    stripped = text.strip()
    return len(stripped) > 1 and stripped[0] == "「" and stripped[-1] == "」"


def sentence_unified_end(text: str, kw: Kwargs) -> bool:
    # every piece between 。！？ that is not empty must end with the ending. The pieces keep their
    # line breaks, so text after the last mark (even a lone "\n") is a sentence that fails.
    pieces = re.split(r"[。！？]", japanese.without_quotes(text))
    return all(piece.endswith(kw["ending"]) for piece in pieces if piece)


# --- letters and punctuation ------------------------------------------------------------------------


def furigana(text: str, kw: Kwargs) -> bool:
    # every run of kanji must be followed by its reading in hiragana in full-width brackets: 漢字（かんじ）
    runs = len(re.findall(f"[{_KANJI}]+", text))
    return runs == len(re.findall(f"[{_KANJI}]+（[ぁ-ん]+）", text))


def kansuuji(text: str, kw: Kwargs) -> bool:
    return re.search(r"\d", text) is None  # any Unicode digit, full-width ０-９ included


def kanji_limit(text: str, kw: Kwargs) -> bool:
    return _compare(len(re.findall(f"[{_KANJI}]", text)), kw["relation"], kw["kanji_limit"])


def _not_a_letter(char: str) -> bool:
    # punctuation, digits, spaces and symbols are allowed in a hiragana- or katakana-only answer
    return not unicodedata.category(char).startswith("L")


def hiragana_only(text: str, kw: Kwargs) -> bool:
    return all("ぁ" <= c <= "ん" or c == "ー" or _not_a_letter(c) for c in text)


def no_hiragana(text: str, kw: Kwargs) -> bool:
    return not any("ぁ" <= c <= "ゖ" for c in text)


def katakana_only(text: str, kw: Kwargs) -> bool:
    return all("ァ" <= c <= "ン" or c in "ー・" or "ｦ" <= c <= "ﾟ" or _not_a_letter(c) for c in text)


def no_katakana(text: str, kw: Kwargs) -> bool:
    # full-width ァ..ヺ and half-width ｦ..ﾟ; the long-vowel mark ー alone is not katakana here
    return not any("ァ" <= c <= "ヺ" or "ｦ" <= c <= "ﾟ" for c in text)


def no_comma(text: str, kw: Kwargs) -> bool:
    return "、" not in text


def no_period(text: str, kw: Kwargs) -> bool:
    return "。" not in text


def _c(check: Callable[[str, Kwargs], bool], *params: tuple[str, str]) -> Checker:
    return Checker(tuple(Param(name, kind) for name, kind in params), check)


CHECKERS: dict[str, Checker] = {
    "ja:keywords:existence": _c(keyword_existence, ("keywords", "words")),
    "ja:keywords:frequency": _c(
        keyword_frequency, ("keyword", "str"), ("frequency", "int"), ("relation", "relation")
    ),
    "ja:keywords:forbidden_words": _c(forbidden_words, ("forbidden_words", "words")),
    "ja:keywords:letter_frequency": _c(
        letter_frequency, ("letter", "hiragana"), ("let_frequency", "int"), ("let_relation", "relation")
    ),
    "ja:language:response_language": _c(response_language, ("language", "language")),
    "ja:length_constraints:number_sentences": _c(
        number_sentences, ("num_sentences", "int"), ("relation", "relation")
    ),
    "ja:length_constraints:number_paragraphs": _c(number_paragraphs, ("num_paragraphs", "int")),
    "ja:length_constraints:number_letters": _c(
        number_letters, ("num_letters", "int"), ("relation", "relation")
    ),
    "ja:length_constraints:nth_paragraph_first_word": _c(
        nth_paragraph_first_word, ("num_paragraphs", "int"), ("nth_paragraph", "int"), ("first_word", "str")
    ),
    "ja:detectable_content:number_placeholders": _c(number_placeholders, ("num_placeholders", "int")),
    "ja:detectable_content:postscript": _c(postscript, ("postscript_marker", "str")),
    "ja:detectable_format:number_bullet_lists": _c(number_bullet_lists, ("num_bullets", "int")),
    "ja:detectable_format:number_numbered_lists": _c(number_numbered_lists, ("num_items", "int")),
    "ja:detectable_format:constrained_response": _c(constrained_response),
    "ja:detectable_format:number_highlighted_sections": _c(
        number_highlighted_sections, ("num_highlights", "int")
    ),
    "ja:detectable_format:multiple_sections": _c(
        multiple_sections, ("section_spliter", "str"), ("num_sections", "int")
    ),
    "ja:detectable_format:json_format": _c(json_format),
    "ja:detectable_format:title": _c(title),
    "ja:detectable_format:nominal_ending": _c(nominal_ending, ("count", "int")),
    "ja:combination:two_responses": _c(two_responses),
    "ja:combination:repeat_prompt": _c(repeat_prompt, ("prompt_to_repeat", "str")),
    "ja:startend:end_checker": _c(end_checker, ("end_phrase", "str")),
    "ja:startend:quotation": _c(quotation),
    "ja:startend:sentence_unified_end": _c(sentence_unified_end, ("ending", "str")),
    "ja:letters:furigana": _c(furigana),
    "ja:letters:kansuuji": _c(kansuuji),
    "ja:letters:kanji": _c(kanji_limit, ("kanji_limit", "int"), ("relation", "relation")),
    "ja:letters:hiragana_only": _c(hiragana_only),
    "ja:letters:no_hiragana": _c(no_hiragana),
    "ja:letters:katakana_only": _c(katakana_only),
    "ja:letters:no_katakana": _c(no_katakana),
    "ja:punctuation:no_comma": _c(no_comma),
    "ja:punctuation:no_period": _c(no_period),
}
