"""Many client processes calling ~/compute_fk back to back: lost, late and wrong replies.

N client processes each send M ComputeFK requests (B configurations, all links) one after the
other to one node (started with NodeProcess, as the tests do) and check every reply against the
library's FK. A reply that does not come within --reply-timeout is *lost* (the client gives up
on it and goes on), one that comes after --late-ms is *late*, one whose poses are not those of
its request is *wrong*. ``--stall-ms`` makes the first ``--stalled-clients`` clients sleep that
long between sending a request and reading its reply: a client process descheduled for a while
on a busy machine, the situation in which, with Fast DDS, the other clients' replies (every
client receives every reply of the service) pile up in its reply reader. ``--client-qos default`` uses rclpy's default
service QoS (keep last 10) on the clients instead of ros_torch_kin.ros.qos.SERVICE_QOS.
``--retry-timeout S`` makes the clients ros_torch_kin.ros.client.KinematicsClient (a stalled one
sleeps after sending each call's first try), which resends a request unanswered after S s (then
2S, 4S, ...; ``--tries`` sends in all): a call is then *lost* only when every try went unanswered
(KinematicsError), and *resent* counts the extra tries.

    python bench/concurrency_stress.py --clients 8 --requests 400              (after `make build`, sourced)
    python bench/concurrency_stress.py --clients 8 --requests 100 --stall-ms 40 --client-qos default
    python bench/concurrency_stress.py --clients 8 --requests 200 --stall-ms 300 --client-qos default --retry-timeout 0.5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: joint positions of the bundled arm's requests: uniform in ±RANGE rad
RANGE = 1.0
#: distinct batches each client cycles through (a reply meant for another request shows as wrong)
DISTINCT_BATCHES = 4


def client_main(args) -> None:
    """One client process: M requests, one JSON line of results on stdout."""
    import rclpy
    import torch
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_services_default

    from ros_torch_kin.kinematics import Chain, forward_kinematics, matrix_to_pose_xyzw
    from ros_torch_kin.robots import bundled_urdf
    from ros_torch_kin.ros.convert import as_float_array, pack
    from ros_torch_kin.ros.qos import SERVICE_QOS
    from ros_torch_kin.srv import ComputeFK

    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    chain = Chain.from_urdf(bundled_urdf(), device="cpu", dtype=torch.float64)
    batches = [rng.uniform(-RANGE, RANGE, (args.batch, chain.num_dofs)) for _ in range(DISTINCT_BATCHES)]
    expected = [matrix_to_pose_xyzw(forward_kinematics(chain, torch.from_numpy(q))).numpy() for q in batches]
    requests = []
    for q in batches:
        request = ComputeFK.Request()
        request.positions = pack(q)
        requests.append(request)

    rclpy.init()
    qos = qos_profile_services_default if args.client_qos == "default" else SERVICE_QOS
    if args.retry_timeout > 0:
        return _kinematics_client_main(args, requests, batches, expected, chain, qos)
    node = rclpy.create_node(f"stress_client_{os.getpid()}")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    client = node.create_client(ComputeFK, "/ros_torch_kin/compute_fk", qos_profile=qos)
    if not client.wait_for_service(timeout_sec=60):
        raise SystemExit("compute_fk is not available")
    time.sleep(args.settle_s)  # let discovery finish on the node's side too (wait_for_service checks ours)
    lost, wrong, latencies = [], [], []
    start = time.monotonic()
    for i in range(args.requests):
        k = i % DISTINCT_BATCHES
        sent = time.monotonic()
        future = client.call_async(requests[k])
        if args.stall_ms:
            time.sleep(args.stall_ms / 1000)  # not reading: the replies of the others pile up
        executor.spin_until_future_complete(future, timeout_sec=args.reply_timeout)
        if not future.done():
            client.remove_pending_request(future)
            lost.append(i)
            continue
        latencies.append(1e3 * (time.monotonic() - sent))
        response = future.result()
        poses = as_float_array(response.poses).reshape(-1, chain.num_links, 7) if response.success else None
        if poses is None or not _same(poses, expected[k], args.batch):
            wrong.append(i)
    elapsed = time.monotonic() - start
    print(json.dumps({"lost": lost, "wrong": wrong, "latencies_ms": latencies, "seconds": elapsed, "resent": 0}),
          flush=True)
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()


def _same(poses, expected, batch: int) -> bool:
    return poses.shape[0] == batch and bool(
        np.abs(poses[..., :3] - expected[..., :3]).max() < 1e-4
        and np.abs(np.abs((poses[..., 3:] * expected[..., 3:]).sum(-1)) - 1).max() < 1e-5)


def _kinematics_client_main(args, requests, batches, expected, chain, qos) -> None:
    """client_main with KinematicsClient (resends after --retry-timeout)."""
    import rclpy

    from ros_torch_kin.ros.client import KinematicsClient, KinematicsError

    class StallingClient(KinematicsClient):
        def _exchange(self, what, send, *rest, **options):
            first = [True]

            def stalled_send():
                future = send()
                if first[0] and args.stall_ms:
                    first[0] = False
                    time.sleep(args.stall_ms / 1000)  # not reading: the replies of the others pile up
                return future

            return super()._exchange(what, stalled_send, *rest, **options)

    client = StallingClient(timeout=args.reply_timeout, retry_timeout=args.retry_timeout, tries=args.tries,
                            service_qos=qos)
    if not client.wait_for_server(60):
        raise SystemExit("compute_fk is not available")
    time.sleep(args.settle_s)
    lost, wrong, latencies = [], [], []
    start = time.monotonic()
    for i in range(args.requests):
        k = i % DISTINCT_BATCHES
        sent = time.monotonic()
        try:
            poses = client.forward_kinematics(batches[k])
        except KinematicsError:
            lost.append(i)
            continue
        latencies.append(1e3 * (time.monotonic() - sent))
        if not _same(poses, expected[k], args.batch):
            wrong.append(i)
    elapsed = time.monotonic() - start
    print(json.dumps({"lost": lost, "wrong": wrong, "latencies_ms": latencies, "seconds": elapsed,
                      "resent": client.resends}), flush=True)
    client.close()
    rclpy.try_shutdown()


def stress(args) -> dict:
    """The node and N client processes; the merged results."""
    from ros_torch_kin.ros.node_process import NodeProcess

    domain = int(os.environ.get("ROS_DOMAIN_ID") or 120 + os.getpid() % 30)
    with NodeProcess({"torch_threads": 1, "max_batch": max(1000, args.batch)}, domain_id=domain) as node:
        if not node.wait_for_log("serving robot", 60):
            raise SystemExit(f"the node did not start:\n{node.log()}")
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain))
        command = [sys.executable, __file__, "--client", "--requests", str(args.requests), "--batch", str(args.batch),
                   "--reply-timeout", str(args.reply_timeout), "--client-qos", args.client_qos,
                   "--settle-s", str(args.settle_s), "--retry-timeout", str(args.retry_timeout),
                   "--tries", str(args.tries)]
        clients = [subprocess.Popen(command + ["--seed", str(i), "--stall-ms", str(args.stall_ms if i < args.stalled_clients else 0)],
                                    env=env, stdout=subprocess.PIPE, text=True)
                   for i in range(args.clients)]
        outputs = [c.communicate()[0] for c in clients]
        results = [json.loads(out.strip().splitlines()[-1]) for out in outputs if out.strip()]
        if len(results) != args.clients:
            raise SystemExit(f"{args.clients - len(results)} client(s) failed; node log:\n{node.log()}")
        warnings = [line for line in node.log().splitlines() if "warn" in line.lower() or "response" in line.lower()]
    latencies = [t for r in results for t in r["latencies_ms"]]
    return {
        "clients": args.clients, "requests": args.clients * args.requests,
        "lost": sum(len(r["lost"]) for r in results),
        "lost_first_requests": sum(r["lost"][:1] == [0] for r in results),
        "late": sum(t > args.late_ms for t in latencies),
        "wrong": sum(len(r["wrong"]) for r in results),
        "resent": sum(r.get("resent", 0) for r in results),
        "throughput": len(latencies) / max(r["seconds"] for r in results),  # from each client's first request
        "median_ms": statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": float(np.percentile(latencies, 99)) if latencies else float("nan"),
        "max_ms": max(latencies, default=float("nan")),
        "node_warnings": warnings[:5],
        "lost_by_client": {i: r["lost"] for i, r in enumerate(results) if r["lost"]},
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="client processes")
    parser.add_argument("--requests", type=int, default=400, help="requests per client, back to back")
    parser.add_argument("--batch", type=int, default=100, help="configurations per request (all links)")
    parser.add_argument("--stall-ms", type=float, default=0.0, help="sleep between a request and reading its reply")
    parser.add_argument("--stalled-clients", type=int, default=1, help="how many clients stall (--stall-ms)")
    parser.add_argument("--settle-s", type=float, default=0.0,
                        help="s each client waits after wait_for_service before its first request")
    parser.add_argument("--reply-timeout", type=float, default=10.0, help="s after which a reply counts as lost")
    parser.add_argument("--late-ms", type=float, default=1000.0, help="replies slower than this count as late")
    parser.add_argument("--client-qos", choices=["service", "default"], default="service",
                        help="the clients' QoS: ros_torch_kin.ros.qos.SERVICE_QOS or rclpy's default")
    parser.add_argument("--retry-timeout", type=float, default=0.0,
                        help="> 0: the clients are KinematicsClients that resend after this many s (0: plain rclpy clients)")
    parser.add_argument("--tries", type=int, default=4, help="sends per call with --retry-timeout")
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)  # run as one client process
    args = parser.parse_args(argv)
    if args.client:
        return client_main(args)
    result = stress(args)
    print(f"{result['clients']} clients x {args.requests} requests (B = {args.batch}, {args.stalled_clients if args.stall_ms else 0} stalling {args.stall_ms:g} ms, "
          f"client QoS {args.client_qos}): lost {result['lost']} (first requests: {result['lost_first_requests']}), "
          f"late (> {args.late_ms:g} ms) {result['late']}, wrong {result['wrong']}, resent {result['resent']}; "
          f"{result['throughput']:.0f} replies/s, "
          f"latency median {result['median_ms']:.1f} ms p99 {result['p99_ms']:.1f} max {result['max_ms']:.0f}")
    for client, lost in result["lost_by_client"].items():
        print(f"client {client} lost requests {lost}")
    for line in result["node_warnings"]:
        print("node:", line)
    return None if result["lost"] == result["wrong"] == 0 else sys.exit(1)


if __name__ == "__main__":
    main()
