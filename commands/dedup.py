"""`jalign dedup`: character-level ROUGE-L near-duplicate removal for any JSONL of instructions."""

from __future__ import annotations

import click

from jalign.dedup import near_duplicate_mask
from jalign.records import read_jsonl, write_jsonl


@click.command("dedup")
@click.option("--threshold", required=True, type=click.FloatRange(0.0, 1.0), help="drop if ROUGE-L F1 > T")
@click.option("--field", default="instruction", show_default=True, help="text field to compare")
@click.argument("in_path", type=click.Path(exists=True, dir_okay=False))
@click.argument("out_path", type=click.Path(dir_okay=False))
def main(threshold: float, field: str, in_path: str, out_path: str) -> None:
    """Keep, in input order, each record whose character-level ROUGE-L F1 (NFKC, whitespace removed)
    against every record kept so far is not greater than THRESHOLD."""
    records = read_jsonl(in_path, required=(field,))
    keep = near_duplicate_mask([r[field] for r in records], threshold)
    kept = write_jsonl(out_path, (r for r, k in zip(records, keep, strict=True) if k))
    click.echo(
        f"kept {kept} of {len(records)} records ({len(records) - kept} near-duplicates removed)", err=True
    )
