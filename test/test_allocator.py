"""The allocator policy (ros_torch_kin.allocator): with the freed memory kept, work that allocates
and frees large blocks again and again stops page-faulting them in; the user's environment wins;
one call is enough."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

# Large blocks freed between rounds, as a cloud's insertion does: a 16 MiB block first (glibc
# then serves blocks below 16 MiB from its heap and trims a free top above 32 MiB), then rounds
# of six 8 MiB blocks (48 MiB of heap each round, freed at its end). Prints the page faults of
# rounds 2-10 (on the development VM: 18,252 with glibc's defaults, 0 with the memory kept, of
# 110,592 pages written).
_ROUNDS = textwrap.dedent("""
    import resource, sys
    import numpy as np
    if sys.argv[1] == "kept":
        from ros_torch_kin.allocator import keep_freed_memory
        print(keep_freed_memory(), file=sys.stderr)
    np.ones(2 << 20)  # 16 MiB
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for round in range(10):
        if round == 1:
            before = faults()
        blocks = [np.ones(1 << 20) for _ in range(6)]  # 6 x 8 MiB, every page written
        del blocks
    print(faults() - before)
""")

glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the policy is glibc's mallopt (Linux)")


def _faults(policy: str, **environment) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(environment)
    done = subprocess.run([sys.executable, "-c", _ROUNDS, policy], capture_output=True, text=True, env=env,
                          timeout=120, check=True)
    return int(done.stdout.strip())


@glibc
def test_kept_memory_is_not_faulted_in_again():
    default, kept = _faults("default"), _faults("kept")
    pages = 9 * 6 * (8 << 20) // 4096  # rounds 2-10, every page of every block
    assert default > pages // 10, f"glibc's defaults gave {default} faults for {pages} pages: the test's premise"
    assert kept < pages // 50, f"{kept} faults for {pages} pages with the freed memory kept"


@glibc
def test_the_environment_wins():
    assert _faults("kept", MALLOC_TRIM_THRESHOLD_="0") > 9 * 6 * (8 << 20) // 4096 // 10
    script = "from ros_torch_kin.allocator import keep_freed_memory as k; print(k()); print(k())"
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60,
                           env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}).stdout.splitlines()
    assert shown == ["as the environment sets it (MALLOC_MMAP_THRESHOLD_=65536)"] * 2


@glibc
def test_a_second_call_keeps_the_first_answer():
    script = "from ros_torch_kin.allocator import keep_freed_memory as k; print(k()); print(k(1 << 20, 1 << 20))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60,
                           env=env).stdout.splitlines()
    assert shown[0].startswith("kept (blocks up to 32 MiB from the heap, up to 128 MiB") and shown[1] == shown[0]
