"""Batched damped-least-squares inverse kinematics on the chain's geometric Jacobian.

Each iteration: e = pose_error(T(q), T*) (position difference, world-frame rotation vector),
Δq = −Jᵀ (J Jᵀ + λ² I)⁻¹ e, then q is clamped into the joint limits. With ``position_only`` only
the linear rows are used. Every configuration of the batch iterates independently.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..kinematics import Chain, compute_jacobian, pose_error


def damped_least_squares_ik(
    chain: Chain,
    link: int,
    target: Tensor,
    q: Tensor,
    lower: Tensor,
    upper: Tensor,
    iterations: int = 40,
    damping: float = 0.02,
    position_only: bool = False,
) -> tuple[Tensor, Tensor]:
    """target: (N, 4, 4) poses of ``link``; q: (N, J) initial configurations (rad / m).
    Returns (q (N, J) within [lower, upper], final error (N, 6): position (m), rotation (rad))."""
    rows = 3 if position_only else 6
    eye = damping**2 * torch.eye(rows, dtype=q.dtype, device=q.device)
    with torch.no_grad():
        for _ in range(iterations):
            J, T = compute_jacobian(chain, q, link, return_pose=True)
            J = J[:, :rows]
            error = pose_error(T, target)[:, :rows]
            step = J.mT @ torch.linalg.solve(J @ J.mT + eye, error.unsqueeze(-1))
            q = torch.maximum(torch.minimum(q - step.squeeze(-1), upper), lower)
        T = compute_jacobian(chain, q, link, return_pose=True)[1]
        return q, pose_error(T, target)
