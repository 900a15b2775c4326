"""Cost terms on link poses and joint trajectories (pure torch; differentiable).

A trajectory cost term is any callable ``term(state) -> (N,)`` on a :class:`TrajectoryState`,
the N trajectories being optimised together; it may read the joint positions and the poses of
the target link at every waypoint (computed once per evaluation, through the analytical FK
backward). Pass extra terms to :func:`~ros_torch_kin.motion.solve_trajectory`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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


@dataclass(frozen=True)
class TrajectoryState:
    """What cost terms see. N trajectories of T waypoints, J joints.

    positions: (N, T, J) joint positions, waypoint 0 = the start; link_poses: (N, T, 4, 4) poses
    of the target link (None for configuration goals); target_pose: (N, 4, 4) or None;
    target_configuration: (N, J) or None; position_only: ignore the goal orientation.
    """

    positions: Tensor
    link_poses: Tensor | None
    target_pose: Tensor | None
    target_configuration: Tensor | None
    position_only: bool


CostTerm = Callable[[TrajectoryState], Tensor]


def _with_rest(positions: Tensor) -> Tensor:
    """(N, T, J) -> (N, T + 4, J): two copies of the start before and of the end after, so
    finite differences near the ends measure starting from and stopping at rest."""
    return torch.cat((positions[:, :1], positions[:, :1], positions, positions[:, -1:], positions[:, -1:]), dim=1)


def acceleration_cost(state: TrajectoryState) -> Tensor:
    """Σ |q_{t+1} − 2 q_t + q_{t−1}|² over waypoints, starting and ending at rest (per step²)."""
    q = _with_rest(state.positions)
    return (q[:, 2:] - 2 * q[:, 1:-1] + q[:, :-2]).pow(2).sum((1, 2))


def jerk_cost(state: TrajectoryState) -> Tensor:
    """Σ |third difference|², starting and ending at rest (per step³)."""
    q = _with_rest(state.positions)
    return (q[:, 3:] - 3 * q[:, 2:-1] + 3 * q[:, 1:-2] - q[:, :-3]).pow(2).sum((1, 2))


def path_cost(state: TrajectoryState) -> Tensor:
    """Σ |p_{t+1} − p_t|² of the target link's position (m²): a short, even tool path."""
    if state.link_poses is None:
        return state.positions.new_zeros(state.positions.shape[0])
    p = state.link_poses[..., :3, 3]
    return (p[:, 1:] - p[:, :-1]).pow(2).sum((1, 2))


def goal_pose_errors(state: TrajectoryState) -> tuple[Tensor, Tensor]:
    """(N,) position error (m) and (N,) orientation error (rad) of the last waypoint."""
    error = pose_error(state.link_poses[:, -1], state.target_pose)
    return error[:, :3].norm(dim=-1), error[:, 3:].norm(dim=-1)


def goal_costs(state: TrajectoryState, position_weight: float, orientation_weight: float,
               configuration_weight: float) -> Tensor:
    """Squared goal error of the last waypoint: pose (position only if asked) or configuration."""
    if state.target_configuration is not None:
        return configuration_weight * (state.positions[:, -1] - state.target_configuration).pow(2).sum(-1)
    error = pose_error(state.link_poses[:, -1], state.target_pose)
    cost = position_weight * error[:, :3].pow(2).sum(-1)
    if not state.position_only:
        cost = cost + orientation_weight * error[:, 3:].pow(2).sum(-1)
    return cost
