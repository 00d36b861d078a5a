"""Labelled meter crops, rendered: what a numeric camera region cuts out of a frame, with its true text.

This module owns the meter model's training and evaluation data. `render(rng)` draws one crop of a
randomly chosen kind and returns it with its label; the same seed gives the same crops, byte for byte.

Kinds (`KINDS`):

- `seg7`: every 7-segment face of `fonts-dseg` (DSEG7 Classic/Modern, Mini, SEGG-CHAN, every weight
  and slant), plus our own polygon renderer (`edge_ocr.bench.meter.seven_segment`) as a second design;
- `seg14`: the DSEG14 faces (14/16-segment displays showing digits);
- `dotmatrix`: 5x7 dot-matrix cells;
- `printed`: printed digits (DejaVu faces, the font packages' faces, Pillow's own face, OpenCV's Hershey
  faces);
- `drum`: a mechanical counter, one drum per digit (see below).

Display looks: an LCD (dark ink on a grey-green or grey glass, with the unlit segments faintly visible:
"ghosts"), an LED (lit segments glowing on black), a backlit LCD (blue, green, amber) and negative LCDs
(light digits on dark). Readings have leading blank cells (the ghosts of unlit cells, no text), leading
zeros, decimal points and minus signs.

Mechanical counters are geared: a drum turns only while every drum to its right passes 9 -> 0, so a
true value of 01239.6 shows the last drum 60% of the way from 9 to 0 *and* the tens drum 60% of the way
from 3 to 4. **The label of a drum in motion is the digit nearest the window's centre line** (each drum
rounded): with geared drums that is the true value rounded to the last drum, so labels are always a
value the counter really passes (01239.6 -> "01240"; 01239.4 -> "01239"). A reading of either
neighbouring value is right (`neighbours` gives both); anything else (01249, 01230) is wrong. Some
counters have red fraction drums; drums curve away at the window's top and bottom edges and darken there.
Their digits are printed in a DejaVu face, a face of one of 25 font packages, Pillow's own face or a
stroked Hershey face (`_drum_face`).
How often the last drum is caught turning, and between which digits, is `MOTIONS` (`render(motion=...)`).

Camera effects on every crop: the region box's margin and a slight turn, perspective, blur (focus or
motion), glare, sensor noise, low light, JPEG.

Tooling only (needs Pillow, the `[train]` extra): the daemon never imports this module.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edge_ocr.train.fonts import (
    DEJAVU_DIR,
    DSEG_DIR,
    PILLOW_DEFAULT,
    _draw_text,
    _faces,
    _font,
    hershey_face,
    package_faces,
)

KINDS = ("seg7", "seg14", "dotmatrix", "printed", "drum")
# How often each kind is drawn in training: drums and 7-segment displays are what meters show.
WEIGHTS = {"seg7": 0.34, "seg14": 0.1, "dotmatrix": 0.08, "printed": 0.13, "drum": 0.35}

FONT_PX = 64  # glyphs are drawn this high, then the crop is scaled to the size a camera gives it
MOTION = 0.08  # a last drum further than this from a digit is in motion: either neighbour is right
# How often a counter's last drum is drawn turning, and between which digits (`_drum`):
# - "even": two in three counters have their last drum turning, as evenly between 6 and 7 as between any
#   other pair (a camera catches a running meter at any moment), and one in five of all counters is
#   carrying (9 -> 0, often through several drums) on top of that. The default: what held-back sets use.
# - "carry": 45% turning, half of them carrying, so 9 -> 0 is drawn ten times as often as any other
#   pair. The recipe's first phase is rendered so; its second phase, and the held-back sets, use "even"
#   (a model refined on "carry" drums only read some last drums between 6 and 7 as 0: 0126/0127 -> 0120).
# - "natural": two in three turning, and a 9 carries only as often as a uniform last digit is a 9: what a
#   camera sees of a meter that runs at a steady rate. "even" still draws 9 -> 0 in a third of its
#   turning drums, and a model refined on it read other turning drums as 0 where their two half digits
#   were far apart (0000046/47 -> 0000040).
MOTIONS = ("even", "carry", "natural")


@dataclass(frozen=True)
class Crop:
    image: np.ndarray  # BGR uint8, as a region cuts it from a frame
    text: str  # the label: what a perfect reader reads (leading blank cells are not text)
    kind: str
    # Drums: the true (unrounded) value in last-drum units, so both neighbouring readings can be scored.
    value: float | None = None
    digits: int = 0


def neighbours(crop: Crop) -> tuple[str, ...]:
    """Every reading that counts as right: the label, and for a drum in motion the other neighbour."""
    if crop.value is None:
        return (crop.text,)
    lo = math.floor(crop.value + 1e-9)
    frac = crop.value - lo
    # A drum within 8% of a digit is still (the renderer's still drums sit within 4%): one right reading.
    if frac < MOTION:
        hi = lo
    elif frac > 1 - MOTION:
        lo = hi = lo + 1
    else:
        hi = lo + 1
    mod = 10**crop.digits
    return tuple(dict.fromkeys(_drum_text(v % mod, crop.digits, crop.text) for v in (lo, hi)))


def other_reading(crop: Crop) -> tuple[str, float]:
    """A drum in motion's other right reading and how far the drum has turned from its label towards it
    (0 to 0.5 of a digit: the share of that reading a calibrated reader gives); the label and 0 for a
    still drum and for displays."""
    other = next((t for t in neighbours(crop) if t != crop.text), None)
    if other is None or crop.value is None:
        return crop.text, 0.0
    return other, abs(crop.value - math.floor(crop.value + 0.5))


def _drum_text(v: int, digits: int, like: str) -> str:
    s = str(v).zfill(digits)
    if "." in like:  # a printed point between integer and fraction drums
        i = like.index(".")
        s = s[:i] + "." + s[i:]
    return s


# --- readings ---------------------------------------------------------------------------------------


def _reading(rng: np.random.Generator, *, allow_minus: bool = True) -> tuple[list[str], int]:
    """(cells, leading blank cells): each cell a digit or '-', optionally followed by '.'."""
    n = int(rng.integers(3, 10))
    decimals = int(rng.choice([0, 0, 1, 1, 2, 3])) if n > 2 else 0
    decimals = min(decimals, n - 1)
    style = rng.random()
    digits = [str(int(d)) for d in rng.integers(0, 10, n)]
    blanks = 0
    if style < 0.35:  # leading zeros kept (counters)
        zeros = int(rng.integers(0, n - decimals))
        for i in range(zeros):
            digits[i] = "0"
    elif style < 0.75:  # leading zeros blanked (most LCDs): blank cells show only ghosts
        lead = int(rng.integers(0, n - decimals))
        if lead:
            digits[lead] = str(int(rng.integers(1, 10)))
        blanks = lead
    cells = digits[:]
    if decimals:
        cells[n - decimals - 1] += "."
    if allow_minus and rng.random() < 0.08 and blanks > 0:
        cells[blanks - 1] = "-"
        blanks -= 1
    return cells, blanks


def _label(cells: list[str], blanks: int) -> str:
    return "".join(cells[blanks:])


# --- segment displays (DSEG faces) ------------------------------------------------------------------


@dataclass(frozen=True)
class _Look:
    bg: tuple[int, ...]
    ink: tuple[int, ...]
    ghost: float  # unlit segments at this fraction of the way from bg to ink
    glow: float  # LED bloom


def _display_look(rng: np.random.Generator) -> _Look:
    r = rng.random()
    jitter = rng.integers(-18, 19, 3)

    def c(base: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(int(np.clip(b + j, 0, 255)) for b, j in zip(base, jitter, strict=True))

    if r < 0.45:  # reflective LCD
        bg = c(
            tuple(
                int(x)
                for x in rng.choice([(168, 186, 172), (190, 196, 190), (150, 170, 160), (205, 210, 200)])
            )
        )
        return _Look(bg, c((38, 44, 36)), float(rng.uniform(0.0, 0.3)), 0.0)
    if r < 0.7:  # LED: red, green, blue, amber or white on black
        ink = tuple(
            int(x)
            for x in rng.choice(
                [(40, 40, 255), (60, 255, 80), (255, 160, 40), (30, 170, 255), (240, 240, 240)]
            )
        )
        return _Look(c((12, 12, 14)), ink, float(rng.uniform(0.0, 0.15)), float(rng.uniform(0.0, 1.0)))
    if r < 0.88:  # backlit LCD: dark ink on a lit blue/green/amber background
        bg = tuple(
            int(x) for x in rng.choice([(230, 170, 60), (90, 220, 150), (60, 190, 240), (200, 210, 120)])
        )
        return _Look(c(bg), c((30, 30, 40)), float(rng.uniform(0.0, 0.25)), 0.0)
    # negative LCD: light segments on a dark (often blue) glass
    bg = tuple(int(x) for x in rng.choice([(90, 30, 10), (25, 25, 25), (60, 20, 60)]))
    return _Look(c(bg), c((235, 240, 235)), float(rng.uniform(0.0, 0.2)), float(rng.uniform(0.0, 0.4)))


def _faded(look: _Look, rng: np.random.Generator) -> _Look:
    """An old or cheap LCD: the ink only part of the way to its colour (low contrast)."""
    if rng.random() > 0.3:
        return look
    f = float(rng.uniform(0.0, 0.45))
    ink = tuple(int(i + (b - i) * f) for i, b in zip(look.ink, look.bg, strict=True))
    return _Look(look.bg, ink, look.ghost, look.glow)


def _surround(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What a region box also catches around a display: its bezel, and some of the meter's face."""
    h = img.shape[0]
    out = img
    if rng.random() < 0.55:
        t = max(1, int(h * rng.uniform(0.03, 0.12)))
        dark = rng.random() < 0.7
        frame = [int(v) for v in (rng.integers(0, 80, 3) if dark else rng.integers(150, 240, 3))]
        out = cv2.copyMakeBorder(out, t, t, t, t, cv2.BORDER_CONSTANT, value=frame)
        if rng.random() < 0.5:
            m = [int(h * rng.uniform(0.0, 0.35)) for _ in range(4)]
            face = [int(v) for v in rng.integers(110, 235, 3)]
            out = cv2.copyMakeBorder(out, m[0], m[1], m[2], m[3], cv2.BORDER_CONSTANT, value=face)
    return out


