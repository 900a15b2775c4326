"""Concurrent clients of the real node: every ComputeFK reply arrives and is the right one.

Six client processes send 150 requests each (B = 100, all links) back to back; one of them
(client 0) stalls 50 ms between each request and reading its reply, so the others' replies (with Fast DDS
every client of a service receives every reply) pile up in its reply reader meanwhile. The
clients use ros_torch_kin.ros.qos.SERVICE_QOS (see its docstring for why). Runs
bench/concurrency_stress.py's clients against a node of its own; well under a minute.

The second test makes the clients KinematicsClients, which resend a request whose reply did not
come: with rclpy's default QoS (keep last 10) the stalled client loses replies for sure, and
every call must still get its answer.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ros_fixtures import requires_ros

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

pytestmark = requires_ros


def _stress(args) -> tuple[dict, float]:
    """``concurrency_stress.stress(args)`` and the seconds its (last) run took, run once more
    when a client process ended without a result: on this 2-core machine in a slow moment one of
    six clients once found no ``compute_fk`` within 60 s (DDS discovery; the node's log said it
    was serving, and the five others were answered), which says nothing of the replies under
    test. A client that fails for another reason fails again."""
    import concurrency_stress

    start = time.monotonic()
    try:
        return concurrency_stress.stress(args), time.monotonic() - start
    except SystemExit as failure:
        if "client(s) failed" not in str(failure):
            raise
        print(f"stress run again: {str(failure).splitlines()[0]}")
    start = time.monotonic()
    return concurrency_stress.stress(args), time.monotonic() - start


def test_every_reply_arrives_under_concurrent_clients(ros_domain):
    args = argparse.Namespace(clients=6, requests=150, batch=100, stall_ms=50.0, stalled_clients=1, settle_s=0.0,
                              reply_timeout=10.0, late_ms=5000.0, client_qos="service", retry_timeout=0.0, tries=1)
    result, seconds = _stress(args)
    assert result["requests"] == 900
    detail = f"replies lost: {result['lost_by_client']}; node: {result['node_warnings']}"
    # the stalled client (0) is where keep-last-10 readers lose replies: never with SERVICE_QOS
    assert 0 not in result["lost_by_client"], detail
    # a client process descheduled for longer than ~100 replies take (on this 2-core machine under
    # the whole suite) can still miss one: seen once in ~10 runs of 900 (see ros/qos.py)
    assert result["lost"] <= 1, detail
    assert result["wrong"] == 0
    assert seconds < 120


def test_kinematics_client_resends_the_replies_it_loses(ros_domain):
    # client 0 sleeps 300 ms after sending each call's first try: with keep last 10 the others'
    # replies (about 150 in that time on a quiet machine, still dozens on a loaded one: at 100 ms a
    # run beside a benchmark lost none, and the test tested nothing) push its own out of its
    # reader; the resend answers. A slow machine (this shared one, at times ~1.5x slower) sends
    # fewer replies meanwhile: a run that lost none is run again with a longer stall
    for stall in (300.0, 1000.0):
        args = argparse.Namespace(clients=6, requests=60, batch=100, stall_ms=stall, stalled_clients=1, settle_s=0.0,
                                  reply_timeout=30.0, late_ms=30000.0, client_qos="default", retry_timeout=0.5,
                                  tries=4)
        result, _ = _stress(args)
        assert result["requests"] == 360
        detail = f"calls failed: {result['lost_by_client']}; node: {result['node_warnings']}"
        assert result["lost"] == 0, detail
        assert result["wrong"] == 0
        if result["resent"] >= 1:
            break
    assert result["resent"] >= 1, "no reply was lost: the test did not test the resends"
