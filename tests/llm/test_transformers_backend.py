"""jalign.llm.LLMClient + TransformersBackend on a tiny real Llama (see conftest.tiny_lm_dir)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from helpers import sampling
from transformers import AutoModelForCausalLM, AutoTokenizer

from jalign.llm.cache import ResponseCache
from jalign.llm.client import LLMClient
from jalign.llm.prompting import choice_token_ids, cut_at_stop
from jalign.llm.transformers_backend import GumbelMaxSampler, NucleusFromTopK
from jalign.llm.types import Request, Sampling

GREEDY = sampling(temperature=0.0, max_tokens=6)

# Very different lengths, deliberately not in length order.
PROMPTS = (
    "日本語の文章を書いてください。" * 6,
    "はい",
    "これはテストです。質問：答え",
    "ABC",
    "あいうえおかきくけこさしすせそたちつてと" * 4,
    "質問：一二三",
)


def user(text: str, params: Sampling = GREEDY) -> Request:
    return Request(messages=({"role": "user", "content": text},), sampling=params)


def make_client(config, tmp_path: Path, name: str = "cache") -> LLMClient:
    return LLMClient(config, cache=ResponseCache(tmp_path / f"{name}.sqlite"))


@pytest.fixture(scope="module")
def tokenizer(tiny_lm_dir: Path):
    return AutoTokenizer.from_pretrained(tiny_lm_dir)


@pytest.fixture(scope="module")
def reference_model(tiny_lm_dir: Path):
    """An independently loaded copy of the tiny model, for reference forward passes."""
    return AutoModelForCausalLM.from_pretrained(tiny_lm_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def eot_lm_dir(tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny tokenizer with a Llama whose weights make <end_of_turn> the greedy choice everywhere.

    The layers add nothing to the residual stream (zero o_proj / down_proj), every embedding has a
    large positive coordinate 0, the final norm keeps only that coordinate, and only the
    <end_of_turn> row of lm_head reads it: that token's logit is positive, every other logit is 0.
    """
    out = tmp_path_factory.mktemp("eot-lm")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tiny_lm_dir / name, out / name)
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir, dtype=torch.float32)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight[:, 0] = 10.0
        model.model.norm.weight.zero_()
        model.model.norm.weight[0] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[tokenizer.convert_tokens_to_ids("<end_of_turn>"), 0] = 1.0
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def gpt2_lm_dir(tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny tokenizer with a random GPT-2: absolute position embeddings, unlike Llama's RoPE."""
    from transformers import GPT2Config, GPT2LMHeadModel

    out = tmp_path_factory.mktemp("gpt2-lm")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tiny_lm_dir / name, out / name)
    tokenizer = AutoTokenizer.from_pretrained(out)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=256,
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(out)
    return out


# ---------------------------------------------------------------------------------------------
# generate
# ---------------------------------------------------------------------------------------------
def test_generate_keeps_request_order_across_length_sorted_batches(tiny_llm_config, tokenizer, tmp_path):
    config = tiny_llm_config(prompt_format="raw")
    client = make_client(config, tmp_path)
    requests = [user(p) for p in PROMPTS]
    # Precondition: the backend really reorders these requests and splits them into several batches.
    batches = client.backend._batches(requests)
    assert len(batches) == 2
    assert [i for b in batches for i in b] != list(range(len(requests)))

    results = client.generate(requests)

    assert len(results) == len(requests)
    for prompt, result in zip(PROMPTS, results, strict=True):
        assert result.ok, result.error
        assert not result.cached
        # raw format: <bos> + the text, one token per character.
        assert result.input_tokens == 1 + len(prompt)
        assert result.input_tokens == len(tokenizer("<bos>" + prompt, add_special_tokens=False).input_ids)
        # Greedy never picks a special token in the tiny model, so every row runs to max_tokens.
        assert result.output_tokens == GREEDY.max_tokens
        assert result.finish_reason == "length"
        assert len(result.text) == GREEDY.max_tokens
    assert client.usage.new_calls == len(requests)
    assert client.usage.input_tokens == sum(1 + len(p) for p in PROMPTS)
    assert client.usage.output_tokens == GREEDY.max_tokens * len(PROMPTS)

    # Each row's text is the continuation of its own prompt: the same as generating it alone.
    solo = make_client(config, tmp_path, "solo")
    for prompt, result in zip(PROMPTS, results, strict=True):
        [alone] = solo.generate([user(prompt)])
        assert alone.text == result.text
        assert alone.input_tokens == result.input_tokens


