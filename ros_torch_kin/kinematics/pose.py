"""Poses in ROS conventions (REP 103): position in m, quaternion (x, y, z, w), and pose errors.

The names say the quaternion order (``_xyzw``): pytorch_kinematics and cuRobo are w-first, and a
swapped order passes any test at the identity. Every function is batched over leading dims and
differentiable with finite gradients everywhere (both arms of each ``torch.where`` stay finite).
"""

from __future__ import annotations

import torch
from torch import Tensor


def matrix_to_quat_xyzw(R: Tensor) -> Tensor:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (x, y, z, w) with w ≥ 0.

    Picks, per element, the best-conditioned of the four classic formulas (largest of
    1 + trace, 1 + 2 R00 − trace, ...), so it is accurate near 180° rotations too.
    """
    m00, m01, m02 = R[..., 0, 0], R[..., 0, 1], R[..., 0, 2]
    m10, m11, m12 = R[..., 1, 0], R[..., 1, 1], R[..., 1, 2]
    m20, m21, m22 = R[..., 2, 0], R[..., 2, 1], R[..., 2, 2]
    # 4·(w², x², y², z²) each from the diagonal
    squares = torch.stack(
        (1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22), dim=-1
    )
    # candidate k scaled by 4·q_k: rows are (x, y, z, w) of each candidate times 4 q_k
    candidates = torch.stack(
        (
            torch.stack((m21 - m12, m02 - m20, m10 - m01, squares[..., 0]), dim=-1),
            torch.stack((squares[..., 1], m01 + m10, m02 + m20, m21 - m12), dim=-1),
            torch.stack((m01 + m10, squares[..., 2], m12 + m21, m02 - m20), dim=-1),
            torch.stack((m02 + m20, m12 + m21, squares[..., 3], m10 - m01), dim=-1),
        ),
        dim=-2,
    )
    scale = 2.0 * torch.sqrt(squares.clamp(min=1e-12))  # 4 q_k, finite for every candidate
    candidates = candidates / scale.unsqueeze(-1)
    best = squares.argmax(dim=-1, keepdim=True)
    quat = torch.gather(candidates, -2, best.unsqueeze(-1).expand(*best.shape, 4)).squeeze(-2)
    quat = quat / quat.norm(dim=-1, keepdim=True)
    return torch.where(quat[..., 3:] < 0, -quat, quat)


def quat_xyzw_to_matrix(quat: Tensor) -> Tensor:
    """(..., 4) quaternions (x, y, z, w), normalised here -> (..., 3, 3) rotation matrices."""
    x, y, z, w = (quat / quat.norm(dim=-1, keepdim=True)).unbind(-1)
    return torch.stack(
        (
            torch.stack((1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)), dim=-1),
            torch.stack((2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)), dim=-1),
            torch.stack((2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)), dim=-1),
        ),
        dim=-2,
    )


def matrix_to_pose_xyzw(T: Tensor) -> Tensor:
    """(..., 4, 4) homogeneous transforms -> (..., 7) poses (x, y, z, qx, qy, qz, qw), m."""
    return torch.cat((T[..., :3, 3], matrix_to_quat_xyzw(T[..., :3, :3])), dim=-1)


def pose_xyzw_to_matrix(pose: Tensor) -> Tensor:
    """(..., 7) poses (x, y, z, qx, qy, qz, qw) -> (..., 4, 4) transforms; the quaternion is
    normalised."""
    top = torch.cat((quat_xyzw_to_matrix(pose[..., 3:]), pose[..., :3, None]), dim=-1)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1.0
    return torch.cat((top, bottom), dim=-2)


def quat_xyzw_to_rotation_vector(quat: Tensor) -> Tensor:
    """(..., 4) unit quaternions -> (..., 3) rotation vectors (axis × angle, rad, angle ≤ π).

    Uses θ = 2·atan2(|v|, |w|); near θ = 0 the series 2/w·(1 − |v|²/(3w²)) keeps it smooth.
    """
    quat = torch.where(quat[..., 3:] < 0, -quat, quat)
    v, w = quat[..., :3], quat[..., 3]
    norm_sq = (v * v).sum(-1)
    small = norm_sq < 1e-12
    norm = torch.sqrt(torch.where(small, torch.ones_like(norm_sq), norm_sq))
    w_safe = torch.where(small, w, torch.ones_like(w))
    factor = torch.where(
        small,
        2.0 / w_safe * (1.0 - norm_sq / (3.0 * w_safe * w_safe)),
        2.0 * torch.atan2(norm, w) / norm,
    )
    return v * factor.unsqueeze(-1)


def rotation_log(R: Tensor) -> Tensor:
    """(..., 3, 3) rotation -> (..., 3) rotation vector ω with exp([ω]ₓ) = R (rad)."""
    return quat_xyzw_to_rotation_vector(matrix_to_quat_xyzw(R))


def pose_error(T: Tensor, T_target: Tensor) -> Tensor:
    """(..., 4, 4) current and target transforms -> (..., 6) residual, zero iff they are equal.

    Rows 0..2: position difference t − t_target (m). Rows 3..5: rotation vector of
    R · R_targetᵀ (rad, world frame): the rotation that takes the target orientation onto the
    current one. Its norm is the angle between them. Use as a least-squares residual.
    """
    position = T[..., :3, 3] - T_target[..., :3, 3]
    rotation = rotation_log(T[..., :3, :3] @ T_target[..., :3, :3].mT)
    return torch.cat((position, rotation), dim=-1)
