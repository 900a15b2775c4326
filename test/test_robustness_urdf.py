"""Robustness of robot descriptions (commit 9a2881a): non-finite and out-of-range URDF numbers are
refused by joint and attribute, CAD visual markup is skipped with one warning, long lists are
summarised, robots without independent joints are served, a float32 overflow never reaches a
client as success, and descriptions on the topic are built off the executor (newest valid wins,
oversized ones refused).

The library tests need nothing but the package; the tests against the real node skip (with
``requires_ros``) when the colcon-built package is not installed.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from conftest import real_urdf
from ros_fixtures import ROS_SKIP, Spinner, requires_ros, running_node, wait_until

from ros_torch_kin.kinematics import Chain, compute_jacobian, forward_kinematics, parse_urdf
from ros_torch_kin.robots import bundled_urdf
from ros_torch_kin.robots.generated import random_chain_urdf

LIMIT = '<limit lower="-1" upper="1" effort="1" velocity="1"/>'


def robot(body: str, links=("a", "b"), name="r") -> str:
    return f'<robot name="{name}">' + "".join(f'<link name="{link}"/>' for link in links) + body + "</robot>"


def joint(name, parent, child, kind="revolute", extra="", limit=LIMIT) -> str:
    return (f'<joint name="{name}" type="{kind}"><parent link="{parent}"/><child link="{child}"/>'
            f"{extra}{limit}</joint>")


# ---------------------------------------------------------------------------------- 1. numbers
#: (case id, URDF body with the bad joint 'wrist' (a -> b), attribute the message must name)
NON_FINITE = [
    ("limit_lower_-inf_upper_inf", joint("wrist", "a", "b", limit='<limit lower="-inf" upper="inf" effort="1" velocity="1"/>'),
     "<limit lower>"),
    ("limit_upper_inf", joint("wrist", "a", "b", limit='<limit lower="-1" upper="inf" effort="1" velocity="1"/>'),
     "<limit upper>"),
    ("limit_lower_nan", joint("wrist", "a", "b", limit='<limit lower="nan" upper="1" effort="1" velocity="1"/>'),
     "<limit lower>"),
    ("limit_velocity_nan", joint("wrist", "a", "b", limit='<limit lower="-1" upper="1" effort="1" velocity="nan"/>'),
     "<limit velocity>"),
    ("limit_effort_nan", joint("wrist", "a", "b", limit='<limit lower="-1" upper="1" effort="nan" velocity="1"/>'),
     "<limit effort>"),
    ("continuous_limit_nan", joint("wrist", "a", "b", "continuous", limit='<limit effort="1" velocity="nan"/>'),
     "<limit velocity>"),
    ("mimic_multiplier_nan", joint("lead", "a", "c") + joint("wrist", "a", "b", extra='<mimic joint="lead" multiplier="nan"/>'),
     "<mimic multiplier>"),
    ("mimic_offset_inf", joint("lead", "a", "c") + joint("wrist", "a", "b", extra='<mimic joint="lead" offset="inf"/>'),
     "<mimic offset>"),
    ("origin_xyz_nan", joint("wrist", "a", "b", extra='<origin xyz="nan 0 0"/>'), "<origin xyz>"),
    ("origin_rpy_inf", joint("wrist", "a", "b", extra='<origin rpy="0 inf 0"/>'), "<origin rpy>"),
    ("fixed_origin_xyz_-inf", joint("wrist", "a", "b", "fixed", '<origin xyz="0 0 -inf"/>', limit=""), "<origin xyz>"),
    ("axis_nan", joint("wrist", "a", "b", extra='<axis xyz="nan 0 1"/>'), "<axis xyz>"),
    ("safety_controller_k_velocity_nan", joint("wrist", "a", "b", extra='<safety_controller k_velocity="nan"/>'),
     "<safety_controller k_velocity>"),
    ("dynamics_damping_inf", joint("wrist", "a", "b", extra='<dynamics damping="inf"/>'), "<dynamics damping>"),
]


def links_of(body: str) -> tuple[str, ...]:
    """The links a URDF body's joints name, so the robot is a valid tree but for its one bad number."""
    return tuple(sorted(set(re.findall(r'link="(\w+)"', body))))


