"""Splitting triangles into smaller ones by their long edges only (pure numpy).

A triangle is split at the midpoints of the edges that are too long, and only those: all three
(four children at the edge midpoints), two (the corner between them cut off, the trapezoid left
cut along its shorter diagonal: three children) or one (halved: two children). A sliver (a CAD
fillet's 460 × 0.5 mm face) thus keeps its width and halves its length, where four children at
every edge's midpoint (``trimesh.remesh.subdivide_to_size``) halve both and leave rows of
slivers side by side: the MBM Fetch's torso (116 triangles) became 11,746 pieces, and a sphere
tree held most of them in a leaf each (16,165 leaves, median radius 4 mm, most along two
filleted corners). Children keep their parent's corner order (an outward face stays outward).
"""

from __future__ import annotations

import numpy as np


def split_triangles(points: np.ndarray, faces: np.ndarray, long: np.ndarray, band_length: float | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``faces`` (n, 3) int64 over ``points`` (V, 3) by their ``long`` edges ((n, 3) bool:
    ab, bc, ca; each face at least one) -> (the new points (m, 3), numbered V, V + 1, ...; the
    children (k, 3) int64; each child's face (k,) int64). One long edge: halved; three: four
    children at the midpoints; two: cut across them into bands no longer than ``band_length`` (m;
    None: two bands), the corner between them a triangle, each band a trapezoid cut along its
    shorter diagonal (a band's sides are then short, and its triangles are not slivers again
    along the whole length)."""
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    long = np.asarray(long, dtype=bool).reshape(-1, 3)
    count = long.sum(axis=1)
    if (count == 0).any():
        raise ValueError("every face to split needs a long edge")
    # turned so that the long edges come first: one: ab; two: ab and ca (bc short); three: any
    first = np.where(count == 2, (np.argmin(long, axis=1) + 2) % 3, np.argmax(long, axis=1))
    rows = np.arange(len(faces))[:, None]
    a, b, c = faces[rows, (first[:, None] + np.arange(3)) % 3].T
    V = len(points)
    middles, children, parents = [], [], []

    def midpoints(u, v):
        start = V + sum(len(m) for m in middles)
        middles.append(0.5 * (points[u] + points[v]))
        return start + np.arange(len(u))

    def add(which, *triangles):
        for triangle in triangles:
            children.append(np.stack(triangle, axis=1))
            parents.append(which)

    one = np.flatnonzero(count == 1)
    if len(one):
        m = midpoints(a[one], b[one])
        add(one, (a[one], m, c[one]), (m, b[one], c[one]))
    two = np.flatnonzero(count == 2)
    if len(two):  # cut across the long edges into bands: the corner between them, then trapezoids
        A, B, C = a[two], b[two], c[two]
        length = np.maximum(np.linalg.norm(points[B] - points[A], axis=1), np.linalg.norm(points[C] - points[A], axis=1))
        bands = np.maximum(2, np.ceil(length / np.maximum(band_length, 1e-12)).astype(np.int64)) if band_length \
            is not None else np.full(len(two), 2)
        for k in np.unique(bands):
            chosen = np.flatnonzero(bands == k)
            fa, fb, fc = A[chosen], B[chosen], C[chosen]
            n, start = len(chosen), V + sum(len(m) for m in middles)
            t = (np.arange(k + 1) / k)[None, :, None]  # (1, k + 1, 1): the band edges' fractions
            along_b = points[fa][:, None] + t * (points[fb] - points[fa])[:, None]  # (n, k + 1, 3), a first
            along_c = points[fa][:, None] + t * (points[fc] - points[fa])[:, None]
            middles.append(np.concatenate([along_b[:, 1:-1].reshape(-1, 3), along_c[:, 1:-1].reshape(-1, 3)]))
            P = np.concatenate([fa[:, None], start + np.arange(n * (k - 1)).reshape(n, k - 1), fb[:, None]], axis=1)
            Q = np.concatenate([fa[:, None], start + n * (k - 1) + np.arange(n * (k - 1)).reshape(n, k - 1),
                                fc[:, None]], axis=1)
            add(two[chosen], (P[:, 0], P[:, 1], Q[:, 1]))  # the corner
            # band i: P_i P_i+1 Q_i+1 Q_i, cut along its shorter diagonal
            shorter = (np.linalg.norm(along_b[:, 1:-1] - along_c[:, 2:], axis=2)
                       <= np.linalg.norm(along_b[:, 2:] - along_c[:, 1:-1], axis=2))  # (n, k - 1)
            for i in range(1, k):
                p0, p1, q1, q0 = P[:, i], P[:, i + 1], Q[:, i + 1], Q[:, i]
                s = shorter[:, i - 1, None]
                add(two[chosen], tuple(np.where(s, np.stack([p0, p1, q1], 1), np.stack([p0, p1, q0], 1)).T),
                    tuple(np.where(s, np.stack([p0, q1, q0], 1), np.stack([p1, q1, q0], 1)).T))
    three = np.flatnonzero(count == 3)
    if len(three):
        A, B, C = a[three], b[three], c[three]
        mab, mbc, mca = midpoints(A, B), midpoints(B, C), midpoints(C, A)
        add(three, (A, mab, mca), (mab, B, mbc), (mca, mbc, C), (mab, mbc, mca))
    new = np.concatenate(middles) if middles else np.zeros((0, 3))
    return new, np.concatenate(children), np.concatenate(parents)


def long_edges(corners: np.ndarray, longer_than: np.ndarray | float) -> np.ndarray:
    """(n, 3) bool: which edges (ab, bc, ca) of triangles ``corners`` (n, 3, 3) are longer than
    ``longer_than`` (m; a number or (n,))."""
    squared = ((corners - corners[:, [1, 2, 0]]) ** 2).sum(axis=2)
    return squared > np.square(np.asarray(longer_than, dtype=np.float64)).reshape(-1, 1)


def refine_to_size(vertices: np.ndarray, faces: np.ndarray, max_edge: float) -> tuple[np.ndarray, np.ndarray]:
    """``faces`` (T, 3) over ``vertices`` (V, 3) split (:func:`split_triangles`) until no edge is
    longer than ``max_edge`` (m) -> (points (V', 3), triangles (T', 3) int64)."""
    points = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    done = []
    while len(faces):
        long = long_edges(points[faces], max_edge)
        split = long.any(axis=1)
        done.append(faces[~split])
        if not split.any():
            break
        new, faces, _ = split_triangles(points, faces[split], long[split], max_edge)
        points = np.concatenate([points, new])
    return points, (np.concatenate(done) if done else np.zeros((0, 3), dtype=np.int64))
