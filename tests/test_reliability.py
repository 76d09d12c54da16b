"""Nothing lost, nothing leaked, nothing paid twice: one test per defect found by running the pipeline
against a faulty server, bad inputs and hostile answers. Each drives the real stage command (through
the `jalign` CLI) against the local OpenAI-compatible server in tests/fake_openai.py."""

from __future__ import annotations

import copy
import json
import logging
import re
import uuid
from pathlib import Path

import fake_openai
import pytest
import yaml
from click.testing import CliRunner

from commands import main as jalign
from jalign.llm.cache import cache_path, project_root
from jalign.records import RecordError
from jalign.stage import FailureRateExceeded, Failures

REPO = Path(__file__).resolve().parents[1]
KEY = f"sk-test-{uuid.uuid4().hex}"  # made at run time: no file of the repo holds it


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Each test its own LLM cache (reruns must show what was and was not cached) and the API key."""
    monkeypatch.setenv("JALIGN_LLM_CACHE", str(tmp_path / "llm-cache.sqlite"))
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)


def fake_engine(url: str) -> dict:
    """An `llms` entry on the local server (a loopback base_url needs no price)."""
    return {
        "backend": "openai", "model": "fake-model", "prompt_format": "chat", "terms": "apache-2.0",
        "base_url": url, "api_key_env": "OPENAI_API_KEY", "max_concurrency": 4, "timeout_s": 5.0,
        "max_retries": 2, "retry_base_delay_s": 0.001,
    }  # fmt: skip


def fake_role() -> dict:
    return {"llm": "fake", "sampling": {"temperature": 0.0, "max_tokens": 32, "seed": 0}}


def write_params(tmp_path: Path, url: str, edit=None) -> Path:
    """The repo's params with the LLM roles this file exercises pointed at the local server."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["llms"]["fake"] = fake_engine(url)
    for section, role in (("translate", "translator"), ("translate", "reviewer"), ("judge", "judge")):
        params[section][role] = fake_role()
    for responder in params["respond"]["responders"]:
        responder.update(template=None, llm=fake_role())
    params["judge"].update(method="text", canary_pairs=0)
    params["translate"]["sources"][0].update(path=str(REPO / "data/sources/en_prompts.jsonl"), limit=10)
    if edit:
        edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(jalign, list(args))
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def translate(tmp_path: Path, params: Path) -> tuple[int, str]:
    return cli("translate", "--out", str(tmp_path / "translated.jsonl"), "--failures",
               str(tmp_path / "failures.jsonl"), "--metrics", str(tmp_path / "metrics.json"), "--params", str(params))  # fmt: skip


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# 1. An empty answer is a failure, never a success, never cached ----------------------------------------


def test_empty_and_blank_answers_are_retried_then_failed_with_their_reason_and_never_cached(tmp_path):
    empty = {"empty": "empty_content", "blank": "blank_content"}

    def fault_for(path, body):  # the prompts of 5 of the 10 source rows always get an empty answer
        text = fake_openai.prompt_text(body)
        return empty["blank" if "rhymes" in text else "empty"] if any(w in text for w in WORDS) else None

    with fake_openai.FakeOpenAIServer(fault_for=fault_for, responder=japanese) as server:
        params = write_params(tmp_path, server.url, lambda p: p["translate"].update(max_failure_rate=0.9))
        code, out = translate(tmp_path, params)
        assert code == 0, out
        failures = read_jsonl(tmp_path / "failures.jsonl")
        failed_ids = {f["id"] for f in failures}
        assert failed_ids and all("empty answer" in f["reason"] for f in failures)
        kept = {r["id"] for r in read_jsonl(tmp_path / "translated.jsonl")}
        assert not kept & failed_ids
        metrics = json.loads((tmp_path / "metrics.json").read_text())
        assert metrics["failures"]["lost_rows"] == len(failed_ids)
        # retried before giving up: max_retries 2 -> three attempts per failing request
        first_paid = server.count
    with fake_openai.FakeOpenAIServer(
        responder=japanese
    ) as healthy:  # a rerun against a healthy server asks again
        params = write_params(tmp_path, healthy.url)
        code, out = translate(tmp_path, params)
        assert code == 0, out
        assert healthy.count >= len(failed_ids)  # the empty answers were not cached
        assert len(read_jsonl(tmp_path / "translated.jsonl")) > len(kept)
    assert first_paid > 0


