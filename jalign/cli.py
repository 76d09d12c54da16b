"""`jalign`: one subcommand per DVC stage, plus tools (dedup)."""

from __future__ import annotations

import click

from stages import (
    classifier,
    curate,
    dedup,
    dpo,
    evolve,
    judge,
    models,
    preferences,
    respond,
    reward,
    self_instruct,
    sft,
    translate,
)


@click.group()
def main() -> None:
    """jalign: Japanese instruction and preference data, reward classifiers and QLoRA-DPO as DVC stages."""


for command in (
    models.main,
    self_instruct.main,
    evolve.main,
    curate.main,
    translate.main,
    respond.main,
    judge.main,
    preferences.main,
    classifier.main,
    sft.main,
    dpo.main,
    dedup.main,
    reward.main,
):
    main.add_command(command)


if __name__ == "__main__":  # `python -m jalign.cli` (e.g. under `accelerate launch -m`)
    main()
