"""Setting up a meter from the browser (issue 19): headless Chromium from Debian's packages
(/usr/bin/chromium) driven by Playwright, against the real daemon (`edge-ocr run --config FILE`, http.api
on loopback without a token) on a generated 7-segment meter video, with a real mosquitto.

On the Setup tab's live frame the test draws a box over the LCD, names it, makes it numeric (3 decimals,
m³), tests it (the page shows the meter's value, accepted), saves it: the file on disk has the region and
every comment it had, `.bak` holds the old file, the daemon reloads and publishes the new region's value
over MQTT, the page lists that reading, and once the meter moves on (the video's second value) the
History tab charts both values that region published. Screenshots go to .ci/artifacts/ (and the test's
tmp_path).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from daemon_harness import DaemonProcess
from mqtt_broker import Mosquitto, Subscriber, free_port, mosquitto_binary, wait_until

from edge_ocr.bench.meter import LCD_BOX, PATCHES, write_meter_video

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / ".ci" / "artifacts"
DEVICE = "setup-page"
SHOWN = "00042.195"
# The meter moves on once: a second value for the history chart. The camera plays the video from its
# start again when the Save reloads it, so SHOWN is on the LCD both for the test and after the Save.
SHOWN_FOR_S = 25.0
NEXT = "00042.201"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium: apt-get install -y chromium (Debian's package)"
)

CONFIG = """\
# Cellar meter: set up from the page (these comments must survive a Save).
device_id: {device}
state_dir: {state}
engine:
  precision: fp32   # no INT8 measurement at each start

sources:
  # The water meter, filmed from the shelf.
  - name: meter
    type: camera
    url: {video}
    loop: true
    interval_s: 0.5   # the page's frame is refreshed at least once a second
    debounce_frames: 1
    regions:
      - name: label   # the printed unit beside the LCD
        box: [510, 200, 80, 48]

mqtt:
  url: {broker}
  keepalive: 10
  backoff_min_s: 0.2
  backoff_max_s: 1.0

http:
  enabled: true
  api: true
  port: {port}   # loopback, no token: the page may write (README)
"""


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if mosquitto_binary() is None:
        pytest.fail("mosquitto is not installed: apt-get install mosquitto (MQTT tests need a real broker)")
    b = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    yield b
    b.kill()


def screenshot(page: Any, tmp_path: Path, name: str) -> None:
    shot = tmp_path / f"web-page-{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / shot.name)
    print(f"screenshot: {ARTIFACTS / shot.name}")


def canvas_point(page: Any, x: float, y: float) -> tuple[float, float]:
    """A frame pixel -> the page's coordinates on the (scaled) setup canvas."""
    box = page.locator("#setup-canvas").bounding_box()
    width = page.evaluate("document.getElementById('setup-canvas').width")
    height = page.evaluate("document.getElementById('setup-canvas').height")
    return box["x"] + x * box["width"] / width, box["y"] + y * box["height"] / height


def comments(text: str) -> list[str]:
    return [line.split("#", 1)[1] for line in text.splitlines() if "#" in line]


