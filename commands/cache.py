"""`jalign cache`: share the LLM response cache, so a team never pays twice for the same answer.

An entry's key hashes everything that determines the answer (model identity, sampling, messages), never
a secret, so entries from different machines merge safely: importing keeps what is already there.

    jalign cache export llm-cache.jsonl.gz        # on the machine that paid
    dvc add llm-cache.jsonl.gz && dvc push          # (or any shared storage)
    dvc pull llm-cache.jsonl.gz && jalign cache import llm-cache.jsonl.gz   # on a colleague's clone
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import click

from jalign.llm.cache import ResponseCache
from jalign.records import RecordError, atomic_path

_KEY = re.compile(r"^[0-9a-f]{64}$")


def _open(path: Path, mode: str) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", encoding="utf-8")  # type: ignore[return-value]
    return path.open(mode, encoding="utf-8")


def read_entries(path: Path) -> Iterator[tuple[str, dict]]:
    """(key, answer) per line; a bad line names file, line and field."""
    with _open(path, "r") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict) or not _KEY.match(str(row.get("key", ""))):
                raise RecordError(f"{where}: field 'key' must be a 64-digit hex cache key")
            value = row.get("value")
            if not isinstance(value, dict) or not ({"text", "probs"} & set(value)):
                raise RecordError(f"{where}: field 'value' must be a cached answer (with text or probs)")
            if "text" in value and not (isinstance(value["text"], str) and value["text"].strip()):
                raise RecordError(f"{where}: field 'value.text' is empty: an empty answer is never cached")
            yield row["key"], value


@click.group("cache")
def main() -> None:
    """Export and import LLM answers (the response cache), to share them with a team."""


@main.command("export")
@click.argument("out_path", type=click.Path(dir_okay=False, path_type=Path))
def export(out_path: Path) -> None:
    """Write every cached answer to OUT_PATH (JSONL; gzip when it ends in .gz)."""
    cache = ResponseCache()
    n = 0
    with (
        atomic_path(out_path) as tmp,
        (
            gzip.open(tmp, "wt", encoding="utf-8")
            if out_path.suffix == ".gz"
            else tmp.open("w", encoding="utf-8")
        ) as fh,
    ):
        for key, value in cache.items():
            fh.write(json.dumps({"key": key, "value": json.loads(value)}, ensure_ascii=False) + "\n")
            n += 1
    click.echo(f"exported {n} answers from {cache.path} to {out_path}", err=True)


@main.command("import")
@click.argument("in_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_(in_path: Path) -> None:
    """Add the answers in IN_PATH to the cache; answers already there are kept."""
    cache = ResponseCache()
    entries = dict(read_entries(in_path))  # validate the whole file before writing anything
    added = cache.add_missing(entries)
    click.echo(
        f"imported {added} new answers ({len(entries) - added} already cached) into {cache.path}", err=True
    )
