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

    Shepperd's method: per element, the best-conditioned of the four classic formulas (largest
    of 1 + trace, 1 + 2 R00 − trace, ...), so it is accurate near 180° rotations too. Works on
    components (3, 3, ...) so every operation is contiguous whatever the input's layout; returns a
    view whose component axis is outermost in memory. Takes a torch tensor (differentiable) or a
    numpy array (for small host-side batches, where numpy's per-call cost is lower).
    """
    xp = _Namespace.of(R)
    R, restore = _leading_dims_in_memory_order(R, 2)
    m = xp.movedim(R, (-2, -1), (0, 1))  # (3, 3, ...)
    m00, m11, m22 = m[0, 0], m[1, 1], m[2, 2]
    d21, d02, d10 = m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1]
    s01, s02, s12 = m[0, 1] + m[1, 0], m[0, 2] + m[2, 0], m[1, 2] + m[2, 1]
    # 4 q_k² for k = w, x, y, z, and candidate k's (x, y, z, w) times 4 q_k
    squares = xp.stack((1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22))
    candidates = xp.stack(
        (
            xp.stack((d21, d02, d10, squares[0])),
            xp.stack((squares[1], s01, s02, d21)),
            xp.stack((s01, squares[2], s12, d02)),
            xp.stack((s02, s12, squares[3], d10)),
        )
    )  # (4 candidates, 4 components, ...)
    # the largest square, by elementwise comparisons (argmax over a leading axis is slow on CPUs)
    best = xp.where(squares[1] > squares[0], 1, 0)
    largest = xp.maximum(squares[0], squares[1])
    best = xp.where(squares[2] > largest, 2, best)
    largest = xp.maximum(largest, squares[2])
    best = xp.where(squares[3] > largest, 3, best)[None]  # (1, ...)
    chosen = xp.take(candidates, best[None])[0]  # (4, ...)
    scale = 2.0 * xp.sqrt(xp.take(squares, best))  # 4 q_k, ≥ 2: the largest of four summing to 4
    quat = chosen / scale
    quat = quat / xp.sqrt(quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] + quat[3] * quat[3])
    return restore(xp.movedim(xp.where(quat[3:] < 0, -quat, quat), 0, -1))


class _Namespace:
    """The few array operations matrix_to_quat_xyzw needs, for torch tensors or numpy arrays."""

    def __init__(self, module):
        self.module = module
        self.stack, self.where, self.maximum, self.sqrt = module.stack, module.where, module.maximum, module.sqrt

    @staticmethod
    def of(x) -> "_Namespace":
        return _TORCH if isinstance(x, Tensor) else _NUMPY

    def movedim(self, x, source, destination):
        return torch.movedim(x, source, destination) if self.module is torch else np.moveaxis(x, source, destination)

    def take(self, x, index):
        """Entries of ``x`` along axis 0 at ``index`` (same rank, size 1 on axis 0, broadcast)."""
        if self.module is torch:
            return torch.gather(x, 0, index.expand(1, *x.shape[1:]))
        return np.take_along_axis(x, index, axis=0)


_TORCH, _NUMPY = _Namespace(torch), _Namespace(np)


def _leading_dims_in_memory_order(x: Tensor, trailing: int):
    """A view of ``x`` whose leading (batch) dims are ordered by decreasing stride, so that new
    tensors computed from it are written in memory order, not transposed; and the function that
    puts a result's leading dims back in the caller's order."""
    if not isinstance(x, Tensor):
        return x, lambda y: y
    lead = x.dim() - trailing
    order = sorted(range(lead), key=lambda d: -x.stride(d))
    if order == list(range(lead)):
        return x, lambda y: y
    inverse = [order.index(d) for d in range(lead)]
    tail = list(range(lead, x.dim()))

    def restore(y: Tensor) -> Tensor:
        return y.permute(*inverse, *range(lead, y.dim()))

    return x.permute(*order, *tail), restore


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
