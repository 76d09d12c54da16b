"""Can a params mapping run as written? Every Hub reference it names is pinned to a commit, and every local
file it names exists or is made by a DVC stage (the `fetch` stage's files included). `jalign params
check` reports both for params.yaml and for every preset.

Pure walks over the plain mapping (no schema), so they see every section, whatever its shape:
- a model reference (`model`, `adapter`) that is a Hub id `org/name` must read `org/name@<commit>` (or
  carry a sibling `revision: <commit>`); the served names of remote backends (openai, openai_batch, ray
  over http) are not downloads and are left alone;
- a Hub dataset (`hf_dataset`, `reference_hf_dataset`) needs its `revision` / `reference_revision` to be
  a commit; a `fetch.files` entry needs a commit `revision` (hub) or a commit in its url plus sha256;
- a local file (`path`, `reference_path`, and local `model` / `adapter` directories) must exist under
  the project root or lie inside a path a stage produces; inside data/eval/external/ (the fetch
  stage's folder) it must be one `fetch.files` fetches.

A commit is 40 hex characters: a branch (`main`) or a tag can move under a run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from jalign.fetch import FETCH_DIR, fetched_paths, names_commit

COMMIT = re.compile(r"^[0-9a-f]{40}$")
REMOTE_BACKENDS = ("openai", "openai_batch")  # `model` is the endpoint's served name, not a download
MODEL_KEYS = ("model", "adapter")
FILE_KEYS = ("path", "reference_path")
DATASET_KEYS = {"hf_dataset": "revision", "reference_hf_dataset": "reference_revision"}


def _walk(node: Any, key: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every mapping in a params tree with its dotted key path (`evaluate.sets[1]`)."""
    if isinstance(node, dict):
        yield key, node
        for name, value in node.items():
            yield from _walk(value, f"{key}.{name}" if key else str(name))
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from _walk(value, f"{key}[{i}]")


def _served_by_name(node: dict[str, Any]) -> bool:
    backend = node.get("backend")
    ray = node.get("ray") if isinstance(node.get("ray"), dict) else {}
    return backend in REMOTE_BACKENDS or (backend == "ray" and ray.get("engine") == "http")


def is_local_ref(ref: str) -> bool:
    """A model reference that names a directory (as jalign.models.resolve reads it), not a Hub id."""
    return ref.startswith((".", "/", "models/")) or ref.count("/") > 1


def is_hub_ref(ref: str) -> bool:
    """`org/name` or `org/name@revision` (jalign.models.resolve's Hub form)."""
    if ref.startswith("pkg:") or is_local_ref(ref):
        return False
    repo_id = ref.partition("@")[0]
    return repo_id.count("/") == 1 and all(repo_id.split("/"))


def _is_commit(revision: Any) -> bool:
    return isinstance(revision, str) and COMMIT.match(revision) is not None


def unpinned_refs(params: dict[str, Any]) -> list[str]:
    """One line per Hub reference that names no commit: `key: reference (what to do)`."""
    found = []
    for key, node in _walk(params):
        for field in MODEL_KEYS:
            ref = node.get(field)
            if not isinstance(ref, str) or not is_hub_ref(ref):
                continue
            if field == "model" and _served_by_name(node):
                continue
            revision = ref.partition("@")[2] or (node.get("revision") if field == "model" else None)
            if not _is_commit(revision):
                found.append(f"{key}.{field}: {ref} (pin it: {ref.partition('@')[0]}@<40-hex commit>)")
        revisions = [(node.get(field), name) for field, name in DATASET_KEYS.items()]
        if isinstance(node.get("hub"), str) and "out" in node:  # a fetch.files entry
            revisions.append((node["hub"], "revision"))
        for repo, name in revisions:
            if isinstance(repo, str) and not _is_commit(node.get(name)):
                found.append(f"{key}.{name}: {repo} at {node.get(name)!r} (pin it: {name}: <40-hex commit>)")
        url = node.get("url")
        if isinstance(url, str) and "out" in node and not (names_commit(url) and node.get("sha256")):
            found.append(f"{key}.url: {url} (pin it: a commit in the path, and sha256)")
    return found


def _inside(path: str, folders: Iterable[str]) -> bool:
    p = PurePosixPath(path)
    return any(p == PurePosixPath(f) or PurePosixPath(f) in p.parents for f in folders)


def missing_files(params: dict[str, Any], root: Path, produced: Iterable[str] = ()) -> list[str]:
    """One line per local file or model directory the params name that is neither under `root` nor
    inside a `produced` path (a stage's output: models/dpo ...). A path inside the fetch stage's folder
    counts only when `fetch.files` fetches it: the stage replaces that folder, so a file put there by hand
    is gone after its next run."""
    produced = list(produced)
    fetched = fetched_paths(params)
    found = []
    for key, node in _walk(params):
        named = [(field, node.get(field)) for field in FILE_KEYS]
        named += [(field, node.get(field)) for field in MODEL_KEYS if field in node]
        for field, value in named:
            if not isinstance(value, str) or not value:
                continue
            if field in MODEL_KEYS and (not is_local_ref(value) or _served_by_name(node)):
                continue
            if _inside(value, [FETCH_DIR]):
                if not _inside(value, fetched):
                    found.append(f"{key}.{field}: {value} is not fetched (add it to fetch.files)")
            elif not (root / value).exists() and not _inside(value, produced):
                found.append(f"{key}.{field}: {value} does not exist and no stage makes it")
    return found


def stage_outputs(root: Path) -> list[str]:
    """The outputs of every stage in `root`/dvc.yaml (the folder part of templated `${...}` paths)."""
    import yaml

    dvc_yaml = root / "dvc.yaml"
    if not dvc_yaml.exists():
        return []
    outs = []
    for stage in (yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {}).get("stages", {}).values():
        stage = stage.get("do", stage)  # foreach stages
        for out in [*stage.get("outs", []), *stage.get("metrics", []), *stage.get("plots", [])]:
            path = next(iter(out)) if isinstance(out, dict) else str(out)
            outs.append(path.split("${")[0].rstrip("/") or path)
    return [o for o in outs if o]


def problems(params: dict[str, Any], root: Path) -> list[str]:
    """Everything that keeps `params` from running as written: unpinned Hub references, then missing
    files (a file the fetch stage or another stage writes counts as present)."""
    return [
        *(f"unpinned Hub reference {line}" for line in unpinned_refs(params)),
        *(f"missing file {line}" for line in missing_files(params, root, stage_outputs(root))),
    ]
