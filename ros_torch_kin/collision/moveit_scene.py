"""MoveIt planning-scene YAML -> :class:`~.obstacles.Scene`.

Reads the ``moveit_msgs/PlanningScene`` layout that MoveIt's scene export and MotionBenchMaker
write: a mapping with ``world: {collision_objects: [...]}`` (a top-level ``collision_objects``
list, or a bare list of objects, is read too; ``name``, ``robot_state``,
``fixed_frame_transforms``, ``allowed_collision_matrix`` and other keys are ignored). Each
collision object (``moveit_msgs/CollisionObject``) has

* ``id``: a non-empty string, unique in the file;
* ``header.frame_id`` (optional): the frame its poses are in; empty or the root frame means the
  root, any other frame is looked up with ``frame_pose``;
* ``pose`` (optional): the object's pose in that frame; the primitive poses are relative to it
  (MoveIt ≥ Noetic). An entirely zero pose (ROS 1's default message) counts as absent;
* ``primitives``: ``shape_msgs/SolidPrimitive`` entries, ``type`` 1 BOX, 2 SPHERE,
  3 CYLINDER (or the names, any case; 4 CONE is refused) and ``dimensions`` in m: BOX (x, y, z)
  full side lengths, SPHERE (radius), CYLINDER (height, radius) along its z axis;
* ``primitive_poses``: one pose per primitive;
* ``operation`` (optional): only ADD (0 or "add");
* ``meshes`` (``shape_msgs/Mesh``: ``vertices`` [{x, y, z} or [x, y, z], ...] in m and
  ``triangles`` [{vertex_indices: [i, j, k]} or [i, j, k], ...]) with ``mesh_poses``, one pose
  per mesh: each becomes a ``voxels`` obstacle (:meth:`~.obstacles.Obstacle.mesh`, at
  ``mesh_voxel_size``);
* ``planes``: refused when not empty.

A pose is ``{position: P, orientation: Q}`` where P is ``{x, y, z}`` or ``[x, y, z]`` (m) and Q
is ``{x, y, z, w}`` or ``[x, y, z, w]`` (normalised here); a missing position is the origin, a
missing orientation the identity.

An object with one shape (primitive or mesh) becomes one :class:`~.obstacles.Obstacle` with the
object's id; one with n > 1 shapes becomes n obstacles ``"<id>/0"`` … ``"<id>/<n-1>"``
(primitives first, then meshes). Every obstacle's pose
is ``T_root_frame @ T_frame_object @ T_object_primitive``, in the root frame.

All or nothing: the first problem raises ValueError naming the object (its index and id) and the
field, e.g. ``collision_objects[3] 'shelf': primitive_poses[1].orientation: zero quaternion``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from numbers import Real
from pathlib import Path

import numpy as np

from .obstacles import BOX, CYLINDER, SPHERE, Obstacle, Scene, checked_pose, pose_from_xyz_quat_xyzw

#: SolidPrimitive type -> (obstacle kind, number of dimensions, their names); None: refused.
_PRIMITIVES = {
    1: (BOX, ("x", "y", "z")),
    2: (SPHERE, ("radius",)),
    3: (CYLINDER, ("height", "radius")),
    4: None,  # CONE
    5: None,  # PRISM (shape_msgs in ROS 2)
}
_TYPE_NAMES = {1: "BOX", 2: "SPHERE", 3: "CYLINDER", 4: "CONE", 5: "PRISM"}
_TYPE_OF_NAME = {name.lower(): number for number, name in _TYPE_NAMES.items()}
#: CollisionObject.operation values (ADD is the only one a scene file can mean).
_OPERATIONS = {0: "ADD", 1: "REMOVE", 2: "APPEND", 3: "MOVE"}


def scene_from_moveit_yaml(
    source,
    root_frame: str,
    frame_pose: Callable[[str], np.ndarray | None] | None = None,
    mesh_voxel_size: float = 0.01,
) -> Scene:
    """The obstacles of a MoveIt planning-scene YAML, in the ``root_frame`` (see the module
    docstring for the layout).

    source: YAML text, the path of a YAML file (``str`` naming an existing file, or a
    ``PathLike``), or the already parsed document (a mapping or a list of objects).
    root_frame: the name of the root (world) frame; ``header.frame_id`` empty or equal to it
    means the poses are in the root frame.
    frame_pose: ``frame_pose(name)`` -> the 4×4 transform from frame ``name`` to the root (m),
    or None for an unknown frame; called once per distinct frame. Without it only the root frame
    is known.

    ValueError naming the object and the field for anything unreadable, unsupported or invalid
    (and for a file that cannot be read or YAML that does not parse); nothing is returned then.
    """
    objects = _collision_objects(_document(source))
    frames: dict[str, np.ndarray] = {}
    objects_by_id: dict[str, str] = {}  # object id -> where it is
    made_by: dict[str, str] = {}  # obstacle id -> the object that made it
    obstacles: list[Obstacle] = []
    for index, item in enumerate(objects):
        where = f"collision_objects[{index}]"
        if not isinstance(item, Mapping):
            raise ValueError(f"{where}: must be a mapping (a CollisionObject), got {_type_name(item)}")
        id = item.get("id")
        if not isinstance(id, str) or not id:
            raise ValueError(f"{where}: id must be a non-empty string, got {id!r}")
        if id in objects_by_id:
            raise ValueError(f"{where} '{id}': id is also that of {objects_by_id[id]}")
        where = objects_by_id[id] = f"{where} '{id}'"
        for obstacle in _object_obstacles(item, id, where, root_frame, frame_pose, frames, mesh_voxel_size):
            if obstacle.id in made_by:
                other = made_by[obstacle.id]
                what = "id" if obstacle.id == id else f"obstacle id '{obstacle.id}'"
                raise ValueError(f"{where}: {what} is also that of {other}")
            made_by[obstacle.id] = where
            obstacles.append(obstacle)
    return Scene(obstacles)


# ---------------------------------------------------------------------------- the document
def _document(source):
    """Parse ``source`` (text, path or parsed document); ValueError for unreadable input."""
    if isinstance(source, (Mapping, list)):
        return source
    if isinstance(source, bytes):
        source = source.decode("utf-8", errors="replace")
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source and _is_file(source)):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"cannot read the scene file '{path}': {error}") from None
        return _parse(text, f"'{path}'")
    if isinstance(source, str):
        return _parse(source, "the scene YAML")
    raise ValueError(f"a scene source is YAML text, a file path or a mapping, not {_type_name(source)}")


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # a name too long, or with a NUL
        return False


def _parse(text: str, what: str):
    import yaml  # PyYAML: only needed here

    try:  # yaml.safe_load's loader, in C when PyYAML has libyaml (~10x faster on MBM files)
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as error:
        raise ValueError(f"{what} is not valid YAML: {error}") from None


def _collision_objects(document) -> list:
    if isinstance(document, list):
        return document
    if document is None:
        raise ValueError("the scene YAML is empty (expected world: {collision_objects: [...]})")
    if isinstance(document, str):
        raise ValueError(f"the scene YAML is the plain string '{document[:80]}', not a planning scene "
                         "(if it is a file name: no such file)")
    if not isinstance(document, Mapping):
        raise ValueError(f"the scene YAML must be a mapping, got {_type_name(document)}")
    if "world" in document and "collision_objects" in document:
        raise ValueError("the scene YAML has both world.collision_objects and a top-level collision_objects")
    if "world" in document:
        world = document["world"]
        if world is None:
            return []
        if not isinstance(world, Mapping):
            raise ValueError(f"world: must be a mapping, got {_type_name(world)}")
        objects = world.get("collision_objects")
        where = "world.collision_objects"
    elif "collision_objects" in document:
        objects = document["collision_objects"]
        where = "collision_objects"
    else:
        keys = ", ".join(str(k) for k in document) or "none"
        raise ValueError(f"the scene YAML has no world.collision_objects nor collision_objects (its keys: {keys})")
    if objects is None:
        return []
    if not isinstance(objects, list):
        raise ValueError(f"{where}: must be a list, got {_type_name(objects)}")
    return objects


# ---------------------------------------------------------------------------- one object
def _object_obstacles(item: Mapping, id: str, where: str, root_frame: str, frame_pose, frames,
                      mesh_voxel_size: float = 0.01) -> list[Obstacle]:
    _check_operation(item.get("operation", 0), where)
    if item.get("planes"):
        raise ValueError(f"{where}: planes: planes are not supported (use a thin box)")
    frame = _frame_id(item.get("header"), where)
    T_root_frame = _frame_transform(frame, where, root_frame, frame_pose, frames)
    T_frame_object = np.eye(4)
    if item.get("pose") is not None and not _all_zero(item["pose"]):
        T_frame_object = _pose(item["pose"], where, "pose")

    primitives = _list(item.get("primitives"), where, "primitives")
    poses = _list(item.get("primitive_poses"), where, "primitive_poses")
    meshes = _list(item.get("meshes"), where, "meshes")
    mesh_poses = _list(item.get("mesh_poses"), where, "mesh_poses")
    if not primitives and not meshes:
        raise ValueError(f"{where}: primitives: the object has no shapes")
    if len(poses) != len(primitives):
        raise ValueError(f"{where}: primitive_poses has {len(poses)} entries for {len(primitives)} primitives")
    if len(mesh_poses) != len(meshes):
        raise ValueError(f"{where}: mesh_poses has {len(mesh_poses)} entries for {len(meshes)} meshes")
    T_root_object = T_root_frame @ T_frame_object
    count = len(primitives) + len(meshes)
    obstacles = []
    for k, (primitive, pose) in enumerate(zip(primitives, poses)):
        kind, dimensions = _primitive(primitive, where, f"primitives[{k}]")
        T = T_root_object @ _pose(pose, where, f"primitive_poses[{k}]")
        obstacle_id = id if count == 1 else f"{id}/{k}"
        try:
            obstacles.append(Obstacle(obstacle_id, kind, dimensions, T))
        except ValueError as error:  # e.g. a frame_pose whose rotation is not orthonormal
            raise ValueError(f"{where}: primitives[{k}]: {error}") from None
    for k, (mesh, pose) in enumerate(zip(meshes, mesh_poses)):
        T = T_root_object @ _pose(pose, where, f"mesh_poses[{k}]")
        obstacle_id = id if count == 1 else f"{id}/{len(primitives) + k}"
        vertices, triangles = _mesh(mesh, where, f"meshes[{k}]")
        try:
            obstacles.append(Obstacle.mesh(obstacle_id, vertices, triangles, T, voxel_size=mesh_voxel_size))
        except ValueError as error:
            raise ValueError(f"{where}: meshes[{k}]: {error}") from None
    return obstacles


def _mesh(mesh, where: str, field: str) -> tuple[list, list]:
    """A shape_msgs/Mesh mapping -> (vertices [[x, y, z]], triangles [[i, j, k]])."""
    if not isinstance(mesh, Mapping):
        raise ValueError(f"{where}: {field} must be a mapping with vertices and triangles, not {_type_name(mesh)}")
    vertices = [_vector(v, where, f"{field}.vertices[{i}]", "xyz", (0.0, 0.0, 0.0))
                for i, v in enumerate(_list(mesh.get("vertices"), where, f"{field}.vertices"))]
    triangles = []
    for i, t in enumerate(_list(mesh.get("triangles"), where, f"{field}.triangles")):
        indices = t.get("vertex_indices") if isinstance(t, Mapping) else t
        if not isinstance(indices, (list, tuple)) or len(indices) != 3 or not all(
                isinstance(x, int) and not isinstance(x, bool) for x in indices):
            raise ValueError(f"{where}: {field}.triangles[{i}] must be 3 vertex indices, got {indices!r}")
        triangles.append(list(indices))
    if not vertices or not triangles:
        raise ValueError(f"{where}: {field} has no {'vertices' if not vertices else 'triangles'}")
    return vertices, triangles


def _check_operation(operation, where: str) -> None:
    if isinstance(operation, str):
        number = {name.lower(): n for n, name in _OPERATIONS.items()}.get(operation.strip().lower())
    elif isinstance(operation, int) and not isinstance(operation, bool):
        number = operation
    else:
        number = None
    if number == 0:
        return
    name = _OPERATIONS.get(number, repr(operation))
    raise ValueError(f"{where}: operation: {name} is not supported (a scene file only ADDs objects)")


def _frame_id(header, where: str) -> str:
    if header is None:
        return ""
    if not isinstance(header, Mapping):
        raise ValueError(f"{where}: header: must be a mapping, got {_type_name(header)}")
    frame = header.get("frame_id")
    if frame is None:
        return ""
    if not isinstance(frame, str):
        raise ValueError(f"{where}: header.frame_id must be a string, got {frame!r}")
    return frame.lstrip("/")  # ROS 1 tf names may start with '/'


def _frame_transform(frame: str, where: str, root_frame: str, frame_pose, frames: dict) -> np.ndarray:
    """T_root_frame (4×4) of ``frame``, looked up once per frame name."""
    if not frame or frame == root_frame:
        return np.eye(4)
    if frame not in frames:
        T = frame_pose(frame) if frame_pose is not None else None
        if T is None:
            known = "nor a robot link" if frame_pose is not None else "(no other frame is known)"
            raise ValueError(f"{where}: header.frame_id '{frame}' is not the root '{root_frame}' {known}")
        try:
            frames[frame] = checked_pose(T, frame)
        except ValueError as error:
            raise ValueError(f"{where}: header.frame_id '{frame}': its transform is invalid: {error}") from None
    return frames[frame]


def _primitive(primitive, where: str, field: str) -> tuple[str, tuple[float, ...]]:
    """A SolidPrimitive mapping -> (obstacle kind, dimensions in m)."""
    if not isinstance(primitive, Mapping):
        raise ValueError(f"{where}: {field}: must be a mapping (type, dimensions), got {_type_name(primitive)}")
    type_ = primitive.get("type")
    if isinstance(type_, str):
        number = _TYPE_OF_NAME.get(type_.strip().lower())
    elif isinstance(type_, int) and not isinstance(type_, bool):
        number = type_
    else:
        number = None
    if number not in _PRIMITIVES:
        raise ValueError(f"{where}: {field}.type: unknown type {type_!r} "
                         "(expected 1 BOX, 2 SPHERE, 3 CYLINDER or their names)")
    if _PRIMITIVES[number] is None:
        raise ValueError(f"{where}: {field}.type: {_TYPE_NAMES[number].lower()} is not supported "
                         "(box, sphere, cylinder)")
    kind, names = _PRIMITIVES[number]
    type_name = _TYPE_NAMES[number]
    values = _numbers(primitive.get("dimensions"), where, f"{field}.dimensions")
    if len(values) != len(names):
        raise ValueError(f"{where}: {field}.dimensions: {type_name} needs {len(names)} "
                         f"value{'s' if len(names) > 1 else ''} ({', '.join(names)}), got {len(values)}")
    for name, value in zip(names, values):
        if not value > 0.0:
            raise ValueError(f"{where}: {field}.dimensions: {type_name} {name} must be positive, got {value}")
    return kind, values


def _pose(pose, where: str, field: str) -> np.ndarray:
    """A geometry_msgs/Pose mapping -> 4×4 (quaternion normalised)."""
    if not isinstance(pose, Mapping):
        raise ValueError(f"{where}: {field}: must be a mapping (position, orientation), got {_type_name(pose)}")
    unknown = [str(k) for k in pose if k not in ("position", "orientation")]
    if unknown:
        raise ValueError(f"{where}: {field}: unknown key '{unknown[0]}' (expected position, orientation)")
    position = _vector(pose.get("position"), where, f"{field}.position", "xyz", (0.0, 0.0, 0.0))
    orientation = _vector(pose.get("orientation"), where, f"{field}.orientation", "xyzw", (0.0, 0.0, 0.0, 1.0))
    if not any(orientation):
        raise ValueError(f"{where}: {field}.orientation: zero quaternion")
    return pose_from_xyz_quat_xyzw(position + orientation, where)


def _vector(value, where: str, field: str, axes: str, default: tuple[float, ...]) -> tuple[float, ...]:
    """``{x: .., y: .., ...}`` or ``[.., ..]`` -> finite floats in ``axes`` order."""
    if value is None:
        return default
    if isinstance(value, Mapping):
        unknown = [str(k) for k in value if k not in axes]
        missing = [a for a in axes if a not in value]
        if unknown or missing:
            problem = f"unknown key '{unknown[0]}'" if unknown else f"lacks {', '.join(missing)}"
            raise ValueError(f"{where}: {field}: {problem} (expected {', '.join(axes)})")
        value = [value[a] for a in axes]
    values = _numbers(value, where, field)
    if len(values) != len(axes):
        raise ValueError(f"{where}: {field}: needs {len(axes)} values ({', '.join(axes)}), got {len(values)}")
    return values


def _numbers(value, where: str, field: str) -> tuple[float, ...]:
    """A list of finite numbers (YAML ints or floats; not booleans or strings)."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{where}: {field}: must be a list of numbers, got {_type_name(value)}")
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, Real):
            raise ValueError(f"{where}: {field}[{i}]: must be a number, got {v!r}")
        try:
            finite = math.isfinite(v)
        except OverflowError:  # an integer beyond float's range
            finite = False
        if not finite:
            raise ValueError(f"{where}: {field}[{i}]: is not finite ({v})")
    return tuple(float(v) for v in value)


def _list(value, where: str, field: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{where}: {field}: must be a list, got {_type_name(value)}")
    return value


def _all_zero(pose) -> bool:
    """True for a pose whose every number is 0 (ROS 1's default Pose, quaternion included)."""
    if not isinstance(pose, Mapping) or set(pose) != {"position", "orientation"}:
        return False
    numbers = []
    for part in pose.values():
        part = list(part.values()) if isinstance(part, Mapping) else part
        if not isinstance(part, list):
            return False
        numbers += part
    return all(isinstance(v, Real) and not isinstance(v, bool) and v == 0 for v in numbers)


def _type_name(value) -> str:
    return "nothing" if value is None else type(value).__name__
