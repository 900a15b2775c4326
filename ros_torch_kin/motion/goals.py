"""Goals of collision-aware motion generation, and why a problem has none.

A pose (or position) goal becomes ``goal_candidates`` collision-free IK solutions per problem
(:func:`~ros_torch_kin.optim.inverse_kinematics.solve_ik` with the collision model at the
validity margin, steered to the clearance), each drawn towards a different preferred
configuration (the start for the first, random ones for the others), so that they tend to lie on
different IK branches. A configuration goal is itself the only goal. Why a problem has no goal is
told apart: the IK reached the target only in collision, or reaches it when collisions are
ignored ("goal in collision"), or does not reach it at all ("goal unreachable"). When the goal
IK stopped on its time budget rather than its iterations (a starved CPU), the reason adds that.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..kinematics import Chain
from ..optim.ik_options import IKOptions
from ..optim.inverse_kinematics import solve_ik
from ..optim.options import TrajectoryLimits, TrajectoryOptions
from .collision_costs import ClearanceModel

GOAL_IN_COLLISION = "goal in collision"
GOAL_UNREACHABLE = "goal unreachable"
START_IN_COLLISION = "start in collision"
NO_PATH = "no collision-free path found within budget"
GOAL_NOT_REACHED = "goal not reached within tolerance"



def collision_free_goals(
    chain: Chain,
    link: int,
    target_pose: Tensor,
    position_only: bool,
    start: Tensor,
    model: ClearanceModel,
    options: TrajectoryOptions,
    limits: TrajectoryLimits,
) -> tuple[Tensor, Tensor, list[str]]:
    """IK goals for P pose targets (P, 4, 4) from starts (P, J).

    Returns goals (P, K, J) (K = ``options.goal_candidates``; rows that failed hold the IK's
    closest attempt), valid (P, K) bool (within half the trajectory tolerances, inside the limits
    and at least the clearance away from collision), and per problem '' or the reason none is
    valid (:data:`GOAL_IN_COLLISION` or :data:`GOAL_UNREACHABLE`).
    """
    P, J = start.shape
    K = options.goal_candidates
    generator = torch.Generator().manual_seed(options.random_seed + 7)
    lower, upper = limits.lower.clamp(min=-math.pi), limits.upper.clamp(max=math.pi)
    u = torch.rand(P, K, J, generator=generator, dtype=torch.float64).to(chain.device, chain.dtype)
    preferred = lower + u * (upper - lower)
    preferred[:, 0] = start
    ik_options = IKOptions(
        position_tolerance=0.5 * options.position_tolerance,
        orientation_tolerance=0.5 * options.orientation_tolerance,
        position_only=position_only,
        time_budget=options.goal_ik_time_budget,
        seeds=8,
        max_iterations=60,
        random_seed=options.random_seed,
    )
    targets = target_pose.repeat_interleave(K, dim=0)
    if position_only:
        targets = targets[:, :3, 3]
    result = solve_ik(chain, link, targets, ik_options, seeds=preferred.reshape(P * K, 1, J),
                      preferred=preferred.reshape(P * K, J), collision=model)
    goals = limits.clamp(result.q).view(P, K, J)
    valid = result.success.view(P, K) & limits.contains(goals)
    reached = ((result.position_error <= options.position_tolerance)
               & (result.orientation_error <= options.orientation_tolerance)).view(P, K)
    unsolved = (~valid.any(1) & ~reached.any(1)).nonzero().squeeze(1)
    if unsolved.numel():  # reached only in collision, or not at all? ask the IK without collision
        free = solve_ik(chain, link, targets.view(P, K, *targets.shape[1:])[unsolved, 0], ik_options,
                        seeds=start[unsolved].unsqueeze(1), preferred=start[unsolved])
        reached[unsolved, 0] = free.success
    reasons = ["" if bool(valid[p].any()) else GOAL_IN_COLLISION if bool(reached[p].any()) else GOAL_UNREACHABLE
               for p in range(P)]
    if result.solve_time >= ik_options.time_budget and any(reasons):
        # the IK stopped on its budget (a starved CPU), not on its iterations: say so, the same kind
        note = (f" (the goal IK stopped at its {ik_options.time_budget:g} s budget, "
                "TrajectoryOptions.goal_ik_time_budget)")
        reasons = [r + note if r else r for r in reasons]
    return goals, valid, reasons
