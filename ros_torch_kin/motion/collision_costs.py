"""Collision cost of trajectories, and the collision model the goal IK uses.

The cost of a trajectory is the collision penalty ``Σ_pairs ½ max(0, margin − d)²`` (m², see
:class:`~ros_torch_kin.collision.CollisionChecker`) summed over its waypoints (the start left
out: it cannot move) and the midpoints of its segments. The midpoints are what makes the cost
see the motion between waypoints: a segment whose two ends lie on either side of a thin obstacle
has its midpoint inside it, and the midpoint's gradient moves both ends the same way, out of
the obstacle (the waypoint terms alone would push each end away on its own side). The exact
verdict on the segments is :mod:`.checking`'s.

Gradients are the checker's closed form through the FK analytical backward
(:meth:`CollisionChecker.penalty_cost`), never autograd through FK; autograd only carries them
through the (linear) midpoint averaging.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..collision import CollisionChecker


def trajectory_collision_cost(checker: CollisionChecker, positions: Tensor, margin: float,
                              midpoints: bool = True) -> Tensor:
    """positions (N, T, J) joint positions (waypoint 0 the start) -> (N,) collision penalty (m²)
    of waypoints 1 .. T − 1 and, with ``midpoints``, of the T − 1 segment midpoints; ``margin``
    (m): pairs closer than this are penalised. Differentiable in ``positions`` (first order)."""
    N, T, J = positions.shape
    configurations = [positions[:, 1:]]
    if midpoints:
        configurations.append(0.5 * (positions[:, 1:] + positions[:, :-1]))
    q = torch.cat(configurations, dim=1).reshape(-1, J)
    return checker.penalty_cost(q, margin).view(N, -1).sum(1)


class ClearanceModel:
    """A collision model for :func:`~.inverse_kinematics.solve_ik` at a given clearance.

    ``in_collision(q)``: (N, J) -> (N,) bool, some checked pair of ``checker`` is closer than
    ``clearance`` (m). ``penalty(q)``: the penalty with margin ``clearance + margin`` of
    ``steering`` (a checker with fewer spheres steers as well and costs less; default
    ``checker``) and its closed-form gradient (N, J).
    """

    def __init__(self, checker: CollisionChecker, clearance: float, margin: float = 0.0,
                 steering: CollisionChecker | None = None):
        self.checker = checker
        self.clearance = float(clearance)
        self.margin = float(margin)
        self.steering = checker if steering is None else steering

    def in_collision(self, q: Tensor) -> Tensor:
        return self.checker.min_distance(q, self.clearance) < self.clearance

    def penalty(self, q: Tensor) -> tuple[Tensor, Tensor]:
        return self.steering.penalty(q, self.clearance + self.margin)
