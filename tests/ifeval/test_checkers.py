"""Every instruction id of the Japanese set, strict and loose, on hand-written answers (pass and fail)."""

from __future__ import annotations

import pytest

from jalign.ifeval.evaluation import INSTRUCTION_IDS, follows_instructions

# (instruction id, kwargs, response, strict verdict, loose verdict)
CASES: list[tuple[str, dict, str, bool, bool]] = [
    # keywords: whole janome words, not substrings
    ("ja:keywords:existence", {"keywords": ["猫", "海"]}, "猫が海を見ている。", True, True),
    ("ja:keywords:existence", {"keywords": ["猫", "海"]}, "猫が好きです。", False, False),
    ("ja:keywords:existence", {"keywords": ["海"]}, "海老が好きです。", False, False),
    (
        "ja:keywords:frequency",
        {"keyword": "猫", "frequency": 2, "relation": "以上"},
        "猫と猫がいる。",
        True,
        True,
    ),
    (
        "ja:keywords:frequency",
        {"keyword": "猫", "frequency": 2, "relation": "以上"},
        "猫がいる。",
        False,
        False,
    ),
    (
        "ja:keywords:frequency",
        {"keyword": "猫", "frequency": 2, "relation": "未満"},
        "猫がいる。",
        True,
        True,
    ),
    (
        "ja:keywords:frequency",
        {"keyword": "猫", "frequency": 2, "relation": "未満"},
        "猫と猫がいる。",
        False,
        False,
    ),
    (
        "ja:keywords:frequency",
        {"keyword": " 海 ", "frequency": 1, "relation": "以上"},
        "海老を食べた。",
        False,
        False,
    ),
    ("ja:keywords:forbidden_words", {"forbidden_words": ["犬"]}, "猫が好きです。", True, True),
    ("ja:keywords:forbidden_words", {"forbidden_words": ["犬"]}, "犬が好きです。", False, False),
    ("ja:keywords:forbidden_words", {"forbidden_words": ["海"]}, "海老が好きです。", True, True),
    # the forbidden word only in the first line: loose mode forgives it
    ("ja:keywords:forbidden_words", {"forbidden_words": ["犬"]}, "犬の話\n猫が好きです。", False, True),
    (
        "ja:keywords:letter_frequency",
        {"letter": "あ", "let_frequency": 3, "let_relation": "以上"},
        "あアあ",
        True,
        True,
    ),
    (
        "ja:keywords:letter_frequency",
        {"letter": "あ", "let_frequency": 3, "let_relation": "以上"},
        "ああ",
        False,
        False,
    ),
    (
        "ja:keywords:letter_frequency",
        {"letter": "あ", "let_frequency": 2, "let_relation": "未満"},
        "ア",
        True,
        True,
    ),
    (
        "ja:keywords:letter_frequency",
        {"letter": "あ", "let_frequency": 2, "let_relation": "未満"},
        "ああ",
        False,
        False,
    ),
    # language: langdetect codes; no letters at all is given the benefit of the doubt
    (
        "ja:language:response_language",
        {"language": "en"},
        "This is an English sentence about the weather today.",
        True,
        True,
    ),
    ("ja:language:response_language", {"language": "en"}, "これは日本語で書かれた文章です。", False, False),
    ("ja:language:response_language", {"language": "ja"}, "これは日本語で書かれた文章です。", True, True),
    ("ja:language:response_language", {"language": "ja"}, "12345 !!!", True, True),
    # sentences: 。！？ (full- or half-width), not inside 「」, a line ending in の runs on
    (
        "ja:length_constraints:number_sentences",
        {"num_sentences": 3, "relation": "以上"},
        "一文目です。二文目です！三文目です？",
        True,
        True,
    ),
    (
        "ja:length_constraints:number_sentences",
        {"num_sentences": 3, "relation": "以上"},
        "一文目です。二文目です。",
        False,
        False,
    ),
    (
        "ja:length_constraints:number_sentences",
        {"num_sentences": 2, "relation": "未満"},
        "彼は「はい。いいえ。」と言った。",
        True,
        True,
    ),
    (
        "ja:length_constraints:number_sentences",
        {"num_sentences": 2, "relation": "未満"},
        "日本の\n歴史について。",
        True,
        True,
    ),
    (
        "ja:length_constraints:number_sentences",
        {"num_sentences": 2, "relation": "未満"},
        "見出し\n本文です。",
        False,
        True,
    ),
    ("ja:length_constraints:number_paragraphs", {"num_paragraphs": 2}, "段落一\n***\n段落二", True, True),
    (
        "ja:length_constraints:number_paragraphs",
        {"num_paragraphs": 2},
        "***\n段落一\n***\n段落二\n***",
        True,
        True,
    ),
    (
        "ja:length_constraints:number_paragraphs",
        {"num_paragraphs": 2},
        "段落一\n***\n\n***\n段落二",
        False,
        False,
    ),
    ("ja:length_constraints:number_paragraphs", {"num_paragraphs": 2}, "段落一\n\n段落二", False, False),
    ("ja:length_constraints:number_letters", {"num_letters": 5, "relation": "未満"}, "あいうえ", True, True),
    (
        "ja:length_constraints:number_letters",
        {"num_letters": 5, "relation": "未満"},
        "あいうえお",
        False,
        False,
    ),
    (
        "ja:length_constraints:number_letters",
        {"num_letters": 5, "relation": "未満"},
        "**あいう**",
        False,
        True,
    ),
    (
        "ja:length_constraints:number_letters",
        {"num_letters": 5, "relation": "以上"},
        "ＡＢＣ１２",
        True,
        True,
    ),
    (
        "ja:length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "結論"},
        "序論です。\n\n結論として、良い。",
        True,
        True,
    ),
    (
        "ja:length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "結論"},
        "序論です。\n\n「結論」として良い。",
        True,
        True,
    ),
    (
        "ja:length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "結論"},
        "序論です。\n\n本論です。",
        False,
        False,
    ),
    (
        "ja:length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "結論"},
        "序論です。\n\n結論です。\n\n余談です。",
        False,
        True,
    ),
    (
        "ja:detectable_content:number_placeholders",
        {"num_placeholders": 2},
        "[名前]さん、[場所]で会いましょう。",
        True,
        True,
    ),
    (
        "ja:detectable_content:number_placeholders",
        {"num_placeholders": 2},
        "[名前]さん、［場所］で。",
        False,
        False,
    ),
    (
        "ja:detectable_content:postscript",
        {"postscript_marker": "追伸"},
        "本文です。\n追伸：また会おう。",
        True,
        True,
    ),
    ("ja:detectable_content:postscript", {"postscript_marker": "追伸"}, "本文のみです。", False, False),
    (
        "ja:detectable_content:postscript",
        {"postscript_marker": "P.S."},
        "本文です。\np. s. またね",
        True,
        True,
    ),
    (
        "ja:detectable_content:postscript",
        {"postscript_marker": "P.P.S"},
        "本文です。\nP.S. またね",
        False,
        False,
    ),
    ("ja:detectable_format:number_bullet_lists", {"num_bullets": 2}, "果物:\n・りんご\n・みかん", True, True),
    ("ja:detectable_format:number_bullet_lists", {"num_bullets": 2}, "- りんご\n- みかん", False, False),
    (
        "ja:detectable_format:number_bullet_lists",
        {"num_bullets": 2},
        "・りんご\n・みかん\n・ぶどう",
        False,
        True,
    ),
    ("ja:detectable_format:number_numbered_lists", {"num_items": 2}, "1. りんご\n2. みかん", True, True),
    ("ja:detectable_format:number_numbered_lists", {"num_items": 2}, "１. りんご\n２. みかん", True, True),
    ("ja:detectable_format:number_numbered_lists", {"num_items": 2}, "1.りんご\n2.みかん", False, False),
    ("ja:detectable_format:constrained_response", {}, "はい、そうです。", True, True),
    ("ja:detectable_format:constrained_response", {}, "**どちらとも言えません。**", True, True),
    ("ja:detectable_format:constrained_response", {}, "はい。", False, False),
    (
        "ja:detectable_format:number_highlighted_sections",
        {"num_highlights": 2},
        "《一つ目》と《二つ目》",
        True,
        True,
    ),
    (
        "ja:detectable_format:number_highlighted_sections",
        {"num_highlights": 2},
        "《一つ目》と《 》",
        False,
        False,
    ),
    (
        "ja:detectable_format:number_highlighted_sections",
        {"num_highlights": 2},
        "**一つ目**と**二つ目**",
        False,
        False,
    ),
    (
        "ja:detectable_format:multiple_sections",
        {"section_spliter": "章", "num_sections": 2},
        "第1章 はじめに\n第２章 おわりに",
        True,
        True,
    ),
    (
        "ja:detectable_format:multiple_sections",
        {"section_spliter": "章", "num_sections": 2},
        "第1節 はじめに\n第2節 おわりに",
        False,
        False,
    ),
    ("ja:detectable_format:json_format", {}, '```json\n{"名前": "太郎"}\n```', True, True),
    ("ja:detectable_format:json_format", {}, "{名前: 太郎}", False, False),
    ("ja:detectable_format:json_format", {}, 'JSONです。\n{"名前": "太郎"}', False, True),
    ("ja:detectable_format:title", {}, "『喜びの詩』\n本文です。", True, True),
    ("ja:detectable_format:title", {}, "『』本文です。", False, False),
    ("ja:detectable_format:title", {}, "「喜びの詩」", False, False),
    ("ja:detectable_format:nominal_ending", {"count": 2}, "美しい海。青い空。", True, True),
    ("ja:detectable_format:nominal_ending", {"count": 2}, "海は美しい。空は青い。", False, False),
    ("ja:detectable_format:nominal_ending", {"count": 1}, "「海。」と書いた。", False, False),
    ("ja:combination:two_responses", {}, "答え一\n******\n答え二", True, True),
    ("ja:combination:two_responses", {}, "同じ\n******\n同じ", False, False),
    ("ja:combination:two_responses", {}, "答え一\n******\n\n******\n答え二", False, False),
    (
        "ja:combination:repeat_prompt",
        {"prompt_to_repeat": "猫について書いてください。"},
        "猫について書いてください。猫は可愛い。",
        True,
        True,
    ),
    (
        "ja:combination:repeat_prompt",
        {"prompt_to_repeat": "猫について書いてください。"},
        "はい。猫について書いてください。",
        False,
        False,
    ),
    (
        "ja:combination:repeat_prompt",
        {"prompt_to_repeat": "猫について書いてください。"},
        "はい。\n猫について書いてください。",
        False,
        True,
    ),
    ("ja:startend:end_checker", {"end_phrase": "以上です。"}, "説明します。以上です。", True, True),
    ("ja:startend:end_checker", {"end_phrase": "以上です。"}, "「説明します。以上です。」", True, True),
    ("ja:startend:end_checker", {"end_phrase": "以上です。"}, "以上です。何か質問は?", False, False),
    ("ja:startend:end_checker", {"end_phrase": "以上です。"}, "説明します。\n以上です。\n---", False, True),
    ("ja:startend:quotation", {}, "「こんにちは」", True, True),
    ("ja:startend:quotation", {}, "こんにちは", False, False),
    ("ja:startend:quotation", {}, "はい、どうぞ。\n「こんにちは」", False, True),
    ("ja:startend:sentence_unified_end", {"ending": "です"}, "猫です。犬です！", True, True),
    ("ja:startend:sentence_unified_end", {"ending": "です"}, "猫です。犬だ。", False, False),
    ("ja:startend:sentence_unified_end", {"ending": "です"}, "彼は「行くよ。」と言ったのです。", True, True),
    # text after the last mark, even a lone line break, is a sentence that does not end in です
    ("ja:startend:sentence_unified_end", {"ending": "です"}, "猫です。\n", False, True),
    ("ja:letters:furigana", {}, "漢字（かんじ）を書（か）く", True, True),
    ("ja:letters:furigana", {}, "漢字を書く", False, False),
    ("ja:letters:furigana", {}, "漢字(かんじ)", False, False),
    ("ja:letters:kansuuji", {}, "三つの林檎と二十本の鉛筆", True, True),
    ("ja:letters:kansuuji", {}, "3つの林檎", False, False),
    ("ja:letters:kansuuji", {}, "３つの林檎", False, False),
    ("ja:letters:kanji", {"kanji_limit": 3, "relation": "未満"}, "ひらがなと漢字", True, True),
    ("ja:letters:kanji", {"kanji_limit": 3, "relation": "未満"}, "漢字漢字", False, False),
    ("ja:letters:kanji", {"kanji_limit": 3, "relation": "以上"}, "漢字漢字", True, True),
    ("ja:letters:hiragana_only", {}, "こんにちは、げんきですか？ らーめん！", True, True),
    ("ja:letters:hiragana_only", {}, "# みだし\n１２３。", True, True),
    ("ja:letters:hiragana_only", {}, "こんにちは、元気？", False, False),
    ("ja:letters:hiragana_only", {}, "こんにちは ABC", False, False),
    ("ja:letters:hiragana_only", {}, "Here you go:\nこんにちは", False, True),
    ("ja:letters:no_hiragana", {}, "カタカナ漢字ABC", True, True),
    ("ja:letters:no_hiragana", {}, "カタカナと漢字", False, False),
    ("ja:letters:katakana_only", {}, "コンニチハ、ゲンキ？", True, True),
    ("ja:letters:katakana_only", {}, "ｺﾝﾆﾁﾊ・ラーメン", True, True),
    ("ja:letters:katakana_only", {}, "コンニチハ元気", False, False),
    ("ja:letters:no_katakana", {}, "ひらがなと漢字とー", True, True),
    ("ja:letters:no_katakana", {}, "カタカナ", False, False),
    ("ja:letters:no_katakana", {}, "ｶﾀｶﾅ", False, False),
    ("ja:punctuation:no_comma", {}, "句読点なし, 半角は可。", True, True),
    ("ja:punctuation:no_comma", {}, "はい、そうです。", False, False),
    ("ja:punctuation:no_period", {}, "はい、そうです", True, True),
    ("ja:punctuation:no_period", {}, "そうです。", False, False),
]


