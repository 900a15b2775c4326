"""The real node over ROS 2: ~/update_scene ATTACH / DETACH on the bundled arm. A ball attached to
the tool moves with it in ~/check_collision (compared with the library's RobotCollisionModel
carrying the same ball), is listed with its link and shown in ~/collision_markers; DETACH puts
it back where it is; bad requests are refused by name and change nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_q
from ros_fixtures import Spinner, requires_ros, running_node, wait_until

from ros_torch_kin.kinematics import forward_kinematics
from ros_torch_kin.robots import bundled_urdf

pytestmark = requires_ros

BALL = 0.1  # m


@pytest.fixture(scope="module")
def served(ros_domain):
    with running_node(ros_domain, {}) as (process, client):
        yield process, client


@pytest.fixture(scope="module")
def library_model(arm7):
    from ros_torch_kin.collision.robot_collision_model import robot_collision_model_from_urdf

    return robot_collision_model_from_urdf(bundled_urdf(), arm7)


def update(client, operation, obstacles=()):
    from ros_torch_kin.srv import UpdateScene

    return client.update_scene(getattr(UpdateScene.Request, operation), obstacles)


def by_id(id: str, link: str = "", touch_links=()):
    from ros_torch_kin.msg import Obstacle

    return Obstacle(id=id, link=link, touch_links=list(touch_links))


def zero_configuration(arm7) -> torch.Tensor:
    """What the node uses without joint_states: zero clamped into the limits."""
    return torch.zeros(arm7.num_dofs, dtype=arm7.dtype).clamp(arm7.lower_limits, arm7.upper_limits)


def test_attach_by_id_moves_with_the_tool_and_detach_puts_it_back(served, arm7, library_model):
    from ros_torch_kin.collision import AttachedObject, Obstacle, Scene
    from ros_torch_kin.ros.client import obstacle

    _, client = served
    update(client, "CLEAR")
    q0 = zero_configuration(arm7)
    tool = forward_kinematics(arm7.to("cpu", torch.float64), q0.double(), "tool0").numpy()
    centre = tool[:3, :3] @ np.array([0.0, 0.0, BALL + 0.05]) + tool[:3, 3]  # beyond the tool, clear of it
    update(client, "ADD", [obstacle("ball", "sphere", (BALL,), (*centre, 0, 0, 0, 1)),
                           obstacle("post", "box", (0.1, 0.1, 2.0), (0.6, 0.4, 0.0, 0, 0, 0, 1))])
    listed, version = update(client, "ATTACH", [by_id("ball", "tool0", ["link_7"])])
    assert [o.id for o in listed] == ["post", "ball"] and listed[1].link == "tool0"
    assert list(listed[1].touch_links) == ["link_7"]
    np.testing.assert_allclose([listed[1].pose.position.x, listed[1].pose.position.y, listed[1].pose.position.z],
                               [0, 0, BALL + 0.05], atol=1e-6)  # in the tool's frame

    ball = Obstacle.sphere("ball", BALL, np.array([*centre, 0, 0, 0, 1.0]))
    carried = library_model.with_scene(Scene([Obstacle.box("post", (0.1, 0.1, 2.0), np.array([0.6, 0.4, 0, 0, 0, 0, 1.0]))]))
    carried = carried.with_attached([AttachedObject.at_configuration(ball, "tool0", arm7, q0.double().numpy(), ["link_7"])])
    q = random_q(arm7, 512, seed=5)
    report = client.check_collision(q.numpy())
    expected = carried.verdict.in_collision(q).numpy()
    np.testing.assert_array_equal(report.in_collision, expected)
    alone = library_model.with_scene(carried.verdict.scene).verdict.in_collision(q).numpy()
    assert (expected & ~alone).any()  # the ball makes a difference ...
    named = {p for p, hit, free in zip(zip(report.link_a, report.link_b), expected, alone) if hit and not free}
    assert all("ball" in pair for pair in named)  # ... and is named as the pair

    # DETACH: back into the world where the tool holds it now (no joint_states: the same pose)
    listed, version_after = update(client, "DETACH", [by_id("ball")])
    assert version_after == version + 1 and [o.id for o in listed] == ["post", "ball"] and not listed[1].link
    np.testing.assert_allclose([listed[1].pose.position.x, listed[1].pose.position.y, listed[1].pose.position.z],
                               centre, atol=1e-5)
    update(client, "CLEAR")


def test_attach_a_new_shape_in_the_link_frame_and_markers_show_it(served):
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from visualization_msgs.msg import MarkerArray

    from ros_torch_kin.ros.client import obstacle

    _, client = served
    update(client, "CLEAR")
    new = obstacle("tray", "box", (0.1, 0.1, 0.02), (0, 0, 0.08, 0, 0, 0, 1))
    new.link = "flange"
    update(client, "ATTACH", [new])
    listed = client.collision_model()  # over ROS: the carried object is part of the model
    assert listed.message.startswith("carrying tray (flange") and "tray" in listed.enabled_link_a
    spinner = Spinner("attached_marker_listener")
    received = []
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    spinner.node.create_subscription(MarkerArray, "/ros_torch_kin/collision_markers", received.append, latched)
    try:
        assert wait_until(lambda: bool(received) and any(m.ns == "attached" for m in received[-1].markers), 20.0)
        marker = [m for m in received[-1].markers if m.ns == "attached"][0]
        assert marker.header.frame_id == "flange" and abs(marker.pose.position.z - 0.08) < 1e-9
    finally:
        spinner.close()
    update(client, "DETACH", [by_id("tray")])
    update(client, "CLEAR")


BAD = [
    ("ATTACH", dict(id="ball", link="gripper"), "obstacles\\[0\\].link 'gripper' is not a link"),
    ("ATTACH", dict(id="ball", link="tool0", touch_links=["thumb"]), "touch_links\\[0\\] 'thumb' is not a link"),
    ("ATTACH", dict(id="ghost", link="tool0"), "'ghost' is not in the scene and the message has no shape"),
    ("ATTACH", dict(id="ball", link=""), "obstacles\\[0\\].link is empty"),
    ("DETACH", dict(id="ball"), "'ball' is not attached"),
]


@pytest.mark.parametrize("operation, fields, message", BAD)
def test_bad_attachments_are_refused_and_change_nothing(served, operation, fields, message):
    from ros_torch_kin.ros.client import KinematicsError, obstacle

    _, client = served
    update(client, "CLEAR")
    _, version = update(client, "ADD", [obstacle("ball", "sphere", (0.05,), (2, 0, 0, 0, 0, 0, 1))])
    with pytest.raises(KinematicsError, match=message):
        update(client, operation, [by_id(**fields)])
    after, version_after = update(client, "LIST")
    assert [(o.id, o.link) for o in after] == [("ball", "")] and version_after == version
    update(client, "CLEAR")


def test_an_attached_id_cannot_be_added_again_and_attach_is_all_or_nothing(served):
    from ros_torch_kin.ros.client import KinematicsError, obstacle

    _, client = served
    update(client, "CLEAR")
    update(client, "ADD", [obstacle("a", "sphere", (0.03,), (2, 0, 0, 0, 0, 0, 1)),
                           obstacle("b", "sphere", (0.03,), (3, 0, 0, 0, 0, 0, 1))])
    with pytest.raises(KinematicsError, match="obstacles\\[1\\].link 'nowhere'"):
        update(client, "ATTACH", [by_id("a", "tool0"), by_id("b", "nowhere")])
    assert [(o.id, o.link) for o in update(client, "LIST")[0]] == [("a", ""), ("b", "")]
    update(client, "ATTACH", [by_id("a", "tool0")])
    with pytest.raises(KinematicsError, match="'a' is carried by the robot"):
        update(client, "ADD", [obstacle("a", "sphere", (0.03,), (2, 0, 0, 0, 0, 0, 1))])
    with pytest.raises(KinematicsError, match="already attached"):
        update(client, "ATTACH", [by_id("a", "tool0")])
    update(client, "DETACH", [by_id("a")])
    update(client, "CLEAR")


def test_collision_model_listing_with_a_carried_object(arm7):
    """serve_collision_model given the world (the node passes it once node.py registers the
    service with_world): the ball's spheres follow the robot's on tool0, its pairs by its id."""
    from ros_torch_kin.collision import AttachedObject, Obstacle
    from ros_torch_kin.ros.collision_services import serve_collision_model
    from ros_torch_kin.ros.served_model import build_model
    from ros_torch_kin.ros.world_state import WorldState
    from ros_torch_kin.srv import GetCollisionModel

    model = build_model(bundled_urdf(), "test", torch.device("cpu"), torch.float32, "fixed")
    ball = AttachedObject("ball", "tool0", Obstacle.sphere("ball", BALL, [0, 0, 0.1, 0, 0, 0, 1]), ("link_7",))
    world = WorldState().for_model(model).with_attached(WorldState().scene, [ball])
    r = serve_collision_model(model, None, GetCollisionModel.Request(), GetCollisionModel.Response(), world)
    assert r.success and r.message.startswith("carrying ball (tool0, spheres ")
    robot = model.collision.spheres.num_spheres
    assert len(r.sphere_radii) == robot + 1 and r.sphere_links[-1] == arm7.link_index("tool0")
    assert abs(r.sphere_radii[-1] - BALL) < 1e-6 and abs(r.sphere_centers[-1] - 0.1) < 1e-6
    pairs = dict(zip(zip(r.disabled_link_a, r.disabled_link_b), r.disabled_reasons))
    assert pairs[("ball", "tool0")] == "attached to this link" and ("ball", "link_7") in pairs
    assert ("ball", "link_3") in set(zip(r.enabled_link_a, r.enabled_link_b))
    plain = serve_collision_model(model, None, GetCollisionModel.Request(), GetCollisionModel.Response())
    assert len(plain.sphere_radii) == robot and plain.message == ""
