"""The robot as the URDF describes it, in float64 numpy, before anything is put on a device.

A :class:`RobotDescription` is what :func:`ros_torch_kin.kinematics.urdf.parse_urdf` returns after
validating the tree. :class:`ros_torch_kin.kinematics.chain.Chain` is built from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REVOLUTE = "revolute"
CONTINUOUS = "continuous"
PRISMATIC = "prismatic"
FIXED = "fixed"

#: Joint types that carry a degree of freedom.
MOVABLE_TYPES = (REVOLUTE, CONTINUOUS, PRISMATIC)


@dataclass(frozen=True)
class Mimic:
    """``q_follower = multiplier * q_leader + offset`` (URDF ``<mimic>``); units of each joint."""

    leader: str
    multiplier: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True)
class JointDescription:
    """One URDF joint.

    ``T_parent_joint`` (4, 4) float64 maps the joint frame (= the child link frame at q = 0) into
    the parent link frame (URDF ``<origin>``; m). ``axis`` (3,) is a unit vector in the joint frame
    (zeros for fixed joints). Limits are in rad (revolute) or m (prismatic), velocity in rad/s or
    m/s, effort in N·m or N; a continuous joint has lower = -inf and upper = +inf.
    """

    name: str
    type: str
    parent: str
    child: str
    T_parent_joint: np.ndarray
    axis: np.ndarray
    lower: float = -np.inf
    upper: float = np.inf
    velocity: float = np.inf
    effort: float = np.inf
    mimic: Mimic | None = None

    @property
    def is_movable(self) -> bool:
        return self.type in MOVABLE_TYPES


@dataclass(frozen=True)
class RobotDescription:
    """A validated kinematic tree.

    ``link_names`` is in depth-first pre-order from the root (every parent before its children),
    children visited in URDF declaration order. ``parent_joint[i]`` is the joint whose child is
    ``link_names[i]`` (``None`` for the root). ``warnings`` holds what the parser reported but
    tolerated (unknown tags, ...).
    """

    name: str
    link_names: tuple[str, ...]
    parent_joint: tuple[JointDescription | None, ...]
    warnings: tuple[str, ...] = ()

    @property
    def root_link(self) -> str:
        return self.link_names[0]

    @property
    def joints(self) -> tuple[JointDescription, ...]:
        """Every joint, in the order of their child links."""
        return tuple(j for j in self.parent_joint if j is not None)

    @property
    def dof_joints(self) -> tuple[JointDescription, ...]:
        """The independent degrees of freedom: movable joints that mimic nothing, tree order."""
        return tuple(j for j in self.joints if j.is_movable and j.mimic is None)
