"""Optional LoRA / QLoRA SFT on the curated instructions (ATHEUS tuned llm-jp-3 on its instructions).

Its adapter can be the starting policy for DPO (`train.start_from_sft`). When `sft.enabled` is false
the stage writes an empty output and a metrics file saying so, so the DAG stays the same.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import click

from jalign.config import load_section, param
from jalign.records import Record, read_jsonl, user_prompt, write_json
from jalign.stage import log, setup_logging, start_stage, write_metrics
from jalign.training import (
    LoraSettings,
    Stopwatch,
    check_optimizer_device,
    check_trainer_choices,
    dvclive_callback,
    load_policy,
    lora_config,
    peak_memory_mb,
    training_dtype,
)


@dataclass(frozen=True)
class SFTConfig:
    """params.yaml `sft`."""

    enabled: bool = param("Run SFT; when false the stage writes an empty output and says so in its metrics.")
    model: str = param("Base model.")
    learning_rate: float = param("Peak learning rate (QLoRA used 1e-4 .. 2e-4).", gt=0)
    per_device_train_batch_size: int = param("Examples per device per step.", ge=1)
    gradient_accumulation_steps: int = param("Steps accumulated per update.", ge=1)
    num_train_epochs: float = param("Epochs.", gt=0)
    max_steps: int = param("> 0 caps the run (CPU profile); -1 = use num_train_epochs.", ge=-1)
    lr_scheduler_type: str = param("A transformers scheduler name.")
    optim: str = param("A transformers optimizer name (paged / 8-bit ones need CUDA).")
    seed: int = param("Training seed.", ge=0)
    dtype: Literal["bfloat16", "float16", "float32", "native"] = param(
        "Compute dtype; native: bfloat16 where the device runs it natively (CUDA, AVX512-BF16 / AMX CPUs), "
        "else float32."
    )
    quantization: Literal["nf4", "none"] = param("nf4: QLoRA; none: LoRA on the full-precision base.")
    lora: LoraSettings = param("LoRA adapter settings.")
    max_length: int = param("Tokens per example, truncated beyond.", ge=8)
    logging_steps: int = param("Log (DVCLive) every N steps.", ge=1)

    def __post_init__(self) -> None:
        if self.max_steps == 0:
            raise ValueError("max_steps must be -1 (use num_train_epochs) or > 0")
        check_trainer_choices(self.optim, self.lr_scheduler_type, "sft")


def to_messages(record: Record) -> Record:
    user = user_prompt(record)
    return {
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": record["output"]}]
    }


def train(config: SFTConfig, records: list[Record], out_dir: Path, live_dir: str) -> dict:
    import torch
    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    model, tokenizer = load_policy(config.model, config.quantization, training_dtype(config.dtype))
    args = TRLSFTConfig(
        output_dir=str(out_dir / "checkpoints"),
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        lr_scheduler_type=config.lr_scheduler_type,
        optim=config.optim,
        seed=config.seed,
        bf16=training_dtype(config.dtype) == "bfloat16",
        fp16=training_dtype(config.dtype) == "float16",
        use_cpu=not torch.cuda.is_available(),
        max_length=config.max_length,
        assistant_only_loss=False,
        logging_steps=config.logging_steps,
        save_strategy="no",
        report_to=[],
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list([to_messages(r) for r in records]),
        processing_class=tokenizer,
        peft_config=lora_config(config.lora),
        callbacks=[dvclive_callback(live_dir)],
    )
    with Stopwatch() as clock:
        result = trainer.train()
    trainer.model.save_pretrained(out_dir / "adapter")
    tokenizer.save_pretrained(out_dir / "adapter")
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    return {
        "enabled": True,
        "train_loss": round(result.training_loss, 6),
        "steps": trainer.state.global_step,
        "train_rows": len(records),
        "train_seconds": round(clock.seconds, 2),
        "peak_memory_mb": peak_memory_mb(),
    }


@click.command("sft")
@click.option("--data", "data_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--live", "live_dir", required=True, type=click.Path(file_okay=False))
@click.option("--metrics", "metrics_path", required=True, type=click.Path(dir_okay=False))
@click.option("--params", "params_path", default="params.yaml", show_default=True)
def main(data_path: str, out_dir: str, live_dir: str, metrics_path: str, params_path: str) -> None:
    """LoRA / QLoRA SFT with TRL on the curated instructions."""
    setup_logging()
    config = load_section(SFTConfig, "sft", params_path)
    start_stage("sft", config, [out_dir, metrics_path])
    check_optimizer_device(config.optim, "sft")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = read_jsonl(data_path, required=("instruction", "output"))
    if not config.enabled or not records:
        reason = "sft.enabled is false" if not config.enabled else f"{data_path} is empty"
        log.info("sft skipped: %s", reason)
        metrics = {"enabled": False, "reason": reason}
        # The declared (cache: false) output holds a file, so that git keeps it and a clone's
        # `dvc status` does not report an empty folder git never stored as deleted.
        write_json(Path(live_dir) / "metrics.json", metrics)
    else:
        metrics = train(config, records, out, live_dir)
    log.info("sft: %s", json.dumps(metrics))
    write_metrics(metrics_path, {**metrics, "model": config.model})
