"""Session-wide test setup: offline, single-threaded, every cache in a temp dir, and a tiny real LM.

The environment is set at import time (before torch / transformers / huggingface_hub read it) and
again, with the session's temp paths, by the autouse `_isolated_env` fixture.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Test helpers that are not tests (fake_openai.py) import by name from this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))

_OFFLINE_ENV = {
    "OMP_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
os.environ.update(_OFFLINE_ENV)

import torch  # noqa: E402  (after the environment above)

torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
GEMMA_TEMPLATE = REPO_ROOT / "jalign" / "chat_templates" / "gemma.jinja"

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>", "<start_of_turn>", "<end_of_turn>")
# Every character the tests put in a prompt or a choice; anything else becomes <unk>.
TINY_CORPUS = (
    "日本語の文章を書いてください。これはテストです。質問：答え、はい いいえ 一二三四五六七八九十"
    "あいうえおかきくけこさしすせそたちつてとなにぬねのまみむめもやゆよらりるれろわをん"
    "アイウエオカキクケコサシスセソタチツテトナニヌネノマミムメモヤユヨラリルレロワヲンー"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    " .,:;!?()[]<>/-_'\"\n\t#*=+"
)


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Offline flags plus JALIGN_HOME, JALIGN_LLM_CACHE and DVC's site cache in session temp dirs."""
    root = tmp_path_factory.mktemp("env")
    env = {
        **_OFFLINE_ENV,
        "DVC_SITE_CACHE_DIR": str(root / "dvc-site-cache"),
        "JALIGN_HOME": str(root / "jalign-home"),
        "JALIGN_LLM_CACHE": str(root / "llm-cache" / "llm-cache.sqlite"),  # a file path
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        torch.set_num_threads(1)
        yield env


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny but real causal LM directory, built offline: char-level tokenizer + random Llama.

    The tokenizer maps each corpus character to one token (a BPE model without merges), so a prompt's
    token count is its number of characters plus one per special token. The lm_head rows of the
    special tokens are zeroed: greedy decoding then never emits EOS / end-of-turn / pad (their logit
    is 0 while the maximum over the other ~170 tokens is positive), so greedy runs always reach
    max_tokens. Sampling still can emit them.
    """
    from tokenizers import Tokenizer, decoders, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny-lm")
    chars = sorted(set(TINY_CORPUS))
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *chars])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.decoder = decoders.Fuse()  # tokens are characters: join them without spaces
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    tokenizer.chat_template = GEMMA_TEMPLATE.read_text(encoding="utf-8")
    tokenizer.save_pretrained(out)

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.2,  # peaked next-token distributions: padding mistakes show up clearly
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for token in SPECIAL_TOKENS:
            model.lm_head.weight[tokenizer.convert_tokens_to_ids(token)] = 0.0
    model.save_pretrained(out, safe_serialization=True)
    assert (out / "model.safetensors").exists() and (out / "config.json").exists()
    return out


@pytest.fixture
def tiny_llm_config(tiny_lm_dir: Path) -> Callable[..., Any]:
    """Factory: a complete LLMConfig (tests/helpers.py) for the tiny model; keyword arguments override
    the fields (`sampling` as a Sampling or a dict of overrides)."""
    from helpers import llm_config

    from jalign.llm.types import LLMConfig

    def make(**overrides: Any) -> LLMConfig:
        fields: dict[str, Any] = {
            "model": str(tiny_lm_dir),
            "backend": "transformers",
            "dtype": "float32",
            "batch_size": 4,
            "device": "cpu",
            "prompt_format": "chat",
            **overrides,
        }
        return llm_config(**fields)

    return make


@pytest.fixture(scope="session")
def tiny_lm64_dir(tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared tiny model widened to hidden 64: bitsandbytes' CPU inference kernels repack 4-bit
    weights in 64-element blocks along the input dimension, so NF4 layers need in_features >= 64."""
    import shutil

    import torch
    from transformers import AutoConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-lm-64")
    for name in tiny_lm_dir.iterdir():
        if "token" in name.name or name.name == "chat_template.jinja":
            shutil.copy2(name, out / name.name)
    config = AutoConfig.from_pretrained(tiny_lm_dir)
    config.hidden_size, config.intermediate_size, config.head_dim = 64, 128, 32
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_vllm_lm_dir(tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`tiny_lm_dir` (its tokenizer, chat template and zeroed special-token rows) with head_dim 64, which
    vLLM's CPU attention kernels support (the tiny Llama has 16). Not Qwen2, the karasu preset's
    architecture: for a qwen2 config transformers loads Qwen2's own tokenizer class instead of the
    char-level tokenizer.json, and every prompt became the same 13 tokens."""
    import shutil

    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-vllm-lm")
    for name in tiny_lm_dir.iterdir():
        if "token" in name.name or name.name == "chat_template.jinja":
            shutil.copy2(name, out / name.name)
    tokenizer = AutoTokenizer.from_pretrained(out)
    config = AutoConfig.from_pretrained(tiny_lm_dir)
    config.hidden_size, config.intermediate_size, config.head_dim = 128, 256, 64
    config.num_key_value_heads = 1
    config.max_position_embeddings = 2048  # room for the evaluate stage's judge prompts, one token per char
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for token in SPECIAL_TOKENS:
            model.lm_head.weight[tokenizer.convert_tokens_to_ids(token)] = 0.0
    model.save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="session")
def tiny_vllm_adapter(tiny_vllm_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter on `tiny_vllm_lm_dir`, trained with PEFT for a few steps to continue one sentence:
    a real adapter whose answers differ from the base model's."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("tiny-vllm-adapter")
    tokenizer = AutoTokenizer.from_pretrained(tiny_vllm_lm_dir)
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_vllm_lm_dir, dtype=torch.float32)
    lora = LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]
    )
    model = get_peft_model(base, lora)
    batch = tokenizer(["これはテストです。日本語の文章を書いてください。"] * 2, return_tensors="pt")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    for _ in range(15):
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out)
    return out
