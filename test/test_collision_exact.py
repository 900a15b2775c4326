"""The sphere model against an exact reference we did not write: Pinocchio's collision module
(coal) on the URDF's own collision meshes, on random configurations and random obstacles.

What the collision model promises (ros_torch_kin/collision): for a link and an obstacle (or two
links) apart, ``d_spheres <= d_exact <= d_spheres + slack_link (+ slack_other)``, so "free" from
the spheres is free for the meshes. Checked here per (link, obstacle) and per enabled self pair
on Panda and UR5 from example-robot-data.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import REAL_ROBOTS, example_robot_data_dir, random_q

from ros_torch_kin.collision import CollisionChecker, Obstacle, Scene, robot_spheres_from_urdf, self_collision_pairs
from ros_torch_kin.kinematics import Chain

pin = pytest.importorskip("pinocchio")
coal = pytest.importorskip("coal")
TOLERANCE = 2e-6  # m: float64 on both sides; coal's mesh distances are exact to round-off


class MeshReference:
    """The URDF's collision geometry as Pinocchio loads it (meshes via package_dirs), and exact
    coal distances between one link's geometry and a shape, or between two links."""

    def __init__(self, urdf_path, package_dir, chain: Chain):
        self.model = pin.buildModelFromUrdf(str(urdf_path))
        self.geometry = pin.buildGeomFromUrdf(self.model, str(urdf_path), pin.GeometryType.COLLISION,
                                              package_dirs=[str(package_dir)])
        self.data, self.geometry_data = self.model.createData(), pin.GeometryData(self.geometry)
        self.chain = chain
        joints = {j.name: j for j in chain.description.joints}
        dof = {name: i for i, name in enumerate(chain.joint_names)}
        self._columns = []  # per Pinocchio joint: (q index, DOF, multiplier, offset); mimics from the XML
        for jid in range(1, self.model.njoints):
            joint = joints[self.model.names[jid]]
            mimic = joint.mimic
            leader, m, o = (mimic.leader, mimic.multiplier, mimic.offset) if mimic else (joint.name, 1.0, 0.0)
            self._columns.append((self.model.idx_qs[jid], dof[leader], m, o))
        self.links = [self.model.frames[g.parentFrame].name for g in self.geometry.geometryObjects]

    def place(self, q: np.ndarray) -> None:
        x = pin.neutral(self.model)
        for index, column, m, o in self._columns:
            x[index] = m * q[column] + o
        pin.forwardKinematics(self.model, self.data, x)
        pin.updateGeometryPlacements(self.model, self.data, self.geometry, self.geometry_data)

    def _objects(self, link):
        for k, name in enumerate(self.links):
            if name == link:
                placement = self.geometry_data.oMg[k]
                yield self.geometry.geometryObjects[k].geometry, coal.Transform3s(placement.rotation, placement.translation)

    def link_to_shape(self, link: str, shape, pose: np.ndarray) -> float:
        transform = coal.Transform3s(pose[:3, :3], pose[:3, 3])
        return min(_distance(g, t, shape, transform) for g, t in self._objects(link))

    def link_to_link(self, a: str, b: str) -> float:
        return min(_distance(ga, ta, gb, tb) for ga, ta in self._objects(a) for gb, tb in self._objects(b))


def _distance(geometry_a, transform_a, geometry_b, transform_b) -> float:
    result = coal.DistanceResult()
    coal.distance(geometry_a, transform_a, geometry_b, transform_b, coal.DistanceRequest(), result)
    return float(result.min_distance)


def _coal_shape(obstacle: Obstacle):
    d = obstacle.dimensions
    return coal.Sphere(d[0]) if obstacle.kind == "sphere" else coal.Box(*d)


def random_obstacles(rng: np.random.Generator, count: int) -> list[Obstacle]:
    obstacles = []
    for i in range(count):
        position = rng.uniform((-0.7, -0.7, 0.0), (0.7, 0.7, 1.0))
        quaternion = rng.normal(size=4)
        pose = np.concatenate((position, quaternion / np.linalg.norm(quaternion)))
        if i % 2:
            obstacles.append(Obstacle.sphere(f"ball{i}", float(rng.uniform(0.03, 0.12)), pose))
        else:
            obstacles.append(Obstacle.box(f"box{i}", tuple(rng.uniform(0.04, 0.25, 3)), pose))
    return obstacles


