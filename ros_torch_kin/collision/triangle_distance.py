"""The distance between triangles, batched (torch; any device and float dtype).

Two triangles that do not meet are closest either at a vertex of one and an interior point of the
other's face, or at two points of their edges (segment to segment, which includes a vertex to an
edge). They meet (distance 0) where an edge of one passes through the other (for non-coplanar
triangles, the ends of their common segment lie on edges) or where two edges cross (coplanar).
:func:`triangle_distances` takes the least of those 9 edge pairs and 6 vertex-face projections,
and 0 where one of the 6 edge-face crossings exists, each computed with ``torch.where`` on the
whole batch (no Python loop over triangles, no host synchronisation). Vectors are held
coordinate first, (3, N, ...), so that every product and sum runs over contiguous batches.

Degenerate triangles (a repeated corner, or three corners on a line) have no face: only their
edges count, which is their whole geometry. Near the boundaries of a face, a projection or
crossing that rounding puts just outside is not counted; an edge then gives a value at most
rounding larger. Units: those of the corners (m).
"""

from __future__ import annotations

import torch
from torch import Tensor


def triangle_distances(a: Tensor, b: Tensor) -> Tensor:
    """(N, 3, 3) corners of triangles ``a`` (N triangles, 3 corners, xyz) and ``b`` in one frame
    -> (N,) the distance between triangle ``a[n]`` and triangle ``b[n]``, 0 where they meet."""
    if a.shape != b.shape or a.shape[-2:] != (3, 3):
        raise ValueError(f"triangles must be (N, 3, 3) each, got {tuple(a.shape)} and {tuple(b.shape)}")
    A, B = a.permute(2, 0, 1).contiguous(), b.permute(2, 0, 1).contiguous()  # (3 xyz, N, 3 corners)
    A1, B1 = A.roll(-1, 2), B.roll(-1, 2)  # edge i runs from corner i to corner i + 1
    # every edge of a against every edge of b: (N, 3, 3)
    edges = segment_distances(A.unsqueeze(3), A1.unsqueeze(3), B.unsqueeze(2), B1.unsqueeze(2)).flatten(1)
    face_a, face_b = _Face(A), _Face(B)
    nearest = torch.cat((edges, face_b.height_inside(A), face_a.height_inside(B)), 1).amin(1)
    meet = face_b.crossed_by(A, A1) | face_a.crossed_by(B, B1)
    return torch.where(meet, torch.zeros_like(nearest), nearest)


def triangle_segment_distances(triangles: Tensor, p0: Tensor, p1: Tensor) -> Tensor:
    """(N, 3, 3) triangles and segments from ``p0`` (N, 3) to ``p1`` (N, 3) in one frame -> (N,)
    their distance, 0 where the segment passes through the triangle: what
    :func:`triangle_distances` gives for the segment held as a degenerate triangle, with a third
    of its work (its three edges against the segment, the segment's ends over the face, the
    segment through the face). A zero-length segment is a point."""
    A = triangles.permute(2, 0, 1).contiguous()  # (3 xyz, N, 3 corners)
    P0, P1 = p0.T.unsqueeze(2), p1.T.unsqueeze(2)  # (3, N, 1)
    face = _Face(A)
    nearest = torch.cat((segment_distances(A, A.roll(-1, 2), P0, P1), face.height_inside(torch.cat((P0, P1), 2))),
                        1).amin(1)
    return torch.where(face.crossed_by(P0, P1), torch.zeros_like(nearest), nearest)


def segment_distances(p0: Tensor, p1: Tensor, q0: Tensor, q1: Tensor) -> Tensor:
    """(3, ...) ends of segments p and q, coordinate first (broadcast) -> (...) the distance
    between them.

    The closest parameters of the two lines, clamped onto the segments in turn (the classic
    construction: s from the unclamped solution, t from s, then s again from the clamped t);
    a segment of zero length is a point (its parameter 0)."""
    u, v, w = p1 - p0, q1 - q0, p0 - q0
    a, b, c = _dot(u, u), _dot(u, v), _dot(v, v)
    d, e = _dot(u, w), _dot(v, w)
    tiny = torch.finfo(a.dtype).eps
    denominator = a * c - b * b
    skew = denominator > tiny * a * c + tiny * tiny
    s = torch.where(skew, (b * e - c * d) / torch.where(skew, denominator, torch.ones_like(a)), torch.zeros_like(a))
    long_p, long_q = a > tiny * tiny, c > tiny * tiny
    s = torch.where(long_p, s.clamp(0.0, 1.0), torch.zeros_like(s))
    t = torch.where(long_q, ((b * s + e) / torch.where(long_q, c, torch.ones_like(c))).clamp(0.0, 1.0), torch.zeros_like(s))
    s = torch.where(long_p, ((b * t - d) / torch.where(long_p, a, torch.ones_like(a))).clamp(0.0, 1.0), torch.zeros_like(s))
    gap = w + s * u - t * v
    return _dot(gap, gap).sqrt()


