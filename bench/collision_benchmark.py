"""Collision checking on Panda: ros_torch_kin's sphere model (batched) next to a Python loop over
Pinocchio + coal on the URDF's own collision meshes.

Scene: 20 random obstacles (5 of each kind, 4–40 cm, random orientations, kept out of the
robot's base column), fixed seed. Configurations: uniform inside the joint limits. Ours: float32,
``torch.set_num_threads(2)``, spheres from ``robot_spheres_from_urdf`` (or, if that builder is
unavailable, spheres spread along each collision mesh's longest axis), self pairs from the SRDF
plus 1000 samples. coal: ``pin.computeCollisions`` (stop at the first collision) for the verdict
and ``pin.computeDistances`` for distances, one configuration at a time, robot meshes × obstacles
and the SRDF-filtered self pairs. coal gives no gradient; ours is timed for cost + gradient too.

    python bench/collision_benchmark.py --output BENCHMARKS.md
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
from torch.utils.benchmark import Timer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import example_robot_data_dir, machine, stamp, versions, write_section  # noqa: E402

from ros_torch_kin.collision import CollisionChecker, Obstacle, RobotSpheres, Scene, self_collision_pairs  # noqa: E402
from ros_torch_kin.kinematics import Chain  # noqa: E402

KINDS = ("sphere", "box", "cylinder", "capsule")
BATCHES = (1, 256, 4096)
MARGIN = 0.05  # m: clearance of the penalty (the verdict uses d < 0)


def random_scene(count: int, seed: int) -> Scene:
    rng = np.random.default_rng(seed)
    obstacles = []
    for i in range(count):
        kind = KINDS[i % 4]
        while True:  # keep the base column (within 30 cm of the z axis) free
            position = rng.uniform((-0.9, -0.9, 0.0), (0.9, 0.9, 1.2))
            if math.hypot(*position[:2]) > 0.3:
                break
        pose = [*position, *rng.normal(size=4)]
        if kind == "sphere":
            obstacles.append(Obstacle.sphere(f"{kind}{i}", rng.uniform(0.02, 0.15), pose))
        elif kind == "box":
            obstacles.append(Obstacle.box(f"{kind}{i}", rng.uniform(0.04, 0.4, size=3), pose))
        else:
            obstacles.append(Obstacle(f"{kind}{i}", kind, (rng.uniform(0.04, 0.4), rng.uniform(0.02, 0.12)), pose))
    return Scene(obstacles)


def axis_spheres(urdf_path: Path, chain: Chain, package_root: Path, per_link: int = 5) -> RobotSpheres:
    """Fallback cover: per link with a collision mesh, ``per_link`` spheres on the mesh's longest
    principal axis, each as large as the farthest vertex in its slab."""
    import xml.etree.ElementTree as ET

    import trimesh

    links, centers, radii = [], [], []
    for link in ET.parse(urdf_path).getroot().iter("link"):
        mesh_tag = link.find("collision/geometry/mesh")
        if mesh_tag is None or not chain.has_link(link.get("name")):
            continue
        path = package_root / mesh_tag.get("filename").removeprefix("package://")
        vertices = np.asarray(trimesh.load(path, force="mesh").vertices)
        mean = vertices.mean(0)
        axis = np.linalg.svd(vertices - mean, full_matrices=False)[2][0]
        s = (vertices - mean) @ axis
        edges = np.linspace(s.min(), s.max(), per_link + 1)
        for k in range(per_link):
            center = mean + axis * 0.5 * (edges[k] + edges[k + 1])
            slab = vertices[(s >= edges[k] - 1e-9) & (s <= edges[k + 1] + 1e-9)]
            links.append(chain.link_index(link.get("name")))
            centers.append(center)
            radii.append(np.linalg.norm(slab - center, axis=1).max() if len(slab) else 0.01)
    radii_t = torch.tensor(radii, dtype=chain.dtype)
    return RobotSpheres(chain.link_names, torch.tensor(links), torch.tensor(np.array(centers), dtype=chain.dtype),
                        radii_t, radii_t.clone(), tuple("urdf" for _ in chain.link_names))


def robot_spheres(urdf: str, urdf_path: Path, chain: Chain, package_root: Path) -> tuple[RobotSpheres, str]:
    try:
        from ros_torch_kin.collision.urdf_spheres import robot_spheres_from_urdf

        return robot_spheres_from_urdf(urdf, chain, search_dirs=[package_root.parent, package_root]), "robot_spheres_from_urdf"
    except Exception as error:  # noqa: BLE001 (the builder may not have landed)
        print(f"robot_spheres_from_urdf unavailable ({error}); using axis spheres", flush=True)
        return axis_spheres(urdf_path, chain, package_root), "spheres on each mesh's principal axis (fallback)"


class CoalLoop:
    """Pinocchio + coal on the URDF's collision meshes, obstacles added as GeometryObjects."""

    def __init__(self, urdf_path: Path, srdf_path: Path, package_root: Path, scene: Scene, chain: Chain):
        import coal
        import pinocchio as pin

        self.pin = pin
        self.model, self.geometry, _ = pin.buildModelsFromUrdf(str(urdf_path), package_dirs=[str(package_root.parent)])
        self.geometry.addAllCollisionPairs()
        pin.removeCollisionPairs(self.model, self.geometry, str(srdf_path))
        robot = self.geometry.ngeoms
        for obstacle in scene:
            d = obstacle.dimensions
            shape = {"sphere": lambda: coal.Sphere(d[0]), "box": lambda: coal.Box(*d),
                     "cylinder": lambda: coal.Cylinder(d[1], d[0]), "capsule": lambda: coal.Capsule(d[1], d[0])}[obstacle.kind]()
            index = self.geometry.addGeometryObject(pin.GeometryObject(obstacle.id, 0, 0, pin.SE3(obstacle.pose), shape))
            for g in range(robot):
                self.geometry.addCollisionPair(pin.CollisionPair(g, index))
        self.data, self.geometry_data = self.model.createData(), pin.GeometryData(self.geometry)
        self.pairs = len(self.geometry.collisionPairs)
        # our DOFs -> Pinocchio q (the mimic finger is an ordinary joint there)
        self.columns = []
        for name in (self.model.names[j] for j in range(1, self.model.njoints)):
            mimic = name == "panda_finger_joint2"
            self.columns.append(chain.joint_index("panda_finger_joint1" if mimic else name))

    def configurations(self, q: torch.Tensor) -> list[np.ndarray]:
        return list(q.double().numpy()[:, self.columns])

    def verdicts(self, configurations) -> list[bool]:
        pin = self.pin
        return [pin.computeCollisions(self.model, self.data, self.geometry, self.geometry_data, q, True)
                for q in configurations]

    def distances(self, configurations) -> list[float]:
        pin = self.pin
        out = []
        for q in configurations:
            pin.computeDistances(self.model, self.data, self.geometry, self.geometry_data, q)
            out.append(min(r.min_distance for r in self.geometry_data.distanceResults))
        return out


