"""Exact distances to a point cloud near its points: a uniform grid of cells ("hash") over the points.

A cloud given as points (:meth:`.obstacles.Obstacle.points`) IS the world: the union of balls of
radius r (the point radius) centred at the points, as VAMP and MoveIt's octomap treat them. Its
:class:`~.occupancy.VoxelGrid` keeps the voxel distance field (a conservative lower bound
everywhere, loose by up to a few voxels) and, beside it, the points bucketed into cubic cells of
side c (``cell``, m): cells sorted in x-major order, ``starts`` (M + 1,) the first point of each
cell in the sorted points (a prefix sum; cell k holds points starts[k] .. starts[k+1] − 1).

A query x (torch, batched, same code on CUDA; no Python loop over queries or points) whose field
bound is below c − r gathers the points of the 27 cells around its own (a ragged gather:
``repeat_interleave`` over the cells' counts, then a ``scatter_reduce`` minimum per query). The
3×3×3 block reaches at least c beyond x in every direction, so every point within c of x is
among the gathered ones. With m the smallest gathered distance:

* m ≤ c: m is the exact distance from x to the nearest point, and **m − r the exact signed
  distance to the world** (negative inside a ball); the normal is (x − p)/m, p that point;
* otherwise no point lies within c of x: the distance is ≥ c − r, and the result is
  max(field bound, c − r), still a lower bound.

Elsewhere (field bound ≥ c − r) the field's bound stands.

Many queries at once (:data:`OCTANT_FROM`), most of them near the points (a whole motion's
check), first gather only the 2×2×2 cells nearest each one (the block from the cell corner it is
closest to): that block reaches at least c/2 beyond x, so a nearest point found there at m1 no
farther than x's distance to the block's faces is the nearest of all; the others gather the 27
cells as above. The same results with about a third of the pairs. Query cells are clamped one
cell inside the table (it has one cell of padding): a query whose 27 cells would leave it is
more than c from every point, and the cells gathered instead hold only real points. **Guarantee: the result never exceeds
the true distance to the balls, and equals it (up to float rounding) wherever that distance is
at most c − r.** The cost grows with the points in the 27 cells (∝ c² on a surface): c trades
exactness reach against time. A sphere larger than c − r (a tight model's leaf of a few cm) is
near the points while its centre is beyond that reach: :func:`refine_wide` gathers the 5×5×5
cells for such centres (the tree verdict asks it only for spheres below its threshold), exact
out to 2c − r.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

#: Pairs (query, point) computed at once; more are split into chunks (memory: ~60 B per pair).
CHUNK_PAIRS = 1 << 20
#: The cells around a query's own (a 3×3×3 block) and a 2×2×2 block from its low corner.
_BLOCK27 = torch.tensor([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])
_BLOCK8 = torch.tensor([(i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)])
_BLOCK125 = torch.tensor([(i, j, k) for i in range(-2, 3) for j in range(-2, 3) for k in range(-2, 3)])
#: Refinements of at least this many queries look first in the 2×2×2 cells nearest each query
#: (module doc); fewer go straight to the 27 (two steps cost more operations than they save).
OCTANT_FROM = 256
#: :func:`build_lattice` stamps points that are cube centres of side spacing / m, m up to this.
STAMP_SPLITS = 8


def build(points: np.ndarray, cell: float, max_cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(P, 3) finite points -> origin (3,) of cell (0, 0, 0)'s low corner, dims (3,) cells,
    starts (M + 1,) float64 and the points sorted by cell (P, 3). One cell of padding on every
    side. ValueError when the cells exceed ``max_cells``."""
    from .occupancy import flat_index, index_span

    if not (math.isfinite(cell) and cell > 0):
        raise ValueError(f"the point cell must be a positive number of metres, got {cell}")
    columns = [np.floor(points[:, a] / cell).astype(np.int64) for a in range(3)]  # columns: numpy is slow on (P, 3)
    first, last = index_span(columns)
    low = first - 1
    dims = last - low + 2
    count = int(np.prod(dims.astype(np.float64)))
    if count > max_cells:
        raise ValueError(f"the points span {count} cells of {cell:g} m, above the limit of {max_cells}")
    flat = flat_index(columns, low, dims)
    order = np.argsort(flat, kind="stable")
    starts = np.zeros(count + 1)
    np.cumsum(np.bincount(flat, minlength=count), out=starts[1:])
    return low * cell, dims, starts, points[order]


