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
called by ``Engine.open`` before anything big is allocated, fixes the mmap
threshold at 1 MiB (so multi-MiB buffers go back to the system when freed)
and the trim threshold at 32 MiB. Not lower: pinned at glibc's initial
128 KiB, with the trim threshold left at 128 KiB, every request buffer of a
1,000 x 128 batch (~0.5 MiB) became a fresh mmap or a re-grown heap top, with
its page faults, and durable ingest fell by about 40% (bench/bench_e2e.py).
Measured with bench/load_test.py (6 clients, 150 s): second-half RssAnon
slope +1.95 MiB/min with these values, +33 MiB/min without the pin.

``PROXIMADB_MALLOC_PIN=0`` turns it off; ``PROXIMADB_MALLOC_MMAP_THRESHOLD``
and ``PROXIMADB_MALLOC_TRIM_THRESHOLD`` (bytes) change the two values.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import threading

log = logging.getLogger("proximadb.allocator")

MALLOC_MMAP_THRESHOLD = 1 << 20  # buffers of this size and more: their own mmap, unmapped on free
MALLOC_TRIM_THRESHOLD = 32 << 20  # free memory at the top of a heap kept for reuse, up to this
_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, <malloc.h>
_M_MMAP_THRESHOLD = -3
_malloc_pinned: bool | None = None  # None: not tried yet in this process
_malloc_pin_lock = threading.Lock()


def pin_malloc_mmap_threshold(threshold: int = MALLOC_MMAP_THRESHOLD, trim: int = MALLOC_TRIM_THRESHOLD) -> bool:
    """Fix glibc malloc's mmap and trim thresholds (process-wide, once); True when they are pinned.

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
        threshold = int(os.environ.get("PROXIMADB_MALLOC_MMAP_THRESHOLD", threshold))
        trim = int(os.environ.get("PROXIMADB_MALLOC_TRIM_THRESHOLD", trim))
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        _malloc_pinned = mallopt(_M_MMAP_THRESHOLD, threshold) == 1 and mallopt(_M_TRIM_THRESHOLD, trim) == 1
        if not _malloc_pinned:
            log.warning("mallopt(M_MMAP_THRESHOLD %d, M_TRIM_THRESHOLD %d) failed; freed buffers may stay "
                        "resident", threshold, trim)
        return _malloc_pinned
