"""Generated utility-meter frames and videos: a 7-segment LCD as a Raspberry Pi camera sees one.

This module owns the synthetic meter that tests and the camera benchmark point a camera source at:

- `seven_segment`: the LCD window for a reading (slanted segments, faint ghosts of the unlit
  segments, a decimal point between digit cells, leading zeros as given);
- `meter_frame`: a whole BGR camera frame of the meter face (housing, LCD at `LCD_BOX`, unit label,
  serial sticker, brand, screws, a barcode), optionally moved by camera drift and degraded by glare,
  blur and sensor noise. `PATCHES` are boxes around fixed, well-textured marks away from the digits
  (what a template matcher locks onto to follow drift);
- `write_meter_video`: an MJPG .avi of a schedule of readings, each distinct picture rendered once;
- `counter_schedule`: an increasing, zero-padded series of readings for a schedule.

Everything is drawn with OpenCV polygons, circles and its built-in Hershey fonts: no font files.
Development tooling only: the daemon never imports this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

FRAME_SIZE = (640, 480)  # (width, height) the layout below is drawn for
CELLS = 8  # digit cells of the meter's LCD (5 + 3 for a water meter)
DIGIT_H = 52  # digit height in pixels at FRAME_SIZE

# The LCD window (x, y, w, h) in the undrifted FRAME_SIZE frame: what a region crops to read the digits.
LCD_BOX = (146, 168, 347, 84)
# Fixed, well-textured marks far from the digits (x, y, w, h): the brand with its screw (top left) and
# the barcode with its screw (bottom right). Neither overlaps LCD_BOX.
PATCHES = ((40, 44, 232, 64), (384, 368, 224, 80))

# Colours (BGR).
LCD_BG = (168, 186, 172)  # light grey-green
LCD_INK = (40, 46, 38)
_WALL = (62, 66, 70)
_BODY = (178, 180, 176)
_BEZEL = (46, 48, 50)
_PRINT = (35, 35, 38)

_SS = 4  # supersampling of the segment drawing (anti-aliasing by area averaging)

# Segments a..g of each glyph, and which carry no digit.
_GLYPHS = {
    "0": "abcdef",
    "1": "bc",
    "2": "abdeg",
    "3": "abcdg",
    "4": "bcfg",
    "5": "acdfg",
    "6": "acdefg",
    "7": "abc",
    "8": "abcdefg",
    "9": "abcdfg",
    "-": "g",
    " ": "",
}
# The other forms displays give three digits, by the decoder that drives them: 6 and 9 without their
# tails (the 7447 family and many cheap LED and LCD drivers: a 6 like a lower-case b, a 9 like a 4 with
# its top), and 7 with the upper left segment. A model shown only the forms above reads a tail-less 9 as
# 4 and a tail-less 6 as 5, surely: both are one segment from either.
TAILLESS = {"6": "cdefg", "9": "abcfg"}
HOOKED_7 = {"7": "abcf"}


def lit_by(glyph: str, forms: Mapping[str, str] | None = None) -> str:
    """The segments `glyph` lights: its form in `forms` where that has one, else the usual one."""
    return forms[glyph] if forms is not None and glyph in forms else _GLYPHS[glyph]


def _parse(text: str) -> list[tuple[str, bool]]:
    """(glyph, decimal point after it) per digit cell; a '.' belongs to the cell before it."""
    cells: list[tuple[str, bool]] = []
    for ch in text:
        if ch == ".":
            if not cells or cells[-1][1]:
                raise ValueError(f"a '.' must follow a digit cell: {text!r}")
            cells[-1] = (cells[-1][0], True)
        elif ch in _GLYPHS:
            cells.append((ch, False))
        else:
            raise ValueError(f"a 7-segment display shows 0-9, '-', ' ' and '.', not {ch!r} in {text!r}")
    return cells


def _segment_polys(w: float, h: float, t: float, gap: float) -> dict[str, np.ndarray]:
    """Segments a..g of an upright digit cell (origin top left, y down) with mitred corners: the outer
    ones are trapezoids meeting at 45 degrees, the middle one a hexagon; `gap` apart."""
    g = gap / 2
    m = h / 2
    a = np.array([(g, 0), (w - g, 0), (w - t - g, t), (t + g, t)])
    f = np.array([(0, g), (t, t + g), (t, m - t / 2 - g), (0, m - g)])
    mid = np.array([(g, m), (t + g, m - t / 2), (w - t - g, m - t / 2), (w - g, m),
                    (w - t - g, m + t / 2), (t + g, m + t / 2)])  # fmt: skip

    def mirror_x(p: np.ndarray) -> np.ndarray:
        return np.stack([w - p[:, 0], p[:, 1]], axis=1)

    def mirror_y(p: np.ndarray) -> np.ndarray:
        return np.stack([p[:, 0], h - p[:, 1]], axis=1)

    return {"a": a, "b": mirror_x(f), "c": mirror_y(mirror_x(f)), "d": mirror_y(a), "e": mirror_y(f),
            "f": f, "g": mid}  # fmt: skip


def seven_segment(
    text: str,
    *,
    digit_h: int = DIGIT_H,
    ghost: float = 0.12,
    cells: int | None = None,
    slant_deg: float = 8.0,
    thickness: float = 0.12,
    pad: tuple[int, int] | None = None,
    bg: tuple[int, int, int] = LCD_BG,
    ink: tuple[int, int, int] = LCD_INK,
    forms: Mapping[str, str] | None = None,
) -> np.ndarray:
    """The LCD window (BGR uint8) showing `text`: digits 0-9, '-', ' ' (a blank cell) and '.'.

    Digits are `digit_h` px high and digit_h / 1.8 wide, slanted right by `slant_deg`, with segments
    `thickness` * digit_h thick and small gaps between them. Every cell shows the unlit segments and
    its decimal point faintly at `ghost` (0: invisible, 1: as dark as lit ones). With `cells`, the
    text is right-aligned in that many digit cells (blank ones at the left) so the window's size is
    fixed; `pad` is the (x, y) margin around the digits. `forms` maps a digit to the segments it lights
    where the display draws it otherwise (`TAILLESS`, `HOOKED_7`).
    """
    parsed = _parse(text)
    n = len(parsed) if cells is None else cells
    if len(parsed) > n:
        raise ValueError(f"{text!r} needs {len(parsed)} digit cells, the display has {n}")
    parsed = [(" ", False)] * (n - len(parsed)) + parsed
    h = float(digit_h)
    w = h / 1.8
    t = thickness * h
    gap = max(0.9, 0.06 * h)
    pitch = w * 1.36
    shear = math.tan(math.radians(slant_deg))
    px, py = pad if pad is not None else (round(0.35 * h), round(0.31 * h))
    width = round(2 * px + (n - 1) * pitch + w + shear * h)
    height = round(2 * py + h)

    s = _SS
    lit = np.zeros((height * s, width * s), np.uint8)
    dim = np.zeros_like(lit)
    polys = _segment_polys(w, h, t, gap)
    dot = t * 0.62  # radius of the decimal point, which sits in the space right of its cell

    def place(pts: np.ndarray, x0: float) -> np.ndarray:
        # slant about the baseline, move into the cell, to supersampled integer points
        out = np.stack([pts[:, 0] + (h - pts[:, 1]) * shear + x0 + px, pts[:, 1] + py], axis=1)
        return np.round(out * s).astype(np.int32)

    for i, (glyph, point) in enumerate(parsed):
        x0 = i * pitch
        on = set(lit_by(glyph, forms))
        for name, pts in polys.items():
            cv2.fillPoly(lit if name in on else dim, [place(pts, x0)], 255, cv2.LINE_AA)
        cx = x0 + w + (pitch - w) / 2 + dot * shear + px
        cy = py + h - dot
        cv2.circle(
            lit if point else dim, (round(cx * s), round(cy * s)), round(dot * s), 255, -1, cv2.LINE_AA
        )

    lit_a = cv2.resize(lit, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    dim_a = cv2.resize(dim, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    alpha = np.clip(lit_a + ghost * dim_a, 0.0, 1.0)[..., None]
    # A liquid crystal's background is not flat: slightly brighter in the middle, darker at the edges.
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    shade = 1.0 - 0.06 * (((xx / width - 0.5) * 2) ** 2 + ((yy / height - 0.5) * 2) ** 2) / 2
    back = np.asarray(bg, np.float32) * shade[..., None]
    img = back * (1 - alpha) + np.asarray(ink, np.float32) * alpha
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


# --- the meter face ------------------------------------------------------------------------------------


def _screw(img: np.ndarray, centre: tuple[int, int], r: int, angle_deg: float) -> None:
    cv2.circle(img, centre, r + 2, (110, 112, 110), -1, cv2.LINE_AA)
    cv2.circle(img, centre, r, (150, 152, 150), -1, cv2.LINE_AA)
    cv2.circle(img, centre, r, (80, 82, 80), 1, cv2.LINE_AA)
    for a in (angle_deg, angle_deg + 90):
        dx, dy = r * 0.8 * math.cos(math.radians(a)), r * 0.8 * math.sin(math.radians(a))
        cx, cy = centre
        p1 = (round(cx - dx), round(cy - dy))
        p2 = (round(cx + dx), round(cy + dy))
        cv2.line(img, p1, p2, (45, 45, 45), 2, cv2.LINE_AA)


def _barcode(img: np.ndarray, x: int, y: int, w: int, h: int) -> None:
    cv2.rectangle(img, (x - 6, y - 6), (x + w + 6, y + h + 16), (238, 238, 234), -1)
    rng = np.random.default_rng(4711)  # the same bars on every frame
    cx = x
    while cx < x + w:
        bar = int(rng.integers(1, 4))
        if rng.random() < 0.55:
            cv2.rectangle(img, (cx, y), (cx + bar - 1, y + h), (20, 20, 20), -1)
        cx += bar
    cv2.putText(img, "4 006381 333931", (x + 4, y + h + 12), cv2.FONT_HERSHEY_PLAIN, 0.8, _PRINT, 1,
                cv2.LINE_AA)  # fmt: skip


def _face(size: tuple[int, int]) -> np.ndarray:
    """The meter without its digits, at FRAME_SIZE scale (the LCD window is filled in later)."""
    fw, fh = FRAME_SIZE
    img: np.ndarray = np.empty((fh, fw, 3), np.uint8)
    img[:] = _WALL
    # the housing: a light grey plastic body with a darker rim and a soft drop shadow
    shadow = np.zeros((fh, fw), np.uint8)
    cv2.rectangle(shadow, (26, 26), (fw - 14, fh - 14), 255, -1)
    shadow_f = cv2.GaussianBlur(shadow, (0, 0), 8).astype(np.float32)[..., None] / 255
    img = (img.astype(np.float32) * (1 - 0.45 * shadow_f)).astype(np.uint8)
    cv2.rectangle(img, (20, 20), (fw - 20, fh - 20), (120, 122, 120), -1, cv2.LINE_AA)
    cv2.rectangle(img, (26, 26), (fw - 26, fh - 26), _BODY, -1, cv2.LINE_AA)
    # brand (top left) and screws
    _screw(img, (58, 72), 11, 25)
    cv2.putText(img, "HYDROMETRIX", (80, 82), cv2.FONT_HERSHEY_DUPLEX, 0.85, _PRINT, 2, cv2.LINE_AA)
    cv2.putText(img, "Q3 2,5  R160", (82, 98), cv2.FONT_HERSHEY_PLAIN, 0.9, (70, 70, 72), 1, cv2.LINE_AA)
    _screw(img, (fw - 58, 72), 11, 70)
    _screw(img, (58, fh - 72), 11, 110)
    _screw(img, (fw - 58, fh - 72), 11, 5)
    # the LCD's bezel around LCD_BOX, and the unit right of it
    x, y, w, h = LCD_BOX
    cv2.rectangle(img, (x - 14, y - 14), (x + w + 14, y + h + 14), (150, 152, 148), -1, cv2.LINE_AA)
    cv2.rectangle(img, (x - 8, y - 8), (x + w + 8, y + h + 8), _BEZEL, -1, cv2.LINE_AA)
    cv2.putText(img, "m3", (x + w + 26, y + h - 18), cv2.FONT_HERSHEY_DUPLEX, 1.1, _PRINT, 2, cv2.LINE_AA)
    cv2.putText(img, "x0,001", (x + w - 60, y + h + 34), cv2.FONT_HERSHEY_PLAIN, 1.0, (70, 70, 72), 1,
                cv2.LINE_AA)  # fmt: skip
    # the serial-number sticker below the LCD
    sx, sy = 150, 300
    cv2.rectangle(img, (sx, sy), (sx + 250, sy + 44), (232, 234, 230), -1)
    cv2.rectangle(img, (sx, sy), (sx + 250, sy + 44), (150, 150, 150), 1)
    cv2.putText(img, "Nr. 4711 0815 / 2019", (sx + 10, sy + 28), cv2.FONT_HERSHEY_SIMPLEX, 0.62, _PRINT, 1,
                cv2.LINE_AA)  # fmt: skip
    # the barcode (bottom right), and a CE / metrology mark (bottom left)
    _barcode(img, 396, 384, 150, 36)
    cv2.rectangle(img, (80, 392), (190, 420), _PRINT, 1, cv2.LINE_AA)
    cv2.putText(img, "M19 0102", (88, 412), cv2.FONT_HERSHEY_PLAIN, 1.0, _PRINT, 1, cv2.LINE_AA)
    if size != FRAME_SIZE:
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return img


_FACES: dict[tuple[int, int], np.ndarray] = {}


def _scaled_box(box: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    sx, sy = size[0] / FRAME_SIZE[0], size[1] / FRAME_SIZE[1]
    x, y, w, h = box
    return round(x * sx), round(y * sy), round(w * sx), round(h * sy)


def _glare(img: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A soft, bright elliptical reflection over the upper right part of the LCD."""
    fh, fw = img.shape[:2]
    x, y, w, h = _scaled_box(LCD_BOX, (fw, fh))
    cx = x + w * (0.62 + 0.08 * rng.uniform(-1, 1))
    cy = y + h * (0.25 + 0.1 * rng.uniform(-1, 1))
    axes = (w * 0.28, h * 0.55)
    yy, xx = np.mgrid[0:fh, 0:fw].astype(np.float32)
    ang = math.radians(-20)
    u = ((xx - cx) * math.cos(ang) - (yy - cy) * math.sin(ang)) / axes[0]
    v = ((xx - cx) * math.sin(ang) + (yy - cy) * math.cos(ang)) / axes[1]
    mask = np.exp(-1.5 * (u * u + v * v))[..., None] * strength
    out = img.astype(np.float32)
    return np.clip(out + (255 - out) * mask * 0.85 + 0.5, 0, 255).astype(np.uint8)


