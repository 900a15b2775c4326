"""Cold-build work in worker processes: a robot's coarse covers, sphere trees and joint tables,
side by side with the caller, one process per core.

A robot's first start on a machine (nothing in the cache yet) covers its links with coarse spheres
(:func:`.urdf_spheres.cache_covers`), each collision shape with a sphere tree
(:func:`.urdf_sphere_trees.build_shape_tree`), and fills the joint tables of its closest self
pairs (:func:`.pair_tables.fill_rows`). All of it splits into independent jobs.

A :class:`WorkerPool` holds the other processes for one model build: started when the first job
is given to it, kept from the covers to the trees to the tables (a worker's start, an interpreter
importing torch, ~1-2 s, is paid once), closed at the end. Jobs wait in one queue, largest first
(by the caller's ``weights``: a mesh file's size, a table piece's estimated time), and whoever is
free takes the next, the caller among them: a long shape keeps one process busy while the others
take the rest, where a split made in advance by file size left cores idle (the MBM Fetch's
caller finished its share at 16 s and waited for its worker until 37 s). Each job's result is
the same whichever process computes it.

The workers are fresh interpreters (running :func:`serve`), not forks or ``multiprocessing``
children: the caller may hold threads (the node's executor, torch's OpenMP pool), which a fork
copies in whatever state their locks are, and ``multiprocessing``'s spawn imports the caller's
main script again in every child, which a plain user script does not expect. A job (a
module-level function, pickled by its name, and its arguments) goes to a worker as one
length-prefixed pickle on its stdin, its result comes back the same way on its stdout. A worker
that cannot start, cannot be sent a job (an unpicklable function), fails or raises leaves the
job to the caller, who computes it here (so its error, if any, is raised here). A worker is waited
for a bounded time (:func:`patience`: generous, since the caller's own share is measured): one
that hangs (a stuck import, a wedged pipe) is killed and its job computed by the caller, so a
robot's first start is slower at worst, never stuck.
"""

from __future__ import annotations

import itertools
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path

#: The least time (s) a worker is waited for once the caller has finished its own share.
MIN_PATIENCE = 60.0
#: ... and how many times the caller's own share's time, when that is longer.
PATIENCE_FACTOR = 4.0

_HEADER = struct.Struct("<Q")
_TOKENS = itertools.count()


def patience(own: float) -> float:
    """How long (s) workers are waited for after the caller spent ``own`` s on its share."""
    return max(MIN_PATIENCE, PATIENCE_FACTOR * own)


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


class _Failed(Exception):
    """A job a worker could not compute (the caller computes it)."""


class _Worker:
    """One worker process; ``lock`` is held while it computes a job."""

    def __init__(self):
        self.process: subprocess.Popen | None = None
        self.lock = threading.Lock()
        self.alive = True
        self.shared_token = None  # the shared arguments it holds

    def start(self) -> None:
        # one process per core: each runs one thread (torch's and BLAS's pools would oversubscribe)
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), OMP_NUM_THREADS="1")
        try:
            self.process = subprocess.Popen([sys.executable, "-c", f"from {__name__} import serve; serve()"],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment)
        except (OSError, ValueError):
            self.alive = False

    def call(self, function, args: tuple, shared: tuple | None = None):
        """``function(*shared_args, *args)`` in the worker (the lock held by the caller);
        ``shared`` (token, shared_args) or None, sent once per token. Raises :class:`_Failed`
        where it cannot (the worker is then no longer used, unless only the job was at fault)."""
        if not self.alive or self.process is None:
            raise _Failed
        token, values = shared if shared is not None else (None, ())
        try:
            data = pickle.dumps((function, token, values if token != self.shared_token else None, args))
        except (pickle.PicklingError, TypeError, AttributeError) as error:  # the job, not the worker
            raise _Failed from error
        try:
            _send(self.process.stdin, data)
            self.shared_token = token
            ok, value = _receive(self.process.stdout)
        except (OSError, EOFError, ValueError, pickle.UnpicklingError, AttributeError, ImportError) as error:
            self.kill()
            raise _Failed from error
        if not ok:  # the function raised there: the caller computes it (and raises it) here
            raise _Failed(value)
        return value

    def kill(self) -> None:
        self.alive = False
        if self.process is not None and self.process.poll() is None:
            self.process.kill()

    def close(self) -> None:
        """Ask the worker to exit (the end of its input) without waiting for it (an interpreter's
        exit takes a while): ``subprocess`` reaps it later; one still computing is killed."""
        if self.process is None:
            return
        if self.lock.acquire(blocking=False):  # idle: it exits at the end of its input
            self.lock.release()
        else:
            self.kill()
        try:
            self.process.stdin.close()
        except OSError:
            pass
        self.alive = False


