"""`jalign params`: the configuration's one source (`conf/`, composed by Hydra) and its schema.

- `jalign params compose [--preset NAME]` writes params.yaml exactly as `dvc exp run` composes it
  (DVC's own compose function), so `dvc repro` users switch presets too;
- `jalign params check [--preset NAME]` validates a composition against every stage's schema (and, with
  no preset, that the committed params.yaml is the default composition), and fails for an unpinned Hub
  reference or a missing local file (jalign.pins);
- `jalign params docs` writes docs/params.md from the fields' help texts;
- `jalign sweep PRESET` shows the runs of the grid a preset declares (`hydra.sweeper.params`); `--queue`
  queues them as DVC experiments, `--run` also starts the queue.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from jalign.config import ConfigError, describe, from_dict, from_value, load_yaml, read_params
from jalign.fetch import FetchConfig
from jalign.llm.types import EngineSettings
from jalign.params import (
    CurateConfig,
    DecideConfig,
    DPOConfig,
    EncoderConfig,
    EvaluateConfig,
    EvolveConfig,
    HubConfig,
    JudgeConfig,
    ModelsConfig,
    PreferencesConfig,
    ReportConfig,
    RespondConfig,
    ScoreConfig,
    SelfInstructConfig,
    SFTConfig,
    TranslateConfig,
    VerifyConfig,
)

# params.yaml section -> its dataclass (jalign.params), in stage order; `*` is a mapping of named entries.
SECTIONS: dict[str, type] = {
    "fetch": FetchConfig,
    "models": ModelsConfig,
    "self_instruct": SelfInstructConfig,
    "evolve": EvolveConfig,
    "curate": CurateConfig,
    "translate": TranslateConfig,
    "respond": RespondConfig,
    "judge": JudgeConfig,
    "decide": DecideConfig,
    "verify": VerifyConfig,
    "preferences": PreferencesConfig,
    "classifier.encoders.*": EncoderConfig,
    "sft": SFTConfig,
    "dpo": DPOConfig,
    "evaluate": EvaluateConfig,
    "score": ScoreConfig,
    "hub": HubConfig,
    "report": ReportConfig,
}
TOP_LEVEL = {"llms", *(name.split(".")[0] for name in SECTIONS)}
CONF_DIR = "conf"


def compose(root: Path, preset: str | None = None, overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """The configuration `dvc exp run -S preset=NAME -S ...` would write, as a mapping."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "params.yaml"
        compose_to(root, out, preset, overrides)
        return read_params(out)


def compose_to(root: Path, out: Path, preset: str | None = None, overrides: tuple[str, ...] = ()) -> None:
    """Raises ConfigError (one line) for an unknown preset, an override Hydra cannot apply or parse."""
    from dvc.utils.hydra import compose_and_dump
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if preset is not None and preset not in presets(root):
        raise ConfigError(
            f"preset {preset!r} is not in {CONF_DIR}/preset/ (known: {', '.join(presets(root)) or 'none'})"
        )
    args = [*(([f"preset={preset}"]) if preset else []), *overrides]
    try:
        compose_and_dump(str(out), str((root / CONF_DIR).resolve()), None, "config", "", args)
    except (HydraException, OmegaConfBaseException) as exc:
        reason = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise ConfigError(f"composing {CONF_DIR}/ with {' '.join(args) or 'no overrides'}: {reason}") from exc


def validate(params: dict[str, Any], where: str = "params.yaml") -> None:
    """Every section through its dataclass; unknown top-level sections rejected. Raises ConfigError."""
    unknown = sorted(set(params) - TOP_LEVEL, key=str)
    if unknown:
        raise ConfigError(f"{where}: unknown section {unknown[0]!r} (known: {', '.join(sorted(TOP_LEVEL))})")
    llms = params.get("llms")
    if not isinstance(llms, dict) or not llms:
        raise ConfigError(f"{where}: llms must map names to models (docs/params.md `llms.<name>`)")
    for name, entry in llms.items():
        from_value(EngineSettings, entry, f"llms.{name}")
    for name, cls in SECTIONS.items():
        head, *rest = name.split(".")
        if head not in params:
            raise ConfigError(f"{where}: missing section '{head}'")
        if rest:  # classifier.encoders.*
            entries = (params[head] or {}).get(rest[0])
            if not isinstance(entries, dict) or not entries:
                raise ConfigError(f"{where}: {head}.{rest[0]} must map names to entries")
            for key, value in entries.items():
                from_dict(cls, value, f"{head}.{rest[0]}.{key}", params)
        else:
            from_dict(cls, params[head], head, params)  # roles resolved against `llms`


