"""Depth cameras into the world: sensor_msgs/PointCloud2 and sensor_msgs/Image (+ CameraInfo)
topics become ``voxels`` obstacles (see :mod:`..collision.occupancy`), one per topic, id
``sensor:<topic>``.

Per message (in the worker pool, then one assignment of ``node.world`` on the executor thread, so
requests in flight keep the world they started with):

1. ``header.frame_id`` must be a link of the served robot (a camera mounted in the URDF, on the
   robot or in the workcell). Its pose is the chain's FK at the joint state nearest the message's
   stamp (a history of the last ``HISTORY`` complete joint states is kept; the root link needs
   none). Any other frame is refused, once per topic and frame in the log, naming it.
2. Points: NaN / zero depth (holes) skipped, then those closer than ``sensor_min_range`` or
   farther than ``sensor_max_range`` from the sensor dropped; more than ``sensor_max_points``
   refuses the message (logged).
3. Quantised to cubes of ``sensor_point_size`` (the voxel size ``sensor_voxel_size`` divided by
   a whole number; the grid is aligned to the root frame), each cube once, as a ball of radius
   √3/2·side + ``sensor_point_radius`` around its centre (exact distances near the balls,
   :mod:`..collision.point_hash`); the far field is a multi-resolution grid (:mod:`..collision.occupancy`: built in time
   proportional to the occupied voxels, not to the box they span) and, with ``sensor_lattice``, an
   exact lattice of distances to the balls out to 0.1 m, stamped exactly around the kept cubes
   (:func:`..collision.point_hash.build_lattice`: no KD-tree); with the lattice the grid's
   finest level is not built (the exact points and the lattice hold more).
4. Self filter: cubes (with every point they hold) whose centre is within a sphere of the robot
   (at that joint state) plus ``self_filter_padding`` plus the cube's half diagonal are removed,
   as MoveIt's self filter does, so a wrist camera that sees the gripper does not block every
   plan. The spheres are the tight model's leaves where the node has one (a few mm from the
   meshes, :func:`filter_model`): the coarse spheres stand tens of mm proud of the meshes, and
   whole 2 cm voxels another ~3 cm, so an obstacle that near the robot went with it (an MBM cage
   bar both cameras saw beside the start configuration's link 5: the plan went through it).
   Objects the robot carries (``~/update_scene`` ATTACH, the ones attached when the message
   arrives) are filtered by the same rule: their covering spheres (tight with a tight model),
   moved with their link by the same FK at that joint state (:func:`self_filter_spheres`), so a
   camera that sees the carried box does not insert it as an obstacle touching the gripper.
5. With ``sensor_shadow_depth`` T > 0, a depth image or organised cloud (rows: ``height`` > 1)
   also gets the band T deep behind what it sees (:mod:`..collision.depth_shadow`: the back face
   and the side walls at depth edges, built from the cubes the self filter kept and filtered by
   the same rule), since a camera sees no object's thickness.
6. The topic's obstacle is replaced by the new view. A topic that sends nothing for
   ``sensor_decay_time`` seconds loses its obstacle (a camera that stops never leaves a stale
   world forever).
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
import time
from collections import deque

import numpy as np
import torch
from sensor_msgs.msg import CameraInfo, Image, JointState, PointCloud2

from ..collision import Obstacle
from ..collision.depth_shadow import edge_pixels, shadow_cubes
from ..collision.occupancy import flat_index
from ..collision.sphere_centers import world_sphere_centers
from ..kinematics import world_transforms
from .joint_states import JointStateTracker

#: Largest voxel box (cells) deduplicated by marking a boolean array rather than by sorting.
UNIQUE_BY_MARKING = 32_000_000
#: Complete joint states kept for stamping clouds.
HISTORY = 200
#: Seconds between two marker publications caused by sensor updates.
MARKER_PERIOD = 0.5
_FLOAT_TYPES = {7: np.float32, 8: np.float64}  # PointField FLOAT32, FLOAT64


def cloud_points(msg: PointCloud2) -> np.ndarray:
    """PointCloud2 -> (N, 3) float64 x, y, z (m, in header.frame_id). ValueError naming the field."""
    fields = {f.name: f for f in msg.fields}
    missing = [n for n in "xyz" if n not in fields]
    if missing:
        raise ValueError(f"fields has no {', '.join(missing)} (has {', '.join(fields) or 'none'})")
    if msg.is_bigendian:
        raise ValueError("is_bigendian: big-endian clouds are not supported")
    kinds = {n: _FLOAT_TYPES.get(fields[n].datatype) for n in "xyz"}
    if any(k is None for k in kinds.values()):
        raise ValueError("fields x, y, z must be FLOAT32 or FLOAT64")
    count = msg.width * msg.height
    if msg.point_step <= 0 or len(msg.data) < count * msg.point_step or msg.row_step < msg.width * msg.point_step:
        raise ValueError(f"data has {len(msg.data)} bytes, too few for {msg.width}×{msg.height} points of "
                         f"{msg.point_step} bytes")
    raw = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, (bytes, memoryview, np.ndarray)) else msg.data,
                        dtype=np.uint8)
    rows = raw[: msg.height * msg.row_step].reshape(msg.height, msg.row_step)[:, : msg.width * msg.point_step]
    points = rows.reshape(count, msg.point_step)
    return np.stack([points[:, fields[n].offset: fields[n].offset + np.dtype(kinds[n]).itemsize].copy()
                     .view(kinds[n])[:, 0] for n in "xyz"], axis=1).astype(np.float64)


def depth_points(image: Image, info: CameraInfo) -> np.ndarray:
    """A depth image (16UC1 mm or 32FC1 m) and its CameraInfo -> (N, 3) points in the optical
    frame (z forward), zero and NaN depths as NaN rows. ValueError naming the field."""
    if image.encoding in ("16UC1", "mono16"):
        depth = np.frombuffer(image.data, dtype="<u2" if not image.is_bigendian else ">u2")
        scale = 0.001
    elif image.encoding == "32FC1":
        depth = np.frombuffer(image.data, dtype="<f4" if not image.is_bigendian else ">f4")
        scale = 1.0
    else:
        raise ValueError(f"encoding '{image.encoding}' is not a depth encoding (16UC1 or 32FC1)")
    itemsize = depth.dtype.itemsize
    if image.step < image.width * itemsize or len(image.data) < image.height * image.step:
        raise ValueError(f"data has {len(image.data)} bytes, too few for {image.width}×{image.height}")
    depth = depth[: image.height * image.step // itemsize].reshape(image.height, image.step // itemsize)[:, : image.width]
    fx, fy, cx, cy = info.k[0], info.k[4], info.k[2], info.k[5]
    if not (fx > 0 and fy > 0):
        raise ValueError(f"camera_info.k has no focal length (fx {fx}, fy {fy})")
    z = depth.astype(np.float32) * np.float32(scale)
    z[~(z > 0)] = np.nan
    u = (np.arange(image.width, dtype=np.float32) - np.float32(cx)) / np.float32(fx)
    v = (np.arange(image.height, dtype=np.float32) - np.float32(cy)) / np.float32(fy)
    return np.stack([z * u[None, :], z * v[:, None], z], axis=-1).reshape(-1, 3).astype(np.float64)


def sensed_obstacle(id: str, points: np.ndarray, sensor_pose: np.ndarray, voxel_size: float, min_range: float,
                    max_range: float, spheres: tuple[np.ndarray, np.ndarray] | None, padding: float,
                    point_radius: float = 0.0, lattice: float | None = None,
                    point_size: float | None = None, shadow: float = 0.0, width: int | None = None) -> Obstacle | None:
    """Points in the sensor frame -> the world obstacle (root frame), or None when nothing is
    left. ``spheres``: the self filter's sphere centres (S, 3) and radii (S,) at the message's
    joint state (root frame): the robot's collision spheres and its carried objects' covers
    (:func:`self_filter_spheres`). Steps 2-5 of the module doc. The obstacle's points are the
    occupied cubes of side ``point_size`` (m; None: ``voxel_size``; else ``voxel_size`` divided
    by the least whole number that brings it to ``point_size`` or below), each a ball of
    √3/2·side + ``point_radius`` around its centre (it covers every sensed point of its cube),
    exact near them (:mod:`..collision.point_hash`); the self filter removes cubes (:func:`_self_filtered`);
    ``lattice`` (m, optional): the exact far-field lattice of that spacing
    (:func:`..collision.point_hash.lattice_bound`), which keeps distances of a few voxels close to
    the true ones where the voxel field alone is loose by several centimetres. ``shadow`` (m) and
    ``width``: an organised view (``points`` row by row, ``width`` a row, the sensor at the
    frame's origin) gets the band of that depth behind what it sees
    (:mod:`..collision.depth_shadow`), built from the cubes the self filter kept and filtered
    by the same rule; an unorganised one (``width`` None) gets none."""
    points = np.ascontiguousarray(points, dtype=np.float64)
    squared = np.square(points) @ np.ones(3)  # NaN / inf for a hole: every comparison below is False
    kept = (squared >= min_range * min_range) & (squared <= max_range * max_range)
    keep = np.flatnonzero(kept)
    if not keep.size:
        return None
    split = 1 if point_size is None else max(1, math.ceil(voxel_size / point_size - 1e-9))
    side = voxel_size / split
    R, t = sensor_pose[:3, :3], sensor_pose[:3, 3]
    # root-frame cube indices, one row per axis: one (3, 3) @ (3, N) product over every point
    # (holes give NaN columns), then the kept columns (np.take on the rows): several times faster
    # than fancy indexing and per-axis arithmetic on a camera's ~250,000 points, and the rows
    # reduce fast (an (N, 3) array's min(0) is ~10x its columns')
    cubes = (R / side) @ points.T
    if keep.size < points.shape[0]:
        cubes = np.take(cubes, keep, axis=1)
    cubes += (t / side)[:, None]
    np.floor(cubes, out=cubes)  # (3, N) whole numbers, as floats
    keys = _self_filtered(_distinct_cells(cubes), side, spheres, padding)
    if not keys.shape[0]:
        return None
    if shadow > 0 and width:
        if points.shape[0] % width:
            raise ValueError(f"width: {points.shape[0]} points are not whole rows of {width}")
        ranges = np.where(kept, np.sqrt(np.where(kept, squared, 0.0)), np.inf).reshape(-1, width)
        edges = edge_pixels(ranges, side).reshape(-1)[keep]
        walls = (_self_filtered(_distinct_cells(cubes[:, edges]), side, spheres, padding)
                 if edges.any() else keys[:0])
        band = _self_filtered(shadow_cubes(keys, walls, side, t, shadow), side, spheres, padding)
        keys = _distinct_cells(np.concatenate([keys, band]).T)
    centers = (keys + 0.5) * side
    return Obstacle.points(id, centers, voxel_size, radius=0.5 * math.sqrt(3) * side + point_radius,
                           multires=True, lattice=lattice or None)


#: Nearest sphere centres a cube asks first in the self filter: on the robot's own surface one
#: of them nearly always reaches it, so only cubes beside the robot ask further.
FILTER_NEAREST = 8


def _self_filtered(keys: np.ndarray, side: float, spheres, padding: float) -> np.ndarray:
    """Cubes (M, 3) of side ``side`` (m) -> those whose centre is farther than a sphere's radius
    + ``padding`` + the cube's half diagonal from every sphere centre (``spheres``: centres (S, 3),
    radii (S,), or None): a cube any of whose points may lie within ``padding`` of a sphere goes.

    Exact, and cheap for a tight model's thousands of overlapping spheres: only the cubes in the
    box around every sphere's reach are looked at (most of a scene is not); each asks the k-d
    tree of the sphere centres for its FILTER_NEAREST nearest (a cube on the robot is decided
    there); a cube that none of them reaches and that is near enough for a larger sphere to (the
    radii halve from class to class) asks each class of radii for the centres within that class's
    largest reach."""
    if spheres is None or not spheres[0].shape[0] or not keys.shape[0]:
        return keys
    from scipy.spatial import cKDTree  # here, not at import: the node imports this module at start

    centres, radii = spheres
    extra = padding + 0.5 * math.sqrt(3) * side
    reach = radii + extra
    centers = (keys + 0.5) * side
    box_low, box_high = (centres - reach[:, None]).min(0), (centres + reach[:, None]).max(0)
    inside = np.ones(centers.shape[0], dtype=bool)
    for a in range(3):  # per column: numpy is slow on a short last axis
        inside &= (centers[:, a] >= box_low[a]) & (centers[:, a] <= box_high[a])
    near = np.flatnonzero(inside)
    if not near.size:
        return keys
    free = np.ones(centers.shape[0], dtype=bool)
    points = centers[near]
    k = min(FILTER_NEAREST, centres.shape[0])
    farthest = radii.max() + extra  # no sphere reaches a cube whose centres are all farther
    distance, index = cKDTree(centres).query(points, k=k, distance_upper_bound=farthest)
    distance, index = distance.reshape(len(points), k), index.reshape(len(points), k)
    reached = (distance <= np.append(reach, -1.0)[index]).any(1)  # index S: none within ``farthest``
    # the spheres beyond the k nearest are at least as far as the k-th (when it is within
    # ``farthest``; else every centre that near was among them): only a larger radius reaches
    open_ = np.flatnonzero(~reached & np.isfinite(distance[:, -1]))
    if open_.size:
        classes = np.floor(np.log2(np.maximum(radii, 1e-4) / 1e-4)).astype(np.int64)
        for c in np.unique(classes):
            members = np.flatnonzero(classes == c)
            found = cKDTree(centres[members]).query_ball_point(points[open_], radii[members].max() + extra,
                                                               return_sorted=False)
            count = np.fromiter((len(f) for f in found), dtype=np.int64, count=len(found))
            if not count.sum():
                continue
            sphere = members[np.fromiter(itertools.chain.from_iterable(found), dtype=np.int64, count=int(count.sum()))]
            cube = np.repeat(open_, count)
            gap = np.linalg.norm(points[cube] - centres[sphere], axis=1) - reach[sphere]
            reached[cube[gap <= 0]] = True
    free[near[reached]] = False
    return keys[free]


def _distinct_flat(flat: np.ndarray, size: float) -> np.ndarray:
    """The distinct values of int64 flat indices into a box of ``size`` cells, sorted: each
    marked once in a boolean array where the box is at most UNIQUE_BY_MARKING (no sort: ~3-10×
    np.unique), else np.unique."""
    if size > UNIQUE_BY_MARKING:
        return np.unique(flat)
    marks = np.zeros(int(size), dtype=bool)
    marks[flat] = True
    return np.flatnonzero(marks)


def _distinct_cells(cells: np.ndarray) -> np.ndarray:
    """Whole-number cell coordinates, one row per axis (3, N) (int, or floats holding whole
    numbers) -> the distinct cells (M, 3) int64, in flat order. The rows reduce and combine fast
    (an (N, 3) array's min(0) is ~10× its columns'); each cell is marked once where the cells'
    box is at most UNIQUE_BY_MARKING (~10× np.unique), its flat index one (3,) @ (3, N) product
    (exact: below 2⁵³); a larger box goes through np.unique on int64 flat indices."""
    low, high = cells.min(1), cells.max(1)
    span = (high - low + 1).astype(np.int64)
    size = np.prod(span.astype(np.float64))
    if size > UNIQUE_BY_MARKING:
        flat = flat_index([cells[a].astype(np.int64) for a in range(3)], low.astype(np.int64), span)
    else:
        strides = np.array([span[1] * span[2], span[2], 1], dtype=np.float64)
        flat = (strides @ cells - low @ strides).astype(np.int64)
    packed = _distinct_flat(flat, size)
    return np.stack(np.unravel_index(packed, tuple(span)), axis=1) + low.astype(np.int64)


def self_filter_spheres(chain, world: torch.Tensor, robot=None, attached=(), tight: bool = False
                        ) -> tuple[np.ndarray, np.ndarray] | None:
    """The spheres the self filter removes cubes near, root frame, at the link poses ``world``
    ((L, 4, 4, 1) from ``world_transforms`` at the message's joint state, float64 on the CPU):
    the robot's collision spheres ``robot`` (RobotSpheres; None: none; the node gives its tight
    model's leaves, a few mm from the meshes, where it has one) followed by each carried object's
    cover (``attached``: AttachedObject, its :attr:`~..collision.AttachedObject.tight_cover` with
    ``tight``, else its coarse cover, in its link's frame) moved with its link. -> (centres (S, 3),
    radii (S,)) float64, or None when there is no sphere. Objects on a link ``chain`` lacks (a
    model swapped meanwhile) are skipped."""
    centers, radii = [], []
    if robot is not None:
        cover = robot.to("cpu", torch.float64)
        centers.append(world_sphere_centers(world, cover)[:, :, 0].numpy())
        radii.append(cover.radii.numpy())
    for obj in attached:
        if not chain.has_link(obj.link):
            continue
        T = world[chain.link_index(obj.link), :, :, 0].numpy()
        cover = obj.tight_cover if tight else obj.coarse_cover
        centers.append(np.asarray(cover.centers, dtype=np.float64).reshape(-1, 3) @ T[:3, :3].T + T[:3, 3])
        radii.append(np.asarray(cover.radii, dtype=np.float64).reshape(-1))
    if not centers:
        return None
    return np.concatenate(centers), np.concatenate(radii)


def filter_model(model) -> tuple[object | None, bool]:
    """The robot spheres the self filter uses for a served model, and whether they are tight: the
    tight model's leaves (a few mm from the meshes) where the model has one, else its coarse
    spheres (tens of mm proud of the meshes: obstacles that near the robot are lost with it),
    else None (no collision model: nothing filtered)."""
    if model.verdict is not None:
        return model.verdict.robot_spheres, True
    return (None if model.collision is None else model.collision.spheres), False


class JointStateHistory:
    """The last HISTORY complete joint states of one chain with their stamps (s)."""

    def __init__(self, chain):
        self.chain = chain
        self._tracker = JointStateTracker(chain)
        self._stamps: deque[float] = deque(maxlen=HISTORY)
        self._states: deque[np.ndarray] = deque(maxlen=HISTORY)
        self._lock = threading.Lock()

    def update(self, msg: JointState) -> None:
        self._tracker.update(msg.name, msg.position)
        if self._tracker.complete:
            with self._lock:
                self._stamps.append(_seconds(msg.header.stamp))
                self._states.append(self._tracker.positions.copy())

    def nearest(self, stamp: float) -> np.ndarray | None:
        """The complete joint state whose stamp is nearest ``stamp`` (s), or None."""
        with self._lock:
            if not self._stamps:
                return None
            stamps = list(self._stamps)
            i = bisect.bisect_left(stamps, stamp)
            best = min((k for k in (i - 1, i) if 0 <= k < len(stamps)), key=lambda k: abs(stamps[k] - stamp))
            return self._states[best]


def _bound(handler, topic: str):
    """An ``async`` subscription callback calling ``handler(topic, msg)`` (rclpy awaits a
    callback only when it is itself a coroutine function)."""
    async def callback(msg):
        await handler(topic, msg)

    return callback


def _seconds(stamp) -> float:
    return stamp.sec + 1e-9 * stamp.nanosec


class PointCloudInput:
    """Subscribes the configured sensor topics of ``node`` (a KinematicsNode: ``model``,
    ``world``, ``run_in_worker``, ``concurrent``) and keeps their obstacles in ``node.world``."""

    def __init__(self, node, values: dict):
        """``values``: the camera parameters ({name: value}, declared and checked in
        :mod:`.parameters`)."""
        self.node = node
        self.values = values
        self._history: JointStateHistory | None = None
        self._busy: set[str] = set()
        self._last_seen: dict[str, float] = {}
        self._refused: set[tuple[str, str]] = set()
        self._camera_info: dict[str, CameraInfo] = {}
        self._last_markers = 0.0
        clouds = [t.strip() for t in values["point_cloud_topics"].split(",") if t.strip()]
        depths = [t.strip() for t in values["depth_image_topics"].split(",") if t.strip()]
        self.topics = clouds + depths
        if not self.topics:
            return
        group = node.concurrent
        node.create_subscription(JointState, "joint_states", self._on_joint_state, 50)
        for topic in clouds:
            node.create_subscription(PointCloud2, topic, _bound(self._on_cloud, topic), 2,
                                     callback_group=group)
        for topic in depths:
            info = topic.rsplit("/", 1)[0] + "/camera_info" if "/" in topic else "camera_info"
            node.create_subscription(CameraInfo, info, lambda msg, t=topic: self._camera_info.__setitem__(t, msg), 2)
            node.create_subscription(Image, topic, _bound(self._on_depth, topic), 2, callback_group=group)
        node.create_timer(0.25, self._decay)
        node.get_logger().info(f"sensor topics: {', '.join(self.topics)} (voxel {values['sensor_voxel_size']} m, "
                               f"range {values['sensor_min_range']}-{values['sensor_max_range']} m, decay "
                               f"{values['sensor_decay_time']} s)")

    # ------------------------------------------------------------------ inputs
    def _on_joint_state(self, msg: JointState) -> None:
        model = self.node.model
        if model is None:
            return
        if self._history is None or self._history.chain is not model.chain:
            self._history = JointStateHistory(model.chain)
        try:
            self._history.update(msg)
        except ValueError:
            pass  # the link pose pipeline logs bad joint states

    async def _on_cloud(self, topic: str, msg: PointCloud2) -> None:
        organised = msg.width if msg.height > 1 else None  # rows of a depth camera's cloud: a shadow can be built
        await self._insert(topic, msg.header, lambda: cloud_points(msg), msg.width * msg.height, organised)

    async def _on_depth(self, topic: str, msg: Image) -> None:
        info = self._camera_info.get(topic)
        if info is None:
            self._refuse_once(topic, "camera_info", f"{topic}: no camera_info received yet; the image is dropped")
            return
        await self._insert(topic, msg.header, lambda: depth_points(msg, info), msg.width * msg.height, msg.width)

    def _refuse_once(self, topic: str, key: str, text: str) -> None:
        if (topic, key) not in self._refused:
            self._refused.add((topic, key))
            self.node.get_logger().warning(text)

    async def _insert(self, topic: str, header, read, count: int, width: int | None) -> None:
        node, values = self.node, self.values
        model = node.model
        if model is None:
            return  # no robot yet
        chain = model.chain
        frame = header.frame_id
        if not chain.has_link(frame):
            self._refuse_once(topic, f"frame {frame}", f"{topic}: header.frame_id '{frame}' is not a link of robot "
                              f"'{chain.name}'; its messages are refused (mount the camera in the URDF)")
            return
        if topic in self._busy:
            return  # the previous message of this topic is still being inserted: this one is dropped
        if count > values["sensor_max_points"]:
            node.get_logger().warning(f"{topic}: {count} points, above sensor_max_points "
                                      f"({values['sensor_max_points']}); the message is refused",
                                      throttle_duration_sec=5.0)
            return
        attached = node.world.attached  # the objects carried when the message arrives
        positions = None
        if frame != chain.root_link or model.collision is not None or attached:
            history = self._history
            positions = None if history is None or history.chain is not chain else history.nearest(_seconds(header.stamp))
            if positions is None:
                self._refuse_once(topic, "joint_states", f"{topic}: no complete joint_states yet to place "
                                  f"'{frame}' and filter the robot out; messages wait for one")
                return
        self._busy.add(topic)
        try:
            obstacle = await node.run_in_worker(self._build, topic, model, frame, positions, read, attached, width)
        except ValueError as error:
            node.get_logger().warning(f"{topic}: message refused: {error}", throttle_duration_sec=5.0)
            return
        finally:
            self._busy.discard(topic)
        self._last_seen[topic] = time.monotonic()
        self._swap(topic, obstacle)

    def _build(self, topic: str, model, frame: str, positions, read, attached=(), width=None):
        values = self.values
        points = read()
        chain = model.chain.to("cpu", torch.float64)
        pose, spheres = np.eye(4), None
        if positions is not None:
            q = torch.as_tensor(positions, dtype=torch.float64).reshape(1, -1)
            with torch.no_grad():
                world = world_transforms(chain, q)  # (L, 4, 4, 1)
                pose = world[chain.link_index(frame), :, :, 0].numpy()
                robot, tight = filter_model(model)
                spheres = self_filter_spheres(chain, world, robot, attached, tight)
        return sensed_obstacle(f"sensor:{topic}", points, pose, values["sensor_voxel_size"], values["sensor_min_range"],
                               values["sensor_max_range"], spheres, values["self_filter_padding"],
                               values["sensor_point_radius"], values["sensor_lattice"],
                               values["sensor_point_size"] or None, values["sensor_shadow_depth"], width)

    # ------------------------------------------------------------------ the world
    def _swap(self, topic: str, obstacle: Obstacle | None) -> None:
        """Replace (or remove) the topic's obstacle: one assignment of node.world (executor thread)."""
        node = self.node
        scene = node.world.scene
        id = f"sensor:{topic}"
        if obstacle is not None:
            scene = scene.with_obstacle(obstacle)
        elif id in scene:
            scene = scene.without(id)
        else:
            return
        node.world = node.world.with_scene(scene)
        now = time.monotonic()
        if now - self._last_markers > MARKER_PERIOD or obstacle is None:
            self._last_markers = now
            server = getattr(node, "_scene", None)
            if server is not None:
                server.publish_markers()

    def _decay(self) -> None:
        now = time.monotonic()
        for topic, seen in list(self._last_seen.items()):
            if now - seen > self.values["sensor_decay_time"]:
                del self._last_seen[topic]
                if f"sensor:{topic}" in self.node.world.scene:
                    self.node.get_logger().info(f"{topic}: no message for {self.values['sensor_decay_time']} s; "
                                                "its points are removed")
                    self._swap(topic, None)
