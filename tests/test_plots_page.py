"""The committed `dvc plots show` page: pinned scripts inlined, named by .dvc/config, and drawing Japanese
labels offline in headless Chromium (plain `dvc plots show` on a temp git + DVC repository)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import headless_dom

from jalign.vega_page import SCRIPTS

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / ".dvc" / "plots" / "page.html"
GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-c", "init.defaultBranch=main"]
CATEGORIES = ["推論", "数学", "文章作成"]


def test_committed_page_holds_the_pinned_scripts_and_no_remote_ones():
    page = PAGE.read_text(encoding="utf-8")
    for script in SCRIPTS:
        assert f"{script.name}@{script.version} ({script.integrity})" in page  # header: what was checked
        assert f"/*! {script.name}@{script.version} {script.path} (npm)" in page  # the code itself
    assert page.count("{plot_divs}") == 1 and page.count("{refresh_tag}") == 1
    assert "{scripts}" not in page  # where dvc-render would put its CDN <script src> tags
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert '<meta charset="utf-8">' in page  # Japanese labels read as UTF-8 from file://


def test_dvc_config_names_the_page():
    config = (REPO / ".dvc" / "config").read_text(encoding="utf-8")
    # dvc resolves a relative plots.html_template against .dvc/ (dvc/commands/plots.py)
    assert re.search(r"^\[plots\]\n\s+html_template = plots/page\.html$", config, re.MULTILINE)


def dvc_plots_repo(repo: Path) -> None:
    """git + DVC repository with a loss curve and a per-category bar chart labelled in Japanese, and the
    real .dvc/config and page copied in."""
    repo.mkdir()

    def sh(*args: str) -> None:
        subprocess.run(args, cwd=repo, check=True, capture_output=True)

    sh(*GIT, "init", "-q")
    sh(sys.executable, "-m", "dvc", "init", "-q")
    shutil.copy(REPO / ".dvc" / "config", repo / ".dvc" / "config")
    (repo / ".dvc" / "plots").mkdir()
    shutil.copy(PAGE, repo / ".dvc" / "plots" / "page.html")
    (repo / "plots").mkdir()
    (repo / "plots" / "loss.tsv").write_text("step\tloss\n0\t0.69\n1\t0.52\n2\t0.31\n")
    rows = [{"category": c, "win_rate": 40.0 + 10 * i} for i, c in enumerate(CATEGORIES)]
    (repo / "plots" / "categories.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    plots = [
        {"DPO loss": {"template": "linear", "x": "step", "y": {"plots/loss.tsv": "loss"}}},
        {"Eval win rate per category": {"template": "bar_horizontal", "x": "win_rate",
                                        "y": {"plots/categories.json": "category"}}},
    ]  # fmt: skip
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"plots": plots}, allow_unicode=True), encoding="utf-8")


def test_dvc_plots_show_draws_offline_with_japanese_labels(tmp_path: Path):
    repo = tmp_path / "repo"
    dvc_plots_repo(repo)
    # Plain `dvc plots show`: the page comes from .dvc/config, as for a user right after `git clone`.
    proc = subprocess.run([sys.executable, "-m", "dvc", "plots", "show"], cwd=repo, capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    index = repo / "dvc_plots" / "index.html"
    html = index.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc=", html), "the page loads a script from elsewhere"
    assert "<h1>jalign plots</h1>" in html  # our template, not dvc-render's default page

    dom = headless_dom(index, tmp_path / "chromium-profile")
    # Each plot div, up to the next: Vega-Embed drew an SVG chart with marks into it.
    divs = dict(re.findall(r'<div id="(DPO_loss|Eval_win_rate_per_category)"(.*?)(?=<div id="[A-Z]|</body>)',
                           dom, re.DOTALL))  # fmt: skip
    assert set(divs) == {"DPO_loss", "Eval_win_rate_per_category"}, "a plot div is missing"
    for plot_id, body in divs.items():
        assert re.search(r'<svg[^>]*class="marks"', body), f"{plot_id}: no chart drawn"
        assert re.search(r'<path[^>]*d="M', body), f"{plot_id}: the chart has no marks"
    for label in CATEGORIES:  # the SVG renderer keeps axis labels as text
        assert re.search(rf"<text[^>]*>{label}</text>", divs["Eval_win_rate_per_category"]), label