def presets(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / CONF_DIR / "preset").glob("*.yaml"))


def sweep_grid(root: Path, preset: str) -> dict[str, str]:
    """`hydra.sweeper.params` of a preset file: key -> comma-separated values (Hydra's sweep syntax)."""
    data = load_yaml(root / CONF_DIR / "preset" / f"{preset}.yaml") or {}
    grid = ((data.get("hydra") or {}).get("sweeper") or {}).get("params") or {}
    if not grid:
        raise ConfigError(f"conf/preset/{preset}.yaml declares no sweep (hydra.sweeper.params)")
    return {str(k): str(v) for k, v in grid.items()}


def docs_markdown() -> str:
    lines = [
        "# params.yaml reference",
        "",
        "Generated from the config dataclasses' help texts by `jalign params docs`; a test fails when it "
        "is stale. Values live in `conf/` (composed into params.yaml); a field may default only to "
        "`null` (or, where its help says so, be left out). Ranges are checked before any work starts.",
        "",
        "Each model is defined once, in `llms.<name>`, with the fields of its backend (the tables "
        "`llms.<name>` below, one per `backend`). Every LLM role (`self_instruct.generator`, `judge.judge`, "
        "`respond.responders[].llm` ...) names one and adds its own sampling: the fields of `<LLM role>`.",
    ]
    from jalign.llm.types import ENGINES, LLMRole, RaySettings, Sampling, VLLMSettings
    from jalign.training import LoraSettings

    shared = (LLMRole, Sampling, VLLMSettings, RaySettings, LoraSettings)
    sections = [(name.replace(".*", ".<name>"), cls) for name, cls in SECTIONS.items()]
    sections[:0] = [("llms.<name>", engine) for engine in ENGINES]
    sections += [
        ("<LLM role>", LLMRole),
        ("<LLM role>.sampling", Sampling),
        ("llms.<name>.vllm", VLLMSettings),
        ("llms.<name>.ray", RaySettings),
        ("<lora>", LoraSettings),
    ]
    for prefix, cls in sections:
        doc = (cls.__doc__ or "").splitlines()[0].strip()
        title = f"`{prefix}` ({doc})" if prefix == "llms.<name>" else f"`{prefix}`"
        lines += ["", f"## {title}", "", "| key | type | allowed | help |", "|---|---|---|---|"]
        for key, tp, allowed, help_text in describe(cls, prefix, shared):
            escaped = help_text.replace("|", "\\|")
            lines.append(f"| `{key}` | {tp} | {allowed} | {escaped} |")
    return "\n".join(lines) + "\n"


@click.group("params")
def main() -> None:
    """Compose, check and document the configuration (conf/ -> params.yaml)."""