def _tight_box(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The box a user draws tight round what the display or counter shows, in place of its surround:
    the bounding box of its strokes (edges above a drawn share of the strongest, so faint ghost cells
    are sometimes in it and sometimes not; a counter's windows always), 0-6% of its height more on each
    side. Digits then touch the box, and a DSEG 1, drawn at the right of its cell, may be the crop's
    first column: a model that never saw that dropped edge digits on crops drawn so by another renderer
    (13905 -> 3905)."""
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
    edges = np.abs(cv2.Sobel(gray, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    ys, xs = np.nonzero(edges > edges.max() * float(rng.uniform(0.08, 0.35)))
    if xs.size == 0:
        return img
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    top, bottom, left, right = (int(round((y1 - y0) * float(rng.uniform(0.0, 0.06)))) for _ in range(4))
    h, w = img.shape[:2]
    return img[max(0, y0 - top) : min(h, y1 + bottom), max(0, x0 - left) : min(w, x1 + right)]


def _compose(ink_mask: np.ndarray, ghost_mask: np.ndarray | None, look: _Look) -> np.ndarray:
    bg = np.array(look.bg, np.float32)
    ink = np.array(look.ink, np.float32)
    a = ink_mask[..., None]
    if look.glow > 0:
        bloom = cv2.GaussianBlur(ink_mask, (0, 0), 2.0 + 3 * look.glow)[..., None] * 0.6 * look.glow
        a = np.clip(a + bloom, 0, 1)
    if ghost_mask is not None and look.ghost > 0:
        g = ghost_mask[..., None] * look.ghost
        a = np.maximum(a, g)
    return np.clip(bg + (ink - bg) * a, 0, 255)


def _pad(mask: np.ndarray, rng: np.random.Generator, h_frac: tuple[float, float] = (0.1, 0.45)) -> np.ndarray:
    h = mask.shape[0]
    top, bottom = (int(rng.uniform(*h_frac) * h) for _ in range(2))
    left, right = (int(rng.uniform(0.05, 0.5) * h) for _ in range(2))
    return cv2.copyMakeBorder(mask, top, bottom, left, right, cv2.BORDER_CONSTANT, value=0)


def _spaced_cells(shown: list[str], ghost: str, face: str, gap: float) -> tuple[np.ndarray, np.ndarray]:
    """Coverage masks of a display's cells (`shown`, each a glyph and maybe its point) and of its unlit
    segments (`ghost` in every cell), `gap` times the face's advance further apart than the face sets
    them: LCD glass spaces its digits as its maker chose, often wider than DSEG. Another renderer's
    displays drawn so read with a 1 beside a wide gap dropped (1 18 195 -> 18195)."""
    from PIL import Image, ImageDraw

    font = _font(face, FONT_PX)
    pitch = float(font.getlength(ghost[0])) * (1.0 + gap)
    left, top, right, bottom = font.getbbox(ghost)
    w = int(math.ceil((len(shown) - 1) * pitch)) + right - left + 4
    masks = []
    for texts in (shown, [ghost] * len(shown)):
        img = Image.new("L", (w, bottom - top + 4), 0)
        draw = ImageDraw.Draw(img)
        for i, t in enumerate(texts):
            draw.text((2 - left + i * pitch, 2 - top), t, font=font, fill=255)
        masks.append(np.asarray(img, dtype=np.float32) / 255.0)
    return masks[0], masks[1]


def _dseg(rng: np.random.Generator, family: str, spaced: float = 0.0) -> Crop:
    faces = _faces(f"{family}*.ttf", str(DSEG_DIR))
    face = str(rng.choice(faces))
    cells, blanks = _reading(rng)
    full = "8" if family == "DSEG7" else "~"
    # '!' is a blank cell of digit width in DSEG; a '.' is drawn in the space of the cell before it.
    shown = ["!" if i < blanks else c for i, c in enumerate(cells)]
    if spaced > 0 and rng.random() < spaced:  # `spaced` 0 draws nothing: earlier sets stay the same
        ink, ghost = _spaced_cells(shown, full + ".", face, float(rng.uniform(0.05, 0.4)))
    else:
        ink = _draw_text("".join(shown), face, FONT_PX)
        ghost = _draw_text("".join(full + "." for _ in cells), face, FONT_PX)
    h, w = max(ink.shape[0], ghost.shape[0]), max(ink.shape[1], ghost.shape[1])
    ink = _right_align(ink, h, w)
    ghost = _right_align(ghost, h, w)
    look = _faded(_display_look(rng), rng)
    both = _pad(np.stack([ink, ghost], axis=-1), rng)
    img = _compose(both[..., 0], both[..., 1], look)
    kind = "seg7" if family == "DSEG7" else "seg14"
    return Crop(img.astype(np.uint8), _label(cells, blanks), kind)


def _right_align(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    out = np.zeros((h, w), np.float32)
    out[h - mask.shape[0] :, w - mask.shape[1] :] = mask
    return out


def _bgr(c: tuple[int, ...]) -> tuple[int, int, int]:
    return (c[0], c[1], c[2])


def _digit_forms(rng: np.random.Generator, share: float) -> dict[str, str] | None:
    """A display's own forms of 6, 7 and 9 (`bench.meter.TAILLESS`, `HOOKED_7`) for `share` of displays,
    else None (the usual forms). A display draws every 6 and 9 one way, by its decoder: tail-less ones
    on seven in ten of these, a hooked 7 on half. `share` 0 draws nothing from rng."""
    from edge_ocr.bench.meter import HOOKED_7, TAILLESS

    if share <= 0 or rng.random() >= share:
        return None
    tailless, hooked = rng.random() < 0.7, rng.random() < 0.5
    return {**(TAILLESS if tailless or not hooked else {}), **(HOOKED_7 if hooked else {})}


def _polygon_seg7(rng: np.random.Generator, forms: float = 0.0) -> Crop:
    from edge_ocr.bench.meter import seven_segment

    cells, blanks = _reading(rng)
    text = "".join(" " if i < blanks else c for i, c in enumerate(cells))
    look = _display_look(rng)
    img = seven_segment(
        text, digit_h=FONT_PX, ghost=look.ghost, slant_deg=float(rng.uniform(0, 12)),
        thickness=float(rng.uniform(0.08, 0.17)), bg=_bgr(look.bg), ink=_bgr(look.ink),
        pad=(int(rng.uniform(0.05, 0.5) * FONT_PX), int(rng.uniform(0.1, 0.45) * FONT_PX)),
        forms=_digit_forms(rng, forms),
    )  # fmt: skip
    return Crop(img, _label(cells, blanks), "seg7")


def _stroked_seg7(rng: np.random.Generator, forms: float = 0.0) -> Crop:
    """7-segment digits drawn as plain strokes, the way a quick drawing of a display draws them: no
    bevels, round or square ends, the segments touching or a little apart, of any weight and spacing,
    upright or slanted. Shown only the DSEG faces and our bevelled polygons, the model read 300 such
    readings at 0.957 / 0.900 exact (camera strength 0.5 / 1.0); trained on them too, 0.997 / 0.943."""
    from edge_ocr.bench.meter import lit_by  # the segments each glyph lights, as our polygons draw them

    cells, blanks = _reading(rng)
    h = FONT_PX
    w = int(h * rng.uniform(0.4, 0.65))
    t = max(2, int(h * rng.uniform(0.06, 0.16)))
    dot = max(3, int(t * rng.uniform(0.6, 0.9)))  # the point's radius
    # room for a point between cells: a point that touches the next digit is a label the crop cannot show
    pitch = max(w + t + 2 * dot + 4, int(w * rng.uniform(1.2, 1.8)))
    inset = int(t * rng.uniform(0.0, 1.0))
    square = rng.random() < 0.5
    own = _digit_forms(rng, forms)
    m = t + 2
    ink = np.zeros((h + 2 * m + t, 2 * m + len(cells) * pitch), np.uint8)
    ghost = np.zeros_like(ink)
    for i, cell in enumerate(cells):
        x0, y0, mid = m + i * pitch, m, m + h // 2
        ends = {
            "a": ((x0 + inset, y0), (x0 + w - inset, y0)),
            "b": ((x0 + w, y0 + inset), (x0 + w, mid - inset)),
            "c": ((x0 + w, mid + inset), (x0 + w, y0 + h - inset)),
            "d": ((x0 + inset, y0 + h), (x0 + w - inset, y0 + h)),
            "e": ((x0, mid + inset), (x0, y0 + h - inset)),
            "f": ((x0, y0 + inset), (x0, mid - inset)),
            "g": ((x0 + inset, mid), (x0 + w - inset, mid)),
        }
        lit = lit_by(" " if i < blanks else cell[0], own)
        for seg, (p0, p1) in ends.items():
            for canvas in (ghost, ink) if seg in lit else (ghost,):
                if square:
                    r = t // 2
                    cv2.rectangle(canvas, (min(p0[0], p1[0]) - r, min(p0[1], p1[1]) - r),
                                  (max(p0[0], p1[0]) + r, max(p0[1], p1[1]) + r), 255, -1)  # fmt: skip
                else:
                    cv2.line(canvas, p0, p1, 255, t, cv2.LINE_AA)
        point = (x0 + w + t // 2 + dot + 2, y0 + h + t // 2 - dot)  # bottom right, clear of the digit
        for canvas in (ghost, ink) if cell.endswith(".") else (ghost,):
            cv2.circle(canvas, point, dot, 255, -1, cv2.LINE_AA)
    masks: np.ndarray = np.stack([ink, ghost], axis=-1).astype(np.float32) / 255.0
    if rng.random() < 0.5:  # slanted right, as many displays are
        shear = math.tan(math.radians(float(rng.uniform(4, 12))))
        hh, ww = masks.shape[:2]
        warp = np.array([[1, -shear, shear * hh], [0, 1, 0]], np.float32)
        masks = cv2.warpAffine(masks, warp, (ww + int(shear * hh) + 1, hh))
    look = _faded(_display_look(rng), rng)
    both = _pad(masks, rng)
    return Crop(_compose(both[..., 0], both[..., 1], look).astype(np.uint8), _label(cells, blanks), "seg7")


# --- dot matrix -------------------------------------------------------------------------------------

# 5x7 cells, rows top to bottom, 1 = lit.
_DOTS = {
    "0": ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
    "1": ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    "2": ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    "3": ("11111", "00010", "00100", "00010", "00001", "10001", "01110"),
    "4": ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    "5": ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    "6": ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    "7": ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    "8": ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    "9": ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
    "-": ("00000", "00000", "00000", "11111", "00000", "00000", "00000"),
    ".": ("0", "0", "0", "0", "0", "0", "1"),
    " ": ("00000",) * 7,
}


def _dotmatrix(rng: np.random.Generator) -> Crop:
    cells, blanks = _reading(rng)
    glyphs: list[str] = []
    for i, c in enumerate(cells):
        glyphs.append(" " if i < blanks else c[0])
        if c.endswith("."):
            glyphs.append(".")
    pitch = FONT_PX / 7.0
    r = pitch * float(rng.uniform(0.32, 0.48))
    square = rng.random() < 0.4
    cols = sum(len(_DOTS[g][0]) + 1 for g in glyphs)
    ink = np.zeros((FONT_PX + 4, int(cols * pitch) + 4), np.float32)
    ghost = np.zeros_like(ink)
    x0 = 2.0
    for g in glyphs:
        rows = _DOTS[g]
        for ry, row in enumerate(rows):
            for rx, bit in enumerate(row):
                cx, cy = x0 + (rx + 0.5) * pitch, 2 + (ry + 0.5) * pitch
                target = ink if bit == "1" else ghost
                if square:
                    cv2.rectangle(target, (int(cx - r), int(cy - r)), (int(cx + r), int(cy + r)), 1.0, -1)
                else:
                    cv2.circle(target, (int(cx), int(cy)), max(1, int(r)), 1.0, -1, cv2.LINE_AA)
        x0 += (len(rows[0]) + 1) * pitch
    look = _faded(_display_look(rng), rng)
    both = _pad(np.stack([ink, ghost], axis=-1), rng)
    return Crop(
        _compose(both[..., 0], both[..., 1], look).astype(np.uint8), _label(cells, blanks), "dotmatrix"
    )


# --- printed digits ---------------------------------------------------------------------------------

_HERSHEY = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
            cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_PLAIN)  # fmt: skip


def _printed(rng: np.random.Generator) -> Crop:
    cells, blanks = _reading(rng)
    text = _label(cells, blanks)
    faces = _faces("DejaVu*.ttf", str(DEJAVU_DIR))
    if faces and rng.random() < 0.7:
        if rng.random() < 0.5:
            face = str(rng.choice([f for f in faces if "Math" not in f] + [PILLOW_DEFAULT]))
        else:
            face = _package_face(rng)
        spaced = text if rng.random() < 0.6 else " ".join(text).replace(" . ", ".")
        mask = _draw_text(spaced, face, FONT_PX)
    else:
        font = int(rng.choice(_HERSHEY))
        scale = FONT_PX / 24.0 if font != cv2.FONT_HERSHEY_PLAIN else FONT_PX / 12.0
        thick = int(rng.integers(2, 7))
        (w, h), base = cv2.getTextSize(text, font, scale / 1.5, thick)
        canvas = np.zeros((h + base + 8, w + 8), np.uint8)
        cv2.putText(canvas, text, (4, h + 4), font, scale / 1.5, 255, thick, cv2.LINE_AA)
        mask = canvas.astype(np.float32) / 255.0
    if rng.random() < 0.5:
        paper, ink = rng.integers(170, 250, 3), rng.integers(0, 70, 3)
        look = _Look(tuple(int(v) for v in paper), tuple(int(v) for v in ink), 0.0, 0.0)
    else:
        paper, ink = rng.integers(0, 60, 3), rng.integers(190, 256, 3)
        look = _Look(tuple(int(v) for v in paper), tuple(int(v) for v in ink), 0.0, 0.0)
    return Crop(_compose(_pad(mask, rng), None, look).astype(np.uint8), text, "printed")


# --- mechanical counters ----------------------------------------------------------------------------


def _drum_positions(value: float, digits: int) -> list[float]:
    """Each drum's continuous position (0..10, left to right) for a geared counter at `value` (in
    last-drum units): a drum moves only during the last unit of the drum to its right."""
    pos: list[float] = []
    lower = value  # the position of the drum to the right, before the modulo
    for k in range(digits):
        if k == 0:
            p = value % 10
        else:
            below = pos[-1]
            whole = math.floor(value / 10**k)
            p = whole % 10 + max(0.0, below - 9.0)
        pos.append(p % 10)
        lower = lower / 10
    return pos[::-1]


def _drum(
    rng: np.random.Generator,
    motion: str = "even",
    faces: Sequence[str] | None = None,
    legible: bool = True,
    apart: float = 0.0,
    marks: float = 0.0,
    points: float = 0.0,
    dark_red: float = 0.0,
) -> Crop:
    digits = int(rng.integers(4, 10))
    red = int(rng.choice([0, 0, 1, 2, 3])) if digits > 4 else 0
    top = 10 ** (digits - int(rng.integers(0, 3)))  # often a few leading zeros
    whole = int(rng.integers(0, top))
    if motion == "carry":
        turning = rng.random() < 0.45
        carry = turning and rng.random() < 0.5
    elif motion == "even":
        r = rng.random()
        turning, carry = r < 0.65, r < 0.2
    elif motion == "natural":  # a 9 carries only as often as a uniform last digit is 9
        turning, carry = rng.random() < 0.65, False
    else:
        raise ValueError(f"unknown drum motion {motion!r}; one of {MOTIONS}")
    if carry:  # 9 -> 0: the last drum carries into the drum to its left, often through several
        whole = whole - whole % 10 + 9
        if rng.random() < 0.4:
            whole = whole - whole % 100 + 99
    if turning:
        value = whole + float(rng.uniform(0.05, 0.95))
    else:
        value = float(whole) + float(rng.uniform(-0.04, 0.04))
    value = max(0.0, value) % 10**digits
    positions = _drum_positions(value, digits)
    label_digits = [str(int(math.floor(p + 0.5)) % 10) for p in positions]
    # The rounded drums agree with the rounded value (what the docstring promises): checked here.
    rounded = str(int(math.floor(value + 0.5)) % 10**digits).zfill(digits)
    assert "".join(label_digits) == rounded, (positions, value)
    point = red > 0 and rng.random() < 0.35
    text = rounded[: digits - red] + ("." if point else "") + rounded[digits - red :]

    face = _drum_face(rng) if faces is None else str(rng.choice(list(faces)))
    # `apart` 0 draws nothing from rng: every set rendered before it existed is the same, byte for byte
    far = apart > 0 and rng.random() < apart
    cell_h = FONT_PX
    glyph_h = int(cell_h * (rng.uniform(0.45, 0.72) if far else rng.uniform(0.55, 0.9)))
    cell_w = int(cell_h * rng.uniform(0.55, 0.8))
    gap = int(cell_h * rng.uniform(0.04, 0.25))
    white_drums = rng.random() < 0.3
    drum_bg = np.array(rng.integers(200, 245, 3) if white_drums else rng.integers(10, 50, 3), np.float32)
    drum_ink = np.array(rng.integers(0, 40, 3) if white_drums else rng.integers(200, 250, 3), np.float32)
    frame = np.array(rng.integers(0, 60, 3) if rng.random() < 0.7 else rng.integers(150, 230, 3), np.float32)
    weight = int(rng.choice([-1, 0, 0, 1, 2]))  # strokes thinner than the face's, as drawn, bolder
    squeeze = round(float(rng.uniform(0.75, 1.25)), 2)  # digits narrower or wider than the face's
    strip = _digit_strip(face, glyph_h, cell_w, cell_h, weight, squeeze, legible)
    curve = float(rng.uniform(0.0, 0.15) if far else rng.uniform(0.0, 0.9))
    shade = float(rng.uniform(0.2, 0.8))
    win_h = int(cell_h * (rng.uniform(0.65, 1.15) if far else rng.uniform(0.8, 1.05)))
    margin_y = int(cell_h * rng.uniform(0.08, 0.4))
    margin_x = int(cell_h * rng.uniform(0.05, 0.4))
    # The point between integer and fraction drums is printed on the frame, in the frame's contrast
    # colour, and big enough (about a tenth of a cell) to survive the camera's downscale: a point the
    # camera erased would be a label the crop cannot show.
    dot_r = max(3, int(round(cell_w * rng.uniform(0.08, 0.12))))
    # Water meters often frame their red drums in a red box, and print the point as a comma. `marks` 0
    # draws nothing from rng (as `apart`).
    boxed = marks > 0 and red > 0 and rng.random() < marks
    comma = marks > 0 and point and rng.random() < 0.3
    # Many faceplates print the point lower, between the windows' bottom corners or on the frame below
    # them, and smaller, in the usual gap between drums. `points` 0 draws nothing from rng (as `apart`).
    low = points > 0 and point and rng.random() < points
    if low:
        dot_r = max(2, int(round(cell_w * rng.uniform(0.06, 0.1))))
        drop = float(rng.uniform(0.0, 1.0))  # from the digits' baseline (0) to the window's bottom edge (1)
    # Red drums with black digits, on reds from dull to bright: gray, the digits stand at least 40 levels
    # below the drum. `dark_red` 0 draws nothing from rng (as `apart`).
    red_bg, red_ink = (30.0, 30.0, 200.0), (240.0, 240.0, 240.0)
    if dark_red > 0 and red > 0 and not white_drums and rng.random() < dark_red:
        red_bg = (float(rng.uniform(20, 50)), float(rng.uniform(20, 50)), float(rng.uniform(150, 215)))
        red_ink = (float(rng.uniform(5, 20)),) * 3
    line = max(2, int(round(cell_h * rng.uniform(0.025, 0.045)))) if boxed else 0
    room = line + max(1, gap // 4) if boxed else 0  # the box's line and its clearance round the drums
    margin_x, margin_y = max(margin_x, room + line), max(margin_y, room + line)
    dot_gap = max(gap, 2 * dot_r + (2 if low else 4)) + room + line  # clear of the box (both 0 unboxed)
    width = 2 * margin_x + digits * cell_w + (digits - 1) * gap + (dot_gap if point else 0)
    img = np.empty((win_h + 2 * margin_y, width, 3), np.float32)
    img[:] = frame
    x = margin_x
    for k, p in enumerate(positions):
        window = _drum_window(strip, p, win_h, curve, shade)
        bg, ink = drum_bg, drum_ink
        if k >= digits - red:
            bg = np.array(red_bg if not white_drums else (235, 235, 240), np.float32)
            ink = np.array(red_ink if not white_drums else (20, 20, 200), np.float32)
            if k == digits - red and point:
                baseline = margin_y + int(win_h / 2 + glyph_h * 0.45)
                if low:  # never past the image's bottom edge: half a point is not a point
                    under = win_h / 2 - glyph_h * 0.45  # the baseline to the window's bottom edge
                    below = min(under + dot_r, margin_y + win_h / 2 - glyph_h * 0.45 - dot_r)
                    baseline += int(drop * max(0.0, below))
                cx = x + (dot_gap - room - line - gap) // 2 if boxed else x + dot_gap // 2 - gap // 2
                spot = (cx, baseline)
                if not low:
                    _print_point(img, spot, dot_r, comma, float(frame.mean()))
                x += dot_gap
            if k == digits - red and boxed:
                x0, y0 = x - room, margin_y - room
                x1, y1 = width - margin_x + room - 1, margin_y + win_h + room - 1  # the last drum's right
                cv2.rectangle(img, (x0 - line // 2, y0 - line // 2), (x1 + line // 2, y1 + line // 2),
                              (30.0, 30.0, 190.0), line)  # fmt: skip
        img[margin_y : margin_y + win_h, x : x + cell_w] = bg + (ink - bg) * window[..., None]
        # darker at the window's top and bottom, where the drum turns away from the light
        x += cell_w + gap
    img = _drum_light(img, margin_y, win_h, shade)
    if low:  # printed on the flat faceplate, after the drums' light: in contrast to the frame as lit there
        _print_point(img, spot, dot_r, comma, float(img[spot[1], spot[0]].mean()))
    return Crop(np.clip(img, 0, 255).astype(np.uint8), text, "drum", value=value, digits=digits)


def _print_point(img: np.ndarray, at: tuple[int, int], r: int, comma: bool, behind: float) -> None:
    """A printed point (a comma with `comma`) of radius `r` at `at`, light on a surface darker than
    mid-gray (`behind`), dark on a lighter one."""
    cx, y = at
    ink = 235.0 if behind < 128 else 15.0
    cv2.circle(img, (cx, y), r, (ink,) * 3, -1)
    if comma:  # a tail down and to the left, as long as the dot is wide
        cv2.line(img, (cx + r // 2, y), (cx - r // 2, y + 2 * r), (ink,) * 3, max(2, r))


HERSHEY_WEIGHTS = (1.5, 2.5, 4.0)  # a Hershey face's stroke, px for every 24 px of size (fonts.hershey_face)


def dejavu_upright() -> list[str]:
    """The DejaVu faces counters are printed in: every upright one but the maths face."""
    return [f for f in _faces("DejaVu*.ttf", str(DEJAVU_DIR))
            if not any(w in f for w in ("Math", "Oblique", "Italic"))]  # fmt: skip


def _drum_face(rng: np.random.Generator) -> str:
    """A DejaVu face a quarter of the time, a face of one of the font packages (`fonts.package_faces`,
    a package at a time) two in five, Pillow's own face (Aileron) or a stroked Hershey face the rest.

    Counters are printed in every face there is. Drawn in DejaVu only, the model read 200 counters at
    camera strength 0.7 at 1.00 in DejaVu, 0.845 in Pillow's face and 0.88-0.92 in Hershey faces (5-12%
    wrong above the last digit): it had learnt DejaVu's digits, not digits."""
    r = rng.random()
    if r < 0.25:
        return str(rng.choice(dejavu_upright()))
    if r < 0.65:
        return _package_face(rng)
    if r < 0.75:
        return PILLOW_DEFAULT
    return hershey_face(int(rng.choice(_HERSHEY)), float(rng.choice(HERSHEY_WEIGHTS)))


