"""The C heap's policy for a process that reads images of every size (glibc; elsewhere a no-op).

glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), so after the first
big page or long text line, tensors of several MiB come from the brk heap instead of mmap. Freed,
they leave holes that later tensors of other sizes do not fit, and the heap grows: one process
reading the 30 eval receipts peaked at 222 MB, and a bare recognizer session went from 105 to 244 MB
over two 2048-px lines. A fixed threshold (2 MiB) keeps feature maps, the detector's probability map
and the recognizer's 18,710-class outputs out of the heap; `malloc_trim` after loading and after
each page hands back what the heap freed (the parsed model protos, the last page's buffers).

Measured on the 12 first eval receipts, 1 thread (AMD EPYC, AVX2): peak RSS 222 -> 185 MB; pages
read with the threshold and without it alternately in one process took a median 3% longer each.
A smaller threshold costs more (1 MiB: page faults on every mid-sized tensor) for little gain.

Two heap arenas at most, not glibc's 8 per core: every thread that mallocs (camera reader, analysis,
publisher, HTTP, folder workers) otherwise gets an arena of its own whose freed pages stay resident.
A daemon reading one meter from a camera (no folder, no HTTP) peaked at 124 MB with the default and
119 MB with two arenas (one arena: 119 MB too), on a 2-core Xeon.

`edge-ocr train` runs without it: torch allocates tensors of tens of MiB every training step, and
mapping each afresh made a step of the meter recipe half as long again (0.235 -> 0.357 s).
"""

from __future__ import annotations

import ctypes
import os

MMAP_THRESHOLD = 2 * 1024 * 1024
ARENA_MAX = 2
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
_M_ARENA_MAX = -8
_USER_KNOBS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_",
               "MALLOC_ARENA_MAX")  # fmt: skip


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018 - glibc only; musl has no mallopt
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def configure() -> str:
    """Set the process's heap policy once, at start; returns what was done (for the debug log).

    A MALLOC_*_ variable in the environment (e.g. set in the systemd unit) is the operator's choice
    and is left as it is.
    """
    if _LIBC is None:
        return "not glibc: allocator left as it is"
    if any(k in os.environ for k in _USER_KNOBS):
        return "MALLOC_* set in the environment: allocator left as it is"
    if _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1:
        return "mallopt refused the mmap threshold: allocator left as it is"
    arenas = _LIBC.mallopt(_M_ARENA_MAX, ARENA_MAX) == 1
    return (f"blocks of {MMAP_THRESHOLD // 1024} KiB and more are mapped, not taken from the heap"
            + (f"; at most {ARENA_MAX} heap arenas" if arenas else ""))  # fmt: skip


def release() -> None:
    """Return the heap's free pages to the system (cheap: it walks free chunks only)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