@pytest.mark.parametrize("body, attribute", [c[1:] for c in NON_FINITE], ids=[c[0] for c in NON_FINITE])
def test_non_finite_urdf_number_is_refused_naming_joint_and_attribute(body, attribute):
    urdf = robot(body, links=links_of(body))
    pattern = f"joint 'wrist': {re.escape(attribute)} is (nan|-?inf)"
    with pytest.raises(ValueError, match=pattern):
        parse_urdf(urdf)
    with pytest.raises(ValueError, match=pattern):
        Chain.from_urdf(urdf, device="cpu", dtype=torch.float64)


def test_the_same_urdfs_with_finite_numbers_parse():
    """The cases above fail because of their one bad number, not their shape."""
    for _, body, _ in NON_FINITE:
        fixed = re.sub(r'"-?inf"|"nan"|"0 inf 0"|"nan 0 0"|"0 0 -inf"|"nan 0 1"', '"1"', body)
        fixed = fixed.replace('xyz="1"', 'xyz="0 0 1"').replace('rpy="1"', 'rpy="0 1 0"')
        Chain.from_urdf(robot(fixed, links=links_of(fixed)), device="cpu", dtype=torch.float64)


ORIGIN_1E39 = robot(joint("elbow", "a", "b", extra='<origin xyz="1e39 0 0"/>'))


def test_origin_beyond_float32_is_refused_for_float32_naming_joint_and_dtype():
    with pytest.raises(ValueError, match=r"joint 'elbow'.*float32"):
        Chain.from_urdf(ORIGIN_1E39, device="cpu", dtype=torch.float32)
    # behind a fixed joint too (the fixed joint is folded into its child's constant)
    fixed = robot(joint("mount", "a", "b", "fixed", '<origin xyz="0 1e39 0"/>', limit=""))
    with pytest.raises(ValueError, match=r"joint 'mount'.*float32"):
        Chain.from_urdf(fixed, device="cpu", dtype=torch.float32)


def test_origin_beyond_float32_builds_in_float64_and_fk_carries_it():
    chain = Chain.from_urdf(ORIGIN_1E39, device="cpu", dtype=torch.float64)
    T = forward_kinematics(chain, torch.zeros(1, dtype=torch.float64), links="b")
    assert T[0, 3].item() == 1e39 and torch.isfinite(T).all()


def test_huge_axis_is_normalised_without_overflow():
    description = parse_urdf(robot(joint("j", "a", "b", extra='<axis xyz="1e300 1e300 0"/>')))
    np.testing.assert_allclose(description.joints[0].axis, [math.sqrt(0.5), math.sqrt(0.5), 0.0], rtol=1e-15)
    chain = Chain.from_urdf(robot(joint("j", "a", "b", extra='<axis xyz="1e300 1e300 0"/>')), device="cpu",
                            dtype=torch.float64)
    T = forward_kinematics(chain, torch.tensor([0.3], dtype=torch.float64), links="b")
    assert torch.isfinite(T).all()
    np.testing.assert_allclose(T[:3, :3].numpy() @ [1, 1, 0], [1, 1, 0], atol=1e-12)  # the axis is fixed


# ---------------------------------------------------------------------------------- 2. CAD markup
TEXTURE = '<material name="cad_texture"><texture/></material>'


def with_empty_texture(urdf: str) -> str:
    """``urdf`` with an empty ``<texture/>`` material inserted into its first link's first
    ``<visual>`` (urdf_parser_py rejects it, urdfdom accepts it)."""
    start = urdf.index("<visual")
    end = urdf.index(">", start) + 1
    return urdf[:end] + TEXTURE + urdf[end:]


def collisions_per_link(urdf: str) -> dict[str, int]:
    return {link.get("name"): len(link.findall("collision")) for link in ET.fromstring(urdf).iter("link")}


