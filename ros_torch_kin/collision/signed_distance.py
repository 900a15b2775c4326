"""Closed-form signed distances from points to obstacles, with their gradients (unit normals).

The signed distance of a point to a shape is its distance to the surface, negative inside (by the
depth to the nearest surface point: exact for every kind here, boxes included). A sphere of radius
r centred at the point is at that distance minus r; the gradient of either with respect to the
centre is the unit outward normal ``n`` of the nearest surface point (pointing from the shape to
the centre). Where that is not unique (the centre on a capsule's axis, at a box's centre, ...)
any unit subgradient is returned: local +x, or the first axis of a tie.

Everything is elementwise over broadcast batches: no Python loop over points or obstacles.
Shapes: points (P, 3) world (m); an obstacle kind's local coordinates (P, n, 3); distances
(P, n); normals (P, n, 3). Kinds and parameters as in :class:`~.obstacles.PackedShapes`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .obstacles import BOX, CAPSULE, CYLINDER, SPHERE, PackedScene, PackedShapes


def _safe_norm(squared: Tensor) -> Tensor:
    """sqrt, kept away from 0 so that autograd through it stays finite (error < 1e-19 m)."""
    return torch.sqrt(squared.clamp_min(torch.finfo(squared.dtype).tiny))


def _unit_or_x(v: Tensor, length: Tensor) -> Tensor:
    """v / length along the last dim, or (1, 0, ...) where the length is 0."""
    fallback = torch.zeros_like(v)
    fallback[..., 0] = 1.0
    return torch.where(length.unsqueeze(-1) > 0, v / length.unsqueeze(-1).clamp_min(torch.finfo(v.dtype).tiny), fallback)


def _sign(x: Tensor) -> Tensor:
    """±1 (+1 at 0), so that a normal is never zero."""
    return torch.where(x < 0, -torch.ones_like(x), torch.ones_like(x))


def rounded_segment_distance(local: Tensor, half_height: Tensor, radius: Tensor, with_normal: bool = True):
    """Capsule (and sphere: half-height 0): the segment z ∈ [−h, h] on the local z axis, inflated
    by ``radius``. local (..., n, 3); half_height, radius (n,). -> d (..., n), normal (..., n, 3)."""
    z = local[..., 2]
    closest_z = torch.minimum(torch.maximum(z, -half_height), half_height)
    offset = torch.cat((local[..., :2], (z - closest_z).unsqueeze(-1)), dim=-1)
    squared = (offset * offset).sum(-1)
    length = _safe_norm(squared)
    distance = length - radius
    return distance, (_unit_or_x(offset, torch.sqrt(squared)) if with_normal else None)


def box_distance(local: Tensor, half_extents: Tensor, with_normal: bool = True):
    """Axis-aligned box [−h, h]³ in local coordinates. local (..., n, 3); half_extents (n, 3).
    Outside: the Euclidean distance to the box; inside: minus the distance to the nearest face."""
    excess = local.abs() - half_extents  # (..., n, 3): > 0 beyond a face's plane
    outside = excess.clamp_min(0.0)
    outside_length = _safe_norm((outside * outside).sum(-1))
    deepest, axis = excess.max(dim=-1)
    distance = torch.where(deepest > 0, outside_length, deepest)
    if not with_normal:
        return distance, None
    face = torch.zeros_like(local).scatter_(-1, axis.unsqueeze(-1), 1.0)
    direction = torch.where((deepest > 0).unsqueeze(-1), outside / outside_length.unsqueeze(-1), face)
    return distance, direction * _sign(local)


def cylinder_distance(local: Tensor, half_height: Tensor, radius: Tensor, with_normal: bool = True):
    """Solid cylinder of ``radius`` around the local z axis, z ∈ [−h, h]. local (..., n, 3);
    half_height, radius (n,). Inside: minus the distance to the nearer of the side and the caps."""
    radial_squared = (local[..., :2] * local[..., :2]).sum(-1)
    radial = _safe_norm(radial_squared)
    beyond_side = radial - radius
    beyond_cap = local[..., 2].abs() - half_height
    side, cap = beyond_side.clamp_min(0.0), beyond_cap.clamp_min(0.0)
    outside_length = _safe_norm(side * side + cap * cap)
    deepest = torch.maximum(beyond_side, beyond_cap)
    distance = torch.where(deepest > 0, outside_length, deepest)
    if not with_normal:
        return distance, None
    radial_unit = _unit_or_x(local[..., :2], torch.sqrt(radial_squared))  # (..., n, 2)
    z_sign = _sign(local[..., 2])
    outside = deepest > 0
    inside_side = beyond_side >= beyond_cap
    side_weight = torch.where(outside, side / outside_length, inside_side.to(local.dtype))
    cap_weight = torch.where(outside, cap / outside_length, (~inside_side).to(local.dtype))
    return distance, torch.cat((radial_unit * side_weight.unsqueeze(-1), (cap_weight * z_sign).unsqueeze(-1)), dim=-1)


def local_signed_distance(kind: str, local: Tensor, parameters: Tensor, with_normal: bool = True):
    """Signed distance (m) and local-frame unit normal of points given in each obstacle's frame.
    local (..., n, 3); parameters (n, k) as in PackedShapes. -> (..., n), (..., n, 3) or None."""
    if kind == BOX:
        return box_distance(local, parameters, with_normal)
    if kind == CYLINDER:
        return cylinder_distance(local, parameters[:, 0], parameters[:, 1], with_normal)
    if kind == CAPSULE:
        return rounded_segment_distance(local, parameters[:, 0], parameters[:, 1], with_normal)
    if kind == SPHERE:
        return rounded_segment_distance(local, parameters[:, 1], parameters[:, 0], with_normal)
    raise ValueError(f"unknown obstacle kind '{kind}'")


def to_local(points: Tensor, shapes: PackedShapes) -> Tensor:
    """(P, 3) world points -> (P, n, 3) coordinates in each obstacle's frame (one matrix product)."""
    return torch.addmm(shapes.local_offset, points, shapes.world_to_local).view(points.shape[0], shapes.count, 3)