def test_generate_chat_input_tokens_match_rendered_prompt(tiny_llm_config, tokenizer, tmp_path):
    client = make_client(tiny_llm_config(), tmp_path)
    requests = [user(p) for p in PROMPTS]
    results = client.generate(requests)
    for request, result in zip(requests, results, strict=True):
        rendered = tokenizer.apply_chat_template(
            list(request.messages), tokenize=False, add_generation_prompt=True
        )
        expected = len(tokenizer(rendered, add_special_tokens=False).input_ids)
        assert result.input_tokens == expected
        # <bos> <start_of_turn> "user\n" + text <end_of_turn> "\n" <start_of_turn> "model\n"
        assert result.input_tokens == len(request.messages[0]["content"]) + 16


def test_sampled_generation_respects_max_tokens(tiny_llm_config, tmp_path):
    params = sampling(temperature=1.0, top_p=1.0, max_tokens=5, seed=7)
    client = make_client(tiny_llm_config(), tmp_path)
    results = client.generate([user(p, params) for p in PROMPTS])
    assert len(results) == len(PROMPTS)
    # A random tiny model may draw its end token first: an empty answer is a failure, never a success.
    assert any(r.ok for r in results)
    for result in results:
        if not result.ok:
            assert "empty" in (result.error or "")
            continue
        assert 1 <= result.output_tokens <= params.max_tokens
        expected = "length" if result.output_tokens == params.max_tokens else "stop"
        assert result.finish_reason == expected


def test_same_seed_same_texts_and_other_seed_differs(tiny_llm_config, tmp_path):
    def run(seed: int, name: str) -> list[str]:
        params = sampling(temperature=1.0, top_p=1.0, max_tokens=12, seed=seed)
        client = make_client(tiny_llm_config(), tmp_path, name)  # fresh client, empty cache
        results = client.generate([user(p, params) for p in PROMPTS])
        assert client.usage.new_calls == len(PROMPTS) and client.usage.cached == 0
        return [r.text for r in results]

    first = run(123, "a")
    assert run(123, "b") == first
    assert run(124, "c") != first


def test_second_call_is_served_from_cache(tiny_llm_config, tmp_path):
    config = tiny_llm_config()
    params = sampling(temperature=1.0, top_p=1.0, max_tokens=8, seed=3)
    requests = [user(p, params) for p in PROMPTS[:4]]
    client = make_client(config, tmp_path)

    first = client.generate(requests)
    assert client.usage.new_calls == 4
    assert not any(r.cached for r in first)
    assert len(client.cache) == 4

    second = client.generate(requests)
    assert client.usage.new_calls == 4  # the backend was not called again
    assert client.usage.cached == 4
    assert client.usage.requests == 8
    assert all(r.cached for r in second)
    for a, b in zip(first, second, strict=True):
        assert (a.text, a.input_tokens, a.output_tokens, a.finish_reason) == (
            b.text,
            b.input_tokens,
            b.output_tokens,
            b.finish_reason,
        )

    # A new client on the same cache file answers without ever building a backend.
    rerun = LLMClient(config, cache=ResponseCache(tmp_path / "cache.sqlite"))
    third = rerun.generate(requests)
    assert [r.text for r in third] == [r.text for r in first]
    assert all(r.cached for r in third)
    assert rerun.usage.new_calls == 0
    assert rerun._backend is None

    # A different sampling setting is a different key: the backend is called.
    client.generate([user(PROMPTS[0], sampling(temperature=1.0, top_p=1.0, max_tokens=8, seed=4))])
    assert client.usage.new_calls == 5


def test_identical_uncached_requests_are_sent_once(tiny_llm_config, tmp_path):
    client = make_client(tiny_llm_config(), tmp_path)
    results = client.generate([user("はい"), user("ABC"), user("はい")])
    assert client.usage.new_calls == 2
    assert results[0].text == results[2].text
    assert len(client.cache) == 2


def test_default_cache_location_is_jalign_llm_cache(tiny_llm_config, _isolated_env):
    cache = ResponseCache()
    assert cache.path == Path(_isolated_env["JALIGN_LLM_CACHE"])
    assert cache.path.is_file()


