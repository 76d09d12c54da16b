"""Source prompt datasets: a local JSONL/Parquet file or a Hugging Face dataset id, with field mapping,
row filters, a row limit and a licence that travels with every record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jalign.config import param
from jalign.records import Record, RecordError, line_of, read_jsonl


@dataclass(frozen=True)
class SourceConfig:
    """One entry of `translate.sources`."""

    name: str = param("Short, stable name: the prefix of every record id from this source.")
    license: str = param(
        "Licence of the source rows, carried by every record made from them (GENIAC shelved a dataset "
        "over one source of unknown licence): e.g. apache-2.0 for OASST2."
    )
    prompt_field: str = param("Field holding the English prompt.")
    id_field: str | None = param("Field holding a stable row id; null = the row number.")
    limit: int | None = param("Keep at most this many rows (after filters); null = all.", ge=1)
    path: str | None = param("A local .jsonl or .parquet file (or set hf_dataset).", default=None)
    hf_dataset: str | None = param(
        "A Hugging Face dataset id, e.g. OpenAssistant/oasst2 (or set path).", default=None
    )
    hf_config: str | None = param("The dataset's config name, if it has several.", default=None)
    revision: str | None = param("Dataset revision (commit) to pin; needed with hf_dataset.", default=None)
    split: str | None = param("Dataset split; needed with hf_dataset.", default=None)
    where: dict[str, str] | None = param(
        "Equality filters on other fields, e.g. {lang: en, role: prompter}.", default=None
    )

    def __post_init__(self) -> None:
        if (self.path is None) == (self.hf_dataset is None):
            raise ValueError(f"source {self.name!r}: set exactly one of path or hf_dataset")
        if self.hf_dataset is not None and (self.split is None or self.revision is None):
            raise ValueError(f"source {self.name!r}: a Hub dataset needs split and revision (pin it)")


def _rows(source: SourceConfig) -> list[Record]:
    if source.path is not None:
        path = Path(source.path)
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        return read_jsonl(path)
    from jalign.hub_reads import load_dataset

    dataset = load_dataset(source.hf_dataset, source.hf_config, split=source.split, revision=source.revision)
    return list(dataset)


def load_source(source: SourceConfig) -> list[Record]:
    """Rows -> {id, source, prompt_en, license}, filtered and limited, in source order."""
    where = source.path or source.hf_dataset
    out, seen = [], {}
    rows = _rows(source)
    for i, row in enumerate(rows):
        lineno = line_of(rows, i)
        if any(str(row.get(k)) != v for k, v in (source.where or {}).items()):
            continue
        prompt = row.get(source.prompt_field)
        if not isinstance(prompt, str) or not prompt.strip():
            raise RecordError(f"{where}:{lineno}: field '{source.prompt_field}' must be a non-empty string")
        rid = row.get(source.id_field) if source.id_field else lineno
        if rid is None:
            raise RecordError(f"{where}:{lineno}: missing id field '{source.id_field}'")
        if rid in seen:  # checked here, where the source's own line is known
            first = f"first at line {seen[rid]}"
            raise RecordError(f"{where}:{lineno}: field '{source.id_field}': duplicate id {rid!r} ({first})")
        seen[rid] = lineno
        out.append(
            {
                "id": f"{source.name}:{rid}",
                "source": source.name,
                "prompt_en": prompt.strip(),
                "license": source.license,
            }
        )
        if source.limit is not None and len(out) >= source.limit:
            break
    return out
