"""`jalign score`: Arena-Hard-style scores (win rate against a baseline) with bootstrap 95% CIs."""

from __future__ import annotations

import json

import click

from jalign.records import RecordError
from jalign.scoring import ScoringError, read_battles, score_battles


def _ci(entry: dict) -> str:
    if entry["ci_low"] is None:
        return "n/a"
    return f"{entry['ci_low']:.2f} - {entry['ci_high']:.2f}"


def format_table(result: dict[str, dict], style_control: bool) -> str:
    """Plain-text leaderboard, in the order of `result` (best score first)."""
    header = ["model", "score", "95% CI", "battles"]
    if style_control:
        header += ["style-controlled", "95% CI (style)"]
    rows = []
    for model, entry in result.items():
        row = [model, f"{entry['score']:.2f}", _ci(entry), str(entry["battles"])]
        if style_control:
            controlled = entry["style_controlled"]
            row += [f"{controlled['score']:.2f}", _ci(controlled)]
        rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        # model names left-aligned, numbers right-aligned
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

    return "\n".join([line(header), *(line(r) for r in rows), *_self_battles_line(result)])


def _self_battles_line(result: dict[str, dict]) -> list[str]:
    """The self-battles left out of the fit, so that a table never hides rows it did not score."""
    counts = {model: entry["self_battles"] for model, entry in result.items() if entry.get("self_battles")}
    if not counts:
        return []
    per_model = ", ".join(f"{model} {n}" for model, n in counts.items())
    return [
        f"ignored {sum(counts.values())} self-battles (a model against itself carries no information): "
        f"{per_model}"
    ]


@click.command("score")
@click.option("--battles", "battles_path", required=True, type=click.Path(dir_okay=False), help="JSONL")
@click.option("--baseline", required=True, help="the model every score is a win rate against (50.0)")
@click.option("--bootstrap", default=1000, show_default=True, type=click.IntRange(min=1), help="CI rounds")
@click.option("--seed", default=0, show_default=True, type=int, help="bootstrap seed")
@click.option("--style-control", is_flag=True, help="also fit length/markdown style control (conv_metadata)")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def main(
    battles_path: str, baseline: str, bootstrap: int, seed: int, style_control: bool, as_json: bool
) -> None:
    """Bradley-Terry scores from a battles JSONL (Arena-Hard-Auto v0.1 / Chatbot Arena format): each
    model's expected win rate against BASELINE, with a bootstrap 95% CI, best first. A model's battles
    against itself carry no information: they are left out and counted ("self_battles")."""
    try:
        battles = read_battles(battles_path, style_control=style_control)
        if not battles:
            raise ScoringError(f"{battles_path}: no battles to score")
        result = score_battles(battles, baseline, bootstrap=bootstrap, seed=seed, style_control=style_control)
    except (RecordError, ScoringError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        click.echo(format_table(result, style_control))
