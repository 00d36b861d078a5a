"""Where the models folder is (issue 12): --models, $EDGE_OCR_MODELS, the checkout, the service's state
directory, the user's data directory; and a missing folder names itself and the command that builds it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_ocr import models
from edge_ocr.errors import ModelError
from edge_ocr.pipeline import Engine, EngineSettings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_checkout(monkeypatch):
    """As a wheel install sees it: no source checkout around the package."""
    for var in ("EDGE_OCR_MODELS", "STATE_DIRECTORY", "XDG_DATA_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(models, "_checkout_models", lambda: None)
    return monkeypatch


def test_the_order_of_places(no_checkout, tmp_path):
    no_checkout.setenv("HOME", str(tmp_path / "home"))
    assert models.locate_models_dir().path == tmp_path / "home/.local/share/edge-ocr/models"
    no_checkout.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert models.locate_models_dir().path == tmp_path / "data/edge-ocr/models"
    no_checkout.setenv("STATE_DIRECTORY", "/var/lib/edge-ocr")
    where = models.locate_models_dir()
    assert where.path == Path("/var/lib/edge-ocr/models") and "STATE_DIRECTORY" in where.why
    no_checkout.setattr(models, "_checkout_models", lambda: ROOT / "models")
    assert models.locate_models_dir().path == ROOT / "models"
    no_checkout.setenv("EDGE_OCR_MODELS", str(tmp_path / "env"))
    assert models.locate_models_dir().path == tmp_path / "env"
    given = models.locate_models_dir(tmp_path / "given")
    assert given.path == tmp_path / "given" and "--models" in given.why


def test_never_beside_site_packages(no_checkout, tmp_path):
    no_checkout.setenv("HOME", str(tmp_path))
    assert "site-packages" not in str(models.locate_models_dir().path)


def test_a_checkout_uses_its_models_folder():
    proc = subprocess.run(
        [sys.executable, "-m", "edge_ocr", "models", "path"], capture_output=True, text=True, check=True,
        cwd="/", env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.stdout.strip() == str(ROOT / "models")
    assert "checkout" in proc.stderr


def test_missing_models_name_the_folder_and_the_command(tmp_path):
    empty = tmp_path / "nothing-here"
    with pytest.raises(ModelError) as err:
        Engine(EngineSettings(models_dir=empty, graph_cache=None))
    assert str(empty) in str(err.value) and "edge-ocr models build" in str(err.value)


def test_a_manifest_from_before_model_sets_says_so(tmp_path):
    (tmp_path / "manifest.yaml").write_text("schema: 1\nmodels: {}\n", encoding="utf-8")
    with pytest.raises(ModelError, match=r"older layout \(schema 1.*edge-ocr models build"):
        Engine(EngineSettings(models_dir=tmp_path, graph_cache=None))