def test_end_of_turn_token_ends_generation(eot_lm_dir, tiny_llm_config, tmp_path):
    """A model that always emits <end_of_turn>: generation stops there, as on EOS, and says "stop".
    Its answer is empty, which the client turns into a failure (never a success, never cached)."""
    config = tiny_llm_config(model=str(eot_lm_dir))
    client = make_client(config, tmp_path)
    roomy, exact = sampling(temperature=0.0, max_tokens=5), sampling(temperature=0.0, max_tokens=1)
    requests = [user("はい", roomy), user("ABC", exact)]
    results = client.generate(requests)
    for result in results:
        assert not result.ok and result.text is None
        assert result.error == "empty answer (finish_reason=stop)"  # the special token is not text
        assert result.output_tokens == 1
        # Also when the end-of-turn token is the max_tokens-th token: the answer is complete.
        assert result.finish_reason == "stop"
    assert client.usage.failed == 2
    assert len(client.cache) == 0
    again = make_client(config, tmp_path)  # a rerun asks again
    assert not any(r.ok or r.cached for r in again.generate(requests))
    assert again.usage.new_calls == 2


def test_empty_answer_after_a_stop_sequence_is_a_failure(tiny_llm_config, tmp_path):
    """An answer that starts with a stop sequence is cut to nothing: a failure, not an empty success."""
    config = tiny_llm_config()
    [full] = make_client(config, tmp_path, "full").generate([user("はい")])
    assert full.ok and full.text
    client = make_client(config, tmp_path, "cut")
    [cut] = client.generate([user("はい", sampling(temperature=0.0, max_tokens=6, stop=(full.text[0],)))])
    assert not cut.ok and cut.text is None
    assert cut.error == "empty answer (finish_reason=stop)"
    assert len(client.cache) == 0 and client.usage.failed == 1


# ---------------------------------------------------------------------------------------------
# stop sequences
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "stops", "expected"),
    [
        ("abc\nタスク2: def", ("\nタスク",), ("abc", True)),
        ("one\n\ntwo###three", ("###", "\n\n"), ("one", True)),  # earliest stop wins, not the first listed
        ("one###two\n\nthree", ("\n\n", "###"), ("one", True)),
        ("stop at the end###", ("###",), ("stop at the end", True)),
        ("###starts with it", ("###",), ("", True)),
        ("no stop here", ("###", "\n\n"), ("no stop here", False)),
        ("no stops given", (), ("no stops given", False)),
        ("empty stop string", ("",), ("empty stop string", False)),
        ("", ("x",), ("", False)),
        ("答えは42です。次の質問", ("。",), ("答えは42です", True)),
    ],
)
def test_cut_at_stop(text, stops, expected):
    assert cut_at_stop(text, stops) == expected


def test_generate_stops_at_stop_sequence(tiny_llm_config, tmp_path):
    config = tiny_llm_config()
    long = sampling(temperature=0.0, max_tokens=12)
    [full] = make_client(config, tmp_path, "full").generate([user("これはテストです", long)])
    assert full.output_tokens == 12
    stop = full.text[5:7]
    cut = full.text.find(stop)
    assert cut >= 1

    stopping = sampling(temperature=0.0, max_tokens=12, stop=(stop,))
    [result] = make_client(config, tmp_path, "stop").generate([user("これはテストです", stopping)])
    assert result.text == full.text[:cut]
    assert stop not in result.text
    assert result.finish_reason == "stop"
    assert result.output_tokens == cut + len(stop)  # generation halted right after the stop sequence


def test_a_stop_ends_only_the_row_that_produced_it(tiny_llm_config, tmp_path):
    """One batch, two prompts: the row whose text holds the stop ends there, the other runs on."""
    config = tiny_llm_config()
    long = sampling(temperature=0.0, max_tokens=12)
    full_a, full_b = make_client(config, tmp_path, "full").generate(
        [user("これはテストです", long), user("別の質問です", long)]
    )
    stop = next(
        full_a.text[i : i + 2]
        for i in range(1, len(full_a.text) - 1)
        if full_a.text[i : i + 2] not in full_b.text and full_a.text[i : i + 2].strip()
    )
    stopping = sampling(temperature=0.0, max_tokens=12, stop=(stop,))
    a, b = make_client(config, tmp_path, "stop").generate(
        [user("これはテストです", stopping), user("別の質問です", stopping)]
    )
    assert a.text == full_a.text[: full_a.text.find(stop)] and a.finish_reason == "stop"
    assert (b.text, b.output_tokens, b.finish_reason) == (full_b.text, 12, "length")


