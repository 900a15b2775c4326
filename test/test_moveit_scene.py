"""MoveIt planning-scene YAML -> Scene: the library reader (good files, every refusal naming the
object and the field, frames), a real MotionBenchMaker scene from the vamp-planner sdist, and the
node's LOAD_YAML operation and scene_file parameter over ROS 2."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import random_q
from ros_fixtures import Spinner, requires_ros, running_node, set_parameters, wait_until

from ros_torch_kin.collision import Scene, scene_from_moveit_yaml

ROOT = "panda_link0"


def rz(degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def load(text: str, frame_pose=None) -> Scene:
    return scene_from_moveit_yaml(textwrap.dedent(text), ROOT, frame_pose)


# ---------------------------------------------------------------------------- good files
MBM_STYLE = """
name: ""
robot_model_name: panda
fixed_frame_transforms:
  - {child_frame_id: world, transform: {rotation: [0, 0, 0, 1], translation: [0, 0, 0]}}
robot_state:
  joint_state: {name: [panda_joint1], position: [0]}
world:
  collision_objects:
    - id: can
      primitives:
        - {type: cylinder, dimensions: [0.14, 0.03]}
      primitive_poses:
        - {position: [0.3, -0.5, 0.4], orientation: [0, 0, 0.7071067811865476, 0.7071067811865476]}
    - id: shelf
      primitives:
        - {type: Box, dimensions: [0.4, 0.8, 0.02]}
        - {type: box, dimensions: [0.4, 0.8, 0.02]}
        - {type: SPHERE, dimensions: [0.05]}
      primitive_poses:
        - {position: [0.6, 0, 0.3], orientation: [0, 0, 0, 1]}
        - {position: [0.6, 0, 0.7], orientation: [0, 0, 0, 2]}
        - {position: [0.6, 0, 1.0], orientation: [0, 0, 0, 1]}
"""


def test_mbm_style_objects_single_and_multi_primitive():
    scene = load(MBM_STYLE)
    assert scene.ids == ("can", "shelf/0", "shelf/1", "shelf/2")
    can = scene.obstacle("can")
    assert can.kind == "cylinder" and can.dimensions == (0.14, 0.03)  # (height, radius)
    np.testing.assert_allclose(can.pose[:3, 3], [0.3, -0.5, 0.4])
    np.testing.assert_allclose(can.pose[:3, :3], rz(90), atol=1e-12)
    assert scene.obstacle("shelf/1").kind == "box" and scene.obstacle("shelf/1").dimensions == (0.4, 0.8, 0.02)
    np.testing.assert_allclose(scene.obstacle("shelf/1").pose, [[1, 0, 0, 0.6], [0, 1, 0, 0], [0, 0, 1, 0.7],
                                                                [0, 0, 0, 1]])  # quaternion normalised
    ball = scene.obstacle("shelf/2")
    assert ball.kind == "sphere" and ball.dimensions == (0.05,)


ROS_MESSAGE_STYLE = """
world:
  collision_objects:
    - header: {stamp: {sec: 0, nanosec: 0}, frame_id: "%s"}
      id: table
      operation: 0
      pose:
        position: {x: 1.0, y: 0.0, z: 0.0}
        orientation: {x: 0.0, y: 0.0, z: 0.7071067811865476, w: 0.7071067811865476}
      primitives:
        - {type: 1, dimensions: [0.2, 0.4, 0.6]}
      primitive_poses:
        - position: {x: 0.5, y: 0.0, z: 0.0}
          orientation: {x: 0.7071067811865476, y: 0.0, z: 0.0, w: 0.7071067811865476}
      meshes: []
      mesh_poses: []
      planes: []
      plane_poses: []
      subframe_names: []
      subframe_poses: []
