"""The web page in a real browser: headless Chromium from Debian's packages (/usr/bin/chromium), driven
by Playwright (its own browser download is never used), against the real daemon (`edge-ocr run` with
http.api, a folder source and a camera source reading a small video made here) and the real models.

It uploads a receipt, checks that every line's box is drawn on the canvas where the labelled text is
and that the text is listed, hovers a line, then opens the watch tab and sees the camera's frame with
its region drawn. A screenshot of each tab is saved under the test's tmp_path (the path is printed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import DaemonProcess, daemon_config
from mqtt_broker import free_port, wait_until

from edge_ocr.bench.camera import METER_BOX, write_meter_video

CHROMIUM = Path("/usr/bin/chromium")
BOX_RGB = (255, 0, 128)  # the page's box colour (app.js BOX)
HIGHLIGHT_RGB = (0, 200, 83)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium: apt-get install -y chromium (Debian's package)"
)


def iou(a: list[list[float]], b: list[list[float]]) -> float:
    ax0, ay0 = min(p[0] for p in a), min(p[1] for p in a)
    ax1, ay1 = max(p[0] for p in a), max(p[1] for p in a)
    bx0, by0 = min(p[0] for p in b), min(p[1] for p in b)
    bx1, by1 = max(p[0] for p in b), max(p[1] for p in b)
    w, h = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = w * h
    return inter / ((ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter)


def near(rgb: list[int], want: tuple[int, int, int], tol: int = 40) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(rgb[:3], want, strict=True))


PIXEL_JS = """([selector, x, y]) => {
  const c = document.querySelector(selector);
  return Array.from(c.getContext('2d').getImageData(Math.round(x), Math.round(y), 1, 1).data);
}"""


def test_page_reads_a_receipt_draws_its_boxes_and_shows_a_camera(tmp_path, models_dir, eval_data):
    from playwright.sync_api import sync_playwright

    receipt = eval_data / "pages" / "sroie_116.jpg"
    labels = next(
        json.loads(line)
        for line in (eval_data / "pages" / "labels.jsonl").read_text().splitlines()
        if json.loads(line)["image"] == receipt.name
    )
    video = tmp_path / "meter.avi"
    write_meter_video(video, [("04512", 3.0)], fps=5)
    root = tmp_path / "box"
    port = free_port()
    x, y, w, h = METER_BOX
    cfg = daemon_config(root, http={"enabled": True, "port": port, "api": True})
    region = {"name": "reading", "box": [x, y, w, h], "mode": "line", "pattern": r"^\d{5}$",
              "charset": "0123456789"}  # fmt: skip
    camera = {"name": "meter", "type": "camera", "url": str(video), "loop": True, "interval_s": 1.0}
    cfg["sources"].append({**camera, "regions": [region]})
    d = DaemonProcess(tmp_path / "daemon", cfg)
    console: list[str] = []
    try:
        d.start_ready()
        url = f"http://127.0.0.1:{port}/"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                         args=["--no-sandbox", "--disable-dev-shm-usage"])  # fmt: skip
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.goto(url)
            # (Python-side waits: Playwright's wait_for_function evaluates strings, which the CSP forbids.)
            assert wait_until(lambda: "ppocrv6" in page.text_content("#status-line"), 30)

            # ---- try it: upload the receipt
            page.set_input_files("#file", str(receipt))
            page.wait_for_selector("#lines li", timeout=120_000)
            result: dict[str, Any] = page.evaluate("window.edgeOcr.result")
            canvas = page.evaluate("(c => [c.width, c.height])(document.getElementById('canvas'))")
            assert canvas == [result["width"], result["height"]] == [940, 2077]
            listed = page.eval_on_selector_all("#lines li .text", "els => els.map(e => e.textContent)")
            assert listed == [ln["text"] for ln in result["lines"]] and len(listed) >= 20
            assert any("PERNIAGAAN" in t for t in listed), listed

            # Each box is drawn where its line is: the stroke colour on the middle of its top edge...
            drawn = 0
            for ln in result["lines"]:
                (x0, y0), (x1, y1) = ln["box"][0], ln["box"][1]
                if near(page.evaluate(PIXEL_JS, ["#canvas", (x0 + x1) / 2, (y0 + y1) / 2]), BOX_RGB):
                    drawn += 1
            assert drawn >= 0.9 * len(result["lines"]), f"{drawn} of {len(result['lines'])} boxes found"
            # ...and where the labelled text is on the receipt.
            for label in labels["lines"][:6]:
                best = max(result["lines"], key=lambda ln, lb=label: iou(ln["box"], lb["box"]))
                assert iou(best["box"], label["box"]) > 0.5, (label, best)

            # Hovering a line highlights its box.
            first = result["lines"][0]["box"]
            page.hover("#lines li >> nth=0")
            mid = [(first[0][0] + first[1][0]) / 2, (first[0][1] + first[1][1]) / 2]
            assert near(page.evaluate(PIXEL_JS, ["#canvas", *mid]), HIGHLIGHT_RGB)
            assert "ms" in page.text_content("#timings")
            shot = tmp_path / "web-page-try.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")

            # ---- a readable message for a type the device does not read
            bad = tmp_path / "notes.gif"
            bad.write_bytes(b"GIF89a" + b"\0" * 64)
            page.set_input_files("#file", str(bad))
            assert wait_until(lambda: "not read here" in page.text_content("#message"), 30)

            # ---- a line held back by the min confidence is named, not shown as "No text found."
            # (its mean is above 0.9, the "1" of "Bil1" below: the region's rule, weakest character too)
            page.fill("#opt-min", "0.9")
            page.set_input_files("#file", str(eval_data / "lines_en" / "img" / "sroie_017_013.png"))
            assert wait_until(lambda: "held back" in page.text_content("#message"), 60)
            message = page.text_content("#message")
            assert "Bil1 Start" in message and "below 0.9" in message and "No text" not in message
            assert page.eval_on_selector_all("#lines li", "els => els.length") == 0
            page.fill("#opt-min", "")

            # ---- watch it: the camera's latest analysed frame with its region drawn
            page.click("button[data-tab=watch]")
            page.wait_for_selector("#cameras canvas", timeout=60_000)
            size = page.evaluate("(() => { const c = document.querySelector('#cameras canvas'); "
                                 "return [c.width, c.height]; })()")  # fmt: skip
            assert size[0] > x + w and size[1] > y + h
            assert near(page.evaluate(PIXEL_JS, ["#cameras canvas", x + w / 2, y]), BOX_RGB, tol=60)
            cams = page.text_content("#cameras")
            assert wait_until(lambda: "04512" in page.text_content("#cameras"), 60), cams
            assert "inbox (folder)" in page.text_content("#folders")
            shot = tmp_path / "web-page-watch.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")

            page.click("button[data-tab=status]")
            assert wait_until(lambda: "model set" in page.text_content("#status-table"), 30)
            assert "ppocrv6-small" in page.text_content("#status-table")
            browser.close()
        assert not [m for m in console if "Content Security Policy" in m], console
        assert d.stop() == 0
    finally:
        if d.running:
            d.kill()
        print(d.tail(30))
        print("\n".join(console[-20:]))
