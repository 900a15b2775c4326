#!/usr/bin/env python3
"""Side-by-side kinematics benchmark: ros_torch_kin ("ours") against pytorch_kinematics 0.10
("pk") and a Python loop over Pinocchio ("pin"), in one process, on the same inputs.

Operations, per robot and batch size B (float32 for ours and pk; Pinocchio is float64):

* ``forward``: world pose of every link, no grad. ours ``forward_kinematics(chain, q)``;
  pk ``forward_kinematics_tensor(th)``; pin ``forwardKinematics`` + ``updateFramePlacements``
  once per configuration.
* ``fwd+bwd``: end-effector pose, loss ``(T_ee * W).sum()`` for a fixed random W, ``.backward()``
  (both use their analytical backward); fresh leaf tensors every call.
* ``jacobian``: end-effector geometric Jacobian in the base frame. ours ``compute_jacobian``;
  pk ``SerialChain(ee).jacobian_tensor``; pin ``computeJointJacobians`` +
  ``updateFramePlacements`` + ``getFrameJacobian(LOCAL_WORLD_ALIGNED)`` per configuration.

Before any timing, every timed path is checked against the others at every batch size (ours vs
pk: all links, the gradient, the Jacobian; ours vs Pinocchio on a few configurations); a robot
whose results differ is reported and not timed.

Timing: the machine is assumed noisy (shared VM, other jobs), so measurements are interleaved:
for each round, each robot, each B, each operation, the implementations are measured back to
back (order reversed every other round) with ``torch.utils.benchmark.Timer.blocked_autorange``;
per round the ratios pk/ours and pin/ours are taken from those back-to-back measurements. The
report gives the median over rounds of each time and the median of the per-round ratios.

Peak memory of one fwd+bwd at B=16384 is measured in a fresh subprocess per robot and
implementation (``--memory-probe``): increase of ru_maxrss (CPU) or max_memory_allocated (CUDA).

Usage (from the repository root):
    .venv/bin/python bench/kinematics_benchmark.py --output BENCHMARKS.md   # full run (make bench)
    .venv/bin/python bench/kinematics_benchmark.py --quick                  # smoke test, stdout
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import timeit
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.benchmark import Timer  # noqa: E402

import report  # noqa: E402  (bench/report.py: machine facts and BENCHMARKS.md sections, shared)

from ros_torch_kin.kinematics import Chain, compute_jacobian, forward_kinematics  # noqa: E402
from ros_torch_kin.robots import DEFAULT_END_EFFECTOR, bundled_urdf  # noqa: E402
from ros_torch_kin.robots.generated import random_chain_urdf  # noqa: E402

THREADS = 2
DTYPE = torch.float32
ROBOTS = ("arm7", "panda", "chain30", "talos")
BATCHES = (1, 16, 256, 4096, 16384)
MEMORY_BATCH = 16384
OPERATIONS = ("forward", "fwd+bwd", "jacobian")
IMPLS = ("ours", "pk", "pin")
OP_IMPLS = {"forward": ("ours", "pk", "pin"), "fwd+bwd": ("ours", "pk"), "jacobian": ("ours", "pk", "pin")}
#: float32 results against each other and against Pinocchio's float64: max |difference| allowed
POSE_TOLERANCE = 1e-4
JACOBIAN_TOLERANCE = 1e-4
#: gradient of sum(T_ee * W) with W ~ N(0, 1): a sum of 16 terms, so relative to its magnitude
GRADIENT_TOLERANCE = 1e-4
PIN_CHECK_CONFIGS = 4
#: each measurement is the median of at least this many blocks (one call each for slow calls) ...
MIN_BLOCKS = 5
#: ... unless that takes longer than this many seconds
MAX_MEASUREMENT_SECONDS = 1.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------- robots
def deepest_leaf(urdf: str) -> str:
    """The link farthest (in joints) from the root: the end of a serial chain."""
    root = ET.fromstring(urdf)
    parent = {j.find("child").get("link"): j.find("parent").get("link") for j in root.iter("joint")}

    def depth(link):
        d = 0
        while link in parent:
            link, d = parent[link], d + 1
        return d

    links = [l.get("name") for l in root.iter("link")]
    return max(links, key=lambda l: (depth(l), links.index(l)))


@dataclass
class Robot:
    key: str
    description: str
    urdf: str
    ee: str


def load_robot(key: str) -> Robot:
    if key == "arm7":
        return Robot(key, "bundled 7-DOF arm", bundled_urdf(), DEFAULT_END_EFFECTOR)
    if key == "chain30":
        urdf = random_chain_urdf(0, 30)
        return Robot(key, "random_chain_urdf(0, 30): 30-DOF serial chain, skewed axes", urdf, deepest_leaf(urdf))
    robots = report.example_robot_data_dir()
    if key == "panda":
        urdf = (robots / "panda_description/urdf/panda.urdf").read_text()
        links = {l.get("name") for l in ET.fromstring(urdf).iter("link")}
        ee = "panda_hand_tcp" if "panda_hand_tcp" in links else "panda_hand"
        return Robot(key, "Franka Panda (example-robot-data), mimic finger", urdf, ee)
    if key == "talos":
        urdf = (robots / "talos_data/robots/talos_full_v2.urdf").read_text()
        links = [l.get("name") for l in ET.fromstring(urdf).iter("link")]
        candidates = ["gripper_left_base_link", "arm_left_7_link", "wrist_left_ft_tool_link"]
        ee = next((c for c in candidates if c in links), None)
        if ee is None:
            ee = next(l for l in links if l.startswith(("gripper_left", "arm_left")))
        return Robot(key, "PAL Talos humanoid (talos_full_v2, example-robot-data), branched, mimic grippers", urdf, ee)
    raise SystemExit(f"unknown robot '{key}'; choose from {', '.join(ROBOTS)}")


def mimic_relations(urdf: str) -> dict[str, tuple[str, float, float]]:
    """follower -> (leader, multiplier, offset), straight from the XML (not through our parser)."""
    relations = {}
    for joint in ET.fromstring(urdf).iter("joint"):
        mimic = joint.find("mimic")
        if mimic is not None and joint.get("type") != "fixed":
            relations[joint.get("name")] = (
                mimic.get("joint"), float(mimic.get("multiplier", 1.0)), float(mimic.get("offset", 0.0)))
    return relations


def joint_map(names, dof_names, mimics) -> tuple[np.ndarray, np.ndarray]:
    """Map our DOFs to another library's joint list: value_k = M[k] @ q + offset[k], (K, J), (K,).
    Mimic followers (independent joints in pk and in the mimic-free Pinocchio model) get
    multiplier * leader + offset, following mimic-of-mimic chains."""
    index = {n: i for i, n in enumerate(dof_names)}
    M = np.zeros((len(names), len(dof_names)))
    offset = np.zeros(len(names))
    for k, name in enumerate(names):
        multiplier, shift, leader, seen = 1.0, 0.0, name, set()
        while leader not in index:
            if leader not in mimics or leader in seen:
                raise ValueError(f"joint '{name}' is neither one of our DOFs nor a mimic of one")
            seen.add(leader)
            leader, m, o = mimics[leader]
            # value(name) = multiplier * value(leader) + shift with value(leader) = m * value(next) + o
            multiplier, shift = multiplier * m, shift + multiplier * o
        M[k, index[leader]] = multiplier
        offset[k] = shift
    return M, offset


@contextlib.contextmanager
def quiet_fds():
    """Silence fds 1 and 2 (pytorch_kinematics' URDF parser prints 'Unknown tag' lines)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


# ------------------------------------------------------------------------------ implementations
class Setup:
    """One robot on one device: our chain, pk's chain and serial chain, Pinocchio's model."""

    def __init__(self, robot: Robot, device: str, with_pin: bool = True):
        import pytorch_kinematics as pk

        self.robot, self.device = robot, torch.device(device)
        self.chain = Chain.from_urdf(robot.urdf, device=self.device, dtype=DTYPE)
        mimics = mimic_relations(robot.urdf)
        with quiet_fds():
            pc = pk.build_chain_from_urdf(robot.urdf.encode())
            serial = pk.SerialChain(pc, robot.ee).to(dtype=DTYPE, device=self.device)
        pc = pc.to(dtype=DTYPE, device=self.device)
        self.pk_chain, self.pk_serial = pc, serial
        self.pk_names = list(pc.get_joint_parameter_names())
        self.pk_ee = int(pc.get_frame_indices(robot.ee)[0])
        self.pk_frames = [pc.idx_to_frame[i] for i in range(len(pc.idx_to_frame))]
        self.pk_map = self._torch_map(*joint_map(self.pk_names, self.chain.joint_names, mimics))
        self.serial_names = list(serial.get_joint_parameter_names())
        self.serial_map = self._torch_map(*joint_map(self.serial_names, self.chain.joint_names, mimics))
        self.pin = None
        if with_pin:
            import pinocchio as pin

            self.pin = pin
            self.pin_model = pin.buildModelFromXML(robot.urdf)  # mimic followers are plain joints
            self.pin_data = self.pin_model.createData()
            self.pin_frame = self.pin_model.getFrameId(robot.ee, pin.BODY)
            if self.pin_frame >= len(self.pin_model.frames):
                raise ValueError(f"Pinocchio has no frame '{robot.ee}'")
            names = list(self.pin_model.names)[1:]
            M, offset = joint_map(names, self.chain.joint_names, mimics)
            self.pin_joints = [
                (self.pin_model.idx_qs[j], self.pin_model.nqs[j], self.pin_model.idx_vs[j], self.pin_model.nvs[j])
                for j in range(1, self.pin_model.njoints)]
            self.pin_M, self.pin_offset = M, offset

    def _torch_map(self, M, offset):
        return (torch.as_tensor(M.T, dtype=DTYPE, device=self.device),
                torch.as_tensor(offset, dtype=DTYPE, device=self.device))

    # inputs ---------------------------------------------------------------------------------
    def random_q(self, batch: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        lower = self.chain.lower_limits.cpu().double().clamp(min=-np.pi)
        upper = self.chain.upper_limits.cpu().double().clamp(max=np.pi)
        u = torch.rand(batch, self.chain.num_dofs, generator=g, dtype=torch.float64)
        return (lower + u * (upper - lower)).to(device=self.device, dtype=DTYPE)

    def pk_th(self, q):
        M, offset = self.pk_map
        return (q @ M + offset).contiguous()

    def serial_th(self, q):
        M, offset = self.serial_map
        return (q @ M + offset).contiguous()

    def pin_configs(self, q) -> list[np.ndarray]:
        """One float64 Pinocchio configuration per row of q (continuous joints as cos, sin)."""
        values = q.detach().cpu().double().numpy() @ self.pin_M.T + self.pin_offset  # (B, joints)
        Q = np.tile(self.pin.neutral(self.pin_model), (q.shape[0], 1))
        for k, (iq, nq, _, _) in enumerate(self.pin_joints):
            if nq == 1:
                Q[:, iq] = values[:, k]
            elif nq == 2:
                Q[:, iq], Q[:, iq + 1] = np.cos(values[:, k]), np.sin(values[:, k])
            else:
                raise ValueError(f"unexpected Pinocchio joint with nq={nq}")
        return [np.array(row) for row in Q]  # separate arrays, as a caller would hold them

    def pin_velocity_map(self) -> np.ndarray:
        """(nv, J): Pinocchio Jacobian columns -> our DOF columns (mimic columns summed in)."""
        V = np.zeros((self.pin_model.nv, self.chain.num_dofs))
        for k, (_, _, iv, nv) in enumerate(self.pin_joints):
            if nv == 1:
                V[iv] = self.pin_M[k]
        return V

    # the timed callables --------------------------------------------------------------------
    def callables(self, q: torch.Tensor, W: torch.Tensor) -> dict[tuple[str, str], callable]:
        chain, ee = self.chain, self.robot.ee
        pc, serial, pk_ee = self.pk_chain, self.pk_serial, self.pk_ee
        th, th_serial = self.pk_th(q), self.serial_th(q)

        def ours_forward():
            return forward_kinematics(chain, q)

        def pk_forward():
            return pc.forward_kinematics_tensor(th)

        def ours_fwd_bwd():
            leaf = q.detach().requires_grad_()
            (forward_kinematics(chain, leaf, links=ee) * W).sum().backward()
            return leaf.grad

        def pk_fwd_bwd():
            leaf = th.detach().requires_grad_()
            (pc.forward_kinematics_tensor(leaf)[pk_ee] * W).sum().backward()
            return leaf.grad

        def ours_jacobian():
            return compute_jacobian(chain, q, ee)

        def pk_jacobian():
            return serial.jacobian_tensor(th_serial)

        fns = {
            ("forward", "ours"): ours_forward, ("forward", "pk"): pk_forward,
            ("fwd+bwd", "ours"): ours_fwd_bwd, ("fwd+bwd", "pk"): pk_fwd_bwd,
            ("jacobian", "ours"): ours_jacobian, ("jacobian", "pk"): pk_jacobian,
        }
        if self.pin is not None:
            pin, model, data, frame = self.pin, self.pin_model, self.pin_data, self.pin_frame
            configs = self.pin_configs(q)
            fk, update = pin.forwardKinematics, pin.updateFramePlacements
            joint_jacobians, frame_jacobian, aligned = pin.computeJointJacobians, pin.getFrameJacobian, pin.LOCAL_WORLD_ALIGNED

            def pin_forward():
                for c in configs:
                    fk(model, data, c)
                    update(model, data)

            def pin_jacobian():
                for c in configs:
                    joint_jacobians(model, data, c)
                    update(model, data)
                    frame_jacobian(model, data, frame, aligned)

            fns[("forward", "pin")] = pin_forward
            fns[("jacobian", "pin")] = pin_jacobian
        return fns

    # correctness ----------------------------------------------------------------------------
    def check(self, q: torch.Tensor, W: torch.Tensor, pin_rows: int = 0) -> dict[str, float]:
        """Max |difference| of every timed path against the others; raises on a mismatch."""
        fns = self.callables(q, W)
        errors = {}
        with torch.no_grad():
            ours = fns[("forward", "ours")]()  # (B, L, 4, 4)
            theirs = fns[("forward", "pk")]()  # (frames, B, 4, 4)
        pk_index = {n: i for i, n in enumerate(self.pk_frames)}
        missing = [l for l in self.chain.link_names if l not in pk_index]
        if missing:
            raise AssertionError(f"pk has no frames for links {missing[:5]}")
        order = torch.tensor([pk_index[l] for l in self.chain.link_names], device=self.device)
        errors["forward ours-pk"] = (ours - theirs.index_select(0, order).transpose(0, 1)).abs().max().item()
        g_ours = fns[("fwd+bwd", "ours")]()
        g_pk = fns[("fwd+bwd", "pk")]() @ self.pk_map[0].T  # mimic followers' gradient onto leaders
        scale = max(1.0, g_pk.abs().max().item())
        errors["gradient ours-pk (relative)"] = (g_ours - g_pk).abs().max().item() / scale
        with torch.no_grad():
            J_ours = fns[("jacobian", "ours")]()
            J_pk = fns[("jacobian", "pk")]() @ self.serial_map[0].T
        errors["jacobian ours-pk"] = (J_ours - J_pk).abs().max().item()
        if self.pin is not None and pin_rows:
            pin, model, data = self.pin, self.pin_model, self.pin_data
            rows = sorted({0, q.shape[0] // 2, q.shape[0] - 1} | set(range(min(pin_rows, q.shape[0]))))
            configs = self.pin_configs(q[rows])
            V = self.pin_velocity_map()
            T_ours = ours[rows, self.chain.link_index(self.robot.ee)].double().cpu().numpy()
            pose_err = jac_err = 0.0
            for i, c in enumerate(configs):
                pin.computeJointJacobians(model, data, c)
                pin.updateFramePlacements(model, data)
                T = data.oMf[self.pin_frame].homogeneous
                J = pin.getFrameJacobian(model, data, self.pin_frame, pin.LOCAL_WORLD_ALIGNED) @ V
                pose_err = max(pose_err, np.abs(T_ours[i] - T).max())
                jac_err = max(jac_err, np.abs(J_ours[rows[i]].double().cpu().numpy() - J).max())
                pin.forwardKinematics(model, data, c)  # the timed forward path gives the same pose
                pin.updateFramePlacements(model, data)
                pose_err = max(pose_err, np.abs(T_ours[i] - data.oMf[self.pin_frame].homogeneous).max())
            errors["EE pose ours-pin"] = float(pose_err)
            errors["jacobian ours-pin"] = float(jac_err)
        limits = {"forward ours-pk": POSE_TOLERANCE, "EE pose ours-pin": POSE_TOLERANCE,
                  "jacobian ours-pk": JACOBIAN_TOLERANCE, "jacobian ours-pin": JACOBIAN_TOLERANCE,
                  "gradient ours-pk (relative)": GRADIENT_TOLERANCE}
        bad = {k: v for k, v in errors.items() if not v <= limits[k]}  # NaN fails too
        if bad:
            raise AssertionError(
                f"{self.robot.key}: results differ at B={q.shape[0]}: "
                + ", ".join(f"{k} max |Δ| = {v:.3g} > {limits[k]:g}" for k, v in bad.items()))
        return errors


# -------------------------------------------------------------------------------------- timing
def measure(fn, min_run_time: float, device: torch.device, grad: bool, min_blocks: int = MIN_BLOCKS,
            max_seconds: float = MAX_MEASUREMENT_SECONDS) -> float:
    """Median seconds per call of fn(): blocked_autorange, then more blocks of the same size until
    there are ``min_blocks`` (so that one stall of a slow call cannot be the median), unless that
    would take longer than ``max_seconds``."""
    timer = timeit.default_timer if device.type == "cpu" else torch.utils.benchmark.utils.timer.timer
    t = Timer("fn()", globals={"fn": fn}, num_threads=THREADS, timer=timer)
    with torch.set_grad_enabled(grad):
        m = t.blocked_autorange(min_run_time=min_run_time)
        blocks = list(m.raw_times)
        while len(blocks) < min_blocks and sum(blocks) < max_seconds:
            blocks.append(t.timeit(m.number_per_run).raw_times[0])
    return statistics.median(blocks) / m.number_per_run


@dataclass
class Results:
    #: times[device][robot][op][B][impl] = seconds per call, one per round
    times: dict = field(default_factory=dict)
    #: ratios[device][robot][op][B][impl] = impl time / ours time, one per round
    ratios: dict = field(default_factory=dict)
    #: memory[device][robot][impl] = MiB
    memory: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    failed: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    #: per measured group: fraction of its wall time with CPU contention (PSI), after retries
    stalls: list = field(default_factory=list)
    retried: int = 0

    def add(self, table, device, robot, op, B, impl, value):
        table.setdefault(device, {}).setdefault(robot, {}).setdefault(op, {}).setdefault(B, {}) \
            .setdefault(impl, []).append(value)

    def time(self, device, robot, op, B, impl):
        values = self.times.get(device, {}).get(robot, {}).get(op, {}).get(B, {}).get(impl)
        return statistics.median(values) if values else None

    def ratio(self, device, robot, op, B, impl):
        values = self.ratios.get(device, {}).get(robot, {}).get(op, {}).get(B, {}).get(impl)
        return statistics.median(values) if values else None

    def ratio_range(self, device, robot, op, B, impl):
        values = self.ratios.get(device, {}).get(robot, {}).get(op, {}).get(B, {}).get(impl)
        return (min(values), max(values)) if values else None


def run_benchmark(args, results: Results) -> None:
    setups, inputs = {}, {}
    for device in args.device:
        for key in args.robots:
            robot = load_robot(key)
            log(f"[{device}] {key}: building chains, checking results at every B")
            try:
                setup = Setup(robot, device, with_pin=device == "cpu")
                for B in args.batches:
                    q, W = setup.random_q(B, seed=B), torch.randn(B, 4, 4, generator=torch.Generator().manual_seed(B + 1))
                    W = W.to(device=setup.device, dtype=DTYPE)
                    errors = setup.check(q, W, pin_rows=PIN_CHECK_CONFIGS)
                    for name, value in errors.items():
                        previous = results.errors.setdefault(device, {}).setdefault(key, {}).get(name, 0.0)
                        results.errors[device][key][name] = max(previous, value)
                    inputs[(device, key, B)] = setup.callables(q, W)
            except Exception as error:  # noqa: BLE001 - report the robot and go on with the others
                results.failed.setdefault(device, {})[key] = f"{type(error).__name__}: {error}"
                log(f"[{device}] {key}: NOT TIMED: {error}")
                continue
            setups[(device, key)] = setup
            chain = setup.chain
            info = results.info.setdefault(key, {})
            info.update({
                "description": robot.description, "ee": robot.ee, "dofs": chain.num_dofs,
                "links": len(chain.link_names), "pk_joints": len(setup.pk_names), "pk_frames": len(setup.pk_frames),
                "serial_joints": len(setup.serial_names)})
            if setup.pin is not None:
                info["pin_nq"] = setup.pin_model.nq
            # warm-up, and leave Pinocchio out where one call would take too long
            for B in args.batches:
                for (op, impl), fn in list(inputs[(device, key, B)].items()):
                    start = time.perf_counter()
                    with torch.set_grad_enabled(op == "fwd+bwd"):
                        fn()
                    if impl == "pin" and time.perf_counter() - start > args.pin_max_seconds:
                        del inputs[(device, key, B)][(op, impl)]
                        results.skipped.append(f"{device} {key} B={B} {op} pin: one call took "
                                               f"{time.perf_counter() - start:.2f} s > {args.pin_max_seconds} s")
    started = time.perf_counter()
    groups_total = args.rounds * sum(len({op for op, _ in fns}) for fns in inputs.values())
    groups_done = 0
    results.info["pressure"] = []
    for r in range(args.rounds):
        results.info["pressure"].append(cpu_pressure())
        for device in args.device:
            for key in args.robots:
                if (device, key) not in setups:
                    continue
                for B in args.batches:
                    fns = inputs[(device, key, B)]
                    for op in OPERATIONS:
                        impls = [i for i in OP_IMPLS[op] if (op, i) in fns]
                        if r % 2:
                            impls.reverse()
                        # the group (all implementations of this op at this B) is measured back to
                        # back; if CPU contention disturbed it, it is measured again (bounded)
                        best, best_stall = None, None
                        for attempt in range(1 + args.retries):
                            stall_start, wall_start = cpu_stall_seconds(), time.perf_counter()
                            measured = {impl: measure(fns[(op, impl)], args.min_run_time, setups[(device, key)].device,
                                                      grad=op == "fwd+bwd") for impl in impls}
                            stall = stall_fraction(stall_start, wall_start)
                            if best is None or (stall is not None and stall < best_stall):
                                best, best_stall = measured, stall
                            elapsed = time.perf_counter() - started
                            on_budget = elapsed < args.time_budget * (groups_done + 1) / groups_total
                            if stall is None or stall <= args.max_stall or not on_budget:
                                break
                            if attempt < args.retries:
                                results.retried += 1
                        groups_done += 1
                        if best_stall is not None:
                            results.stalls.append(best_stall)
                        for impl in impls:
                            results.add(results.times, device, key, op, B, impl, best[impl])
                            if impl != "ours":
                                results.add(results.ratios, device, key, op, B, impl, best[impl] / best["ours"])
                    elapsed = time.perf_counter() - started
                    log(f"round {r + 1}/{args.rounds} [{device}] {key:8s} B={B:<6d} "
                        f"forward {measured_str(results, device, key, B)}  "
                        f"({groups_done}/{groups_total} groups, {results.retried} re-measured, {elapsed:.0f} s)")
    results.info["timing_seconds"] = time.perf_counter() - started


def measured_str(results, device, key, B):
    row = results.times[device][key]["forward"][B]
    return " ".join(f"{impl} {row[impl][-1] * 1e6:.1f}µs" for impl in IMPLS if impl in row)


def cpu_stall_seconds() -> float | None:
    """Linux PSI: total seconds in which some runnable task waited for a CPU (None if unavailable)."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return int(line.split("total=")[1].split()[0]) / 1e6
    except (OSError, IndexError, ValueError):
        return None


def stall_fraction(stall_start: float | None, wall_start: float) -> float | None:
    """Fraction of the wall time since wall_start in which some task waited for a CPU: > 0 means
    more runnable threads than cores (another job competing with our 2 threads)."""
    stall = cpu_stall_seconds()
    if stall is None or stall_start is None:
        return None
    return (stall - stall_start) / max(time.perf_counter() - wall_start, 1e-9)


def cpu_pressure() -> float | None:
    """Linux PSI: % of the last 10 s in which some runnable task waited for a CPU (contention)."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return float(line.split("avg10=")[1].split()[0])
    except (OSError, IndexError, ValueError):
        return None


# -------------------------------------------------------------------------------------- memory
def memory_probe(robot_key: str, impl: str, device: str) -> dict:
    """Run in a fresh process: peak memory increase of one fwd+bwd at MEMORY_BATCH."""
    torch.set_num_threads(THREADS)
    setup = Setup(load_robot(robot_key), device, with_pin=False)
    dev = setup.device

    def inputs(B, seed):
        q = setup.random_q(B, seed)
        W = torch.randn(B, 4, 4, generator=torch.Generator().manual_seed(seed)).to(dev, DTYPE)
        return setup.callables(q, W)[("fwd+bwd", impl)]

    small = inputs(16, 1)
    for _ in range(3):
        small()
    big = inputs(MEMORY_BATCH, 2)  # q, th and W at the big B exist before the baseline
    del small
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        big()
        torch.cuda.synchronize()
        increase = (torch.cuda.max_memory_allocated() - base) / 2**20
        method = "torch.cuda.max_memory_allocated increase"
    else:
        # ru_maxrss is a high-water mark, already raised by imports and chain construction; so hand
        # freed heap memory back (malloc_trim) and reset the mark to the current RSS first
        # (/proc/self/clear_refs "5", Linux >= 4.0), else small increases would read as zero.
        # Peak RSS. ru_maxrss would not do: it is a high-water mark already raised by imports and
        # chain construction, and in a child process it also includes the parent's RSS at fork. So
        # freed heap memory is handed back (malloc_trim), the high-water mark is reset to the
        # current RSS (/proc/self/clear_refs "5", Linux >= 4.0), and VmHWM is read afterwards.
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        base = proc_status_kib("VmRSS")
        big()
        increase = (proc_status_kib("VmHWM") - base) / 1024
        method = ("increase of peak RSS (VmHWM in /proc/self/status, reset to the current RSS just before "
                  "the call)")
    return {"robot": robot_key, "impl": impl, "device": device, "mib": increase, "method": method}


def proc_status_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise OSError(f"no {field_name} in /proc/self/status")


def run_memory_probes(args, results: Results) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    for device in args.device:
        for key in args.robots:
            if key in results.failed.get(device, {}):
                continue
            for impl in ("ours", "pk"):
                command = [sys.executable, str(Path(__file__).resolve()), "--memory-probe", key, impl, "--device", device]
                done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
                lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
                if done.returncode != 0 or not lines:
                    log(f"memory probe {device} {key} {impl} failed:\n{done.stderr[-2000:]}")
                    continue
                probe = json.loads(lines[-1])
                results.memory.setdefault(device, {}).setdefault(key, {})[impl] = probe["mib"]
                results.info.setdefault("memory_method", {})[device] = probe["method"]
                log(f"memory [{device}] {key} {impl}: {probe['mib']:.1f} MiB ({probe['method']})")


# ------------------------------------------------------------------------------------- report
def environment() -> dict:
    import pinocchio as pin
    from importlib.metadata import version

    os_name = platform.platform()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = f"{line.split('=', 1)[1].strip(chr(34))} ({platform.system()} {platform.release()})"
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": report.cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(), "os": os_name, "gpu": gpu,
        "python": platform.python_version(), "torch": torch.__version__,
        "pytorch_kinematics": version("pytorch_kinematics"), "pinocchio": pin.__version__, "commit": report.commit(),
    }


def stat(values, reduce) -> str:
    return f"{reduce(values):.0%}" if values else "–"


def us(seconds) -> str:
    if seconds is None:
        return "–"
    value = seconds * 1e6
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def ratio_str(value) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}×" if value < 10 else f"{value:.1f}×" if value < 100 else f"{value:.0f}×"


def targets(results: Results, device: str, args) -> list[list[str]]:
    """Rows: robot, then verdict and numbers for each target."""
    rows = []
    for key in args.robots:
        if key in results.failed.get(device, {}):
            rows.append([key] + ["not timed (results differ)"] * 5)
            continue
        row = [key]
        for op in ("forward", "fwd+bwd"):  # (a), (b)
            pairs = [(results.ratio(device, key, op, B, "pk"), B) for B in args.batches if B >= 256]
            pairs = [p for p in pairs if p[0] is not None]
            if not pairs:
                row.append("n/a (no B ≥ 256)")
                continue
            worst, B = min(pairs)
            low, high = results.ratio_range(device, key, op, B, "pk")
            row.append(f"{'PASS' if worst >= 5 else 'FAIL'}: min {worst:.1f}× at B={B} (rounds {low:.1f}–{high:.1f}×)")
        pairs = [(results.ratio(device, key, "forward", B, "pin"), B) for B in args.batches if B >= 4096]  # (c)
        pairs = [p for p in pairs if p[0] is not None]
        if pairs:
            worst, B = min(pairs)
            low, high = results.ratio_range(device, key, "forward", B, "pin")
            row.append(f"{'PASS' if worst >= 2 else 'FAIL'}: min {worst:.1f}× at B={B} (rounds {low:.1f}–{high:.1f}×)")
        else:
            row.append("n/a (no Pinocchio times at B ≥ 4096)")
        t1 = results.time(device, key, "forward", 1, "ours")  # (d)
        if key != "arm7":
            row.append(f"n/a ({us(t1)} µs)" if t1 is not None else "n/a")
        elif t1 is None:
            row.append("n/a (B=1 not measured)")
        else:
            row.append(f"{'PASS' if t1 * 1e6 <= 50 else 'FAIL'}: {us(t1)} µs")
        memory = results.memory.get(device, {}).get(key, {})  # (e)
        if "ours" in memory and "pk" in memory:
            ok = memory["ours"] <= memory["pk"]
            row.append(f"{'PASS' if ok else 'FAIL'}: {memory['ours']:.1f} vs {memory['pk']:.1f} MiB")
        else:
            row.append("n/a (not measured)")
        rows.append(row)
    return rows


def markdown_table(header, rows, align=None) -> list[str]:
    align = align or ["---:"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


TITLE = "Kinematics benchmark: ros_torch_kin vs pytorch_kinematics vs Pinocchio"
#: this script's section of the shared BENCHMARKS.md (markers as in bench/report.py)
SECTION = "kinematics-benchmark"


def write_output(path: Path, markdown: str, whole_file: bool) -> None:
    """Write our section of ``path`` between ``<!-- kinematics-benchmark:start/end -->``, keeping
    the sections other benchmarks (bench/service_benchmark.py, ...) wrote there; or, with
    ``whole_file``, replace the whole file."""
    if whole_file:
        path.write_text(markdown + "\n")
    else:
        report.write_section(path, SECTION, markdown)


def write_report(args, results: Results, env: dict, started: dt.datetime, wall: float, loads) -> str:
    h = "#" if args.whole_file else "##"  # a section of the shared BENCHMARKS.md sits one level down
    out = [f"{h} {TITLE}", ""]
    command = " ".join(["bench/kinematics_benchmark.py"] + args.argv)
    out += ["Generated by `bench/kinematics_benchmark.py`; do not edit by hand. Reproduce with `make bench`; this "
            f"{'file' if args.whole_file else 'section'} came from `{command}`.", ""]
    out += [f"- Date: {started:%Y-%m-%d %H:%M} UTC; run took {wall / 60:.1f} min",
            f"- Machine: {env['cpu']}, {env['cores']} cores, torch threads {THREADS}; {env['os']}"
            + (f"; GPU {env['gpu']}" if env["gpu"] else ""),
            f"- Load average (1 min) at start / end: {loads[0]:.2f} / {loads[1]:.2f}; CPU pressure at the start of "
            f"each round (PSI some avg10, % of time a runnable task waited for a CPU): "
            f"{', '.join('–' if p is None else f'{p:.0f}' for p in results.info.get('pressure', []))} "
            "(shared machine)",
            f"- Versions: Python {env['python']}, torch {env['torch']}, pytorch_kinematics {env['pytorch_kinematics']}, "
            f"Pinocchio {env['pinocchio']}, ros_torch_kin {env['commit']}",
            f"- Devices: {', '.join(args.device)}; batch sizes {', '.join(map(str, args.batches))}; "
            f"{args.rounds} round{'s' if args.rounds != 1 else ''}; min_run_time {args.min_run_time} s per measurement", ""]
    out += [f"{h}# Method", "",
            "- Same process, same inputs (random joint positions inside the limits), float32 for ours and pk; "
            "Pinocchio is float64 and called once per configuration from a Python loop (configurations prebuilt "
            "as numpy arrays; results stay in Pinocchio's `data`, not copied out).",
            "- forward: every link's world pose, no grad. fwd+bwd: end-effector pose, loss `(T_ee * W).sum()` "
            "with a fixed random W, `.backward()` (both libraries use their analytical backward; a fresh leaf "
            "tensor per call). Jacobian: end-effector geometric Jacobian in the base frame (pk: `SerialChain` "
            "to the end effector, its joints only; Pinocchio: `LOCAL_WORLD_ALIGNED`).",
            "- Checked before timing, at every batch size: all link poses, the fwd+bwd gradient and the Jacobian, "
            f"ours vs pk; end-effector pose and Jacobian ours vs Pinocchio on {PIN_CHECK_CONFIGS}+ configurations "
            "(max |Δ| per robot below). Mimic followers, which pk and the Pinocchio model treat as independent "
            "joints, are given multiplier × leader + offset.",
            "- Interleaved: in each round, for each robot, B and operation, the implementations are timed back "
            "to back (order reversed every other round) with `torch.utils.benchmark.Timer.blocked_autorange` "
            f"(median of its blocks, at least {MIN_BLOCKS} blocks unless that takes over {MAX_MEASUREMENT_SECONDS:g} s). "
            "Times are the median over rounds; ratios (pk/ours, pin/ours; > 1 means ours is faster) are the "
            "median of the per-round ratios, which is what counts on a noisy machine.",
            f"- Contention: a group whose wall time had some task waiting for a CPU more than {args.max_stall:.0%} "
            f"of the time (Linux PSI, /proc/pressure/cpu) was measured again, up to {args.retries} times while "
            f"within the time budget, keeping the least disturbed attempt: {results.retried} "
            f"re-measurement{'s' if results.retried != 1 else ''} for "
            f"{len(results.stalls)} groups; CPU contention during the kept groups: median "
            f"{stat(results.stalls, statistics.median)}, max {stat(results.stalls, max)} of their time.",
            f"- Peak memory: one fwd+bwd at B={MEMORY_BATCH} in a fresh subprocess per robot and library, after "
            "a warm-up at B=16, with q and W already allocated: increase of peak RSS (CPU; `ru_maxrss` itself "
            "cannot be used, see the script) or of `torch.cuda.max_memory_allocated` (CUDA).", ""]
    if args.plot:
        try:
            rel = os.path.relpath(Path(args.plot).resolve(), Path(args.output).resolve().parent) if args.output else args.plot
        except ValueError:
            rel = args.plot
        out += [f"![ns per configuration against batch size]({rel})", ""]
    for device in args.device:
        out += [f"{h}# Targets ({device})", ""]
        header = ["robot", "(a) forward ≥ 5× pk, B ≥ 256", "(b) fwd+bwd ≥ 5× pk, B ≥ 256",
                  "(c) forward ≥ 2× Pinocchio loop, B ≥ 4096", "(d) B=1 forward ≤ 50 µs (arm7)",
                  f"(e) fwd+bwd peak memory at B={MEMORY_BATCH} ≤ pk (ours vs pk)"]
        out += markdown_table(header, targets(results, device, args), [":---"] * len(header))
        out += ["", "Ratios are medians of per-round ratios (min … max over rounds in parentheses, at the worst B).", ""]
        for key in args.robots:
            info = results.info.get(key, {})
            out += [f"{h}# {key} ({device})", ""]
            if key in results.failed.get(device, {}):
                out += [f"**Not timed**: {results.failed[device][key]}", ""]
                continue
            out += [f"{info['description']}. Ours: {info['dofs']} DOFs, {info['links']} links; pk: "
                    f"{info['pk_joints']} joints, {info['pk_frames']} frames (serial chain to the end effector: "
                    f"{info['serial_joints']} joints)"
                    + (f"; Pinocchio nq {info['pin_nq']}" if info.get("pin_nq") else "")
                    + f". End effector `{info['ee']}`.", ""]
            errors = results.errors.get(device, {}).get(key, {})
            out += ["Max |Δ| over all checks: " + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()) + ".", ""]
            header = ["B", "fwd ours µs", "fwd pk µs", "fwd pin µs", "fwd ours ns/config", "fwd pk/ours", "fwd pin/ours",
                      "f+b ours µs", "f+b pk µs", "f+b pk/ours", "jac ours µs", "jac pk µs", "jac pin µs",
                      "jac pk/ours", "jac pin/ours"]
            rows = []
            for B in args.batches:
                t = lambda op, impl: results.time(device, key, op, B, impl)  # noqa: E731
                ratio = lambda op, impl: results.ratio(device, key, op, B, impl)  # noqa: E731
                per_config = t("forward", "ours")
                rows.append([str(B), us(t("forward", "ours")), us(t("forward", "pk")), us(t("forward", "pin")),
                             f"{per_config / B * 1e9:,.0f}" if per_config else "–",
                             ratio_str(ratio("forward", "pk")), ratio_str(ratio("forward", "pin")),
                             us(t("fwd+bwd", "ours")), us(t("fwd+bwd", "pk")), ratio_str(ratio("fwd+bwd", "pk")),
                             us(t("jacobian", "ours")), us(t("jacobian", "pk")), us(t("jacobian", "pin")),
                             ratio_str(ratio("jacobian", "pk")), ratio_str(ratio("jacobian", "pin"))])
            out += markdown_table(header, rows) + [""]
        memory = results.memory.get(device, {})
        if memory:
            out += [f"{h}# Peak memory of fwd+bwd at B={MEMORY_BATCH} ({device})", ""]
            rows = [[key, f"{m.get('ours', float('nan')):.1f}", f"{m.get('pk', float('nan')):.1f}"]
                    for key, m in memory.items()]
            out += markdown_table(["robot", "ours MiB", "pk MiB"], rows, [":---", "---:", "---:"])
            out += ["", f"Measured as: {results.info.get('memory_method', {}).get(device, '?')}.", ""]
    if results.skipped:
        out += [f"{h}# Skipped", ""] + [f"- {s}" for s in results.skipped] + [""]
    return "\n".join(out)


def plot(args, results: Results, env: dict, started: dt.datetime) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401

    robots = [k for k in args.robots if any(k in results.times.get(d, {}) for d in args.device)]
    if not robots:
        return
    ops = OPERATIONS
    fig, axes = plt.subplots(len(ops), len(robots), figsize=(4.2 * len(robots), 3.4 * len(ops)),
                             squeeze=False, sharex=True, sharey="row")
    styles = {"ours": ("C0", "o"), "pk": ("C1", "s"), "pin": ("C2", "^")}
    labels = {"ours": "ros_torch_kin", "pk": "pytorch_kinematics 0.10", "pin": "Pinocchio (Python loop)"}
    titles = {"forward": "forward, all links", "fwd+bwd": "fwd+bwd (EE loss)", "jacobian": "EE Jacobian"}
    for i, op in enumerate(ops):
        for j, key in enumerate(robots):
            ax = axes[i][j]
            for device in args.device:
                for impl in OP_IMPLS[op]:
                    points = [(B, results.time(device, key, op, B, impl)) for B in args.batches]
                    points = [(B, t / B * 1e9) for B, t in points if t is not None]
                    if not points:
                        continue
                    color, marker = styles[impl]
                    ax.plot(*zip(*points), color=color, marker=marker, linestyle="-" if device == "cpu" else "--",
                            label=labels[impl] + ("" if device == "cpu" else f" ({device})"))
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.grid(True, which="major", alpha=0.4)
            ax.grid(True, which="minor", alpha=0.15)
            info = results.info.get(key, {})
            ax.set_title(f"{key} ({info.get('dofs', '?')} DOF): {titles[op]}", fontsize=10)
            if i == len(ops) - 1:
                ax.set_xlabel("batch size B")
            if j == 0:
                ax.set_ylabel("ns per configuration")
            ax.set_xticks(args.batches)
            ax.set_xticklabels([str(b) for b in args.batches], fontsize=8)
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=10, frameon=False)
    fig.suptitle(f"Kinematics benchmark, float32, {THREADS} threads: {env['cpu']} ({env['cores']} cores), "
                 f"{started:%Y-%m-%d}; lower is better", fontsize=12)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", help="write the results as Markdown here (e.g. BENCHMARKS.md); default: stdout")
    p.add_argument("--whole-file", action="store_true",
                   help=f"replace the whole --output file (default: only our section, '{SECTION}', of it)")
    p.add_argument("--plot", help="PNG of ns per configuration against B (default with --output: docs/benchmark_fk.png; "
                                  "'' for none)")
    p.add_argument("--robots", nargs="+", choices=ROBOTS, default=list(ROBOTS))
    p.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--min-run-time", type=float, default=0.15, help="seconds per measurement (blocked_autorange)")
    p.add_argument("--pin-max-seconds", type=float, default=3.0,
                   help="leave a Pinocchio loop out where one call takes longer than this")
    p.add_argument("--max-stall", type=float, default=0.05,
                   help="re-measure a group when some task waited for a CPU more than this fraction of its time")
    p.add_argument("--retries", type=int, default=2, help="re-measurements of a disturbed group, at most")
    p.add_argument("--time-budget", type=float, default=540.0,
                   help="seconds for the timed rounds; re-measurements stop when behind this pace")
    p.add_argument("--json", help="also write every per-round measurement here (JSON)")
    p.add_argument("--quick", action="store_true", help="smoke test: B 1 and 256, 1 round, short measurements")
    p.add_argument("--device", nargs="+", choices=("cpu", "cuda"), help="default: cpu, and cuda if available")
    p.add_argument("--memory-probe", nargs=2, metavar=("ROBOT", "IMPL"), help=argparse.SUPPRESS)
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    args.argv = list(argv)
    if args.quick:
        args.batches, args.rounds, args.min_run_time = [1, 256], 1, 0.02
    if args.device is None:
        args.device = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if "cuda" in args.device and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available")
    if args.plot is None:
        args.plot = str(REPO / "docs" / "benchmark_fk.png") if args.output and not args.quick else ""
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(THREADS)
    if args.memory_probe:
        print(json.dumps(memory_probe(*args.memory_probe, args.device[0])))
        return 0
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    load_start = os.getloadavg()[0]
    env = environment()
    import ros_torch_kin

    if Path(ros_torch_kin.__file__).resolve().parent != REPO / "ros_torch_kin":
        log(f"warning: measuring ros_torch_kin from {ros_torch_kin.__file__}, not from this checkout")
        env["commit"] += f" (imported from {Path(ros_torch_kin.__file__).parent}, not this checkout)"
    log(f"{env['cpu']}, {env['cores']} cores, torch {env['torch']}, threads {THREADS}, load {load_start:.2f}")
    results = Results()
    run_benchmark(args, results)
    if not args.no_memory:
        run_memory_probes(args, results)
    wall = time.perf_counter() - t0
    if args.plot:
        plot(args, results, env, started)
        log(f"wrote {args.plot}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "environment": env, "argv": args.argv, "times_s": results.times, "ratios": results.ratios,
            "memory_mib": results.memory, "errors": results.errors, "failed": results.failed, "info": results.info,
            "stalls": results.stalls, "retried": results.retried, "skipped": results.skipped}, indent=1))
    report = write_report(args, results, env, started, wall, (load_start, os.getloadavg()[0]))
    if args.output:
        write_output(Path(args.output), report, args.whole_file)
        log(f"wrote {args.output} ({wall / 60:.1f} min)")
    else:
        print(report)
    return 1 if any(results.failed.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