def refine(coordinates, parameters: Tensor, values: Tensor, distance: Tensor, normal, with_normal: bool,
           column: int):
    """Raise ``distance`` (n, N) (a lower bound from the field) to the exact distance where the
    points allow it (module docstring); ``normal`` (3 tensors (n, N)) follows. ``parameters``
    (n, k): column ``column`` 1 where the row's grid has points, then the cell size, the table's
    origin (3), dims (3), offsets of ``starts`` and of the points in ``values`` (two columns
    each, high and low: see :func:`.occupancy._offset`) and the point radius. -> distance,
    normal."""
    from .occupancy import _offset

    cell = parameters[:, column + 1:column + 2]
    radius = parameters[:, column + 12:column + 13]
    want = (parameters[:, column:column + 1] > 0) & (distance < cell - radius)
    # the wanted entries by flat index (index_select / index_copy: quicker than indexing by
    # (row, column) pairs, the same values)
    shape = distance.shape

    def flat_of(t: Tensor) -> Tensor:  # (n, N) or broadcastable to it -> (n·N,)
        return t.expand(shape).reshape(-1)

    flat = flat_of(want).nonzero().squeeze(1)
    K = flat.numel()
    if not K:
        return distance, normal
    rows = torch.div(flat, shape[1], rounding_mode="floor")
    p = parameters.index_select(0, rows)  # (K, k)
    q = torch.stack([flat_of(c).index_select(0, flat) for c in coordinates], dim=1)  # (K, 3)
    c = p[:, column + 1:column + 2]
    origin, dims = p[:, column + 2:column + 5], p[:, column + 5:column + 8]
    u = torch.nan_to_num((q - origin) / c, nan=0.0, posinf=0.0, neginf=0.0)  # (K, 3) in cells
    table_at, points_at = _offset(p, column + 8), _offset(p, column + 10)  # (K, 1)
    whole = dims.to(torch.int64)  # strides in int64: a float32 product of two dims rounds above 2²⁴
    strides = torch.stack((whole[:, 1] * whole[:, 2], whole[:, 2], torch.ones_like(whole[:, 2])), 1)
    if K >= OCTANT_FROM:  # first the 2×2×2 cells nearest each query (module doc)
        low = torch.minimum((u - 0.5).floor().clamp_min(0.0), dims - 2)
        margin = torch.minimum(u - low, low + 2 - u).amin(1) * c.squeeze(1)  # to the block's faces, m
        best, nearest = _nearest(q, values, low, _BLOCK8, strides, table_at, points_at, with_normal)
        # settled: the nearest found is within the margin (1e-4 of it inside: ~1 µm, well above
        # float32's rounding of u, so a point just beyond the block can never be the nearer)
        unsettled = (best > (margin * (1 - 1e-4)).clamp_min(0.0).square()).nonzero().squeeze(1)
        if unsettled.numel():  # the 27 cells around these
            centre = torch.minimum(u.index_select(0, unsettled).floor().clamp_min(1.0),
                                   dims.index_select(0, unsettled) - 2)
            again, toward = _nearest(q.index_select(0, unsettled), values, centre, _BLOCK27,
                                     strides.index_select(0, unsettled), table_at.index_select(0, unsettled),
                                     points_at.index_select(0, unsettled), with_normal)
            best = best.index_copy(0, unsettled, again)
            if with_normal:
                nearest = nearest.index_copy(0, unsettled, toward)
    else:  # the 27 cells around each query's own, kept one cell inside the table (module doc)
        centre = torch.minimum(u.floor().clamp_min(1.0), dims - 2)
        best, nearest = _nearest(q, values, centre, _BLOCK27, strides, table_at, points_at, with_normal)
    m = torch.sqrt(best)
    certified = m <= c.squeeze(1)
    r = p[:, column + 12]
    current = flat_of(distance).index_select(0, flat)
    value = torch.where(certified, m - r, torch.maximum(current, c.squeeze(1) - r))
    distance = flat_of(distance).index_copy(0, flat, value).view(shape)
    if with_normal:
        use = certified & (m > 0)
        unit = nearest / m.clamp_min(torch.finfo(m.dtype).tiny).unsqueeze(1)
        normal = tuple(flat_of(n).index_copy(0, flat, torch.where(use, unit[:, a], flat_of(n).index_select(0, flat)))
                       .view(shape) for a, n in enumerate(normal))
    return distance, normal


