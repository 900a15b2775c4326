"""The kinematic chain: every constant forward kinematics needs, as tensors on one device.

A :class:`Chain` is built once per URDF and never changes (``.to()`` returns a new one), so it can
be shared by concurrent callers and swapped by a single assignment.

Conventions: link ``l``'s pose at joint position ``q`` is
``T_parent_link(q) = T_parent_joint @ motion(axis, q)`` where ``T_parent_joint`` is the URDF
``<origin>`` and ``motion`` rotates about (revolute) or translates along (prismatic) the unit axis.
With Rodrigues' formula ``R(θ) = a aᵀ + cos θ (I − a aᵀ) + sin θ [a]ₓ`` every local transform is a
fixed linear combination ``C_const + cos q · C_cos + sin q · C_sin + q · C_q`` of constant 4×4
matrices (``local_constant``, ``local_linear``).

Links are of two kinds. *Bodies* are the root and every link whose parent joint moves; fixed
joints are folded into the coefficients of the body below them, so composition runs over bodies
only. *Frames* are links attached by fixed joints: each is placed at the end as
``T_world_anchor @ frame_offset``, its nearest body ancestor times a constant.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Union

import numpy as np
import torch
from torch import Tensor

from .description import CONTINUOUS, PRISMATIC, REVOLUTE, JointDescription, Mimic, RobotDescription
from .urdf import FloatingJointPolicy, parse_urdf

Index = Union[Tensor, slice]


def take(t: Tensor, index: Index, dim: int = 0) -> Tensor:
    """``t`` restricted to ``index`` along ``dim``: a view for a slice, a gather for a tensor."""
    if isinstance(index, slice):
        return t.narrow(dim, index.start, index.stop - index.start)
    return t.index_select(dim, index)


@dataclass(frozen=True, eq=False)
class ChainPlan:
    """Index structures fixed by the tree's shape (slices where indices are consecutive).

    Bodies are links ``0:num_bodies``, numbered breadth-first over the tree of bodies, so each
    level of that tree is a contiguous range: ``levels[d]`` = (start, end, parents) for depth
    d+1. ``frame_anchors``: the body each frame (links ``num_bodies:L``) hangs from.
    ``jump_ancestors`` (K, L) int64: row k holds each link's ancestor 2**k levels up in the tree
    of bodies with the frames hung from their anchors (the root is its own ancestor), for the
    log-depth composition used at tiny batch sizes, K = max(1, ceil(log2(depth))).
    ``joint_links`` (M,): links whose parent joint is movable.
    """

    num_bodies: int
    levels: tuple[tuple[int, int, Index], ...]
    jump_ancestors: Tensor
    frame_anchors: Index
    joint_links: Index

    def to(self, device: torch.device) -> "ChainPlan":
        def move(index):
            return index if isinstance(index, slice) else index.to(device)

        return ChainPlan(
            num_bodies=self.num_bodies,
            levels=tuple((start, end, move(parents)) for start, end, parents in self.levels),
            jump_ancestors=self.jump_ancestors.to(device),
            frame_anchors=move(self.frame_anchors),
            joint_links=move(self.joint_links),
        )


@dataclass(frozen=True, eq=False)
class Chain:
    """A robot's kinematic tree on one device, in one floating dtype.

    Sizes: L links (``link_names``: the root, the links moved by joints in breadth-first order,
    then the links attached by fixed joints); J independent degrees of freedom
    (``joint_names``: movable joints that mimic nothing, depth-first tree order); M movable
    joints (independent and mimic); N = ``plan.num_bodies`` bodies; F = L − N frames. Mimic
    joints are not DOFs: they follow their leader. Units: m, rad.
    """

    name: str
    link_names: tuple[str, ...]
    joint_names: tuple[str, ...]
    joint_types: tuple[str, ...]
    #: name of the URDF joint whose child is each link ('' for the root), (L,)
    link_joint_names: tuple[str, ...]
    #: (J,) position limits (rad or m; ±inf for continuous joints), velocity (rad/s or m/s), effort
    lower_limits: Tensor
    upper_limits: Tensor
    velocity_limits: Tensor
    effort_limits: Tensor
    #: (L, 16, 1) and (L, 16, 3): each body's row-major 4×4 pose in its parent body is
    #: local_constant + local_linear @ (cos q_link, sin q_link, q_link); a frame's rows hold its
    #: constant pose in its anchor body (fixed joints composed; local_linear zero)
    local_constant: Tensor
    local_linear: Tensor
    #: (L, J) and (L,): each link's joint value q_link = link_dofs @ q + link_offset (mimic
    #: multipliers and offsets; zero rows for the root and frames)
    link_dofs: Tensor
    link_offset: Tensor
    #: M movable joints, one per link in plan.joint_links: (M,) names; (M, 3) unit axis in the
    #: child link frame; (M, 1, 1) 1.0 if revolute or continuous (resp. prismatic); (M, L) 1.0
    #: where the joint moves link l; (J, M) each joint's motion per unit of each DOF (1, or the
    #: mimic multiplier on its leader's row)
    moving_joint_names: tuple[str, ...]
    joint_axis: Tensor
    joint_is_revolute: Tensor
    joint_is_prismatic: Tensor
    joint_subtree_mask: Tensor
    joint_to_dof: Tensor
    #: (J, L) bool: DOF j moves link l (the ancestor mask)
    ancestor_mask: Tensor
    #: (L,) int64 URDF parent link index; the root's parent is -1
    parent_index: Tensor
    plan: ChainPlan
    #: the float64 description the chain was built from (rebuilds exactly in another dtype)
    description: RobotDescription = field(repr=False)
    _link_lookup: dict[str, int] = field(init=False, repr=False)
    _joint_lookup: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "_link_lookup", {n: i for i, n in enumerate(self.link_names)})
        object.__setattr__(self, "_joint_lookup", {n: i for i, n in enumerate(self.joint_names)})

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_urdf(
        cls,
        urdf: str,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        floating_joints: FloatingJointPolicy = "error",
    ) -> "Chain":
        """Parse a URDF string and build the chain on ``device`` (default: CUDA if available).

        Constants are computed in float64 and cast to ``dtype`` once. Raises ValueError naming the
        joint or link at fault for a malformed URDF (see :func:`parse_urdf`).
        """
        return cls.from_description(parse_urdf(urdf, floating_joints), device, dtype)

    @classmethod
    def from_description(
        cls,
        description: RobotDescription,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> "Chain":
        if not dtype.is_floating_point:
            raise TypeError(f"a chain's dtype must be floating point, not {dtype}")
        device = default_device() if device is None else torch.device(device)
        layout = _Layout(description)
        arrays = layout.arrays()
        dofs = description.dof_joints
        _require_representable(layout, arrays, dtype)

        def tensor(name, floating=True):
            return torch.as_tensor(arrays[name], dtype=dtype if floating else None, device=device)

        def limits(attribute):
            return torch.tensor([getattr(j, attribute) for j in dofs], dtype=dtype, device=device)

        return cls(
            name=description.name,
            link_names=tuple(layout.links),
            joint_names=tuple(j.name for j in dofs),
            joint_types=tuple(j.type for j in dofs),
            link_joint_names=tuple(j.name if j else "" for j in layout.parent_joints),
            lower_limits=limits("lower"),
            upper_limits=limits("upper"),
            velocity_limits=limits("velocity"),
            effort_limits=limits("effort"),
            local_constant=tensor("local_constant"),
            local_linear=tensor("local_linear"),
            link_dofs=tensor("link_dofs"),
            link_offset=tensor("link_offset"),
            moving_joint_names=tuple(layout.parent_joints[l].name for l in layout.joint_links),
            joint_axis=tensor("joint_axis"),
            joint_is_revolute=tensor("joint_is_revolute"),
            joint_is_prismatic=tensor("joint_is_prismatic"),
            joint_subtree_mask=tensor("joint_subtree_mask"),
            joint_to_dof=tensor("joint_to_dof"),
            ancestor_mask=tensor("ancestor_mask", floating=False),
            parent_index=tensor("parent_index", floating=False),
            plan=layout.plan().to(device),
            description=description,
        )

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Chain":
        """A copy on ``device`` and/or in floating ``dtype``. A new dtype is built again from the
        float64 description (so float32 -> float64 gives full float64 accuracy); a new device
        only moves the tensors."""
        device = self.device if device is None else torch.device(device)
        dtype = self.dtype if dtype is None else dtype
        if not dtype.is_floating_point:
            raise TypeError(f"a chain's dtype must be floating point, not {dtype}")
        if dtype != self.dtype:
            return Chain.from_description(self.description, device, dtype)
        changes = {}
        for member in dataclasses.fields(self):
            if not member.init:
                continue
            value = getattr(self, member.name)
            if isinstance(value, Tensor):
                changes[member.name] = value.to(
                    device=device, dtype=dtype if value.is_floating_point() else None
                )
            elif isinstance(value, ChainPlan):
                changes[member.name] = value.to(device)
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ properties and lookups
    @property
    def device(self) -> torch.device:
        return self.local_linear.device

    @property
    def dtype(self) -> torch.dtype:
        return self.local_linear.dtype

    @property
    def num_dofs(self) -> int:
        return len(self.joint_names)

    @property
    def num_links(self) -> int:
        return len(self.link_names)

    @property
    def root_link(self) -> str:
        return self.link_names[0]

    def has_link(self, name: str) -> bool:
        return name in self._link_lookup

    def link_index(self, name: str) -> int:
        """Index of a link in ``link_names``; ValueError naming the link if there is none."""
        return _index_of(self._link_lookup, name, "link", self.name)

    def joint_index(self, name: str) -> int:
        """Index of an independent DOF in ``joint_names``; ValueError if unknown or a mimic."""
        hint = ""
        if name in self.link_joint_names and name not in self._joint_lookup:
            hint = " (it is a fixed or mimic joint, not an independent degree of freedom)"
        return _index_of(self._joint_lookup, name, "joint", self.name, hint)

    def link_indices(self, names) -> list[int]:
        return [self.link_index(n) for n in names]

    def joint_indices(self, names) -> list[int]:
        return [self.joint_index(n) for n in names]

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the URDF parser reported but tolerated."""
        return self.description.warnings

    def __repr__(self) -> str:
        return (
            f"Chain('{self.name}', {self.num_dofs} DOFs, {self.num_links} links, "
            f"root '{self.root_link}', {self.dtype}, {self.device})"
        )


