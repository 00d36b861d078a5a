"""The Ansible role (`ansible/`) run for real against three simulated devices, and ansible-lint on it.

Each device is a root folder under tmp_path reached with `ansible_connection=local`; its daemon runs in
the role's `process` service mode (there is no systemd as PID 1 here) with /healthz on its own port.
Versions A and B are wheels built from this checkout with the version rewritten. The scenario:

1. A is installed on all three devices and passes the health gate.
2. B is rolled out one device per batch (site.yml's default `serial` and `max_fail_percentage`) with
   dev2's B configuration pointing at altered models: dev1 is upgraded, dev2 fails its gate and is rolled
   back to A by itself, and the rollout stops, so dev3 (a later batch) is never touched.
3. The rollout is finished with dev2 fixed (and an old release pruned on dev1).
4. A second run of the same playbook changes nothing (PLAY RECAP changed=0) and restarts nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import eval_dir

from edge_ocr.bench.devbroker import free_port

ROOT = Path(__file__).resolve().parent.parent
ANSIBLE_DIR = ROOT / "ansible"
DEVICES = ("dev1", "dev2", "dev3")
A, B = "0.1.1", "0.1.2"
RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)\s+"
    r"failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)\s+rescued=(?P<rescued>\d+)\s+ignored=(?P<ignored>\d+)",
    re.MULTILINE,
)


def _need(tool: str) -> str:
    # Also this interpreter's own bin: the README runs the tests as .venv/bin/python without activating.
    path = shutil.which(tool) or shutil.which(tool, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{tool} is not installed: pip install ansible-core ansible-lint")
    return path


def _build_wheels(out: Path, work: Path, versions: tuple[str, ...]) -> None:
    """Wheels of this checkout, one per version, built in parallel by pip (the real build backend)."""
    procs = []
    for version in versions:
        src = work / f"src-{version}"
        src.mkdir(parents=True)
        shutil.copy2(ROOT / "pyproject.toml", src / "pyproject.toml")
        shutil.copy2(ROOT / "README.md", src / "README.md")
        shutil.copytree(ROOT / "edge_ocr", src / "edge_ocr", ignore=shutil.ignore_patterns("__pycache__"))
        pyproject = src / "pyproject.toml"
        text, n = re.subn(r'(?m)^version = "[^"]+"', f'version = "{version}"', pyproject.read_text())
        assert n == 1, "no `version = ...` line in pyproject.toml"
        pyproject.write_text(text)
        init = src / "edge_ocr" / "__init__.py"
        text, n = re.subn(r'(?m)^__version__ = "[^"]+"', f'__version__ = "{version}"', init.read_text())
        assert n == 1, "no `__version__ = ...` line in edge_ocr/__init__.py"
        init.write_text(text)
        cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check"]
        procs.append(subprocess.Popen([*cmd, "-w", str(out), str(src)], stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"pip wheel failed: {err}"


def _site_dirs() -> list[str]:
    """Where this interpreter's numpy, onnxruntime and opencv live: shared with every release venv
    (edge_ocr_venv_site_dirs), so no release installs the heavy dependencies again."""
    paths = sysconfig.get_paths()
    return sorted({paths["purelib"], paths["platlib"]})


class Fleet:
    def __init__(self, tmp: Path, models: Path, wheelhouse: Path) -> None:
        self.tmp = tmp
        self.models = models
        self.wheelhouse = wheelhouse
        self.ports = {d: free_port() for d in DEVICES}
        line = eval_dir() / "lines_en" / "img" / "sroie_017_013.png"  # "BILL START: 20/11/2017 ..."
        self.smoke = {"edge_ocr_smoke_image": str(line), "edge_ocr_smoke_text": "START"}
        if not line.is_file():
            self.smoke = {}
        self.bad_models = tmp / "altered-models"
        shutil.copytree(models, self.bad_models)
        # The default set's FP32 detector (every precision verifies it before use), one byte flipped.
        manifest = yaml.safe_load((self.bad_models / "manifest.yaml").read_text())
        det = manifest["sets"][manifest["default_set"]]["models"]["det"]
        victim = self.bad_models / det["variants"]["fp32"]["file"]
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))

    def root(self, dev: str) -> Path:
        return self.tmp / dev

    def prefix(self, dev: str) -> Path:
        return self.root(dev) / "opt" / "edge-ocr"

    def current(self, dev: str) -> str | None:
        link = self.prefix(dev) / "current"
        return os.readlink(link) if link.is_symlink() else None

    def releases(self, dev: str) -> set[str]:
        d = self.prefix(dev) / "releases"
        return {p.name for p in d.iterdir()} if d.is_dir() else set()

    def pidfile(self, dev: str) -> Path:
        return self.root(dev) / "run" / "edge-ocr" / "edge-ocr.pid"

    def pid(self, dev: str) -> int | None:
        try:
            return int(self.pidfile(dev).read_text().strip())
        except (OSError, ValueError):
            return None

    def health(self, dev: str) -> tuple[int, dict]:
        url = f"http://127.0.0.1:{self.ports[dev]}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, {}
        except OSError:
            return -1, {}

    def inventory(self, broken: str | None = None) -> Path:
        hosts: dict[str, dict] = {
            d: {"edge_ocr_root": str(self.root(d)), "edge_ocr_http_port": self.ports[d]} for d in DEVICES
        }
        if broken:
            # B's configuration on this device names altered models: the daemon refuses them at start.
            hosts[broken]["edge_ocr_engine"] = {"models_dir": str(self.bad_models)}
        inv = {
            "edge_ocr": {
                "hosts": hosts,
                "vars": {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": sys.executable,
                    "edge_ocr_python": sys.executable,
                    "edge_ocr_service_manager": "process",
                    "edge_ocr_venv_site_dirs": _site_dirs(),
                    "edge_ocr_models_src": str(self.models),
                    "edge_ocr_pip_extra_args": ["--no-index", "--find-links", str(self.wheelhouse)],
                    "edge_ocr_package": str(self.wheelhouse)
                    + "/edge_ocr-{{ edge_ocr_version }}-py3-none-any.whl[daemon]",
                    "edge_ocr_releases_keep": 2,
                    "edge_ocr_health_retries": 15,
                    "edge_ocr_health_delay": 1,
                    # The gate also reads a receipt line through POST /api/ocr (issue 10's deploy check).
                    **self.smoke,
                },
            }
        }
        path = self.tmp / f"inventory-{broken or 'ok'}.yml"
        path.write_text(json.dumps(inv, indent=2))  # JSON is YAML
        return path

    def play(self, version: str, inventory: Path, *extra: str) -> tuple[int, dict[str, dict[str, int]], str]:
        env = {
            **os.environ,
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_HOME": str(self.tmp / "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": str(self.tmp / "ansible-tmp"),
            "ANSIBLE_REMOTE_TEMP": str(self.tmp / "ansible-tmp"),
            "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        }
        cmd = [
            _need("ansible-playbook"), "-i", str(inventory), "site.yml",
            "-e", f"edge_ocr_version={version}", "-e", "edge_ocr_become=false", *extra,
        ]  # fmt: skip
        proc = subprocess.run(cmd, cwd=ANSIBLE_DIR, env=env, capture_output=True, text=True, timeout=600)
        out = proc.stdout + proc.stderr
        (self.tmp / f"play-{version}-{inventory.stem}-{time.time():.0f}.log").write_text(out)
        recap = {
            m["host"]: {k: int(v) for k, v in m.groupdict().items() if k != "host"}
            for m in RECAP.finditer(out)
        }
        return proc.returncode, recap, out

    def kill_all(self) -> None:
        """Stop every daemon this test started: by pidfile, and any left running from our tmp tree."""
        pids = {p for p in (self.pid(d) for d in DEVICES) if p}
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if "edge-ocr run" in cmdline and str(self.tmp) in cmdline:
                    pids.add(int(proc.name))
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheelhouse")
    _build_wheels(out, tmp_path_factory.mktemp("wheel-src"), (A, B))
    return out


@pytest.fixture
def fleet(tmp_path, models_dir, wheelhouse):
    _need("ansible-playbook")
    f = Fleet(tmp_path, models_dir, wheelhouse)
    yield f
    f.kill_all()


def _assert_runs(fleet: Fleet, dev: str, version: str) -> None:
    assert fleet.current(dev) == f"releases/{version}", f"{dev}: current -> {fleet.current(dev)}"
    status, body = fleet.health(dev)
    assert (status, body.get("version")) == (200, version), f"{dev}: /healthz {status} {body}"


def test_rollout_gates_rolls_back_stops_and_is_idempotent(fleet: Fleet) -> None:
    # 1. A everywhere, all devices in one batch.
    rc, recap, out = fleet.play(A, fleet.inventory(), "-e", '{"edge_ocr_serial": ["100%"]}')
    assert rc == 0, out[-4000:]
    for dev in DEVICES:
        assert recap[dev]["failed"] == 0
        _assert_runs(fleet, dev, A)

    # 2. B with site.yml's batches ([1, "30%"]: one device each here) and max_fail_percentage; dev2's
    #    B is sick. dev1 goes first and is upgraded.
    pid_dev2_before = fleet.pid("dev2")
    rc, recap, out = fleet.play(B, fleet.inventory(broken="dev2"))
    assert rc != 0, "a device failed its gate: the playbook must fail"
    assert recap["dev1"]["failed"] == 0, out[-4000:]
    _assert_runs(fleet, "dev1", B)
    # dev2 switched to B, failed the gate, went back to A by itself and counts as failed.
    assert recap["dev2"]["failed"] == 1 and recap["dev2"]["rescued"] == 1, out[-4000:]
    assert f"rolled back to {A}, which is healthy" in out
    _assert_runs(fleet, "dev2", A)
    assert B in fleet.releases("dev2")  # kept for a look at what went wrong
    assert fleet.pid("dev2") != pid_dev2_before  # A really was restarted, not left running
    # The rollout stopped: dev3, in a later batch, was not touched at all.
    assert "dev3" not in recap, out[-4000:]
    assert fleet.releases("dev3") == {A}
    _assert_runs(fleet, "dev3", A)

    # 3. Finish the rollout with dev2 fixed. dev1 keeps 2 releases: an old one is pruned, A stays.
    old = fleet.prefix("dev1") / "releases" / "0.0.9"
    old.mkdir()
    os.utime(old, (time.time() - 86400, time.time() - 86400))
    rc, recap, out = fleet.play(B, fleet.inventory(), "-e", '{"edge_ocr_serial": ["100%"]}')
    assert rc == 0, out[-4000:]
    for dev in DEVICES:
        assert recap[dev]["failed"] == 0
        _assert_runs(fleet, dev, B)
    assert fleet.releases("dev1") == {A, B}

    # 4. The same run again changes nothing and restarts nothing.
    pids = {dev: fleet.pid(dev) for dev in DEVICES}
    rc, recap, out = fleet.play(B, fleet.inventory(), "-e", '{"edge_ocr_serial": ["100%"]}')
    assert rc == 0, out[-4000:]
    recap_lines = [line for line in out.splitlines() if RECAP.match(line)]
    assert {dev: recap[dev]["changed"] for dev in DEVICES} == dict.fromkeys(DEVICES, 0), recap_lines
    assert {dev: fleet.pid(dev) for dev in DEVICES} == pids
    for dev in DEVICES:
        _assert_runs(fleet, dev, B)


def test_ansible_lint_production_profile() -> None:
    lint = _need("ansible-lint")
    proc = subprocess.run(
        [lint, "--offline", "--profile", "production", "--nocolor", "site.yml", "fleet.yml", "roles",
         "inventory"],  # fmt: skip
        cwd=ANSIBLE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "0 failure(s), 0 warning(s)" in out, out