"""


@pytest.mark.parametrize("frame", ["", ROOT])
def test_object_pose_composes_with_primitive_poses(frame):
    """MoveIt >= Noetic: primitive_poses are relative to the object's pose. Object at (1, 0, 0)
    turned 90° about z; the box 0.5 m along the object's x, turned 90° about its x."""
    box = load(ROS_MESSAGE_STYLE % frame).obstacle("table")
    assert box.kind == "box" and box.dimensions == (0.2, 0.4, 0.6)
    # Rz(90) @ Rx(90), by hand; the object's x axis is the root's y axis
    expected = np.array([[0, 0, 1, 1.0], [1, 0, 0, 0.5], [0, 1, 0, 0.0], [0, 0, 0, 1]])
    np.testing.assert_allclose(box.pose, expected, atol=1e-12)


def test_frame_of_a_robot_link_is_resolved_with_frame_pose():
    T_root_link = np.eye(4)
    T_root_link[:3, :3] = rz(-90)
    T_root_link[:3, 3] = (0.0, 0.0, 0.5)
    asked = []

    def frame_pose(name):
        asked.append(name)
        return T_root_link if name == "panda_hand" else None

    text = ROS_MESSAGE_STYLE % "panda_hand"
    text = text + text.split("collision_objects:")[1].replace("id: table", "id: table2")  # a second object
    scene = load(text, frame_pose)
    # T_root_link @ (the pose in the link frame, as above)
    in_link = np.array([[0, 0, 1, 1.0], [1, 0, 0, 0.5], [0, 1, 0, 0.0], [0, 0, 0, 1]])
    np.testing.assert_allclose(scene.obstacle("table").pose, T_root_link @ in_link, atol=1e-12)
    np.testing.assert_allclose(scene.obstacle("table").pose[:3, 3], (0.5, -1.0, 0.5), atol=1e-12)
    assert asked == ["panda_hand"]  # once per frame


def test_sources_text_path_mapping_and_top_level_lists(tmp_path):
    path = tmp_path / "scene.yaml"
    path.write_text(MBM_STYLE)
    parsed = yaml.safe_load(MBM_STYLE)
    objects = parsed["world"]["collision_objects"]
    for source in (MBM_STYLE, str(path), path, parsed, {"collision_objects": objects}, objects):
        assert scene_from_moveit_yaml(source, ROOT).ids == ("can", "shelf/0", "shelf/1", "shelf/2")
    assert len(scene_from_moveit_yaml("world: {collision_objects: []}", ROOT)) == 0
    assert len(scene_from_moveit_yaml("world:\n", ROOT)) == 0


def test_ros1_default_object_pose_counts_as_absent():
    text = """
    collision_objects:
      - id: ball
        pose: {position: {x: 0, y: 0, z: 0}, orientation: {x: 0, y: 0, z: 0, w: 0}}
        primitives: [{type: 2, dimensions: [0.1]}]
        primitive_poses: [{position: [1, 2, 3]}]
    """
    np.testing.assert_allclose(load(text).obstacle("ball").pose[:3, 3], (1, 2, 3))


# ---------------------------------------------------------------------------- bad files
def one_object(**fields) -> dict:
    item = {"id": "shelf", "primitives": [{"type": 1, "dimensions": [1, 1, 1]}, {"type": 2, "dimensions": [0.1]}],
            "primitive_poses": [{"position": [0, 0, 0], "orientation": [0, 0, 0, 1]},
                                {"position": [1, 0, 0], "orientation": [0, 0, 0, 1]}]}
    item.update(fields)
    return {"world": {"collision_objects": [{"id": "fine", "primitives": [{"type": 2, "dimensions": [0.1]}],
                                             "primitive_poses": [{}]}, item]}}


