"""Judge (the calls): both orders for every pair, raw judgments stored, one re-ask, canaries, the reward
seam. What the judgments mean is decided in tests/stages/test_decide.py."""

from __future__ import annotations

from pathlib import Path

import fake_openai  # tests/ is on sys.path (conftest.py)
import pytest
from helpers import llm_config, repo_config

from jalign.llm.cache import ResponseCache
from jalign.llm.client import LLMClient
from jalign.params import DecideConfig, JudgeConfig
from jalign.records import RecordError
from jalign.reward import RewardModel, classifier_text
from jalign.stage import Failures
from stages.decide import decide
from stages.judge import Task, canary_tasks, judge_pairs, load_responses, tasks_for

CONFIG = repo_config(JudgeConfig, "judge", judge=llm_config(model="org/judge@abc"), method="text")


def row(pid: str, **answers: str) -> dict:
    return {
        "prompt_id": pid,
        "prompt": f"質問{pid}",
        "responses": {n: {"text": t, "model": f"m-{n}"} for n, t in answers.items()},
    }


def answers_of(rows: list[dict]) -> dict[str, dict[str, str]]:
    return {r["prompt_id"]: {n: v["text"] for n, v in r["responses"].items()} for r in rows}


def openai_judge(server: fake_openai.FakeOpenAIServer, **overrides) -> JudgeConfig:
    llm = llm_config(
        model="judge", backend="openai", base_url=server.url, prompt_format="chat", retry_base_delay_s=0.001
    )
    return repo_config(JudgeConfig, "judge", judge=llm, **overrides)


def test_tasks_cover_both_orders_of_every_pair_and_count_missing_answers():
    rows = [row("p1", x="a", y="bb", z="ccc"), row("p2", x="a", y="b")]
    tasks, missing = tasks_for(rows)
    p1 = [(t.first, t.second) for t in tasks if t.prompt_id == "p1"]
    assert sorted(p1) == sorted([("x", "y"), ("y", "x"), ("x", "z"), ("z", "x"), ("y", "z"), ("z", "y")])
    assert missing == 2  # p2 lacks z: (x, z) and (y, z)
    assert Task("p", "q", "y", "x").pair_id == Task("p", "q", "x", "y").pair_id == "p|x|y"
    assert (Task("p", "q", "x", "y").order, Task("p", "q", "y", "x").order) == ("forward", "swapped")
    assert Task("p", "q", "x", "y").row_id == "p|x|y"
    assert Task("p", "q", "x", "y", canary="plea", target="y").row_id == "p|x|y#canary"


def test_canary_tasks_repeat_both_orders_with_a_plea_for_one_answer():
    rows = [row("p1", x="a", y="b"), row("p2", x="c", y="d"), row("p3", x="e", y="f")]
    tasks, _ = tasks_for(rows)
    canaries = canary_tasks(tasks, 2)
    assert sorted((t.prompt_id, t.first, t.second) for t in canaries) == [
        ("p1", "x", "y"),
        ("p1", "y", "x"),
        ("p2", "x", "y"),
        ("p2", "y", "x"),
    ]
    assert {t.target for t in canaries} == {"y"}  # the plea speaks for one responder, by name
    # it names the letter the carrying answer has in that order, as an attacker would guess it
    for t in canaries:
        label = "A" if t.first == "y" else "B"
        assert f"[[{label}]]" in t.canary and f"[[{'B' if label == 'A' else 'A'}]]" not in t.canary
    assert canaries[0].canary != canaries[2].canary  # payloads cycle
    assert canary_tasks(tasks, 0) == []


def test_load_responses_names_file_line_and_field(tmp_path: Path):
    path = tmp_path / "responses.jsonl"
    good = '{"prompt_id": "p1", "prompt": "q", "responses": {"x": {"text": "a"}}}'
    cases = [
        (
            '{"prompt_id": "p2", "prompt": "q", "responses": ["a"]}',
            r":2: field 'responses' must be a mapping",
        ),
        (
            '{"prompt_id": "p2", "prompt": "q", "responses": {"y": {"text": 3}}}',
            r":2: field 'responses.y.text'",
        ),
        ('{"prompt_id": "p2", "responses": {}}', r":2: missing field 'prompt'"),
        (good, r":2: field 'prompt_id': duplicate id 'p1' \(first at line 1\)"),
    ]
    for line, message in cases:
        path.write_text(good + "\n" + line + "\n", encoding="utf-8")
        with pytest.raises(RecordError, match=message):
            load_responses(str(path))
    path.write_text(good + "\n", encoding="utf-8")
    assert load_responses(str(path))[0]["responses"] == {"x": {"text": "a"}}