def median_time(function, min_run_time: float) -> float:
    function()  # warm-up
    return Timer(stmt="f()", globals={"f": function}).blocked_autorange(min_run_time=min_run_time).median


def loop_time(function, items, rounds: int) -> float:
    """Seconds per item of a Python loop (median over rounds)."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        function(items)
        times.append((time.perf_counter() - start) / len(items))
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=None, help="BENCHMARKS.md to write the section into")
    parser.add_argument("--coal-configs", type=int, default=256, help="configurations timed in the coal loop")
    parser.add_argument("--min-run-time", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(2)
    load_start = os.getloadavg()[0]
    robots = example_robot_data_dir()
    package_root = robots.parent  # share/example-robot-data
    urdf_path = robots / "panda_description/urdf/panda.urdf"
    srdf_path = robots / "panda_description/srdf/panda.srdf"
    urdf = urdf_path.read_text()
    chain = Chain.from_urdf(urdf, device=args.device, dtype=torch.float32)
    spheres, sphere_source = robot_spheres(urdf, urdf_path, chain, package_root)
    scene = random_scene(20, seed=0)
    pairs = self_collision_pairs(chain, spheres, srdf=srdf_path.read_text(), samples=1000)
    checker = CollisionChecker(chain, spheres, scene, self_pairs=pairs)
    coal_loop = CoalLoop(urdf_path, srdf_path, package_root, scene, chain)
    print(checker, f"coal pairs {coal_loop.pairs}", flush=True)

    generator = torch.Generator().manual_seed(1)
    lower, upper = chain.lower_limits.cpu().double(), chain.upper_limits.cpu().double()
    q_all = (lower + torch.rand(max(BATCHES), chain.num_dofs, generator=generator, dtype=torch.float64) * (upper - lower))
    q_device = q_all.to(args.device, torch.float32)

    def synchronize():
        if q_device.is_cuda:
            torch.cuda.synchronize()

    times = {(B, what): [] for B in BATCHES for what in ("verdict", "gradient")}
    for round_ in range(args.rounds):  # interleaved rounds: drift on a shared machine hits both alike
        for B in BATCHES:
            q = q_device[:B].contiguous()
            times[B, "verdict"].append(median_time(lambda: (checker.in_collision(q), synchronize()), args.min_run_time))
            times[B, "gradient"].append(median_time(lambda: (checker.penalty(q, MARGIN), synchronize()), args.min_run_time))
            print(f"round {round_}, B={B}: verdict {1e3 * times[B, 'verdict'][-1]:.2f} ms, "
                  f"cost+gradient {1e3 * times[B, 'gradient'][-1]:.2f} ms", flush=True)
    rows = [(B, statistics.median(times[B, "verdict"]), statistics.median(times[B, "gradient"])) for B in BATCHES]

    configurations = coal_loop.configurations(q_all[: args.coal_configs])
    coal_verdict = loop_time(coal_loop.verdicts, configurations, rounds=3)
    coal_distance = loop_time(coal_loop.distances, configurations, rounds=1)
    print(f"coal: verdict {1e6 * coal_verdict:.0f} µs/config, distances {1e6 * coal_distance:.0f} µs/config", flush=True)

    # agreement of the verdicts (sphere model vs meshes) on the timed configurations
    ours = checker.in_collision(q_device[: args.coal_configs]).cpu().numpy()
    theirs = np.array(coal_loop.verdicts(configurations))
    agree = float((ours == theirs).mean())
    missed = int((~ours & theirs).sum())

    lines = [
        "## Collision benchmark: sphere model (batched) vs Pinocchio + coal loop",
        "",
        "Generated by `bench/collision_benchmark.py --output BENCHMARKS.md`; do not edit by hand.",
        "",
        f"- Date: {stamp()}",
        f"- Machine: {machine()}, torch threads 2, device {args.device}; load average (1 min) at start / end: "
        f"{load_start:.1f} / {os.getloadavg()[0]:.1f} (shared machine)",
        f"- Versions: {versions(('Pinocchio', coal_loop.pin.__version__))}",
        f"- Robot: Panda (example-robot-data), {spheres.num_spheres} spheres ({sphere_source}), "
        f"{pairs.num_sphere_pairs} self sphere pairs on {len(pairs.enabled)} link pairs (SRDF + 1000 samples); "
        f"scene: 20 obstacles (5 per kind); float32",
        f"- coal: {coal_loop.pairs} collision pairs (URDF collision meshes × obstacles, SRDF-filtered self pairs), "
        f"one configuration per call from a Python loop over {len(configurations)} configurations, float64",
        "- Ours: `CollisionChecker.in_collision` (verdict) and `CollisionChecker.penalty` (cost and closed-form "
        f"gradient, margin {MARGIN} m); per B the median over {args.rounds} interleaved rounds of the median of "
        "`torch.utils.benchmark` blocks; coal: median over 3 passes of the loop",
        f"- Verdicts, sphere model vs coal meshes, on {len(configurations)} configurations: agree {100 * agree:.1f} %, "
        f"{missed} collisions coal finds that the spheres miss (the sphere cover's fidelity, not the checker's)",
        "",
        "| B | verdict ms | verdict configs/s | cost+grad ms | cost+grad configs/s | cost+grad / verdict | coal verdict configs/s | ours / coal (verdict) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for B, verdict, gradient in rows:
        lines.append(f"| {B} | {1e3 * verdict:.2f} | {B / verdict:,.0f} | {1e3 * gradient:.2f} | {B / gradient:,.0f} | "
                     f"{gradient / verdict:.2f}× | {1 / coal_verdict:,.0f} | {B / verdict * coal_verdict:.1f}× |")
    _, verdict_4096, gradient_4096 = rows[-1]
    speedup = 4096 / verdict_4096 * coal_verdict
    lines += [
        "",
        f"coal distances (no gradient): {1 / coal_distance:,.0f} configs/s.",
        "",
        "Targets at B = 4096: verdict ≥ 10× the coal loop: "
        f"{'PASS' if speedup >= 10 else 'FAIL'} ({speedup:.1f}×); cost+gradient ≤ 3× the verdict time: "
        f"{'PASS' if gradient_4096 <= 3 * verdict_4096 else 'FAIL'} ({gradient_4096 / verdict_4096:.2f}×).",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    if args.output:
        write_section(args.output, "collision", markdown)


if __name__ == "__main__":
    main()