def refine_wide(q: Tensor, parameters: Tensor, values: Tensor, distance: Tensor, column: int) -> Tensor:
    """:func:`refine`'s result ``distance`` (K,) at points q (K, 3) (each row of ``parameters``
    (K, k) its grid's, which must have points) raised further: the points of the 5×5×5 cells
    around each query's own, a block that reaches at least 2c beyond it, so the distance is
    exact up to 2c − r from the points (27 cells: c − r). For the few queries that need it: a
    large sphere's centre whose surface is near the points (a tight model's leaf of a few cm
    radius grazing what a camera saw was otherwise only bounded, by c − r, and called in
    contact). Cells are clamped two inside the table, as :func:`refine` clamps one: a query
    whose 125 cells would leave it is more than 2c from the cells beyond; a table fewer than 5
    cells wide along an axis keeps ``distance`` (its points all lie within the 27-cell reach
    anyway)."""
    from .occupancy import _offset

    wide = (parameters[:, column + 5:column + 8] >= 5).all(1).nonzero().squeeze(1)
    if not wide.numel():
        return distance
    p, q = parameters.index_select(0, wide), q.index_select(0, wide)
    c = p[:, column + 1]
    origin, dims = p[:, column + 2:column + 5], p[:, column + 5:column + 8]
    u = torch.nan_to_num((q - origin) / c.unsqueeze(1), nan=0.0, posinf=0.0, neginf=0.0)
    whole = dims.to(torch.int64)
    strides = torch.stack((whole[:, 1] * whole[:, 2], whole[:, 2], torch.ones_like(whole[:, 2])), 1)
    centre = torch.minimum(u.floor().clamp_min(2.0), dims - 3)
    best, _ = _nearest(q, values, centre, _BLOCK125, strides, _offset(p, column + 8), _offset(p, column + 10), False)
    m = torch.sqrt(best)
    r = p[:, column + 12]
    given = distance.index_select(0, wide)
    value = torch.where(m <= 2 * c, m - r, torch.maximum(given, 2 * c - r))
    return distance.index_copy(0, wide, torch.maximum(given, value))


def _nearest(q: Tensor, values: Tensor, corner: Tensor, block: Tensor, strides: Tensor, table_at: Tensor,
             points_at: Tensor, with_normal: bool):
    """The nearest point to each query q (K, 3) among the cells ``corner`` (K, 3) (float cell
    indices, every cell of the block inside the table) + ``block`` (m, 3) -> its squared
    distance (K,) (inf without one) and, with ``with_normal``, q minus it (K, 3)."""
    K, device = q.shape[0], q.device
    values = values.contiguous()  # read through strided views below (a no-op on the packed field)
    steps = (strides.unsqueeze(1) * block.to(device).unsqueeze(0)).sum(2)  # (K, m) (no integer matmul on CUDA)
    flat = (corner.to(torch.int64) * strides).sum(1, keepdim=True) + steps
    at = (flat + table_at).reshape(-1)  # (K·m,) -> (K, m, 2): start, end (one index_select: see occupancy.gather)
    ranges = values.as_strided((values.shape[0] - 1, 2), (1, 1)).index_select(0, at).view(*flat.shape, 2)
    counts = (ranges[..., 1] - ranges[..., 0]).to(torch.int64)
    per_query = counts.sum(1)
    best = q.new_full((K,), math.inf)
    nearest = q.new_zeros((K, 3)) if with_normal else None
    total = int(per_query.sum())
    if not total:
        return best, nearest
    # each cell's points from slot 3·(start + i) + the table's offset; pair k of the cell → 3k
    begin = ranges[..., 0].to(torch.int64) * 3 + points_at  # (K, m)
    if total <= CHUNK_PAIRS:
        bounds = [(0, K)]
    else:  # chunks of whole queries, each about CHUNK_PAIRS pairs (a query above it alone)
        ends = per_query.cumsum(0)
        cuts = torch.searchsorted(ends, torch.arange(CHUNK_PAIRS, total, CHUNK_PAIRS, device=device))
        edges = sorted(set([0, K] + (cuts + 1).clamp(1, K).tolist()))
        bounds = list(zip(edges[:-1], edges[1:]))
    points = values.as_strided((values.shape[0] - 2, 3), (1, 1))
    for a, b in bounds:
        n_counts = counts[a:b].reshape(-1)
        size = total if (a, b) == (0, K) else int(n_counts.sum())
        if not size:
            continue
        first = n_counts.cumsum(0) - n_counts  # exclusive prefix sum: the cell's first pair
        slot = torch.arange(0, 3 * size, 3, device=device) + torch.repeat_interleave(
            begin[a:b].reshape(-1) - 3 * first, n_counts, output_size=size)
        query = torch.repeat_interleave(torch.arange(b - a, device=device), per_query[a:b], output_size=size)
        offset = q[a:b].index_select(0, query) - points.index_select(0, slot)  # (T, 3)
        squared = (offset * offset).sum(1)
        local = q.new_full((b - a,), math.inf).scatter_reduce(0, query, squared, "amin")
        best[a:b] = local
        if with_normal:
            pair = torch.arange(size, device=device)
            winner = torch.where(squared == local.index_select(0, query), pair, size)
            arg = torch.full((b - a,), size, dtype=torch.int64, device=device).scatter_reduce(0, query, winner, "amin")
            has = arg < size
            nearest[a:b][has] = offset[arg[has]]
    return best, nearest


