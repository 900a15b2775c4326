"""Sphere covers of URDF collision geometry: conservative (every surface point is inside a
sphere), with a stated slack that is a true bound, on primitives and on real robots' meshes.

References are independent of the code under test: analytic distances to boxes, cylinders and
capsules written here, trimesh's own surface sampler for meshes.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest
import torch
import trimesh

from conftest import example_robot_data_dir, real_urdf
from ros_torch_kin.collision import RobotSpheres
from ros_torch_kin.collision.mesh_files import load_mesh_file, resolve_mesh_path
from ros_torch_kin.collision.sphere_cover import (
    CoverProblem,
    CoverSettings,
    MeshDepth,
    box_problem,
    cover_problem_for_shape,
    exact_sphere_cover,
    mesh_problem,
    solve_cover,
)
from ros_torch_kin.collision.urdf_geometry import CollisionShape, origin_matrix, read_collision_shapes
from ros_torch_kin.collision.urdf_spheres import clear_cover_cache, robot_spheres_from_urdf
from ros_torch_kin.kinematics import Chain, forward_kinematics

#: The real-robot tests build whole robots (seconds each); set this to skip them.
slow = pytest.mark.skipif(os.environ.get("ROS_TORCH_KIN_SKIP_SLOW") == "1", reason="ROS_TORCH_KIN_SKIP_SLOW=1")


# ---------------------------------------------------------------------------- references


def surface_samples(shape: CollisionShape, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 3) points on a primitive's surface in its own frame (area-weighted)."""
    if shape.kind == "box":
        return trimesh.sample.sample_surface(trimesh.creation.box(extents=shape.size), count, seed=int(rng.integers(1 << 30)))[0]
    R, half = shape.radius, shape.length / 2
    if shape.kind == "sphere":
        return R * _unit_vectors(count, rng)
    side = 2 * math.pi * R * shape.length
    ends = 2 * math.pi * R * R if shape.kind == "cylinder" else 4 * math.pi * R * R
    on_side = rng.random(count) < side / (side + ends)
    theta = rng.uniform(0, 2 * math.pi, count)
    points = np.stack([R * np.cos(theta), R * np.sin(theta), rng.uniform(-half, half, count)], axis=1)
    top = np.where(rng.random(count) < 0.5, 1.0, -1.0)
    if shape.kind == "cylinder":
        rho = R * np.sqrt(rng.random(count))
        ends_points = np.stack([rho * np.cos(theta), rho * np.sin(theta), top * half], axis=1)
    else:
        direction = _unit_vectors(count, rng)
        direction[:, 2] = np.abs(direction[:, 2]) * top
        ends_points = R * direction + np.stack([np.zeros(count), np.zeros(count), top * half], axis=1)
    # the rims and the poles, where a cover is most likely to be short
    points[:8, :] = [[R, 0, half], [-R, 0, -half], [0, R, half], [0, -R, -half]] * 2
    return np.where(on_side[:, None], points, ends_points)


def distance_to_solid(shape: CollisionShape, x: np.ndarray) -> np.ndarray:
    """(M,) distance (m) from points in the shape frame to the solid primitive (0 inside)."""
    if shape.kind == "box":
        h = np.asarray(shape.size) / 2
        return np.linalg.norm(x - np.clip(x, -h, h), axis=1)
    radial = np.linalg.norm(x[:, :2], axis=1)
    half = shape.length / 2
    if shape.kind == "cylinder":
        return np.hypot(np.maximum(radial - shape.radius, 0), np.maximum(np.abs(x[:, 2]) - half, 0))
    if shape.kind == "capsule":
        on_axis = np.clip(x[:, 2], -half, half)
        return np.maximum(np.hypot(radial, x[:, 2] - on_axis) - shape.radius, 0)
    return np.maximum(np.linalg.norm(x, axis=1) - shape.radius, 0)


