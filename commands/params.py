"""`jalign params`: params.yaml, the one file a run reads; `conf/` (Hydra) composes it from a preset.

- `jalign params use NAME [KEY=VALUE ...]` rewrites params.yaml from conf/config.yaml + conf/preset/NAME.yaml
  (+ overrides) and records that recipe at its top (`preset: {name, overrides}`); `compose` is the same
  with the config's default preset. `dvc exp run -S key=value` then edits params.yaml itself (no
  run-time Hydra composition): `dvc exp apply` and commits are never reverted by the next run;
- `jalign params check` validates params.yaml (every section, references between sections, the files
  it names) and lists every key that differs from its recorded recipe, with both values (`--strict`:
  any difference fails); `--preset NAME` / `--presets` validate compositions instead. As the DVC stage
  `params` (`--stamp`), it runs before any other stage, so a bad value stops the run before DVC deletes
  any output; every stage also validates the whole file before it starts (`checked_stage`);
  `check` also fails for an unpinned Hub reference or a local file nothing provides (jalign.pins);
- `jalign params docs` writes docs/params.md from the fields' help texts;
- `jalign sweep PRESET` shows the runs of the grid a preset declares (`hydra.sweeper.params`); `--queue`
  queues them as DVC experiments, `--run` also starts the queue.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import yaml

from jalign.config import ConfigError, describe, from_dict, load_yaml, param, read_params
from jalign.fetch import FetchConfig
from jalign.llm.types import llm_entry
from jalign.params import (
    CurateConfig,
    DecideConfig,
    DPOConfig,
    EncoderConfig,
    EvaluateConfig,
    EvolveConfig,
    HubConfig,
    JudgeConfig,
    LimitsConfig,
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
    "limits": LimitsConfig,
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
PRESET = "preset"  # the top-level key `jalign params use` records its recipe under
TOP_LEVEL = {"llms", PRESET, *(name.split(".")[0] for name in SECTIONS)}
CONF_DIR = "conf"
# What the `params` DVC stage writes after a successful check: constant, so that a param change reruns
# the check and the stages that use that param, nothing else.
STAMP_TEXT = "params.yaml passed `jalign params check`; every stage depends on this file (dvc.yaml).\n"


@dataclasses.dataclass(frozen=True)
class PresetRecord:
    """How params.yaml was made (written by `jalign params use`; `jalign params check` compares)."""

    name: str = param("The conf/preset/ file params.yaml was composed from (`jalign params use NAME`).")
    overrides: tuple[str, ...] = param(
        "Hydra overrides `jalign params use NAME KEY=VALUE ...` applied on top of the preset."
    )


def presets(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / CONF_DIR / "preset").glob("*.yaml"))


def default_preset(root: Path) -> str:
    """The preset conf/config.yaml's defaults list names (`- preset: cpu`)."""
    config = load_yaml(root / CONF_DIR / "config.yaml") or {}
    for entry in config.get("defaults") or []:
        if isinstance(entry, dict) and isinstance(entry.get(PRESET), str):
            return entry[PRESET]
    raise ConfigError(f"{CONF_DIR}/config.yaml: its defaults list names no preset (`- preset: NAME`)")


