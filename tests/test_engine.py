"""The engine on real models: reads real receipts, refuses altered models, is thread-safe."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_ocr.bench import load_lines
from edge_ocr.decode import read_image
from edge_ocr.errors import InputError, ModelError
from edge_ocr.pipeline import Engine, EngineSettings


def _fold(text: str) -> str:
    return "".join(text.split()).casefold()


def test_reads_a_receipt_page(engine, eval_data):
    result = engine.run(read_image(eval_data / "pages" / "sroie_116.jpg"))
    text = _fold(result.text)
    for expected in ("SYARIKAT PERNIAGAAN GIN KEE", "TEL : 03-40210276", "GST ID : 000750673920", "116.28"):
        assert _fold(expected) in text
    assert result.timings_ms["det"] > 0 and result.timings_ms["rec"] > 0
    (first,) = [line for line in result.lines if "SYARIKAT" in line.text.upper()]
    assert 0.5 <= first.confidence <= 1.0
    xs = [p[0] for p in first.box]
    ys = [p[1] for p in first.box]
    # the shop name sits at the top centre of the original image (GT box x 99..842, y 210..249)
    assert 50 < min(xs) < 200 and 750 < max(xs) < 900 and 180 < min(ys) < max(ys) < 280


def test_run_line_reads_a_crop(engine, eval_data):
    result = engine.run_line(read_image(eval_data / "lines_en" / "img" / "sroie_017_013.png"))
    assert _fold(result.text) == _fold("BILL START: 20/11/2017 03:55:07 PM")


def test_upside_down_page_reads_like_the_upright_one(engine, eval_data):
    upright = read_image(eval_data / "pages" / "sroie_116.jpg")
    turned = engine.run(cv2.rotate(upright, cv2.ROTATE_180))
    text = _fold(turned.text)
    for expected in ("SYARIKAT PERNIAGAAN GIN KEE", "TEL : 03-40210276", "GST ID : 000750673920", "116.28"):
        assert _fold(expected) in text


def test_upright_lines_are_not_turned_by_the_direction_classifier(engine, eval_data):
    # Short upright receipt lines the classifier calls upside down: read turned, they lose to the
    # upright reading, so the text stays right (a blind flip read the first as 'ISISAIN NG GZIA SINIIO').
    labels = {path.name: text for path, text in load_lines(eval_data / "lines_en")}
    for name in ("sroie_303_003.png", "sroie_307_007.png", "sroie_583_019.png", "sroie_044_032.png"):
        text = engine.run_line(read_image(eval_data / "lines_en" / "img" / name)).text
        assert _fold(text) == _fold(labels[name]), name


def test_blank_image_has_no_lines(engine):
    assert engine.run(np.full((200, 300, 3), 255, np.uint8)).lines == ()


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 3), np.float32),
        np.zeros((1, 10, 3), np.uint8),
        "x.png",
    ],
)
def test_wrong_input_types_are_refused(engine, bad):
    with pytest.raises(InputError):
        engine.run(bad)


def test_two_threads_give_the_same_results_as_one(engine, eval_data):
    pages = sorted((eval_data / "pages").glob("*.jpg"))[:4]
    images = [read_image(p) for p in pages]
    expected = [engine.run(img).lines for img in images]
    got: dict[tuple[int, int], tuple] = {}

    def worker(tid: int) -> None:
        for k, img in enumerate(images * 2):
            got[(tid, k)] = engine.run(img).lines

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (_tid, k), lines in got.items():
        assert lines == expected[k % len(images)]


def _copy_models(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("calibration", "*.json"))
    return dst


def test_altered_model_is_refused(models_dir, tmp_path):
    from edge_ocr.models import load_manifest

    copy = _copy_models(models_dir, tmp_path / "models")
    entry = load_manifest(copy)["models"]["rec"]
    victim = copy / entry["variants"][entry["default"]]["file"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=rf"{victim.name} is altered.*edge-ocr models build"):
        Engine(EngineSettings(models_dir=copy))


def test_missing_model_is_refused(models_dir, tmp_path):
    from edge_ocr.models import load_manifest

    copy = _copy_models(models_dir, tmp_path / "models")
    entry = load_manifest(copy)["models"]["det"]
    victim = copy / entry["variants"][entry["default"]]["file"]
    victim.unlink()
    with pytest.raises(ModelError, match=rf"{victim.name} is missing.*edge-ocr models build"):
        Engine(EngineSettings(models_dir=copy))
