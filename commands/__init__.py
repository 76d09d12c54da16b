"""`jalign`: one subcommand per DVC stage (modules in `stages/`) plus tools (modules in `commands/`).

This is the top layer: library (`jalign/`) -> stages (`stages/`) -> commands. Subcommands are imported
only when they run (or when `--help` lists them), so `jalign --help` and light tools such as
`jalign dedup` never pay for torch: stage modules import heavy libraries inside their functions.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from jalign.errors import JalignError

# command name -> "module:attribute". Order is the pipeline's, then the tools.
COMMANDS: dict[str, str] = {
    "fetch": "stages.fetch:main",
    "models": "stages.models:main",
    "self-instruct": "stages.self_instruct:main",
    "evolve": "stages.evolve:main",
    "curate": "stages.curate:main",
    "translate": "stages.translate:main",
    "respond": "stages.respond:main",
    "judge": "stages.judge:main",
    "decide": "stages.decide:main",
    "verify": "stages.verify:main",
    "preferences": "stages.preferences:main",
    "classifier": "stages.classifier:main",
    "sft": "stages.sft:main",
    "dpo": "stages.dpo:main",
    "evaluate": "stages.evaluate:main",
    "score-eval": "stages.score:main",
    "summary": "stages.summary:main",
    "publish": "stages.publish:main",
    "report": "stages.report:main",
    "dedup": "commands.dedup:main",
    "reward": "commands.reward:main",
    "verdicts": "commands.verdicts:main",
    "params": "commands.params:main",
    "sweep": "commands.params:sweep",
    "review": "commands.review:main",
    "plots-page": "commands.plots_page:main",
    "cache": "commands.cache:main",
    "score": "commands.score:main",
    "ifeval": "commands.ifeval:main",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use (click's documented lazy pattern).

    Known errors (bad params, bad input records, a missing model, the budget, the failure rate) print
    one line naming what is wrong, with secrets masked; `--debug` or JALIGN_DEBUG=1 shows the traceback.
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except JalignError as exc:
            if ctx.params.get("debug") or os.environ.get("JALIGN_DEBUG") == "1":
                raise
            from jalign.redact import redact

            click.echo(f"error: {redact(str(exc))}", err=True)
            sys.exit(1)

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
        if module_name.startswith("stages.") and any(p.name == "params_path" for p in command.params):
            # The whole params file is checked before the stage starts (commands/params.py). Imported by
            # name: checking can refuse a run but never changes a stage's outputs, so that code is not a
            # dependency of every stage in dvc.yaml (it is one of the `params` stage, which runs first).
            return importlib.import_module("commands.params").checked_stage(command)
        return command


@click.group(cls=LazyGroup)
@click.option("--debug", is_flag=True, help="Show the full traceback of an error (or set JALIGN_DEBUG=1).")
def main(debug: bool) -> None:
    """jalign: Japanese instruction and preference data, reward classifiers and QLoRA-DPO as DVC stages."""
