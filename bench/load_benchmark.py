"""IK, collision verdict and planning, quiet and beside a CPU-bound process: the thread policy under load.

Each workload runs in a fresh process per thread configuration (OMP_WAIT_POLICY is read when
torch loads), first on a quiet machine, then beside a CPU-bound process (``python -c 'while True:
pass'``) pinned to core 0 (the robot's other work: drivers, perception):

* IK: held-out Panda ``panda_hand`` targets (poses of random in-limit configurations, fixed seed),
  default ``IKOptions`` (5 s budget), all in one call; success within 1e-4 m / 1e-4 rad as the
  solver reports it; solves/s. Also the same targets with a 50 ms budget: the call's wall time
  over its budget (the budget is honoured when it is ≤ 1.1).
* collision verdict: ``CollisionChecker.in_collision`` on B random configurations, Panda spheres
  from its URDF, 20 random obstacles + self pairs (bench/collision_benchmark.py's scene);
  configurations/s, best of a few runs; success = the same verdicts as the quiet run.
* planning: a few configuration goals between collision-free random configurations in that scene
  (``solve_trajectory``, default options, 2 s budget, the coarse model as verdict and cost);
  solved, median time, and the worst wall time over the budget.

Configurations: 1 thread; all cores with spinning waits (OMP_WAIT_POLICY unset: torch's default
before this policy); all cores with OMP_WAIT_POLICY=PASSIVE; and the policy
(``ros_torch_kin.threads``: passive waits, ``automatic_threads`` by batch size). Targets: under
load, success unchanged and throughput ≥ 0.5× quiet; more threads never lose to one.

    python bench/load_benchmark.py --output BENCHMARKS.md
    python bench/load_benchmark.py --ik-targets 200 --verdict-batch 512 --plans 1   (a quick look)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: (label, threads (0: automatic), OMP_WAIT_POLICY ('' = unset))
CONFIGS = (
    ("1 thread", 1, ""),
    ("all cores, spinning waits", -1, ""),
    ("all cores, passive waits", -1, "PASSIVE"),
    ("the policy: passive waits, automatic threads", 0, "PASSIVE"),
)
POLICY = CONFIGS[-1][0]


# ---------------------------------------------------------------------- one configuration (a child process)
def worker(args) -> dict:
    """Runs the workloads with ``args.threads`` threads (0: automatic per workload, -1: all
    cores); OMP_WAIT_POLICY was set by the parent. Returns the measurements."""
    from ros_torch_kin import threads  # before torch: nothing here changes the environment

    import torch

    sys.path.insert(0, str(HERE))
    from collision_benchmark import random_scene
    from report import example_robot_data_dir

    from ros_torch_kin.collision import CollisionChecker, self_collision_pairs
    from ros_torch_kin.collision.urdf_spheres import robot_spheres_from_urdf
    from ros_torch_kin.kinematics import Chain, forward_kinematics
    from ros_torch_kin.motion import solve_trajectory
    from ros_torch_kin.optim import IKOptions, TrajectoryLimits, TrajectoryOptions, solve_ik

    cores = threads.available_cores()

    def count(work: int) -> int:
        return threads.automatic_threads(work) if args.threads == 0 else cores if args.threads < 0 else args.threads

    robots = example_robot_data_dir()
    urdf_path = robots / "panda_description/urdf/panda.urdf"
    urdf = urdf_path.read_text()
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float32)
    generators = {w: torch.Generator().manual_seed(args.seed + i) for i, w in enumerate(("ik", "verdict", "planning"))}
    lower, upper = chain.lower_limits.double(), chain.upper_limits.double()

    def random_q(n: int, workload: str) -> torch.Tensor:  # each workload's own stream: sizes do not change the others
        u = torch.rand(n, chain.num_dofs, generator=generators[workload], dtype=torch.float64)
        return (lower + u * (upper - lower)).float()

    out = dict(cores=cores, omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", ""))
    # IK: held-out targets
    targets = forward_kinematics(chain.to(dtype=torch.float64), random_q(args.ik_targets, "ik").double(), links="panda_hand").float()
    with threads.limited_threads(count(args.ik_targets)):
        solve_ik(chain, "panda_hand", targets[:16], IKOptions())  # the seed library, once per process
        began = time.perf_counter()
        result = solve_ik(chain, "panda_hand", targets, IKOptions())
        seconds = time.perf_counter() - began
        out["ik"] = dict(threads=torch.get_num_threads(), success=100 * result.success.double().mean().item(),
                         seconds=seconds, rate=args.ik_targets / seconds)
        began = time.perf_counter()
        solve_ik(chain, "panda_hand", targets, IKOptions(time_budget=args.tight_budget))
        out["ik"]["over_budget"] = (time.perf_counter() - began) / args.tight_budget
    # collision verdict
    spheres = robot_spheres_from_urdf(urdf, chain, search_dirs=[robots.parent, robots.parents[1]])
    pairs = self_collision_pairs(chain, spheres, srdf=(robots / "panda_description/srdf/panda.srdf").read_text(),
                                 samples=1000)
    checker = CollisionChecker(chain, spheres, random_scene(20, seed=0), self_pairs=pairs)
    q = random_q(args.verdict_batch, "verdict")
    with threads.limited_threads(count(args.verdict_batch)):
        checker.in_collision(q)
        times = []
        for _ in range(args.verdict_runs):
            began = time.perf_counter()
            verdict = checker.in_collision(q)
            times.append(time.perf_counter() - began)
        out["verdict"] = dict(threads=torch.get_num_threads(), rate=args.verdict_batch / min(times),
                              colliding=int(verdict.sum()), verdicts=verdict.to(torch.uint8).tolist())
    # planning: configuration goals between collision-free configurations
    free = []
    while len(free) < 2 * args.plans:
        candidates = random_q(256, "planning")
        free += list(candidates[checker.distances(candidates).min_distance > 0.03])
    options = TrajectoryOptions(time_budget=args.plan_budget)
    limits = TrajectoryLimits.from_chain(chain)
    with threads.limited_threads(count(options.seeds * options.waypoints)):
        solve_trajectory(chain, free[0], target_configuration=free[1], options=options, limits=limits,
                         collision=checker, collision_cost=checker)  # warm-up
        solved, times = [], []
        for p in range(args.plans):
            began = time.perf_counter()
            plan = solve_trajectory(chain, free[2 * p], target_configuration=free[2 * p + 1], options=options,
                                    limits=limits, collision=checker, collision_cost=checker)
            times.append(time.perf_counter() - began)
            solved.append(bool(plan.success[0]) and (plan.collision_free is None or bool(plan.collision_free[0])))
        out["planning"] = dict(threads=torch.get_num_threads(), solved=solved, median=statistics.median(times),
                               rate=len(times) / sum(times), over_budget=max(times) / args.plan_budget)
    return out


# ---------------------------------------------------------------------- the parent
def run_config(args, threads: int, policy: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    command = [sys.executable, __file__, "--worker", "--threads", str(threads)] + _sizes(args)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.worker_timeout)
    if done.returncode:
        raise SystemExit(f"worker failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _sizes(args) -> list[str]:
    return ["--ik-targets", str(args.ik_targets), "--verdict-batch", str(args.verdict_batch), "--plans",
            str(args.plans), "--verdict-runs", str(args.verdict_runs), "--seed", str(args.seed),
            "--tight-budget", str(args.tight_budget), "--plan-budget", str(args.plan_budget)]


def start_load() -> subprocess.Popen:
    """A CPU-bound process on core 0 (when this process may use more than one core)."""
    cores = sorted(os.sched_getaffinity(0))

    def pin():
        if len(cores) > 1:
            os.sched_setaffinity(0, {cores[0]})

    return subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=pin)


def measure(args) -> dict:
    results = {}
    for load in ("quiet", "load"):
        hog = start_load() if load == "load" else None
        try:
            time.sleep(0.5 if hog else 0.0)
            for label, threads, policy in CONFIGS:
                print(f"{load}: {label} ...", flush=True)
                results[load, label] = run_config(args, threads, policy)
                r = results[load, label]
                print(f"  IK {r['ik']['success']:.1f} % {r['ik']['rate']:.0f}/s ({r['ik']['threads']} threads), "
                      f"budget x{r['ik']['over_budget']:.2f}; verdict {r['verdict']['rate']:.0f}/s; planning "
                      f"{sum(r['planning']['solved'])}/{len(r['planning']['solved'])} median "
                      f"{1e3 * r['planning']['median']:.0f} ms, budget x{r['planning']['over_budget']:.2f}", flush=True)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    return results


def markdown(args, results: dict, load_average: tuple[float, float]) -> str:
    sys.path.insert(0, str(HERE))
    from report import machine, stamp, versions

    quiet_ref = results["quiet", CONFIGS[0][0]]
    lines = [
        "## Thread policy under load (`bench/load_benchmark.py`)",
        "",
        f"{stamp()}; {machine()}; {versions()}; load average {load_average[0]:.2f} before, {load_average[1]:.2f} "
        f"after. Each row is a fresh process; *load*: beside `python -c 'while True: pass'` pinned to core 0. "
        f"IK: {args.ik_targets} held-out Panda targets in one call, default `IKOptions` (5 s budget); "
        f"verdict: B = {args.verdict_batch}, 20 obstacles + self, best of {args.verdict_runs}; planning: "
        f"{args.plans} configuration goals, {args.plan_budget:g} s budget. *budget ×*: the worst call's wall time "
        f"over its budget (IK with {1e3 * args.tight_budget:g} ms; the plans).",
        "",
        "| threads | | IK solved | IK solves/s | IK budget × | verdict configs/s | verdicts as quiet | plans solved "
        "| plan median (ms) | plan budget × |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, _, _ in CONFIGS:
        for load in ("quiet", "load"):
            r = results[load, label]
            same = r["verdict"]["verdicts"] == quiet_ref["verdict"]["verdicts"]
            lines.append(
                f"| {label} ({r['ik']['threads']}/{r['verdict']['threads']}/{r['planning']['threads']}) | {load} | "
                f"{r['ik']['success']:.2f} % | {r['ik']['rate']:,.0f} | {r['ik']['over_budget']:.2f} | "
                f"{r['verdict']['rate']:,.0f} | {'yes' if same else 'NO'} | {sum(r['planning']['solved'])}/"
                f"{len(r['planning']['solved'])} | {1e3 * r['planning']['median']:.0f} | "
                f"{r['planning']['over_budget']:.2f} |")
    lines += ["", "(threads: IK/verdict/planning.) Under load / quiet, and more threads against one under load:", "",
              "| threads | IK solves/s | verdict configs/s | plans/s | success unchanged | vs 1 thread under load (IK/verdict/plans) |",
              "|---|---:|---:|---:|---|---|"]
    one = results["load", CONFIGS[0][0]]
    for label, _, _ in CONFIGS:
        quiet, load = results["quiet", label], results["load", label]
        ratios = [load[w]["rate"] / quiet[w]["rate"] for w in ("ik", "verdict", "planning")]
        unchanged = (load["ik"]["success"] == quiet["ik"]["success"] and load["verdict"]["verdicts"] == quiet["verdict"]["verdicts"]
                     and load["planning"]["solved"] == quiet["planning"]["solved"])
        versus = [load[w]["rate"] / one[w]["rate"] for w in ("ik", "verdict", "planning")]
        lines.append(f"| {label} | {ratios[0]:.2f}× | {ratios[1]:.2f}× | {ratios[2]:.2f}× | {'yes' if unchanged else 'no'} | "
                     + " / ".join(f"{v:.2f}×" for v in versus) + " |")
    policy_quiet, policy_load = results["quiet", POLICY], results["load", POLICY]
    worst = min(policy_load[w]["rate"] / policy_quiet[w]["rate"] for w in ("ik", "verdict", "planning"))
    unchanged = (policy_load["ik"]["success"] == policy_quiet["ik"]["success"]
                 and policy_load["planning"]["solved"] == policy_quiet["planning"]["solved"])
    budget = max(policy_load["ik"]["over_budget"], policy_load["planning"]["over_budget"])
    never_loses = all(policy_load[w]["rate"] >= 0.95 * one[w]["rate"] for w in ("ik", "verdict", "planning"))
    lines += ["", "| target (the policy, under load) | result |", "|---|---|",
              f"| success unchanged | {'PASS' if unchanged else 'FAIL'} |",
              f"| throughput ≥ 0.5× quiet | {'PASS' if worst >= 0.5 else 'FAIL'} (worst {worst:.2f}×) |",
              f"| more threads never lose to one (within 5 %) | {'PASS' if never_loses else 'FAIL'} |",
              f"| budgets honoured (wall time ≤ 1.1× budget) | {'PASS' if budget <= 1.1 else 'FAIL'} (worst {budget:.2f}×) |"]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="BENCHMARKS.md to write the section into")
    parser.add_argument("--ik-targets", type=int, default=2000)
    parser.add_argument("--verdict-batch", type=int, default=4096)
    parser.add_argument("--verdict-runs", type=int, default=5)
    parser.add_argument("--plans", type=int, default=5)
    parser.add_argument("--plan-budget", type=float, default=2.0, help="s per plan")
    parser.add_argument("--tight-budget", type=float, default=0.05, help="s: the IK budget checked for overrun")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--worker-timeout", type=float, default=900.0)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)), flush=True)
        return
    before = os.getloadavg()[0]
    results = measure(args)
    text = markdown(args, results, (before, os.getloadavg()[0]))
    print(text)
    if args.output:
        sys.path.insert(0, str(HERE))
        from report import write_section

        write_section(args.output, "load", text)


if __name__ == "__main__":
    main()
