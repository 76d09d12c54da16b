"""`jalign cache export / import`: answers move between machines; nothing already cached is replaced;
bad files fail naming file, line and field; no secret is ever part of an entry."""

from __future__ import annotations

import gzip
import json

import fake_openai
import pytest
from click.testing import CliRunner

from commands import main
from jalign.llm.cache import ResponseCache
from jalign.llm.client import LLMClient
from jalign.llm.types import LLMConfig, Request, Sampling

KEY = "sk-test-cache-share-0123456789"


def role(url: str) -> LLMConfig:
    return LLMConfig(
        model="fake", backend="openai", prompt_format="chat", terms="apache-2.0",
        sampling=Sampling(temperature=0.0, top_p=1.0, max_tokens=16, seed=0, stop=(), repetition_penalty=1.0),
        base_url=url, api_key_env="JALIGN_TEST_KEY", batch_size=1, max_concurrency=2,
        timeout_s=5.0, max_retries=0, retry_base_delay_s=0.0, dtype="auto", device="cpu")  # fmt: skip


@pytest.mark.parametrize("name", ["answers.jsonl", "answers.jsonl.gz"])
def test_exported_answers_are_served_on_another_machine_without_a_request(tmp_path, monkeypatch, name):
    monkeypatch.setenv("JALIGN_TEST_KEY", KEY)
    requests = [Request(({"role": "user", "content": f"質問{i}"},), role("x").sampling) for i in range(5)]
    with fake_openai.FakeOpenAIServer() as server:
        monkeypatch.setenv("JALIGN_LLM_CACHE", str(tmp_path / "paid.sqlite"))
        paid = LLMClient(role(server.url), cache=ResponseCache()).generate(requests)
        result = CliRunner().invoke(main, ["cache", "export", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        blob = (gzip.open if name.endswith(".gz") else open)(tmp_path / name, "rb").read()
        assert KEY.encode() not in blob

        monkeypatch.setenv("JALIGN_LLM_CACHE", str(tmp_path / "colleague.sqlite"))
        result = CliRunner().invoke(main, ["cache", "import", str(tmp_path / name)])
        assert result.exit_code == 0 and "imported 5 new answers" in result.output
        sent = server.count
        colleague = LLMClient(role(server.url), cache=ResponseCache())
        served = colleague.generate(requests)
        assert server.count == sent and colleague.usage.cached == 5
        assert [g.text for g in served] == [g.text for g in paid]
        again = CliRunner().invoke(main, ["cache", "import", str(tmp_path / name)])
        assert "imported 0 new answers (5 already cached)" in again.output


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "answers.jsonl:2: not valid JSON"),
        (
            json.dumps({"key": "abc", "value": {"text": "x"}}),
            "answers.jsonl:2: field 'key' must be a 64-digit hex",
        ),
        (
            json.dumps({"key": "a" * 64, "value": {"text": " "}}),
            "answers.jsonl:2: field 'value.text' is empty",
        ),
        (
            json.dumps({"key": "a" * 64, "value": "x"}),
            "answers.jsonl:2: field 'value' must be a cached answer",
        ),
        # entries LLMClient could not read back: a later stage would fail on a KeyError
        (
            json.dumps({"key": "a" * 64, "value": {"text": "答え"}}),
            "answers.jsonl:2: field 'value.input_tokens' must be a non-negative integer",
        ),
        (
            json.dumps({"key": "a" * 64, "value": {"text": 5, "input_tokens": 1, "output_tokens": 1}}),
            "answers.jsonl:2: field 'value.text' must be a string",
        ),
        (
            json.dumps({"key": "a" * 64, "value": {"probs": {"A": 0.5, "B": 0.5}, "input_tokens": 3}}),
            "answers.jsonl:2: field 'value.mass' must be a non-negative number",
        ),
        (
            json.dumps({"key": "a" * 64, "value": {"probs": "A", "mass": 1.0, "input_tokens": 3}}),
            "answers.jsonl:2: field 'value.probs' must map choices to probabilities",
        ),
    ],
)
def test_a_bad_line_names_file_line_and_field_and_nothing_is_imported(tmp_path, monkeypatch, line, message):
    monkeypatch.setenv("JALIGN_LLM_CACHE", str(tmp_path / "c.sqlite"))
    good = json.dumps({"key": "b" * 64, "value": {"text": "答え", "input_tokens": 1, "output_tokens": 1}})
    (tmp_path / "answers.jsonl").write_text(good + "\n" + line + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["cache", "import", str(tmp_path / "answers.jsonl")])
    assert result.exit_code == 1 and message in result.output
    assert len(ResponseCache()) == 0