GOOD_POSE = {"position": [0, 0, 0], "orientation": [0, 0, 0, 1]}
SPHERE = {"type": 2, "dimensions": [0.1]}
BAD = [
    (one_object(id=""), r"collision_objects\[1\]: id must be a non-empty string"),
    (one_object(id=7), r"collision_objects\[1\]: id must be a non-empty string, got 7"),
    (one_object(id="fine"), r"collision_objects\[1\] 'fine': id is also that of collision_objects\[0\] 'fine'"),
    (one_object(id="fine/0"), None),  # fine: 'fine' makes 'fine' alone, 'fine/0' makes 'fine/0/0' and 'fine/0/1'
    (one_object(primitive_poses=[GOOD_POSE, {"position": [0, 0, 0], "orientation": [0, 0, 0, 0]}]),
     r"^collision_objects\[1\] 'shelf': primitive_poses\[1\]\.orientation: zero quaternion$"),
    (one_object(primitives=[{"type": 1, "dimensions": [1, 1]}, SPHERE]),
     r"collision_objects\[1\] 'shelf': primitives\[0\]\.dimensions: BOX needs 3 values \(x, y, z\), got 2"),
    (one_object(primitives=[{"type": "cylinder", "dimensions": [0.1]}, SPHERE]),
     r"'shelf': primitives\[0\]\.dimensions: CYLINDER needs 2 values \(height, radius\), got 1"),
    (one_object(primitives=[{"type": 1, "dimensions": [1, 0, 1]}, SPHERE]),
     r"'shelf': primitives\[0\]\.dimensions: BOX y must be positive, got 0\.0"),
    (one_object(primitives=[{"type": 1, "dimensions": [1, 1, 1]}, {"type": 2, "dimensions": [-0.1]}]),
     r"'shelf': primitives\[1\]\.dimensions: SPHERE radius must be positive, got -0\.1"),
    (one_object(primitives=[{"type": 1, "dimensions": [1, float("nan"), 1]}, SPHERE]),
     r"'shelf': primitives\[0\]\.dimensions\[1\]: is not finite"),
    (one_object(primitives=[{"type": 1, "dimensions": "1 1 1"}, SPHERE]),
     r"'shelf': primitives\[0\]\.dimensions: must be a list of numbers, got str"),
    (one_object(primitives=[{"type": 1, "dimensions": [1, "a", 1]}, SPHERE]),
     r"'shelf': primitives\[0\]\.dimensions\[1\]: must be a number, got 'a'"),
    (one_object(primitive_poses=[GOOD_POSE, {"position": [0, float("inf"), 0]}]),
     r"'shelf': primitive_poses\[1\]\.position\[1\]: is not finite \(inf\)"),
    (one_object(primitive_poses=[GOOD_POSE, {"position": [0, 0]}]),
     r"'shelf': primitive_poses\[1\]\.position: needs 3 values \(x, y, z\), got 2"),
    (one_object(primitive_poses=[GOOD_POSE, {"position": {"x": 0, "y": 0}}]),
     r"'shelf': primitive_poses\[1\]\.position: lacks z"),
    (one_object(primitive_poses=[GOOD_POSE, {"postion": [0, 0, 0]}]),
     r"'shelf': primitive_poses\[1\]: unknown key 'postion' \(expected position, orientation\)"),
    (one_object(primitive_poses=[GOOD_POSE]),
     r"'shelf': primitive_poses has 1 entries for 2 primitives"),
    (one_object(primitives=[], primitive_poses=[]), r"'shelf': primitives: the object has no shapes"),
    (one_object(pose={"position": [1, 0, 0], "orientation": [0, 0, 0, 0]}),
     r"'shelf': pose\.orientation: zero quaternion"),
    (one_object(primitives=[{"type": 4, "dimensions": [0.2, 0.1]}, SPHERE]),
     r"'shelf': primitives\[0\]\.type: cone is not supported"),
    (one_object(primitives=[{"type": "CONE", "dimensions": [0.2, 0.1]}, SPHERE]),
     r"'shelf': primitives\[0\]\.type: cone is not supported"),
    (one_object(primitives=[{"type": "torus", "dimensions": [0.2, 0.1]}, SPHERE]),
     r"'shelf': primitives\[0\]\.type: unknown type 'torus'"),
    (one_object(meshes=[{"triangles": [], "vertices": []}], mesh_poses=[GOOD_POSE]),
     r"'shelf': meshes\[0\] has no vertices"),
    (one_object(planes=[{"coef": [0, 0, 1, 0]}], plane_poses=[GOOD_POSE]), r"'shelf': planes: planes are not supported"),
    (one_object(operation=1), r"'shelf': operation: REMOVE is not supported"),
    (one_object(operation="move"), r"'shelf': operation: MOVE is not supported"),
    (one_object(header={"frame_id": "camera"}),
     r"^collision_objects\[1\] 'shelf': header\.frame_id 'camera' is not the root 'panda_link0'"),
    ({"world": {"collision_objects": ["shelf"]}}, r"collision_objects\[0\]: must be a mapping"),
    ({"world": {"collision_objects": {"id": "a"}}}, r"world\.collision_objects: must be a list, got dict"),
    ({"objects": []}, r"no world\.collision_objects nor collision_objects \(its keys: objects\)"),
]


