"""Preference sets: TRL formats, split by prompt, contamination drops."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner
from helpers import repo_config

from jalign.dedup import max_similarity
from jalign.evalsets import EvalPrompt
from jalign.params import PreferencesConfig
from jalign.records import RecordError
from stages.preferences import build_sets, main, split_by_prompt, to_binary, to_kto, to_pairwise


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
    provenance = {
        "pair_id": "p1",
        "label_source": "judge",  # decide's pairs carry none: judged
        "license": ["apache-2.0", "cc0-1.0"],
        "model_terms": ["gemma"],
    }
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
    verified = {**pair(3), "label_source": "verifier"}
    assert {r["label_source"] for r in [to_pairwise(verified), *to_kto(verified), *to_binary(verified)]} == {
        "verifier"
    }


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


# -- judged and verifier-labelled pairs merged (the stage's CLI) ---------------------------------------


def verifier_pair(i: int, question: str, prompt: str | None = None) -> dict:
    return {
        "pair_id": f"verify/v{i}",
        "prompt_id": f"v{i}",
        "prompt": prompt or question + "読点を使わずに答えてください。",
        "question": question,
        "chosen": f"守った回答{i}",
        "rejected": f"守らない回答{i}",
        "chosen_responder": "sample0",
        "label_source": "verifier",
        "license": ["apache-2.0"],
        "model_terms": ["gemma"],
    }


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


EVAL_QUESTION = "夏休みの自由研究のテーマを考えてください。"


def params_file(tmp_path: Path, eval_size: int = 2) -> str:
    eval_path = write_jsonl(
        tmp_path / "eval.jsonl",
        [{"key": "e1", "prompt": EVAL_QUESTION + "読点を使わずに答えてください。", "question": EVAL_QUESTION,
          "instruction_id_list": ["ja:punctuation:no_comma"], "kwargs": [{}]}],
    )  # fmt: skip
    params = {
        "preferences": {"eval_size": eval_size, "seed": 42, "contamination_threshold": 0.5},
        "evaluate": {"sets": [{"name": "ifeval-ja", "format": "ifeval", "path": eval_path}]},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    return str(path)


def run_stage(tmp_path: Path, *pairs_files: str) -> tuple[object, dict]:
    args = [arg for f in pairs_files for arg in ("--pairs", f)]
    metrics = tmp_path / "metrics.json"
    result = CliRunner().invoke(
        main,
        [
            *args,
            "--out-dir",
            str(tmp_path / "out"),
            "--metrics",
            str(metrics),
            "--params",
            params_file(tmp_path),
        ],
    )
    return result, json.loads(metrics.read_text(encoding="utf-8")) if metrics.exists() else {}


VERIFY_QUESTIONS = [
    "近所の人と良い関係を作る方法を教えてください。",
    "本を速く読むコツを教えてください。",
    "緊張したときの落ち着き方を教えてください。",
    "部屋を片付ける順番を教えてください。",
    "雨の日の過ごし方を提案してください。",
]


def test_two_pairs_files_are_merged_and_label_sources_counted_per_split(tmp_path):
    judged = write_jsonl(
        tmp_path / "judged.jsonl", [pair(i) for i in range(14)]
    )  # 7 prompts, no label_source
    verified = write_jsonl(
        tmp_path / "verified.jsonl", [verifier_pair(i, q) for i, q in enumerate(VERIFY_QUESTIONS)]
    )
    result, metrics = run_stage(tmp_path, judged, verified)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert metrics["dropped"]["contaminated"] == 0
    sources = metrics["label_sources"]
    assert set(sources) == {"train", "eval"}
    assert sum(s.get("judge", 0) for s in sources.values()) == 14
    assert sum(s.get("verifier", 0) for s in sources.values()) == 5
    assert metrics["prompts"]["train"] + metrics["prompts"]["eval"] == 12 and metrics["prompts"]["eval"] == 2
    written = [
        json.loads(line)
        for split in ("train", "eval")
        for line in (tmp_path / "out" / f"pairwise_{split}.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    by_id = {r["pair_id"]: r for r in written}
    assert len(by_id) == 19
    assert by_id["verify/v0"]["label_source"] == "verifier" and by_id["p0"]["label_source"] == "judge"
    for split, counts in sources.items():  # the counts are the rows written to that split
        rows = (tmp_path / "out" / f"pairwise_{split}.jsonl").read_text(encoding="utf-8").splitlines()
        assert sum(counts.values()) == len(rows)


def test_a_pair_id_repeated_across_files_is_an_error(tmp_path):
    first = write_jsonl(tmp_path / "a.jsonl", [pair(1), pair(2)])
    second = write_jsonl(tmp_path / "b.jsonl", [verifier_pair(0, VERIFY_QUESTIONS[0]), pair(2)])
    result, _ = run_stage(tmp_path, first, second)
    assert result.exit_code != 0
    assert isinstance(result.exception, RecordError)
    assert str(result.exception) == f"{second}: pair_id 'p2' repeated (first in {first})"


def test_a_verifiable_pair_is_decontaminated_by_its_question():
    config = repo_config(PreferencesConfig, "preferences", eval_size=1)
    shared_instructions = "読点を使わずに答えてください。「笑顔」という言葉を必ず入れてください。回答の最後に「以上です。」と書いてください。"
    eval_prompts = [EvalPrompt("ifeval-ja", "e1", EVAL_QUESTION)]  # load_eval_prompts gives the question
    leak = verifier_pair(1, EVAL_QUESTION, prompt=EVAL_QUESTION + shared_instructions)
    # the same instructions on an unrelated question
    clean = verifier_pair(
        2,
        "朝ご飯に合う汁物を教えてください。",
        prompt="朝ご飯に合う汁物を教えてください。" + shared_instructions,
    )
    judged = pair(3, prompt=EVAL_QUESTION + "！")  # no question field: its prompt is compared
    others = [pair(i) for i in range(4, 8)]
    _, report = build_sets([leak, clean, judged, *others], eval_prompts, config)
    assert sorted(c["pair_id"] for c in report["contamination_examples"]) == ["p3", "verify/v1"]
    assert report["dropped"]["contaminated"] == 2
    # the full prompt would have hidden the leak (its instructions dilute the overlap) ...
    scores, _ = max_similarity([leak["prompt"]], [EVAL_QUESTION])
    assert scores[0] < config.contamination_threshold
    # ... and flagged an unrelated question whose appended instructions match an eval prompt's
    _, report = build_sets([clean, *others], [EvalPrompt("s", "x", shared_instructions)], config)
    assert report["dropped"]["contaminated"] == 0
    assert max_similarity([clean["prompt"]], [shared_instructions])[0][0] > config.contamination_threshold
