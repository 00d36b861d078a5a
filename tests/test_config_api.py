"""The setup API (issue 19) against a real daemon: `edge-ocr run`'s Daemon in a thread of this process, with
http.api and a bearer token, on a generated 7-segment meter video (looped), its config in a YAML file
with comments, secrets in files (the MQTT password, the token, a second camera's stream password).

- GET /api/config never shows a secret value;
- every write without the token is 401;
- an invalid PUT is 422 naming the key path, and leaves the file byte-identical;
- a region tried on the current frame reads the meter's value, with its crop as a PNG;
- a valid PUT answers 200 once reloaded: the file has the region and keeps its comments, `.bak` holds
  the old file, a masked `***` keeps the value in the file, and /api/status lists the new region;
- capture (reference) and set_value are reachable over HTTP.

The broker is a port where nothing listens: the daemon keeps trying, which this API does not need.
Every wait is a condition with a deadline.
"""

from __future__ import annotations

import base64
import json
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import yaml
from mqtt_broker import free_port, wait_until

from edge_ocr.bench.meter import LCD_BOX, PATCHES, write_meter_video
from edge_ocr.config import validate_file

TOKEN = "tok-3f9a1c77e2b04d55"
MQTT_PASSWORD = "mq-pass-8c1e0b7d"
CAMERA_PASSWORD = "cam-pass-5d2a9f41"
SOURCE = "meter"
SHOWN = "00042.195"
REPO = Path(__file__).resolve().parents[1]  # what the generated LCD shows; read with `decimals: 3` as 42.195

CONFIG = """\
# The meter in the cellar (written by hand; the page must keep these comments).
device_id: setup-api   # topic level
state_dir: {state}
engine: {{precision: fp32}}   # no INT8 measurement at each start

sources:
  # The water meter, filmed from the shelf.
  - name: meter
    type: camera
    url: {video}
    loop: true
    interval_s: 0.3        # fast enough for the page's live frame
    debounce_frames: 1
    regions:
      - name: reading     # the counter itself
        box: [{x}, {y}, {w}, {h}]
        numeric: {{decimals: 3, unit: m³}}
  # A stream that needs a password (never reachable here).
  - name: door
    type: camera
    url: rtsp://viewer@127.0.0.1:{rtsp}/stream
    open_timeout_s: 1
    backoff_min_s: 5
    backoff_max_s: 30
    password_file: {secrets}/camera
mqtt:
  url: mqtt://127.0.0.1:{mqtt}
  username: meter-reader   # shown as *** on the page
  password_file: {secrets}/mqtt
  backoff_min_s: 5
  backoff_max_s: 30
http:
  enabled: true
  api: true
  port: {port}
  token_file: {secrets}/token
"""


@dataclass
class Running:
    url: str
    path: Path
    tmp: Path
    daemon: Any

    def headers(self, token: str | None = TOKEN, ctype: str | None = "application/json") -> dict[str, str]:
        out = {}
        if token:
            out["Authorization"] = f"Bearer {token}"
        if ctype:
            out["Content-Type"] = ctype
        return out

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, headers=self.headers(ctype=None), timeout=60, **kw)

    def put_config(self, data: Any, token: str | None = TOKEN, ctype: str = "application/json") -> Any:
        body = json.dumps(data) if ctype == "application/json" else data
        headers = self.headers(token, ctype)
        return httpx.put(self.url + "/api/config", content=body, headers=headers, timeout=180)

    def post(self, path: str, data: Any, token: str | None = TOKEN) -> httpx.Response:
        return httpx.post(self.url + path, json=data, headers=self.headers(token), timeout=120)


