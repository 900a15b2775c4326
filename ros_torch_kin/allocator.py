"""Allocator policy: a long-running process keeps the memory it frees, for its next request.

glibc's malloc serves a large block (above a threshold that starts at 128 KiB and rises to the
largest block freed so far, at most 32 MiB) with its own ``mmap`` and hands it back to the kernel
when freed, and it returns the free top of its heap to the kernel once that exceeds twice the
threshold. Each block the kernel hands back is then *page-faulted in again*, 4 KiB at a time,
the next time the same work runs. numpy's temporaries are such blocks: a 300,000-point cloud's
way into the world (``ros.point_cloud_input.sensed_obstacle``) allocates and frees ~40 arrays of
0.1-7 MiB, and with glibc's defaults it took 3,000 page faults and 30-40 ms a cloud, from one
process to the next, where the same code with the freed memory kept took 0 faults and 17 ms
(2-core development VM, 4 processes each way, interleaved; BENCHMARKS.md's notes). A robot's
node runs the same work over and over: it should reuse its memory, not fault it in each time.

:func:`keep_freed_memory` fixes the thresholds (``mallopt``): blocks up to ``mmap_threshold``
come from the heap, and up to ``trim_threshold`` of free heap top stays with the process. The
cost is resident memory: up to ``trim_threshold`` (128 MiB by default) more than the process
uses at a time after a burst of large requests. ROS 2's real-time guidance asks the same of
``mallopt`` for the same reason (no page faults in steady state). The node's executable calls it
at start; a library user may call it first thing (it changes the whole process's allocator), or
set ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` in the environment, which win: the
policy is then left as the user set it.

Only glibc (Linux) has these knobs; elsewhere :func:`keep_freed_memory` does nothing and says so.
This module imports neither torch nor ROS.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

#: Blocks up to this size come from the heap (glibc's upper limit for the threshold on 64-bit).
MMAP_THRESHOLD = 32 << 20
#: Free memory at the heap's top kept by the process (bytes) before it goes back to the kernel.
TRIM_THRESHOLD = 128 << 20

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

_state: str | None = None


def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> str:
    """Make the process's allocator keep freed memory for reuse (see the module docstring):
    ``mmap_threshold`` (bytes, ≤ 32 MiB) and ``trim_threshold`` (bytes). Call it once, early;
    calling it again does nothing. Returns what is in effect, in words for a log line: "kept"
    (this call or an earlier one set it), "as the environment sets it" (a MALLOC_*_THRESHOLD_
    variable is set: the user's choice is kept), or why nothing was done (not glibc)."""
    global _state
    if _state is not None:
        return _state
    if any(name in os.environ for name in _ENVIRONMENT):
        _state = "as the environment sets it (" + ", ".join(
            f"{name}={os.environ[name]}" for name in _ENVIRONMENT if name in os.environ) + ")"
        return _state
    mallopt = _mallopt()
    if mallopt is None:
        _state = "the system's default (no glibc mallopt here)"
        return _state
    if not (mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) and mallopt(_M_TRIM_THRESHOLD, int(trim_threshold))):
        _state = f"the system's default (mallopt refused {mmap_threshold} / {trim_threshold} bytes)"
        return _state
    _state = f"kept (blocks up to {mmap_threshold >> 20} MiB from the heap, up to {trim_threshold >> 20} MiB of it kept free)"
    return _state


def _mallopt():
    """glibc's ``mallopt(param, value) -> int`` through ctypes, or None where there is none."""
    if os.name != "posix":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt
