"""Poses in ROS conventions (REP 103): position in m, quaternion (x, y, z, w), and pose errors.

The names say the quaternion order (``_xyzw``): pytorch_kinematics and cuRobo are w-first, and a
swapped order passes any test at the identity. Every function is batched over leading dims and
differentiable with finite gradients everywhere (both arms of each ``torch.where`` stay finite).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def matrix_to_quat_xyzw(R):
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (x, y, z, w) with w ≥ 0.

    Shepperd's method: per element, the best-conditioned of the four classic formulas, so it is
    accurate near 180° rotations too. Every candidate's numerators are linear in R's nine entries,
    so all of them are one matrix product with a constant (16, 9) matrix; candidate k's own
    component (4 q_k²) sits on the diagonal, the largest picks the candidate. About a dozen
    operations whatever the batch. Takes a torch tensor (differentiable) or a numpy array.
    """
    shape = R.shape[:-2]
    flat = R.reshape(-1, 9)
    if isinstance(R, Tensor):
        A, c = _shepperd_coefficients(R.dtype, R.device)
        candidates = torch.addmm(c, flat, A).view(-1, 4, 4)  # (N, candidate, component x y z w)
        squares = candidates.diagonal(dim1=1, dim2=2).contiguous()  # (N, 4): 4 q_k²
        best = squares.argmax(dim=-1, keepdim=True)  # (N, 1)
        chosen = torch.gather(candidates, 1, best.unsqueeze(-1).expand(-1, 1, 4)).squeeze(1)
        quat = chosen / (2.0 * torch.sqrt(torch.gather(squares, 1, best)))  # 4 q_k ≥ 2
        quat = quat / torch.sqrt((quat * quat).sum(-1, keepdim=True))
        return torch.where(quat[:, 3:] < 0, -quat, quat).view(*shape, 4)
    A, c = _SHEPPERD
    candidates = (flat @ A + c).reshape(-1, 4, 4)
    squares = np.diagonal(candidates, axis1=1, axis2=2)
    best = squares.argmax(axis=-1)[:, None]
    chosen = np.take_along_axis(candidates, best[:, :, None], axis=1)[:, 0]
    quat = chosen / (2.0 * np.sqrt(np.take_along_axis(squares, best, axis=1)))
    quat = quat / np.linalg.norm(quat, axis=-1, keepdims=True)
    return np.where(quat[:, 3:] < 0, -quat, quat).reshape(*shape, 4)


def _shepperd() -> tuple[np.ndarray, np.ndarray]:
    """(9, 16) and (16,): candidates = vec(R) @ A + c, candidate k (x, y, z, w) scaled by 4 q_k."""
    A, c = np.zeros((9, 4, 4)), np.zeros((4, 4))
    r = {(i, j): 3 * i + j for i in range(3) for j in range(3)}

    def put(candidate, component, constant, *terms):
        c[candidate, component] = constant
        for sign, entry in terms:
            A[r[entry], candidate, component] += sign

    d21, d02, d10 = ((1, (2, 1)), (-1, (1, 2))), ((1, (0, 2)), (-1, (2, 0))), ((1, (1, 0)), (-1, (0, 1)))
    s01, s02, s12 = ((1, (0, 1)), (1, (1, 0))), ((1, (0, 2)), (1, (2, 0))), ((1, (1, 2)), (1, (2, 1)))
    diagonal = {  # 4 q_k² = 1 ± R00 ± R11 ± R22
        0: ((1, (0, 0)), (-1, (1, 1)), (-1, (2, 2))), 1: ((-1, (0, 0)), (1, (1, 1)), (-1, (2, 2))),
        2: ((-1, (0, 0)), (-1, (1, 1)), (1, (2, 2))), 3: ((1, (0, 0)), (1, (1, 1)), (1, (2, 2))),
    }
    rows = {0: (None, s01, s02, d21), 1: (s01, None, s12, d02), 2: (s02, s12, None, d10), 3: (d21, d02, d10, None)}
    for k, parts in rows.items():
        for component, terms in enumerate(parts):
            if terms is None:
                put(k, component, 1.0, *diagonal[k])
            else:
                put(k, component, 0.0, *terms)
    return A.reshape(9, 16), c.reshape(16)


_SHEPPERD = _shepperd()
_SHEPPERD_TENSORS: dict = {}


def _shepperd_coefficients(dtype, device) -> tuple[Tensor, Tensor]:
    key = (dtype, device)
    if key not in _SHEPPERD_TENSORS:
        _SHEPPERD_TENSORS[key] = tuple(torch.as_tensor(a, dtype=dtype, device=device) for a in _SHEPPERD)
    return _SHEPPERD_TENSORS[key]


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


def matrix_to_pose_xyzw(T):
    """(..., 4, 4) homogeneous transforms -> (..., 7) poses (x, y, z, qx, qy, qz, qw), m.
    Torch tensor or numpy array in, the same out."""
    if isinstance(T, Tensor):
        return torch.cat((T[..., :3, 3], matrix_to_quat_xyzw(T[..., :3, :3])), dim=-1)
    return np.concatenate((T[..., :3, 3], matrix_to_quat_xyzw(T[..., :3, :3])), axis=-1)


def pose_xyzw_to_matrix(pose: Tensor) -> Tensor:
    """(..., 7) poses (x, y, z, qx, qy, qz, qw) -> (..., 4, 4) transforms; the quaternion is
    normalised."""
    top = torch.cat((quat_xyzw_to_matrix(pose[..., 3:]), pose[..., :3, None]), dim=-1)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1.0
    return torch.cat((top, bottom), dim=-2)


def invert_transform(T: Tensor) -> Tensor:
    """(..., 4, 4) rigid transforms -> their inverses (Rᵀ, −Rᵀ t), exact for rotations."""
    R_inverse = T[..., :3, :3].mT
    top = torch.cat((R_inverse, -(R_inverse @ T[..., :3, 3:])), dim=-1)
    return torch.cat((top, T[..., 3:, :]), dim=-2)


def quat_xyzw_to_rotation_vector(quat: Tensor) -> Tensor:
    """(..., 4) unit quaternions -> (..., 3) rotation vectors (axis × angle, rad, angle ≤ π).

    θ/|v| = 2·atan2(|v|, |w|)/|v|; below |v| = 1e-6 it is 2/w (the next term of the series is
    under 3e-13 relative there), with both branches kept finite for the gradient.
    """
    quat = torch.where(quat[..., 3:] < 0, -quat, quat)
    v, w = quat[..., :3], quat[..., 3:]
    norm_sq = (v * v).sum(-1, keepdim=True)
    small = norm_sq < 1e-12
    norm = torch.sqrt(torch.where(small, torch.ones_like(norm_sq), norm_sq))  # sqrt'(0) would be inf
    factor = torch.where(small, 2.0 / w.clamp(min=1e-6), 2.0 * torch.atan2(norm, w) / norm)
    return v * factor


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
