"""The real node process over ROS 2: every service with real data checked against the core library,
every bad input answered with success=false and a message naming the problem, then a good call."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from conftest import random_q
from ros_fixtures import requires_ros, running_node

from ros_torch_kin.kinematics import (
    Chain,
    compute_jacobian,
    forward_kinematics,
    invert_transform,
    matrix_to_pose_xyzw,
    pose_xyzw_to_matrix,
)
from ros_torch_kin.optim import pose_target_cost
from ros_torch_kin.robots import bundled_urdf

pytestmark = requires_ros
F32 = dict(rtol=0, atol=3e-5)  # the node computes in float32 by default; we compare in float64


@pytest.fixture(scope="module")
def served(ros_domain):
    with running_node(ros_domain, {"max_batch": 5000}) as (process, client):
        yield process, client


@pytest.fixture(scope="module")
def arm():
    return Chain.from_urdf(bundled_urdf(), device="cpu", dtype=torch.float64)


def same_rotation(a, b):
    """Quaternion arrays equal up to sign."""
    return np.minimum(np.abs(a - b).max(-1), np.abs(a + b).max(-1))


def test_robot_model_describes_the_bundled_arm(served, arm):
    _, client = served
    model = client.robot_model()
    assert model.name == "rtk_arm7" and model.root_link == "base_link"
    assert model.joint_names == arm.joint_names and model.link_names == arm.link_names
    assert model.joint_types == ("revolute",) * 7
    np.testing.assert_allclose(model.lower_limits, arm.lower_limits.numpy())
    np.testing.assert_allclose(model.velocity_limits, arm.velocity_limits.numpy(), rtol=1e-7)
    assert (model.device, model.dtype, model.max_batch, model.joint_limit_policy) == ("cpu", "float32", 5000, "report")
    assert model.end_effector_link == "tool0" and "bundled robot 'arm7'" in model.description_source


def test_fk_every_link_matches_the_library(served, arm):
    _, client = served
    q = random_q(arm, 3000, seed=1)
    poses, links, within = client.forward_kinematics(q.numpy(), full=True)
    expected = matrix_to_pose_xyzw(forward_kinematics(arm, q)).numpy()
    assert poses.shape == (3000, 10, 7) and links == list(arm.link_names) and within.all()
    np.testing.assert_allclose(poses[..., :3], expected[..., :3], **F32)
    assert same_rotation(poses[..., 3:], expected[..., 3:]).max() < 3e-5
    assert (poses[..., 6] >= 0).all(), "qw >= 0 as documented"


def test_fk_joint_order_link_subset_and_reference_frame(served, arm):
    _, client = served
    q = random_q(arm, 5, seed=2)
    order = [3, 0, 6, 1, 5, 2, 4]
    names = [arm.joint_names[i] for i in order]
    poses, links, _ = client.forward_kinematics(
        q[:, order].numpy(), joint_names=names, links=["tool0", "link_3"], reference_frame="link_2", full=True
    )
    assert links == ["tool0", "link_3"]
    T = forward_kinematics(arm, q)
    relative = invert_transform(T[:, 2:3]) @ T[:, [9, 3]]
    expected = matrix_to_pose_xyzw(relative).numpy()
    np.testing.assert_allclose(poses[..., :3], expected[..., :3], **F32)
    assert same_rotation(poses[..., 3:], expected[..., 3:]).max() < 3e-5


def test_fk_flags_configurations_outside_the_limits(served, arm):
    _, client = served
    q = np.zeros((3, 7))
    q[1, 3] = 2.5  # joint_4 limit is ±2.094
    poses, _, within = client.forward_kinematics(q, full=True)
    assert within.tolist() == [True, False, True]
    expected = matrix_to_pose_xyzw(forward_kinematics(arm, torch.from_numpy(q))).numpy()
    np.testing.assert_allclose(poses[..., :3], expected[..., :3], **F32)  # computed as given ("report")


def test_single_configuration(served, arm):
    _, client = served
    q = random_q(arm, 1, 3)[0]
    pose = client.forward_kinematics(q.numpy(), links=["tool0"])
    assert pose.shape == (1, 7)
    np.testing.assert_allclose(pose[0, :3], forward_kinematics(arm, q, links="tool0")[:3, 3].numpy(), **F32)


def test_jacobian_matches_the_library_with_point_and_column_order(served, arm):
    _, client = served
    q = random_q(arm, 50, seed=4)
    order = [6, 5, 4, 3, 2, 1, 0]
    names = [arm.joint_names[i] for i in order]
    J, poses = client.jacobian(q[:, order].numpy(), "link_5", point=(0.1, -0.05, 0.2), joint_names=names)
    expected, T = compute_jacobian(arm, q, "link_5", point=torch.tensor([0.1, -0.05, 0.2], dtype=torch.float64),
                                   return_pose=True)
    np.testing.assert_allclose(J, expected[:, :, order].numpy(), **F32)
    np.testing.assert_allclose(poses[:, :3], T[:, :3, 3].numpy(), **F32)
    # default link: the end effector
    J_default, _ = client.jacobian(q.numpy())
    np.testing.assert_allclose(J_default, compute_jacobian(arm, q, "tool0").numpy(), **F32)


def test_pose_target_gradient_matches_the_library(served, arm):
    _, client = served
    q = random_q(arm, 40, seed=5)
    targets = matrix_to_pose_xyzw(forward_kinematics(arm, random_q(arm, 40, seed=6), links=["tool0", "link_4"]))
    weights_p, weights_o = np.array([1.0, 0.5]), np.array([0.3, 0.0])
    costs, gradients = client.pose_target_gradient(
        q.numpy(), ["tool0", "link_4"], targets.numpy(), position_weights=weights_p, orientation_weights=weights_o
    )
    qq = q.clone().requires_grad_()
    cost = pose_target_cost(forward_kinematics(arm, qq, links=["tool0", "link_4"]), pose_xyzw_to_matrix(targets),
                            torch.from_numpy(weights_p), torch.from_numpy(weights_o))
    (expected,) = torch.autograd.grad(cost.sum(), qq)
    np.testing.assert_allclose(costs, cost.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gradients, expected.numpy(), rtol=1e-4, atol=1e-4)
    # one target shared by every configuration; default weights
    shared = targets[0, :1].numpy()
    costs, _ = client.pose_target_gradient(q.numpy(), ["tool0"], shared)
    cost = pose_target_cost(forward_kinematics(arm, q, links=["tool0"]), pose_xyzw_to_matrix(targets[0, :1]))
    np.testing.assert_allclose(costs, cost.numpy(), rtol=1e-4, atol=1e-5)


def test_vector_jacobian_product_is_jacobian_transpose_times_wrench(served, arm):
    _, client = served
    q = random_q(arm, 20, seed=7)
    rng = np.random.default_rng(0)
    forces, torques = rng.normal(size=(20, 2, 3)), rng.normal(size=(20, 2, 3))
    result = client.vector_jacobian_product(q.numpy(), ["tool0", "link_3"], forces, torques)
    expected = sum(
        (compute_jacobian(arm, q, link).mT @ torch.from_numpy(np.concatenate((forces[:, k], torques[:, k]), -1))[..., None])[..., 0]
        for k, link in enumerate(["tool0", "link_3"])
    )
    np.testing.assert_allclose(result, expected.numpy(), rtol=1e-4, atol=1e-4)


BAD_FK = [
    (dict(joint_names=["elbow", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "joint_7"]), "unknown joint 'elbow'"),
    (dict(joint_names=["joint_1"] * 7), "joint 'joint_1' is listed twice"),
    (dict(joint_names=["joint_1", "joint_2"], q=np.zeros((1, 2))), "joint_names lacks joint_3, joint_4"),
    (dict(q=np.zeros(13)), "positions has 13 values, not a multiple of the 7 joints"),
    (dict(q=np.zeros((0, 7))), "positions is empty"),
    (dict(q=np.zeros((5001, 7))), "batch of 5001 configurations is above max_batch \\(5000\\)"),
    (dict(q=np.array([[0, 0, np.nan, 0, 0, 0, 0.0]])), "positions\\[2\\] \\(configuration 0, joint 'joint_3'\\) = nan is not finite"),
    (dict(q=np.array([[0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, np.inf, 0, 0]])), "configuration 1, joint 'joint_5'\\) = inf is not finite"),
    (dict(q=np.array([[0, 0, 0, 1e39, 0, 0, 0]])), "positions\\[3\\] \\(configuration 0, joint 'joint_4'\\) = 1e\\+39 is beyond ±1e\\+06 rad or m"),
    (dict(links=["tool0", "gripper"]), "link_names: unknown link 'gripper'"),
    (dict(reference_frame="world"), "reference_frame: unknown link 'world'"),
    (dict(joint_names=["flange_joint", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "joint_7"]),
     "'flange_joint'.*fixed or mimic"),
]


@pytest.mark.parametrize("bad, message", BAD_FK)
def test_bad_fk_requests_are_answered_and_the_node_keeps_serving(served, bad, message):
    from ros_torch_kin.ros.client import KinematicsError

    _, client = served
    q = bad.pop("q", np.zeros((2, 7)))
    with pytest.raises(KinematicsError, match=message):
        client.forward_kinematics(q, **bad)
    assert client.forward_kinematics(np.zeros((2, 7))).shape == (2, 10, 7)


def test_bad_jacobian_and_gradient_requests(served):
    from ros_torch_kin.ros.client import KinematicsError

    _, client = served
    q = np.zeros((2, 7))
    cases = [
        (lambda: client.jacobian(q, "nowhere"), "link_name: unknown link 'nowhere'"),
        (lambda: client.jacobian(q, point=(np.nan, 0, 0)), "point\\[0\\] \\(x\\) = nan is not finite"),
        (lambda: client.pose_target_gradient(q, ["tool0"], [[0, 0, 0, 0, 0, 0, 0]]), "target_poses\\[0\\] has a zero quaternion"),
        (lambda: client.pose_target_gradient(q, ["tool0"], np.zeros((3, 7)) + [0, 0, 0, 0, 0, 0, 1]),
         "target_poses has 3 poses; expected 1 .* or 2"),
        (lambda: client.pose_target_gradient(q, ["tool0"], [[0, 0, 0, 0, 0, 0, 1]], position_weights=[-1.0]),
         "position_weights must be finite and non-negative"),
        (lambda: client.vector_jacobian_product(q, ["tool0"], np.zeros((2, 1, 2)), np.zeros((2, 1, 3))),
         "forces has 4 values; expected B x K x 3 = 6"),
        (lambda: client.vector_jacobian_product(q, [], np.zeros(0), np.zeros(0)), "link_names is empty"),
    ]
    for call, message in cases:
        with pytest.raises(KinematicsError, match=message):
            call()
        assert client.jacobian(q)[0].shape == (2, 6, 7)


def test_unknown_gradient_mode(served):
    from ros_torch_kin.srv import ComputeGradient

    _, client = served
    request = ComputeGradient.Request(mode=7, link_names=["tool0"])
    request.positions = [0.0] * 7
    future = client._gradient.call_async(request)
    client._executor.spin_until_future_complete(future, timeout_sec=30)
    assert not future.result().success and "mode 7 is unknown" in future.result().message


def test_concurrent_clients_get_correct_answers(served, arm, ros_domain):
    from ros_torch_kin.ros.client import KinematicsClient

    results, errors = {}, []

    def work(k):
        try:
            with KinematicsClient(timeout=120) as client:
                q = random_q(arm, 100 * (k + 1), seed=100 + k)
                poses = client.forward_kinematics(q.numpy(), links=["tool0"])
                J, _ = client.jacobian(q.numpy())
                results[k] = (q, poses, J)
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors and len(results) == 6
    for q, poses, J in results.values():
        np.testing.assert_allclose(poses[:, 0, :3], forward_kinematics(arm, q, links="tool0")[:, :3, 3].numpy(), **F32)
        np.testing.assert_allclose(J, compute_jacobian(arm, q, "tool0").numpy(), **F32)