def dseg7_lcd(text: str, *, digit_h: int = DIGIT_H, ghost: float = 0.12, cells: int = CELLS) -> np.ndarray:
    """The LCD window drawn with the DSEG7 Classic face (fonts-dseg) instead of our polygons: a second,
    independent 7-segment design, right-aligned in `cells` cells over the ghost `8.` of every cell.
    Needs Pillow (the [train] extra)."""
    from edge_ocr.train.fonts import DSEG_DIR, _draw_text

    face = str(DSEG_DIR / "DSEG7Classic-Regular.ttf")
    n = sum(1 for c in text if c != ".")
    shown = "!" * (cells - n) + text.replace(" ", "!")
    ink = _draw_text(shown, face, digit_h)
    shade = _draw_text("8." * cells, face, digit_h)
    h, w = max(ink.shape[0], shade.shape[0]), max(ink.shape[1], shade.shape[1])
    a = np.zeros((h, w), np.float32)
    a[h - ink.shape[0] :, w - ink.shape[1] :] = ink
    g = np.zeros((h, w), np.float32)
    g[h - shade.shape[0] :, w - shade.shape[1] :] = shade
    alpha = np.maximum(a, g * ghost)
    pad_x, pad_y = round(0.35 * digit_h), round(0.31 * digit_h)
    alpha = cv2.copyMakeBorder(alpha, pad_y, pad_y, pad_x, pad_x, cv2.BORDER_CONSTANT, value=0)
    bg, ink_c = np.array(LCD_BG, np.float32), np.array(LCD_INK, np.float32)
    return np.clip(bg + (ink_c - bg) * alpha[..., None] + 0.5, 0, 255).astype(np.uint8)


