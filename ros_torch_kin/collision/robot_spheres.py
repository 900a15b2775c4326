"""The robot's shape as spheres fixed to its links: what every collision query runs on.

A :class:`RobotSpheres` is built once per URDF (see :mod:`.urdf_spheres`) and never changes;
``.to()`` returns a copy on another device or in another dtype, like :class:`Chain`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor


@dataclass(frozen=True, eq=False)
class SphereTiers:
    """Spheres that each bound some of a tight model's spheres' geometry (its sphere tree's nodes
    at a middle slack, see :class:`.sphere_tree.TreeSettings`): ``centers`` (T, 3) in the frame of
    the link their spheres are on, ``radii`` (T,) m, ``of_sphere`` (S,) int64 each sphere's tier.
    A tier's sphere holds all the collision geometry that its spheres cover (not the spheres
    themselves), so a tier at distance ≥ d from something has that geometry that far, and a
    checker need look at its spheres only when it is nearer."""

    centers: Tensor
    radii: Tensor
    of_sphere: Tensor

    @property
    def count(self) -> int:
        return int(self.radii.shape[0])

    def to(self, device, dtype) -> "SphereTiers":
        return SphereTiers(self.centers.to(device, dtype), self.radii.to(device, dtype), self.of_sphere.to(device))

    def appended(self, centers: Tensor, radii: Tensor) -> "SphereTiers":
        """The tiers of the spheres with spheres ``centers`` (n, 3), ``radii`` (n,) appended
        after them, each its own tier (its sphere is its only one)."""
        start, n = self.count, int(radii.shape[0])
        return SphereTiers(torch.cat([self.centers, centers.to(self.centers)]), torch.cat([self.radii, radii.to(self.radii)]),
                           torch.cat([self.of_sphere, torch.arange(start, start + n, device=self.of_sphere.device)]))


@dataclass(frozen=True, eq=False)
class LeafTriangles:
    """The geometry each of a tight model's spheres covers, where it is triangles (a mesh's, or
    the pieces its tree split them into): ``corners`` (N, 3, 3) m, in the frame of the link the
    sphere is on (triangle, corner, xyz; a segment or a point repeats a corner); ``start``
    (S + 1,) int64: sphere s covers ``corners[start[s]:start[s + 1]]``; ``radii`` (N,) m: each
    triangle stands for the points within its radius of it (0 for a mesh's; a URDF
    ``<sphere>``'s leaf is its centre, three times, grown by its radius). An empty range: that
    sphere's geometry is not given as triangles (a primitive's prisms, a carried object), and
    its sphere alone bounds it. The (grown) triangles hold every point the sphere must cover, so
    the least distance between two spheres' triangles, less both radii, is the exact distance of
    what they cover (:mod:`.triangle_distance`)."""

    corners: Tensor
    start: Tensor
    radii: Tensor

    @property
    def counts(self) -> Tensor:
        """(S,) int64: each sphere's number of triangles (0: not given as triangles)."""
        return self.start[1:] - self.start[:-1]

    def to(self, device, dtype) -> "LeafTriangles":
        return LeafTriangles(self.corners.to(device, dtype), self.start.to(device), self.radii.to(device, dtype))

    def appended(self, n: int) -> "LeafTriangles":
        """The same with ``n`` spheres appended whose geometry is not given as triangles."""
        return LeafTriangles(self.corners, torch.cat([self.start, self.start[-1:].expand(n)]), self.radii)


@dataclass(frozen=True, eq=False)
class RobotSpheres:
    """S spheres, each rigidly attached to one link of a chain.

    ``link_names`` is the chain's ``link_names`` (L); ``sphere_links`` (S,) int64 indexes it.
    ``centers`` (S, 3): sphere centres in their link's frame (m); ``radii`` (S,) (m).
    ``slack`` (S,): an upper bound (m) on how far any point of the sphere lies from the link's
    collision geometry that it covers (0 for a URDF ``<sphere>``; user spheres: their radius), so
    for two covered bodies A and B, ``d_spheres <= d_exact <= d_spheres + slack_a + slack_b``.
    ``source`` per link: 'urdf' (covered from <collision>), 'user' (from a spheres file) or
    'none' (no collision geometry); ``warnings``: what was skipped while building (a mesh not
    found, ...), each naming the link and the file.
    """

    link_names: tuple[str, ...]
    sphere_links: Tensor
    centers: Tensor
    radii: Tensor
    slack: Tensor
    source: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    #: (S,) int64 or None: the broad-phase group of each sphere (a tight model's sphere tree
    #: nodes, numbered across the robot; every group within one link); None for a coarse model
    sphere_groups: Tensor | None = None
    #: optional :class:`SphereTiers` over the spheres (a tight model's), None for none
    tiers: SphereTiers | None = None
    #: optional :class:`LeafTriangles` of the spheres (a tight model's), None for none
    triangles: LeafTriangles | None = None
    _counts: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self):
        counts = torch.bincount(self.sphere_links.cpu(), minlength=len(self.link_names))
        object.__setattr__(self, "_counts", tuple(int(c) for c in counts))

    @property
    def num_spheres(self) -> int:
        return int(self.radii.shape[0])

    @property
    def device(self) -> torch.device:
        return self.centers.device

    @property
    def dtype(self) -> torch.dtype:
        return self.centers.dtype

    def count_per_link(self) -> dict[str, int]:
        """Link name -> number of spheres (every link, zeros included)."""
        return dict(zip(self.link_names, self._counts))

    @property
    def links_without_geometry(self) -> tuple[str, ...]:
        return tuple(name for name, count in zip(self.link_names, self._counts) if count == 0)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "RobotSpheres":
        device = self.device if device is None else torch.device(device)
        dtype = self.dtype if dtype is None else dtype
        return replace(
            self,
            sphere_links=self.sphere_links.to(device),
            centers=self.centers.to(device, dtype),
            radii=self.radii.to(device, dtype),
            slack=self.slack.to(device, dtype),
            sphere_groups=None if self.sphere_groups is None else self.sphere_groups.to(device),
            tiers=None if self.tiers is None else self.tiers.to(device, dtype),
            triangles=None if self.triangles is None else self.triangles.to(device, dtype),
        )
