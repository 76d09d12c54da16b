"""`jalign fetch`: the files a preset needs and the repository does not ship (params.yaml `fetch.files`),
each from a pinned Hub commit or commit URL, into data/eval/external/ with a manifest of what came from
where. The default profile fetches nothing: the stage then runs offline and writes only the manifest."""

from __future__ import annotations

from pathlib import Path

import click

from jalign.config import load_section
from jalign.fetch import FETCH_DIR, MANIFEST, FetchConfig, fetch_all
from jalign.records import write_json
from jalign.stage import log, setup_logging, start_stage


@click.command("fetch")
@click.option("--out", "out_dir", default=FETCH_DIR, show_default=True, type=click.Path(file_okay=False))
@click.option("--params", "params_path", default="params.yaml", show_default=True)
def main(out_dir: str, params_path: str) -> None:
    """Download every fetch.files entry (pinned) and write <out>/manifest.json."""
    setup_logging()
    config = load_section(FetchConfig, "fetch", params_path)
    start_stage("fetch", config, [out_dir])
    rows = fetch_all(config, Path.cwd(), out_dir)
    for row in rows:
        log.info(
            "fetched %s <- %s (%d bytes, sha256 %s)", row["out"], row["source"], row["bytes"], row["sha256"]
        )
    write_json(Path(out_dir) / MANIFEST, {"files": rows})
