"""Pose conversions in ROS order (x, y, z, qx, qy, qz, qw) and the pose-error residual."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ros_torch_kin.kinematics import (
    matrix_to_pose_xyzw,
    matrix_to_quat_xyzw,
    pose_error,
    pose_xyzw_to_matrix,
    quat_xyzw_to_matrix,
    rotation_log,
)

F64 = dict(dtype=torch.float64)


def rotation_about(axis, angle):
    axis = torch.tensor(axis, **F64) / torch.tensor(axis, **F64).norm()
    K = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]], **F64)
    return torch.eye(3, **F64) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def test_quaternion_order_is_xyzw_by_hand():
    # 90° about z: q = (0, 0, sin 45°, cos 45°); a swapped order would put 0.707 first or last
    quat = matrix_to_quat_xyzw(rotation_about([0, 0, 1], math.pi / 2))
    torch.testing.assert_close(quat, torch.tensor([0, 0, math.sqrt(0.5), math.sqrt(0.5)], **F64))
    # 180° about x: (1, 0, 0, 0)
    torch.testing.assert_close(matrix_to_quat_xyzw(rotation_about([1, 0, 0], math.pi)), torch.tensor([1.0, 0, 0, 0], **F64))
    R = quat_xyzw_to_matrix(torch.tensor([0, 0, math.sqrt(0.5), math.sqrt(0.5)], **F64))
    torch.testing.assert_close(R @ torch.tensor([1.0, 0, 0], **F64), torch.tensor([0.0, 1, 0], **F64))


def test_roundtrips_and_sign_convention():
    quat = torch.randn(5000, 4, generator=torch.Generator().manual_seed(0), **F64)
    quat = quat / quat.norm(dim=-1, keepdim=True)
    quat = torch.where(quat[:, 3:] < 0, -quat, quat)
    torch.testing.assert_close(matrix_to_quat_xyzw(quat_xyzw_to_matrix(quat)), quat, rtol=0, atol=1e-14)
    pose = torch.cat((torch.randn(5000, 3, **F64), quat), dim=-1)
    T = pose_xyzw_to_matrix(pose)
    torch.testing.assert_close(T[:, 3], torch.tensor([0, 0, 0, 1.0], **F64).expand(5000, 4))
    torch.testing.assert_close(matrix_to_pose_xyzw(T), pose, rtol=0, atol=1e-14)
    # an unnormalised quaternion is normalised
    torch.testing.assert_close(quat_xyzw_to_matrix(3 * quat), quat_xyzw_to_matrix(quat))


@pytest.mark.parametrize("angle", [0.0, 1e-9, 1e-4, 0.5, 2.0, math.pi - 1e-6, math.pi])
def test_rotation_log_is_axis_times_angle(angle):
    axis = torch.tensor([0.3, -0.5, 0.8], **F64)
    axis = axis / axis.norm()
    log = rotation_log(rotation_about(axis.tolist(), angle))
    if angle > math.pi - 1e-5:  # ±axis·π are the same rotation
        torch.testing.assert_close(log.abs(), (axis * angle).abs(), rtol=0, atol=1e-6)
    else:
        torch.testing.assert_close(log, axis * angle, rtol=0, atol=1e-12)


def test_rotation_log_gradient_is_finite_everywhere():
    for R in (torch.eye(3, **F64), rotation_about([1, 1, 0], math.pi), rotation_about([0, 0, 1], 1e-8)):
        R = R.clone().requires_grad_()
        (g,) = torch.autograd.grad(rotation_log(R).pow(2).sum() + rotation_log(R).sum(), R)
        assert torch.isfinite(g).all()


def test_pose_error_by_hand():
    T_target = torch.eye(4, **F64)
    T = torch.eye(4, **F64)
    T[:3, :3] = rotation_about([0, 0, 1], 0.3)
    T[:3, 3] = torch.tensor([0.1, -0.2, 0.3], **F64)
    torch.testing.assert_close(pose_error(T, T_target), torch.tensor([0.1, -0.2, 0.3, 0, 0, 0.3], **F64))
    assert pose_error(T, T).abs().max() < 1e-15
    # the rotation part is measured in the world frame: R R_targetᵀ
    T_target[:3, :3] = rotation_about([1, 0, 0], 0.5)
    expected = rotation_log(T[:3, :3] @ T_target[:3, :3].mT)
    torch.testing.assert_close(pose_error(T, T_target)[3:], expected)


def test_numpy_inputs_give_the_same_poses():
    quat = torch.randn(300, 4, generator=torch.Generator().manual_seed(1), **F64)
    quat = quat / quat.norm(dim=-1, keepdim=True)
    pose = torch.cat((torch.randn(300, 3, **F64), torch.where(quat[:, 3:] < 0, -quat, quat)), dim=-1)
    T = pose_xyzw_to_matrix(pose)
    from_numpy = matrix_to_pose_xyzw(T.numpy())
    assert isinstance(from_numpy, np.ndarray)
    np.testing.assert_allclose(from_numpy, matrix_to_pose_xyzw(T).numpy(), rtol=0, atol=1e-15)
    np.testing.assert_allclose(matrix_to_quat_xyzw(rotation_about([1, 0, 0], math.pi).numpy()), [1, 0, 0, 0], atol=1e-15)