def _dot(u: Tensor, v: Tensor) -> Tensor:
    return u[0] * v[0] + u[1] * v[1] + u[2] * v[2]


class _Face:
    """One triangle per batch entry, (3 xyz, N, 3 corners): its first corner, edge vectors, unit
    normal (zero for a degenerate one) and the terms of barycentric coordinates."""

    def __init__(self, corners: Tensor):
        self.origin = corners[:, :, 0]  # (3, N)
        e1, e2 = corners[:, :, 1] - self.origin, corners[:, :, 2] - self.origin
        normal = torch.stack((e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]))
        self.e1, self.e2 = e1, e2
        self.d00, self.d01, self.d11 = _dot(e1, e1), _dot(e1, e2), _dot(e2, e2)
        area2 = _dot(normal, normal)  # |e1 × e2|² = d00 d11 − d01²
        scale = torch.maximum(torch.maximum(self.d00, self.d11), _dot(e2 - e1, e2 - e1))
        self.proper = area2 > 1e6 * torch.finfo(area2.dtype).eps ** 2 * scale * scale
        self.denominator = torch.where(self.proper, area2, torch.ones_like(area2))
        self.normal = normal * torch.where(self.proper, area2.rsqrt(), torch.zeros_like(area2))

    def _inside(self, offset: Tensor) -> Tensor:
        """(3, N, k) points less the origin -> (N, k) bool: the projection lies in the face."""
        d20, d21 = _dot(offset, self.e1.unsqueeze(2)), _dot(offset, self.e2.unsqueeze(2))
        d00, d01, d11 = self.d00.unsqueeze(1), self.d01.unsqueeze(1), self.d11.unsqueeze(1)
        v, w = d11 * d20 - d01 * d21, d00 * d21 - d01 * d20  # times the denominator (> 0)
        return (v >= 0) & (w >= 0) & (v + w <= self.denominator.unsqueeze(1)) & self.proper.unsqueeze(1)

    def height_inside(self, points: Tensor) -> Tensor:
        """(3, N, k) points -> (N, k) their distance from the plane where their projection lies
        in the face, +inf elsewhere."""
        offset = points - self.origin.unsqueeze(2)
        height = _dot(offset, self.normal.unsqueeze(2)).abs()
        return torch.where(self._inside(offset), height, torch.full_like(height, float("inf")))

    def crossed_by(self, p0: Tensor, p1: Tensor) -> Tensor:
        """(3, N, k) segment ends -> (N,) bool: one of the k segments passes through the face."""
        o = self.origin.unsqueeze(2)
        n = self.normal.unsqueeze(2)
        s0, s1 = _dot(p0 - o, n), _dot(p1 - o, n)
        opposite = (s0 * s1 <= 0) & (s0 != s1)
        fraction = s0 / torch.where(opposite, s0 - s1, torch.ones_like(s0))
        crossing = p0 - o + fraction * (p1 - p0)
        return (opposite & self._inside(crossing)).any(1)


def triangle_normals(corners: Tensor) -> Tensor:
    """(N, 3, 3) triangles -> (N, 3) their unit normals (zero for a degenerate one)."""
    normal = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    length = normal.norm(dim=-1, keepdim=True)
    scale = (corners - corners[:, [1, 2, 0]]).norm(dim=-1).amax(-1, keepdim=True)
    proper = length > 1e3 * torch.finfo(corners.dtype).eps * scale * scale
    return torch.where(proper, normal / torch.where(proper, length, torch.ones_like(length)), torch.zeros_like(normal))


def plane_gaps(a: Tensor, b: Tensor, normal_a: Tensor, normal_b: Tensor) -> Tensor:
    """(N, 3, 3) triangles ``a`` and ``b`` and their unit normals (N, 3) (:func:`triangle_normals`)
    -> (N,) a lower bound of their distance, cheap: how far all of one triangle lies on one side
    of the other's plane (0 where neither lies wholly off the other's plane)."""
    heights_b = ((b - a[:, :1]) * normal_a.unsqueeze(1)).sum(-1)  # (N, 3): b's corners above a's plane
    heights_a = ((a - b[:, :1]) * normal_b.unsqueeze(1)).sum(-1)
    gaps = torch.stack((heights_b.amin(1), -heights_b.amax(1), heights_a.amin(1), -heights_a.amax(1)), 1)
    return gaps.amax(1).clamp(min=0.0)
