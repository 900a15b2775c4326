"""The distance from triangles to convex primitives, batched (torch): exact for boxes, spheres and
capsules, and for cylinders where the nearest point is on the side or inside a cap (a lower bound
within 0.12 % of the radius where it is on a cap's rim).

Each primitive is reduced to the triangle-triangle distance (:func:`.triangle_distance.triangle_distances`,
equal to coal's):

* a **box** is its 12 surface triangles, and a triangle with a corner inside the box is at 0 (a
  triangle that crosses the surface meets a face; one wholly inside has every corner inside);
* a **sphere** or **capsule** of radius r is its axis segment (a point for a sphere) grown by r:
  the distance to the segment (:func:`.triangle_distance.triangle_segment_distances`) less r;
* a **cylinder** of radius r and half-height h lies inside the capsule on its axis segment, so
  the capsule's distance is a lower bound, and it is exact where the segment's nearest point to
  the triangle is not an end: the segment between them is then square to the axis, and the
  capsule's nearest point lies on the cylinder's side. That holds where the axis grown by r at
  each end comes no nearer (the longer segment's least distance is reached on the shorter one).
  Elsewhere the slab between the caps' planes holds the cylinder too: a triangle wholly beyond a
  cap's plane is at least its nearest corner's height away, exactly that where the corner stands
  over the cap's disc. The rest (nearest a rim) take the largest of those and the distance to the
  prism of :data:`PRISM_SIDES` sides circumscribed about the cylinder (its side faces touch it,
  its corners stand r·(1/cos(π/S) − 1) out: of its 4S triangles, the few of the sectors the
  triangle's nearest point can lie in; 0 where a corner is inside the prism), which holds the
  cylinder too: short by at most that much. A grasp of a can
  from its side or over its top (where a grasp's leaves are many) costs two segment distances a
  triangle instead of ~60-120 triangle pairs.

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
from .triangle_distance import triangle_distances, triangle_segment_distances

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
    """(4·sides, 3, 3) the surface triangles of the prism of ``sides`` sides circumscribed about
    the cylinder of radius 1 and half-height 1 (z axis), sector after sector: sector k spans the
    angles [k, k + 1]·2π/sides between two of the prism's corners (at radius 1/cos(π/sides)),
    and holds its side face (two triangles) and its wedges of the top and bottom caps."""
    reach = 1.0 / math.cos(math.pi / sides)  # the corners' distance from the axis
    angle = torch.arange(sides, dtype=torch.float64) * (2 * math.pi / sides)
    ring = torch.stack((reach * torch.cos(angle), reach * torch.sin(angle)), 1)
    top, bottom = torch.cat((ring, torch.ones(sides, 1)), 1), torch.cat((ring, -torch.ones(sides, 1)), 1)
    k, n = torch.arange(sides), (torch.arange(sides) + 1) % sides
    up, down = torch.tensor([[0.0, 0.0, 1.0]]).expand(sides, 3), torch.tensor([[0.0, 0.0, -1.0]]).expand(sides, 3)
    return torch.stack((torch.stack((bottom[k], bottom[n], top[n]), 1), torch.stack((bottom[k], top[n], top[k]), 1),
                        torch.stack((up, top[k], top[n]), 1), torch.stack((down, bottom[n], bottom[k]), 1)),
                       1).reshape(-1, 3, 3)


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
#: The prism's side faces' unit normals in the plane (sides, 2), at the middle of each sector: a
#: point is inside where x·u ≤ r for each.
_PRISM_NORMALS = torch.stack((torch.cos((torch.arange(PRISM_SIDES, dtype=torch.float64) + 0.5) * (2 * math.pi / PRISM_SIDES)),
                              torch.sin((torch.arange(PRISM_SIDES, dtype=torch.float64) + 0.5) * (2 * math.pi / PRISM_SIDES))),
                             1)


@functools.lru_cache(maxsize=8)
def _shapes(device: torch.device, dtype: torch.dtype) -> tuple[Tensor, ...]:
    """The unit box's and prism's triangles and planes on ``device`` in ``dtype``, copied there
    once (not on every query)."""
    return tuple(t.to(device, dtype) for t in (_BOX, _BOX_NORMALS, _PRISM, _PRISM_PLANES, _PRISM_NORMALS))


def triangle_primitive_distances(kind: str, corners: Tensor, parameters: Tensor) -> Tensor:
    """(N, 3, 3) triangles in the frame of their primitive of ``kind`` with ``parameters`` (N, k)
    -> (N,) the distance (m, ≥ 0) between each triangle and its solid primitive, 0 where they
    meet; for a cylinder a lower bound, exact where the nearest point is on its side or inside a
    cap (see the module docstring). Degenerate triangles (a point,
    a segment) count as the point or segment they are."""
    if kind not in (BOX, CYLINDER, CAPSULE, SPHERE):
        raise ValueError(f"no triangle distance for obstacle kind '{kind}'")
    if kind in (SPHERE, CAPSULE):
        half, radius = (parameters[:, 1], parameters[:, 0]) if kind == SPHERE else (parameters[:, 0], parameters[:, 1])
        return (_axis_distances(corners, half) - radius).clamp(min=0.0)
    box, box_normals, prism, prism_planes, prism_normals = _shapes(corners.device, corners.dtype)
    if kind == BOX:
        scale = parameters[:, :3]
        inside = (corners.abs() <= scale.unsqueeze(1)).all(2).any(1)
        N, F = corners.shape[0], box.shape[0]
        row = torch.arange(N, device=corners.device).repeat_interleave(F)
        face = torch.arange(F, device=corners.device).repeat(N)
        offset = (scale @ box_normals.abs().T).reshape(-1)  # (N·F,): row-major, as the pairs
        return _face_distances(corners, row, face, box, box_normals, scale, offset, inside)
    # CYLINDER: half-height, radius
    half, radius = parameters[:, 0], parameters[:, 1]
    axis, longer = _axis_distances(corners.repeat(2, 1, 1), torch.cat((half, half + radius))).chunk(2)
    distance = (axis - radius).clamp(min=0.0)  # the capsule's: a lower bound, exact on the side
    rest = (axis > longer).nonzero().squeeze(1)  # the nearest axis point at an end
    if not rest.numel():
        return distance
    corners, half, radius = corners.index_select(0, rest), half.index_select(0, rest), radius.index_select(0, rest)
    # the slab |z| ≤ h holds it too: a triangle wholly beyond a cap's plane is at least its nearest
    # corner's height away, exactly where that corner stands over the cap's disc
    z = corners[..., 2]
    above, below = z.amin(1) - half, -half - z.amax(1)
    slab = torch.maximum(above, below).clamp(min=0.0)
    nearest = corners.gather(1, torch.where(above > 0, z.argmin(1), z.argmax(1)).view(-1, 1, 1).expand(-1, 1, 3))[:, 0]
    over_cap = (slab > 0) & (nearest[:, :2].norm(dim=1) <= radius)
    distance = distance.index_copy(0, rest, torch.maximum(distance.index_select(0, rest), slab))
    rim = (~over_cap).nonzero().squeeze(1)  # near a rim: the prism
    if rim.numel():
        rest = rest.index_select(0, rim)
        bound = _prism_distances(corners.index_select(0, rim), half.index_select(0, rim), radius.index_select(0, rim),
                                 prism, prism_planes, prism_normals)
        distance = distance.index_copy(0, rest, torch.maximum(distance.index_select(0, rest), bound))
    return distance


def _prism_distances(corners: Tensor, half: Tensor, radius: Tensor, prism: Tensor, planes: Tensor,
                     normals: Tensor) -> Tensor:
    """(N,) the distance from triangles (N, 3, 3) to the prism circumscribed about their
    cylinders (half-heights and radii (N,)), 0 where a corner is inside it. Of the prism's
    sectors only those within one sector's width of the triangle's angular span about the axis
    (all of them where its projection holds the axis): the nearest point of a triangle lies at
    one of its own angles, and the prism's nearest point to a point at an angle lies in that
    angle's sector or on its edges."""
    sides, width = normals.shape[0], 2 * math.pi / normals.shape[0]
    x, y = corners[..., 0], corners[..., 1]
    angle = torch.atan2(y, x)  # (N, 3)
    relative = torch.remainder(angle - angle[:, :1] + math.pi, 2 * math.pi) - math.pi
    first = torch.floor((angle[:, 0] + relative.amin(1) - width) / width)
    count = torch.floor((angle[:, 0] + relative.amax(1) + width) / width) - first + 1
    cross = x * y.roll(-1, 1) - x.roll(-1, 1) * y  # the origin on the left of each projected edge
    tolerance = 1e-9 * (x * x + y * y).amax(1, keepdim=True)
    around = (cross >= -tolerance).all(1) | (cross <= tolerance).all(1)
    count = torch.where(around | (count >= sides), torch.full_like(count, sides), count).long()
    first = torch.where(around, torch.zeros_like(first), first).long()
    row = torch.repeat_interleave(torch.arange(corners.shape[0], device=corners.device), count)
    within = torch.arange(row.shape[0], device=corners.device) - (torch.cumsum(count, 0) - count).index_select(0, row)
    sector = torch.remainder(first.index_select(0, row) + within, sides)
    face = (4 * sector.unsqueeze(1) + torch.arange(4, device=corners.device)).reshape(-1)  # side ×2, top, bottom
    row = row.repeat_interleave(4)
    plane = planes.index_select(0, face)
    offset = plane[:, :2].norm(dim=1) * radius.index_select(0, row) + plane[:, 2].abs() * half.index_select(0, row)
    across = corners[..., :2] @ normals.T  # (N, 3, sides)
    inside = ((across.amax(2) <= radius.unsqueeze(1)) & (corners[..., 2].abs() <= half.unsqueeze(1))).any(1)
    return _face_distances(corners, row, face, prism, planes, torch.stack((radius, radius, half), 1), offset, inside)