# ---------------------------------------------------------------------------------------------
# prompt formats
# ---------------------------------------------------------------------------------------------
def test_raw_and_chat_prompt_formats_render_differently(tiny_llm_config, tmp_path):
    messages = ({"role": "system", "content": "日本語で答えて"}, {"role": "user", "content": "質問：はい"})
    request = Request(messages=messages, sampling=GREEDY)

    chat = make_client(tiny_llm_config(prompt_format="chat"), tmp_path, "chat").backend.render(request)
    raw = make_client(tiny_llm_config(prompt_format="raw"), tmp_path, "raw").backend.render(request)

    assert (
        chat == "<bos><start_of_turn>user\n日本語で答えて\n\n質問：はい<end_of_turn>\n<start_of_turn>model\n"
    )
    assert raw == "<bos>日本語で答えて\n\n質問：はい"
    assert "<start_of_turn>" in chat
    assert "<start_of_turn>" not in raw


def test_chat_format_without_template_is_an_error(tiny_lm_dir, tiny_llm_config, tmp_path):
    plain = tmp_path / "no-template"
    shutil.copytree(tiny_lm_dir, plain)
    (plain / "chat_template.jinja").unlink()
    request = user("はい")
    backend = make_client(tiny_llm_config(model=str(plain)), tmp_path, "a").backend
    with pytest.raises(ValueError, match="no chat template"):
        backend.render(request)
    raw = make_client(tiny_llm_config(model=str(plain), prompt_format="raw"), tmp_path, "b")
    assert raw.backend.render(request) == "<bos>はい"


# ---------------------------------------------------------------------------------------------
# choose
# ---------------------------------------------------------------------------------------------
CHOICES = ("A", "B", "C")
CHOOSE_PROMPTS = (
    "はい",
    "日本語の文章を書いてください。これはテストです。" * 3,
    "質問：ABC",
    "一二三四五六七八九十",
)


