"""Publishing to the Hugging Face Hub: per-row licence accounting, deterministic Parquet, pushing.

Records carry `license` (a licence id or a list of them) and `model_terms` (terms of the models that
wrote them, e.g. `["gemma"]`). An artifact's licence set is the union over its rows (and, for a model,
its base model's terms); it is refused when it holds a licence outside the allowed list that was not
explicitly overridden. Publishing the same artifacts twice makes no Hub commit: Parquet bytes depend on
the rows alone, and `huggingface_hub` skips files whose remote oid equals the local one and then skips
the empty commit. The token is only ever passed to `HfApi`; error text is redacted before it surfaces.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jalign.errors import JalignError
from jalign.records import Record, RecordError, line_of, sha256_file
from jalign.redact import redact as redact_known

UNKNOWN = "unknown"
# Files a publish never deletes from a repo (the Hub writes .gitattributes at creation).
KEEP_REMOTE = frozenset({".gitattributes"})


class LicenseError(JalignError, ValueError):
    """An artifact holds a licence or model terms that are neither allowed nor overridden."""


class PublishError(JalignError, RuntimeError):
    """A Hub call failed; the message never holds the token."""


# -- licences -----------------------------------------------------------------------------------------


def normalize_license(value: str) -> str:
    """Hub-style licence id: lower case, spaces as dashes, a trailing "(...)" note dropped.

    `CC0-1.0` -> `cc0-1.0`; `gemma (Gemma Terms of Use)` (jalign_model.json) -> `gemma`.
    """
    text = value.strip().split(" (", 1)[0].strip().lower()
    return re.sub(r"\s+", "-", text) or UNKNOWN


def _ids(value: Any, field_name: str, where: str, missing: list[str]) -> list[str]:
    if value is None or value == "" or value == []:
        return list(missing)
    if isinstance(value, str):
        return [normalize_license(value)]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return sorted({normalize_license(v) for v in value})
    raise RecordError(
        f"{where}: field '{field_name}' must be a licence id or a list of them, got {value!r:.80}"
    )


def row_licenses(record: Record, where: str) -> tuple[list[str], list[str]]:
    """(licences, model terms) of one row. A row without a licence is `unknown`, never assumed free."""
    licenses = _ids(record.get("license"), "license", where, missing=[UNKNOWN])
    terms = _ids(record.get("model_terms"), "model_terms", where, missing=[])
    return licenses, terms


def with_normalized_licenses(record: Record, where: str) -> Record:
    """The row as published: `license` and `model_terms` always lists of normalised ids."""
    licenses, terms = row_licenses(record, where)
    return {**record, "license": licenses, "model_terms": terms}


@dataclass
class LicenseTally:
    """Rows per licence id (license ∪ model_terms, counted once per row) and where they come from."""

    rows: Counter[str] = field(default_factory=Counter)
    files: dict[str, Counter[str]] = field(default_factory=dict)  # licence -> file -> rows
    origins: dict[str, Counter[str]] = field(default_factory=dict)  # licence -> row `source` -> rows
    models: dict[str, list[str]] = field(default_factory=dict)  # licence -> base models carrying it

    def add_rows(self, records: Sequence[Record], file_label: str) -> None:
        for i, record in enumerate(records):
            licenses, terms = row_licenses(record, f"{file_label}:{line_of(records, i)}")
            for licence in sorted(set(licenses) | set(terms)):
                self.rows[licence] += 1
                self.files.setdefault(licence, Counter())[file_label] += 1
                source = record.get("source")
                if isinstance(source, str) and source:
                    self.origins.setdefault(licence, Counter())[source] += 1

    def add_model(self, licence: str, model_label: str) -> None:
        self.rows.setdefault(licence, 0)
        self.models.setdefault(licence, []).append(model_label)

    @property
    def licenses(self) -> list[str]:
        return sorted(self.rows)

    def describe(self, licence: str) -> str:
        """`3 rows: a.jsonl (2), b.jsonl (1); row sources: oasst2 (3); base model X`."""
        parts = [f"{self.rows[licence]} rows"]
        files = self.files.get(licence)
        if files:
            parts.append(", ".join(f"{name} ({n})" for name, n in sorted(files.items())))
        origins = self.origins.get(licence)
        if origins:
            parts.append("row sources: " + ", ".join(f"{name} ({n})" for name, n in sorted(origins.items())))
        for model in self.models.get(licence, []):
            parts.append(f"base model {model}")
        return f"{parts[0]}: {'; '.join(parts[1:])}" if len(parts) > 1 else parts[0]

    def counted(self, overridden: Sequence[str] = ()) -> list[str]:
        """The licence set, counted: `apache-2.0 ×120`, `gemma ×120 + base`, `mit (base)`; `+ base` /
        `(base)`: the base model carries it too / only the base model does."""
        parts = []
        for licence in self.licenses:
            n, base = self.rows[licence], licence in self.models
            text = f"{licence} ×{n}" if n else licence
            if base:
                text += " + base" if n else " (base)"
            parts.append(text + (" (override)" if licence in overridden else ""))
        return parts or ["none"]

    def as_dict(self) -> dict[str, Any]:
        return {
            licence: {
                "rows": self.rows[licence],
                "files": dict(sorted(self.files.get(licence, Counter()).items())),
                "row_sources": dict(sorted(self.origins.get(licence, Counter()).items())),
                "base_models": self.models.get(licence, []),
            }
            for licence in self.licenses
        }


def check_licenses(
    repo: str, tally: LicenseTally, allowed: Sequence[str], overrides: Sequence[str]
) -> list[str]:
    """The licences accepted only by override; raises LicenseError (one line, see `refusal`) naming every
    refused licence.

    `unknown` is never allowed (HubConfig rejects it in allowed_licenses); only an override accepts it.
    """
    outside = [lic for lic in tally.licenses if lic not in allowed or lic == UNKNOWN]
    refused = [lic for lic in outside if lic not in overrides]
    if refused:
        raise LicenseError(refusal(repo, tally, refused))
    return outside


def refusal(repo: str, tally: LicenseTally, refused: Sequence[str]) -> str:
    """`REPO: refused — reason; fix: ...` on one line. Rows per file and row source stay in the plan
    (metrics/hub.meta.json `licenses`); a row without a licence is traced to its file, since the fix is
    there, and a base model without one to the setting that names it."""
    reasons, fixes = [], []
    named = [lic for lic in refused if lic != UNKNOWN]
    if named:
        reasons.append(f"{', '.join(named)} not in hub.allowed_licenses")
        fixes.append(f"add {', '.join(named)} to hub.override_licenses")
    if UNKNOWN in refused:
        files = tally.files.get(UNKNOWN)
        if files:
            n = sum(files.values())
            reasons.append(f"{n} row{'' if n == 1 else 's'} without a licence in {', '.join(sorted(files))}")
            fixes.append("set `license` on those rows")
        for model in tally.models.get(UNKNOWN, []):
            reasons.append(f"no known licence for base model {model}")
            fixes.append("name its licence in hub.base_model_licenses")
        fixes[-1] += " (or add unknown to hub.override_licenses)"
    return f"{repo}: refused — {', '.join(reasons)}; fix: {'; '.join(fixes)}"


# -- Parquet ------------------------------------------------------------------------------------------


def write_parquet(records: Sequence[Record], path: Path, where: str) -> None:
    """Write rows as Parquet whose bytes depend on the rows alone (same rows -> same file).

    Columns are the union of keys in first-seen order; types are inferred over every row, so a column
    mixing types fails with its name. Fixed writer options; Parquet holds no timestamps.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, None] = {}
    for record in records:
        columns.update(dict.fromkeys(record))
    arrays = {}
    for name in columns:
        try:
            arrays[name] = pa.array([record.get(name) for record in records])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise RecordError(f"{where}: field '{name}' holds values of incompatible types ({exc})") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(arrays),
        path,
        compression="zstd",
        compression_level=3,
        use_dictionary=True,
        write_statistics=True,
        row_group_size=50_000,
        version="2.6",
        data_page_version="1.0",
        store_schema=True,
    )


