"""Sensed and CAD geometry as a voxel occupancy grid with a conservative distance field.

A :class:`VoxelGrid` holds points (a point cloud, a depth image back-projected, or the sampled
surface of a mesh) in its own frame (the obstacle frame of a ``voxels`` :class:`~.obstacles.Obstacle`;
the root frame for sensed points), quantised into cubic voxels of side ``s`` (``voxel_size``, m)
on a grid aligned to multiples of ``s``. At build time (CPU, numpy + scipy) the grid stores, at
every voxel centre ("node") g, a lower bound F(g) of the signed distance from g to the geometry:

* a free node: ``F = D_out − h − bound``, D_out the Euclidean distance (scipy's exact EDT) to the
  nearest occupied node, h = √3/2·s the voxel half-diagonal (a point lies within h of its node),
  ``bound`` the stated error of the points themselves (their radius; for a mesh, the sampling
  spacing/√3 plus the radius);
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
"""

from __future__ import annotations

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
PARAMETER_COLUMNS = 16
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
        return (f"VoxelGrid({self.occupied_count} occupied of {'×'.join(map(str, self.shape))} voxels of "
                f"{self.voxel_size * 1000:g} mm, bound {self.bound * 1000:.2f} mm)")

    # ------------------------------------------------------------------ building
    @classmethod
    def from_points(cls, points, voxel_size: float, radius: float = 0.0, padding: float | None = None,
                    max_cells: int = MAX_CELLS, max_points: int = MAX_POINTS, field: str = "points",
                    fill_interior: bool = False, extra_bound: float = 0.0) -> "VoxelGrid":
        """(N, 3) points (m, grid frame) -> a grid of ``voxel_size`` (m). Non-finite rows (depth
        holes) are skipped. ``radius`` (m): the points' stated radius (sensor noise), part of the
        bound. ``padding`` (m, default max(0.1, 4·voxel_size)): how far beyond the points the field
        is kept (beyond it the box bound takes over). ``fill_interior``: fill the cavities the
        occupied voxels enclose (a closed mesh's inside). ValueError naming ``field`` for an empty
        or oversized cloud, a bad voxel size or a grid above ``max_cells``."""
        if not (math.isfinite(voxel_size) and voxel_size > 0):
            raise ValueError(f"voxel_size must be a positive number of metres, got {voxel_size}")
        if not (math.isfinite(radius) and radius >= 0):
            raise ValueError(f"{field}: radius must be finite and ≥ 0 m, got {radius}")
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"{field} must be an (N, 3) array of points, got shape {points.shape}")
        if points.shape[0] > max_points:
            raise ValueError(f"{field} has {points.shape[0]} points, above the limit of {max_points}")
        finite = np.isfinite(points).all(axis=1)
        notes = []
        if not finite.all():
            notes.append(f"{field}: {int((~finite).sum())} non-finite points skipped")
            points = points[finite]
        if not points.shape[0]:
            raise ValueError(f"{field} has no finite point")
        s = float(voxel_size)
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
        return cls._from_occupancy(occupied, (start + 0.5) * s, s, radius + extra_bound, fill_interior, tuple(notes))

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


def _filled(occupied: np.ndarray) -> np.ndarray:
    """Occupied voxels plus the cavities they enclose. The shell is first thickened by one voxel
    (26-neighbours) so that a surface sampled on a diagonal cannot leak, filled, then thinned back."""
    from scipy.ndimage import binary_dilation, binary_erosion, binary_fill_holes

    cube = np.ones((3, 3, 3), dtype=bool)
    thick = binary_dilation(occupied, cube)
    solid = binary_erosion(binary_fill_holes(thick), cube, border_value=0)
    return solid | occupied


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


