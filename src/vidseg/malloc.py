"""Hand freed heap memory back to the system during long videos (glibc's `malloc_trim`).

glibc serves blocks above its mmap threshold with `mmap`, but raises that threshold to the size of every
mmapped block freed (up to 32 MiB), so after a few frames megabyte-sized tensors come from the heap, where
freed pages stay resident: a 2000-frame offline refinement left 64-122 MB resident after it finished, and
online segmentation grew by ~40 MB over 3000 frames. Trimming after such work returns those pages. Pinning
the threshold low instead returned them too, but made every large tensor an `mmap` + page faults: frames
ran 30-55 % slower.
"""

from __future__ import annotations

import ctypes
import sys
from functools import cache


@cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 (musl and other C libraries have none)
    except (OSError, AttributeError):
        return None
    return libc


def release_free_memory() -> bool:
    """Return the heap's free pages to the system (`malloc_trim(0)`); False where there is no glibc."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
