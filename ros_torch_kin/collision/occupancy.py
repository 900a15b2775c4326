"""Sensed and CAD geometry as a voxel occupancy grid with a conservative distance field.

A :class:`VoxelGrid` holds points (a point cloud, a depth image back-projected, or the sampled
surface of a mesh) in its own frame (the obstacle frame of a ``voxels`` :class:`~.obstacles.Obstacle`;
the root frame for sensed points), quantised into cubic voxels of side ``s`` (``voxel_size``, m)
on a grid aligned to multiples of ``s``. At build time (CPU, numpy + scipy) the grid stores, at
every voxel centre ("node") g, a lower bound F(g) of the signed distance from g to the geometry:

* a free node: ``F = D_out − h − bound``, D_out the Euclidean distance (scipy's exact EDT) to the
  nearest occupied node, h = √3/2·s the voxel half-diagonal (a point lies within h of its node),
  ``bound`` the stated error of the points themselves (their radius; for a mesh, the samples'
  covering radius, at most the sampling spacing/√3, plus the radius);
* an occupied node: ``F = −h − bound`` for points (a cloud has no inside: negative = contact); for a
  filled closed mesh, ``−D_in − bound`` inside, D_in the distance to the nearest free node (whose
  centre lies outside the solid), so depth grows towards the middle.

A query at x (torch, batched; same code on CUDA) interpolates F trilinearly over the 8 nodes of x's
cell (weights wᵢ, cell coordinates t ∈ [0, 1]³) and returns

    L(x) = max( Σ wᵢ F(gᵢ) − s·√(Σₐ tₐ(1 − tₐ)),  distance from x to the occupied voxels' box − bound )

Both terms are lower bounds of the true distance d(x): d is 1-Lipschitz, so d(x) ≥ Σ wᵢ (F(gᵢ) −
|x − gᵢ|) and Σ wᵢ |x − gᵢ| ≤ √(Σ wᵢ |x − gᵢ|²) = s·√(Σₐ tₐ(1 − tₐ)) (≤ h). The box term holds
everywhere (every point lies in it); it is used outside the box only, and is the only one outside
the grid, whose padding keeps the
field exact near the geometry. **Guarantee: L(x) ≤ d(x) (never larger than the true distance,
so never a missed contact), and, within the grid's padding of the geometry (default
max(0.1 m, 4·s)), d(x) − L(x) ≤ 4h + 2·bound = 2√3·s + 2·bound** (d(gᵢ) ≤ D_out + h + bound;
usually about h + e); farther away only the box bound is used. The returned normal is the unit direction of the interpolated
field's gradient (or of the box's), the direction that increases the bound: what the penalty
pushes along; it is not the exact derivative of the cell term.

**Multi-resolution grids** (``from_points(..., multires=True)``; what the node builds from camera
topics). The exact transform above costs ~0.2 µs per cell of the padded box: 0.5-1.5 s for a
640×480 view at 1 cm. A multi-resolution grid instead keeps three levels of node lower bounds,
each ``min(D_ℓ, c_ℓ)·σ_ℓ − h_ℓ − bound``: D_ℓ the exact distance (in nodes) from a node to the
nearest occupied node of level ℓ, computed only within c_ℓ nodes of the occupied ones by
stamping each occupied node's ball (cost ∝ occupied nodes × ball, not ∝ box volume), σ_ℓ = 2^ℓ·s
the level's spacing (levels 1, 2 aligned so that a level-ℓ cell is a union of voxels: a point
lies within h_ℓ = √3/2·σ_ℓ of its level-ℓ node), c = :data:`LEVEL_CAPS` = (4, 5, 6) nodes; beyond
c_ℓ the node holds c_ℓ·σ_ℓ − h_ℓ − bound, still a lower bound. Level 0 (σ = s) is stored only in
the bricks of BRICK³ cells that some occupied voxel's ball reaches (a block table points to
them); levels 1 and 2 are dense over their own small boxes. A query takes the largest of the
levels' interpolated bounds (each is one by the argument above) and the box term. **Guarantee:
L(x) ≤ d(x) everywhere, and d(x) − L(x) ≤ 2√3·s + 2·bound where d(x) ≤ 1.4·s − bound,
≤ 4√3·s + 2·bound where d(x) ≤ 4.8·s − bound, ≤ 8√3·s + 2·bound where d(x) ≤ 13.6·s − bound;
farther, L(x) ≥ min(d(x) − 18·s, 17·s − bound)** (level ℓ is uncapped at all 8 corners while
d(x) + bound + 3h_ℓ ≤ c_ℓ·σ_ℓ; test/test_multires_world.py checks each tier against a KD-tree).
Typical errors are much smaller (median ≈ 1.2·s within 2 cm at s = 1 cm). The normal is the
gradient direction of the level that gave the bound. With the exact points and a far-field
lattice (``exact=True, lattice=...``: a sensor's world), level 0 is not built (no bricks; its
queries fall to levels 1 and 2): the exact points hold the exact distance within a point cell
(less their radius) of them and the lattice holds it, up to its interpolation, out to its reach,
so the bound is at least the full field's there (a test); level 0's stamping was a sixth of a
camera view's insertion.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

#: Most cells one grid may have (its bounding box plus padding, at its voxel size).
MAX_CELLS = 16_000_000
#: Most points accepted in one build (finite ones and NaNs together).
MAX_POINTS = 5_000_000
#: Most triangles a mesh may have.
MAX_TRIANGLES = 1_000_000
#: Triangles with an area below this (m²) are degenerate.
DEGENERATE_AREA = 1e-14
#: Columns of a packed grid's parameter row (see :func:`grid_parameters`).
PARAMETER_COLUMNS = 62
#: The first column of a packed row's point table (:mod:`.point_hash`; 13 columns).
POINT_COLUMN = 38
#: The first column of a packed row's exact lattice (:func:`.point_hash.lattice_bound`; 11 columns).
LATTICE_COLUMN = 51
#: Multi-resolution grids: fine cells per brick side (level 0 is stored in bricks of BRICK³ cells).
BRICK = 4
#: Multi-resolution grids: the radius (in nodes of each level) within which level 0 (voxel size
#: s), 1 (2s) and 2 (4s) hold the exact distance to their occupied nodes; beyond it, that radius.
LEVEL_CAPS = (4, 5, 6)
assert BRICK >= LEVEL_CAPS[0]
_OFFSET_BASE = 4096  # offsets are stored as two floats (high, low), exact in float32


@dataclass(frozen=True, eq=False)
class VoxelGrid:
    """An occupancy grid and its node lower bounds (see the module docstring). Immutable.

    ``origin`` (3,): the centre of node (0, 0, 0) in the grid's frame (m); ``voxel_size`` s (m);
    ``occupied`` (nx, ny, nz) bool; ``field`` (nx, ny, nz) float32: F at each node (m);
    ``box`` (2, 3): lower and upper corner of the occupied voxels' box (m, grid frame): every
    point lies in it, the geometry within ``bound`` of it;
    ``bound`` (m): the points' own stated error; ``notes``: what was noticed while building (an
    open mesh, NaN points skipped)."""

    origin: np.ndarray
    voxel_size: float
    occupied: np.ndarray
    field: np.ndarray
    box: np.ndarray
    bound: float
    notes: tuple[str, ...] = ()
    #: None for a dense grid (``field`` shaped like ``occupied``); for a multi-resolution grid
    #: (``field`` flat: block table, level-0 bricks, level 1, level 2) the block table's shape,
    #: where the bricks start, and per coarser level (node (0, 0, 0)'s centre, shape, start).
    layout: tuple | None = None
    #: None, or the exact point table (:mod:`.point_hash`) stored after the field values in
    #: ``field`` (then flat): (cell size (m), the table's origin (3,), dims (3,), where ``starts``
    #: and the sorted points begin in ``field``, the number of points, the point radius (m)).
    points: tuple | None = None
    #: None, or the exact far-field lattice (:func:`.point_hash.build_lattice`) stored after the
    #: point table in ``field``: (spacing (m), origin (3,), dims (3,), where it begins in ``field``).
    lattice: tuple | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.occupied.shape)

    @property
    def occupied_count(self) -> int:
        return int(self.occupied.sum())

    def occupied_centers(self) -> np.ndarray:
        """(K, 3) centres of the occupied voxels (m, grid frame)."""
        return self.origin + np.argwhere(self.occupied) * self.voxel_size

    def __repr__(self) -> str:
        kind = "" if self.layout is None else f", multi-resolution, {self.field.size:,} field values"
        if self.points is not None:
            kind += f", {self.points[5]:,} exact points of radius {self.points[6] * 1000:g} mm (cells {self.points[0] * 1000:g} mm)"
        return (f"VoxelGrid({self.occupied_count} occupied of {'×'.join(map(str, self.shape))} voxels of "
                f"{self.voxel_size * 1000:g} mm, bound {self.bound * 1000:.2f} mm{kind})")

    def with_points(self, points: np.ndarray, cell: float, max_cells: int = MAX_CELLS, lattice: float | None = None,
                    lattice_reach: float = 0.1) -> "VoxelGrid":
        """This grid plus the exact point table of ``points`` (P, 3) (finite, grid frame; each a
        ball of radius ``bound``) in cells of ``cell`` m (:mod:`.point_hash`), and with
        ``lattice`` (m) the exact far-field lattice of that spacing out to ``lattice_reach`` m."""
        from . import point_hash

        origin, dims, starts, ordered = point_hash.build(points, cell, max_cells)
        head = self.field.reshape(-1)
        parts = [head, starts.astype(np.float32), ordered.reshape(-1).astype(np.float32)]
        layout = (float(cell), tuple(float(v) for v in origin), tuple(int(d) for d in dims), int(head.size),
                  int(head.size + starts.size), int(ordered.shape[0]), float(self.bound))
        far = None
        if lattice is not None:
            l_origin, l_dims, l_values = point_hash.build_lattice(points, float(lattice), lattice_reach, max_cells)
            far = (float(lattice), tuple(float(v) for v in l_origin), tuple(int(d) for d in l_dims),
                   int(sum(p.size for p in parts)))
            parts.append(l_values)
        field = np.concatenate(parts)
        field.setflags(write=False)
        return VoxelGrid(self.origin, self.voxel_size, self.occupied, field, self.box, self.bound, self.notes,
                         self.layout, layout, far)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_points(cls, points, voxel_size: float, radius: float = 0.0, padding: float | None = None,
                    max_cells: int = MAX_CELLS, max_points: int = MAX_POINTS, field: str = "points",
                    fill_interior: bool = False, extra_bound: float = 0.0, multires: bool = False,
                    exact: bool = False, point_cell: float | None = None, lattice: float | None = None,
                    lattice_reach: float = 0.1) -> "VoxelGrid":
        """(N, 3) points (m, grid frame) -> a grid of ``voxel_size`` (m). Non-finite rows (depth
        holes) are skipped. ``radius`` (m): the points' stated radius (sensor noise), part of the
        bound. ``padding`` (m, default max(0.1, 4·voxel_size)): how far beyond the points the field
        is kept (beyond it the box bound takes over). ``fill_interior``: fill the cavities the
        occupied voxels enclose (a closed mesh's inside). ``exact``: keep the points themselves
        too (:mod:`.point_hash`): each is then a ball of radius ``radius`` and distances are exact
        within ``point_cell`` (m, default :func:`default_point_cell`) minus the radius of them;
        ``lattice`` (m, with ``exact``): also the exact far-field lattice of that spacing out to
        ``lattice_reach`` m (:func:`.point_hash.lattice_bound`: error ≈ 3·lattice²/(8·d) at
        distance d; built with a KD-tree, or stamped exactly when the points are cube centres as a
        sensor's are: :func:`.point_hash.build_lattice`; it costs insertion time).
        ValueError naming ``field`` for an empty or oversized cloud, a bad voxel size or a grid
        above ``max_cells``."""
        if not (math.isfinite(voxel_size) and voxel_size > 0):
            raise ValueError(f"voxel_size must be a positive number of metres, got {voxel_size}")
        if not (math.isfinite(radius) and radius >= 0):
            raise ValueError(f"{field}: radius must be finite and ≥ 0 m, got {radius}")
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"{field} must be an (N, 3) array of points, got shape {points.shape}")
        if points.shape[0] > max_points:
            raise ValueError(f"{field} has {points.shape[0]} points, above the limit of {max_points}")
        finite = np.isfinite(points[:, 0]) & np.isfinite(points[:, 1]) & np.isfinite(points[:, 2])
        notes = []
        if not finite.all():
            notes.append(f"{field}: {int((~finite).sum())} non-finite points skipped")
            points = points[finite]
        if not points.shape[0]:
            raise ValueError(f"{field} has no finite point")
        s = float(voxel_size)
        if multires:
            if fill_interior:
                raise ValueError(f"{field}: a multi-resolution grid has no inside (fill_interior)")
            index = tuple(np.floor(points[:, axis] / s).astype(np.int64) for axis in range(3))
            # with the exact points and a lattice, level 0 would only repeat them (module docstring)
            grid = cls._multires(index, s, radius + extra_bound, max_cells, field, tuple(notes),
                                 level0=not (exact and lattice is not None))
            return grid._exact(points, exact, point_cell, extra_bound, fill_interior, field, max_cells, lattice,
                               lattice_reach)
        pad = max(1, math.ceil((max(0.1, 4 * s) if padding is None else padding) / s))
        index = np.floor(points / s).astype(np.int64)
        low, high = index.min(0), index.max(0)
        start = low - pad
        shape = high - low + 1 + 2 * pad
        cells = int(np.prod(shape.astype(np.float64)))
        if cells > max_cells:
            extent = (high - low + 1) * s
            raise ValueError(f"{field} spans {np.round(extent, 3).tolist()} m: {cells} voxels of {s:g} m, above "
                             f"the limit of {max_cells} (raise voxel_size or narrow the range)")
        occupied = np.zeros(tuple(shape), dtype=bool)
        local = index - start
        occupied[local[:, 0], local[:, 1], local[:, 2]] = True
        if fill_interior:
            occupied = _filled(occupied)
        grid = cls._from_occupancy(occupied, (start + 0.5) * s, s, radius + extra_bound, fill_interior, tuple(notes))
        return grid._exact(points, exact, point_cell, extra_bound, fill_interior, field, max_cells, lattice,
                           lattice_reach)

    def _exact(self, points, exact: bool, cell, extra_bound: float, fill_interior: bool, field: str,
               max_cells: int, lattice=None, lattice_reach: float = 0.1) -> "VoxelGrid":
        if not exact:
            if lattice is not None:
                raise ValueError(f"{field}: a lattice needs the exact points (exact=True)")
            return self
        if fill_interior or extra_bound:
            raise ValueError(f"{field}: exact points are balls around the points (no inside, no extra bound)")
        cell = default_point_cell(self.voxel_size) if cell is None else float(cell)
        if not (math.isfinite(cell) and cell >= self.voxel_size):
            raise ValueError(f"{field}: point_cell must be at least the voxel size ({self.voxel_size:g} m), got {cell}")
        return self.with_points(points, cell, max_cells, lattice, lattice_reach)

    @classmethod
    def _multires(cls, index: tuple[np.ndarray, ...], s: float, bound: float, max_cells: int, field: str,
                  notes: tuple[str, ...], level0: bool = True) -> "VoxelGrid":
        """Fine voxel indices, one int64 array per axis (floor(point / s)) -> the multi-resolution
        grid. (Columns, not an (N, 3) array: numpy reduces a short last axis slowly.) ``level0``
        False: no level-0 bricks (every query falls to levels 1 and 2 there)."""
        cap = LEVEL_CAPS[0]
        low, high = index_span(index)
        start = (low - cap - 1) // BRICK * BRICK  # level 0: nodes at voxel centres, cap + 1 beyond the points
        cells0 = -(-(high + cap + 2 - start) // BRICK) * BRICK  # a multiple of BRICK per axis
        dims0 = cells0 + 1  # nodes (one more: the last bricks' far faces)
        count = int(np.prod(dims0.astype(np.float64)))
        if count > max_cells:
            raise ValueError(f"{field} spans {np.round((high - low + 1) * s, 3).tolist()} m: {count} voxels of {s:g} m, "
                             f"above the limit of {max_cells} (raise voxel_size or narrow the range)")
        occupied = np.zeros(count, dtype=bool)
        occupied[flat_index(index, start, dims0)] = True
        keys = np.flatnonzero(occupied)  # the occupied voxels, once each
        nodes = tuple(n + o for n, o in zip(np.unravel_index(keys, tuple(dims0)), start))  # their fine indices
        h0 = 0.5 * math.sqrt(3.0) * s
        parts, coarse = [], []
        for level in range(1, len(LEVEL_CAPS)):  # dense levels of 2^level·s, each in its own box
            c, step = LEVEL_CAPS[level], s * (1 << level)
            at = tuple(n >> level for n in nodes)
            first, last = index_span(at)
            first = first - c - 1
            dims = last - first + c + 2
            mark = np.zeros(int(np.prod(dims)), dtype=bool)
            mark[flat_index(at, first, dims)] = True
            table = _capped_table(c, step, 0.5 * math.sqrt(3.0) * step + bound)
            parts.append(table[_capped_squared(np.flatnonzero(mark), dims, c, mark)])
            coarse.append(((first + 0.5) * step, tuple(int(d) for d in dims)))
        # level 0 in bricks of BRICK³ cells: the blocks that an occupied node's ball of radius cap reaches
        blocks = cells0 // BRICK
        active = np.zeros(int(np.prod(blocks)), dtype=bool)
        if level0:
            squared = _capped_squared(keys, dims0, cap, occupied)
            local = tuple(n - o for n, o in zip(nodes, start))
            reach = (-cap, 0, cap)  # a ball's cube spans ≤ 3 blocks per axis (cap ≤ BRICK): these hit each
            hit = [[np.clip((n + o) // BRICK, 0, m - 1) for o in reach] for n, m in zip(local, blocks)]  # per axis
            rows = [(x * blocks[1] + y) * blocks[2] for x in hit[0] for y in hit[1]]  # the 27 corners, summed
            for row in rows:  # in stages: 9 + 27 additions instead of 27 corners' 13 operations each
                for z in hit[2]:
                    active[row + z] = True
        ids = np.flatnonzero(active)
        table = np.full(active.size, -1.0, dtype=np.float32)
        table[ids] = np.arange(ids.size, dtype=np.float32)
        bx, by, bz = np.unravel_index(ids, tuple(blocks))
        base = ((bx * BRICK) * dims0[1] + by * BRICK) * dims0[2] + bz * BRICK
        r = np.arange(BRICK + 1)
        within = ((r[:, None, None] * dims0[1] + r[None, :, None]) * dims0[2] + r[None, None, :]).reshape(-1)
        bricks = (_capped_table(cap, s, h0 + bound)[squared[(base[:, None] + within[None, :]).reshape(-1)]] if level0
                  else np.zeros(0, dtype=np.float32))
        parts = [table, bricks] + parts
        offsets = np.cumsum([0] + [p.size for p in parts])
        layout = (tuple(int(b) for b in blocks), int(offsets[1]),
                  tuple((tuple(float(v) for v in o), d, int(f)) for (o, d), f in zip(coarse, offsets[2:])))
        origin = (start + 0.5) * s
        low, high = index_span(nodes)
        box = np.stack([low * s, (high + 1) * s])  # voxel i spans [i·s, (i + 1)·s]
        occupied = occupied.reshape(tuple(dims0))
        field_values = np.concatenate(parts)
        for array in (occupied, field_values, box, origin):
            array.setflags(write=False)
        return cls(origin, s, occupied, field_values, box, float(bound), notes, layout)

    @classmethod
    def _from_occupancy(cls, occupied: np.ndarray, origin: np.ndarray, s: float, bound: float, solid: bool,
                        notes: tuple[str, ...]) -> "VoxelGrid":
        from scipy.ndimage import distance_transform_edt

        h = 0.5 * math.sqrt(3.0) * s
        outside = distance_transform_edt(~occupied).astype(np.float32) * np.float32(s)
        field = outside - np.float32(h + bound)
        if solid:
            inside = distance_transform_edt(occupied).astype(np.float32) * np.float32(s)
            field = np.where(occupied, -inside - np.float32(bound), field)
        nodes = np.argwhere(occupied)
        box = np.stack([origin + nodes.min(0) * s - 0.5 * s, origin + nodes.max(0) * s + 0.5 * s])
        for array in (occupied, field, box):
            array.setflags(write=False)
        origin = np.asarray(origin, dtype=np.float64)
        origin.setflags(write=False)
        return cls(origin, s, occupied, np.ascontiguousarray(field, dtype=np.float32), box, float(bound), notes)


def default_point_cell(voxel_size: float) -> float:
    """The exact point table's cell when none is given: 2·voxel_size, so that distances are
    exact up to two voxels (minus the point radius) from the points."""
    return 2.0 * voxel_size


def _filled(occupied: np.ndarray) -> np.ndarray:
    """Occupied voxels plus the cavities they enclose. The shell is first thickened by one voxel
    (26-neighbours) so that a surface sampled on a diagonal cannot leak, filled, then thinned back."""
    from scipy.ndimage import binary_dilation, binary_erosion, binary_fill_holes

    cube = np.ones((3, 3, 3), dtype=bool)
    thick = binary_dilation(occupied, cube)
    solid = binary_erosion(binary_fill_holes(thick), cube, border_value=0)
    return solid | occupied


def index_span(columns) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis minimum and maximum (3,) of integer index columns (three (N,) arrays: numpy
    reduces a short last axis slowly). Shared by the grids here, the point table
    (:func:`.point_hash.build`) and the node's sensed voxels."""
    return np.array([c.min() for c in columns]), np.array([c.max() for c in columns])


def flat_index(columns, first, dims) -> np.ndarray:
    """Flat (C-order) indices into an array of shape ``dims`` of index columns whose (0, 0, 0) is
    ``first``."""
    return ((columns[0] - first[0]) * dims[1] + (columns[1] - first[1])) * dims[2] + (columns[2] - first[2])


def _capped_squared(keys: np.ndarray, dims, cap: int, occupied: np.ndarray | None = None) -> np.ndarray:
    """Flat (prod(dims),) uint8: the squared Euclidean distance (nodes²) from each node to the
    nearest of the occupied nodes ``keys`` (flat indices into ``dims``, each at least ``cap``
    nodes from the border) where it is at most cap², else 255. Exact: one ``np.minimum.at``
    over the (node, squared distance) pairs of each occupied node's ball of radius ``cap`` that
    can be a minimum. A node whose face neighbour on an axis is occupied does not stamp the
    nodes beyond that neighbour on that axis (the neighbour is strictly nearer to them), so a
    node's nearest occupied node always stamps it; on a surface, whose nodes have their
    in-plane neighbours, that leaves a column of 2·cap + 1 of a ball's ~4·cap³ nodes
    (:func:`_ball_steps`)."""
    size = int(np.prod(dims))
    squared = np.full(size, 255, dtype=np.uint8)
    if not keys.size:
        return squared
    if occupied is None:  # flat (prod(dims),) bool: the keys marked (the caller's, where it has it)
        occupied = np.zeros(size, dtype=bool)
        occupied[keys] = True
    strides = (int(dims[1]) * int(dims[2]), int(dims[2]), 1)
    kinds = np.zeros(keys.size, dtype=np.int64)
    for a, stride in enumerate(strides):
        kinds |= occupied[keys - stride].astype(np.int64) << (2 * a)
        kinds |= occupied[keys + stride].astype(np.int64) << (2 * a + 1)
    starts, offsets, d2 = _ball_steps(cap)
    steps = (offsets[:, 0] * strides[0] + offsets[:, 1] * strides[1] + offsets[:, 2]).astype(np.int64)
    first, count = starts[kinds], starts[kinds + 1] - starts[kinds]
    begin = np.cumsum(count) - count  # node i stamps the steps first[i] .. first[i] + count[i] − 1
    pick = np.arange(int(count.sum())) + np.repeat(first - begin, count)
    np.minimum.at(squared, np.repeat(keys, count) + steps[pick], d2[pick])
    return squared


@functools.lru_cache(maxsize=8)
def _ball_steps(cap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The steps an occupied node stamps (:func:`_capped_squared`) by which of its face
    neighbours are occupied (bits 0-5: −x, +x, −y, +y, −z, +z): those of the ball of radius
    ``cap`` not beyond an occupied neighbour. -> starts (65,) (kind b's steps are starts[b] ..
    starts[b+1] − 1), steps (T, 3) int64, squared lengths (T,) uint8."""
    r = np.arange(-cap, cap + 1)
    offsets = np.array(np.meshgrid(r, r, r, indexing="ij")).reshape(3, -1).T
    d2 = (offsets * offsets).sum(1)
    offsets, d2 = offsets[d2 <= cap * cap], d2[d2 <= cap * cap]
    b = np.arange(64)[:, None]
    keep = np.ones((64, offsets.shape[0]), dtype=bool)
    for a in range(3):  # beyond the −a neighbour: step ≤ −1 on a; beyond the +a one: step ≥ 1
        keep &= ~((((b >> (2 * a)) & 1) == 1) & (offsets[None, :, a] <= -1))
        keep &= ~((((b >> (2 * a + 1)) & 1) == 1) & (offsets[None, :, a] >= 1))
    kind, step = np.nonzero(keep)
    starts = np.zeros(65, dtype=np.int64)
    np.cumsum(np.bincount(kind, minlength=64), out=starts[1:])
    return starts, offsets[step], d2[step].astype(np.uint8)


def _capped_table(cap: int, step: float, subtract: float) -> np.ndarray:
    """(256,) float32: squared node distance (as :func:`_capped_squared` writes it) -> the node
    lower bound min(D, cap)·step − subtract (m)."""
    table = np.full(256, cap * step - subtract, dtype=np.float32)
    table[: cap * cap + 1] = np.sqrt(np.arange(cap * cap + 1)) * step - subtract
    return table


# ---------------------------------------------------------------------- meshes
def check_mesh(vertices, triangles, id: str, max_triangles: int = MAX_TRIANGLES) -> tuple[np.ndarray, np.ndarray]:
    """-> (V, 3) float64 vertices (m) and (T, 3) int64 triangles, or ValueError naming the mesh
    ``id`` and the field: non-finite vertices, indices out of range, no triangle, more than
    ``max_triangles``, degenerate (zero-area) triangles."""
    vertices = np.asarray(vertices, dtype=np.float64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or not vertices.shape[0]:
        raise ValueError(f"mesh '{id}': vertices must be a non-empty (V, 3) array, got shape {vertices.shape}")
    bad = np.flatnonzero(~np.isfinite(vertices).all(axis=1))
    if bad.size:
        raise ValueError(f"mesh '{id}': vertices[{int(bad[0])}] is not finite")
    raw = np.asarray(triangles)
    if raw.ndim != 2 or raw.shape[1] != 3 or not raw.shape[0]:
        raise ValueError(f"mesh '{id}': triangles must be a non-empty (T, 3) array of vertex indices, got shape {raw.shape}")
    if raw.shape[0] > max_triangles:
        raise ValueError(f"mesh '{id}': triangles has {raw.shape[0]} triangles, above the limit of {max_triangles}")
    if not np.issubdtype(raw.dtype, np.integer) and not np.array_equal(raw, np.round(raw)):
        raise ValueError(f"mesh '{id}': triangles must hold integer vertex indices")
    triangles = raw.astype(np.int64)
    bad = np.flatnonzero(((triangles < 0) | (triangles >= vertices.shape[0])).any(axis=1))
    if bad.size:
        raise ValueError(f"mesh '{id}': triangles[{int(bad[0])}] = {triangles[bad[0]].tolist()} indexes beyond the "
                         f"{vertices.shape[0]} vertices")
    a, b, c = (vertices[triangles[:, k]] for k in range(3))
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    bad = np.flatnonzero(~(area > DEGENERATE_AREA))
    if bad.size:
        raise ValueError(f"mesh '{id}': {bad.size} degenerate triangles (area ≤ {DEGENERATE_AREA:g} m²), the first is "
                         f"triangles[{int(bad[0])}] = {triangles[bad[0]].tolist()}")
    return vertices, triangles


@dataclass(frozen=True)
class _Lattice:
    """The barycentric sample lattice of triangles at a spacing: corners a, b, c (T, 3), the
    squared edge lengths opposite each corner (3, T) and the subdivisions n = ⌈longest edge /
    spacing⌉ ≥ 1 (T,). Built once for both :func:`surface_samples` and
    :func:`lattice_covering_radius` (:func:`covered_surface_samples`)."""

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    squared: np.ndarray
    n: np.ndarray

    @staticmethod
    def of(vertices: np.ndarray, triangles: np.ndarray, spacing: float) -> "_Lattice":
        a, b, c = (vertices[triangles[:, k]] for k in range(3))
        squared = np.stack([np.einsum("ij,ij->i", e, e) for e in (c - b, a - c, b - a)])
        n = np.maximum(1, np.ceil(np.sqrt(squared.max(0)) / spacing)).astype(np.int64)
        return _Lattice(a, b, c, squared, n)

    def samples(self, spacing: float, max_points: int) -> np.ndarray:
        """The points (P, 3) (:func:`surface_samples`)."""
        a, b, c, n = self.a, self.b, self.c, self.n
        total = int(((n + 1) * (n + 2) // 2).sum())
        if total > max_points:
            raise ValueError(f"the mesh needs {total} surface samples at {spacing:g} m, above the limit of "
                             f"{max_points} (raise voxel_size)")
        out = []
        for k in np.unique(n):  # one lattice per subdivision count (few distinct values)
            rows = np.flatnonzero(n == k)
            i, j = np.meshgrid(np.arange(k + 1), np.arange(k + 1), indexing="ij")
            keep = (i + j) <= k
            u, v = i[keep] / k, j[keep] / k  # (m,)
            A, B, C = a[rows], b[rows], c[rows]
            out.append((A[:, None] + u[None, :, None] * (B - A)[:, None] + v[None, :, None] * (C - A)[:, None])
                       .reshape(-1, 3))
        return np.concatenate(out)

    def covering_radius(self) -> float:
        """:func:`lattice_covering_radius` (m)."""
        if not len(self.n):
            return 0.0
        sa, sb, sc = self.squared  # |BC|², |CA|², |AB|²
        # each corner's dot product of its two edges, from the squared lengths (law of cosines)
        at_a, at_b, at_c = 0.5 * (sb + sc - sa), 0.5 * (sc + sa - sb), 0.5 * (sa + sb - sc)
        four_area2 = sb * sc - at_a * at_a  # |AB × AC|² (Lagrange's identity)
        longest = np.sqrt(self.squared.max(0))
        radius = longest / math.sqrt(3.0)  # a bound for any triangle; degenerate ones keep it
        with np.errstate(divide="ignore", invalid="ignore"):
            acute = (np.minimum(np.minimum(at_a, at_b), at_c) >= 0) & (four_area2 > 1e-24 * longest ** 4)
            radius = np.where(acute, np.sqrt(sa * sb * sc / (4.0 * four_area2)), radius)  # circumradius abc/(4·area)
            # obtuse at a corner: where its neighbours' Voronoi cells cross the opposite edge
            for obtuse, (x, y, far), (p, q) in ((at_c < 0, (sb, sa, sc), (at_a, at_b)),
                                                (at_a < 0, (sc, sb, sa), (at_b, at_c)),
                                                (at_b < 0, (sa, sc, sb), (at_c, at_a))):
                crossing = np.sqrt(far) * np.maximum(x / (2.0 * p), y / (2.0 * q))
                radius = np.where(obtuse & (p > 0) & (q > 0), crossing, radius)
        return float((np.minimum(radius, longest / math.sqrt(3.0)) / self.n).max())


def surface_samples(vertices: np.ndarray, triangles: np.ndarray, spacing: float, max_points: int = MAX_POINTS):
    """Points on every triangle: a barycentric lattice of n subdivisions, n = ⌈longest edge /
    spacing⌉, so that every point of the surface is within spacing/√3 of a sample (each small
    triangle has edges ≤ spacing: its points are within longest edge/√3 of a corner), and within
    :func:`lattice_covering_radius` of one, which is often less. -> (P, 3)."""
    return _Lattice.of(vertices, triangles, spacing).samples(spacing, max_points)


def covered_surface_samples(vertices: np.ndarray, triangles: np.ndarray, spacing: float,
                            max_points: int = MAX_POINTS) -> tuple[np.ndarray, float]:
    """:func:`surface_samples` and their :func:`lattice_covering_radius` (m), from one lattice."""
    lattice = _Lattice.of(vertices, triangles, spacing)
    return lattice.samples(spacing, max_points), lattice.covering_radius()


def lattice_covering_radius(vertices: np.ndarray, triangles: np.ndarray, spacing: float) -> float:
    """The largest distance (m) from a point of the triangles to the nearest of their
    :func:`surface_samples` at ``spacing``: at most spacing/√3, less for all but equilateral
    small triangles (a box face's right triangles: at most spacing/2). A triangle's lattice cuts
    it into n² copies of itself scaled by 1/n, each sampled at its corners, and a triangle's
    points lie within its covering radius of a corner: its circumradius when no angle is obtuse;
    with an obtuse angle at C, the larger of the distances from A and from B along AB to where
    the perpendicular bisectors of AC and BC cross it, |AC|²·|AB| / (2 AB·AC) and
    |BC|²·|AB| / (2 BA·BC) (the Voronoi cells of the corners meet AB there; the circumcentre
    lies outside). Degenerate triangles (repeated corners) keep longest edge/√3."""
    return _Lattice.of(vertices, triangles, spacing).covering_radius()


def mesh_grid(vertices, triangles, voxel_size: float, id: str = "mesh", radius: float = 0.0,
              max_triangles: int = MAX_TRIANGLES, max_cells: int = MAX_CELLS) -> VoxelGrid:
    """A mesh (vertices (V, 3) m, triangles (T, 3), in the obstacle frame) -> its VoxelGrid: the
    surface sampled at voxel_size/2 (bound: the samples' :func:`lattice_covering_radius`, at most
    voxel_size/(2√3), + radius); a closed (watertight)
    mesh's inside is filled, an open mesh stays a surface and gets a note (and a warning)."""
    import trimesh

    vertices, triangles = check_mesh(vertices, triangles, id, max_triangles)
    spacing = 0.5 * voxel_size
    samples, covering = covered_surface_samples(vertices, triangles, spacing)
    # watertight once coincident vertices are merged (an STL repeats every vertex per triangle)
    closed = trimesh.Trimesh(vertices, triangles, process=True).is_watertight
    grid = VoxelGrid.from_points(samples, voxel_size, radius, max_cells=max_cells, field=f"mesh '{id}'",
                                 fill_interior=closed, extra_bound=covering)
    if not closed:
        note = (f"mesh '{id}' is open (not watertight): only its surface is an obstacle, a robot part entirely "
                "inside it is not seen")
        warnings.warn(note, stacklevel=2)
        grid = VoxelGrid(grid.origin, grid.voxel_size, grid.occupied, grid.field, grid.box, grid.bound,
                         grid.notes + (note,))
    return grid


def load_mesh_file(path, id: str = "mesh", scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """An STL / OBJ / DAE (anything trimesh reads) -> (vertices (V, 3) m, triangles (T, 3)); a
    scene file's geometries are concatenated with their transforms applied. ValueError naming
    the mesh and the file."""
    import trimesh

    try:
        loaded = trimesh.load(str(path), force="mesh", process=False)
    except Exception as error:  # trimesh raises many kinds
        raise ValueError(f"mesh '{id}': cannot read '{path}': {error}") from None
    if not isinstance(loaded, trimesh.Trimesh) or not len(loaded.faces):
        raise ValueError(f"mesh '{id}': '{path}' holds no triangles")
    return np.asarray(loaded.vertices, dtype=np.float64) * scale, np.asarray(loaded.faces, dtype=np.int64)


# ---------------------------------------------------------------------- packing and queries
def grid_parameters(grid: VoxelGrid, offset: int) -> np.ndarray:
    """One packed parameter row (PARAMETER_COLUMNS,): origin (3), voxel size, shape (3), the
    offset of its field in the flat buffer as (offset // 4096, offset % 4096), box (6), bound;
    for a multi-resolution grid also 1 (column 16), the block table's shape (17-19), per coarser
    level its origin, shape and offset (20-27, 28-35), and the bricks' offset (36-37); zeros
    from column 16 on for a dense grid."""
    row = np.zeros(PARAMETER_COLUMNS)
    row[0:3] = grid.origin
    row[3] = grid.voxel_size
    row[4:7] = grid.shape
    row[7:9] = divmod(offset, _OFFSET_BASE)
    row[9:15] = grid.box.reshape(-1)
    row[15] = grid.bound
    if grid.layout is not None:
        blocks, brick_offset, levels = grid.layout
        row[16] = 1.0
        row[17:20] = blocks
        for column, (level_origin, shape, start) in zip((20, 28), levels):
            row[column:column + 3] = level_origin
            row[column + 3:column + 6] = shape
            row[column + 6:column + 8] = divmod(offset + start, _OFFSET_BASE)
        row[36:38] = divmod(offset + brick_offset, _OFFSET_BASE)
    if grid.points is not None:  # the exact point table (.point_hash)
        cell, origin, dims, starts, ordered, _, radius = grid.points
        _uniform_grid_columns(row, POINT_COLUMN, cell, origin, dims, offset + starts)
        row[POINT_COLUMN + 10:POINT_COLUMN + 12] = divmod(offset + ordered, _OFFSET_BASE)
        # plus the float32 rounding of the stored points (≤ 2⁻²⁴·|coordinate| per axis), so that
        # the exact distance stays a lower bound in a float64 scene too
        row[POINT_COLUMN + 12] = radius + 2.0 ** -22 * float(np.abs(grid.box).max())
    if grid.lattice is not None:
        spacing, origin, dims, start = grid.lattice
        _uniform_grid_columns(row, LATTICE_COLUMN, spacing, origin, dims, offset + start)
        row[LATTICE_COLUMN + 10] = row[POINT_COLUMN + 12]
    return row


def _uniform_grid_columns(row: np.ndarray, column: int, spacing: float, origin, dims, offset: int) -> None:
    """Write a uniform grid's columns from ``column``: 1 (it is there), its spacing, origin (3),
    dims (3) and the offset of its table in the flat buffer (two columns, see :func:`_offset`)."""
    row[column] = 1.0
    row[column + 1] = spacing
    row[column + 2:column + 5] = origin
    row[column + 5:column + 8] = dims
    row[column + 8:column + 10] = divmod(offset, _OFFSET_BASE)


class VoxelKind(str):
    """The obstacle kind name ``'voxels'`` carrying the packed scene's flat field buffer
    (``values``: every grid's F, concatenated, on the scene's device and dtype): whatever
    dispatches on a packed kind (``local_signed_distance(kind, local, parameters)``) then reaches
    the fields too, with each obstacle's parameter row saying where its own field lies.
    ``features``: which parts any of its grids has ("exact", "multires", "lattice", "points"),
    read from the parameter rows once at packing, so that a query decides what to compute
    without reading the device (rows without a part are masked by their own columns)."""

    values: Tensor
    features: frozenset

    def __new__(cls, name: str, values: Tensor, parameters=None):
        kind = super().__new__(cls, name)
        kind.values = values
        kind.features = None if parameters is None else grid_features(parameters)
        kind._narrowed = {}
        return kind

    def narrowed(self, features: frozenset) -> "VoxelKind":
        """The same grids queried for ``features`` only (a subset of :attr:`features`: e.g.
        without the exact points for a hierarchy's nodes, or the lattice instead of the field,
        :func:`lattice_features`); made once per set, this kind itself for its own set."""
        if features == self.features:
            return self
        kind = self._narrowed.get(features)
        if kind is None:
            kind = self._narrowed[features] = VoxelKind(self, self.values)
            kind.features = features
        return kind


def grid_features(parameters) -> frozenset:
    """The parts that parameter rows (n, PARAMETER_COLUMNS) (numpy or tensor) have: "exact" /
    "multires" (each row one of the two), "lattice", "points"."""
    rows = torch.as_tensor(parameters)
    multires = rows[:, 16] > 0
    lattice = rows[:, LATTICE_COLUMN] > 0
    parts = {"exact": bool((~multires).any()), "multires": bool(multires.any()),
             "lattice": bool(lattice.any()), "lattice_everywhere": bool(lattice.all()),
             "points": bool((rows[:, POINT_COLUMN] > 0).any())}
    return frozenset(name for name, present in parts.items() if present)


def lattice_features(features: frozenset) -> frozenset | None:
    """The features of a query that reads each grid's exact far-field lattice instead of its
    voxel field (and the exact points where ``features`` has them), or None unless every grid has
    a lattice. Within the lattice's reach (0.1 m) its bound is at least as close as the field's
    (exact at its nodes); beyond, it is the reach and then the box: enough for a hierarchy's
    nodes below its roots, which are opened near the geometry anyway. A tight verdict on few
    configurations in a point world asks half the operations (the same verdicts)."""
    if "lattice_everywhere" not in features:
        return None
    return features - {"exact", "multires"}


def _corners(values: Tensor, flat: Tensor, sx: Tensor, sy: Tensor, t, with_normal: bool, guard: bool = False,
             transform=None):
    """Trilinear interpolation of ``values`` at the cells whose (0, 0, 0) corner is at ``flat``
    (x stride ``sx``, y stride ``sy``, z stride 1), cell coordinates t = (tx, ty, tz) in [0, 1]:
    -> the interpolated value, the spread term √(Σ tₐ(1 − tₐ)) (module docstring), and the
    unnormalised gradient (gx, gy, gz) of the interpolation or None. ``guard``: clamp the indices
    into the buffer (rows of the other grid kind, whose results are discarded, index anywhere);
    ``transform``: applied to each corner's value before interpolating (e.g. a square)."""
    tx, ty, tz = t
    last = values.shape[0] - 1

    def at(step):
        v = gather(values, (flat + step).clamp(0, last) if guard else flat + step)
        return v if transform is None else transform(v)

    f000, f001, f010, f011 = at(0), at(1), at(sy), at(sy + 1)
    f100, f101, f110, f111 = at(sx), at(sx + 1), at(sx + sy), at(sx + sy + 1)
    # along z, then y, then x
    a00, a01 = f000 + (f001 - f000) * tz, f010 + (f011 - f010) * tz
    a10, a11 = f100 + (f101 - f100) * tz, f110 + (f111 - f110) * tz
    b0, b1 = a00 + (a01 - a00) * ty, a10 + (a11 - a10) * ty
    value = b0 + (b1 - b0) * tx
    spread = torch.sqrt(tx * (1 - tx) + ty * (1 - ty) + tz * (1 - tz))
    if not with_normal:
        return value, spread, None
    gx = b1 - b0
    gy = (a01 - a00) + ((a11 - a10) - (a01 - a00)) * tx
    c00, c01 = f001 - f000, f011 - f010
    c10, c11 = f101 - f100, f111 - f110
    d0, d1 = c00 + (c01 - c00) * ty, c10 + (c11 - c10) * ty
    return value, spread, (gx, gy, d0 + (d1 - d0) * tx)


def _cells(coordinates, origin: Tensor, step: Tensor, dims: Tensor):
    """Cell of each local point in a grid of nodes (origin (n, 3), spacing step (n, 1), dims
    (n, 3) nodes): -> integer cell corner per axis, cell coordinates t, and whether the point
    lies within the nodes' span."""
    cell, frac, inside = [], [], None
    for axis, c in enumerate(coordinates):
        u = torch.nan_to_num((c - origin[:, axis:axis + 1]) / step, nan=-1.0)
        last = (dims[:, axis:axis + 1] - 1).to(u.dtype)
        within = (u >= 0) & (u <= last)
        inside = within if inside is None else inside & within
        base = torch.minimum(u.clamp(0, None).floor(), (last - 1).clamp_min(0))
        cell.append(base.to(torch.int64))
        frac.append((u - base).clamp(0.0, 1.0))
    return cell, frac, inside


def gather(values: Tensor, index: Tensor) -> Tensor:
    """``values[index]`` for a flat ``values`` and an integer ``index`` of any shape, as one
    ``index_select``: the same values, quicker on CPU than advanced indexing, the more so the
    more indices (BENCHMARKS.md's notes)."""
    return values.index_select(0, index.reshape(-1)).view(index.shape)


def _offset(parameters: Tensor, column: int) -> Tensor:
    return (parameters[:, column:column + 1] * _OFFSET_BASE + parameters[:, column + 1:column + 2]).to(torch.int64)


def _dense_level(coordinates, values, origin, step, dims, offset, with_normal, guard=False):
    """Lower bound and gradient from one dense level (nodes ``dims``, field at ``offset``)."""
    (ix, iy, iz), t, inside = _cells(coordinates, origin, step, dims)
    ny, nz = dims[:, 1:2], dims[:, 2:3]
    flat = (ix * ny + iy) * nz + iz + offset
    value, spread, gradient = _corners(values, flat, ny * nz, nz, t, with_normal, guard)
    return value - step * spread, gradient, inside


def _exact_field(coordinates, parameters, values, with_normal, guard=False):
    s = parameters[:, 3:4]
    dims = parameters[:, 4:7].to(torch.int64)
    return _dense_level(coordinates, values, parameters[:, 0:3], s, dims, _offset(parameters, 7), with_normal,
                        guard)


def _multires_field(coordinates, parameters, values, with_normal, guard=False):
    """The max of the levels' lower bounds (module docstring, "Multi-resolution grids")."""
    s = parameters[:, 3:4]
    origin = parameters[:, 0:3]
    # level 0: bricks of BRICK³ cells ((BRICK + 1)³ nodes) looked up through the block table
    blocks = parameters[:, 17:20].to(torch.int64)
    nodes = blocks * BRICK + 1
    (ix, iy, iz), t, inside = _cells(coordinates, origin, s, nodes)
    bx, by, bz = (torch.minimum(i // BRICK, blocks[:, a:a + 1] - 1) for a, i in enumerate((ix, iy, iz)))
    entry = (bx * blocks[:, 1:2] + by) * blocks[:, 2:3] + bz + _offset(parameters, 7)
    brick = gather(values, entry.clamp(0, values.shape[0] - 1) if guard else entry)
    found = inside & (brick >= 0)
    side = BRICK + 1
    local = ((ix - bx * BRICK) * side + (iy - by * BRICK)) * side + (iz - bz * BRICK)
    flat = _offset(parameters, 36) + brick.clamp_min(0).to(torch.int64) * side ** 3 + local
    value, spread, g = _corners(values, flat, side * side, side, t, with_normal, guard)
    best = torch.where(found, value - s * spread, -torch.inf)
    gradient = g
    any_inside = found
    for level, column in ((1, 20), (2, 28)):
        step = s * (1 << level)
        bound, g, inside = _dense_level(coordinates, values, parameters[:, column:column + 3], step,
                                        parameters[:, column + 3:column + 6].to(torch.int64),
                                        _offset(parameters, column + 6), with_normal, guard)
        better = inside & (bound > best)
        best = torch.where(better, bound, best)
        if with_normal:
            gradient = tuple(torch.where(better, b, a) for a, b in zip(gradient, g))
        any_inside = any_inside | inside
    return best, gradient, any_inside


def voxel_distance(x: Tensor, y: Tensor, z: Tensor, parameters: Tensor, values: Tensor, with_normal: bool = True,
                   features: frozenset | None = None):
    """Lower bounds of the signed distance (m) of local points to each grid (module docstring).
    x, y, z (n, N) in each grid's frame; parameters (n, PARAMETER_COLUMNS); values: the flat
    buffer; features: what the rows may have (:func:`grid_features`; a superset is fine; None:
    read from ``parameters``, a device read on a GPU). -> distance (n, N) and the unit normal
    (nx, ny, nz) or None."""
    coordinates = (x, y, z)
    features = grid_features(parameters) if features is None else features
    multires = parameters[:, 16:17] > 0  # (n, 1)
    exact_rows, multires_rows = "exact" in features, "multires" in features
    mixed = exact_rows and multires_rows
    if exact_rows:
        cell_bound, gradient, inside = _exact_field(coordinates, parameters, values, with_normal, mixed)
    if multires_rows:
        m_bound, m_gradient, m_inside = _multires_field(coordinates, parameters, values, with_normal, mixed)
        if exact_rows:
            cell_bound = torch.where(multires, m_bound, cell_bound)
            inside = torch.where(multires, m_inside, inside)
            if with_normal:
                gradient = tuple(torch.where(multires, b, a) for a, b in zip(gradient, m_gradient))
        else:
            cell_bound, gradient, inside = m_bound, m_gradient, m_inside
    box_d, box_n = _box_distance(coordinates, parameters, with_normal)
    within_box = box_d <= 0
    box_d = box_d - parameters[:, 15:16]
    use_cell = inside & ((cell_bound > box_d) | within_box)  # inside the box: the field (depth) alone
    distance = torch.where(use_cell, cell_bound, box_d)
    lattice_rows = "lattice" in features
    if lattice_rows:
        from .point_hash import lattice_bound

        far, far_gradient = lattice_bound(coordinates, parameters, values, LATTICE_COLUMN, with_normal)
        use_far = far > distance
        distance = torch.where(use_far, far, distance)
    if not with_normal:
        if "points" in features:
            from .point_hash import refine

            distance, _ = refine(coordinates, parameters, values, distance, None, False, POINT_COLUMN)
        return distance, None
    gx, gy, gz = gradient
    length = torch.sqrt(gx * gx + gy * gy + gz * gz)
    ok = length > 0
    inverse = 1.0 / length.clamp_min(torch.finfo(length.dtype).tiny)
    field_normal = (torch.where(ok, gx * inverse, 1.0), torch.where(ok, gy * inverse, 0.0),
                    torch.where(ok, gz * inverse, 0.0))
    normal = tuple(torch.where(use_cell, f, b) for f, b in zip(field_normal, box_n))
    if lattice_rows:
        gx, gy, gz = far_gradient
        length = torch.sqrt(gx * gx + gy * gy + gz * gz)
        use_far = use_far & (length > 0)
        inverse = 1.0 / length.clamp_min(torch.finfo(length.dtype).tiny)
        normal = tuple(torch.where(use_far, g * inverse, n) for g, n in zip((gx, gy, gz), normal))
    if "points" in features:
        from .point_hash import refine

        distance, normal = refine(coordinates, parameters, values, distance, normal, True, POINT_COLUMN)
    return distance, normal


# ------------------------------------------------- the bound alone, points by row (a verdict's query)
#: The 8 corners of a cell as (x, y, z) steps, z fastest (the order of the weights below).
_CORNER_STEPS = torch.tensor([(x, y, z) for x in (0, 1) for y in (0, 1) for z in (0, 1)])


def voxel_bound_rows(points: Tensor, parameters: Tensor, values: Tensor, features: frozenset | None = None) -> Tensor:
    """:func:`voxel_distance`'s bound alone (no normal), for points laid out by row: ``points``
    (n, N, 3) in each grid's frame -> (n, N). The same lower bounds (up to float rounding) with
    the three axes and a cell's eight corners each handled in one operation: a verdict on few
    configurations is dominated by the count of operations, and this takes about a third.
    ``features`` without "exact" and "multires" leaves the voxel field out: the bound is then
    the grids' boxes and lattices alone (every row must have a lattice: "lattice_everywhere"),
    still a lower bound, looser only beyond the lattice's reach (see :func:`lattice_features`)."""
    features = grid_features(parameters) if features is None else features
    exact_rows, multires_rows = "exact" in features, "multires" in features
    low, high = parameters[:, 9:12].unsqueeze(1), parameters[:, 12:15].unsqueeze(1)
    box = torch.maximum(low - points, points - high).clamp_min(0.0).norm(dim=-1)  # (n, N), 0 inside the box
    if not (exact_rows or multires_rows):  # the field left out (every row has a lattice): box and lattice
        distance = box - parameters[:, 15:16]
        if "lattice" in features:
            from .point_hash import lattice_bound_rows

            distance = torch.maximum(distance, lattice_bound_rows(points, parameters, values, LATTICE_COLUMN))
        return voxel_points_rows(points, parameters, values, distance) if "points" in features else distance
    mixed = exact_rows and multires_rows
    if exact_rows:
        bound, inside = _dense_level_rows(points, values, parameters[:, 0:3], parameters[:, 3:4],
                                          parameters[:, 4:7].to(torch.int64), _offset(parameters, 7), mixed)
    if multires_rows:
        m_bound, m_inside = _multires_rows(points, parameters, values, mixed)
        if exact_rows:
            multires = parameters[:, 16:17] > 0
            bound, inside = torch.where(multires, m_bound, bound), torch.where(multires, m_inside, inside)
        else:
            bound, inside = m_bound, m_inside
    use_cell = inside & ((bound > box - parameters[:, 15:16]) | (box <= 0))
    distance = torch.where(use_cell, bound, box - parameters[:, 15:16])
    if "lattice" in features:
        from .point_hash import lattice_bound_rows

        distance = torch.maximum(distance, lattice_bound_rows(points, parameters, values, LATTICE_COLUMN))
    if "points" in features:
        distance = voxel_points_rows(points, parameters, values, distance)
    return distance


def voxel_points_rows(points: Tensor, parameters: Tensor, values: Tensor, distance: Tensor) -> Tensor:
    """A field's bound ``distance`` (n, N) at ``points`` (n, N, 3) raised to the exact distance to
    the grid's points where they allow it (:func:`.point_hash.refine`; grids with points)."""
    from .point_hash import refine

    return refine(points.unbind(-1), parameters, values, distance, None, False, POINT_COLUMN)[0]


def _cells_rows(points: Tensor, origin: Tensor, step: Tensor, dims: Tensor):
    """:func:`_cells` for points (n, N, 3): -> cell corners (n, N, 3) int64, cell coordinates t
    (n, N, 3) in [0, 1], and whether each point lies within the nodes' span (n, N)."""
    u = torch.nan_to_num((points - origin.unsqueeze(1)) / step.unsqueeze(1), nan=-1.0)
    last = (dims - 1).to(u.dtype).unsqueeze(1)
    inside = ((u >= 0) & (u <= last)).all(-1)
    base = torch.minimum(u.clamp_min(0.0).floor(), (last - 1).clamp_min(0.0))
    return base.to(torch.int64), (u - base).clamp(0.0, 1.0), inside


def _corners_rows(values: Tensor, flat: Tensor, sx: Tensor, sy: Tensor, t: Tensor, guard: bool, transform=None):
    """:func:`_corners`' value and spread (no gradient) for cells at ``flat`` (n, N), strides sx,
    sy (n, 1), t (n, N, 3): the eight corners in one gather, then one ``lerp`` per axis (z, y,
    x; the corners are z fastest): three operations instead of the eight weights' seven, on
    ever fewer values (the same verdicts, quicker: BENCHMARKS.md's notes)."""
    steps = _CORNER_STEPS.to(flat.device)
    index = flat.unsqueeze(-1) + (sx.unsqueeze(-1) * steps[:, 0] + sy.unsqueeze(-1) * steps[:, 1] + steps[:, 2])
    corner = gather(values, index.clamp(0, values.shape[0] - 1) if guard else index)  # (n, N, 8)
    if transform is not None:
        corner = transform(corner)
    along_z = torch.lerp(corner[..., 0::2], corner[..., 1::2], t[..., 2:3])  # (n, N, 4): (x, y)
    along_y = torch.lerp(along_z[..., 0::2], along_z[..., 1::2], t[..., 1:2])  # (n, N, 2): x
    return torch.lerp(along_y[..., 0], along_y[..., 1], t[..., 0]), torch.sqrt((t * (1 - t)).sum(-1))


def _dense_level_rows(points, values, origin, step, dims, offset, guard=False):
    """:func:`_dense_level`'s bound and span for points (n, N, 3)."""
    base, t, inside = _cells_rows(points, origin, step, dims)
    ny, nz = dims[:, 1:2], dims[:, 2:3]
    flat = (base[..., 0] * ny + base[..., 1]) * nz + base[..., 2] + offset
    value, spread = _corners_rows(values, flat, ny * nz, nz, t, guard)
    return value - step * spread, inside


def _multires_rows(points, parameters, values, guard=False):
    """:func:`_multires_field`'s bound and span for points (n, N, 3)."""
    s, origin = parameters[:, 3:4], parameters[:, 0:3]
    blocks = parameters[:, 17:20].to(torch.int64)
    base, t, inside = _cells_rows(points, origin, s, blocks * BRICK + 1)
    brick_of = torch.minimum(torch.div(base, BRICK, rounding_mode="floor"), blocks.unsqueeze(1) - 1)  # (n, N, 3)
    entry = ((brick_of[..., 0] * blocks[:, 1:2] + brick_of[..., 1]) * blocks[:, 2:3] + brick_of[..., 2]
             + _offset(parameters, 7))
    brick = gather(values, entry.clamp(0, values.shape[0] - 1) if guard else entry)
    found = inside & (brick >= 0)
    side = BRICK + 1
    within = base - brick_of * BRICK
    local = (within[..., 0] * side + within[..., 1]) * side + within[..., 2]
    flat = _offset(parameters, 36) + brick.clamp_min(0).to(torch.int64) * side ** 3 + local
    side_t = torch.full_like(blocks[:, :1], side)
    value, spread = _corners_rows(values, flat, side_t * side, side_t, t, guard)
    best, any_inside = torch.where(found, value - s * spread, -torch.inf), found
    for level, column in ((1, 20), (2, 28)):
        bound, inside = _dense_level_rows(points, values, parameters[:, column:column + 3], s * (1 << level),
                                          parameters[:, column + 3:column + 6].to(torch.int64),
                                          _offset(parameters, column + 6), guard)
        best = torch.where(inside & (bound > best), bound, best)
        any_inside = any_inside | inside
    return best, any_inside


def _box_distance(coordinates, parameters: Tensor, with_normal: bool):
    """Distance (≥ 0, 0 inside) from local points to each grid's geometry box, and its unit
    normal ((1, 0, 0) inside)."""
    over = []
    for axis, c in enumerate(coordinates):
        low, high = parameters[:, 9 + axis:10 + axis], parameters[:, 12 + axis:13 + axis]
        over.append(torch.maximum(low - c, c - high).clamp_min(0.0) * torch.where(c < low, -1.0, 1.0).to(c.dtype))
    squared = over[0] * over[0] + over[1] * over[1] + over[2] * over[2]
    length = torch.sqrt(squared)
    if not with_normal:
        return length, None
    ok = length > 0
    inverse = 1.0 / length.clamp_min(torch.finfo(length.dtype).tiny)
    return length, (torch.where(ok, over[0] * inverse, 1.0), torch.where(ok, over[1] * inverse, 0.0),
                    torch.where(ok, over[2] * inverse, 0.0))
