"""Collision-aware motion generation on MotionBenchMaker-like scenes (Franka Panda), with every
plan checked by an exact reference (Pinocchio + coal on the URDF's own collision meshes), and the
same problems solved with collision avoidance off, side by side in one run.

    python bench/motion_benchmark.py --output BENCHMARKS.md --plot docs/motion_scene.png

Per family: ``--scenes`` scenes × ``--per-scene`` problems (start and goal configurations free of
collision, goal = the tool pose there; see bench/motion_scenes.py). One problem per solve (P = 1),
default options. Time: the whole ``solve_trajectory`` call.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from motion_scenes import FAMILIES, TOOL, ExactReference, make_scene, sample_problems  # noqa: E402
from report import example_robot_data_dir, machine, stamp, versions, write_section  # noqa: E402

from ros_torch_kin.collision import TreeSettings, robot_collision_model_from_urdf  # noqa: E402
from ros_torch_kin.kinematics import Chain  # noqa: E402
from ros_torch_kin.motion import solve_trajectory  # noqa: E402
from ros_torch_kin.optim import TrajectoryLimits, TrajectoryOptions  # noqa: E402


def build(robots: Path, tight_slack: float):
    """The Panda's chain, its two collision models (the tight verdict, the coarse cost; see
    ``collision.robot_collision_model``) and the exact reference on its own meshes."""
    urdf_path = robots / "panda_description/urdf/panda.urdf"
    urdf = urdf_path.read_text()
    srdf = (robots / "panda_description/srdf/panda.srdf").read_text()
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float32)
    share = robots.parents[1]
    model = robot_collision_model_from_urdf(urdf, chain, srdf=srdf, search_dirs=[str(share)],
                                            settings=TreeSettings(target_slack=tight_slack))
    reference = ExactReference(urdf_path, [share], chain, model.self_pairs.enabled)
    return chain, model.verdict, model.cost, reference


def run(args):
    torch.set_num_threads(args.threads)
    robots = example_robot_data_dir()
    chain, verdict, cost, reference = build(robots, args.tight_slack)
    options = TrajectoryOptions()
    limits = TrajectoryLimits.from_chain(chain)
    rows = []
    warm = True
    for family in args.families:
        for seed in range(args.scenes):
            scene = make_scene(family, seed)
            start, goal_q, goal = sample_problems(chain, reference, scene, args.per_scene, options.clearance)
            checker, cost_checker = verdict.with_scene(scene.scene), cost.with_scene(scene.scene)
            reference.set_scene(scene.scene)
            if warm:  # first call pays one-off costs (IK seed library, allocator)
                solve_trajectory(chain, start[0], TOOL, target_pose=goal[0], options=options, limits=limits,
                                 collision=checker, collision_cost=cost_checker)
                warm = False
            for p in range(start.shape[0]):
                row = dict(family=family, scene=seed, problem=p)
                for variant in ("on", "off") if p % 2 == 0 else ("off", "on"):  # alternate: drift cancels
                    collision = dict(collision=checker, collision_cost=cost_checker) if variant == "on" else {}
                    began = time.perf_counter()
                    result = solve_trajectory(chain, start[p], TOOL, target_pose=goal[p], options=options,
                                              limits=limits, **collision)
                    elapsed = time.perf_counter() - began
                    q = result.positions[0].double().numpy()
                    hit, pair = reference.collides(q, args.exact_step)
                    entry = dict(success=bool(result.success[0]), time=elapsed, hit=hit, pair=pair,
                                 length=float(np.linalg.norm(np.diff(q, axis=0), axis=1).sum()),
                                 failure=result.failure[0] if result.failure else "", iterations=result.iterations)
                    if variant == "on":
                        entry.update(timings=dict(result.timings), bound=float(result.clearance_bound[0]),
                                     min_clearance=float(result.min_clearance[0]),
                                     closest=" - ".join(result.closest_pair[0]))
                        if entry["success"]:
                            hit_margin, _ = reference.collides(q, args.exact_step, margin=options.clearance)
                            entry.update(hit_margin=hit_margin, exact=reference.min_distance(q, args.distance_step))
                        if p == 0 and seed == 0 and family == args.plot_family:
                            row["plot"] = (scene, result.positions[0].clone())
                    row[variant] = entry
                rows.append(row)
            done = [r for r in rows if r["family"] == family]
            print(f"{family} scene {seed}: {sum(r['on']['success'] for r in done)}/{len(done)} solved, "
                  f"median {1e3 * statistics.median(r['on']['time'] for r in done):.0f} ms, "
                  f"exact hits of successes {sum(r['on']['success'] and r['on']['hit'] for r in done)}, "
                  f"avoidance off hits {sum(r['off']['hit'] for r in done)}", flush=True)
    return rows, chain, verdict


def summarise(rows):
    on = [r["on"] for r in rows]
    ok = [e for e in on if e["success"]]
    times = [1e3 * e["time"] for e in on]
    off = [r["off"] for r in rows]
    return dict(
        n=len(rows), success=100 * len(ok) / len(on), median=statistics.median(times), p95=float(np.percentile(times, 95)),
        length=statistics.median(e["length"] for e in ok) if ok else math.nan,
        bound=1e3 * min(e["bound"] for e in ok) if ok else math.nan,
        exact=1e3 * min(e["exact"] for e in ok) if ok else math.nan,
        exact_median=1e3 * statistics.median(e["exact"] for e in ok) if ok else math.nan,
        hits=sum(e["hit"] for e in ok), hits_margin=sum(e["hit_margin"] for e in ok),
        off_success=100 * sum(e["success"] for e in off) / len(off),
        off_hits=100 * sum(e["hit"] for e in off) / len(off),
        off_median=statistics.median(1e3 * e["time"] for e in off),
        failures=sorted({(e["failure"], sum(x["failure"] == e["failure"] for x in on)) for e in on if e["failure"]}),
        timings={k: 1e3 * statistics.median(e["timings"][k] for e in on) for k in ("goals", "seeding", "iterations", "checking", "total")},
        iterations=statistics.median(e["iterations"] for e in on),
    )


def markdown(rows, args, options) -> str:
    families = [f for f in args.families if any(r["family"] == f for r in rows)]
    stats = {f: summarise([r for r in rows if r["family"] == f]) for f in families}
    total = summarise(rows)
    lines = [
        "## Collision-aware motion generation (`bench/motion_benchmark.py`)",
        "",
        f"{stamp()}; {machine()}; {versions()}; torch threads {args.threads}, float32, CPU; load average (1 min) at "
        f"start / end {args.loads[0]:.1f} / {args.loads[-1]:.1f} (shared machine). Franka Panda (example-robot-data): verdict on the tight "
        f"model (sphere trees, worst slack {1e3 * args.tight_slack:.0f} mm), cost on the coarse cover, SRDF "
        f"self pairs. Per family {args.scenes} scenes × {args.per_scene} problems (`bench/motion_scenes.py`: seeded "
        "MotionBenchMaker-like scenes; start and goal configurations ≥ the clearance from everything under the exact "
        "reference (coal; never filtered by the model under test), goal = the tool pose of the "
        "goal configuration, so reachable), one problem per `solve_trajectory` call (P = 1), default options "
        f"(clearance {1e3 * options.clearance:.0f} mm, check resolution {1e3 * options.check_resolution:.0f} mm, "
        f"{options.collision_seeds} optimised seeds of {options.goal_candidates} × (1 + {options.detours}) candidates, "
        f"≤ {options.max_iterations} iterations). Time: the whole call.",
        "",
        f"Exact check: Pinocchio + coal on the URDF's collision meshes against the obstacles as coal shapes and the "
        f"SRDF-enabled self pairs, at every configuration of the returned piecewise-linear motion {args.exact_step} rad "
        f"apart (any joint): 'hits' = some pair touches or overlaps; 'within clearance' = some pair is closer than the "
        f"clearance; exact min distance at configurations {args.distance_step} rad apart. Avoidance off: the same "
        "problems without a collision checker (the plain trajectory optimizer), checked the same way.",
        "",
        "| family | problems | success | median (ms) | p95 (ms) | joint path (rad, median) | clearance bound (mm, min) | exact min distance (mm, min / median) | successes that hit (exact) | successes within clearance (exact) | avoidance off: success / plans that hit | avoidance off median (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in list(stats.items()) + [("**all**", total)]:
        lines.append(
            f"| {name} | {s['n']} | {s['success']:.1f} % | {s['median']:.0f} | {s['p95']:.0f} | {s['length']:.2f} | "
            f"{s['bound']:.1f} | {s['exact']:.1f} / {s['exact_median']:.0f} | {s['hits']} | {s['hits_margin']} | "
            f"{s['off_success']:.0f} % / {s['off_hits']:.0f} % | {s['off_median']:.0f} |")
    lines += ["", "Where the time goes (median ms per call: collision-free IK goals, seeding and scoring, "
              "optimisation iterations, whole-motion checks; median iterations) and why problems failed:", "",
              "| family | goals | seeding | iterations | checking | total | iterations | failures |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, s in list(stats.items()) + [("**all**", total)]:
        t = s["timings"]
        failures = ", ".join(f"{reason} ×{count}" for reason, count in s["failures"]) or "none"
        lines.append(f"| {name} | {t['goals']:.0f} | {t['seeding']:.0f} | {t['iterations']:.0f} | {t['checking']:.0f} | "
                     f"{t['total']:.0f} | {s['iterations']:.0f} | {failures} |")
    lines += ["", "Targets (this CPU):", "", "| ≥ 98 % success overall | 0 colliding successes (exact) | median plan time ≤ 300 ms |",
              "|---|---|---|",
              f"| {'PASS' if total['success'] >= 98 else 'FAIL'} ({total['success']:.1f} %) | "
              f"{'PASS' if total['hits'] == 0 else 'FAIL'} ({total['hits']}) | "
              f"{'PASS' if total['median'] <= 300 else 'FAIL'} ({total['median']:.0f} ms) |"]
    if args.plot:
        lines += ["", f"![a solved {args.plot_family} problem]({args.plot})", "",
                  f"`{args.plot}`: the first {args.plot_family} problem, robot spheres at five waypoints, obstacles, tool path."]
    return "\n".join(lines)


def plot(path: Path, scene, positions: torch.Tensor, chain, checker) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    from ros_torch_kin.collision.sphere_centers import world_sphere_centers
    from ros_torch_kin.kinematics import forward_kinematics, world_transforms

    figure = plt.figure(figsize=(8, 7))
    axes = figure.add_subplot(projection="3d")
    for obstacle in scene.scene:
        if obstacle.kind != "box":
            continue
        half = np.array(obstacle.dimensions) / 2
        corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * half
        corners = corners @ obstacle.pose[:3, :3].T + obstacle.pose[:3, 3]
        faces = [[0, 1, 3, 2], [4, 5, 7, 6], [0, 1, 5, 4], [2, 3, 7, 6], [0, 2, 6, 4], [1, 3, 7, 5]]
        axes.add_collection3d(Poly3DCollection([corners[f] for f in faces], alpha=0.25, facecolor="tab:gray", edgecolor="k", linewidth=0.3))
    T = positions.shape[0]
    picks = np.linspace(0, T - 1, 5).round().astype(int)
    colours = plt.cm.viridis(np.linspace(0, 1, len(picks)))
    u, v = np.mgrid[0 : 2 * np.pi : 10j, 0 : np.pi : 6j]
    spheres = checker.spheres
    for colour, k in zip(colours, picks):
        centres = world_sphere_centers(world_transforms(chain, positions[k : k + 1]), spheres)[..., 0].numpy()
        for c, r in zip(centres, spheres.radii.numpy()):
            axes.plot_surface(c[0] + r * np.cos(u) * np.sin(v), c[1] + r * np.sin(u) * np.sin(v), c[2] + r * np.cos(v),
                              color=colour, alpha=0.35, linewidth=0)
    tool = forward_kinematics(chain, positions, links=TOOL)[:, :3, 3].numpy()
    axes.plot(tool[:, 0], tool[:, 1], tool[:, 2], "r-", linewidth=2, label="tool path")
    axes.set_xlim(-0.4, 1.0), axes.set_ylim(-0.7, 0.7), axes.set_zlim(0, 1.4)
    axes.set_box_aspect((1.4, 1.4, 1.4))
    axes.set_xlabel("x (m)"), axes.set_ylabel("y (m)"), axes.set_zlabel("z (m)")
    axes.set_title(f"{scene.family} (seed {scene.seed}): spheres at waypoints {', '.join(map(str, picks))}")
    axes.legend()
    figure.savefig(path, dpi=110, bbox_inches="tight")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--plot-family", default="shelf")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--per-scene", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tight-slack", type=float, default=TreeSettings().target_slack,
                        help="m, the verdict model's worst leaf slack (its tiers stay at 6 mm)")
    parser.add_argument("--exact-step", type=float, default=0.01)
    parser.add_argument("--distance-step", type=float, default=0.1)
    args = parser.parse_args(argv)
    args.loads = [os.getloadavg()[0]]
    rows, chain, verdict = run(args)
    args.loads.append(os.getloadavg()[0])
    text = markdown(rows, args, TrajectoryOptions())
    print(text)
    if args.output:  # before the picture: a plotting failure must not lose the run
        write_section(args.output, "motion", text)
    if args.plot:
        shown = [r for r in rows if "plot" in r]
        if shown:
            scene, positions = shown[0]["plot"]
            plot(args.plot, scene, positions, chain, verdict)


if __name__ == "__main__":
    main()
