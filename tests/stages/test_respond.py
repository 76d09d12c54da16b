"""Respond: prompt rows checked before any request (licence present, ids unique across both halves),
licence provenance on every row, and each responder's answer with its model terms."""

from __future__ import annotations

import json
from pathlib import Path

import fake_openai  # tests/ is on sys.path (conftest.py)
import pytest
from helpers import llm_config, repo_config

from jalign.llm.cache import ResponseCache
from jalign.llm.client import LLMClient
from jalign.params import RespondConfig, ResponderConfig
from jalign.records import RecordError
from jalign.stage import Failures
from stages.respond import load_prompt_rows, respond

CONFIG = repo_config(RespondConfig, "respond", max_prompts=None, include_instructions=True)


def write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


TRANSLATED = [
    {
        "id": "t:1",
        "prompt": "光合成を説明してください。",
        "license": ["apache-2.0"],
        "model_terms": ["gemma"],
    },
    {"id": "t:2", "prompt": "俳句を作ってください。", "license": "cc0-1.0"},
]
INSTRUCTIONS = [
    {"id": "si-1", "instruction": "要約してください。", "input": "本文", "license": ["apache-2.0"]}
]


def test_prompt_rows_from_both_halves_carry_their_licence_provenance(tmp_path):
    rows = load_prompt_rows(
        write(tmp_path / "t.jsonl", TRANSLATED), write(tmp_path / "i.jsonl", INSTRUCTIONS), CONFIG
    )
    assert [(r["prompt_id"], r["origin"]) for r in rows] == [
        ("t:1", "translated"),
        ("t:2", "translated"),
        ("si-1", "instruction"),
    ]
    assert rows[2]["prompt"] == "要約してください。\n本文"
    assert [(r["license"], r["model_terms"]) for r in rows] == [
        (["apache-2.0"], ["gemma"]),
        (["cc0-1.0"], []),
        (["apache-2.0"], []),
    ]
    only_translated = repo_config(RespondConfig, "respond", include_instructions=False, max_prompts=1)
    assert [r["prompt_id"] for r in load_prompt_rows(str(tmp_path / "t.jsonl"), None, only_translated)] == [
        "t:1"
    ]


def test_a_row_without_a_licence_fails_naming_file_and_line(tmp_path):
    instructions = write(tmp_path / "i.jsonl", [*INSTRUCTIONS, {"id": "si-2", "instruction": "出典不明"}])
    with pytest.raises(RecordError, match=r"i\.jsonl:2: missing field 'license'$"):
        load_prompt_rows(write(tmp_path / "t.jsonl", TRANSLATED), instructions, CONFIG)


def test_a_prompt_id_repeated_across_the_halves_fails_before_any_request(tmp_path):
    instructions = write(tmp_path / "i.jsonl", [{**INSTRUCTIONS[0], "id": "t:2"}])
    with pytest.raises(RecordError, match=r"i.jsonl:1: field 'id': 't:2' is also a prompt id in .*t.jsonl"):
        load_prompt_rows(write(tmp_path / "t.jsonl", TRANSLATED), instructions, CONFIG)


def test_responders_need_distinct_names():
    [first, _] = CONFIG.responders
    with pytest.raises(ValueError, match="two or more with distinct names"):
        repo_config(RespondConfig, "respond", responders=(first, first))
    with pytest.raises(ValueError, match="two or more"):
        repo_config(RespondConfig, "respond", responders=(first,))


def test_each_responder_answers_every_prompt_and_a_failure_is_charged_to_its_row(tmp_path):
    def fault_for(path, body):
        text = fake_openai.prompt_text(body)
        return "400" if "俳句" in text and body["model"] == "lively-model" else None

    with fake_openai.FakeOpenAIServer(fault_for=fault_for) as server:
        common = {"backend": "openai", "base_url": server.url, "prompt_format": "chat"}
        responders = (
            ResponderConfig(
                "careful", llm_config(model="careful-model", terms="apache-2.0", **common), "丁寧に。", None
            ),
            ResponderConfig("lively", llm_config(model="lively-model", terms="gemma", **common), "", None),
        )
        config = repo_config(RespondConfig, "respond", responders=responders)
        clients = {r.name: LLMClient(r.llm, cache=ResponseCache(tmp_path / "c.sqlite")) for r in responders}
        rows = load_prompt_rows(write(tmp_path / "t.jsonl", TRANSLATED), None, config)
        failures = Failures("respond")
        out = respond(rows, clients, config, failures)
    careful = [r for r in server.requests if r.body["model"] == "careful-model"]
    assert all(r.body["messages"][0] == {"role": "system", "content": "丁寧に。"} for r in careful)
    assert set(out[0]["responses"]) == {"careful", "lively"}
    assert out[0]["responses"]["lively"]["model_terms"] == "gemma"
    assert out[0]["responses"]["careful"]["model"] == "careful-model"
    assert set(out[1]["responses"]) == {"careful"}  # the failed answer is missing, not empty
    assert [(f["id"], f["step"]) for f in failures.rows] == [("t:2", "respond:lively")]
    assert out[1]["license"] == ["cc0-1.0"]