# ---------------------------------------------------------------------- the far field: an exact lattice
def build_lattice(points: np.ndarray, spacing: float, reach: float, max_cells: int):
    """A lattice of nodes every ``spacing`` m over the points' box grown by ``reach`` m, each
    holding a lower bound ℓ of its distance to the nearest point: the exact distance for the
    nodes within ``reach`` of a point, ``reach`` for the others. Points that are the centres of
    cubes of side spacing / m (m ≤ :data:`STAMP_SPLITS`; a sensor's kept cubes are) stamp their
    exact distances into the nodes around them (:func:`_stamped_lattice`); other points go
    through scipy's KD-tree. -> origin (node (0, 0, 0), m), dims (3,), values (prod(dims),)
    float32 (rounded down)."""
    if not (math.isfinite(spacing) and spacing > 0 and math.isfinite(reach) and reach > 0):
        raise ValueError(f"the lattice spacing and reach must be positive numbers of metres, got {spacing}, {reach}")
    from .occupancy import index_span

    pad = math.ceil(reach / spacing) + 1
    least, most = index_span([points[:, 0], points[:, 1], points[:, 2]])  # per column: min(0) is ~8x slower
    low = np.floor(least / spacing).astype(np.int64) - pad
    dims = np.floor(most / spacing).astype(np.int64) + pad + 2 - low
    count = int(np.prod(dims.astype(np.float64)))
    if count > max_cells:
        raise ValueError(f"the lattice has {count} nodes of {spacing:g} m, above the limit of {max_cells}")
    cubes = _cube_keys(points, spacing)
    if cubes is not None:
        split, keys, deviation = cubes
        values = np.maximum(_stamped_lattice(keys, split, spacing, reach, low, dims) - deviation, 0.0)
    else:
        values = _searched_lattice(points, spacing, reach, low, dims)
    values = np.nextafter(values.astype(np.float32) * np.float32(1 - 2 ** -20), np.float32(0))
    return low * spacing, dims, values


def _searched_lattice(points: np.ndarray, spacing: float, reach: float, low: np.ndarray, dims: np.ndarray):
    """:func:`build_lattice`'s distances (float64, flat) for any points, by scipy's KD-tree."""
    from scipy.ndimage import distance_transform_edt
    from scipy.spatial import cKDTree

    # nodes near a point first (a node within reach of a point is within reach + half a cell
    # diagonal of that point's nearest node: scipy's EDT on the lattice finds them): only those
    # are asked of the KD-tree
    free = np.ones(tuple(dims), dtype=bool)
    free[tuple(np.rint(points[:, a] / spacing).astype(np.int64) - low[a] for a in range(3))] = False
    near = np.flatnonzero(distance_transform_edt(free).reshape(-1) <= reach / spacing + 0.5 * math.sqrt(3))
    values = np.full(int(np.prod(dims)), reach, dtype=np.float64)
    index = np.unravel_index(near, tuple(dims))
    nodes = np.stack([(i + low[a]) * spacing for a, i in enumerate(index)], axis=1)
    distance, _ = cKDTree(points).query(nodes, distance_upper_bound=reach, workers=-1)
    values[near] = np.minimum(distance, reach)
    return values


