"""The trajectory optimizer on random reachable goals, side by side with itself on plain autograd,
and its final-pose (IK) stage next to pytorch_kinematics' PseudoInverseIK.

Goals: poses of random in-limit configurations (90 % of each joint's range), starts likewise;
fixed random seed; one problem per solve (what a robot asks for), 32 waypoints × 16 seeds.

    python bench/trajectory_benchmark.py --output BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import example_robot_data_dir, machine, stamp, versions, write_section  # noqa: E402

from ros_torch_kin.kinematics import Chain, forward_kinematics  # noqa: E402
from ros_torch_kin.motion import solve_trajectory  # noqa: E402
from ros_torch_kin.optim import TrajectoryLimits, TrajectoryOptions, damped_least_squares_ik  # noqa: E402
from ros_torch_kin.robots import bundled_urdf  # noqa: E402

POSITION_TOLERANCE, ORIENTATION_TOLERANCE = 1e-3, math.radians(1.0)


ROBOTS = {
    "arm7": (bundled_urdf, "tool0"),
    "panda": (lambda: (example_robot_data_dir() / "panda_description/urdf/panda.urdf").read_text(), "panda_hand_tcp"),
}


def problems(chain: Chain, link: str, count: int, seed: int):
    """(start (count, J), target poses of ``link`` (count, 4, 4)), both from in-limit configurations."""
    g = torch.Generator().manual_seed(seed)
    lower, upper = 0.9 * chain.lower_limits.double(), 0.9 * chain.upper_limits.double()

    def sample():
        return (lower + torch.rand(count, chain.num_dofs, generator=g, dtype=torch.float64) * (upper - lower)).to(chain.dtype)

    start, goal = sample(), sample()
    return start, forward_kinematics(chain, goal, links=link)


def metrics(result, limits):
    """One solve's numbers; the motion's (within limits, jerk, duration) are those of the timed
    trajectory it returns (``result.trajectories[0]``, samples every 10 ms)."""
    q = result.positions[0].double()
    motion = result.trajectories[0]
    a, t = motion.accelerations.double(), motion.times
    jerk = (a[1:] - a[:-1]) / (t[1:] - t[:-1]).clamp(min=1e-12).unsqueeze(1)  # finite differences of the samples
    within = bool(limits.contains(q).all() and limits.contains(motion.positions).all()
                  and max(motion.peak["velocity"], motion.peak["acceleration"]) <= 1 + 1e-5)
    return dict(
        success=bool(result.success[0]), time=result.solve_time, position=float(result.position_error[0]),
        orientation=float(result.orientation_error[0]), length=float((q[1:] - q[:-1]).norm(dim=-1).sum()),
        jerk=float(jerk.abs().max()), within=within, iterations=result.iterations, duration=float(result.duration[0]),
    )


def run_optimizer(chain, link, count, seed):
    limits = TrajectoryLimits.from_chain(chain)
    start, target = problems(chain, link, count, seed)
    results = {"analytical": [], "autograd": []}
    for p in range(count):
        order = ("analytical", "autograd") if p % 2 == 0 else ("autograd", "analytical")  # alternate: drift cancels
        for variant in order:
            options = TrajectoryOptions(analytical_grad=variant == "analytical")
            result = solve_trajectory(chain, start[p], link, target_pose=target[p], options=options, limits=limits)
            results[variant].append(metrics(result, limits))
        if p % 20 == 19:
            a = results["analytical"]
            print(f"  {p + 1}/{count}: success {sum(r['success'] for r in a)}/{len(a)}, median "
                  f"{1e3 * statistics.median(r['time'] for r in a):.0f} ms", flush=True)
    return results


def run_ik(chain, urdf, link, count, seed, seeds=16, iterations=40):
    """Our batched DLS IK (the optimizer's seeding) and pk's PseudoInverseIK, same goals and retries."""
    import pytorch_kinematics as pk

    start, target = problems(chain, link, count, seed)
    lower, upper = chain.lower_limits, chain.upper_limits
    g = torch.Generator().manual_seed(seed + 1)
    ours_time, ours_ok = [], []
    for p in range(count):
        initial = (lower.clamp(min=-math.pi) + torch.rand(seeds, chain.num_dofs, generator=g).to(chain.dtype)
                   * (upper.clamp(max=math.pi) - lower.clamp(min=-math.pi)))
        initial[0] = start[p]
        begin = time.perf_counter()
        _, error = damped_least_squares_ik(chain, chain.link_index(link), target[p].expand(seeds, 4, 4), initial,
                                           lower, upper, iterations)
        ours_time.append(time.perf_counter() - begin)
        ours_ok.append(bool(((error[:, :3].norm(dim=-1) <= POSITION_TOLERANCE)
                             & (error[:, 3:].norm(dim=-1) <= ORIENTATION_TOLERANCE)).any()))
    serial = pk.SerialChain(pk.build_chain_from_urdf(urdf.encode()), link).to(dtype=chain.dtype)
    limits_pk = torch.tensor(serial.get_joint_limits(), dtype=chain.dtype).T
    ik = pk.PseudoInverseIK(serial, max_iterations=iterations, num_retries=seeds, joint_limits=limits_pk,
                            pos_tolerance=POSITION_TOLERANCE, rot_tolerance=ORIENTATION_TOLERANCE,
                            early_stopping_any_converged=True, lr=0.2)
    theirs_time, theirs_ok = [], []
    for p in range(count):
        goal = pk.Transform3d(matrix=target[p : p + 1])
        begin = time.perf_counter()
        solution = ik.solve(goal)
        theirs_time.append(time.perf_counter() - begin)
        theirs_ok.append(bool(solution.converged_any[0]))
    return dict(ours=(ours_ok, ours_time), pk=(theirs_ok, theirs_time))


def summary(rows):
    times = [1e3 * r["time"] for r in rows]
    return dict(
        success=100 * sum(r["success"] for r in rows) / len(rows),
        median=statistics.median(times), p95=float(np.percentile(times, 95)),
        position=1e3 * statistics.median(r["position"] for r in rows),
        position_max=1e3 * max(r["position"] for r in rows),
        orientation=math.degrees(statistics.median(r["orientation"] for r in rows)),
        orientation_max=math.degrees(max(r["orientation"] for r in rows)),
        length=statistics.median(r["length"] for r in rows), jerk=statistics.median(r["jerk"] for r in rows),
        within=100 * sum(r["within"] for r in rows) / len(rows),
        iterations=statistics.median(r["iterations"] for r in rows), duration=statistics.median(r["duration"] for r in rows),
    )


def markdown(all_results, count, threads) -> str:
    import pytorch_kinematics  # noqa: F401  (version)
    from importlib.metadata import version

    lines = [
        "## Trajectory optimizer (`bench/trajectory_benchmark.py`)",
        "",
        f"{stamp()}; {machine()}; {versions(('pytorch_kinematics', version('pytorch-kinematics')))}; "
        f"torch threads {threads}, float32, CPU. {count} random reachable goals per robot (poses of random "
        "configurations within 90 % of the joint ranges; starts likewise; fixed seed), one problem per solve, "
        "32 waypoints × 16 seeds, default options (≤ 10 L-BFGS iterations, 2 s budget). Success: final pose within "
        "1 mm and 1°. The analytical and autograd variants solve the same problems alternately (same seeds). "
        "Within limits, jerk and motion time: the timed trajectory each solve returns (time-optimal, no jerk limit: "
        "its jerk is finite differences of the accelerations at the 100 Hz samples).",
        "",
        "| robot | backward | success | median solve (ms) | p95 (ms) | position error median / max (mm) | orientation error median / max (°) | within limits | joint path length (rad, median) | max jerk of the timed motion (rad/s³, median) | motion time (s, median) | iterations (median) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for robot, (results, ik) in all_results.items():
        stats = {variant: summary(rows) for variant, rows in results.items()}
        for variant, s in stats.items():
            lines.append(
                f"| {robot} | {variant} | {s['success']:.1f} % | {s['median']:.0f} | {s['p95']:.0f} | "
                f"{s['position']:.4f} / {s['position_max']:.3f} | {s['orientation']:.4f} / {s['orientation_max']:.3f} | "
                f"{s['within']:.0f} % | {s['length']:.2f} | {s['jerk']:.1f} | {s['duration']:.2f} | {s['iterations']:.0f} |"
            )
        speedup = statistics.median(
            b["time"] / a["time"] for a, b in zip(results["analytical"], results["autograd"])
        )
        a = stats["analytical"]
        verdicts.append((robot, a, speedup, ik))
    lines += ["", "IK stage (the optimizer's seeding: batched damped least squares, 16 retries, 40 iterations) vs "
              "pytorch_kinematics `PseudoInverseIK` (16 retries, 40 iterations, joint limits, stops when any retry "
              "converges), same goals, one problem per call:", "",
              "| robot | solver | success | median time (ms) | p95 (ms) |", "|---|---|---:|---:|---:|"]
    for robot, _, _, ik in verdicts:
        for name, (ok, times) in (("ros_torch_kin DLS", ik["ours"]), ("pytorch_kinematics PseudoInverseIK", ik["pk"])):
            ms = [1e3 * t for t in times]
            lines.append(f"| {robot} | {name} | {100 * sum(ok) / len(ok):.1f} % | {statistics.median(ms):.1f} | "
                         f"{np.percentile(ms, 95):.1f} |")
    lines += ["", "Targets (this CPU):", "", "| robot | ≥ 99 % success within 1 mm / 1° | every waypoint within limits | "
              "median solve ≤ 100 ms | analytical backward ≥ 2× faster than autograd (median per-problem ratio) |",
              "|---|---|---|---|---|"]
    for robot, a, speedup, _ in verdicts:
        lines.append(
            f"| {robot} | {'PASS' if a['success'] >= 99 else 'FAIL'} ({a['success']:.1f} %) | "
            f"{'PASS' if a['within'] == 100 else 'FAIL'} ({a['within']:.0f} %) | "
            f"{'PASS' if a['median'] <= 100 else 'FAIL'} ({a['median']:.0f} ms) | "
            f"{'PASS' if speedup >= 2 else 'FAIL'} ({speedup:.2f}×) |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path)
    parser.add_argument("--robots", nargs="+", default=list(ROBOTS))
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    all_results = {}
    for robot in args.robots:
        load, link = ROBOTS[robot]
        urdf = load()
        chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float32)
        print(f"{robot}: optimizer on {args.count} goals", flush=True)
        warm_up = torch.zeros(chain.num_dofs).clamp(chain.lower_limits, chain.upper_limits)
        solve_trajectory(chain, warm_up, link, target_pose=forward_kinematics(chain, warm_up, links=link))
        results = run_optimizer(chain, link, args.count, args.seed)
        print(f"{robot}: IK comparison", flush=True)
        ik = run_ik(chain, urdf, link, args.count, args.seed)
        all_results[robot] = (results, ik)
    text = markdown(all_results, args.count, args.threads)
    print(text)
    if args.output:
        write_section(args.output, "trajectory-benchmark", text)


if __name__ == "__main__":
    main()
