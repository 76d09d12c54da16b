"""`jalign`: one subcommand per DVC stage (modules in `stages/`) plus tools (modules in `commands/`).

This is the top layer: library (`jalign/`) -> stages (`stages/`) -> commands. Subcommands are imported
only when they run (or when `--help` lists them), so `jalign --help` and light tools such as
`jalign dedup` never pay for torch: stage modules import heavy libraries inside their functions.
"""

from __future__ import annotations

import importlib

import click

# command name -> "module:attribute". Order is the pipeline's, then the tools.
COMMANDS: dict[str, str] = {
    "models": "stages.models:main",
    "self-instruct": "stages.self_instruct:main",
    "evolve": "stages.evolve:main",
    "curate": "stages.curate:main",
    "translate": "stages.translate:main",
    "respond": "stages.respond:main",
    "judge": "stages.judge:main",
    "preferences": "stages.preferences:main",
    "classifier": "stages.classifier:main",
    "sft": "stages.sft:main",
    "dpo": "stages.dpo:main",
    "dedup": "commands.dedup:main",
    "reward": "commands.reward:main",
    "score": "commands.score:main",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use (click's documented lazy pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(cls=LazyGroup)
def main() -> None:
    """jalign: Japanese instruction and preference data, reward classifiers and QLoRA-DPO as DVC stages."""
