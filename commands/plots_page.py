"""`jalign plots-page`: write the offline page `dvc plots show` fills (Vega inlined from npm, pinned)."""

from __future__ import annotations

from pathlib import Path

import click

from jalign.records import atomic_path
from jalign.vega_page import REGISTRY, build_page


@click.command("plots-page")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=".dvc/plots/page.html",
              show_default=True, help="the template .dvc/config's plots.html_template names")  # fmt: skip
@click.option("--registry", default=REGISTRY, show_default=True, help="npm registry (or a mirror)")
def main(out: Path, registry: str) -> None:
    """Download the pinned Vega, Vega-Lite and Vega-Embed tarballs, check each one's sha512 against its
    pin (jalign/vega_page.py) and write OUT with their browser builds inlined. Run it only to change a
    version: the page is committed, so `dvc plots show` works offline right after `git clone`."""
    page = build_page(registry=registry)
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    click.echo(f"wrote {out} ({len(page.encode()) // 1024} KiB)")
