"""Sphere trees built in worker processes: a robot's cold build, one process per core.

A robot's shapes are covered independently (:func:`.urdf_sphere_trees.build_shape_tree`), so a
cold build (nothing in the cache yet: a robot's first start on a machine) that is still running
after a second splits the shapes left among worker processes, the caller's own among them. The others are fresh interpreters (running
:func:`serve`), not forks or ``multiprocessing`` children: the caller may hold threads (the
node's executor, torch's OpenMP pool), which a fork copies in whatever state their locks are,
and ``multiprocessing``'s spawn imports the caller's main script again in every child, which a
plain user script does not expect. Jobs go to the workers pickled on stdin, results come back
pickled on stdout; a worker that cannot start or fails returns nothing, and its shapes are
built by the caller.

Shapes are dealt to workers largest file first, each to the worker with the least bytes so far
(the build time grows with the mesh's size). The covers are the same whichever process builds
them.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path


def run_in_workers(jobs, settings, workers: int, build) -> list:
    """For each (shape, mesh path or None) of ``jobs``: (entry, warnings) as ``build(shape, path,
    settings)`` (:func:`.urdf_sphere_trees.build_shape_tree`) returns it, or None where its worker
    failed. ``workers`` processes in all: this one builds its share while the others run."""
    size = [file_size(path) for _, path in jobs]
    shares: list[list[int]] = [[] for _ in range(max(1, min(workers, len(jobs))))]
    load = [0] * len(shares)
    for j in sorted(range(len(jobs)), key=lambda j: -size[j]):
        w = load.index(min(load))
        shares[w].append(j)
        load[w] += size[j] + 1
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    started = []
    for share in shares[1:]:  # the first share is the caller's own
        try:
            process = subprocess.Popen([sys.executable, "-c", f"from {__name__} import serve; serve()"],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment)
            process.stdin.write(pickle.dumps(([jobs[j] for j in share], settings)))
            process.stdin.close()
        except (OSError, ValueError):
            process = None
        started.append(process)
    results: list = [None] * len(jobs)
    for j in shares[0]:
        results[j] = build(*jobs[j], settings)
    for share, process in zip(shares[1:], started):
        if process is None:
            continue
        output = process.stdout.read()
        if process.wait() != 0:
            continue
        try:
            built = pickle.loads(output)
        except (pickle.UnpicklingError, EOFError, ValueError):
            continue
        for j, result in zip(share, built):
            results[j] = result
    return results


def file_size(path) -> int:
    """A shape's mesh file size in bytes (0 for a primitive or a missing file): how shapes are
    ordered and dealt, the build time growing with the mesh."""
    return Path(path).stat().st_size if path is not None and Path(path).is_file() else 0


def serve() -> None:
    """A worker's body: build the pickled jobs on stdin, write the pickled results to stdout."""
    from .urdf_sphere_trees import build_shape_tree

    jobs, settings = pickle.loads(sys.stdin.buffer.read())
    built = [build_shape_tree(shape, path, settings) for shape, path in jobs]
    sys.stdout.buffer.write(pickle.dumps(built))
    sys.stdout.buffer.flush()

