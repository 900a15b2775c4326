"""Collision model: signed distances, the penalty gradient, self pairs, scenes.

References we did not write: trimesh primitives (mesh distance by trimesh's closest point on
triangles), coal (Pinocchio's collision library) on the same spheres and obstacles, Pinocchio's
kinematics for the robot's placements, central finite differences, and autograd through
``forward_kinematics(..., analytical_grad=False)``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import PinocchioReference, example_robot_data_dir, random_q, real_urdf
from ros_torch_kin.collision import (
    CollisionChecker,
    Obstacle,
    RobotSpheres,
    Scene,
    pose_from_xyz_quat_xyzw,
    self_collision_pairs,
    sphere_obstacle_distances,
    sphere_sphere_distance,
)
from ros_torch_kin.collision.signed_distance import signed_distance_rows, to_local
from ros_torch_kin.kinematics import Chain, forward_kinematics

F64 = torch.float64


# ---------------------------------------------------------------------- fixtures and helpers
def random_rotation(rng: np.random.Generator) -> np.ndarray:
    quat = rng.normal(size=4)
    return pose_from_xyz_quat_xyzw([0, 0, 0, *quat])[:3, :3]


def random_pose(rng, low=(-0.6, -0.6, 0.0), high=(0.6, 0.6, 1.0)) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = random_rotation(rng), rng.uniform(low, high)
    return T


def random_obstacle(rng, id: str, kind: str, pose=None) -> Obstacle:
    pose = random_pose(rng) if pose is None else pose
    if kind == "sphere":
        return Obstacle.sphere(id, rng.uniform(0.03, 0.2), pose)
    if kind == "box":
        return Obstacle.box(id, rng.uniform(0.05, 0.4, size=3), pose)
    return Obstacle(id, kind, (rng.uniform(0.05, 0.4), rng.uniform(0.03, 0.15)), pose)


def random_scene(seed: int, count: int = 8) -> Scene:
    rng = np.random.default_rng(seed)
    kinds = ("sphere", "box", "cylinder", "capsule")

    def pose_off_the_base():  # the robot's base column (within 25 cm of the z axis) stays free
        while np.hypot(*(pose := random_pose(rng))[:2, 3]) < 0.25:
            pass
        return pose

    return Scene(random_obstacle(rng, f"{kinds[i % 4]}{i}", kinds[i % 4], pose_off_the_base()) for i in range(count))


def hand_made_spheres(chain: Chain, per_link: int = 3, seed: int = 0, skip=(), scale: float = 1.0) -> RobotSpheres:
    """A few spheres near the origin of every link but those in ``skip`` (centres
    within ~6 cm, radii 2–6 cm, both times ``scale``)."""
    g = torch.Generator().manual_seed(seed)
    links = [l for l in range(chain.num_links) if chain.link_names[l] not in skip]
    sphere_links = torch.tensor(links).repeat_interleave(per_link)
    S = len(sphere_links)
    centers = 0.06 * scale * torch.randn(S, 3, generator=g, dtype=F64)
    radii = scale * (0.02 + 0.04 * torch.rand(S, generator=g, dtype=F64))
    return RobotSpheres(chain.link_names, sphere_links, centers, radii, radii.clone(), ("user",) * chain.num_links)


@pytest.fixture(scope="module")
def panda() -> tuple[str, Chain]:
    urdf = real_urdf("panda")
    return urdf, Chain.from_urdf(urdf, device="cpu", dtype=F64)


def panda_spheres(chain: Chain, scale: float = 1.0) -> RobotSpheres:
    return hand_made_spheres(chain, per_link=3, seed=1, skip=("panda_link8", "panda_hand_tcp"), scale=scale)


# ---------------------------------------------------------------------- (a) signed distances
def trimesh_signed_distance(mesh, points: np.ndarray) -> np.ndarray:
    """Distance to a convex mesh's surface (closest point over all triangles), negative inside
    (inside = behind every face plane)."""
    trimesh = pytest.importorskip("trimesh")
    triangles = mesh.triangles
    T, P = len(triangles), len(points)
    closest = trimesh.triangles.closest_point(np.tile(triangles, (P, 1, 1)), np.repeat(points, T, axis=0))
    distance = np.linalg.norm(closest - np.repeat(points, T, axis=0), axis=1).reshape(P, T).min(axis=1)
    plane = np.einsum("pfi,fi->pf", points[:, None, :] - triangles[None, :, 0], mesh.face_normals)
    return np.where(plane.max(axis=1) < 0, -distance, distance)


def trimesh_primitive(obstacle: Obstacle):
    trimesh = pytest.importorskip("trimesh")
    kind, dims = obstacle.kind, obstacle.dimensions
    if kind == "sphere":
        mesh = trimesh.creation.uv_sphere(radius=dims[0], count=[128, 128])
    elif kind == "box":
        mesh = trimesh.creation.box(extents=dims)
    elif kind == "cylinder":
        mesh = trimesh.creation.cylinder(radius=dims[1], height=dims[0], sections=512)
    else:
        mesh = trimesh.creation.capsule(height=dims[0], radius=dims[1], count=[128, 128])
    mesh.apply_transform(obstacle.pose)
    return mesh


def distances_to(obstacle: Obstacle, points: np.ndarray, radii=None, with_normal=True):
    packed = Scene([obstacle]).packed("cpu", F64)
    points_t = torch.as_tensor(points, dtype=F64)
    radii_t = torch.zeros(len(points), dtype=F64) if radii is None else torch.as_tensor(radii, dtype=F64)
    d, n = sphere_obstacle_distances(points_t, radii_t, packed, with_normal=with_normal)
    return d[:, 0], (n[:, 0] if with_normal else None)


def points_around(obstacle: Obstacle, rng, count: int = 60) -> np.ndarray:
    """Points inside, near and outside the obstacle (in its frame, then to the world)."""
    extent = max(obstacle.dimensions) + 0.05
    local = rng.uniform(-1.2 * extent, 1.2 * extent, size=(count, 3))
    dims = obstacle.dimensions
    if obstacle.kind == "sphere":  # a box inside the shape
        inner = (dims[0] / math.sqrt(3),) * 3
    elif obstacle.kind == "box":
        inner = tuple(0.5 * d for d in dims)
    else:
        inner = (dims[1] / math.sqrt(2), dims[1] / math.sqrt(2), 0.5 * dims[0])
    local[: count // 3] = rng.uniform(-1, 1, size=(count // 3, 3)) * inner  # a third inside
    return local @ obstacle.pose[:3, :3].T + obstacle.pose[:3, 3]


@pytest.mark.parametrize("kind", ["sphere", "box", "cylinder", "capsule"])
def test_signed_distance_matches_trimesh_primitive(kind):
    rng = np.random.default_rng({"sphere": 1, "box": 2, "cylinder": 3, "capsule": 4}[kind])
    obstacle = random_obstacle(rng, "o", kind, random_pose(rng))
    points = points_around(obstacle, rng)
    reference = trimesh_signed_distance(trimesh_primitive(obstacle), points)
    ours, _ = distances_to(obstacle, points)
    assert (reference < 0).sum() >= 10 and (reference > 0).sum() >= 10  # both sides covered
    # tessellation: a chord of a 512-gon / 128-segment circle lies within r (1 − cos(π/n)) of it
    tolerance = 1e-9 if kind == "box" else 4e-4 * max(obstacle.dimensions)
    np.testing.assert_allclose(ours.numpy(), reference, atol=tolerance)
    # a sphere's distance is the point distance minus its radius
    radii = rng.uniform(0.0, 0.1, size=len(points))
    inflated, _ = distances_to(obstacle, points, radii)
    np.testing.assert_allclose(inflated.numpy(), ours.numpy() - radii, atol=1e-15)
    # the verdict's row form (points by row in the obstacle frame, no normal) gives the same values
    packed = Scene([obstacle]).packed("cpu", torch.float64).shapes[0]
    local = to_local(torch.as_tensor(points, dtype=torch.float64).T.contiguous(), packed).mT  # (1, P, 3)
    rows = signed_distance_rows(packed.kind, local, packed.parameters)
    np.testing.assert_allclose(rows[0].numpy(), ours.numpy(), atol=1e-12)


def test_signed_distance_hand_derived_inside_and_outside():
    box = Obstacle.box("b", (0.2, 0.4, 0.6))
    cylinder = Obstacle.cylinder("c", 0.4, 0.1)
    capsule = Obstacle.capsule("k", 0.4, 0.1)
    sphere = Obstacle.sphere("s", 0.1, [1, 2, 3, 0, 0, 0, 1])
    cases = [
        (box, (0.01, 0, 0), -0.09, (1, 0, 0)),  # inside: nearest face x = +0.1
        (box, (0, -0.15, 0.02), -0.05, (0, -1, 0)),
        (box, (0.2, 0.3, 0), math.hypot(0.1, 0.1), (math.sqrt(0.5), math.sqrt(0.5), 0)),  # off an edge
        (box, (0.1, 0.2, 0.3), 0.0, None),  # a corner
        (cylinder, (0, 0, 0.15), -0.05, (0, 0, 1)),  # inside, nearer the cap
        (cylinder, (0.08, 0, 0), -0.02, (1, 0, 0)),  # inside, nearer the side
        (cylinder, (0.4, 0, 0.5), math.hypot(0.3, 0.3), (math.sqrt(0.5), 0, math.sqrt(0.5))),  # off the rim
        (cylinder, (0, 0.3, 0.1), 0.2, (0, 1, 0)),
        (capsule, (0, 0, 0.25), -0.05, (0, 0, 1)),  # inside the top hemisphere
        (capsule, (0, 0.05, -0.1), -0.05, (0, 1, 0)),
        (capsule, (0.3, 0, 0.5), math.hypot(0.3, 0.3) - 0.1, (math.sqrt(0.5), 0, math.sqrt(0.5))),
        (sphere, (1, 2, 3.04), -0.06, (0, 0, 1)),
        (sphere, (1.3, 2, 3), 0.2, (1, 0, 0)),
    ]
    for obstacle, point, expected, normal in cases:
        d, n = distances_to(obstacle, np.array([point], dtype=float))
        assert float(d[0]) == pytest.approx(expected, abs=1e-12), (obstacle.id, point)
        if normal is not None:
            np.testing.assert_allclose(n[0].numpy(), normal, atol=1e-12, err_msg=f"{obstacle.id} {point}")


@pytest.mark.parametrize("kind", ["sphere", "box", "cylinder", "capsule"])
def test_normal_is_the_distance_gradient(kind):
    """The returned normal is unit length and equals central differences and autograd of the
    distance, inside and outside (points away from the medial axis, where it is smooth)."""
    rng = np.random.default_rng(10 + len(kind))
    obstacle = random_obstacle(rng, "o", kind, random_pose(rng))
    points = points_around(obstacle, rng, 40)
    d, n = distances_to(obstacle, points)
    np.testing.assert_allclose(n.norm(dim=1).numpy(), 1.0, atol=1e-12)
    h = 1e-7
    finite = np.stack([
        (distances_to(obstacle, points + h * e, with_normal=False)[0] - distances_to(obstacle, points - h * e, with_normal=False)[0]).numpy() / (2 * h)
        for e in np.eye(3)
    ], axis=1)
    points_t = torch.tensor(points, dtype=F64, requires_grad=True)
    packed = Scene([obstacle]).packed("cpu", F64)
    distance, _ = sphere_obstacle_distances(points_t, torch.zeros(len(points), dtype=F64), packed)
    (autograd,) = torch.autograd.grad(distance.sum(), points_t)
    # away from ridges where the nearest feature switches, the gradient is unique
    smooth = np.abs(finite - n.numpy()).max(axis=1) < 1e-4
    assert smooth.mean() > 0.9
    np.testing.assert_allclose(n.numpy()[smooth], finite[smooth], atol=1e-6)
    np.testing.assert_allclose(n.numpy(), autograd.numpy(), atol=1e-9)


def test_sphere_sphere_distance_and_coincident_centres():
    a = torch.tensor([[0.0, 0, 0], [1.0, 1.0, 1.0]], dtype=F64)
    b = torch.tensor([[0.0, 0, 0.5], [1.0, 1.0, 1.0]], dtype=F64)
    d, n = sphere_sphere_distance(a, torch.tensor([0.1, 0.2], dtype=F64), b, torch.tensor([0.2, 0.1], dtype=F64))
    np.testing.assert_allclose(d.numpy(), [0.2, -0.3], atol=1e-12)
    np.testing.assert_allclose(n.numpy(), [[0, 0, -1], [1, 0, 0]], atol=1e-12)


# ---------------------------------------------------------------------- (b) penalty gradient
def reference_cost(checker: CollisionChecker, q: torch.Tensor, margin: float) -> torch.Tensor:
    """The penalty by plain autograd: FK without the analytical backward, then the distances."""
    chain, spheres, pairs = checker.chain, checker.spheres, checker.self_pairs
    T = forward_kinematics(chain, q, analytical_grad=False)[:, spheres.sphere_links]  # (B, S, 4, 4)
    centers = (T[..., :3, :3] @ spheres.centers.unsqueeze(-1)).squeeze(-1) + T[..., :3, 3]
    B, S, _ = centers.shape
    world, _ = sphere_obstacle_distances(centers.reshape(-1, 3), spheres.radii.repeat(B),
                                         checker.scene.packed("cpu", chain.dtype))
    own, _ = sphere_sphere_distance(centers[:, pairs.sphere_a], spheres.radii[pairs.sphere_a],
                                    centers[:, pairs.sphere_b], spheres.radii[pairs.sphere_b])
    hinge = torch.relu(margin - torch.cat((world.reshape(B, -1), own), dim=1))
    return 0.5 * (hinge * hinge).sum(1)


def check_penalty_gradient(checker: CollisionChecker, q: torch.Tensor, margin: float):
    cost, gradient = checker.penalty(q, margin)
    assert (cost > 0).all(), "every configuration should be penalised for this test to mean anything"
    # vs plain autograd through FK
    leaf = q.clone().requires_grad_()
    expected = reference_cost(checker, leaf, margin)
    (expected_gradient,) = torch.autograd.grad(expected.sum(), leaf)
    np.testing.assert_allclose(cost.numpy(), expected.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gradient.numpy(), expected_gradient.numpy(), rtol=1e-9, atol=1e-11)
    # vs central differences of the cost
    h = 1e-6
    finite = torch.stack([
        (checker.penalty(q + h * e, margin)[0] - checker.penalty(q - h * e, margin)[0]) / (2 * h)
        for e in torch.eye(q.shape[1], dtype=q.dtype)
    ], dim=1)
    np.testing.assert_allclose(gradient.numpy(), finite.numpy(), atol=1e-7)
    # the autograd Function gives the same gradient
    leaf = q.clone().requires_grad_()
    weights = torch.linspace(0.5, 2.0, q.shape[0], dtype=q.dtype)
    (checker.penalty_cost(leaf, margin) * weights).sum().backward()
    np.testing.assert_allclose(leaf.grad.numpy(), (weights[:, None] * gradient).numpy(), rtol=1e-12, atol=1e-15)


def test_penalty_gradient_arm(arm7):
    checker = CollisionChecker(arm7, hand_made_spheres(arm7), random_scene(3), margin=0.05)
    check_penalty_gradient(checker, random_q(arm7, 6, seed=4), margin=0.3)


def test_penalty_gradient_panda_with_mimic_finger(panda):
    _, chain = panda
    checker = CollisionChecker(chain, panda_spheres(chain), random_scene(5))
    q = random_q(chain, 6, seed=6)
    check_penalty_gradient(checker, q, margin=0.3)
    # the finger (a prismatic joint with a mimic follower) gets a gradient from both fingers
    finger = chain.joint_index("panda_finger_joint1")
    assert checker.penalty(q, 0.3)[1][:, finger].abs().max() > 0


# ---------------------------------------------------------------------- (c) vs coal
def coal_shape(coal, obstacle: Obstacle):
    kind, dims = obstacle.kind, obstacle.dimensions
    if kind == "sphere":
        return coal.Sphere(dims[0])
    if kind == "box":
        return coal.Box(*dims)
    if kind == "cylinder":
        return coal.Cylinder(dims[1], dims[0])
    shape = coal.Capsule(dims[1], dims[0])
    assert shape.halfLength == pytest.approx(dims[0] / 2)  # coal's lz is the cylindrical part
    return shape


def test_distances_and_verdicts_match_coal(panda):
    pin = pytest.importorskip("pinocchio")
    coal = pytest.importorskip("coal")
    urdf, chain = panda
    spheres = panda_spheres(chain, scale=0.5)
    scene = random_scene(7, count=8)
    srdf = (example_robot_data_dir() / "panda_description/srdf/panda.srdf").read_text()
    checker = CollisionChecker(chain, spheres, scene, self_pairs=self_collision_pairs(chain, spheres, srdf, samples=200))
    reference = PinocchioReference(urdf)
    model = reference.model
    geometry = pin.GeometryModel()
    for s in range(spheres.num_spheres):  # the robot's spheres, placed on Pinocchio's frames
        frame_id = model.getFrameId(chain.link_names[int(spheres.sphere_links[s])], pin.BODY)
        frame = model.frames[frame_id]
        placement = frame.placement * pin.SE3(np.eye(3), spheres.centers[s].numpy())
        geometry.addGeometryObject(pin.GeometryObject(f"sphere{s}", frame.parentJoint, frame_id, placement,
                                                      coal.Sphere(float(spheres.radii[s]))))
    S = spheres.num_spheres
    obstacle_ids = checker.distances(random_q(chain, 1, 0)).obstacle_ids
    for obstacle_id in obstacle_ids:
        obstacle = scene.obstacle(obstacle_id)
        geometry.addGeometryObject(pin.GeometryObject(obstacle.id, 0, 0, pin.SE3(obstacle.pose), coal_shape(coal, obstacle)))
    world_pairs = [(s, S + o) for s in range(S) for o in range(len(obstacle_ids))]
    pairs = checker.self_pairs
    self_pairs = list(zip(pairs.sphere_a.tolist(), pairs.sphere_b.tolist()))
    for a, b in world_pairs + self_pairs:
        geometry.addCollisionPair(pin.CollisionPair(a, b))
    data, geometry_data = model.createData(), pin.GeometryData(geometry)
    q = random_q(chain, 16, seed=8)
    ours = checker.distances(q, full=True)
    T = np.stack([reference.link_poses(dict(zip(chain.joint_names, row.tolist())), chain.link_names) for row in q])
    T = T[:, spheres.sphere_links.numpy()]  # (B, S, 4, 4) by Pinocchio
    centers = np.einsum("bsij,sj->bsi", T[..., :3, :3], spheres.centers.numpy()) + T[..., :3, 3]
    deep_in_cylinders = 0
    for b in range(q.shape[0]):
        values = dict(zip(chain.joint_names, q[b].tolist()))
        pin.computeDistances(model, data, geometry, geometry_data, reference.configuration(values))
        coal_distance = np.array([r.min_distance for r in geometry_data.distanceResults])
        coal_world = coal_distance[: len(world_pairs)].reshape(S, len(obstacle_ids))
        # coal gives a sphere whose centre is inside a cylinder the radial depth even where the
        # cap is nearer; there we compare with the exact depth, min(side, cap), derived here
        for o, obstacle_id in enumerate(obstacle_ids):
            obstacle = scene.obstacle(obstacle_id)
            if obstacle.kind != "cylinder":
                continue
            local = (centers[b] - obstacle.pose[:3, 3]) @ obstacle.pose[:3, :3]
            side = obstacle.dimensions[1] - np.hypot(local[:, 0], local[:, 1])
            cap = 0.5 * obstacle.dimensions[0] - np.abs(local[:, 2])
            inside = (side > 0) & (cap > 0)
            exact = -np.minimum(side, cap) - spheres.radii.numpy()
            np.testing.assert_allclose(coal_world[inside, o], -side[inside] - spheres.radii.numpy()[inside], atol=1e-9)
            coal_world[inside, o] = exact[inside]
            deep_in_cylinders += int(inside.sum())
        np.testing.assert_allclose(ours.sphere_obstacle[b].numpy(), coal_world, atol=1e-6)
        np.testing.assert_allclose(ours.sphere_pairs[b].numpy(), coal_distance[len(world_pairs):], atol=1e-9)
        assert bool(ours.in_collision[b]) == bool(coal_distance.min() < 0)
        assert float(ours.min_distance[b]) == pytest.approx(coal_distance.min(), abs=1e-6)
    assert 0 < int(ours.in_collision.sum()) < q.shape[0]  # both verdicts occur
    assert deep_in_cylinders > 0  # the exception above was exercised


# ---------------------------------------------------------------------- (d) self pairs
def test_srdf_entries_for_links_the_robot_lacks_give_one_warning(panda):
    """An SRDF written for a larger robot (the MBM Fetch's names 87 such entries) warns once,
    naming each unknown link once, and the known entries still apply."""
    from ros_torch_kin.collision.self_collision import srdf_disabled_pairs

    _, chain = panda
    srdf = ('<robot name="panda"><disable_collisions link1="panda_link1" link2="wheel" reason="Never"/>'
            '<disable_collisions link1="wheel" link2="laser" reason="Never"/>'
            '<disable_collisions link1="panda_link2" link2="laser" reason="Never"/>'
            '<disable_collisions link1="panda_link0" link2="panda_link3" reason="Never"/></robot>')
    pairs, problems = srdf_disabled_pairs(srdf, chain)
    assert problems == ["SRDF disable_collisions: 3 entries name unknown link(s) wheel, laser in robot "
                        f"'{chain.name}'; ignored"]
    assert pairs == {(chain.link_index("panda_link0"), chain.link_index("panda_link3")): "Never"}


def test_self_pairs_panda_adjacent_and_srdf(panda):
    urdf, chain = panda
    srdf = (example_robot_data_dir() / "panda_description/srdf/panda.srdf").read_text()
    srdf = srdf.replace("</robot>", '<disable_collisions link1="panda_link1" link2="no_such_link" reason="Never"/></robot>')
    spheres = panda_spheres(chain)
    with pytest.warns(UserWarning, match="no_such_link"):
        pairs = self_collision_pairs(chain, spheres, srdf=srdf, samples=200)
    # adjacent: every URDF joint's parent and child (fixed joints folded: link7-hand through link8)
    for parent, child in [(f"panda_link{i}", f"panda_link{i + 1}") for i in range(7)] + [
        ("panda_link7", "panda_hand"), ("panda_link6", "panda_hand"), ("panda_hand", "panda_leftfinger"),
        ("panda_hand", "panda_rightfinger"), ("panda_link7", "panda_leftfinger"),
    ]:
        assert pairs.reason(parent, child) == "adjacent", (parent, child)
    assert pairs.reason("panda_link0", "panda_link2") != "adjacent"
    assert pairs.reason("panda_link0", "panda_hand_tcp") == "no spheres"
    assert pairs.reason("panda_hand", "panda_link3") == "srdf: Never"
    assert pairs.reason("panda_link5", "panda_hand") == "srdf: Default"
    assert pairs.reason("panda_leftfinger", "panda_rightfinger").startswith("srdf: ")
    assert any("no_such_link" in w for w in pairs.warnings)
    enabled = set(pairs.enabled)
    assert all(pairs.reason(a, b) is None for a, b in enabled) and not enabled & set(pairs.disabled)
    # the sphere pairs are exactly the enabled link pairs' spheres
    links = spheres.sphere_links
    names = {(chain.link_names[int(links[a])], chain.link_names[int(links[b])])
             for a, b in zip(pairs.sphere_a.tolist(), pairs.sphere_b.tolist())}
    assert names == enabled
    assert "srdf: Never" in pairs.info()


def test_always_colliding_pair_is_disabled_with_its_count(arm7):
    spheres = hand_made_spheres(arm7, per_link=1, seed=2)
    # a huge sphere on link_3 and on link_5 overlap in every configuration
    radii = spheres.radii.clone()
    radii[[arm7.link_index("link_3"), arm7.link_index("link_5")]] = 1.0  # one sphere per link, in link order
    spheres = RobotSpheres(spheres.link_names, spheres.sphere_links, spheres.centers, radii, spheres.slack, spheres.source)
    pairs = self_collision_pairs(arm7, spheres, samples=50)
    assert pairs.reason("link_3", "link_5") == "always in collision (50/50 samples)"
    assert pairs.reason("link_1", "link_2") == "adjacent"


# ---------------------------------------------------------------------- (e) scene
@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: Obstacle("cone1", "cone", (1.0,)), ("cone1", "kind")),
        (lambda: Obstacle.sphere("ball", -0.1), ("ball", "radius")),
        (lambda: Obstacle.box("crate", (0.1, 0.0, 0.2)), ("crate", "size y")),
        (lambda: Obstacle.cylinder("pole", 1.0, -0.1), ("pole", "radius")),
        (lambda: Obstacle.capsule("pill", -1.0, 0.1), ("pill", "height")),
        (lambda: Obstacle.box("crate", (0.1, float("nan"), 0.2)), ("crate", "size y")),
        (lambda: Obstacle("ball", "sphere", (0.1, 0.2)), ("ball", "radius")),
        (lambda: Obstacle.sphere("ball", 0.1, [0, 0, float("inf"), 0, 0, 0, 1]), ("ball", "pose")),
        (lambda: Obstacle.sphere("ball", 0.1, [0, 0, 0, 0, 0, 0, 0]), ("ball", "pose", "quaternion")),
        (lambda: Obstacle.sphere("ball", 0.1, np.diag([1.0, 2.0, 1.0, 1.0])), ("ball", "pose", "orthonormal")),
        (lambda: Obstacle.sphere("ball", 0.1, np.diag([1.0, 1.0, -1.0, 1.0])), ("ball", "pose", "orthonormal")),
        (lambda: Obstacle.sphere("ball", 0.1, np.full((4, 4), np.nan)), ("ball", "pose")),
        (lambda: Scene().moved("ghost", np.eye(4)), ("ghost", "unknown id")),
        (lambda: Scene().without("ghost"), ("ghost", "unknown id")),
        (lambda: Scene([Obstacle.sphere("a", 0.1), Obstacle.sphere("a", 0.2)]), ("a", "twice")),
        (lambda: Scene([Obstacle.sphere("a", 0.1)]).moved("a", np.zeros((4, 4))), ("a", "pose")),
    ],
)
def test_scene_validation_names_id_and_field(make, words):
    with pytest.raises(ValueError) as error:
        make()
    for word in words:
        assert word in str(error.value), (word, str(error.value))


def test_scene_is_immutable_and_packs_once():
    ball, crate = Obstacle.sphere("ball", 0.1), Obstacle.box("crate", (0.1, 0.2, 0.3), [1, 0, 0, 0, 0, 0, 1])
    scene = Scene([crate, ball])
    bigger = scene.with_obstacle(Obstacle.sphere("ball", 0.5))
    assert scene.obstacle("ball").dimensions == (0.1,) and bigger.obstacle("ball").dimensions == (0.5,)
    assert bigger.ids == ("crate", "ball")  # replaced in place
    moved = scene.moved("crate", [2, 0, 0, 0, 0, 0, 1])
    assert moved.obstacle("crate").pose[0, 3] == 2 and scene.obstacle("crate").pose[0, 3] == 1
    assert scene.without("ball").ids == ("crate",) and "ball" in scene
    packed = scene.packed("cpu", F64)
    assert scene.packed("cpu", F64) is packed and packed.ids == ("ball", "crate")  # grouped by kind
    with pytest.raises(ValueError):
        scene.obstacle("ball").pose[0, 0] = 2.0  # read-only


def test_pose_from_quaternion_does_not_overflow():
    for scale in (1e-300, 1.0, 1e300):
        T = pose_from_xyz_quat_xyzw([1, 2, 3, 0, 0, scale, scale])
        np.testing.assert_allclose(T[:3, :3], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-15)
        np.testing.assert_allclose(T[:3, 3], [1, 2, 3])


# ---------------------------------------------------------------------- (f) batching
def test_batch_of_one_equals_rows_of_a_large_batch(panda):
    _, chain = panda
    spheres = panda_spheres(chain, scale=0.5)
    srdf = (example_robot_data_dir() / "panda_description/srdf/panda.srdf").read_text()
    pairs = self_collision_pairs(chain, spheres, srdf, samples=100)
    checker = CollisionChecker(chain, spheres, random_scene(9, count=6), self_pairs=pairs, margin=0.02)
    q = random_q(chain, 1000, seed=10)
    big = checker.distances(q, full=True)
    big_cost, big_gradient = checker.penalty(q, 0.1)
    verdicts = checker.in_collision(q)
    assert torch.equal(verdicts, big.in_collision) and 0 < int(verdicts.sum()) < 1000
    for b in (0, 1, 517, 999):
        one = checker.distances(q[b : b + 1], full=True)
        for field in ("min_distance", "world_distance", "self_distance", "sphere_obstacle", "sphere_pairs"):
            torch.testing.assert_close(getattr(one, field)[0], getattr(big, field)[b], rtol=0, atol=1e-12)
        for field in ("nearest_sphere", "nearest_obstacle", "nearest_self_pair", "in_collision"):
            assert torch.equal(getattr(one, field)[0], getattr(big, field)[b]), field
        assert one.nearest_pair(0) == big.nearest_pair(b)
        cost, gradient = checker.penalty(q[b : b + 1], 0.1)
        torch.testing.assert_close(cost[0], big_cost[b], rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(gradient[0], big_gradient[b], rtol=1e-10, atol=1e-13)
        assert bool(checker.in_collision(q[b])[0]) == bool(verdicts[b])


def test_empty_scene_and_with_scene(arm7):
    checker = CollisionChecker(arm7, hand_made_spheres(arm7), self_pairs=None)
    q = random_q(arm7, 5, seed=11)
    result = checker.distances(q)
    assert torch.isinf(result.world_distance).all()
    assert torch.equal(result.min_distance, result.self_distance)
    scene = Scene([Obstacle.box("floor", (10, 10, 0.1), [0, 0, -0.05, 0, 0, 0, 1])])
    other = checker.with_scene(scene)
    assert checker.scene is not scene and other.scene is scene
    assert torch.isfinite(other.distances(q).world_distance).all()
    assert other.distances(q).nearest_pair(0)[1] == "floor" or other.distances(q).self_distance[0] < other.distances(q).world_distance[0]


def test_float32_follows_the_chain(arm7):
    chain = arm7.to(dtype=torch.float32)
    checker = CollisionChecker(chain, hand_made_spheres(arm7), random_scene(12))
    q = random_q(chain, 4, seed=13)
    cost, gradient = checker.penalty(q, 0.2)
    assert cost.dtype == gradient.dtype == torch.float32
    reference = CollisionChecker(arm7, hand_made_spheres(arm7), random_scene(12))
    np.testing.assert_allclose(checker.distances(q).min_distance.numpy(),
                               reference.distances(q.double()).min_distance.numpy(), atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_broad_phase_verdict_equals_every_pair_verdict(panda, dtype):
    """The CPU verdict (link bounding spheres, then only the sphere pairs they cannot rule out)
    is bit for bit the verdict from every pair. (Not tested at margins equal to a configuration's
    own distance: there the all-pairs path itself can flip with the batch size, by one ulp.)"""
    urdf, _ = panda
    chain = Chain.from_urdf(urdf, device="cpu", dtype=dtype)
    srdf = (example_robot_data_dir() / "panda_description/srdf/panda.srdf").read_text()
    q = random_q(chain, 20000, seed=21)
    for seed, scale in ((3, 1.0), (4, 0.6)):
        spheres = panda_spheres(chain, scale=scale)
        pairs = self_collision_pairs(chain, spheres, srdf, samples=100)
        checker = CollisionChecker(chain, spheres, random_scene(seed, count=12), self_pairs=pairs)
        for margin in (0.0, 0.01, 0.05):
            at_margin = CollisionChecker(chain, spheres, checker.scene, self_pairs=pairs, margin=margin)
            fast, every = at_margin.in_collision(q), at_margin._in_collision_all_pairs(q)
            assert fast.dtype == torch.bool and fast.shape == (20000,)
            assert torch.equal(fast, every), (seed, margin, int((fast != every).sum()))
            assert 0 < int(every.sum()) < 20000
            for b in (1, 7, 8, 1025):  # below and above MIN_BROAD_PHASE, across VERDICT_CHUNK
                assert torch.equal(at_margin.in_collision(q[:b]), every[:b])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_broad_phase_penalty_equals_every_pair_penalty(panda, dtype):
    """The CPU penalty (link bounding spheres, then only the sphere pairs they cannot rule out)
    is the all-pairs penalty up to round-off: a skipped pair is ≥ margin away, so its hinge is
    exactly zero. Cost and gradient, on random (many near or in collision) configurations."""
    urdf, _ = panda
    chain = Chain.from_urdf(urdf, device="cpu", dtype=dtype)
    srdf = (example_robot_data_dir() / "panda_description/srdf/panda.srdf").read_text()
    q = random_q(chain, 1500, seed=22)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    for seed, scale in ((5, 1.0), (6, 0.6)):
        spheres = panda_spheres(chain, scale=scale)
        pairs = self_collision_pairs(chain, spheres, srdf, samples=100)
        checker = CollisionChecker(chain, spheres, random_scene(seed, count=12), self_pairs=pairs)
        for margin in (0.01, 0.05):
            cost, gradient = checker.penalty(q, margin)
            cost_every, gradient_every = checker._penalty_all_pairs(q, margin)
            assert cost.shape == (1500,) and gradient.shape == (1500, chain.num_dofs)
            assert cost.dtype == gradient.dtype == dtype
            positive = cost_every > 0
            assert 100 < int(positive.sum()) < 1500, (seed, margin)  # many near or in collision
            assert torch.equal(cost[~positive], cost_every[~positive])
            assert torch.equal(gradient[~positive], gradient_every[~positive])
            assert ((cost - cost_every).abs() <= tolerance * cost_every).all(), (seed, margin)
            scale_g = gradient_every.abs().amax(1, keepdim=True)
            assert ((gradient - gradient_every).abs() <= tolerance * scale_g).all(), (seed, margin)
            # below and above MIN_BROAD_PHASE, across VERDICT_CHUNK; the batch splits differ from
            # the reference's, and float32 FK round-off depends on the split (a lone last
            # configuration), so relative to the largest cost here
            for b in (1, 7, 8, 1025):
                part_cost, part_gradient = checker.penalty(q[:b], margin)
                part_every, part_gradient_every = checker._penalty_all_pairs(q[:b], margin)
                torch.testing.assert_close(part_cost, part_every, rtol=tolerance,
                                           atol=tolerance * float(part_every.max()))
                torch.testing.assert_close(part_gradient, part_gradient_every, rtol=tolerance,
                                           atol=tolerance * float(part_gradient_every.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_broad_phase_min_distance_below_a_threshold_equals_every_pair(panda, dtype):
    """min_distance(q, threshold) on a CPU (link bounding spheres first, then only the blocks
    they cannot rule out) is the all-pairs minimum wherever that is below the threshold, and the
    threshold itself elsewhere (a lower bound: nothing is nearer)."""
    urdf, _ = panda
    chain = Chain.from_urdf(urdf, device="cpu", dtype=dtype)
    srdf = (example_robot_data_dir() / "panda_description/srdf/panda.srdf").read_text()
    q = random_q(chain, 1500, seed=23)
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    spheres = panda_spheres(chain, scale=1.0)
    pairs = self_collision_pairs(chain, spheres, srdf, samples=100)
    for scene in (random_scene(7, count=12), Scene()):
        checker = CollisionChecker(chain, spheres, scene, self_pairs=pairs)
        every = checker.distances(q).min_distance
        for threshold in (0.0, 0.02, 0.1):
            for b in (1, 7, 8, 1025, 1500):  # below and above MIN_BROAD_PHASE, across VERDICT_CHUNK
                # (the FK of a batch split differently differs by round-off)
                fast, reference = checker.min_distance(q[:b], threshold), every[:b]
                below = reference < threshold
                assert torch.allclose(fast[below], reference[below], rtol=0, atol=tolerance), (threshold, b)
                assert bool((fast[~below] >= threshold - tolerance).all())
                assert bool((fast[~below] <= reference[~below] + tolerance).all())
            assert 0 < int((every < threshold).sum()) < q.shape[0] or threshold != 0.02  # both outcomes
    without = CollisionChecker(chain, spheres, random_scene(7, count=12)).without_self_pairs()
    assert torch.equal(without.min_distance(q, 0.02).clamp(max=0.02), without.distances(q).min_distance.clamp(max=0.02))