def japanese(body: dict) -> str:
    return "次の依頼に答えてください。" + str(len(fake_openai.prompt_text(body)))


WORDS = (
    "refrigerator",
    "landlord",
    "muffins",
    "interview",
    "Kyoto",
)  # in 5 source prompts, no few-shot example


def test_a_response_without_choices_is_a_failure_not_an_answer(tmp_path):
    with fake_openai.FakeOpenAIServer(fault_for=lambda p, b: "empty_choices") as server:
        params = write_params(tmp_path, server.url, lambda p: p["translate"].update(max_failure_rate=1.0))
        code, out = translate(tmp_path, params)
        assert code == 0, out
        reasons = {f["reason"] for f in read_jsonl(tmp_path / "failures.jsonl")}
        assert reasons and all("no choices" in r for r in reasons)
        assert read_jsonl(tmp_path / "translated.jsonl") == []


# 2. The failure rate counts lost rows, not requests --------------------------------------------------


def test_failure_rate_counts_the_rows_a_stage_lost_not_the_requests_it_sent(tmp_path):
    # 10 rows, 2 requests each (translate + review). Every review of 2 rows fails: 2 of 20 requests
    # (10%) but 2 of 10 rows (20%). With max_failure_rate 0.15 the stage must fail.
    def fault_for(path, body):
        text = fake_openai.prompt_text(body)
        return "400" if "改善訳" in text and ("refrigerator" in text or "landlord" in text) else None

    with fake_openai.FakeOpenAIServer(fault_for=fault_for) as server:
        params = write_params(tmp_path, server.url, lambda p: p["translate"].update(max_failure_rate=0.15))
        code, out = translate(tmp_path, params)
    assert code == 1
    assert "input rows lost to failures" in out and "Traceback" not in out
    lost = {f["id"] for f in read_jsonl(tmp_path / "failures.jsonl")}  # written before failing
    assert len(lost) >= 1 and not (tmp_path / "translated.jsonl").exists()


def test_failures_count_a_row_once_whatever_failed_in_it():
    failures = Failures("s")
    failures.add("row-1", "translate", "HTTP 500")
    failures.add("row-1", "review", "HTTP 500")
    failures.add("row-1", "review", "HTTP 500")  # the same failure reported twice is one row
    failures.add("row-2", "review", "timeout")
    assert failures.lost_rows == 2 and len(failures.rows) == 3
    failures.check(10, 0.2)
    with pytest.raises(FailureRateExceeded, match="2 of 9 input rows"):
        failures.check(9, 0.2)


# 3. The cache is found from the repository root in every DVC execution mode ----------------------------


def test_cache_path_is_the_repository_roots_also_inside_dvc_experiment_copies(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / ".dvc" / "tmp" / "exps" / "tmpab12" / ".dvc").mkdir(parents=True)
    (repo / "data").mkdir()
    workspace_copy = repo / ".dvc" / "tmp" / "exps" / "tmpab12"
    assert project_root(workspace_copy) == repo.resolve()  # `dvc exp run --temp` / `--queue`
    assert project_root(repo / "data") == repo.resolve()  # a stage run from a subfolder
    monkeypatch.delenv("JALIGN_LLM_CACHE")
    monkeypatch.chdir(workspace_copy)
    assert cache_path() == repo.resolve() / ".jalign" / "llm-cache.sqlite"


