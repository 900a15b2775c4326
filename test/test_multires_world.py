"""The multi-resolution voxel field (``VoxelGrid.from_points(..., multires=True)``, what the
node's camera topics build) against scipy's KD-tree: a lower bound of the true distance
everywhere, within the tiered bounds stated in :mod:`ros_torch_kin.collision.occupancy`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from ros_torch_kin.collision import Obstacle, Scene
from ros_torch_kin.collision.occupancy import VoxelGrid
from ros_torch_kin.collision.signed_distance import point_distances

S = 0.01
R3 = math.sqrt(3)


def _cloud(seed: int, count: int = 20_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    points = rng.uniform(-0.3, 0.3, (count, 3))
    points[:, 2] = 0.05 * np.sin(10 * points[:, 0]) + 0.4
    return np.concatenate([points, rng.uniform((0.35, -0.1, 0.2), (0.45, 0.1, 0.6), (3000, 3))])  # and a blob


def _distances(obstacles, queries, dtype=torch.float64):
    shapes = Scene(obstacles).packed("cpu", dtype).shapes[0]
    d, n = point_distances(torch.as_tensor(queries.T, dtype=dtype), shapes, True)
    return d.numpy(), n


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("radius", [0.0, 0.003])
def test_multires_distance_is_a_lower_bound_within_the_tiers(dtype, radius):
    points = _cloud(0)
    obstacle = Obstacle.points("cloud", points, S, radius=radius, multires=True)
    assert obstacle.grid.layout is not None
    rng = np.random.default_rng(1)
    queries = np.concatenate([points[rng.choice(len(points), 6000)] + rng.normal(0, 0.04, (6000, 3)),
                              rng.uniform(-0.8, 0.9, (6000, 3))])
    d = _distances([obstacle], queries, dtype)[0][0]
    truth = cKDTree(points).query(queries)[0] - radius
    slack = 1e-5 if dtype == torch.float64 else 1e-4
    assert (d <= truth + slack).all(), (truth - d).min()
    gap = truth - d
    for reach, error in ((1.4 * S - radius, 2 * R3 * S), (4.8 * S - radius, 4 * R3 * S), (13.6 * S - radius, 8 * R3 * S)):
        near = truth <= reach
        assert near.sum() > 100 and gap[near].max() <= error + 2 * radius + slack, (reach, gap[near].max())
    far = truth > 13.6 * S - radius
    assert far.any() and (d[far] >= np.minimum(truth[far] - 18 * S, 17 * S - radius) - slack).all()
    assert np.median(gap[truth < 0.02]) < R3 * S  # usually about the dense grid's error (h + interpolation)


def test_multires_and_dense_grids_pack_together_and_agree_on_contact():
    points = _cloud(2, 5000)
    moved = points + (0.0, 0.0, 0.3)
    dense, sparse = Obstacle.points("dense", points, S), Obstacle.points("sparse", moved, S, multires=True)
    rng = np.random.default_rng(3)
    queries = np.concatenate([points[:300], moved[:300], rng.uniform(-0.5, 0.5, (500, 3)) + (0, 0, 0.5)])
    both = _distances([dense, sparse], queries)[0]
    assert np.allclose(both[0], _distances([dense], queries)[0][0])
    assert np.allclose(both[1], _distances([sparse], queries)[0][0])
    assert (both[0][:300] < 0).all() and (both[1][300:600] < 0).all()  # every occupied voxel is a contact


def test_the_packed_kind_knows_its_grids_parts_and_a_row_subset_agrees():
    """What a query computes is read from the packed kind (no device read per query); a subset of
    rows (the hierarchy gathers one per block) with fewer parts than the kind gets the same
    values as with its own parts."""
    from ros_torch_kin.collision.occupancy import grid_features, voxel_distance

    points = _cloud(5, 4000)
    dense, sparse = Obstacle.points("dense", points, S), Obstacle.points("sparse", points + (0.0, 0.0, 0.3), S, multires=True)
    shapes = Scene([dense, sparse]).packed("cpu", torch.float64).shapes[0]
    assert {"exact", "multires"} <= shapes.kind.features
    assert shapes.kind.features == grid_features(shapes.parameters)
    assert "multires" not in Scene([dense]).packed("cpu", torch.float64).shapes[0].kind.features
    rng = np.random.default_rng(6)
    local = torch.as_tensor(rng.uniform(-0.4, 0.4, (3, 500)) + np.array([[0.0], [0.0], [0.5]]))
    for row in (0, 1):  # each row alone, with the kind's parts (a superset) and with its own
        rows = shapes.parameters[row:row + 1]
        x, y, z = (c.unsqueeze(0) for c in local)
        wide, wide_normal = voxel_distance(x, y, z, rows, shapes.kind.values, True, shapes.kind.features)
        own, own_normal = voxel_distance(x, y, z, rows, shapes.kind.values, True)
        assert torch.equal(wide, own) and all(torch.equal(a, b) for a, b in zip(wide_normal, own_normal))


def test_multires_normals_point_away_and_holes_are_skipped():
    points = _cloud(4, 8000)
    holes = points.copy()
    holes[::4] = np.nan
    grid = VoxelGrid.from_points(holes, S, multires=True)
    assert any("non-finite" in note for note in grid.notes)
    obstacle = Obstacle.points("cloud", holes, S, multires=True)
    kept = holes[np.isfinite(holes).all(1)]
    tree = cKDTree(kept)
    rng = np.random.default_rng(5)
    queries = kept[rng.choice(len(kept), 600)] + rng.normal(0, 0.05, (600, 3))
    truth = tree.query(queries)[0]
    queries = queries[(truth > 0.02) & (truth < 0.1)]
    shapes = Scene([obstacle]).packed("cpu", torch.float64).shapes[0]
    _, n = point_distances(torch.as_tensor(queries.T), shapes, True)
    normal = torch.einsum("kji,kip->kjp", shapes.rotation, n)[0].T.numpy()
    assert np.allclose(np.linalg.norm(normal, axis=1), 1.0)
    ahead = tree.query(queries + 0.004 * normal)[0] - tree.query(queries)[0]
    assert np.mean(ahead > 0) > 0.85  # the winning level's gradient: a little rougher than the dense field's
    with pytest.raises(ValueError, match="no inside"):
        VoxelGrid.from_points(points, S, multires=True, fill_interior=True)
    with pytest.raises(ValueError, match="above the limit"):
        Obstacle.points("cam", np.array([[0, 0, 0], [100.0, 100.0, 100.0]]), S, multires=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_row_form_of_the_bound_equals_the_field_query(dtype):
    """A verdict's query (:func:`signed_distance_rows`: points by row, the bound alone, each
    cell's corners in one gather) gives the field query's values, for dense and multi-resolution
    grids packed together, with the exact points and the far-field lattice, inside and outside
    the grids."""
    from ros_torch_kin.collision.signed_distance import signed_distance_rows, to_local

    points = _cloud(4, 5000)
    grids = [Obstacle.points("dense", points, S, exact=False),
             Obstacle.points("multires", points + (0.0, 0.0, 0.3), S, multires=True, exact=False),
             Obstacle.points("exact", points + (0.0, 0.6, 0.0), S, radius=0.004, multires=True, lattice=0.02)]
    rng = np.random.default_rng(5)
    near = [points[:400] + shift + rng.normal(0, 0.01, (400, 3)) for shift in ((0, 0, 0), (0, 0, 0.3), (0, 0.6, 0))]
    queries = np.concatenate(near + [rng.uniform(-0.6, 1.2, (1200, 3))])
    for together in (grids, grids[2:]):
        shapes = Scene(together).packed("cpu", dtype).shapes[0]
        world = torch.as_tensor(queries.T, dtype=dtype).contiguous()
        expected, _ = point_distances(world, shapes, False)
        rows = signed_distance_rows(shapes.kind, to_local(world, shapes).mT.contiguous(), shapes.parameters)
        tolerance = 1e-9 if dtype == torch.float64 else 2e-6
        assert torch.allclose(rows, expected, atol=tolerance), float((rows - expected).abs().max())
        assert bool((expected < 0).any()) and bool((expected > 0.05).any())


@pytest.mark.parametrize("cap", [4, 5, 6])
def test_capped_stamping_equals_the_exact_transform(cap):
    """Each level's capped squared distances (:func:`occupancy._capped_squared`, which stamps only
    the pairs that can be a node's minimum) equal scipy's exact Euclidean transform, capped: on a
    surface (nodes with in-plane neighbours), a solid block (nodes with all six) and lone nodes."""
    from scipy.ndimage import distance_transform_edt

    from ros_torch_kin.collision.occupancy import _capped_squared

    rng = np.random.default_rng(cap)
    dims = np.array([40, 44, 36])
    occupied = np.zeros(tuple(dims), dtype=bool)
    x, y = np.meshgrid(np.arange(8, 32), np.arange(8, 36), indexing="ij")
    occupied[x, y, np.rint(18 + 4 * np.sin(x / 4)).astype(int)] = True  # a wavy surface
    occupied[10:16, 20:30, 8:13] = True  # a solid block
    lone = rng.integers(cap, dims - cap, (40, 3))
    occupied[lone[:, 0], lone[:, 1], lone[:, 2]] = True
    squared = _capped_squared(np.flatnonzero(occupied), dims, cap).reshape(tuple(dims))
    exact = np.rint(distance_transform_edt(~occupied) ** 2).astype(np.int64)
    expected = np.where(exact <= cap * cap, exact, 255)
    np.testing.assert_array_equal(squared, expected)
