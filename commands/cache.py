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
import math
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import click

from jalign.llm.cache import ResponseCache
from jalign.records import RecordError, atomic_path, iter_jsonl

_KEY = re.compile(r"^[0-9a-f]{64}$")


def _count(value: dict, field: str, where: str) -> None:
    n = value.get(field)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise RecordError(f"{where}: field 'value.{field}' must be a non-negative integer, got {n!r:.80}")


def _check_value(value: object, where: str) -> None:
    """The shape LLMClient reads back (generate: text + token counts; choose: probs + mass + input
    tokens), so an imported entry can never break a later stage."""
    if not isinstance(value, dict) or not ({"text", "probs"} & set(value)):
        raise RecordError(f"{where}: field 'value' must be a cached answer (with text or probs)")
    if "text" in value:
        if not isinstance(value["text"], str):
            raise RecordError(f"{where}: field 'value.text' must be a string, got {value['text']!r:.80}")
        if not value["text"].strip():
            raise RecordError(f"{where}: field 'value.text' is empty: an empty answer is never cached")
        _count(value, "input_tokens", where)
        _count(value, "output_tokens", where)
        reason = value.get("finish_reason")
        if reason is not None and not isinstance(reason, str):
            raise RecordError(
                f"{where}: field 'value.finish_reason' must be a string or null, got {reason!r:.80}"
            )
        return
    probs, mass = value["probs"], value.get("mass")
    if not isinstance(probs, dict) or not probs or not all(_probability(p) for p in probs.values()):
        raise RecordError(
            f"{where}: field 'value.probs' must map choices to probabilities, got {probs!r:.80}"
        )
    if isinstance(mass, bool) or not isinstance(mass, int | float) or not math.isfinite(mass) or mass < 0:
        raise RecordError(f"{where}: field 'value.mass' must be a non-negative number, got {mass!r:.80}")
    _count(value, "input_tokens", where)


def _probability(p: object) -> bool:
    return not isinstance(p, bool) and isinstance(p, int | float) and 0.0 <= p <= 1.0


def read_entries(path: Path) -> Iterator[tuple[str, dict]]:
    """(key, answer) per line of PATH (gunzipped when it ends in .gz), decoded by the records reader; a
    bad line names file, line and field, a broken gzip stream names the file."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as fh:
            for lineno, row in iter_jsonl(fh, path):
                where = f"{path}:{lineno}"
                if not _KEY.match(str(row.get("key", ""))):
                    raise RecordError(f"{where}: field 'key' must be a 64-digit hex cache key")
                _check_value(row.get("value"), where)
                yield row["key"], row["value"]
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise RecordError(f"{path}: not a readable gzip file ({exc})") from None


@click.group("cache")
def main() -> None:
    """Export and import LLM answers (the response cache), to share them with a team.

    The cache is the file JALIGN_LLM_CACHE names (relative: from the repository root), else
    <repository root>/.jalign/llm-cache.sqlite: the one every stage reads.
    """


@main.command("export")
@click.argument("out_path", type=click.Path(dir_okay=False, path_type=Path))
def export(out_path: Path) -> None:
    """Write every answer of the LLM cache to OUT_PATH (JSONL; gzip when it ends in .gz). Entries
    `import` would refuse (an empty answer an older cache kept) are left out and counted.

    The cache read is the file JALIGN_LLM_CACHE names (relative: from the repository root), else
    <repository root>/.jalign/llm-cache.sqlite.
    """
    cache = ResponseCache()
    n, left_out = 0, 0
    with (
        atomic_path(out_path) as tmp,
        (
            gzip.open(tmp, "wt", encoding="utf-8")
            if out_path.suffix == ".gz"
            else tmp.open("w", encoding="utf-8")
        ) as fh,
    ):
        for key, value in cache.items():
            answer = json.loads(value)
            try:
                _check_value(answer, f"{cache.path}: key {key}")
            except RecordError:
                left_out += 1
                continue
            fh.write(json.dumps({"key": key, "value": answer}, ensure_ascii=False) + "\n")
            n += 1
    skipped = f"; left out {left_out} unusable entries (e.g. empty answers)" if left_out else ""
    click.echo(f"exported {n} answers from {cache.path} to {out_path}{skipped}", err=True)


@main.command("import")
@click.argument("in_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_(in_path: Path) -> None:
    """Add the answers in IN_PATH to the LLM cache that stages read; answers already there are kept.

    That cache is the file JALIGN_LLM_CACHE names (relative: from the repository root), else
    <repository root>/.jalign/llm-cache.sqlite. The line printed at the end names it.
    """
    cache = ResponseCache()
    entries = dict(read_entries(in_path))  # validate the whole file before writing anything
    added = cache.add_missing(entries)
    click.echo(
        f"imported {added} new answers ({len(entries) - added} already cached) into {cache.path}", err=True
    )
