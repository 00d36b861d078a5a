"""TrueType faces for the meter renderer (Pillow, the [train] extra): where the DSEG and DejaVu faces
are, and a glyph run drawn as a coverage mask. Shared by `edge_ocr.train.render` and the camera bench's
DSEG7 LCD (`edge_ocr.bench.meter`), so neither imports the other back."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

DSEG_DIR = Path("/usr/share/fonts/truetype/dseg")
DEJAVU_DIR = Path("/usr/share/fonts/truetype/dejavu")

__all__ = ["DEJAVU_DIR", "DSEG_DIR", "_draw_text", "_faces", "require_fonts"]


def require_fonts() -> None:
    from edge_ocr.errors import ConfigError

    if not list(DSEG_DIR.glob("DSEG7*.ttf")):
        raise ConfigError(
            f"the meter renderer needs the DSEG fonts in {DSEG_DIR}",
            remedy="apt-get install fonts-dseg (Debian/Ubuntu/Raspberry Pi OS)",
        )


@functools.cache
def _faces(pattern: str, folder: str) -> tuple[str, ...]:
    return tuple(sorted(str(p) for p in Path(folder).glob(pattern)))


@functools.lru_cache(maxsize=256)
def _font(path: str, size: int):  # type: ignore[no-untyped-def]
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


def _draw_text(text: str, font_path: str, size: int) -> np.ndarray:
    """A float32 coverage mask (0..1) of `text` in a TrueType face, tightly cropped in x, padded in y."""
    from PIL import Image, ImageDraw

    font = _font(font_path, size)
    left, top, right, bottom = font.getbbox(text)
    w, h = max(1, right - left), max(1, bottom - top)
    img = Image.new("L", (w + 4, h + 4), 0)
    ImageDraw.Draw(img).text((2 - left, 2 - top), text, font=font, fill=255)
    return np.asarray(img, dtype=np.float32) / 255.0
