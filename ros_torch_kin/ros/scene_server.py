"""~/update_scene (UpdateScene) and ~/collision_markers: the node's world obstacles.

Every change is checked whole before it is applied: an invalid obstacle (unknown id, NaN pose,
zero quaternion, negative radius, non-positive box size, unsupported shape) fails the request
with a message naming it and leaves the scene as it was. The new scene is one assignment
(``node.world``), so requests in flight finish on the scene they started with.

``~/collision_markers`` (visualization_msgs/MarkerArray, transient local, so RViz gets it when it
connects late) shows the robot's collision spheres, each in its link's frame (RViz places them
with TF from robot_state_publisher), and the obstacles in the root frame; it is republished
whenever the model or the scene changes.

LOAD_YAML (and the ``scene_file`` parameter, see :func:`scene_from_yaml`) replaces the scene with
the objects of a MoveIt planning-scene YAML. Its ``header.frame_id`` may be empty, the root link
or any link of the served robot; a link is placed by forward kinematics at the latest complete
joint state the node received, else at the zero configuration clamped into the joint limits, at
the time the YAML is loaded (the obstacles then stay where they are when the robot moves).

ATTACH / DETACH move objects between the world and the robot (see UpdateScene.srv and
:mod:`..collision.attached_objects`); the link poses come from the same joint state rule. A
carried object is listed after the obstacles with its ``link`` set and its pose in that link's
frame, and drawn in ``~/collision_markers`` (namespace 'attached', in its link's frame).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from rclpy.qos import DurabilityPolicy, QoSProfile
from shape_msgs.msg import SolidPrimitive
from visualization_msgs.msg import Marker, MarkerArray

from ..collision import AttachedObject, Obstacle, Scene, pose_from_xyz_quat_xyzw, scene_from_moveit_yaml
from ..collision.obstacles import BOX, CAPSULE, CYLINDER, SPHERE, VOXELS
from ..collision.occupancy import MAX_TRIANGLES
from ..kinematics import forward_kinematics, matrix_to_pose_xyzw
from ..msg import Obstacle as ObstacleMsg
from ..srv import UpdateScene
from . import convert
from .convert import RequestError
from .qos import SERVICE_QOS

_KIND_OF_PRIMITIVE = {SolidPrimitive.BOX: BOX, SolidPrimitive.SPHERE: SPHERE, SolidPrimitive.CYLINDER: CYLINDER}
_PRIMITIVE_NAMES = {SolidPrimitive.CONE: "CONE", SolidPrimitive.PRISM: "PRISM"}
#: Most obstacles a scene may hold.
MAX_OBSTACLES = 10_000
#: Voxel size (m) of a mesh obstacle whose message gives none.
MESH_VOXEL_SIZE = 0.01
#: Smallest voxel size (m) a mesh message may ask for.
MIN_MESH_VOXEL_SIZE = 0.002
#: Most occupied voxels drawn per voxels obstacle in ~/collision_markers.
MAX_MARKER_VOXELS = 200_000


class SceneServer:
    """Serves ~/update_scene for ``node`` (a KinematicsNode: ``world``, ``model``) and publishes
    ~/collision_markers."""

    def __init__(self, node):
        self.node = node
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._markers = node.create_publisher(MarkerArray, "~/collision_markers", latched)
        node.create_service(UpdateScene, "~/update_scene", self._update_scene, qos_profile=SERVICE_QOS)
        self.publish_markers()

    def _update_scene(self, request, response):
        node = self.node
        world = node.world
        try:
            if request.operation in (UpdateScene.Request.ATTACH, UpdateScene.Request.DETACH):
                model = node.model
                positions = None if model is None else node.current_positions(model)
                scene, attached = attachment_change(world.scene, world.attached, request, model, positions)
                node.world = world = world.with_attached(scene, attached)
                self.publish_markers()
                response.success, response.message = True, ""
                return _list(response, world.scene, world.version, world.attached)
            if request.operation == UpdateScene.Request.LOAD_YAML:
                scene = scene_from_yaml(request.scene_yaml, node.model, node.current_positions(node.model))
            else:
                scene = updated_scene(world.scene, request)
            carried = [o.id for o in world.attached if o.id in scene]
            if carried:
                raise RequestError(f"obstacle id '{carried[0]}' is carried by the robot (link "
                                   f"'{world.attached_object(carried[0]).link}'): DETACH it first or choose another id")
        except (RequestError, ValueError) as error:
            response.success, response.message = False, str(error)
            return _list(response, world.scene, world.version, world.attached)
        if scene is not world.scene:
            node.world = world = world.with_scene(scene)
            self.publish_markers()
        response.success, response.message = True, ""
        return _list(response, world.scene, world.version, world.attached)

    def publish_markers(self) -> None:
        node = self.node
        world = node.world
        self._markers.publish(collision_markers(node.model, world.scene, node.get_clock().now().to_msg(),
                                                world.attached))


def attachment_change(scene: Scene, attached: tuple, request, model, positions) -> tuple[Scene, tuple]:
    """(scene, carried objects) after an ATTACH or DETACH request; RequestError naming the
    field, with nothing changed. Link poses: forward kinematics at ``positions`` (else the zero
    configuration clamped into the limits)."""
    if model is None:
        raise RequestError("no robot model is served yet: nothing can be attached or detached")
    chain = model.chain
    frames = link_frames(chain, positions)
    carried = {o.id: o for o in attached}
    _check_ids(request.obstacles)
    if not request.obstacles:
        raise RequestError("obstacles is empty: list the objects to attach or detach")
    if request.operation == UpdateScene.Request.DETACH:
        for i, msg in enumerate(request.obstacles):
            obj = carried.pop(msg.id, None)
            if obj is None:
                raise RequestError(f"obstacles[{i}].id '{msg.id}' is not attached (attached: "
                                   f"{', '.join(o.id for o in attached) or 'none'})")
            scene = scene.with_obstacle(obj.world_obstacle(frames(obj.link)))
        return scene, tuple(carried.values())
    for i, msg in enumerate(request.obstacles):
        field = f"obstacles[{i}]"
        if msg.id in carried:
            raise RequestError(f"{field}.id '{msg.id}' is already attached to link '{carried[msg.id].link}' "
                               "(DETACH it first)")
        if not msg.link:
            raise RequestError(f"{field}.link is empty: name the robot link that carries '{msg.id}'")
        if not chain.has_link(msg.link):
            raise RequestError(f"{field}.link '{msg.link}' is not a link of robot '{chain.name}'")
        for k, name in enumerate(msg.touch_links):
            if not chain.has_link(name):
                raise RequestError(f"{field}.touch_links[{k}] '{name}' is not a link of robot '{chain.name}'")
        has_shape = msg.shape.type != 0 or len(msg.mesh.triangles) > 0
        if has_shape:
            if msg.id in scene:
                raise RequestError(f"{field}.id '{msg.id}' is an obstacle of the scene: attach it by id alone "
                                   "(no shape, no mesh) or choose another id")
            shape = obstacle_from_msg(msg, field)  # its pose: in the link's frame
            obj = AttachedObject(msg.id, msg.link, shape, tuple(msg.touch_links))
        else:
            if msg.id not in scene:
                raise RequestError(f"{field}.id '{msg.id}' is not in the scene and the message has no shape or "
                                   f"mesh (ids: {', '.join(scene.ids[:10]) or 'none'}{', …' if len(scene) > 10 else ''})")
            obj = AttachedObject.at_link_pose(scene.obstacle(msg.id), msg.link, frames(msg.link), tuple(msg.touch_links))
            scene = scene.without(msg.id)
        carried[msg.id] = obj
    return scene, tuple(carried.values())


def updated_scene(scene: Scene, request) -> Scene:
    """The scene after ``request`` (UpdateScene.Request); RequestError/ValueError naming the
    obstacle and field at fault, with ``scene`` untouched."""
    operation = request.operation
    if operation == UpdateScene.Request.LIST:
        return scene
    if operation == UpdateScene.Request.CLEAR:
        return Scene()
    _check_ids(request.obstacles)
    if operation == UpdateScene.Request.ADD:
        for i, msg in enumerate(request.obstacles):
            scene = scene.with_obstacle(obstacle_from_msg(msg, f"obstacles[{i}]"))
        if len(scene) > MAX_OBSTACLES:
            raise RequestError(f"the scene would hold {len(scene)} obstacles, above {MAX_OBSTACLES}")
        return scene
    if operation in (UpdateScene.Request.MOVE, UpdateScene.Request.REMOVE):
        for i, msg in enumerate(request.obstacles):
            if msg.id not in scene:
                raise RequestError(f"obstacles[{i}].id '{msg.id}' is not in the scene (ids: "
                                   f"{', '.join(scene.ids[:10]) or 'none'}{', …' if len(scene) > 10 else ''})")
            if operation == UpdateScene.Request.MOVE:
                scene = scene.moved(msg.id, pose_matrix(msg.pose, f"obstacles[{i}].pose"))
            else:
                scene = scene.without(msg.id)
        return scene
    raise RequestError(f"operation {operation} is unknown: use ADD (0), MOVE (1), REMOVE (2), CLEAR (3), LIST (4) "
                       "or LOAD_YAML (5)")


def scene_from_yaml(source: str | Path, model, positions: np.ndarray | None) -> Scene:
    """The obstacles of a MoveIt planning-scene YAML (``str``: the text, never read as a file
    name, so a request cannot make the node read its files; ``Path``: a file; see
    :func:`..collision.moveit_scene.scene_from_moveit_yaml`) in the root frame of ``model``'s
    chain. Frames: the root link or any link of the chain, placed by forward kinematics at
    ``positions`` ((J,) rad or m in ``chain.joint_names`` order) or, when None, at the zero
    configuration clamped into the joint limits. Without a model only the root ('') frame is
    known. ValueError naming the object and the field; also for an obstacle beyond ±1e6 m or a
    scene above MAX_OBSTACLES."""
    if isinstance(source, str):
        source = _yaml_document(source)
    with warnings.catch_warnings():  # an open mesh is accepted; its note stays on the grid
        warnings.simplefilter("ignore")
        if model is None:
            scene = scene_from_moveit_yaml(source, "", mesh_voxel_size=MESH_VOXEL_SIZE)
        else:
            scene = scene_from_moveit_yaml(source, model.chain.root_link, link_frames(model.chain, positions),
                                           mesh_voxel_size=MESH_VOXEL_SIZE)
    if len(scene) > MAX_OBSTACLES:
        raise RequestError(f"the scene would hold {len(scene)} obstacles, above {MAX_OBSTACLES}")
    for obstacle in scene:  # as ADD bounds them: float32 math stays far from overflow
        for what, values in (("dimensions", obstacle.dimensions), ("position", obstacle.pose[:3, 3])):
            if len(values) and np.abs(values).max() > convert.MAX_COORDINATE:
                raise RequestError(f"obstacle '{obstacle.id}': {what} {np.round(values, 6).tolist()} "
                                   f"is beyond ±{convert.MAX_COORDINATE:g} m")
    return scene


def _yaml_document(text: str):
    """YAML text -> its mapping or list (what scene_from_moveit_yaml takes as a parsed document)."""
    import yaml

    try:  # yaml.safe_load's loader, in C when PyYAML has libyaml
        document = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as error:
        raise RequestError(f"scene_yaml is not valid YAML: {error}") from None
    if document is None:
        raise RequestError("scene_yaml is empty (expected world: {collision_objects: [...]}; CLEAR empties the scene)")
    if not isinstance(document, (dict, list)):
        raise RequestError(f"scene_yaml must hold a mapping (world: {{collision_objects: [...]}}), "
                           f"not a {type(document).__name__}")
    return document


def link_frames(chain, positions: np.ndarray | None):
    """``frame_pose(name)`` for :func:`scene_from_moveit_yaml`: the 4×4 pose (float64, m) of link
    ``name`` in the root frame at ``positions`` (else the zero configuration clamped into the
    limits), None for a name that is not a link. Forward kinematics runs once, on the first
    lookup, in float64 on the CPU (a float32 rotation can miss the obstacle's orthonormality
    check)."""
    poses: list[np.ndarray] = []

    def frame_pose(name: str) -> np.ndarray | None:
        if not chain.has_link(name):
            return None
        if not poses:
            exact = chain.to("cpu", torch.float64)
            if positions is None:
                q = np.clip(np.zeros(exact.num_dofs), exact.lower_limits.numpy(), exact.upper_limits.numpy())
            else:
                q = np.asarray(positions, dtype=np.float64)
            with torch.no_grad():
                poses.append(forward_kinematics(exact, torch.from_numpy(q).reshape(1, -1))[0].numpy())
        return poses[0][chain.link_index(name)]

    return frame_pose


def pose_matrix(pose, field: str) -> np.ndarray:
    """geometry_msgs/Pose -> 4×4 (the quaternion normalised; RequestError naming ``field``)."""
    return pose_from_xyz_quat_xyzw(convert.poses_from_msgs([pose], field)[0])


def obstacle_from_msg(msg, field: str) -> Obstacle:
    """ros_torch_kin/Obstacle -> Obstacle; RequestError naming the field for what is unsupported."""
    if len(msg.mesh.triangles):
        return mesh_from_msg(msg, field)
    shape = msg.shape
    kind = _KIND_OF_PRIMITIVE.get(shape.type)
    if kind is None:
        name = _PRIMITIVE_NAMES.get(shape.type, str(shape.type))
        raise RequestError(f"{field} '{msg.id}': shape type {name} is not supported (BOX, SPHERE, CYLINDER)")
    if msg.capsule:
        if kind != CYLINDER:
            raise RequestError(f"{field} '{msg.id}': capsule = true needs shape type CYLINDER")
        kind = CAPSULE
    dimensions = convert.as_float_array(shape.dimensions)
    convert.require_bounded(dimensions, convert.MAX_COORDINATE, f"{field}.shape.dimensions", "m")
    try:
        return Obstacle(msg.id, kind, tuple(dimensions), pose_matrix(msg.pose, f"{field}.pose"))
    except ValueError as error:
        raise RequestError(f"{field}: {error}") from None


def mesh_from_msg(msg, field: str) -> Obstacle:
    """An Obstacle message with a mesh -> a voxels Obstacle; RequestError naming the field."""
    mesh = msg.mesh
    if len(mesh.triangles) > MAX_TRIANGLES:
        raise RequestError(f"{field}.mesh.triangles has {len(mesh.triangles)} triangles, above the limit of {MAX_TRIANGLES}")
    vertices = np.array([(p.x, p.y, p.z) for p in mesh.vertices], dtype=np.float64).reshape(-1, 3)
    convert.require_bounded(vertices, convert.MAX_COORDINATE, f"{field}.mesh.vertices", "m")
    triangles = np.array([tuple(t.vertex_indices) for t in mesh.triangles], dtype=np.int64).reshape(-1, 3)
    size = msg.voxel_size or MESH_VOXEL_SIZE
    if not (np.isfinite(size) and MIN_MESH_VOXEL_SIZE <= size <= 1.0):
        raise RequestError(f"{field}.voxel_size = {msg.voxel_size} must be 0 (the default, {MESH_VOXEL_SIZE} m) or "
                           f"between {MIN_MESH_VOXEL_SIZE} and 1 m")
    try:
        with warnings.catch_warnings():  # an open mesh is accepted; its note stays on the grid
            warnings.simplefilter("ignore")
            return Obstacle.mesh(msg.id, vertices, triangles, pose_matrix(msg.pose, f"{field}.pose"), voxel_size=size)
    except ValueError as error:
        raise RequestError(f"{field}.mesh: {error}") from None


def obstacle_msg(obstacle: Obstacle) -> ObstacleMsg:
    msg = ObstacleMsg(id=obstacle.id, capsule=obstacle.kind == CAPSULE)
    if obstacle.kind == VOXELS:
        msg.voxels, msg.voxel_size = True, float(obstacle.grid.voxel_size)
        convert.fill_pose(msg.pose, matrix_to_pose_xyzw(obstacle.pose))
        return msg
    msg.shape.type = {SPHERE: SolidPrimitive.SPHERE, BOX: SolidPrimitive.BOX}.get(obstacle.kind, SolidPrimitive.CYLINDER)
    msg.shape.dimensions = [float(d) for d in obstacle.dimensions]
    convert.fill_pose(msg.pose, matrix_to_pose_xyzw(obstacle.pose))
    return msg


def attached_msg(obj: AttachedObject) -> ObstacleMsg:
    """A carried object as an Obstacle message: ``link``, ``touch_links``, pose in the link frame."""
    msg = obstacle_msg(obj.obstacle)
    msg.link, msg.touch_links = obj.link, list(obj.touch_links)
    return msg


def voxel_marker(obstacle: Obstacle, index: int, frame: str, stamp) -> Marker:
    """A voxels obstacle's occupied voxels as one CUBE_LIST (namespace 'obstacles'; at most
    MAX_MARKER_VOXELS of them, evenly thinned beyond)."""
    from geometry_msgs.msg import Point

    grid = obstacle.grid
    marker = _marker("obstacles", index, frame, stamp, Marker.CUBE_LIST, _VOXEL_COLOUR)
    convert.fill_pose(marker.pose, matrix_to_pose_xyzw(obstacle.pose))
    marker.scale.x = marker.scale.y = marker.scale.z = float(grid.voxel_size)
    centers = grid.occupied_centers()
    if centers.shape[0] > MAX_MARKER_VOXELS:
        centers = centers[:: -(-centers.shape[0] // MAX_MARKER_VOXELS)]
    marker.points = [Point(x=x, y=y, z=z) for x, y, z in centers.tolist()]
    return marker


def _list(response, scene: Scene, version: int, attached=()):
    response.obstacles = [obstacle_msg(o) for o in scene] + [attached_msg(o) for o in attached]
    response.scene_version = version
    return response


_ROBOT_COLOUR = (0.2, 0.6, 1.0, 0.4)
_OBSTACLE_COLOUR = (1.0, 0.3, 0.2, 0.6)
_VOXEL_COLOUR = (0.9, 0.6, 0.1, 0.8)
_ATTACHED_COLOUR = (0.3, 0.9, 0.3, 0.7)


def collision_markers(model, scene: Scene, stamp, attached=()) -> MarkerArray:
    """The robot's spheres (namespace 'robot_spheres', one marker per sphere in its link's frame),
    the obstacles (namespace 'obstacles', root frame) and the carried objects (namespace
    'attached', each in its link's frame); a DELETEALL first clears old ones."""
    markers = [Marker(action=Marker.DELETEALL)]
    if model is None:
        return MarkerArray(markers=markers)
    chain = model.chain
    if model.collision is not None:
        spheres = model.collision.spheres
        links = spheres.sphere_links.cpu().numpy()
        centers = convert.to_numpy(spheres.centers)
        radii = convert.to_numpy(spheres.radii)
        for i, (link, center, radius) in enumerate(zip(links, centers, radii)):
            marker = _marker("robot_spheres", i, chain.link_names[int(link)], stamp, Marker.SPHERE, _ROBOT_COLOUR)
            marker.pose.position.x, marker.pose.position.y, marker.pose.position.z = (float(v) for v in center)
            marker.scale.x = marker.scale.y = marker.scale.z = 2.0 * float(radius)
            markers.append(marker)
    for i, obstacle in enumerate(scene):
        markers += obstacle_markers(obstacle, i, chain.root_link, stamp)
    for i, obj in enumerate(attached):
        for marker in obstacle_markers(obj.obstacle, i, obj.link, stamp):
            marker.ns = "attached" if marker.ns == "obstacles" else "attached_" + marker.ns
            marker.color.r, marker.color.g, marker.color.b, marker.color.a = _ATTACHED_COLOUR
            markers.append(marker)
    return MarkerArray(markers=markers)


def _marker(namespace: str, index: int, frame: str, stamp, kind: int, colour) -> Marker:
    marker = Marker(ns=namespace, id=index, type=kind, action=Marker.ADD)
    marker.header.frame_id, marker.header.stamp = frame, stamp
    marker.pose.orientation.w = 1.0
    marker.color.r, marker.color.g, marker.color.b, marker.color.a = colour
    return marker


def obstacle_markers(obstacle: Obstacle, index: int, frame: str, stamp) -> list[Marker]:
    if obstacle.kind == VOXELS:
        return [voxel_marker(obstacle, index, frame, stamp)]
    kind = {SPHERE: Marker.SPHERE, BOX: Marker.CUBE}.get(obstacle.kind, Marker.CYLINDER)
    marker = _marker("obstacles", index, frame, stamp, kind, _OBSTACLE_COLOUR)
    convert.fill_pose(marker.pose, matrix_to_pose_xyzw(obstacle.pose))
    d = obstacle.dimensions
    if obstacle.kind == SPHERE:
        marker.scale.x = marker.scale.y = marker.scale.z = 2.0 * d[0]
    elif obstacle.kind == BOX:
        marker.scale.x, marker.scale.y, marker.scale.z = d
    else:  # cylinder (a capsule's cylinder part; its end caps follow as spheres)
        marker.scale.x = marker.scale.y = 2.0 * d[1]
        marker.scale.z = d[0]
    markers = [marker]
    if obstacle.kind == CAPSULE:
        for end, sign in enumerate((1.0, -1.0)):
            cap = _marker("obstacle_capsule_ends", 2 * index + end, frame, stamp, Marker.SPHERE, _OBSTACLE_COLOUR)
            centre = obstacle.pose @ np.array([0.0, 0.0, sign * d[0] / 2, 1.0])
            cap.pose.position.x, cap.pose.position.y, cap.pose.position.z = (float(v) for v in centre[:3])
            cap.scale.x = cap.scale.y = cap.scale.z = 2.0 * d[1]
            markers.append(cap)
    return markers


def _check_ids(obstacles) -> None:
    """RequestError naming the entry when an obstacle id is empty or listed twice."""
    seen: set[str] = set()
    for i, msg in enumerate(obstacles):
        if not msg.id:
            raise RequestError(f"obstacles[{i}].id is empty")
        if msg.id in seen:
            raise RequestError(f"obstacles[{i}].id '{msg.id}' is listed twice")
        seen.add(msg.id)
