"""Preference classifiers (GENIAC): fine-tune an encoder on single texts, label 1 = the text holds the
chosen answer, 0 = the rejected one; the logit margin is then a reward.

One DVC `foreach` stage per configured encoder (production: a Japanese BERT and BAAI/bge-m3, as in the
article). Held-out metrics: accuracy, F1, ROC-AUC, and pairwise accuracy (reward(chosen) >
reward(rejected) on held-out pairs, as RewardBench scores reward models).
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import click

from jalign.config import load_section
from jalign.params import EncoderConfig
from jalign.records import Record, read_jsonl
from jalign.stage import log, setup_logging, start_stage, write_metrics
from jalign.training import Stopwatch, dvclive_callback, peak_memory_mb


def roc_auc(scores: list[float], labels: list[int]) -> float | None:
    """Probability that a random positive outscores a random negative (ties count half)."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return round(wins / (len(pos) * len(neg)), 6)


def pairwise_accuracy(rows: list[Record], rewards: list[float]) -> float | None:
    by_pair: dict[str, dict[int, float]] = defaultdict(dict)
    for row, reward in zip(rows, rewards, strict=True):
        by_pair[row["pair_id"]][row["label"]] = reward
    pairs = [p for p in by_pair.values() if set(p) == {0, 1}]
    return round(sum(p[1] > p[0] for p in pairs) / len(pairs), 6) if pairs else None


def classification_metrics(rows: list[Record], rewards: list[float]) -> dict:
    labels = [int(r["label"]) for r in rows]
    predicted = [int(r > 0) for r in rewards]
    tp = sum(p == y == 1 for p, y in zip(predicted, labels, strict=True))
    fp = sum(p == 1 and y == 0 for p, y in zip(predicted, labels, strict=True))
    fn = sum(p == 0 and y == 1 for p, y in zip(predicted, labels, strict=True))
    accuracy = sum(p == y for p, y in zip(predicted, labels, strict=True)) / len(labels) if labels else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return {
        "eval_rows": len(rows),
        "accuracy": None if accuracy is None else round(accuracy, 6),
        "f1": None if f1 is None else round(f1, 6),
        "roc_auc": roc_auc(rewards, labels),
        "pairwise_accuracy": pairwise_accuracy(rows, rewards),
    }


def train(config: EncoderConfig, train_rows: list[Record], out_dir: Path, live_dir: str) -> dict:
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from jalign.models import resolve

    source = resolve(config.model)
    kwargs = source.pretrained_kwargs()
    with source.downloading():
        tokenizer = AutoTokenizer.from_pretrained(**kwargs)
        model = AutoModelForSequenceClassification.from_pretrained(
            **kwargs,
            num_labels=2,
            id2label={0: "rejected", 1: "chosen"},
            label2id={"rejected": 0, "chosen": 1},
        )
    dataset = Dataset.from_list([{"text": r["text"], "label": int(r["label"])} for r in train_rows]).map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=config.max_length),
        batched=True,
        remove_columns=["text"],
    )
    args = TrainingArguments(
        output_dir=str(out_dir / "checkpoints"),
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio
        seed=config.seed,
        use_cpu=not torch.cuda.is_available(),
        logging_steps=1,
        save_strategy="no",
        report_to=[],
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[dvclive_callback(live_dir)],
    )
    with Stopwatch() as clock:
        result = trainer.train()
    trainer.save_model(str(out_dir))
    tokenizer.save_pretrained(out_dir)
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    return {
        "train_loss": round(result.training_loss, 6),
        "train_rows": len(train_rows),
        "train_seconds": round(clock.seconds, 2),
        "peak_memory_mb": peak_memory_mb(),
    }


@click.command("classifier")
@click.option("--name", required=True, help="key under classifier.encoders")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--live", "live_dir", required=True, type=click.Path(file_okay=False))
@click.option("--metrics", "metrics_path", required=True, type=click.Path(dir_okay=False))
@click.option("--params", "params_path", default="params.yaml", show_default=True)
def main(name: str, data_dir: str, out_dir: str, live_dir: str, metrics_path: str, params_path: str) -> None:
    """Train one preference classifier and score it on the held-out split."""
    from jalign.reward import RewardModel

    setup_logging()
    config = load_section(EncoderConfig, f"classifier.encoders.{name}", params_path)
    start_stage(f"classifier.{name}", config, [out_dir, metrics_path])
    train_rows = read_jsonl(Path(data_dir) / "binary_train.jsonl", required=("text",))
    eval_rows = read_jsonl(Path(data_dir) / "binary_eval.jsonl", required=("text",))
    if not train_rows:
        raise click.ClickException(
            f"{data_dir}/binary_train.jsonl is empty: no preference pairs to learn from"
        )
    out = Path(out_dir)
    stats = train(config, train_rows, out, live_dir)
    rewards = RewardModel(str(out), max_length=config.max_length).score([r["text"] for r in eval_rows])
    metrics = {**classification_metrics(eval_rows, rewards), **stats, "encoder": name, "model": config.model}
    log.info("classifier %s: %s", name, json.dumps(metrics))
    write_metrics(metrics_path, {**metrics})
