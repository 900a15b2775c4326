"""Objects the robot carries: an obstacle fixed to a link (MoveIt's AttachedCollisionObject).

An :class:`AttachedObject` is a shape (any :class:`~.obstacles.Obstacle` kind: a primitive or a
voxel grid from a mesh or points) whose ``pose`` is given in its parent *link's* frame, so it
moves with that link. The checkers treat it as a *body* of its own fixed to that link:

* its spheres (coarse: a dozen covering spheres as for a robot link, :mod:`.sphere_cover`;
  tight: the leaves of a sphere tree a few mm loose, :mod:`.sphere_tree`; a voxel grid: one
  sphere per boundary voxel) are expressed in the parent link's frame and carry that link's
  index, so FK, gradients and swept-motion bounds treat them as the link's own;
* world pairs: every one of its spheres against every obstacle, like any link;
* self pairs: the object against every robot link that carries spheres, except its parent link
  and its ``touch_links`` (contact with those is ignored), *whatever the SRDF says* about the
  parent link's pairs; and against the other attached objects, except those on the same link
  (they cannot move relative to each other) or on a link either one lists as a touch link.

Links fixed rigidly to the parent (a hand's other frames) are checked like any other link, as
MoveIt does: one the object touches where it is held must be listed in ``touch_links``, else
every configuration is in collision.

Covers are computed once per object (cached on it; primitives also per shape, process-wide) on
the CPU with numpy. Frames: an object's covers are first built in its own frame, then placed in
the link frame by its pose. Units: m.
"""

from __future__ import annotations

import functools
import math
import threading
import weakref
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .obstacles import BOX, CAPSULE, CYLINDER, SPHERE, VOXELS, Obstacle
from .robot_spheres import RobotSpheres
from .sphere_cover import CoverSettings, SphereCover, cover_problem_for_shape, solve_cover
from .sphere_tree import TreeSettings, build_sphere_tree
from .urdf_geometry import CollisionShape

#: Reason given (in a checker's SelfCollisionPairs.disabled) for an object and its parent link.
PARENT_LINK = "attached to this link"
#: ... for an object and one of its touch links.
TOUCH_LINK = "touch link of the attached object"
#: ... for two objects carried by the same link.
SAME_LINK = "attached objects on the same link"
#: Spheres of a voxel object's coarse cover (clusters of its boundary voxels).
VOXEL_COARSE_SPHERES = 12


@dataclass(frozen=True, eq=False)
class AttachedObject:
    """``obstacle`` carried by the robot's link ``link``: its ``pose`` is the object frame in the
    *link* frame (4×4, m). ``touch_links``: links whose contact with the object is ignored
    (fingers that hold it). ``id``: unique among the attached objects and the scene's
    obstacles; the obstacle's own id is replaced by it. Immutable; ValueError naming the field
    for a bad value (the link names are checked against a chain by :func:`check_attached`)."""

    id: str
    link: str
    obstacle: Obstacle
    touch_links: tuple[str, ...] = ()

    def __post_init__(self):
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"attached object id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.link, str) or not self.link:
            raise ValueError(f"attached object '{self.id}': link must be a link name, got {self.link!r}")
        if not isinstance(self.obstacle, Obstacle):
            raise ValueError(f"attached object '{self.id}': obstacle must be an Obstacle, "
                             f"not {type(self.obstacle).__name__}")
        touch = tuple(self.touch_links)
        for i, name in enumerate(touch):
            if not isinstance(name, str) or not name:
                raise ValueError(f"attached object '{self.id}': touch_links[{i}] must be a link name, got {name!r}")
        object.__setattr__(self, "touch_links", tuple(dict.fromkeys(touch)))
        if self.obstacle.id != self.id:
            o = self.obstacle
            object.__setattr__(self, "obstacle", Obstacle(self.id, o.kind, o.dimensions, o.pose, o.grid))

    # ------------------------------------------------------------------ placing
    @classmethod
    def at_link_pose(cls, obstacle: Obstacle, link: str, link_pose, touch_links: Sequence[str] = ()) -> "AttachedObject":
        """``obstacle`` as it is now in the root frame, attached to ``link`` whose pose (link frame
        -> root, 4×4) is ``link_pose``: its relative pose is kept."""
        link_pose = np.asarray(link_pose, dtype=np.float64)
        relative = _rigid_inverse(link_pose) @ obstacle.pose
        return cls(obstacle.id, link, obstacle.with_pose(_orthonormalised(relative)), tuple(touch_links))

    @classmethod
    def at_configuration(cls, obstacle: Obstacle, link: str, chain, q, touch_links: Sequence[str] = ()) -> "AttachedObject":
        """``obstacle`` (root frame) attached to ``link`` of ``chain`` at joint positions ``q`` (J,)
        (FK in float64 on the CPU). ValueError naming 'link' for an unknown link."""
        require_link(chain, link, f"attached object '{obstacle.id}': link")
        return cls.at_link_pose(obstacle, link, link_poses(chain, q)[chain.link_index(link)], touch_links)

    def world_obstacle(self, link_pose) -> Obstacle:
        """The object as a world obstacle (root frame) when its link is at ``link_pose`` (4×4)."""
        pose = np.asarray(link_pose, dtype=np.float64) @ self.obstacle.pose
        return self.obstacle.with_pose(_orthonormalised(pose))

    def __repr__(self) -> str:
        touch = f", touch_links {list(self.touch_links)}" if self.touch_links else ""
        return f"AttachedObject('{self.id}' on '{self.link}', {self.obstacle.kind}{touch})"

    # ------------------------------------------------------------------ covers (link frame)
    @cached_property
    def coarse_cover(self) -> SphereCover:
        """A dozen spheres covering the object (as the robot links' coarse spheres), link frame."""
        return _placed(_object_cover(self.obstacle, tight=False), self.obstacle.pose)

    @cached_property
    def tight_cover(self) -> SphereCover:
        """Sphere-tree leaves covering the object within a few mm (the verdict's), link frame."""
        return _placed(_object_cover(self.obstacle, tight=True), self.obstacle.pose)


