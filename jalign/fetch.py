"""Files a preset needs that the repository does not ship (params.yaml `fetch`), downloaded from a pinned
source by the `fetch` stage into `data/eval/external/`, so `dvc repro` on a preset gets them.

A file comes either from a Hugging Face Hub repository at a commit (`hub`, `revision`, `file`:
`huggingface_hub.hf_hub_download`, the token from HF_TOKEN only) or from an HTTPS address whose path
names a git commit, checked against its SHA-256 (`url`, `sha256`: e.g. a raw.githubusercontent.com file
of a GitHub repository at a commit). Either way the bytes cannot change under a run. The default profile
fetches nothing, so the stage runs offline in no time and writes only its manifest.
"""

from __future__ import annotations

import os
import re
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from jalign.config import param
from jalign.errors import JalignError
from jalign.records import atomic_path, sha256_file

FETCH_DIR = "data/eval/external"  # the stage's one output folder; every `out` lies inside it
MANIFEST = "manifest.json"  # written by the stage inside FETCH_DIR: what came from where
COMMIT = re.compile(r"^[0-9a-f]{40}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
URL_TIMEOUT_S = 60.0


class FetchError(JalignError, OSError):
    """A pinned file could not be fetched (not there, not reachable, or not the pinned bytes)."""


def names_commit(url: str) -> bool:
    """True when one segment of the URL's path is a full git commit id (40 hex characters)."""
    path = url.split("://", 1)[-1].partition("/")[2].split("?")[0]
    return any(COMMIT.match(segment) for segment in path.split("/"))


@dataclass(frozen=True)
class FetchFile:
    """One entry of `fetch.files`: where the file goes and the pinned place it comes from."""

    out: str = param(
        f"Where the file is written: a path inside {FETCH_DIR}/ (the fetch stage's output), the path "
        "an eval set or source then names."
    )
    hub: str | None = param(
        "Hugging Face Hub repository (org/name) holding the file; with repo_type, revision, file. "
        "Exactly one of hub / url.",
        default=None,
    )
    repo_type: Literal["dataset", "model"] | None = param("Kind of the `hub` repository.", default=None)
    revision: str | None = param(
        "The `hub` commit to read the file at: 40 hex characters (a branch or tag can move).", default=None
    )
    file: str | None = param("Path of the file inside the `hub` repository.", default=None)
    url: str | None = param(
        "http(s) address whose path names a git commit (40 hex), e.g. https://raw.githubusercontent.com/"
        "ORG/REPO/COMMIT/PATH; needs sha256. Exactly one of hub / url.",
        default=None,
    )
    sha256: str | None = param(
        "SHA-256 of the file's bytes (64 hex); required with url, checked after a hub download when set.",
        default=None,
    )

    def __post_init__(self) -> None:
        out = PurePosixPath(self.out)
        if out.is_absolute() or ".." in out.parts or not str(out).startswith(f"{FETCH_DIR}/"):
            raise ValueError(f"out: {self.out!r} must be a relative path inside {FETCH_DIR}/")
        if str(out) == f"{FETCH_DIR}/{MANIFEST}":
            raise ValueError(f"out: {MANIFEST} is the stage's own manifest; choose another name")
        if (self.hub is None) == (self.url is None):
            raise ValueError(f"{self.out}: set exactly one of hub (with revision, file) or url (with sha256)")
        if self.sha256 is not None and not SHA256.match(self.sha256):
            raise ValueError(f"sha256: {self.sha256!r} is not 64 lower-case hex characters")
        if self.hub is not None:
            if self.hub.count("/") != 1 or not all(self.hub.split("/")):
                raise ValueError(f"hub: {self.hub!r} is not a Hub repository id of the form org/name")
            if self.repo_type is None or self.file is None:
                raise ValueError(f"{self.out}: a hub file needs repo_type and file")
            if self.revision is None or not COMMIT.match(self.revision):
                raise ValueError(
                    f"revision: {self.revision!r} is not a commit; pin {self.hub} to its 40-hex commit id"
                )
        else:
            assert self.url is not None
            if not self.url.startswith(("https://", "http://")):
                raise ValueError(f"url: {self.url!r} must be an http(s) address")
            if not names_commit(self.url):
                raise ValueError(f"url: {self.url} names no commit (40 hex) in its path; pin it to one")
            if self.sha256 is None or self.repo_type is not None or self.revision or self.file:
                raise ValueError(f"{self.out}: a url file needs sha256 and none of repo_type, revision, file")

    @property
    def source(self) -> str:
        """Where the bytes come from, as errors and the manifest name it."""
        if self.hub is not None:
            kind = "datasets/" if self.repo_type == "dataset" else ""
            return f"hf://{kind}{self.hub}@{self.revision}/{self.file}"
        return str(self.url)


@dataclass(frozen=True)
class FetchConfig:
    """params.yaml `fetch`."""

    files: tuple[FetchFile, ...] = param(
        f"Files the preset needs and the repository does not ship, each from a pinned source into "
        f"{FETCH_DIR}/ (the `fetch` stage); empty: nothing to fetch (the stage stays offline)."
    )

    def __post_init__(self) -> None:
        outs = [f.out for f in self.files]
        twice = sorted({out for out in outs if outs.count(out) > 1})
        if twice:
            raise ValueError(f"files: {twice[0]} is fetched twice; give each file one out path")


def fetched_paths(params: dict[str, Any]) -> list[str]:
    """The `out` of every `fetch.files` entry of a params mapping (no validation: a plain walk)."""
    files = ((params.get("fetch") or {}).get("files")) or []
    return [str(f["out"]) for f in files if isinstance(f, dict) and f.get("out")]


def fetch_file(entry: FetchFile, root: Path) -> dict[str, Any]:
    """Download one pinned file to `root / entry.out` (atomically); its manifest row."""
    target = root / entry.out
    with atomic_path(target) as tmp:
        if entry.hub is not None:
            _from_hub(entry, tmp)
        else:
            _from_url(entry, tmp)
        digest = sha256_file(tmp)
        if entry.sha256 is not None and digest != entry.sha256:
            raise FetchError(
                f"{entry.source}: its SHA-256 is {digest}, not the pinned {entry.sha256}: the source "
                "changed, or the pin is wrong; check it and update sha256"
            )
    return {"out": entry.out, "source": entry.source, "sha256": digest, "bytes": target.stat().st_size}


def _from_hub(entry: FetchFile, tmp: Path) -> None:
    """hf_hub_download into the Hugging Face cache, then a copy to `tmp`. The endpoint (HF_ENDPOINT),
    cache (HF_HUB_CACHE) and token (HF_TOKEN, never a stored login) are read from the environment now."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    assert entry.hub is not None and entry.file is not None
    where = f"{entry.hub}@{entry.revision} ({entry.repo_type})"
    try:
        cached = hf_hub_download(
            entry.hub,
            entry.file,
            repo_type=entry.repo_type,
            revision=entry.revision,
            endpoint=os.environ.get("HF_ENDPOINT") or None,
            cache_dir=os.environ.get("HF_HUB_CACHE") or None,
            token=os.environ.get("HF_TOKEN") or False,
        )
    except LocalEntryNotFoundError as exc:  # offline (HF_HUB_OFFLINE=1) or unreachable, and not cached
        raise _cannot_download(entry, exc) from None
    except RemoteEntryNotFoundError:
        raise FetchError(f"{entry.file} is not in {where}: check fetch.files' file and revision") from None
    except RevisionNotFoundError:
        raise FetchError(f"{where}: no such revision: check fetch.files' revision") from None
    except RepositoryNotFoundError:
        raise FetchError(
            f"{entry.hub}: no such {entry.repo_type} repository, or it is private or gated "
            "(set HF_TOKEN to a token that may read it)"
        ) from None
    except OSError as exc:  # unreachable, refused, another HTTP error
        raise _cannot_download(entry, exc) from None
    shutil.copyfile(cached, tmp)


def _cannot_download(entry: FetchFile, exc: BaseException) -> FetchError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return FetchError(
        f"{entry.source}: cannot download it ({reason}): connect (HF_HUB_OFFLINE unset) and rerun "
        "`dvc repro fetch`"
    )


def _from_url(entry: FetchFile, tmp: Path) -> None:
    assert entry.url is not None
    try:
        with urllib.request.urlopen(entry.url, timeout=URL_TIMEOUT_S) as response, tmp.open("wb") as fh:
            shutil.copyfileobj(response, fh, 1 << 20)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{entry.url}: HTTP {exc.code} {exc.reason}: check fetch.files' url") from None
    except OSError as exc:  # URLError (no such host, refused), a timeout
        reason = getattr(exc, "reason", None) or exc
        raise FetchError(
            f"{entry.url}: cannot download it ({reason}): connect and rerun `dvc repro fetch`"
        ) from None


def fetch_all(config: FetchConfig, root: Path, out_dir: str = FETCH_DIR) -> list[dict[str, Any]]:
    """Every file of `config` under `root`; the manifest rows, in params order. Nothing to fetch
    touches no network: the stage then writes only its (empty) manifest."""
    if out_dir.rstrip("/") != FETCH_DIR:
        raise FetchError(f"--out {out_dir}: the fetch stage writes {FETCH_DIR} (fetch.files' outs lie there)")
    (root / FETCH_DIR).mkdir(parents=True, exist_ok=True)
    return [fetch_file(entry, root) for entry in config.files]