def compose(root: Path, preset: str | None = None, overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """The composition of conf/ with `preset` (default: the config's own) and Hydra `overrides`: the
    sections of params.yaml, without the recipe `jalign params use` records beside them."""
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


def use_command_line(preset: str, overrides: tuple[str, ...] | list[str]) -> str:
    return " ".join(["jalign params use", preset, *overrides])


def dump_like_dvc(data: dict[str, Any]) -> str:
    """YAML as DVC's `-S` writes it back (ruamel round trip), so that `dvc exp run -S key=value` changes
    only that value's line: null is an empty value; floats keep a dot (`5.0e-05`) so that PyYAML, as well
    as ruamel, reads them as numbers."""
    import io

    from ruamel.yaml import YAML  # DVC's YAML library (dvc.utils.serialize)

    def represent_float(representer: Any, value: float) -> Any:
        text = repr(value).lower()
        if "e" in text and "." not in text:
            text = text.replace("e", ".0e")
        return representer.represent_scalar("tag:yaml.org,2002:float", text)

    dumper = YAML()
    dumper.default_flow_style = False
    dumper.representer.add_representer(float, represent_float)
    stream = io.StringIO()
    dumper.dump(data, stream)
    return stream.getvalue()


def params_text(root: Path, preset: str | None = None, overrides: tuple[str, ...] = ()) -> str:
    """params.yaml as `jalign params use` writes it: a header, the recipe, the validated composition."""
    preset = preset or default_preset(root)
    params = compose(root, preset, overrides)
    validate(params, f"composition of {CONF_DIR}/ (preset {preset})")
    header = (
        f"# Written by `{use_command_line(preset, overrides)}` from {CONF_DIR}/ (config.yaml + "
        f"preset/{preset}.yaml).\n"
        "# The one file a run reads: `dvc exp run -S key=value` edits it, `dvc exp apply` and commits keep "
        "it.\n# `jalign params check` lists every key that differs from the recipe below. Empty means null.\n"
    )
    return header + dump_like_dvc({PRESET: {"name": preset, "overrides": list(overrides)}, **params})


def recipe(params: dict[str, Any]) -> PresetRecord | None:
    """The recipe params.yaml records (None when it records none)."""
    if params.get(PRESET) is None:
        return None
    return check_preset_record(params[PRESET])


def check_preset_record(value: Any) -> PresetRecord:
    if isinstance(value, str):
        raise ConfigError(
            f"preset: {value!r}: `dvc exp run -S preset=...` no longer switches presets; run "
            f"`jalign params use {value}` (it rewrites params.yaml from {CONF_DIR}/), then `dvc exp run`"
        )
    return from_dict(PresetRecord, value, PRESET)


def validate(params: dict[str, Any], where: str = "params.yaml") -> None:
    """Every section through its dataclass, the recorded recipe, references between sections; unknown
    top-level sections rejected. Raises ConfigError."""
    unknown = sorted(set(params) - TOP_LEVEL, key=str)
    if unknown:
        raise ConfigError(f"{where}: unknown section {unknown[0]!r} (known: {', '.join(sorted(TOP_LEVEL))})")
    if params.get(PRESET) is not None:
        check_preset_record(params[PRESET])
    llms = params.get("llms")
    if not isinstance(llms, dict) or not llms:
        raise ConfigError(f"{where}: llms must map names to models (docs/params.md `llms.<name>`)")
    for name in llms:
        llm_entry(llms, name)
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
    check_references(params)


def check_references(params: dict[str, Any]) -> None:
    """A name one section gives that another must define (each check one line naming both keys)."""
    encoders = sorted((params.get("classifier") or {}).get("encoders") or {})
    for name in (params.get("hub") or {}).get("classifiers") or []:
        if name not in encoders:
            raise ConfigError(
                f"hub.classifiers: {name!r} is not a classifier.encoders entry "
                f"(defined: {', '.join(encoders)})"
            )


def named_files(params: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, path) of every local file params name: the values of keys `path` and `*_path`."""
    if isinstance(params, dict):
        for name, value in params.items():
            dotted = f"{key}.{name}" if key else str(name)
            if isinstance(value, str) and (name == "path" or str(name).endswith("_path")):
                yield dotted, value
            else:
                yield from named_files(value, dotted)
    elif isinstance(params, list):
        for i, value in enumerate(params):
            yield from named_files(value, f"{key}[{i}]")


def dvc_outputs(root: Path) -> list[str]:
    """Paths dvc.yaml's stages write (templated foreach outputs skipped): DVC makes them before use."""
    pipeline = load_yaml(root / "dvc.yaml") if (root / "dvc.yaml").exists() else None
    outs = []
    for stage in ((pipeline or {}).get("stages") or {}).values():
        body = stage.get("do", stage) if isinstance(stage, dict) else {}
        for kind in ("outs", "metrics", "plots"):
            for out in body.get(kind) or []:
                path = next(iter(out)) if isinstance(out, dict) else out
                if isinstance(path, str) and "${" not in path:
                    outs.append(path.rstrip("/"))
    return outs


def check_files(params: dict[str, Any], root: Path) -> None:
    """Every local file params name exists, or a dvc.yaml stage makes it."""
    outs = dvc_outputs(root)
    for key, path in named_files(params):
        made = any(path == out or path.startswith(out + "/") for out in outs)
        if not made and not (root / path).exists():
            raise ConfigError(f"{key}: {path}: file not found (and no dvc.yaml stage makes it)")


def check_file(params_path: str | Path = "params.yaml") -> dict[str, Any]:
    """What every stage runs before it starts (well under a second): the whole params file validated,
    and under DVC (the repository root is the working directory) the files it names."""
    params = read_params(params_path)
    validate(params, str(params_path))
    if os.environ.get("DVC_STAGE"):
        check_files(params, Path.cwd())
    return params


def checked_stage(command: click.Command) -> click.Command:
    """A stage command that first checks the whole params file and, under DVC, holds params.yaml to
    the values its run started with (jalign/params_guard.py), before and after its work."""
    from jalign.params_guard import guard

    original = command.callback
    assert original is not None

    @functools.wraps(original)
    def callback(*args: Any, **kwargs: Any) -> Any:
        params_path = kwargs["params_path"]
        guard(params_path)
        check_file(params_path)
        result = original(*args, **kwargs)
        guard(params_path)
        return result

    checked = copy.copy(command)
    checked.callback = callback
    return checked


def _show(value: Any) -> str:
    text = "(absent)" if value is _ABSENT else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


_ABSENT = object()


def differences(ours: Any, theirs: Any, key: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, ours, theirs) for every leaf that differs (lists of equal length item by item)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        found = []
        for name in [*ours, *(k for k in theirs if k not in ours)]:
            dotted = f"{key}.{name}" if key else str(name)
            found += differences(ours.get(name, _ABSENT), theirs.get(name, _ABSENT), dotted)
        return found
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        return [
            d
            for i, (a, b) in enumerate(zip(ours, theirs, strict=True))
            for d in differences(a, b, f"{key}[{i}]")
        ]
    return [] if ours == theirs else [(key, ours, theirs)]


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
        "is stale. params.yaml is the one file a run reads (`jalign params use NAME` composes it from "
        "`conf/`; `dvc exp run -S` edits it). The whole file is checked before any stage starts.",
        "",
        "A field may default only to `null`, or, where its help says `absent: ...`, be left out. A key "
        "that params.yaml leaves out is added with DVC's append syntax: "
        "`dvc exp run -S +dpo.max_train_samples=64`.",
        "",
        "Each model is defined once, in `llms.<name>`, with the fields of its backend (the tables "
        "`llms.<name>` below, one per `backend`). An entry may start from another and write only what "
        "differs: `gemma-dpo: {base: gemma-chat, adapter: models/dpo/adapter}` (one level). Every LLM role "
        "(`self_instruct.generator`, `judge.judge`, `respond.responders[].llm` ...) names one and adds its "
        "own sampling: the fields of `<LLM role>`.",
    ]
    from jalign.llm.types import ENGINES, LLMRole, RaySettings, Sampling, VLLMSettings
    from jalign.training import LoraSettings

    shared = (LLMRole, Sampling, VLLMSettings, RaySettings, LoraSettings)
    sections = [(PRESET, PresetRecord)]
    sections += [(name.replace(".*", ".<name>"), cls) for name, cls in SECTIONS.items()]
    sections[1:1] = [("llms.<name>", engine) for engine in ENGINES]
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
    """Switch presets, check and document params.yaml (composed from conf/)."""


