"""`jalign`: one subcommand per DVC stage, plus tools (dedup)."""

from __future__ import annotations

import click

from stages import curate, dedup, evolve, models, self_instruct


@click.group()
def main() -> None:
    """jalign: Japanese instruction and preference data, reward classifiers and QLoRA-DPO as DVC stages."""


for command in (models.main, self_instruct.main, evolve.main, curate.main, dedup.main):
    main.add_command(command)
