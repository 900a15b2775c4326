"""How long planned motions take: the planner's timed trajectory against TOPP-RA computed
independently on the same path under the same limits, beside the earlier uniform time scaling and
the jerk-limited variant (issue 15).

    python bench/time_parameterization_benchmark.py --output BENCHMARKS.md

Two sets of Franka Panda plans (example-robot-data), one problem per ``solve_trajectory`` call,
default options and limits (URDF velocity limits, 5 rad/s² acceleration):

* free space: ``--free`` seeded problems with configuration goals (start and goal uniform in 90 %
  of each joint's range), no collision model;
* the motion benchmark's scenes (``bench/motion_scenes.py``; ``--scenes`` per family ×
  ``--per-scene`` problems, pose goals, the tight model as verdict, the coarse one as cost): the
  timed curve is re-checked by the planner, and every success's trajectory, sampled at 1 kHz, is
  checked by the exact reference (coal on the URDF's meshes).

Reference: toppra's own ``SplineInterpolator`` through the returned waypoints at their cumulative
chord lengths (the path the planner times) and ``TOPPRA`` with 2,000 grid points and its
constant-acceleration parametrizer. Ratios are durations over that reference; the jerk-limited
variant (``--jerk`` rad/s³ on every joint) solves a harder problem, so its ratio is its price.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import example_robot_data_dir, machine, stamp, versions, write_section  # noqa: E402

from ros_torch_kin.collision import TreeSettings  # noqa: E402
from ros_torch_kin.kinematics import Chain  # noqa: E402
from ros_torch_kin.motion import solve_trajectory, time_parameterize  # noqa: E402
from ros_torch_kin.motion.time_optimal import TimingRequest, retime  # noqa: E402
from ros_torch_kin.optim import TrajectoryLimits, TrajectoryOptions  # noqa: E402


def reference_duration(positions: np.ndarray, velocity: np.ndarray, acceleration: np.ndarray) -> float:
    """TOPP-RA (toppra's own spline and 2,000 grid points) on the spline through the waypoints."""
    import toppra
    import toppra.algorithm
    import toppra.constraint

    q = positions[np.concatenate(([True], np.abs(np.diff(positions, axis=0)).max(1) > 1e-12))]
    if q.shape[0] < 2:
        return 0.0
    knots = np.concatenate(([0.0], np.cumsum(np.linalg.norm(np.diff(q, axis=0), axis=1))))
    solver = toppra.algorithm.TOPPRA(
        [toppra.constraint.JointVelocityConstraint(velocity), toppra.constraint.JointAccelerationConstraint(acceleration)],
        toppra.SplineInterpolator(knots, q), gridpt_min_nb_points=2000, parametrizer="ParametrizeConstAccel")
    return float(solver.compute_trajectory(0.0, 0.0).duration)


def measure(result, limits: TrajectoryLimits, jerk: float, validator=None) -> dict:
    """Durations of one plan: uniform, the planner's timed one, the jerk-limited one, the reference."""
    q = result.positions[0].detach().double()
    numpy = lambda t: t.detach().double().numpy()  # noqa: E731
    request = TimingRequest(velocity=numpy(limits.velocity), acceleration=numpy(limits.acceleration),
                            lower=numpy(limits.lower), upper=numpy(limits.upper))
    began = time.perf_counter()
    jerky = retime(q, dataclasses.replace(request, jerk=np.full(q.shape[1], jerk)), validator)
    jerk_time = time.perf_counter() - began
    timed = result.trajectories[0]
    reference = reference_duration(q.numpy(), request.velocity, request.acceleration)
    step, _, _ = time_parameterize(q.unsqueeze(0), limits.velocity.double(), limits.acceleration.double())
    uniform = float(step[0]) * (q.shape[0] - 1)  # the earlier parameterisation, for comparison
    return dict(uniform=uniform, timed=timed.duration, method=timed.method, reference=reference,
                jerk=jerky.duration, jerk_method=jerky.method, jerk_time=jerk_time,
                timing=result.timings.get("time_parameterization", math.nan), peak=timed.peak, jerk_peak=jerky.peak)


def free_space(chain: Chain, count: int, jerk: float) -> list[dict]:
    limits = TrajectoryLimits.from_chain(chain)
    options = TrajectoryOptions()
    g = torch.Generator().manual_seed(15)
    middle, half = (chain.lower_limits.double() + chain.upper_limits.double()) / 2, 0.45 * (chain.upper_limits - chain.lower_limits).double()
    lower, upper = middle - half, middle + half  # the middle 90 % of each joint's range
    rows = []
    solve_trajectory(chain, lower.to(chain.dtype), target_configuration=upper.to(chain.dtype), options=options,
                     limits=limits)  # warm-up: imports, allocator
    for k in range(count):
        start, goal = ((lower + torch.rand(chain.num_dofs, generator=g, dtype=torch.float64) * (upper - lower)).to(chain.dtype)
                       for _ in range(2))
        result = solve_trajectory(chain, start, target_configuration=goal, options=options, limits=limits)
        if not bool(result.success[0]):
            continue
        rows.append(measure(result, limits, jerk))
        print(f"free {k}: uniform {rows[-1]['uniform'] / rows[-1]['reference']:.3f}, timed "
              f"{rows[-1]['timed'] / rows[-1]['reference']:.4f} ({rows[-1]['method']}), jerk-limited "
              f"{rows[-1]['jerk'] / rows[-1]['reference']:.3f}", flush=True)
    return rows


def scenes(args, jerk: float) -> list[dict]:
    from motion_benchmark import build
    from motion_scenes import FAMILIES, TOOL, make_scene, sample_problems

    from ros_torch_kin.motion import MotionValidator

    chain, verdict, cost, reference = build(example_robot_data_dir(), TreeSettings().target_slack)
    options = dataclasses.replace(TrajectoryOptions(), control_period=1e-3)
    sampled = dataclasses.replace(options, sample_period=1e-3)  # the exact check runs on the 1 kHz samples
    limits = TrajectoryLimits.from_chain(chain)
    rows = []
    for family in FAMILIES:
        for seed in range(args.scenes):
            scene = make_scene(family, seed)
            start, _, goal = sample_problems(chain, reference, scene, args.per_scene, options.clearance)
            checker, cost_checker = verdict.with_scene(scene.scene), cost.with_scene(scene.scene)
            reference.set_scene(scene.scene)
            validator = MotionValidator(checker, max(options.required_clearance, options.validity_margin),
                                        options.validity_margin, options.check_resolution, options.approach)
            for p in range(start.shape[0]):
                result = solve_trajectory(chain, start[p], TOOL, target_pose=goal[p], options=sampled, limits=limits,
                                          collision=checker, collision_cost=cost_checker)
                if not bool(result.success[0]):
                    continue
                row = measure(result, limits, jerk, validator)
                samples = result.trajectories[0].positions.double().numpy()
                row["hit"], row["pair"] = reference.collides(samples, 0.01)
                row["family"] = family
                rows.append(row)
                print(f"{family} {seed}/{p}: timed {row['timed'] / row['reference']:.4f} ({row['method']}), jerk "
                      f"{row['jerk'] / row['reference']:.3f} ({row['jerk_method']}), exact hit {row['hit']} {row['pair']}",
                      flush=True)
    return rows


def summary(rows: list[dict]) -> dict:
    ratio = lambda key: [r[key] / r["reference"] for r in rows if r["reference"] > 0]  # noqa: E731
    out = {}
    for key in ("uniform", "timed", "jerk"):
        values = ratio(key)
        out[key] = (statistics.median(values), min(values), max(values))
    out["timing"] = 1e3 * statistics.median(r["timing"] for r in rows)
    out["jerk_time"] = 1e3 * statistics.median(r["jerk_time"] for r in rows)
    out["methods"] = {m: sum(r["method"] == m for r in rows) for m in sorted({r["method"] for r in rows})}
    out["jerk_methods"] = {m: sum(r["jerk_method"] == m for r in rows) for m in sorted({r["jerk_method"] for r in rows})}
    out["peak"] = max(max(r["peak"]["velocity"], r["peak"]["acceleration"]) for r in rows)
    out["jerk_peak"] = max(max(r["jerk_peak"].values()) for r in rows)
    out["duration"] = statistics.median(r["timed"] for r in rows)
    return out


def markdown(free: list[dict], scene_rows: list[dict], args) -> str:
    fmt = lambda t: f"{t[0]:.3f} ({t[1]:.3f}–{t[2]:.3f})"  # noqa: E731
    load = os.getloadavg()
    lines = [
        "## Time parameterisation (`bench/time_parameterization_benchmark.py`)",
        "",
        f"{stamp()}; {machine()}; {versions()}; torch threads 1, float32, CPU; load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min) on a shared machine (times are noisy; "
        "the durations are not). Franka Panda, default options and limits (URDF velocity limits, 5 rad/s²). "
        "Each plan's motion duration over TOPP-RA's on the same path and limits, computed independently (toppra's "
        "own `SplineInterpolator` through the waypoints at their chord lengths, 2,000 grid points, "
        "constant-acceleration parametrizer); median (min–max). 'uniform': the earlier parameterisation (the "
        "waypoints uniformly time-scaled, at rest at both ends); 'timed': the planner's trajectory (TOPP-RA on the "
        "spline, verified at 1 kHz, the curve re-checked for collisions); 'jerk-limited': the same path with "
        f"{args.jerk:g} rad/s³ on every joint as well (TOPP-RA's path profile averaged over a window, stretched until "
        "every 1 kHz sample is within velocity, acceleration and jerk limits), over the same reference (which has no "
        "jerk limit). Where a joint's cubic would leave its position limits the planner interpolates it monotonically "
        "(PCHIP), so its path differs from the reference's there (the ratios above 1.01).",
        "",
        "| plans | problems solved | uniform / TOPP-RA | timed / TOPP-RA | jerk-limited / TOPP-RA | median duration (s) | "
        "timing how (timed; jerk-limited) | peak v or a / limit at 1 kHz (timed; jerk-limited incl. jerk) | "
        "timing cost (ms, median: timed incl. curve check; jerk-limited) |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for name, rows, asked in (("free space, configuration goals", free, args.free),
                              ("motion benchmark scenes, pose goals", scene_rows, 6 * args.scenes * args.per_scene)):
        if not rows:
            continue
        s = summary(rows)
        methods = ", ".join(f"{m} ×{n}" for m, n in s["methods"].items())
        jerk_methods = ", ".join(f"{m} ×{n}" for m, n in s["jerk_methods"].items())
        lines.append(f"| {name} | {len(rows)} / {asked} | {fmt(s['uniform'])} | {fmt(s['timed'])} | {fmt(s['jerk'])} | "
                     f"{s['duration']:.2f} | {methods}; {jerk_methods} | {s['peak']:.6f}; {s['jerk_peak']:.6f} | "
                     f"{s['timing']:.0f}; {s['jerk_time']:.0f} |")
    if scene_rows:
        hits = [r for r in scene_rows if r["hit"]]
        lines += ["", f"Scenes: every success's timed trajectory sampled at 1 kHz and checked by the exact reference "
                  f"(coal on the URDF's meshes, configurations ≤ 0.01 rad apart): {len(hits)} of {len(scene_rows)} touch "
                  "anything" + (f" ({', '.join(r['pair'] for r in hits)})" if hits else "") + "."]
    timed = summary(free + scene_rows)["timed"][0] if free or scene_rows else math.nan
    lines += ["", "Target: median duration ≤ 1.05 × TOPP-RA's on the same path and limits: "
              f"{'PASS' if timed <= 1.05 else 'FAIL'} ({timed:.3f} over all plans above)."]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path)
    parser.add_argument("--free", type=int, default=30, help="free-space problems")
    parser.add_argument("--scenes", type=int, default=1, help="scenes per motion-benchmark family (0: none)")
    parser.add_argument("--per-scene", type=int, default=2)
    parser.add_argument("--jerk", type=float, default=50.0, help="rad/s³, every joint, for the jerk-limited variant")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    robots = example_robot_data_dir()
    chain = Chain.from_urdf((robots / "panda_description/urdf/panda.urdf").read_text(), device="cpu", dtype=torch.float32)
    free = free_space(chain, args.free, args.jerk)
    scene_rows = scenes(args, args.jerk) if args.scenes > 0 else []
    text = markdown(free, scene_rows, args)
    print(text)
    if args.output:
        write_section(args.output, "time_parameterization", text)


if __name__ == "__main__":
    main()
