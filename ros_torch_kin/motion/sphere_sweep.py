"""How far a robot's spheres can move along a joint-space segment, without FK, and the verdict
record of a whole-motion check (:class:`MotionCheck`, made by :mod:`.checking`).

Along a segment q(τ) = q_a + τ Δq, τ ∈ [0, 1], the centre of sphere s moves at most

    D_s = Σ_k |Δq_k| G[k, s]          (m; G from :func:`sphere_speed_bounds`)

where G[k, s] bounds the centre's speed per unit of DOF k: for a revolute joint, the distance
of the centre from the joint's axis is at most the distance from the joint's origin, which is at
most the sum of the lengths of the fixed translations between the joint and the sphere's link
(plus the travel of prismatic joints in between) plus the centre's distance from its link
origin; a prismatic joint moves it one metre per metre; mimic joints count with |multiplier|.
The bound holds for every configuration, so it needs no FK.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..collision import RobotSpheres
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
    or (link, link); checked (int): configurations whose distances were computed; segments
    (N, T − 1, C + 1): per segment a lower bound along it of each of the validator's C distance
    columns (``MotionValidator.column_track`` says which are world and which self distances), and
    the world distance it was required to keep (m; the self requirement is the validity margin),
    so that a curve near a segment can be shown clear without sampling it;
    closest_configuration (N, J): per motion the checked configuration at min_distance (where
    ``closest_pair`` names the pair); late: the check stopped at its deadline, so the pieces it
    did not reach are undecided (not clear).
    """

    clear: Tensor
    min_distance: Tensor
    clearance_bound: Tensor
    waypoint_clear: Tensor
    first_collision: Tensor
    closest_pair: tuple[tuple[str, str], ...]
    checked: int
    segments: Tensor | None = None
    closest_configuration: Tensor | None = None
    late: bool = False