def _unit_vectors(count: int, rng) -> np.ndarray:
    v = rng.normal(size=(count, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def points_in_spheres(centers, radii, per_sphere: int, rng) -> np.ndarray:
    """(K·per_sphere, 3) points filling each sphere, half of them on its boundary."""
    u = rng.random((len(radii), per_sphere))
    u[:, : per_sphere // 2] = 1.0
    offsets = _unit_vectors(len(radii) * per_sphere, rng).reshape(len(radii), per_sphere, 3)
    return (centers[:, None, :] + offsets * (radii[:, None] * np.cbrt(u))[..., None]).reshape(-1, 3)


def outside_margin(points: np.ndarray, centers: np.ndarray, radii: np.ndarray) -> float:
    """The largest amount (m) by which a point lies outside every sphere (<= 0: all inside)."""
    worst = -np.inf
    for start in range(0, len(points), 4096):
        block = points[start : start + 4096]
        gap = np.linalg.norm(block[:, None, :] - centers[None], axis=-1) - radii[None]
        worst = max(worst, float(gap.min(axis=1).max()))
    return worst


def random_origin(rng) -> np.ndarray:
    return origin_matrix(tuple(rng.uniform(-0.3, 0.3, 3)), tuple(rng.uniform(-math.pi, math.pi, 3)))


def to_frame(T: np.ndarray, x: np.ndarray) -> np.ndarray:
    return x @ T[:3, :3].T + T[:3, 3]


def from_frame(T: np.ndarray, x: np.ndarray) -> np.ndarray:
    return (x - T[:3, 3]) @ T[:3, :3]


# ---------------------------------------------------------------------------- primitives


def random_primitive(kind: str, rng) -> CollisionShape:
    sizes = rng.uniform(0.005, 0.4, 3)
    if kind == "box":
        return CollisionShape("l", "box", random_origin(rng), size=tuple(sizes))
    return CollisionShape("l", kind, random_origin(rng), radius=sizes[0] / 2, length=sizes[1])


@pytest.mark.parametrize("kind", ["box", "cylinder", "capsule", "sphere"])
@pytest.mark.parametrize("seed", range(4))
def test_primitive_cover_holds_the_surface_and_states_a_true_slack(kind, seed):
    rng = np.random.default_rng(seed)
    shape = random_primitive(kind, rng)
    settings = CoverSettings()
    if kind == "sphere":
        cover = exact_sphere_cover(shape)
        assert cover.num_spheres == 1 and cover.worst_slack == 0.0
    else:
        cover = solve_cover(cover_problem_for_shape(shape, settings), settings)
    assert 1 <= cover.num_spheres <= settings.max_spheres
    surface = to_frame(shape.origin, surface_samples(shape, 20000, rng))
    assert outside_margin(surface, cover.centers, cover.radii) <= 1e-9
    inside_spheres = points_in_spheres(cover.centers, cover.radii, 2000, rng)
    distance = distance_to_solid(shape, from_frame(shape.origin, inside_spheres)).reshape(cover.num_spheres, -1)
    assert np.all(distance.max(axis=1) <= cover.slack + 1e-9), (distance.max(axis=1), cover.slack)


def test_primitive_covers_are_few_and_tight_for_simple_shapes():
    # A sphere holding a flat end's rim pokes out by at least R(√2 - 1) (centre at depth R on
    # the axis): the least slack any cover of a cylinder can state; a rod needs a handful.
    settings = CoverSettings(max_spheres=12, target_slack=0.01)
    rod = CollisionShape("l", "cylinder", np.eye(4), radius=0.05, length=0.4)
    cover = solve_cover(cover_problem_for_shape(rod, settings), settings)
    assert cover.num_spheres <= 6 and cover.worst_slack <= 0.05 * (math.sqrt(2) - 1) + 0.002
    capsule = CollisionShape("l", "capsule", np.eye(4), radius=0.05, length=0.4)
    cover = solve_cover(cover_problem_for_shape(capsule, settings), settings)
    assert cover.num_spheres <= 10 and cover.worst_slack <= 0.0102
    cube = CollisionShape("l", "box", np.eye(4), size=(0.1, 0.1, 0.1))
    settings = CoverSettings(max_spheres=12, target_slack=0.04)
    cover = solve_cover(cover_problem_for_shape(cube, settings), settings)
    assert cover.num_spheres == 1 and cover.worst_slack == pytest.approx(0.05 * (math.sqrt(3) - 1), rel=1e-6)


def test_mesh_cover_of_a_box_mesh_is_conservative_with_a_true_slack():
    rng = np.random.default_rng(7)
    size = (0.3, 0.12, 0.05)
    mesh = trimesh.creation.box(extents=size)
    settings = CoverSettings(max_spheres=8, target_slack=0.01)
    cover = solve_cover(mesh_problem(mesh, settings), settings)
    surface = trimesh.sample.sample_surface(mesh, 20000, seed=1)[0]
    assert outside_margin(surface, cover.centers, cover.radii) <= 1e-9
    box = CollisionShape("l", "box", np.eye(4), size=size)
    distance = distance_to_solid(box, points_in_spheres(cover.centers, cover.radii, 2000, rng))
    assert np.all(distance.reshape(cover.num_spheres, -1).max(axis=1) <= cover.slack + 1e-9)


def test_mesh_depth_estimate_agrees_with_the_exact_depth():
    """The k-d tree estimate that guides the tree's centre search: the exact signed distance
    wherever the nearest triangle is among its candidates, the side right away from the surface,
    for outward and inward-facing triangles alike, and for closed shells that cross each other."""
    rng = np.random.default_rng(3)
    mesh = trimesh.creation.capsule(height=0.12, radius=0.035, count=[16, 16])
    mesh = trimesh.util.concatenate([mesh, trimesh.creation.box(extents=(0.05, 0.2, 0.03))])  # two shells, crossing
    points = np.concatenate([rng.uniform(mesh.bounds[0] - 0.03, mesh.bounds[1] + 0.03, (3000, 3)),
                             trimesh.sample.sample_surface(mesh, 2000, seed=2)[0] + rng.normal(0, 0.004, (2000, 3))])
    inverted = trimesh.Trimesh(mesh.vertices, mesh.faces[:, ::-1], process=False)
    assert MeshDepth(np.asarray(mesh.triangles), True).estimate(np.zeros((1, 3)))[0] > 0.01
    assert MeshDepth(np.asarray(inverted.triangles), True).estimate(np.zeros((1, 3)))[0] > 0.01
    for closed in (mesh, inverted):
        problem = mesh_problem(closed, CoverSettings())
        assert problem.depth_estimate is not None
        exact, estimate = problem.depth_at(points), problem.estimate(points)
        assert np.median(np.abs(estimate - exact)) < 1e-9
        assert np.mean(np.abs(estimate - exact) < 1e-4) > 0.99
        far = np.abs(exact) > 0.003
        assert np.all(np.sign(estimate[far]) == np.sign(exact[far]))
        # the careful estimate measures a superset of the fast one's triangles: exact wherever it is
        careful = problem.careful_estimate(points)
        assert not ((np.abs(careful - exact) > 1e-9) & (np.abs(estimate - exact) <= 1e-9)).any()


def test_the_careful_depth_estimate_finds_the_nearest_triangle_the_fast_one_misses():
    """The fast estimate measures the triangles of the 6 surface samples nearest a point and now
    and then misses the nearest triangle (its samples farther than a neighbour face's); the
    careful one (24: what the tree's centre search asks where the fast one misled it, before the
    exact bound at tens of µs a point) finds it at each of those points of a capsule."""
    mesh = trimesh.creation.capsule(height=0.3, radius=0.05)
    depth = MeshDepth(np.asarray(mesh.triangles), True)
    rng = np.random.default_rng(0)
    points = rng.uniform(mesh.bounds[0], mesh.bounds[1], (20000, 3))
    exact = depth(points)
    fast_wrong = np.abs(depth.estimate(points) - exact) > 1e-9
    careful_wrong = np.abs(depth.careful_estimate(points) - exact) > 1e-9
    assert fast_wrong.sum() >= 10 and not careful_wrong.any(), (fast_wrong.sum(), careful_wrong.sum())


def test_union_depth_is_the_largest_of_its_shapes():
    """CoverProblem.union skips a shape where its box shows it cannot be the largest: the same
    values as evaluating every shape."""
    settings = CoverSettings()
    shift = np.eye(4)
    shift[:3, 3] = (0.08, 0.01, 0.0)
    parts = [box_problem(np.array([0.1, 0.03, 0.02]), settings),
             box_problem(np.array([0.01, 0.01, 0.05]), settings).transformed(shift),
             mesh_problem(trimesh.creation.icosphere(radius=0.02), settings).transformed(np.linalg.inv(shift))]
    union = CoverProblem.union(parts)
    points = np.random.default_rng(5).uniform(-0.15, 0.15, (4000, 3))
    assert np.array_equal(union.depth_at(points), np.max([p.depth_at(points) for p in parts], axis=0))
    assert np.array_equal(union.estimate(points), np.max([p.estimate(points) for p in parts], axis=0))
    careful = [(p.careful_estimate or p.estimate)(points) for p in parts]  # the boxes: exact already
    assert np.array_equal(union.careful_estimate(points), np.max(careful, axis=0))


def test_collision_sizes_must_be_finite_and_positive():
    for geometry, attribute in (('<sphere radius="-1"/>', "radius"), ('<box size="1 nan 1"/>', "size"),
                                ('<cylinder radius="0.1" length="0"/>', "length")):
        urdf = f'<robot name="r"><link name="arm"><collision><geometry>{geometry}</geometry></collision></link></robot>'
        with pytest.raises(ValueError, match=rf"arm.*{attribute}"):
            read_collision_shapes(urdf)


def test_collision_origins_and_capsules_are_read():
    urdf = """<robot name="r"><link name="a"><visual><geometry><weird/></geometry></visual>
      <collision><origin xyz="1 2 3" rpy="0 0 1.5707963267948966"/>
      <geometry><capsule radius="0.1" length="0.3"/></geometry></collision></link></robot>"""
    (shape,), warnings = read_collision_shapes(urdf)
    assert (shape.kind, shape.radius, shape.length) == ("capsule", 0.1, 0.3) and not warnings
    np.testing.assert_allclose(shape.origin[:3, 3], [1, 2, 3])
    np.testing.assert_allclose(shape.origin[:3, 0], [0, 1, 0], atol=1e-12)  # yaw 90°: x -> y


# ---------------------------------------------------------------------------- robots from URDF


def _share_dir():
    root = example_robot_data_dir()
    if root is None:
        pytest.skip("example-robot-data is not installed")
    return root.parent.parent  # .../cmeel.prefix/share: holds the package 'example-robot-data'


@pytest.fixture(scope="module")
def panda_build(tmp_path_factory):
    """The Panda's spheres built cold (nothing cached in memory or on disk), then again from the
    cache, with both times (s)."""
    urdf, share = real_urdf("panda"), _share_dir()
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float64)
    patch = pytest.MonkeyPatch()
    patch.setenv("RTK_CACHE", str(tmp_path_factory.mktemp("covers")))
    try:
        clear_cover_cache()
        start = time.perf_counter()
        spheres = robot_spheres_from_urdf(urdf, chain, search_dirs=[share])
        cold = time.perf_counter() - start
        start = time.perf_counter()
        again = robot_spheres_from_urdf(urdf, chain, search_dirs=[share])
        cached = time.perf_counter() - start
    finally:
        patch.undo()
    return urdf, chain, spheres, again, cold, cached


def test_covers_come_back_from_the_disk_in_a_later_process(monkeypatch, tmp_path):
    # a later process has no covers in memory: it reads them from disk, covering nothing again;
    # a damaged file is covered again
    import ros_torch_kin.collision.urdf_spheres as urdf_spheres

    urdf, share = real_urdf("panda"), _share_dir()
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float64)
    monkeypatch.setenv("RTK_CACHE", str(tmp_path))
    clear_cover_cache()
    first = robot_spheres_from_urdf(urdf, chain, search_dirs=[share])
    stored = sorted((tmp_path / "sphere_covers").glob("*.npz"))
    assert len(stored) >= 8  # one per meshed link
    clear_cover_cache()
    solve = urdf_spheres.solve_cover
    monkeypatch.setattr(urdf_spheres, "solve_cover", lambda *a, **k: pytest.fail("covered again"))
    again = robot_spheres_from_urdf(urdf, chain, search_dirs=[share])
    assert torch.equal(again.centers, first.centers) and torch.equal(again.radii, first.radii)
    assert torch.equal(again.slack, first.slack) and torch.equal(again.sphere_links, first.sphere_links)
    stored[0].write_bytes(b"not a cover")
    calls = []
    monkeypatch.setattr(urdf_spheres, "solve_cover", lambda *a, **k: calls.append(1) or solve(*a, **k))
    clear_cover_cache()
    rebuilt = robot_spheres_from_urdf(urdf, chain, search_dirs=[share])
    assert calls == [1] and torch.equal(rebuilt.centers, first.centers)


def _assert_covers_every_collision_surface(urdf: str, spheres: RobotSpheres, share, samples: int = 4000):
    rng = np.random.default_rng(3)
    shapes, _ = read_collision_shapes(urdf)
    links = torch.as_tensor(spheres.sphere_links)
    checked = 0
    for shape in shapes:
        index = spheres.link_names.index(shape.link)
        mine = (links == index).numpy()
        centers, radii = spheres.centers.double().numpy()[mine], spheres.radii.double().numpy()[mine]
        if shape.kind == "mesh":
            path, _ = resolve_mesh_path(shape.filename, (share,))
            assert path is not None, shape.filename
            points = trimesh.sample.sample_surface(load_mesh_file(path, shape.scale), samples, seed=checked)[0]
        else:
            points = surface_samples(shape, samples, rng)
        margin = outside_margin(to_frame(shape.origin, points), centers, radii)
        assert margin <= 1e-9, f"{shape.describe()}: a surface point is {margin} m outside every sphere"
        checked += 1
    return checked


def _report(name: str, spheres: RobotSpheres) -> None:
    counts = {k: v for k, v in spheres.count_per_link().items() if v}
    links = spheres.sphere_links.numpy()
    worst = {spheres.link_names[l]: float(spheres.slack[links == l].max()) for l in np.unique(links)}
    print(f"\n{name}: {spheres.num_spheres} spheres, worst slack {float(spheres.slack.max()):.4f} m")
    for link, count in counts.items():
        print(f"  {link}: {count} spheres, worst slack {worst[link]:.4f} m")


@slow
def test_panda_spheres_cover_every_mesh_and_are_tens_not_thousands(panda_build):
    urdf, chain, spheres, _, cold, cached = panda_build
    _report("panda", spheres)
    print(f"  built in {cold:.2f} s cold, {cached:.4f} s cached")
    assert 10 <= spheres.num_spheres <= 200
    assert not spheres.warnings
    assert spheres.link_names == chain.link_names
    assert _assert_covers_every_collision_surface(urdf, spheres, _share_dir()) >= 10
    assert spheres.source[chain.link_index("panda_link1")] == "urdf"
    assert spheres.source[chain.link_index("panda_link8")] == "none"
    assert torch.all(spheres.slack >= 0) and torch.all(spheres.radii > 0)


@slow
def test_the_cover_cache_makes_a_second_build_fast(panda_build):
    _, _, spheres, again, cold, cached = panda_build
    assert cold >= 5 * cached, (cold, cached)
    assert torch.equal(spheres.centers, again.centers) and torch.equal(spheres.radii, again.radii)


@slow
@pytest.mark.parametrize("name", ["ur5", "tiago"])
def test_real_robot_spheres_cover_every_collision_surface(name):
    urdf, share = real_urdf(name), _share_dir()
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float64)
    spheres = robot_spheres_from_urdf(urdf, chain, search_dirs=[share])
    _report(name, spheres)
    assert not spheres.warnings
    assert _assert_covers_every_collision_surface(urdf, spheres, share, samples=1000) > 0


