"""Seeds of collision-aware motion generation: collision-free goals and detours to them.

1. Goals. A pose (or position) goal becomes ``goal_candidates`` collision-free IK solutions per
   problem (:func:`~.inverse_kinematics.solve_ik` with the collision model at the clearance),
   each drawn towards a different preferred configuration (the start for the first, random ones
   for the others), so that they tend to lie on different IK branches. A configuration goal is
   itself the only goal. Why a problem has no goal is told apart: the IK reached the target only
   in collision, or reaches it when collisions are ignored ("goal in collision"), or does not
   reach it at all ("goal unreachable").
2. Candidates. Per goal, the minimum-jerk motion from the start, and ``detours`` motions through a
   via configuration at mid-time: the straight motion's midpoint plus a random offset (seeded;
   scales cycled through ``detour_scales`` rad), added with a bump that is zero, with zero
   velocity and acceleration, at both ends.
3. Ranking (the sampling warm start): every candidate of every problem is scored in one batch by
   its collision depth at every other waypoint, Σ max(0, margin − d) of the closest pair, plus a
   little of its joint-path length; the ``collision_seeds`` best become the optimizer's seeds.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..collision import CollisionChecker
from ..kinematics import Chain
from .collision_costs import ClearanceModel
from .ik_options import IKOptions
from .inverse_kinematics import solve_ik
from .options import TrajectoryLimits, TrajectoryOptions

GOAL_IN_COLLISION = "goal in collision"
GOAL_UNREACHABLE = "goal unreachable"
START_IN_COLLISION = "start in collision"
NO_PATH = "no collision-free path found within budget"
GOAL_NOT_REACHED = "goal not reached within tolerance"


def minimum_jerk_profile(T: int, like: Tensor) -> Tensor:
    """(T,) s(τ) = 10τ³ − 15τ⁴ + 6τ⁵ on τ = 0 .. 1: zero velocity and acceleration at both ends."""
    tau = torch.linspace(0, 1, T, dtype=like.dtype, device=like.device)
    return 10 * tau**3 - 15 * tau**4 + 6 * tau**5


def detour_bump(T: int, like: Tensor) -> Tensor:
    """(T,) b(τ) = 64 τ³ (1 − τ)³: 1 at mid-time, zero with zero velocity and acceleration at the ends."""
    tau = torch.linspace(0, 1, T, dtype=like.dtype, device=like.device)
    return 64 * tau**3 * (1 - tau) ** 3


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
    return goals, valid, reasons


def candidate_motions(start: Tensor, goals: Tensor, valid: Tensor, options: TrajectoryOptions,
                      limits: TrajectoryLimits, draw: int = 0) -> Tensor:
    """Starts (P, J), goals (P, K, J) with valid (P, K) -> candidates (P, C, T, J) with
    C = K (1 + detours). Invalid goals are replaced by the problem's first valid one (by the
    start if it has none). ``draw``: which set of random via offsets (a restart draws anew, with
    the scales grown by half per draw)."""
    P, K, J = goals.shape
    T, V = options.waypoints, options.detours
    first = valid.to(torch.int8).argmax(1)  # (P,) the first valid goal (0 if none)
    fallback = torch.where(valid.any(1, keepdim=True), goals[torch.arange(P), first], start).unsqueeze(1)
    goals = torch.where(valid.unsqueeze(-1), goals, fallback)
    straight = start.view(P, 1, 1, J) + minimum_jerk_profile(T, start).view(1, 1, T, 1) * (goals - start.unsqueeze(1)).unsqueeze(2)
    if V == 0:
        return straight
    generator = torch.Generator().manual_seed(options.random_seed + 11 + 7919 * draw)
    offsets = 2 * torch.rand(K, V, J, generator=generator, dtype=torch.float64) - 1  # the same for every problem
    scales = torch.tensor(options.detour_scales, dtype=torch.float64)[torch.arange(V) % len(options.detour_scales)]
    scales = scales * (1 + 0.5 * draw)
    offsets = (offsets * scales.view(1, V, 1)).to(start.device, start.dtype)
    midpoint = straight[:, :, T // 2]  # (P, K, J)
    via = limits.clamp(midpoint.unsqueeze(2) + offsets)  # (P, K, V, J)
    detours = straight.unsqueeze(2) + detour_bump(T, start).view(1, 1, 1, T, 1) * (via - midpoint.unsqueeze(2)).unsqueeze(3)
    candidates = torch.cat((straight.unsqueeze(2), limits.clamp(detours)), dim=2)  # (P, K, 1 + V, T, J)
    return candidates.reshape(P, K * (1 + V), T, J)


def rank_candidates(checker: CollisionChecker, candidates: Tensor, margin: float, keep: int,
                    length_weight: float = 1e-3) -> Tensor:
    """(P, C, T, J) candidates -> (P, keep, T, J): per problem the ``keep`` with the least
    collision depth (m, Σ over every other waypoint of max(0, margin − closest distance)), ties
    broken by joint-path length (rad, times ``length_weight`` m/rad). One distance query for all."""
    P, C, T, J = candidates.shape
    probe = candidates[:, :, 1::2]  # every other waypoint
    distance = checker.distances(probe.reshape(-1, J)).min_distance.view(P, C, -1)
    depth = (margin - distance).clamp(min=0).sum(-1)
    length = (candidates[:, :, 1:] - candidates[:, :, :-1]).norm(dim=-1).sum(-1)
    order = (depth + length_weight * length).argsort(dim=1)[:, : min(keep, C)]
    if keep > C:  # fewer candidates than seeds: repeat the best
        order = torch.cat((order, order[:, :1].expand(P, keep - C)), dim=1)
    return torch.gather(candidates, 1, order.view(P, keep, 1, 1).expand(P, keep, T, J))
