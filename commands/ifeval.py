"""`jalign ifeval`: score Japanese answers on M-IFEval's verifiable instructions, strict or loose."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import click

from jalign.ifeval.evaluation import accuracy_table, evaluate_rows, read_ifeval_file


def _percent(entry: Mapping[str, Any]) -> str:
    return f"{100 * entry['accuracy']:.1f}%"


def format_table(table: Mapping[str, Any], mode: str) -> str:
    """Prompt- and instruction-level accuracy, then one line per instruction id (count and %)."""
    lines = []
    for label, field in (("prompt-level", "prompt_level"), ("instruction-level", "instruction_level")):
        entry = table[field]
        lines.append(f"{label} accuracy ({mode}): {entry['correct']}/{entry['total']} {_percent(entry)}")
    per_id = table["per_instruction"]
    width = max((len(i) for i in per_id), default=0)
    lines += ["", f"{'instruction id':<{width}}  followed  total       %"]
    for instruction_id, entry in per_id.items():
        lines.append(
            f"{instruction_id:<{width}}  {entry['correct']:>8}  {entry['total']:>5}  {_percent(entry):>6}"
        )
    return "\n".join(lines)


@click.command("ifeval")
@click.option(
    "--mode", type=click.Choice(["strict", "loose"]), default="strict", show_default=True, help="IFEval mode"
)
@click.option("--json", "as_json", is_flag=True, help="one JSON line per input row instead of a table")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="worker processes; 2 helps only on an idle machine (benchmarks/RESULTS.md, ifeval)",
)
@click.argument("file", type=click.Path(dir_okay=False))
def main(mode: str, as_json: bool, jobs: int, file: str) -> None:
    """Check the responses in FILE (JSONL: prompt, response, instruction_id_list, kwargs, optional key)
    against M-IFEval's Japanese instructions. Loose mode also accepts a response once its first/last
    line or its markdown `*` are removed."""
    rows = read_ifeval_file(file)
    results = evaluate_rows(rows, mode, jobs=jobs)  # type: ignore[arg-type]  (click.Choice: a valid mode)
    if as_json:
        for result in results:
            click.echo(json.dumps(result, ensure_ascii=False))
    else:
        click.echo(format_table(accuracy_table(results, rows), mode))
