"""Cost terms on link poses and joint trajectories (pure torch; differentiable)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..kinematics.pose import pose_error


def pose_target_cost(
    T: Tensor,
    T_target: Tensor,
    position_weight: Tensor | float = 1.0,
    orientation_weight: Tensor | float = 1.0,
) -> Tensor:
    """Weighted squared pose error summed over links.

    T, T_target: (..., K, 4, 4) link poses and their targets (broadcastable); position_weight,
    orientation_weight: scalars or (K,) weights in 1/m² and 1/rad². Returns (...,):
    Σ_k w_p,k |t_k − t*_k|² + w_o,k |log(R_k R*_kᵀ)|².
    """
    error = pose_error(T, T_target)  # (..., K, 6)
    position = error[..., :3].pow(2).sum(-1)
    orientation = error[..., 3:].pow(2).sum(-1)
    return (position_weight * position + orientation_weight * orientation).sum(-1)
