"""The Japanese text tools the checkers need, each loaded on first use (janome alone takes ~0.3 s).

M-IFEval's Japanese checkers (arXiv 2502.04688) count words with janome's morphological analysis,
sentences with ja-sentence-segmenter's rule pipeline and identify languages with langdetect; the same
libraries at the versions its requirements.txt pins are used here, so that verdicts agree.
"""

from __future__ import annotations

import functools
import gc
import re
from collections.abc import Iterator

# The codes langdetect 1.0.9 can return (its bundled profiles): any other language code can never pass.
_CODES = (
    "af ar bg bn ca cs cy da de el en es et fa fi fr gu he hi hr hu id it ja kn ko lt lv mk ml mr ne nl no"
)
LANGDETECT_CODES = frozenset(
    (_CODES + " pa pl pt ro ru sk sl so sq sv sw ta te th tl tr uk ur vi zh-cn zh-tw").split(" ")
)

# A line ending in の continues on the next line (a heading such as "日本の\n歴史" is one sentence).
_ENDS_WITH_NO = r"^(?P<result>.+)(の)$"
# Sentence-final marks after the segmenter's normalisation (it maps ！？ to !?).
_SENTENCE_MARKS = r"。!?"


@functools.cache
def _tokenizer():  # janome.tokenizer.Tokenizer
    from janome.tokenizer import Tokenizer

    return Tokenizer()


@functools.lru_cache(maxsize=256)
def tokens(text: str) -> tuple[tuple[str, str], ...]:
    """(surface, part of speech) of each janome token of `text`; cached, since one response is often
    checked by several word-level instructions (and loose mode re-checks the same variants)."""
    # janome's lattices allocate millions of small objects (2.2 million nodes in one loose run): the
    # cyclic collector, triggered every 700 allocations, took ~40% of the time on M-IFEval's answers.
    # Paused, not off: whatever is garbage is collected once it is back on.
    was_on = gc.isenabled()
    gc.disable()
    try:
        return tuple((t.surface, t.part_of_speech) for t in _tokenizer().tokenize(text))
    finally:
        if was_on:
            gc.enable()


def surfaces(text: str) -> list[str]:
    return [surface for surface, _ in tokens(text)]


def count_sentences(text: str) -> int:
    """Sentences as M-IFEval counts them: neologd-normalise the whole text, split at line breaks, join a
    line ending in の to the next, then split after 。!? outside 「」 and () (blank lines count nothing)."""
    from ja_sentence_segmenter.concatenate.simple_concatenator import concatenate_matching
    from ja_sentence_segmenter.normalize.neologd_normalizer import normalize
    from ja_sentence_segmenter.split.simple_splitter import split_newline, split_punctuation

    lines: Iterator[str] = split_newline(normalize(text))
    joined = concatenate_matching(lines, former_matching_rule=_ENDS_WITH_NO, remove_former_matched=False)
    return sum(1 for _ in split_punctuation(joined, punctuations=_SENTENCE_MARKS))


@functools.cache
def _langdetect():  # the langdetect module, seeded
    import langdetect
    from langdetect import DetectorFactory

    # langdetect samples n-grams at random: without a seed one text can get two answers on two runs
    DetectorFactory.seed = 0
    return langdetect


def detect_language(text: str) -> str | None:
    """langdetect's language code for `text`, or None where it finds no features (no letters)."""
    langdetect = _langdetect()
    try:
        return langdetect.detect(text)
    except langdetect.LangDetectException:
        return None


def without_quotes(text: str) -> str:
    """`text` without quoted spans 「...」 and 『...』 on one line: quoted speech or titles are not the
    writer's own sentence endings."""
    return re.sub(r"『.*?』", "", re.sub(r"「.*?」", "", text))
