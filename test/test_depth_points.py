"""Depth image + CameraInfo -> points (ros_torch_kin.ros.point_cloud_input.depth_points) against
a pinhole projection derived by hand: pixel (u, v) at depth z is ((u − cx)·z/fx, (v − cy)·z/fy, z)
in the optical frame; zero and NaN depths (holes) come out as NaN rows, which the insertion skips."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sensor_msgs")
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from ros_torch_kin.ros.point_cloud_input import depth_points, sensed_obstacle  # noqa: E402

FX, FY, CX, CY = 500.0, 400.0, 2.0, 1.0


def _info() -> CameraInfo:
    info = CameraInfo()
    info.width, info.height = 4, 3
    info.k = [FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0]
    return info


def _image(depth: np.ndarray, encoding: str, pad: int = 0) -> Image:
    msg = Image()
    msg.height, msg.width = depth.shape
    msg.encoding = encoding
    rows = np.ascontiguousarray(depth).view(np.uint8).reshape(depth.shape[0], -1)
    rows = np.concatenate([rows, np.zeros((depth.shape[0], pad), np.uint8)], axis=1)  # row padding
    msg.step = rows.shape[1]
    msg.data = rows.tobytes()
    return msg


# depth (m) per pixel, rows v = 0..2, columns u = 0..3; a zero and a NaN are holes
DEPTH = np.array([[1.0, 2.0, 0.0, 1.5],
                  [0.5, np.nan, 3.0, 1.0],
                  [2.5, 1.0, 1.25, 0.75]], dtype=np.float32)
# by hand: x = (u − 2)·z/500, y = (v − 1)·z/400
EXPECTED = {(0, 0): (-2 * 1.0 / 500, -1 * 1.0 / 400, 1.0), (0, 1): (-1 * 2.0 / 500, -2.0 / 400, 2.0),
            (0, 3): (1.5 / 500, -1.5 / 400, 1.5), (1, 0): (-2 * 0.5 / 500, 0.0, 0.5), (1, 2): (0.0, 0.0, 3.0),
            (1, 3): (1.0 / 500, 0.0, 1.0), (2, 0): (-2 * 2.5 / 500, 2.5 / 400, 2.5), (2, 1): (-1.0 / 500, 1.0 / 400, 1.0),
            (2, 2): (0.0, 1.25 / 400, 1.25), (2, 3): (0.75 / 500, 0.75 / 400, 0.75)}


def _check(points: np.ndarray, tolerance: float) -> None:
    assert points.shape == (12, 3)
    for v in range(3):
        for u in range(4):
            row = points[v * 4 + u]
            if (v, u) in EXPECTED:
                assert np.allclose(row, EXPECTED[(v, u)], atol=tolerance), ((v, u), row)
            else:
                assert np.isnan(row).all(), ((v, u), row)  # a hole


def test_32fc1_metres_against_the_pinhole_model():
    _check(depth_points(_image(DEPTH, "32FC1"), _info()), 1e-6)


def test_16uc1_millimetres_with_row_padding():
    millimetres = np.nan_to_num(DEPTH * 1000).round().astype("<u2")
    _check(depth_points(_image(millimetres, "16UC1", pad=6), _info()), 1e-6)


def test_holes_are_skipped_on_insertion_and_bad_input_is_refused():
    points = depth_points(_image(DEPTH, "32FC1"), _info())
    obstacle = sensed_obstacle("sensor:cam", points, np.eye(4), 0.01, 0.0, 10.0, None, 0.0)
    assert obstacle.grid.occupied_count == len(EXPECTED)  # every finite point, no hole
    with pytest.raises(ValueError, match="encoding 'rgb8'"):
        depth_points(_image(DEPTH, "rgb8"), _info())
    info = _info()
    info.k = [0.0] * 9
    with pytest.raises(ValueError, match="focal length"):
        depth_points(_image(DEPTH, "32FC1"), info)
    short = _image(DEPTH, "32FC1")
    short.data = short.data[:-4]
    with pytest.raises(ValueError, match="too few"):
        depth_points(short, _info())


def test_self_filter_removes_points_on_a_carried_box_and_keeps_far_ones(arm7):
    """A box carried by the tool (its coarse cover moved with the tool by FK) is filtered out of
    the sensed points like the robot itself (padding + voxel half-diagonal), far points stay."""
    import torch

    from ros_torch_kin.collision import AttachedObject, Obstacle
    from ros_torch_kin.collision.urdf_spheres import robot_spheres_from_urdf
    from ros_torch_kin.kinematics import world_transforms
    from ros_torch_kin.robots import bundled_urdf
    from ros_torch_kin.ros.point_cloud_input import self_filter_spheres

    side, voxel = 0.12, 0.02
    box = AttachedObject("box", "tool0", Obstacle.box("box", (side,) * 3, np.array([0, 0, 0.1, 0, 0, 0, 1.0])))
    q = torch.tensor([[0.3, -0.4, 0.2, -1.0, 0.1, 0.8, 0.5]], dtype=torch.float64)
    world = world_transforms(arm7, q)
    tool = world[arm7.link_index("tool0"), :, :, 0].numpy()
    g = np.linspace(-side / 2, side / 2, 13)
    a, b = [x.ravel() for x in np.meshgrid(g, g)]
    faces = np.concatenate([np.stack(np.roll([a, b, np.full(a.size, s * side / 2)], k, axis=0), axis=1)
                            for k in range(3) for s in (-1, 1)])  # the six faces, box frame
    on_box = (faces + [0, 0, 0.1]) @ tool[:3, :3].T + tool[:3, 3]
    far = tool[:3, 3] + np.array([[0.0, 0.0, -1.5], [0.6, 0.6, -1.0], [-0.6, 0.5, -1.2]])
    far = far[np.linalg.norm(far - tool[:3, 3], axis=1) > 0.5]
    points = np.concatenate([on_box, far])

    robot = robot_spheres_from_urdf(bundled_urdf(), arm7)
    robot_only = self_filter_spheres(arm7, world, robot)
    both = self_filter_spheres(arm7, world, robot, [box])
    assert both[0].shape[0] == robot_only[0].shape[0] + box.coarse_cover.num_spheres
    np.testing.assert_array_equal(both[0][: robot.num_spheres], robot_only[0])
    only_box = self_filter_spheres(arm7, world, None, [box])
    assert only_box[0].shape[0] == box.coarse_cover.num_spheres
    assert self_filter_spheres(arm7, world, None, ()) is None

    def kept(spheres):
        obstacle = sensed_obstacle("sensor:cam", points, np.eye(4), voxel, 0.0, 10.0, spheres, 0.02)
        return np.empty((0, 3)) if obstacle is None else obstacle.grid.occupied_centers()

    before = kept(robot_only)  # the robot alone: the box's points stay
    assert (np.linalg.norm(before[:, None] - on_box[None], axis=2) < voxel).any(1).sum() > 20
    after = kept(both)
    assert not (np.linalg.norm(after[:, None] - on_box[None], axis=2) < voxel).any()  # the box is gone ...
    assert len(after) == len(far)  # ... the far points are kept


@pytest.mark.parametrize("side, count", [(0.02, 40), (0.01, 40), (0.005, 40), (0.01, 3000)])
def test_the_self_filter_keeps_exactly_the_cubes_clear_of_every_sphere(side, count):
    """Against brute force: a cube goes when its centre is within a sphere's radius + padding +
    the cube's half diagonal of the sphere's centre, with few large spheres and with thousands
    of overlapping ones of every size (as a tight model's leaves: most cubes decided by their
    nearest centres, the others by the radius classes; only the cubes near the spheres are
    looked at, most of a scene is outside their box)."""
    from ros_torch_kin.ros.point_cloud_input import _self_filtered

    rng = np.random.default_rng(3)
    padding = 0.015
    centers = rng.uniform(-0.3, 0.3, (count, 3))
    radii = rng.uniform(0.01, 0.08, count) if count < 100 else np.exp(rng.uniform(np.log(0.002), np.log(0.07), count))
    n = int(round(0.8 / side))
    keys = np.unique(rng.integers(-n, n, (60_000, 3)), axis=0)
    kept = _self_filtered(keys, side, (centers, radii), padding)
    import torch

    middle = torch.as_tensor((keys + 0.5) * side)
    gap = torch.cat([(torch.cdist(part, torch.as_tensor(centers)) - torch.as_tensor(radii)).min(1).values
                     for part in middle.split(4096)]).numpy() - padding - 0.5 * np.sqrt(3) * side
    expected = keys[gap > 0]
    np.testing.assert_array_equal(kept, expected)
    assert 500 < len(keys) - len(expected) < len(keys) * 0.9  # some filtered, some kept
    assert _self_filtered(keys, side, (centers + 10.0, radii), padding).shape == keys.shape  # spheres far away


# ---------------------------------------------------------------- the simulated depth camera
# bench/depth_camera.py ray casts a pinhole camera against true primitives (the MBM depth-view
# benchmark's sensor). The camera: at (-2, 0, 0.5) in the root frame looking along +x (optical z =
# +x, x = -y, y = -z), 640×480, fx = fy = 525, cx = 320, cy = 240.
CAMERA_POSE = np.array([[0.0, 0.0, 1.0, -2.0],
                        [-1.0, 0.0, 0.0, 0.0],
                        [0.0, -1.0, 0.0, 0.5],
                        [0.0, 0.0, 0.0, 1.0]])


def _camera():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from depth_camera import DepthCamera, depth_image, look_at

    camera = DepthCamera(CAMERA_POSE)
    np.testing.assert_allclose(look_at((-2.0, 0.0, 0.5), (5.0, 0.0, 0.5)), CAMERA_POSE, atol=1e-12)
    return camera, depth_image


def _root_points(camera, depth_image, depth):
    """The image through the node's path (32FC1 Image + CameraInfo -> depth_points), root frame."""
    points = depth_points(depth_image(depth), camera.camera_info())
    return points.reshape(camera.height, camera.width, 3) @ CAMERA_POSE[:3, :3].T + CAMERA_POSE[:3, 3]


