"""End to end: the real daemon (`python -m edge_ocr run`) as a subprocess, a real mosquitto, real folders
and the real models. Signals are real (SIGTERM, SIGHUP, SIGKILL); faults are injected by killing the
broker or the daemon. Each test asserts what a user would notice: results on MQTT, files in done/ or
failed/, log lines, /healthz, systemd notifications. Every wait is a condition with a timeout.

Issue 3's "What must hold", test by test:

- results with the MQTT contract, status online/offline: test_files_arrive_on_mqtt_with_the_contract_...
- broker killed, files keep arriving, back after 30 s: test_broker_killed_for_30_s_...
- daemon SIGKILLed mid-batch and restarted: test_daemon_sigkilled_mid_batch_...
- corrupt, truncated, zero-byte, non-image, bomb, unreadable files: test_bad_files_end_in_failed_...
- slow writer; 1,000-file backlog: test_slowly_written_file_...; test_backlog_of_1000_files_drains
- wrong password: test_wrong_password_...; TLS with a self-signed CA: test_tls_...; outbox full:
  test_outbox_full_...; SIGHUP: test_sighup_...; systemd notifications (and /healthz, /metrics):
  test_systemd_notifications_...; config errors: test_config_validate_names_file_key_and_line
- also: the embedded default (test_embedded_default_...), cmd/pause|resume (test_mqtt_commands_...),
  SIGTERM mid-file (test_sigterm_finishes_...), SIGHUP with files queued (test_sighup_while_files_...),
  an outbox write refused once (test_a_file_whose_result_cannot_be_stored_..., in-process).
The benchmark (`edge-ocr bench --daemon`) is not a test here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import (
    DEVICE,
    PREFIX,
    NotifySocket,
    daemon_config,
    drop,
    drop_copies,
    get,
    line_crops,
    names_in,
    png_bomb,
    source_entry,
    tiny_png,
    topic,
)
from mqtt_broker import Mosquitto, Subscriber, free_port, make_tls, wait_until

from edge_ocr.results import message_id

# OCR on a loaded 2-core machine: generous timeouts, never asserted as timings.
T_FILE = 60.0


@pytest.fixture
def subscribers() -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(broker: Mosquitto, topics: list[str] | None = None, **kwargs: Any) -> Subscriber:
        sub = Subscriber(broker, topics or [f"{PREFIX}/#"], **kwargs)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


def results(sub: Subscriber, source: str = "inbox", prefix: str = PREFIX) -> list[dict[str, Any]]:
    return [json.loads(p) for p in sub.payloads(topic(f"result/{source}", prefix=prefix))]


def result_files(sub: Subscriber, source: str = "inbox", prefix: str = PREFIX) -> set[str]:
    return {r["file"] for r in results(sub, source, prefix)}


def expected_id(name: str, data: bytes, source: str = "inbox") -> str:
    return message_id(DEVICE, source, name, hashlib.sha256(data).hexdigest())


def statuses(sub: Subscriber) -> list[bytes]:
    return sub.payloads(topic("status"))


def health(port: int) -> dict[str, Any]:
    return json.loads(get(f"http://127.0.0.1:{port}/healthz")[1])


def assert_delivered_once_per_id(sub: Subscriber, expected: dict[str, str], source: str = "inbox") -> None:
    """Every file's result arrived; any duplicate carries the same id (and the same content)."""
    by_file: dict[str, set[str]] = {}
    by_id: dict[str, set[str]] = {}
    for r in results(sub, source):
        by_file.setdefault(r["file"], set()).add(r["id"])
        by_id.setdefault(r["id"], set()).add(json.dumps({k: r.get(k) for k in ("file", "sha256", "text")}))
    assert set(by_file) == set(expected), f"missing {sorted(set(expected) - set(by_file))}"
    for name, ids in by_file.items():
        assert ids == {expected[name]}, f"{name}: ids {ids}, expected {expected[name]}"
    assert all(len(v) == 1 for v in by_id.values()), "a duplicate id carried different content"


# --------------------------------------------------------------------------------------------------