def require_link(chain, name: str, field: str) -> None:
    if not chain.has_link(name):
        names = chain.link_names
        raise ValueError(f"{field} '{name}' is not a link of robot '{chain.name}' (links: "
                         f"{', '.join(names[:12])}{', …' if len(names) > 12 else ''})")


def check_attached(chain, objects: Sequence[AttachedObject]) -> tuple[AttachedObject, ...]:
    """The objects as a tuple after checking them against ``chain``: unique ids, known link and
    touch links. ValueError naming the object and the field."""
    objects = tuple(objects)
    seen = set()
    for obj in objects:
        if not isinstance(obj, AttachedObject):
            raise TypeError(f"attached objects are AttachedObject, not {type(obj).__name__}")
        if obj.id in seen:
            raise ValueError(f"attached object '{obj.id}': id appears twice")
        seen.add(obj.id)
        require_link(chain, obj.link, f"attached object '{obj.id}': link")
        for i, name in enumerate(obj.touch_links):
            require_link(chain, name, f"attached object '{obj.id}': touch_links[{i}]")
    return objects


def link_poses(chain, q) -> np.ndarray:
    """(L, 4, 4) float64 link poses (root frame) of ``chain`` at ``q`` (J,) (CPU, float64)."""
    from ..kinematics import forward_kinematics

    exact = chain.to("cpu", torch.float64)
    q = torch.as_tensor(np.asarray(q, dtype=np.float64)).reshape(1, -1)
    with torch.no_grad():
        return forward_kinematics(exact, q)[0].numpy()


# ---------------------------------------------------------------------- the checkers' view
@dataclass(frozen=True, eq=False)
class AttachedBodies:
    """Robot spheres plus the attached objects' spheres, as one checker sees them.

    ``spheres``: the robot's S₀ spheres followed by each object's (``sphere_links``: the parent
    link); ``bodies`` (S,) int64: a robot sphere's link index, L + k for object k's;
    ``names``: the L link names then the object ids (index = body); ``pairs``: body pairs
    (a, b) checked for self collision besides the robot's link pairs, with a an object body;
    ``skipped``: {(object id, link or object id): reason} for the object pairs not checked."""

    spheres: RobotSpheres
    bodies: Tensor
    names: tuple[str, ...]
    pairs: tuple[tuple[int, int], ...]
    skipped: dict


