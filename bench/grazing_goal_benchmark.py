"""Goals that graze what they reach for: MBM Panda scenes, each goal drawn by the exact reference
alone (Pinocchio + coal on the MBM meshes) 0-3 mm from contact, planned to with the library's
planner, every success checked exactly.

    python bench/grazing_goal_benchmark.py --output BENCHMARKS.md     # section grazing_goals
    python bench/grazing_goal_benchmark.py --limit 2                   # 2 scenes per family, to stdout

A grasp's goal lies a millimetre or two from the object it grasps, closer than any sphere cover
is tight (the planner's leaves: 3 mm of slack); such goals are what a collision model that
refuses "in collision" where the meshes are clear fails on. The MBM problems' own goals are
clear (their closest 2.7 mm, most ≥ 10 mm), so this benchmark makes grazing ones from them,
**without the model under test**: for each MBM problem (the first ``--limit`` per family) it
walks from the problem's goal along random directions in joint space (max-norm steps of
``--walk-step`` rad, at most ``--walk-reach`` rad, inside the joint limits) until coal finds a
contact, then bisects that step on coal's distance until the configuration is clear by at most a
target drawn uniformly in (0, ``--band``] m (the last clear one: coal's distance in (0, target]).
Directions whose walk leaves the limits or the reach first are drawn again (at most
``--tries``); a problem with none is reported, not replaced. Every goal drawn is kept.

Each goal is planned to from the problem's start (``solve_trajectory``, default options, one
problem per call, one thread, the MBM benchmark's models); a success is checked exactly along
the motion (coal, every ``--exact-step`` rad). Reported per family: goals drawn, how many touch a
world obstacle (the others a self pair), how many the leaf spheres alone put in contact (what
the triangles decide), solved, colliding successes, refusals by reason, median plan time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mbm_benchmark import REPO, build_planner_models, failures, timed_solve  # noqa: E402,F401  (REPO: this checkout first)
from mbm_problems import FAMILIES, TOOL, load_problems, mbm_reference, mbm_resources, srdf_text, urdf_text  # noqa: E402
from report import commit, machine, speed_note, speed_probe, stamp, versions, write_section  # noqa: E402

from ros_torch_kin.optim import TrajectoryLimits, TrajectoryOptions  # noqa: E402


def grazing_goal(reference, goal: np.ndarray, lower: np.ndarray, upper: np.ndarray, rng: np.random.Generator,
                 band: float, step: float, reach: float, tries: int):
    """A configuration near ``goal`` (J,) that coal finds clear by at most a target drawn in
    (0, band] m, within [lower, upper], found by walking along random joint-space directions from
    ``goal`` (which coal must find clear) and bisecting the first step that ends in contact; or
    None after ``tries`` directions. -> (configuration, coal's distance, closest pair, target)."""
    if reference.clearance(goal) <= 0.0:
        return None
    target = float(rng.uniform(0.0, band)) or band
    for _ in range(tries):
        direction = rng.normal(size=goal.shape)
        direction /= np.abs(direction).max()  # max-norm 1: ``step`` is the largest joint's step
        clear, moved = 0.0, None
        for k in range(1, int(reach / step) + 1):
            q = goal + k * step * direction
            if np.any(q < lower) or np.any(q > upper):
                break
            if reference.clearance(q) <= 0.0:
                moved = k * step
                break
            clear = k * step
        if moved is None:
            continue
        low, high = clear, moved  # clear at low, in contact at high
        for _ in range(60):
            distance = reference.clearance(goal + low * direction)
            if distance <= target or high - low < 1e-9:
                break
            middle = 0.5 * (low + high)
            if reference.clearance(goal + middle * direction) > 0.0:
                low = middle
            else:
                high = middle
        q = goal + low * direction
        distance, pair = reference.closest(q)
        if 0.0 < distance <= target:
            return q, distance, pair, target
    return None


def run(args):
    torch.set_num_threads(args.threads)
    loads, probes = [os.getloadavg()[0]], [speed_probe()]
    problems = load_problems(args.families, args.limit)
    chain, verdict, cost = build_planner_models(urdf_text(), srdf_text(), [mbm_resources()])
    reference = mbm_reference(chain)
    lower, upper = (t.double().numpy() for t in (chain.lower_limits, chain.upper_limits))
    options, limits = TrajectoryOptions(), TrajectoryLimits.from_chain(chain)
    rng = np.random.default_rng(args.seed)
    rows, warmed = [], []
    for family in args.families:
        for problem in (p for p in problems if p.family == family):
            scene = problem.scene()
            reference.set_scene(scene)
            drawn = grazing_goal(reference, np.asarray(problem.goal, dtype=np.float64), lower, upper, rng, args.band,
                                 args.walk_step, args.walk_reach, args.tries)
            if drawn is None:
                rows.append(dict(family=family, index=problem.index, drawn=False))
                continue
            goal, distance, pair, target = drawn
            checker, cost_checker = verdict.with_scene(scene), cost.with_scene(scene)
            start, goal_q = (torch.as_tensor(q, dtype=chain.dtype) for q in (problem.start, goal))
            spheres_contact = bool(checker.without_triangles().in_collision(goal_q[None])[0])
            call = dict(link=TOOL, target_configuration=goal_q, options=options, limits=limits,
                        collision=checker, collision_cost=cost_checker)
            result, elapsed = timed_solve(chain, start, call, warmed)
            success = bool(result.success[0])
            hit, hit_pair = (reference.collides(result.positions[0].double().numpy(), args.exact_step) if success
                             else (False, ""))
            rows.append(dict(family=family, index=problem.index, drawn=True, distance=distance, pair=pair,
                             target=target, world=any(name in scene.ids for name in pair.split(" - ")),
                             spheres_contact=spheres_contact, success=success, time=elapsed, hit=hit,
                             hit_pair=hit_pair, failure=result.failure[0] if result.failure else ""))
        done = [r for r in rows if r["family"] == family and r["drawn"]]
        print(f"{family}: {len(done)} goals, {sum(r['success'] for r in done)} solved, "
              f"{sum(r['hit'] for r in done)} colliding, refusals "
              f"{', '.join(f'{k} ×{v}' for k, v in failures(done)) or 'none'}", flush=True)
    loads.append(os.getloadavg()[0])
    probes.append(speed_probe())
    info = dict(loads=loads, probes=probes, stamp=stamp(), machine=machine(), versions=versions(), commit=commit(),
                threads=args.threads, limit=args.limit, band=args.band, seed=args.seed, exact_step=args.exact_step,
                walk=(args.walk_step, args.walk_reach, args.tries))
    return rows, info


def markdown(rows, info) -> str:
    families = [f for f in FAMILIES if any(r["family"] == f for r in rows)]
    lines = [
        "## Goals grazing what they reach for (`bench/grazing_goal_benchmark.py`)",
        "",
        f"{info['stamp']}; {info['machine']}; {info['versions']}; torch threads {info['threads']}, float32, CPU. "
        f"**Load average {info['loads'][0]:.1f} → {info['loads'][1]:.1f}** on 2 shared cores{speed_note(info['probes'])}.",
        "",
        f"MBM Panda scenes (the first {info['limit']} problems per family). Each goal drawn by the exact reference alone "
        f"(Pinocchio + coal on the MBM meshes and the SRDF's self pairs), never by the model under test: from the "
        f"problem's goal along random joint-space directions ({info['walk'][0]:g} rad max-norm steps, at most "
        f"{info['walk'][1]:g} rad, within the limits, at most {info['walk'][2]} directions) to the first contact, then "
        f"bisected to a configuration coal finds clear by at most a target drawn uniformly in (0, "
        f"{1e3 * info['band']:g}] mm (seed {info['seed']}). Planned to from the problem's start (`solve_trajectory`, "
        f"default options, the MBM benchmark's models); every success checked exactly along the motion (coal, every "
        f"{info['exact_step']:g} rad). 'Spheres in contact': goals the tight model's leaf spheres alone put in contact "
        f"(refused without the triangle test).",
        "",
        "| family | goals drawn | of them touching a world obstacle (others: a self pair) | coal distance median (mm) | "
        "spheres in contact | solved | colliding successes | median plan (ms) | refusals |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for family in families + ["all"]:
        mine = [r for r in rows if family in ("all", r["family"])]
        drawn = [r for r in mine if r["drawn"]]
        solved = [r for r in drawn if r["success"]]
        median_distance = statistics.median(1e3 * r["distance"] for r in drawn) if drawn else math.nan
        median_time = statistics.median(1e3 * r["time"] for r in solved) if solved else math.nan
        name = "**all**" if family == "all" else family
        lines.append(
            f"| {name} | {len(drawn)}/{len(mine)} | {sum(r['world'] for r in drawn)} | {median_distance:.2f} | "
            f"{sum(r['spheres_contact'] for r in drawn)} | {len(solved)}/{len(drawn)} | {sum(r['hit'] for r in solved)} | "
            f"{median_time:.0f} | {', '.join(f'{k} ×{v}' for k, v in failures(drawn)) or 'none'} |")
    drawn = [r for r in rows if r["drawn"]]
    per_bin = []
    for low, high in ((0.0, 1e-4), (1e-4, 1e-3), (1e-3, 2e-3), (2e-3, math.inf)):
        inside = [r for r in drawn if low < r["distance"] <= high]
        span = f"{1e3 * low:g}-{1e3 * high:g} mm" if math.isfinite(high) else f"> {1e3 * low:g} mm"
        per_bin.append(f"{span}: {sum(r['success'] for r in inside)}/{len(inside)}")
    unsolved = [r["distance"] for r in drawn if not r["success"]]
    beyond = [r for r in drawn if r["distance"] > max(unsolved, default=0.0)]
    lines += ["", "Solved by coal's distance at the goal: " + "; ".join(per_bin) + ". " +
              (f"Every goal unsolved lies within {1e3 * max(unsolved):.3f} mm of contact; the {len(beyond)} farther "
               f"were all solved." if unsolved else "Every goal solved.") +
              f" Command: `python bench/grazing_goal_benchmark.py --limit {info['limit']}`."]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--limit", type=int, default=10, help="MBM problems per family (one goal each)")
    parser.add_argument("--band", type=float, default=0.003, help="m: the goals' coal distance lies in (0, band]")
    parser.add_argument("--walk-step", type=float, default=0.01, help="rad, the walk's max-norm step")
    parser.add_argument("--walk-reach", type=float, default=0.6, help="rad, the farthest the walk goes (max-norm)")
    parser.add_argument("--tries", type=int, default=20, help="directions drawn per problem")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--exact-step", type=float, default=0.005, help="rad, any joint, between checked configurations")
    parser.add_argument("--output", help="write the 'grazing_goals' section of this markdown file")
    parser.add_argument("--json", help="every goal's numbers")
    args = parser.parse_args(argv)
    rows, info = run(args)
    text = markdown(rows, info)
    print(text)
    if args.output:
        write_section(args.output, "grazing_goals", text)
    if args.json:
        Path(args.json).write_text(json.dumps(dict(info=info, goals=[
            {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()} for r in rows]), indent=1))


if __name__ == "__main__":
    main()