def test_ray_cast_box_and_sphere_land_on_the_true_surfaces():
    """A 0.4×0.2×0.6 box at (0, 0, 0.5) turned 120° about (1, 1, 1) (its x, y, z along the root's
    y, z, x: root extents x ±0.3, y ±0.2, z ±0.1; the inverse turn would give x ±0.1) and a
    sphere of radius 0.7 at (1, -0.6, 0.5), partly behind the box. By hand: the box's front face
    is the plane x = -0.3, 1.7 m ahead, so every pixel on it has depth 1.7 (the optical axis too,
    where the sphere behind it, at 2.64 m, is hidden); the ray of pixel (425, 240) passes through
    the sphere's centre (lateral 0.6 at depth 3: u = 320 + 525·0.2) and meets it at depth
    3·(1 − 0.7/√9.36), missing the box (lateral 0.34 > 0.2 at 1.7 m); rays well above, left of
    or below everything are holes."""
    from ros_torch_kin.collision import Obstacle

    camera, depth_image = _camera()
    turn = np.array([0.5, 0.5, 0.5, 0.5])  # 120° about (1, 1, 1) (qx, qy, qz, qw): x -> y -> z -> x
    box = Obstacle.box("box", (0.4, 0.2, 0.6), np.concatenate([[0.0, 0.0, 0.5], turn]))
    np.testing.assert_allclose(box.pose[:3, :3], [[0, 0, 1], [1, 0, 0], [0, 1, 0]], atol=1e-12)
    sphere = Obstacle.sphere("sphere", 0.7, np.array([1.0, -0.6, 0.5, 0.0, 0.6, 0.0, 0.8]))
    depth = camera.render([box, sphere])
    assert depth.shape == (480, 640) and depth.dtype == np.float32
    on_sphere = 3.0 * (1.0 - 0.7 / 9.36 ** 0.5)
    expected = {(240, 320): 1.7, (240, 370): 1.7, (220, 300): 1.7, (240, 425): on_sphere}  # (v, u): depth
    for (v, u), z in expected.items():
        assert depth[v, u] == pytest.approx(z, abs=1e-6), ((v, u), depth[v, u])
    points = _root_points(camera, depth_image, depth)
    for v, u in [(240, 320), (240, 370), (220, 300)]:  # on the box's front face
        x, y, z = points[v, u]
        assert x == pytest.approx(-0.3, abs=1e-6) and abs(y) <= 0.2 and abs(z - 0.5) <= 0.1, ((v, u), points[v, u])
    assert np.linalg.norm(points[240, 425] - [1.0, -0.6, 0.5]) == pytest.approx(0.7, abs=1e-6)
    np.testing.assert_allclose(points[240, 425], [1.0 - 0.7 * 3.0 / 9.36 ** 0.5, -0.6 + 0.7 * 0.6 / 9.36 ** 0.5, 0.5],
                               atol=1e-6)
    for v, u in [(0, 0), (0, 639), (479, 0), (240, 0), (20, 320), (200, 300)]:
        assert depth[v, u] == 0.0, ((v, u), depth[v, u])  # a hole ...
        assert np.isnan(points[v, u]).all()  # ... which depth_points makes a NaN row
    # every pixel that sees something sees the box's front face or the sphere's surface
    seen = points[np.isfinite(points[..., 0])]
    on_box = np.abs(seen[:, 0] + 0.3) < 1e-5
    assert (np.abs(seen[on_box, 1]) <= 0.2 + 1e-6).all() and (np.abs(seen[on_box, 2] - 0.5) <= 0.1 + 1e-6).all()
    np.testing.assert_allclose(np.linalg.norm(seen[~on_box] - [1.0, -0.6, 0.5], axis=1), 0.7, atol=1e-5)
    assert on_box.sum() > 1000 and (~on_box).sum() > 1000