@pytest.fixture(scope="module", params=["panda", "ur5"])
def robot(request):
    root = example_robot_data_dir()
    if root is None:
        pytest.skip("example-robot-data is not installed")
    path = root / REAL_ROBOTS[request.param]
    urdf = path.read_text()
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float64)
    spheres = robot_spheres_from_urdf(urdf, chain, search_dirs=[str(root.parents[1])])
    return request.param, chain, spheres, MeshReference(path, root.parents[1], chain)


def link_slack(spheres, chain) -> dict[str, float]:
    links = spheres.sphere_links.numpy()
    return {chain.link_names[l]: float(spheres.slack.numpy()[links == l].max()) for l in np.unique(links)}


def test_sphere_distances_to_obstacles_bracket_the_exact_mesh_distances(robot):
    name, chain, spheres, reference = robot
    rng = np.random.default_rng(5)
    scene = Scene(random_obstacles(rng, 8))
    checker = CollisionChecker(chain, spheres, scene, self_collision_pairs(chain, spheres, samples=0))
    q = random_q(chain, 6, seed=21)
    full = checker.distances(q, full=True).sphere_obstacle.numpy()  # (B, S, O)
    obstacle_order = checker.distances(q[:1]).obstacle_ids
    sphere_links = spheres.sphere_links.numpy()
    slack = link_slack(spheres, chain)
    checked = collisions = 0
    for b in range(q.shape[0]):
        reference.place(q[b].numpy())
        for o, obstacle_id in enumerate(obstacle_order):
            obstacle = scene.obstacle(obstacle_id)
            for link in slack:
                ours = float(full[b, sphere_links == chain.link_index(link), o].min())
                exact = reference.link_to_shape(link, _coal_shape(obstacle), obstacle.pose)
                if exact > 0:  # apart: conservative, and tight within the stated slack
                    assert ours <= exact + TOLERANCE, (name, b, link, obstacle_id, ours, exact)
                    assert exact <= ours + slack[link] + TOLERANCE, (name, b, link, obstacle_id, ours, exact, slack[link])
                    checked += 1
                else:  # touching the mesh: the spheres, which hold its surface, overlap the obstacle too
                    assert ours <= TOLERANCE, (name, b, link, obstacle_id, ours, exact)
                    collisions += 1
    assert checked > 100 and collisions > 0, (checked, collisions)  # both cases were exercised


def test_free_self_pairs_by_the_spheres_are_free_for_the_meshes(robot):
    name, chain, spheres, reference = robot
    pairs = self_collision_pairs(chain, spheres, samples=200)
    checker = CollisionChecker(chain, spheres, None, pairs)
    q = random_q(chain, 12, seed=22)
    full = checker.distances(q, full=True).sphere_pairs.numpy()  # (B, Q)
    sphere_links = spheres.sphere_links.numpy()
    link_a = sphere_links[pairs.sphere_a.numpy()]
    link_b = sphere_links[pairs.sphere_b.numpy()]
    slack = link_slack(spheres, chain)
    compared = 0
    for b in range(q.shape[0]):
        reference.place(q[b].numpy())
        for a_name, b_name in pairs.enabled[:12]:
            a, c = chain.link_index(a_name), chain.link_index(b_name)
            ours = float(full[b, ((link_a == a) & (link_b == c)) | ((link_a == c) & (link_b == a))].min())
            exact = reference.link_to_link(a_name, b_name)
            if ours > TOLERANCE:  # the spheres say free: the meshes must be free, and not much farther
                assert exact >= ours - TOLERANCE, (name, b, a_name, b_name, ours, exact)
                assert exact <= ours + slack[a_name] + slack[b_name] + TOLERANCE
                compared += 1
    assert compared > 20
