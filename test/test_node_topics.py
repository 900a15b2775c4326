"""The real node's topics: joint_states in, link poses out; robot_description swaps."""

from __future__ import annotations

import itertools
import os
import threading
import time

import numpy as np
import pytest
import torch
from conftest import random_q
from ros_fixtures import Spinner, requires_ros, running_node, wait_until

from ros_torch_kin.kinematics import Chain, forward_kinematics, matrix_to_pose_xyzw
from ros_torch_kin.robots import bundled_urdf
from ros_torch_kin.robots.generated import random_chain_urdf

pytestmark = requires_ros


@pytest.fixture(scope="module")
def arm():
    return Chain.from_urdf(bundled_urdf(), device="cpu", dtype=torch.float64)


_COUNTER = itertools.count()


@pytest.fixture()
def topics(ros_domain):
    """Topics of a node with a name of its own (``topics.node_name``, ``topics.remappings``): a
    previous test's node, gone but still listed by discovery for a while, cannot stand in for it."""
    from geometry_msgs.msg import PoseStamped
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String

    from ros_torch_kin.msg import LinkPoses

    name = f"kin_topics_{os.getpid()}_{next(_COUNTER)}"
    spinner = Spinner(f"{name}_tester")
    node = spinner.node
    received = {"link_poses": [], "end_effector_pose": []}
    node.create_subscription(LinkPoses, f"/{name}/link_poses", received["link_poses"].append, 10)
    node.create_subscription(PoseStamped, f"/{name}/end_effector_pose", received["end_effector_pose"].append, 10)
    joint_states = node.create_publisher(JointState, f"/{name}/joint_states", 10)
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    description = node.create_publisher(String, f"/{name}/robot_description", latched)
    spinner.node_name = name
    spinner.remappings = {"joint_states": f"/{name}/joint_states", "robot_description": f"/{name}/robot_description"}
    yield spinner, joint_states, description, received
    spinner.close()


def start(ros_domain, spinner, parameters=None):
    return running_node(ros_domain, parameters, name=spinner.node_name, remappings=spinner.remappings)


def joint_state(names, positions, stamp_sec):
    from sensor_msgs.msg import JointState

    msg = JointState(name=list(names), position=[float(v) for v in positions])
    msg.header.stamp.sec = stamp_sec
    return msg


def test_joint_states_to_link_poses_partial_messages_any_order(ros_domain, topics, arm):
    spinner, joint_states, _, received = topics
    q = random_q(arm, 1, seed=11)[0].numpy()
    with start(ros_domain, spinner):
        assert wait_until(lambda: joint_states.get_subscription_count() > 0)
        # the gripper driver and an unknown joint in one message, the arm's first half in reverse
        joint_states.publish(joint_state(["finger", "joint_3", "joint_2", "joint_1"], [0.01, q[2], q[1], q[0]], 1))
        time.sleep(0.5)
        assert not received["link_poses"], "nothing is published until every joint has been seen"
        joint_states.publish(joint_state(["joint_7", "joint_5", "joint_6", "joint_4"], [q[6], q[4], q[5], q[3]], 2))
        assert wait_until(lambda: received["link_poses"] and received["end_effector_pose"])
        msg = received["link_poses"][-1]
        assert msg.header.stamp.sec == 2 and msg.header.frame_id == "base_link"
        assert list(msg.link_names) == list(arm.link_names)
        expected = matrix_to_pose_xyzw(forward_kinematics(arm, torch.from_numpy(q))).numpy()
        got = np.array([[p.position.x, p.position.y, p.position.z] for p in msg.poses])
        np.testing.assert_allclose(got, expected[:, :3], rtol=0, atol=3e-5)
        ee = received["end_effector_pose"][-1]
        assert ee.header.stamp.sec == 2
        np.testing.assert_allclose([ee.pose.position.x, ee.pose.position.y, ee.pose.position.z], expected[-1, :3],
                                   rtol=0, atol=3e-5)
        # a later partial message updates only its joints
        joint_states.publish(joint_state(["joint_1"], [q[0] + 0.5], 3))
        assert wait_until(lambda: received["link_poses"][-1].header.stamp.sec == 3)
        q2 = q.copy()
        q2[0] += 0.5
        tip = received["link_poses"][-1].poses[-1].position
        expected2 = forward_kinematics(arm, torch.from_numpy(q2), links="tool0")[:3, 3].numpy()
        np.testing.assert_allclose([tip.x, tip.y, tip.z], expected2, rtol=0, atol=3e-5)


