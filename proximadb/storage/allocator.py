"""Keep freed big buffers from staying resident: glibc malloc's mmap threshold, pinned once per process.

Every flush drops a memtable's matrix and allocates a new one, and
flushes, compactions and index builds allocate and free other buffers of a
few MiB, from whichever request or background thread happens to run them.
glibc's malloc serves a request of at least ``M_MMAP_THRESHOLD`` bytes with
its own mmap and unmaps it on free, but that threshold is dynamic: freeing
such a chunk raises it to the chunk's size (up to 32 MiB, and the trim
threshold to twice that), after which buffers of that size come from the
per-thread malloc arenas, and what is freed there stays resident. Under a
steady load over a fixed id space (bench/load_test.py) the daemon's RssAnon
went from 56 to 194 MiB in two minutes with rows, segments and indexes flat;
``malloc_info`` showed most arena bytes free. :func:`pin_malloc_mmap_threshold`,
called by ``Engine.open`` before anything big is allocated, fixes the threshold at glibc's
initial 128 KiB, so big buffers go back to the system when they are freed.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import threading

log = logging.getLogger("proximadb.allocator")

MALLOC_MMAP_THRESHOLD = 128 << 10  # glibc's own initial value, kept from rising
_M_MMAP_THRESHOLD = -3  # mallopt parameter number, <malloc.h>
_malloc_pinned: bool | None = None  # None: not tried yet in this process
_malloc_pin_lock = threading.Lock()


def pin_malloc_mmap_threshold(threshold: int = MALLOC_MMAP_THRESHOLD) -> bool:
    """Fix glibc malloc's mmap threshold (process-wide, once); True when it is pinned.

    A no-op on other C libraries, with ``PROXIMADB_MALLOC_PIN=0`` (to measure
    without it), and when the operator set the threshold (``MALLOC_MMAP_THRESHOLD_``
    or ``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=...``): their choice stands.
    See the module docstring for why.
    """
    global _malloc_pinned
    with _malloc_pin_lock:
        if _malloc_pinned is not None:
            return _malloc_pinned
        _malloc_pinned = False
        if os.environ.get("PROXIMADB_MALLOC_PIN", "1") == "0":
            return False
        if "MALLOC_MMAP_THRESHOLD_" in os.environ or "malloc.mmap_threshold" in os.environ.get("GLIBC_TUNABLES", ""):
            return False
        if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
            return False
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):
            return False
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        _malloc_pinned = mallopt(_M_MMAP_THRESHOLD, threshold) == 1
        if not _malloc_pinned:
            log.warning("mallopt(M_MMAP_THRESHOLD, %d) failed; freed buffers may stay resident", threshold)
        return _malloc_pinned
