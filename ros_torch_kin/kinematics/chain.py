"""The kinematic chain: every constant forward kinematics needs, as tensors on one device.

A :class:`Chain` is built once per URDF and never changes (``.to()`` returns a new one), so it can
be shared by concurrent callers and swapped by a single assignment.

Link-frame conventions: link ``l``'s pose at joint position ``q`` is
``T_parent_link(q) = T_parent_joint @ motion(axis, q)`` where ``T_parent_joint`` is the URDF
``<origin>`` and ``motion`` rotates about (revolute) or translates along (prismatic) the unit axis.
With Rodrigues' formula ``R(θ) = a aᵀ + cos θ (I − a aᵀ) + sin θ [a]ₓ``, every local transform is a
fixed linear combination ``C_const + cos q · C_cos + sin q · C_sin + q · C_q`` of four constant 3×4
matrices, which the chain stores per link (``local_constant``, ``local_linear``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Union

import numpy as np
import torch
from torch import Tensor

from .description import CONTINUOUS, PRISMATIC, REVOLUTE, RobotDescription
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

    Links are numbered breadth-first, so each tree level is a contiguous range.
    ``levels[d]`` = (start, end, parents) for depth d+1: links ``start:end`` and their parents'
    link indices. ``jump_ancestors`` (K, L) int64: row k
    holds each link's ancestor 2**k generations up (the root is its own ancestor), for the
    log-depth composition used at tiny batch sizes; K = max(1, ceil(log2(depth))).
    ``joint_links`` (M,): the links whose parent joint is movable (mimic joints included).
    """

    levels: tuple[tuple[int, int, Index], ...]
    jump_ancestors: Tensor
    joint_links: Index

    def to(self, device: torch.device) -> "ChainPlan":
        def move(index):
            return index if isinstance(index, slice) else index.to(device)

        return ChainPlan(
            levels=tuple((start, end, move(parents)) for start, end, parents in self.levels),
            jump_ancestors=self.jump_ancestors.to(device),
            joint_links=move(self.joint_links),
        )


