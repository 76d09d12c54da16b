"""Vega-Lite → PNG with a CJK font, so Japanese category labels are readable instead of tofu.

vl-convert draws text only with the fonts it knows: the system's, plus any directory registered with
`vl_convert.register_font_directory`. Without a CJK font every Japanese label becomes a row of boxes, and
a font family it does not know draws no text at all, so the family is set only once its file is found.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# (directory, a file that shows the font is there, its family, the Debian package that installs it),
# best first. Noto Sans CJK JP also covers Latin, so one family draws every label.
CJK_FONTS: tuple[tuple[str, str, str, str], ...] = (
    ("/usr/share/fonts/opentype/noto", "NotoSansCJK-Regular.ttc", "Noto Sans CJK JP", "fonts-noto-cjk"),
    ("/usr/share/fonts/opentype/ipafont-gothic", "ipag.ttf", "IPAGothic", "fonts-ipafont-gothic"),
)


@dataclass(frozen=True)
class CjkFont:
    directory: Path
    family: str


def find_cjk_font(candidates: tuple[tuple[str, str, str, str], ...]) -> CjkFont | None:
    """The first installed CJK font among `candidates`, or None."""
    for directory, marker, family, _package in candidates:
        if (Path(directory) / marker).is_file():
            return CjkFont(Path(directory), family)
    return None


@functools.cache
def cjk_font() -> CjkFont | None:
    """Find a CJK font once per process and register its directory with vl-convert (one warning if none)."""
    import vl_convert

    font = find_cjk_font(CJK_FONTS)
    if font is None:
        log.warning(
            "no CJK font found (looked in %s): Japanese labels in PNG plots will be boxes; "
            "install the Debian package %s (make system-deps)",
            ", ".join(d for d, *_ in CJK_FONTS),
            CJK_FONTS[0][3],
        )
        return None
    vl_convert.register_font_directory(str(font.directory))
    return font


def vegalite_to_png(spec: dict[str, Any], scale: float = 1.0) -> bytes:
    """Render a Vega-Lite spec to PNG offline, text in the CJK font when one is installed.

    A `config.font` in the spec itself still wins (Vega-Lite merges the spec's config over this one).
    """
    import vl_convert

    font = cjk_font()
    config = {"font": f"{font.family}, sans-serif"} if font else None
    # The data is inline; allowing no base URL keeps rendering offline whatever the spec says.
    return vl_convert.vegalite_to_png(spec, scale=scale, config=config, allowed_base_urls=[])