@pytest.mark.parametrize("name", [
    "panda",
    "ur5",
    "tiago",
])
def test_cad_texture_markup_is_skipped_with_one_warning_and_the_same_fk(name):
    original = real_urdf(name)
    modified = with_empty_texture(original)
    from urdf_parser_py import urdf as urdf_module

    with pytest.raises(Exception):  # the premise: urdf_parser_py alone refuses the modified URDF
        urdf_module.URDF.from_xml_string(modified)
    reference = Chain.from_urdf(original, device="cpu", dtype=torch.float64)
    chain = Chain.from_urdf(modified, device="cpu", dtype=torch.float64)
    skipped = [w for w in chain.warnings if "skipped" in w]
    assert len(skipped) == 1, chain.warnings
    assert "<visual>" in skipped[0] and "texture" in skipped[0], skipped[0]
    assert not any("skipped" in w for w in reference.warnings)
    assert chain.link_names == reference.link_names and chain.joint_names == reference.joint_names
    q = torch.rand(16, reference.num_dofs, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 0.5
    assert torch.equal(forward_kinematics(chain, q), forward_kinematics(reference, q))


@pytest.mark.parametrize("name", ["panda", "ur5", "tiago"])
def test_cad_texture_fallback_still_builds_the_same_kinematics_for_every_robot(name):
    """The part of the promise that holds for panda too: it loads and its FK is unchanged."""
    original = real_urdf(name)
    reference = Chain.from_urdf(original, device="cpu", dtype=torch.float64)
    chain = Chain.from_urdf(with_empty_texture(original), device="cpu", dtype=torch.float64)
    q = torch.rand(8, reference.num_dofs, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.equal(forward_kinematics(chain, q), forward_kinematics(reference, q))


@pytest.mark.parametrize("name", ["ur5", "tiago"])
def test_cad_texture_fallback_leaves_the_collision_markup_of_the_description(name):
    """The served model keeps the raw text (the collision model reads <collision> from it): the
    stripping is done on the parser's own copy."""
    from ros_torch_kin.ros.served_model import build_model

    original = real_urdf(name)
    modified = with_empty_texture(original)
    model = build_model(modified, "test", torch.device("cpu"), torch.float32, "error")
    assert model.urdf == modified
    counts = collisions_per_link(model.urdf)
    assert counts == collisions_per_link(original) and sum(counts.values()) > 0
    assert TEXTURE.split(">")[0] in model.urdf


# ---------------------------------------------------------------------------------- 3. long lists
def test_twenty_thousand_root_links_are_summarised():
    urdf = "<robot name='many'>" + "".join(f"<link name='l{i}'/>" for i in range(20_000)) + "</robot>"
    with pytest.raises(ValueError) as caught:
        parse_urdf(urdf)
    message = str(caught.value)
    assert len(message) < 500, message[:1000]
    assert re.match(r"^(the URDF has )?20,000 root links", message), message


# ---------------------------------------------------------------------------------- 4. J = 0
SINGLE = '<robot name="single"><link name="only"/></robot>'
HEAD = robot(
    joint("camera_joint", "base", "camera", "fixed", '<origin xyz="0.1 0 0.2" rpy="0 0.5 0"/>', limit="")
    + joint("imu_joint", "camera", "imu", "fixed", '<origin xyz="0 0.3 0"/>', limit=""),
    links=("base", "camera", "imu"), name="sensor_head",
)
#: the head's link poses x y z qx qy qz qw, by hand: a rotation of 0.5 rad about y, then 0.3 m along y
HEAD_POSES = np.array([
    [0, 0, 0, 0, 0, 0, 1],
    [0.1, 0, 0.2, 0, math.sin(0.25), 0, math.cos(0.25)],
    [0.1, 0.3, 0.2, 0, math.sin(0.25), 0, math.cos(0.25)],
])


def _pose_matrix(pose) -> np.ndarray:
    x, y, z, qx, qy, qz, qw = pose
    T = np.eye(4)
    T[:3, :3] = [
        [1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qz * qw), 2 * (qx * qz + qy * qw)],
        [2 * (qx * qy + qz * qw), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qx * qw)],
        [2 * (qx * qz - qy * qw), 2 * (qy * qz + qx * qw), 1 - 2 * (qx * qx + qy * qy)],
    ]
    T[:3, 3] = (x, y, z)
    return T


@pytest.mark.parametrize("urdf, expected", [(SINGLE, np.eye(4)[None]),
                                            (HEAD, np.stack([_pose_matrix(p) for p in HEAD_POSES]))],
                         ids=["single_link", "fixed_sensor_head"])