def surface_samples(vertices: np.ndarray, triangles: np.ndarray, spacing: float, max_points: int = MAX_POINTS):
    """Points on every triangle: a barycentric lattice of n subdivisions, n = ⌈longest edge /
    spacing⌉, so that every point of the surface is within spacing/√3 of a sample (each small
    triangle has edges ≤ spacing: its points are within longest edge/√3 of a corner). -> (P, 3)."""
    a, b, c = (vertices[triangles[:, k]] for k in range(3))
    longest = np.maximum(np.maximum(np.linalg.norm(b - a, axis=1), np.linalg.norm(c - b, axis=1)),
                         np.linalg.norm(a - c, axis=1))
    n = np.maximum(1, np.ceil(longest / spacing)).astype(np.int64)
    total = int(((n + 1) * (n + 2) // 2).sum())
    if total > max_points:
        raise ValueError(f"the mesh needs {total} surface samples at {spacing:g} m, above the limit of {max_points} "
                         "(raise voxel_size)")
    out = []
    for k in np.unique(n):  # one lattice per subdivision count (few distinct values)
        rows = np.flatnonzero(n == k)
        i, j = np.meshgrid(np.arange(k + 1), np.arange(k + 1), indexing="ij")
        keep = (i + j) <= k
        u, v = i[keep] / k, j[keep] / k  # (m,)
        A, B, C = a[rows], b[rows], c[rows]
        out.append((A[:, None] + u[None, :, None] * (B - A)[:, None] + v[None, :, None] * (C - A)[:, None]).reshape(-1, 3))
    return np.concatenate(out)


def mesh_grid(vertices, triangles, voxel_size: float, id: str = "mesh", radius: float = 0.0,
              max_triangles: int = MAX_TRIANGLES, max_cells: int = MAX_CELLS) -> VoxelGrid:
    """A mesh (vertices (V, 3) m, triangles (T, 3), in the obstacle frame) -> its VoxelGrid: the
    surface sampled at voxel_size/2 (bound voxel_size/(2√3) + radius); a closed (watertight)
    mesh's inside is filled, an open mesh stays a surface and gets a note (and a warning)."""
    import trimesh

    vertices, triangles = check_mesh(vertices, triangles, id, max_triangles)
    spacing = 0.5 * voxel_size
    samples = surface_samples(vertices, triangles, spacing)
    # watertight once coincident vertices are merged (an STL repeats every vertex per triangle)
    closed = trimesh.Trimesh(vertices, triangles, process=True).is_watertight
    grid = VoxelGrid.from_points(samples, voxel_size, radius, max_cells=max_cells, field=f"mesh '{id}'",
                                 fill_interior=closed, extra_bound=spacing / math.sqrt(3.0))
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
    offset of its field in the flat buffer as (offset // 4096, offset % 4096), box (6), bound."""
    row = np.zeros(PARAMETER_COLUMNS)
    row[0:3] = grid.origin
    row[3] = grid.voxel_size
    row[4:7] = grid.shape
    row[7:9] = divmod(offset, _OFFSET_BASE)
    row[9:15] = grid.box.reshape(-1)
    row[15] = grid.bound
    return row


class VoxelKind(str):
    """The obstacle kind name ``'voxels'`` carrying the packed scene's flat field buffer
    (``values``: every grid's F, concatenated, on the scene's device and dtype): whatever
    dispatches on a packed kind (``local_signed_distance(kind, local, parameters)``) then reaches
    the fields too, with each obstacle's parameter row saying where its own field lies."""

    values: Tensor

    def __new__(cls, name: str, values: Tensor):
        kind = super().__new__(cls, name)
        kind.values = values
        return kind


def voxel_distance(x: Tensor, y: Tensor, z: Tensor, parameters: Tensor, values: Tensor, with_normal: bool = True):
    """Lower bounds of the signed distance (m) of local points to each grid (module docstring).
    x, y, z (n, N) in each grid's frame; parameters (n, PARAMETER_COLUMNS); values: the flat
    buffer. -> distance (n, N) and the unit normal (nx, ny, nz) or None."""
    s = parameters[:, 3:4]
    dims = parameters[:, 4:7].to(torch.int64)  # (n, 3)
    offset = (parameters[:, 7:8] * _OFFSET_BASE + parameters[:, 8:9]).to(torch.int64)  # (n, 1)
    coordinates = (x, y, z)
    cell, frac, inside = [], [], None
    for axis, c in enumerate(coordinates):
        u = torch.nan_to_num((c - parameters[:, axis:axis + 1]) / s, nan=-1.0)
        last = (dims[:, axis:axis + 1] - 1).to(u.dtype)
        within = (u >= 0) & (u <= last)
        inside = within if inside is None else inside & within
        base = torch.minimum(u.clamp(0, None).floor(), last - 1)
        cell.append(base.to(torch.int64))
        frac.append((u - base).clamp(0.0, 1.0))
    ix, iy, iz = cell
    tx, ty, tz = frac
    ny, nz = dims[:, 1:2], dims[:, 2:3]
    flat = (ix * ny + iy) * nz + iz + offset  # (n, N)
    sy, sx = nz, ny * nz

    def at(step):
        return values[flat + step]

    f000, f001, f010, f011 = at(0), at(1), at(sy), at(sy + 1)
    f100, f101, f110, f111 = at(sx), at(sx + 1), at(sx + sy), at(sx + sy + 1)
    # along z, then y, then x
    a00, a01 = f000 + (f001 - f000) * tz, f010 + (f011 - f010) * tz
    a10, a11 = f100 + (f101 - f100) * tz, f110 + (f111 - f110) * tz
    b0, b1 = a00 + (a01 - a00) * ty, a10 + (a11 - a10) * ty
    value = b0 + (b1 - b0) * tx
    spread = s * torch.sqrt(tx * (1 - tx) + ty * (1 - ty) + tz * (1 - tz))
    cell_bound = value - spread
    box_d, box_n = _box_distance(coordinates, parameters, with_normal)
    within_box = box_d <= 0
    box_d = box_d - parameters[:, 15:16]
    use_cell = inside & ((cell_bound > box_d) | within_box)  # inside the box: the field (depth) alone
    distance = torch.where(use_cell, cell_bound, box_d)
    if not with_normal:
        return distance, None
    gx = b1 - b0
    gy = (a01 - a00) + ((a11 - a10) - (a01 - a00)) * tx
    c00, c01 = f001 - f000, f011 - f010
    c10, c11 = f101 - f100, f111 - f110
    d0, d1 = c00 + (c01 - c00) * ty, c10 + (c11 - c10) * ty
    gz = d0 + (d1 - d0) * tx
    length = torch.sqrt(gx * gx + gy * gy + gz * gz)
    ok = length > 0
    inverse = 1.0 / length.clamp_min(torch.finfo(length.dtype).tiny)
    field_normal = (torch.where(ok, gx * inverse, 1.0), torch.where(ok, gy * inverse, 0.0),
                    torch.where(ok, gz * inverse, 0.0))
    return distance, tuple(torch.where(use_cell, f, b) for f, b in zip(field_normal, box_n))


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