def test_files_arrive_on_mqtt_with_the_contract_and_status_goes_online_then_offline(
    tmp_path, mosquitto, daemons, subscribers, eval_data
):
    """Issue 3 §4 contract; status retained `online` after connect, `offline` on SIGTERM; file in done/."""
    root = tmp_path / "box"
    d = daemons(daemon_config(root, mosquitto)).start_ready()
    assert d.wait_log(r"MQTT: connected", 30), d.tail()
    sub = subscribers(mosquitto)
    # Subscribed after the daemon connected: `online` is retained.
    assert sub.wait_for(lambda _: statuses(sub) == [b"online"], 15)
    assert sub.on(topic("status"))[0].retain

    page = sorted((eval_data / "pages").glob("*.jpg"))[0]
    crop = line_crops(eval_data, 1)[0]
    files = {page.name: page.read_bytes(), crop.name: crop.read_bytes()}
    for name, data in files.items():
        drop(root / "inbox", name, data)
    assert sub.wait_for(lambda _: result_files(sub) == set(files), T_FILE), d.tail()

    for r in results(sub):
        data = files[r["file"]]
        assert set(r) >= {"id", "device_id", "source", "file", "sha256", "captured_at", "processed_at",
                          "text", "lines", "model", "timings_ms"}  # fmt: skip
        assert "error" not in r
        assert r["id"] == expected_id(r["file"], data)
        assert (r["device_id"], r["source"]) == (DEVICE, "inbox")
        assert r["sha256"] == hashlib.sha256(data).hexdigest()
        for key in ("captured_at", "processed_at"):
            assert r[key].endswith("Z") and "T" in r[key]
        assert isinstance(r["text"], str) and r["text"].strip()
        assert r["lines"] and all(set(ln) >= {"text", "confidence", "box"} for ln in r["lines"])
        assert all(0.0 <= ln["confidence"] <= 1.0 and len(ln["box"]) == 4 for ln in r["lines"])
        assert set(r["model"]) >= {"det", "rec"}
        assert r["timings_ms"].get("total", 0) > 0
    page_text = next(r for r in results(sub) if r["file"] == page.name)["text"]
    assert len(page_text.splitlines()) > 5, "a receipt page has many lines"
    assert all(m.qos == 1 for m in sub.on(topic("result/inbox")))

    assert wait_until(lambda: names_in(root / "done" / "inbox") == set(files), 15)
    assert names_in(root / "inbox") == set()
    assert d.stop() == 0
    assert sub.wait_for(lambda _: statuses(sub)[-1:] == [b"offline"], 15)
    assert d.log_has(r"stopped$")
    # A subscriber arriving later sees the retained `offline`.
    late = subscribers(mosquitto, [topic("status")])
    assert late.wait_for(lambda _: statuses(late) == [b"offline"], 10)


def test_broker_killed_for_30_s_while_files_arrive_loses_nothing(tmp_path, mosquitto, daemons, subscribers):
    """Broker SIGKILLed, files keep arriving, broker back 30 s later: every result delivered."""
    root = tmp_path / "box"
    inbox = root / "inbox"
    sub = subscribers(mosquitto, client_id="outage-sub", clean=False)  # its session survives the kill
    d = daemons(daemon_config(root, mosquitto)).start_ready()
    expected: dict[str, str] = {}

    def put(i: int) -> None:
        name, data = f"f{i:03d}.png", tiny_png(f"f{i:03d}")
        expected[name] = expected_id(name, data)
        drop(inbox, name, data)

    for i in range(3):
        put(i)
    assert sub.wait_for(lambda _: len(result_files(sub)) == 3, T_FILE), d.tail()

    mosquitto.kill()
    killed = time.monotonic()
    assert d.wait_log(r"MQTT: lost the connection", 30), d.tail()
    i = 3
    while time.monotonic() - killed < 24:  # files keep arriving during the outage
        put(i)
        i += 1
        time.sleep(2.0)
    # Every file was processed while the broker was away: its result waits in the outbox.
    assert wait_until(lambda: names_in(root / "done" / "inbox") == set(expected), T_FILE), d.tail()
    assert len(result_files(sub)) == 3
    time.sleep(max(0.0, 30.0 - (time.monotonic() - killed)))  # the outage lasts 30 s
    mosquitto.restart()

    assert sub.wait_for(lambda _: result_files(sub) == set(expected), 60), d.tail()
    assert_delivered_once_per_id(sub, expected)
    assert sub.wait_for(lambda _: statuses(sub)[-1:] == [b"online"], 15)
    assert d.running
    assert d.stop() == 0