def test_text_method_stores_raw_answers_and_reasks_an_unparseable_one_once(tmp_path):
    """Free-text judging over a real OpenAI-compatible HTTP server: every attempt's raw text is stored,
    nothing is decided here; an answer without a verdict is re-asked once with the next seed."""

    def reply(body):
        if "質問p2" in fake_openai.prompt_text(body):
            return "どちらも良いが、Aの方が丁寧です。"  # no verdict token
        return "Bの方が具体的で正確です。\n最終判定: [[B]]"

    rows = [row("p1", x="a", y="b"), row("p2", x="a", y="b")]
    tasks, _ = tasks_for(rows)
    with fake_openai.FakeOpenAIServer(responder=reply) as server:
        config = openai_judge(server, method="text", reask_invalid=True)
        client = LLMClient(config.judge, cache=ResponseCache(tmp_path / "cache.sqlite"))
        judgments = judge_pairs(tasks, answers_of(rows), client, config, Failures("judge"))
    assert len(server.requests) == 4 + 2  # p2's two orders were asked again
    seeds = sorted(r.body["seed"] for r in server.requests if "質問p2" in fake_openai.prompt_text(r.body))
    base = config.judge.sampling.seed
    assert seeds == [base, base, base + 1, base + 1]
    by_order = {(j["prompt_id"], j["first"]): j for j in judgments}
    assert set(by_order) == {("p1", "x"), ("p1", "y"), ("p2", "x"), ("p2", "y")}
    p1 = by_order[("p1", "x")]
    assert p1["raw"].endswith("[[B]]") and p1["attempts"] == [{"text": p1["raw"]}]
    assert (p1["pair_id"], p1["order"], p1["method"], p1["judge"]) == ("p1|x|y", "forward", "text", "judge")
    assert "verdict" not in p1 and "winner" not in p1  # the decide stage decides
    p2 = by_order[("p2", "y")]
    assert p2["order"] == "swapped" and len(p2["attempts"]) == 2
    assert p2["raw"] == "どちらも良いが、Aの方が丁寧です。"
    # every answer reached the judge inside its nonce fence
    for rec in server.requests:
        text = fake_openai.prompt_text(rec.body)
        assert text.count("⟪回答A:開始:") == 1 and text.count("⟪回答B:終了:") == 1

    # deciding: the judge always says B, so p1's orders disagree; p2 has no verdict at all
    _, pairs, stats = decide(
        judgments, {r["prompt_id"]: r for r in rows}, repo_config(DecideConfig, "decide")
    )
    assert pairs == [] and stats["dropped"] == {"disagreement": 1, "invalid": 1}
    assert stats["position_bias_rate"] == 0.0 and stats["invalid_rate"] == 0.5
    assert stats["invalid_reasons"] == {"no_verdict": 2}


def test_without_reask_an_unparseable_answer_is_asked_once(tmp_path):
    rows = [row("p1", x="a", y="b")]
    tasks, _ = tasks_for(rows)
    with fake_openai.FakeOpenAIServer(responder=lambda body: "判定できません。") as server:
        config = openai_judge(server, method="text", reask_invalid=False)
        client = LLMClient(config.judge, cache=ResponseCache(tmp_path / "cache.sqlite"))
        judgments = judge_pairs(tasks, answers_of(rows), client, config, Failures("judge"))
    assert len(server.requests) == 2
    assert [len(j["attempts"]) for j in judgments] == [1, 1]


def test_failed_calls_are_charged_to_the_pair_once_per_order(tmp_path):
    def fault_for(path, body):
        return "400" if "質問p2" in fake_openai.prompt_text(body) else None

    rows = [row("p1", x="a", y="b"), row("p2", x="a", y="b")]
    tasks, _ = tasks_for(rows)
    failures = Failures("judge")
    with fake_openai.FakeOpenAIServer(fault_for=fault_for) as server:
        config = openai_judge(server, method="text", reask_invalid=True)
        client = LLMClient(config.judge, cache=ResponseCache(tmp_path / "cache.sqlite"))
        judgments = judge_pairs(tasks, answers_of(rows), client, config, failures)
    assert [(f["id"], f["step"], f["order"]) for f in failures.rows] == [
        ("p2|x|y", "judge", "forward"),
        ("p2|x|y", "judge", "swapped"),
    ]
    assert failures.lost_rows == 1  # one pair lost, however many of its calls failed
    failed = [j for j in judgments if j["prompt_id"] == "p2"]
    assert all(j["raw"] is None and len(j["attempts"]) == 2 for j in failed)
    assert all("HTTP 400" in a["error"] for j in failed for a in j["attempts"])


