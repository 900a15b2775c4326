"""Motion-planning scenes for the Franka Panda, modelled on MotionBenchMaker's families, and an
exact collision reference (Pinocchio + coal on the URDF's own collision meshes).

Families (robot base at the origin, x forward, z up; every size and placement drawn from a seeded
generator): ``table_top`` (a table in front with objects on it), ``shelf`` (an open shelf with two
or three boards), ``bookshelf`` (a taller shelf with books standing on its boards), ``bins`` (two
open bins left and right in front), ``cage`` (a cubby: an open box around the goal region,
opening towards the robot, with a roof over the workspace), ``random_boxes`` (boxes scattered
around the workspace). Obstacles stay clear of the robot's base column.

Problems: per scene, start and goal configurations drawn uniformly within 95 % of the joint
ranges, kept where the exact reference (coal on the meshes) finds them clear by the clearance
(never filtered by the model under test) and,
for goals, preferring configurations whose tool is inside the family's goal region (the shelf's
compartments, the bins, the cubby); the goal is the pose of ``panda_hand_tcp`` there, reachable
by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ros_torch_kin.collision import CollisionChecker, Obstacle, Scene
from ros_torch_kin.kinematics import Chain, forward_kinematics

FAMILIES = ("table_top", "shelf", "bookshelf", "bins", "cage", "random_boxes")
TOOL = "panda_hand_tcp"


def _pose(x, y, z, yaw=0.0) -> np.ndarray:
    T = np.eye(4)
    c, s = math.cos(yaw), math.sin(yaw)
    T[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    T[:3, 3] = (x, y, z)
    return T


def _box(id, size, x, y, z, yaw=0.0) -> Obstacle:
    return Obstacle.box(id, size, _pose(x, y, z, yaw))


def _in_frame(T: np.ndarray, x, y, z) -> tuple[float, float, float]:
    p = T @ np.array([x, y, z, 1.0])
    return float(p[0]), float(p[1]), float(p[2])


@dataclass(frozen=True)
class MotionScene:
    """A scene and the region (world-frame axis-aligned box, (low (3,), high (3,)), m) where its
    goals' tool positions are preferred."""

    family: str
    seed: int
    scene: Scene
    goal_region: tuple[np.ndarray, np.ndarray]