def region_doc(name: str, box: tuple[int, int, int, int] = LCD_BOX) -> dict[str, Any]:
    return {"name": name, "box": list(box), "numeric": {"decimals": 3, "unit": "m³"}}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    from edge_ocr.daemon import Daemon

    tmp = tmp_path_factory.mktemp("setup-api")
    video = tmp / "meter.avi"
    write_meter_video(video, [(SHOWN, 4.0)], fps=10)
    secrets = tmp / "secrets"
    secrets.mkdir()
    (secrets / "token").write_text(TOKEN + "\n")
    (secrets / "mqtt").write_text(MQTT_PASSWORD + "\n")
    (secrets / "camera").write_text(CAMERA_PASSWORD + "\n")
    port = free_port()
    x, y, w, h = LCD_BOX
    path = tmp / "edge-ocr.yaml"
    path.write_text(CONFIG.format(state=tmp / "state", video=video, x=x, y=y, w=w, h=h, rtsp=free_port(),
                                  secrets=secrets, mqtt=free_port(), port=port))  # fmt: skip
    daemon = Daemon(validate_file(path), path)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    r = Running(f"http://127.0.0.1:{port}", path, tmp, daemon)
    try:
        assert wait_until(lambda: _frame_seen(r), 90), "the daemon did not analyse a frame within 90 s"
        yield r
    finally:
        daemon.request_stop()
        thread.join(60)
        assert not thread.is_alive(), "the daemon did not stop within 60 s"


def _frame_seen(r: Running) -> bool:
    try:
        return r.get(f"/api/cameras/{SOURCE}").json().get("frame", 0) > 0
    except (httpx.HTTPError, ValueError):
        return False


# ------------------------------------------------------------------ reading the configuration


def test_get_config_shows_the_file_and_never_a_secret(running: Running) -> None:
    r = running.get("/api/config")
    assert r.status_code == 200, r.text
    for secret in (TOKEN, MQTT_PASSWORD, CAMERA_PASSWORD, "meter-reader"):
        assert secret not in r.text, secret
    body = r.json()
    assert body["path"] == str(running.path) and body["editable"] is True
    doc = body["config"]
    assert doc["mqtt"]["username"] == "***" and body["running"]["mqtt"]["username"] == "***"
    assert doc["sources"][0]["regions"][0]["box"] == list(LCD_BOX)
    assert doc["sources"][1]["password_file"].endswith("secrets/camera")  # where it is, not what it is
    assert httpx.get(running.url + "/api/config", timeout=30).status_code == 401  # reading needs it too
    # The daemon has read all three (the token guards this very request, the camera connects with its
    # password); no other page of the API shows them either.
    for path in ("/api/status", "/api/sources", "/api/cameras/door", "/metrics", "/healthz", "/openapi.json"):
        text = running.get(path).text
        for secret in (TOKEN, MQTT_PASSWORD, CAMERA_PASSWORD):
            assert secret not in text, (path, secret)


def test_a_camera_password_written_into_its_url_is_refused_and_not_echoed(running: Running) -> None:
    """A password belongs in password_file/_env/_credential: a PUT carrying one in the stream URL is 422
    at that key, the answer does not repeat it, and nothing is written."""
    before = running.path.read_bytes()
    doc = running.get("/api/config").json()["config"]
    secret = "inline-cam-pass-61b0"
    doc["sources"][1]["url"] = doc["sources"][1]["url"].replace("viewer@", f"viewer:{secret}@")
    r = running.put_config(doc)
    assert r.status_code == 422, r.text
    assert [p["key"] for p in r.json()["error"]["problems"]] == ["sources[1].url"], r.text
    assert secret not in r.text
    assert running.path.read_bytes() == before


def test_every_write_without_the_token_is_401(running: Running) -> None:
    before = running.path.read_bytes()
    writes = [
        lambda t: running.put_config({"device_id": "x"}, token=t),
        lambda t: running.post(f"/api/sources/{SOURCE}/test", {"region": region_doc("t")}, token=t),
        lambda t: running.post(f"/api/sources/{SOURCE}/capture", {"reference": True}, token=t),
        lambda t: running.post(f"/api/sources/{SOURCE}/regions/reading/value", {"value": 1.0}, token=t),
    ]
    for write in writes:
        for token in (None, "wrong-token"):
            r = write(token)
            assert r.status_code == 401, r.text
            assert r.json()["error"]["code"] == "unauthorized"
    assert running.path.read_bytes() == before


# ------------------------------------------------------------------ trying a region


