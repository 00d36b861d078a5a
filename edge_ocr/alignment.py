"""Re-alignment of camera frames to a reference frame, so regions are cut where the digits really are.

Cameras on meters get knocked, sag on their mounts and are put back slightly turned. A camera may
declare one or two *patches*: boxes on a reference frame around something fixed and textured (a label,
a screw, an edge of the meter). Each analysed frame is registered to the reference by normalized
template matching of those patches (`cv2.TM_CCOEFF_NORMED`, which ignores a uniform change of
brightness and contrast), in two passes:

1. each patch is searched in a window around where it was on the reference, wide enough for the largest
   shift and turn allowed; one patch gives a shift, two give a shift, a turn and a scale;
2. the frame is warped back with that estimate and each patch is matched again in a small window: a
   template matches a turned patch poorly, a de-turned one well, so the second pass is both the precise
   position and the score that is trusted.

Template matching was chosen over feature matching (ORB + RANSAC): meter faces are mostly flat plastic
and printed text; a patch on a label or a screw gives a sharp, unique peak, where ORB found few stable
keypoints on our generated meters and gave jittery estimates from them. A frame whose patches match
worse than `min_score`, or that moved or turned more than allowed, is *not aligned* (`Alignment.ok` is
False with the reason): reading its regions would read the wrong pixels.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]
_REFINE_PX = 6  # the second pass searches this far around the first estimate


@dataclass(frozen=True)
class Alignment:
    """How a frame sits against the reference: shift of the patches' centre (px), turn (degrees,
    counter-clockwise positive), scale, the worst patch score, and the 2x3 matrix frame -> reference."""

    ok: bool
    dx: float = 0.0
    dy: float = 0.0
    angle: float = 0.0
    scale: float = 1.0
    score: float = 0.0
    reason: str | None = None
    matrix: np.ndarray | None = None

    @property
    def shift(self) -> float:
        return math.hypot(self.dx, self.dy)

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "dx": round(float(self.dx), 1),
            "dy": round(float(self.dy), 1),
            "shift_px": round(float(self.shift), 1),
            "angle_deg": round(float(self.angle), 2),
            "score": round(float(self.score), 3),
            "reason": self.reason,
        }


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image


def _match(
    grey: np.ndarray, template: np.ndarray, centre: tuple[float, float], margin: float
) -> tuple[float, float, float]:
    """The best match of `template` whose centre lies within `margin` px of `centre`: (cx, cy, score)."""
    th, tw = template.shape[:2]
    h, w = grey.shape[:2]
    x0 = int(math.floor(centre[0] - tw / 2 - margin))
    y0 = int(math.floor(centre[1] - th / 2 - margin))
    x1 = int(math.ceil(centre[0] + tw / 2 + margin))
    y1 = int(math.ceil(centre[1] + th / 2 + margin))
    window = grey[max(0, y0) : max(0, min(h, y1)), max(0, x0) : max(0, min(w, x1))]
    if window.shape[0] < 2 or window.shape[1] < 2:
        return centre[0], centre[1], 0.0
    # A patch near the frame's edge may be pushed partly out of it by the very shift we look for: the
    # window is extended with replicated border so the part still in view can be matched (at a lower
    # score, which min_score then judges).
    pad = (max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w))
    if any(pad):
        window = cv2.copyMakeBorder(window, *pad, cv2.BORDER_REPLICATE)
    res = cv2.matchTemplate(window, template, cv2.TM_CCOEFF_NORMED)
    _, score, _, (bx, by) = cv2.minMaxLoc(res)
    fx, fy = float(bx), float(by)
    # Sub-pixel peak from a parabola through the neighbours: a turn is estimated from two points a few
    # hundred pixels apart, so a half-pixel error would cost about 0.1 degree.
    if 0 < bx < res.shape[1] - 1:
        left, mid, right = res[by, bx - 1], res[by, bx], res[by, bx + 1]
        denom = left - 2 * mid + right
        fx += 0.5 * (left - right) / denom if denom < 0 else 0.0
    if 0 < by < res.shape[0] - 1:
        up, mid, down = res[by - 1, bx], res[by, bx], res[by + 1, bx]
        denom = up - 2 * mid + down
        fy += 0.5 * (up - down) / denom if denom < 0 else 0.0
    return x0 + fx + tw / 2, y0 + fy + th / 2, float(score)


def _similarity(src: list[tuple[float, float]], dst: list[tuple[float, float]]) -> np.ndarray:
    """The 2x3 similarity (or translation, for one point) mapping `src` points onto `dst` points."""
    if len(src) == 1:
        (sx, sy), (tx, ty) = src[0], dst[0]
        return np.array([[1, 0, tx - sx], [0, 1, ty - sy]], np.float64)
    (ax, ay), (bx, by) = src
    (cx, cy), (ex, ey) = dst
    vs, vd = complex(bx - ax, by - ay), complex(ex - cx, ey - cy)
    r = vd / vs if vs else complex(1, 0)
    t = complex(cx, cy) - r * complex(ax, ay)
    return np.array([[r.real, -r.imag, t.real], [r.imag, r.real, t.imag]], np.float64)


def _apply(m: np.ndarray, p: tuple[float, float]) -> tuple[float, float]:
    return (m[0, 0] * p[0] + m[0, 1] * p[1] + m[0, 2], m[1, 0] * p[0] + m[1, 1] * p[1] + m[1, 2])


class Aligner:
    """Immutable: the reference's patches and the bounds; `align(frame)` and `warp(frame, alignment)`."""

    def __init__(
        self,
        reference: np.ndarray,
        patches: tuple[Box, ...] | list[Box],
        *,
        max_shift_px: float = 80.0,
        max_angle_deg: float = 10.0,
        min_score: float = 0.5,
    ) -> None:
        grey = _grey(reference)
        self.size = (grey.shape[1], grey.shape[0])
        self.max_shift_px = max_shift_px
        self.max_angle_deg = max_angle_deg
        self.min_score = min_score
        self.templates: list[np.ndarray] = []
        self.centres: list[tuple[float, float]] = []
        for x, y, w, h in patches:
            x0, y0 = max(0, x), max(0, y)
            x1, y1 = min(grey.shape[1], x + w), min(grey.shape[0], y + h)
            if x1 - x0 < 4 or y1 - y0 < 4:
                raise ValueError(
                    f"patch {[x, y, w, h]} lies outside the {self.size[0]}x{self.size[1]} reference"
                )
            tpl = grey[y0:y1, x0:x1].copy()
            if float(tpl.std()) < 2.0:
                raise ValueError(
                    f"patch {[x, y, w, h]} is flat (no texture to match); choose a label or an edge"
                )
            self.templates.append(tpl)
            self.centres.append(((x0 + x1) / 2, (y0 + y1) / 2))
        if not self.templates:
            raise ValueError("alignment needs one or two patches")

    def align(self, frame: np.ndarray) -> Alignment:
        grey = _grey(frame)
        if (grey.shape[1], grey.shape[0]) != self.size:
            size = f"{grey.shape[1]}x{grey.shape[0]}"
            ref = f"{self.size[0]}x{self.size[1]}"
            return Alignment(False, reason=f"the frame is {size}, the reference {ref}")
        cx, cy = self.size[0] / 2, self.size[1] / 2
        sin = math.sin(math.radians(self.max_angle_deg))
        found = []
        for tpl, c in zip(self.templates, self.centres, strict=True):
            # A turn about the frame's centre moves a patch by up to its distance from the centre x sin.
            margin = self.max_shift_px + math.hypot(c[0] - cx, c[1] - cy) * sin + 4
            fx, fy, _ = _match(grey, tpl, c, margin)
            found.append((fx, fy))
        to_frame = _similarity(self.centres, found)  # reference -> frame
        to_ref = cv2.invertAffineTransform(to_frame)
        warped = cv2.warpAffine(
            grey, to_ref, self.size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        residual, scores = [], []
        for tpl, c in zip(self.templates, self.centres, strict=True):
            fx, fy, score = _match(warped, tpl, c, _REFINE_PX)
            residual.append((fx, fy))
            scores.append(score)
        # Where the patches really are in the warped frame, taken back to the frame: the refined estimate.
        refined_found = [_apply(to_frame, p) for p in residual]
        to_frame = _similarity(self.centres, refined_found)
        to_ref = cv2.invertAffineTransform(to_frame)
        mx = sum(p[0] for p in self.centres) / len(self.centres)
        my = sum(p[1] for p in self.centres) / len(self.centres)
        fx, fy = _apply(to_frame, (mx, my))
        angle = math.degrees(math.atan2(to_frame[1, 0], to_frame[0, 0]))
        scale = math.hypot(to_frame[0, 0], to_frame[1, 0])
        score = min(scores)
        a = Alignment(True, fx - mx, fy - my, -angle, scale, score, None, to_ref)
        if score < self.min_score:
            return _failed(a, f"the reference patches match poorly (score {score:.2f} < {self.min_score:g})")
        if a.shift > self.max_shift_px:
            return _failed(
                a, f"the camera moved {a.shift:.0f} px (more than max_shift_px {self.max_shift_px:g})"
            )
        if abs(a.angle) > self.max_angle_deg:
            return _failed(
                a, f"the camera turned {a.angle:.1f} degrees (more than max_angle_deg {self.max_angle_deg:g})"
            )
        if not 0.9 <= scale <= 1.1:
            return _failed(a, f"the view is scaled by {scale:.2f} (zoom or distance changed)")
        return a

    def warp(self, frame: np.ndarray, alignment: Alignment) -> np.ndarray:
        """The frame in the reference's coordinates (regions are configured there)."""
        if alignment.matrix is None:
            return frame
        return cv2.warpAffine(
            frame, alignment.matrix, self.size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )


def _failed(a: Alignment, reason: str) -> Alignment:
    return Alignment(False, a.dx, a.dy, a.angle, a.scale, a.score, reason, None)


def load_reference(path: Path) -> np.ndarray | None:
    """The reference image, or None when there is none yet (or it cannot be decoded: logged)."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("alignment reference %s cannot be read: %s", path, exc)
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        log.warning("alignment reference %s is not an image: ignored", path)
    return image


def save_reference(path: Path, image: np.ndarray) -> bool:
    """Write the reference atomically (PNG: lossless, so matching is against what the camera saw)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, buf = cv2.imencode(".png", image)
        if not ok:
            raise OSError("PNG encoding failed")
        tmp.write_bytes(buf.tobytes())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        log.warning("alignment reference %s cannot be written: %s", path, exc)
        return False
    return True
