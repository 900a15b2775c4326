"""The tight collision model (sphere trees) on the public MotionBenchMaker Panda, against the exact
reference (Pinocchio + coal on the same meshes), side by side in one run.

    python bench/tight_model_benchmark.py --output BENCHMARKS.md

Per link: leaves and slack; the build time from the disk cache, and cold (nothing cached) for each
MBM robot (Panda, UR5, Fetch), with the joint tables' share; on random configurations
(uniform in the joint limits) in the first MBM scene of some families: missed contacts and false
alarms of the tight verdict and of the coarse cover, and the verdict's time for B configurations,
with and without its joint tables (the verdicts must agree) and with its leaf spheres alone (no
triangle test), beside a coal loop over the same configurations (world and the SRDF's self pairs).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from mbm_problems import load_problems, mbm_reference, mbm_resources, srdf_text, urdf_text  # noqa: E402
from report import cold_model_cache, forget_models, machine, speed_note, speed_probe, stamp, versions, write_section  # noqa: E402

from ros_torch_kin.collision import TreeCollisionChecker, TreeSettings, robot_collision_model_from_urdf  # noqa: E402
from ros_torch_kin.collision import pair_tables as pair_tables_module  # noqa: E402
from ros_torch_kin.kinematics import Chain  # noqa: E402


def run(args):
    torch.set_num_threads(args.threads)
    load, probes = os.getloadavg()[0], [speed_probe()]
    urdf, srdf, share = urdf_text(), srdf_text(), [str(mbm_resources())]
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float32)
    settings = TreeSettings(target_slack=args.slack)
    cold_rows = [_cold_build(robot, settings) for robot in args.cold_robots]
    with cold_model_cache():  # built and stored, then read back as a later process would
        robot_collision_model_from_urdf(urdf, chain, srdf=srdf, search_dirs=share, settings=settings)
        forget_models()
        began = time.perf_counter()
        model = robot_collision_model_from_urdf(urdf, chain, srdf=srdf, search_dirs=share, settings=settings)
        cached = time.perf_counter() - began
    leaves, coarse = model.verdict.spheres, model.cost.spheres
    tiers = leaves.tiers.count if leaves.tiers is not None else "no"
    rows = []
    for name in chain.link_names:
        index = chain.link_names.index(name)
        mine = leaves.sphere_links == index
        if mine.any():
            theirs = coarse.sphere_links == index
            rows.append(f"| {name} | {int(mine.sum())} | {1e3 * float(leaves.slack[mine].median()):.1f} / "
                        f"{1e3 * float(leaves.slack[mine].max()):.1f} | {int(theirs.sum())} | "
                        f"{1e3 * float(coarse.slack[theirs].median()):.1f} / {1e3 * float(coarse.slack[theirs].max()):.1f} |")
    reference = mbm_reference(chain)
    g = torch.Generator().manual_seed(0)
    tallies = []
    for problem in [load_problems([family], limit=1)[0] for family in args.families]:
        scene = problem.scene()
        verdict, cost = model.verdict.with_scene(scene), model.cost.with_scene(scene)
        reference.set_scene(scene)
        q = chain.lower_limits + torch.rand(args.batch, chain.num_dofs, generator=g) * (chain.upper_limits - chain.lower_limits)
        verdict.in_collision(q[:16])
        began = time.perf_counter()
        tight = verdict.in_collision(q)
        ours = time.perf_counter() - began
        plain = TreeCollisionChecker(chain, model.verdict.robot_spheres, scene, model.self_pairs, coarse=cost)
        plain.in_collision(q[:16])
        began = time.perf_counter()
        same = bool((plain.in_collision(q) == tight).all())
        untabled = time.perf_counter() - began
        assert same, "the joint tables changed a verdict"
        spheres = verdict.without_triangles()  # the leaf spheres alone decide (no triangle test)
        spheres.in_collision(q[:16])
        began = time.perf_counter()
        alone = spheres.in_collision(q)
        alone_time = time.perf_counter() - began
        assert not bool((tight & ~alone).any()), "the triangles called a contact the spheres did not"
        began = time.perf_counter()
        loose = cost.in_collision(q)
        coarse_time = time.perf_counter() - began
        sample = q[: args.exact].double().numpy()
        began = time.perf_counter()
        exact = np.array([reference.collides(x[None], 1.0)[0] for x in sample])
        coal = (time.perf_counter() - began) / len(sample) * args.batch
        t, c = tight[: args.exact].numpy(), loose[: args.exact].numpy()
        # the tight false alarms: how far from contact coal finds them, and how many are self pairs
        alarms = [reference.closest(x) for x in sample[~exact & t]]
        links = set(chain.link_names)
        own = sum(1 for _, pair in alarms if all(name.rsplit("_", 1)[0] in links or name in links
                                                 for name in pair.split(" - ")))
        farthest = max((d for d, _ in alarms), default=float("nan"))
        s_alone = alone[: args.exact].numpy()
        tallies.append((problem.name, ours, untabled, coarse_time, coal, int((exact & ~t).sum()), int((~exact & t).sum()),
                        int((exact & ~c).sum()), int((~exact & c).sum()), int(exact.sum()), farthest, own, alone_time,
                        int((~exact & s_alone).sum())))
        print(tallies[-1], flush=True)
    probes.append(speed_probe())
    lines = [
        "## Tight collision model (`bench/tight_model_benchmark.py`)",
        "",
        f"{stamp()}; {machine()}; {versions()}{speed_note(probes)}; torch threads {args.threads}, float32, CPU; load average at the start "
        f"{load:.2f}. The MBM Panda (VAMP 0.6.4's meshes and SRDF). Tight model: sphere trees, target slack "
        f"{1e3 * args.slack:.0f} mm: {leaves.num_spheres} leaves under {tiers} tiers of {1e3 * settings.tier_slack:.0f} mm "
        f"(coarse cover: {coarse.num_spheres} spheres); both models from the disk cache (memory caches cleared) in {cached:.2f} s.",
        "",
        f"Cold builds of the whole model (trees, self pairs, joint tables; nothing cached; "
        f"{len(os.sched_getaffinity(0))} cores, the build's automatic worker processes), each MBM robot; the joint "
        f"tables' share (choosing them included: each candidate timed; within a {pair_tables_module.BUDGET:.0f} s budget) "
        f"and the pairs tabled; the same build again as a later process would do it (memory caches cleared, everything "
        f"read from the disk cache); links whose worst leaf is above the target reached the {settings.max_leaves:,}-leaf cap:",
        "",
        "| robot | cold build (s) | of which joint tables (s) | a later start, from the disk cache (s) | pairs tabled | "
        "leaves | tiers | worst leaf slack (mm) | links above the target (leaves, worst mm) |",
        "|---|---:|---:|---:|---|---:|---:|---:|---|",
        *cold_rows,
        "",
        "| link | leaves | leaf slack median / worst (mm) | coarse spheres | coarse slack median / worst (mm) |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
        f"Verdicts on B = {args.batch} random configurations in the limits per scene (world + SRDF self pairs); "
        f"missed / false alarms against coal on the first {args.exact} of them; coal loop time scaled to B. The tight "
        f"verdict decides a grazing self pair, and a leaf grazing a primitive, by its leaves' triangles; 'leaf spheres "
        f"alone' is the same verdict without that test (`without_triangles()`):",
        "",
        "| scene | tight verdict (s) | without joint tables (s, same verdicts) | leaf spheres alone (s) | coarse verdict (s) | "
        "coal loop (s) | coal / tight | coal / spheres alone | tight missed | tight false alarms (of them self pairs; "
        "farthest from contact under coal) | spheres alone: false alarms | coarse missed | coarse false alarms | "
        "colliding (coal) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[f"| {n} | {a:.3f} | {u:.3f} | {sa:.3f} | {b:.3f} | {c:.3f} | {c / a:.1f}× | {c / sa:.1f}× | {m} | "
          f"{f}{f' ({own}; {1e3 * far:.1f} mm)' if f else ''} | {sf} | {cm} | {cf} | {k} / {args.exact} |"
          for n, a, u, b, c, m, f, cm, cf, k, far, own, sa, sf in tallies],
    ]
    text = "\n".join(lines)
    print(text)
    if args.output:
        write_section(args.output, "tight", text)


def _cold_build(robot: str, settings: TreeSettings) -> str:
    """One table row: the robot's whole model (trees, self pairs, joint tables) built with nothing
    cached (an empty disk cache, the memory cache cleared), timed; the joint tables' share too."""
    urdf, srdf, share = urdf_text(robot), srdf_text(robot), [str(mbm_resources(robot))]
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float32)
    spent = []
    building = pair_tables_module.pair_tables

    def timed(*args, **kwargs):
        began = time.perf_counter()
        try:
            return building(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - began)

    with cold_model_cache():
        pair_tables_module.pair_tables = timed
        try:
            began = time.perf_counter()
            model = robot_collision_model_from_urdf(urdf, chain, srdf=srdf, search_dirs=share, settings=settings)
            seconds = time.perf_counter() - began
            forget_models()  # a later start: everything from the disk cache
            began = time.perf_counter()
            robot_collision_model_from_urdf(urdf, chain, srdf=srdf, search_dirs=share, settings=settings)
            later = time.perf_counter() - began
        finally:
            pair_tables_module.pair_tables = building
    spheres = model.verdict.robot_spheres
    over = []
    for index, name in enumerate(chain.link_names):
        mine = spheres.sphere_links == index
        if mine.any() and float(spheres.slack[mine].max()) > settings.target_slack + 1e-9:
            over.append(f"{name} ({int(mine.sum())}, {1e3 * float(spheres.slack[mine].max()):.1f})")
    tiers = spheres.tiers.count if spheres.tiers is not None else 0
    tables = model.verdict._pair_tables.tables if model.verdict._pair_tables is not None else ()
    tabled = "; ".join(", ".join(f"{a}–{b}" for a, b in t.pairs) + f" ({math.prod(t.count):,} nodes)" for t in tables)
    print(robot, seconds, flush=True)
    return (f"| {robot} | {seconds:.1f} | {sum(spent):.1f} | {later:.2f} | {tabled or 'none'} | {spheres.num_spheres:,} | {tiers:,} | "
            f"{1e3 * float(spheres.slack.max()):.1f} | {', '.join(over) or 'none'} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slack", type=float, default=TreeSettings().target_slack)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--exact", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--families", nargs="+", default=["bookshelf_tall", "table_pick", "cage"])
    parser.add_argument("--cold-robots", nargs="*", default=["panda", "ur5", "fetch"],
                        help="MBM robots whose tight model is built cold and timed")
    parser.add_argument("--output", type=Path)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
