"""Collision checking of whole motions: every waypoint and everything between them.

The motion is the piecewise-linear joint path through the waypoints (what the optimizer's
smoothness costs and the time parameterisation describe; a controller that interpolates
linearly in joint space between the stamped waypoints follows exactly this path).

Swept check, by a bound on how far a sphere can move. Along a segment q(τ) = q_a + τ Δq,
τ ∈ [0, 1], the centre of sphere s moves at most

    D_s = Σ_k |Δq_k| G[k, s]          (m; G from :func:`sphere_speed_bounds`)

where G[k, s] bounds the centre's speed per unit of DOF k: for a revolute joint, the distance
of the centre from the joint's axis is at most the distance from the joint's origin, which is at
most the sum of the lengths of the fixed translations between the joint and the sphere's link
(plus the travel of prismatic joints in between) plus the centre's distance from its link
origin; a prismatic joint moves it one metre per metre; mimic joints count with |multiplier|.
The bound holds for every configuration, so it needs no FK.

A signed distance to a convex obstacle changes no faster than the sphere's centre moves
(1-Lipschitz), so along a piece where sphere s moves at most D_s and its distance (to the nearest
obstacle) is d₀ and d₁ at the two ends, every configuration of the piece keeps at least

    min(d₀, d₁, (d₀ + d₁ − D_s) / 2)

and likewise for a self pair (a, b) with D_ab = Σ_k |Δq_k| H[k, ab], which counts only the joints
that move one of the two links and not the other (a joint moving both moves them rigidly
together, which leaves their distance unchanged). The piece's bound is the least over spheres and
pairs.

A piece whose bound is below the clearance is split into ``ceil(D / resolution)`` sub-steps
(then into 4 while pieces stay undecided, at most ``refinements`` times), so no sphere centre
moves more than ``resolution`` metres between two checked configurations. A piece is *in
collision* when one of its checked configurations is closer than the clearance, *clear* when its
bound reaches the clearance, and *undecided* (counted as not clear: the verdict is conservative)
when neither holds after the last refinement.

Because the robot's spheres cover its collision geometry, ``clearance_bound`` is a lower bound
of the exact distance of that geometry to the obstacles along the whole motion (self pairs:
between the enabled link pairs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..collision import CollisionChecker, RobotSpheres
from ..kinematics import Chain


def sphere_speed_bounds(chain: Chain, spheres: RobotSpheres) -> tuple[Tensor, Tensor]:
    """Per moving joint m and sphere s: (M, S) ρ[m, s], an upper bound on the speed of the
    centre (m) per unit of the joint's motion (rad or m) in every configuration (see the module
    docstring), and (M, S) bool: joint m moves the sphere. Float64 on the CPU; ρ is inf where a
    prismatic joint in between has no finite limit."""
    description = chain.description
    joint_of = dict(zip(description.link_names, description.parent_joint))
    moving = {name: m for m, name in enumerate(chain.moving_joint_names)}
    M, S = len(chain.moving_joint_names), spheres.num_spheres
    rho = torch.zeros(M, S, dtype=torch.float64)
    moves = torch.zeros(M, S, dtype=torch.bool)
    centres = spheres.centers.detach().double().cpu()
    for s in range(S):
        link = chain.link_names[int(spheres.sphere_links[s])]
        reach = float(centres[s].norm())  # bound on the centre's distance from the current link origin
        joint = joint_of[link]
        while joint is not None:
            if joint.is_movable:
                rho[moving[joint.name], s] = 1.0 if joint.type == "prismatic" else reach
                moves[moving[joint.name], s] = True
            reach += float(math.hypot(*joint.T_parent_joint[:3, 3]))
            if joint.type == "prismatic":
                reach += max(abs(joint.lower), abs(joint.upper))
            joint = joint_of[joint.parent]
    return rho, moves


@dataclass(frozen=True)
class MotionCheck:
    """Verdict on N piecewise-linear motions of T waypoints (m).

    clear (N,) bool: every waypoint and every segment keeps ``clearance`` (see the module
    docstring). min_distance (N,): the smallest sphere distance (world or self) over the checked
    configurations; clearance_bound (N,): the guaranteed smallest distance along the whole motion
    (≤ min_distance; ≥ the clearance where clear); waypoint_clear (N, T) bool: each waypoint keeps
    the clearance; first_collision (N,) int64: the first segment (0 .. T − 2) not shown clear, −1
    if none; closest_pair: per motion, the names of the pair at min_distance — (link, obstacle id)
    or (link, link); checked (int): configurations whose distances were computed.
    """

    clear: Tensor
    min_distance: Tensor
    clearance_bound: Tensor
    waypoint_clear: Tensor
    first_collision: Tensor
    closest_pair: tuple[tuple[str, str], ...]
    checked: int


class MotionChecker:
    """Checks motions against a :class:`CollisionChecker` at a clearance and a resolution.

    checker: the robot's spheres, scene and self pairs (its own margin is not used);
    clearance (m, ≥ 0): the distance every sphere pair must keep along the motion;
    resolution (m, > 0): the most a sphere centre moves between two checked configurations of a
    refined segment; refinements: how often undecided pieces are split again (by 4).
    """

    def __init__(self, checker: CollisionChecker, clearance: float, resolution: float = 0.01, refinements: int = 2,
                 max_substeps: int = 64):
        if not (math.isfinite(clearance) and clearance >= 0):
            raise ValueError(f"clearance must be finite and ≥ 0 m, got {clearance}")
        if not (math.isfinite(resolution) and resolution > 0):
            raise ValueError(f"resolution must be positive (m), got {resolution}")
        self.checker = checker
        self.clearance = float(clearance)
        self.resolution = float(resolution)
        self.refinements = int(refinements)
        self.max_substeps = int(max_substeps)
        chain, pairs = checker.chain, checker.self_pairs
        rho, moves = sphere_speed_bounds(chain, checker.spheres)
        per_dof = chain.joint_to_dof.detach().double().cpu().abs()  # (J, M)
        a, b = pairs.sphere_a.cpu(), pairs.sphere_b.cpu()
        relative = rho[:, a] * ~moves[:, b] + rho[:, b] * ~moves[:, a]  # (M, Q)
        #: (J, S): speed bound of each sphere centre per unit of each DOF; (J, Q): of each self
        #: pair's distance (m per rad or per m)
        self.sphere_speed = (per_dof @ rho).to(chain.device, chain.dtype)
        self.pair_speed = (per_dof @ relative).to(chain.device, chain.dtype)

    def with_scene(self, scene) -> "MotionChecker":
        """The same robot, clearance and resolution against another scene (nothing is rebuilt)."""
        other = object.__new__(MotionChecker)
        other.__dict__.update(self.__dict__)
        other.checker = self.checker.with_scene(scene)
        return other

    def sweep_bound(self, start: Tensor, end: Tensor) -> Tensor:
        """(..., J) piece ends -> (...,) the most any sphere centre moves along the piece (m)."""
        return ((end - start).abs() @ self.sphere_speed).amax(-1)

    def _distances(self, q: Tensor):
        """(n, J) -> per sphere its distance to the nearest obstacle (n, S) (+inf without
        obstacles), per self pair its distance (n, Q), and the CollisionDistances."""
        result = self.checker.distances(q, full=True)
        world = result.sphere_obstacle.amin(-1) if result.sphere_obstacle.shape[-1] else \
            torch.full(result.sphere_obstacle.shape[:2], math.inf, dtype=q.dtype, device=q.device)
        return world, result.sphere_pairs, result

    def _piece_bounds(self, w0, w1, s0, s1, qa, qb) -> Tensor:
        """The least distance along each piece (n,) from the distances at its ends: world (n, S),
        self (n, Q), and its end configurations (n, J) (see the module docstring)."""
        dq = (qb - qa).abs()
        bound = _piece_bound(w0, w1, dq @ self.sphere_speed).amin(-1)
        if s0.shape[-1]:
            bound = torch.minimum(bound, _piece_bound(s0, s1, dq @ self.pair_speed).amin(-1))
        return bound

    def check(self, positions: Tensor) -> MotionCheck:
        """positions (N, T, J) (or (T, J)) -> :class:`MotionCheck`. Batched: the waypoints of all
        motions in one query, then the sub-steps of every undecided segment in one query per
        refinement (no loop over motions or segments)."""
        if positions.dim() == 2:
            positions = positions.unsqueeze(0)
        positions = positions.detach()
        N, T, J = positions.shape
        c = self.clearance
        world, pair, waypoint_result = self._distances(positions.reshape(-1, J))  # (N T, S), (N T, Q)
        waypoint_distance = waypoint_result.min_distance.view(N, T)
        waypoint_clear = waypoint_distance >= c
        checked = N * T
        # the pieces still to decide: their segment (n (T − 1) + t), end configurations and the
        # distances there; a piece's end is the next piece's start (rows shifted by one)
        world, pair = world.view(N, T, -1), pair.view(N, T, -1)
        segment = torch.arange(N * (T - 1), device=positions.device)
        qa, qb = positions[:, :-1].reshape(-1, J), positions[:, 1:].reshape(-1, J)
        wa, wb = world[:, :-1].flatten(0, 1), world[:, 1:].flatten(0, 1)
        sa, sb = pair[:, :-1].flatten(0, 1), pair[:, 1:].flatten(0, 1)
        colliding = ~(waypoint_clear[:, :-1] & waypoint_clear[:, 1:]).reshape(-1)  # (N (T − 1),)
        undecided = torch.zeros_like(colliding)
        bound = torch.full((N * (T - 1),), math.inf, dtype=positions.dtype, device=positions.device)
        sub_steps = []  # per refinement: (distances, motion of each, their CollisionDistances)
        for level in range(self.refinements + 1):
            piece_bound = self._piece_bounds(wa, wb, sa, sb, qa, qb)
            open_ = (piece_bound < c) & ~colliding[segment]
            if level == self.refinements or not bool(open_.any()):
                bound.scatter_reduce_(0, segment, piece_bound, "amin")
                undecided.index_fill_(0, segment[open_], True)
                break
            bound.scatter_reduce_(0, segment[~open_], piece_bound[~open_], "amin")
            keep = open_.nonzero().squeeze(1)
            segment, qa, qb = segment[keep], qa[keep], qb[keep]
            wa, wb, sa, sb = wa[keep], wb[keep], sa[keep], sb[keep]
            if level == 0:  # no centre moves more than the resolution per sub-step
                D = self.sweep_bound(qa, qb)
                n = torch.ceil(D / self.resolution).clamp(2, self.max_substeps).to(torch.int64)
            else:
                n = torch.full_like(segment, 4)
            piece = torch.repeat_interleave(torch.arange(segment.shape[0], device=segment.device), n)
            k = torch.arange(piece.shape[0], device=segment.device) - (torch.cumsum(n, 0) - n)[piece]  # 0 .. n − 1
            a, b, n_piece = qa[piece], qb[piece], n[piece].unsqueeze(1).to(qa.dtype)
            new_a = a + (k.unsqueeze(1) / n_piece) * (b - a)
            new_b = a + ((k + 1).unsqueeze(1) / n_piece) * (b - a)
            interior = k > 0  # the first sub-step starts at the piece's start, whose distances are known
            w_new, s_new, result = self._distances(new_a[interior])
            checked += int(w_new.shape[0])
            sub_steps.append((result.min_distance, segment[piece[interior]] // (T - 1), result))
            colliding.index_fill_(0, segment[piece[interior]][result.min_distance < c], True)
            w_start, s_start = wa[piece], sa[piece]
            w_start[interior], s_start[interior] = w_new, s_new
            last = k == n[piece] - 1  # the end of sub-step k is the start of k + 1
            w_end, s_end = torch.roll(w_start, -1, 0), torch.roll(s_start, -1, 0)
            w_end[last], s_end[last] = wb[piece[last]], sb[piece[last]]
            segment, qa, qb, wa, wb, sa, sb = segment[piece], new_a, new_b, w_start, w_end, s_start, s_end
        not_clear = (colliding | undecided).view(N, T - 1)
        clear = ~not_clear.any(1) & waypoint_clear.all(1)
        first_collision = torch.where(not_clear.any(1), not_clear.to(torch.int8).argmax(1), -1)
        min_distance, at = waypoint_distance.min(1)
        pairs = [waypoint_result.nearest_pair(n * T + int(at[n])) for n in range(N)]
        for d_new, motion, result in sub_steps:  # a sub-step may come closer than every waypoint
            if d_new.numel() == 0:
                continue
            lowest = torch.full_like(min_distance, math.inf).scatter_reduce(0, motion, d_new, "amin")
            for n in (lowest < min_distance).nonzero().squeeze(1).tolist():
                pairs[n] = result.nearest_pair(int(torch.where(motion == n, d_new, math.inf).argmin()))
            min_distance = torch.minimum(min_distance, lowest)
        clearance_bound = torch.minimum(bound.view(N, T - 1).amin(1), min_distance)
        return MotionCheck(clear, min_distance, clearance_bound, waypoint_clear, first_collision, tuple(pairs), checked)


def _piece_bound(d0: Tensor, d1: Tensor, rate: Tensor) -> Tensor:
    """The least distance along a piece whose ends have distances d0, d1 and along which the
    distance changes by at most ``rate`` in all (see the module docstring)."""
    return torch.minimum(torch.minimum(d0, d1), 0.5 * (d0 + d1 - rate))
