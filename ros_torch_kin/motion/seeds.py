"""Seeds of collision-aware motion generation: candidate motions to the goals, ranked.

1. Candidates. Per goal (see :mod:`.goals`), the minimum-jerk motion from the start, and
   ``detours`` motions through a via configuration at mid-time: the straight motion's midpoint
   plus a random offset (seeded; scales cycled through ``detour_scales`` rad), added with a bump
   that is zero, with zero velocity and acceleration, at both ends.
2. Ranking (the sampling warm start): every candidate of every problem is scored in one batch by
   its collision depth at every other waypoint, Σ max(0, margin − d) of the closest pair, plus a
   little of its joint-path length; the ``collision_seeds`` best become the optimizer's seeds.
   When none gives a checked motion, :mod:`.global_search` finds one to seed with.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..collision import CollisionChecker
from ..optim.options import TrajectoryLimits, TrajectoryOptions


def minimum_jerk_profile(T: int, like: Tensor) -> Tensor:
    """(T,) s(τ) = 10τ³ − 15τ⁴ + 6τ⁵ on τ = 0 .. 1: zero velocity and acceleration at both ends."""
    tau = torch.linspace(0, 1, T, dtype=like.dtype, device=like.device)
    return 10 * tau**3 - 15 * tau**4 + 6 * tau**5


def detour_bump(T: int, like: Tensor) -> Tensor:
    """(T,) b(τ) = 64 τ³ (1 − τ)³: 1 at mid-time, zero with zero velocity and acceleration at the ends."""
    tau = torch.linspace(0, 1, T, dtype=like.dtype, device=like.device)
    return 64 * tau**3 * (1 - tau) ** 3


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
    broken by joint-path length (rad, times ``length_weight`` m/rad). One distance query for all,
    exact below the margin only (all the depth needs: the blocks beyond it are skipped)."""
    P, C, T, J = candidates.shape
    probe = candidates[:, :, 1::2]  # every other waypoint
    distance = checker.min_distance(probe.reshape(-1, J), margin).view(P, C, -1)
    depth = (margin - distance).clamp(min=0).sum(-1)
    length = (candidates[:, :, 1:] - candidates[:, :, :-1]).norm(dim=-1).sum(-1)
    order = (depth + length_weight * length).argsort(dim=1)[:, : min(keep, C)]
    if keep > C:  # fewer candidates than seeds: repeat the best
        order = torch.cat((order, order[:, :1].expand(P, keep - C)), dim=1)
    return torch.gather(candidates, 1, order.view(P, keep, 1, 1).expand(P, keep, T, J))
