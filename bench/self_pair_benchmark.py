"""What each enabled self pair costs the tight verdict, on the MBM robots (Panda, UR5, Fetch), with
and without the joint tables (ros_torch_kin.collision.pair_tables) the model builds.

    python bench/self_pair_benchmark.py --output BENCHMARKS.md

Per robot: the self verdict alone (no scene) on B random configurations in the joint limits at
the planner's self threshold (4 mm), per configuration: every enabled pair with the model's
joint tables, the same without tables (the verdicts must agree), and no pair at all (a query's
own cost); then each pair's share, measured by leaving it out (the time with every pair less
the time without that one; shares overlap, so they need not add up), dearest first, with
whether a table holds it and how many joints lie between its links. Best of three runs each.
The tables a robot gets depend on what it is worth and on a build-time budget (see
pair_tables); ``--budget`` rebuilds them with another budget, not cached (e.g. to see what the
UR5's upper arm over its base would gain).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from mbm_problems import mbm_resources, srdf_text, urdf_text  # noqa: E402
from report import cold_model_cache, machine, stamp, versions, write_section  # noqa: E402

from ros_torch_kin.collision import TreeCollisionChecker, robot_collision_model_from_urdf  # noqa: E402
from ros_torch_kin.collision import pair_tables as pair_tables_module  # noqa: E402
from ros_torch_kin.collision.pair_tables import path_dofs  # noqa: E402
from ros_torch_kin.collision.self_collision import SelfCollisionPairs  # noqa: E402
from ros_torch_kin.kinematics import Chain  # noqa: E402

THRESHOLD = 0.004


def _per_configuration(checker, q: torch.Tensor) -> float:
    """µs per configuration of ``checker.clear(q, THRESHOLD)``, best of three."""
    checker.clear(q[:16], THRESHOLD)
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        checker.clear(q, THRESHOLD)
        best = min(best, time.perf_counter() - began)
    return 1e6 * best / q.shape[0]


def robot_rows(robot: str, batch: int, top: int, budget: float | None) -> tuple[str, list[str]]:
    urdf, srdf, share = urdf_text(robot), srdf_text(robot), [str(mbm_resources(robot))]
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float32)
    if budget is None:
        model = robot_collision_model_from_urdf(urdf, chain, srdf=srdf, search_dirs=share)
    else:  # another budget: built here (cold), not cached
        with cold_model_cache():
            model = robot_collision_model_from_urdf(urdf, chain, srdf=srdf, search_dirs=share, table_budget=budget)
    verdict = model.verdict
    tables = verdict._pair_table_source
    tabled = {pair for t in tables for pair in t.pairs}
    g = torch.Generator().manual_seed(0)
    low, high = chain.lower_limits.clamp(min=-3.1416), chain.upper_limits.clamp(max=3.1416)
    q = low + torch.rand(batch, chain.num_dofs, generator=g) * (high - low)
    pairs = verdict.self_pairs
    empty = pairs.sphere_a[:0]

    def checker(enabled, with_tables=True):
        chosen = SelfCollisionPairs(tuple(enabled), types.MappingProxyType({}), empty, empty)
        return TreeCollisionChecker(chain, verdict.robot_spheres, None, chosen, coarse=model.cost,
                                    pair_tables=tables if with_tables else ())

    every = checker(pairs.enabled)
    full, none, untabled = _per_configuration(every, q), _per_configuration(checker(()), q), "– (no table)"
    if tables:
        plain = checker(pairs.enabled, with_tables=False)
        assert torch.equal(every.clear(q, THRESHOLD), plain.clear(q, THRESHOLD)), "the tables changed a verdict"
        untabled = f"{_per_configuration(plain, q):.1f}"
    colliding = float((~every.clear(q, THRESHOLD)).float().mean())
    shares = []
    names = {n: i for i, n in enumerate(chain.link_names)}
    for pair in pairs.enabled:
        rest = [p for p in pairs.enabled if p != pair]
        dofs = path_dofs(chain, names[pair[0]], names[pair[1]])
        shares.append((full - _per_configuration(checker(rest), q), pair, dofs))
    shares.sort(key=lambda s: -s[0])
    built = "; ".join(", ".join(f"{a}–{b}" for a, b in t.pairs) for t in tables) or "none"
    summary = (f"| {robot} | {len(pairs.enabled)} | {built} | {full:.1f} | {untabled} | {none:.1f} | "
               f"{100 * colliding:.0f} % |")
    rows = [f"| {robot} | {a}–{b} | {share:+.1f} | {'yes' if (a, b) in tabled else 'no'} | "
            f"{len(dofs) if dofs is not None else 'mimic'} |" for share, (a, b), dofs in shares[:top]]
    print(summary, flush=True)
    return summary, rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--robots", nargs="+", default=["panda", "ur5", "fetch"])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--top", type=int, default=5, help="the dearest pairs listed per robot")
    parser.add_argument("--budget", type=float, default=None,
                        help="s, the joint tables' build budget (default: the model's, from the cache)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", help="write the 'self_pairs' section of this markdown file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    results = [robot_rows(robot, args.batch, args.top, args.budget) for robot in args.robots]
    budget = (f"the model's ({pair_tables_module.BUDGET:.0f} s budget, from the cache)" if args.budget is None
              else f"rebuilt with a {args.budget:g} s budget")
    text = "\n".join([
        "## Self pairs in the tight verdict (`bench/self_pair_benchmark.py`)",
        "",
        f"{stamp()}; {machine()}; {versions()}; torch threads {args.threads}, float32, CPU; load average at the start "
        f"{load:.2f}. The MBM robots' tight models (3 mm leaves, SRDF self pairs), the self verdict alone (no scene) "
        f"at {1e3 * THRESHOLD:.0f} mm on B = {args.batch} random configurations in the limits (±π for wider joints); "
        f"µs per configuration, best of three. Joint tables: {budget}.",
        "",
        "| robot | enabled pairs | pairs with a joint table | every pair (µs) | without tables (µs, same verdicts) | "
        "no pair (µs) | configurations in self collision |",
        "|---|---:|---|---:|---:|---:|---:|",
        *[summary for summary, _ in results],
        "",
        f"The {args.top} dearest pairs of each robot (its share: the time with every pair less the time without it, "
        "tables as above; shares overlap):",
        "",
        "| robot | pair | share (µs per configuration) | joint table | joints between the links |",
        "|---|---|---:|---|---:|",
        *[row for _, rows in results for row in rows],
    ])
    print(text)
    if args.output:
        write_section(args.output, "self_pairs", text)


if __name__ == "__main__":
    main()