def local_vectors_to_world_sum(vectors: Tensor, shapes: PackedShapes) -> Tensor:
    """(P, n, 3) local-frame vectors -> (P, 3): the sum over obstacles of each rotated to world."""
    return vectors.reshape(vectors.shape[0], -1) @ shapes.world_to_local.mT


def point_distances(points: Tensor, shapes: PackedShapes, with_normal: bool = True):
    """(P, 3) world points -> signed distances (P, n) to one kind's n obstacles, and the unit
    normals in each obstacle's frame (P, n, 3) (or None)."""
    return local_signed_distance(shapes.kind, to_local(points, shapes), shapes.parameters, with_normal)


def sphere_obstacle_distances(centers: Tensor, radii: Tensor, scene: PackedScene, with_normal: bool = False):
    """Spheres (centres (P, 3) world, radii (P,), m) against every obstacle of a packed scene.

    Returns distances (P, O) in ``scene.ids`` order (negative: penetration depth) and, if asked,
    world-frame unit normals (P, O, 3) = ∂distance/∂centre. Loops over the ≤ 4 kinds only.
    """
    P = centers.shape[0]
    distances, normals = [], []
    for shapes in scene.shapes:
        d, n = point_distances(centers, shapes, with_normal)
        distances.append(d)
        if with_normal:
            normals.append(torch.einsum("pki,kji->pkj", n, shapes.rotation))
    if not distances:
        empty = centers.new_empty(P, 0)
        return empty, (centers.new_empty(P, 0, 3) if with_normal else None)
    distance = torch.cat(distances, dim=1) - radii.unsqueeze(1)
    return distance, (torch.cat(normals, dim=1) if with_normal else None)


def sphere_sphere_distance(centers_a: Tensor, radii_a: Tensor, centers_b: Tensor, radii_b: Tensor, with_normal: bool = True):
    """Elementwise sphere pairs: centres (..., 3), radii (...) (m) -> signed distance (...) and the
    unit normal (..., 3) from b to a (= ∂d/∂centre_a = −∂d/∂centre_b; +x for coincident centres)."""
    offset = centers_a - centers_b
    squared = (offset * offset).sum(-1)
    distance = _safe_norm(squared) - radii_a - radii_b
    return distance, (_unit_or_x(offset, torch.sqrt(squared)) if with_normal else None)