@dataclass(frozen=True, eq=False)
class Chain:
    """A robot's kinematic tree on one device, in one floating dtype.

    Sizes: L links (``link_names``, breadth-first from the root: by depth, so parents come before
    children; depth-first order among links of one depth), J
    independent degrees of freedom (``joint_names``: movable joints that mimic nothing, in tree
    order). Mimic joints are not DOFs: they follow their leader through ``dof_to_link``.
    Units: m and rad (revolute/continuous) or m (prismatic).
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
    #: (L, 16, 1) and (L, 16, 3): each link's row-major 4×4 local transform is
    #: local_constant + local_linear @ (cos q_link, sin q_link, q_link)
    local_constant: Tensor
    local_linear: Tensor
    #: (L, J) and (L,): each link's joint value q_link = dof_to_link @ q + link_offset (mimics)
    dof_to_link: Tensor
    link_offset: Tensor
    #: M movable joints (independent and mimic), one per link in plan.joint_links:
    #: (M,) their names; (M, 3) unit axis in the child link frame; (M,) 1.0 if revolute or
    #: continuous (resp. prismatic); (M, L) 1.0 where the joint moves link l; (J, M) how each
    #: joint's motion maps onto the DOFs (1, or the mimic multiplier on the leader's row)
    moving_joint_names: tuple[str, ...]
    joint_axis: Tensor
    joint_is_revolute: Tensor
    joint_is_prismatic: Tensor
    joint_subtree_mask: Tensor
    joint_to_dof: Tensor
    #: (J, L) bool: DOF j moves link l (the ancestor mask)
    ancestor_mask: Tensor
    #: (L,) int64 parent link index; the root's parent is -1
    parent_index: Tensor
    plan: ChainPlan
    warnings: tuple[str, ...] = ()
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
        arrays = _chain_arrays(description)
        link_names, parent_joints = breadth_first(description)
        dofs = description.dof_joints

        def floats(name):
            return torch.as_tensor(arrays[name], dtype=dtype, device=device)

        return cls(
            name=description.name,
            link_names=link_names,
            joint_names=tuple(j.name for j in dofs),
            joint_types=tuple(j.type for j in dofs),
            link_joint_names=tuple(j.name if j else "" for j in parent_joints),
            lower_limits=torch.tensor([j.lower for j in dofs], dtype=dtype, device=device),
            upper_limits=torch.tensor([j.upper for j in dofs], dtype=dtype, device=device),
            velocity_limits=torch.tensor([j.velocity for j in dofs], dtype=dtype, device=device),
            effort_limits=torch.tensor([j.effort for j in dofs], dtype=dtype, device=device),
            local_constant=floats("local_constant"),
            local_linear=floats("local_linear"),
            dof_to_link=floats("dof_to_link"),
            link_offset=floats("link_offset"),
            moving_joint_names=tuple(parent_joints[l].name for l in arrays["joint_links"]),
            joint_axis=floats("joint_axis"),
            joint_is_revolute=floats("joint_is_revolute"),
            joint_is_prismatic=floats("joint_is_prismatic"),
            joint_subtree_mask=floats("joint_subtree_mask"),
            joint_to_dof=floats("joint_to_dof"),
            ancestor_mask=torch.as_tensor(arrays["ancestor_mask"], device=device),
            parent_index=torch.as_tensor(arrays["parent_index"], device=device),
            plan=_chain_plan(arrays["parent_index"], arrays["joint_links"]).to(device),
            warnings=description.warnings,
        )

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Chain":
        """A copy on ``device`` and/or in floating ``dtype`` (index tensors keep int64/bool)."""
        device = self.device if device is None else torch.device(device)
        dtype = self.dtype if dtype is None else dtype
        if not dtype.is_floating_point:
            raise TypeError(f"a chain's dtype must be floating point, not {dtype}")
        changes = {}
        for member in dataclasses.fields(self):
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

    def link_index(self, name: str) -> int:
        """Index of a link in ``link_names``; ValueError naming the link if there is none."""
        return _index_of(self._link_lookup, name, "link", self.name)

    def joint_index(self, name: str) -> int:
        """Index of an independent DOF in ``joint_names``; ValueError if unknown or a mimic."""
        return _index_of(self._joint_lookup, name, "joint", self.name, self._mimic_hint(name))

    def link_indices(self, names) -> list[int]:
        return [self.link_index(n) for n in names]

    def joint_indices(self, names) -> list[int]:
        return [self.joint_index(n) for n in names]

    def _mimic_hint(self, name: str) -> str:
        if name in self.link_joint_names and name not in self._joint_lookup:
            return " (it is a fixed or mimic joint, not an independent degree of freedom)"
        return ""

    def __repr__(self) -> str:
        return (
            f"Chain('{self.name}', {self.num_dofs} DOFs, {self.num_links} links, "
            f"root '{self.root_link}', {self.dtype}, {self.device})"
        )


def default_device() -> torch.device:
    """CUDA when a GPU is visible, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------------- helpers

def _index_of(table: dict[str, int], name: str, kind: str, robot: str, hint: str = "") -> int:
    try:
        return table[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown {kind} '{name}' in robot '{robot}'{hint}") from None


def _skew(a: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])


def _local_coefficients(joint) -> np.ndarray:
    """(16, 4) float64: columns (const, cos, sin, q) of the row-major 4×4 local transform."""
    coefficients = np.zeros((4, 4, 4))
    coefficients[3, 3, 0] = 1.0  # homogeneous bottom row (0, 0, 0, 1)
    if joint is None:
        coefficients[:3, :3, 0] = np.eye(3)
        return coefficients.reshape(16, 4)
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
    return coefficients.reshape(16, 4)


def breadth_first(description: RobotDescription) -> tuple[tuple[str, ...], tuple]:
    """(link names, their parent joints) ordered by depth; depth-first order within a depth."""
    depth = {description.root_link: 0}
    for joint in description.joints:  # parents come before children in the description
        depth[joint.child] = depth[joint.parent] + 1
    order = sorted(range(len(description.link_names)), key=lambda i: depth[description.link_names[i]])
    return (
        tuple(description.link_names[i] for i in order),
        tuple(description.parent_joint[i] for i in order),
    )


