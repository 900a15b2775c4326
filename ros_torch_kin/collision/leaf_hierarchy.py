"""A bounding-volume hierarchy over a robot's many small leaf spheres, one tree per link, for the
tight verdict (:class:`.tree_checker.TreeCollisionChecker`).

Each link's leaves are split top-down: a node with more than ``bucket`` leaves gets up to
``fan_out`` children (repeated median splits of its leaf centres along their widest axis), a node
with fewer keeps itself as its only child, so that every link has the same number of levels and a
level is one padded table. Every node's sphere holds the spheres of all the leaves below it
(centre: the middle of their centres' bounding box; radius: the farthest leaf surface, rounded
up), so a node at distance ≥ d from something has every leaf below it at least that far. With
tiers (:func:`leaf_hierarchy`) the nodes hold the tiers' spheres, and a tier holds the geometry
its leaves cover, not the leaf spheres (as the coarse cover does): the geometry below a node is
then at least that far, and a checker's value, the smallest leaf distance reached, stays a lower
bound of the exact distance.

Built once per model on the CPU (numpy, a loop over nodes); the tables then live on the model's
device. Frames: each sphere in its link's frame. Units: m.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

#: Children per node (a power of two: that many median splits).
FAN_OUT = 4
#: Most leaves (or tiers) under a node of the last level. The checks compute each level's children
#: as one padded table (a self pair of buckets: bucket² distances, padding included), so small
#: buckets waste least: on the MBM Panda's 2,905 tiers, 4 made the verdict at B = 4,096 2× and
#: plans 1.2× faster than 16 (whose buckets held 7 tiers on average, padded to 16).
BUCKET = 4


@dataclass(frozen=True, eq=False)
class HierarchyLevel:
    """Nodes of one level: ``centers`` (N, 3) in their link's frame, ``radius`` (N,), ``links``
    (N,) int64 chain link index, ``children`` (N, F) int64 indices into the next level (the leaf
    spheres for the last level), padded by repeating the first child, ``valid`` (N, F) bool False
    on the padding, ``representative`` (N,) int64: one leaf below the node (the one whose centre
    is nearest the node's), whose distance is an upper bound of the node's smallest leaf
    distance."""

    centers: Tensor
    radius: Tensor
    links: Tensor
    children: Tensor
    valid: Tensor
    representative: Tensor

    def to(self, device, dtype) -> "HierarchyLevel":
        return HierarchyLevel(self.centers.to(device, dtype), self.radius.to(device, dtype), self.links.to(device),
                              self.children.to(device), self.valid.to(device), self.representative.to(device))


@dataclass(frozen=True, eq=False)
class LeafHierarchy:
    """``levels[0]``: one root per link that has leaves (its *slot*), in chain order; each level's
    ``children`` index the next; the last level's index leaf spheres. ``bodies``: each root's
    body (its link's index without per-leaf bodies; see :func:`leaf_hierarchy`)."""

    levels: tuple[HierarchyLevel, ...]
    bodies: tuple[int, ...] = ()

    @property
    def roots(self) -> HierarchyLevel:
        return self.levels[0]

    def to(self, device, dtype) -> "LeafHierarchy":
        return LeafHierarchy(tuple(level.to(device, dtype) for level in self.levels), self.bodies)


def leaf_hierarchy(centers: Tensor, radii: Tensor, links: Tensor, fan_out: int = FAN_OUT, bucket: int = BUCKET,
                   rounding: float = 1e-6, bodies: Tensor | None = None, tiers=None) -> LeafHierarchy:
    """Leaf spheres ``centers`` (S, 3) in their links' frames, ``radii`` (S,), ``links`` (S,) int64
    -> their :class:`LeafHierarchy` (module doc) in float64 on the CPU; ``rounding`` (m) is added
    to every node radius (float32 arithmetic of the checks stays conservative). ``bodies`` (S,)
    int64, optional: one root per body instead of per link, in increasing body order (an object
    carried by a link is a body of its own; every leaf of a body must be on one link, whose
    index the body's nodes keep in ``links`` for their transforms). ``tiers`` (optional,
    :class:`.robot_spheres.SphereTiers`): the hierarchy is built over the tiers, and its last
    level is the tiers themselves, each with its leaves as children (a tier's sphere bounds its
    leaves' geometry, not the leaf spheres: a block's value stays the smallest leaf distance
    reached, a lower bound of the exact one)."""
    if fan_out < 2 or fan_out & (fan_out - 1) or bucket < 1:
        raise ValueError(f"fan_out must be a power of two ≥ 2 and bucket ≥ 1, got {fan_out}, {bucket}")
    c = centers.detach().cpu().double().numpy()
    r = radii.detach().cpu().double().numpy()
    link = links.detach().cpu().numpy()
    body = link if bodies is None else bodies.detach().cpu().numpy()
    if tiers is None:
        levels, root_bodies = _levels(c, r, link, body, bodies is not None, fan_out, bucket, rounding)
        return LeafHierarchy(tuple(levels), root_bodies)
    of = tiers.of_sphere.detach().cpu().numpy()
    T = int(tiers.radii.shape[0])
    if len(of) != len(r) or (len(of) and (of.min() < 0 or of.max() >= T)):
        raise ValueError("every leaf must have a tier")
    counts = np.bincount(of, minlength=T)
    members = np.split(np.argsort(of, kind="stable"), np.cumsum(counts)[:-1])
    if (counts == 0).any():
        raise ValueError("every tier must have at least one leaf")
    tc = tiers.centers.detach().cpu().double().numpy()
    first = np.array([m[0] for m in members])
    levels, root_bodies = _levels(tc, tiers.radii.detach().cpu().double().numpy(), link[first], body[first],
                                  bodies is not None, fan_out, bucket, rounding)
    # a tier's representative: its leaf whose centre is nearest the tier's
    nearest = np.array([m[np.linalg.norm(c[m] - tc[t], axis=1).argmin()] for t, m in enumerate(members)])
    levels = [HierarchyLevel(level.centers, level.radius, level.links, level.children, level.valid,
                             torch.from_numpy(nearest[level.representative.numpy()])) for level in levels]
    table, valid = _padded([list(m) for m in members])
    levels.append(HierarchyLevel(torch.from_numpy(tc), tiers.radii.detach().cpu().double() * (1 + 1e-6) + rounding,
                                 torch.from_numpy(link[first].astype(np.int64)), table, valid,
                                 torch.from_numpy(nearest.astype(np.int64))))
    return LeafHierarchy(tuple(levels), root_bodies)


def _levels(c, r, link, body, by_body: bool, fan_out: int, bucket: int, rounding: float):
    """The levels over spheres ``c`` (S, 3), ``r`` (S,) with their ``link`` and ``body`` (S,),
    the last one's children indexing the spheres, and the roots' bodies."""
    root_bodies = np.unique(body)
    nodes = [np.flatnonzero(body == b) for b in root_bodies]  # the roots, chain (then body) order
    if by_body and any(len(np.unique(link[n])) != 1 for n in nodes):
        raise ValueError("every leaf of a body must be on the same link")
    levels: list[tuple[list[np.ndarray], list[list[int]]]] = []
    while True:
        if all(len(n) <= bucket for n in nodes):
            levels.append((nodes, [list(n) for n in nodes]))
            break
        following, children = [], []
        for members in nodes:
            parts = _split(c, members, fan_out) if len(members) > bucket else [members]
            children.append(list(range(len(following), len(following) + len(parts))))
            following += parts
        levels.append((nodes, children))
        nodes = following
    out = []
    for members_of, children in levels:
        middle = np.stack([0.5 * (c[m].min(0) + c[m].max(0)) for m in members_of])
        radius = np.array([float((np.linalg.norm(c[m] - mid, axis=1) + r[m]).max()) for m, mid in zip(members_of, middle)])
        table, valid = _padded(children)
        nearest = [int(m[np.linalg.norm(c[m] - mid, axis=1).argmin()]) for m, mid in zip(members_of, middle)]
        out.append(HierarchyLevel(torch.from_numpy(middle), torch.from_numpy(radius * (1 + 1e-6) + rounding),
                                  torch.from_numpy(np.array([link[m[0]] for m in members_of], dtype=np.int64)),
                                  table, valid, torch.tensor(nearest, dtype=torch.int64)))
    return out, tuple(int(b) for b in root_bodies)


def _split(c: np.ndarray, members: np.ndarray, parts: int) -> list[np.ndarray]:
    """``members`` in ``parts`` pieces of (nearly) equal size by repeated median splits along
    the widest axis of their centres."""
    pieces = [members]
    while len(pieces) < parts and any(len(m) > 1 for m in pieces):
        halves = []
        for m in pieces:
            if len(m) < 2:
                halves.append(m)
                continue
            axis = int(np.ptp(c[m], axis=0).argmax())
            order = m[np.argsort(c[m, axis], kind="stable")]
            halves += [order[:len(m) // 2], order[len(m) // 2:]]
        pieces = halves
    return pieces


def _padded(rows: list[list[int]]) -> tuple[Tensor, Tensor]:
    width = max(len(row) for row in rows)
    table = torch.tensor([row + [row[0]] * (width - len(row)) for row in rows], dtype=torch.int64)
    valid = torch.arange(width).unsqueeze(0) < torch.tensor([len(row) for row in rows]).unsqueeze(1)
    return table, valid
