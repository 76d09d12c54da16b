"""Optional LoRA / QLoRA SFT on the curated instructions (ATHEUS tuned llm-jp-3 on its instructions).

Its adapter can be the starting policy for DPO (`dpo.start_from_sft`). When `sft.enabled` is false
the stage writes an empty output and a metrics file saying so, so the DAG stays the same.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click

from jalign.config import load_section
from jalign.params import SFTConfig
from jalign.records import Record, read_jsonl, user_prompt, write_json
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
