"""Training stages on a tiny random model: QLoRA NF4 DPO / IPO / KTO, SFT, and a classifier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import repo_config
from safetensors.torch import load_file

from jalign.params import DPOConfig, SFTConfig
from jalign.records import write_jsonl
from jalign.reward import classifier_text
from jalign.training import LoraSettings
from stages import dpo, sft
from stages.classifier import classification_metrics, pairwise_accuracy, roc_auc
from stages.preferences import to_binary, to_kto, to_pairwise

PAIRS = [
    {
        "pair_id": f"p{i}",
        "prompt": f"質問{i}に答えてください。",
        "chosen": "丁寧な回答です。" * 2,
        "rejected": "いいえ。",
        "license": ["cc0-1.0"],
        "model_terms": ["gemma"],
    }
    for i in range(6)
]
LORA = LoraSettings(r=4, alpha=8, dropout=0.0, target_modules="all-linear")


@pytest.fixture
def preference_dir(tmp_path: Path) -> Path:
    out = tmp_path / "sets"
    for split, rows in (("train", PAIRS[:4]), ("eval", PAIRS[4:])):
        write_jsonl(out / f"pairwise_{split}.jsonl", [to_pairwise(p) for p in rows])
        write_jsonl(out / f"kto_{split}.jsonl", [r for p in rows for r in to_kto(p)])
        write_jsonl(out / f"binary_{split}.jsonl", [r for p in rows for r in to_binary(p)])
    return out


def config(tiny_lm64_dir: Path, **overrides) -> DPOConfig:
    """The repo's train section, shrunk for the tiny model."""
    fields = dict(
        model=str(tiny_lm64_dir),
        per_device_train_batch_size=2,
        per_device_eval_batch_size=2,
        gradient_accumulation_steps=1,
        max_steps=2,
        optim="adamw_torch",
        dtype="float32",
        learning_rate=1e-3,
        warmup_ratio=0.0,
        max_length=64,
        lora=LORA,
    )
    return repo_config(DPOConfig, "dpo", **fields | overrides)


def test_load_split_keeps_only_the_fields_the_trainer_reads(preference_dir):
    pairwise = dpo.load_split(preference_dir, "sigmoid", "train", None)
    assert len(pairwise) == 4 and all(set(r) == {"prompt", "chosen", "rejected"} for r in pairwise)
    kto = dpo.load_split(preference_dir, "kto", "eval", 3)
    assert len(kto) == 3 and all(set(r) == {"prompt", "completion", "label"} for r in kto)
    # the provenance stays in the files
    assert '"license": ["cc0-1.0"]' in (preference_dir / "pairwise_train.jsonl").read_text(encoding="utf-8")


@pytest.mark.parametrize("loss", ["sigmoid", "ipo", "kto"])
def test_qlora_nf4_preference_training_runs_and_saves_an_adapter(
    tiny_lm64_dir, preference_dir, tmp_path, loss
):
    out = tmp_path / "dpo"
    metrics = dpo.train(
        config(tiny_lm64_dir, loss=loss, quantization="nf4"),
        preference_dir,
        None,
        out,
        str(tmp_path / "live"),
    )
    assert metrics["steps"] == 2 and metrics["loss_type"] == loss
    assert metrics["train_loss"] is not None and metrics["eval_loss"] is not None
    assert metrics["peak_memory_mb"] > 0 and metrics["tokens_per_second"] > 0
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "LORA" and adapter["r"] == 4
    # DVCLive wrote the loss curve that dvc.yaml's plots read.
    plots = tmp_path / "live" / "plots" / "metrics"
    assert (plots / "loss.tsv").exists()
    if loss != "kto":  # KTOTrainer logs no per-step margins for tiny batches without both labels
        assert (plots / "rewards" / "margins.tsv").exists()


def test_beta_changes_the_dpo_metrics(tiny_lm64_dir, preference_dir, tmp_path):
    """`dvc exp run -S dpo.beta=...` must show up in `dvc metrics diff`."""
    runs = [
        dpo.train(
            config(tiny_lm64_dir, beta=beta, quantization="none"),
            preference_dir,
            None,
            tmp_path / f"b{beta}",
            str(tmp_path / f"live{beta}"),
        )
        for beta in (0.01, 0.5)
    ]
    assert runs[0]["eval_loss"] != runs[1]["eval_loss"]
    assert runs[0]["eval_reward_margin"] != runs[1]["eval_reward_margin"]


def test_nf4_model_is_really_4bit(tiny_lm64_dir):
    import bitsandbytes as bnb

    from jalign.training import load_policy

    model, _ = load_policy(str(tiny_lm64_dir), "nf4", "float32")
    linear4 = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert linear4 and all(m.weight.quant_type == "nf4" for m in linear4)


def lora_weights(adapter_dir: Path) -> dict[str, torch.Tensor]:
    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    return {k: v for k, v in weights.items() if ".lora_A." in k or ".lora_B." in k}