@pytest.mark.parametrize("document, message", BAD, ids=[m or "ok" for _, m in BAD])
def test_bad_files_are_refused_naming_the_object_and_the_field(document, message):
    if message is None:
        assert scene_from_moveit_yaml(document, ROOT).ids == ("fine", "fine/0/0", "fine/0/1")
        return
    with pytest.raises(ValueError, match=message):
        scene_from_moveit_yaml(document, ROOT)
    with pytest.raises(ValueError, match=message):  # the same from YAML text
        scene_from_moveit_yaml(yaml.safe_dump(document), ROOT)


def test_obstacle_ids_of_multi_primitive_objects_must_not_clash():
    document = one_object(id="fine/1", primitives=[SPHERE], primitive_poses=[GOOD_POSE])
    document["world"]["collision_objects"][0]["primitives"] *= 2  # 'fine' makes 'fine/0' and 'fine/1'
    document["world"]["collision_objects"][0]["primitive_poses"] *= 2
    with pytest.raises(ValueError, match=r"collision_objects\[1\] 'fine/1': id is also that of collision_objects\[0\] 'fine'"):
        scene_from_moveit_yaml(document, ROOT)


def test_unknown_frame_is_refused_with_or_without_frame_pose():
    text = ROS_MESSAGE_STYLE % "camera"
    message = r"collision_objects\[0\] 'table': header\.frame_id 'camera' is not the root 'panda_link0' nor a robot link"
    with pytest.raises(ValueError, match=message):
        load(text, {"panda_hand": np.eye(4)}.get)
    with pytest.raises(ValueError, match=r"'table': header\.frame_id 'camera' is not the root 'panda_link0'"):
        load(text)
    with pytest.raises(ValueError, match=r"'table': header\.frame_id 'camera': its transform is invalid"):
        load(text, lambda name: np.full((4, 4), 2.0))


def test_unreadable_sources_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not valid YAML"):
        scene_from_moveit_yaml("world: {collision_objects: [", ROOT)
    with pytest.raises(ValueError, match="the scene YAML is empty"):
        scene_from_moveit_yaml("", ROOT)
    with pytest.raises(ValueError, match="plain string 'missing.yaml'.*no such file"):
        scene_from_moveit_yaml("missing.yaml", ROOT)
    with pytest.raises(ValueError, match="cannot read the scene file '.*missing.yaml'"):
        scene_from_moveit_yaml(tmp_path / "missing.yaml", ROOT)