def make_scene(family: str, seed: int) -> MotionScene:
    """One scene of ``family`` drawn with ``seed`` (the same seed gives the same scene)."""
    rng = np.random.default_rng([FAMILIES.index(family), seed])
    u = rng.uniform
    obstacles: list[Obstacle] = []
    if family == "table_top":
        height, depth, width, near = u(0.0, 0.25), u(0.6, 0.9), u(1.0, 1.4), u(0.3, 0.4)
        x = near + depth / 2
        obstacles.append(_box("table", (depth, width, 0.04), x, u(-0.1, 0.1), height - 0.02))
        for i in range(int(rng.integers(3, 7))):
            size = (u(0.04, 0.12), u(0.04, 0.12), u(0.08, 0.3))
            obstacles.append(_box(f"object{i}", size, u(near + 0.1, near + 0.5), u(-0.5, 0.5), height + size[2] / 2,
                                  u(-math.pi, math.pi)))
        region = (np.array([near, -0.5, height + 0.05]), np.array([near + 0.5, 0.5, height + 0.4]))
    elif family in ("shelf", "bookshelf"):
        yaw = u(-0.5, 0.5)
        distance, width, depth = u(0.55, 0.75), u(0.6, 0.9), u(0.3, 0.4)
        levels = 3 if family == "shelf" else 4
        bottom, top = u(0.0, 0.2), u(0.9, 1.2) if family == "shelf" else u(1.2, 1.5)
        T = _pose(distance * math.cos(yaw), distance * math.sin(yaw), 0.0, yaw)  # shelf frame: x into the shelf
        thick = 0.02
        parts = [("back", (thick, width, top - bottom), depth, 0.0, (top + bottom) / 2),
                 ("left", (depth, thick, top - bottom), depth / 2, width / 2, (top + bottom) / 2),
                 ("right", (depth, thick, top - bottom), depth / 2, -width / 2, (top + bottom) / 2)]
        boards = np.linspace(bottom, top, levels)
        parts += [(f"board{i}", (depth, width, thick), depth / 2, 0.0, z) for i, z in enumerate(boards)]
        for name, size, x, y, z in parts:
            obstacles.append(_box(name, size, *_in_frame(T, x, y, z), yaw))
        if family == "bookshelf":
            for i in range(int(rng.integers(4, 9))):
                level = int(rng.integers(0, levels - 1))
                gap = boards[level + 1] - boards[level]
                size = (u(0.15, 0.25), u(0.02, 0.05), u(0.4, 0.8) * gap)
                x, y = depth - size[0] / 2 - 0.02, u(-width / 2 + 0.05, width / 2 - 0.05)
                obstacles.append(_box(f"book{i}", size, *_in_frame(T, x, y, boards[level] + thick / 2 + size[2] / 2), yaw))
        centre = np.array(_in_frame(T, depth / 2, 0.0, (top + bottom) / 2))
        half = np.array([0.25, 0.25, (top - bottom) / 2])
        region = (centre - half, centre + half)
    elif family == "bins":
        for side, sign in (("left", 1), ("right", -1)):
            cx, cy = u(0.35, 0.6), sign * u(0.35, 0.55)
            length, width, height, thick = u(0.3, 0.45), u(0.3, 0.45), u(0.12, 0.25), 0.015
            base = u(0.0, 0.15)
            parts = [("bottom", (length, width, thick), 0, 0, base),
                     ("front", (thick, width, height), -length / 2, 0, base + height / 2),
                     ("back", (thick, width, height), length / 2, 0, base + height / 2),
                     ("wall_a", (length, thick, height), 0, width / 2, base + height / 2),
                     ("wall_b", (length, thick, height), 0, -width / 2, base + height / 2)]
            for name, size, x, y, z in parts:
                obstacles.append(_box(f"{side}_bin_{name}", size, cx + x, cy + y, z))
        region = (np.array([0.3, -0.6, 0.05]), np.array([0.65, 0.6, 0.4]))
    elif family == "cage":
        yaw = u(-0.6, 0.6)
        distance, width, height, depth = u(0.5, 0.65), u(0.35, 0.5), u(0.3, 0.45), u(0.3, 0.4)
        bottom = u(0.1, 0.45)
        T = _pose(distance * math.cos(yaw), distance * math.sin(yaw), 0.0, yaw)
        thick = 0.02
        parts = [("floor", (depth, width, thick), depth / 2, 0, bottom),
                 ("roof", (depth, width, thick), depth / 2, 0, bottom + height),
                 ("back", (thick, width, height), depth, 0, bottom + height / 2),
                 ("left", (depth, thick, height), depth / 2, width / 2, bottom + height / 2),
                 ("right", (depth, thick, height), depth / 2, -width / 2, bottom + height / 2)]
        for name, size, x, y, z in parts:
            obstacles.append(_box(f"cubby_{name}", size, *_in_frame(T, x, y, z), yaw))
        obstacles.append(_box("ceiling", (1.2, 1.6, 0.02), 0.2, 0.0, u(1.25, 1.4)))
        for i, (px, py) in enumerate(((-0.45, 0.55), (-0.45, -0.55))):
            obstacles.append(Obstacle.cylinder(f"pillar{i}", 1.2, 0.03, _pose(px, py, 0.6)))
        centre = np.array(_in_frame(T, depth / 2, 0, bottom + height / 2))
        region = (centre - np.array([0.15, 0.15, height / 2]), centre + np.array([0.15, 0.15, height / 2]))
    elif family == "random_boxes":
        for i in range(int(rng.integers(6, 11))):
            while True:
                x, y, z = u(-0.7, 0.8), u(-0.8, 0.8), u(0.0, 1.1)
                if math.hypot(x, y) > 0.35:  # off the base column
                    break
            obstacles.append(_box(f"box{i}", tuple(u(0.05, 0.25, size=3)), x, y, z, u(-math.pi, math.pi)))
        region = (np.array([-0.8, -0.8, 0.0]), np.array([0.8, 0.8, 1.2]))
    else:
        raise ValueError(f"unknown family '{family}' (one of {', '.join(FAMILIES)})")
    return MotionScene(family, seed, Scene(obstacles), region)


