"""ROS 2 service round trip and the joint_states -> link poses pipeline, on the bundled 7-DOF arm.

Round trip: ComputeFK for B configurations (all 10 links) from a client process over loopback,
next to the same request handled in-process (the node's handler called directly: checks,
FK, pose conversion, packing — everything but transport) and the bare library call. Pipeline:
joint_states published at a fixed rate for a few seconds; we count the LinkPoses that come back
(received serialized, so the measuring process leaves the CPU to the node) and measure their
latency (receipt time − the stamp set at publishing).

    python bench/service_benchmark.py --output BENCHMARKS.md     (after `make build`, sourced)
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
import torch
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import JointState

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, stamp, versions, write_section  # noqa: E402

from ros_torch_kin.kinematics import forward_kinematics  # noqa: E402
from ros_torch_kin.msg import LinkPoses  # noqa: E402
from ros_torch_kin.robots import bundled_urdf  # noqa: E402
from ros_torch_kin.ros import handlers  # noqa: E402
from ros_torch_kin.ros.client import KinematicsClient  # noqa: E402
from ros_torch_kin.ros.convert import pack  # noqa: E402
from ros_torch_kin.ros.node_process import NodeProcess  # noqa: E402
from ros_torch_kin.ros.parameters import Settings  # noqa: E402
from ros_torch_kin.ros.served_model import build_model  # noqa: E402
from ros_torch_kin.srv import ComputeFK  # noqa: E402

TARGETS = {1: 1.0, 1000: 5.0}  # ms, median round trip


def percentile(values, p):
    return float(np.percentile(np.asarray(values), p))


def timed(fn, repeats, warmup=5):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - start))
    return times


def round_trips(client, batches, repeats, threads):
    torch.set_num_threads(threads)
    model = build_model(bundled_urdf(), "bundled", torch.device("cpu"), torch.float32, "error")
    rng = np.random.default_rng(0)
    rows = []
    for B in batches:
        q = rng.uniform(-1.0, 1.0, (B, 7))
        request = ComputeFK.Request()
        request.positions = pack(q)
        q_tensor = torch.from_numpy(q).float()
        remote, local, library = [], [], []
        for _ in range(3):  # interleaved rounds
            remote += timed(lambda: client.forward_kinematics(q), repeats // 3)
            local += timed(lambda: handlers.serve_fk(model, Settings.defaults(), request, ComputeFK.Response()), repeats // 3)
            with torch.no_grad():
                library += timed(lambda: forward_kinematics(model.chain, q_tensor), repeats // 3)
        rows.append((B, statistics.median(remote), percentile(remote, 90), statistics.median(local),
                     statistics.median(library)))
        print(f"B={B:6d}: round trip median {rows[-1][1]:.2f} ms p90 {rows[-1][2]:.2f}; in-process handler "
              f"{rows[-1][3]:.2f} ms; library FK {rows[-1][4]:.3f} ms", flush=True)
    return rows


def pipeline(rates, seconds):
    node = rclpy.create_node("pipeline_benchmark")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    received, lock = [], threading.Lock()

    def on_poses(raw: bytes):  # serialized CDR: 4-byte encapsulation, then header.stamp (int32, uint32)
        now = node.get_clock().now().nanoseconds
        sec, nanosec = struct.unpack_from("<iI", raw, 4)
        with lock:
            received.append((sec * 1_000_000_000 + nanosec, now))

    # raw: this process measures, it should not spend the CPU the node needs on deserialising
    node.create_subscription(LinkPoses, "/ros_torch_kin/link_poses", on_poses, 1000, raw=True)
    publisher = node.create_publisher(JointState, "/joint_states", 1000)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    deadline = time.monotonic() + 20
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    names = [f"joint_{i}" for i in range(1, 8)]
    rows = []
    for rate in rates:
        with lock:
            received.clear()
        sent, start = 0, time.monotonic()
        while time.monotonic() - start < seconds:
            sent += 1
            msg = JointState(name=names, position=[0.001 * (sent % 1000)] * 7)
            msg.header.stamp = node.get_clock().now().to_msg()
            publisher.publish(msg)
            time.sleep(max(0.0, start + sent / rate - time.monotonic()))
        elapsed = time.monotonic() - start
        time.sleep(1.0)
        with lock:
            latencies = [1e-6 * (now - sent_at) for sent_at, now in received]
        rows.append((rate, sent / elapsed, len(latencies) / sent, statistics.median(latencies) if latencies else float("nan"),
                     percentile(latencies, 99) if latencies else float("nan")))
        print(f"{rate} Hz: published {rows[-1][1]:.0f}/s, received {100 * rows[-1][2]:.1f}%, latency median "
              f"{rows[-1][3]:.2f} ms p99 {rows[-1][4]:.2f} ms", flush=True)
    executor.shutdown()
    node.destroy_node()
    return rows


def markdown(service_rows, pipeline_rows, threads, repeats, seconds) -> str:
    lines = [
        "## ROS 2 service round trip and joint_states pipeline (`bench/service_benchmark.py`)",
        "",
        f"{stamp()}; {machine()}; {versions()}; ROS 2 kilted (rclpy from PyPI wheels, Fast DDS, loopback); "
        f"the node runs with torch_threads={threads}, the client in another process. Medians of {repeats} calls in "
        "three interleaved rounds per batch size. *In-process* is the node's ComputeFK handler called directly "
        "(checks, FK, quaternions, packing: all but transport); *library* is `forward_kinematics` alone.",
        "",
        "| B (7-DOF arm, all 10 links) | round trip median (ms) | p90 (ms) | in-process handler (ms) | library FK (ms) | target |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for B, median, p90, local, library in service_rows:
        target = TARGETS.get(B)
        verdict = f"≤ {target} ms: {'PASS' if median <= target else 'FAIL'}" if target else ""
        lines.append(f"| {B} | {median:.2f} | {p90:.2f} | {local:.2f} | {library:.3f} | {verdict} |")
    lines += [
        "",
        f"joint_states → `~/link_poses` ({seconds:.0f} s per rate; latency = receipt − stamp set when publishing; "
        "subscription with sensor-data QoS, so a pipeline that cannot keep up drops old states rather than queueing):",
        "",
        "| joint_states rate (Hz) | published (/s) | link poses received | latency median (ms) | p99 (ms) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for rate, published, fraction, median, p99 in pipeline_rows:
        lines.append(f"| {rate} | {published:.0f} | {100 * fraction:.1f} % | {median:.2f} | {p99:.2f} |")
    kept = [r for r in pipeline_rows if r[0] == 1000]
    if kept:
        ok = kept[0][2] >= 0.99
        lines += ["", f"Target: the pipeline keeps up with 1 kHz joint_states: **{'PASS' if ok else 'FAIL'}** "
                  f"({100 * kept[0][2]:.1f} % of states answered)."]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="BENCHMARKS.md to update")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 100, 1000, 10000])
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--rates", type=int, nargs="+", default=[250, 500, 1000, 2000])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=1, help="torch_threads of the node (and the in-process calls)")
    args = parser.parse_args(argv)
    domain = int(os.environ.get("ROS_DOMAIN_ID") or 120 + os.getpid() % 30)
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    with NodeProcess({"torch_threads": args.threads, "max_batch": max(args.batches)}, domain_id=domain) as node:
        rclpy.init()
        client = KinematicsClient(timeout=60)
        if not client.wait_for_server(60):
            raise SystemExit(f"node did not start:\n{node.log()}")
        service_rows = round_trips(client, args.batches, args.repeats, args.threads)
        pipeline_rows = pipeline(args.rates, args.seconds)
        client.close()
        rclpy.try_shutdown()
    text = markdown(service_rows, pipeline_rows, args.threads, args.repeats, args.seconds)
    print(text)
    if args.output:
        write_section(args.output, "service-benchmark", text)


if __name__ == "__main__":
    main()
