"""One DVC run at a time owns the workspace's params.yaml.

DVC 3.67 releases its repository lock while a stage's command runs. A second `dvc exp run -S ...`
started meanwhile takes the lock, writes its values into params.yaml (before anything can refuse it),
and is refused only later, by the lock on an output the first run is using. Without a guard the first
run's next stages, and its dvc.lock, would then use the second run's values.

So the first jalign stage a DVC run executes records that run (the DVC process id and start time)
with the params.yaml it started from, in `.jalign/params-owner.json` beside params.yaml. Every later
stage, before and after its work:
- of the same run: finds params.yaml as recorded, or restores it (the other version is kept in
  `.jalign/params.rejected.yaml`, with a warning), so stages and dvc.lock keep the run's own values;
- of another run while the owner is alive: restores the owner's params.yaml and refuses, one line.
Outside DVC (no DVC_STAGE in the environment) nothing is recorded or checked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from jalign.errors import JalignError

log = logging.getLogger("jalign")

RECORD = Path(".jalign") / "params-owner.json"
REJECTED = Path(".jalign") / "params.rejected.yaml"
# DVC runs a stage's command through $SHELL: the DVC process is the first ancestor that is not a shell.
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "fish"})


class WorkspaceBusy(JalignError, RuntimeError):
    """Another live DVC run owns this workspace's params.yaml."""


def dvc_run() -> tuple[int, float] | None:
    """(pid, start time) of the DVC process running this stage command; None outside a DVC stage."""
    if not os.environ.get("DVC_STAGE"):
        return None
    import psutil  # a dependency of dvc, which runs this command

    proc = psutil.Process().parent()
    while proc is not None and proc.name() in _SHELLS:
        proc = proc.parent()
    return None if proc is None else (proc.pid, proc.create_time())


def _alive(owner: tuple[int, float]) -> bool:
    import psutil

    try:
        return psutil.Process(owner[0]).create_time() == owner[1]
    except psutil.Error:
        return False


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _replace(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return record if isinstance(record, dict) and {"owner", "sha256", "text"} <= set(record) else None
    except (OSError, ValueError):
        return None


def live_owner(params_path: str | Path = "params.yaml") -> tuple[int, float] | None:
    """The DVC run that owns this workspace's params.yaml, if it is still running."""
    record = _read_record(Path(params_path).resolve().parent / RECORD)
    owner = tuple(record["owner"]) if record else None
    return owner if owner and _alive(owner) else None  # type: ignore[return-value]


def guard(params_path: str | Path = "params.yaml") -> None:
    """Claim params.yaml for this DVC run, or hold it to the values its run started with (see above)."""
    me = dvc_run()
    path = Path(params_path)
    if me is None or not path.is_file():
        return
    root = path.resolve().parent
    text = path.read_text(encoding="utf-8")
    record = _read_record(root / RECORD)
    owner = tuple(record["owner"]) if record else None
    if record and (owner == me or _alive(owner)):  # type: ignore[arg-type]
        if _digest(text) != record["sha256"]:
            _replace(root / REJECTED, text)
            _replace(path, record["text"])
            if owner == me:
                log.warning(
                    "%s changed while this DVC run was going (another `dvc exp run` in this workspace?): "
                    "restored the values this run started with; the other version is in %s",
                    path,
                    REJECTED,
                )
        if owner != me:
            raise WorkspaceBusy(
                f"{path}: another DVC run (pid {owner[0]}) is using this workspace; its params.yaml is "  # type: ignore[index]
                "kept. Run one `dvc exp run` at a time here, or queue them: `dvc exp run --queue`"
            )
        return
    _replace(root / RECORD, json.dumps({"owner": list(me), "sha256": _digest(text), "text": text}))