def test_spheres_follow_their_links_through_forward_kinematics(arm7_urdf, arm7):
    spheres = robot_spheres_from_urdf(arm7_urdf, arm7)
    assert spheres.num_spheres > 0 and spheres.dtype == arm7.dtype
    q = torch.zeros(1, arm7.num_dofs, dtype=arm7.dtype)
    T = forward_kinematics(arm7, q)  # (1, L, 4, 4)
    world = (T[0, spheres.sphere_links, :3, :3] @ spheres.centers[:, :, None])[..., 0] + T[0, spheres.sphere_links, :3, 3]
    shapes, _ = read_collision_shapes(arm7_urdf)
    for shape in shapes:  # each shape's world surface is inside its link's world spheres
        link = arm7.link_index(shape.link)
        mine = spheres.sphere_links == link
        link_pose = T[0, link].numpy()
        points = to_frame(link_pose @ shape.origin, surface_samples(shape, 3000, np.random.default_rng(0)))
        assert outside_margin(points, world[mine].numpy(), spheres.radii[mine].numpy()) <= 1e-9


MISSING_MESH_URDF = """<robot name="r">
  <link name="base"><collision><geometry><box size="0.1 0.1 0.1"/></geometry></collision></link>
  <link name="arm"><visual><geometry><mesh filename="package://x/v.dae"/></geometry><material name="m"/></visual>
    <collision><geometry><mesh filename="package://no_such_package/meshes/arm.stl"/></geometry></collision></link>
  <link name="tip"/>
  <joint name="j" type="revolute"><parent link="base"/><child link="arm"/><axis xyz="0 0 1"/>
    <limit lower="-1" upper="1" effort="1" velocity="1"/></joint>
  <joint name="f" type="fixed"><parent link="arm"/><child link="tip"/></joint>
</robot>"""


