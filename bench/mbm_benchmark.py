"""Collision-aware planning on the public MotionBenchMaker problems (Franka Panda, 7 families × 100,
as VAMP 0.6.4 ships them; see bench/mbm_problems.py), every success checked by the exact reference
(Pinocchio + coal on the MBM URDF's own collision meshes), next to VAMP's and cuRobo's figures.

    python bench/mbm_benchmark.py --output BENCHMARKS.md --json mbm.json
    python bench/mbm_benchmark.py --limit 3                      # 3 problems per family, to stdout
    python bench/mbm_benchmark.py --robot ur5 --limit 20 --output BENCHMARKS.md   # section mbm_ur5

``--robot ur5`` / ``--robot fetch``: the same 7 families × 100 the sdist ships for the UR5 (Robotiq
85 gripper) and the Fetch (torso + arm, base fixed), written to the sections ``mbm_ur5`` /
``mbm_fetch``; the joints planned are those the requests' goals constrain (see bench/mbm_problems.py).

One problem per ``solve_trajectory`` call (P = 1), default TrajectoryOptions, joint-space goal
(the request's joint constraints), float32 on the CPU with ``--threads`` torch threads. Time: the
whole call (the scene's checkers are made before it and timed apart).
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

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # measure this checkout's ros_torch_kin (the commit the report names), not an installed copy
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from mbm_problems import FAMILIES, ROBOTS, load_problems, mbm_reference, mbm_resources, srdf_text, urdf_text  # noqa: E402
from report import commit, machine, speed_note, speed_probe, stamp, versions, write_section  # noqa: E402

from ros_torch_kin.collision import TreeSettings, robot_collision_model_from_urdf  # noqa: E402
from ros_torch_kin.kinematics import Chain  # noqa: E402
from ros_torch_kin.motion import GOAL_IN_COLLISION, START_IN_COLLISION, solve_trajectory  # noqa: E402
from ros_torch_kin.optim import TrajectoryLimits, TrajectoryOptions  # noqa: E402

ROBOT_TITLES = {"panda": "Franka Panda", "ur5": "UR5", "fetch": "Fetch"}
ROBOT_NOTES = {
    "ur5": "UR5 with a Robotiq 85 gripper and force-torque sensor, gripper joints fixed at 0, 6 arm joints planned, "
           "the scenes' world at the URDF root `offset_link`",
    "fetch": "Fetch with its base fixed, head at 0, fingers fixed 0.05 m open, `torso_lift_joint` and the 7 arm joints "
             "planned (the requests' wheel and bellows joints have no geometry in the URDF), the scenes in `base_link`, "
             "the URDF root",
}

#: other planners on the same 700 problems, cited (not rerun here)
CITED = (
    ("VAMP 0.6.4, CPU (SIMD), plan + simplify", "699/699 valid", "0.24", "1.0 (p95)",
     "measured on this machine, one core, by a previous engineer"),
    ("cuRobo (published)", "99.85 %", "31", "125 (p98)", "RTX 6000 Ada, on MBM + MPiNets problems"),
)


def build_planner_models(urdf: str, srdf: str, search_dirs, tight_slack: float = TreeSettings().target_slack):
    """The chain and the planner's collision models: the verdict on the tight model (sphere trees,
    leaves within ``tight_slack`` m of the meshes) and the cost on the coarse spheres, both with
    the SRDF's self pairs (always-in-collision pairs only where the tight model says so). The one
    place to change the collision model."""
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float32)
    dirs = [str(d) for d in search_dirs]
    model = robot_collision_model_from_urdf(urdf, chain, srdf=srdf, search_dirs=dirs,
                                            settings=TreeSettings(target_slack=tight_slack))
    return chain, model.verdict, model.cost


def run(args):
    torch.set_num_threads(args.threads)
    loads, probes = [os.getloadavg()[0]], [speed_probe()]
    began = time.perf_counter()
    robot = ROBOTS[args.robot]
    problems = load_problems(args.families, args.limit, robot)
    load_time = time.perf_counter() - began
    moment = time.perf_counter()
    chain, verdict, cost = build_planner_models(urdf_text(robot), srdf_text(robot), [mbm_resources(robot)],
                                                args.tight_slack)
    build_time = time.perf_counter() - moment
    if chain.joint_names != robot.arm_joints:
        raise RuntimeError(f"the URDF's joints {chain.joint_names} are not the planned {robot.arm_joints}")
    reference = mbm_reference(chain, robot)
    options = TrajectoryOptions(search_step=args.search_step, search_resolution=args.search_resolution)
    limits = TrajectoryLimits.from_chain(chain)
    rows, reference_time, warmed = [], 0.0, []
    for family in args.families:
        for problem in (p for p in problems if p.family == family):
            moment = time.perf_counter()
            scene = problem.scene()
            checker, cost_checker = verdict.with_scene(scene), cost.with_scene(scene)
            scene_time = time.perf_counter() - moment
            start, goal = (torch.as_tensor(q, dtype=chain.dtype) for q in (problem.start, problem.goal))
            call = dict(link=robot.tool, target_configuration=goal, options=options, limits=limits,
                        collision=checker, collision_cost=cost_checker)
            result, elapsed = timed_solve(chain, start, call, warmed)
            moment = time.perf_counter()
            reference.set_scene(scene)
            start_clearance, start_pair = reference.closest(problem.start)
            goal_clearance, goal_pair = reference.closest(problem.goal)
            q = result.positions[0].double().numpy()
            success = bool(result.success[0])
            hit, pair = reference.collides(q, args.exact_step) if success else (False, "")
            reference_time += time.perf_counter() - moment
            rows.append(dict(
                family=family, index=problem.index, success=success, time=elapsed, scene_time=scene_time,
                failure=result.failure[0] if result.failure else "", stopped=result.stopped,
                iterations=result.iterations, hit=hit, pair=pair,
                length=float(np.linalg.norm(np.diff(q, axis=0), axis=1).sum()),
                duration=float(result.duration[0]), timings={k: float(v) for k, v in result.timings.items()},
                start_clearance=start_clearance, start_pair=start_pair, goal_clearance=goal_clearance, goal_pair=goal_pair,
                closest=" - ".join(result.closest_pair[0]) if result.closest_pair else "",
                min_clearance=float(result.min_clearance[0]) if result.min_clearance is not None else math.nan))
        done = [r for r in rows if r["family"] == family]
        print(f"{family}: {sum(r['success'] for r in done)}/{len(done)} solved, "
              f"median {1e3 * statistics.median(r['time'] for r in done):.1f} ms, "
              f"colliding successes {sum(r['hit'] for r in done)}, refusals "
              f"{', '.join(f'{k} ×{v}' for k, v in failures(done)) or 'none'}", flush=True)
    loads.append(os.getloadavg()[0])
    probes.append(speed_probe())
    info = dict(load_time=load_time, reference_time=reference_time, loads=loads, probes=probes, problems=len(problems),
                clearance=options.clearance, stamp=stamp(), machine=machine(), versions=versions(), commit=commit(),
                threads=args.threads, limit=args.limit, exact_step=args.exact_step,
                tight_slack=args.tight_slack, robot=robot.name, build_time=build_time,
                search=(options.search_step, options.search_resolution))
    return rows, info


def timed_solve(chain, start, call: dict, warmed: list):
    """``solve_trajectory(chain, start, **call)`` and its time (s). A run's first call is made once
    before, untimed, so one-off costs (allocator, lazy imports, caches) stay out of the times;
    ``warmed`` (a list, empty until then) remembers it."""
    if not warmed:
        solve_trajectory(chain, start, **call)
        warmed.append(True)
    began = time.perf_counter()
    result = solve_trajectory(chain, start, **call)
    return result, time.perf_counter() - began


def _search_note(info) -> str:
    """'' for the default global search step and edge spacing, else which ran."""
    default = TrajectoryOptions()
    step, resolution = info.get("search", (default.search_step, default.search_resolution))
    if (step, resolution) == (default.search_step, default.search_resolution):
        return ""
    return f" except the global search's step {step:g} rad and edge spacing {resolution:g} rad"


def reason(failure: str) -> str:
    """The kind of a failure message: "goal in collision: a – b, -1.9 mm" -> "goal in collision"."""
    return failure.split(":", 1)[0].split(" (", 1)[0]


def failures(rows) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for r in rows:
        if r["failure"]:
            counts[reason(r["failure"])] = counts.get(reason(r["failure"]), 0) + 1
    return sorted(counts.items(), key=lambda item: -item[1])


def percentile(values, q) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def summarise(rows, clearance: float) -> dict:
    ok = [r for r in rows if r["success"]]
    times = [1e3 * r["time"] for r in rows]
    solved_times = [1e3 * r["time"] for r in ok]
    free_refused = [r for r in rows if (reason(r["failure"]) == START_IN_COLLISION and r["start_clearance"] > 0)
                    or (reason(r["failure"]) == GOAL_IN_COLLISION and r["goal_clearance"] > 0)]
    clear_refused = [r for r in free_refused if (r["start_clearance"] if reason(r["failure"]) == START_IN_COLLISION
                                                 else r["goal_clearance"]) >= clearance]
    keys = [k for k in rows[0]["timings"]] if rows else []
    return dict(
        n=len(rows), solved=len(ok), hits=sum(r["hit"] for r in ok), failures=failures(rows),
        free_refused=len(free_refused), clear_refused=len(clear_refused),
        median=statistics.median(times), p95=percentile(times, 95),
        solved_median=statistics.median(solved_times) if ok else math.nan, solved_p95=percentile(solved_times, 95),
        length=statistics.median(r["length"] for r in ok) if ok else math.nan,
        duration=statistics.median(r["duration"] for r in ok) if ok else math.nan,
        timings={k: 1e3 * statistics.fmean(r["timings"].get(k, 0.0) for r in rows) for k in keys},
        scene=1e3 * statistics.fmean(r["scene_time"] for r in rows),
    )


def number(value: float, digits: int = 1) -> str:
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def markdown(rows, info) -> str:
    families = [f for f in FAMILIES if any(r["family"] == f for r in rows)]
    stats = {f: summarise([r for r in rows if r["family"] == f], info["clearance"]) for f in families}
    total = summarise(rows, info["clearance"])
    subset = (f"the first {info['limit']} problem(s) of each family ({info['problems']} of 700: a subset, not the "
              "benchmark)" if info["limit"] else f"{info['problems']} problems")
    robot = info.get("robot", "panda")
    panda = robot == "panda"
    loads = info["loads"]
    ends = [(r["start_clearance"], f"{r['family']} {r['index']} start") for r in rows] + \
           [(r["goal_clearance"], f"{r['family']} {r['index']} goal") for r in rows]
    free, closest = sum(d > 0 for d, _ in ends), min(ends)
    command = ["python bench/mbm_benchmark.py"] + ([f"--robot {robot}"] if not panda else []) + \
        ([f"--limit {info['limit']}"] if info["limit"] else []) + ["--output BENCHMARKS.md"]
    lines = [
        "## MotionBenchMaker problems (`bench/mbm_benchmark.py`)" if panda else
        f"## MotionBenchMaker problems, {ROBOT_TITLES[robot]} (`{' '.join(command)}`)",
        "",
        f"{info['stamp']}; {info['machine']}; {info['versions']}; load average (1 min) at start / end "
        f"{loads[0]:.1f} / {loads[1]:.1f} (shared machine){speed_note(info.get('probes'))}; torch threads {info['threads']}, float32, CPU.",
        "",
        (f"The public MotionBenchMaker problems for the Franka Panda as VAMP 0.6.4's sdist ships them "
         f"(`bench/mbm_problems.py`; MoveIt scene + request YAML, fingers fixed 0.065 m open): {subset}. " if panda else
         f"The public MotionBenchMaker problems for the {ROBOT_TITLES[robot]} as VAMP 0.6.4's sdist ships them "
         f"(`bench/mbm_problems.py`, `resources/{robot}/`; MoveIt scene + request YAML; {ROBOT_NOTES[robot]}): "
         f"{subset}. `build_planner_models` took {info.get('build_time', math.nan):.1f} s in this run "
         "(sphere trees read from the cache where it held them). ") +
        "Planner models from the MBM URDF/SRDF as `bench/motion_benchmark.py` builds them "
        f"(`build_planner_models`: the verdict on the tight model, sphere trees with leaves within "
        f"{1e3 * info.get('tight_slack', TreeSettings().target_slack):.0f} mm of the meshes under tiers of "
        f"{1e3 * TreeSettings().tier_slack:.0f} mm; the cost on the coarse cover; SRDF self pairs, "
        "always-in-collision pairs only where the tight model says so). One problem per `solve_trajectory` call "
        f"(P = 1), default options (clearance {1e3 * info['clearance']:.0f} mm kept where the motion can, validity "
        f"required){_search_note(info)}, joint-space goal; time: the whole call, after one untimed warm-up call. "
        f"Every success checked exactly: Pinocchio + coal on the MBM URDF's meshes against the scene's primitives and "
        f"the SRDF-enabled self pairs, at configurations of the returned motion {info['exact_step']} rad apart (any "
        f"joint). The exact clearance of every start and goal is computed too: here {free} of {2 * len(rows)} are "
        f"collision-free under coal (closest {1e3 * closest[0]:.1f} mm, {closest[1]}"
        + ("; all 1400 of the 700 problems are, closest 2.7 mm" if panda else "") +
        "), so a 'start/goal in collision' refusal is of a free configuration; 'of which ≥ "
        "clearance' counts those whose exact clearance is at least the planner's clearance (refused only because "
        "of the spheres' slack).",
        "",
        "| family | problems | solved | colliding successes (exact) | median / p95 plan (ms, all calls) | "
        "median / p95 plan (ms, solved) | joint path (rad, median) | motion (s, median) | coal-free start/goal refused "
        "(of which ≥ clearance) | refusals |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, s in list(stats.items()) + [("**all**", total)]:
        refusals = ", ".join(f"{reason} ×{count}" for reason, count in s["failures"]) or "none"
        lines.append(
            f"| {name} | {s['n']} | {s['solved']} ({100 * s['solved'] / s['n']:.0f} %) | {s['hits']} | "
            f"{s['median']:.1f} / {s['p95']:.1f} | {number(s['solved_median'])} / {number(s['solved_p95'])} | "
            f"{number(s['length'], 2)} | {number(s['duration'], 2)} | {s['free_refused']} ({s['clear_refused']}) | "
            f"{refusals} |")
    keys = list(total["timings"])
    lines += ["", "Where the time goes (mean ms per call, `result.timings`; 'scene': reading the scene YAML and making "
              "the two checkers for it, outside the timed call):", "",
              "| family | " + " | ".join(keys) + " | scene |", "|---|" + "---:|" * (len(keys) + 1)]
    for name, s in list(stats.items()) + [("**all**", total)]:
        lines.append(f"| {name} | " + " | ".join(f"{s['timings'][k]:.1f}" for k in keys) + f" | {s['scene']:.1f} |")
    parts = [k for k in keys if k != "total"]
    if "total" in keys and any(sum(r["timings"][k] for k in parts) > 1.01 * r["timings"]["total"] for r in rows):
        lines += ["", f"(The parts ({', '.join(parts)}) add up to more than 'total' for some calls: they overlap, e.g. "
                  "checks made between iterations counted in both 'iterations' and 'checking'.)"]
    if not panda:  # VAMP's and cuRobo's cited figures are the Panda's
        lines += ["", f"Ours: {total['solved']}/{total['n']} ({100 * total['solved'] / total['n']:.1f} %), "
                  f"{total['hits']} colliding, median {total['median']:.1f} ms, p95 {total['p95']:.1f} ms, this machine, "
                  "one thread.",
                  "", f"Reading the problem files took {info['load_time']:.1f} s; the exact checks (scene set-up, "
                  f"start/goal clearance, dense check of each success) {info['reference_time']:.1f} s in all."]
        return "\n".join(lines)
    lines += ["", "Beside ours (cited, not rerun here; theirs are all 700 problems):", "",
              "| planner | valid plans | median (ms) | tail (ms) | where |", "|---|---:|---:|---:|---|",
              f"| ours (this run) | {total['solved']}/{total['n']} ({100 * total['solved'] / total['n']:.1f} %), "
              f"{total['hits']} colliding | {total['median']:.1f} | {total['p95']:.1f} (p95) | this machine, one thread |"]
    lines += [f"| {name} | {valid} | {median} | {tail} | {where} |" for name, valid, median, tail, where in CITED]
    lines += ["", f"Reading the problem files took {info['load_time']:.1f} s; the exact checks (scene set-up, start/goal "
              f"clearance, dense check of each success) {info['reference_time']:.1f} s in all."]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--robot", choices=list(ROBOTS), default="panda",
                        help="the sdist's robot (default panda); ur5 and fetch write the sections mbm_ur5 / mbm_fetch")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--limit", type=int, help="problems per family (default: all 100)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tight-slack", type=float, default=TreeSettings().target_slack,
                        help="m, the verdict model's worst leaf slack (its tiers stay at 6 mm)")
    parser.add_argument("--search-step", type=float, default=TrajectoryOptions().search_step,
                        help="rad (max-norm), the global search's longest extension (TrajectoryOptions.search_step)")
    parser.add_argument("--search-resolution", type=float, default=TrajectoryOptions().search_resolution,
                        help="rad (max-norm), its edges' check spacing (TrajectoryOptions.search_resolution)")
    parser.add_argument("--exact-step", type=float, default=0.005, help="rad, any joint, between checked configurations")
    parser.add_argument("--output", type=Path, help="write the 'mbm' section of this markdown file (BENCHMARKS.md)")
    parser.add_argument("--json", type=Path, help="every problem's numbers")
    parser.add_argument("--from-json", type=Path, help="write the report of an earlier run's --json, without solving")
    args = parser.parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        rows, info = saved["problems"], saved["info"]
    else:
        rows, info = run(args)
    text = markdown(rows, info)
    print(text)
    if args.output:
        robot = info.get("robot", "panda")
        write_section(args.output, "mbm" if robot == "panda" else f"mbm_{robot}", text)
    if args.json:
        args.json.write_text(json.dumps(dict(info=info, problems=rows), indent=1))


if __name__ == "__main__":
    main()