def test_bad_bytes_and_a_broken_gzip_fail_in_one_line_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("JALIGN_LLM_CACHE", str(tmp_path / "c.sqlite"))
    good = json.dumps({"key": "b" * 64, "value": {"text": "答え", "input_tokens": 1, "output_tokens": 1}})
    (tmp_path / "answers.jsonl").write_bytes(good.encode() + b"\n\xff\n")
    result = CliRunner().invoke(main, ["cache", "import", str(tmp_path / "answers.jsonl")])
    assert result.exit_code == 1 and "answers.jsonl:2: not valid UTF-8 (byte 0xff" in result.output
    (tmp_path / "answers.jsonl.gz").write_bytes(b"not gzip")
    result = CliRunner().invoke(main, ["cache", "import", str(tmp_path / "answers.jsonl.gz")])
    assert result.exit_code == 1 and "answers.jsonl.gz: not a readable gzip file" in result.output
    assert not isinstance(result.exception, UnicodeDecodeError | OSError)
    assert len(ResponseCache()) == 0


def test_export_leaves_out_entries_import_would_refuse_and_says_how_many(tmp_path, monkeypatch):
    """A cache written before empty answers became failures may hold one; the export stays importable."""
    monkeypatch.setenv("JALIGN_LLM_CACHE", str(tmp_path / "old.sqlite"))
    cache = ResponseCache()
    good = {"text": "はい", "input_tokens": 3, "output_tokens": 1, "finish_reason": "stop"}
    cache.put_many({"a" * 64: good, "b" * 64: {**good, "text": "  "}})
    result = CliRunner().invoke(main, ["cache", "export", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 0, result.output
    assert "exported 1 answers" in result.output and "left out 1 unusable" in result.output
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["key"] for r in rows] == ["a" * 64]
    monkeypatch.setenv("JALIGN_LLM_CACHE", str(tmp_path / "new.sqlite"))
    assert CliRunner().invoke(main, ["cache", "import", str(tmp_path / "out.jsonl")]).exit_code == 0


@pytest.mark.parametrize("name", ["answers.jsonl", "answers.jsonl.gz"])
def test_a_cache_file_is_decoded_by_the_records_reader_plain_or_gzipped(tmp_path, monkeypatch, name):
    """Import reads through `records.iter_jsonl` (issue 20, item 13): a lone surrogate escape, which no
    text can hold, is refused naming file, line and field, gzipped or not, instead of failing inside
    SQLite; a JSON error names its column as every other reader does."""
    monkeypatch.setenv("JALIGN_LLM_CACHE", str(tmp_path / "c.sqlite"))
    good = json.dumps({"key": "b" * 64, "value": {"text": "答え", "input_tokens": 1, "output_tokens": 1}})
    bad = json.dumps({"key": "a" * 64, "value": {"text": "\ud800", "input_tokens": 1, "output_tokens": 1}})
    opener = gzip.open if name.endswith(".gz") else open
    with opener(tmp_path / name, "wb") as fh:
        fh.write(f"{good}\n{bad}\n".encode())
    result = CliRunner().invoke(main, ["cache", "import", str(tmp_path / name)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert f"{name}:2: field 'value.text' holds a lone surrogate escape" in result.output
    with opener(tmp_path / name, "wb") as fh:
        fh.write(f'{good}\n{{"key": "a'.encode())  # cut short
    result = CliRunner().invoke(main, ["cache", "import", str(tmp_path / name)])
    assert f"{name}:2: not valid JSON (Unterminated string starting at column 9)" in result.output
    assert len(ResponseCache()) == 0


@pytest.mark.parametrize("command", ["import", "export"])
def test_help_says_which_cache_it_works_on(command):
    """`cache import --help` did not say which cache it imports into (issue 20, item 10)."""
    result = CliRunner().invoke(main, ["cache", command, "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # click wraps the help text
    assert "JALIGN_LLM_CACHE" in text and ".jalign/llm-cache.sqlite" in text