def test_robot_without_independent_joints_fk_and_jacobian(urdf, expected):
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float64)
    assert chain.num_dofs == 0 and chain.joint_names == ()
    q = torch.zeros(4, 0, dtype=torch.float64)
    T = forward_kinematics(chain, q)
    assert T.shape == (4, len(expected), 4, 4)
    np.testing.assert_allclose(T.numpy(), np.broadcast_to(expected, T.shape), atol=1e-15)
    single = forward_kinematics(chain, torch.zeros(0, dtype=torch.float64))
    np.testing.assert_allclose(single.numpy(), expected, atol=1e-15)
    J = compute_jacobian(chain, q, chain.link_names[-1])
    assert J.shape == (4, 6, 0)


# ================================================================================== the real node
_COUNTER = itertools.count()


def unique_name(what: str) -> str:
    return f"rtk_{what}_{os.getpid()}_{next(_COUNTER)}"


def call(client, service, request, timeout=30.0):
    """The raw response (success or not) of ``service`` (a client's rclpy service client)."""
    assert service.wait_for_service(timeout_sec=timeout), f"{service.srv_name} not available"
    future = service.call_async(request)
    client._executor.spin_until_future_complete(future, timeout_sec=timeout)
    assert future.done(), f"no answer from {service.srv_name} within {timeout} s"
    return future.result()


def set_node_parameters(spinner, node_name, **values):
    """[(successful, reason)] from /<node_name>/set_parameters."""
    from rcl_interfaces.msg import Parameter
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter as RclpyParameter

    client = spinner.node.create_client(SetParameters, f"/{node_name}/set_parameters")
    request = SetParameters.Request(parameters=[
        Parameter(name=k, value=RclpyParameter(k, value=v).get_parameter_value()) for k, v in values.items()])
    result = spinner.call(client, request)
    spinner.node.destroy_client(client)
    return [(r.successful, r.reason) for r in result.results]


def fk_request(positions, **fields):
    from ros_torch_kin.srv import ComputeFK

    request = ComputeFK.Request(**fields)
    request.positions = [float(v) for v in positions]
    return request


def poses_of(response) -> np.ndarray:
    return np.asarray(response.poses, dtype=np.float64).reshape(response.batch_size, -1, 7)


@pytest.fixture()
def head_node(ros_domain):
    """The real node serving the sensor head (J = 0), its joint_states and link_poses topics
    private to this test; yields (process, client, spinner, joint_states publisher, received)."""
    if ROS_SKIP:
        pytest.skip(ROS_SKIP)
    from sensor_msgs.msg import JointState

    from ros_torch_kin.msg import LinkPoses

    name = unique_name("head")
    spinner = Spinner(f"{name}_tester")
    received = []
    spinner.node.create_subscription(LinkPoses, f"/{name}/link_poses", received.append, 10)
    joint_states = spinner.node.create_publisher(JointState, f"/{name}/joint_states", 10)
    parameters = {"robot_description": HEAD, "end_effector_link": "imu"}
    try:
        with running_node(ros_domain, parameters, name=name,
                          remappings={"joint_states": f"/{name}/joint_states"}) as (process, client):
            yield process, client, spinner, joint_states, received
    finally:
        spinner.close()


@requires_ros
def test_node_serves_a_fixed_only_robot_with_empty_positions(head_node):
    from ros_torch_kin.srv import ComputeJacobian

    _, client, _, _, _ = head_node
    model = client.robot_model()
    assert model.name == "sensor_head" and model.joint_names == () and model.link_names == ("base", "camera", "imu")
    response = call(client, client._fk, fk_request([]))
    assert response.success, response.message
    assert response.batch_size == 1 and list(response.link_names) == ["base", "camera", "imu"]
    np.testing.assert_allclose(poses_of(response)[0], HEAD_POSES, atol=1e-6)
    assert list(response.within_limits) == [True]
    # a link subset and another reference frame work as for any robot
    response = call(client, client._fk, fk_request([], link_names=["imu"], reference_frame="camera"))
    assert response.success, response.message
    np.testing.assert_allclose(poses_of(response)[0, 0], [0, 0.3, 0, 0, 0, 0, 1], atol=1e-6)
    # the Jacobian of a robot without joints has no columns
    request = ComputeJacobian.Request(link_name="imu")
    response = call(client, client._jacobian, request)
    assert response.success, response.message
    assert response.batch_size == 1 and len(response.jacobians) == 0 and list(response.joint_names) == []
    np.testing.assert_allclose(np.asarray(response.poses), HEAD_POSES[2], atol=1e-6)


