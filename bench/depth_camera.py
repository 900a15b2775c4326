"""A simulated depth camera: analytic ray casting of a pinhole camera against solid primitives
(boxes, cylinders, spheres), the depth image a perfect sensor would publish.

Units: metres. Frames: the camera's pose is the 4×4 transform of its OPTICAL frame (z forward,
x right, y down, as ROS's ``sensor_msgs/Image`` + ``CameraInfo`` and
:func:`ros_torch_kin.ros.point_cloud_input.depth_points` expect) to the root frame; a primitive's
pose is its frame to the root frame, shapes as :mod:`ros_torch_kin.collision.obstacles` defines
them (centred on the pose; box ``(x, y, z)`` full sides; cylinder ``(height, radius)`` along its
z axis; sphere ``(radius,)``).

Pixel (u, v) (column, row; the pixel's centre is at integer coordinates, as ``depth_points``
back-projects it) looks along d = ((u − cx)/fx, (v − cy)/fy, 1) in the optical frame. Its depth
is the smallest t > 0 at which camera + t·d meets a primitive's surface: with d's optical z
component 1, t is the depth z itself (rigid transforms keep t, so each primitive intersects the
rays in its own frame). Nearest hit wins; a ray that meets nothing is a hole (depth 0). No noise,
no maximum range (the consumer drops far points), no robot in the picture.

Per primitive (numpy, vectorised over the rays): boxes by the slab test, spheres by the
quadratic, cylinders by the quadratic on x, y (the side, kept where |z| ≤ height/2) and the two
cap planes (kept where x² + y² ≤ radius²).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """The 4×4 optical-frame pose (root frame) of a camera at ``eye`` looking at ``target``,
    the image's up (−y) as close to ``up`` as the view allows. ValueError when ``up`` is parallel
    to the view."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise ValueError(f"up {up} is parallel to the view direction {z}")
    x /= np.linalg.norm(x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, np.cross(z, x), z, eye
    return pose


@dataclass(frozen=True)
class DepthCamera:
    """A pinhole depth camera: ``pose`` its optical frame in the root frame (4×4), intrinsics in
    pixels (defaults: a 640×480 Kinect-like camera, fx = fy = 525)."""

    pose: np.ndarray = field(default_factory=lambda: np.eye(4))
    width: int = 640
    height: int = 480
    fx: float = 525.0
    fy: float = 525.0
    cx: float = 320.0
    cy: float = 240.0

    def directions(self) -> np.ndarray:
        """(H·W, 3) ray directions in the optical frame, row-major (v, u), z component 1."""
        u = (np.arange(self.width, dtype=np.float64) - self.cx) / self.fx
        v = (np.arange(self.height, dtype=np.float64) - self.cy) / self.fy
        uu, vv = np.meshgrid(u, v)
        return np.stack([uu.ravel(), vv.ravel(), np.ones(uu.size)], axis=1)

    def render(self, obstacles) -> np.ndarray:
        """(H, W) float32 depth (m along the optical z; 0: a hole) of ``obstacles`` (anything
        with ``kind``, ``dimensions``, ``pose`` as :class:`~ros_torch_kin.collision.Obstacle`).
        ValueError naming a kind it cannot intersect."""
        rays = self.directions() @ self.pose[:3, :3].T  # root frame
        origin = self.pose[:3, 3]
        depth = np.full(rays.shape[0], np.inf)
        for o in obstacles:
            R, t = o.pose[:3, :3], o.pose[:3, 3]
            start, d = R.T @ (origin - t), rays @ R  # into the primitive's frame
            if o.kind == "box":
                hit = _box(start, d, 0.5 * np.asarray(o.dimensions))
            elif o.kind == "sphere":
                hit = _sphere(start, d, o.dimensions[0])
            elif o.kind == "cylinder":
                hit = _cylinder(start, d, 0.5 * o.dimensions[0], o.dimensions[1])
            else:
                raise ValueError(f"obstacle '{getattr(o, 'id', '?')}': a {o.kind} cannot be ray cast "
                                 "(box, cylinder, sphere)")
            np.minimum(depth, hit, out=depth)
        depth[~np.isfinite(depth)] = 0.0
        return depth.reshape(self.height, self.width).astype(np.float32)

    def camera_info(self, frame_id: str = "camera"):
        """The sensor_msgs/CameraInfo of this camera (plumb_bob, no distortion)."""
        from sensor_msgs.msg import CameraInfo

        info = CameraInfo()
        info.header.frame_id = frame_id
        info.width, info.height = self.width, self.height
        info.distortion_model = "plumb_bob"
        info.d = [0.0] * 5
        info.k = [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [self.fx, 0.0, self.cx, 0.0, 0.0, self.fy, self.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        return info


def depth_image(depth: np.ndarray, frame_id: str = "camera"):
    """(H, W) depth in m -> sensor_msgs/Image, 32FC1, little-endian, no row padding."""
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header.frame_id = frame_id
    msg.height, msg.width = depth.shape
    msg.encoding = "32FC1"
    msg.is_bigendian = 0
    msg.step = 4 * depth.shape[1]
    msg.data = np.ascontiguousarray(depth, dtype="<f4").tobytes()
    return msg


def _ahead(t: np.ndarray) -> np.ndarray:
    """t where it is ahead of the camera (t > 0), else inf."""
    return np.where(t > 0.0, t, np.inf)


def _box(start: np.ndarray, d: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Slab test: the first crossing of the box [−half, half] ahead of the camera (inf: none)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-half - start) / d, (half - start) / d
    near, far = np.minimum(t1, t2).max(1), np.maximum(t1, t2).min(1)
    hit = near <= far
    return np.where(hit, np.where(near > 0.0, near, _ahead(far)), np.inf)  # inside: the exit face


def _roots(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two roots of a·t² + b·t + c (a > 0), smaller first; NaN where there is none."""
    disc = b * b - 4.0 * a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        root = np.sqrt(np.where(disc >= 0.0, disc, np.nan))
        return (-b - root) / (2.0 * a), (-b + root) / (2.0 * a)


def _sphere(start: np.ndarray, d: np.ndarray, radius: float) -> np.ndarray:
    a = np.einsum("ij,ij->i", d, d)
    near, far = _roots(a, 2.0 * d @ start, np.full(len(d), start @ start - radius * radius))
    return np.fmin(_ahead(near), _ahead(far))


def _cylinder(start: np.ndarray, d: np.ndarray, half: float, radius: float) -> np.ndarray:
    best = np.full(len(d), np.inf)
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        for t in _roots(a, 2.0 * (start[0] * d[:, 0] + start[1] * d[:, 1]),
                        np.full(len(d), start[0] ** 2 + start[1] ** 2 - radius * radius)):
            side = np.abs(start[2] + t * d[:, 2]) <= half  # NaN (no root, or a ray along z): False
            best = np.fmin(best, np.where(side, _ahead(t), np.inf))
        for z in (-half, half):
            t = (z - start[2]) / d[:, 2]
            x, y = start[0] + t * d[:, 0], start[1] + t * d[:, 1]
            best = np.fmin(best, np.where(x * x + y * y <= radius * radius, _ahead(t), np.inf))
    return best
