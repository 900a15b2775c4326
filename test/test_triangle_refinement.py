"""Triangles split by their long edges only (collision/triangle_refinement.py): the parts tile
their triangle exactly (area, inside it, the same side out), no edge stays longer than asked,
and a sliver is cut across its length only, into as many parts as its length needs."""

from __future__ import annotations

import numpy as np
import pytest

from ros_torch_kin.collision.triangle_refinement import long_edges, refine_to_size, split_triangles


def _areas(corners: np.ndarray) -> np.ndarray:
    return 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)


def _normals(corners: np.ndarray) -> np.ndarray:
    n = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def _barycentric(point: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """(n, 3) barycentric coordinates of points (n, 3) in triangles (n, 3, 3) (in their plane)."""
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    v0, v1, v2 = b - a, c - a, point - a
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
    denominator = d00 * d11 - d01 * d01
    v, w = (d11 * d20 - d01 * d21) / denominator, (d00 * d21 - d01 * d20) / denominator
    return np.stack([1 - v - w, v, w], axis=1)


@pytest.mark.parametrize("long", [[True, False, False], [False, True, True], [True, True, True]])
def test_each_part_lies_in_its_triangle_with_the_same_side_out_and_the_parts_fill_it(long):
    rng = np.random.default_rng(3)
    points = rng.normal(size=(30, 3))
    faces = np.array([rng.choice(30, size=3, replace=False) for _ in range(10)])
    new, children, parent = split_triangles(points, faces, np.tile(long, (10, 1)), band_length=0.3)
    every = np.concatenate([points, new])
    assert new.shape[1] == 3 and children.min() >= 0 and children.max() < len(every)
    child, own = every[children], points[faces[parent]]
    # inside the parent: every corner's barycentric coordinates in [0, 1]
    for corner in range(3):
        coordinates = _barycentric(child[:, corner], own)
        assert bool((coordinates > -1e-9).all() and (coordinates < 1 + 1e-9).all())
    assert np.allclose((_normals(child) * _normals(own)).sum(1), 1.0)  # the same side out
    area = np.bincount(parent, weights=_areas(child), minlength=10)
    assert np.allclose(area, _areas(points[faces]), rtol=1e-12)
    counts = np.bincount(parent, minlength=10)
    if sum(long) == 1:
        assert (counts == 2).all()
    elif sum(long) == 3:
        assert (counts == 4).all()
    else:  # bands no longer than 0.3 along the long edges bc, ca (from c): 2 per band but the corner's
        length = np.maximum(*(np.linalg.norm(points[faces[:, i]] - points[faces[:, 2]], axis=1) for i in (0, 1)))
        bands = np.maximum(2, np.ceil(length / 0.3))
        assert np.array_equal(counts, 2 * bands - 1)


def test_refined_triangles_tile_the_mesh_with_no_edge_longer_than_asked():
    trimesh = pytest.importorskip("trimesh")
    mesh = trimesh.creation.capsule(height=0.2, radius=0.04, count=[12, 12])
    points, faces = refine_to_size(mesh.vertices, mesh.faces, 0.01)
    corners = points[faces]
    assert not long_edges(corners, 0.01 + 1e-12).any()
    assert np.isclose(_areas(corners).sum(), mesh.area, rtol=1e-12)
    volume = np.einsum("ij,ij->", corners[:, 0], np.cross(corners[:, 1], corners[:, 2])) / 6  # outward kept
    assert np.isclose(volume, mesh.volume, rtol=1e-9)


def test_a_sliver_is_cut_across_its_length_only():
    """A CAD fillet's face, 460 mm by 2.4 mm, to parts of at most 29 mm: 16 bands (31 triangles);
    four parts at the edge midpoints (trimesh.remesh.subdivide_to_size) give 81, ever thinner."""
    corners = np.array([[0.0, 0.0, 0.0], [0.46, 0.0, 0.0], [0.46, 0.0024, 0.0]])
    points, faces = refine_to_size(corners, np.array([[0, 1, 2]]), 0.029)
    assert len(faces) == 31
    assert not long_edges(points[faces], 0.029 + 1e-12).any()
    assert np.isclose(_areas(points[faces]).sum(), _areas(corners[None])[0])
    trimesh = pytest.importorskip("trimesh")
    _, everywhere = trimesh.remesh.subdivide_to_size(corners, np.array([[0, 1, 2]]), max_edge=0.029)
    assert len(everywhere) >= 2 * len(faces)


def test_a_face_without_a_long_edge_is_refused():
    with pytest.raises(ValueError, match="long edge"):
        split_triangles(np.eye(3), np.array([[0, 1, 2]]), np.array([[False, False, False]]))