def test_a_region_tried_on_the_current_frame_reads_the_meter_with_its_crop(running: Running) -> None:
    r = running.post(f"/api/sources/{SOURCE}/test", {"region": region_doc("trial")})
    assert r.status_code == 200, r.text
    t = r.json()
    assert (t["text"], t["valid"], t["reason"]) == ("00042195", True, None), t
    assert t["value"] == pytest.approx(42.195) and t["unit"] == "m³"
    assert len(t["char_confidences"]) == len(t["text"]) and min(t["char_confidences"]) > 0.5
    crop = cv2.imdecode(np.frombuffer(base64.b64decode(t["crop_png"]), np.uint8), cv2.IMREAD_COLOR)
    assert crop is not None
    assert (crop.shape[1], crop.shape[0]) == (LCD_BOX[2], LCD_BOX[3]) == tuple(t["crop_size"])
    assert t["advice"] is None, t  # digits this large read reliably: no advice to move the camera

    # The rules judge it: a pattern it does not match rejects it, naming the rule.
    r = running.post(f"/api/sources/{SOURCE}/test", {"region": {**region_doc("trial"), "pattern": r"^9+$"}})
    assert (r.json()["valid"], r.json()["reason"]) == (False, "pattern")
    # A bad region is 422 naming its key; an unknown camera is 404.
    r = running.post(f"/api/sources/{SOURCE}/test", {"region": {"name": "bad", "box": [1, 2, 3]}})
    assert r.status_code == 422 and r.json()["error"]["problems"][0]["key"] == "region.box", r.text
    r = running.post("/api/sources/nope/test", {"region": region_doc("trial")})
    assert r.status_code == 404, r.text


# ------------------------------------------------------------------ saving


def test_an_invalid_put_is_422_naming_the_key_and_leaves_the_file_byte_identical(running: Running) -> None:
    before = running.path.read_bytes()
    doc = running.get("/api/config").json()["config"]
    doc["sources"][0]["regions"].append({"name": "second", "box": [10, 20, 30], "colour": "red"})
    r = running.put_config(doc)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_config"
    assert {p["key"] for p in err["problems"]} == {"sources[0].regions[1].colour"}, err
    del doc["sources"][0]["regions"][1]["colour"]
    r = running.put_config(doc)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert [p["key"] for p in err["problems"]] == ["sources[0].regions[1].box"], err
    assert "sources[0].regions[1].box: must be [x, y, w, h]" in err["message"]
    doc["sources"][0]["regions"].pop()
    doc["sources"][0]["interval_s"] = "fast"
    r = running.put_config(doc)
    assert r.status_code == 422 and r.json()["error"]["problems"][0]["key"] == "sources[0].interval_s"
    # Not YAML at all, and YAML that is not a mapping: 422 too.
    assert running.put_config("sources: [unclosed", ctype="application/yaml").status_code == 422
    assert running.put_config("- a\n- b\n", ctype="application/yaml").status_code == 422
    assert running.path.read_bytes() == before
    assert not (running.path.parent / (running.path.name + ".bak")).exists()