# 4. Params that make no sense are refused before any work ----------------------------------------------


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda p: p["translate"].update(max_failure_rate=float("nan")),
            "translate.max_failure_rate: nan is not a finite",
        ),
        (
            lambda p: p["translate"].update(budget_usd=float("nan")),
            "translate.budget_usd: nan is not a finite",
        ),
        (
            lambda p: p["translate"].update(max_failure_rate=1.5),
            "translate.max_failure_rate: 1.5 is out of range (allowed: >= 0, <= 1)",
        ),
        (
            lambda p: p["translate"]["sources"][0].update(limit=-1),
            r"translate.sources\[0\].limit: -1 is out of range",
        ),
        (
            lambda p: p["translate"]["translator"]["sampling"].update(top_p=0),
            "translate.translator.sampling.top_p: 0.0 is out of range",
        ),
    ],
)
def test_nonsense_params_fail_naming_the_key_and_the_range_before_any_request(tmp_path, edit, message):
    with fake_openai.FakeOpenAIServer() as server:
        code, out = translate(tmp_path, write_params(tmp_path, server.url, edit))
        assert code == 1 and server.count == 0
    assert re.search(re.escape(message) if "(" in message else message, out), out
    assert "Traceback" not in out


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("tie_margin", -1, "decide.tie_margin: -1.0 is out of range (allowed: >= 0, < 1)"),
        ("tie_margin", 1.5, "decide.tie_margin: 1.5 is out of range (allowed: >= 0, < 1)"),
        ("min_choice_mass", float("nan"), "decide.min_choice_mass: nan is not a finite number"),
    ],
)
def test_decide_margins_outside_their_range_are_refused(tmp_path, key, value, message):
    params = write_params(tmp_path, "http://127.0.0.1:9/v1", lambda p: p["decide"].update({key: value}))
    for name in ("r.jsonl", "j.jsonl"):
        (tmp_path / name).touch()
    code, out = cli("decide", "--responses", str(tmp_path / "r.jsonl"), "--judgments", str(tmp_path / "j.jsonl"),
                    "--decided", str(tmp_path / "d.jsonl"), "--out", str(tmp_path / "p.jsonl"), "--metrics",
                    str(tmp_path / "m.json"), "--params", str(params))  # fmt: skip
    assert code == 1 and message in out, out