# ---------------------------------------------------------------------------- a real MBM file
def mbm_resources() -> Path:
    """The extracted Panda resources of the vamp-planner sdist (MotionBenchMaker's problems), from
    the MBM benchmark's own cache (bench/mbm_problems.py: ~/.cache/ros_torch_kin/mbm/, downloaded
    once with pip); skips with the reason when they cannot be had."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    try:
        import mbm_problems
    finally:
        sys.path.pop(0)
    try:
        return mbm_problems.mbm_resources()
    except (RuntimeError, OSError) as error:
        pytest.skip(f"the MotionBenchMaker problems cannot be had: {error}")


def test_a_motionbenchmaker_scene_file_of_each_family():
    """MBM scenes: objects without header or pose (the root frame), positions and orientations as
    lists, type names in lower case; every primitive pose arrives unchanged."""
    files = sorted((mbm_resources() / "problems").glob("*_panda/scene0001.yaml"))
    families = {path.parent.name: path.read_text() for path in files}
    assert len(families) == 7, sorted(families)
    for family, text in families.items():
        scene = scene_from_moveit_yaml(text, ROOT)
        objects = yaml.safe_load(text)["world"]["collision_objects"]
        assert len(scene) == sum(len(o["primitives"]) for o in objects) > 0, family
        for item in objects:
            assert "header" not in item and "pose" not in item
            for k, (primitive, pose) in enumerate(zip(item["primitives"], item["primitive_poses"])):
                obstacle = scene.obstacle(item["id"] if len(item["primitives"]) == 1 else f"{item['id']}/{k}")
                assert obstacle.kind == primitive["type"] and obstacle.dimensions == tuple(primitive["dimensions"])
                np.testing.assert_allclose(obstacle.pose[:3, 3], pose["position"])
                x, y, z, w = np.array(pose["orientation"]) / np.linalg.norm(pose["orientation"])
                np.testing.assert_allclose(obstacle.pose[:3, 2], [2 * (x * z + y * w), 2 * (y * z - x * w),
                                                                  1 - 2 * (x * x + y * y)], atol=1e-9)


# ---------------------------------------------------------------------------- the node
NODE_SCENE = """
world:
  collision_objects:
    - id: ball
      header: {frame_id: tool0}
      primitives: [{type: sphere, dimensions: [0.05]}]
      primitive_poses: [{position: [0, 0, 0], orientation: [0, 0, 0, 1]}]
    - id: posts
      primitives:
        - {type: cylinder, dimensions: [0.4, 0.05]}
        - {type: box, dimensions: [0.1, 0.1, 0.1]}
      primitive_poses:
        - {position: [2.0, 0, 0.2], orientation: [0, 0, 0, 1]}
        - {position: [-2.0, 0, 0.2], orientation: [0, 0, 0, 1]}
