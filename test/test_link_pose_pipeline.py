"""The joint_states pipeline's fast path: the float64 numpy FK of one configuration against
``forward_kinematics`` (bundled arm, real robots with mimic joints, a robot without joints), and
the pre-serialized messages against rclpy's own (de)serializer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_q, real_urdf
from ros_fixtures import requires_ros

from ros_torch_kin.kinematics import Chain, forward_kinematics, invert_transform, matrix_to_pose_xyzw
from ros_torch_kin.robots import bundled_urdf
from ros_torch_kin.ros.single_fk import SingleConfigurationFK

#: max |difference| to forward_kinematics, per chain dtype (m and quaternion components)
TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-12}
ROBOTS = ["arm7", "panda", "talos", "tiago", "ur5", "kinova"]

NO_JOINTS_URDF = """<robot name="statue">
  <link name="base"/><link name="head"/>
  <joint name="neck" type="fixed"><parent link="base"/><child link="head"/><origin xyz="0 0 1" rpy="0.3 0 0"/></joint>
</robot>"""


def urdf_of(name: str) -> str:
    return bundled_urdf() if name == "arm7" else real_urdf(name)


def assert_poses_close(got: np.ndarray, expected: np.ndarray, atol: float) -> None:
    """(N, 7) poses: positions within ``atol``, quaternions within ``atol`` up to sign (a rotation
    by about 180° has w ≈ 0, whose sign float32 rounding may flip)."""
    np.testing.assert_allclose(got[:, :3], expected[:, :3], rtol=0, atol=atol)
    q, q_expected = got[:, 3:], expected[:, 3:]
    difference = np.minimum(np.abs(q - q_expected).max(axis=1), np.abs(q + q_expected).max(axis=1))
    assert difference.max() <= atol, f"quaternions differ by {difference.max():.3g} (link {difference.argmax()})"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("robot", ROBOTS)
def test_single_configuration_fk_matches_forward_kinematics(robot, dtype):
    chain = Chain.from_urdf(urdf_of(robot), device="cpu", dtype=dtype)
    fk = SingleConfigurationFK(chain)
    frame = chain.num_links // 2  # some link other than the root, as base_link
    for q in random_q(chain, 8, seed=7):
        with torch.no_grad():
            T = forward_kinematics(chain, q)
        q64 = q.double().numpy()
        got = fk(q64)
        assert got.shape == (chain.num_links, 4, 4) and got.dtype == np.float64
        np.testing.assert_allclose(got, T.double().numpy(), rtol=0, atol=TOLERANCE[dtype])
        # poses in the root and in another link's frame, quaternions with w >= 0 as the library's
        for index, transforms in ((0, T), (frame, invert_transform(T[frame]) @ T)):
            expected = matrix_to_pose_xyzw(transforms.double().numpy())
            assert_poses_close(fk.poses(q64, index), expected, 10 * TOLERANCE[dtype])


def test_mimic_joints_follow_their_leaders():
    chain = Chain.from_urdf(real_urdf("panda"), device="cpu", dtype=torch.float64)
    assert len(chain.moving_joint_names) > chain.num_dofs, "the panda's second finger mimics the first"
    fk = SingleConfigurationFK(chain)
    q = random_q(chain, 1, seed=3)[0]
    np.testing.assert_allclose(fk(q.numpy()), forward_kinematics(chain, q).numpy(), rtol=0, atol=1e-12)


def test_a_robot_without_joints():
    chain = Chain.from_urdf(NO_JOINTS_URDF, device="cpu", dtype=torch.float32)
    assert chain.num_dofs == 0
    fk = SingleConfigurationFK(chain)
    expected = forward_kinematics(chain, torch.zeros(0)).double().numpy()
    np.testing.assert_allclose(fk(np.zeros(0)), expected, rtol=0, atol=1e-6)


@requires_ros
@pytest.mark.parametrize("raw", [True, False], ids=["serialized", "message"])
def test_serialized_poses_read_back_as_the_messages(raw):
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import PoseStamped
    from rclpy.serialization import deserialize_message

    from ros_torch_kin.msg import LinkPoses
    from ros_torch_kin.ros import convert
    from ros_torch_kin.ros.link_pose_publisher import SerializedPoses

    chain = Chain.from_urdf(real_urdf("panda"), device="cpu", dtype=torch.float32)
    poses = SingleConfigurationFK(chain).poses(random_q(chain, 1, seed=2)[0].double().numpy())
    links = LinkPoses(link_names=chain.link_names, poses=convert.pose_msgs(np.zeros((chain.num_links, 7))))
    links.header.frame_id = "panda_link0"
    end = PoseStamped()
    end.header.frame_id = "panda_link0"
    for message, slots, values in ((links, links.poses, poses), (end, [end.pose], poses[-1:])):
        serialized = SerializedPoses(message, slots)
        assert serialized.raw, "rclpy's CDR puts header.stamp first and the poses last"
        serialized.raw = raw  # the fallback: the message object filled in place
        for sec in (5, 6):  # the same object, reused
            payload = serialized.payload(Time(sec=sec, nanosec=42), values + sec)
            read = deserialize_message(payload, type(message)) if raw else payload
            assert isinstance(payload, bytes) == raw
            assert (read.header.stamp.sec, read.header.stamp.nanosec, read.header.frame_id) == (sec, 42, "panda_link0")
            got = [read.pose] if read is end or isinstance(read, PoseStamped) else read.poses
            got = np.array([(p.position.x, p.position.y, p.position.z, p.orientation.x, p.orientation.y,
                             p.orientation.z, p.orientation.w) for p in got])
            np.testing.assert_array_equal(got, values + sec)
        if message is links:
            assert list(read.link_names) == list(chain.link_names)
