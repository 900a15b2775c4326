"""World obstacles (sphere, box, cylinder, capsule, voxels) and the immutable :class:`Scene` that holds them.

Shapes follow shape_msgs/SolidPrimitive: each is centred on its pose, cylinder and capsule along
the pose's z axis; ``dimensions`` are, in m, sphere ``(radius,)``, box ``(x, y, z)`` full side
lengths, cylinder and capsule ``(height, radius)`` where ``height`` is the length of the
cylindrical part (a capsule adds a hemisphere of ``radius`` at each end). Poses are 4×4
transforms from the obstacle's frame to the root (world) frame of the robot's chain.

A ``voxels`` obstacle holds sensed or CAD geometry, a :class:`~.occupancy.VoxelGrid` (points,
a depth image or a sampled mesh as occupied voxels with a conservative distance field) in the
obstacle's frame: :meth:`Obstacle.points`, :meth:`Obstacle.mesh`, :meth:`Obstacle.mesh_file`.

A :class:`Scene` never changes: ``with_obstacle``, ``moved`` and ``without`` return new scenes, so
a node swaps scenes atomically by assignment. Each scene packs its obstacles into tensors once
per (device, dtype) (:meth:`Scene.packed`), grouped by kind.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from .occupancy import VoxelGrid

SPHERE, BOX, CYLINDER, CAPSULE, VOXELS = "sphere", "box", "cylinder", "capsule", "voxels"
#: The solid primitives (shape_msgs/SolidPrimitive).
PRIMITIVE_KINDS = (SPHERE, BOX, CYLINDER, CAPSULE)
#: Every obstacle kind, in the order a packed scene concatenates them.
KINDS = PRIMITIVE_KINDS + (VOXELS,)
#: Names of each kind's dimensions, in SolidPrimitive order.
DIMENSION_NAMES = {
    SPHERE: ("radius",),
    BOX: ("size x", "size y", "size z"),
    CYLINDER: ("height", "radius"),
    CAPSULE: ("height", "radius"),
    VOXELS: (),
}
#: Largest |RᵀR − I| entry and |det R − 1| accepted for a pose's rotation.
ORTHONORMAL_TOLERANCE = 1e-6


def pose_from_xyz_quat_xyzw(pose: Sequence[float], id: str = "") -> np.ndarray:
    """(x, y, z, qx, qy, qz, qw) -> 4×4 float64 transform (m). The quaternion is normalised after
    dividing by its largest absolute component, so neither tiny nor huge components overflow.
    ValueError naming ``id`` and the field for a wrong length, a non-finite value or a zero
    quaternion."""
    values = np.asarray(pose, dtype=np.float64).reshape(-1)
    if values.shape != (7,):
        raise ValueError(f"obstacle '{id}': pose must be (x, y, z, qx, qy, qz, qw), got {values.size} values")
    if not np.isfinite(values).all():
        raise ValueError(f"obstacle '{id}': pose has a non-finite value: {values.tolist()}")
    quat = values[3:]
    largest = np.abs(quat).max()
    if largest == 0.0:
        raise ValueError(f"obstacle '{id}': pose orientation is a zero quaternion")
    quat = quat / largest
    x, y, z, w = quat / np.linalg.norm(quat)
    T = np.eye(4)
    T[:3, :3] = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    T[:3, 3] = values[:3]
    return T


def checked_pose(pose, id: str) -> np.ndarray:
    """A 4×4 transform or a 7-vector (x, y, z, qx, qy, qz, qw) -> read-only 4×4 float64 array.
    ValueError naming ``id`` and 'pose' if it is not finite or its rotation is not orthonormal
    (right-handed) within :data:`ORTHONORMAL_TOLERANCE`, or the bottom row is not (0, 0, 0, 1)."""
    if isinstance(pose, Tensor):
        pose = pose.detach().cpu().numpy()
    values = np.asarray(pose, dtype=np.float64)
    if values.size == 7:
        values = pose_from_xyz_quat_xyzw(values, id)
    if values.shape != (4, 4):
        raise ValueError(f"obstacle '{id}': pose must be a 4×4 transform or 7 values, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"obstacle '{id}': pose has a non-finite entry")
    R = values[:3, :3]
    error = max(np.abs(R.T @ R - np.eye(3)).max(), abs(np.linalg.det(R) - 1.0))
    if error > ORTHONORMAL_TOLERANCE:
        raise ValueError(f"obstacle '{id}': pose rotation is not orthonormal (error {error:.2e})")
    if np.abs(values[3] - (0.0, 0.0, 0.0, 1.0)).max() > ORTHONORMAL_TOLERANCE:
        raise ValueError(f"obstacle '{id}': pose bottom row must be (0, 0, 0, 1), got {values[3].tolist()}")
    values = values.copy()
    values[3] = (0.0, 0.0, 0.0, 1.0)
    values.setflags(write=False)
    return values


@dataclass(frozen=True, eq=False)
class Obstacle:
    """One world obstacle: ``kind`` (one of :data:`KINDS`), ``dimensions`` (m, SolidPrimitive
    order, see the module docstring) and ``pose`` (4×4, obstacle frame -> world; a 7-vector
    (x, y, z, qx, qy, qz, qw) is accepted); ``grid``: a ``voxels`` obstacle's
    :class:`~.occupancy.VoxelGrid` (its frame is the obstacle's; no dimensions), None for the
    primitives. Validated on construction: ValueError naming the id and the field at fault."""

    id: str
    kind: str
    dimensions: tuple[float, ...]
    pose: np.ndarray = field(default_factory=lambda: np.eye(4))
    grid: "VoxelGrid | None" = None

    def __post_init__(self):
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"obstacle id must be a non-empty string, got {self.id!r}")
        if self.kind not in KINDS:
            raise ValueError(f"obstacle '{self.id}': unknown kind '{self.kind}' (expected one of {', '.join(KINDS)})")
        names = DIMENSION_NAMES[self.kind]
        dimensions = tuple(float(d) for d in np.asarray(self.dimensions, dtype=np.float64).reshape(-1))
        if len(dimensions) != len(names):
            raise ValueError(
                f"obstacle '{self.id}': a {self.kind} has dimensions ({', '.join(names)}), got {len(dimensions)} values"
            )
        for name, value in zip(names, dimensions):
            if not np.isfinite(value):
                raise ValueError(f"obstacle '{self.id}': {name} is not finite ({value})")
            if self.kind == BOX and value <= 0.0:
                raise ValueError(f"obstacle '{self.id}': box {name} must be positive, got {value}")
            if value < 0.0:
                raise ValueError(f"obstacle '{self.id}': {self.kind} {name} must not be negative, got {value}")
        object.__setattr__(self, "dimensions", dimensions)
        object.__setattr__(self, "pose", checked_pose(self.pose, self.id))
        if (self.kind == VOXELS) != (self.grid is not None):
            raise ValueError(f"obstacle '{self.id}': a grid is what a voxels obstacle holds, and only it")

    @classmethod
    def sphere(cls, id: str, radius: float, pose=None) -> "Obstacle":
        return cls(id, SPHERE, (radius,), np.eye(4) if pose is None else pose)

    @classmethod
    def box(cls, id: str, size: Sequence[float], pose=None) -> "Obstacle":
        """``size`` (x, y, z): full side lengths (m)."""
        return cls(id, BOX, tuple(size), np.eye(4) if pose is None else pose)

    @classmethod
    def cylinder(cls, id: str, height: float, radius: float, pose=None) -> "Obstacle":
        return cls(id, CYLINDER, (height, radius), np.eye(4) if pose is None else pose)

    @classmethod
    def capsule(cls, id: str, height: float, radius: float, pose=None) -> "Obstacle":
        """``height``: length of the cylindrical part between the two hemispheres (m)."""
        return cls(id, CAPSULE, (height, radius), np.eye(4) if pose is None else pose)

    @classmethod
    def points(cls, id: str, points, voxel_size: float, radius: float = 0.0, pose=None, exact: bool = True,
               **options) -> "Obstacle":
        """Points (N, 3) (m, in the frame ``pose`` places; default the root frame): the world is
        the union of balls of ``radius`` (m) around them (the point radius; half the sampling
        spacing covers a surface between its samples). NaN rows are skipped. Distances: a voxel
        field of ``voxel_size`` (m) far from the points (a lower bound), and with ``exact`` (the
        default) the exact distance to the balls within ``point_cell`` − radius of the points
        (:mod:`.point_hash`; ``exact=False``: the field alone, radius then a stated error).
        ``options``: of :meth:`.occupancy.VoxelGrid.from_points` (point_cell, multires, padding,
        max_cells, max_points)."""
        from .occupancy import VoxelGrid

        grid = VoxelGrid.from_points(points, voxel_size, radius, field=f"obstacle '{id}': points", exact=exact,
                                     **options)
        return cls(id, VOXELS, (), np.eye(4) if pose is None else pose, grid)

    @classmethod
    def mesh(cls, id: str, vertices, triangles, pose=None, voxel_size: float = 0.01, **options) -> "Obstacle":
        """A triangle mesh (vertices (V, 3) m, triangles (T, 3) indices, in the obstacle frame)
        as a voxel grid of ``voxel_size`` (m): a closed mesh is solid, an open one a surface (with
        a warning). Distances are conservative by at most 2√3·voxel_size + voxel_size/√3
        (:mod:`.occupancy`). ``options``: radius, max_triangles, max_cells."""
        from .occupancy import mesh_grid

        return cls(id, VOXELS, (), np.eye(4) if pose is None else pose, mesh_grid(vertices, triangles, voxel_size, id, **options))

    @classmethod
    def mesh_file(cls, id: str, path, pose=None, voxel_size: float = 0.01, scale: float = 1.0, **options) -> "Obstacle":
        """:meth:`mesh` from an STL, OBJ or DAE file (read by trimesh; ``scale`` multiplies it)."""
        from .occupancy import load_mesh_file

        vertices, triangles = load_mesh_file(path, id, scale)
        return cls.mesh(id, vertices, triangles, pose, voxel_size, **options)

    def with_pose(self, pose) -> "Obstacle":
        return Obstacle(self.id, self.kind, self.dimensions, pose, self.grid)

    def __repr__(self) -> str:
        what = self.grid if self.kind == VOXELS else self.dimensions
        return f"Obstacle('{self.id}', {self.kind}, {what}, at {self.pose[:3, 3].tolist()})"


@dataclass(frozen=True, eq=False)
class PackedShapes:
    """The n obstacles of one kind as tensors on one device, in one dtype.

    ``rotation`` (n, 3, 3) and ``translation`` (n, 3): obstacle frame -> world (m).
    ``parameters`` (n, 2) or (n, 3): sphere (radius, 0 half-height), box half extents, cylinder and
    capsule (half-height, radius), i.e. half the SolidPrimitive lengths; voxels (n, 16): where
    each grid and its field lie (:func:`.occupancy.grid_parameters`), the fields themselves being
    in ``kind.values`` (a :class:`.occupancy.VoxelKind`, equal to 'voxels').
    ``world_to_local`` (3, 3n) and ``local_offset`` (3n,): a world point p (row vector) in every
    obstacle frame at once is ``p @ world_to_local + local_offset`` (column 3k+i = coordinate i
    in obstacle k, Rₖᵀ(p − tₖ)); a local vector back in world is ``v @ world_to_local.T``.
    """

    kind: str
    ids: tuple[str, ...]
    rotation: Tensor
    translation: Tensor
    parameters: Tensor
    world_to_local: Tensor
    local_offset: Tensor

    @property
    def count(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, eq=False)
class PackedScene:
    """A scene's obstacles grouped by kind (non-empty kinds only, in :data:`KINDS` order).
    ``ids`` (O,): every obstacle in that concatenated order, which is the obstacle axis of every
    distance tensor."""

    shapes: tuple[PackedShapes, ...]
    ids: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.ids)


def _pack(kind: str, obstacles: Sequence[Obstacle], device, dtype) -> PackedShapes:
    poses = np.stack([o.pose for o in obstacles])  # (n, 4, 4)
    dimensions = np.array([o.dimensions for o in obstacles])
    if kind == VOXELS:
        from .occupancy import VoxelKind, grid_parameters

        offsets = np.cumsum([0] + [o.grid.field.size for o in obstacles])
        parameters = np.stack([grid_parameters(o.grid, int(start)) for o, start in zip(obstacles, offsets)])
        values = np.concatenate([o.grid.field.reshape(-1) for o in obstacles])
        kind = VoxelKind(VOXELS, torch.as_tensor(values, dtype=dtype, device=device), parameters)
    elif kind == SPHERE:
        parameters = np.concatenate((dimensions, np.zeros_like(dimensions)), axis=1)  # (radius, 0)
    elif kind == BOX:
        parameters = 0.5 * dimensions
    else:
        parameters = np.stack((0.5 * dimensions[:, 0], dimensions[:, 1]), axis=1)  # (half-height, radius)
    R, t = poses[:, :3, :3], poses[:, :3, 3]
    world_to_local = R.transpose(1, 0, 2).reshape(3, -1)  # [j, 3k + i] = R_k[j, i]
    local_offset = -np.einsum("kji,kj->ki", R, t).reshape(-1)

    def tensor(a):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)

    return PackedShapes(kind, tuple(o.id for o in obstacles), tensor(R), tensor(t), tensor(parameters),
                        tensor(world_to_local), tensor(local_offset))


class Scene:
    """An immutable, ordered set of obstacles with unique ids.

    Modifiers return new scenes; :meth:`packed` builds the tensors once per device and dtype.
    """

    def __init__(self, obstacles: Iterable[Obstacle] = ()):
        table: dict[str, Obstacle] = {}
        for obstacle in obstacles:
            if not isinstance(obstacle, Obstacle):
                raise TypeError(f"a scene holds Obstacle objects, not {type(obstacle).__name__}")
            if obstacle.id in table:
                raise ValueError(f"obstacle '{obstacle.id}': id appears twice in the scene")
            table[obstacle.id] = obstacle
        self._obstacles = table
        self._packed: dict[tuple, PackedScene] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ queries
    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._obstacles)

    def obstacle(self, id: str) -> Obstacle:
        try:
            return self._obstacles[id]
        except KeyError:
            raise ValueError(f"obstacle '{id}': unknown id (the scene has {', '.join(self.ids) or 'none'})") from None

    def __len__(self) -> int:
        return len(self._obstacles)

    def __iter__(self) -> Iterator[Obstacle]:
        return iter(self._obstacles.values())

    def __contains__(self, id) -> bool:
        return id in self._obstacles

    def __repr__(self) -> str:
        return f"Scene({len(self)} obstacles: {', '.join(self.ids)})"

    # ------------------------------------------------------------------ new scenes
    def with_obstacle(self, obstacle: Obstacle) -> "Scene":
        """This scene plus ``obstacle``; one with the same id is replaced in place (order kept)."""
        table = dict(self._obstacles)
        table[obstacle.id] = obstacle
        return Scene(table.values())

    def moved(self, id: str, pose) -> "Scene":
        """This scene with obstacle ``id`` at ``pose`` (4×4 or (x, y, z, qx, qy, qz, qw))."""
        return self.with_obstacle(self.obstacle(id).with_pose(pose))

    def without(self, id: str) -> "Scene":
        self.obstacle(id)  # raises for an unknown id
        return Scene(o for key, o in self._obstacles.items() if key != id)

    # ------------------------------------------------------------------ tensors
    def packed(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> PackedScene:
        """The obstacles as tensors on ``device`` in ``dtype``, grouped by kind (built once)."""
        key = (torch.device(device), dtype)
        packed = self._packed.get(key)
        if packed is None:
            with self._lock:
                packed = self._packed.get(key)
                if packed is None:
                    groups = [(k, [o for o in self if o.kind == k]) for k in KINDS]
                    shapes = tuple(_pack(k, members, key[0], dtype) for k, members in groups if members)
                    packed = PackedScene(shapes, tuple(i for s in shapes for i in s.ids))
                    self._packed[key] = packed
        return packed
