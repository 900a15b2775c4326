"""The tight collision model of a robot: a sphere tree per link from the URDF's ``<collision>``
elements (see :mod:`.sphere_tree`), as :class:`RobotSpheres` whose ``sphere_groups`` say which
leaves the checker's broad phase bounds together.

Open (not watertight) meshes: each connected piece that is not closed is replaced by its convex
hull, which contains it, so the cover stays conservative; its slack is then measured from the
hull. One warning per link names the file and what was done.

Covers are cached in memory and on disk (``$XDG_CACHE_HOME/ros_torch_kin/sphere_trees``, default
``~/.cache``; ``RTK_CACHE`` overrides the root), keyed by the mesh file's bytes, the shape, its
origin and the settings, so a robot is covered once per machine.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import astuple, replace
from pathlib import Path

import numpy as np
import torch

from ..kinematics import Chain
from .mesh_files import not_found_warning, read_link_mesh, resolve_mesh_path
from .urdf_spheres import _assemble as assemble_spheres
from .robot_spheres import LeafTriangles, RobotSpheres, SphereTiers
from .sphere_cover import CoverProblem, CoverSettings, SphereCover, cover_problem_for_shape, mesh_problem
from .sphere_tree import TreeCover, TreeSettings, build_sphere_tree
from .build_workers import WorkerPool, file_size, pool_or_own
from .urdf_geometry import CollisionShape, read_collision_shapes

#: How finely shapes are cut into pieces before the tree splits them further.
PIECES = CoverSettings(piece_cells=16, grid_cells=15, max_pieces=1 << 30, max_candidates=1 << 30)
#: cache key -> (the tree cover, (hulled, pieces, flat) of an open mesh)
_MEMORY: dict[str, tuple[TreeCover, tuple[int, int, int]]] = {}
#: Seconds of building in the caller after which the shapes left go to worker processes.
PARALLEL_AFTER = 1.0
#: Cache format version: bump when the method changes.
_VERSION = "13"


def cache_directory() -> Path:
    root = os.environ.get("RTK_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                       os.path.expanduser("~/.cache"), "ros_torch_kin")
    return Path(root) / "sphere_trees"


def robot_sphere_trees_from_urdf(
    urdf: str,
    chain: Chain,
    search_dirs=(),
    base_dir: str | os.PathLike | None = None,
    settings: TreeSettings = TreeSettings(),
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    use_cache: bool = True,
    workers: int | None = None,
    pool: WorkerPool | None = None,
) -> RobotSpheres:
    """Tight spheres (every leaf's slack ≤ ``settings.target_slack`` where the method reaches it)
    covering every link's collision geometry, grouped for the broad phase. Arguments as
    :func:`.urdf_spheres.robot_spheres_from_urdf`. A ``<sphere>`` is its own leaf (slack 0).

    ``workers``: processes that build the shapes missing from the cache side by side once a cold
    build has run ``PARALLEL_AFTER`` seconds (None: one per core this process may use; 1: all in
    this process); ``pool``: a :class:`.build_workers.WorkerPool` to use instead (a model build's,
    kept for its joint tables; its workers, when already started, take shapes at once). Each
    shape is built the same way whatever the count, so the covers do not depend on it."""
    shapes, warnings = read_collision_shapes(urdf)
    by_link: dict[str, list[CollisionShape]] = {}
    for shape in shapes:
        if chain.has_link(shape.link):
            by_link.setdefault(shape.link, []).append(shape)
        else:
            warnings.append(f"link '{shape.link}' has collision geometry but is not in the chain; skipped")
    ordered = [shape for link_shapes in by_link.values() for shape in link_shapes]
    trees = _shape_trees(ordered, settings, tuple(search_dirs), base_dir, warnings, use_cache, workers, pool)
    parts: dict[str, list[TreeCover]] = {}
    for shape, tree in zip(ordered, trees):
        if tree is not None and tree.leaves.num_spheres:
            parts.setdefault(shape.link, []).append(tree)
    covers = {link: TreeCover.concatenate(trees) for link, trees in parts.items()}
    return _assemble(chain, covers, warnings, device, dtype)


def _shape_trees(shapes, settings, search_dirs, base_dir, warnings, use_cache, workers, pool) -> list[TreeCover | None]:
    """Each shape's tree cover in its link's frame (None: its mesh is missing or unreadable), from
    the memory or disk cache, the others built (side by side when ``workers`` allows) and cached;
    warnings in the shapes' order."""
    found: list[tuple[TreeCover, tuple[int, int, int]] | None] = [None] * len(shapes)
    notes: list[list[str]] = [[] for _ in shapes]
    missing = []  # (index, shape, mesh path, cache key)
    for i, shape in enumerate(shapes):
        if shape.kind == "sphere":
            # its leaf is the sphere itself; as a "triangle", its centre (three times) grown by the radius
            found[i] = (TreeCover(SphereCover(np.zeros((1, 3)), np.array([shape.radius]), np.zeros(1)),
                                  np.zeros(1, dtype=np.int64),
                                  triangles=(np.zeros((1, 3, 3)), np.array([0, 1]), np.array([shape.radius]))), (0, 0, 0))
            continue
        path = None
        if shape.kind == "mesh":
            path, tried = resolve_mesh_path(shape.filename, search_dirs, base_dir)
            if path is None:
                notes[i].append(not_found_warning(shape.link, shape.filename, tried))
                continue
        key = _cache_key(shape, path, settings)
        found[i] = _cached(key) if use_cache else None
        if found[i] is None:
            missing.append((i, shape, path, key))
    # a mesh used by several links (a gripper's left and right fingers) is covered once: the key
    # holds everything but the origin, which is applied below
    first = {}
    for i, shape, path, key in missing:
        first.setdefault(key, (i, shape, path, key))
    built = dict(zip(first, _build_all(list(first.values()), settings, workers, pool)))
    for i, shape, path, key in missing:
        entry, built_notes = built[key]
        named = first[key][1].link  # the warnings name the link whose shape was built
        notes[i] += [note.replace(f"link '{named}'", f"link '{shape.link}'", 1) for note in built_notes]
        if entry is not None:
            found[i] = entry
    for key, (entry, _) in built.items():
        if entry is not None and use_cache:
            _store(cache_directory() / f"{key}.npz", *entry)
            _MEMORY[key] = entry
    trees = []
    for shape, entry, shape_notes in zip(shapes, found, notes):
        warnings += shape_notes
        if entry is None:
            trees.append(None)
            continue
        cover, (hulled, total, flat) = entry
        if total:  # an open mesh: the same warning from the cache as from a cold build
            warnings.append(_open_warning(shape, hulled, total, flat))
        trees.append(_transformed(cover, shape.origin))
    return trees


def _cache_key(shape: CollisionShape, path: Path | None, settings: TreeSettings) -> str:
    digest = hashlib.sha256(repr((_VERSION, shape.kind, shape.radius, shape.length, shape.size,
                                  tuple(shape.scale), astuple(settings), astuple(PIECES))).encode())
    if path is not None:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def _cached(key: str) -> tuple[TreeCover, tuple[int, int, int]] | None:
    """The entry from memory, else from the disk cache (then kept in memory), else None."""
    entry = _MEMORY.get(key)
    cached = cache_directory() / f"{key}.npz"
    if entry is None and cached.is_file():
        try:
            with np.load(cached) as data:
                tiers = (SphereCover(data["tier_centers"], data["tier_radii"], data["tier_slack"])
                         if "tier_of" in data else None)
                triangles = ((data["triangles"], data["triangle_start"], np.zeros(len(data["triangles"])))
                             if "triangle_start" in data else None)
                entry = (TreeCover(SphereCover(data["centers"], data["radii"], data["slack"]), data["groups"], tiers,
                                   data["tier_of"] if tiers is not None else None, triangles),
                         tuple(int(n) for n in data["open_pieces"]))
        except (OSError, ValueError, KeyError):
            return None
        _MEMORY[key] = entry
    return entry


def _build_all(missing, settings: TreeSettings, workers: int | None, pool: WorkerPool | None = None):
    """(entry or None, warnings) for each (index, shape, path, key) of ``missing``, in its order.

    Built in this process, smallest file first, while that takes under ``PARALLEL_AFTER`` (unless
    ``pool``'s workers run already): a worker's start (an interpreter importing torch, ~1 s) would
    cost a small robot more than its whole build. What is left then is shared with the worker
    processes (:mod:`.build_workers`: the largest files first, each shape taken by whichever
    process is free) when there are two shapes or more and more than one process; a worker's
    failure leaves its shapes to this process."""
    jobs = [(shape, path) for _, shape, path, _ in missing]
    results: list = [None] * len(jobs)
    order = sorted(range(len(jobs)), key=lambda j: file_size(jobs[j][1]))
    began = time.perf_counter()
    with pool_or_own(pool, workers) as pool:
        while order and ((time.perf_counter() - began < PARALLEL_AFTER and not pool.warm) or len(order) < 2
                         or not pool.size):
            j = order.pop(0)
            results[j] = build_shape_tree(*jobs[j], settings)
        if order:
            shared = pool.map(_shape_job, [(*jobs[j], settings) for j in order], [file_size(jobs[j][1]) for j in order])
            for j, result in zip(order, shared):
                results[j] = result
    return results


def _shape_job(shape: CollisionShape, path, settings: TreeSettings):
    """A worker's job (:mod:`.build_workers`): :func:`build_shape_tree`, looked up when called."""
    return build_shape_tree(shape, path, settings)


def build_shape_tree(shape: CollisionShape, path, settings: TreeSettings):
    """(the tree cover of one shape in its own frame with its open-mesh counts, or None; warnings)."""
    notes: list[str] = []
    opened = (0, 0, 0)
    if shape.kind == "mesh":
        mesh = read_link_mesh(shape, path, notes)
        if mesh is None:
            return None, notes
        problem, opened = _closed_mesh_problem(mesh)
    else:
        problem = cover_problem_for_shape(replace(shape, origin=np.eye(4)), PIECES)
    return (build_sphere_tree(problem, settings), opened), notes


def _closed_mesh_problem(mesh) -> tuple[CoverProblem, tuple[int, int, int]]:
    """The cover problem of a mesh made closed: every piece that is not watertight replaced by its
    convex hull (it contains the piece, so a cover of it covers the mesh), and (hulled pieces,
    pieces, flat pieces kept as surfaces)."""
    if mesh.is_watertight:
        return mesh_problem(mesh, PIECES, across=True), (0, 0, 0)
    pieces = mesh.split(only_watertight=False)
    closed, hulled = [], 0
    flat = 0
    for piece in pieces:
        if piece.is_watertight:
            closed.append(piece)
            continue
        try:
            hull = piece.convex_hull
        except Exception:  # fewer than 4 points off a plane: qhull cannot make a solid of it
            hull = None
        if hull is not None and hull.is_watertight and hull.volume > 0:
            closed.append(hull)
            hulled += 1
        else:  # a flat piece stays a surface: spheres on it, slack measured from the surface
            closed.append(piece)
            flat += 1
    problem = CoverProblem.union([mesh_problem(piece, PIECES, across=True) for piece in closed if len(piece.faces)])
    return problem, (hulled, len(pieces), flat)


def _open_warning(shape: CollisionShape, hulled: int, total: int, flat: int = 0) -> str:
    return (f"link '{shape.link}': mesh '{shape.filename}' is not closed ({total} pieces: {hulled} replaced by their "
            f"convex hull, {flat} flat kept as surfaces, the rest closed as split): covered conservatively, slack "
            f"measured from the closed pieces")


def _store(path: Path, cover: TreeCover, opened: tuple[int, int, int]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp.npz")
        tiers = {} if cover.tiers is None else dict(tier_centers=cover.tiers.centers, tier_radii=cover.tiers.radii,
                                                    tier_slack=cover.tiers.slack, tier_of=cover.tier_of)
        if cover.triangles is not None:  # a built tree's triangles have no radius
            tiers.update(triangles=cover.triangles[0], triangle_start=cover.triangles[1])
        np.savez(temporary, centers=cover.leaves.centers, radii=cover.leaves.radii, slack=cover.leaves.slack,
                 groups=cover.groups, open_pieces=np.asarray(opened), **tiers)
        os.replace(temporary, path)
    except OSError:
        pass  # a read-only home: the cover is only kept in memory


def _transformed(cover: TreeCover, T: np.ndarray) -> TreeCover:
    def moved(spheres: SphereCover | None) -> SphereCover | None:
        return None if spheres is None else SphereCover(spheres.centers @ T[:3, :3].T + T[:3, 3], spheres.radii,
                                                        spheres.slack)

    triangles = None if cover.triangles is None else (cover.triangles[0] @ T[:3, :3].T + T[:3, 3], *cover.triangles[1:])
    return TreeCover(moved(cover.leaves), cover.groups, moved(cover.tiers), cover.tier_of, triangles)


def _assemble(chain: Chain, covers: dict[str, TreeCover], warnings, device, dtype) -> RobotSpheres:
    spheres = assemble_spheres(chain, {link: c.leaves for link, c in covers.items()}, {}, warnings, device, dtype,
                               groups={link: c.groups for link, c in covers.items()})
    # the links in chain order, as assemble_spheres puts their leaves
    ordered = [covers[name] for name in chain.link_names if name in covers]
    if ordered and any(c.triangles is not None for c in ordered):
        corners, start, radii = TreeCover.concatenate(ordered).triangles
        spheres = replace(spheres, triangles=LeafTriangles(
            torch.as_tensor(corners, dtype=spheres.dtype, device=spheres.device),
            torch.as_tensor(start, dtype=torch.int64, device=spheres.device),
            torch.as_tensor(radii, dtype=spheres.dtype, device=spheres.device)))
    if not any(c.tiers is not None for c in covers.values()):
        return spheres
    ordered = [c.with_tiers() for c in ordered]
    starts = np.cumsum([0] + [c.tiers.num_spheres for c in ordered])
    tiers = SphereTiers(
        torch.as_tensor(np.concatenate([c.tiers.centers for c in ordered]), dtype=spheres.dtype, device=spheres.device),
        torch.as_tensor(np.concatenate([c.tiers.radii for c in ordered]), dtype=spheres.dtype, device=spheres.device),
        torch.as_tensor(np.concatenate([c.tier_of + s for c, s in zip(ordered, starts)]), dtype=torch.int64,
                        device=spheres.device))
    return replace(spheres, tiers=tiers)
