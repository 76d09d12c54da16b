"""Preference tuning with TRL and QLoRA: DPO (sigmoid), IPO, or KTO on the unpaired set.

params -> TRL config -> trainer, nothing more. Karasu's hyper-parameters (learning_rate 5e-6, batch 4,
eval batch 2, seed 42, gradient accumulation 4, cosine, 1 epoch, bfloat16, paged_adamw_8bit) are the
karasu preset (docs/configuration.md); the default profile shrinks steps and lengths so a CPU finishes in
minutes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from jalign.config import load_section
from jalign.params import DPOConfig
from jalign.records import read_jsonl
from jalign.stage import log, setup_logging, start_stage, write_metrics
from jalign.training import (
    Stopwatch,
    check_optimizer_device,
    dvclive_callback,
    load_policy,
    lora_config,
    peak_memory_mb,
    training_dtype,
)

TRAINING_FIELDS = {"pairwise": ("prompt", "chosen", "rejected"), "kto": ("prompt", "completion", "label")}


def load_split(directory: Path, loss: str, split: str, limit: int | None) -> list[dict]:
    """The rows of one split with only the fields the trainer reads (provenance stays in the file)."""
    kind = "kto" if loss == "kto" else "pairwise"
    rows = read_jsonl(directory / f"{kind}_{split}.jsonl")
    rows = [{k: row[k] for k in TRAINING_FIELDS[kind]} for row in rows]
    return rows if limit is None else rows[:limit]


def trl_args(config: DPOConfig, output_dir: str):
    """params -> TRL config (DPOConfig or KTOConfig)."""
    from trl import DPOConfig, KTOConfig

    common = {
        "output_dir": output_dir,
        "beta": config.beta,
        "learning_rate": config.learning_rate,
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "per_device_eval_batch_size": config.per_device_eval_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "num_train_epochs": config.num_train_epochs,
        "max_steps": config.max_steps,
        "lr_scheduler_type": config.lr_scheduler_type,
        "warmup_steps": config.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio
        "optim": config.optim,
        "seed": config.seed,
        "bf16": training_dtype(config.dtype) == "bfloat16",
        "fp16": training_dtype(config.dtype) == "float16",
        "use_cpu": not _cuda(),
        "max_length": config.max_length,
        "precompute_ref_log_probs": config.precompute_ref_log_probs,
        "gradient_checkpointing": config.gradient_checkpointing,
        "logging_steps": config.logging_steps,
        "eval_strategy": "no",
        "save_strategy": "no",
        "report_to": [],  # the DVCLive callback is added explicitly
        "dataloader_num_workers": 0,
    }
    if config.loss == "kto":
        return KTOConfig(**common)
    return DPOConfig(loss_type=[config.loss], **common)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def train(config: DPOConfig, data_dir: Path, sft_adapter: Path | None, out_dir: Path, live_dir: str) -> dict:
    from datasets import Dataset
    from trl import DPOTrainer, KTOTrainer

    train_rows = load_split(data_dir, config.loss, "train", config.max_train_samples)
    eval_rows = load_split(data_dir, config.loss, "eval", config.max_eval_samples)
    if not train_rows:
        raise click.ClickException(f"{data_dir}: no training rows for loss {config.loss!r}")
    model, tokenizer = load_policy(config.model, config.quantization, training_dtype(config.dtype))
    peft_config = lora_config(config.lora)
    if config.start_from_sft and sft_adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, sft_adapter, is_trainable=True)
        peft_config = None  # TRL copies the loaded adapter as the reference ("ref") adapter
    trainer_cls = KTOTrainer if config.loss == "kto" else DPOTrainer
    # The clock includes trainer construction: precompute_ref_log_probs runs its reference pass there.
    with Stopwatch() as clock:
        trainer = trainer_cls(
            model=model,
            args=trl_args(config, str(out_dir / "checkpoints")),
            train_dataset=Dataset.from_list(train_rows),
            eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[dvclive_callback(live_dir)],
        )
        result = trainer.train()
    evaluation = trainer.evaluate() if eval_rows else {}
    trainer.model.save_pretrained(out_dir / "adapter")
    tokenizer.save_pretrained(out_dir / "adapter")
    tokens = trainer.state.num_input_tokens_seen or _logged_tokens(trainer)
    return {
        "loss_type": config.loss,
        "beta": config.beta,
        "train_loss": _round(result.training_loss),
        "eval_loss": _round(evaluation.get("eval_loss")),
        "eval_reward_accuracy": _round(evaluation.get("eval_rewards/accuracies")),
        "eval_reward_margin": _round(evaluation.get("eval_rewards/margins")),
        "steps": trainer.state.global_step,
        "train_rows": len(train_rows),
        "eval_rows": len(eval_rows),
        "train_seconds": round(clock.seconds, 2),
        "tokens_per_second": round(tokens / clock.seconds, 2) if tokens else None,
        "peak_memory_mb": peak_memory_mb(),
        "quantization": config.quantization,
        "dtype": training_dtype(config.dtype),
    }


def _logged_tokens(trainer) -> int:
    for entry in reversed(trainer.state.log_history):
        if "num_tokens" in entry:
            return int(entry["num_tokens"])
    return 0


def _round(value: float | None) -> float | None:
    return (
        None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 6)
    )


@click.command("dpo")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--sft-adapter", "sft_dir", type=click.Path(file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--live", "live_dir", required=True, type=click.Path(file_okay=False))
@click.option("--metrics", "metrics_path", required=True, type=click.Path(dir_okay=False))
@click.option("--params", "params_path", default="params.yaml", show_default=True)
def main(
    data_dir: str, sft_dir: str | None, out_dir: str, live_dir: str, metrics_path: str, params_path: str
) -> None:
    """QLoRA preference tuning (DPO / IPO / KTO) with TRL; adapter to --out, metrics to --metrics."""
    setup_logging()
    config = load_section(DPOConfig, "dpo", params_path)
    start_stage("dpo", config, [out_dir, metrics_path])
    check_optimizer_device(config.optim, "dpo")
    sft_adapter = Path(sft_dir) / "adapter" if sft_dir and (Path(sft_dir) / "adapter").exists() else None
    if config.start_from_sft and sft_adapter is None:
        raise click.ClickException(
            "dpo.start_from_sft is true but the sft stage wrote no adapter (sft.enabled?)"
        )
    metrics = train(config, Path(data_dir), sft_adapter, Path(out_dir), live_dir)
    log.info("dpo: %s", json.dumps(metrics))
    write_metrics(metrics_path, {**metrics, "model": config.model})