def _write_params(preset: str | None, out_path: str, overrides: tuple[str, ...]) -> None:
    from jalign.params_guard import live_owner
    from jalign.records import write_text

    root = Path.cwd()
    owner = live_owner(out_path)
    if owner is not None:
        raise ConfigError(f"{out_path}: a DVC run (pid {owner[0]}) is using it; wait for it to finish")
    text = params_text(root, preset, overrides)
    write_text(out_path, text)
    record = recipe(yaml.safe_load(text))
    assert record is not None
    what = f", {len(overrides)} override{'s' if len(overrides) != 1 else ''}" if overrides else ""
    click.echo(f"wrote {out_path} (preset {record.name}{what})", err=True)


@main.command("use")
@click.argument("preset")
@click.argument("overrides", nargs=-1)
@click.option("--out", "out_path", default="params.yaml", show_default=True, type=click.Path(dir_okay=False))
def use_command(preset: str, overrides: tuple[str, ...], out_path: str) -> None:
    """Rewrite params.yaml from conf/ with PRESET (a file of conf/preset/) and Hydra OVERRIDES
    (`train.beta=0.05`); the recipe is recorded at its top, for `jalign params check`."""
    _write_params(preset, out_path, overrides)


@main.command("compose")
@click.option("--preset", help="a file of conf/preset/ (default: the one conf/config.yaml names)")
@click.option("--out", "out_path", default="params.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
def compose_command(preset: str | None, out_path: str, overrides: tuple[str, ...]) -> None:
    """`jalign params use` with conf/config.yaml's default preset unless --preset names one."""
    _write_params(preset, out_path, overrides)


@main.command("check")
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--strict", is_flag=True, help="fail when params.yaml differs from its recorded recipe")
@click.option("--preset", "preset_names", multiple=True, help="check this preset's composition instead")
@click.option("--presets", "all_presets", is_flag=True, help="check every preset's composition instead")
@click.option(
    "--stamp",
    type=click.Path(dir_okay=False),
    help="after a successful check, write this constant file (the `params` DVC stage's output)",
)
def check_command(
    params_path: str, strict: bool, preset_names: tuple[str, ...], all_presets: bool, stamp: str | None
) -> None:
    """Validate params.yaml: every section, references between sections, the files it names. List each
    key that differs from the recipe it records (`jalign params use ...`), with both values."""
    from jalign.params_guard import guard
    from jalign.records import write_text

    root = Path.cwd()
    unrunnable: list[str] = []
    if preset_names or all_presets:
        for name in presets(root) if all_presets else preset_names:
            params = compose(root, name)
            validate(params, f"preset {name}")
            check_files(params, root)
            unrunnable += runnable_problems(params, f"preset {name}", root)
            click.echo(f"preset {name}: valid", err=True)
        fail_unrunnable(unrunnable)
        return
    guard(params_path)
    params = read_params(params_path)
    validate(params, params_path)
    check_files(params, root)
    # As the `params` stage (--stamp) the files are check_files' (paths a stage reads); a model directory
    # is checked by the stage that loads it, which names it the same way.
    unrunnable += runnable_problems(params, params_path, root, files=stamp is None)
    made = recipe(params)
    if made is None:
        message = f"{params_path}: valid; it records no preset (write it with `jalign params use NAME`)"
        if strict:
            raise ConfigError(message)
        click.echo(message, err=True)
    else:
        label = f"preset {made.name}" + (f" + {' '.join(made.overrides)}" if made.overrides else "")
        composed = compose(root, made.name, made.overrides)
        changed = differences({k: v for k, v in params.items() if k != PRESET}, composed)
        if changed:
            keys = f"{len(changed)} keys differ" if len(changed) != 1 else "1 key differs"
            click.echo(
                f"{params_path}: valid; {keys} from `{use_command_line(made.name, made.overrides)}`:",
                err=True,
            )
            for key, ours, theirs in changed:
                click.echo(f"{key}: {params_path} {_show(ours)}, {label} {_show(theirs)}", err=True)
            if strict:
                raise ConfigError(
                    f"{params_path} differs from `{use_command_line(made.name, made.overrides)}` "
                    f"in {len(changed)} key(s) (listed above): edit conf/ and run `jalign params use`"
                )
        else:
            click.echo(
                f"{params_path}: valid and equal to `{use_command_line(made.name, made.overrides)}`", err=True
            )
    fail_unrunnable(unrunnable)
    guard(params_path)  # under DVC: still the values this run started with (and that DVC will record)
    if stamp:
        write_text(stamp, STAMP_TEXT)


def runnable_problems(params: dict[str, Any], where: str, root: Path, files: bool = True) -> list[str]:
    """`where: problem` for each unpinned Hub reference and (with `files`) missing local file or model
    directory (jalign.pins)."""
    from jalign.pins import problems, unpinned_refs

    if not files:
        return [f"{where}: unpinned Hub reference {line}" for line in unpinned_refs(params)]
    return [f"{where}: {line}" for line in problems(params, root)]


def fail_unrunnable(unrunnable: list[str]) -> None:
    if unrunnable:
        raise click.ClickException(
            f"{len(unrunnable)} problem(s) keep params from running as written:\n  " + "\n  ".join(unrunnable)
        )


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


def sweep_plan(root: Path, preset: str) -> tuple[str, list[str], int]:
    """(params.yaml of the preset, the `dvc exp run --queue -S ...` arguments, number of runs)."""
    grid = sweep_grid(root, preset)
    runs = 1
    for values in grid.values():
        runs *= len(values.split(","))
    text = params_text(root, preset)
    args = [
        "exp",
        "run",
        "--queue",
        *itertools.chain.from_iterable(("-S", f"{k}={v}") for k, v in grid.items()),
    ]
    return text, args, runs


@click.command("sweep")
@click.argument("preset")
@click.option(
    "--queue", "queue", is_flag=True, help="queue the runs as DVC experiments (dvc exp run --queue)"
)
@click.option("--run", "run_now", is_flag=True, help="queue the runs and start the queue (dvc queue start)")
def sweep(preset: str, queue: bool, run_now: bool) -> None:
    """Show the runs a preset's sweep grid (hydra.sweeper.params) would queue; --queue queues them,
    --run also starts the queue. Every run's params are validated first. Each queued run starts from the
    preset's params.yaml (as `jalign params use PRESET` writes it) with its grid values; the workspace's
    params.yaml is left as it was."""
    from jalign.records import write_text

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
    text, args, _ = sweep_plan(root, preset)
    params = Path("params.yaml")
    before = params.read_text(encoding="utf-8") if params.exists() else None
    click.echo(f"queueing {len(runs)} runs of `jalign params use {preset}`: dvc {' '.join(args)}", err=True)
    write_text(params, text)
    try:
        subprocess.run([sys.executable, "-m", "dvc", *args], check=True)
    finally:
        if before is None:
            params.unlink()
        else:
            write_text(params, before)
    if run_now:
        subprocess.run([sys.executable, "-m", "dvc", "queue", "start"], check=True)