def test_max_prompts_below_one_and_duplicate_yaml_keys_are_refused(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    bad = copy.deepcopy(params)
    bad["respond"]["max_prompts"] = -1
    (tmp_path / "p1.yaml").write_text(yaml.safe_dump(bad, allow_unicode=True), encoding="utf-8")
    code, out = cli("respond", "--prompts", str(REPO / "data/eval/ja_eval.jsonl"), "--out", "o", "--failures", "f",
                    "--metrics", "m", "--params", str(tmp_path / "p1.yaml"))  # fmt: skip
    assert code == 1 and "respond.max_prompts: -1 is out of range (allowed: >= 1)" in out
    text = (
        (REPO / "params.yaml")
        .read_text(encoding="utf-8")
        .replace("preferences:\n", "preferences:\n  seed: 7\n", 1)
    )
    (tmp_path / "p2.yaml").write_text(text, encoding="utf-8")
    code, out = cli("preferences", "--pairs", str(REPO / "data/eval/ja_eval.jsonl"), "--out-dir", "sets",
                    "--metrics", "m", "--params", str(tmp_path / "p2.yaml"))  # fmt: skip
    assert code == 1 and "preferences.seed: duplicate key" in out and "p2.yaml:" in out


# 5. Every input error names file, line and field, in one line ------------------------------------------


def respond(tmp_path: Path, prompts: Path, params: Path, debug: bool = False) -> tuple[int, str]:
    args = ["--debug"] if debug else []
    return cli(*args, "respond", "--prompts", str(prompts), "--out", str(tmp_path / "responses.jsonl"),
               "--failures", str(tmp_path / "failures.jsonl"), "--metrics", str(tmp_path / "metrics.json"),
               "--params", str(params))  # fmt: skip


def no_instructions(p: dict) -> None:
    p["respond"]["include_instructions"] = False


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b'{"id": "a", "prompt": "\xe3\x81\x82", "license": ["mit"]}\n{"id": "b", "prompt": "\xff\xfe"}\n',
            r"prompts.jsonl:2: not valid UTF-8 \(byte 0xff",
        ),
        (
            b'{"id": "a", "prompt": "x\\ud800y", "license": ["mit"]}\n',
            "prompts.jsonl:1: field 'prompt' holds a lone surrogate",
        ),
        (
            b'{"id": "a", "prompt": "q", "license": ["mit"]}\n{"id": "b", "prompt": "q2"}\n',
            "prompts.jsonl:2: missing field 'license'",
        ),
        (
            b'{"id": "a", "prompt": "q", "license": ["mit"]}\n{"id": "a", "prompt": "q2", "license": ["mit"]}\n',
            "field 'id': duplicate id 'a'",
        ),
    ],
)
def test_bad_respond_input_fails_before_any_request_naming_file_line_and_field(tmp_path, content, message):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(content)
    with fake_openai.FakeOpenAIServer() as server:
        code, out = respond(tmp_path, prompts, write_params(tmp_path, server.url, no_instructions))
        assert server.count == 0  # nothing paid for
    assert code == 1 and re.search(message, out), out
    assert "Traceback" not in out and out.count("\n") <= 2
    # --debug: the error propagates (with its traceback) instead of the one line
    debug = CliRunner().invoke(jalign, ["--debug", "respond", "--prompts", str(prompts), "--out", "o",
                                        "--failures", "f", "--metrics", "m", "--params", str(tmp_path / "params.yaml")])  # fmt: skip
    assert isinstance(debug.exception, RecordError) and re.search(message, str(debug.exception))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b'{"id": "a", "prompt": "q", "license": ["mit"]}\n\n\n{"id": "b", "prompt": "q2"}\n',
            "prompts.jsonl:4: missing field 'license'",
        ),
        (
            b'\n{"id": "a", "prompt": "q", "license": ["mit"]}\n\n{"id": "a", "prompt": "q2", "license": ["mit"]}\n',
            "prompts.jsonl:4: field 'id': duplicate id 'a' (first at line 2)",
        ),
    ],
)
def test_errors_name_the_file_line_even_after_blank_lines(tmp_path, content, message):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(content)
    code, out = respond(tmp_path, prompts, write_params(tmp_path, "http://127.0.0.1:9/v1", no_instructions))
    assert code == 1 and message in out, out


def test_bad_judge_input_names_file_line_and_field(tmp_path):
    responses = tmp_path / "responses.jsonl"
    responses.write_text(
        '{"prompt_id": "p1", "prompt": "q", "responses": {"a": {"text": "x"}, "b": {"text": "y"}}}\n'
        '{"prompt_id": "p2", "prompt": "q", "responses": {"a": {"model": "m"}, "b": {"text": "y"}}}\n',
        encoding="utf-8",
    )
    with fake_openai.FakeOpenAIServer() as server:
        params = write_params(tmp_path, server.url)
        code, out = cli("judge", "--responses", str(responses), "--judgments", str(tmp_path / "j.jsonl"),
                        "--failures", str(tmp_path / "f.jsonl"), "--metrics", str(tmp_path / "m.json"), "--params",
                        str(params))  # fmt: skip
        assert server.count == 0
    assert code == 1 and "responses.jsonl:2: field 'responses.a.text' must be a string" in out
    responses.write_text('{"prompt_id": "p1", "prompt": "q"}\n', encoding="utf-8")
    code, out = cli("judge", "--responses", str(responses), "--judgments", "j", "--failures", "f", "--metrics", "m",
                    "--params", str(params))  # fmt: skip
    assert code == 1 and "responses.jsonl:1: field 'responses' must be a mapping" in out


