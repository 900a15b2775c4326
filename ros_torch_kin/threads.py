"""Thread policy for torch's CPU math on a computer shared with other busy processes.

torch runs the parallel parts of its CPU operations on an OpenMP thread pool (libgomp in the
Linux wheels; MKL shares it). Between parallel regions the workers *spin*: unless told otherwise
libgomp keeps a waiting worker busy for a while before it sleeps, and every region waits for its
slowest worker. On a robot computer that also runs drivers, perception and controllers, a worker
whose core another process holds is descheduled, and every region of the computation waits for
it: measured on a 2-core machine beside one CPU-bound process (issue #15), held-out IK of 2,000
Panda targets solved only 73–96 % of them within its 5 s budget with 2 threads, 100 % in 0.68 s
with 1 thread, and 100 % in 0.32 s with 2 threads and ``OMP_WAIT_POLICY=PASSIVE``.

The policy of ros_torch_kin, under which more threads do not lose to one under load:

1. **Passive waits.** ``OMP_WAIT_POLICY=PASSIVE`` makes a waiting worker sleep at once, so a
   worker that is not running does not stall the others spinning for it, and idle workers leave
   the cores to the robot's other processes. The OpenMP runtime reads the variable once, when it
   is loaded, i.e. when ``torch`` is first imported: :func:`use_passive_waits` sets it if the user
   has not set it and torch is not imported yet, and warns otherwise. The node's executable does
   this before it imports torch; a library user calls it first thing (``import ros_torch_kin.threads``
   does not import torch), or sets the variable in the environment.
2. **Threads by work.** :func:`automatic_threads` gives 1 thread for small work (a parallel region
   costs a wake-up of the sleeping workers, more than it saves on a few hundred rows) and every
   core this process may use for large work; :func:`limited_threads` applies a count to the
   calling thread for a block (torch's OpenMP thread count is per calling thread, so concurrent
   requests of the node each get their own).
3. **An explicit count** wins: the node's ``torch_threads`` parameter (0 = automatic), or
   ``torch.set_num_threads`` in a library user's program.

This module never imports ROS, and imports torch only inside :func:`limited_threads` and
:func:`torch_loaded`'s callers' code paths.
"""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import contextmanager

#: Rows of work (configurations, IK targets, plan seeds × waypoints) below which one thread is
#: used: a parallel region's wake-up of sleeping workers (tens of µs) outweighs what a second
#: core saves there. Measured on the 2-core development VM, quiet, passive waits, 2 threads
#: against 1: Panda verdicts 1.4× at B = 4,096 and 2.0× at 32,768, IK 0.90× at 2,000 and 0.88×
#: at 10,000 targets; beside a CPU-bound process 2 threads lost 3-9 % to 1 on IK (2,000 targets),
#: verdicts (4,096) and plans (bench/load_benchmark.py). Hence 1 thread up to 16,384 rows.
SERIAL_WORK = 16384

_PASSIVE = "PASSIVE"


def torch_loaded() -> bool:
    """Whether torch (and with it the OpenMP runtime, which has read OMP_WAIT_POLICY) is loaded."""
    return "torch" in sys.modules


def passive_waits() -> bool:
    """Whether the OpenMP workers wait passively: OMP_WAIT_POLICY is PASSIVE in the environment
    (when torch was loaded after it was set, which :func:`use_passive_waits` sees to)."""
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == _PASSIVE


def use_passive_waits(warn: bool = True) -> bool:
    """Set OMP_WAIT_POLICY=PASSIVE for torch's OpenMP workers, unless the user has set the
    variable (their choice is kept). Effective only before torch is imported: afterwards the
    variable is left alone and, with ``warn``, a RuntimeWarning says that the workers spin.
    Returns whether passive waits are in effect (or will be, once torch is imported)."""
    if "OMP_WAIT_POLICY" in os.environ:
        return passive_waits()
    if torch_loaded():
        if warn:
            warnings.warn(
                "torch is already imported, so its OpenMP workers spin while they wait (OMP_WAIT_POLICY "
                "is read when torch loads): on a busy computer set OMP_WAIT_POLICY=PASSIVE in the "
                "environment, or call ros_torch_kin.threads.use_passive_waits() before importing torch",
                RuntimeWarning, stacklevel=2)
        return False
    os.environ["OMP_WAIT_POLICY"] = _PASSIVE
    return True


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def automatic_threads(work: int, limit: int | None = None) -> int:
    """Threads for a computation of ``work`` rows: 1 below :data:`SERIAL_WORK`, else every
    available core (at most ``limit``). Without passive waits (see :func:`use_passive_waits`)
    always 1: spinning workers lose to one thread as soon as another process holds a core."""
    if work < SERIAL_WORK or not passive_waits():
        return 1
    cores = available_cores()
    return max(1, min(cores, limit) if limit else cores)


@contextmanager
def limited_threads(count: int):
    """Run the block with ``count`` torch threads in the calling thread, then restore its count.

    torch's OpenMP backend keeps the count per calling thread (``omp_set_num_threads``), so
    concurrent blocks in different threads do not disturb each other; threads that have not run
    a parallel torch operation yet start from the last count set anywhere."""
    import torch

    before = torch.get_num_threads()
    if count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