def test_a_missing_mesh_is_a_warning_naming_the_link_and_the_file(tmp_path):
    chain = Chain.from_urdf(MISSING_MESH_URDF, device="cpu", dtype=torch.float64)
    spheres = robot_spheres_from_urdf(MISSING_MESH_URDF, chain, search_dirs=[tmp_path])
    (warning,) = spheres.warnings
    assert "'arm'" in warning and "package://no_such_package/meshes/arm.stl" in warning
    counts = spheres.count_per_link()
    assert counts["arm"] == 0 and counts["tip"] == 0 and counts["base"] >= 1
    assert spheres.source[chain.link_index("arm")] == "none"


def test_an_unreadable_mesh_is_a_warning_naming_the_link_and_the_file_in_both_covers(tmp_path):
    """A mesh file that exists but holds no triangles: the coarse cover and the tight trees each
    warn once, naming the link, the file and the path, and give that link no spheres."""
    from ros_torch_kin.collision.urdf_sphere_trees import robot_sphere_trees_from_urdf

    (tmp_path / "arm.stl").write_text("solid nothing\nendsolid nothing\n")
    urdf = MISSING_MESH_URDF.replace("package://no_such_package/meshes/arm.stl", str(tmp_path / "arm.stl"))
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float64)
    for spheres in (robot_spheres_from_urdf(urdf, chain), robot_sphere_trees_from_urdf(urdf, chain, use_cache=False)):
        (warning,) = spheres.warnings
        assert "'arm'" in warning and "could not be read" in warning and str(tmp_path / "arm.stl") in warning
        counts = spheres.count_per_link()
        assert counts["arm"] == 0 and counts["base"] >= 1