def test_ray_cast_cylinders_side_and_cap():
    """Cylinders (height, radius) along their z axis: one standing at (0, 0, 0.5), height 0.4,
    radius 0.1 (the optical axis meets its side at x = -0.1: depth 1.9); one lying along x at
    (0, -0.6, 0.5) (its cap at x = -0.2 faces the camera: the ray through the cap's centre,
    u = 320 + 525·0.6/1.8 = 495, has depth 1.8). Swapping height and radius moves both."""
    from ros_torch_kin.collision import Obstacle

    camera, depth_image = _camera()
    standing = Obstacle.cylinder("standing", 0.4, 0.1, np.array([0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 1.0]))
    along_x = np.array([0.0, -0.6, 0.5, 0.0, 0.5 ** 0.5, 0.0, 0.5 ** 0.5])  # 90° about y: z -> x
    lying = Obstacle.cylinder("lying", 0.4, 0.1, along_x)
    depth = camera.render([standing, lying])
    assert depth[240, 320] == pytest.approx(1.9, abs=1e-6)
    assert depth[240, 495] == pytest.approx(1.8, abs=1e-6)
    points = _root_points(camera, depth_image, depth)
    np.testing.assert_allclose(points[240, 320], [-0.1, 0.0, 0.5], atol=1e-6)
    np.testing.assert_allclose(points[240, 495], [-0.2, -0.6, 0.5], atol=1e-6)
    seen = points[np.isfinite(points[..., 0])]
    standing_seen = seen[seen[:, 1] > -0.3]  # its side only: the camera is level with its middle
    np.testing.assert_allclose(np.hypot(standing_seen[:, 0], standing_seen[:, 1]), 0.1, atol=1e-5)
    assert (np.abs(standing_seen[:, 2] - 0.5) <= 0.2 + 1e-6).all()
    lying_seen = seen[seen[:, 1] <= -0.3]  # its cap, and its side (the camera is 0.6 m off its axis)
    across = np.hypot(lying_seen[:, 1] + 0.6, lying_seen[:, 2] - 0.5)
    cap = np.abs(lying_seen[:, 0] + 0.2) < 1e-5
    assert (across[cap] <= 0.1 + 1e-6).all() and cap.sum() > 1000
    np.testing.assert_allclose(across[~cap], 0.1, atol=1e-5)
    assert (np.abs(lying_seen[~cap, 0]) <= 0.2 + 1e-6).all() and (~cap).sum() > 100
    assert depth[20, 320] == 0.0 and depth[240, 0] == 0.0


