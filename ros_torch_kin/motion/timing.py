"""Uniform time scaling of a waypoint path so that velocities and accelerations stay within limits.

The path q_0 .. q_{T-1} is followed at a constant time step dt, starting and ending at rest.
Velocities are central differences (zero at both ends), accelerations second differences with
the path held at rest before the start and after the end. The smallest dt that keeps every
|velocity| ≤ v_max (segment and central) and every |acceleration| ≤ a_max is used.
"""

from __future__ import annotations

import torch
from torch import Tensor


def time_parameterize(
    positions: Tensor, velocity_limits: Tensor, acceleration_limits: Tensor, minimum_time_step: float = 1e-3
) -> tuple[Tensor, Tensor, Tensor]:
    """positions (N, T, J) rad / m; limits (J,) per s and per s².
    Returns (time_step (N,) s, velocities (N, T, J), accelerations (N, T, J))."""
    rest = torch.cat((positions[:, :1], positions, positions[:, -1:]), dim=1)  # (N, T + 2, J)
    step = rest[:, 1:] - rest[:, :-1]  # (N, T + 1, J) segment displacements
    second = rest[:, 2:] - 2 * rest[:, 1:-1] + rest[:, :-2]  # (N, T, J)
    # |Δq| / dt ≤ v (which also bounds the central differences) and |Δ²q| / dt² ≤ a
    for_velocity = (step.abs() / velocity_limits).amax((1, 2))
    for_acceleration = torch.sqrt((second.abs() / acceleration_limits).amax((1, 2)))
    dt = torch.maximum(torch.maximum(for_velocity, for_acceleration), torch.full_like(for_velocity, minimum_time_step))
    velocities = (rest[:, 2:] - rest[:, :-2]) / (2 * dt.view(-1, 1, 1))
    velocities[:, 0] = 0
    velocities[:, -1] = 0
    accelerations = second / dt.view(-1, 1, 1) ** 2
    return dt, velocities, accelerations
