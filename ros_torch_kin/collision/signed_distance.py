"""Closed-form signed distances from points to obstacles, with their gradients (unit normals).

The signed distance of a point to a shape is its distance to the surface, negative inside (by the
depth to the nearest surface point: exact for every primitive, boxes and cylinders included; for
a ``voxels`` grid a conservative lower bound, see :mod:`.occupancy`). A
sphere of radius r centred at the point is at that distance minus r; the gradient of either with
respect to the centre is the unit outward normal ``n`` of the nearest surface point (pointing
from the shape to the centre). Where that is not unique (the centre on a capsule's axis, at a
box's centre, ...) one unit subgradient is returned: local +x, or the first axis of a tie.

Layout: coordinates are separate rows, points along the last (innermost) axis, so every
operation is a wide elementwise one: world points (3, N) (m); one kind's n obstacles give local
coordinates (n, 3, N), distances (n, N) and normals (n, 3, N). No Python loop over points or
obstacles; callers loop over the ≤ 4 kinds. Kinds and parameters as in
:class:`~.obstacles.PackedShapes`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .obstacles import BOX, CAPSULE, CYLINDER, SPHERE, VOXELS, PackedScene, PackedShapes
from .occupancy import voxel_bound_rows, voxel_distance


def _safe_sqrt(squared: Tensor) -> Tensor:
    """sqrt, kept away from 0 so that autograd through it stays finite (error < 1e-19 m)."""
    return torch.sqrt(squared.clamp_min(torch.finfo(squared.dtype).tiny))


def _sign(x: Tensor) -> Tensor:
    """±1 (+1 at 0), so that a normal is never zero."""
    return torch.where(x < 0, -1.0, 1.0).to(x.dtype)


def _unit(components: tuple[Tensor, ...], length: Tensor) -> tuple[Tensor, ...]:
    """components / length, or (1, 0, ...) where the length is 0."""
    zero = length > 0
    inverse = 1.0 / length.clamp_min(torch.finfo(length.dtype).tiny)
    first = torch.where(zero, components[0] * inverse, 1.0)
    return (first, *(torch.where(zero, c * inverse, 0.0) for c in components[1:]))


def rounded_segment_distance(x, y, z, half_height: Tensor, radius: Tensor, with_normal: bool = True):
    """Capsule (and sphere: half-height 0): the segment z ∈ [−h, h] on the local z axis, inflated
    by ``radius``. x, y, z (n, N) local coordinates; half_height, radius (n, 1).
    -> distance (n, N), normal (nx, ny, nz) or None."""
    along = z - torch.clamp(z, -half_height, half_height)
    squared = x * x + y * y + along * along
    distance = _safe_sqrt(squared) - radius
    return distance, (_unit((x, y, along), torch.sqrt(squared)) if with_normal else None)


def box_distance(x, y, z, half_extents: Tensor, with_normal: bool = True):
    """Axis-aligned box [−hx, hx] × [−hy, hy] × [−hz, hz]; half_extents (n, 3). Outside: the
    Euclidean distance to the box; inside: minus the distance to the nearest face."""
    ex, ey, ez = (c.abs() - half_extents[:, i : i + 1] for i, c in enumerate((x, y, z)))  # > 0: beyond a face
    ox, oy, oz = ex.clamp_min(0.0), ey.clamp_min(0.0), ez.clamp_min(0.0)
    outside_length = _safe_sqrt(ox * ox + oy * oy + oz * oz)
    deepest = torch.maximum(torch.maximum(ex, ey), ez)
    outside = deepest > 0
    distance = torch.where(outside, outside_length, deepest)
    if not with_normal:
        return distance, None
    on_x = (ex >= ey) & (ex >= ez)  # the nearest face inside (first axis of a tie)
    on_y = ~on_x & (ey >= ez)
    on_z = ~on_x & ~on_y
    inverse = 1.0 / outside_length
    normal = tuple(torch.where(outside, o * inverse, face.to(x.dtype)) * _sign(c)
                   for o, face, c in ((ox, on_x, x), (oy, on_y, y), (oz, on_z, z)))
    return distance, normal


def cylinder_distance(x, y, z, half_height: Tensor, radius: Tensor, with_normal: bool = True):
    """Solid cylinder of ``radius`` around the local z axis, z ∈ [−h, h]; half_height, radius
    (n, 1). Inside: minus the distance to the nearer of the side and the caps."""
    radial_squared = x * x + y * y
    radial = _safe_sqrt(radial_squared)
    beyond_side = radial - radius
    beyond_cap = z.abs() - half_height
    side, cap = beyond_side.clamp_min(0.0), beyond_cap.clamp_min(0.0)
    outside_length = _safe_sqrt(side * side + cap * cap)
    deepest = torch.maximum(beyond_side, beyond_cap)
    outside = deepest > 0
    distance = torch.where(outside, outside_length, deepest)
    if not with_normal:
        return distance, None
    ux, uy = _unit((x, y), torch.sqrt(radial_squared))
    inside_side = beyond_side >= beyond_cap
    inverse = 1.0 / outside_length
    side_weight = torch.where(outside, side * inverse, inside_side.to(x.dtype))
    cap_weight = torch.where(outside, cap * inverse, (~inside_side).to(x.dtype))
    return distance, (ux * side_weight, uy * side_weight, cap_weight * _sign(z))


def local_signed_distance(kind: str, local: Tensor, parameters: Tensor, with_normal: bool = True):
    """Signed distance (m) and local-frame unit normal of points in each obstacle's frame.
    local (n, 3, N); parameters (n, k) as in PackedShapes -> (n, N), (n, 3, N) or None."""
    x, y, z = local.unbind(1)
    if kind == BOX:
        distance, normal = box_distance(x, y, z, parameters, with_normal)
    elif kind == CYLINDER:
        distance, normal = cylinder_distance(x, y, z, parameters[:, :1], parameters[:, 1:], with_normal)
    elif kind == CAPSULE:
        distance, normal = rounded_segment_distance(x, y, z, parameters[:, :1], parameters[:, 1:], with_normal)
    elif kind == SPHERE:
        distance, normal = rounded_segment_distance(x, y, z, parameters[:, 1:], parameters[:, :1], with_normal)
    elif kind == VOXELS:  # a lower bound, see .occupancy; the fields travel with the kind
        distance, normal = voxel_distance(x, y, z, parameters, kind.values, with_normal, kind.features)
    else:
        raise ValueError(f"unknown obstacle kind '{kind}'")
    return distance, (torch.stack(normal, dim=1) if with_normal else None)


def signed_distance_rows(kind: str, local: Tensor, parameters: Tensor) -> Tensor:
    """The signed distance alone, for points laid out by row: ``local`` (n, m, 3) in each of n
    obstacles' frames, ``parameters`` (n, k) as in PackedShapes -> (n, m); the same values as
    :func:`local_signed_distance` (up to float rounding; a voxel grid's lower bound) in a third of
    the operations (a verdict on few configurations is dominated by their count)."""
    if kind == BOX:
        beyond = local.abs() - parameters.unsqueeze(1)  # (n, m, 3) > 0: beyond a face
        return beyond.clamp_min(0.0).norm(dim=-1) + beyond.amax(-1).clamp_max(0.0)
    if kind == CYLINDER:
        side = local[..., :2].norm(dim=-1) - parameters[:, 1:]
        cap = local[..., 2].abs() - parameters[:, :1]
        return torch.hypot(side.clamp_min(0.0), cap.clamp_min(0.0)) + torch.maximum(side, cap).clamp_max(0.0)
    if kind in (SPHERE, CAPSULE):
        radius, half = (parameters[:, :1], parameters[:, 1:]) if kind == SPHERE else (parameters[:, 1:], parameters[:, :1])
        z = local[..., 2]
        along = z - torch.minimum(torch.maximum(z, -half), half)
        return torch.sqrt(local[..., :2].square().sum(-1) + along * along) - radius
    if kind == VOXELS:
        return voxel_bound_rows(local, parameters, kind.values, kind.features)
    raise ValueError(f"unknown obstacle kind '{kind}'")


def to_local(points: Tensor, shapes: PackedShapes) -> Tensor:
    """(3, N) world points -> (n, 3, N) coordinates in each obstacle's frame (one matrix product)."""
    local = torch.addmm(shapes.local_offset.unsqueeze(1), shapes.world_to_local.mT, points)
    return local.view(shapes.count, 3, points.shape[1])


def local_vectors_to_world_sum(vectors: Tensor, shapes: PackedShapes) -> Tensor:
    """(n, 3, N) vectors in each obstacle's frame -> (3, N): their sum over obstacles, in world."""
    return shapes.world_to_local @ vectors.reshape(3 * shapes.count, vectors.shape[2])


def point_distances(points: Tensor, shapes: PackedShapes, with_normal: bool = True):
    """(3, N) world points -> signed distances (n, N) to one kind's n obstacles, and the unit
    normals in each obstacle's frame (n, 3, N) (or None)."""
    return local_signed_distance(shapes.kind, to_local(points, shapes), shapes.parameters, with_normal)


def sphere_obstacle_distances(centers: Tensor, radii: Tensor, scene: PackedScene, with_normal: bool = False):
    """Spheres (centres (P, 3) world, radii (P,), m) against every obstacle of a packed scene.

    Returns distances (P, O) in ``scene.ids`` order (negative: penetration depth) and, if asked,
    world-frame unit normals (P, O, 3) = ∂distance/∂centre. Loops over the ≤ 4 kinds only.
    """
    points = centers.mT
    distances, normals = [], []
    for shapes in scene.shapes:
        d, n = point_distances(points, shapes, with_normal)
        distances.append(d)
        if with_normal:
            normals.append(torch.einsum("kji,kip->kjp", shapes.rotation, n))  # (n, 3, P) in world
    if not distances:
        P = centers.shape[0]
        return centers.new_empty(P, 0), (centers.new_empty(P, 0, 3) if with_normal else None)
    distance = torch.cat(distances, dim=0).mT - radii.unsqueeze(1)
    return distance, (torch.cat(normals, dim=0).permute(2, 0, 1) if with_normal else None)


def sphere_sphere_distance(centers_a: Tensor, radii_a: Tensor, centers_b: Tensor, radii_b: Tensor,
                           with_normal: bool = True, dim: int = -1):
    """Elementwise sphere pairs: centres with coordinates along ``dim`` (size 3), radii
    broadcastable to the result (m) -> signed distance (the centres' shape without ``dim``) and
    the unit normal from b to a, same shape as the centres (= ∂d/∂centre_a = −∂d/∂centre_b;
    +x for coincident centres)."""
    offset = centers_a - centers_b
    squared = (offset * offset).sum(dim)
    length = _safe_sqrt(squared)
    distance = length - radii_a - radii_b
    if not with_normal:
        return distance, None
    shape = [1] * offset.dim()
    shape[dim] = 3
    unit_x = offset.new_tensor([1.0, 0.0, 0.0]).view(shape)
    return distance, torch.where((squared == 0).unsqueeze(dim), unit_x, offset / length.unsqueeze(dim))
