"""Faces for the meter renderer (Pillow, the [train] extra): where the DSEG and DejaVu faces are, and a
glyph run drawn as a coverage mask. Shared by `edge_ocr.train.render` and the camera bench's DSEG7 LCD
(`edge_ocr.bench.meter`), so neither imports the other back.

A face is a TrueType file's path, `PILLOW_DEFAULT` (the face Pillow bundles, Aileron) or a stroked
OpenCV face (`hershey_face`): the last two are what a quick image generator reaches for, so counters
drawn in them are counters the model must read (`render._drum`)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

DSEG_DIR = Path("/usr/share/fonts/truetype/dseg")
DEJAVU_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONTS_DIR = Path("/usr/share/fonts")

# Counters and labels are printed in every face there is, and a model drilled on a few faces learns those
# faces, not digits: trained on DejaVu, Pillow's face and Hershey faces only, it read counters in the
# faces of fonts-liberation, -freefont and -urw-base35 at 0.897 (7.5% wrong above the last digit) where it
# read its own at 0.96, and misread the ball-terminal 3 of Century Schoolbook as 8. So training also
# draws them in these Debian packages' faces, a family (package) at a time so that a package of sixteen
# weights counts as one design. Only upright faces with lining figures (`lining`): a counter's digits
# are all one height. Liberation, FreeFont and URW base35 stay out: they are the unseen check
# (`edge_ocr.bench.meter_faces`). Each entry is a glob under /usr/share/fonts, narrow enough that another
# package sharing the folder (fonts-noto-core beside fonts-noto-mono) does not change what is drawn.
FACE_PACKAGES: dict[str, str] = {
    "fonts-agave": "truetype/agave/agave-*.ttf",
    "fonts-anonymous-pro": "truetype/anonymous-pro/Anonymous Pro*.ttf",
    "fonts-adf-accanthis": "truetype/adf/AccanthisADFStdNo3-*.otf",  # No3: the one with lining figures
    "fonts-b612": "opentype/b612/B612*.otf",
    "fonts-cabin": "opentype/cabin/Cabin-*.otf",
    "fonts-cantarell": "opentype/cantarell/Cantarell-*.otf",
    "fonts-comfortaa": "truetype/comfortaa/Comfortaa-*.ttf",
    "fonts-courier-prime": "opentype/courier-prime/Courier Prime*.otf",
    "fonts-crosextra-caladea": "truetype/crosextra/Caladea-*.ttf",
    "fonts-crosextra-carlito": "truetype/crosextra/Carlito-*.ttf",
    "fonts-dosis": "opentype/dosis/Dosis-*.otf",
    "fonts-gfs-didot": "opentype/didot/GFSDidot*.otf",
    "fonts-go": "fonts-go/Go-*.ttf",
    "fonts-inconsolata": "truetype/inconsolata/Inconsolata.otf",
    "fonts-jetbrains-mono": "truetype/jetbrains-mono/JetBrainsMono-*.ttf",
    "fonts-league-spartan": "opentype/league-spartan/LeagueSpartan-*.otf",
    "fonts-mononoki": "truetype/mononoki/mononoki-*.ttf",
    "fonts-noto-mono": "truetype/noto/Noto*Mono-*.ttf",
    "fonts-oldstandard": "truetype/fonts-oldstandard/OldStandard-*.ttf",
    "fonts-open-sans": "truetype/open-sans/OpenSans-*.ttf",
    "fonts-oxygen": "truetype/oxygen/Oxygen*.ttf",
    "fonts-paratype": "truetype/paratype/PT*.ttf",
    "fonts-quicksand": "truetype/quicksand/Quicksand-*.ttf",
    "fonts-sil-gentium": "truetype/gentium/Gentium*.ttf",
    "fonts-tuffy": "truetype/tuffy/*.ttf",
}

PILLOW_DEFAULT = "pillow:default"

__all__ = [
    "DEJAVU_DIR", "DSEG_DIR", "FACE_PACKAGES", "PILLOW_DEFAULT", "_draw_text", "_faces", "hershey_face",
    "missing_face_packages", "package_faces", "require_fonts",
]  # fmt: skip


def hershey_face(font: int, weight: float) -> str:
    """An OpenCV Hershey face (`cv2.FONT_HERSHEY_*`) stroked `weight` px for every 24 px of size."""
    return f"hershey:{font}:{weight}"


def require_fonts() -> None:
    from edge_ocr.errors import ConfigError

    if not list(DSEG_DIR.glob("DSEG7*.ttf")):
        raise ConfigError(
            f"the meter renderer needs the DSEG fonts in {DSEG_DIR}",
            remedy="apt-get install fonts-dseg (Debian/Ubuntu/Raspberry Pi OS)",
        )
    missing = missing_face_packages()
    if missing:  # without them the recipe would draw other crops than the committed model was trained on
        raise ConfigError(
            f"the meter renderer draws counters in the faces of {len(FACE_PACKAGES)} font packages; "
            f"{len(missing)} are not installed: {' '.join(missing)}",
            remedy=f"apt-get install --no-install-recommends {' '.join(missing)}",
        )


def missing_face_packages() -> list[str]:
    return [pkg for pkg, pattern in FACE_PACKAGES.items() if not any(FONTS_DIR.glob(pattern))]


def lining(face: str) -> bool:
    """Upright, with all ten digits drawn and within 12% of one height (old-style figures, whose 3, 4, 5,
    7 and 9 hang below the line, are 20% and more apart)."""
    font = _font(face, 64)
    if any(w in name for name in (font.getname()[1], Path(face).name) for w in ("Italic", "Oblique")):
        return False
    heights = []
    for d in "0123456789":
        left, top, right, bottom = font.getbbox(d)
        if right - left < 2:
            return False
        heights.append(bottom - top)
    return max(heights) <= 1.12 * min(heights)


@functools.cache
def package_faces() -> tuple[tuple[str, ...], ...]:
    """The installed faces of `FACE_PACKAGES` that `lining` keeps, one tuple per package (in the
    packages' order, faces sorted); packages with none are left out."""
    families = []
    for pattern in FACE_PACKAGES.values():
        faces = tuple(f for f in sorted(str(p) for p in FONTS_DIR.glob(pattern)) if lining(f))
        if faces:
            families.append(faces)
    return tuple(families)


@functools.cache
def _faces(pattern: str, folder: str) -> tuple[str, ...]:
    return tuple(sorted(str(p) for p in Path(folder).glob(pattern)))


@functools.lru_cache(maxsize=256)
def _font(face: str, size: int):  # type: ignore[no-untyped-def]
    from PIL import ImageFont

    if face == PILLOW_DEFAULT:
        return ImageFont.load_default(size)  # FreeType's Aileron (Pillow >= 10.1)
    return ImageFont.truetype(face, size)


@functools.cache
def _hershey_digit_h(font: int) -> float:
    """A Hershey face's digit height in px at scale 1, as drawn: `getTextSize` counts a margin the ink
    does not fill (a quarter more)."""
    import cv2

    canvas = np.zeros((200, 200), np.uint8)
    cv2.putText(canvas, "0", (20, 150), font, 4.0, 255, 1, cv2.LINE_8)
    rows = np.flatnonzero(canvas.max(axis=1))
    return float(rows[-1] - rows[0] + 1) / 4.0


def _draw_hershey(text: str, face: str, size: int) -> np.ndarray:
    import cv2

    _, font, weight = face.split(":")
    scale = 0.73 * size / _hershey_digit_h(int(font))  # 0.73 em: a TrueType digit's height
    thick = max(1, int(round(float(weight) * size / 24)))
    (w, h), base = cv2.getTextSize(text, int(font), scale, thick)
    canvas = np.zeros((h + base + 2 * thick + 4, w + 2 * thick + 4), np.uint8)
    cv2.putText(canvas, text, (thick + 2, h + thick + 2), int(font), scale, 255, thick, cv2.LINE_AA)
    rows, cols = np.flatnonzero(canvas.max(axis=1)), np.flatnonzero(canvas.max(axis=0))
    if rows.size:  # cut to the ink with 2 px round it, as a TrueType run's bounding box cuts it
        canvas = canvas[max(0, rows[0] - 2) : rows[-1] + 3, max(0, cols[0] - 2) : cols[-1] + 3]
    return canvas.astype(np.float32) / 255.0


def _draw_text(text: str, face: str, size: int) -> np.ndarray:
    """A float32 coverage mask (0..1) of `text` in `face` at `size` px (a TrueType em; a Hershey face
    drawn with its digits as tall as a TrueType face's at that size), tightly cropped in x, padded in y."""
    from PIL import Image, ImageDraw

    if face.startswith("hershey:"):
        return _draw_hershey(text, face, size)
    font = _font(face, size)
    left, top, right, bottom = font.getbbox(text)
    w, h = max(1, right - left), max(1, bottom - top)
    img = Image.new("L", (w + 4, h + 4), 0)
    ImageDraw.Draw(img).text((2 - left, 2 - top), text, font=font, fill=255)
    return np.asarray(img, dtype=np.float32) / 255.0