def _chain_arrays(description: RobotDescription) -> dict[str, np.ndarray]:
    links, parent_joints = breadth_first(description)
    L = len(links)
    dofs = description.dof_joints
    dof_index = {j.name: i for i, j in enumerate(dofs)}
    link_index = {name: i for i, name in enumerate(links)}

    parent_index = np.full(L, -1, dtype=np.int64)
    dof_to_link = np.zeros((L, len(dofs)))
    link_offset = np.zeros(L)
    coefficients = np.zeros((L, 16, 4))
    joint_links, axes, revolute, prismatic = [], [], [], []
    for l, joint in enumerate(parent_joints):
        coefficients[l] = _local_coefficients(joint)
        if joint is None:
            continue
        parent_index[l] = link_index[joint.parent]
        if not joint.is_movable:
            continue
        joint_links.append(l)
        axes.append(joint.axis)
        revolute.append(float(joint.type in (REVOLUTE, CONTINUOUS)))
        prismatic.append(float(joint.type == PRISMATIC))
        if joint.mimic is None:
            dof_to_link[l, dof_index[joint.name]] = 1.0
        else:
            dof_to_link[l, dof_index[joint.mimic.leader]] = joint.mimic.multiplier
            link_offset[l] = joint.mimic.offset

    subtree = np.eye(L)
    for l in range(L - 1, 0, -1):  # children come after parents: accumulate bottom-up
        subtree[parent_index[l]] += subtree[l]
    subtree = (subtree > 0).astype(np.float64)
    joint_links = np.array(joint_links, dtype=np.int64)
    joint_to_dof = dof_to_link[joint_links].T  # (J, M)
    joint_subtree = subtree[joint_links]  # (M, L)
    return {
        "local_constant": coefficients[:, :, :1].copy(),
        "local_linear": coefficients[:, :, 1:].copy(),
        "dof_to_link": dof_to_link,
        "link_offset": link_offset,
        "joint_links": joint_links,
        "joint_axis": np.array(axes).reshape(-1, 3),
        "joint_is_revolute": np.array(revolute),
        "joint_is_prismatic": np.array(prismatic),
        "joint_subtree_mask": joint_subtree.reshape(-1, L),
        "joint_to_dof": joint_to_dof.reshape(len(dofs), -1),
        "ancestor_mask": (np.abs(joint_to_dof) @ joint_subtree) > 0,
        "parent_index": parent_index,
    }


def _as_index(indices) -> Index:
    indices = [int(i) for i in indices]
    if not indices:
        return slice(0, 0)
    if indices == list(range(indices[0], indices[0] + len(indices))):
        return slice(indices[0], indices[0] + len(indices))
    return torch.tensor(indices, dtype=torch.int64)


def _chain_plan(parent_index: np.ndarray, joint_links: np.ndarray) -> ChainPlan:
    """Index structures of a breadth-first-numbered tree (see :class:`ChainPlan`)."""
    L = len(parent_index)
    depth = np.zeros(L, dtype=np.int64)
    for l in range(1, L):
        depth[l] = depth[parent_index[l]] + 1
    if np.any(np.diff(depth) < 0):
        raise AssertionError("links must be numbered breadth-first")
    levels = []
    for d in range(1, int(depth.max(initial=0)) + 1):
        members = np.flatnonzero(depth == d)
        parents = _as_index(parent_index[members])
        levels.append((int(members[0]), int(members[-1]) + 1, parents))

    ancestor = np.where(parent_index < 0, np.arange(L), parent_index)
    jumps = [ancestor]
    for _ in range(max(1, math.ceil(math.log2(max(int(depth.max(initial=0)), 1)))) - 1):
        jumps.append(jumps[-1][jumps[-1]])
    return ChainPlan(tuple(levels), torch.as_tensor(np.stack(jumps)), _as_index(joint_links))