def _package_face(rng: np.random.Generator) -> str:
    families = package_faces()
    if not families:  # tests on a machine without the packages; `require_fonts` guards training
        return str(rng.choice(dejavu_upright()))
    family = families[int(rng.integers(len(families)))]
    return family[int(rng.integers(len(family)))]


_DIGITS_0_9 = "0123456789"


def _shape(glyph: np.ndarray) -> tuple[int, int, int]:
    """(pieces, counters, counter area) of a glyph's coverage mask: its ink's connected strokes
    (8-connected), the holes they enclose (4-connected) and those holes' pixels: what tells a 4 from a
    1 and an 8 from a 0 or a blot."""
    ink = np.pad((glyph > 0.5).astype(np.uint8), 1)
    pieces = cv2.connectedComponents(ink, connectivity=8)[0] - 1
    count, labels = cv2.connectedComponents(1 - ink, connectivity=4)
    # label 0 is the ink, the surround the one at the padded corner
    area = int(np.count_nonzero((labels > 0) & (labels != labels[0, 0])))
    return pieces, count - 2, area


@functools.lru_cache(maxsize=4096)
def _drawn(digit: str, face: str, size: int) -> np.ndarray:
    """A digit's coverage mask, kept (read-only, as it is shared): `_legible_digits` looks at each digit
    at two weights or more, and drawing it again each time made rendering, which bounds a training
    step, twice as slow."""
    g = _draw_text(digit, face, size)
    g.flags.writeable = False
    return g


