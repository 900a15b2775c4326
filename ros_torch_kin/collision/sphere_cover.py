"""Conservative sphere covers of collision shapes (pure numpy + trimesh).

A cover is a set of spheres such that every point of the shape's surface lies inside at least
one sphere. (For a large solid the spheres need not fill its interior: the surface is what
another body touches first.) Each sphere also carries a *slack*: a true upper bound (m) on how
far any point of the sphere lies from the shape's solid (or, for a mesh that is not closed, from
its surface).

Method. A shape is reduced to a :class:`CoverProblem`:

* *pieces*: small convex sets whose union contains the shape's surface, each given by the
  finite set of points whose convex hull contains it (a mesh triangle: its three vertices; a
  patch of a cylinder or a sphere: a small circumscribed prism). A ball contains a convex hull
  iff it contains the points (convexity), so a ball of radius ``max |v - c|`` over a piece's
  points covers that piece exactly, with no sampling.
* *candidate centres* on a grid over the shape, each with ``depth``: a lower bound on its signed
  distance to the shape's boundary (positive inside). If ``c`` is inside at depth ``δ`` the ball
  ``B(c, δ)`` lies in the solid, so every point of ``B(c, r)`` is within ``r - δ`` of the solid;
  outside at distance ``d``, within ``r + d``. Hence ``slack = r - depth(c)``, a true bound (and
  exact for a convex solid and a centre inside, since then the nearest supporting plane is the
  farthest the ball pokes out).

:func:`solve_cover` then picks centres by greedy set cover (the fewest spheres whose slack is at
most the target), relaxing the target by bisection when more than ``max_spheres`` would be
needed, and improves the spheres by alternating minimax assignment and centre choice. All of it
is deterministic (no random sampling).

Frames: everything is in one frame, the shape's (or, after :meth:`CoverProblem.transformed`,
its link's). Units: m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .triangle_hierarchy import TriangleHierarchy
from .triangle_refinement import refine_to_size
from .urdf_geometry import CollisionShape

#: (centre, piece point) pairs per vectorized block of the cost matrix.
_BLOCK_PAIRS = 1 << 18


@dataclass(frozen=True)
class CoverSettings:
    """How finely to cover.

    ``max_spheres``: the most spheres for one link (all its shapes together). ``target_slack``
    (m): the largest slack wanted; more spheres are used until every sphere's slack is under it
    or ``max_spheres`` is reached. ``grid_cells``: candidate centres per shape along its longest
    side. ``piece_cells``: a shape's surface is cut into pieces no longer than its longest side
    over this number. ``max_pieces`` / ``max_candidates``: a link's cover problem is coarsened
    to at most this many pieces (neighbours merged) and candidate centres (thinned out).
    """

    max_spheres: int = 12
    target_slack: float = 0.02
    grid_cells: int = 11
    piece_cells: int = 12
    max_pieces: int = 1500
    max_candidates: int = 1500

    def __post_init__(self):
        if self.max_spheres < 1:
            raise ValueError(f"max_spheres must be at least 1, got {self.max_spheres}")
        if not (math.isfinite(self.target_slack) and self.target_slack >= 0):
            raise ValueError(f"target_slack must be finite and >= 0 m, got {self.target_slack}")
        if min(self.grid_cells, self.piece_cells, self.max_pieces, self.max_candidates) < 1:
            raise ValueError("grid_cells, piece_cells, max_pieces and max_candidates must be positive")


@dataclass(frozen=True, eq=False)
class SphereCover:
    """K spheres: ``centers`` (K, 3) m, ``radii`` (K,) m, ``slack`` (K,) m (see module doc)."""

    centers: np.ndarray
    radii: np.ndarray
    slack: np.ndarray

    @property
    def num_spheres(self) -> int:
        return int(self.radii.shape[0])

    @property
    def worst_slack(self) -> float:
        return float(self.slack.max()) if self.num_spheres else 0.0

    @staticmethod
    def concatenate(covers) -> "SphereCover":
        covers = list(covers)
        if not covers:
            return SphereCover(np.zeros((0, 3)), np.zeros(0), np.zeros(0))
        return SphereCover(
            np.concatenate([c.centers for c in covers]),
            np.concatenate([c.radii for c in covers]),
            np.concatenate([c.slack for c in covers]),
        )


@dataclass(frozen=True, eq=False)
class CoverProblem:
    """What to cover and where spheres may be centred (see the module doc).

    ``points`` (V, 3); ``pieces`` (N, k) int64 rows of indices into ``points`` (a piece with
    fewer points repeats one); ``candidates`` (G, 3); ``depth`` (G,): lower bound on each
    candidate's signed distance to the shape's boundary, m, positive inside.
    """

    points: np.ndarray
    pieces: np.ndarray
    candidates: np.ndarray
    depth: np.ndarray
    #: (M, 3) -> (M,): the same lower bound anywhere (used to move centres off the grid)
    depth_at: Callable[[np.ndarray], np.ndarray]
    #: (M, 3) -> (M,): a fast *estimate* of ``depth_at`` (not a bound) that only guides searches;
    #: the slack of whatever centre they choose is then computed with ``depth_at``. None: use
    #: ``depth_at`` itself (cheap for primitives).
    depth_estimate: Callable[[np.ndarray], np.ndarray] | None = None
    #: (M, 3) -> (M,): a slower, closer estimate (more candidates), asked where ``depth_estimate``
    #: misled a search, before ``depth_at`` itself (tens of µs a point); None: straight to it
    careful_estimate: Callable[[np.ndarray], np.ndarray] | None = None

    def estimate(self, x: np.ndarray) -> np.ndarray:
        """``depth_estimate(x)``, or ``depth_at(x)`` when the problem has no estimate."""
        return (self.depth_estimate or self.depth_at)(x)

    def transformed(self, T: np.ndarray) -> "CoverProblem":
        """The same problem in another frame: ``T`` (4, 4) rigid, shape frame -> new frame."""
        R, t = T[:3, :3], T[:3, 3]

        def moved(inner):
            return None if inner is None else (lambda x: inner((x - t) @ R))

        return CoverProblem(self.points @ R.T + t, self.pieces, self.candidates @ R.T + t, self.depth,
                            moved(self.depth_at), moved(self.depth_estimate), moved(self.careful_estimate))

    @staticmethod
    def union(problems) -> "CoverProblem":
        """One problem for several shapes in one frame. A candidate keeps the depth it has in
        its own shape: a lower bound on its depth in the union (inside A at depth δ: the ball
        of radius δ is in A, so in the union; outside A at distance d: the union is no
        farther). Off the grid, the largest of the shapes' bounds is used, for the same reason."""
        problems = list(problems)
        offsets = np.cumsum([0] + [len(p.points) for p in problems])
        width = max(p.pieces.shape[1] for p in problems)
        pieces = [_pad_columns(p.pieces, width) + offset for p, offset in zip(problems, offsets)]
        depth_at = _largest([p.depth_at for p in problems], [p.points for p in problems])
        depth_estimate = _largest([p.estimate for p in problems], [p.points for p in problems])
        careful = _largest([p.careful_estimate or p.estimate for p in problems], [p.points for p in problems])

        return CoverProblem(
            np.concatenate([p.points for p in problems]),
            np.concatenate(pieces),
            np.concatenate([p.candidates for p in problems]),
            np.concatenate([p.depth for p in problems]),
            depth_at,
            depth_estimate if any(p.depth_estimate is not None for p in problems) else None,
            careful if any(p.careful_estimate is not None for p in problems) else None,
        )


