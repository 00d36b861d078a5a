"""edge_ocr.modelbuild: reproducible builds from the pinned wheel and the committed ranges; the manifest.

Real wheel, real onnxruntime quantizer, no mocks. The wheel comes from the build cache (CI's
`edge-ocr models build` has filled it) or from $EDGE_OCR_WHEEL.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from edge_ocr import modelbuild
from edge_ocr.errors import ModelError
from edge_ocr.models import ROLES, resolve, sha256_file

ROOT = Path(__file__).resolve().parent.parent


def _wheel() -> Path | None:
    env = os.environ.get("EDGE_OCR_WHEEL")
    return Path(env) if env else None


@pytest.fixture(scope="session")
def two_builds(tmp_path_factory) -> tuple[Path, Path]:
    """The repo's committed calibration ranges, built twice into fresh directories."""
    dirs = []
    for name in ("a", "b"):
        d = tmp_path_factory.mktemp(f"build-{name}")
        shutil.copytree(ROOT / "models" / "calibration", d / "calibration")
        modelbuild.build(d, _wheel())
        dirs.append(d)
    return dirs[0], dirs[1]


def _files(d: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(d.iterdir()) if p.is_file()}


def test_two_builds_are_byte_identical(two_builds):
    a, b = two_builds
    files = _files(a)
    assert {"manifest.yaml"} < set(files)
    assert sum(name.endswith(".int8.onnx") for name in files) == 3
    assert files == _files(b)


def test_build_reproduces_the_committed_manifest(two_builds):
    """What a fresh device builds is exactly what the committed manifest (and the gate) describes."""
    built = yaml.safe_load((two_builds[0] / "manifest.yaml").read_text(encoding="utf-8"))
    committed = yaml.safe_load((ROOT / "models" / "manifest.yaml").read_text(encoding="utf-8"))
    assert built == committed


def test_manifest_lists_every_role_with_verified_files(two_builds):
    d = two_builds[0]
    manifest = yaml.safe_load((d / "manifest.yaml").read_text(encoding="utf-8"))
    assert manifest["source"]["wheel_sha256"] == modelbuild.WHEEL_SHA256
    for role in ROLES:
        entry = manifest["models"][role]
        assert entry["default"] in entry["variants"] and entry["reason"]
        for variant, spec in entry["variants"].items():
            assert resolve(d, role, variant).sha256 == spec["sha256"]
            assert spec["role"] == role and spec["precision"] == variant
        int8 = entry["variants"]["int8"]
        assert int8["recipe"]["quant_format"] and "nodes_to_exclude" in int8["recipe"]
        acc = int8["accuracy"]
        assert acc["int8_sha256"] == int8["sha256"], "the evaluated INT8 file is the one built"
        accurate = acc["int8"]["cer"] - acc["fp32"]["cer"] <= modelbuild.GATE
        passes = accurate and acc["speed_ratio"] >= modelbuild.MIN_SPEED_RATIO
        assert entry["default"] == ("int8" if passes else "fp32")


def test_fp32_files_are_the_wheels_graphs_rewritten_with_the_same_outputs(two_builds):
    import numpy as np
    import onnxruntime as ort

    manifest = yaml.safe_load((two_builds[0] / "manifest.yaml").read_text())
    wheel = modelbuild.fetch_wheel(_wheel())
    with zipfile.ZipFile(wheel) as zf:
        for role, recipe in modelbuild.RECIPES.items():
            spec = manifest["models"][role]["variants"]["fp32"]
            source = zf.read(recipe.member)
            assert spec["source_sha256"] == hashlib.sha256(source).hexdigest()
            assert sum(spec["graph_rewrites"]["rewrites"].values()) > 0
            # The build checked its rewrite on a probe input; check again on another one here.
            shape = list(modelbuild._PROBE_SHAPES[role])
            shape[-1] += 64
            x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
            outs = []
            for model in (source, (two_builds[0] / spec["file"]).read_bytes()):
                sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
                outs.append(sess.run(None, {sess.get_inputs()[0].name: x})[0])
            assert np.abs(outs[0] - outs[1]).max() < 1e-4


def test_a_wheel_with_another_sha256_is_refused(tmp_path):
    fake = tmp_path / modelbuild.WHEEL
    fake.write_bytes(b"PK not the wheel")
    with pytest.raises(ModelError, match="not the pinned"):
        modelbuild.fetch_wheel(fake)


def test_importing_modelbuild_loads_no_onnx():
    code = "import sys, edge_ocr.modelbuild; sys.exit('onnx' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_a_rewrite_that_moves_outputs_beyond_tolerance_is_refused():
    from edge_ocr import graphfuse

    with zipfile.ZipFile(modelbuild.fetch_wheel(_wheel())) as zf:
        source = zf.read(modelbuild.RECIPES["cls"].member)
    fused, report = graphfuse.fuse(source, modelbuild._PROBE_SHAPES["cls"])
    assert report["rewrites"]["hardswish"] == 18 and 0 < report["max_abs_output_change"] < 1e-4
    with pytest.raises(ValueError, match="changed outputs"):
        graphfuse.fuse(source, modelbuild._PROBE_SHAPES["cls"], tolerance=0.0)
