"""`jalign plots-page` against a local fake npm registry: tarballs checked against their sha512 pins,
browser builds inlined into a dvc-render template, anything that would break the page refused."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import re
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from commands import main as cli
from jalign.vega_page import SCRIPTS, NpmScript, VendorError, build_page, inline_script


def tarball(files: dict[str, str]) -> bytes:
    """An npm package tarball: everything under package/."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


@dataclass
class FakeRegistry:
    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)  # URL path -> body; anything else is a 404


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    fake = FakeRegistry()
    files = fake.files

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fake.url = f"http://127.0.0.1:{server.server_port}"
    yield fake
    server.shutdown()


def package(registry: FakeRegistry, name: str, version: str, code: str, **extra: str) -> NpmScript:
    data = tarball({"build/x.min.js": code, "package.json": json.dumps({"license": "BSD-3-Clause"}), **extra})
    registry.files[f"/{name}/-/{name}-{version}.tgz"] = data
    return NpmScript(name, version, "build/x.min.js", integrity(data))


def test_build_page_inlines_verified_builds(registry: FakeRegistry):
    scripts = (
        package(registry, "vega", "5.0.0", "var vega = {};\n//# sourceMappingURL=vega.min.js.map\n",
                LICENSE="Copyright (c) 2015, UW IDL"),
        package(registry, "vega-lite", "5.1.0", "var vegaLite = {};"),
        package(registry, "vega-embed", "6.2.0", "var vegaEmbed = function () {};"),
    )  # fmt: skip
    page = build_page(scripts, registry=registry.url)
    assert (
        "/*! vega@5.0.0 build/x.min.js (npm), licence BSD-3-Clause\n\nCopyright (c) 2015, UW IDL */" in page
    )
    assert "var vega = {};" in page and "sourceMappingURL" not in page
    assert page.index("var vega = {};") < page.index("var vegaLite") < page.index("var vegaEmbed")
    assert 'renderer: "svg"' in page  # DVC's divs call vegaEmbed(el, spec) with no options
    assert "Vega 5.0.0, Vega-Lite 5.1.0 and Vega-Embed 6.2.0 are inlined" in page
    assert page.count("{plot_divs}") == 1 and page.count("{refresh_tag}") == 1 and "{scripts}" not in page


def test_a_tarball_that_is_not_the_pinned_one_is_refused(registry: FakeRegistry, tmp_path: Path):
    # The real pins, served a different vega tarball: the command stops before writing anything.
    package(registry, "vega", SCRIPTS[0].version, "alert('not vega')")
    out = tmp_path / "page.html"
    result = CliRunner().invoke(cli, ["plots-page", "--out", str(out), "--registry", registry.url])
    assert result.exit_code == 1
    assert f"vega@{SCRIPTS[0].version}: tarball sha512 is sha512-" in result.output
    assert "refusing to inline it" in result.output and not out.exists()


def test_a_missing_package_names_the_url(registry: FakeRegistry):
    script = NpmScript("vega", "9.9.9", "build/x.min.js", "sha512-x")
    with pytest.raises(VendorError, match=r"/vega/-/vega-9\.9\.9\.tgz: download failed \(HTTP Error 404"):
        build_page((script,), registry=registry.url)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("s = '</script>';", "would end an inline <script>"),
        ("s = '<!-- x';", "would end an inline <script>"),
        ("s = '{plot_divs}';", "placeholder {plot_divs}"),
    ],
)
def test_code_that_would_break_the_page_is_refused(code: str, reason: str):
    with pytest.raises(VendorError, match=re.escape(reason)):
        inline_script(code, "vega@5.0.0 build/x.min.js (npm), licence BSD-3-Clause")
