"""Self-Instruct: prompt building, parsing of generated tasks, and every filter."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from helpers import PARAMS, llm_config, repo_config

from jalign.config import ConfigError, from_dict, read_params
from jalign.params import SelfInstructConfig
from jalign.records import RecordError
from stages.self_instruct import build_prompt, load_seeds, parse_task, rejection_reason, sample_prompts

REPO = Path(__file__).resolve().parents[2]
CONFIG = repo_config(SelfInstructConfig, "self_instruct", generator=llm_config(model="org/model@abc"))


def seed(i: int, viewpoint: str = "正確性") -> dict:
    return {"id": f"s{i}", "viewpoint": viewpoint, "instruction": f"指示{i}を説明してください。", "input": "",
            "output": f"回答{i}です。"}  # fmt: skip


def test_repo_seeds_are_valid_and_tagged_with_quality_viewpoints():
    seeds = load_seeds(str(REPO / "data/seeds/seeds.jsonl"))
    assert len(seeds) >= 60
    assert {"正確性", "網羅性", "安全性", "頑健性", "公平性"} <= {s["viewpoint"] for s in seeds}


def test_load_seeds_names_file_line_and_field(tmp_path):
    path = tmp_path / "seeds.jsonl"
    path.write_text('{"id": "a", "viewpoint": "正確性", "instruction": "x", "output": "y"}\n'
                    '{"id": "b", "viewpoint": "正確性", "output": "y"}\n', encoding="utf-8")  # fmt: skip
    with pytest.raises(RecordError, match=r"seeds.jsonl:2: missing field 'instruction'"):
        load_seeds(str(path))


def test_build_prompt_shows_numbered_examples_and_asks_for_the_next_under_a_viewpoint():
    examples = [seed(i) for i in range(8)]
    prompt = build_prompt(examples, "安全性")
    for i in range(1, 9):
        assert f"タスク{i}\n" in prompt
    assert prompt.endswith("タスク9\n観点: 安全性\n")
    assert "入力: なし" in prompt  # empty inputs are spelled out for the model


def test_sample_prompts_mixes_six_human_and_two_machine_tasks():
    seeds = [seed(i) for i in range(20)]
    machine = [{**seed(100 + i), "id": f"m{i}"} for i in range(5)]
    plans = sample_prompts(seeds, machine, CONFIG, random.Random(0), ["正確性", "安全性"])
    assert len(plans) == CONFIG.prompts_per_round
    for examples, viewpoint in plans:
        assert sum(e["id"].startswith("s") for e in examples) == 6
        assert sum(e["id"].startswith("m") for e in examples) == 2
        assert viewpoint in ("正確性", "安全性")
    # Round one has no machine tasks yet: human demonstrations only.
    first = sample_prompts(seeds, [], CONFIG, random.Random(0), ["正確性"])
    assert all(len(ex) == 6 for ex, _ in first)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("指示: 敬語に直してください。\n入力: 行きます\n出力: 参ります",
         {"instruction": "敬語に直してください。", "input": "行きます", "output": "参ります"}),
        ("指示: 春の季語を挙げてください。\n入力: なし\n出力: 桜、菜の花",
         {"instruction": "春の季語を挙げてください。", "input": "", "output": "桜、菜の花"}),
        ("指示：全角コロンでも読む。\n入力：\n出力：はい\n二行目",
         {"instruction": "全角コロンでも読む。", "input": "", "output": "はい\n二行目"}),
        ("指示: 出力がない指示\n入力: なし", None),
        ("敬語に直してください。\n入力: 行きます\n出力: 参ります", None),
        ("", None),
        ("入力も出力もない", None),
    ],
)  # fmt: skip
def test_parse_task(text, expected):
    assert parse_task(text) == expected


@pytest.mark.parametrize(
    ("task", "reason"),
    [
        ({"instruction": "短い", "input": "", "output": "はい"}, "instruction_too_short"),
        ({"instruction": "あ" * 301, "input": "", "output": "はい"}, "instruction_too_long"),
        ({"instruction": "次の内容を説明してください。", "input": "", "output": ""}, "output_length"),
        ({"instruction": "この画像に写っているものを説明してください。", "input": "", "output": "猫です。"}, "blocklist"),
        ({"instruction": "次のＵＲＬの内容を要約してください。", "input": "", "output": "要約です。"}, "blocklist"),
        ({"instruction": "添付の資料を読んでください。", "input": "", "output": "はい。"}, "blocklist"),
        ({"instruction": "Please explain photosynthesis.", "input": "", "output": "Plants make sugar."}, "not_japanese"),
        ({"instruction": "光合成の仕組みを説明してください。", "input": "", "output": "植物が光から糖を作る反応です。"}, None),
    ],
)  # fmt: skip
def test_rejection_reason(task, reason):
    assert rejection_reason(task, CONFIG) == reason


def test_config_rejects_bad_values():
    params = read_params(PARAMS)
    raw = params["self_instruct"]
    with pytest.raises(ConfigError, match=r"^self_instruct\.rouge_threshold: 1\.5 is out of range"):
        from_dict(SelfInstructConfig, raw | {"rouge_threshold": 1.5}, "self_instruct", params)
    with pytest.raises(
        ConfigError, match=r"^self_instruct: min_instruction_chars must be <= max_instruction_chars"
    ):
        from_dict(SelfInstructConfig, raw | {"min_instruction_chars": 400}, "self_instruct", params)
    with pytest.raises(ValueError, match="min_output_chars must be <= max_output_chars"):
        repo_config(SelfInstructConfig, "self_instruct", min_output_chars=10, max_output_chars=5)


TASKS = [
    "指示: 秋の季語を三つ挙げてください。\n入力: なし\n出力: 紅葉、月見、稲刈り",
    "指示: 次の文を丁寧語に直してください。\n入力: 明日行く\n出力: 明日参ります",
    "指示: 味噌汁の基本的な作り方を説明してください。\n入力: なし\n出力: だしを取り、具を煮て味噌を溶きます。",
]


def test_generated_rows_carry_the_seed_licence_and_the_generator_terms(tmp_path):
    """Licence provenance: every generated row holds the seeds' licence and its generator's terms; and
    its lineage, with the root every evolved descendant names."""
    import threading

    import fake_openai

    from jalign.llm.cache import ResponseCache
    from jalign.llm.client import LLMClient
    from jalign.stage import Failures
    from stages.self_instruct import self_instruct

    lock, answers = threading.Lock(), iter(TASKS)

    def reply(body: dict) -> str:
        with lock:
            return next(answers)

    seeds = [seed(i, viewpoint) for i, viewpoint in enumerate(["正確性", "安全性"] * 4)]
    with fake_openai.FakeOpenAIServer(responder=reply) as server:
        generator = llm_config(
            model="gen-model",
            backend="openai",
            base_url=server.url,
            prompt_format="raw",
            terms="qwen-research",
        )
        config = repo_config(
            SelfInstructConfig, "self_instruct", generator=generator, rounds=1, prompts_per_round=3
        )
        client = LLMClient(generator, cache=ResponseCache(tmp_path / "c.sqlite"))
        records, drops = self_instruct(seeds, client, config, Failures("self_instruct"))
    assert server.count == 3 and not drops
    assert sorted(r["instruction"] for r in records) == sorted(t.split("\n")[0][4:] for t in TASKS)
    assert config.license == "apache-2.0"  # the repo's seeds: written by this project
    for record in records:
        assert record["license"] == ["apache-2.0"]
        assert record["model_terms"] == ["qwen-research"]
        assert record["generator"] == "gen-model" and record["source"] == "self_instruct"
        assert record["viewpoint"] in ("正確性", "安全性")
        # a task is its own root, as evolve's children name theirs (issue 20, item 10)
        assert record["lineage"] == {
            "parent_id": None, "root_id": record["id"], "operation": "self_instruct", "round": 0
        }  # fmt: skip
