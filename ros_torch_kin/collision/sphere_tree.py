"""Tight conservative sphere covers as binary sphere trees (pure numpy).

The coarse covers of :mod:`.sphere_cover` (a dozen spheres per link) keep the optimiser fast but
lie 10-30 mm outside a link's surface. The verdict that decides whether a motion is valid needs
a model that is still conservative (every surface point inside some sphere, so "free" is free for
the exact geometry) yet only a few millimetres loose. This module builds one.

Method (a top-down sphere tree over the pieces of a :class:`.sphere_cover.CoverProblem`):

* A node holds a set of pieces (small convex sets given by their points: mesh triangles,
  circumscribed prisms of a cylinder's patches, ...). Its sphere holds every point of every
  piece, so it holds the pieces (convexity), and its *slack* is ``r - depth(c)`` with ``depth``
  the problem's lower bound on the signed distance to the solid (positive inside): every point
  of the sphere is within that distance of the solid (see :mod:`.sphere_cover`).
* The centre minimises ``max |p - c| - depth(c)`` by a pattern search (halving steps, 14
  directions) from the points' bounding-box centre: for a patch of surface, that pushes the
  centre inward, where a larger sphere pokes out less.
* A node whose slack exceeds the target is split in two at the median of its pieces' centroids
  along their widest axis; a single triangle is split into four at its edge midpoints (down to
  ``min_edge``). Leaves are the tight cover; the nodes at ``group_depth`` group the leaves for
  the checker's broad phase (see :class:`.collision_checker.CollisionChecker`).

Everything is deterministic. Frames: the problem's (a link's). Units: m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .sphere_cover import _STEPS, CoverProblem, SphereCover


@dataclass(frozen=True)
class TreeSettings:
    """``target_slack`` (m): a leaf is split while its slack exceeds this (6 mm by default: the
    Panda gets ~2,700 leaves; 3 mm gives ~11,000 and a verdict several times slower); ``min_edge`` (m): a
    triangle is not split below this edge length; ``max_leaves``: splitting stops (the worst
    leaves keep a larger slack) when a link would get more; ``group_depth``: tree depth whose
    nodes group the leaves (at most 2**group_depth groups per link); ``search_rounds``: pattern
    search rounds per node."""

    target_slack: float = 0.006
    min_edge: float = 0.0015
    max_leaves: int = 4096
    group_depth: int = 3
    search_rounds: int = 8

    def __post_init__(self):
        if not (math.isfinite(self.target_slack) and self.target_slack > 0):
            raise ValueError(f"target_slack must be positive (m), got {self.target_slack}")
        if self.max_leaves < 1 or self.group_depth < 0 or self.search_rounds < 0:
            raise ValueError("max_leaves must be ≥ 1, group_depth and search_rounds ≥ 0")


@dataclass(frozen=True, eq=False)
class TreeCover:
    """The leaves of a sphere tree (a :class:`SphereCover`) and ``groups`` (K,) int64: the index of
    each leaf's group (its ancestor at the group depth), numbered from 0 per cover."""

    leaves: SphereCover
    groups: np.ndarray

    @staticmethod
    def concatenate(covers) -> "TreeCover":
        covers = [c for c in covers if c.leaves.num_spheres]
        offsets = np.cumsum([0] + [int(c.groups.max()) + 1 for c in covers])
        return TreeCover(SphereCover.concatenate([c.leaves for c in covers]),
                         np.concatenate([c.groups + o for c, o in zip(covers, offsets)]) if covers
                         else np.zeros(0, dtype=np.int64))


def build_sphere_tree(problem: CoverProblem, settings: TreeSettings = TreeSettings()) -> TreeCover:
    """Leaves (and their groups) of the sphere tree over ``problem``'s pieces (module doc)."""
    all_points = np.asarray(problem.points, dtype=np.float64)
    # an upper estimate of the deepest point of the solid (the candidates' depth is exact or a
    # lower bound on a grid; one grid step more covers what lies between)
    deepest = float(np.max(problem.depth, initial=0.0)) * 1.25 + _grid_step(problem.candidates)
    pieces = [sorted(set(map(int, row))) for row in problem.pieces]
    # a node: (piece indices, depth, group path: its ancestor at the group depth)
    level = [(list(range(len(pieces))), 0, (0, 0))] if pieces else []
    leaves: list[tuple[np.ndarray, float, float, tuple[int, int]]] = []
    min_edge2 = settings.min_edge ** 2
    while level:
        held = [all_points[np.unique(np.concatenate([pieces[i] for i in node]))] for node, _, _ in level]
        # a node's sphere is at least half its widest extent; one that cannot get within the
        # target even at the deepest centre is split without searching for its centre
        hopeless = np.array([0.5 * np.ptp(h, axis=0).max() - deepest > settings.target_slack for h in held])
        inward = [_inward_normal(all_points, pieces, node) for node, _, _ in level]
        centers, radius, slack = _best_centres(problem, held, inward, settings.search_rounds, ~hopeless, deepest,
                                               settings.target_slack)
        pending = len(leaves) + len(level)
        following, new_points = [], []
        for k, (node, depth, path) in enumerate(level):
            def child(bit: int, path=path, depth=depth) -> tuple[int, int]:
                return (depth + 1, 2 * path[1] + bit) if depth < settings.group_depth else path

            if slack[k] <= settings.target_slack or pending >= settings.max_leaves:
                leaves.append((centers[k], radius[k], slack[k], path))
            elif len(node) > 1:
                left, right = _split(all_points, pieces, node)
                following += [(left, depth + 1, child(0)), (right, depth + 1, child(1))]
                pending += 1
            elif len(pieces[node[0]]) == 3 and _longest_edge2(all_points[pieces[node[0]]]) > 4 * min_edge2:
                a, b, c = pieces[node[0]]  # one triangle: four at its edge midpoints
                corners = all_points[[a, b, c]]
                ab, bc, ca = len(all_points) + 3 * len(new_points) + np.arange(3)
                new_points.append(0.5 * (corners + corners[[1, 2, 0]]))
                first = len(pieces)
                pieces += [[a, ab, ca], [ab, b, bc], [ca, bc, c], [ab, bc, ca]]
                following.append((list(range(first, first + 4)), depth + 1, child(0)))
                pending += 3
            else:  # a piece that cannot be split further keeps its slack
                leaves.append((centers[k], radius[k], slack[k], path))
        if new_points:
            all_points = np.concatenate([all_points] + new_points)
        level = following
    if not leaves:
        return TreeCover(SphereCover(np.zeros((0, 3)), np.zeros(0), np.zeros(0)), np.zeros(0, dtype=np.int64))
    paths = {path: g for g, path in enumerate(sorted({leaf[3] for leaf in leaves}))}
    cover = SphereCover(np.stack([leaf[0] for leaf in leaves]), np.array([leaf[1] for leaf in leaves]),
                        np.maximum(np.array([leaf[2] for leaf in leaves]), 0.0))
    return TreeCover(cover, np.array([paths[leaf[3]] for leaf in leaves], dtype=np.int64))


