"""A bounding-volume hierarchy over a triangle soup: exact nearest distances and exact winding
numbers for many points at once, without a sum over every triangle (pure numpy).

Building a link's sphere tree (:mod:`.sphere_tree`) asks for a mesh's exact signed distance at
tens of thousands of points. Summed over every triangle that is O(points × triangles): minutes
for a 40,000-triangle gripper. Here:

* **Tree.** The triangles are ordered by median splits of their centroids along each node's
  widest axis. Level ``l`` has ``2**l`` nodes; node ``k`` holds the triangles at positions
  ``k·T // 2**l`` up to ``(k+1)·T // 2**l`` of that order, so node ``k``'s children are ``2k`` and
  ``2k + 1``. The last level's nodes (the leaves) hold at most ``leaf_size`` triangles. Each node has
  its vertices' bounding box and the sphere about the box's middle that holds them.
* **Distance: branch and bound**, one level at a time for all points together. Each point first
  gets an upper bound: its exact distance to the triangles of one leaf, reached by stepping
  into the child whose sphere reaches nearest. A (point, node) pair is then kept while the
  distance to the node's box does not exceed that bound, and the kept leaves' triangles are
  measured exactly. The result equals the minimum over all triangles: a node that could hold
  the nearest point is never dropped.
* **Winding number: far nodes by their boundary.** Seen from a point outside a node's box, the
  node's triangles subtend the same solid angle as the cone from the box's middle over the node's
  *boundary*: the directed edges that no opposite edge of the node cancels. Both surfaces have
  the same boundary, and the closed surface they make lies inside the (convex) box, so it does
  not wind around a point outside it (Stokes). A far node costs its boundary (about √n edges for
  n triangles, none for a closed shell); a near one is opened; leaves are summed triangle by
  triangle (Van Oosterom and Strackee). This holds for any soup: no orientation is assumed.

Units: m. Frames: the triangles' own.
"""

from __future__ import annotations

import math

import numpy as np

#: (point, edge or triangle) pairs evaluated in one vectorised block.
_BLOCK = 1 << 20
#: A point is far from a node when beyond its box by this margin (relative to 1 m + the node's
#: radius: rounding).
_FAR_MARGIN = 1e-9


