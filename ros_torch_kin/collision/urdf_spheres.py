"""Building :class:`RobotSpheres` from a URDF's ``<collision>`` elements (and a spheres file).

Each link's collision shapes are covered together (one cover per link, at most
``max_spheres_per_link`` spheres), in the link's frame: with ``T = forward_kinematics(chain,
q)`` (B, L, 4, 4), a sphere of link ``l`` centred at ``c`` is at ``T[:, l] @ [c, 1]`` in the
world. Covering meshes is the slow part, so covers are cached in memory (see
:func:`clear_cover_cache`) and on disk beside the sphere trees (keyed by the link's shapes, the
settings and every mesh file's bytes; a link whose mesh could not be read is not stored): a
second build of the same robot, in this process or a later one, is fast.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import astuple, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..kinematics import Chain
from .mesh_files import not_found_warning, read_link_mesh, resolve_mesh_path
from .robot_spheres import RobotSpheres
from .sphere_cover import (
    CoverProblem,
    CoverSettings,
    SphereCover,
    cover_problem_for_shape,
    exact_sphere_cover,
    mesh_problem,
    solve_cover,
)
from .urdf_geometry import CollisionShape, read_collision_shapes

#: (resolved path, mtime ns, scale, settings) -> a mesh's CoverProblem in the mesh file's frame
_MESH_PROBLEMS: dict[tuple, CoverProblem] = {}
#: a link's cover key (:func:`_cover_key`: its shapes, settings, mesh bytes) -> its SphereCover
_LINK_COVERS: dict[str, SphereCover] = {}
#: Disk cache format version (``$RTK_CACHE``/``~/.cache/ros_torch_kin/sphere_covers``): bump
#: when the covering method changes.
_DISK_VERSION = "2"

DEFAULT_MAX_SPHERES_PER_LINK = CoverSettings().max_spheres
DEFAULT_TARGET_SLACK = CoverSettings().target_slack


def clear_cover_cache() -> None:
    """Forget every cached mesh problem and link cover (the next build covers afresh)."""
    _MESH_PROBLEMS.clear()
    _LINK_COVERS.clear()


def robot_spheres_from_urdf(
    urdf: str,
    chain: Chain,
    search_dirs=(),
    base_dir: str | os.PathLike | None = None,
    overrides: str | os.PathLike | Mapping | None = None,
    max_spheres_per_link: int = DEFAULT_MAX_SPHERES_PER_LINK,
    target_slack: float = DEFAULT_TARGET_SLACK,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> RobotSpheres:
    """Spheres covering every link's URDF collision geometry, on ``chain``'s links.

    ``search_dirs``: where ``package://`` meshes are looked for (see
    :func:`.mesh_files.resolve_mesh_path`); ``base_dir``: what relative mesh paths are relative
    to. ``overrides``: a cuRobo-style spheres YAML file (or the dict loaded from one) whose
    ``collision_spheres`` (top level, or under ``robot_cfg: kinematics:``) map link name ->
    ``[{center: [x, y, z], radius: r}, ...]`` (m, link frame); those links get exactly these
    spheres (source 'user', slack = radius). ``max_spheres_per_link`` and ``target_slack`` (m):
    see :class:`.sphere_cover.CoverSettings`. Tensors on ``device`` in ``dtype`` (default: the
    chain's).

    A mesh that cannot be found or read gives a warning naming the link and the file, and no
    spheres from it. Raises ValueError for a bad collision size, an override naming a link
    the chain does not have, or an override sphere with a negative or non-finite value.
    """
    settings = CoverSettings(max_spheres=max_spheres_per_link, target_slack=target_slack)
    by_link, warnings = _shapes_by_link(urdf, chain)
    user = read_sphere_overrides(overrides, chain) if overrides is not None else {}
    search_dirs = tuple(search_dirs)
    covers: dict[str, SphereCover] = {}
    for link, link_shapes in by_link.items():
        if link not in user:
            cover = _cover_link(link_shapes, settings, search_dirs, base_dir, warnings)
            if cover.num_spheres:
                covers[link] = cover
    return _assemble(chain, covers, user, warnings, device, dtype)


def covers_missing(urdf: str, chain: Chain, search_dirs=(), base_dir: str | os.PathLike | None = None,
                   max_spheres_per_link: int = DEFAULT_MAX_SPHERES_PER_LINK,
                   target_slack: float = DEFAULT_TARGET_SLACK) -> bool:
    """Whether :func:`robot_spheres_from_urdf` (same arguments, no overrides) would cover a link
    afresh: its cover is in neither the memory nor the disk cache (a link whose mesh is missing
    counts as cached: nothing would be built for it)."""
    settings = CoverSettings(max_spheres=max_spheres_per_link, target_slack=target_slack)
    for link_shapes in _shapes_by_link(urdf, chain)[0].values():
        key = _link_cover_key(link_shapes, settings, tuple(search_dirs), base_dir)
        if key is not None and key not in _LINK_COVERS and not _cover_path(key).is_file():
            return True
    return False


def _shapes_by_link(urdf: str, chain: Chain) -> tuple[dict[str, list[CollisionShape]], list[str]]:
    """The URDF's collision shapes by link (the chain's links only) and the warnings so far."""
    shapes, warnings = read_collision_shapes(urdf)
    by_link: dict[str, list[CollisionShape]] = {}
    for shape in shapes:
        if not chain.has_link(shape.link):
            warnings.append(f"link '{shape.link}' has collision geometry but is not in the chain; skipped")
            continue
        by_link.setdefault(shape.link, []).append(shape)
    return by_link, warnings


def _link_cover_key(shapes, settings: CoverSettings, search_dirs, base_dir) -> str | None:
    """The cache key of the cover :func:`_cover_link` computes for a link's shapes (its spheres are
    exact, the others covered with the spheres left of the cap), or None: nothing to cache (only
    spheres, or a mesh not found)."""
    others = [s for s in shapes if s.kind != "sphere"]
    return _cover_key(others, _rest(shapes, settings), search_dirs, base_dir) if others else None


def _rest(shapes, settings: CoverSettings) -> CoverSettings:
    """The settings a link's other shapes are covered with: the cap less its exact spheres."""
    spheres = sum(s.kind == "sphere" for s in shapes)
    return replace(settings, max_spheres=max(1, settings.max_spheres - spheres))