def _cube_keys(points: np.ndarray, spacing: float):
    """When every point is the centre of a cube of side h = spacing / m (m ≤ STAMP_SPLITS) on
    the grid of multiples of h: (m, integer keys (P, 3), the farthest a point lies from its
    ideal centre (m)); else None. A few points are tried first for each m (any cloud is cheap to
    turn down)."""
    for m in range(1, STAMP_SPLITS + 1):
        h = spacing / m
        for sample in (points[:64], points):
            f = sample / h - 0.5
            keys = np.rint(f)
            f -= keys
            off = float(np.abs(f).max())
            if off > 1e-6:
                break
        else:
            # a point is within √3·off·h of its centre (with a margin for the rounding of f): a
            # bound from the largest coordinate error, without the rows' norms (~1 ms on 38,000)
            return m, keys.astype(np.int64), math.sqrt(3.0) * off * h * (1 + 1e-6) + 4 * np.finfo(np.float64).eps * (
                float(np.abs(points).max()) if points.size else 0.0)
    return None


def _stamped_lattice(keys: np.ndarray, m: int, spacing: float, reach: float, low: np.ndarray, dims: np.ndarray):
    """Exact distances from the lattice nodes (node i at (i + low)·spacing) to the nearest cube
    centre (key + 0.5)·spacing/m within ``reach`` -> flat (prod(dims),) float64, ``reach``
    elsewhere. A centre's offset from a node is an odd multiple e of spacing / 2m on each axis
    (e = 2ρ + 1 − 2sm for the centre's residue ρ = key mod m and the node's step s from the
    centre's own node), so its squared distance is an integer in units of (spacing / 2m)²; one
    ``np.minimum.at`` stamps every (node, squared distance) pair that can be a node's minimum
    (integers: exact). No KD-tree.

    For m ≤ 4 only the pairs that can be a minimum are stamped: where a cube's face neighbour on
    an axis is occupied and the node lies beyond it on that axis (|e| ≥ 3 on that side), the
    neighbour is strictly nearer to the node, so the cube is not the node's nearest. Every
    node's nearest cube therefore has its pair stamped (a nearest cube with such a neighbour
    would not be nearest), and each node's minimum is exact. On a sensor's surfaces, whose cubes
    have their in-plane neighbours, that leaves about 1/16 of the pairs (the 300,000-point bench
    cloud's 38,292 cubes: 180,584 of ~3 million); which steps a cube stamps depends only on its
    residue and its six neighbours (:func:`_stamp_steps`, cached). Larger m: every pair within
    reach, one ``np.minimum.at`` per residue class."""
    node = np.floor_divide(keys, m)
    residue = keys - m * node
    node -= low
    base = (node[:, 0] * dims[1] + node[:, 1]) * dims[2] + node[:, 2]
    classes = (residue[:, 0] * m + residue[:, 1]) * m + residue[:, 2]
    unit = (spacing / (2 * m)) ** 2
    limit = reach * reach / unit
    K = math.ceil(reach / spacing) + 1
    kind = np.int32 if limit < 2 ** 31 - 2 else np.int64  # int32: less to move (~10 %)
    squared = np.full(int(np.prod(dims)), math.floor(limit) + 1, dtype=kind)  # beyond reach
    if m ** 3 <= 64:
        starts, triples, squares = _stamp_steps(m, K, math.floor(limit))
        kinds = (classes << 6) | _face_neighbours(classes, residue, base, m, dims)
        first, count = starts[kinds], starts[kinds + 1] - starts[kinds]
        # cube i stamps the steps first[i] .. first[i] + count[i] − 1: one ragged gather
        begin = np.cumsum(count) - count
        pick = np.arange(int(count.sum())) + np.repeat(first - begin, count)
        steps = (triples[:, 0] * dims[1] + triples[:, 1]) * dims[2] + triples[:, 2]
        np.minimum.at(squared, np.repeat(base, count) + steps[pick], squares.astype(kind)[pick])
        return np.minimum(np.sqrt(squared * unit), reach)
    order = np.argsort(classes, kind="stable")
    members = base[order]  # the cubes' base nodes, class by class
    counts = np.bincount(classes, minlength=m ** 3)
    first = np.cumsum(counts) - counts
    o = np.arange(-K, K + 1)
    offsets = np.array(np.meshgrid(o, o, o, indexing="ij")).reshape(3, -1).T  # (O, 3) node steps
    steps = (offsets[:, 0] * dims[1] + offsets[:, 1]) * dims[2] + offsets[:, 2]
    d2 = _class_squares(m, K).astype(kind)  # (m³, O): each class's squared distance to each step
    for k in np.flatnonzero(counts):
        near = np.flatnonzero(d2[k] <= limit)
        who = members[first[k]:first[k] + counts[k]]
        np.minimum.at(squared, (who[:, None] + steps[near][None, :]).reshape(-1),
                      np.broadcast_to(d2[k, near], (who.size, near.size)).reshape(-1))
    return np.minimum(np.sqrt(squared * unit), reach)