def verdict(instruction_id: str, kwargs: dict, response: str, mode: str) -> bool:
    [followed] = follows_instructions(response, [instruction_id], [kwargs], "プロンプト", mode)  # type: ignore[arg-type]
    return followed


@pytest.mark.parametrize(("instruction_id", "kwargs", "response", "strict", "loose"), CASES)
def test_checker(instruction_id: str, kwargs: dict, response: str, strict: bool, loose: bool) -> None:
    assert verdict(instruction_id, kwargs, response, "strict") is strict
    assert verdict(instruction_id, kwargs, response, "loose") is loose


def test_every_id_has_a_passing_and_a_failing_case_in_both_modes() -> None:
    assert len(INSTRUCTION_IDS) == 33
    for instruction_id in INSTRUCTION_IDS:
        verdicts = {(strict, loose) for i, _, _, strict, loose in CASES if i == instruction_id}
        assert (True, True) in verdicts, instruction_id
        assert (False, False) in verdicts, instruction_id


@pytest.mark.parametrize("response", ["", "   \n\t", "\n\n"])
@pytest.mark.parametrize("mode", ["strict", "loose"])
def test_a_blank_answer_follows_nothing(response: str, mode: str) -> None:
    # no comma, no period and no katakana hold vacuously, yet an empty answer follows no instruction
    ids = ["ja:punctuation:no_comma", "ja:punctuation:no_period", "ja:letters:no_katakana"]
    assert follows_instructions(response, ids, [{}, {}, {}], "", mode) == [False, False, False]  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["strict", "loose"])
def test_a_null_answer_follows_nothing(mode: str) -> None:
    assert follows_instructions(None, ["ja:punctuation:no_comma"], [{}], "", mode) == [False]  # type: ignore[arg-type]


def test_loose_skips_variants_that_are_blank() -> None:
    # removing the only line leaves nothing: that variant must not count as "no period"
    assert follows_instructions("そうです。", ["ja:punctuation:no_period"], [{}], "", "loose") == [False]


def test_each_instruction_is_judged_on_its_own_variant() -> None:
    # the title needs the first line, the end phrase needs the last line gone: each finds its variant
    response = "『題名』\n本文です。以上です。\n---"
    ids = ["ja:detectable_format:title", "ja:startend:end_checker"]
    kwargs = [{}, {"end_phrase": "以上です。"}]
    assert follows_instructions(response, ids, kwargs, "", "strict") == [True, False]
    assert follows_instructions(response, ids, kwargs, "", "loose") == [True, True]