def test_a_region_drawn_tested_and_saved_on_the_page_is_published(tmp_path: Path, broker: Mosquitto) -> None:
    from playwright.sync_api import sync_playwright

    video = tmp_path / "meter.avi"
    write_meter_video(video, [(SHOWN, SHOWN_FOR_S), (NEXT, 60.0)], fps=10)
    port = free_port()
    d = DaemonProcess(tmp_path / "daemon", {"state_dir": str(tmp_path / "state")})
    assert d.config_path is not None
    state = tmp_path / "state"
    original = CONFIG.format(device=DEVICE, state=state, video=video, broker=broker.url, port=port)
    d.config_path.write_text(original)
    results = Subscriber(broker, [f"edge-ocr/{DEVICE}/result/#"])
    console: list[str] = []
    try:
        d.start_ready(timeout=120)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                         args=["--no-sandbox", "--disable-dev-shm-usage"])  # fmt: skip
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            failed: list[str] = []
            page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))
            page.goto(f"http://127.0.0.1:{port}/")
            page.click("button[data-tab=setup]")
            # (Python-side waits: Playwright's wait_for_function evaluates strings, which the CSP forbids.)
            assert wait_until(lambda: page.evaluate("window.edgeOcrSetup.frame") > 0, 60), "no live frame"
            first = page.evaluate("window.edgeOcrSetup.frame")
            # refreshed at least once a second (the camera analyses a frame every 0.5 s)
            assert wait_until(lambda: page.evaluate("window.edgeOcrSetup.frame") > first, 2), "not refreshed"

            # ---- draw a box over the LCD
            x, y, w, h = LCD_BOX
            page.click("#setup-add-region")
            page.mouse.move(*canvas_point(page, x, y))
            page.mouse.down()
            page.mouse.move(*canvas_point(page, x + w / 2, y + h / 2), steps=5)
            page.mouse.move(*canvas_point(page, x + w, y + h), steps=5)
            page.mouse.up()
            drawn = page.evaluate("window.edgeOcrSetup.doc.sources[0].regions[1]")
            assert all(abs(a - b) <= 2 for a, b in zip(drawn["box"], LCD_BOX, strict=True)), drawn

            # ---- move and resize; a tilted region is a 4-point polygon whose corners move on their own
            def drag(frm: tuple[float, float], to: tuple[float, float]) -> None:
                page.mouse.move(*canvas_point(page, *frm))
                page.mouse.down()
                page.mouse.move(*canvas_point(page, *to), steps=5)
                page.mouse.up()

            region = "window.edgeOcrSetup.doc.sources[0].regions[1]"

            # a box moves by its body and resizes by a corner
            box = drawn["box"]
            drag((box[0] + 40, box[1] + 20), (box[0] + 60, box[1] + 30))
            assert page.evaluate(region + ".box") == [box[0] + 20, box[1] + 10, box[2], box[3]]
            drag((box[0] + 20 + box[2], box[1] + 10 + box[3]), (box[0] + 30 + box[2], box[1] + 25 + box[3]))
            assert page.evaluate(region + ".box") == [box[0] + 20, box[1] + 10, box[2] + 10, box[3] + 15]
            drag((box[0] + 20, box[1] + 10), (box[0], box[1]))  # the top-left corner back
            drag((box[0] + box[2] + 30, box[1] + box[3] + 25), (box[0] + box[2], box[1] + box[3]))
            assert page.evaluate(region + ".box") == box

            page.check("#setup-tilted")
            corners = page.evaluate(region + ".polygon")
            assert len(corners) == 4 and "box" not in page.evaluate(region), corners
            drag(corners[1], (corners[1][0] + 12, corners[1][1] + 8))
            moved = page.evaluate(region + ".polygon")
            assert moved[1] == [corners[1][0] + 12, corners[1][1] + 8] and moved[0] == corners[0], moved
            drag(moved[1], corners[1])
            page.uncheck("#setup-tilted")
            assert page.evaluate(region + ".box") == drawn["box"]

            # ---- an alignment patch is drawn the same way (and deleted again here)
            px, py, pw, ph = PATCHES[0]
            page.click("#setup-add-patch")
            drag((px, py), (px + pw, py + ph))
            patch = page.evaluate("window.edgeOcrSetup.doc.sources[0].alignment.patches[0]")
            assert all(abs(a - b) <= 2 for a, b in zip(patch, PATCHES[0], strict=True)), patch
            page.click("#setup-delete")
            assert page.evaluate("window.edgeOcrSetup.doc.sources[0].alignment") is None
            page.click("li[data-region=region2]")

            # ---- name it, make it a meter
            page.fill("#setup-name", "water")
            page.dispatch_event("#setup-name", "change")
            page.select_option("#setup-kind", "numeric")
            page.fill("#setup-decimals", "3")
            page.dispatch_event("#setup-decimals", "change")
            page.fill("#setup-unit", "m³")
            page.dispatch_event("#setup-unit", "change")

            # ---- test it on the current frame
            page.click("#setup-test-button")
            page.wait_for_selector("#setup-verdict", timeout=60_000)
            assert "00042195" in page.text_content("#setup-test-text")
            assert "42.195 m³" in page.text_content("#setup-test-text")
            assert page.text_content("#setup-verdict") == "accepted by the rules"
            assert page.evaluate("document.querySelector('#setup-test img').naturalWidth") > 0
            assert page.locator("#setup-test .char").count() == 8
            assert page.locator("#setup-advice").count() == 0  # digits 84 px high read reliably
            screenshot(page, tmp_path, "setup-test")

            # ---- a box that gives the model a strip of the digits: the Test advises a closer camera,
            # naming the height it measured (`region_trial.size_advice`)
            x, y, w, h = page.evaluate(region + ".box")
            page.evaluate(f"{region}.box = [{x}, {y + 30}, {w}, 24]")
            page.click("#setup-test-button")
            advice = page.wait_for_selector("#setup-advice", timeout=60_000).text_content() or ""
            rows = re.search(r"(\d+) px high", advice)
            assert rows and int(rows.group(1)) <= 24 and "closer" in advice, advice
            page.evaluate(f"{region}.box = [{x}, {y}, {w}, {h}]")

            # ---- save: the file, its comments, the backup; the daemon reloads
            page.click("#setup-save")
            assert wait_until(lambda: "Saved to" in (page.text_content("#setup-message") or ""), 120), \
                page.text_content("#setup-message")  # fmt: skip
            text = d.config_path.read_text()
            saved = yaml.safe_load(text)
            (water,) = [r for r in saved["sources"][0]["regions"] if r["name"] == "water"]
            assert water["numeric"] == {"decimals": 3, "unit": "m³"}
            assert all(abs(a - b) <= 2 for a, b in zip(water["box"], LCD_BOX, strict=True)), water
            assert comments(text) == comments(original)
            assert d.config_path.with_name("config.yaml.bak").read_text() == original

            # ---- its value over MQTT, and on the page
            def published() -> list[dict[str, Any]]:
                msgs = [json.loads(p) for p in results.payloads(f"edge-ocr/{DEVICE}/result/meter")]
                return [m for m in msgs if m["region"] == "water"]

            assert wait_until(lambda: any(m["valid"] for m in published()), 60), (published(), d.tail(20))
            msg = next(m for m in published() if m["valid"])
            assert (msg["text"], msg["value"], msg["unit"]) == ("00042195", 42.195, "m³")
            shown = "li[data-region=water] .reading"
            row = page.locator(shown)
            assert wait_until(lambda: row.count() > 0 and "42.195" in (row.text_content() or ""), 30)
            screenshot(page, tmp_path, "setup-saved")

            # ---- the meter moves on; the History tab charts both values the daemon published
            def sent() -> list[dict[str, Any]]:
                return [m for m in published() if m["valid"]]

            assert wait_until(lambda: sent()[-1]["value"] == float(NEXT), 90), (published(), d.tail(20))
            assert [m["value"] for m in sent()] == [float(SHOWN), float(NEXT)], sent()
            card = '.history-card[data-source="meter"][data-region="water"]'
            page.click("button[data-tab=history]")  # a click on the tab (re)loads the charts
            loads = [0]

            def charted() -> bool:
                state = page.evaluate("window.edgeOcrHistory")
                if state["charts"].get("meter/water", {}).get("points", 0) >= 2:
                    return True
                if state["loaded"] > loads[0]:  # that load did not have both yet: load again
                    loads[0] = state["loaded"]
                    page.click("button[data-tab=history]")
                return False

            assert wait_until(charted, 60, interval=0.5), page.evaluate("window.edgeOcrHistory")
            charts = page.evaluate("window.edgeOcrHistory.charts")
            assert charts["meter/water"] == {"points": 2, "rejected": 0}, charts
            titles = page.eval_on_selector_all(
                f"{card} circle.history-point title", "els => els.map(e => e.textContent)"
            )
            # Each point is a published reading: its capture time and value as sent over MQTT.
            assert titles == [f"{m['captured_at']}: {m['value']} m³" for m in sent()], (titles, sent())
            line = page.get_attribute(f"{card} polyline.history-line", "points") or ""
            ys = [float(p.split(",")[1]) for p in line.split()]
            assert len(ys) == 2 and ys[1] < ys[0], line  # the later, larger value higher on the chart
            assert "meter / water: 42.201 m³" in (page.text_content(f"{card} h3") or "")
            screenshot(page, tmp_path, "setup-history")
            browser.close()
        assert not [m for m in console if "Content Security Policy" in m], console
        assert all(f.endswith("/favicon.ico") for f in failed), failed
        assert d.stop() == 0
    finally:
        results.close()
        if d.running:
            d.kill()
        print(d.tail(30))
        print("\n".join(console[-20:]))
