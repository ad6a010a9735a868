"""The report in a real browser: Debian's headless Chromium opens the index and feature
pages from file:// and the test checks, through the DevTools protocol, that the pages load
their shared assets with no console error, that no request leaves the page (a canary HTTP
server on loopback would see it), that sorting and the filter work under real mouse and
keyboard input, that planted HTML/JS stays text, that no count below 11 is visible, and that
a screenshot is not blank.

Chromium is required, not optional: `.ci/run` installs it when missing, so a missing browser
fails here rather than skipping the only test that opens the report."""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image

from data_contracts.config import FeatureRef, ReportConfig
from tests.reports import fixtures as fx
from tests.reports.cdp import Browser, chromium_path

SMALL = r"/^(10|[1-9])$/"


class _Canary(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def canary() -> Iterator[tuple[str, list[str]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Canary)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Canary.hits
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, canary: tuple[str, list[str]]) -> Path:
    out = tmp_path_factory.mktemp("browser") / "report"
    cfg = ReportConfig(top_per_outcome=3, pages=(FeatureRef(modality="image", feature_id=3),))
    fx.render_fixture(out, cfg, payloads=True, canary=canary[0])
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    exe = chromium_path()
    if exe is None:
        pytest.fail("Chromium is not installed (Debian: apt-get install -y --no-install-recommends chromium; "
                    ".ci/run installs it)")
    b = Browser(exe, tmp_path_factory.mktemp("chromium") / "profile")
    try:
        for domain in ("Page", "Runtime", "Network", "Log"):
            b.send(f"{domain}.enable")
        yield b
    finally:
        b.close()


def _open(b: Browser, page: Path) -> None:
    b.events.clear()
    b.open(page.as_uri())
    b.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")  # painted


def _problems(b: Browser) -> list[str]:
    """Console errors, uncaught exceptions, dialogs, and requests that are not file:/data:."""
    out = []
    for e in b.events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append(f"console: {p.get('args')}")
        elif m == "Runtime.exceptionThrown":
            out.append(f"exception: {p.get('exceptionDetails')}")
        elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
            out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        elif m == "Page.javascriptDialogOpening":
            out.append(f"dialog: {p.get('message')}")
        elif m == "Network.requestWillBeSent" and not p["request"]["url"].startswith(("file:", "data:")):
            out.append(f"request: {p['request']['url']}")
    return out


def _common_checks(b: Browser, canary_hits: list[str]) -> None:
    assert _problems(b) == []
    assert canary_hits == []
    # the shared stylesheet and script loaded from file:// under the page's CSP
    assert b.evaluate("getComputedStyle(document.querySelector('th')).backgroundColor") == "rgb(238, 241, 245)"
    assert b.evaluate("document.querySelector('table.sortable th').title") == "click to sort"
    # planted markup stayed text: nothing ran, no handler attribute, no javascript: link, one script
    assert b.evaluate("window.__pwned === undefined")
    assert b.evaluate("[...document.querySelectorAll('*')].every(e => [...e.attributes].every("
                      "a => !a.name.startsWith('on')))")
    assert b.evaluate("document.querySelectorAll('a[href^=\"javascript\" i], iframe, object, embed').length") == 0
    assert b.evaluate("[...document.scripts].map(s => s.getAttribute('src'))") in (["assets/report.js"],
                                                                                  ["../assets/report.js"])
    assert b.evaluate("[...document.images].every(i => i.src.startsWith('data:image/png;base64,'))")
    # no count of 1..10 is visible
    assert b.evaluate(f"[...document.querySelectorAll('.n')].filter(e => {SMALL}.test(e.innerText.trim())).length") == 0


def test_report_in_chromium(site: Path, browser: Browser, canary: tuple[str, list[str]], tmp_path: Path) -> None:
    b, hits = browser, canary[1]
    _open(b, site / "index.html")
    _common_checks(b, hits)
    assert b.evaluate("document.querySelectorAll('svg.chart circle').length") > 20  # Manhattan and volcano drawn
    assert fx.IMG in b.evaluate("document.body.innerText")  # the outcome name, shown as text
    assert b.evaluate("document.querySelectorAll('.n').length") > 50

    # sorting: a real click on the all-rows table's "p" header sorts by p, a second click reverses
    col = "[...document.querySelectorAll('#all-rows thead th')].findIndex(h => h.textContent.trim().startsWith('p'))"
    idx = b.evaluate(col)
    read = (f"[...document.querySelectorAll('#all-rows tbody tr')].map(r => r.cells[{idx}].getAttribute('data-v'))"
            ".map(v => v === '' ? null : parseFloat(v))")
    before = b.evaluate(read)
    b.click(f"#all-rows thead th:nth-child({idx + 1})")
    up = b.evaluate(read)
    vals = [v for v in up if v is not None]
    assert up != before and vals == sorted(vals) and up[len(vals):] == [None] * (len(up) - len(vals))
    b.click(f"#all-rows thead th:nth-child({idx + 1})")
    down = [v for v in b.evaluate(read) if v is not None]
    assert down == sorted(vals, reverse=True)

    # the filter hides the rows that do not match what was typed
    rows = "[...document.querySelectorAll('#all-rows tbody tr')]"
    n_all = b.evaluate(f"{rows}.length")
    b.type_into("input.filter", "concept 4")
    shown = b.evaluate(f"{rows}.filter(r => r.offsetParent !== null).map(r => r.innerText.toLowerCase())")
    assert 0 < len(shown) < n_all and all("concept 4" in t for t in shown)
    hidden = b.evaluate(f"{rows}.filter(r => r.offsetParent === null).map(r => r.innerText.toLowerCase())")
    assert len(shown) + len(hidden) == n_all and not any("concept 4" in t for t in hidden)

    shot = Image.open(io.BytesIO(__import__("base64").b64decode(b.send("Page.captureScreenshot")["data"])))
    shot.save(tmp_path / "index.png")
    px = np.asarray(shot.convert("RGB")).reshape(-1, 3)
    assert shot.size[0] >= 1000 and len(np.unique(px, axis=0)) > 50
    assert (px.min(axis=1) < 200).mean() > 0.02  # ink, not a white page


@pytest.mark.parametrize("page", ["report_3", "report_1", "image_3"])
def test_feature_pages_in_chromium(site: Path, browser: Browser, canary: tuple[str, list[str]], page: str) -> None:
    b = browser
    _open(b, site / "features" / f"{page}.html")
    _common_checks(b, canary[1])
    text = b.evaluate("document.body.innerText")
    assert b.evaluate("document.querySelectorAll('svg.chart').length") >= 2  # histogram, forest (+ curves)
    if page == "report_3":
        assert fx.SCRIPT in text and fx.JS_URL in text and ">39/50 vs <11/150" in text
        assert b.evaluate("document.querySelectorAll('mark').length") > 0
    if page == "report_1":
        assert fx.PAYLOAD.split(" ")[0] in text and fx.IMG in text  # the label, as text
    if page == "image_3":
        assert b.evaluate("document.images.length") == 10
        assert b.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        assert "image unavailable (no image)" in text
    assert b.evaluate("document.querySelector('a[href=\"../index.html\"]') !== null")