def sample_problems(chain: Chain, reference: "ExactReference", scene: MotionScene, count: int, clearance: float,
                    samples: int = 8192) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``count`` problems in ``scene``: starts (count, J), goal configurations (count, J) and
    goal poses of the tool (count, 4, 4). Configurations within 95 % of the joint ranges that the
    exact reference (coal on the meshes, never the model under test) finds at least ``clearance``
    from everything (start and goal differ by ≥ 1 rad in joint space); goals with the tool in the
    scene's goal region first. Fewer than ``count`` if too few are free."""
    generator = torch.Generator().manual_seed(1000 * FAMILIES.index(scene.family) + scene.seed)
    lower, upper = chain.lower_limits.double(), chain.upper_limits.double()
    middle, half = (lower + upper) / 2, 0.475 * (upper - lower)
    q = (middle + (2 * torch.rand(samples, chain.num_dofs, generator=generator, dtype=torch.float64) - 1) * half)
    q = q.to(chain.dtype)
    reference.set_scene(scene.scene)
    verdicts: dict[int, bool] = {}

    def free(i: int) -> bool:
        if i not in verdicts:
            verdicts[i] = reference.clearance(q[i].double().numpy()) >= clearance
        return verdicts[i]

    tool = forward_kinematics(chain, q, links=TOOL)
    low, high = (torch.as_tensor(b, dtype=chain.dtype) for b in scene.goal_region)
    inside = ((tool[:, :3, 3] >= low) & (tool[:, :3, 3] <= high)).all(-1) & (tool[:, 2, 3] > 0.02)
    goal_order = torch.cat((inside.nonzero().squeeze(1), (~inside).nonzero().squeeze(1))).tolist()
    order = torch.randperm(q.shape[0], generator=generator).tolist()
    starts, chosen_goals, used = [], [], set()
    for g in goal_order:
        if len(starts) == count:
            break
        if g in used or not free(g):
            continue
        for s in order:
            if s != g and s not in used and (q[s] - q[g]).norm() >= 1.0 and free(s):
                starts.append(q[s])
                chosen_goals.append(q[g])
                used.update((s, g))
                break
    starts, goal_q = torch.stack(starts), torch.stack(chosen_goals)
    return starts, goal_q, forward_kinematics(chain, goal_q, links=TOOL)


