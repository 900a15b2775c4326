"""Module-level jobs for the worker-process tests (test_build_workers.py): light to import, so a
worker started for them is ready in a fraction of a second."""

from __future__ import annotations

import importlib
import math
import os
import time


def pause_and_name(tag: str, seconds: float) -> tuple[str, int]:
    """Sleep ``seconds``, then (``tag``, the process id that ran it)."""
    time.sleep(seconds)
    return tag, os.getpid()


def slow_root(x: float) -> float:
    time.sleep(0.3)
    return math.sqrt(x)


def process_with(module: str) -> int:
    """Import ``module`` (a worker made ready for jobs that need it); the process id."""
    importlib.import_module(module)
    return os.getpid()


def fails(x: float) -> float:
    raise ValueError(f"no root for {x}")
