"""dvc.yaml cannot drift from the code: every stage lists the first-party modules its command really
imports (the static closure of `import` statements from the CLI entry, lazy imports included), the
files its params name, and pyproject.toml (the pins). LLM stages may list `jalign` wholesale (a rerun is
answered from the cache); training stages keep exact lists."""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import pytest
import yaml

from commands import COMMANDS

REPO = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("jalign", "stages", "commands")
ENTRY_POINT = re.compile(r"^(?:jalign|stages|commands)(?:\.\w+)+:\w+$")
# Stages whose reruns are cheap (answered from the LLM cache, or pure and fast) may list jalign/ wholesale.
CHEAP_STAGES = {
    "self_instruct",
    "evolve",
    "curate",
    "translate",
    "respond",
    "judge",
    "decide",
    "verify",
    "preferences",
    "evaluate",
    "summary",
    "score",
    "publish",
    "report",
    "params",  # the check before every stage: validation only, seconds
}


def module_file(module: str) -> Path | None:
    base = REPO.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imported_modules(path: Path, module: str) -> set[str]:
    """First-party modules imported anywhere in a file (top level or inside functions)."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import module`
        elif module != "commands" and isinstance(node, ast.Constant) and ENTRY_POINT.match(str(node.value)):
            # "jalign.packaged_e5:write_...", run by importlib. The CLI's registry is the exception: its
            # strings name every subcommand, and stage_entry picks the one a stage runs.
            found.add(node.value.partition(":")[0])
    return {m for m in found if m.split(".")[0] in FIRST_PARTY and module_file(m)}


def closure(entry: str) -> set[Path]:
    """Files executed when `entry` is imported: its import closure, with every parent __init__.py."""
    todo, seen = [entry], set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts)) if module_file(".".join(parts[:i]))]
        todo += sorted(imported_modules(module_file(module), module) - seen)  # type: ignore[arg-type]
    return {module_file(m).relative_to(REPO) for m in seen}  # type: ignore[union-attr]


def stage_entry(cmd: str) -> str:
    """`jalign <sub> ...` -> the module that defines <sub>."""
    words = cmd.split()
    assert words[0] == "jalign", cmd
    return COMMANDS[words[1]].partition(":")[0]


def stages() -> dict[str, dict]:
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    out = {}
    for name, stage in dvc["stages"].items():
        if "foreach" in stage:  # one representative of a foreach stage
            stage = copy.deepcopy(stage["do"])
            stage["cmd"] = stage["cmd"].replace("${key}", "x")
            stage["deps"] = [d.replace("${key}", "x") for d in stage["deps"]]
        out[name] = stage
    return out


def covered(path: Path, deps: list[str]) -> bool:
    return any(path == Path(d) or Path(d) in path.parents for d in deps)


def missing_deps(name: str, stage: dict) -> list[str]:
    deps = [str(d) for d in stage.get("deps", [])]
    code = closure("commands") | closure(stage_entry(stage["cmd"]))
    missing = [str(p) for p in sorted(code) if not covered(p, deps)]
    if "pyproject.toml" not in deps:
        missing.append("pyproject.toml")
    if name not in CHEAP_STAGES and "jalign" in deps:
        missing.append("(training / pure stages list exact modules, not jalign/ wholesale)")
    return missing


@pytest.mark.parametrize("name", sorted(stages()))
def test_every_stage_lists_the_modules_it_imports(name):
    assert missing_deps(name, stages()[name]) == []


def extra_deps(stage: dict) -> list[str]:
    """First-party modules a training stage lists but never imports: each one retrains for nothing."""
    code = {str(p) for p in closure("commands") | closure(stage_entry(stage["cmd"]))}
    return sorted(d for d in map(str, stage.get("deps", [])) if d.endswith(".py") and d not in code)


@pytest.mark.parametrize("name", sorted(set(stages()) - CHEAP_STAGES))
def test_training_stages_list_no_module_they_do_not_import(name):
    assert extra_deps(stages()[name]) == []


def test_the_params_schema_does_not_pull_llm_backends_into_training():
    """jalign.params reads jalign.llm.types; the package's __init__ re-exports nothing, so a change to a
    backend or the client is not a retrain (it was: 10 such files were dpo dependencies)."""
    dpo = {str(p) for p in closure("stages.dpo")}
    assert "jalign/llm/types.py" in dpo
    assert not {"jalign/llm/client.py", "jalign/llm/cache.py", "jalign/llm/transformers_backend.py"} & dpo


def test_the_check_fails_when_an_import_is_not_listed():
    stage = copy.deepcopy(stages()["dpo"])
    stage["deps"] = [d for d in stage["deps"] if d != "jalign/training.py"]
    assert "jalign/training.py" in missing_deps("dpo", stage)
    stage = copy.deepcopy(stages()["decide"])
    stage["deps"] = [d for d in stage["deps"] if d != "stages/decide.py"]
    assert "stages/decide.py" in missing_deps("decide", stage)  # the stage's own module


def test_no_stage_module_imports_another():
    """A stage is a thin command over library code: what two stages share (schemas in jalign.params,
    pure functions) lives in jalign/, so a stage's deps never include another stage's module."""
    found = {}
    for path in sorted((REPO / "stages").glob("*.py")):
        module = f"stages.{path.stem}"
        others = {m for m in imported_modules(path, module) if m.startswith("stages.") and m != module}
        if others:
            found[module] = sorted(others)
    assert found == {}


def test_closure_sees_lazy_imports_inside_functions():
    assert Path("jalign/llm/transformers_backend.py") in closure("jalign.llm.client")
    assert Path("jalign/models.py") in closure("jalign.reward")
    assert Path("jalign/packaged_e5.py") in closure("jalign.models")  # named as "module:function"


def params_paths(params: dict) -> dict[str, list[str]]:
    """Local files each section's params name (eval sets, translation sources)."""
    evaluate = [s[k] for s in params["evaluate"]["sets"] for k in ("path", "reference_path") if s.get(k)]
    sources = [s["path"] for s in params["translate"]["sources"] if s.get("path")]
    published = [p for name in params["hub"]["classifiers"] for p in (f"models/classifier/{name}",
                                                                     f"metrics/classifier/{name}.meta.json")]  # fmt: skip
    return {"evaluate": evaluate, "translate": sources, "curate": evaluate, "preferences": evaluate,
            "publish": published, "report": evaluate}  # fmt: skip


def uncovered(params: dict) -> list[str]:
    all_stages = stages()
    return [f"{name}: {path} (named in params) is not in its deps"
            for name, paths in params_paths(params).items() for path in paths
            if not covered(Path(path), [str(d) for d in all_stages[name].get("deps", [])])]  # fmt: skip


def test_every_file_a_stage_reads_from_params_is_a_dependency():
    assert uncovered(yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize("preset", ["karasu", "sweep-001"])
def test_every_file_a_preset_fetches_is_a_dependency_of_the_stages_reading_it(preset):
    from commands.params import compose

    params = compose(REPO, preset)
    assert any(p.startswith("data/eval/external/") for p in params_paths(params)["evaluate"])
    assert uncovered(params) == []
