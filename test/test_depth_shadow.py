"""The band behind what a depth camera sees (ros_torch_kin.collision.depth_shadow,
``sensor_shadow_depth``): edges by hand, and a box seen face-on by the ray-cast camera of the
benchmarks, whose unseen back and sides the band covers (distances to the sensed world against
points placed by hand from the box's true geometry)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ros_torch_kin.collision.depth_shadow import edge_pixels, shadow_cubes

INF = np.inf


def test_edge_pixels_by_hand():
    """A near block (1.0 m) beside a far one (1.5 m), a hole and the image border: edges are the
    near side of each jump above ``jump``, the pixels beside a hole and those on the border; a
    hole itself is no edge, nor a far pixel beside nearer ones ((2, 2)), nor a step below ``jump``."""
    ranges = np.array([[1.0, 1.0, 1.5, 1.5, 1.5],
                       [1.0, 1.0, 1.5, INF, 1.5],
                       [1.0, 1.005, 1.5, 1.5, 1.5],
                       [1.0, 1.0, 1.5, 1.5, 1.5]])
    edges = edge_pixels(ranges, 0.01)
    expected = np.array([[1, 1, 1, 1, 1],
                         [1, 1, 1, 0, 1],
                         [1, 1, 0, 1, 1],
                         [1, 1, 1, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(edges, expected)
    inner = np.full((5, 6), 1.0)
    inner[2, 3] = 1.005  # below the jump: no edge inside
    assert not edge_pixels(inner, 0.01)[1:-1, 1:-1].any()
    inner[2, 3] = 1.02  # above it: its four neighbours are edges
    found = edge_pixels(inner, 0.01)[1:-1, 1:-1]
    assert {tuple(i) for i in np.argwhere(found)} == {(0, 2), (2, 2), (1, 1), (1, 3)}  # around (1, 2) inside


def test_back_face_is_the_depth_farther_along_each_ray():
    """Every back-face cube holds its surface cube's centre moved ``depth`` along the ray from the
    camera; walls are sampled every half side out to the depth."""
    side, depth = 0.01, 0.05
    camera = np.array([0.1, -0.2, 0.3])
    rng = np.random.default_rng(0)
    surface = rng.integers(-50, 50, (200, 3))
    back = shadow_cubes(surface, surface[:0], side, camera, depth)
    centers = (surface + 0.5) * side
    ray = (centers - camera) / np.linalg.norm(centers - camera, axis=1, keepdims=True)
    np.testing.assert_array_equal(back, np.floor((centers + depth * ray) / side).astype(np.int64))
    walls = shadow_cubes(surface[:0], surface[:3], side, camera, depth)
    assert walls.shape == (3 * 10, 3)  # 10 samples of half a side each for 5 cm
    moved = (walls.reshape(3, 10, 3) + 0.5) * side - centers[:3, None]
    along = np.einsum("nkd,nd->nk", moved, ray[:3])
    assert (np.abs(np.diff(along, axis=1) - 0.5 * side) <= math.sqrt(3) * side).all()
    assert (np.abs(along[:, -1] - depth) <= math.sqrt(3) * side).all()


def _seen_box(shadow: float, spheres=None):
    """A 0.6 × 0.4 × 0.2 box at (0, 0, 0.5) (x from -0.3 to 0.3) seen face-on by the 640×480
    camera of bench/depth_camera.py at (-2, 0, 0.5) looking along +x, inserted as the node
    inserts a depth topic (2 cm voxels, 1 cm points, no lattice)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    pytest.importorskip("sensor_msgs")
    from depth_camera import DepthCamera, depth_image, look_at

    from ros_torch_kin.collision import Obstacle
    from ros_torch_kin.ros.point_cloud_input import depth_points, sensed_obstacle

    pose = look_at((-2.0, 0.0, 0.5), (5.0, 0.0, 0.5))
    camera = DepthCamera(pose)
    box = Obstacle.box("box", (0.6, 0.4, 0.2), np.array([0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 1.0]))
    points = depth_points(depth_image(camera.render([box])), camera.camera_info())
    return sensed_obstacle("sensor:cam", points, pose, 0.02, 0.05, 3.0, spheres, 0.0, point_size=0.01,
                           shadow=shadow, width=camera.width)


def _distances(obstacle, points) -> np.ndarray:
    from ros_torch_kin.collision import Scene
    from ros_torch_kin.collision.signed_distance import sphere_obstacle_distances

    packed = Scene([obstacle]).packed("cpu", torch.float64)
    q = torch.as_tensor(np.asarray(points, dtype=np.float64))
    d, _ = sphere_obstacle_distances(q, torch.zeros(q.shape[0], dtype=torch.float64), packed)
    return d[:, 0].numpy()


def test_the_band_closes_the_unseen_part_of_a_box_seen_face_on():
    """Without a band, what the camera cannot see of the box (its inside and sides behind the
    front face) is free: a point 5 cm behind the face, or on a side face 2.5 cm behind it, is
    ~1.5 cm or more from the sensed world, and a straight motion into the box's side meets
    nothing. With a 5 cm band, the back face (5 cm behind the face) and the side walls (along the
    silhouette's rays) are occupied, the motion meets a wall, and space beyond the band stays
    free."""
    depth = 0.05
    plain, banded = _seen_box(0.0), _seen_box(depth)
    assert banded.grid.occupied_count > plain.grid.occupied_count
    behind = [[-0.3 + depth, 0.0, 0.5], [-0.3 + depth, 0.1, 0.45]]  # on the back face (rays along ~+x)
    # on the box's side faces 2.5 cm behind the front face: the rays through the silhouette
    # reach them (the camera, 2 m away, sees the box under ~±6°: a ray drifts ≤ 3 mm in 2.5 cm)
    sides = [[-0.275, 0.2, 0.5], [-0.275, -0.2, 0.52], [-0.275, 0.0, 0.6], [-0.275, 0.05, 0.4]]
    beyond = [[-0.3 + depth + 0.04, 0.0, 0.5], [0.1, 0.0, 0.5]]
    assert (_distances(plain, behind + sides) > 0.01).all()
    d = _distances(banded, behind + sides + beyond)
    assert (d[:6] <= 0.0).all(), d
    assert (d[6:] > 0.015).all(), d
    # a sphere of 1 cm moving straight into the box through its side face (y = 0.2), behind the front face
    path = np.stack([np.full(200, -0.27), np.linspace(0.35, 0.0, 200), np.full(200, 0.5)], axis=1)
    assert _distances(plain, path).min() - 0.01 > 0.0  # no contact seen: it would pass into the box
    assert _distances(banded, path).min() - 0.01 < 0.0  # it meets the band's wall


def test_the_self_filter_also_removes_the_band_near_the_robot():
    """The band is filtered by the same rule as the points: no kept cube's centre within a
    sphere's radius + the cube's half diagonal (padding 0 here) of a sphere behind the face, so
    the sphere is clear of everything kept."""
    spheres = (np.array([[-0.25, 0.0, 0.5]]), np.array([0.03]))
    obstacle = _seen_box(0.05, spheres)
    assert _distances(obstacle, [[-0.25, 0.0, 0.5]])[0] >= 0.03 - 1e-6
    d = _distances(_seen_box(0.05), [[-0.25, 0.0, 0.5]])
    assert d[0] <= 0.0  # without the sphere that place is on the band