def attached_bodies(chain, robot: RobotSpheres, objects: Sequence[AttachedObject], tight: bool) -> AttachedBodies:
    """The robot's spheres ``robot`` (on the chain's device and dtype) with the objects' coarse
    (``tight`` False) or tight covers appended (module doc)."""
    objects = check_attached(chain, objects)
    L = chain.num_links
    device, dtype = robot.device, robot.dtype
    covers = [obj.tight_cover if tight else obj.coarse_cover for obj in objects]
    links = [chain.link_index(obj.link) for obj in objects]
    counts = [c.num_spheres for c in covers]

    def cat(robot_part: Tensor, parts, kind=dtype) -> Tensor:
        return torch.cat([robot_part.to(device)] + [torch.as_tensor(p, dtype=kind, device=device) for p in parts])

    centers = cat(robot.centers, [c.centers.reshape(-1, 3) for c in covers])
    radii = cat(robot.radii, [c.radii for c in covers])
    slack = cat(robot.slack, [c.slack for c in covers])
    sphere_links = cat(robot.sphere_links, [np.full(n, link, dtype=np.int64) for n, link in zip(counts, links)],
                       torch.int64)
    bodies = cat(robot.sphere_links, [np.full(n, L + k, dtype=np.int64) for k, n in enumerate(counts)], torch.int64)
    groups = None
    if robot.sphere_groups is not None:  # each object one group of its own
        start = int(robot.sphere_groups.max()) + 1 if robot.num_spheres else 0
        groups = cat(robot.sphere_groups, [np.full(n, start + k, dtype=np.int64) for k, n in enumerate(counts)],
                     torch.int64)
    tiers = None
    if robot.tiers is not None:  # each object's sphere its own tier
        tiers = robot.tiers.appended(centers[robot.num_spheres:], radii[robot.num_spheres:])
    triangles = None if robot.triangles is None else robot.triangles.appended(len(radii) - robot.num_spheres)
    spheres = RobotSpheres(robot.link_names, sphere_links, centers, radii, slack, robot.source, robot.warnings, groups,
                           tiers, triangles)
    with_spheres = sorted(set(robot.sphere_links.cpu().tolist()))
    pairs, skipped = [], {}
    for k, obj in enumerate(objects):
        for link in with_spheres:
            name = chain.link_names[link]
            if link == links[k]:
                skipped[(obj.id, name)] = PARENT_LINK
            elif name in obj.touch_links:
                skipped[(obj.id, name)] = TOUCH_LINK
            else:
                pairs.append((L + k, link))
        for j in range(k):
            other = objects[j]
            if links[j] == links[k]:
                skipped[(obj.id, other.id)] = SAME_LINK
            elif other.link in obj.touch_links or obj.link in other.touch_links:
                skipped[(obj.id, other.id)] = TOUCH_LINK
            else:
                pairs.append((L + k, L + j))
    names = tuple(chain.link_names) + tuple(obj.id for obj in objects)
    return AttachedBodies(spheres, bodies, names, tuple(pairs), skipped)


def body_sphere_pairs(bodies: Tensor, pairs: Sequence[tuple[int, int]]) -> tuple[Tensor, Tensor]:
    """Every sphere of body a against every sphere of body b for each (a, b) -> (Q,) index
    tensors (on the bodies' device)."""
    cpu = bodies.cpu()
    a_parts, b_parts = [], []
    for a, b in pairs:
        ia, ib = torch.meshgrid(torch.nonzero(cpu == a).flatten(), torch.nonzero(cpu == b).flatten(), indexing="ij")
        a_parts.append(ia.reshape(-1))
        b_parts.append(ib.reshape(-1))
    empty = torch.zeros(0, dtype=torch.int64)
    return ((torch.cat(a_parts) if a_parts else empty).to(bodies.device),
            (torch.cat(b_parts) if b_parts else empty).to(bodies.device))


# ---------------------------------------------------------------------- covers (object frame)
#: primitive covers kept (per kind, dimensions and model; least recently used dropped): a node
#: that attaches objects of ever new sizes (sensed, say) does not grow without bound
PRIMITIVE_COVERS = 256
_GRID_COVERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _object_cover(obstacle: Obstacle, tight: bool) -> SphereCover:
    """The cover of ``obstacle``'s shape in its own frame (cached per shape)."""
    if obstacle.kind == VOXELS:
        with _LOCK:
            covers = _GRID_COVERS.get(obstacle.grid)
        if covers is None:
            covers = _voxel_covers(obstacle.grid)
            with _LOCK:
                _GRID_COVERS[obstacle.grid] = covers
        return covers[1] if tight else covers[0]
    return _primitive_cover(obstacle.kind, tuple(obstacle.dimensions), tight)


