"""Depth image + CameraInfo -> points (ros_torch_kin.ros.point_cloud_input.depth_points) against
a pinhole projection derived by hand: pixel (u, v) at depth z is ((u − cx)·z/fx, (v − cy)·z/fy, z)
in the optical frame; zero and NaN depths (holes) come out as NaN rows, which the insertion skips."""

from __future__ import annotations

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
