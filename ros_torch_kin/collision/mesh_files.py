"""Finding and reading the mesh files a URDF names (``package://``, ``file://``, plain paths).

Nothing here raises for a mesh that cannot be found or read: the caller gets ``None`` and a
warning naming the link and the file, so one bad mesh does not stop a robot from loading.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

PathLike = str | os.PathLike


def resolve_mesh_path(
    filename: str, search_dirs: tuple[PathLike, ...] = (), base_dir: PathLike | None = None
) -> tuple[Path | None, list[Path]]:
    """The file a URDF mesh ``filename`` names, or None, and the candidate paths tried.

    ``package://pkg/rest``: each search directory D as ``D/pkg/rest`` or, when D is the package
    directory itself (``D.name == pkg``), ``D/rest``; then ``ament_index_python``'s share
    directory of ``pkg`` when that module is importable. ``file://`` URIs and absolute paths as
    they are; relative plain paths relative to ``base_dir`` (default: the working directory).
    """
    tried: list[Path] = []
    if filename.startswith("package://"):
        package, _, rest = filename[len("package://"):].partition("/")
        for directory in map(Path, search_dirs):
            tried.append(directory / package / rest)
            if directory.name == package:
                tried.append(directory / rest)
        share = _ament_share_directory(package)
        if share is not None:
            tried.append(share / rest)
    elif filename.startswith("file://"):
        tried.append(Path(unquote(urlparse(filename).path)))
    else:
        path = Path(filename)
        tried.append(path if path.is_absolute() or base_dir is None else Path(base_dir) / path)
    for path in tried:
        if path.is_file():
            return path, tried
    return None, tried


def _ament_share_directory(package: str) -> Path | None:
    try:  # not a hard dependency: only present in a sourced ROS 2 environment
        from ament_index_python.packages import get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(package))
    except Exception:  # PackageNotFoundError, or a broken index
        return None


def load_mesh_file(path: Path, scale=(1.0, 1.0, 1.0)):
    """A single ``trimesh.Trimesh`` from an STL, OBJ, DAE, ... file, in the file's frame scaled
    by ``scale`` (3,): scenes are flattened with their scene-graph transforms applied and
    concatenated. Vertices that differ only in normals or texture coordinates are merged, so a
    closed CAD export reads as watertight. Raises whatever trimesh raises for an unreadable file.
    """
    import trimesh

    loaded = trimesh.load(str(path), force="mesh")
    if isinstance(loaded, trimesh.Scene):  # force='mesh' gives an empty Scene for no geometry
        loaded = loaded.dump(concatenate=True) if loaded.geometry else None
    if loaded is None or len(getattr(loaded, "faces", ())) == 0:
        raise ValueError("the file holds no triangles")
    mesh = trimesh.Trimesh(np.asarray(loaded.vertices, dtype=np.float64) * np.asarray(scale, dtype=np.float64),
                           np.asarray(loaded.faces), process=False)
    mesh.merge_vertices(merge_tex=True, merge_norm=True)
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.remove_unreferenced_vertices()
    return mesh


def not_found_warning(link: str, filename: str, tried: list[Path]) -> str:
    """The warning for a mesh that no candidate path holds, naming the link and the file."""
    where = ", ".join(str(p) for p in tried) or "no candidate path"
    return f"link '{link}': mesh '{filename}' not found (tried {where}); the link gets no spheres from it"


def unreadable_warning(link: str, filename: str, path: Path, error: Exception) -> str:
    """The warning for a mesh file that exists but cannot be read, naming the link and the file."""
    return f"link '{link}': mesh '{filename}' ({path}) could not be read ({error}); the link gets no spheres from it"


def read_link_mesh(shape, path: Path, warnings: list):
    """A link's mesh ``shape`` (a :class:`.urdf_geometry.CollisionShape`) read from ``path``
    (:func:`load_mesh_file`, scaled), or None after appending the warning naming the link and the
    file when it cannot be read."""
    try:
        return load_mesh_file(path, shape.scale)
    except Exception as error:  # trimesh raises many kinds for a bad file
        warnings.append(unreadable_warning(shape.link, shape.filename, path, error))
        return None
