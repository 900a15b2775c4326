"""The triangle hierarchy's distances and winding numbers against independent references: trimesh's
closest points over every triangle, the solid-angle sum over every triangle (the definition), and
a convex mesh's half-spaces."""

import numpy as np
import pytest
import trimesh
from trimesh.triangles import closest_point

from ros_torch_kin.collision.triangle_hierarchy import TriangleHierarchy


def brute_distances(points, triangles):
    """Distance to the nearest triangle, trimesh's closest point over every (point, triangle) pair."""
    P, T = len(points), len(triangles)
    nearest = closest_point(np.repeat(triangles[None], P, axis=0).reshape(-1, 3, 3), np.repeat(points, T, axis=0))
    return np.linalg.norm(nearest - np.repeat(points, T, axis=0), axis=1).reshape(P, T).min(axis=1)


def brute_winding(points, triangles):
    """The generalised winding number: the solid angles of every triangle over 4π."""
    a, b, c = (triangles[None, :, i] - points[:, None] for i in range(3))
    la, lb, lc = (np.linalg.norm(x, axis=2) for x in (a, b, c))
    numerator = np.einsum("ptk,ptk->pt", a, np.cross(b, c))
    denominator = (la * lb * lc + np.einsum("ptk,ptk->pt", a, b) * lc + np.einsum("ptk,ptk->pt", a, c) * lb
                   + np.einsum("ptk,ptk->pt", b, c) * la)
    return np.arctan2(numerator, denominator).sum(axis=1) / (2 * np.pi)


def _open_cup():
    sphere = trimesh.creation.icosphere(2)
    return np.asarray(sphere.triangles)[sphere.triangles_center[:, 2] < 0.3]


def _soup(rng):
    tri = rng.normal(size=(300, 3, 3)) * 0.1
    tri[:5, 1] = tri[:5, 0]  # two corners equal
    tri[5:10, 2] = 0.5 * (tri[5:10, 0] + tri[5:10, 1])  # collinear corners
    tri[10:12] = tri[10:12, :1]  # a point
    return tri


MESHES = {
    "sphere": lambda rng: np.asarray(trimesh.creation.icosphere(3).triangles),
    "box": lambda rng: np.asarray(trimesh.creation.box([0.1, 0.2, 0.3]).triangles),
    "cup": lambda rng: _open_cup(),
    "soup": _soup,
    "one": lambda rng: rng.normal(size=(1, 3, 3)),
    "three": lambda rng: rng.normal(size=(3, 3, 3)),
}


def _points(rng, triangles, n=400):
    low, high = triangles.reshape(-1, 3).min(0), triangles.reshape(-1, 3).max(0)
    spread = low - 0.3 * (high - low) + rng.random((n, 3)) * 1.6 * (high - low)
    on_surface = triangles[rng.integers(0, len(triangles), 100)].mean(axis=1)
    near = on_surface + 1e-4 * rng.normal(size=on_surface.shape)
    return np.concatenate([spread, on_surface, near, [[50.0, -20.0, 3.0]]])


@pytest.mark.parametrize("name", MESHES)
@pytest.mark.parametrize("leaf_size", [2, 16])
def test_distances_and_winding_equal_the_sums_over_every_triangle(name, leaf_size):
    rng = np.random.default_rng(sum(map(ord, name)) + leaf_size)
    triangles = MESHES[name](rng)
    points = _points(rng, triangles)
    hierarchy = TriangleHierarchy(triangles, leaf_size=leaf_size)
    np.testing.assert_allclose(hierarchy.distances(points), brute_distances(points, triangles), rtol=1e-9, atol=1e-12)
    # the winding number is discontinuous on the surface: compare off it
    off = brute_distances(points, triangles) > 1e-6
    np.testing.assert_allclose(hierarchy.winding_numbers(points[off]), brute_winding(points[off], triangles),
                               atol=1e-9)


def test_a_deep_hierarchy_over_a_large_mesh_stays_exact():
    rng = np.random.default_rng(7)
    mesh = trimesh.creation.icosphere(5)  # 20,480 triangles
    triangles = np.asarray(mesh.triangles)
    points = _points(rng, triangles, n=40)[::3]
    hierarchy = TriangleHierarchy(triangles)
    assert hierarchy.depth >= 10
    np.testing.assert_allclose(hierarchy.distances(points), brute_distances(points, triangles), rtol=1e-9, atol=1e-12)
    off = brute_distances(points, triangles) > 1e-6
    np.testing.assert_allclose(hierarchy.winding_numbers(points[off]), brute_winding(points[off], triangles),
                               atol=1e-9)


@pytest.mark.parametrize("inward", [False, True])
def test_winding_of_a_convex_mesh_is_its_half_spaces(inward):
    rng = np.random.default_rng(3)
    mesh = trimesh.convex.convex_hull(rng.normal(size=(60, 3)))
    triangles = np.asarray(mesh.triangles)[:, ::-1] if inward else np.asarray(mesh.triangles)
    points = rng.normal(size=(2000, 3)) * 1.2
    # inside: behind every face plane (the hull's outward normals)
    inside = ((points[:, None] - mesh.triangles[None, :, 0]) * mesh.face_normals[None]).sum(axis=2).max(axis=1) < 0
    winding = TriangleHierarchy(triangles, leaf_size=4).winding_numbers(points)
    margin = np.abs(((points[:, None] - mesh.triangles[None, :, 0]) * mesh.face_normals[None]).sum(axis=2)).min(axis=1)
    clear = margin > 1e-9
    expected = np.where(inside, -1.0 if inward else 1.0, 0.0)
    np.testing.assert_allclose(winding[clear], expected[clear], atol=1e-9)
    assert inside.sum() > 100 and (~inside).sum() > 100


def test_an_empty_mesh_is_infinitely_far_and_winds_nowhere():
    hierarchy = TriangleHierarchy(np.zeros((0, 3, 3)))
    points = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    assert np.all(np.isinf(hierarchy.distances(points)))
    assert np.all(hierarchy.winding_numbers(points) == 0)


def test_leaf_size_below_two_is_refused():
    with pytest.raises(ValueError, match="leaf_size"):
        TriangleHierarchy(np.zeros((4, 3, 3)), leaf_size=1)