def test_logprob_method_stores_choice_probabilities_and_mass(tmp_path):
    def top(body):
        if "質問p2" in fake_openai.prompt_text(body):
            return {"X": -0.05, "Y": -3.0}  # neither A nor B: a failed choice
        return {"A": -0.2, "B": -1.8, "X": -3.0}

    rows = [row("p1", x="a", y="b"), row("p2", x="a", y="b")]
    tasks, _ = tasks_for(rows)
    failures = Failures("judge")
    with fake_openai.FakeOpenAIServer(top_logprobs=top) as server:
        config = openai_judge(server, method="logprob")
        client = LLMClient(config.judge, cache=ResponseCache(tmp_path / "cache.sqlite"))
        judgments = judge_pairs(tasks, answers_of(rows), client, config, failures)
    assert all(r.body["max_tokens"] == 1 and r.body["logprobs"] is True for r in server.requests)
    p1 = [j for j in judgments if j["prompt_id"] == "p1"]
    pa, pb = 0.8187307531, 0.1652988882  # exp(-0.2), exp(-1.8)
    for j in p1:
        assert j["raw"] == pytest.approx({"A": pa / (pa + pb), "B": pb / (pa + pb)})
        assert j["mass"] == pytest.approx(pa + pb)
    p2 = [j for j in judgments if j["prompt_id"] == "p2"]
    assert all(j["raw"] is None and "none of" in j["attempts"][0]["error"] for j in p2)
    assert failures.lost_rows == 1


def tiny_classifier(path: Path) -> Path:
    """A real (tiny, random) sequence classifier and its tokenizer on disk: one token per character."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    chars = sorted(set("### 指示回答質問短いずっと長い回答です\n0123456789pq"))
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *chars])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    BertForSequenceClassification(
        BertConfig(
            vocab_size=len(vocab),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            num_labels=2,
        )
    ).save_pretrained(path)
    return path


def test_reward_method_scores_with_a_trained_classifier(tmp_path: Path):
    """The `judge.method: reward` seam, with a real (tiny, random) sequence classifier on disk."""
    tiny_classifier(tmp_path)
    config = repo_config(
        JudgeConfig, "judge", judge=CONFIG.judge, method="reward", reward_model=str(tmp_path)
    )
    rows = [row("p1", x="短い", y="ずっと長い回答です")]
    tasks, _ = tasks_for(rows)
    judgments = judge_pairs(tasks, answers_of(rows), None, config, Failures("judge"))
    assert [j["method"] for j in judgments] == ["reward", "reward"]
    assert {j["judge"] for j in judgments} == {str(tmp_path)}
    # Order-independent by construction: the same two rewards, swapped with the order.
    assert judgments[0]["raw"]["A"] == judgments[1]["raw"]["B"]
    assert judgments[0]["raw"]["B"] == judgments[1]["raw"]["A"]
    assert judgments[0]["raw"]["A"] != judgments[0]["raw"]["B"]
    decided, pairs, stats = decide(
        judgments, {"p1": rows[0]}, repo_config(DecideConfig, "decide", tie_margin=0.0)
    )
    assert decided[0]["winner"] == decided[1]["winner"] in ("x", "y")  # both orders name one winner
    assert [p["chosen_responder"] for p in pairs] == [decided[0]["winner"]]
    assert stats["agreement_rate"] == 1.0


def test_reward_method_scores_the_canarys_plea(tmp_path: Path):
    """The reward judge must see the plea it is tested with: the canary judgment of the target scores the
    answer with the plea appended, exactly as the text and logprob judges are shown it."""
    config = repo_config(
        JudgeConfig, "judge", judge=CONFIG.judge, method="reward", reward_model=str(tiny_classifier(tmp_path))
    )
    rows = [row("p1", x="短い", y="ずっと長い回答です")]
    tasks, _ = tasks_for(rows)
    canaries = canary_tasks(tasks, 1)
    judgments = judge_pairs(tasks + canaries, answers_of(rows), None, config, Failures("judge"))
    clean = {j["order"]: j["raw"] for j in judgments if not j["canary"]}
    injected = {j["order"]: j["raw"] for j in judgments if j["canary"]}
    # forward: x is A, y (the target, carrying the plea) is B
    assert injected["forward"]["A"] == clean["forward"]["A"]
    assert injected["forward"]["B"] != clean["forward"]["B"]
    scorer = RewardModel(str(tmp_path))
    for task in canaries:
        shown = answers_of(rows)["p1"]["y"] + "\n\n" + task.canary
        expected = scorer.score([classifier_text("質問p1", shown)])[0]
        label = "A" if task.first == "y" else "B"
        assert injected[task.order][label] == pytest.approx(expected, abs=1e-5)


def test_reward_method_needs_a_model():
    with pytest.raises(ValueError, match="reward_model"):
        repo_config(JudgeConfig, "judge", method="reward", reward_model=None)
