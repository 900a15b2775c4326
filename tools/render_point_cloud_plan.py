"""Render a plan through a world given only as a point cloud (docs/point_cloud_plan.png).

    python tools/render_point_cloud_plan.py [--family bookshelf_small] [--output docs/point_cloud_plan.png]

The first public MotionBenchMaker Panda problem of ``--family`` (bench/mbm_problems.py): its
obstacles' surfaces are sampled into points at ``--spacing`` (1 cm) and the world is those points
alone, one ``voxels`` obstacle as bench/mbm_point_world_benchmark.py builds it (its
``surface_cloud``, the same obstacle options and the same planner models); ``solve_trajectory``
(default options, but ``--time-budget`` s instead of 2 s, so a loaded machine draws the same
plan) plans from the problem's start to its goal against it. The picture: the points (small,
light; a random quarter of them drawn), the tool's path, and the arm's link origins (joined
along the chain) at a few waypoints. The plan is then checked against the true primitives
(Pinocchio + coal, as the benchmark does) and the caption's figures are printed. Needs
matplotlib (requirements/bench.txt) and the MBM resources (downloaded on first use, see
bench/mbm_problems.py).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from mbm_benchmark import build_planner_models  # noqa: E402
from mbm_point_world_benchmark import surface_cloud  # noqa: E402
from mbm_problems import FAMILIES, TOOL, load_problems, mbm_reference, mbm_resources, srdf_text, urdf_text  # noqa: E402

from ros_torch_kin.collision import Obstacle, Scene  # noqa: E402
from ros_torch_kin.kinematics import forward_kinematics  # noqa: E402
from ros_torch_kin.motion import solve_trajectory  # noqa: E402
from ros_torch_kin.optim import TrajectoryLimits, TrajectoryOptions  # noqa: E402

#: Waypoints at which the arm is drawn.
POSES = 5
#: One point in DRAWN is drawn (a random subset: all of them only darken the picture).
DRAWN = 4


def point_world(points: np.ndarray, covering: float, voxel: float) -> Obstacle:
    """The cloud as the point-world benchmark inserts it with its default options (exact points of
    the covering radius, multi-resolution field, 2 cm exact far-field lattice)."""
    return Obstacle.points("cloud", points, voxel, radius=covering, multires=True, exact=True, lattice=0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="bookshelf_small", choices=FAMILIES)
    parser.add_argument("--spacing", type=float, default=0.01, help="m between surface samples")
    parser.add_argument("--voxel", type=float, default=0.01, help="m, the cloud's voxel size")
    parser.add_argument("--time-budget", type=float, default=60.0,
                        help="s of planning (default options otherwise): the picture, not the speed, is the point, "
                        "so a loaded machine still draws the same plan")
    parser.add_argument("--view", type=float, nargs=2, default=(40.0, 100.0), metavar=("ELEVATION", "AZIMUTH"),
                        help="degrees (matplotlib's view_init)")
    parser.add_argument("--output", default=str(ROOT / "docs" / "point_cloud_plan.png"))
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problem = load_problems([args.family], limit=1)[0]
    truth = problem.scene()
    points, covering = surface_cloud(truth, args.spacing)
    scene = Scene([point_world(points, covering, args.voxel)])  # the planner sees the points only
    chain, verdict, cost = build_planner_models(urdf_text(), srdf_text(), [mbm_resources()])
    start, goal = (torch.as_tensor(q, dtype=chain.dtype) for q in (problem.start, problem.goal))
    options = replace(TrajectoryOptions(), time_budget=args.time_budget)
    result = solve_trajectory(chain, start, link=TOOL, target_configuration=goal, options=options,
                              limits=TrajectoryLimits.from_chain(chain), collision=verdict.with_scene(scene),
                              collision_cost=cost.with_scene(scene))
    if not result.success[0]:
        raise SystemExit(f"{problem.name}: no plan ({result.failure[0] if result.failure else 'unknown'})")
    positions = result.positions[0].detach()
    reference = mbm_reference(chain)
    reference.set_scene(truth)
    hit, pair = reference.collides(positions.double().numpy(), 0.005)
    print(f"{problem.name}: {len(points):,} points at {args.spacing * 100:g} cm, plan of {positions.shape[0]} "
          f"waypoints, against the true primitives: {'COLLIDES ' + str(pair) if hit else 'clear'}")

    T = forward_kinematics(chain.to("cpu", torch.float64), positions.double()).numpy()  # (W, L, 4, 4)
    origins = T[:, :, :3, 3]
    parents = chain.parent_index.tolist()  # per link, its parent link (-1: the root)
    figure = plt.figure(figsize=(7.5, 6.5))
    axes = figure.add_subplot(projection="3d")
    shown = points[np.random.default_rng(0).permutation(len(points))[: len(points) // DRAWN]]  # drawing only
    axes.scatter(shown[:, 0], shown[:, 1], shown[:, 2], s=1.5, c="0.5", alpha=0.15, linewidths=0,
                 depthshade=False, rasterized=True)
    picks = np.linspace(0, positions.shape[0] - 1, POSES).round().astype(int)
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(picks)))
    for n, (colour, k) in enumerate(zip(colours, picks)):
        label = "start" if n == 0 else "goal" if n == len(picks) - 1 else None
        for link, parent in enumerate(parents):
            if parent >= 0:
                segment = origins[k, [parent, link]]
                axes.plot(segment[:, 0], segment[:, 1], segment[:, 2], "-", color=colour, linewidth=2.5, label=label)
                label = None
        axes.scatter(origins[k, :, 0], origins[k, :, 1], origins[k, :, 2], s=9, color=colour, depthshade=False)
    tool = origins[:, chain.link_index(TOOL)]
    axes.plot(tool[:, 0], tool[:, 1], tool[:, 2], "r-", linewidth=2, label="tool path")
    everything = np.concatenate([points, origins.reshape(-1, 3)])
    low, high = everything.min(0) - 0.05, everything.max(0) + 0.05
    low[2] = min(low[2], 0.0)
    axes.set_xlim(low[0], high[0]), axes.set_ylim(low[1], high[1]), axes.set_zlim(low[2], high[2])
    axes.set_box_aspect(high - low)  # one scale on all three axes
    axes.view_init(*args.view)
    axes.set_xlabel("x (m)"), axes.set_ylabel("y (m)"), axes.set_zlabel("z (m)")
    axes.set_title(f"MBM {problem.name}: {len(points):,} points ({args.spacing * 100:g} cm), the only world the "
                   f"planner saw;\narm at waypoints {', '.join(map(str, picks))} of {positions.shape[0]}", fontsize=9)
    axes.legend(loc="upper left", fontsize=8)
    figure.savefig(args.output, dpi=110, bbox_inches="tight")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