def _class_squares(m: int, K: int) -> np.ndarray:
    """(m³, (2K+1)³) int64: the squared distance, in units of (spacing / 2m)², from a centre of
    residue class c = (ρx·m + ρy)·m + ρz to the node at step (sx, sy, sz) ∈ [−K, K]³ (x-major):
    Σ (2ρ + 1 − 2sm)²."""
    o = np.arange(-K, K + 1)
    axis = (2 * np.arange(m)[:, None] + 1 - 2 * m * o[None, :]) ** 2  # (m, 2K+1)
    c = np.arange(m ** 3)
    return (axis[c // (m * m)][:, :, None, None] + axis[(c // m) % m][:, None, :, None]
            + axis[c % m][:, None, None, :]).reshape(m ** 3, -1)


@functools.lru_cache(maxsize=8)
def _stamp_steps(m: int, K: int, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The steps each kind of cube stamps (:func:`_stamped_lattice`, m ≤ 4). A kind is
    g = c·64 + b: c its residue class (ρx·m + ρy)·m + ρz, b its occupied face neighbours (bits
    0-5: −x, +x, −y, +y, −z, +z). Its steps (sx, sy, sz) ∈ [−K, K]³ are those within ``limit``
    (squared distance in units of (spacing / 2m)²) and not beyond an occupied neighbour. ->
    starts (64·m³ + 1,) (kind g's steps are starts[g] .. starts[g+1] − 1), steps (T, 3) and
    their squared distances (T,), int64."""
    n = 2 * K + 1
    o = np.arange(-K, K + 1)
    e = 2 * np.arange(m)[:, None] + 1 - 2 * m * o[None, :]  # (m, n): centre − node in half cubes
    side = np.arange(4)  # one axis's two neighbours: bit 0 the −side, bit 1 the +side
    allowed = ~(((e >= 3)[:, None, :] & (side & 1).astype(bool)[None, :, None])
                | ((e <= -3)[:, None, :] & (side >> 1).astype(bool)[None, :, None]))  # (ρ, side, s)
    c, b = np.arange(m ** 3), np.arange(64)
    rho = (c // (m * m), (c // m) % m, c % m)
    ok = [allowed[rho[a]][:, (b >> (2 * a)) & 3] for a in range(3)]  # each (m³, 64, n)
    squares = _class_squares(m, K)  # (m³, n³)
    keep = (ok[0][:, :, :, None, None] & ok[1][:, :, None, :, None] & ok[2][:, :, None, None, :]).reshape(
        m ** 3, 64, n ** 3) & (squares <= limit)[:, None, :]
    which, bits, step = np.nonzero(keep)  # kind-major (c, then b)
    starts = np.zeros(64 * m ** 3 + 1, dtype=np.int64)
    np.cumsum(np.bincount(which * 64 + bits, minlength=64 * m ** 3), out=starts[1:])
    triples = np.stack(np.unravel_index(step, (n, n, n)), axis=1) - K
    return starts, triples, squares[which, step]


def _face_neighbours(classes: np.ndarray, residue: np.ndarray, base: np.ndarray, m: int, dims) -> np.ndarray:
    """Each cube's occupied face neighbours as bits (−x, +x, −y, +y, −z, +z: bits 0-5), m ≤ 4:
    a 64-bit mask per lattice cell of the m³ cubes it holds (bit = residue class), then one
    gather per side. Cubes are keyed by their cell ``base`` (flat node index) and residue class;
    the lattice's padding keeps every neighbour cell inside it."""
    bit = classes.astype(np.uint64)
    masks = np.zeros(int(np.prod(dims)), dtype=np.uint64)
    np.bitwise_or.at(masks, base, np.left_shift(np.uint64(1), bit))
    out = np.zeros(classes.shape[0], dtype=np.int64)
    for a, (cell, within) in enumerate(((dims[1] * dims[2], m * m), (dims[2], m), (1, 1))):
        for side, sign in ((0, -1), (1, 1)):
            across = residue[:, a] == (0 if sign < 0 else m - 1)  # the neighbour lies in the next cell
            where = base + np.where(across, sign * cell, 0)
            theirs = classes + np.where(across, -sign * (m - 1) * within, sign * within)
            present = (masks[where] >> theirs.astype(np.uint64)) & np.uint64(1)
            out |= present.astype(np.int64) << (2 * a + side)
    return out


def lattice_bound(coordinates, parameters: Tensor, values: Tensor, column: int, with_normal: bool):
    """Lower bound of the distance to the balls from the lattice (columns from ``column``: 1 where
    the row has one, spacing, origin (3), dims (3), offset (2), point radius). The squared
    distance to a point set minus |x|² is concave (a minimum of affine functions of x), so with
    trilinear weights wᵢ at the cell's nodes gᵢ (Σ wᵢ gᵢ = x):
    d(x)² ≥ Σ wᵢ ℓᵢ² − Σ wᵢ |x − gᵢ|² = Σ wᵢ ℓᵢ² − σ² Σₐ tₐ(1 − tₐ), nearly exact away from the
    points (error ≈ 3σ²/(8d)). -> bound (n, N) (−inf outside the lattice or without one) and
    the unnormalised gradient of Σ wᵢ ℓᵢ² (or None)."""
    from .occupancy import _cells, _corners, _offset

    has = parameters[:, column:column + 1] > 0
    step = parameters[:, column + 1:column + 2]
    dims = parameters[:, column + 5:column + 8].to(torch.int64)
    (ix, iy, iz), (tx, ty, tz), inside = _cells(coordinates, parameters[:, column + 2:column + 5], step, dims)
    ny, nz = dims[:, 1:2], dims[:, 2:3]
    sx, sy = ny * nz, nz
    flat = (ix * ny + iy) * nz + iz + _offset(parameters, column + 8)
    # Σ wᵢ ℓᵢ² (rows without a lattice index anywhere: clamped, discarded) and its gradient
    value, spread, gradient = _corners(values, flat, sx, sy, (tx, ty, tz), with_normal, guard=True,
                                       transform=torch.square)
    squared = value - (step * spread) ** 2
    bound = torch.sqrt(squared.clamp_min(0.0)) - parameters[:, column + 10:column + 11]
    bound = torch.where(has & inside, bound, -math.inf)
    return bound, gradient


def lattice_bound_rows(points: Tensor, parameters: Tensor, values: Tensor, column: int) -> Tensor:
    """:func:`lattice_bound` (no gradient) for points laid out by row (n, N, 3) -> (n, N)."""
    from .occupancy import _cells_rows, _corners_rows, _offset

    has = parameters[:, column:column + 1] > 0
    step = parameters[:, column + 1:column + 2]
    dims = parameters[:, column + 5:column + 8].to(torch.int64)
    base, t, inside = _cells_rows(points, parameters[:, column + 2:column + 5], step, dims)
    ny, nz = dims[:, 1:2], dims[:, 2:3]
    flat = (base[..., 0] * ny + base[..., 1]) * nz + base[..., 2] + _offset(parameters, column + 8)
    value, spread = _corners_rows(values, flat, ny * nz, nz, t, True, torch.square)
    bound = torch.sqrt((value - (step * spread) ** 2).clamp_min(0.0)) - parameters[:, column + 10:column + 11]
    return torch.where(has & inside, bound, -math.inf)