def test_daemon_sigkilled_mid_batch_and_restarted_delivers_every_file(
    tmp_path, mosquitto, daemons, subscribers, eval_data
):
    """SIGKILL after a few of 20 results; after a restart every file is in done/ or failed/ and every
    result reached MQTT; a duplicate only with the same id."""
    root = tmp_path / "box"
    crops = line_crops(eval_data, 20)
    expected = {p.name: expected_id(p.name, p.read_bytes()) for p in crops}
    sub = subscribers(mosquitto, client_id="kill-sub", clean=False)
    d = daemons(daemon_config(root, mosquitto, engine={"workers": 2, "threads": 1})).start_ready()
    drop_copies(root / "inbox", crops)
    assert sub.wait_for(lambda _: len(result_files(sub)) >= 3, T_FILE), d.tail()
    d.kill()
    # The broker publishes the last will for the vanished client.
    assert sub.wait_for(lambda _: statuses(sub)[-1:] == [b"offline"], 30)
    left = names_in(root / "inbox")
    assert left, "the kill came after the whole batch; nothing was mid-batch"

    d.start_ready()
    settled = root / "done" / "inbox", root / "failed" / "inbox"

    def all_settled() -> bool:
        finished = names_in(settled[0]) | names_in(settled[1])
        return names_in(root / "inbox") == set() and finished == set(expected)

    assert wait_until(all_settled, 120), d.tail()
    assert sub.wait_for(lambda _: result_files(sub) == set(expected), 60), d.tail()
    assert_delivered_once_per_id(sub, expected)
    assert sub.wait_for(lambda _: statuses(sub)[-1:] == [b"online"], 15)
    assert d.stop() == 0


