"""glibc's heap, pinned so that freed tensor memory goes back to the system during long videos.

glibc serves blocks above `M_MMAP_THRESHOLD` (128 KiB) with `mmap` and returns them to the system on
`free`, but by default it raises that threshold to the size of every mmapped block freed (up to 32 MiB).
After the first few megabyte-sized tensors are freed, later ones come from the heap instead, where a
long-lived small allocation above them keeps the freed pages resident: a 2000-frame offline refinement left
53-77 MB resident after it finished (14 MB with the threshold pinned), and online segmentation grew by ~40 MB
over 3000 frames. Setting the threshold explicitly turns that adjustment off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3  # mallopt parameter number, glibc <malloc.h>
DEFAULT_THRESHOLD = 128 * 1024


def pin_mmap_threshold(threshold: int = DEFAULT_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at `threshold` bytes for this process; False where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