@functools.lru_cache(maxsize=PRIMITIVE_COVERS)
def _primitive_cover(kind: str, dimensions: tuple[float, ...], tight: bool) -> SphereCover:
    if kind == SPHERE:  # its own exact cover
        return SphereCover(np.zeros((1, 3)), np.array([dimensions[0]]), np.zeros(1))
    if kind == BOX:
        shape = CollisionShape("attached", "box", np.eye(4), size=tuple(dimensions))
    elif kind in (CYLINDER, CAPSULE):
        shape = CollisionShape("attached", "cylinder" if kind == CYLINDER else "capsule", np.eye(4),
                               radius=dimensions[1], length=dimensions[0])
    else:
        raise ValueError(f"no cover for an attached {kind}")
    if tight:
        from .urdf_sphere_trees import PIECES  # the tight robot model's piece settings

        # the leaves alone (the carrying checker makes each its own tier): no tiers to build
        return build_sphere_tree(cover_problem_for_shape(shape, PIECES), TreeSettings(tier_slack=0.0)).leaves
    settings = CoverSettings()
    return solve_cover(cover_problem_for_shape(shape, settings), settings)


def _voxel_covers(grid) -> tuple[SphereCover, SphereCover]:
    """(coarse, tight) covers of a voxel grid. Tight: one sphere of radius h + bound (h = √3/2·s)
    per occupied voxel with a free face neighbour: every point of the geometry lies within
    ``bound`` of an occupied voxel's cube, so these spheres hold the boundary of that set (what
    another body meets first). Coarse: those voxels in ≤ VOXEL_COARSE_SPHERES clusters
    (farthest-point seeds, a few nearest-seed rounds), each sphere holding its members' spheres."""
    from scipy.ndimage import binary_erosion

    occupied = grid.occupied
    inner = binary_erosion(occupied, border_value=0)
    index = np.argwhere(occupied & ~inner)
    centers = grid.origin + index * grid.voxel_size
    h = 0.5 * math.sqrt(3.0) * grid.voxel_size
    r = h + grid.bound
    tight = SphereCover(centers, np.full(len(centers), r), np.full(len(centers), 2 * h + grid.bound))
    k = min(VOXEL_COARSE_SPHERES, len(centers))
    seeds = [int(np.linalg.norm(centers - centers.mean(0), axis=1).argmax())]
    nearest = np.linalg.norm(centers - centers[seeds[0]], axis=1)
    while len(seeds) < k:
        seeds.append(int(nearest.argmax()))
        nearest = np.minimum(nearest, np.linalg.norm(centers - centers[seeds[-1]], axis=1))
    middles = centers[seeds]
    for _ in range(5):
        owner = np.linalg.norm(centers[:, None] - middles[None], axis=2).argmin(1)
        middles = np.stack([0.5 * (centers[owner == c].min(0) + centers[owner == c].max(0)) if (owner == c).any()
                            else middles[c] for c in range(k)])
    owner = np.linalg.norm(centers[:, None] - middles[None], axis=2).argmin(1)
    used = np.unique(owner)
    radii = np.array([np.linalg.norm(centers[owner == c] - middles[c], axis=1).max() + r for c in used])
    radii = radii * (1 + 1e-9) + 1e-9
    coarse = SphereCover(middles[used], radii, 2 * radii + h)
    return coarse, tight


def _placed(cover: SphereCover, pose: np.ndarray) -> SphereCover:
    """A cover moved by ``pose`` (object frame -> link frame)."""
    centers = cover.centers @ pose[:3, :3].T + pose[:3, 3]
    return SphereCover(centers, cover.radii.copy(), cover.slack.copy())


def _rigid_inverse(T: np.ndarray) -> np.ndarray:
    inverse = np.eye(4)
    inverse[:3, :3] = T[:3, :3].T
    inverse[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return inverse


def _orthonormalised(T: np.ndarray) -> np.ndarray:
    """``T`` with its rotation projected back onto SO(3) (products of float64 poses drift)."""
    u, _, vt = np.linalg.svd(T[:3, :3])
    out = T.copy()
    out[:3, :3] = u @ vt
    out[3] = (0.0, 0.0, 0.0, 1.0)
    return out