class TriangleHierarchy:
    """The hierarchy over ``triangles`` (T, 3, 3); see the module doc.

    ``distances(points)``: (P,) the distance (m) from each point (P, 3) to the nearest triangle.
    ``winding_numbers(points)``: (P,) the generalised winding number of the triangles around each
    point (±1 inside a closed shell, 0 outside)."""

    def __init__(self, triangles: np.ndarray, leaf_size: int = 16):
        if leaf_size < 2:  # with 1, a level could have more nodes than triangles
            raise ValueError(f"leaf_size must be ≥ 2, got {leaf_size}")
        tri = np.asarray(triangles, dtype=np.float64).reshape(-1, 3, 3)
        count = len(tri)
        depth = 0
        while count > leaf_size << depth:
            depth += 1
        self.count, self.depth = count, depth
        order = np.arange(count)
        centroids = tri.mean(axis=1)
        for level in range(depth):  # every node of these levels holds at least one triangle
            starts, label = self._segments(level)
            c = centroids[order]
            extent = np.maximum.reduceat(c, starts, axis=0) - np.minimum.reduceat(c, starts, axis=0)
            along = c[np.arange(count), extent.argmax(axis=1)[label]]
            order = order[np.lexsort((along, label))]
        self.triangles = tri[order]
        # corners as coordinate columns: self.corners[j][i] (T,) coordinate i of every corner j
        self.corners = [tuple(np.ascontiguousarray(self.triangles[:, j, i]) for i in range(3)) for j in range(3)]
        self.centers, self.radii, self.boxes = [], [], []
        # the leaves' first triangles and sizes
        self.leaf_starts = self._segments(depth)[0]
        self.leaf_sizes = np.diff(np.append(self.leaf_starts, count))
        for level in range(depth + 1) if count else ():  # an empty mesh: the queries answer at once
            starts, label = self._segments(level)
            low = np.minimum.reduceat(self.triangles.min(axis=1), starts, axis=0)
            high = np.maximum.reduceat(self.triangles.max(axis=1), starts, axis=0)
            center = 0.5 * (low + high)
            reach = np.linalg.norm(self.triangles - center[label][:, None, :], axis=2).max(axis=1)
            self.centers.append(center)
            self.radii.append(np.maximum.reduceat(reach, starts))
            self.boxes.append((low, high))
        self._boundaries = self._boundary_edges(depth)

    def _segments(self, level: int) -> tuple[np.ndarray, np.ndarray]:
        """Level ``level``'s nodes' first positions (2**level,) and each position's node (T,)."""
        bounds = np.arange((1 << level) + 1, dtype=np.int64) * self.count >> level
        return bounds[:-1], np.repeat(np.arange(1 << level), np.diff(bounds))

    def _boundary_edges(self, depth: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per level above the leaves: (first edge of each node (N + 1,), edge tails, edge heads,
        each as x, y, z columns (E,)): each node's directed edges that do not cancel, one per
        multiplicity."""
        if self.count == 0:
            return []
        flat = self.triangles.reshape(-1, 3)
        vertices, ids = np.unique(flat, axis=0, return_inverse=True)
        ids = ids.reshape(-1, 3)
        tails = ids.ravel()
        heads = ids[:, [1, 2, 0]].ravel()
        low, high = np.minimum(tails, heads), np.maximum(tails, heads)
        sign = np.where(tails == low, 1, -1)
        keep = tails != heads  # a collapsed edge bounds nothing
        boundaries = []
        V = len(vertices)
        for level in range(depth):
            _, label = self._segments(level)
            node = np.repeat(label, 3)[keep]
            key = (node * V + low[keep]) * V + high[keep]
            unique, inverse = np.unique(key, return_inverse=True)
            net = np.bincount(inverse, weights=sign[keep], minlength=len(unique)).astype(np.int64)
            edge = np.flatnonzero(net)
            times = np.abs(net[edge])
            edge_node, a, b = unique[edge] // (V * V), unique[edge] // V % V, unique[edge] % V
            a, b = np.where(net[edge] > 0, a, b), np.where(net[edge] > 0, b, a)  # the direction that remains
            edge_node, a, b = (np.repeat(x, times) for x in (edge_node, a, b))
            first = np.searchsorted(edge_node, np.arange((1 << level) + 1))
            boundaries.append((first, _columns(vertices[a]), _columns(vertices[b])))
        return boundaries

    # ------------------------------------------------------------------ queries

    def distances(self, points: np.ndarray) -> np.ndarray:
        """(P,) the distance (m) from each point (P, 3) to the nearest triangle (inf: none)."""
        return self._per_chunk(points, self._nearest, np.inf)

    def winding_numbers(self, points: np.ndarray) -> np.ndarray:
        """(P,) the winding number of the triangles around each point (P, 3)."""
        return self._per_chunk(points, self._winding, 0.0)

    def _per_chunk(self, points: np.ndarray, query, empty: float) -> np.ndarray:
        """``query`` over chunks of the points (P, 3) (bounded temporaries); ``empty`` for every
        point when there is no triangle."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        result = np.full(len(points), empty)
        chunk = max(1, _BLOCK // (4 * max(1, min(self.count, 256))))
        for start in range(0, len(points) if self.count else 0, chunk):
            result[start : start + chunk] = query(points[start : start + chunk])
        return result

    def _nearest(self, p: np.ndarray) -> np.ndarray:
        n = len(p)
        upper = self._greedy_upper(p)
        point, node = np.arange(n), np.zeros(n, dtype=np.int64)
        for level in range(self.depth + 1):
            kept = self._box_gaps(p[point], level, node) <= upper[point]
            point, node = point[kept], node[kept]
            if level < self.depth:
                point, node = np.repeat(point, 2), (2 * node[:, None] + np.arange(2)).ravel()
        return np.sqrt(np.minimum(self._leaf_squared(p, point, node), upper * upper))

    def _box_gaps(self, p: np.ndarray, level: int, node: np.ndarray) -> np.ndarray:
        """(m,) the distance from points p (m, 3) to the bounding boxes of nodes ``node`` (m,) of
        ``level``: a lower bound on their distance to the nodes' triangles."""
        low, high = self.boxes[level]
        outside = np.maximum(np.maximum(low[node] - p, p - high[node]), 0.0)
        return np.sqrt((outside * outside).sum(axis=1))

    def _greedy_upper(self, p: np.ndarray) -> np.ndarray:
        """(n,) an upper bound on each point's distance: its exact distance to the triangles of
        the leaf reached by always stepping into the child whose sphere reaches nearest (a signed
        bound: it still tells children apart when the point is inside both)."""
        n = len(p)
        node = np.zeros(n, dtype=np.int64)
        for level in range(1, self.depth + 1):
            children = 2 * node[:, None] + np.arange(2)  # (n, 2)
            bound = np.linalg.norm(p[:, None, :] - self.centers[level][children], axis=2) - self.radii[level][children]
            node = children[np.arange(n), bound.argmin(axis=1)]
        return np.sqrt(self._leaf_squared(p, np.arange(n), node))

    def _leaf_squared(self, p: np.ndarray, point: np.ndarray, node: np.ndarray) -> np.ndarray:
        """(n,) the least squared distance from each point p[point[i]] to the triangles of the
        leaves node[i] (``point`` sorted; inf for a point with no pair)."""
        best = np.full(len(p), np.inf)
        for owner, triangle in _blocks(self.leaf_starts[node], self.leaf_sizes[node]):
            pair_point = point[owner]
            squared = _squared_distances(tuple(p[pair_point, i] for i in range(3)),
                                         *(tuple(x[triangle] for x in corner) for corner in self.corners))
            first = _group_starts(pair_point)
            best[pair_point[first]] = np.minimum(best[pair_point[first]], np.minimum.reduceat(squared, first))
        return best

    def _winding(self, p: np.ndarray) -> np.ndarray:
        n = len(p)
        total = np.zeros(n)
        columns = _columns(p)
        point, node = np.arange(n), np.zeros(n, dtype=np.int64)
        for level in range(self.depth):
            low, high = self.boxes[level]
            margin = _FAR_MARGIN * (1.0 + self.radii[level][node])[:, None]
            far = ((p[point] < low[node] - margin) | (p[point] > high[node] + margin)).any(axis=1)
            if far.any():
                first, tails, heads = self._boundaries[level]
                far_point, far_node = point[far], node[far]
                apex = _columns(self.centers[level])
                for owner, edge in _blocks(first[far_node], first[far_node + 1] - first[far_node]):
                    q = tuple(x[far_point[owner]] for x in columns)
                    corners = ([x[far_node[owner]] for x in apex], [x[edge] for x in tails], [x[edge] for x in heads])
                    total += np.bincount(far_point[owner], _half_solid_angles(q, *corners), minlength=n)
            point, node = point[~far], node[~far]
            point, node = np.repeat(point, 2), (2 * node[:, None] + np.arange(2)).ravel()
        for owner, triangle in _blocks(self.leaf_starts[node], self.leaf_sizes[node]):
            q = tuple(x[point[owner]] for x in columns)
            corners = ([x[triangle] for x in corner] for corner in self.corners)
            total += np.bincount(point[owner], _half_solid_angles(q, *corners), minlength=n)
        return total / (2 * math.pi)


def _group_starts(sorted_labels: np.ndarray) -> np.ndarray:
    """The first index of each run of equal values in a sorted, non-empty array."""
    return np.flatnonzero(np.concatenate([[True], sorted_labels[1:] != sorted_labels[:-1]]))


def _blocks(starts: np.ndarray, sizes: np.ndarray):
    """The ranges ``starts[i] .. starts[i] + sizes[i] - 1`` of every i, concatenated, in blocks of
    about ``_BLOCK`` items: yields (i of each item, item index), both (m,) int64."""
    ends = np.cumsum(sizes)
    begin = 0
    while begin < len(sizes):
        stop = int(np.searchsorted(ends, (ends[begin - 1] if begin else 0) + _BLOCK, side="right"))
        stop = max(stop, begin + 1)
        counts = sizes[begin:stop]
        owner = np.repeat(np.arange(begin, stop), counts)
        offset = np.cumsum(counts) - counts
        item = np.arange(int(counts.sum())) - np.repeat(offset, counts) + np.repeat(starts[begin:stop], counts)
        yield owner, item
        begin = stop


def _half_solid_angles(p, a, b, c) -> np.ndarray:
    """(m,) half the signed solid angle of triangles (a, b, c) seen from points p, each a tuple of
    the x, y, z coordinate arrays (m,) (Van Oosterom and Strackee:
    tan(Ω/2) = a·(b×c) / (|a||b||c| + (a·b)|c| + (a·c)|b| + (b·c)|a|), corners relative to p)."""
    (ax, ay, az), (bx, by, bz), (cx, cy, cz) = ([u - v for u, v in zip(corner, p)] for corner in (a, b, c))
    la = np.sqrt(ax * ax + ay * ay + az * az)
    lb = np.sqrt(bx * bx + by * by + bz * bz)
    lc = np.sqrt(cx * cx + cy * cy + cz * cz)
    numerator = ax * (by * cz - bz * cy) + ay * (bz * cx - bx * cz) + az * (bx * cy - by * cx)
    denominator = (la * lb * lc + (ax * bx + ay * by + az * bz) * lc + (ax * cx + ay * cy + az * cz) * lb
                   + (bx * cx + by * cy + bz * cz) * la)
    return np.arctan2(numerator, denominator)


def _columns(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, 3) -> its x, y, z columns, each contiguous (n,)."""
    return tuple(np.ascontiguousarray(x[:, i]) for i in range(3))


def _squared_distances(p, a, b, c) -> np.ndarray:
    """(m,) squared distance from points p to triangles (a, b, c), each a tuple of the x, y, z
    coordinate arrays (m,): the projection onto the plane where it falls inside the triangle,
    else the nearest edge (a degenerate triangle is measured by its edges)."""

    def sub(u, v):
        return tuple(x - y for x, y in zip(u, v))

    def dot(u, v):
        return u[0] * v[0] + u[1] * v[1] + u[2] * v[2]

    def cross(u, v):
        return (u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0])

    normal = cross(sub(b, a), sub(c, a))
    area2 = dot(normal, normal)
    nearest = None
    inside = area2 > 1e-28
    for origin, end in ((a, b), (b, c), (c, a)):
        direction, offset = sub(end, origin), sub(p, origin)
        along = dot(offset, direction)
        length2 = np.maximum(dot(direction, direction), 1e-300)
        t = np.clip(along / length2, 0.0, 1.0)
        squared = dot(offset, offset) - t * (2 * along - t * length2)
        nearest = squared if nearest is None else np.minimum(nearest, squared)
        inside &= dot(offset, cross(normal, direction)) >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        height = dot(sub(p, a), normal)
        plane = height * height / np.where(area2 > 0, area2, 1.0)
    return np.maximum(np.where(inside, np.minimum(plane, nearest), nearest), 0.0)
