"""Source prompt datasets: a local JSONL/Parquet file or a Hugging Face dataset id, with field mapping,
row filters, a row limit and a licence that travels with every record."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from jalign.records import Record, RecordError, read_jsonl


@dataclass(frozen=True)
class SourceConfig:
    """One entry of `translate.sources`."""

    name: str  # short, stable: becomes the prefix of every record id
    license: str  # e.g. apache-2.0 for OASST2; recorded on every row (GENIAC: check before you publish)
    path: str | None = None  # local .jsonl / .parquet
    hf_dataset: str | None = None  # e.g. OpenAssistant/oasst2 (needs the Hub or a local HF cache)
    hf_config: str | None = None
    revision: str | None = None
    split: str = "train"
    prompt_field: str = "prompt"
    id_field: str | None = "id"  # None: the row number
    where: dict[str, str] = field(default_factory=dict)  # equality filters, e.g. {lang: en, role: prompter}
    limit: int | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.hf_dataset is None):
            raise ValueError(f"source {self.name!r}: set exactly one of path or hf_dataset")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"source {self.name!r}: limit must be >= 1 or null")


def _rows(source: SourceConfig) -> list[Record]:
    if source.path is not None:
        path = Path(source.path)
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        return read_jsonl(path)
    from datasets import load_dataset

    dataset = load_dataset(source.hf_dataset, source.hf_config, split=source.split, revision=source.revision)
    return list(dataset)


def load_source(source: SourceConfig) -> list[Record]:
    """Rows -> {id, source, prompt_en, license}, filtered and limited, in source order."""
    where = source.path or source.hf_dataset
    out = []
    for lineno, row in enumerate(_rows(source), start=1):
        if any(str(row.get(k)) != v for k, v in source.where.items()):
            continue
        prompt = row.get(source.prompt_field)
        if not isinstance(prompt, str) or not prompt.strip():
            raise RecordError(f"{where}:{lineno}: field '{source.prompt_field}' must be a non-empty string")
        rid = row.get(source.id_field) if source.id_field else lineno
        if rid is None:
            raise RecordError(f"{where}:{lineno}: missing id field '{source.id_field}'")
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