def test_a_judgments_file_missing_an_order_fails_decide_in_one_line_naming_the_file(tmp_path):
    responses = tmp_path / "responses.jsonl"
    responses.write_text(
        '{"prompt_id": "p1", "prompt": "q", "responses": {"a": {"text": "x"}, "b": {"text": "y"}}}\n',
        encoding="utf-8",
    )
    judgments = tmp_path / "judgments.jsonl"
    judgments.write_text(
        json.dumps({"pair_id": "p1|a|b", "prompt_id": "p1", "first": "a", "second": "b", "order": "forward",
                    "method": "text", "raw": "[[A]]", "canary": None, "judge": "m"}) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    code, out = cli("decide", "--responses", str(responses), "--judgments", str(judgments), "--decided",
                    str(tmp_path / "d.jsonl"), "--out", str(tmp_path / "p.jsonl"), "--metrics",
                    str(tmp_path / "m.json"), "--params", str(REPO / "params.yaml"))  # fmt: skip
    assert code == 1 and "Traceback" not in out
    assert f"{judgments}: pair p1|a|b: expected judgments in both orders, got ['forward']" in out


# 7. A killed write leaves no temp file behind for long ----------------------------------------------------


def test_stale_temp_files_of_a_stages_outputs_are_removed_at_its_start(tmp_path):
    stale = tmp_path / ".translated.jsonl.0a1b2c3d4e5f.tmp"
    stale.write_text("half a file", encoding="utf-8")
    other = tmp_path / ".someone-elses.jsonl.0a1b2c3d4e5f.tmp"  # not this stage's output: left alone
    other.write_text("x", encoding="utf-8")
    with fake_openai.FakeOpenAIServer() as server:
        code, out = translate(tmp_path, write_params(tmp_path, server.url))
    assert code == 0, out
    assert not stale.exists() and other.exists()


@pytest.mark.parametrize(
    ("role", "message"),
    [
        (
            {"model": "gpt-4o-mini", "base_url": None, "price": {"input": 0.15, "output": 0.6}},
            "environment variable OPENAI_API_KEY is not set",
        ),
        (
            {"base_url": None, "base_url_env": "JALIGN_TEST_UNSET_ENDPOINT"},
            "environment variable JALIGN_TEST_UNSET_ENDPOINT (base_url_env) is not set",
        ),
    ],
)
def test_an_unset_key_or_endpoint_variable_is_one_line_not_a_traceback(tmp_path, monkeypatch, role, message):
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("JALIGN_TEST_UNSET_ENDPOINT", raising=False)

    def remote(p: dict) -> None:
        p["llms"]["fake"].update(role)

    code, out = translate(tmp_path, write_params(tmp_path, "http://127.0.0.1:9/v1", remote))
    assert code == 1 and message in out, out
    assert "Traceback" not in out and not (tmp_path / "translated.jsonl").exists()


def test_stale_temp_files_of_the_decide_stages_outputs_are_removed_at_its_start(tmp_path):
    """Pure stages write files next to other stages' outputs (data/preferences/, metrics/): DVC removes
    only the declared outputs, so a temp file a killed decide left there would stay forever."""
    responses, judgments = tmp_path / "r.jsonl", tmp_path / "j.jsonl"
    responses.write_text(
        '{"prompt_id": "p1", "prompt": "q", "responses": {"a": {"text": "x"}, "b": {"text": "y"}}}\n',
        encoding="utf-8",
    )
    judgments.touch()
    (tmp_path / "metrics").mkdir()
    stale = [
        tmp_path / ".pairs.jsonl.0a1b2c3d4e5f.tmp",
        tmp_path / "metrics" / ".judge.json.0a1b2c3d4e5f.tmp",
    ]
    for path in stale:
        path.write_text("half a file", encoding="utf-8")
    params = write_params(tmp_path, "http://127.0.0.1:9/v1")
    code, out = cli("decide", "--responses", str(responses), "--judgments", str(judgments), "--decided",
                    str(tmp_path / "decided.jsonl"), "--out", str(tmp_path / "pairs.jsonl"), "--metrics",
                    str(tmp_path / "metrics" / "judge.json"), "--params", str(params))  # fmt: skip
    assert code == 0, out
    assert not any(path.exists() for path in stale)


# 8. Secrets never reach a written file, metric or log -----------------------------------------------------


def test_credentials_in_a_params_url_are_refused_naming_the_key(tmp_path):
    params = write_params(tmp_path, "http://alice:s3cr3t-pa55w0rd@127.0.0.1:9/v1")
    code, out = translate(tmp_path, params)
    assert code == 1 and "llms.fake: base_url: credentials in a URL" in out and "base_url_env" in out


def test_an_echoed_key_and_url_credentials_are_never_written(tmp_path, caplog, monkeypatch):
    def fault_for(path, body):
        return "echo_auth_401" if "alphabetical" in fake_openai.prompt_text(body) else None

    with fake_openai.FakeOpenAIServer(fault_for=fault_for, responder=japanese) as server:
        # Credentials in the URL come from the environment (base_url_env), never from params.
        monkeypatch.setenv(
            "JALIGN_TEST_ENDPOINT", server.url.replace("http://", "http://alice:s3cr3t-pa55w0rd@")
        )

        def from_env(p: dict) -> None:
            p["translate"].update(max_failure_rate=1.0)
            p["llms"]["fake"].update(base_url=None, base_url_env="JALIGN_TEST_ENDPOINT")

        with caplog.at_level(logging.DEBUG):
            code, out = translate(tmp_path, write_params(tmp_path, server.url, from_env))
        assert code == 0, out
        assert server.count > 0
        headers = [r.headers.get("authorization", "") for r in server.calls()]
    # The SDK sent the key (or httpx the URL's Basic credentials), and the server echoed it back: the
    # failure keeps its reason, never the secret, in any form.
    assert any(KEY in h or "YWxpY2U6czNjcjN0LXBhNTV3MHJk" in h for h in headers)
    failures = (tmp_path / "failures.jsonl").read_text(encoding="utf-8")
    assert "rejected credentials" in failures and "***" in failures
    secrets = (KEY, "s3cr3t-pa55w0rd", "YWxpY2U6czNjcjN0LXBhNTV3MHJk")  # ... the last: user:pass in base64
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data, path
    logged = "\n".join(r.getMessage() for r in caplog.records) + out
    assert not any(secret in logged for secret in secrets)


# 9. Judge failures name the pair, the order and the reason, once ------------------------------------------


def test_judge_failure_rows_name_pair_order_and_reason_once(tmp_path):
    responses = tmp_path / "responses.jsonl"
    rows = [{"prompt_id": f"p{i}", "prompt": f"質問{i}", "responses": {"a": {"text": f"答えA{i}", "model": "m"},
             "b": {"text": f"答えB{i}", "model": "m"}}} for i in range(4)]  # fmt: skip
    responses.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    def fault_for(path, body):
        return "500" if "質問2" in fake_openai.prompt_text(body) else None

    with fake_openai.FakeOpenAIServer(fault_for=fault_for) as server:
        params = write_params(tmp_path, server.url, lambda p: p["judge"].update(max_failure_rate=0.5))
        code, out = cli("judge", "--responses", str(responses), "--judgments", str(tmp_path / "j.jsonl"),
                        "--failures", str(tmp_path / "f.jsonl"), "--metrics", str(tmp_path / "m.json"),
                        "--params", str(params))  # fmt: skip
    assert code == 0, out
    failures = read_jsonl(tmp_path / "f.jsonl")
    assert sorted((f["id"], f["order"]) for f in failures) == [("p2|a|b", "forward"), ("p2|a|b", "swapped")]
    assert all("HTTP 500" in f["reason"] for f in failures)
    assert json.loads((tmp_path / "m.json").read_text())["failures"]["lost_rows"] == 1
