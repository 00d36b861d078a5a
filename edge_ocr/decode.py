"""Bytes -> a BGR uint8 image, safely.

Owns everything between a file's bytes and a decoded image: format sniffing, the decompression-bomb
guard (pixel count read from the header *before* any pixel is decoded), truncation checks, EXIF
orientation, and normalising grey / alpha / 16-bit input to 3-channel 8-bit BGR.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

# OpenCV has its own (1 Gpx) ceiling; ours is checked first from the header, this is a second fence
# for formats whose header we cannot read ahead. Must be set before cv2 is imported anywhere.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 28))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from edge_ocr.errors import ImageTooLargeError, InputError  # noqa: E402

DEFAULT_MAX_PIXELS = 40_000_000  # a 40 Mpx phone photo decodes to ~120 MB of BGR; more is suspect


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int


def sniff(data: bytes) -> str:
    """Name the container format from its magic bytes, or raise InputError."""
    if not data:
        raise InputError("empty file (0 bytes)")
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    raise InputError("not a supported image (expected JPEG, PNG, BMP, TIFF or WebP)")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (seglen,) = struct.unpack(">H", data[i + 2 : i + 4])
        # SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > n:
                break
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        i += 2 + seglen
    raise InputError("truncated or corrupt JPEG: no frame header")


def _tiff_size(data: bytes) -> tuple[int, int]:
    end = "<" if data[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack(end + "I", data[4:8])
        (count,) = struct.unpack(end + "H", data[ifd : ifd + 2])
        dims: dict[int, int] = {}
        for k in range(count):
            off = ifd + 2 + 12 * k
            tag, typ = struct.unpack(end + "HH", data[off : off + 4])
            if tag in (256, 257):
                fmt = "H" if typ == 3 else "I"
                (val,) = struct.unpack(end + fmt, data[off + 8 : off + 8 + struct.calcsize(fmt)])
                dims[tag] = val
        return dims[256], dims[257]
    except (struct.error, KeyError) as exc:
        raise InputError("truncated or corrupt TIFF: no image size in the first directory") from exc


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    try:
        if chunk == b"VP8X":
            w = int.from_bytes(data[24:27], "little") + 1
            h = int.from_bytes(data[27:30], "little") + 1
            return w, h
        if chunk == b"VP8L":
            b = int.from_bytes(data[21:25], "little")
            return (b & 0x3FFF) + 1, ((b >> 14) & 0x3FFF) + 1
        if chunk == b"VP8 ":
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
    except struct.error:
        pass
    raise InputError("truncated or corrupt WebP header")


def probe(data: bytes) -> ImageInfo:
    """Read format and pixel size from the header without decoding pixels."""
    fmt = sniff(data)
    try:
        if fmt == "jpeg":
            w, h = _jpeg_size(data)
        elif fmt == "png":
            if data[12:16] != b"IHDR":
                raise InputError("corrupt PNG: IHDR chunk missing")
            w, h = struct.unpack(">II", data[16:24])
        elif fmt == "bmp":
            w, h = struct.unpack("<ii", data[18:26])
            w, h = abs(w), abs(h)
        elif fmt == "tiff":
            w, h = _tiff_size(data)
        else:
            w, h = _webp_size(data)
    except struct.error as exc:
        raise InputError(f"truncated {fmt.upper()} header") from exc
    if w <= 0 or h <= 0:
        raise InputError(f"corrupt {fmt.upper()}: image size {w}x{h}")
    return ImageInfo(fmt, int(w), int(h))


def _exif_orientation(data: bytes) -> int:
    """EXIF orientation (1..8) of a JPEG, 1 when absent. Only the APP1 segment is parsed."""
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        (seglen,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker == 0xE1 and data[i + 4 : i + 10] == b"Exif\x00\x00":
            tiff = data[i + 10 : i + 2 + seglen]
            end = "<" if tiff[:2] == b"II" else ">"
            try:
                (ifd,) = struct.unpack(end + "I", tiff[4:8])
                (count,) = struct.unpack(end + "H", tiff[ifd : ifd + 2])
                for k in range(count):
                    off = ifd + 2 + 12 * k
                    tag, _typ, _cnt, val = struct.unpack(end + "HHIH", tiff[off : off + 10])
                    if tag == 0x0112:
                        return val if 1 <= val <= 8 else 1
            except struct.error:
                return 1
            return 1
        if marker == 0xDA:  # start of scan: no more metadata
            break
        i += 2 + seglen
    return 1


def _apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    if orientation == 1:
        return img
    ops = {
        2: lambda m: cv2.flip(m, 1),
        3: lambda m: cv2.rotate(m, cv2.ROTATE_180),
        4: lambda m: cv2.flip(m, 0),
        5: lambda m: cv2.flip(cv2.rotate(m, cv2.ROTATE_90_CLOCKWISE), 1),
        6: lambda m: cv2.rotate(m, cv2.ROTATE_90_CLOCKWISE),
        7: lambda m: cv2.flip(cv2.rotate(m, cv2.ROTATE_90_COUNTERCLOCKWISE), 1),
        8: lambda m: cv2.rotate(m, cv2.ROTATE_90_COUNTERCLOCKWISE),
    }
    return ops[orientation](img)


def to_bgr8(img: np.ndarray) -> np.ndarray:
    """Normalise grey, alpha and 16-bit/float arrays to contiguous 3-channel uint8 BGR."""
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        # cv2's stubs want a dst array; None (allocate one) is what OpenCV documents and accepts.
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)  # type: ignore[call-overload]
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        # Composite over white: transparent regions of scans/screenshots are "paper", and leaving the
        # hidden colour (often black) would put black text on black.
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        bgr = img[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return bgr.astype(np.uint8)
    if img.shape[2] == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(img[:, :, :3])


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode image bytes to BGR uint8, refusing bombs, truncation and corruption with InputError."""
    info = probe(data)
    if info.width * info.height > max_pixels:
        raise ImageTooLargeError(
            f"image is {info.width}x{info.height} = {info.width * info.height:,} pixels, "
            f"over the limit of {max_pixels:,}"
        )
    if info.format == "jpeg" and b"\xff\xd9" not in data[-4096:]:
        # libjpeg decodes a truncated file "successfully", grey below the cut; refuse it instead.
        raise InputError("truncated JPEG: end-of-image marker missing")
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise InputError(f"corrupt or truncated {info.format.upper()}: the decoder could not read it")
    if img.ndim == 3 and img.shape[2] not in (1, 3, 4):
        raise InputError(f"unsupported channel count {img.shape[2]}")
    img = to_bgr8(img)
    if info.format == "jpeg":
        img = _apply_orientation(img, _exif_orientation(data))
    return img


def read_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read and decode a file; unreadable files raise InputError naming the OS reason."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except IsADirectoryError as exc:
        raise InputError(f"{path} is a directory, not an image") from exc
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return decode(data, max_pixels=max_pixels)
