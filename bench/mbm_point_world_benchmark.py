"""The MotionBenchMaker Panda problems with every scene given only as a point cloud: each scene's
obstacles are replaced by points sampled on their surfaces (1 cm spacing by default), inserted as
one ``voxels`` obstacle (the multi-resolution field the node builds from cameras, or with
``--exact-field`` the exact EDT; the points themselves, exact near them, with ``--point-radius``
and ``--point-cell``; the exact far-field lattice, ``--lattice``), and every success is checked exactly (Pinocchio + coal) against
the TRUE primitives, as bench/mbm_benchmark.py does. Issue #14's target: ≥ 99 % solved, 0
colliding successes. VAMP (its README): 699/699 with point clouds, ~6 ms per scene to build its
point structure.

    python bench/mbm_point_world_benchmark.py --limit 2          # 2 problems per family, to stdout
    python bench/mbm_point_world_benchmark.py --output BENCHMARKS.md --json mbm_points.json

Samples: every primitive as a trimesh mesh (cylinders and capsules with 64 sections), each
triangle a barycentric lattice (:func:`ros_torch_kin.collision.occupancy.surface_samples`), so
every point of the true surface lies within spacing/√3 + the polygon's chord error of a sample:
that is the cloud's stated radius, so the field stays a lower bound of the distance to the true
surfaces (a robot part can still only be inside a solid after crossing its surface, which the
segment checks see).
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
from mbm_benchmark import REPO, build_planner_models, failures  # noqa: E402,F401  (REPO: this checkout first)
from mbm_problems import FAMILIES, TOOL, load_problems, mbm_reference, mbm_resources, srdf_text, urdf_text  # noqa: E402
from report import commit, machine, stamp, versions, write_section  # noqa: E402

from ros_torch_kin.collision import Obstacle, Scene  # noqa: E402
from ros_torch_kin.collision.occupancy import surface_samples  # noqa: E402
from ros_torch_kin.motion import solve_trajectory  # noqa: E402
from ros_torch_kin.optim import TrajectoryLimits, TrajectoryOptions  # noqa: E402

SECTIONS = 64


def surface_cloud(scene: Scene, spacing: float) -> tuple[np.ndarray, float]:
    """(P, 3) points on the surfaces of the scene's primitives (root frame) and the radius within
    which of a sample every point of the true surfaces lies (m)."""
    import trimesh

    clouds, chord = [], 0.0
    for id in scene.ids:
        o = scene.obstacle(id)
        if o.kind == "box":
            mesh = trimesh.creation.box(o.dimensions)
        elif o.kind == "sphere":
            mesh = trimesh.creation.icosphere(4, o.dimensions[0])
            chord = max(chord, o.dimensions[0] * 0.01)  # a subdivision-4 icosphere's faces are within 0.3 % of r
        elif o.kind == "cylinder":
            mesh = trimesh.creation.cylinder(o.dimensions[1], o.dimensions[0], sections=SECTIONS)
            chord = max(chord, o.dimensions[1] * (1 - math.cos(math.pi / SECTIONS)))
        elif o.kind == "capsule":
            mesh = trimesh.creation.capsule(o.dimensions[0], o.dimensions[1], count=(SECTIONS, SECTIONS))
            chord = max(chord, o.dimensions[1] * (1 - math.cos(math.pi / SECTIONS)))
        else:
            raise ValueError(f"obstacle '{id}': a {o.kind} has no primitive surface to sample")
        points = surface_samples(np.asarray(mesh.vertices), np.asarray(mesh.faces), spacing)
        clouds.append(points @ o.pose[:3, :3].T + o.pose[:3, 3])
    return np.concatenate(clouds), spacing / math.sqrt(3.0) + chord


def run(args):
    torch.set_num_threads(args.threads)
    loads = [os.getloadavg()[0]]
    problems = load_problems(args.families, args.limit)
    chain, verdict, cost = build_planner_models(urdf_text(), srdf_text(), [mbm_resources()])
    reference = mbm_reference(chain)
    options, limits = TrajectoryOptions(), TrajectoryLimits.from_chain(chain)
    rows, first = [], True
    for family in args.families:
        for problem in (p for p in problems if p.family == family):
            truth = problem.scene()
            points, covering = surface_cloud(truth, args.spacing)
            radius = covering if args.point_radius is None else args.point_radius
            moment = time.perf_counter()
            cloud = Obstacle.points("cloud", points, args.voxel, radius=radius, multires=not args.exact_field,
                                    exact=not args.field_only, point_cell=args.point_cell,
                                    lattice=None if args.field_only or not args.lattice else args.lattice)
            scene = Scene([cloud])
            checker, cost_checker = verdict.with_scene(scene), cost.with_scene(scene)
            scene_time = time.perf_counter() - moment
            start, goal = (torch.as_tensor(q, dtype=chain.dtype) for q in (problem.start, problem.goal))
            call = dict(link=TOOL, target_configuration=goal, options=options, limits=limits,
                        collision=checker, collision_cost=cost_checker)
            if first:
                solve_trajectory(chain, start, **call)
                first = False
            moment = time.perf_counter()
            result = solve_trajectory(chain, start, **call)
            elapsed = time.perf_counter() - moment
            success = bool(result.success[0])
            q = result.positions[0].double().numpy()
            reference.set_scene(truth)  # the exact check is against the true primitives
            hit, pair = reference.collides(q, args.exact_step) if success else (False, "")
            rows.append(dict(family=family, index=problem.index, success=success, time=elapsed, scene_time=scene_time,
                             points=len(points), failure=result.failure[0] if result.failure else "", hit=hit,
                             pair=pair))
        done = [r for r in rows if r["family"] == family]
        print(f"{family}: {sum(r['success'] for r in done)}/{len(done)} solved, colliding successes "
              f"{sum(r['hit'] for r in done)}, median plan {1e3 * statistics.median(r['time'] for r in done):.0f} ms, "
              f"scene {1e3 * statistics.median(r['scene_time'] for r in done):.0f} ms, refusals "
              f"{', '.join(f'{k} ×{v}' for k, v in failures(done)) or 'none'}", flush=True)
    loads.append(os.getloadavg()[0])
    info = dict(loads=loads, stamp=stamp(), machine=machine(), versions=versions(), commit=commit(),
                threads=args.threads, limit=args.limit, spacing=args.spacing, voxel=args.voxel,
                field="exact EDT" if args.exact_field else "multi-resolution", exact_step=args.exact_step,
                point_radius=radius, point_cell=None if args.field_only else (args.point_cell or 2 * args.voxel),
                lattice=None if args.field_only else (args.lattice or None))
    return rows, info


def markdown(rows, info) -> str:
    solved = [r for r in rows if r["success"]]
    subset = "all 100 per family" if info["limit"] is None else f"the first {info['limit']} per family"
    lines = [f"{info['stamp']}; {info['machine']}; {info['versions']}; torch threads {info['threads']}, float32, CPU. "
             f"**Load average {info['loads'][0]:.1f} → {info['loads'][1]:.1f}** on {os.cpu_count()} shared cores.", "",
             f"MBM Panda problems ({subset}), every scene replaced by points sampled on its obstacles' surfaces "
             f"({info['spacing'] * 100:g} cm lattice), one voxels obstacle of {info['voxel'] * 100:g} cm ({info['field']}"
             + (f"; exact points of radius {info['point_radius'] * 1000:g} mm, {info['point_cell'] * 100:g} cm cells"
                if info.get("point_cell") else "; the field alone")
             + (f", exact far-field lattice {info['lattice'] * 100:g} cm" if info.get("lattice") else "")
             + "); successes checked exactly (Pinocchio + coal) against the true primitives.", "",
             "| family | solved | colliding successes | median plan (ms) | median scene build (ms) | points (median) |",
             "|---|---:|---:|---:|---:|---:|"]
    for family in dict.fromkeys(r["family"] for r in rows):
        done = [r for r in rows if r["family"] == family]
        ok = [r["time"] for r in done if r["success"]]
        lines.append(f"| {family} | {len(ok)}/{len(done)} | {sum(r['hit'] for r in done)} | "
                     f"{1e3 * statistics.median(ok):.0f} | {1e3 * statistics.median(r['scene_time'] for r in done):.0f} | "
                     f"{int(statistics.median(r['points'] for r in done)):,} |" if ok else
                     f"| {family} | 0/{len(done)} | 0 | – | – | – |")
    lines += ["", f"Total {len(solved)}/{len(rows)} solved ({100 * len(solved) / max(1, len(rows)):.1f} %), "
              f"{sum(r['hit'] for r in rows)} colliding successes (target ≥ 99 %, 0). VAMP (its README): 699/699 "
              "with point clouds, ~6 ms per scene, 0.45 ms median per plan (Ryzen 9 7950X). Command: "
              "`python bench/mbm_point_world_benchmark.py`."]
    return "## MBM problems as point clouds (bench/mbm_point_world_benchmark.py)\n\n" + "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--limit", type=int, help="problems per family (default: all 100)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--spacing", type=float, default=0.01, help="m between surface samples")
    parser.add_argument("--voxel", type=float, default=0.01, help="m, the cloud's voxel size")
    parser.add_argument("--exact-field", action="store_true", help="the exact EDT instead of the multi-resolution field")
    parser.add_argument("--point-radius", type=float, help="m, each point's radius (default: spacing/√3 + chord, "
                        "which covers the true surfaces)")
    parser.add_argument("--point-cell", type=float, help="m, the exact point table's cell (default: the library's)")
    parser.add_argument("--lattice", type=float, default=0.02, help="m, the exact far-field lattice's spacing (0: none)")
    parser.add_argument("--field-only", action="store_true", help="the voxel field alone (no exact points)")
    parser.add_argument("--exact-step", type=float, default=0.005, help="rad, any joint, between checked configurations")
    parser.add_argument("--output", type=Path, help="write the 'mbm_points' section of this markdown file")
    parser.add_argument("--json", type=Path, help="every problem's numbers")
    args = parser.parse_args(argv)
    rows, info = run(args)
    text = markdown(rows, info)
    print(text)
    if args.output:
        write_section(args.output, "mbm_points", text)
    if args.json:
        args.json.write_text(json.dumps(dict(info=info, problems=rows), indent=1))


if __name__ == "__main__":
    main()
