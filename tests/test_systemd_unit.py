"""systemd/edge-ocr.service: systemd's own checks, its contract with the CLI and the config, and the
daemon actually running inside the unit's syscall filter and W^X policy.

- `systemd-analyze verify` runs on the unit file exactly as shipped, inside a temporary root that holds
  the release layout the unit names (/opt/edge-ocr/current -> releases/<v>/venv/bin/edge-ocr), /bin/kill
  and the host's unit library. verify exits 0 on unknown keys and bad values, so any stderr fails.
- `systemd-analyze security --offline=yes`: the overall exposure level must be at most 2.5.
- The sandbox test applies `SystemCallFilter=` (expanded by `systemd-analyze syscall-filter`, with
  `SystemCallErrorNumber=`) through libseccomp and `MemoryDenyWriteExecute=` through PR_SET_MDWE, then
  execs the real daemon: onnxruntime, OpenCV, SQLite, inotify and sd_notify must all work inside it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "edge-ocr.service"
UNIT_NAME = UNIT.name
MAX_EXPOSURE = 2.5
HOST_UNITS = Path("/usr/lib/systemd/system")

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (apt-get install systemd)"
)


def unit_settings(text: str | None = None) -> dict[str, list[str]]:
    """`Key` -> every value assigned to it in the unit (sections flattened; continuation lines joined)."""
    text = UNIT.read_text() if text is None else text
    out: dict[str, list[str]] = {}
    logical = re.sub(r"\\\n", " ", text)
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def one(key: str) -> str:
    values = unit_settings()[key]
    assert len(values) == 1, f"{key}= is set {len(values)} times"
    return values[0]


def exec_start_argv() -> list[str]:
    return shlex.split(one("ExecStart"))


def make_root(tmp: Path, unit_text: str) -> Path:
    """A root with the release layout the unit promises, /bin/kill and the host's unit library."""
    root = tmp / "root"
    binary = Path(exec_start_argv()[0])
    assert binary.is_absolute() and binary.parts[:4] == ("/", "opt", "edge-ocr", "current"), binary
    release = root / "opt" / "edge-ocr" / "releases" / "0.0.0-test"
    (root / "opt" / "edge-ocr" / "current").parent.mkdir(parents=True)
    (root / "opt" / "edge-ocr" / "current").symlink_to("releases/0.0.0-test")
    target = release / binary.relative_to("/opt/edge-ocr/current")
    target.parent.mkdir(parents=True)
    target.write_text("#!/bin/sh\nexit 0\n")
    target.chmod(0o755)
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    shutil.copy2(shutil.which("kill") or "/bin/kill", root / "usr" / "bin" / "kill")
    shutil.copytree(HOST_UNITS, root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    (root / "etc" / "systemd" / "system" / UNIT_NAME).write_text(unit_text)
    return root


def verify(tmp: Path, unit_text: str) -> subprocess.CompletedProcess:
    root = make_root(tmp, unit_text)
    return subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", UNIT_NAME],
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- systemd's checks --------------------------------------------------------------------------------


@needs_systemd_analyze
@pytest.mark.skipif(not HOST_UNITS.is_dir(), reason=f"{HOST_UNITS} missing: no systemd unit library")
def test_systemd_analyze_verify_is_clean(tmp_path):
    proc = verify(tmp_path, UNIT.read_text())
    assert proc.returncode == 0 and not proc.stderr.strip() and not proc.stdout.strip(), (
        f"systemd-analyze verify (rc {proc.returncode}):\n{proc.stdout}{proc.stderr}"
    )


@needs_systemd_analyze
@pytest.mark.skipif(not HOST_UNITS.is_dir(), reason=f"{HOST_UNITS} missing: no systemd unit library")
def test_verify_harness_sees_a_misspelled_key_and_a_missing_binary(tmp_path):
    """The check above would catch what verify only warns about (it exits 0 on an unknown key)."""
    misspelled = UNIT.read_text().replace("ProtectHome=", "ProtectHomes=")
    proc = verify(tmp_path / "a", misspelled)
    assert "Unknown key 'ProtectHomes'" in proc.stderr, proc.stderr
    moved = UNIT.read_text().replace("/current/venv/bin/edge-ocr", "/current/venv/bin/edge-ocr-missing")
    proc = verify(tmp_path / "b", moved)
    assert "edge-ocr-missing" in proc.stderr and proc.returncode != 0, proc.stderr


@needs_systemd_analyze
def test_security_exposure_at_most_2_5(tmp_path):
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", proc.stdout)
    assert m, f"no exposure line (rc {proc.returncode}):\n{proc.stdout}{proc.stderr}"
    score = float(m.group(1))
    failing = "\n".join(line for line in proc.stdout.splitlines() if line.startswith("✗"))
    assert score <= MAX_EXPOSURE, f"exposure {score} > {MAX_EXPOSURE}; open items:\n{failing}"


# --- the unit's contract with the CLI, the config and the release layout -------------------------------


def test_exec_start_is_edge_ocr_run_with_the_config_in_configuration_directory():
    from edge_ocr.cli import build_parser, cmd_run

    argv = exec_start_argv()
    assert argv[0] == "/opt/edge-ocr/current/venv/bin/edge-ocr"
    args = build_parser().parse_args(argv[1:])
    assert args.func is cmd_run
    config = Path(args.config)
    assert config.parent == Path("/etc") / one("ConfigurationDirectory")
    # The installed command accepts the same options.
    edge_ocr = str(Path(sys.executable).parent / "edge-ocr")
    proc = subprocess.run([edge_ocr, "run", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--config" in proc.stdout, proc.stderr


def test_models_come_from_the_same_release_as_the_binary():
    env = dict(v.split("=", 1) for line in unit_settings()["Environment"] for v in shlex.split(line))
    venv = Path(exec_start_argv()[0]).parent.parent
    assert Path(env["EDGE_OCR_MODELS"]) == venv.parent / "models"
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"  # /opt is read-only under ProtectSystem=strict


def test_notify_watchdog_restart_settings():
    s = unit_settings()
    assert one("Type") == "notify" and one("NotifyAccess") == "main"
    assert int(one("WatchdogSec")) >= 10  # the daemon pings every second; leave room for a reload
    assert one("Restart") == "on-failure"
    assert "StartLimitIntervalSec" in s and "StartLimitBurst" in s
    assert one("ExecReload") == "/bin/kill -HUP $MAINPID"
    from edge_ocr.errors import ConfigError, ModelError

    no_restart = {str(ConfigError.exit_code), str(ModelError.exit_code)}
    assert set(one("RestartPreventExitStatus").split()) == no_restart


def credential() -> tuple[str, Path]:
    name, _, source = one("LoadCredential").partition(":")
    return name, Path(source)


def fleet_config_from_docs() -> str:
    """The fleet config that docs/deploy.md tells an operator to put in /etc/edge-ocr/edge-ocr.yaml."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    m = re.search(r"```yaml\n# /etc/edge-ocr/edge-ocr.yaml\n(.*?)```", text, re.S)
    assert m, "docs/deploy.md has no ```yaml block starting with '# /etc/edge-ocr/edge-ocr.yaml'"
    return m.group(1)


def test_credential_matches_the_documented_fleet_config(tmp_path):
    from edge_ocr.config import validate_file

    name, source = credential()
    assert source.parent == Path("/etc") / one("ConfigurationDirectory")
    path = tmp_path / "edge-ocr.yaml"
    path.write_text(fleet_config_from_docs())
    cfg = validate_file(path)
    assert cfg.mqtt is not None and cfg.mqtt.password_credential == name
    assert Path(cfg.state_dir) == Path("/var/lib") / one("StateDirectory")


def test_credential_matches_the_example_config():
    """config/edge-ocr.yaml names the same secret (as the credential file path systemd creates)."""
    name, _ = credential()
    cfg = yaml.safe_load((ROOT / "config" / "edge-ocr.yaml").read_text())
    mqtt = cfg["mqtt"]
    if mqtt.get("password_credential"):
        assert mqtt["password_credential"] == name
    else:
        assert Path(mqtt["password_file"]) == Path("/run/credentials") / UNIT_NAME / name
    assert Path(cfg["state_dir"]) == Path("/var/lib") / one("StateDirectory")


def test_cameras_reachable():
    assert "video" in one("SupplementaryGroups").split()
    assert one("DevicePolicy") == "closed" and "char-video4linux rw" in unit_settings()["DeviceAllow"]
    assert one("PrivateDevices") == "no"


# --- the daemon inside the unit's syscall filter and W^X policy -----------------------------------------

PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1


def syscalls(group: str, seen: set[str] | None = None) -> set[str]:
    """A `@group` (recursively) or a single syscall name, as systemd expands it."""
    if not group.startswith("@"):
        return {group}
    seen = set() if seen is None else seen
    if group in seen:
        return set()
    seen.add(group)
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager", group], capture_output=True, text=True, check=True
    ).stdout
    names: set[str] = set()
    for line in out.splitlines()[1:]:
        item = line.strip()
        if item and not item.startswith("#"):
            names |= syscalls(item, seen)
    return names


def allowed_syscalls() -> set[str]:
    """The unit's SystemCallFilter= lines, in order: an allow list, then `~` lines removing from it."""
    allowed: set[str] = set()
    for value in unit_settings()["SystemCallFilter"]:
        if value.startswith("~"):
            for item in value[1:].split():
                allowed -= syscalls(item)
        else:
            for item in value.split():
                allowed |= syscalls(item)
    return allowed


# Runs in the child: install the filter, forbid W+X memory, then exec the daemon (its pid stays the same).
SANDBOX = textwrap.dedent(
    """
    import ctypes, json, os, sys
    spec = json.loads(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(spec["mdwe"][0], spec["mdwe"][1], 0, 0, 0) != 0:
        sys.exit(f"PR_SET_MDWE failed: errno {ctypes.get_errno()}")
    sc = ctypes.CDLL(spec["lib"], use_errno=True)
    sc.seccomp_init.restype = ctypes.c_void_p
    sc.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    sc.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    sc.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = sc.seccomp_init(0x00050000 | spec["errno"])  # SCMP_ACT_ERRNO(errno)
    for name in spec["allow"]:
        nr = sc.seccomp_syscall_resolve_name(name.encode())
        if nr >= 0:  # names of other architectures resolve to nothing here
            sc.seccomp_rule_add(ctx, 0x7FFF0000, nr, 0)  # SCMP_ACT_ALLOW
    if sc.seccomp_load(ctx) != 0:
        sys.exit("seccomp_load failed")
    os.execvp(spec["argv"][0], spec["argv"])
    """
)


def mdwe_supported() -> bool:
    prctl = f"ctypes.CDLL(None).prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0)"
    probe = f"import ctypes, sys; sys.exit({prctl} != 0)"
    return subprocess.run([sys.executable, "-c", probe]).returncode == 0


def text_image(path: Path) -> None:
    import cv2
    import numpy as np

    img = np.full((160, 720, 3), 255, np.uint8)
    cv2.putText(img, "INVOICE 4711", (30, 105), cv2.FONT_HERSHEY_SIMPLEX, 2.2, (0, 0, 0), 5, cv2.LINE_AA)
    assert cv2.imwrite(str(path), img)


@needs_systemd_analyze
def test_daemon_runs_inside_the_units_syscall_filter_and_wx_policy(tmp_path, models_dir):
    lib = ctypes.util.find_library("seccomp")
    if lib is None:
        pytest.skip("libseccomp not installed (apt-get install libseccomp2)")
    if not mdwe_supported():
        pytest.skip("kernel without PR_SET_MDWE (Linux < 6.3): cannot reproduce MemoryDenyWriteExecute=")
    assert one("MemoryDenyWriteExecute") == "yes"
    errno_name = one("SystemCallErrorNumber")
    state, inbox = tmp_path / "state", tmp_path / "inbox"
    inbox.mkdir()
    text_image(inbox / "invoice.png")  # present at start: queued at once
    config = tmp_path / "edge-ocr.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "device_id": "sandbox-test",
                "state_dir": str(state),
                "sources": [{"name": "inbox", "type": "folder", "path": str(inbox), "settle_s": 0.1}],
                "engine": {"models_dir": str(models_dir)},
            }
        )
    )
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(1.0)
    spec = {
        "lib": lib,
        "errno": getattr(errno, errno_name),
        "allow": sorted(allowed_syscalls()),
        "mdwe": [PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN],
        "argv": [sys.executable, "-m", "edge_ocr", "run", "--config", str(config)],
    }
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "PYTHONDONTWRITEBYTECODE": "1"}
    stderr = open(tmp_path / "stderr.log", "w+")  # noqa: SIM115 (read back after the process ends)
    proc = subprocess.Popen(
        [sys.executable, "-c", SANDBOX, json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        messages: list[str] = []
        deadline = time.monotonic() + 120
        while "READY=1" not in messages and time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(TimeoutError):
                messages += notify.recv(4096).decode().split("\n")
        assert "READY=1" in messages, f"no READY=1 (rc {proc.poll()}):\n{_log(stderr)}"
        assert proc.stdout is not None
        line = proc.stdout.readline()  # one JSON line per result (no broker configured)
        result = json.loads(line)
        text = json.dumps(result).upper()
        assert "INVOICE" in text or "4711" in text, f"unexpected result {result}\n{_log(stderr)}"
        proc.terminate()
        assert proc.wait(timeout=60) == 0, _log(stderr)
        assert (state / "done" / "inbox" / "invoice.png").is_file() or not (inbox / "invoice.png").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
        stderr.close()
    log = (tmp_path / "stderr.log").read_text()
    assert "Operation not permitted" not in log and "Permission denied" not in log, log


def _log(fh) -> str:
    fh.flush()
    fh.seek(0)
    return fh.read()[-4000:]
