"""The edge_ocr_core Ansible role (the fleet's NATS core) writes configurations that really form a cluster.

The role runs for real (`ansible-playbook`, local connection) for three nodes on loopback with its
service management off (no systemd as PID 1 here): it checks its settings, writes each node's
configuration through `nats-server -t` and creates the JetStream folders. Then three nats-server
processes start from exactly those files, and the test asks what the fleet needs of them:

- every node passes the role's own health gate (/healthz with JetStream ready) and takes MQTT;
- a retained QoS 1 message published on one node is read on another (the acknowledgement topic);
- the node it was published on is killed -9, and the message is still read from the two left;
- a second run of the role changes nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from mqtt_broker import HOST, free_port, wait_until
from paho.mqtt.enums import CallbackAPIVersion

from edge_ocr.bench.devnats import nats_binary

ROOT = Path(__file__).resolve().parent.parent
ROLES = ROOT / "ansible" / "roles"
RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=\d+\s+changed=(?P<changed>\d+)\s+unreachable=0\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)


def _playbook() -> str:
    here = str(Path(sys.executable).parent)  # the venv's bin, when the tests run without activating it
    path = shutil.which("ansible-playbook") or shutil.which("ansible-playbook", path=here)
    if path is None:
        pytest.fail("ansible-playbook is not installed: pip install ansible-core")
    return path


def _inventory(tmp: Path) -> tuple[Path, list[dict[str, int]]]:
    ports = [{k: free_port() for k in ("client", "route", "mqtt", "monitor")} for _ in range(3)]
    routes = [f"{HOST}:{p['route']}" for p in ports]
    hosts = {}
    for i, p in enumerate(ports):
        hosts[f"n{i}"] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "edge_ocr_core_name": f"n{i}",
            "edge_ocr_core_route_self": routes[i],
            "edge_ocr_core_client_port": p["client"],
            "edge_ocr_core_route_port": p["route"],
            "edge_ocr_core_mqtt_port": p["mqtt"],
            "edge_ocr_core_monitor_port": p["monitor"],
            "edge_ocr_core_conf_path": str(tmp / f"n{i}.conf"),
            "edge_ocr_core_store_dir": str(tmp / f"n{i}" / "jetstream"),
        }
    inv = {"edge_ocr_core": {"hosts": hosts, "vars": {
        "edge_ocr_core_routes": routes, "edge_ocr_core_listen_address": HOST,
        "edge_ocr_core_manage_service": False, "edge_ocr_core_max_file_store": "1GB",
        "edge_ocr_core_max_memory_store": "64MB"}}}  # fmt: skip
    path = tmp / "inventory.yml"
    path.write_text(yaml.safe_dump(inv))
    return path, ports


def _run_role(tmp: Path, inventory: Path) -> dict[str, int]:
    play = tmp / "core.yml"
    play.write_text(yaml.safe_dump([{"name": "core", "hosts": "edge_ocr_core", "gather_facts": False,
                                      "roles": [{"role": "edge_ocr_core"}]}]))  # fmt: skip
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(ROLES), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
           "PATH": f"{os.environ.get('PATH', '')}:/usr/sbin"}  # fmt: skip
    proc = subprocess.run([_playbook(), "-i", str(inventory), str(play)], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    recap = {m["host"]: int(m["changed"]) for m in RECAP.finditer(out)}
    assert set(recap) == {"n0", "n1", "n2"}, out
    return recap


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/healthz?js-enabled-only=true", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _retained(port: int, topic: str, timeout: float = 60.0) -> bytes | None:
    """Subscribe on one node and return the retained message of `topic`, if it comes. A node refuses
    MQTT clients while JetStream elects new leaders (a few seconds after a node is lost): new client,
    next try, as an ingester's reconnect does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = _read_once(port, topic, min(10.0, max(0.5, deadline - time.monotonic())))
        if got is not None:
            return got
    return None


def _read_once(port: int, topic: str, timeout: float) -> bytes | None:
    got: list[bytes] = []
    done = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"read-{port}", protocol=mqtt.MQTTv311)
    c.on_connect = lambda cl, *a: cl.subscribe(topic, 1)

    def on_message(_c, _u, msg) -> None:  # noqa: ANN001
        got.append(msg.payload)
        done.set()

    c.on_message = on_message
    try:
        c.connect(HOST, port, 10)
    except OSError:
        time.sleep(0.5)
        return None
    c.loop_start()
    try:
        done.wait(timeout)
    finally:
        c.loop_stop()
        c.disconnect()
    return got[0] if got else None


def test_the_core_role_writes_a_cluster_that_keeps_retained_messages_through_a_node_killed(
    tmp_path: Path,
) -> None:
    binary = nats_binary()
    if binary is None:
        pytest.fail("nats-server is not installed: apt-get install nats-server (scripts/test installs it)")
    inventory, ports = _inventory(tmp_path)
    _run_role(tmp_path, inventory)
    confs = [tmp_path / f"n{i}.conf" for i in range(3)]
    text = confs[0].read_text()
    assert "stream_replicas: 3" in text and f"nats-route://{HOST}:{ports[1]['route']}" in text
    assert f"nats-route://{HOST}:{ports[0]['route']}" not in text  # a node is not its own route

    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, conf in enumerate(confs):
            log = open(tmp_path / f"n{i}.log", "wb")  # noqa: SIM115 (the process keeps it)
            procs.append(subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT))

        def logs() -> str:
            return "\n".join((tmp_path / f"n{i}.log").read_text(errors="replace")[-1500:] for i in range(3))

        assert wait_until(lambda: all(_healthy(p["monitor"]) for p in ports), 60), logs()

        # What the ingester does with acknowledgements: a retained QoS 1 message, read back through
        # another node.
        topic, body = "edge-ocr/ack/pi-a", b'{"ids": ["x-1"]}'
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ack-writer", protocol=mqtt.MQTTv311)
        pub.connect(HOST, ports[0]["mqtt"], 10)
        pub.loop_start()
        info = pub.publish(topic, body, qos=1, retain=True)
        info.wait_for_publish(20)
        assert info.is_published()
        pub.loop_stop()
        pub.disconnect()
        assert _retained(ports[2]["mqtt"], topic) == body, logs()

        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        assert _retained(ports[1]["mqtt"], topic) == body, logs()
        assert _retained(ports[2]["mqtt"], topic) == body, logs()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)

    # Idempotent: the same inventory again changes nothing (no restart would be triggered).
    assert _run_role(tmp_path, inventory) == {"n0": 0, "n1": 0, "n2": 0}
