"""Exact distances near the points of a point world (:mod:`ros_torch_kin.collision.point_hash`)
against scipy's KD-tree (the exact nearest-point distance) and central finite differences of it.

Claims checked: the distance to the union of balls of the point radius is never overestimated
(float rounding aside), equals the KD-tree's where that is within the point cell minus the radius
(dense and multi-resolution fields, float32 and float64, chunked gathers), the normal near the
points is the unit vector from the nearest point, and the checkers see the exact world.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from ros_torch_kin.collision import Obstacle, Scene
from ros_torch_kin.collision import point_hash
from ros_torch_kin.collision.signed_distance import point_distances

VOXEL = 0.01


def _cloud(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    plane = rng.uniform(-0.25, 0.25, (6000, 3))
    plane[:, 2] = 0.04 * np.sin(9 * plane[:, 0]) + 0.3
    blob = rng.normal((0.1, 0.0, 0.45), 0.02, (800, 3))
    return np.concatenate([plane, blob])


def _queries(points: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    near = points[rng.integers(0, len(points), 6000)] + rng.normal(0, 0.02, (6000, 3))
    far = rng.uniform((-0.6, -0.6, -0.2), (0.6, 0.6, 0.9), (4000, 3))
    return np.concatenate([near, far])


def _distances(obstacle: Obstacle, queries: np.ndarray, dtype, with_normal=True):
    shapes = Scene([obstacle]).packed("cpu", dtype).shapes[0]
    d, n = point_distances(torch.as_tensor(queries.T, dtype=dtype), shapes, with_normal)
    normal = torch.einsum("kji,kip->kjp", shapes.rotation, n)[0].T.numpy() if with_normal else None
    return d[0].numpy(), normal


def test_the_point_table_puts_each_point_in_its_cell():
    """point_hash.build against numpy's own C-order cell index (np.ravel_multi_index): each
    cell's run of the sorted points holds exactly the points whose floor(p / cell) is that cell,
    one cell of padding on every side; and the shared index helpers it uses agree with numpy."""
    from ros_torch_kin.collision.occupancy import flat_index, index_span

    points = _cloud(11)[::7]
    cell = 0.03
    origin, dims, starts, ordered = point_hash.build(points, cell, 10**7)
    cells = np.floor(points / cell).astype(np.int64)
    np.testing.assert_array_equal(dims, cells.max(0) - cells.min(0) + 3)
    np.testing.assert_allclose(origin, (cells.min(0) - 1) * cell)
    first = np.round(origin / cell).astype(np.int64)
    reference = np.ravel_multi_index(tuple((cells - first).T), tuple(dims))
    np.testing.assert_array_equal(np.diff(starts), np.bincount(reference, minlength=int(np.prod(dims))))
    owner = np.repeat(np.arange(int(np.prod(dims))), np.diff(starts).astype(np.int64))
    sorted_cells = np.floor(ordered / cell).astype(np.int64)
    np.testing.assert_array_equal(np.ravel_multi_index(tuple((sorted_cells - first).T), tuple(dims)), owner)
    columns = tuple(cells.T)
    low, high = index_span(columns)
    np.testing.assert_array_equal(low, cells.min(0))
    np.testing.assert_array_equal(high, cells.max(0))
    np.testing.assert_array_equal(flat_index(columns, low - 2, high - low + 5),
                                  np.ravel_multi_index(tuple((cells - low + 2).T), tuple(high - low + 5)))


@pytest.mark.parametrize("multires", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("radius", [0.0, 0.004])
def test_exact_near_the_points_and_a_lower_bound_everywhere(multires, dtype, radius):
    points = _cloud(0)
    cell = 0.03
    obstacle = Obstacle.points("cloud", points, VOXEL, radius=radius, multires=multires, point_cell=cell)
    queries = _queries(points, 1)
    d, _ = _distances(obstacle, queries, dtype)
    truth = cKDTree(points).query(queries)[0] - radius
    slack = 1e-9 if dtype == torch.float64 else 2e-6
    assert (d <= truth + slack).all(), (d - truth).max()
    exact = truth <= cell - radius - 1e-4  # within the reach: the KD-tree's distance
    assert exact.sum() > 3000 and (~exact).sum() > 2000
    tolerance = 2e-6 if dtype == torch.float64 else 2e-5
    np.testing.assert_allclose(d[exact], truth[exact], atol=tolerance, rtol=0)
    assert (d[~exact] >= cell - radius - 2e-4).all()  # farther: at least what the table certifies (no point within the cell)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_wide_gather_is_exact_to_twice_the_cell(dtype):
    """:func:`point_hash.refine_wide` raises the 27 cells' result to the KD-tree's distance out
    to 2c − r from the points (a large leaf's centre near what a camera saw), stays a lower
    bound beyond, and never lowers what it is given."""
    from ros_torch_kin.collision.occupancy import POINT_COLUMN

    points = _cloud(4)
    cell, radius = 0.03, 0.004
    obstacle = Obstacle.points("cloud", points, VOXEL, radius=radius, point_cell=cell)
    queries = _queries(points, 5)
    d, _ = _distances(obstacle, queries, dtype, with_normal=False)
    shapes = Scene([obstacle]).packed("cpu", dtype).shapes[0]
    rows = shapes.parameters.expand(len(queries), -1)  # the grid's frame is the root frame (no pose)
    wide = point_hash.refine_wide(torch.as_tensor(queries, dtype=dtype), rows, shapes.kind.values,
                                  torch.as_tensor(d, dtype=dtype), POINT_COLUMN).numpy()
    truth = cKDTree(points).query(queries)[0] - radius
    slack = 1e-9 if dtype == torch.float64 else 2e-6
    assert (wide <= truth + slack).all() and (wide >= d).all()
    exact = truth <= 2 * cell - radius - 1e-4
    beyond_27 = exact & (truth > cell - radius + 1e-4)
    assert beyond_27.sum() > 500 and (~exact).sum() > 1000
    tolerance = 2e-6 if dtype == torch.float64 else 2e-5
    np.testing.assert_allclose(wide[exact], truth[exact], atol=tolerance, rtol=0)
    assert (d[beyond_27] < truth[beyond_27] - 1e-3).mean() > 0.5  # the 27 cells alone only bounded most of them
    assert (wide[~exact] >= 2 * cell - radius - 2e-4).all()


def test_a_table_too_narrow_for_the_wide_gather_keeps_the_bound_it_is_given():
    """A few points within a cell or two (a carried box's, a small object's): the point table is
    fewer than 5 cells wide, where the 125 cells would read beyond it; their rows keep the
    distance given (their points are all within the 27 cells' reach anyway), beside a wide table's
    rows, which are raised."""
    from ros_torch_kin.collision.occupancy import POINT_COLUMN

    small = Obstacle.points("small", np.array([[0.0, 0.0, 0.0], [0.01, 0.0, 0.0]]), VOXEL, point_cell=0.03)
    large = Obstacle.points("large", _cloud(6), VOXEL, point_cell=0.03)
    shapes = Scene([small, large]).packed("cpu", torch.float64).shapes
    assert len(shapes) == 1  # one kind: both grids are rows of it
    rows = shapes[0].parameters
    assert (rows[0, POINT_COLUMN + 5:POINT_COLUMN + 8] < 5).any() and (rows[1, POINT_COLUMN + 5:POINT_COLUMN + 8] >= 5).all()
    values = shapes[0].kind.values
    tree = cKDTree(_cloud(6))
    beside = next(x for x in (np.array([0.1, 0.0, 0.3 + 0.04 * np.sin(0.9) + h]) for h in np.arange(0.03, 0.06, 0.002))
                  if 0.035 < tree.query(x)[0] < 0.055)  # beyond the 27 cells' reach, within the 125's
    q = torch.tensor(np.stack([[0.0, 0.0, 0.05], beside]), dtype=torch.float64)
    given = torch.tensor([0.01, 0.01], dtype=torch.float64)
    out = point_hash.refine_wide(q, rows, values, given, POINT_COLUMN)
    assert out[0] == given[0]
    assert abs(float(out[1]) - tree.query(beside)[0]) < 2e-6  # the table holds float32 points


def test_the_field_alone_is_looser_and_the_table_changes_nothing_far_away():
    points = _cloud(2)
    queries = _queries(points, 3)
    exact, _ = _distances(Obstacle.points("cloud", points, VOXEL, point_cell=0.03), queries, torch.float64)
    field, _ = _distances(Obstacle.points("cloud", points, VOXEL, exact=False), queries, torch.float64)
    assert (exact >= field - 1e-9).all()
    truth = cKDTree(points).query(queries)[0]
    near = truth < 0.02
    assert np.median((truth - field)[near]) > 0.005 > np.abs(truth - exact)[near].max()


def test_normals_near_the_points_match_finite_differences():
    points = _cloud(4)
    obstacle = Obstacle.points("cloud", points, VOXEL, radius=0.003, point_cell=0.03)
    rng = np.random.default_rng(5)
    queries = points[rng.integers(0, len(points), 500)] + rng.normal(0, 0.01, (500, 3))
    tree = cKDTree(points)
    d, normal = _distances(obstacle, queries, torch.float64)
    distance, index = tree.query(queries, k=2)
    unique = (distance[:, 1] - distance[:, 0] > 1e-4) & (distance[:, 0] > 1e-4)  # away from ties and the points
    step = 1e-6
    fd = np.stack([(tree.query(queries + step * e)[0] - tree.query(queries - step * e)[0]) / (2 * step)
                   for e in np.eye(3)], axis=1)
    np.testing.assert_allclose(normal[unique], fd[unique], atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(normal, axis=1), 1.0, atol=1e-9)


def test_chunked_gathers_agree(monkeypatch):
    points = _cloud(6)
    obstacle = Obstacle.points("cloud", points, VOXEL, point_cell=0.03)
    queries = _queries(points, 7)
    whole, whole_normal = _distances(obstacle, queries, torch.float64)
    monkeypatch.setattr(point_hash, "CHUNK_PAIRS", 5000)
    chunked, chunked_normal = _distances(obstacle, queries, torch.float64)
    np.testing.assert_array_equal(whole, chunked)
    np.testing.assert_array_equal(whole_normal, chunked_normal)
    without, _ = _distances(obstacle, queries, torch.float64, with_normal=False)
    np.testing.assert_array_equal(whole, without)


def test_the_nearest_cells_first_give_the_same_distances(monkeypatch):
    """Many queries look first in the 2×2×2 cells nearest each one, then in the 27 where that
    cannot settle it: the same distances and normals as the 27 cells for every query, among them
    queries on cell faces and at the middle of cells (the margin's edge cases) and far ones."""
    points = _cloud(12)
    cell = 0.03
    obstacle = Obstacle.points("cloud", points, VOXEL, radius=0.002, point_cell=cell)
    queries = _queries(points, 13)
    rng = np.random.default_rng(14)
    faces = np.round(points[rng.integers(0, len(points), 2000)] / (0.5 * cell)) * (0.5 * cell)  # faces, middles
    queries = np.concatenate([queries, faces, faces + 1e-7])
    monkeypatch.setattr(point_hash, "OCTANT_FROM", 1)
    first, first_normal = _distances(obstacle, queries, torch.float64)
    monkeypatch.setattr(point_hash, "OCTANT_FROM", 10**9)
    whole, whole_normal = _distances(obstacle, queries, torch.float64)
    np.testing.assert_array_equal(first, whole)
    two = cKDTree(points).query(queries, k=2)[0]
    ties = two[:, 1] - two[:, 0] < 1e-12  # two nearest points: either normal is right
    np.testing.assert_allclose(first_normal[~ties], whole_normal[~ties], atol=1e-12)
    truth = two[:, 0] - 0.002
    exact = truth <= cell - 0.002 - 1e-4
    np.testing.assert_allclose(first[exact], truth[exact], atol=2e-6, rtol=0)


def test_a_posed_cloud_and_mixed_rows():
    """Two clouds (one posed) and a field-only grid packed together: each row its own table."""
    points = _cloud(8)
    pose = np.eye(4)
    pose[:3, :3] = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    pose[:3, 3] = (0.5, 0.2, -0.1)
    a = Obstacle.points("a", points, VOXEL, point_cell=0.03)
    b = Obstacle.points("b", points[:3000], VOXEL, radius=0.002, pose=pose, point_cell=0.04, multires=True)
    c = Obstacle.points("c", points + (0, 0, 0.5), VOXEL, exact=False)
    shapes = Scene([a, b, c]).packed("cpu", torch.float64).shapes[0]
    queries = np.concatenate([_queries(points, 9), _queries(points[:3000] @ pose[:3, :3].T + pose[:3, 3], 10)])
    d, _ = point_distances(torch.as_tensor(queries.T), shapes, True)
    truth_a = cKDTree(points).query(queries)[0]
    truth_b = cKDTree(points[:3000] @ pose[:3, :3].T + pose[:3, 3]).query(queries)[0] - 0.002
    truth_c = cKDTree(points + (0, 0, 0.5)).query(queries)[0]
    d = d.numpy()
    for row, truth, reach in ((0, truth_a, 0.03), (1, truth_b, 0.038)):
        assert (d[row] <= truth + 1e-9).all()
        near = truth < reach - 1e-4
        np.testing.assert_allclose(d[row][near], truth[near], atol=2e-6)
    assert (d[2] <= truth_c + 1e-9).all()


def test_nan_and_far_queries_fall_back_to_the_field():
    points = _cloud(11)
    obstacle = Obstacle.points("cloud", points, VOXEL, point_cell=0.03)
    queries = np.array([[np.nan, 0.0, 0.3], [1e6, 0.0, 0.0], [-1e6, -1e6, -1e6], [0.0, 0.0, 0.3]])
    d, _ = _distances(obstacle, queries, torch.float64)
    assert np.isnan(d[0])  # no point claims a NaN query: it stays NaN (callers refuse non-finite input)
    assert d[1] > 1e5 and d[2] > 1e5
    assert abs(d[3] - cKDTree(points).query(queries[3])[0]) < 1e-6  # the allowance for float32 storage


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_exact_lattice_tightens_the_far_field_and_stays_a_lower_bound(dtype):
    """d(x)² − |x|² is concave: the lattice's interpolated squares bound d from below, within a
    few mm at 2-10 cm where the voxel field is off by about a centimetre; with it (and the exact
    points) the field's level 0 is not built, and the bound is still at least the full field's."""
    points = _cloud(12)
    radius = 0.003
    rng = np.random.default_rng(13)
    queries = np.concatenate([_queries(points, 14), rng.uniform((-0.4, -0.4, 0.1), (0.4, 0.4, 0.6), (20_000, 3))])
    truth = cKDTree(points).query(queries)[0] - radius
    plain, _ = _distances(Obstacle.points("cloud", points, VOXEL, radius=radius, multires=True, point_cell=0.02),
                          queries, dtype)
    with_lattice = Obstacle.points("cloud", points, VOXEL, radius=radius, multires=True, point_cell=0.02, lattice=0.02)
    layout = with_lattice.grid.layout  # (blocks, level 0's brick offset, levels 1 and 2: (origin, dims, offset))
    assert layout[2][0][2] == layout[1]  # no level-0 bricks: the exact points and the lattice stand in for them
    far, normal = _distances(with_lattice, queries, dtype)
    slack = 1e-9 if dtype == torch.float64 else 2e-6
    assert (far <= truth + slack).all(), (far - truth).max()
    assert (far >= plain - slack).all()
    band = (truth > 0.02) & (truth < 0.09)
    assert np.median((truth - far)[band]) < 0.002
    farther = (truth > 0.04) & (truth < 0.09)  # the error falls like 3·spacing²/(8·d), more near ridges
    assert np.percentile((truth - far)[farther], 99) < 0.005 and (truth - far)[farther].max() < 0.0175
    assert np.median((truth - plain)[band]) > 0.005
    # the normal where the lattice decides: along the KD-tree's gradient
    tree = cKDTree(points)
    step = 1e-5
    fd = np.stack([(tree.query(queries + step * e)[0] - tree.query(queries - step * e)[0]) / (2 * step)
                   for e in np.eye(3)], axis=1)
    assert np.median((normal[band] * fd[band]).sum(1)) > 0.99


def _solid(seed: int) -> np.ndarray:
    """A surface cloud as _cloud's, plus a solid box of points (cubes inside it have all six
    face neighbours) and scattered lone points (none)."""
    rng = np.random.default_rng(seed)
    box = rng.uniform((-0.12, -0.1, 0.5), (0.02, 0.05, 0.62), (40000, 3))
    lone = rng.uniform((-0.3, -0.3, 0.0), (0.3, 0.3, 0.8), (300, 3))
    return np.concatenate([_cloud(seed), box, lone])


@pytest.mark.parametrize("split, cloud", [(1, _cloud), (2, _cloud), (3, _cloud), (4, _cloud), (2, _solid),
                                          (4, _solid), (5, _cloud), (8, _solid)])
def test_cube_centres_stamp_the_same_lattice_as_the_kd_tree(split, cloud, monkeypatch):
    """A sensor's kept cubes (centres of cubes of side spacing / m) get their lattice by stamping,
    other clouds by the KD-tree: the same values at every node (for m ≤ 4 only the cubes a node
    can have as its nearest stamp it: surfaces, solids and lone points alike; larger m stamps
    every cube); a cloud a hair off the cubes' centres still gets a lower bound."""
    spacing = 0.03
    side = spacing / split
    keys = np.unique(np.floor(cloud(15) / side).astype(np.int64), axis=0)
    centres = (keys + 0.5) * side
    assert point_hash._cube_keys(centres, spacing)[0] == split
    stamped = point_hash.build_lattice(centres, spacing, 0.1, 10**8)
    monkeypatch.setattr(point_hash, "_cube_keys", lambda points, spacing: None)
    searched = point_hash.build_lattice(centres, spacing, 0.1, 10**8)
    for a, b in zip(stamped, searched):
        np.testing.assert_array_equal(a, b)
    assert (stamped[2] < 0.1 * (1 - 1e-6)).sum() > 1000  # nodes within reach
    monkeypatch.undo()
    rng = np.random.default_rng(16)
    nudged = centres + rng.uniform(-1e-7, 1e-7, centres.shape) * side
    origin, dims, values = point_hash.build_lattice(nudged, spacing, 0.1, 10**8)
    nodes = origin + np.stack(np.unravel_index(np.arange(values.size), tuple(dims)), 1) * spacing
    truth = np.minimum(cKDTree(nudged).query(nodes)[0], 0.1)
    assert (values <= truth).all() and (truth - values).max() < 1e-6
    assert point_hash._cube_keys(_cloud(17), spacing) is None  # a cloud not on cubes: the KD-tree


def test_the_lattice_stands_in_for_the_field_only_where_every_grid_has_one():
    """A query may leave the voxel field out (tree_checker: below the roots) only when every grid
    of the kind has a far-field lattice: a mesh beside a cloud with one keeps the field, whose
    bound alone covers the mesh's inside."""
    import trimesh

    from ros_torch_kin.collision import Obstacle, Scene
    from ros_torch_kin.collision.occupancy import lattice_features

    rng = np.random.default_rng(3)
    cloud = rng.uniform(-0.2, 0.2, (2000, 3))
    box = trimesh.creation.box((0.2, 0.2, 0.2))
    kinds = {}
    for label, obstacles in (("cloud", [Obstacle.points("cloud", cloud, 0.02, lattice=0.04)]),
                             ("mixed", [Obstacle.points("cloud", cloud, 0.02, lattice=0.04),
                                        Obstacle.mesh("box", box.vertices, box.faces, voxel_size=0.02)])):
        kinds[label] = Scene(obstacles).packed("cpu", torch.float64).shapes[0].kind.features
    assert lattice_features(kinds["cloud"]) == kinds["cloud"] - {"exact", "multires"}
    assert "lattice" in kinds["mixed"] and lattice_features(kinds["mixed"]) is None