"""


def load_yaml(spinner, text: str):
    from ros_torch_kin.srv import UpdateScene

    client = spinner.node.create_client(UpdateScene, "/ros_torch_kin/update_scene")
    try:
        return spinner.call(client, UpdateScene.Request(operation=UpdateScene.Request.LOAD_YAML, scene_yaml=text))
    finally:
        spinner.node.destroy_client(client)


def ball_position(obstacles) -> np.ndarray:
    ball = next(o for o in obstacles if o.id == "ball")
    return np.array([ball.pose.position.x, ball.pose.position.y, ball.pose.position.z])


@requires_ros
def test_node_load_yaml_replaces_the_scene_and_a_bad_file_changes_nothing(ros_domain, arm7, tmp_path):
    import torch
    from sensor_msgs.msg import JointState

    from ros_torch_kin.kinematics import forward_kinematics
    from ros_torch_kin.ros.client import obstacle
    from ros_torch_kin.srv import UpdateScene

    scene_file = tmp_path / "start.yaml"
    scene_file.write_text("world:\n  collision_objects:\n    - {id: far, primitives: [{type: 2, dimensions: [0.1]}], "
                          "primitive_poses: [{position: [5, 0, 0]}]}\n")
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text(NODE_SCENE.replace("[0.4, 0.05]", "[0.4, -0.05]"))
    topic = f"/moveit_scene_test_{os.getpid()}/joint_states"  # no other test's joint states reach it
    with running_node(ros_domain, {"scene_file": str(scene_file)}, remappings={"joint_states": topic}) as (process, client):
        listed, _ = client.update_scene(UpdateScene.Request.LIST)
        assert [o.id for o in listed] == ["far"], process.log()  # scene_file loaded at start

        spinner = Spinner("moveit_scene_test")
        try:
            client.update_scene(UpdateScene.Request.ADD, [obstacle("old", "sphere", (0.1,), (3, 0, 0, 0, 0, 0, 1))])
            response = load_yaml(spinner, NODE_SCENE)
            assert response.success, response.message
            assert [o.id for o in response.obstacles] == ["ball", "posts/0", "posts/1"]  # replaced whole
            listed, version = client.update_scene(UpdateScene.Request.LIST)
            assert [o.id for o in listed] == ["ball", "posts/0", "posts/1"] and version == response.scene_version

            # 'ball' was in frame tool0: at the tool's position at the zero configuration (no joint state)
            tool = forward_kinematics(arm7, torch.zeros(1, 7, dtype=arm7.dtype), "tool0")[0].numpy()
            np.testing.assert_allclose(ball_position(listed), tool[:3, 3], atol=1e-9)
            report = client.check_collision(np.zeros(7))
            assert report.in_collision[0] and report.link_b[0] == "ball"

            bad = NODE_SCENE.replace("[0.1, 0.1, 0.1]", "[0.1, 0.1]")
            response = load_yaml(spinner, bad)
            assert not response.success
            assert "collision_objects[1] 'posts': primitives[1].dimensions: BOX needs 3 values" in response.message
            assert [o.id for o in response.obstacles] == ["ball", "posts/0", "posts/1"]
            response = load_yaml(spinner, NODE_SCENE.replace("tool0", "camera"))
            assert not response.success
            assert "'ball': header.frame_id 'camera' is not the root 'base_link' nor a robot link" in response.message
            response = load_yaml(spinner, str(scene_file))  # text, never a file name the node would read
            assert not response.success and "scene_yaml must hold a mapping" in response.message
            response = load_yaml(spinner, "")
            assert not response.success and "scene_yaml is empty" in response.message
            ok, reason = set_parameters(spinner, scene_file=str(bad_file))[0]
            assert not ok and f"'{bad_file}'" in reason
            assert "collision_objects[1] 'posts': primitives[0].dimensions: CYLINDER radius must be positive" in reason
            listed, version_after = client.update_scene(UpdateScene.Request.LIST)
            assert [o.id for o in listed] == ["ball", "posts/0", "posts/1"] and version_after == version

            # with a complete joint state, a link frame is placed at it
            q = random_q(arm7, 1, seed=4)
            tool = forward_kinematics(arm7, q, "tool0")[0].numpy()
            publisher = spinner.node.create_publisher(JointState, topic, 10)
            message = JointState(name=list(arm7.joint_names), position=q[0].tolist())

            def ball_at_the_tool() -> bool:
                publisher.publish(message)
                response = load_yaml(spinner, NODE_SCENE)
                return response.success and np.allclose(ball_position(response.obstacles), tool[:3, 3], atol=1e-6)

            assert wait_until(ball_at_the_tool, timeout=20, step=0.2)

            assert set_parameters(spinner, scene_file=str(scene_file)) == [(True, "")]  # loaded when set
            listed, _ = client.update_scene(UpdateScene.Request.LIST)
            assert [o.id for o in listed] == ["far"]
        finally:
            spinner.close()


@requires_ros
def test_node_with_a_bad_scene_file_logs_it_and_serves_an_empty_scene(ros_domain, tmp_path):
    from ros_torch_kin.srv import UpdateScene

    scene_file = tmp_path / "bad.yaml"
    scene_file.write_text(NODE_SCENE.replace("type: sphere", "type: cone"))
    with running_node(ros_domain, {"scene_file": str(scene_file)}) as (process, client):
        listed, _ = client.update_scene(UpdateScene.Request.LIST)
        assert listed == []
        assert f"'{scene_file}'" in process.log() and "cone is not supported" in process.log()
        assert not client.check_collision(np.zeros(7)).in_collision[0]  # still serving
