"""The ``voxels`` world part (point clouds, depth images, meshes) against independent references.

References we did not write: scipy's KD-tree (exact nearest-point distances of the clouds), coal
(distances from spheres to the same meshes as BVH models), trimesh (inside tests of closed meshes,
its mesh primitives), central finite differences of the KD-tree distance for the normals.
Claims checked: the distance is a lower bound of the true one (never a missed contact) and within
the stated bound of it near the geometry (:mod:`ros_torch_kin.collision.occupancy`).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from conftest import random_q
from ros_torch_kin.collision import CollisionChecker, Obstacle, Scene, robot_spheres_from_urdf
from ros_torch_kin.collision.occupancy import VoxelGrid, covered_surface_samples, lattice_covering_radius, surface_samples
from ros_torch_kin.collision.signed_distance import point_distances, sphere_obstacle_distances
from ros_torch_kin.collision.sphere_centers import world_sphere_centers
from ros_torch_kin.kinematics import world_transforms

VOXEL = 0.01
H = 0.5 * math.sqrt(3) * VOXEL


def _wavy_cloud(seed: int, count: int = 20_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    points = rng.uniform(-0.3, 0.3, (count, 3))
    points[:, 2] = 0.05 * np.sin(10 * points[:, 0]) + 0.4
    return points


def _distances(obstacle: Obstacle, queries: np.ndarray, dtype=torch.float64):
    shapes = Scene([obstacle]).packed("cpu", dtype).shapes[0]
    d, n = point_distances(torch.as_tensor(queries.T, dtype=dtype), shapes, True)
    normal = torch.einsum("kji,kip->kjp", shapes.rotation, n)[0].T
    return d[0].numpy(), normal.numpy()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cloud_distance_is_a_lower_bound_within_the_stated_error(dtype):
    points = _wavy_cloud(0)
    radius = 0.002
    obstacle = Obstacle.points("cloud", points, VOXEL, radius=radius)
    rng = np.random.default_rng(1)
    queries = np.concatenate([rng.uniform((-0.5, -0.5, 0.2), (0.5, 0.5, 0.6), (20_000, 3)),
                              points[:2000] + rng.normal(0, 0.01, (2000, 3))])
    d, _ = _distances(obstacle, queries, dtype)
    truth = cKDTree(points).query(queries)[0] - radius
    slack = 1e-5 if dtype == torch.float64 else 1e-4
    assert (d <= truth + slack).all(), (truth - d).min()
    near = truth < 0.08  # within the padding (0.1 m): the field's bound holds
    assert (truth - d)[near].max() <= 4 * H + 2 * radius + slack
    assert np.median((truth - d)[near]) < 2 * H  # the usual error is far below the worst case
    # deep in the padding and beyond it, the box bound: never above the truth
    far = rng.uniform(-3, 3, (5000, 3))
    d_far, _ = _distances(obstacle, far, dtype)
    assert (d_far <= cKDTree(points).query(far)[0] - radius + slack).all()


def test_cloud_normals_point_away_from_the_points():
    points = _wavy_cloud(2)
    obstacle = Obstacle.points("cloud", points, VOXEL)
    rng = np.random.default_rng(3)
    queries = points[rng.choice(len(points), 500)] + rng.normal(0, 0.03, (500, 3))
    tree = cKDTree(points)
    truth = tree.query(queries)[0]
    queries = queries[(truth > 0.02) & (truth < 0.08)]
    _, normal = _distances(obstacle, queries)
    assert np.allclose(np.linalg.norm(normal, axis=1), 1.0)
    step = 0.004  # moving along the normal moves away from the cloud (finite difference of the truth)
    ahead = tree.query(queries + step * normal)[0] - tree.query(queries)[0]
    assert np.mean(ahead > 0) > 0.95


def test_occupied_voxels_are_negative_and_nan_points_are_skipped():
    points = _wavy_cloud(4, 5000)
    holes = points.copy()
    holes[::3] = np.nan  # depth holes
    grid = VoxelGrid.from_points(holes, VOXEL)
    assert any("non-finite" in note for note in grid.notes)
    obstacle = Obstacle.points("cloud", holes, VOXEL)
    kept = holes[np.isfinite(holes).all(axis=1)]
    d, _ = _distances(obstacle, kept)
    assert (d < 0).all()


@pytest.mark.parametrize("points, match", [
    (np.zeros((0, 3)), "no finite point"),
    (np.full((10, 3), np.nan), "no finite point"),
    (np.zeros((5, 2)), r"\(N, 3\)"),
    (np.array([[0, 0, 0], [100.0, 100.0, 100.0]]), "above the limit"),
])
def test_bad_clouds_are_refused_naming_the_field(points, match):
    with pytest.raises(ValueError, match=match) as error:
        Obstacle.points("cam", points, VOXEL)
    assert "cam" in str(error.value)


def test_a_cloud_above_the_point_limit_is_refused():
    with pytest.raises(ValueError, match="above the limit of 100"):
        Obstacle.points("cam", np.zeros((101, 3)), VOXEL, max_points=100)


# ---------------------------------------------------------------------- meshes vs coal
def _coal_distance(mesh: trimesh.Trimesh, centers: np.ndarray) -> np.ndarray:
    import coal

    model = coal.BVHModelOBBRSS()
    model.beginModel(len(mesh.faces), len(mesh.vertices))
    for a, b, c in np.asarray(mesh.triangles, dtype=np.float64):
        model.addTriangle(a, b, c)
    model.endModel()
    ball = coal.Sphere(1e-9)
    request, out = coal.DistanceRequest(), []
    for c in centers:
        result = coal.DistanceResult()
        coal.distance(model, coal.Transform3s(), ball, coal.Transform3s(np.eye(3), c), request, result)
        out.append(result.min_distance)
    return np.array(out)


@pytest.mark.parametrize("make", [lambda: trimesh.creation.box((0.3, 0.2, 0.1)),
                                  lambda: trimesh.creation.icosphere(3, 0.12),
                                  lambda: trimesh.creation.cylinder(0.08, 0.3, sections=48)])
def test_closed_mesh_distances_against_coal(make):
    mesh = make()
    pose = np.eye(4)
    pose[:3, :3] = trimesh.transformations.random_rotation_matrix(np.random.default_rng(5).random(3))[:3, :3]
    pose[:3, 3] = (0.2, -0.1, 0.5)
    obstacle = Obstacle.mesh("part", mesh.vertices, mesh.faces, pose, voxel_size=VOXEL)
    rng = np.random.default_rng(6)
    local = rng.uniform(mesh.bounds[0] - 0.12, mesh.bounds[1] + 0.12, (600, 3))
    world = local @ pose[:3, :3].T + pose[:3, 3]
    d, _ = _distances(obstacle, world)
    # inside a convex mesh: behind every face's plane (trimesh's own contains needs rtree)
    offsets = np.einsum("fj,pfj->pf", mesh.face_normals, local[:, None, :] - mesh.triangles[None, :, 0])
    inside = (offsets < 0).all(axis=1)
    truth = _coal_distance(mesh, local)
    out = ~inside
    bound = 4 * H + 2 * obstacle.grid.bound + 1e-6
    assert (d[out] <= truth[out] + 1e-6).all(), (truth - d)[out].min()
    near = out & (truth < 0.08)  # within the grid's padding (0.1 m)
    assert near.sum() > 100 and ((truth - d)[near] <= bound).all()
    assert (d[inside] < 0).all()  # a closed mesh's inside is in collision
    assert obstacle.grid.notes == ()


def test_the_samples_covering_radius_bounds_every_surface_point_and_is_tight():
    """A mesh's surface samples (the barycentric lattice of each triangle) cover every point of the
    triangles within :func:`lattice_covering_radius` (dense random points against a KD-tree of
    the samples, never farther), which is nearly attained (≥ 95 % of it) and at most spacing/√3:
    spacing/√3 for an equilateral triangle, less for a right one (a box face's: at most
    spacing/2) and for obtuse ones, with the obtuse angle at each corner in turn."""
    rng = np.random.default_rng(3)
    s3 = math.sqrt(3.0)
    shapes = {
        "equilateral": np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.05, 0.05 * s3, 0.0]]),
        "right": np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.05, 0.0]]),
        "obtuse at c": np.array([[0.0, 0.0, 0.0], [0.2, 0.0, 0.0], [0.02, 0.01, 0.0]]),
        "obtuse at a": np.array([[0.02, 0.01, 0.0], [0.0, 0.0, 0.0], [0.2, 0.0, 0.0]]),
        "obtuse at b": np.array([[0.2, 0.0, 0.0], [0.02, 0.01, 0.0], [0.0, 0.0, 0.0]]),
    }
    u = rng.random((20000, 2))
    u[u.sum(1) > 1] = 1 - u[u.sum(1) > 1]
    for spacing in (0.01, 0.023):
        for name, corners in shapes.items():
            triangles = np.array([[0, 1, 2]])
            radius = lattice_covering_radius(corners, triangles, spacing)
            a, b, c = corners
            points = a + u[:, :1] * (b - a) + u[:, 1:] * (c - a)
            samples = surface_samples(corners, triangles, spacing)
            together, same_radius = covered_surface_samples(corners, triangles, spacing)  # one lattice for both
            assert np.array_equal(together, samples) and same_radius == radius
            farthest = float(cKDTree(samples).query(points)[0].max())
            assert farthest <= radius * (1 + 1e-9), (name, spacing, farthest, radius)
            assert farthest >= 0.95 * radius, (name, spacing, farthest, radius)
            assert radius <= spacing / s3 * (1 + 1e-9)
            if name == "right":
                assert radius <= spacing / 2 * (1 + 1e-9)
        box = trimesh.creation.box((0.3, 0.2, 0.1))
        assert lattice_covering_radius(box.vertices, box.faces, spacing) <= spacing / 2 * (1 + 1e-9)


def test_open_mesh_is_a_surface_with_a_warning():
    mesh = trimesh.creation.box((0.3, 0.3, 0.3))
    mesh.update_faces(np.arange(len(mesh.faces)) > 1)  # remove one side: open
    assert not mesh.is_watertight
    with pytest.warns(UserWarning, match="open"):
        obstacle = Obstacle.mesh("bin", mesh.vertices, mesh.faces, voxel_size=VOXEL)
    d, _ = _distances(obstacle, np.zeros((1, 3)))
    assert d[0] > 0.1  # its middle is not filled
    assert any("open" in note for note in obstacle.grid.notes)
    surface = mesh.sample(200, seed=1) if "seed" in trimesh.sample.sample_surface.__code__.co_varnames else mesh.sample(200)
    assert (_distances(obstacle, surface)[0] < 0).all()


def test_bad_meshes_are_refused_naming_the_field():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0.0]])
    with pytest.raises(ValueError, match=r"mesh 'm'.*degenerate.*triangles\[1\]"):
        Obstacle.mesh("m", v, [[0, 1, 2], [0, 1, 3]])  # 0, 1, 3 are collinear
    with pytest.raises(ValueError, match=r"triangles\[0\].*beyond"):
        Obstacle.mesh("m", v, [[0, 1, 7]])
    with pytest.raises(ValueError, match=r"vertices\[1\] is not finite"):
        Obstacle.mesh("m", [[0, 0, 0], [np.nan, 0, 0], [0, 1, 0]], [[0, 1, 2]])
    with pytest.raises(ValueError, match="above the limit of 1"):
        Obstacle.mesh("m", v, [[0, 1, 2], [1, 2, 3]], max_triangles=1)


def test_mesh_file_round_trip(tmp_path):
    mesh = trimesh.creation.box((0.2, 0.2, 0.2))
    for suffix in ("stl", "obj"):
        path = tmp_path / f"box.{suffix}"
        mesh.export(path)
        obstacle = Obstacle.mesh_file("box", path, voxel_size=VOXEL)
        d, _ = _distances(obstacle, np.array([[0.0, 0, 0], [0.3, 0, 0]]))
        assert d[0] < -0.05 and 0.2 - 4 * H - 0.01 < d[1] <= 0.2
    with pytest.raises(ValueError, match="cannot read"):
        Obstacle.mesh_file("gone", tmp_path / "missing.stl")


def test_a_100k_triangle_mesh_is_accepted_closed_and_filled():
    """A 100,000-triangle sphere of radius 0.3 m (its acceptance time is a benchmark row:
    bench/point_world_benchmark.py): closed, so its inside is in collision; outside, the distance
    to it is a lower bound of the distance to the sphere within the grid's stated error."""
    mesh = trimesh.creation.uv_sphere(0.3, count=(224, 224))
    assert len(mesh.faces) >= 99_000
    obstacle = Obstacle.mesh("big", mesh.vertices, mesh.faces, voxel_size=VOXEL)
    assert obstacle.grid.notes == ()  # watertight: no "open mesh" note
    rng = np.random.default_rng(8)
    directions = rng.normal(size=(400, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    radii = rng.uniform(0.0, 0.38, 400)
    d, _ = _distances(obstacle, directions * radii[:, None])
    inner = radii < 0.29  # inside the polygon (its chord error is < 0.1 mm here)
    assert (d[inner] < 0).all()
    outside = radii > 0.3
    assert outside.sum() > 50
    assert (d[outside] <= radii[outside] - 0.3 + 1e-6).all()  # never above the true distance
    assert ((radii - 0.3)[outside] - d[outside] <= 4 * H + 2 * obstacle.grid.bound + 1e-6).all()


# ---------------------------------------------------------------------- the checkers
@pytest.fixture(scope="module")
def arm7_checker(arm7, arm7_urdf):
    return CollisionChecker(arm7, robot_spheres_from_urdf(arm7_urdf, arm7))


def test_checker_verdict_is_conservative_and_penalty_gradient_is_closed_form(arm7, arm7_checker):
    points = _wavy_cloud(7, 40_000)
    points[:, 0] += 0.55  # a wavy sheet beside the arm's base, at the height of its reach
    scene = Scene([Obstacle.points("cloud", points, VOXEL), Obstacle.box("table", (0.4, 0.4, 0.05), (0.6, 0, 0.2, 0, 0, 0, 1))])
    checker = arm7_checker.without_self_pairs().with_scene(scene)
    q = random_q(arm7, 400, 8)
    verdict = checker.in_collision(q)
    assert torch.equal(verdict, checker._in_collision_all_pairs(q))  # broad phase == all pairs
    centers = world_sphere_centers(world_transforms(arm7, q), checker.spheres)  # (S, 3, B)
    flat = centers.permute(2, 0, 1).reshape(-1, 3).numpy()
    truth = cKDTree(points).query(flat)[0].reshape(q.shape[0], -1) - checker.spheres.radii.numpy()
    touching = (truth < 0).any(1)
    assert touching.any() and (~verdict.numpy()).any()
    assert not (touching & ~verdict.numpy()).any()  # every real contact is seen
    distances = checker.distances(q, full=True)
    gap = truth - distances.sphere_obstacle[:, :, distances.obstacle_ids.index("cloud")].numpy()
    assert gap.min() >= -1e-9 and gap[truth < 0.05].max() <= 4 * H + 1e-6
    # penalty: cost and its closed-form gradient match a finite difference of the cost in q
    cost, gradient = checker.penalty(q[:40], margin=0.05)
    active = (cost > 1e-5).nonzero().squeeze(1)
    assert active.numel()
    eps = 1e-6
    b = int(active[0])
    numeric = []
    for j in range(arm7.num_dofs):
        dq = torch.zeros_like(q[b]); dq[j] = eps
        numeric.append((checker.penalty((q[b] + dq)[None], 0.05)[0] - checker.penalty((q[b] - dq)[None], 0.05)[0]) / (2 * eps))
    numeric = torch.cat(numeric)
    cosine = torch.dot(numeric, gradient[b]) / (numeric.norm() * gradient[b].norm())
    assert cosine > 0.9, cosine  # the normal follows the field's gradient, not the bound's exact one


def test_sphere_obstacle_distances_includes_voxels():
    obstacle = Obstacle.points("cloud", _wavy_cloud(9, 3000), VOXEL)
    centers = torch.tensor([[0.0, 0.0, 0.8], [0.0, 0.0, 0.4]], dtype=torch.float64)
    d, n = sphere_obstacle_distances(centers, torch.tensor([0.05, 0.05], dtype=torch.float64),
                                     Scene([obstacle]).packed("cpu", torch.float64), True)
    assert d.shape == (2, 1) and d[0, 0] > 0.2 and d[1, 0] < 0 and n.shape == (2, 1, 3)


def test_tree_checker_sees_a_voxel_world(arm7, arm7_urdf):
    from ros_torch_kin.collision import robot_collision_model_from_urdf

    model = robot_collision_model_from_urdf(arm7_urdf, arm7, samples=50)
    points = _wavy_cloud(10, 40_000)
    points[:, 0] += 0.55
    scene = Scene([Obstacle.points("cloud", points, VOXEL)])
    verdict = model.verdict.with_scene(scene)
    q = random_q(arm7, 200, 11)
    tight = verdict.in_collision(q)
    coarse = model.cost.with_scene(scene).in_collision(q)
    assert tight.any() and not (tight & ~coarse).any()  # the coarse cover holds the leaves
    leaves = verdict.spheres
    centers = world_sphere_centers(world_transforms(arm7, q), leaves).permute(2, 0, 1).reshape(-1, 3).numpy()
    truth = (cKDTree(points).query(centers)[0].reshape(q.shape[0], -1) - leaves.radii.numpy()).min(1)
    own = model.verdict.with_scene(Scene()).in_collision(q)
    assert not ((truth < 0) & ~tight.numpy()).any()  # no missed contact of the leaves
    assert not (tight.numpy() & ~own.numpy() & (truth > 4 * H + 1e-6)).any()  # nor one beyond the bound


def test_moveit_yaml_meshes_become_voxel_obstacles():
    from ros_torch_kin.collision import scene_from_moveit_yaml

    box = trimesh.creation.box((0.2, 0.2, 0.2))
    mesh = {"vertices": [{"x": x, "y": y, "z": z} for x, y, z in box.vertices.tolist()],
            "triangles": [{"vertex_indices": t} for t in box.faces.tolist()]}
    document = {"world": {"collision_objects": [
        {"id": "crate", "pose": {"position": [0.5, 0, 0], "orientation": [0, 0, 0, 1]},
         "primitives": [{"type": 1, "dimensions": [0.1, 0.1, 0.1]}], "primitive_poses": [{}],
         "meshes": [mesh], "mesh_poses": [{"position": [0, 0, 0.3], "orientation": [0, 0, 0, 1]}]}]}}
    scene = scene_from_moveit_yaml(document, "root")
    assert scene.ids == ("crate/0", "crate/1") and scene.obstacle("crate/1").kind == "voxels"
    assert np.allclose(scene.obstacle("crate/1").pose[:3, 3], (0.5, 0, 0.3))
    d, _ = _distances(scene.obstacle("crate/1"), np.array([[0.5, 0, 0.3], [0.5, 0, 0.6]]))
    assert d[0] < -0.05 and 0.2 - 4 * H - 0.01 < d[1] <= 0.2
    bad = {"world": {"collision_objects": [{"id": "c", "meshes": [{**mesh, "triangles": [[0, 1, 99]]}],
                                            "mesh_poses": [{}]}]}}
    with pytest.raises(ValueError, match=r"collision_objects\[0\] 'c': meshes\[0\]: mesh 'c': triangles\[0\]"):
        scene_from_moveit_yaml(bad, "root")
