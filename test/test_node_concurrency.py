"""Concurrent clients of the real node: every ComputeFK reply arrives and is the right one.

Six client processes send 150 requests each (B = 100, all links) back to back; one of them
(client 0) stalls 50 ms between each request and reading its reply, so the others' replies (with Fast DDS
every client of a service receives every reply) pile up in its reply reader meanwhile. The
clients use ros_torch_kin.ros.qos.SERVICE_QOS (see its docstring for why). Runs
bench/concurrency_stress.py's clients against a node of its own; well under a minute.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ros_fixtures import requires_ros

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

pytestmark = requires_ros


def test_every_reply_arrives_under_concurrent_clients(ros_domain):
    import concurrency_stress

    args = argparse.Namespace(clients=6, requests=150, batch=100, stall_ms=50.0, stalled_clients=1, settle_s=0.0,
                              reply_timeout=10.0, late_ms=5000.0, client_qos="service")
    start = time.monotonic()
    result = concurrency_stress.stress(args)
    assert result["requests"] == 900
    detail = f"replies lost: {result['lost_by_client']}; node: {result['node_warnings']}"
    # the stalled client (0) is where keep-last-10 readers lose replies: never with SERVICE_QOS
    assert 0 not in result["lost_by_client"], detail
    # a client process descheduled for longer than ~100 replies take (on this 2-core machine under
    # the whole suite) can still miss one: seen once in ~10 runs of 900 (see ros/qos.py)
    assert result["lost"] <= 1, detail
    assert result["wrong"] == 0
    assert time.monotonic() - start < 120