@main.command("compose")
@click.option("--preset", help="a file of conf/preset/ (default: the config's own default, cpu)")
@click.option("--out", "out_path", default="params.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
def compose_command(preset: str | None, out_path: str, overrides: tuple[str, ...]) -> None:
    """Write params.yaml as `dvc exp run [-S preset=NAME] [-S OVERRIDE ...]` would."""
    root = Path.cwd()
    params = compose(root, preset, overrides)
    validate(params, f"composition of {CONF_DIR}/ (preset {preset or 'default'})")
    compose_to(root, Path(out_path), preset, overrides)
    click.echo(f"wrote {out_path} (preset {preset or 'default'})", err=True)


@main.command("check")
@click.option("--preset", help="check this preset's composition (default: every preset and params.yaml)")
def check_command(preset: str | None) -> None:
    """Validate compositions against the schema; without --preset also that params.yaml is current.
    Fails for params that would not run as written: an unpinned Hub reference, a missing local file."""
    root = Path.cwd()
    unrunnable = []
    for name in [preset] if preset else presets(root):
        params = compose(root, name)
        validate(params, f"preset {name}")
        unrunnable += runnable_problems(params, f"preset {name}", root)
        click.echo(f"preset {name}: valid", err=True)
    if preset is None:
        committed = read_params(root / "params.yaml")
        validate(committed)
        unrunnable += runnable_problems(committed, "params.yaml", root)
        if committed != compose(root):
            raise click.ClickException(
                "params.yaml differs from the composition of conf/: "
                "edit conf/ and run `jalign params compose`"
            )
        click.echo("params.yaml: valid and equal to the composition of conf/", err=True)
    if unrunnable:
        raise click.ClickException(
            f"{len(unrunnable)} problem(s) keep params from running as written:\n  " + "\n  ".join(unrunnable)
        )


def runnable_problems(params: dict[str, Any], where: str, root: Path) -> list[str]:
    """`where: problem` for each unpinned Hub reference and missing local file (jalign.pins)."""
    from jalign.pins import problems

    return [f"{where}: {line}" for line in problems(params, root)]


@main.command("docs")
@click.option(
    "--out", "out_path", default="docs/params.md", show_default=True, type=click.Path(dir_okay=False)
)
def docs_command(out_path: str) -> None:
    """Write the params reference from the fields' help texts."""
    from jalign.records import write_text

    write_text(out_path, docs_markdown())
    click.echo(f"wrote {out_path}", err=True)


def sweep_runs(grid: dict[str, str]) -> list[tuple[str, ...]]:
    """Every point of a sweep grid as its `key=value` overrides (the cartesian product DVC queues)."""
    axes = [[f"{key}={value.strip()}" for value in values.split(",")] for key, values in grid.items()]
    return list(itertools.product(*axes))


def with_overrides(params: dict[str, Any], overrides: tuple[str, ...]) -> dict[str, Any]:
    """`params` with dotted `key=value` overrides applied (values parsed as YAML, as Hydra reads them)."""
    import copy

    import yaml

    result = copy.deepcopy(params)
    for override in overrides:
        key, _, raw = override.partition("=")
        *parents, leaf = key.split(".")
        node = result
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return result


def queue_command(preset: str, grid: dict[str, str]) -> list[str]:
    """The one `dvc exp run --queue` that queues every run of the grid (DVC expands the comma sweeps)."""
    command = [sys.executable, "-m", "dvc", "exp", "run", "--queue", "-S", f"preset={preset}"]
    return command + list(itertools.chain.from_iterable(("-S", f"{k}={v}") for k, v in grid.items()))


@click.command("sweep")
@click.argument("preset")
@click.option(
    "--queue", "queue", is_flag=True, help="queue the runs as DVC experiments (dvc exp run --queue)"
)
@click.option("--run", "run_now", is_flag=True, help="queue the runs and start the queue (dvc queue start)")
def sweep(preset: str, queue: bool, run_now: bool) -> None:
    """Show the runs a preset's sweep grid (hydra.sweeper.params) would queue; --queue queues them,
    --run also starts the queue. Every run's params are validated first."""
    root = Path.cwd()
    grid = sweep_grid(root, preset)
    runs = sweep_runs(grid)
    base = compose(root, preset)
    for overrides in runs:
        validate(with_overrides(base, overrides), f"preset {preset} with {' '.join(overrides)}")
    click.echo(f"{preset}: {len(runs)} runs of preset {preset} ({' x '.join(grid)})")
    width = len(str(len(runs)))
    for i, overrides in enumerate(runs, 1):
        click.echo(f"  {i:>{width}}  {' '.join(overrides)}")
    if not (queue or run_now):
        click.echo(
            f"{len(runs)} runs, nothing queued: `jalign sweep {preset} --queue` queues them, "
            "`--run` queues and starts them"
        )
        return
    command = queue_command(preset, grid)
    click.echo(f"queueing {len(runs)} experiments: {' '.join(command[2:])}", err=True)
    subprocess.run(command, check=True)
    if run_now:
        subprocess.run([sys.executable, "-m", "dvc", "queue", "start"], check=True)
