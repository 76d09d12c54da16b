"""`jalign reward`: score JSONL texts with a trained preference classifier (what `judge.method: reward`
uses). Adds a `reward` field (logit(chosen) - logit(rejected)) to every record."""

from __future__ import annotations

import click

from jalign.records import read_jsonl, write_jsonl


@click.command("reward")
@click.option("--model", "model_ref", required=True, help="classifier: models/classifier/<name> or a Hub id")
@click.option("--field", default="text", show_default=True, help="text field to score")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--max-length", default=512, show_default=True, type=click.IntRange(min=8))
@click.argument("in_path", type=click.Path(exists=True, dir_okay=False))
@click.argument("out_path", type=click.Path(dir_okay=False))
def main(model_ref: str, field: str, batch_size: int, max_length: int, in_path: str, out_path: str) -> None:
    """Score every record's FIELD and write it back with a `reward` field."""
    from jalign.reward import RewardModel

    records = read_jsonl(in_path, required=(field,))
    scorer = RewardModel(model_ref, batch_size=batch_size, max_length=max_length)
    rewards = scorer.score([r[field] for r in records])
    write_jsonl(out_path, ({**r, "reward": round(x, 6)} for r, x in zip(records, rewards, strict=True)))
    click.echo(f"scored {len(records)} records", err=True)
