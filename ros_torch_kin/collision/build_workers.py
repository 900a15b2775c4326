"""Cold-build work in worker processes: a robot's sphere trees and joint tables, one process per core.

A robot's first start on a machine (nothing in the cache yet) covers each collision shape with a
sphere tree (:func:`.urdf_sphere_trees.build_shape_tree`) and fills the joint tables of its
closest self pairs (:func:`.pair_tables.fill_rows`). Both split into independent jobs, so once
such a build has run for a second the jobs left are split among worker processes, the caller's
own among them. The others are fresh interpreters (running :func:`serve`), not forks or
``multiprocessing`` children: the caller may hold threads (the node's executor, torch's OpenMP
pool), which a fork copies in whatever state their locks are, and ``multiprocessing``'s spawn
imports the caller's main script again in every child, which a plain user script does not
expect. The function (module-level: pickled by its name) and the jobs go to the workers pickled
on stdin, results come back pickled on stdout; a worker that cannot start or fails returns
nothing, and its jobs are left to the caller.

Jobs are dealt largest first (by the caller's ``weights``: a mesh file's size, a job's rows),
each to the worker with the least weight so far. The results are the same whichever process
computes them. A worker is waited for a bounded time (:func:`patience`: generous, since the
caller's own share is measured): one that hangs (a stuck import, a wedged pipe) is killed and its
jobs computed by the caller, so a robot's first start is slower at worst, never stuck.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

#: The least time (s) a worker is waited for once the caller has finished its own share.
MIN_PATIENCE = 60.0
#: ... and how many times the caller's own share's time, when that is longer.
PATIENCE_FACTOR = 4.0


def run_in_workers(function, jobs, workers: int, weights=None) -> list:
    """For each argument tuple of ``jobs``: ``function(*job)`` (a module-level function), or None
    where its worker failed. ``workers`` processes in all: this one computes its share while the
    others run. ``weights`` (one number per job, default 1): how jobs are dealt."""
    weights = [1] * len(jobs) if weights is None else list(weights)
    shares: list[list[int]] = [[] for _ in range(max(1, min(workers, len(jobs))))]
    load = [0] * len(shares)
    for j in sorted(range(len(jobs)), key=lambda j: -weights[j]):
        w = load.index(min(load))
        shares[w].append(j)
        load[w] += weights[j] + 1
    started = [start_worker(function, [jobs[j] for j in share]) for share in shares[1:]]  # the first is ours
    results: list = [None] * len(jobs)
    began = time.perf_counter()
    for j in shares[0]:
        results[j] = function(*jobs[j])
    until = time.perf_counter() + patience(time.perf_counter() - began)
    for share, process in zip(shares[1:], started):
        built = finish_worker(process, max(0.0, until - time.perf_counter()))
        if built is not None:
            for j, result in zip(share, built):
                results[j] = result
    return results


def patience(own: float) -> float:
    """How long (s) workers are waited for after the caller spent ``own`` s on its share."""
    return max(MIN_PATIENCE, PATIENCE_FACTOR * own)


def start_worker(function, jobs) -> subprocess.Popen | None:
    """A worker process computing ``function(*job)`` for each of ``jobs``, started now (collect
    it with :func:`finish_worker`); None when the jobs cannot be sent (pickle) or no process starts."""
    process = None
    try:
        payload = pickle.dumps((function, list(jobs)))  # before a process is started
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        process = subprocess.Popen([sys.executable, "-c", f"from {__name__} import serve; serve()"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment)
        process.stdin.write(payload)
        process.stdin.close()
        process.stdin = None  # sent: communicate() then only reads
        return process
    except (OSError, ValueError, TypeError, AttributeError, pickle.PicklingError):
        if process is not None:  # started but not fed: not left running
            process.kill()
            process.wait()
        return None


def finish_worker(process: subprocess.Popen | None, timeout: float | None = None) -> list | None:
    """The results of a :func:`start_worker` process (waits for it, at most ``timeout`` s), or
    None where it failed or did not finish in time (then it is killed)."""
    if process is None:
        return None
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return None
    if process.returncode != 0:
        return None
    try:
        return pickle.loads(output)
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError):
        return None


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def file_size(path) -> int:
    """A shape's mesh file size in bytes (0 for a primitive or a missing file): how shapes are
    ordered and dealt, the build time growing with the mesh."""
    return Path(path).stat().st_size if path is not None and Path(path).is_file() else 0


def serve() -> None:
    """A worker's body: compute the pickled (function, jobs) on stdin, write the pickled results
    to stdout."""
    function, jobs = pickle.loads(sys.stdin.buffer.read())
    built = [function(*job) for job in jobs]
    sys.stdout.buffer.write(pickle.dumps(built))
    sys.stdout.buffer.flush()