def test_meshes_resolve_through_search_dirs_file_uris_and_relative_paths(tmp_path):
    mesh_dir = tmp_path / "my_robot" / "meshes"
    mesh_dir.mkdir(parents=True)
    trimesh.creation.box(extents=(0.2, 0.1, 0.1)).export(mesh_dir / "part.stl")
    target = (mesh_dir / "part.stl").resolve()
    for filename, dirs, base in (
        ("package://my_robot/meshes/part.stl", (tmp_path,), None),
        ("package://my_robot/meshes/part.stl", (tmp_path / "my_robot",), None),  # the package dir itself
        (f"file://{target}", (), None),
        (str(target), (), None),
        ("meshes/part.stl", (), tmp_path / "my_robot"),
    ):
        path, _ = resolve_mesh_path(filename, dirs, base)
        assert path is not None and path.resolve() == target, filename
    mesh = load_mesh_file(target, scale=(2.0, 1.0, 0.5))
    np.testing.assert_allclose(mesh.extents, [0.4, 0.1, 0.05])


# ---------------------------------------------------------------------------- user spheres


def test_user_spheres_replace_the_named_links(arm7_urdf, arm7, tmp_path):
    generated = robot_spheres_from_urdf(arm7_urdf, arm7)
    spheres_file = tmp_path / "spheres.yml"
    spheres_file.write_text(
        "robot_cfg:\n  kinematics:\n    collision_spheres:\n"
        "      link_2:\n        - {center: [0.0, 0.0, 0.1], radius: 0.08}\n"
        "        - {center: [0.0, 0.0, 0.2], radius: 0.07}\n"
    )
    spheres = robot_spheres_from_urdf(arm7_urdf, arm7, overrides=spheres_file)
    link = arm7.link_index("link_2")
    mine = spheres.sphere_links == link
    torch.testing.assert_close(spheres.radii[mine], torch.tensor([0.08, 0.07], dtype=arm7.dtype))
    torch.testing.assert_close(spheres.slack[mine], spheres.radii[mine])
    assert spheres.source[link] == "user"
    others = generated.count_per_link()
    others["link_2"] = 2
    assert spheres.count_per_link() == others
    flat = robot_spheres_from_urdf(arm7_urdf, arm7, overrides={"collision_spheres": {"link_2": []}})
    assert flat.count_per_link()["link_2"] == 0 and flat.source[link] == "user"


def test_user_spheres_are_validated(arm7_urdf, arm7):
    with pytest.raises(ValueError, match="no_such_link"):
        robot_spheres_from_urdf(arm7_urdf, arm7, overrides={"collision_spheres": {"no_such_link": []}})
    bad = {"collision_spheres": {"link_3": [{"center": [0, 0, 0], "radius": 0.1}, {"center": [0, 0, 0], "radius": -0.1}]}}
    with pytest.raises(ValueError, match=r"link_3.*sphere 1"):
        robot_spheres_from_urdf(arm7_urdf, arm7, overrides=bad)
    bad = {"collision_spheres": {"link_3": [{"center": [0, float("nan"), 0], "radius": 0.1}]}}
    with pytest.raises(ValueError, match=r"link_3.*sphere 0"):
        robot_spheres_from_urdf(arm7_urdf, arm7, overrides=bad)