def test_far_field_lattice_keeps_distances_a_few_voxels_out_close_to_the_true_ones():
    """A wall seen by a camera, 2 cm voxels (the node's default): beyond 2 voxels of the balls the
    voxel field alone is a loose lower bound (here about 1 cm short; near edges and corners
    several centimetres); with the ``sensor_lattice`` the distances stay lower bounds and come
    within a few millimetres of the exact distance to the balls (computed here by brute force)."""
    import math

    import torch

    from ros_torch_kin.collision import Scene
    from ros_torch_kin.collision.signed_distance import sphere_obstacle_distances

    g = np.linspace(-0.3, 0.3, 121)
    y, z = np.meshgrid(g, g)
    wall = np.stack([np.full(y.size, 0.6), y.ravel(), z.ravel()], axis=1)  # x = 0.6 m in the sensor frame
    s = 0.02
    queries = np.array([[0.6 - d, 0.013 * k, -0.011 * k, 0.0] for k, d in enumerate(np.linspace(0.03, 0.08, 11))])
    kept = sensed_obstacle("sensor:cam", wall, np.eye(4), s, 0.0, 10.0, None, 0.0)
    keys = np.unique(np.floor(wall / s).astype(np.int64), axis=0)
    balls = (keys + 0.5) * s
    radius = 0.5 * math.sqrt(3) * s
    exact = np.linalg.norm(queries[:, None, :3] - balls[None], axis=2).min(1) - radius
    found = {}
    for lattice in (None, 0.04):
        obstacle = sensed_obstacle("sensor:cam", wall, np.eye(4), s, 0.0, 10.0, None, 0.0, lattice=lattice)
        packed = Scene([obstacle]).packed("cpu", torch.float64)
        d, _ = sphere_obstacle_distances(torch.as_tensor(queries[:, :3]), torch.zeros(len(queries), dtype=torch.float64),
                                         packed)
        found[lattice] = d[:, 0].numpy()
        assert (found[lattice] <= exact + 1e-6).all()  # never above the true distance
    assert kept.grid.occupied_count == len(balls)  # the balls brute-forced here are the obstacle's
    field, lattice = exact - found[None], exact - found[0.04]
    assert field.mean() > 0.008  # the field alone: about a voxel's half-diagonal short
    assert lattice.max() < 0.008 and lattice.mean() < 0.5 * field.mean()
    assert (found[0.04] > 0.02).all()


