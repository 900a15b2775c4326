"""ROS 2 service round trip and the joint_states -> link poses pipeline, on the bundled 7-DOF arm.

Round trip: ComputeFK for B configurations (all 10 links) from a client process over loopback,
next to the same request handled in-process (the node's handler called directly: checks,
FK, pose conversion, packing — everything but transport) and the bare library call. Pipeline:
a soak of joint_states at each fixed rate (default 500 Hz and 1 kHz, 20 s each) into the node,
and the same into a bare rclpy relay node in its own process (the floor); we count the messages
that come back (received serialized, so the measuring process leaves the CPU to the one
measured), their latency (receipt time − the stamp set at publishing), and the measured process's
CPU (utime + stime) and RSS over the soak.

    python bench/service_benchmark.py --output BENCHMARKS.md     (after `make build`, sourced)
    python bench/service_benchmark.py --batches --seconds 60      (the pipeline only, one-minute soak)
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
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


#: topics of the relay (bench/joint_state_relay.py): it republishes each JointState of IN on OUT
RELAY_IN, RELAY_OUT = "/joint_state_relay/joint_states_in", "/joint_state_relay/joint_states_out"


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` so far (s), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident set size of process ``pid`` (MiB), from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class SoakResult:
    """One soak of one process at one rate: what was published, what came back, and the cost."""

    target: str
    rate: int  # Hz asked for
    published: int
    seconds: float  # s the publishing took
    delivered: int  # published states that came back
    latencies_ms: list[float]  # receipt − stamp of each that came back
    cpu_fraction: float  # of one core, over the soak
    rss_start_mib: float
    rss_end_mib: float

    @property
    def fraction(self) -> float:
        return self.delivered / max(1, self.published)


class Soak:
    """Publishes joint_states at a fixed rate into one process and counts what comes back.

    Replies are received serialized (the stamp is read from the CDR bytes) so this process leaves
    the CPU to the one measured; a state counts as delivered when a message with its stamp comes
    back (each published state has a distinct stamp).
    """

    def __init__(self):
        self.node = rclpy.create_node("pipeline_benchmark")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._received: list[tuple[int, int]] = []  # (stamp ns, receipt ns)
        self._lock = threading.Lock()
        self._targets = {}
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def add_target(self, name: str, pid: int, in_topic: str, out_topic: str, out_type) -> None:
        def on_reply(raw: bytes):  # CDR: 4-byte encapsulation, then header.stamp (int32 sec, uint32 nanosec)
            now = self.node.get_clock().now().nanoseconds
            sec, nanosec = struct.unpack_from("<iI", raw, 4)
            with self._lock:
                self._received.append((sec * 1_000_000_000 + nanosec, now))

        self.node.create_subscription(out_type, out_topic, on_reply, 1000, raw=True)
        publisher = self.node.create_publisher(JointState, in_topic, 1000)
        self._targets[name] = (pid, publisher)

    def wait_for_subscribers(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() for _, p in self._targets.values()):
                return True
            time.sleep(0.05)
        return False

    def _publish(self, publisher, rate: int, seconds: float) -> tuple[set[int], float]:
        """Publish at ``rate`` Hz for ``seconds``; the stamps sent (ns) and the time taken (s)."""
        names = [f"joint_{i}" for i in range(1, 8)]
        stamps, sent, start = set(), 0, time.monotonic()
        while time.monotonic() - start < seconds:
            sent += 1
            msg = JointState(name=names, position=[0.001 * (sent % 1000)] * 7)
            now = self.node.get_clock().now()
            msg.header.stamp = now.to_msg()
            stamps.add(now.nanoseconds)
            publisher.publish(msg)
            time.sleep(max(0.0, start + sent / rate - time.monotonic()))
        return stamps, time.monotonic() - start

    def run(self, name: str, rate: int, seconds: float, warmup: float = 1.0) -> SoakResult:
        pid, publisher = self._targets[name]
        self._publish(publisher, rate, warmup)
        time.sleep(0.3)
        with self._lock:
            self._received.clear()
        cpu, rss = cpu_seconds(pid), rss_mib(pid)
        stamps, elapsed = self._publish(publisher, rate, seconds)
        cpu_fraction, rss_end = (cpu_seconds(pid) - cpu) / elapsed, rss_mib(pid)
        time.sleep(0.5)  # the last replies
        with self._lock:
            latencies = [1e-6 * (now - sent) for sent, now in self._received if sent in stamps]
        result = SoakResult(name, rate, len(stamps), elapsed, len(latencies), latencies, cpu_fraction, rss, rss_end)
        print(f"{name:5s} {rate} Hz: published {result.published / elapsed:.0f}/s, delivered "
              f"{100 * result.fraction:.2f} %, CPU {result.cpu_fraction:.2f} core, RSS {rss:.1f} -> {rss_end:.1f} MiB",
              flush=True)
        return result

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()


def pipeline(node_pid: int, rates, seconds) -> list[tuple[SoakResult, SoakResult]]:
    """Soak the node and the relay at each rate, alternately; [(node, relay)] per rate."""
    relay = subprocess.Popen([sys.executable, str(Path(__file__).with_name("joint_state_relay.py")), RELAY_IN, RELAY_OUT])
    soak = Soak()
    try:
        soak.add_target("node", node_pid, "/joint_states", "/ros_torch_kin/link_poses", LinkPoses)
        soak.add_target("relay", relay.pid, RELAY_IN, RELAY_OUT, JointState)
        if not soak.wait_for_subscribers():
            raise SystemExit("the node or the relay did not subscribe to joint_states")
        return [(soak.run("node", rate, seconds), soak.run("relay", rate, seconds)) for rate in rates]
    finally:
        soak.close()
        relay.send_signal(signal.SIGINT)
        relay.wait(10)


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
    if not pipeline_rows:
        return "\n".join(lines)
    lines += [
        "",
        f"joint_states → `~/link_poses`, a soak of {seconds:.0f} s per rate, next to a bare rclpy relay node (a "
        "process that subscribes the same JointState messages, sensor-data QoS, single-threaded executor, and "
        "republishes each as-is: the floor for any rclpy node). Each process gets the same load in turn. "
        "*Delivered*: states whose stamp came back; latency = receipt − stamp set when publishing; CPU from "
        "/proc/<pid>/stat (utime + stime over the soak, in cores); RSS from /proc/<pid>/status.",
        "",
        "| rate (Hz) | process | published (/s) | delivered | latency median (ms) | p99 (ms) | CPU (cores) | RSS start → end (MiB) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for pair in pipeline_rows:
        for r in pair:
            median = statistics.median(r.latencies_ms) if r.latencies_ms else float("nan")
            p99 = percentile(r.latencies_ms, 99) if r.latencies_ms else float("nan")
            lines.append(f"| {r.rate} | {'ros_torch_kin node' if r.target == 'node' else 'bare relay'} | "
                         f"{r.published / r.seconds:.0f} | {100 * r.fraction:.2f} % | {median:.2f} | {p99:.2f} | "
                         f"{r.cpu_fraction:.2f} | {r.rss_start_mib:.1f} → {r.rss_end_mib:.1f} |")
    kept = [node for node, _ in pipeline_rows if node.rate == 1000]
    if kept:
        node = kept[0]
        ok = node.fraction >= 0.99 and node.cpu_fraction < 0.5
        lines += ["", f"Target: at 1 kHz joint_states ≥ 99 % delivered with the node under half a core: "
                  f"**{'PASS' if ok else 'FAIL'}** ({100 * node.fraction:.2f} %, {node.cpu_fraction:.2f} core; "
                  f"RSS {node.rss_start_mib:.1f} → {node.rss_end_mib:.1f} MiB)."]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="BENCHMARKS.md to update")
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 100, 1000, 10000],
                        help="round trip batch sizes; none to measure the pipeline only")
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--rates", type=int, nargs="+", default=[500, 1000], help="joint_states rates (Hz)")
    parser.add_argument("--seconds", type=float, default=20.0, help="soak duration per rate and process (s)")
    parser.add_argument("--threads", type=int, default=1, help="torch_threads of the node (and the in-process calls)")
    args = parser.parse_args(argv)
    domain = int(os.environ.get("ROS_DOMAIN_ID") or 120 + os.getpid() % 30)
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    with NodeProcess({"torch_threads": args.threads, "max_batch": max(args.batches, default=1)},
                     domain_id=domain) as node:
        rclpy.init()
        client = KinematicsClient(timeout=60)
        if not client.wait_for_server(60):
            raise SystemExit(f"node did not start:\n{node.log()}")
        service_rows = round_trips(client, args.batches, args.repeats, args.threads)
        client.close()
        pipeline_rows = pipeline(node.process.pid, args.rates, args.seconds)
        rclpy.try_shutdown()
    text = markdown(service_rows, pipeline_rows, args.threads, args.repeats, args.seconds)
    print(text)
    if args.output:
        write_section(args.output, "service-benchmark", text)


if __name__ == "__main__":
    main()