class ExactReference:
    """Collision of the URDF's own collision geometry (meshes and primitives, as Pinocchio loads
    them) with a scene's obstacles (as coal shapes) and with itself (the link pairs given),
    along the piecewise-linear joint motion through a trajectory's waypoints."""

    def __init__(self, urdf_path: str | Path, package_dirs, chain: Chain, self_link_pairs=()):
        import coal
        import pinocchio as pin

        self.pin, self.coal, self.chain = pin, coal, chain
        self.model = pin.buildModelFromUrdf(str(urdf_path))
        self.robot = pin.buildGeomFromUrdf(self.model, str(urdf_path), pin.GeometryType.COLLISION,
                                           package_dirs=[str(d) for d in package_dirs])
        self.robot_count = self.robot.ngeoms
        self.data = self.model.createData()
        self.self_link_pairs = {frozenset(p) for p in self_link_pairs}
        joints = {j.name: j for j in chain.description.joints}
        self._joint_values = []  # per Pinocchio q index: (DOF index, multiplier, offset)
        dof = {name: i for i, name in enumerate(chain.joint_names)}
        for jid in range(1, self.model.njoints):
            joint = joints[self.model.names[jid]]
            leader, multiplier, offset = joint.name, 1.0, 0.0
            if joint.mimic is not None:
                leader, multiplier, offset = joint.mimic.leader, joint.mimic.multiplier, joint.mimic.offset
            self._joint_values.append((self.model.idx_qs[jid], dof[leader], multiplier, offset))
        self.geometry = None

    def _link_of(self, geometry_index: int) -> str:
        return self.model.frames[self.robot.geometryObjects[geometry_index].parentFrame].name

    def set_scene(self, scene: Scene) -> None:
        pin, coal = self.pin, self.coal
        geometry = self.robot.clone()
        for obstacle in scene:
            d = obstacle.dimensions
            shape = {"sphere": lambda: coal.Sphere(d[0]), "box": lambda: coal.Box(*d),
                     "cylinder": lambda: coal.Cylinder(d[1], d[0]), "capsule": lambda: coal.Capsule(d[1], d[0])}[obstacle.kind]()
            geometry.addGeometryObject(pin.GeometryObject(obstacle.id, 0, 0, pin.SE3(obstacle.pose), shape))
        R = self.robot_count
        for a in range(R):
            for b in range(R, geometry.ngeoms):
                geometry.addCollisionPair(pin.CollisionPair(a, b))
            for b in range(a + 1, R):
                if frozenset((self._link_of(a), self._link_of(b))) in self.self_link_pairs:
                    geometry.addCollisionPair(pin.CollisionPair(a, b))
        self.geometry, self.geometry_data = geometry, pin.GeometryData(geometry)

    def configuration(self, q: np.ndarray) -> np.ndarray:
        x = self.pin.neutral(self.model)
        for index, dof, multiplier, offset in self._joint_values:
            x[index] = multiplier * q[dof] + offset
        return x

    def dense(self, positions: np.ndarray, max_step: float) -> np.ndarray:
        """(T, J) waypoints -> the configurations of the piecewise-linear motion at most
        ``max_step`` (rad or m, any joint) apart, waypoints included."""
        out = [positions[:1]]
        for a, b in zip(positions[:-1], positions[1:]):
            n = max(1, int(math.ceil(np.abs(b - a).max() / max_step)))
            out.append(a + (np.arange(1, n + 1)[:, None] / n) * (b - a))
        return np.concatenate(out)

    def collides(self, positions: np.ndarray, max_step: float = 0.005, margin: float = 0.0) -> tuple[bool, str]:
        """Whether any configuration of the motion, ``max_step`` apart, has a checked pair closer
        than ``margin`` (m; 0: touching or overlapping); and the first such pair's names."""
        pin = self.pin
        for request in self.geometry_data.collisionRequests:
            request.security_margin = margin
        for q in self.dense(np.asarray(positions, dtype=np.float64), max_step):
            if pin.computeCollisions(self.model, self.data, self.geometry, self.geometry_data, self.configuration(q), True):
                for k, result in enumerate(self.geometry_data.collisionResults):
                    if result.isCollision():
                        pair = self.geometry.collisionPairs[k]
                        return True, f"{self._link_of(pair.first)} - {self.geometry.geometryObjects[pair.second].name}"
        return False, ""

    def min_distance(self, positions: np.ndarray, max_step: float = 0.05) -> float:
        """The smallest exact distance (m) over the checked pairs at configurations of the motion
        ``max_step`` apart (waypoints included); negative: penetration."""
        pin = self.pin
        lowest = math.inf
        for q in self.dense(np.asarray(positions, dtype=np.float64), max_step):
            pin.computeDistances(self.model, self.data, self.geometry, self.geometry_data, self.configuration(q))
            lowest = min(lowest, min(r.min_distance for r in self.geometry_data.distanceResults))
        return lowest

    def clearance(self, q: np.ndarray) -> float:
        """The smallest exact distance (m; negative: penetration) over the checked pairs at one
        configuration ``q`` (J,)."""
        return self.closest(q)[0]

    def closest(self, q: np.ndarray) -> tuple[float, str]:
        """:meth:`clearance` at ``q`` and the names of the pair at that distance."""
        pin, results = self.pin, self.geometry_data.distanceResults
        pin.computeDistances(self.model, self.data, self.geometry, self.geometry_data,
                             self.configuration(np.asarray(q, dtype=np.float64)))
        k = min(range(len(results)), key=lambda i: results[i].min_distance)
        pair = self.geometry.collisionPairs[k]
        return results[k].min_distance, f"{self._link_of(pair.first)} - {self.geometry.geometryObjects[pair.second].name}"
