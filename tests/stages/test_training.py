"""Training stages on a tiny random model: QLoRA NF4 DPO / IPO / KTO, SFT, and a classifier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jalign.records import write_jsonl
from jalign.reward import classifier_text
from stages import dpo, sft
from stages.classifier import classification_metrics, pairwise_accuracy, roc_auc
from stages.preferences import to_binary, to_kto, to_pairwise

PAIRS = [
    {
        "pair_id": f"p{i}",
        "prompt": f"質問{i}に答えてください。",
        "chosen": "丁寧な回答です。" * 2,
        "rejected": "いいえ。",
    }
    for i in range(6)
]


@pytest.fixture
def preference_dir(tmp_path: Path) -> Path:
    out = tmp_path / "sets"
    for split, rows in (("train", PAIRS[:4]), ("eval", PAIRS[4:])):
        write_jsonl(out / f"pairwise_{split}.jsonl", [to_pairwise(p) for p in rows])
        write_jsonl(out / f"kto_{split}.jsonl", [r for p in rows for r in to_kto(p)])
        write_jsonl(out / f"binary_{split}.jsonl", [r for p in rows for r in to_binary(p)])
    return out


def config(tiny_lm64_dir: Path, **overrides) -> dpo.TrainConfig:
    fields = dict(
        model=str(tiny_lm64_dir),
        per_device_train_batch_size=2,
        per_device_eval_batch_size=2,
        gradient_accumulation_steps=1,
        max_steps=2,
        optim="adamw_torch",
        dtype="float32",
        learning_rate=1e-3,
        max_length=64,
        lora=dpo.LoraSettings(r=4, alpha=8, dropout=0.0),
    )
    return dpo.TrainConfig(**fields | overrides)


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
    """`dvc exp run -S train.beta=...` must show up in `dvc metrics diff`."""
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


def test_sft_trains_an_adapter_that_dpo_can_start_from(tiny_lm64_dir, preference_dir, tmp_path):
    records = [{"instruction": f"指示{i}", "input": "", "output": f"出力{i}です。"} for i in range(4)]
    sft_config = sft.SFTConfig(
        model=str(tiny_lm64_dir),
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        max_steps=1,
        optim="adamw_torch",
        dtype="float32",
        quantization="none",
        max_length=64,
        lora=sft.LoraSettings(r=4, alpha=8, dropout=0.0),
    )
    metrics = sft.train(sft_config, records, tmp_path / "sft", str(tmp_path / "live-sft"))
    assert metrics["steps"] == 1 and (tmp_path / "sft" / "adapter" / "adapter_config.json").exists()
    out = dpo.train(
        config(tiny_lm64_dir, quantization="none", start_from_sft=True, max_steps=1),
        preference_dir,
        tmp_path / "sft" / "adapter",
        tmp_path / "dpo",
        str(tmp_path / "live-dpo"),
    )
    assert out["steps"] == 1


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