def _largest(functions, points) -> Callable[[np.ndarray], np.ndarray]:
    """x (M, 3) -> (M,): the largest of the shapes' depth functions, each evaluated only where it
    may be the largest: a shape's depth is at most minus the distance to the bounding box of its
    points (the pieces' points, whose hulls hold its surface), or within that box half the box's
    least side, so where that bound is no more than the largest so far the shape is skipped
    (largest boxes first)."""
    boxes = [(p.min(axis=0), p.max(axis=0)) for p in points if len(p)]
    functions = [f for f, p in zip(functions, points) if len(p)]
    order = sorted(range(len(boxes)), key=lambda i: -float(np.prod(boxes[i][1] - boxes[i][0])))

    def largest(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(-1, 3)
        best = np.full(len(x), -np.inf)
        for i in order:
            low, high = boxes[i]
            gap = np.linalg.norm(np.maximum(np.maximum(low - x, x - high), 0.0), axis=1)
            bound = np.where(gap > 0, -gap, 0.5 * float((high - low).min()))
            need = np.flatnonzero(bound > best)
            if len(need):
                best[need] = np.maximum(best[need], functions[i](x[need]))
        return best

    return largest


def _pad_columns(pieces: np.ndarray, width: int) -> np.ndarray:
    if pieces.shape[1] == width:
        return pieces
    return np.concatenate([pieces, np.repeat(pieces[:, :1], width - pieces.shape[1], axis=1)], axis=1)


# ---------------------------------------------------------------------------- solving


def solve_cover(problem: CoverProblem, settings: CoverSettings = CoverSettings()) -> SphereCover:
    """The fewest spheres (at most ``settings.max_spheres``) covering every piece, with the
    smallest worst slack this method finds; radii and slack computed exactly in float64."""
    problem = _coarsened(problem, settings)
    cost = _cost_matrix(problem.points, problem.pieces, problem.candidates, problem.depth)
    floor = float(cost.min(axis=0).max())  # no choice among the candidates does better
    tolerance = max(settings.target_slack, floor)
    chosen = _greedy_cover(cost, tolerance, settings.max_spheres)
    if chosen is None:  # too many spheres at the target: the least tolerance that fits the cap
        low, high = tolerance, float(cost.max(axis=1).min())
        chosen = _greedy_cover(cost, high, settings.max_spheres)
        for _ in range(10):
            middle = 0.5 * (low + high)
            attempt = _greedy_cover(cost, middle, settings.max_spheres)
            if attempt is None:
                low = middle
            else:
                high, chosen = middle, attempt
    chosen = _refine_on_grid(cost, np.asarray(chosen))
    owner = cost[chosen].argmin(axis=0)
    centers, depth = problem.candidates[chosen], problem.depth[chosen]
    spacing = _grid_spacing(problem.candidates)
    centers, depth = _search_off_grid(problem, owner, centers, depth, spacing)
    owner = _cost_matrix(problem.points, problem.pieces, centers, depth).argmin(axis=0)
    return _exact_spheres(problem, owner, centers, depth)


def _coarsened(problem: CoverProblem, settings: CoverSettings) -> CoverProblem:
    """At most ``max_pieces`` pieces (those whose centroids share a grid cell merged into one:
    the union of their points) and ``max_candidates`` candidates (every k-th)."""
    pieces, candidates, depth = problem.pieces, problem.candidates, problem.depth
    if len(pieces) > settings.max_pieces:
        centroids = problem.points[pieces].mean(axis=1)
        low, high = centroids.min(axis=0), centroids.max(axis=0)
        cells = max(1, int(settings.max_pieces ** (1 / 3)))
        key = np.floor((centroids - low) / np.maximum(high - low, 1e-12) * cells).clip(0, cells - 1).astype(np.int64)
        cell = (key[:, 0] * cells + key[:, 1]) * cells + key[:, 2]
        groups = [np.unique(pieces[cell == c]) for c in np.unique(cell)]
        width = max(len(g) for g in groups)
        pieces = np.stack([np.concatenate([g, np.repeat(g[:1], width - len(g))]) for g in groups])
    if len(candidates) > settings.max_candidates:
        step = int(math.ceil(len(candidates) / settings.max_candidates))
        candidates, depth = candidates[::step], depth[::step]
    return CoverProblem(problem.points, pieces, candidates, depth, problem.depth_at, problem.depth_estimate,
                        problem.careful_estimate)


def _cost_matrix(points, pieces, centers, depth) -> np.ndarray:
    """(G, N) float32: the radius a sphere at each centre needs to hold each piece, minus the
    centre's depth (only guides the choice: the spheres are recomputed in float64)."""
    cost = np.empty((len(centers), len(pieces)), dtype=np.float32)
    # squared distances by one product in float32, about the points' centre (|p|² - 2 p·c + |c|²:
    # errors of ~1e-7 of the squared extent, far below what guides the choice)
    middle = points.mean(axis=0) if len(points) else np.zeros(3)
    p = (points - middle).astype(np.float32)
    c = (np.asarray(centers, dtype=np.float64) - middle).astype(np.float32)
    p2 = (p * p).sum(axis=1)
    # each piece's distinct points once (rows are padded by repeating one, often many times over)
    ordered = np.sort(pieces, axis=1)
    distinct = np.ones(ordered.shape, dtype=bool)
    distinct[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    flat = ordered[distinct]
    starts = np.concatenate([[0], np.cumsum(distinct.sum(axis=1))[:-1]])
    rows = max(1, _BLOCK_PAIRS // max(1, len(flat)))
    for start in range(0, len(centers), rows):
        block = c[start : start + rows]
        squared = p2[None, :] - 2.0 * (block @ p.T) + (block * block).sum(axis=1)[:, None]
        cost[start : start + rows] = np.maximum.reduceat(squared[:, flat], starts, axis=1)
    np.sqrt(np.maximum(cost, 0.0), out=cost)
    cost -= np.asarray(depth, dtype=np.float32)[:, None]
    return cost


def _greedy_cover(cost: np.ndarray, tolerance: float, cap: int) -> list[int] | None:
    """Candidates whose spheres of slack <= tolerance cover every piece (greedy set cover),
    or None when more than ``cap`` would be needed."""
    covers = cost <= np.float32(tolerance)
    uncovered = np.ones(cost.shape[1], dtype=bool)
    chosen: list[int] = []
    while uncovered.any():
        if len(chosen) == cap:
            return None
        gains = covers[:, uncovered].sum(axis=1)
        best = int(gains.argmax())
        if gains[best] == 0:
            return None
        chosen.append(best)
        uncovered &= ~covers[best]
    return chosen


def _refine_on_grid(cost: np.ndarray, chosen: np.ndarray, rounds: int = 4) -> np.ndarray:
    """Alternate: each piece to the chosen sphere where it costs least; each sphere's centre to
    the candidate of least worst cost over its pieces. Neither step raises the worst slack."""
    for _ in range(rounds):
        owner = cost[chosen].argmin(axis=0)
        moved = chosen.copy()
        for k in range(len(chosen)):
            mine = owner == k
            if mine.any():
                moved[k] = int(cost[:, mine].max(axis=1).argmin())
        if np.array_equal(moved, chosen):
            break
        chosen = moved
    owner = cost[chosen].argmin(axis=0)
    return chosen[np.unique(owner)]  # drop spheres left with no piece


def _grid_spacing(candidates: np.ndarray) -> float:
    extent = float(np.ptp(candidates, axis=0).max()) if len(candidates) > 1 else 0.0
    return max(extent / 10.0, 1e-6)


#: The 14 steps to a cube's face centres and corners, for the pattern search.
_STEPS = np.array(
    [(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1) if abs(i) + abs(j) + abs(k) in (1, 3)],
    dtype=np.float64,
)


def _search_off_grid(problem: CoverProblem, owner, centers, depth, spacing: float, rounds: int = 6):
    """Move each sphere's centre (its pieces fixed) by pattern search with halving steps to
    lower its slack ``max |p - c| - depth(c)``: centres are no longer bound to the grid."""
    centers, depth = centers.copy(), depth.copy()
    held = [problem.points[np.unique(problem.pieces[owner == k])] for k in range(len(centers))]
    current = np.array([np.linalg.norm(h - c, axis=1).max() - d for h, c, d in zip(held, centers, depth)])
    step = spacing / 2
    for _ in range(rounds):
        trial = (centers[:, None, :] + step * _STEPS[None]).reshape(-1, 3)
        trial_depth = problem.depth_at(trial).reshape(len(centers), len(_STEPS))
        trial = trial.reshape(len(centers), len(_STEPS), 3)
        for k, points in enumerate(held):
            radius = np.linalg.norm(points[None, :, :] - trial[k][:, None, :], axis=-1).max(axis=1)
            slack = radius - trial_depth[k]
            best = int(slack.argmin())
            if slack[best] < current[k]:
                centers[k], depth[k], current[k] = trial[k, best], trial_depth[k, best], slack[best]
        step /= 2
    return centers, depth


def _exact_spheres(problem: CoverProblem, owner, centers, depth) -> SphereCover:
    radii = np.zeros(len(centers))
    for k in range(len(centers)):
        points = problem.points[np.unique(problem.pieces[owner == k])]
        radii[k] = np.linalg.norm(points - centers[k], axis=1).max() if len(points) else 0.0
    keep = radii > 0
    slack = np.maximum(radii - depth, 0.0)
    return SphereCover(centers[keep].copy(), radii[keep], slack[keep])


# ---------------------------------------------------------------------------- primitives


def cover_problem_for_shape(shape: CollisionShape, settings: CoverSettings, mesh=None) -> CoverProblem:
    """The problem for one URDF shape in its link's frame (``mesh``: the loaded trimesh for a
    'mesh' shape, already scaled). Not for spheres: :func:`exact_sphere_cover` covers those."""
    if shape.kind == "box":
        problem = box_problem(np.asarray(shape.size) / 2, settings)
    elif shape.kind == "cylinder":
        problem = round_problem(shape.radius, shape.length, False, settings)
    elif shape.kind == "capsule":
        problem = round_problem(shape.radius, shape.length, True, settings)
    elif shape.kind == "mesh":
        problem = mesh_problem(mesh, settings)
    else:
        raise ValueError(f"{shape.describe()}: no cover problem for kind '{shape.kind}'")
    return problem.transformed(shape.origin)


def exact_sphere_cover(shape: CollisionShape) -> SphereCover:
    """A URDF ``<sphere>`` is its own cover: one sphere, slack 0, in the link frame."""
    return SphereCover(shape.origin[None, :3, 3].copy(), np.array([shape.radius]), np.zeros(1))


def box_depth(half_extents: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(M,) signed distance (m, positive inside) of points x (M, 3) to the box [-h, h]."""
    q = np.abs(x) - half_extents
    return -(np.linalg.norm(np.maximum(q, 0.0), axis=1) + np.minimum(q.max(axis=1), 0.0))


def cylinder_depth(radius: float, length: float, x: np.ndarray) -> np.ndarray:
    """(M,) signed distance (m, positive inside) to the z-axis cylinder centred on the origin."""
    q = np.stack([np.linalg.norm(x[:, :2], axis=1) - radius, np.abs(x[:, 2]) - length / 2], axis=1)
    return -(np.linalg.norm(np.maximum(q, 0.0), axis=1) + np.minimum(q.max(axis=1), 0.0))


def capsule_depth(radius: float, length: float, x: np.ndarray) -> np.ndarray:
    """(M,) signed distance (m, positive inside) to the z-axis capsule centred on the origin."""
    axial_gap = np.maximum(np.abs(x[:, 2]) - length / 2, 0.0)
    return radius - np.hypot(np.linalg.norm(x[:, :2], axis=1), axial_gap)


def _grid(half_extents: np.ndarray, cells_on_longest: int) -> np.ndarray:
    """(G, 3) cell centres of a grid over [-h, h], an odd number of cells per axis (so the
    mid-planes are on it), about ``cells_on_longest`` along the longest."""
    spacing = 2 * half_extents.max() / cells_on_longest
    axes = []
    for h in half_extents:
        n = max(1, int(math.ceil(2 * h / spacing)))
        n += 1 - n % 2
        axes.append((np.arange(n) + 0.5) / n * 2 * h - h)
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def _piece_size(dimensions: np.ndarray, settings: CoverSettings) -> float:
    """Piece size (m) for a primitive: the longest side / ``piece_cells``, but no more than
    a quarter of the shortest (a sphere over a thin part holds little of it), nor under the
    longest / 48."""
    longest, shortest = float(dimensions.max()), float(dimensions.min())
    return max(min(longest / settings.piece_cells, shortest / 4), longest / 48)


def box_problem(half_extents: np.ndarray, settings: CoverSettings) -> CoverProblem:
    """A box centred on its frame's origin: its faces split into triangles; depth exact."""
    import trimesh

    h = np.asarray(half_extents, dtype=np.float64)
    box = trimesh.creation.box(extents=2 * h)
    points, faces = trimesh.remesh.subdivide_to_size(box.vertices, box.faces, max_edge=_piece_size(2 * h, settings))

    def depth_at(x):
        return box_depth(h, x)

    longest = int(h.argmax())
    axis = np.zeros((4 * settings.grid_cells + 1, 3))
    axis[:, longest] = np.linspace(-h[longest], h[longest], len(axis))  # finer along the middle
    candidates = np.concatenate([_grid(h, settings.grid_cells), axis])
    return CoverProblem(np.asarray(points), np.asarray(faces, dtype=np.int64), candidates, depth_at(candidates), depth_at)


def round_problem(radius: float, length: float, capped: bool, settings: CoverSettings) -> CoverProblem:
    """A cylinder (``capped`` False) or capsule (True) of ``radius`` whose cylindrical part of
    ``length`` runs along z, centred on the origin. Pieces: circumscribed prisms of the side,
    of flat end sectors (cylinder) or of hemisphere patches (capsule). Depth: exact."""
    R, half = float(radius), float(length) / 2
    top = half + R if capped else half
    size = _piece_size(np.array([2 * R, 2 * top]), settings)
    sectors = max(24, int(math.ceil(2 * math.pi * R / size)))
    theta = np.linspace(0.0, 2 * math.pi, sectors + 1)
    z = np.linspace(-half, half, max(1, int(math.ceil(2 * half / size))) + 1)
    pieces = [_side_piece(R, theta[i], theta[i + 1], z[j], z[j + 1]) for i in range(sectors) for j in range(len(z) - 1)]
    if capped:
        rings = max(4, int(math.ceil(0.5 * math.pi * R / size)))
        polar = np.linspace(0.0, 0.5 * math.pi, rings + 1)
        for sign in (1.0, -1.0):
            for i in range(sectors):
                for j in range(rings):
                    pieces.append(_cap_piece(R, polar[j], polar[j + 1], theta[i], theta[i + 1], sign, half))
    else:
        radial = np.linspace(0.0, R, max(1, int(math.ceil(R / size))) + 1)
        for height in (half, -half):
            for i in range(sectors):
                for j in range(len(radial) - 1):
                    pieces.append(_disc_piece(radial[j], radial[j + 1], theta[i], theta[i + 1], height))
    width = max(len(p) for p in pieces)
    points = np.concatenate([_pad_rows(p, width) for p in pieces])
    indices = np.arange(len(points), dtype=np.int64).reshape(len(pieces), width)

    def depth_at(x):
        return capsule_depth(R, length, x) if capped else cylinder_depth(R, length, x)

    axis = np.zeros((4 * settings.grid_cells + 1, 3))
    axis[:, 2] = np.linspace(-half, half, len(axis))  # the medial axis, finer than the grid
    candidates = np.concatenate([_grid(np.array([R, R, top]), settings.grid_cells), axis])
    depth = depth_at(candidates)
    inside = depth > 0
    return CoverProblem(points, indices, candidates[inside], depth[inside], depth_at)


def _pad_rows(points: np.ndarray, width: int) -> np.ndarray:
    return np.concatenate([points, np.repeat(points[:1], width - len(points), axis=0)])


def _unit(theta: float) -> np.ndarray:
    return np.array([math.cos(theta), math.sin(theta)])


def _side_piece(R: float, theta0: float, theta1: float, z0: float, z1: float) -> np.ndarray:
    """(6, 3): prism over the triangle of an arc's ends and their tangents' crossing, z0..z1;
    it holds the side patch θ0..θ1 × z0..z1 of the cylinder of radius R."""
    arc = _arc_triangle(R, theta0, theta1)
    return np.concatenate([np.c_[arc, np.full(3, z0)], np.c_[arc, np.full(3, z1)]])


def _arc_triangle(R: float, theta0: float, theta1: float) -> np.ndarray:
    """(3, 2): the arc's two ends and the crossing of its end tangents (holds the arc, < π)."""
    middle, half_angle = 0.5 * (theta0 + theta1), 0.5 * (theta1 - theta0)
    return np.stack([R * _unit(theta0), R * _unit(theta1), R / math.cos(half_angle) * _unit(middle)])


def _disc_piece(rho0: float, rho1: float, theta0: float, theta1: float, height: float) -> np.ndarray:
    """(5, 3) points whose hull holds the annular sector ρ0..ρ1 × θ0..θ1 at z = height: the
    inner arc lies beyond its chord, the outer one inside its tangent triangle."""
    flat = np.concatenate([[rho0 * _unit(theta0), rho0 * _unit(theta1)], _arc_triangle(rho1, theta0, theta1)])
    return np.c_[flat, np.full(5, height)]


def _cap_piece(R, phi0, phi1, theta0, theta1, sign, half, sides: int = 8) -> np.ndarray:
    """(2·sides, 3) points whose hull holds the patch polar φ0..φ1 (from the ±z axis) ×
    azimuth θ0..θ1 of the hemisphere of radius R centred at z = ±half.

    The patch lies within angle α of its middle direction m (α: the largest angle to its
    corners, where the extremes of a latitude-longitude cell are), so in the slab
    R cos α <= x·m <= R at distance <= R sin α from the m axis: a prism on a circumscribed
    polygon of that circle."""

    def direction(phi, theta):
        return np.array([math.sin(phi) * math.cos(theta), math.sin(phi) * math.sin(theta), sign * math.cos(phi)])

    m = direction(0.5 * (phi0 + phi1), 0.5 * (theta0 + theta1))
    corners = [direction(p, t) for p in (phi0, phi1) for t in (theta0, theta1)]
    alpha = max(math.acos(min(1.0, float(m @ c))) for c in corners)
    u = np.cross(m, [1.0, 0.0, 0.0] if abs(m[0]) < 0.9 else [0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(m, u)
    ring = R * math.sin(alpha) / math.cos(math.pi / sides)
    angles = 2 * math.pi * np.arange(sides) / sides
    polygon = ring * (np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * v)
    centre = np.array([0.0, 0.0, sign * half])
    return np.concatenate([centre + R * math.cos(alpha) * m + polygon, centre + R * m + polygon])


# ---------------------------------------------------------------------------- meshes


def mesh_problem(mesh, settings: CoverSettings, across: bool = False) -> CoverProblem:
    """A triangle mesh (trimesh.Trimesh) in its own frame. Pieces: its triangles, split until no
    edge is longer than the longest side / ``piece_cells`` (``across``: at their long edges only,
    :func:`.triangle_refinement.refine_to_size`, as the sphere trees want them; else every edge
    at its midpoint, which the coarse covers' merged pieces were tuned with: a sliver becomes rows
    of slivers). Candidates: grid points (inside ones only, for a watertight mesh) and the
    original triangles' centroids (on the surface: depth 0)."""
    import trimesh

    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    centre, half = 0.5 * (low + high), np.maximum(0.5 * (high - low), 1e-9)
    if across:
        points, pieces = refine_to_size(vertices, faces, max_edge=2 * half.max() / settings.piece_cells)
    else:
        points, pieces = trimesh.remesh.subdivide_to_size(vertices, faces, max_edge=2 * half.max() / settings.piece_cells)
        points, pieces = np.asarray(points), np.asarray(pieces, dtype=np.int64)
    depth_at = MeshDepth(vertices[faces], bool(mesh.is_watertight))
    grid = centre + _grid(half, settings.grid_cells)
    if depth_at.closed:
        grid = grid[depth_at.inside(grid)]
        grid_depth = depth_at.distance(grid)
    else:
        grid_depth = -depth_at.distance(grid)
    centroids = depth_at.triangles.mean(axis=1)
    step = max(1, len(centroids) // 512)
    centroids = centroids[::step]
    candidates = np.concatenate([grid, centroids])
    depth = np.concatenate([grid_depth, np.zeros(len(centroids))])
    # the estimate's side assumes consistent outward winding (the winding number does not); a mesh
    # with a few faces the wrong way round misleads it only near them, where the search is redone
    # with the careful estimate, then the exact bound (see CoverProblem). It is taken per closed
    # shell (shells may cross).
    estimate, careful = depth_at.estimate, depth_at.careful_estimate
    if depth_at.closed and mesh.body_count > 1:
        estimate, careful = _shells_estimates([np.asarray(body.triangles)
                                               for body in mesh.split(only_watertight=False) if len(body.faces)])
    return CoverProblem(points, pieces, candidates, depth, depth_at, estimate, careful)


def _shells_estimates(shells) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    """The estimate and the careful estimate of :class:`MeshDepth` for a mesh of several closed
    shells (T_i, 3, 3): the distance to the nearest of their triangles, positive inside any shell
    (as the winding number says, but for cavities). A shell is looked at only where its bounding
    box is nearer than the nearest triangle so far (the largest shells first)."""
    nearest = [NearestTriangles(t) for t in shells]
    boxes = [(t.reshape(-1, 3).min(axis=0), t.reshape(-1, 3).max(axis=0)) for t in shells]
    order = sorted(range(len(shells)), key=lambda i: -float(np.prod(boxes[i][1] - boxes[i][0])))

    def estimate(x: np.ndarray, candidates: int | None = None) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(-1, 3)
        distance, inside = np.full(len(x), np.inf), np.zeros(len(x), dtype=bool)
        for i in order:
            low, high = boxes[i]
            gap = np.linalg.norm(np.maximum(np.maximum(low - x, x - high), 0.0), axis=1)
            need = np.flatnonzero(gap < distance)
            if len(need):
                d, outside = nearest[i](x[need], candidates)
                distance[need] = np.minimum(distance[need], d)
                inside[need] |= ~outside
        return np.where(inside, distance, -distance)

    return estimate, lambda x: estimate(x, CAREFUL_CANDIDATES)


#: Nearest surface samples whose triangles the careful estimate measures (the fast one: 6). On
#: the MBM Fetch's torso (a box-like shell whose large faces sit beside small ones) the fast
#: estimate misled the search of 6,267 of 40,535 tree nodes, 24 candidates 38.
CAREFUL_CANDIDATES = 24


class MeshDepth:
    """Signed distance (m, positive inside) to a triangle mesh: the distance to the surface,
    positive where the winding number says inside when the mesh is ``closed`` (watertight);
    for an open mesh minus the distance to the surface (the surface is then the geometry).
    ``triangles`` (T, 3, 3)."""

    def __init__(self, triangles: np.ndarray, closed: bool):
        self.triangles, self.closed = triangles, closed
        self.hierarchy = TriangleHierarchy(triangles)
        self._nearest: NearestTriangles | None = None

    def inside(self, x: np.ndarray) -> np.ndarray:
        return np.abs(self.hierarchy.winding_numbers(x)) > 0.5

    def distance(self, x: np.ndarray) -> np.ndarray:
        """(M,) the exact distance (m) from points x (M, 3) to the surface."""
        return self.hierarchy.distances(x)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        distance = self.distance(x)
        return np.where(self.inside(x), distance, -distance) if self.closed else -distance

    def estimate(self, x: np.ndarray) -> np.ndarray:
        """What ``self(x)`` returns, estimated from the nearest few triangles (a k-d tree, no sum
        over the whole mesh): the distance is exact when the nearest triangle is among them, the
        side is the pseudo-normal's (it assumes outward-facing triangles, as a watertight mesh with
        consistent winding has). Not a bound: it only guides searches (see :class:`CoverProblem`)."""
        return self._estimated(x, None)

    def careful_estimate(self, x: np.ndarray) -> np.ndarray:
        """:meth:`estimate` from :data:`CAREFUL_CANDIDATES` nearest samples' triangles: about
        twice its cost, and it misses the nearest triangle far less often (a large face beside
        small ones, whose samples crowd the nearest few)."""
        return self._estimated(x, CAREFUL_CANDIDATES)

    def _estimated(self, x: np.ndarray, candidates: int | None) -> np.ndarray:
        if self._nearest is None:
            self._nearest = NearestTriangles(self.triangles)
        distance, outside = self._nearest(x, candidates)
        return np.where(outside, -distance, distance) if self.closed else -distance


class NearestTriangles:
    """Distance from points to a triangle soup (T, 3, 3) and the side of the surface they are on,
    from the triangles of the ``candidates`` nearest of points spread over every triangle (the
    centroids of its parts when split to edges of at most 1/16 of the mesh's extent; a k-d tree over
    more points is slower for points deep inside, which are nearly as far from many of them). The
    side: the sign of the angle-weighted pseudo-normal (Bærentzen and Aanæs) of the nearest point's
    face, edge or corner, right for a closed outward-facing surface. A triangle soup whose signed
    volume is negative (inward-facing) has its normals turned."""

    def __init__(self, triangles: np.ndarray, candidates: int = 6):
        import trimesh
        from scipy.spatial import cKDTree

        tri = np.asarray(triangles, dtype=np.float64).reshape(-1, 3, 3)
        # corner coordinates: self.a[i] (T,) the i-th coordinate of every triangle's corner a
        self.a, self.b, self.c = (np.ascontiguousarray(tri[:, j].T) for j in range(3))
        self.pseudo_normals = _pseudo_normals(tri)
        extent = float(np.ptp(tri.reshape(-1, 3), axis=0).max()) if len(tri) else 0.0
        vertices, faces, owner = trimesh.remesh.subdivide_to_size(
            tri.reshape(-1, 3), np.arange(3 * len(tri)).reshape(-1, 3), max_edge=max(extent / 16, 1e-9), return_index=True)
        self.owner = np.asarray(owner, dtype=np.int64)
        self.tree = cKDTree(np.asarray(vertices)[np.asarray(faces)].mean(axis=1))
        self.k = min(candidates, len(self.owner))

    def __call__(self, x: np.ndarray, candidates: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(M,) distances (m) and (M,) bool: outside, for points x (M, 3); ``candidates``: nearest
        samples whose triangles are measured (None: the constructor's)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, 3)
        k = self.k if candidates is None else min(candidates, len(self.owner))
        distance, outside = np.empty(len(x)), np.empty(len(x), dtype=bool)
        for start in range(0, len(x), 8192):
            p = x[start : start + 8192]
            sample_distance, nearest = self.tree.query(p, k=k)
            sample_distance, nearest = sample_distance.reshape(len(p), -1), nearest.reshape(len(p), -1)
            triangle = self.owner[nearest]  # (P, k)
            point = tuple(p[:, i, None] for i in range(3))
            closest, feature = _closest_points(point, *(tuple(corner[i][triangle] for i in range(3))
                                                        for corner in (self.a, self.b, self.c)))
            offset = [u - v for u, v in zip(point, closest)]
            squared = offset[0] * offset[0] + offset[1] * offset[1] + offset[2] * offset[2]
            squared = np.where(np.isnan(squared), np.inf, squared)
            best = squared.argmin(axis=1)
            rows = np.arange(len(p))
            found = np.isfinite(squared[rows, best])
            normal = self.pseudo_normals[triangle[rows, best], feature[rows, best]]
            side = sum(offset[i][rows, best] * normal[:, i] for i in range(3))
            distance[start : start + len(p)] = np.where(found, np.sqrt(np.where(found, squared[rows, best], 0.0)),
                                                        sample_distance[:, 0])
            outside[start : start + len(p)] = ~found | (side >= 0)
        return distance, outside


def _pseudo_normals(tri: np.ndarray) -> np.ndarray:
    """(T, 7, 3): per triangle the pseudo-normals of its face, corners a, b, c (angle-weighted sums
    of the unit normals of the triangles at that point) and edges ab, ac, bc (sums of the two
    faces'), the features being found by their coordinates (a triangle soup is accepted)."""
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    if np.einsum("ij,ij->", tri[:, 0], normal) < 0:  # 6 × the signed volume: inward-facing
        normal = -normal
    length = np.linalg.norm(normal, axis=1)
    unit = normal / np.where(length > 0, length, 1.0)[:, None]
    _, corner = np.unique(tri.reshape(-1, 3), axis=0, return_inverse=True)
    corner = corner.reshape(-1, 3)
    angle = np.stack([_corner_angle(tri[:, i], tri[:, (i + 1) % 3], tri[:, (i + 2) % 3]) for i in range(3)], 1)
    at_corner = np.zeros((corner.max() + 1 if corner.size else 0, 3))
    np.add.at(at_corner, corner.ravel(), (angle[:, :, None] * unit[:, None, :]).reshape(-1, 3))
    pairs = np.sort(np.stack([corner[:, [0, 1]], corner[:, [0, 2]], corner[:, [1, 2]]], 1), axis=-1)
    _, edge = np.unique(pairs.reshape(-1, 2), axis=0, return_inverse=True)
    at_edge = np.zeros((edge.max() + 1 if edge.size else 0, 3))
    np.add.at(at_edge, edge.ravel(), np.repeat(unit, 3, axis=0))
    return np.concatenate([unit[:, None], at_corner[corner], at_edge[edge.reshape(-1, 3)]], axis=1)


def _corner_angle(corner: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    u, v = b - corner, c - corner
    return np.arctan2(np.linalg.norm(np.cross(u, v), axis=-1), (u * v).sum(-1))


def _closest_points(p, a, b, c):
    """The closest points of triangles to points p (Ericson, Real-Time Collision Detection 5.1.5)
    and the feature they lie on: 0 the face, 1-3 the corners a, b, c, 4-6 the edges ab, ac, bc.
    Every argument and the closest point: a tuple of the x, y, z coordinate arrays (broadcast
    together; componentwise is several times faster in numpy than reductions over an axis of 3).
    Degenerate triangles may give NaN."""
    ab, ac = [u - v for u, v in zip(b, a)], [u - v for u, v in zip(c, a)]
    ap, bp, cp = [u - v for u, v in zip(p, a)], [u - v for u, v in zip(p, b)], [u - v for u, v in zip(p, c)]

    def dot(u, v):
        return u[0] * v[0] + u[1] * v[1] + u[2] * v[2]

    d1, d2, d3, d4, d5, d6 = dot(ab, ap), dot(ac, ap), dot(ab, bp), dot(ac, bp), dot(ab, cp), dot(ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        total = va + vb + vc
        v, w = vb / total, vc / total  # the interior
        feature = np.zeros(v.shape, dtype=np.int64)
        bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        cases = [  # (region, v, w, feature) in Ericson's order: the first that holds wins
            ((d1 <= 0) & (d2 <= 0), 0.0, 0.0, 1),
            ((d3 >= 0) & (d4 <= d3), 1.0, 0.0, 2),
            ((vc <= 0) & (d1 >= 0) & (d3 <= 0), d1 / (d1 - d3), 0.0, 4),
            ((d6 >= 0) & (d5 <= d6), 0.0, 1.0, 3),
            ((vb <= 0) & (d2 >= 0) & (d6 <= 0), 0.0, d2 / (d2 - d6), 5),
            ((va <= 0) & (d4 >= d3) & (d5 >= d6), 1.0 - bc, bc, 6),
        ]
        for region, cv, cw, f in reversed(cases):
            v, w, feature = np.where(region, cv, v), np.where(region, cw, w), np.where(region, f, feature)
    return tuple(a[i] + v * ab[i] + w * ac[i] for i in range(3)), feature