def cache_covers(urdf: str, search_dirs=(), base_dir: str | os.PathLike | None = None) -> None:
    """Cover every link of ``urdf`` (default settings) into the disk cache: a worker process's job
    (:mod:`.build_workers`) while the caller builds the sphere trees of a cold robot."""
    robot_spheres_from_urdf(urdf, Chain.from_urdf(urdf, device="cpu", dtype=torch.float64), search_dirs, base_dir)


def _cover_link(shapes, settings: CoverSettings, search_dirs, base_dir, warnings: list[str]) -> SphereCover:
    exact = [exact_sphere_cover(s) for s in shapes if s.kind == "sphere"]
    others = [s for s in shapes if s.kind != "sphere"]
    if not others:
        return SphereCover.concatenate(exact)
    rest = _rest(shapes, settings)
    key = _link_cover_key(shapes, settings, search_dirs, base_dir)  # None: a mesh not found (warned below)
    cover = None if key is None else _LINK_COVERS.get(key) or _read_cover(key)
    if cover is None:
        read_before = len(warnings)
        found = []
        for shape in others:
            mesh_key = None
            if shape.kind == "mesh":
                mesh_key = _mesh_problem_key(shape, settings, search_dirs, base_dir, warnings)
                if mesh_key is None:
                    continue
            found.append((shape, mesh_key))
        if not found:
            return SphereCover.concatenate(exact)
        problems = [
            _MESH_PROBLEMS[mesh_key].transformed(shape.origin) if mesh_key is not None
            else cover_problem_for_shape(shape, rest)
            for shape, mesh_key in found
        ]
        cover = solve_cover(CoverProblem.union(problems), rest)
        if key is not None and len(warnings) == read_before:  # every mesh read: the same cover next time
            _write_cover(key, cover)
        else:
            key = None  # a mesh left out: covered again (and warned) next time
    if key is not None:
        _LINK_COVERS[key] = cover
    return SphereCover.concatenate(exact + [cover])


def _cover_key(shapes, settings: CoverSettings, search_dirs, base_dir) -> str | None:
    """The cache key (memory and disk) of a link's cover: its shapes, settings and every mesh
    file's bytes; None when a mesh cannot be found (the build then warns)."""
    digest = hashlib.sha256(repr((_DISK_VERSION, astuple(settings))).encode())
    for shape in shapes:
        digest.update(repr((shape.kind, shape.radius, shape.length, shape.size, tuple(shape.scale))).encode())
        digest.update(np.asarray(shape.origin, dtype=np.float64).tobytes())
        if shape.kind == "mesh":
            path, _ = resolve_mesh_path(shape.filename, search_dirs, base_dir)
            if path is None:
                return None
            try:
                digest.update(Path(path).read_bytes())
            except OSError:
                return None
    return digest.hexdigest()


def _cover_path(key: str) -> Path:
    from .urdf_sphere_trees import cache_directory

    return cache_directory().parent / "sphere_covers" / f"{key}.npz"


def _read_cover(key: str) -> SphereCover | None:
    path = _cover_path(key)
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            return SphereCover(data["centers"], data["radii"], data["slack"])
    except Exception:  # noqa: BLE001 -- a damaged or foreign file: covered again
        return None


def _write_cover(key: str, cover: SphereCover) -> None:
    path = _cover_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(temporary, centers=cover.centers, radii=cover.radii, slack=cover.slack)
        os.replace(temporary, path)
    except OSError:
        pass  # a read-only home: the cover is only kept in memory


