"""Shared fixtures: the real models and the eval data beside the repository."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def eval_dir() -> Path:
    return Path(os.environ.get("EDGE_OCR_EVAL", ROOT.parent / "shared" / "eval"))


@pytest.fixture(scope="session")
def eval_data() -> Path:
    path = eval_dir()
    if not (path / "lines_en" / "labels.tsv").is_file():
        pytest.skip(f"eval data not found at {path} (set EDGE_OCR_EVAL)")
    return path


@pytest.fixture(scope="session")
def models_dir() -> Path:
    from edge_ocr.models import default_models_dir

    path = default_models_dir()
    assert (path / "manifest.yaml").is_file(), f"no models in {path}: run `edge-ocr models build` first"
    return path


@pytest.fixture(scope="session")
def engine(models_dir):
    from edge_ocr.pipeline import Engine, EngineSettings

    return Engine(EngineSettings(models_dir=models_dir))


# --- real daemons (see tests/daemon_harness.py) -----------------------------------------------------


@pytest.fixture
def daemons(tmp_path: Path, models_dir: Path) -> Iterator[Callable[..., Any]]:
    """Make `DaemonProcess`es in tmp_path; any still running at teardown is killed (log shown on failure)."""
    from daemon_harness import DaemonProcess

    made: list[DaemonProcess] = []

    def make(config: dict[str, Any] | None, *, name: str | None = None, **kwargs: Any) -> DaemonProcess:
        d = DaemonProcess(tmp_path / (name or f"daemon-{len(made)}"), config, **kwargs)
        made.append(d)
        return d

    yield make
    for d in made:
        if d.running:
            d.kill()
        print(f"----- {d.workdir} log -----\n{d.tail(80)}")


# --- a real mosquitto (see tests/mqtt_broker.py) -------------------------------------------------


@pytest.fixture
def mosquitto_factory(tmp_path):
    """Start brokers: `mosquitto_factory(users=..., tls=..., start=True)`; all are killed at teardown."""
    from mqtt_broker import Mosquitto, mosquitto_binary

    if mosquitto_binary() is None:
        pytest.fail("mosquitto is not installed: apt-get install mosquitto (MQTT tests need a real broker)")
    brokers = []

    def make(*, start: bool = True, **kwargs):
        broker = Mosquitto(tmp_path / f"mosquitto-{len(brokers)}", **kwargs)
        brokers.append(broker)
        return broker.start() if start else broker

    yield make
    for broker in brokers:
        broker.kill()


@pytest.fixture
def mosquitto(mosquitto_factory):
    """An anonymous broker on an ephemeral 127.0.0.1 port."""
    return mosquitto_factory()