def test_a_valid_put_saves_with_a_backup_keeps_comments_and_reloads(running: Running) -> None:
    before = running.path.read_bytes()
    doc = running.get("/api/config").json()["config"]
    assert doc["mqtt"]["username"] == "***"  # sent back masked: the file keeps the user name
    x, y, w, h = LCD_BOX
    doc["sources"][0]["regions"].append(region_doc("right-half", (x + w // 2, y, w - w // 2, h)))
    # The page polls the camera through the reload: it stays there (its last frame until the restarted
    # camera's view takes over), never a 404 in between.
    polled: list[int] = []
    saving = threading.Event()

    def poll() -> None:
        with httpx.Client(headers=running.headers(ctype=None), timeout=30) as client:
            while not saving.is_set():
                polled.append(client.get(f"{running.url}/api/cameras/{SOURCE}").status_code)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        r = running.put_config(doc)
    finally:
        saving.set()
        poller.join(30)
    assert r.status_code == 200, r.text
    assert r.json()["reloaded"] is True and r.json()["changed"] is True
    assert len(polled) > 10 and set(polled) == {200}, polled

    text = running.path.read_text()
    assert (running.path.parent / (running.path.name + ".bak")).read_bytes() == before
    old_comments = [ln.split("#", 1)[1] for ln in before.decode().splitlines() if "#" in ln]
    assert old_comments == [ln.split("#", 1)[1] for ln in text.splitlines() if "#" in ln]
    saved = yaml.safe_load(text)
    assert saved["mqtt"]["username"] == "meter-reader"
    assert [r["name"] for r in saved["sources"][0]["regions"]] == ["reading", "right-half"]
    assert "box: [" in text  # the new box in flow style, like the user's
    assert validate_file(running.path).sources[0].regions[1].name == "right-half"

    def listed() -> bool:
        st = running.get("/api/status").json()
        return "right-half" in st["sources"][SOURCE].get("regions", {})

    assert wait_until(listed, 10), running.get("/api/status").json()["sources"][SOURCE]
    # The same document again changes nothing and reloads nothing.
    doc = running.get("/api/config").json()["config"]
    r = running.put_config(doc)
    assert r.status_code == 200 and r.json() == {**r.json(), "changed": False, "reloaded": False}, r.text


def test_the_reference_frame_and_the_remembered_value_from_http(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    r = running.post(f"/api/sources/{SOURCE}/regions/reading/value", {"value": 42.1})
    assert r.status_code == 200, r.text
    assert (r.json()["value"], r.json()["previous"]) == (pytest.approx(42.1), pytest.approx(42.195))
    # (The memory file itself may already hold the next reading, 42.195, accepted against 42.1.)
    assert "meter: reading set to 42.1 by cmd/set_value (was 42.195)" in caplog.text
    r = running.post(f"/api/sources/{SOURCE}/regions/nope/value", {"value": 1})
    assert r.status_code == 422 and "no numeric region" in r.json()["error"]["message"], r.text

    assert running.post(f"/api/sources/{SOURCE}/capture", {}).status_code == 200
    r = running.post(f"/api/sources/{SOURCE}/capture", {"reference": True})
    assert r.status_code == 422 and "no alignment" in r.json()["error"]["message"], r.text
    assert running.post("/api/sources/nope/capture", {}).status_code == 404


def test_alignment_patches_saved_and_the_reference_captured_over_http(running: Running) -> None:
    doc = running.get("/api/config").json()["config"]
    doc["sources"][0]["alignment"] = {"patches": [list(p) for p in PATCHES]}
    r = running.put_config(doc)
    assert r.status_code == 200 and r.json()["reloaded"] is True, r.text
    reference = running.tmp / "state" / "reference" / f"{SOURCE}.png"
    assert wait_until(reference.is_file, 30), "no reference saved from the first aligned frame"
    first = reference.stat().st_mtime_ns
    r = running.post(f"/api/sources/{SOURCE}/capture", {"reference": True})
    assert r.status_code == 200 and r.json()["reference"] is True, r.text
    assert wait_until(lambda: reference.stat().st_mtime_ns != first, 30), "the reference was not renewed"
    # The page draws on the frame in the reference's coordinates, and a region tried there still reads.
    assert wait_until(lambda: running.get(f"/api/cameras/{SOURCE}").json()["alignment"] is not None, 30)
    jpeg = running.get(f"/api/cameras/{SOURCE}/frame.jpg", params={"aligned": "true"})
    assert jpeg.status_code == 200 and jpeg.headers["content-type"] == "image/jpeg"
    t = running.post(f"/api/sources/{SOURCE}/test", {"region": region_doc("trial")}).json()
    assert (t["text"], t["valid"]) == ("00042195", True) and t["alignment"]["ok"] is True, t


def test_a_reload_the_daemon_refuses_puts_the_old_file_back(running: Running) -> None:
    before = running.path.read_bytes()
    doc = running.get("/api/config").json()["config"]
    doc["http"]["token_file"] = str(running.tmp / "secrets" / "missing")  # valid YAML, unreadable token
    r = running.put_config(doc)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "reload_refused" and "missing" in err["message"], err
    assert running.path.read_bytes() == before
    assert running.get("/api/status").status_code == 200  # still serving, with the old token


def test_a_new_http_section_is_answered_before_the_server_restarts(running: Running) -> None:
    doc = running.get("/api/config").json()["config"]
    doc["http"]["cache_entries"] = 64
    r = running.put_config(doc)
    assert r.status_code == 202 and r.json()["reloaded"] == "restarting", r.text

    def restarted() -> bool:
        try:
            return running.get("/api/config").json()["running"]["http"]["cache_entries"] == 64
        except (httpx.HTTPError, ValueError, KeyError):
            return False

    assert wait_until(restarted, 60), "the server did not come back with its new settings"


# ------------------------------------------------------------------ the writer alone (edge_ocr.config.write)


@pytest.mark.parametrize("name", ["edge-ocr.yaml", "container.yaml"])
def test_the_example_configs_saved_unchanged_stay_byte_identical(tmp_path: Path, name: str) -> None:
    from edge_ocr.config.write import masked_document, save

    path = tmp_path / name
    shutil.copy(REPO / "config" / name, path)
    before = path.read_bytes()
    _, changed = save(path, masked_document(path), sources_required=False)
    assert not changed and path.read_bytes() == before
    assert not path.with_name(name + ".bak").exists()


ANCHORED = """\
# one camera's settings shared by a second through an anchor
state_dir: ./state
sources:
  - &cam
    type: camera
    name: left    # the left meter
    url: ./left.avi
    interval_s: 0.5
    regions:
      - {name: a, box: [1, 2, 30, 40]}
  - <<: *cam
    name: right
    url: ./right.avi
"""


def test_a_change_to_one_user_of_an_anchor_leaves_the_other_as_it_was(tmp_path: Path) -> None:
    from edge_ocr.config.write import masked_document, save

    path = tmp_path / "anchored.yaml"
    path.write_text(ANCHORED)
    doc = masked_document(path)
    assert save(path, doc)[1] is False and path.read_text() == ANCHORED  # merged keys stay merged
    doc["sources"][1]["regions"][0]["box"] = [5, 5, 30, 40]
    doc["sources"][0]["interval_s"] = 1.0
    cfg, changed = save(path, doc)
    assert changed
    left, right = cfg.sources
    assert (left.interval_s, left.regions[0].box) == (1.0, (1, 2, 30, 40))
    assert (right.interval_s, right.regions[0].box) == (0.5, (5, 5, 30, 40))
    assert "<<: *cam" in path.read_text() and "# the left meter" in path.read_text()
    assert masked_document(path) == doc


def test_a_value_shown_masked_is_kept_and_a_mask_with_nothing_behind_it_is_refused(tmp_path: Path) -> None:
    from edge_ocr.config import ConfigFileError
    from edge_ocr.config.write import masked_document, save
    from edge_ocr.logs import remember_secret

    secret = "pw-in-a-path-7f3e"
    remember_secret(secret)  # as if read from a password file: every log line and page masks it
    path = tmp_path / "c.yaml"
    text = (
        f"state_dir: ./state/{secret}\nsources: [{{name: a, type: folder, path: ./in}}]\n"
        "mqtt: {url: mqtt://localhost, username: me}\n"
    )
    path.write_text(text)
    doc = masked_document(path)
    assert doc["state_dir"] == "./state/***" and doc["mqtt"]["username"] == "***"
    assert save(path, doc)[1] is False and path.read_text() == text
    doc["device_id"] = "pi-7"
    save(path, doc)
    assert secret in path.read_text() and "username: me" in path.read_text()
    doc["mqtt"]["client_id"] = "***"
    with pytest.raises(ConfigFileError) as err:
        save(path, doc)
    assert [p.key for p in err.value.problems] == ["mqtt.client_id"]


def test_a_reload_under_way_never_answers_a_save_asked_after_it_began() -> None:
    from edge_ocr.daemon.state import RESTARTING, Reloads

    event = threading.Event()
    reloads = Reloads(event)
    under_way = reloads.begin()  # a SIGHUP's reload, reading the file before the Save wrote it
    asked = reloads.ask()
    assert event.is_set()
    reloads.end(under_way, None)
    with pytest.raises(TimeoutError):
        reloads.wait(asked, 0.2)
    serving = reloads.begin()  # the next reload reads the saved file
    assert not event.is_set() and serving >= asked
    reloads.end(serving, RESTARTING)  # answered before the server stops...
    reloads.end(serving, None)  # ...and the reload's end does not change that answer
    assert reloads.wait(asked, 1) == RESTARTING