def _longest_edge2(corners: np.ndarray) -> float:
    return float(((corners - corners[[1, 2, 0]]) ** 2).sum(axis=1).max())


def _split(points: np.ndarray, pieces: list[list[int]], node: list[int]) -> tuple[list[int], list[int]]:
    """Two halves of a node's pieces: by the median of their centroids along the widest axis."""
    centroids = np.stack([points[pieces[i]].mean(axis=0) for i in node])
    axis = int(np.ptp(centroids, axis=0).argmax())
    order = np.argsort(centroids[:, axis], kind="stable")
    half = len(node) // 2
    nodes = np.asarray(node)
    return nodes[order[:half]].tolist(), nodes[order[half:]].tolist()


def _grid_step(candidates: np.ndarray) -> float:
    return float(np.ptp(candidates, axis=0).max()) / 8 if len(candidates) > 1 else 0.0


def _inward_normal(points: np.ndarray, pieces: list[list[int]], node: list[int]) -> np.ndarray:
    """The unit area-weighted inward normal of a node's triangles (outward-facing, as a closed
    mesh's are), or zero when it has none (other pieces, or normals that cancel)."""
    triangles = [pieces[i] for i in node if len(pieces[i]) == 3]
    if not triangles:
        return np.zeros(3)
    corners = points[np.asarray(triangles)]
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]).sum(axis=0)
    length = np.linalg.norm(normal)
    return -normal / length if length > 1e-12 else np.zeros(3)


#: Starting points tried along the inward normal: in units of the node's bounding-box diagonal,
#: and in fractions of the solid's greatest depth (a small patch is held best from deep inside).
_INWARD = np.array([0.0, 0.2, 0.5, -0.2])
#: Nodes whose best start is within this many targets are searched further.
_SEARCH_WITHIN = 3.0
_DEEP = np.array([0.04, 0.08, 0.15, 0.25, 0.4, 0.6, 0.8, 1.0])


def _best_centres(problem: CoverProblem, held: list[np.ndarray], inward: list[np.ndarray], rounds: int,
                  search: np.ndarray, deepest: float, target: float):
    """Per node (its points (n_k, 3), its inward normal): the centre of least slack among points
    along the inward normal from the bounding-box centre, improved by the pattern search (only
    where ``search``), the exact radius (farthest point) and the slack ``radius - depth``."""
    K = len(held)
    low = np.stack([h.min(axis=0) for h in held])
    high = np.stack([h.max(axis=0) for h in held])
    diagonal = np.linalg.norm(high - low, axis=1)
    start = 0.5 * (low + high)
    offsets = np.concatenate([diagonal[:, None] * _INWARD, np.broadcast_to(deepest * _DEEP, (K, len(_DEEP)))], axis=1)
    starts = start[:, None, :] + offsets[:, :, None] * np.stack(inward)[:, None, :]
    starts[~search, 1:] = starts[~search, :1]  # hopeless nodes: the box centre only
    start_depth = problem.depth_at(starts.reshape(-1, 3)).reshape(K, offsets.shape[1])
    centers, radius, slack = start.copy(), np.zeros(K), np.zeros(K)
    for k in range(K):
        r = np.sqrt(((held[k][None, :, :] - starts[k][:, None, :]) ** 2).sum(-1).max(axis=1))
        s = r - start_depth[k]
        best = int(s.argmin())
        centers[k], radius[k], slack[k] = starts[k, best], r[best], s[best]
    step = 0.2 * diagonal + 1e-9  # (K,)
    # the search only where it may bring a node to the target (the others are split anyway)
    searched = np.flatnonzero(search & (slack <= _SEARCH_WITHIN * target))
    for _ in range(rounds if len(searched) else 0):
        trial = centers[searched, None, :] + step[searched, None, None] * _STEPS[None]  # (k, 14, 3)
        trial_depth = problem.depth_at(trial.reshape(-1, 3)).reshape(len(searched), len(_STEPS))
        for i, k in enumerate(searched):
            r = np.sqrt(((held[k][None, :, :] - trial[i][:, None, :]) ** 2).sum(-1).max(axis=1))
            s = r - trial_depth[i]
            best = int(s.argmin())
            if s[best] < slack[k]:
                centers[k], radius[k], slack[k] = trial[i, best], r[best], s[best]
            else:
                step[k] *= 0.5
    return centers, radius, slack