class Pending:
    """A job given to one worker in the background (:meth:`WorkerPool.submit`)."""

    def __init__(self, worker: _Worker | None):
        self._worker, self._done = worker, threading.Event()
        self.ok = False
        if worker is None:
            self._done.set()

    def _finish(self, ok: bool) -> None:
        self.ok = ok
        self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the job succeeded, waiting at most ``timeout`` s; a worker not done by then is
        killed (its job is left to the caller)."""
        if not self._done.wait(timeout) and self._worker is not None:
            self._worker.kill()
            self._done.wait()
        return self.ok


class WorkerPool:
    """``workers`` processes in all (None: one per core this process may use), this one among
    them: the others are started when a job is first given to them (:meth:`map`,
    :meth:`submit`) and kept until :meth:`close` (or the end of a ``with`` block)."""

    def __init__(self, workers: int | None = None):
        count = usable_cores() if workers is None else workers
        self._workers = [_Worker() for _ in range(max(0, count - 1))]
        self._started = False

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def size(self) -> int:
        """Processes beside this one."""
        return len(self._workers)

    @property
    def warm(self) -> bool:
        """Whether its workers run already (a job given to them costs no start)."""
        return self._started and any(w.alive for w in self._workers)

    def start(self) -> None:
        if not self._started:
            self._started = True
            for worker in self._workers:
                worker.start()

    def close(self) -> None:
        for worker in self._workers:
            worker.close()

    def submit(self, function, args: tuple) -> Pending:
        """``function(*args)`` on one worker in the background, for its effect (its result is not
        kept: the coarse covers go to the disk cache) (the first worker that is alive; while it
        runs, that worker takes no job of :meth:`map`); a :class:`Pending` with nothing to wait for
        when there is no worker."""
        self.start()
        worker = next((w for w in self._workers if w.alive), None)
        pending = Pending(worker)
        if worker is not None:
            def run():
                with worker.lock:
                    try:
                        worker.call(function, args)
                        pending._finish(True)
                    except _Failed:
                        pending._finish(False)

            threading.Thread(target=run, daemon=True).start()
        return pending

    def map(self, function, jobs, weights=None, shared: tuple = ()) -> list:
        """``function(*shared, *job)`` for each argument tuple of ``jobs`` (``function``
        module-level), in their order, computed here and by the workers side by side: the jobs
        largest first by ``weights`` (one number per job, default 1), each taken by whoever is
        free. ``shared``: arguments common to every job, sent to each worker once."""
        jobs = list(jobs)
        weights = [1] * len(jobs) if weights is None else list(weights)
        queue = deque(sorted(range(len(jobs)), key=lambda j: -weights[j]))
        results: list = [None] * len(jobs)
        done = [False] * len(jobs)
        state = threading.Condition()
        flight: dict[int, _Worker] = {}  # job -> the worker computing it
        token = next(_TOKENS)

        def feed(worker: _Worker) -> None:
            while True:
                with worker.lock:  # free: take the next job
                    with state:
                        if not queue or not worker.alive:
                            return
                        j = queue.popleft()
                        flight[j] = worker
                    try:
                        results[j], done[j] = worker.call(function, jobs[j], (token, shared) if shared else None), True
                    except _Failed:
                        pass
                    finally:
                        with state:
                            del flight[j]
                            state.notify_all()

        if len(jobs) > 1 and self._workers:
            self.start()
            for worker in self._workers:
                if worker.alive:
                    threading.Thread(target=feed, args=(worker,), daemon=True).start()
        began = time.perf_counter()
        try:
            while True:
                with state:
                    if not queue:
                        break
                    j = queue.popleft()
                results[j], done[j] = function(*shared, *jobs[j]), True
        except BaseException:  # the workers take nothing more
            with state:
                queue.clear()
            raise
        until = time.perf_counter() + patience(time.perf_counter() - began)
        with state:
            while flight and state.wait(max(0.0, until - time.perf_counter())):
                pass
            for worker in set(flight.values()):  # past the patience: killed, their jobs done here
                worker.kill()
            while flight:
                state.wait()
        for j in range(len(jobs)):
            if not done[j]:
                results[j] = function(*shared, *jobs[j])
        return results


@contextmanager
def pool_or_own(pool: WorkerPool | None, workers: int | None = None):
    """``pool`` itself (left open: its owner closes it), or a pool of ``workers`` processes (None:
    one per usable core) made for the ``with`` block and closed at its end."""
    if pool is not None:
        yield pool
    else:
        with WorkerPool(workers) as made:
            yield made


def _send(stream, data: bytes) -> None:
    """One length-prefixed pickle (``data``) on ``stream``."""
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream):
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("the worker's output ended")
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the worker's output ended")
    return pickle.loads(data)


def serve() -> None:
    """A worker's body: jobs (function, token, shared arguments or None, arguments) from stdin,
    (ok, result or the error's text) to stdout, until stdin ends."""
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # what a job prints must not enter the results' stream
    held: dict = {}
    while True:
        try:
            function, token, values, args = _receive(source)
        except EOFError:
            return
        if values is not None:
            held = {token: values}
        try:
            reply = (True, function(*held.get(token, ()), *args))
        except Exception as error:  # noqa: BLE001 -- reported to the caller, who computes it again
            reply = (False, f"{type(error).__name__}: {error}")
        try:
            data = pickle.dumps(reply)
        except Exception as error:  # noqa: BLE001 -- a result pickle cannot send: computed by the caller
            data = pickle.dumps((False, f"the result cannot be sent: {type(error).__name__}: {error}"))
        _send(sink, data)