def _can_drop_dac_caps() -> bool:
    """Whether `setpriv` can run us without CAP_DAC_OVERRIDE/READ_SEARCH (root then obeys mode 000)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return False
    probe = subprocess.run(
        [*_NO_DAC, sys.executable, "-c", "import os; os.open('/proc/1/environ', os.O_RDONLY)"],
        capture_output=True,
    )
    return probe.returncode != 0  # refused: the caps are really gone


_NO_DAC = [
    "setpriv",
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
]


def test_bad_files_end_in_failed_with_reason_and_the_daemon_keeps_running(
    tmp_path, mosquitto, daemons, subscribers, eval_data
):
    """Corrupt, truncated, zero-byte, non-image, oversized (bomb) and unreadable files: each in failed/
    with NAME.error.json and a failure message on MQTT; a good file afterwards is still processed.

    Tests run as root, who reads a mode-000 file anyway: the daemon runs without CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH (setpriv), so for it the file really is unreadable. Without setpriv (as root)
    the unreadable case cannot be made and is left out of this run, saying so.
    """
    root = tmp_path / "box"
    inbox = root / "inbox"
    good = line_crops(eval_data, 1)[0].read_bytes()
    bad = {
        "corrupt.jpg": b"\xff\xd8\xff\xe0" + os.urandom(3000),
        "truncated.png": good[: len(good) // 2],
        "empty.png": b"",
        "notes.txt": b"not an image at all\n" * 20,
        "bomb.png": png_bomb(100_000, 100_000),
    }
    wrapper: list[str] = []
    if os.geteuid() != 0:
        bad["secret.png"] = good
    elif _can_drop_dac_caps():
        bad["secret.png"] = good
        wrapper = _NO_DAC
    else:
        print("setpriv cannot drop CAP_DAC_OVERRIDE here: the unreadable-file case is not exercised")
    sub = subscribers(mosquitto)
    d = daemons(daemon_config(root, mosquitto), wrapper=wrapper).start_ready()
    for name, data in bad.items():
        if name == "secret.png":
            path = inbox / name
            path.write_bytes(data)
            path.chmod(0)
        else:
            drop(inbox, name, data)

    failed_dir = root / "failed" / "inbox"
    assert wait_until(lambda: names_in(failed_dir) == set(bad), T_FILE), (names_in(failed_dir), d.tail())
    assert sub.wait_for(lambda _: result_files(sub) >= set(bad), 30), d.tail()
    by_file = {r["file"]: r for r in results(sub)}
    for name in bad:
        doc = json.loads((failed_dir / f"{name}.error.json").read_text())
        assert doc["reason"].get("message"), (name, doc)
        assert doc["error_type"] != "unknown", (name, doc)
        msg = by_file[name]
        assert msg["error"].get("message") and "text" not in msg and "lines" not in msg, msg
    reasons = {n: json.loads((failed_dir / f"{n}.error.json").read_text())["reason"]["message"] for n in bad}
    assert "pixels" in reasons["bomb.png"] or "large" in reasons["bomb.png"].lower(), reasons["bomb.png"]
    if "secret.png" in bad:
        assert "ermission" in reasons["secret.png"], reasons["secret.png"]

    assert d.running
    drop(inbox, "good.png", good)
    assert sub.wait_for(lambda _: "good.png" in result_files(sub), T_FILE), d.tail()
    assert "error" not in {r["file"]: r for r in results(sub)}["good.png"]
    assert wait_until(lambda: "good.png" in names_in(root / "done" / "inbox"), 15)
    assert d.stop() == 0


def test_slowly_written_file_is_processed_once_after_it_is_complete(
    tmp_path, mosquitto, daemons, subscribers, eval_data
):
    """A writer that keeps the file open and writes it in chunks: one result, for the complete file."""
    root = tmp_path / "box"
    sub = subscribers(mosquitto)
    d = daemons(daemon_config(root, mosquitto)).start_ready()
    data = line_crops(eval_data, 1)[0].read_bytes()
    chunks = [data[i : i + 400] for i in range(0, len(data), 400)]
    assert len(chunks) >= 5
    with open(root / "inbox" / "slow.png", "wb") as f:  # no .part: the daemon sees every chunk
        for chunk in chunks:
            f.write(chunk)
            f.flush()
            time.sleep(0.3)  # a slow writer; shorter than stable_s (1 s), so the file is not yet taken
            assert names_in(root / "inbox") == {"slow.png"}
    assert sub.wait_for(lambda _: results(sub), T_FILE), d.tail()
    assert wait_until(lambda: "slow.png" in names_in(root / "done" / "inbox"), 15)
    # Give a second (wrong) take of the same file every chance to show up before counting.
    drop(root / "inbox", "marker.png", tiny_png("mark"))
    assert sub.wait_for(lambda _: "marker.png" in result_files(sub), T_FILE)
    slow = [r for r in results(sub) if r["file"] == "slow.png"]
    assert len(slow) == 1, slow
    assert slow[0]["sha256"] == hashlib.sha256(data).hexdigest()
    assert "error" not in slow[0] and slow[0]["text"].strip()
    assert names_in(root / "failed" / "inbox") == set()
    assert d.stop() == 0


def test_backlog_of_1000_files_drains(tmp_path, mosquitto, daemons, subscribers):
    """1,000 files already in the inbox at start: all processed, all delivered, inbox empty."""
    root = tmp_path / "box"
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    expected = {}
    for i in range(1000):
        name, data = f"b{i:04d}.png", tiny_png(f"b{i:04d}")
        (inbox / name).write_bytes(data)
        expected[name] = expected_id(name, data)
    sub = subscribers(mosquitto)
    cfg = daemon_config(root, mosquitto, engine={"workers": 2, "threads": 1, "use_cls": False})
    d = daemons(cfg).start_ready()
    assert sub.wait_for(lambda _: len(result_files(sub)) == 1000, 420), (len(result_files(sub)), d.tail())
    assert_delivered_once_per_id(sub, expected)
    assert wait_until(lambda: len(names_in(root / "done" / "inbox")) == 1000, 30)
    assert names_in(inbox) == set()
    assert d.stop() == 0


def test_wrong_password_is_logged_results_wait_then_reload_with_the_right_one_delivers(
    tmp_path, mosquitto_factory, daemons, subscribers
):
    """A refused login is logged clearly and shown in health; the daemon keeps running and results wait
    in the outbox. Fixing the password file and sending SIGHUP delivers them."""
    broker = mosquitto_factory(users={"edge": "right-password", "test": "test-password"})
    root = tmp_path / "box"
    secret = tmp_path / "mqtt-password"
    secret.write_text("wrong-password\n")
    port = free_port()
    cfg = daemon_config(root, broker, http={"enabled": True, "port": port})
    cfg["mqtt"].update(username="edge", password_file=str(secret))
    sub = subscribers(broker, username="test", password="test-password")
    d = daemons(cfg).start_ready()
    assert d.wait_log(r"ERROR edge_ocr\.publish\.mqtt: MQTT: broker .* refused the login of user 'edge'", 30)
    assert not d.log_has("wrong-password"), "the password must never be logged"

    data = tiny_png("pw")
    drop(root / "inbox", "pw.png", data)
    assert wait_until(lambda: names_in(root / "done" / "inbox") == {"pw.png"}, T_FILE), d.tail()
    h = health(port)
    assert h["healthy"] is True  # the pipeline is fine; the broker is reported separately
    assert h["broker"]["connected"] is False and "refused the login" in h["broker"]["last_error"]
    assert h["outbox_depth"] >= 1
    assert d.running and results(sub) == []

    secret.write_text("right-password\n")
    d.send(signal.SIGHUP)
    assert sub.wait_for(lambda _: result_files(sub) == {"pw.png"}, 30), d.tail()
    assert results(sub)[0]["id"] == expected_id("pw.png", data)
    assert wait_until(lambda: health(port)["outbox_depth"] == 0, 15)
    assert health(port)["broker"]["connected"] is True
    assert d.stop() == 0


def test_tls_with_a_self_signed_ca_and_client_certificate(tmp_path, mosquitto_factory, daemons, subscribers):
    """mqtts:// to a broker whose certificate a throw-away CA signed; the broker requires a client
    certificate, whose key is encrypted (passphrase from a file)."""
    tls = make_tls(tmp_path / "tls")
    broker = mosquitto_factory(tls=tls, require_certificate=True)
    assert broker.url.startswith("mqtts://")
    key_pw = tmp_path / "key-password"
    key_pw.write_text(tls.client_key_password + "\n")
    root = tmp_path / "box"
    cfg = daemon_config(root, broker)
    cfg["mqtt"]["tls"] = {
        "ca_file": str(tls.ca),
        "cert_file": str(tls.client_cert),
        "key_file": str(tls.client_key),
        "key_password_file": str(key_pw),
    }
    sub = subscribers(broker)
    d = daemons(cfg).start_ready()
    assert d.wait_log(r"MQTT: connecting to .* tls on", 10)
    assert sub.wait_for(lambda _: statuses(sub) == [b"online"], 30), d.tail()
    drop(root / "inbox", "tls.png", tiny_png("tls"))
    assert sub.wait_for(lambda _: result_files(sub) == {"tls.png"}, T_FILE), d.tail()
    assert d.stop() == 0
    assert sub.wait_for(lambda _: statuses(sub)[-1:] == [b"offline"], 15)


def test_outbox_full_holds_files_in_the_inbox_until_the_broker_returns(
    tmp_path, mosquitto, daemons, subscribers
):
    """outbox.max_messages small and the broker down: new files stay in the inbox (back pressure),
    logs and health say so; the broker back, the outbox drains and the held files are processed."""
    root = tmp_path / "box"
    inbox = root / "inbox"
    sub = subscribers(mosquitto, client_id="full-sub", clean=False)
    mosquitto.stop()  # a clean stop saves the subscriber's session at once (a kill might beat the autosave)
    port = free_port()
    cfg = daemon_config(root, mosquitto, outbox={"max_messages": 3}, http={"enabled": True, "port": port})
    d = daemons(cfg).start_ready()
    expected = {}
    for i in range(10):
        name, data = f"o{i:02d}.png", tiny_png(f"o{i:02d}")
        expected[name] = expected_id(name, data)
        drop(inbox, name, data)

    assert d.wait_log(r"WARNING edge_ocr\.daemon: outbox full", T_FILE), d.tail()

    def settled() -> bool:  # nothing queued or in a worker's hands
        h = health(port)
        return h["outbox_full"] and h["queued"] == 0 and h["sources"]["inbox"]["in_flight"] == 0

    assert wait_until(settled, 30), health(port)
    held = names_in(inbox)
    assert held, "back pressure should keep files in the inbox"
    # Held, not lost or failed: nothing moves while the outbox is full.
    time.sleep(3)
    assert names_in(inbox) == held
    assert names_in(root / "failed" / "inbox") == set()
    assert "edge_ocr_outbox_full{" in get(f"http://127.0.0.1:{port}/metrics")[1]
    assert any(line.startswith("edge_ocr_outbox_full{") and float(line.split()[-1]) == 1
               for line in get(f"http://127.0.0.1:{port}/metrics")[1].splitlines())  # fmt: skip

    mosquitto.restart()
    assert sub.wait_for(lambda _: result_files(sub) == set(expected), 90), d.tail()
    assert_delivered_once_per_id(sub, expected)
    # A file leaves the inbox after its result is in the outbox, so the broker may deliver it first.
    assert wait_until(lambda: names_in(inbox) == set(), 15), names_in(inbox)
    assert d.wait_log(r"outbox has room again", 15)
    assert d.stop() == 0


def test_sighup_reloads_the_config_and_an_invalid_one_is_refused(tmp_path, mosquitto, daemons, subscribers):
    """SIGHUP: a new topic_prefix and a new source apply to new files; an invalid config file on SIGHUP
    is refused with a log line naming the problem and the daemon keeps running the old config."""
    root = tmp_path / "box"
    sub = subscribers(mosquitto, ["#"])
    cfg = daemon_config(root, mosquitto)
    d = daemons(cfg).start_ready()
    drop(root / "inbox", "before.png", tiny_png("before"))
    assert sub.wait_for(lambda _: result_files(sub) == {"before.png"}, T_FILE), d.tail()

    cfg["mqtt"]["topic_prefix"] = "plant-7"
    cfg["sources"].append(source_entry(root, "scans"))
    d.write_config(cfg)
    d.send(signal.SIGHUP)
    assert d.wait_log(r"reloading configuration from", 30), d.tail()
    assert d.wait_log(r"source scans: watching", 30), d.tail()
    drop(root / "inbox", "after.png", tiny_png("after"))
    drop(root / "scans", "scan.png", tiny_png("scan"))
    assert sub.wait_for(lambda _: result_files(sub, "inbox", "plant-7") == {"after.png"}, T_FILE), d.tail()
    assert sub.wait_for(lambda _: result_files(sub, "scans", "plant-7") == {"scan.png"}, T_FILE), d.tail()
    assert result_files(sub) == {"before.png"}  # nothing more under the old prefix
    assert sub.wait_for(lambda _: sub.payloads(topic("status", prefix="plant-7"))[-1:] == [b"online"], 15)

    good_text = d.config_path.read_text()
    d.config_path.write_text(good_text.replace("topic_prefix:", "topic_prefx:"))
    d.send(signal.SIGHUP)
    assert d.wait_log(r"ERROR edge_ocr\.daemon: reload refused.*topic_prefx", 30), d.tail()
    drop(root / "inbox", "still.png", tiny_png("still"))
    assert sub.wait_for(lambda _: "still.png" in result_files(sub, "inbox", "plant-7"), T_FILE), d.tail()
    assert d.running
    assert d.stop() == 0


def test_systemd_notifications_healthz_and_metrics(tmp_path, mosquitto, daemons, subscribers):
    """READY=1 once models are loaded and sources started, STATUS= lines, WATCHDOG=1 pings (WATCHDOG_USEC
    set), STOPPING=1 on SIGTERM; /healthz 200 and /metrics counting processed files."""
    root = tmp_path / "box"
    notify = NotifySocket(tmp_path / "notify.sock")
    port = free_port()
    try:
        sub = subscribers(mosquitto)
        env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "2000000"}
        d = daemons(daemon_config(root, mosquitto, http={"enabled": True, "port": port}), env=env).start()
        assert notify.wait_for("READY", "1", 60), d.tail()
        assert d.log_has(r"source inbox: watching"), "READY=1 must come after the sources started"
        assert any(k == "STATUS" and v for k, v in notify.fields())
        assert notify.wait_for("WATCHDOG", "1", 15, count=3)
        assert ("STOPPING", "1") not in notify.fields()

        status, body = get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200 and json.loads(body)["healthy"] is True
        # Which set and precision each role runs here, and why (issue 9: precision chosen on the device).
        model = json.loads(body)["model"]
        assert model["set"] == "ppocrv6-small"
        assert all(model[r]["precision"] in ("fp32", "int8") and model[r]["why"] for r in ("det", "rec"))
        drop(root / "inbox", "m.png", tiny_png("metric"))
        assert sub.wait_for(lambda _: result_files(sub) == {"m.png"}, T_FILE), d.tail()
        status, text = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        processed = [ln for ln in text.splitlines() if ln.startswith("edge_ocr_files_processed_total{")]
        assert processed and float(processed[0].split()[-1]) == 1, text
        # STATUS= follows what the daemon does.
        assert wait_until(lambda: any(k == "STATUS" and "processed 1" in v for k, v in notify.fields()), 15)

        assert d.stop() == 0
        assert notify.wait_for("STOPPING", "1", 15)
        keys = [k for k, _ in notify.fields()]
        assert keys.index("READY") < keys.index("STOPPING")
    finally:
        notify.close()


def test_config_validate_names_file_key_and_line(tmp_path):
    """`edge-ocr config validate` on a typo'd key exits non-zero naming the file, the key and the line;
    `edge-ocr run` refuses the same file the same way; the example config validates."""
    bad = tmp_path / "edge-ocr.yaml"
    bad.write_text(
        "device_id: pi-042\n"
        f"state_dir: {tmp_path / 'state'}\n"
        "sources:\n"
        "  - name: inbox\n"
        "    type: folder\n"
        f"    path: {tmp_path / 'inbox'}\n"
        "    stabel_s: 3\n"
    )
    # The console script installed with this interpreter (not whatever `edge-ocr` PATH finds first).
    script = Path(sys.executable).parent / "edge-ocr"
    prefix = [str(script)] if script.exists() else [sys.executable, "-m", "edge_ocr"]
    for cmd in (["config", "validate", str(bad)], ["run", "--config", str(bad)]):
        p = subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=60)
        out = p.stdout + p.stderr
        assert p.returncode != 0, out
        assert f"{bad}:7" in out and "stabel_s" in out, out
        assert "stable_s" in out, "the message should suggest the right key"
    assert not (tmp_path / "state").exists(), "a refused config must not start anything"

    example = Path(__file__).resolve().parents[1] / "config" / "edge-ocr.yaml"
    p = subprocess.run(
        [*prefix, "config", "validate", str(example)], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_embedded_default_prints_json_lines_for_files_in_dot_inbox(tmp_path, daemons, eval_data):
    """`edge-ocr run` with no config in an empty directory: watches ./inbox, keeps state in ./var, prints
    one JSON line per result on stdout."""
    cwd = tmp_path / "here"
    cwd.mkdir()
    d = daemons(None, cwd=cwd).start_ready()
    assert (cwd / "inbox").is_dir()
    crop = line_crops(eval_data, 1)[0]
    drop(cwd / "inbox", crop.name, crop.read_bytes())
    assert wait_until(lambda: d.stdout_lines(), T_FILE), d.tail()
    lines = d.stdout_lines()
    assert len(lines) == 1
    r = json.loads(lines[0])
    assert r["file"] == crop.name and r["text"].strip() and r["sha256"]
    assert (cwd / "var").is_dir()
    assert wait_until(lambda: not (cwd / "inbox" / crop.name).exists(), 15)
    assert d.stop() == 0


def test_mqtt_commands_pause_and_resume(tmp_path, mosquitto, daemons, subscribers):
    """`cmd/pause`: a new file is left alone; `cmd/resume`: it is processed; replies on cmd/<verb>/reply."""
    root = tmp_path / "box"
    sub = subscribers(mosquitto)
    d = daemons(daemon_config(root, mosquitto)).start_ready()
    assert sub.wait_for(lambda _: statuses(sub) == [b"online"], 30)

    def command(verb: str) -> dict[str, Any]:
        reply_topic = topic(f"cmd/{verb}/reply")
        sub.client.publish(topic(f"cmd/{verb}"), json.dumps({"id": f"t-{verb}"}), qos=1)
        assert sub.wait_for(lambda _: sub.payloads(reply_topic), 15), d.tail()
        return json.loads(sub.payloads(reply_topic)[-1])

    reply = command("pause")
    assert reply["ok"] is True and reply["paused"] is True and reply["id"] == "t-pause"
    drop(root / "inbox", "p.png", tiny_png("pause"))
    # An observation window: a paused daemon must not take the file.
    assert not sub.wait_for(lambda _: bool(results(sub)), 4)
    assert names_in(root / "inbox") == {"p.png"}

    reply = command("resume")
    assert reply["ok"] is True and reply["paused"] is False
    assert sub.wait_for(lambda _: result_files(sub) == {"p.png"}, T_FILE), d.tail()
    assert wait_until(lambda: names_in(root / "done" / "inbox") == {"p.png"}, 15)
    assert d.stop() == 0


def test_a_file_whose_result_cannot_be_stored_stays_in_the_inbox_and_is_tried_again(
    tmp_path, models_dir, monkeypatch
):
    """The outbox refuses a write once (a full disk): the file is not lost and not stuck in flight; the
    next rescan offers it again and it is processed. In-process, to inject the disk error."""
    import yaml

    from edge_ocr.config import parse_config
    from edge_ocr.daemon import Daemon
    from edge_ocr.errors import PublishError
    from edge_ocr.outbox import Outbox

    root = tmp_path / "box"
    cfg = daemon_config(root)
    cfg["sources"][0]["rescan_s"] = 1
    daemon = Daemon(parse_config(yaml.safe_dump(cfg), "test.yaml"))
    real_put, refused = Outbox.put, []

    def put_failing_once(self: Outbox, msg_id: str, topic_: str, payload: bytes, *a: Any, **kw: Any) -> bool:
        if b'"file":"disk.png"' in payload and not refused:
            refused.append(msg_id)
            raise PublishError("cannot store message: database or disk is full (injected)")
        return real_put(self, msg_id, topic_, payload, *a, **kw)

    monkeypatch.setattr(Outbox, "put", put_failing_once)
    runner = threading.Thread(target=daemon.run, name="daemon-under-test")
    runner.start()
    try:
        drop(root / "inbox", "disk.png", tiny_png("disk"))
        assert wait_until(lambda: bool(refused), T_FILE)
        assert wait_until(lambda: names_in(root / "done" / "inbox") == {"disk.png"}, T_FILE)
        assert daemon.outbox is not None and daemon.outbox.depth() == 1
    finally:
        daemon.request_stop()
        runner.join(60)
    assert not runner.is_alive()


def test_sigterm_finishes_the_file_in_hand_and_publishes_it_before_offline(
    tmp_path, mosquitto, daemons, subscribers, eval_data
):
    """SIGTERM while a page is being read: the daemon finishes it, publishes its result, then `offline`."""
    root = tmp_path / "box"
    port = free_port()
    sub = subscribers(mosquitto)
    d = daemons(daemon_config(root, mosquitto, http={"enabled": True, "port": port})).start_ready()
    page = sorted((eval_data / "pages").glob("*.jpg"))[0]
    drop(root / "inbox", page.name, page.read_bytes())
    assert wait_until(lambda: health(port)["sources"]["inbox"]["in_flight"] == 1, T_FILE), d.tail()
    assert names_in(root / "done" / "inbox") == set(), "the page was read before SIGTERM; nothing to test"
    assert d.stop() == 0
    assert names_in(root / "done" / "inbox") == {page.name}
    assert sub.wait_for(lambda _: statuses(sub)[-1:] == [b"offline"], 15)
    kinds = [
        m.topic.rsplit("/", 1)[-1]
        for m in sub.messages
        if "/result/" in m.topic or m.topic.endswith("/status")
    ]
    assert kinds[-2:] == ["inbox", "status"], kinds  # the result, then offline
    assert result_files(sub) == {page.name}


def test_sighup_while_files_are_queued_loses_none(tmp_path, mosquitto, daemons, subscribers):
    """A reload drops the old generation's queue; the new sources must find those files again."""
    root = tmp_path / "box"
    sub = subscribers(mosquitto)
    d = daemons(daemon_config(root, mosquitto)).start_ready()
    expected = {}
    for i in range(30):
        name, data = f"h{i:02d}.png", tiny_png(f"h{i:02d}")
        expected[name] = expected_id(name, data)
        drop(root / "inbox", name, data)
    assert sub.wait_for(lambda _: len(results(sub)) >= 2, T_FILE), d.tail()
    d.send(signal.SIGHUP)
    assert d.wait_log(r"reloading configuration from", 30), d.tail()
    assert sub.wait_for(lambda _: result_files(sub) == set(expected), 120), d.tail()
    assert_delivered_once_per_id(sub, expected)
    assert wait_until(lambda: names_in(root / "done" / "inbox") == set(expected), 15)
    assert d.stop() == 0
