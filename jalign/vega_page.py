"""The page `dvc plots show` fills: Vega, Vega-Lite and Vega-Embed inlined, so it draws with no network.

DVC's own page loads the three scripts from a CDN; offline it is blank. dvc-render writes its plot divs
into any template with a `{plot_divs}` placeholder (`.dvc/config`: `plots.html_template`) and its CDN
`<script>` tags only where the template has `{scripts}`, so this template has none and carries the
scripts itself. They come from the npm registry's tarballs, each checked against the sha512 the registry
published for that version (pinned here), and are written out by `jalign plots-page`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import tarfile
import urllib.request
from dataclasses import dataclass

from jalign.errors import JalignError

REGISTRY = "https://registry.npmjs.org"


@dataclass(frozen=True)
class NpmScript:
    name: str
    version: str
    path: str  # the browser build inside the package
    integrity: str  # the tarball's `dist.integrity` in the registry: sha512-<base64>


# The newest Vega 5 / Vega-Lite 5 / Vega-Embed 6: dvc-render's templates are Vega-Lite v5 specs and its
# CDN links name vega@5.20.2, vega-lite@5.2.0 and vega-embed@6.18.2 (Vega 6 and Vega-Embed 7 ship no
# browser build that sets the globals DVC's divs call). vega-lite 5.23 needs vega >= 5.24.
SCRIPTS: tuple[NpmScript, ...] = (
    NpmScript(
        "vega",
        "5.33.1",
        "build/vega.min.js",
        "sha512-1fArfVDUqVbb5z8n+/nVQb+VNBzx8svY6CrsyTK4Ujm4yrd9I1auoKxBAPXLCavY1LcrbHUskQbGUP8gXOzyQw==",
    ),
    NpmScript(
        "vega-lite",
        "5.23.0",
        "build/vega-lite.min.js",
        "sha512-l4J6+AWE3DIjvovEoHl2LdtCUkfm4zs8Xxx7INwZEAv+XVb6kR6vIN1gt3t2gN2gs/y4DYTs/RPoTeYAuEg6mA==",
    ),
    NpmScript(
        "vega-embed",
        "6.29.0",
        "build/vega-embed.min.js",
        "sha512-PmlshTLtLFLgWtF/b23T1OwX53AugJ9RZ3qPE2c01VFAbgt3/GSNI/etzA/GzdrkceXFma+FDHNXUppKuM0U6Q==",
    ),
)

# dvc-render substitutes these anywhere in the template; inlined code must not contain them.
PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")

# DVC's divs call vegaEmbed(el, spec) with no options. SVG keeps every label as text in the DOM (the
# browser picks a CJK font for it; searchable, testable); the Vega editor action needs the network.
EMBED_DEFAULTS = """
(function () {
  var embed = window.vegaEmbed;
  var defaults = {renderer: "svg", actions: {export: true, source: true, compiled: true, editor: false}};
  window.vegaEmbed = Object.assign(function (el, spec, opts) {
    return embed(el, spec, Object.assign({}, defaults, opts));
  }, embed);
})();
"""

PAGE = """<!DOCTYPE html>
<!-- The page `dvc plots show` fills (.dvc/config: plots.html_template). Written by `jalign plots-page`
     from these npm packages (tarball sha512 checked), do not edit by hand:
     {packages} -->
<html lang="en">
<head>
<meta charset="utf-8">
{refresh_tag}
<title>jalign plots</title>
<style>
body {{ font-family: system-ui, "Noto Sans CJK JP", sans-serif; margin: 1.5rem; }}
header p {{ color: #555; max-width: 60rem; }}
body > div {{ margin: 1.5rem 0; }}
</style>
{scripts}
</head>
<body>
<header>
<h1>jalign plots</h1>
<p>dvc.yaml's plots: DPO training curves (dvclive/) and evaluation results (data/eval/plots).
Vega {vega}, Vega-Lite {vega_lite} and Vega-Embed {vega_embed} are inlined: this page needs no network.</p>
</header>
{plot_divs}
</body>
</html>
"""


class VendorError(JalignError, RuntimeError):
    """A package could not be fetched, failed its integrity check, or cannot be inlined."""


def tarball_url(script: NpmScript, registry: str = REGISTRY) -> str:
    return f"{registry.rstrip('/')}/{script.name}/-/{script.name}-{script.version}.tgz"


def fetch(url: str, timeout: float = 60.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except OSError as exc:  # URLError, HTTPError and timeouts are OSErrors
        raise VendorError(f"{url}: download failed ({exc}); is the npm registry reachable?") from exc


def check_integrity(data: bytes, script: NpmScript) -> None:
    """Subresource-integrity check, as npm does: sha512 of the tarball, base64."""
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != script.integrity:
        raise VendorError(
            f"{script.name}@{script.version}: tarball sha512 is {digest}, the pin in jalign/vega_page.py "
            f"says {script.integrity}; refusing to inline it"
        )


def extract(data: bytes, script: NpmScript) -> tuple[str, str]:
    """The browser build and a licence note from a package tarball (npm packs everything in package/)."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:

        def read(member: str) -> str | None:
            try:
                file = tar.extractfile(f"package/{member}")
            except KeyError:
                return None
            return file.read().decode("utf-8") if file else None

        code = read(script.path)
        if code is None:
            raise VendorError(f"{script.name}@{script.version}: no {script.path} in the tarball")
        licence = json.loads(read("package.json") or "{}").get("license", "see the package")
        notice = read("LICENSE")
    header = f"{script.name}@{script.version} {script.path} (npm), licence {licence}"
    return code, header + (f"\n\n{notice.strip()}" if notice else "")


def inline_script(code: str, notice: str) -> str:
    """One <script> element holding `code`, its licence notice first."""
    # The source map is not shipped; a browser would only log a failed fetch for it.
    code = re.sub(r"\n//# sourceMappingURL=\S+\s*$", "\n", code)
    if re.search(r"</script|<!--", code, re.IGNORECASE) or "*/" in notice:
        raise VendorError(f"{notice.splitlines()[0]}: contains text that would end an inline <script>")
    if found := [p for p in PLACEHOLDERS if p in code]:
        raise VendorError(f"{notice.splitlines()[0]}: contains dvc-render's placeholder {found[0]}")
    return f"<script>\n/*! {notice} */\n{code.strip()}\n</script>"


def build_page(scripts: tuple[NpmScript, ...] = SCRIPTS, registry: str = REGISTRY) -> str:
    """Download, verify and inline `scripts` (Vega, Vega-Lite, Vega-Embed, in load order)."""
    elements = []
    for script in scripts:
        data = fetch(tarball_url(script, registry))
        check_integrity(data, script)
        elements.append(inline_script(*extract(data, script)))
    elements.append(f"<script>{EMBED_DEFAULTS}</script>")
    versions = {s.name: s.version for s in scripts}
    return PAGE.format(
        packages="\n     ".join(f"{s.name}@{s.version} ({s.integrity})" for s in scripts),
        vega=versions.get("vega"),
        vega_lite=versions.get("vega-lite"),
        vega_embed=versions.get("vega-embed"),
        scripts="\n".join(elements),
        refresh_tag="{refresh_tag}",
        plot_divs="{plot_divs}",
    )