@requires_ros
def test_node_refuses_positions_for_a_robot_without_joints(head_node):
    _, client, _, _, _ = head_node
    response = call(client, client._fk, fk_request([0.0]))
    assert not response.success and "positions" in response.message, response.message
    response = call(client, client._fk, fk_request([], joint_names=["camera_joint"]))
    assert not response.success and "camera_joint" in response.message, response.message
    assert call(client, client._fk, fk_request([])).success  # and keeps serving


@requires_ros
def test_node_publishes_link_poses_of_a_robot_without_joints_for_an_empty_joint_state(head_node):
    from sensor_msgs.msg import JointState

    _, _, _, joint_states, received = head_node
    assert wait_until(lambda: joint_states.get_subscription_count() > 0)
    message = JointState()
    message.header.stamp.sec = 7
    deadline = time.monotonic() + 10  # joint_states is best effort: publish until one arrives
    while not received and time.monotonic() < deadline:
        joint_states.publish(message)
        time.sleep(0.2)
    assert received, "no ~/link_poses for a JointState without names"
    out = received[-1]
    assert out.header.stamp.sec == 7 and out.header.frame_id == "base"
    assert list(out.link_names) == ["base", "camera", "imu"]
    got = np.array([[p.position.x, p.position.y, p.position.z, p.orientation.x, p.orientation.y,
                     p.orientation.z, p.orientation.w] for p in out.poses])
    np.testing.assert_allclose(got, HEAD_POSES, atol=1e-6)


@requires_ros
def test_node_serves_a_single_link_robot(ros_domain):
    from ros_torch_kin.srv import ComputeGradient, ComputeJacobian

    with running_node(ros_domain, {"robot_description": SINGLE, "end_effector_link": "only"},
                      name=unique_name("single")) as (_, client):
        response = call(client, client._fk, fk_request([]))
        assert response.success, response.message
        assert response.batch_size == 1 and list(response.link_names) == ["only"]
        np.testing.assert_allclose(poses_of(response)[0], [[0, 0, 0, 0, 0, 0, 1]], atol=0)
        response = call(client, client._fk, fk_request([0.0]))
        assert not response.success and "positions" in response.message, response.message
        response = call(client, client._jacobian, ComputeJacobian.Request())
        assert response.success and response.batch_size == 1 and len(response.jacobians) == 0, response.message
        request = ComputeGradient.Request(mode=ComputeGradient.Request.VECTOR_JACOBIAN_PRODUCT, link_names=["only"])
        request.forces, request.torques = [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]
        response = call(client, client._gradient, request)
        assert response.success and response.batch_size == 1 and len(response.gradients) == 0, response.message


# ---------------------------------------------------------------------------------- 5. last guard
#: A valid URDF whose float32 FK overflows: each origin fits float32 (3.4e38), their sum does not.
OVERFLOW = robot(
    joint("j1", "a", "b", extra='<origin xyz="3e38 0 0"/><axis xyz="0 0 1"/>')
    + joint("j2", "b", "c", extra='<origin xyz="3e38 0 0"/><axis xyz="0 0 1"/>'),
    links=("a", "b", "c"), name="overflow",
)


@requires_ros
def test_float32_overflow_is_answered_with_success_false_naming_poses(ros_domain):
    from ros_torch_kin.srv import ComputeJacobian

    with running_node(ros_domain, {"robot_description": OVERFLOW, "end_effector_link": "c"},
                      name=unique_name("overflow32")) as (_, client):
        assert client.robot_model().dtype == "float32"
        response = call(client, client._fk, fk_request([0.0, 0.0]))
        assert not response.success, list(response.poses)
        assert "poses" in response.message and "float64" in response.message, response.message
        response = call(client, client._jacobian, ComputeJacobian.Request(link_name="c", positions=[0.0, 0.0]))
        assert not response.success and "float64" in response.message, response.message
        # what does not overflow is still served: the first link only
        response = call(client, client._fk, fk_request([0.0, 0.0], link_names=["b"]))
        assert response.success, response.message
        assert poses_of(response)[0, 0, 0] == pytest.approx(3e38, rel=1e-6)