def _glyph(digit: str, face: str, glyph_h: int, cell_w: int, weight: int, squeeze: float) -> np.ndarray:
    g = _drawn(digit, face, int(glyph_h * 1.25))
    kernel = np.ones((3, 3), np.uint8)
    if weight > 0:
        g = cv2.dilate(g, kernel, iterations=weight)
    elif weight < 0:
        thinner = cv2.erode(g, kernel)
        g = thinner if float(thinner.sum()) > 0.5 * float(g.sum()) else g  # a hairline face stays
    w = min(cell_w - 2, int(round(g.shape[1] * squeeze)))
    if w != g.shape[1]:
        g = cv2.resize(g, (max(1, w), g.shape[0]), interpolation=cv2.INTER_AREA)
    return g


def _legible_digits(face: str, glyph_h: int, cell_w: int, weight: int, squeeze: float) -> list[np.ndarray]:
    """The digits 0-9 `weight` px a side bolder (thinner), or as near that as keeps every digit's shape.

    Bolder strokes close small counters and thinner ones erase hairlines: Old Standard Bold thinned by a
    pixel draws its 4 without the diagonal (a 1 with a bar) and its 6 in two pieces; Open Sans ExtraBold
    two pixels bolder fills the counter of its 4 and one of its 8. A counter printed so is not one a
    person could read, and its label is a guess the model learns to make and a bench scores. Of 12,000
    fresh drums at camera strength 0-0.7 (seeds 5,100,000, 7,700,000 and 9,600,500 + the strength's
    index), read by the model trained before this rule, 54 were read wrong above the last digit past the
    confidence floor: 30 of them among the 2,818 (23%) whose weight this rule lightens (1.1% of those),
    12 among the other 4,360 drawn bolder or thinner and 12 among the 4,822 drawn as designed (0.25-0.3%
    each). So the weight steps toward the face's own until no digit has a stroke broken or a counter
    closed or shrunk below a quarter of its area (`_shape`, `_keeps`)."""
    plain = [_glyph(d, face, glyph_h, cell_w, 0, squeeze) for d in _DIGITS_0_9]
    designed = [_shape(p) for p in plain] if weight != 0 else []
    while weight != 0:
        glyphs = [_glyph(d, face, glyph_h, cell_w, weight, squeeze) for d in _DIGITS_0_9]
        if all(_keeps(s, _shape(g)) for g, s in zip(glyphs, designed, strict=True)):
            return glyphs
        weight -= 1 if weight > 0 else -1
    return plain