def _axis_distances(corners: Tensor, half: Tensor) -> Tensor:
    """(N,) the distance from triangles (N, 3, 3) to the z axis segment from −``half`` to
    ``half`` (N,)."""
    end = torch.zeros_like(corners[:, 0])
    end[:, 2] = half
    return triangle_segment_distances(corners, -end, end)


def _face_distances(corners: Tensor, row: Tensor, face: Tensor, unit: Tensor, planes: Tensor, scale: Tensor,
                    offset: Tensor, inside: Tensor) -> Tensor:
    """(N,) the distance from triangles (N, 3, 3) to a convex polytope through candidate faces:
    pairs (``row`` (P,) into the triangles, ``face`` (P,) into ``unit`` (F, 3, 3), the surface
    triangles of a unit shape scaled per triangle by ``scale`` (N, 3)), each face's outward unit
    normal in ``planes`` (F, 3) at the pair's ``offset`` (P,); 0 where ``inside`` (N,) (a corner
    inside) or where they meet. Only the faces whose outer side a corner reaches can hold the
    nearest point (there the segment to the triangle leaves the shape through that face's plane):
    1-3 of a box's 6 planes, about half a prism's sides; the others are dropped."""
    plane = planes.index_select(0, face)
    reach = ((corners.index_select(0, row) * plane.unsqueeze(1)).sum(-1).amax(1) >= offset - 1e-7)  # within rounding: kept
    reach = reach.nonzero().squeeze(1)
    row, face = row.index_select(0, reach), face.index_select(0, reach)
    surface = unit.index_select(0, face) * scale.index_select(0, row).unsqueeze(1)
    distance = torch.full((corners.shape[0],), torch.inf, dtype=corners.dtype, device=corners.device)
    distance.scatter_reduce_(0, row, triangle_distances(corners.index_select(0, row), surface), "amin")
    return torch.where(inside | torch.isinf(distance), torch.zeros_like(distance), distance)
