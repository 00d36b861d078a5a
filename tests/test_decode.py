"""Bad input gets a clear, typed error; odd-but-valid input decodes to BGR uint8."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from edge_ocr.decode import decode, probe, read_image
from edge_ocr.errors import ImageTooLargeError, InputError


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _jpeg(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header announces width x height pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"hello, I am a text file\n", "not a supported image"),
        (b"%PDF-1.7\n", "not a supported image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt PNG"),
    ],
)
def test_bad_bytes_are_refused_with_a_reason(data, message):
    with pytest.raises(InputError, match=message):
        decode(data)


def test_truncated_jpeg_is_refused(eval_data):
    data = (eval_data / "pages" / "sroie_116.jpg").read_bytes()
    with pytest.raises(InputError, match="truncated JPEG"):
        decode(data[: len(data) // 2])


def test_truncated_png_is_refused():
    data = _png(np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8))
    with pytest.raises(InputError, match="corrupt or truncated PNG"):
        decode(data[: len(data) // 2])


def test_decompression_bomb_is_refused_before_decoding():
    data = _bomb_png(100_000, 100_000)
    assert probe(data).width == 100_000
    with pytest.raises(ImageTooLargeError, match="10,000,000,000 pixels"):
        decode(data)


def test_max_pixels_is_configurable():
    img = np.full((100, 100, 3), 255, np.uint8)
    with pytest.raises(ImageTooLargeError):
        decode(_png(img), max_pixels=9_999)
    assert decode(_png(img), max_pixels=10_000).shape == (100, 100, 3)


def test_unreadable_and_directory_paths(tmp_path):
    with pytest.raises(InputError, match="No such file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(InputError, match="is a directory"):
        read_image(tmp_path)


def test_grey_alpha_and_16bit_become_bgr8():
    grey = np.full((20, 30), 77, np.uint8)
    assert decode(_png(grey)).shape == (20, 30, 3)
    rgba = np.zeros((20, 30, 4), np.uint8)  # fully transparent black -> white paper
    out = decode(_png(rgba))
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8 and out.min() == 255
    deep = np.full((20, 30, 3), 40000, np.uint16)
    out = decode(_png(deep))
    assert out.dtype == np.uint8 and int(out[0, 0, 0]) == 40000 >> 8


@pytest.mark.parametrize("ext", [".bmp", ".tiff", ".webp"])
def test_other_formats_decode(ext):
    img = np.zeros((21, 34, 3), np.uint8)
    ok, buf = cv2.imencode(ext, img)
    assert ok
    assert decode(buf.tobytes()).shape == (21, 34, 3)


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + b"\x00\x00\x00\x00"
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + app1 + jpeg[2:]


def test_exif_orientation_is_applied():
    img = np.zeros((40, 100, 3), np.uint8)  # landscape
    rotated = decode(_with_exif_orientation(_jpeg(img), 6))
    assert rotated.shape == (100, 40, 3)