@pytest.mark.parametrize("marking", [True, False])
def test_sensed_voxels_are_the_distinct_voxels_of_the_posed_points(monkeypatch, marking):
    """The centres handed to the obstacle are those of the distinct voxels floor(p / s) of the
    points in the root frame (numpy's unique rows: an independent reference), each once, whether
    the voxels are deduplicated by marking or by np.unique."""
    from ros_torch_kin.ros import point_cloud_input

    rng = np.random.default_rng(4)
    points = rng.uniform(-0.3, 0.3, (3000, 3)) + (0.0, 0.0, 1.0)
    c, s = np.cos(0.4), np.sin(0.4)
    pose = np.eye(4)
    pose[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    pose[:3, 3] = (0.2, -0.1, 0.5)
    if not marking:
        monkeypatch.setattr(point_cloud_input, "UNIQUE_BY_MARKING", 0)
    monkeypatch.setattr(point_cloud_input.Obstacle, "points", classmethod(lambda cls, id, centers, *a, **k: centers))
    voxel = 0.05
    centers = sensed_obstacle("sensor:cam", points, pose, voxel, 0.0, 10.0, None, 0.0)
    voxels = np.unique(np.floor((points @ pose[:3, :3].T + pose[:3, 3]) / voxel).astype(np.int64), axis=0)
    assert centers.shape == voxels.shape and len(voxels) < len(points)
    np.testing.assert_allclose(centers, (voxels + 0.5) * voxel, atol=1e-12)


def test_finer_points_are_the_distinct_cubes_of_the_voxel_divided_and_cover_every_point(monkeypatch):
    """With a point size, the centres are those of the distinct cubes of side voxel / n (n the
    least whole number that brings the side to the point size or below; numpy's unique rows as
    the reference), each ball covers every sensed point of its cube, and the obstacle stands at
    most √3·side proud of the points."""
    from ros_torch_kin.ros import point_cloud_input

    captured = {}

    def capture(cls, id, centers, voxel_size, radius=0.0, **options):
        captured.update(voxel_size=voxel_size, radius=radius)
        return centers

    monkeypatch.setattr(point_cloud_input.Obstacle, "points", classmethod(capture))
    rng = np.random.default_rng(5)
    points = rng.uniform(-0.2, 0.2, (4000, 3)) + (0.0, 0.0, 1.0)
    voxel = 0.02
    for size, side in ((0.02, 0.02), (0.01, 0.01), (0.006, 0.02 / 4), (0.005, 0.005)):
        centers = sensed_obstacle("sensor:cam", points, np.eye(4), voxel, 0.0, 10.0, None, 0.0, point_size=size)
        cubes = np.unique(np.floor(points / side).astype(np.int64), axis=0)
        assert centers.shape == cubes.shape
        np.testing.assert_allclose(centers, (cubes + 0.5) * side, atol=1e-12)
        assert captured["voxel_size"] == voxel  # the field keeps the voxel size
        assert captured["radius"] == pytest.approx(0.5 * np.sqrt(3) * side)
        nearest = np.min(np.linalg.norm(points[:, None] - centers[None], axis=2), axis=1)
        assert (nearest <= captured["radius"] + 1e-12).all()  # every point inside a ball


def test_the_self_filter_removes_cubes_not_whole_voxels(monkeypatch):
    """Finer points are filtered cube by cube: a cube the robot's sphere (plus padding and the
    cube's half diagonal) reaches goes, the other cubes of its voxel stay (a whole 2 cm voxel
    would take an obstacle up to ~3.5 cm beyond the padding with the robot)."""
    from ros_torch_kin.ros import point_cloud_input

    monkeypatch.setattr(point_cloud_input.Obstacle, "points", classmethod(lambda cls, id, centers, *a, **k: centers))
    voxel, side = 0.02, 0.005
    rng = np.random.default_rng(6)
    points = rng.uniform(-0.15, 0.15, (6000, 3)) + (0.5, 0.0, 0.5)
    spheres = (np.array([[0.5, 0.0, 0.5]]), np.array([0.05]))
    fine = sensed_obstacle("sensor:cam", points, np.eye(4), voxel, 0.0, 10.0, spheres, 0.01, point_size=side)
    cubes = np.unique(np.floor(points / side).astype(np.int64), axis=0)
    reach = 0.05 + 0.01 + 0.5 * np.sqrt(3) * side
    clear = np.linalg.norm((cubes + 0.5) * side - spheres[0], axis=1) > reach
    assert 0 < clear.sum() < len(cubes)
    np.testing.assert_allclose(fine, (cubes[clear] + 0.5) * side, atol=1e-12)
    voxels_reached = {tuple(v) for v in np.floor_divide(cubes[~clear], 4)}
    partly = [c for c in cubes[clear] if tuple(np.floor_divide(c, 4)) in voxels_reached]
    assert len(partly) > 20  # cubes kept in voxels the filter reached: the voxel is not removed whole


def test_an_object_beside_the_hand_survives_the_nodes_self_filter_and_the_robot_does_not(panda_collision_model,
                                                                                       monkeypatch):
    """The Panda (example-robot-data: meshes, boxes for fingers) at a bent configuration: points on it all go;
    points 45-60 mm from every mesh (exact distances, trimesh), an object beside the robot, all
    stay with the spheres the node filters with (the tight model's leaves, ``filter_model``) at
    the node's defaults (2 cm padding, 2 cm voxels, 1 cm cubes). The coarse spheres, tens of mm
    proud of the meshes, took some of them with the robot (the MBM cage 17 plan that hit a bar
    the cameras saw, ad hoc)."""
    from types import SimpleNamespace

    import torch
    import trimesh
    from scipy.spatial import Delaunay

    from ros_torch_kin.collision.mesh_files import read_link_mesh, resolve_mesh_path
    from ros_torch_kin.collision.urdf_geometry import read_collision_shapes
    from ros_torch_kin.kinematics import world_transforms
    from conftest import real_urdf
    from ros_torch_kin.ros import point_cloud_input
    from ros_torch_kin.ros.parameters import BY_NAME
    from ros_torch_kin.ros.point_cloud_input import filter_model, self_filter_spheres

    chain, model, _, share = panda_collision_model
    chain64 = chain.to("cpu", torch.float64)
    q = torch.tensor([[0.2, 0.4, -0.1, -1.9, 0.1, 2.2, 0.6, 0.02, 0.02]], dtype=torch.float64)[:, : chain.num_dofs]
    world = world_transforms(chain64, q)
    meshes = []
    for shape in read_collision_shapes(real_urdf("panda"))[0]:
        if shape.kind not in ("mesh", "box") or not chain.has_link(shape.link):
            continue
        mesh = (read_link_mesh(shape, resolve_mesh_path(shape.filename, [share], None)[0], []) if shape.kind == "mesh"
                else trimesh.creation.box(extents=shape.size))  # the fingers are boxes
        pose = world[chain.link_index(shape.link), :, :, 0].numpy() @ shape.origin
        meshes.append(mesh.copy().apply_transform(pose))
    rng = np.random.default_rng(0)
    on_robot = np.concatenate([trimesh.sample.sample_surface(m, 400, seed=i)[0] for i, m in enumerate(meshes)])
    # candidates pushed 45-60 mm out of the surface, kept where coal puts every mesh 45-60 mm away
    # and no mesh's convex hull holds them (a point deep inside a link is not beside it)
    base, face = trimesh.sample.sample_surface(trimesh.util.concatenate(meshes), 3000, seed=7)
    normals = trimesh.util.concatenate(meshes).face_normals[face]
    candidates = base + normals * rng.uniform(0.045, 0.060, (len(base), 1))
    distance = np.stack([_coal_point_distances(m, candidates) for m in meshes]).min(0)
    inside = np.stack([Delaunay(m.convex_hull.vertices).find_simplex(candidates) >= 0 for m in meshes]).any(0)
    beside = candidates[(distance >= 0.045) & (distance <= 0.060) & ~inside]
    assert len(beside) > 100
    defaults = {name: BY_NAME[name].default for name in ("sensor_voxel_size", "sensor_point_size", "self_filter_padding")}
    side = defaults["sensor_voxel_size"] / math.ceil(defaults["sensor_voxel_size"] / defaults["sensor_point_size"] - 1e-9)
    monkeypatch.setattr(point_cloud_input.Obstacle, "points", classmethod(lambda cls, id, centers, *a, **k: centers))

    def kept_cubes(served):
        robot, tight = filter_model(served)
        spheres = self_filter_spheres(chain64, world, robot, (), tight)
        centers = sensed_obstacle("sensor:cam", np.concatenate([on_robot, beside]), np.eye(4),
                                  defaults["sensor_voxel_size"], 0.0, 10.0, spheres, defaults["self_filter_padding"],
                                  point_size=defaults["sensor_point_size"])
        return {tuple(c) for c in np.floor(centers / side + 1e-9).astype(np.int64)}

    def cubes(points):
        return [tuple(c) for c in np.floor(points / side).astype(np.int64)]

    tight = kept_cubes(SimpleNamespace(verdict=model.verdict, collision=model.cost))
    assert not tight & set(cubes(on_robot))  # the robot is filtered out ...
    assert all(c in tight for c in cubes(beside))  # ... and the object beside it kept whole
    coarse = kept_cubes(SimpleNamespace(verdict=None, collision=model.cost))
    lost = sum(c not in coarse for c in cubes(beside))
    assert lost > 0.05 * len(beside), lost  # the coarse spheres took some of it (244 of 2,039)


def _coal_point_distances(mesh, points: np.ndarray) -> np.ndarray:
    """(N,) coal's distance (m) from each point (a sphere of radius 0) to the triangle mesh's
    surface (a BVH of its triangles)."""
    import coal

    model = coal.BVHModelOBBRSS()
    model.beginModel(len(mesh.faces), len(mesh.vertices))
    model.addVertices(np.asarray(mesh.vertices, dtype=np.float64))
    model.addTriangles(np.asarray(mesh.faces, dtype=np.int64))
    model.endModel()
    point, request, out = coal.Sphere(0.0), coal.DistanceRequest(), np.empty(len(points))
    for i, p in enumerate(points):
        result = coal.DistanceResult()
        out[i] = coal.distance(model, coal.Transform3s(), point, coal.Transform3s(np.eye(3), p), request, result)
    return out
