"""Preference sets: TRL formats, split by prompt, contamination drops."""

from __future__ import annotations

from helpers import repo_config

from jalign.evalsets import EvalPrompt
from stages.preferences import PreferencesConfig, build_sets, split_by_prompt, to_binary, to_kto, to_pairwise


def pair(i: int, prompt: str | None = None) -> dict:
    return {
        "pair_id": f"p{i}",
        "prompt_id": f"q{i % 7}",
        "prompt": prompt or f"質問{i % 7}について教えてください。",
        "chosen": f"良い回答{i}",
        "rejected": f"悪い回答{i}",
        "chosen_responder": "x",
        "license": ["cc0-1.0", "apache-2.0"] if i % 2 else "cc0-1.0",  # older files hold a string
        "model_terms": ["gemma"],
    }


def test_trl_formats():
    p = pair(1)
    provenance = {"pair_id": "p1", "license": ["apache-2.0", "cc0-1.0"], "model_terms": ["gemma"]}
    assert to_pairwise(p) == {
        "prompt": [{"role": "user", "content": p["prompt"]}],
        "chosen": [{"role": "assistant", "content": "良い回答1"}],
        "rejected": [{"role": "assistant", "content": "悪い回答1"}],
        **provenance,
    }
    kto = to_kto(p)
    assert [r["label"] for r in kto] == [True, False] and kto[0]["completion"][0]["content"] == "良い回答1"
    assert kto[1]["completion"][0]["content"] == "悪い回答1"
    binary = to_binary(p)
    assert [r["label"] for r in binary] == [1, 0]
    assert "良い回答1" in binary[0]["text"] and p["prompt"] in binary[0]["text"]
    assert "悪い回答1" in binary[1]["text"]
    for row in [*kto, *binary]:  # every row of every set carries its licence provenance
        assert {k: row[k] for k in provenance} == provenance
    assert to_pairwise(pair(2))["license"] == ["cc0-1.0"]  # a plain string becomes a list


def test_split_is_by_prompt_and_capped_at_half():
    pairs = [pair(i) for i in range(30)]  # 7 prompts, several pairs each
    splits = split_by_prompt(pairs, eval_size=3, seed=1)
    train_prompts = {p["prompt_id"] for p in splits["train"]}
    eval_prompts = {p["prompt_id"] for p in splits["eval"]}
    assert len(eval_prompts) == 3 and not train_prompts & eval_prompts
    assert len(splits["train"]) + len(splits["eval"]) == 30
    capped = split_by_prompt(pairs, eval_size=234, seed=1)
    assert len({p["prompt_id"] for p in capped["eval"]}) == 3  # half of 7 prompts, rounded down
    assert split_by_prompt(pairs, 3, seed=1) == splits  # deterministic


def test_contaminated_pairs_are_dropped_and_reported():
    eval_prompt = "日本の首都はどこですか。理由も説明してください。"
    pairs = [pair(i) for i in range(6)] + [{**pair(99, prompt=eval_prompt + "！"), "prompt_id": "leak"}]
    config = repo_config(PreferencesConfig, "preferences", eval_size=1)
    sets, report = build_sets(pairs, [EvalPrompt("ja", "e1", eval_prompt)], config)
    assert report["dropped"]["contaminated"] == 1
    assert report["contamination_examples"][0]["eval"] == "ja/e1"
    written = [r for rows in sets.values() for r in rows]
    assert all(r["pair_id"] != "p99" for r in written)
    assert report["rows"]["pairwise_train"] + report["rows"]["pairwise_eval"] == 6
    assert report["rows"]["kto_train"] == 2 * report["rows"]["pairwise_train"]
    assert report["licenses"] == {"apache-2.0": 3, "cc0-1.0": 6}  # the 6 pairs kept: 3 odd ids
    assert report["model_terms"] == {"gemma": 6}
    assert {tuple(r["license"]) for r in written} == {("cc0-1.0",), ("apache-2.0", "cc0-1.0")}