def test_after_a_burst_a_new_state_is_published_promptly_and_in_order(ros_domain, topics):
    # (the rate the pipeline sustains is measured in bench/, not asserted here; joint_states is
    # read with sensor-data QoS, best effort, so states of a burst may be dropped, never queued)
    spinner, joint_states, _, received = topics
    with start(ros_domain, spinner):
        assert wait_until(lambda: joint_states.get_subscription_count() > 0)
        names = [f"joint_{i}" for i in range(1, 8)]
        for k in range(1, 501):  # as fast as this process can publish
            joint_states.publish(joint_state(names, np.full(7, 0.001 * k), k))
        assert wait_until(lambda: received["link_poses"])
        # the robot moved on; like a driver, keep publishing its state (best effort may drop one)
        deadline = time.monotonic() + 5.0
        while received["link_poses"][-1].header.stamp.sec != 1000 and time.monotonic() < deadline:
            joint_states.publish(joint_state(names, np.full(7, 0.7), 1000))
            time.sleep(0.2)
        assert received["link_poses"][-1].header.stamp.sec == 1000
        stamps = [m.header.stamp.sec for m in received["link_poses"]]
        assert stamps == sorted(stamps), "poses are published in the order of the joint states"


def test_slow_request_does_not_block_the_pipeline(ros_domain, topics):
    # a request that computes for seconds with small messages: a large plan (a huge FK batch from
    # the same process as joint_states would measure DDS queueing behind its 50 MB, not the node)
    from sensor_msgs.msg import JointState

    from ros_torch_kin.action import PlanTrajectory

    spinner, joint_states, _, received = topics
    with start(ros_domain, spinner, {"trajectory_max_iterations": 100_000}) as (_, client):
        assert wait_until(lambda: joint_states.get_subscription_count() > 0)
        names = [f"joint_{i}" for i in range(1, 8)]
        done = threading.Event()
        goal = PlanTrajectory.Goal(target_type=PlanTrajectory.Goal.TARGET_POSITION, target_link="tool0",
                                   seeds=512, waypoints=128, time_budget=10.0,
                                   avoid_collisions=False)  # free space: iterates for seconds
        goal.start = JointState(name=names, position=[0.1] * 7)
        goal.target_pose.pose.position.x, goal.target_pose.pose.position.z = 0.5, 0.6

        def slow_request():
            client.plan_trajectory(goal)
            done.set()

        threading.Thread(target=slow_request, daemon=True).start()
        time.sleep(0.3)  # the plan is being computed
        for k in range(1, 21):
            joint_states.publish(joint_state(names, np.zeros(7), k))
            time.sleep(0.02)
        answered = wait_until(lambda: any(m.header.stamp.sec >= 15 for m in received["link_poses"]) or done.is_set(),
                              timeout=10)
        assert answered and not done.is_set(), "joint states must be answered while the plan is still running"
        assert done.wait(60)


def test_robot_description_topic_swaps_the_model_and_a_bad_one_is_ignored(ros_domain, topics, arm):
    from std_msgs.msg import String

    from ros_torch_kin.ros.client import KinematicsError

    spinner, _, description, _ = topics
    other_urdf = random_chain_urdf(3, 5, name="swapped_robot")
    other = Chain.from_urdf(other_urdf, device="cpu", dtype=torch.float64)
    with start(ros_domain, spinner) as (process, client):
        assert client.robot_model().name == "rtk_arm7"
        # a malformed description: logged with the parser's reason, the arm stays
        description.publish(String(data="<robot name='broken'><link name='a'/><joint name='j' type='revolute'>"))
        assert process.wait_for_log("ignoring the description on the robot_description topic")
        assert "not well-formed XML" in process.log()
        assert client.robot_model().name == "rtk_arm7"
        assert client.forward_kinematics(np.zeros(7)).shape == (10, 7)
        # a valid description replaces the model
        description.publish(String(data=other_urdf))
        assert wait_until(lambda: client.robot_model().name == "swapped_robot")
        model = client.robot_model()
        assert model.joint_names == other.joint_names and model.description_source == "topic robot_description"
        q = random_q(other, 4, seed=1)
        poses = client.forward_kinematics(q.numpy())
        np.testing.assert_allclose(poses[..., :3], forward_kinematics(other, q)[..., :3, 3].numpy(), rtol=0, atol=3e-5)
        # a request written for the old robot is refused by name, not misread
        with pytest.raises(KinematicsError, match="unknown joint 'joint_1'|positions has 14 values"):
            client.forward_kinematics(np.zeros((2, 7)), joint_names=list(arm.joint_names))
        with pytest.raises(KinematicsError, match="unknown link 'tool0'"):
            client.jacobian(q.numpy(), "tool0")
        assert "end_effector_link 'tool0' is not a link of robot 'swapped_robot'" in process.log()