@requires_ros
def test_the_overflowing_robot_is_served_by_a_float64_node(ros_domain):
    with running_node(ros_domain, {"robot_description": OVERFLOW, "end_effector_link": "c", "dtype": "float64"},
                      name=unique_name("overflow64")) as (_, client):
        assert client.robot_model().dtype == "float64"
        response = call(client, client._fk, fk_request([0.0, 0.0]))
        assert response.success, response.message
        poses = poses_of(response)
        assert np.isfinite(poses).all() and poses[0, 2, 0] == pytest.approx(6e38, rel=1e-12)


# ---------------------------------------------------------------------------------- 6. the topic
def unconnected_links(count: int, name="many") -> str:
    return f"<robot name='{name}'>" + "".join(f"<link name='l{i}'/>" for i in range(count)) + "</robot>"


def fixed_star(count: int, name="star") -> str:
    """A valid robot: a base with ``count`` fixed children (seconds to build for 15,000)."""
    links = '<link name="base"/>' + "".join(f'<link name="s{i}"/>' for i in range(count))
    joints = "".join(f'<joint name="f{i}" type="fixed"><parent link="base"/><child link="s{i}"/>'
                     f'<origin xyz="{i * 1e-3:.3f} 0 0"/></joint>' for i in range(count))
    return f'<robot name="{name}">{links}{joints}</robot>'


@pytest.fixture()
def described(ros_domain):
    """The real node on the bundled arm with a robot_description topic of its own; yields
    (process, client, spinner, publish(text) -> None, node name)."""
    if ROS_SKIP:
        pytest.skip(ROS_SKIP)
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from std_msgs.msg import String

    name = unique_name("described")
    spinner = Spinner(f"{name}_tester")
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    publisher = spinner.node.create_publisher(String, f"/{name}/robot_description", latched)

    def publish(text: str) -> None:
        publisher.publish(String(data=text))
        publisher.wait_for_all_acked(rclpy_duration(10.0))  # in the node's reader (not yet parsed)

    try:
        with running_node(ros_domain, name=name,
                          remappings={"robot_description": f"/{name}/robot_description"}) as (process, client):
            assert wait_until(lambda: publisher.get_subscription_count() > 0)
            yield process, client, spinner, publish, name
    finally:
        spinner.close()


def rclpy_duration(seconds: float):
    from rclpy.duration import Duration

    return Duration(seconds=seconds)


def model_identity(client) -> tuple[str, int, int]:
    from ros_torch_kin.srv import GetRobotModel

    response = call(client, client._model, GetRobotModel.Request())
    assert response.success, response.message
    return response.robot_name, response.loaded_at.sec, response.loaded_at.nanosec


def refusal_lines(process) -> list[str]:
    return [line for line in process.log().splitlines() if "ignoring the description" in line]


@requires_ros
def test_services_answer_with_the_current_model_while_a_big_description_is_parsed(described):
    process, client, _, publish, _ = described
    before = model_identity(client)
    assert before[0] == "rtk_arm7"
    publish(unconnected_links(60_000))
    time.sleep(0.3)  # taken by the executor and handed to a worker
    answers = []
    for _ in range(3):
        answers.append(model_identity(client))
        logged_already = bool(refusal_lines(process))
    assert answers == [before] * 3
    assert not logged_already, "get_robot_model was only answered after the big description was parsed"
    assert process.wait_for_log("60,000 root links", timeout=60), process.log()[-2000:]
    (line,) = refusal_lines(process)
    assert len(line) < 2000, line[:3000]
    assert model_identity(client) == before


@requires_ros
def test_description_above_max_description_bytes_is_refused_with_size_and_limit(described):
    process, client, spinner, publish, name = described
    before = model_identity(client)
    assert set_node_parameters(spinner, name, max_description_bytes=5000) == [(True, "")]
    other = random_chain_urdf(3, 20, name="too_big_robot")
    size = len(other.encode())
    assert size > 5000
    publish(other)
    assert process.wait_for_log("above max_description_bytes", timeout=20), process.log()[-2000:]
    (line,) = refusal_lines(process)
    assert f"{size:,} bytes" in line and "5,000" in line, line
    assert model_identity(client) == before
    # the same description is served once the limit allows it
    assert set_node_parameters(spinner, name, max_description_bytes=10_000_000) == [(True, "")]
    publish(other)
    assert wait_until(lambda: model_identity(client)[0] == "too_big_robot", timeout=20), process.log()[-2000:]