LCD_FACES: dict[str, Callable[..., np.ndarray]] = {"polygon": seven_segment, "dseg7": dseg7_lcd}


def _clean_frame(
    text: str,
    size: tuple[int, int],
    drift: tuple[float, float, float],
    glare: float,
    blur: float,
    ghost: float,
    seed: int,
    face: str = "polygon",
) -> np.ndarray:
    """The frame before sensor noise."""
    if size not in _FACES:
        _FACES[size] = _face(size)
    img = _FACES[size].copy()
    x, y, w, h = _scaled_box(LCD_BOX, size)
    digit_h = DIGIT_H * h / LCD_BOX[3]
    lcd = LCD_FACES[face](text, digit_h=round(digit_h), ghost=ghost, cells=CELLS)
    img[y : y + h, x : x + w] = cv2.resize(lcd, (w, h), interpolation=cv2.INTER_AREA)
    if glare > 0:
        img = _glare(img, glare, np.random.default_rng(seed))
    dx, dy, angle = drift
    if dx or dy or angle:
        m = cv2.getRotationMatrix2D((size[0] / 2, size[1] / 2), angle, 1.0)
        m[0, 2] += dx
        m[1, 2] += dy
        img = cv2.warpAffine(img, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    return img


def _noisy(img: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    if noise <= 0:
        return img
    field = rng.normal(0.0, noise, img.shape).astype(np.float32)
    return np.clip(img.astype(np.float32) + field + 0.5, 0, 255).astype(np.uint8)


def meter_frame(
    text: str,
    *,
    size: tuple[int, int] = FRAME_SIZE,
    drift: tuple[float, float, float] = (0.0, 0.0, 0.0),
    glare: float = 0.0,
    noise: float = 3,
    blur: float = 0.0,
    ghost: float = 0.12,
    seed: int = 0,
) -> np.ndarray:
    """A BGR uint8 camera frame of the meter showing `text` (at most CELLS digits) in its LCD.

    In an undrifted frame of FRAME_SIZE the LCD window is at LCD_BOX and the textured marks at
    PATCHES (other sizes scale the layout). `drift` = (dx, dy, angle_deg) is the camera having moved:
    the face is rotated by angle_deg (counter-clockwise on screen, as cv2.getRotationMatrix2D) about
    the frame centre, then shifted by (dx, dy) px. `glare` (0..1) is a soft highlight over part of the
    LCD, `blur` the sigma of a Gaussian blur (focus), `noise` the sigma of Gaussian sensor noise in grey
    levels. The same arguments give the same frame.
    """
    img = _clean_frame(text, size, drift, glare, blur, ghost, seed)
    return _noisy(img, noise, np.random.default_rng(seed))


def drifted_point(
    point: tuple[float, float], drift: tuple[float, float, float], size: tuple[int, int] = FRAME_SIZE
) -> tuple[float, float]:
    """Where `point` of the undrifted frame lands in a frame drawn with `drift`."""
    m = cv2.getRotationMatrix2D((size[0] / 2, size[1] / 2), drift[2], 1.0)
    x, y = point
    return (float(m[0, 0] * x + m[0, 1] * y + m[0, 2] + drift[0]),
            float(m[1, 0] * x + m[1, 1] * y + m[1, 2] + drift[1]))  # fmt: skip


# --- videos and schedules ------------------------------------------------------------------------------


def write_meter_video(
    path: Path | str,
    schedule: Sequence[tuple[str, float] | tuple[str, float, float]],
    *,
    fps: float = 10.0,
    face: str = "polygon",
    size: tuple[int, int] = FRAME_SIZE,
    drift: Callable[[int], tuple[float, float, float]] | None = None,
    noise: float = 3,
    seed: int = 0,
    **frame_kwargs: float,
) -> list[int]:
    """An MJPG .avi showing each (text, seconds) of `schedule` in turn (at least one frame each); an
    entry (text, seconds, glare) has its own glare. `face`: the LCD's design (polygon or dseg7).

    `drift(frame_index)` -> (dx, dy, angle_deg) moves the camera over time (None: it never moves);
    `frame_kwargs` (glare, blur, ghost) go to `meter_frame`. Each distinct (text, drift) picture is
    rendered once; frames differ by sensor noise only, taken from a small pool of noise fields.
    Returns the first frame index of each schedule entry.
    """
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    if not writer.isOpened():
        raise OSError(f"cannot write {path}")
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    # Noise as (positive, negative) uint8 parts: two saturating cv2 operations a frame.
    pool: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(8 if noise > 0 else 0):
        field = np.rint(rng.normal(0.0, noise, (h, w, 3)))
        pool.append((np.clip(field, 0, 255).astype(np.uint8), np.clip(-field, 0, 255).astype(np.uint8)))
    glare = float(frame_kwargs.pop("glare", 0.0))
    blur = float(frame_kwargs.pop("blur", 0.0))
    ghost = float(frame_kwargs.pop("ghost", 0.12))
    if frame_kwargs:
        raise TypeError(f"unknown frame arguments: {sorted(frame_kwargs)}")
    cache: dict[tuple[str, tuple[float, float, float], float], np.ndarray] = {}
    starts: list[int] = []
    n = 0
    try:
        for entry in schedule:
            text, seconds = entry[0], entry[1]
            shine = float(entry[2]) if len(entry) > 2 else glare  # type: ignore[misc]
            starts.append(n)
            for _ in range(max(1, round(seconds * fps))):
                d = (0.0, 0.0, 0.0) if drift is None else tuple(float(v) for v in drift(n))
                key = (text, (d[0], d[1], d[2]), shine)
                if key not in cache:
                    if len(cache) > 64:
                        cache.clear()
                    cache[key] = _clean_frame(text, size, key[1], shine, blur, ghost, seed, face)
                frame = cache[key]
                if pool:
                    plus, minus = pool[n % len(pool)]
                    frame = cv2.subtract(cv2.add(frame, plus), minus)
                writer.write(frame)
                n += 1
    finally:
        writer.release()
    return starts


def counter_schedule(
    start: float,
    steps: int,
    *,
    decimals: int = 3,
    integers: int = 5,
    increment: float | tuple[float, float] = 0.001,
    seconds: float = 2.0,
    seed: int = 0,
) -> list[tuple[str, float]]:
    """`steps` increasing readings from `start` as (text, seconds) for `write_meter_video`.

    Texts are zero-padded to `integers` digits before the point and `decimals` after it ("00123.456"
    for 5 + 3); `increment` is the step, or a (low, high) range each step is drawn from (seeded), so
    several digits roll over now and then. Readings wrap around at 10 ** integers like a counter.
    """
    unit = 10**decimals
    value = round(start * unit)
    rng = np.random.default_rng(seed)
    modulus = 10**integers * unit
    out: list[tuple[str, float]] = []
    for _ in range(steps):
        ipart, fpart = divmod(value % modulus, unit)
        text = f"{ipart:0{integers}d}" + (f".{fpart:0{decimals}d}" if decimals else "")
        out.append((text, seconds))
        if isinstance(increment, tuple):
            lo, hi = increment
            step = round(rng.uniform(lo, hi) * unit)
        else:
            step = round(increment * unit)
        value += max(1, step)
    return out