def _mesh_problem_key(shape: CollisionShape, settings, search_dirs, base_dir, warnings) -> tuple | None:
    """The cache key of a mesh shape's problem, loading and caching it on a miss; None (and a
    warning) when the mesh cannot be found or read."""
    path, tried = resolve_mesh_path(shape.filename, search_dirs, base_dir)
    if path is None:
        warnings.append(not_found_warning(shape.link, shape.filename, tried))
        return None
    path = path.resolve()
    key = (str(path), path.stat().st_mtime_ns, tuple(shape.scale), settings)
    if key not in _MESH_PROBLEMS:
        mesh = read_link_mesh(shape, path, warnings)
        if mesh is None:
            return None
        _MESH_PROBLEMS[key] = mesh_problem(mesh, settings)
    return key


def _assemble(chain: Chain, covers, user, warnings, device, dtype, groups=None) -> RobotSpheres:
    """RobotSpheres from per-link covers (user ones first). ``groups``: optionally per link the
    (K,) broad-phase group of each sphere, numbered from 0 per link (made unique across links)."""
    links, centers, radii, slack, source, group_parts = [], [], [], [], [], []
    offset = 0
    for index, name in enumerate(chain.link_names):
        if name in user:
            cover, kind = user[name], "user"
        elif name in covers:
            cover, kind = covers[name], "urdf"
        else:
            cover, kind = None, "none"
        source.append(kind)
        if cover is not None and cover.num_spheres:
            links.append(np.full(cover.num_spheres, index))
            centers.append(cover.centers)
            radii.append(cover.radii)
            slack.append(cover.slack)
            if groups is not None:
                group_parts.append(groups[name] + offset)
                offset += int(groups[name].max()) + 1
    device = chain.device if device is None else torch.device(device)
    dtype = chain.dtype if dtype is None else dtype

    def tensor(parts, shape, kind=dtype):
        array = np.concatenate(parts) if parts else np.zeros(shape)
        return torch.as_tensor(array, dtype=kind, device=device)

    return RobotSpheres(
        link_names=tuple(chain.link_names),
        sphere_links=tensor(links, (0,), torch.int64),
        centers=tensor(centers, (0, 3)),
        radii=tensor(radii, (0,)),
        slack=tensor(slack, (0,)),
        source=tuple(source),
        warnings=tuple(warnings),
        sphere_groups=None if groups is None else tensor(group_parts, (0,), torch.int64),
    )


# ---------------------------------------------------------------------------- spheres file


def read_sphere_overrides(overrides: str | os.PathLike | Mapping, chain: Chain) -> dict[str, SphereCover]:
    """Link name -> the user's spheres, from a cuRobo-style YAML file or an already-loaded dict.

    ``collision_spheres`` is looked for at the top level, then under ``robot_cfg: kinematics:``
    (cuRobo's robot file); it may also be a file name (relative to the YAML file's folder)
    holding that mapping. Each sphere: ``{center: [x, y, z], radius: r}``, m, link frame; its
    slack is its radius (the geometry it stands for is unknown). ValueError for a link the
    chain lacks, or a negative or non-finite value (naming the link and the sphere's index).
    """
    document, folder = _load_yaml(overrides)
    spheres = _find_collision_spheres(document)
    if isinstance(spheres, (str, os.PathLike)):
        nested = Path(spheres) if folder is None or Path(spheres).is_absolute() else folder / spheres
        spheres = _find_collision_spheres(_load_yaml(nested)[0])
    if not isinstance(spheres, Mapping):
        raise ValueError("the spheres file has no 'collision_spheres' mapping of link name -> spheres")
    result = {}
    for link, entries in spheres.items():
        if not chain.has_link(str(link)):
            raise ValueError(f"the spheres file names link '{link}', which robot '{chain.name}' does not have")
        result[str(link)] = _user_cover(str(link), entries or [])
    return result


def _load_yaml(source) -> tuple[Any, Path | None]:
    if isinstance(source, Mapping):
        return source, None
    import yaml

    path = Path(source)
    with open(path) as stream:
        return yaml.safe_load(stream) or {}, path.parent


def _find_collision_spheres(document):
    if not isinstance(document, Mapping):
        return None
    if "collision_spheres" in document:
        return document["collision_spheres"]
    kinematics = (document.get("robot_cfg") or {}).get("kinematics") or {}
    return kinematics.get("collision_spheres") if isinstance(kinematics, Mapping) else None


def _user_cover(link: str, entries) -> SphereCover:
    centers, radii = [], []
    for index, entry in enumerate(entries):
        try:
            center = [float(v) for v in entry["center"]]
            radius = float(entry["radius"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"link '{link}' sphere {index}: needs center: [x, y, z] and radius: r, got {entry!r}") from None
        if len(center) != 3 or not all(math.isfinite(v) for v in center + [radius]):
            raise ValueError(f"link '{link}' sphere {index}: center and radius must be 3 + 1 finite numbers, got {entry!r}")
        if radius < 0:
            raise ValueError(f"link '{link}' sphere {index}: radius {radius} m is negative")
        centers.append(center)
        radii.append(radius)
    radii = np.asarray(radii, dtype=np.float64)
    return SphereCover(np.asarray(centers, dtype=np.float64).reshape(-1, 3), radii, radii.copy())