def _keeps(designed: tuple[int, int, int], drawn: tuple[int, int, int]) -> bool:
    """No stroke broken, no counter closed or shrunk below a quarter of its area (at a camera's size,
    about a pixel across); a bolder 4 whose open top closes still reads 4."""
    return drawn[0] <= designed[0] and drawn[1] >= designed[1] and 4 * drawn[2] >= designed[2]


@functools.lru_cache(maxsize=64)
def _digit_strip(
    face: str,
    glyph_h: int,
    cell_w: int,
    cell_h: int,
    weight: int = 0,
    squeeze: float = 1.0,
    legible: bool = True,
) -> np.ndarray:
    """Digits 0..9 and 0 again, each centred in a cell_w x cell_h cell, stacked vertically; strokes
    `weight` px a side bolder (or thinner) where every digit keeps its shape (`_legible_digits`; with
    `legible` False, as asked: what models trained before that rule saw, the recipe's
    `legible_weights`), digits `squeeze` times the face's width, and never wider than the cell: a
    counter's maker fits the digits to the drum."""
    strip = np.zeros((11 * cell_h, cell_w), np.float32)
    digits = (
        _legible_digits(face, glyph_h, cell_w, weight, squeeze)
        if legible
        else [_glyph(d, face, glyph_h, cell_w, weight, squeeze) for d in _DIGITS_0_9]
    )
    for i, g in enumerate(digits + digits[:1]):
        g = g[max(0, (g.shape[0] - cell_h) // 2) :][:cell_h]
        y = i * cell_h + (cell_h - g.shape[0]) // 2
        x = (cell_w - g.shape[1]) // 2
        strip[y : y + g.shape[0], x : x + g.shape[1]] = np.maximum(
            strip[y : y + g.shape[0], x : x + g.shape[1]], g
        )
    return strip


def _drum_window(strip: np.ndarray, pos: float, win_h: int, curve: float, shade: float) -> np.ndarray:
    """What a window of win_h rows shows of a drum turned to `pos` (digit pos at the centre line):
    rows far from the centre are foreshortened (the drum's surface turns away) by `curve`."""
    cell_h = strip.shape[0] // 11
    centre = (pos + 0.5) * cell_h
    ys = (np.arange(win_h, dtype=np.float32) + 0.5 - win_h / 2) / (win_h / 2)  # -1..1
    # A cylinder seen side on: the row at angle a shows arc length R*a where its height is R*sin(a).
    span = 0.5 * win_h / cell_h * (1 + 0.6 * curve)
    angle = np.arcsin(np.clip(ys * math.sin(min(1.4, 0.6 + curve)), -1, 1)) / math.sin(min(1.4, 0.6 + curve))
    src_y = centre + angle * span * cell_h
    src_y = np.mod(src_y, 10 * cell_h).astype(np.float32)
    map_y = np.repeat(src_y[:, None], strip.shape[1], axis=1)
    map_x = np.repeat(np.arange(strip.shape[1], dtype=np.float32)[None, :], win_h, axis=0)
    return cv2.remap(strip, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _drum_light(img: np.ndarray, y0: int, h: int, shade: float) -> np.ndarray:
    ys = (np.arange(img.shape[0], dtype=np.float32) - (y0 + h / 2)) / (h / 2)
    light = 1.0 - shade * np.clip(np.abs(ys), 0, 1.3) ** 2
    return img * np.clip(light, 0.15, 1)[:, None, None]


# --- the camera -------------------------------------------------------------------------------------


def _region_box(img: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    """The region box as a user draws it and alignment moves it: each edge a little in or out.

    Up to 5% of the height into the crop above and below and 3% at the sides (no further, so no glyph
    is cut and the label stays true), or up to 10% out, where the box takes more of the meter's face
    (the edge rows repeated). Without it, every training crop had the renderer's own margins, and a
    tighter or looser box read differently: on held-back drums, trimming 8% off top and bottom turned
    0.943 right into 0.957, and a vote over five framings of each crop gained 1-3 points on every kind."""
    if s <= 0 or rng.random() >= 0.7:
        return img
    h = img.shape[0]
    top, bottom, left, right = (
        int(round(h * float(rng.uniform(-0.10, cut)) * s)) for cut in (0.05, 0.05, 0.03, 0.03)
    )
    if min(top, bottom, left, right) < 0:
        img = cv2.copyMakeBorder(img, max(0, -top), max(0, -bottom), max(0, -left), max(0, -right),
                                 cv2.BORDER_REPLICATE)  # fmt: skip
    hh, ww = img.shape[:2]
    return img[max(0, top) : hh - max(0, bottom), max(0, left) : ww - max(0, right)]


def camera(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """What a camera and a region box make of a clean crop: size, turn, perspective, blur, glare, low
    light, noise, JPEG. `strength` 0 leaves only the scaling."""
    h, w = img.shape[:2]
    s = strength
    # seen from the side, or a face wider or narrower than ours: the width scales by 0.75-1.3
    sx = 1.0 + (float(rng.uniform(0.75, 1.3)) - 1.0) * s
    if abs(sx - 1.0) > 0.01:
        img = cv2.resize(
            img, (max(4, int(w * sx)), h), interpolation=cv2.INTER_AREA if sx < 1 else cv2.INTER_LINEAR
        )
        w = img.shape[1]
    # perspective and a slight turn: the corners move by up to ~7% of the height
    jit = h * 0.07 * s
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    dst = src + rng.uniform(-jit, jit, (4, 2)).astype(np.float32)
    ang = math.radians(float(rng.uniform(-3, 3)) * s)
    c, sn = math.cos(ang), math.sin(ang)
    dst = (dst - [w / 2, h / 2]) @ np.array([[c, sn], [-sn, c]], np.float32) + [w / 2, h / 2]
    dst -= dst.min(axis=0)
    out_w, out_h = int(dst[:, 0].max()) + 1, int(dst[:, 1].max()) + 1
    border = tuple(float(v) for v in np.median(np.concatenate([img[0], img[-1]]), axis=0))
    m = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    img = cv2.warpPerspective(img.astype(np.float32), m, (out_w, out_h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=border)  # fmt: skip
    img = _region_box(img, rng, s)
    out_h, out_w = img.shape[:2]
    # the size a camera gives it: text 14..60 px high
    target_h = float(rng.uniform(16, 64)) * out_h / FONT_PX * (0.8 + 0.4 * rng.random())
    scale = max(0.15, min(1.5, target_h / out_h))
    small: np.ndarray = cv2.resize(
        img, (max(8, int(out_w * scale)), max(6, int(out_h * scale))), interpolation=cv2.INTER_AREA
    )
    if rng.random() < 0.6 * s:
        if rng.random() < 0.7:
            sigma = float(rng.uniform(0.3, 1.6)) * s
            small = cv2.GaussianBlur(small, (0, 0), sigma)
        else:
            k = int(rng.integers(3, 7))
            kernel: np.ndarray = np.zeros((k, k), np.float32)
            kernel[k // 2, :] = 1.0 / k
            rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
            kernel = cv2.warpAffine(kernel, rot, (k, k))
            small = cv2.filter2D(small, -1, kernel / max(kernel.sum(), 1e-6))
    if rng.random() < 0.35 * s:  # glare: a bright soft blob, sometimes saturating
        gh, gw = small.shape[:2]
        cy, cx = rng.uniform(0, gh), rng.uniform(0, gw)
        ry, rx = rng.uniform(0.2, 0.8) * gh, rng.uniform(0.1, 0.5) * gw
        yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float32)
        blob = np.exp(-(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2))
        small = small + blob[..., None] * float(rng.uniform(40, 200)) * s
    if rng.random() < 0.3 * s:  # low light: less signal, then the camera's gain brings noise
        small = small * float(rng.uniform(0.25, 0.7)) + float(rng.uniform(0, 20))
    if rng.random() < 0.3 * s:  # uneven light across the window
        gh, gw = small.shape[:2]
        grad = np.linspace(float(rng.uniform(0.6, 1.0)), float(rng.uniform(0.6, 1.0)), gw, dtype=np.float32)
        small = small * grad[None, :, None]
    noise = float(rng.uniform(0, 10)) * s
    if noise > 0.5:
        small = small + rng.normal(0, noise, small.shape).astype(np.float32)
    small = np.clip(small, 0, 255).astype(np.uint8)
    if rng.random() < 0.5 * s:
        q = int(rng.integers(25, 95))
        ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            small = decoded if decoded is not None else small
    return small


# --- entry points -----------------------------------------------------------------------------------


# The 7-segment designs, each a drawer of one crop with a share of displays in their decoder's own forms
# (`_digit_forms`; a DSEG face draws its own): `clean` mixes them, `seg7_set` draws one alone.
_SEG7_DRAW: dict[str, Callable[[np.random.Generator, float], Crop]] = {
    "dseg": lambda rng, forms: _dseg(rng, "DSEG7"), "polygon": _polygon_seg7, "stroked": _stroked_seg7,
}


@dataclass(frozen=True)
class Looks:
    """Shares of crops drawn in looks the recipe's first two phases never drew; each share at 0 draws
    nothing from rng, so every set rendered before it existed is the same, byte for byte.

    Displays and counters drawn by another renderer, written apart from this one, showed each look:
    - `tight`: crops cut tight round what they show (`_tight_box`), as users draw region boxes, the
      rest with a surround;
    - `spaced`: DSEG displays with their cells further apart (`_spaced_cells`), as LCD glass is made;
    - `apart`: counters whose digits sit far apart on flat drums (`_drum`), so a turning drum shows
      two fragments across a gap;
    - `marks`: counters with their red drums framed in a red box, and a point sometimes printed as a
      comma (`_drum`), as on water meters;
    - `points`: counters whose printed point sits lower, down to the windows' bottom edge, and is
      smaller (`_drum`), as many faceplates print it;
    - `dark_red`: counters whose red drums print black digits on a duller or brighter red (`_drum`);
    - `forms`: 7-segment displays (our polygons and strokes) whose decoder draws 6 and 9 without tails
      or 7 with a hook (`_digit_forms`), as many LED and LCD drivers do."""

    tight: float = 0.0
    spaced: float = 0.0
    apart: float = 0.0
    marks: float = 0.0
    forms: float = 0.0
    points: float = 0.0
    dark_red: float = 0.0


PLAIN = Looks()


def clean(
    rng: np.random.Generator,
    kind: str | None = None,
    motion: str = "even",
    faces: Sequence[str] | None = None,
    legible: bool = True,
    looks: Looks = PLAIN,
) -> Crop:
    """One crop without camera effects, of `kind` (or one drawn by WEIGHTS); drums turn by `motion` and
    are printed in one of `faces` (default: `_drum_face`'s mix; the faces bench and tests pick others),
    bolder or thinner only where their digits keep their shape (`legible`, `_legible_digits`); `looks`
    says how many are drawn in which of the later looks (`Looks`)."""
    if kind is None:
        kind = str(rng.choice(list(WEIGHTS), p=np.array(list(WEIGHTS.values())) / sum(WEIGHTS.values())))
    if kind == "seg7":
        design = rng.random()  # our bevelled polygons, plain strokes, or a DSEG face
        name = "polygon" if design < 0.25 else "stroked" if design < 0.45 else "dseg"
        c = _dseg(rng, "DSEG7", looks.spaced) if name == "dseg" else _SEG7_DRAW[name](rng, looks.forms)
    elif kind == "seg14":
        c = _dseg(rng, "DSEG14", looks.spaced)
    elif kind == "dotmatrix":
        c = _dotmatrix(rng)
    elif kind == "printed":
        c = _printed(rng)
    elif kind == "drum":
        c = _drum(rng, motion, faces, legible, looks.apart, looks.marks, looks.points, looks.dark_red)
    else:
        raise ValueError(f"unknown kind {kind!r}; one of {KINDS}")
    tight = looks.tight > 0 and rng.random() < looks.tight
    boxed = _tight_box(c.image, rng) if tight else _surround(c.image, rng)
    return Crop(boxed, c.text, c.kind, c.value, c.digits)


def render(
    rng: np.random.Generator,
    kind: str | None = None,
    strength: float = 1.0,
    motion: str = "even",
    faces: Sequence[str] | None = None,
    legible: bool = True,
    looks: Looks = PLAIN,
) -> Crop:
    """One labelled crop as a camera region would cut it (`legible`: see `_legible_digits`; `looks`:
    see `Looks`)."""
    c = clean(rng, kind, motion, faces, legible, looks)
    return Crop(camera(c.image, rng, strength), c.text, c.kind, c.value, c.digits)


def render_set(
    seed: int,
    n: int,
    kind: str | None = None,
    strength: float = 1.0,
    faces: Sequence[str] | None = None,
    looks: Looks = PLAIN,
    motion: str = "even",
) -> list[Crop]:
    """`n` crops from one seed: the same seed gives the same crops (tests/test_meter_render.py)."""
    rng = np.random.default_rng(seed)
    return [render(rng, kind, strength, motion, faces, looks=looks) for _ in range(n)]


SEG7_DESIGNS = tuple(_SEG7_DRAW)


def seg7_set(seed: int, n: int, design: str, strength: float = 1.0) -> list[Crop]:
    """`n` 7-segment crops of one design (`SEG7_DESIGNS`), as `render_set` draws them otherwise: for
    benches that read each design on its own."""
    draw = _SEG7_DRAW[design]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        c = draw(rng, 0.0)
        out.append(Crop(camera(_surround(c.image, rng), rng, strength), c.text, c.kind))
    return out