# -- dvc.lock -----------------------------------------------------------------------------------------


def lock_inputs(lock: dict[str, Any], artifact: str) -> dict[str, Any] | None:
    """The dvc.lock stage that wrote `artifact` (or a folder holding it): its deps' and output's md5."""
    for stage, entry in (lock.get("stages") or {}).items():
        for out in entry.get("outs") or []:
            out_path = str(out.get("path", "")).rstrip("/")
            if artifact == out_path or artifact.startswith(out_path + "/"):
                deps = [{"path": d["path"], "md5": d.get("md5")} for d in entry.get("deps") or []]
                return {"stage": stage, "deps": deps, "out": {"path": out_path, "md5": out.get("md5")}}
    return None


# -- pushing ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadFile:
    path_in_repo: str
    local_path: Path
    size: int
    sha256: str

    @classmethod
    def of(cls, path_in_repo: str, local_path: Path) -> UploadFile:
        return cls(path_in_repo, local_path, local_path.stat().st_size, sha256_file(local_path))


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Remove these secrets, the environment's known secrets (HF_TOKEN ...) and URL credentials from text
    that may reach a log, a metric or an error."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return redact_known(text)


def push_repo(
    api: Any,
    repo_id: str,
    repo_type: str,
    files: Sequence[UploadFile],
    *,
    private: bool,
    message: str,
    description: str,
) -> dict[str, Any]:
    """Create the repo if needed and commit `files` (deleting remote files no longer published).

    One commit per repo; none at all when nothing changed (the client drops unchanged files, then the
    empty commit). `parent_commit` pins the head we looked at, so a concurrent publish fails instead of
    being overwritten.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    info = api.repo_info(repo_id, repo_type=repo_type)
    remote = api.list_repo_files(repo_id, repo_type=repo_type, revision=info.sha)
    planned = {f.path_in_repo for f in files}
    operations: list[Any] = [CommitOperationAdd(f.path_in_repo, str(f.local_path)) for f in files]
    operations += [
        CommitOperationDelete(p) for p in sorted(remote) if p not in planned and p not in KEEP_REMOTE
    ]
    commit = api.create_commit(
        repo_id,
        operations,
        commit_message=message,
        commit_description=description,
        repo_type=repo_type,
        parent_commit=info.sha,
    )
    return {
        "commit": commit.oid,
        "committed": commit.oid != info.sha,
        "previous_commit": info.sha,
        "private": info.private,
    }
