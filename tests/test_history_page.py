"""The History tab in a real browser: Debian's headless Chromium (/usr/bin/chromium) driven by Playwright,
against a real daemon (camera source on a generated meter video with a misread, a real mosquitto).

The chart is inline SVG drawn by history.js (no CDN, the page's strict CSP): one point per valid value,
a red cross per rejected reading, a CSV link that downloads the region's readings. A screenshot goes to
.ci/artifacts/history-chart.png.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from mqtt_broker import Mosquitto, wait_until
from test_history import REGION, HistoryDaemon, broker  # noqa: F401  (the module's broker fixture)
from test_meters import SOURCE, video

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / ".ci" / "artifacts"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium: apt-get install -y chromium (Debian's package)"
)

SCHEDULE = [
    ("00123.456", 1.6),
    ("00123.517", 1.6),
    ("00987.517", 1.4),  # a misread: +864 at once (max_jump 1), published rejected
    ("00123.682", 1.6),
    ("00123.740", 1.6),
]


def test_the_history_tab_charts_a_meter_with_its_rejected_reading_and_a_csv(
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    broker: Mosquitto,  # noqa: F811
) -> None:
    from playwright.sync_api import sync_playwright

    path = video(tmp_path_factory, "history-page", SCHEDULE)
    with HistoryDaemon(tmp_path, "history-page", path, broker) as d:
        msgs = d.run_to_end()
        valid = [m for m in msgs if m["valid"]]
        rejected = [m for m in msgs if not m["valid"]]
        assert len(valid) == 4 and [m["reason"] for m in rejected] == ["max_jump"], msgs
        console: list[str] = []
        failed: list[str] = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                         args=["--no-sandbox", "--disable-dev-shm-usage"])  # fmt: skip
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.goto(f"http://127.0.0.1:{d.port}/")
            page.click('.tab[data-tab="history"]')
            # (Python-side waits: Playwright's wait_for_function evaluates strings, which the CSP forbids.)
            assert wait_until(lambda: page.evaluate("window.edgeOcrHistory.loaded") >= 1, 30), console
            card = f'.history-card[data-source="{SOURCE}"][data-region="{REGION}"]'
            page.wait_for_selector(f"{card} svg", timeout=10_000)
            charts: dict[str, Any] = page.evaluate("window.edgeOcrHistory.charts")
            assert charts == {f"{SOURCE}/{REGION}": {"points": 4, "rejected": 1}}, charts
            points = page.eval_on_selector_all(f"{card} circle.history-point", "els => els.length")
            crosses = page.eval_on_selector_all(f"{card} path.history-rejected", "els => els.length")
            assert (points, crosses) == (4, 1)
            line = page.get_attribute(f"{card} polyline.history-line", "points") or ""
            assert len(line.split()) == 4
            # Later values higher on the chart (SVG y grows downwards); the misread is not on the axis.
            ys = [float(p.split(",")[1]) for p in line.split()]
            assert ys == sorted(ys, reverse=True), ys
            title = page.text_content(f"{card} path.history-rejected title") or ""
            assert "00987517" in title and "max_jump" in title, title
            assert "123.74" in (page.text_content(f"{card} h3") or "")

            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "history-chart.png"), full_page=True)

            # The ranges redraw; the CSV link is the region's readings as a file.
            page.click('#history-range button[data-range="7d"]')
            assert wait_until(lambda: page.evaluate("window.edgeOcrHistory.loaded") >= 2, 15)
            href = page.get_attribute(f"{card} a.history-csv", "href") or ""
            assert "format=csv" in href and f"source={SOURCE}" in href and f"region={REGION}" in href
            with page.expect_download() as info:
                page.click(f"{card} a.history-csv")
            got = Path(info.value.path()).read_bytes()
            browser.close()
        direct = httpx.get(f"http://127.0.0.1:{d.port}{href}", timeout=30).content
    rows = list(csv.DictReader(io.StringIO(got.decode("utf-8"))))
    assert got == direct and len(rows) == 5, got
    assert [r["valid"] for r in rows] == ["true", "true", "false", "true", "true"]
    # No CSP violation, no script error, no request of the page refused (the browser's own favicon
    # request is not the page's).
    assert not [c for c in console if "Content Security Policy" in c or "Uncaught" in c], console
    assert not failed, failed
