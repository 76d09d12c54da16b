"""jalign.charts: vl-convert PNGs draw Japanese labels in a CJK font, and say which package is missing."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from jalign import charts


@pytest.fixture
def fresh_font_lookup() -> Iterator[None]:
    charts.cjk_font.cache_clear()
    yield
    charts.cjk_font.cache_clear()


def bar_chart(label: str) -> dict:
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "data": {"values": [{"category": label, "win_rate": 50.0}]},
        "mark": "bar",
        "encoding": {
            "y": {"field": "category", "type": "nominal"},
            "x": {"field": "win_rate", "type": "quantitative"},
        },
    }


def debian_package_installed(name: str) -> bool:
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian system")
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True)
    return proc.stdout == "install ok installed"


def test_the_first_installed_font_wins(tmp_path: Path):
    (tmp_path / "ipa").mkdir()
    (tmp_path / "ipa" / "ipag.ttf").write_bytes(b"")
    candidates = (
        (str(tmp_path / "noto"), "NotoSansCJK-Regular.ttc", "Noto Sans CJK JP", "fonts-noto-cjk"),
        (str(tmp_path / "ipa"), "ipag.ttf", "IPAGothic", "fonts-ipafont-gothic"),
    )
    assert charts.find_cjk_font(candidates) == charts.CjkFont(tmp_path / "ipa", "IPAGothic")
    assert charts.find_cjk_font(candidates[:1]) is None


def test_no_font_warns_once_naming_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fresh_font_lookup: None
):
    monkeypatch.setattr(charts, "CJK_FONTS", ((str(tmp_path), "x.ttc", "X", "fonts-noto-cjk"),))
    with caplog.at_level(logging.WARNING, logger="jalign.charts"):
        assert charts.cjk_font() is None
        assert charts.cjk_font() is None
    assert [r.getMessage() for r in caplog.records] == [
        f"no CJK font found (looked in {tmp_path}): Japanese labels in PNG plots will be boxes; "
        "install the Debian package fonts-noto-cjk (make system-deps)"
    ]


def test_debian_cjk_font_is_found_and_draws_each_label(fresh_font_lookup: None):
    if not any(debian_package_installed(p) for p in ("fonts-noto-cjk", "fonts-ipafont-gothic")):
        pytest.skip("no Debian CJK font package installed (make system-deps installs fonts-noto-cjk)")
    assert charts.cjk_font() is not None
    # Missing glyphs all draw as the same box, so two labels that differ only in their kanji would give
    # the same image; drawn in a CJK font they differ.
    assert charts.vegalite_to_png(bar_chart("推論")) != charts.vegalite_to_png(bar_chart("数学"))