def default_device() -> torch.device:
    """CUDA when a GPU is visible, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------------- building


def _index_of(table: dict[str, int], name: str, kind: str, robot: str, hint: str = "") -> int:
    try:
        return table[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown {kind} '{name}' in robot '{robot}'{hint}") from None


def _skew(a: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])


def _local_coefficients(joint: JointDescription | None) -> np.ndarray:
    """(4, 4, 4) float64: [..., f] is the 4×4 coefficient of feature f = (1, cos, sin, q)."""
    coefficients = np.zeros((4, 4, 4))
    coefficients[3, 3, 0] = 1.0  # homogeneous bottom row (0, 0, 0, 1)
    if joint is None:
        coefficients[:3, :3, 0] = np.eye(3)
        return coefficients
    R0, t0, a = joint.T_parent_joint[:3, :3], joint.T_parent_joint[:3, 3], joint.axis
    coefficients[:3, 3, 0] = t0
    if joint.type in (REVOLUTE, CONTINUOUS):
        aaT = np.outer(a, a)
        coefficients[:3, :3, 0] = R0 @ aaT
        coefficients[:3, :3, 1] = R0 @ (np.eye(3) - aaT)
        coefficients[:3, :3, 2] = R0 @ _skew(a)
    else:
        coefficients[:3, :3, 0] = R0
        if joint.type == PRISMATIC:
            coefficients[:3, 3, 3] = R0 @ a
    return coefficients


class _Layout:
    """Link order, bodies and frames of a description, and the arrays of a Chain (float64)."""

    def __init__(self, description: RobotDescription):
        self.description = description
        joint_of = dict(zip(description.link_names, description.parent_joint))
        depth = {description.root_link: 0}
        for joint in description.joints:  # parents come before children in the description
            depth[joint.child] = depth[joint.parent] + 1
        # the body each link hangs from, and the constant pose of the link in that body
        anchor, offset = {description.root_link: description.root_link}, {description.root_link: np.eye(4)}
        for joint in description.joints:
            if joint.is_movable:
                anchor[joint.child], offset[joint.child] = joint.child, np.eye(4)
            else:
                anchor[joint.child] = anchor[joint.parent]
                offset[joint.child] = offset[joint.parent] @ joint.T_parent_joint
        body_depth = {description.root_link: 0}
        for joint in description.joints:
            if joint.is_movable:
                body_depth[joint.child] = body_depth[anchor[joint.parent]] + 1
        dfs = {name: i for i, name in enumerate(description.link_names)}
        bodies = sorted(body_depth, key=lambda n: (body_depth[n], dfs[n]))
        frames = sorted((n for n in description.link_names if n not in body_depth), key=lambda n: (depth[n], dfs[n]))
        self.links = bodies + frames
        self.num_bodies = len(bodies)
        self.index = {name: i for i, name in enumerate(self.links)}
        self.parent_joints = [joint_of[name] for name in self.links]
        self.anchor, self.offset, self.body_depth, self.depth = anchor, offset, body_depth, depth
        self.joint_links = [i for i, j in enumerate(self.parent_joints) if j is not None and j.is_movable]

    def arrays(self) -> dict[str, np.ndarray]:
        description, index, links = self.description, self.index, self.links
        L, N = len(links), self.num_bodies
        dofs = description.dof_joints
        dof_index = {j.name: i for i, j in enumerate(dofs)}

        coefficients = np.zeros((L, 4, 4, 4))  # bodies, then frames (constant pose in the anchor)
        for b in range(N):
            joint = self.parent_joints[b]
            local = _local_coefficients(joint)
            if joint is not None:  # fold the fixed joints between the parent body and this joint
                local = np.einsum("ij,jkf->ikf", self.offset[joint.parent], local)
            coefficients[b] = local
        for f, name in enumerate(links[N:], start=N):
            coefficients[f, :, :, 0] = self.offset[name]

        # each movable joint's value: multiplier * q[leader] + offset (a joint that mimics nothing is
        # its own leader, multiplier 1, offset 0)
        moving = [self.parent_joints[l] for l in self.joint_links]
        joint_to_dof, link_dofs, link_offset = np.zeros((len(dofs), len(moving))), np.zeros((L, len(dofs))), np.zeros(L)
        for m, (l, joint) in enumerate(zip(self.joint_links, moving)):
            mimic = joint.mimic or Mimic(joint.name)
            joint_to_dof[dof_index[mimic.leader], m] = link_dofs[l, dof_index[mimic.leader]] = mimic.multiplier
            link_offset[l] = mimic.offset

        parent_index = np.array([index[j.parent] if j else -1 for j in self.parent_joints], dtype=np.int64)
        subtree = np.eye(L)
        for l in sorted(range(1, L), key=lambda l: -self.depth[links[l]]):  # deepest first
            subtree[parent_index[l]] += subtree[l]
        subtree = (subtree > 0).astype(np.float64)
        joint_subtree = subtree[self.joint_links].reshape(-1, L)
        flat = coefficients.reshape(L, 16, 4)
        return {
            "local_constant": flat[:, :, :1].copy(),
            "local_linear": flat[:, :, 1:].copy(),
            "link_dofs": link_dofs,
            "link_offset": link_offset,
            "joint_axis": np.array([j.axis for j in moving]).reshape(-1, 3),
            "joint_is_revolute": np.array([float(j.type in (REVOLUTE, CONTINUOUS)) for j in moving]).reshape(-1, 1, 1),
            "joint_is_prismatic": np.array([float(j.type == PRISMATIC) for j in moving]).reshape(-1, 1, 1),
            "joint_subtree_mask": joint_subtree,
            "joint_to_dof": joint_to_dof,
            "ancestor_mask": (np.abs(joint_to_dof) @ joint_subtree) > 0,
            "parent_index": parent_index,
        }

    def plan(self) -> ChainPlan:
        N, index = self.num_bodies, self.index
        bodies = self.links[:N]
        parent_body = np.array(
            [index[self.anchor[self.parent_joints[b].parent]] if b else 0 for b in range(N)], dtype=np.int64
        )
        depth = np.array([self.body_depth[name] for name in bodies], dtype=np.int64)
        levels = []
        for d in range(1, int(depth.max(initial=0)) + 1):
            members = np.flatnonzero(depth == d)
            levels.append((int(members[0]), int(members[-1]) + 1, _as_index(parent_body[members])))
        anchors = [index[self.anchor[name]] for name in self.links[N:]]
        parent = np.concatenate((parent_body, np.array(anchors, dtype=np.int64)))
        deepest = max([int(depth.max(initial=0))] + [int(depth[a]) + 1 for a in anchors])
        jumps = [parent]
        for _ in range(max(1, math.ceil(math.log2(max(deepest, 1)))) - 1):
            jumps.append(jumps[-1][jumps[-1]])
        return ChainPlan(
            num_bodies=N,
            levels=tuple(levels),
            jump_ancestors=torch.as_tensor(np.stack(jumps)),
            frame_anchors=_as_index(anchors),
            joint_links=_as_index(self.joint_links),
        )


def _require_representable(layout: "_Layout", arrays: dict[str, np.ndarray], dtype: torch.dtype) -> None:
    """ValueError naming the joint when a constant of the model does not fit ``dtype`` (an
    ``<origin>`` of 1e39 m is finite in float64 but infinite in float32, and FK would answer NaN)."""
    largest = torch.finfo(dtype).max
    constants = np.concatenate((arrays["local_constant"], arrays["local_linear"]), axis=2).reshape(len(layout.links), -1)
    for row in np.flatnonzero(np.abs(constants).max(axis=1) > largest):
        name = layout.links[row]
        joint = layout.parent_joints[row]
        where = f"joint '{joint.name}' (parent of link '{name}')" if joint else f"link '{name}'"
        raise ValueError(
            f"{where}: its <origin> (with the fixed joints above it) has a value of "
            f"{np.abs(constants[row]).max():.3g} m, beyond {str(dtype).replace('torch.', '')}'s range "
            f"({largest:.3g}); fix the URDF or use float64"
        )
    for joint in layout.description.dof_joints:
        for attribute in ("lower", "upper", "velocity", "effort"):
            value = getattr(joint, attribute)
            if np.isfinite(value) and abs(value) > largest:
                raise ValueError(
                    f"joint '{joint.name}': <limit {attribute}> = {value:.3g} is beyond "
                    f"{str(dtype).replace('torch.', '')}'s range ({largest:.3g})"
                )


def _as_index(indices) -> Index:
    indices = [int(i) for i in indices]
    if not indices:
        return slice(0, 0)
    if indices == list(range(indices[0], indices[0] + len(indices))):
        return slice(indices[0], indices[0] + len(indices))
    return torch.tensor(indices, dtype=torch.int64)