@requires_ros
def test_after_bad_descriptions_the_next_valid_one_is_served(described):
    process, client, _, publish, _ = described
    before = model_identity(client)
    bad = [
        "<robot name='cut'><link name='a'/><joint",
        robot(joint("j", "a", "b", extra='<origin xyz="nan 0 0"/>')),
        unconnected_links(3),
        unconnected_links(60_000),  # seconds to parse; its refusal is one short log line
    ]
    for k, text in enumerate(bad, 1):
        publish(text)
        assert wait_until(lambda: len(refusal_lines(process)) == k, timeout=60), process.log()[-2000:]
        assert model_identity(client) == before
    big_refusal = refusal_lines(process)[-1]
    assert "60,000 root links" in big_refusal and len(big_refusal) < 2000, big_refusal[:3000]
    publish(random_chain_urdf(4, 3, name="after_the_bad_ones"))
    assert wait_until(lambda: model_identity(client)[0] == "after_the_bad_ones", timeout=20), process.log()[-2000:]
    assert model_identity(client)[1:] != before[1:]


#: Valid, and slow to build (about 2 s here with the collision model): a description still being
#: built when the next one arrives.
SLOW_VALID = 2000


def wait_for_the_slow_one(process, timeout=60.0) -> bool:
    """Until the node is done with slow_star: served, or dropped for a newer one."""
    log = process.log
    return wait_until(lambda: "serving robot 'slow_star'" in log() or "this one is dropped" in log(), timeout)


@requires_ros
def test_a_newer_description_wins_over_a_slower_older_one(described):
    process, client, _, publish, _ = described
    publish(fixed_star(SLOW_VALID, name="slow_star"))
    time.sleep(0.3)
    publish(random_chain_urdf(5, 3, name="quick_robot"))
    assert wait_for_the_slow_one(process), process.log()[-2000:]
    assert wait_until(lambda: model_identity(client)[0] == "quick_robot", timeout=30), process.log()[-2000:]
    time.sleep(0.5)
    assert model_identity(client)[0] == "quick_robot"


@requires_ros
def test_a_revert_to_the_served_description_wins_over_a_slower_older_one(described):
    process, client, _, publish, _ = described
    publish(fixed_star(SLOW_VALID, name="slow_star"))
    time.sleep(0.3)
    publish(bundled_urdf())  # the text the node serves now: the newest description
    assert wait_for_the_slow_one(process), process.log()[-2000:]
    time.sleep(0.5)
    assert model_identity(client)[0] == "rtk_arm7", "the older, slower description replaced the newest one"


@requires_ros
def test_revert_ordering_in_the_description_handler_itself(ros_domain):
    """The node's own handler, driven in this process with both descriptions in flight at once
    (over ROS the two could also be serialised by the executor)."""
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String

    from ros_torch_kin.ros.node import KinematicsNode

    node = KinematicsNode(namespace=unique_name("inprocess"))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        assert node.model.chain.name == "rtk_arm7"
        slow = executor.create_task(node._on_robot_description(String(data=fixed_star(1000, name="slow_star"))))
        # as from a subscription, the older message's callback starts first (it takes its ticket
        # before awaiting its build); the order of tasks created together is the executor's choice
        tickets = node._description_tickets
        started = time.monotonic() + 30
        while node._description_tickets == tickets and time.monotonic() < started:
            executor.spin_once(timeout_sec=0.05)
        assert node._description_tickets > tickets and not slow.done()
        revert = executor.create_task(node._on_robot_description(String(data=bundled_urdf())))
        deadline = time.monotonic() + 60
        while not (slow.done() and revert.done()) and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert slow.done() and revert.done()
        assert node.model.chain.name == "rtk_arm7", "the older description won over the newer revert"
    finally:
        executor.remove_node(node)
        node.destroy_node()