def reference_choice(model, tokenizer, prompt_text: str) -> tuple[dict[str, float], float]:
    """Probabilities from one unpadded full forward pass over the rendered prompt."""
    messages = [{"role": "user", "content": prompt_text}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(rendered, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1].double()
    token_ids = [tokenizer.convert_tokens_to_ids(c) for c in CHOICES]  # one character = one token
    full = torch.softmax(logits, dim=-1)[token_ids]
    restricted = torch.softmax(logits[token_ids], dim=-1)
    assert torch.allclose(full / full.sum(), restricted)
    return dict(zip(CHOICES, restricted.tolist(), strict=True)), float(full.sum())


def test_choose_matches_reference_softmax_with_left_padding(
    tiny_llm_config, tokenizer, reference_model, tmp_path
):
    client = make_client(tiny_llm_config(), tmp_path)
    requests = [user(p) for p in CHOOSE_PROMPTS]
    assert len(client.backend._batches(requests)) == 1  # one left-padded batch of different lengths

    results = client.choose(requests, CHOICES)

    references = [reference_choice(reference_model, tokenizer, p) for p in CHOOSE_PROMPTS]
    for prompt, result, (ref_probs, ref_mass) in zip(CHOOSE_PROMPTS, results, references, strict=True):
        assert result.ok, result.error
        assert set(result.probs) == set(CHOICES)
        assert sum(result.probs.values()) == pytest.approx(1.0, abs=1e-6)
        assert 0.0 < result.mass <= 1.0
        assert result.mass == pytest.approx(ref_mass, abs=1e-5)
        for choice in CHOICES:
            assert result.probs[choice] == pytest.approx(ref_probs[choice], abs=1e-5)
        assert result.best == max(ref_probs, key=ref_probs.__getitem__)
        assert result.input_tokens == len(prompt) + 16

    # The check has teeth: the prompts give clearly different distributions ...
    spread = max(abs(a[0]["A"] - b[0]["A"]) for a in references for b in references)
    assert spread > 0.02
    # ... and the same padded batch scored without its attention mask would give other numbers.
    enc = client.backend._encode([client.backend.render(r) for r in requests])
    with torch.no_grad():
        unmasked = torch.softmax(reference_model(input_ids=enc["input_ids"]).logits[:, -1].double(), dim=-1)
    short = CHOOSE_PROMPTS.index("はい")
    a_id = tokenizer.convert_tokens_to_ids("A")
    assert abs(float(unmasked[short, a_id]) - references[short][1] * references[short][0]["A"]) > 1e-3

    # Scoring each prompt alone (no padding at all) gives the same numbers as the padded batch.
    solo = make_client(tiny_llm_config(), tmp_path, "solo")
    for request, result in zip(requests, results, strict=True):
        [alone] = solo.choose([request], CHOICES)
        assert alone.mass == pytest.approx(result.mass, abs=1e-5)
        for choice in CHOICES:
            assert alone.probs[choice] == pytest.approx(result.probs[choice], abs=1e-5)

    # And a repeat is served from the cache.
    again = client.choose(requests, CHOICES)
    assert all(c.cached for c in again)
    assert [c.probs for c in again] == [c.probs for c in results]


def test_choose_left_padding_with_absolute_position_embeddings(gpt2_lm_dir, tiny_llm_config, tmp_path):
    """Padded rows must be scored at the positions they would have alone (GPT-2 has no RoPE)."""
    config = tiny_llm_config(model=str(gpt2_lm_dir))
    requests = [user(p) for p in CHOOSE_PROMPTS]
    batched = make_client(config, tmp_path, "batch").choose(requests, CHOICES)
    solo = make_client(config, tmp_path, "solo")
    for request, result in zip(requests, batched, strict=True):
        [alone] = solo.choose([request], CHOICES)
        assert alone.mass == pytest.approx(result.mass, abs=1e-5)
        for choice in CHOICES:
            assert alone.probs[choice] == pytest.approx(result.probs[choice], abs=1e-5)
    # Generation with the same padding was already right (generate() derives the positions itself).
    greedy = [user(p, sampling(temperature=0.0, max_tokens=4)) for p in CHOOSE_PROMPTS]
    texts = [g.text for g in make_client(config, tmp_path, "gen").generate(greedy)]
    assert texts == [solo.generate([r])[0].text for r in greedy]


def test_client_choose_rejects_bad_choice_sets(tiny_llm_config, tmp_path):
    client = make_client(tiny_llm_config(), tmp_path)
    with pytest.raises(ValueError, match="at least two distinct"):
        client.choose([user("はい")], ("A", "A"))
    with pytest.raises(ValueError, match="at least two distinct"):
        client.choose([user("はい")], ("A",))


def test_choice_token_ids_distinct_first_tokens(tokenizer):
    ids = choice_token_ids(tokenizer, ("A", "B"))
    # " A" starts with the space token, which both choices share: only the letters remain.
    assert ids == [[tokenizer.convert_tokens_to_ids("A")], [tokenizer.convert_tokens_to_ids("B")]]
    ids = choice_token_ids(tokenizer, ("はい", "いいえ"))
    assert ids == [[tokenizer.convert_tokens_to_ids("は")], [tokenizer.convert_tokens_to_ids("い")]]


@pytest.mark.parametrize("choices", [("AB", "AC"), ("はい", "はいはい"), ("A", "AB", "C")])
def test_choice_token_ids_rejects_shared_first_token(tokenizer, choices):
    with pytest.raises(ValueError, match="no first token that the other choices"):
        choice_token_ids(tokenizer, choices)


@pytest.mark.parametrize("k", [4096, 8])  # the nucleus within the top k; beyond it (full sort)
@pytest.mark.parametrize("top_p", [0.5, 0.9, 0.95])
def test_nucleus_from_top_k_keeps_what_transformers_top_p_keeps(k, top_p):
    from transformers import TopPLogitsWarper

    gen = torch.Generator().manual_seed(0)
    # peaked rows (a few tokens hold the mass) and flat rows (the nucleus spans thousands of tokens)
    scores = torch.cat(
        [torch.randn(4, 50_000, generator=gen) * 8, torch.randn(4, 50_000, generator=gen) * 0.3]
    )
    ids = torch.zeros(8, 3, dtype=torch.long)
    ours = NucleusFromTopK(top_p, k=k)(ids, scores.clone())
    reference = TopPLogitsWarper(top_p)(ids, scores.clone())
    assert torch.equal(torch.isfinite(ours), torch.isfinite(reference))
    assert torch.equal(ours[torch.isfinite(ours)], scores[torch.isfinite(reference)])


# -- GumbelMaxSampler: temperature, nucleus and the draw as one processor for greedy decoding ----------

LOGITS = torch.tensor([2.0, 1.6, 1.0, 0.3, -0.5, -1.0, -2.5, -4.0])


def nucleus_distribution(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """What transformers samples from: softmax of NucleusFromTopK applied to logits / temperature."""
    scaled = (logits / temperature).unsqueeze(0)
    return NucleusFromTopK(top_p)(torch.zeros(1, 1, dtype=torch.long), scaled).softmax(dim=-1)[0]


def draws(sampler: GumbelMaxSampler, logits: torch.Tensor, n: int) -> torch.Tensor:
    """n draws: one row per draw, as a batch of identical rows in one call."""
    scores = logits.repeat(n, 1)
    out = sampler(torch.zeros(n, 3, dtype=torch.long), scores)
    assert out.shape == scores.shape
    assert torch.equal((out == 0).sum(dim=-1), torch.ones(n, dtype=torch.long))  # one token kept per row
    assert bool(torch.isneginf(out[out != 0]).all())  # every other token is -inf: argmax takes the draw
    return out.argmax(dim=-1)


def frequencies(tokens: torch.Tensor, vocab: int) -> torch.Tensor:
    return torch.bincount(tokens, minlength=vocab).double() / len(tokens)


@pytest.mark.parametrize(
    ("temperature", "top_p", "k"),
    [
        (0.7, 0.9, 4096),  # the nucleus within the top k
        (1.3, 0.95, 4096),
        (0.7, 0.9, 2),  # k smaller than the nucleus: the full-sort fallback
        (1.0, 1.0, 3),  # no nucleus filtering, k smaller than the vocabulary
    ],
)
def test_gumbel_max_draws_follow_the_nucleus_distribution(temperature, top_p, k):
    expected = nucleus_distribution(LOGITS, temperature, top_p).double()
    nucleus = expected > 0
    if k < 4096:
        assert int(nucleus.sum()) > k  # the fallback path is the one exercised
    got = frequencies(draws(GumbelMaxSampler(temperature, top_p, seed=0, k=k), LOGITS, 40_000), len(LOGITS))
    assert torch.all(got[~nucleus] == 0)  # never a token outside the nucleus
    assert torch.allclose(got, expected, atol=0.012), (got, expected)
    # the tolerance is tight enough to notice a sampler that ignored the temperature
    untempered = nucleus_distribution(LOGITS, 1.0, top_p).double() if temperature != 1.0 else None
    if untempered is not None:
        assert (untempered - expected).abs().max() > 0.05


def test_gumbel_max_with_rows_inside_and_beyond_the_top_k_in_one_batch():
    flat = torch.tensor([0.3, 0.2, 0.1, 0.0, -0.1, -0.2, -0.3, -0.4])  # nucleus of most of the vocabulary
    peaked = torch.tensor([6.0, 5.5, -3.0, -3.0, -3.0, -3.0, -3.0, -3.0])  # nucleus of two tokens
    n = 20_000
    scores = torch.cat([flat.repeat(n, 1), peaked.repeat(n, 1)])
    sampler = GumbelMaxSampler(1.0, 0.9, seed=3, k=3)
    tokens = sampler(torch.zeros(2 * n, 2, dtype=torch.long), scores).argmax(dim=-1)
    for rows, logits in ((tokens[:n], flat), (tokens[n:], peaked)):
        expected = nucleus_distribution(logits, 1.0, 0.9).double()
        got = frequencies(rows, len(logits))
        assert torch.all(got[expected == 0] == 0)
        assert torch.allclose(got, expected, atol=0.015), (got, expected)


def test_gumbel_max_same_seed_same_draws():
    scores = LOGITS.repeat(64, 1)
    ids = torch.zeros(64, 1, dtype=torch.long)
    first = GumbelMaxSampler(0.8, 0.95, seed=5)
    second = GumbelMaxSampler(0.8, 0.95, seed=5)
    a = [first(ids, scores).argmax(dim=-1) for _ in range(3)]  # successive decode steps
    b = [second(ids, scores).argmax(dim=-1) for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], a[1])  # the generator advances between steps
    other = GumbelMaxSampler(0.8, 0.95, seed=6)(ids, scores).argmax(dim=-1)
    assert not torch.equal(a[0], other)


@pytest.mark.parametrize("temperature", [0.0, -0.5])
def test_gumbel_max_needs_a_positive_temperature(temperature):
    with pytest.raises(ValueError, match="temperature > 0"):
        GumbelMaxSampler(temperature, 0.9, seed=0)