def test_sft_trains_an_adapter_that_dpo_starts_from(tiny_lm64_dir, preference_dir, tmp_path):
    """DPO with start_from_sft begins from the SFT LoRA weights, not from a fresh adapter: after one
    step at a tiny learning rate its adapter is still the SFT adapter, while a fresh adapter's lora_B
    starts at zero (PEFT's init) and stays near it."""
    records = [{"instruction": f"指示{i}", "input": "", "output": f"出力{i}です。"} for i in range(4)]
    sft_config = repo_config(
        SFTConfig,
        "sft",
        model=str(tiny_lm64_dir),
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        max_steps=1,
        learning_rate=1e-2,  # one big step: lora_B moves well away from its zero init
        optim="adamw_torch",
        dtype="float32",
        quantization="none",
        max_length=64,
        lora=LORA,
    )
    metrics = sft.train(sft_config, records, tmp_path / "sft", str(tmp_path / "live-sft"))
    assert metrics["steps"] == 1 and (tmp_path / "sft" / "adapter" / "adapter_config.json").exists()
    sft_weights = lora_weights(tmp_path / "sft" / "adapter")
    lora_b = [k for k in sft_weights if ".lora_B." in k]
    assert lora_b and min(float(sft_weights[k].abs().max()) for k in lora_b) > 1e-3

    def dpo_from_sft(start_from_sft: bool, name: str) -> dict[str, torch.Tensor]:
        out = dpo.train(
            config(
                tiny_lm64_dir,
                quantization="none",
                start_from_sft=start_from_sft,
                max_steps=1,
                learning_rate=1e-7,  # one tiny step: the adapter stays where it started
            ),
            preference_dir,
            tmp_path / "sft" / "adapter",
            tmp_path / name,
            str(tmp_path / f"live-{name}"),
        )
        assert out["steps"] == 1
        return lora_weights(tmp_path / name / "adapter")

    continued = dpo_from_sft(True, "dpo")
    assert set(continued) == set(sft_weights)  # the same LoRA layers
    for key, weight in sft_weights.items():
        assert torch.allclose(continued[key], weight, atol=1e-5), key  # moved one 1e-7 step at most
    fresh = dpo_from_sft(False, "dpo-fresh")  # the same run with the branch off
    assert set(fresh) == set(sft_weights)
    assert max(float(fresh[k].abs().max()) for k in lora_b) < 1e-5  # a fresh lora_B: ~0
    assert not any(torch.allclose(fresh[k], sft_weights[k], atol=1e-5) for k in lora_b)


def test_classifier_metrics_by_hand():
    assert roc_auc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert roc_auc([0.1, 0.8, 0.9, 0.2], [1, 1, 0, 0]) == 0.25
    assert roc_auc([0.5, 0.5], [1, 0]) == 0.5
    rows = [
        {"pair_id": "a", "label": 1},
        {"pair_id": "a", "label": 0},
        {"pair_id": "b", "label": 1},
        {"pair_id": "b", "label": 0},
        {"pair_id": "c", "label": 1},
    ]
    assert pairwise_accuracy(rows, [2.0, 1.0, -1.0, 0.5, 3.0]) == 0.5  # c has no partner
    m = classification_metrics(rows, [2.0, 1.0, -1.0, 0.5, 3.0])
    assert m["accuracy"] == 2 / 5 and m["f1"] == round(2 * 2 / (2 * 2 + 2 + 1), 6)


def test_classifier_text_holds_prompt_and_answer():
    text = classifier_text("質問", "回答")
    assert "質問" in text and "回答" in text and text.index("質問") < text.index("回答")


def test_skipped_sft_leaves_a_file_in_its_live_folder_for_git(tmp_path):
    """`sft.enabled: false` (the CPU profile): the declared `cache: false` output must hold a file, or a
    clone (git stores no empty folder) reports it deleted and reruns sft and everything after it."""
    from click.testing import CliRunner
    from helpers import PARAMS

    data = tmp_path / "curated.jsonl"
    write_jsonl(data, [{"id": "i1", "instruction": "挨拶してください。", "output": "こんにちは。"}])
    live, metrics = tmp_path / "dvclive" / "sft", tmp_path / "metrics" / "sft.json"
    result = CliRunner().invoke(sft.main, ["--data", str(data), "--out", str(tmp_path / "models" / "sft"),
                                           "--live", str(live), "--metrics", str(metrics), "--params", str(PARAMS)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((live / "metrics.json").read_text()) == {
        "enabled": False,
        "reason": "sft.enabled is false",
    }
    # The metric holds no figure (a skipped stage has none); the report beside it says why.
    assert json.loads(metrics.read_text()) == {}
    report = json.loads((metrics.parent / "sft.meta.json").read_text())
    assert report["enabled"] is False and report["reason"] == "sft.enabled is false"
