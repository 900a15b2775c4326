"""The distance from triangles to convex primitives, batched (torch): exact for boxes, spheres and
capsules, a lower bound within 0.12 % of the radius for cylinders.

Each primitive is reduced to the triangle-triangle distance (:func:`.triangle_distance.triangle_distances`,
equal to coal's):

* a **box** is its 12 surface triangles, and a triangle with a corner inside the box is at 0 (a
  triangle that crosses the surface meets a face; one wholly inside has every corner inside);
* a **sphere** or **capsule** of radius r is its axis segment (a point for a sphere) grown by r:
  the distance to the segment (held as a degenerate triangle, whose edges are its geometry) less r;
* a **cylinder** is bounded by the prism of :data:`PRISM_SIDES` sides circumscribed about it (its
  side faces touch the cylinder; its corners stand r·(1/cos(π/S) − 1) out): the distance to the
  prism's 4S − 4 triangles, 0 where a corner is inside the prism. The prism holds the cylinder,
  so that is a lower bound, short by at most that much.

No Python loop over triangles. Corners (N, 3, 3) in the primitive's frame (m), its parameters as
:class:`~.obstacles.PackedShapes` holds them (box: half extents; cylinder and capsule: half-height,
radius; sphere: radius, 0).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from .obstacles import BOX, CAPSULE, CYLINDER, SPHERE
from .triangle_distance import triangle_distances

#: The convex kinds this module measures.
CONVEX_KINDS = frozenset((BOX, CYLINDER, CAPSULE, SPHERE))
#: Sides of the prism that bounds a cylinder: it stands at most r·(1/cos(π/S) − 1) ≈ 0.0012·r
#: beyond it (0.06 mm for a can of 5 cm).
PRISM_SIDES = 64

def _unit_box() -> Tensor:
    """(12, 3, 3) the surface triangles of the cube [−1, 1]³."""
    faces = []
    for axis in range(3):
        i, j = (axis + 1) % 3, (axis + 2) % 3
        for sign in (-1.0, 1.0):
            square = []
            for u, v in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                corner = [0.0, 0.0, 0.0]
                corner[axis], corner[i], corner[j] = sign, u, v
                square.append(corner)
            faces += [[square[0], square[1], square[2]], [square[0], square[2], square[3]]]
    return torch.tensor(faces, dtype=torch.float64)


_BOX = _unit_box()


def _unit_prism(sides: int) -> Tensor:
    """(4·sides − 4, 3, 3) the surface triangles of the prism of ``sides`` sides circumscribed
    about the cylinder of radius 1 and half-height 1 (z axis)."""
    reach = 1.0 / math.cos(math.pi / sides)  # the corners' distance from the axis
    angle = (torch.arange(sides, dtype=torch.float64) + 0.5) * (2 * math.pi / sides)
    ring = torch.stack((reach * torch.cos(angle), reach * torch.sin(angle)), 1)
    top, bottom = torch.cat((ring, torch.ones(sides, 1)), 1), torch.cat((ring, -torch.ones(sides, 1)), 1)
    k, n = torch.arange(sides), (torch.arange(sides) + 1) % sides
    side = torch.cat((torch.stack((bottom[k], bottom[n], top[n]), 1), torch.stack((bottom[k], top[n], top[k]), 1)))
    fan = torch.arange(1, sides - 1)
    caps = torch.cat((torch.stack((top[0].expand(sides - 2, 3), top[fan], top[fan + 1]), 1),
                      torch.stack((bottom[0].expand(sides - 2, 3), bottom[fan + 1], bottom[fan]), 1)))
    return torch.cat((side, caps))


_PRISM = _unit_prism(PRISM_SIDES)


def _plane_normals(surface: Tensor) -> Tensor:
    """(F, 3) the outward unit normal of each surface triangle (F, 3, 3) of a unit shape centred
    at the origin."""
    normal = torch.linalg.cross(surface[:, 1] - surface[:, 0], surface[:, 2] - surface[:, 0])
    normal = normal / normal.norm(dim=1, keepdim=True)
    return torch.where((normal * surface[:, 0]).sum(1, keepdim=True) < 0, -normal, normal)


#: Each surface triangle's plane: its outward unit normal; scaled by (hx, hy, hz) a box's planes
#: keep their normals (axes) at offsets Σ|nᵢ|hᵢ, a prism scaled by (r, r, h) at |n_xy|·r + |n_z|·h.
_BOX_NORMALS, _PRISM_PLANES = _plane_normals(_BOX), _plane_normals(_PRISM)


@functools.lru_cache(maxsize=8)
def _shapes(device: torch.device, dtype: torch.dtype) -> tuple[Tensor, ...]:
    """The unit box's and prism's triangles and planes on ``device`` in ``dtype``, copied there
    once (not on every query)."""
    return tuple(t.to(device, dtype) for t in (_BOX, _BOX_NORMALS, _PRISM, _PRISM_PLANES, _PRISM_NORMALS))
#: The prism's side planes' unit normals (sides, 2): a point is inside where x·u ≤ r for each.
_PRISM_NORMALS = torch.stack((torch.cos(torch.arange(PRISM_SIDES, dtype=torch.float64) * (2 * math.pi / PRISM_SIDES)
                                        + math.pi / PRISM_SIDES),
                              torch.sin(torch.arange(PRISM_SIDES, dtype=torch.float64) * (2 * math.pi / PRISM_SIDES)
                                        + math.pi / PRISM_SIDES)), 1)


def triangle_primitive_distances(kind: str, corners: Tensor, parameters: Tensor) -> Tensor:
    """(N, 3, 3) triangles in the frame of their primitive of ``kind`` with ``parameters`` (N, k)
    -> (N,) the distance (m, ≥ 0) between each triangle and its solid primitive, 0 where they
    meet; for a cylinder a lower bound (see the module docstring). Degenerate triangles (a point,
    a segment) count as the point or segment they are."""
    if kind not in (BOX, CYLINDER, CAPSULE, SPHERE):
        raise ValueError(f"no triangle distance for obstacle kind '{kind}'")
    N = corners.shape[0]
    if kind in (SPHERE, CAPSULE):
        half, radius = (parameters[:, 1], parameters[:, 0]) if kind == SPHERE else (parameters[:, 0], parameters[:, 1])
        end = torch.zeros_like(corners[:, 0])
        end[:, 2] = half
        axis = torch.stack((-end, end, end), 1)  # the segment as a degenerate triangle
        return (triangle_distances(corners, axis) - radius).clamp(min=0.0)
    box, box_normals, prism, prism_planes, prism_normals = _shapes(corners.device, corners.dtype)
    if kind == BOX:
        scale = parameters[:, :3]
        unit, normals = box, box_normals
        offset = normals.abs() @ scale.T  # (F, N)
        inside = (corners.abs() <= scale.unsqueeze(1)).all(2).any(1)
    else:  # CYLINDER: half-height, radius
        half, radius = parameters[:, 0], parameters[:, 1]
        scale = torch.stack((radius, radius, half), 1)
        unit, normals = prism, prism_planes
        offset = normals[:, :2].norm(dim=1, keepdim=True) * radius + normals[:, 2:].abs() * half  # (F, N)
        across = corners[..., :2] @ prism_normals.T  # (N, 3, sides)
        inside = ((across.amax(2) <= radius.unsqueeze(1)) & (corners[..., 2].abs() <= half.unsqueeze(1))).any(1)
    # only the faces whose outer side a corner reaches can hold the nearest point (there the
    # segment to the triangle leaves the shape through that face's plane): 1-3 of a box's 6
    # planes, about half a prism's sides
    reach = (corners @ normals.T).amax(1) >= offset.T - 1e-7  # (N, F); within rounding: kept
    row, face = reach.nonzero(as_tuple=True)
    surface = unit.index_select(0, face) * scale.index_select(0, row).unsqueeze(1)
    distance = torch.full((N,), torch.inf, dtype=corners.dtype, device=corners.device)
    distance.scatter_reduce_(0, row, triangle_distances(corners.index_select(0, row), surface), "amin")
    return torch.where(inside | torch.isinf(distance), torch.zeros_like(distance), distance)
