"""The distance from triangles to boxes, capsules and spheres (exact) and cylinders (exact where
the nearest point is on the side or inside a cap, elsewhere a lower bound within the bounding prism's reach),
collision/triangle_primitive_distance.py, against coal on random and near-touching pairs, and
degenerate triangles (points, segments) by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ros_torch_kin.collision.obstacles import BOX, CAPSULE, CYLINDER, SPHERE
from ros_torch_kin.collision.signed_distance import local_signed_distance
from ros_torch_kin.collision.triangle_primitive_distance import PRISM_SIDES, triangle_primitive_distances


def _coal_distance(kind: str, parameters: np.ndarray, corners: np.ndarray, nearest: bool = False):
    """coal's distance between the triangle and the primitive (0 where they meet); with
    ``nearest`` also coal's nearest point on the primitive (its frame)."""
    import coal

    if kind == BOX:
        shape = coal.Box(*(2 * parameters[:3]))
    elif kind == CYLINDER:
        shape = coal.Cylinder(parameters[1], 2 * parameters[0])
    elif kind == CAPSULE:
        shape = coal.Capsule(parameters[1], 2 * parameters[0])
    else:
        shape = coal.Sphere(parameters[0])
    model = coal.BVHModelOBBRSS()
    model.beginModel(1, 3)
    model.addTriangle(*[np.asarray(c, dtype=np.float64) for c in corners])
    model.endModel()
    result = coal.DistanceResult()
    coal.distance(shape, coal.Transform3s(), model, coal.Transform3s(), coal.DistanceRequest(), result)
    distance = max(result.min_distance, 0.0)
    return (distance, np.array(result.getNearestPoint1())) if nearest else distance


def _problems(kind: str, seed: int, count: int):
    """Triangles (2-30 mm) around a primitive of a few centimetres: a third placed 0-2 mm off its
    surface (a random point of it pushed out along its normal), the rest anywhere near; a few
    degenerate (a point, as a URDF sphere's leaf holds, or a segment)."""
    rng = np.random.default_rng(seed)
    if kind == BOX:
        parameters = rng.uniform(0.01, 0.08, (count, 3))
    elif kind in (CYLINDER, CAPSULE):
        parameters = np.stack([rng.uniform(0.01, 0.1, count), rng.uniform(0.01, 0.05, count)], 1)
    else:
        parameters = np.stack([rng.uniform(0.01, 0.06, count), np.zeros(count)], 1)
    size = rng.uniform(0.002, 0.03, (count, 1, 1))
    shape = rng.normal(0, 1, (count, 3, 3)) * size
    centre = rng.uniform(-0.15, 0.15, (count, 1, 3))
    near = count // 3
    direction = rng.normal(0, 1, (near, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    # a point of the surface along a random ray, pushed out by 0-2 mm; a triangle corner there
    surface = direction * 0.2
    t = torch.as_tensor(parameters[:near])
    for _ in range(60):  # walk the ray's point onto the surface (the distance is exact)
        d, _n = _point_distance(kind, surface, t)
        surface = surface - direction * d[:, None]
    _, normal = _point_distance(kind, surface, t)
    offset = surface + normal * rng.uniform(0, 0.002, (near, 1))
    corners = shape + centre
    corners[:near] = shape[:near] - shape[:near, :1] + offset[:, None, :]
    corners[near:near + 10] = corners[near:near + 10, :1]  # points
    corners[near + 10:near + 20, 2] = corners[near + 10:near + 20, 1]  # segments
    return parameters, corners


def _point_distance(kind: str, points: np.ndarray, parameters: torch.Tensor):
    """Each point's signed distance and unit normal to its own primitive (closed forms)."""
    local = torch.as_tensor(points).view(-1, 3, 1)
    distance, normal = local_signed_distance(kind, local, parameters)
    return distance[:, 0].numpy(), normal[:, :, 0].numpy()


@pytest.mark.parametrize("kind", [BOX, CYLINDER, CAPSULE, SPHERE])
def test_equal_to_coal(kind):
    """Exact for boxes, capsules and spheres; for cylinders never above coal, equal to it where
    coal's nearest point is on the side or inside a cap (not on a rim), and short by at most the
    prism's reach r·(1/cos(π/S) − 1). Proper triangles only (coal calls a degenerate one at a
    sphere 0 apart)."""
    pytest.importorskip("coal")
    parameters, corners = _problems(kind, {BOX: 1, CYLINDER: 2, CAPSULE: 3, SPHERE: 4}[kind], 900)
    proper = np.ones(len(corners), dtype=bool)
    proper[300:320] = False
    parameters, corners = parameters[proper], corners[proper]
    ours = triangle_primitive_distances(kind, torch.as_tensor(corners), torch.as_tensor(parameters)).numpy()
    found = [_coal_distance(kind, p, c, nearest=True) for p, c in zip(parameters, corners)]
    reference = np.array([d for d, _ in found])
    if kind == CYLINDER:
        reach = parameters[:, 1] * (1 / np.cos(np.pi / PRISM_SIDES) - 1)
        assert (ours <= reference + 1e-9).all(), float((ours - reference).max())
        assert (ours >= reference - reach - 1e-6).all(), float((reference - reach - ours).max())  # coal: ~1e-6
        assert np.median(reference - ours) < 1e-5
        # coal's nearest point on the side or inside a cap, 0.1 mm or more from the rims: exact
        height = np.array([abs(point[2]) for _, point in found])
        across = np.array([np.hypot(point[0], point[1]) for _, point in found])
        side = (reference > 0) & (height < parameters[:, 0] - 1e-4)
        cap = (reference > 0) & (across < parameters[:, 1] - 1e-4)
        assert side.sum() >= 100 and cap.sum() >= 30, (int(side.sum()), int(cap.sum()))
        side |= cap
        np.testing.assert_allclose(ours[side], reference[side], atol=2e-6)
    else:
        np.testing.assert_allclose(ours, reference, atol=1e-9)
    touching = reference == 0
    assert touching.sum() >= 20 and (ours[touching] == 0).all()  # a third start at 0-2 mm: some meet
    assert (reference[:300] < 0.0021).all()


@pytest.mark.parametrize("kind", [BOX, CYLINDER, CAPSULE, SPHERE])
def test_points_and_segments_by_hand(kind):
    """A degenerate triangle is the point or segment it is: a point's distance is the closed
    form's (clamped at 0); a segment's is the least over many of its points (within their
    spacing), never above it."""
    parameters, corners = _problems(kind, 7, 900)
    parameters, corners = torch.as_tensor(parameters[300:320]), corners[300:320]
    ours = triangle_primitive_distances(kind, torch.as_tensor(corners), parameters).numpy()
    points = corners[:10, 0]
    exact, _ = _point_distance(kind, points, parameters[:10])
    slack = 0.0 if kind != CYLINDER else float(parameters[:10, 1].max()) * (1 / np.cos(np.pi / PRISM_SIDES) - 1)
    assert (ours[:10] <= np.maximum(exact, 0) + 1e-12).all() and (ours[:10] >= np.maximum(exact, 0) - slack - 1e-12).all()
    t = np.linspace(0, 1, 2001)[:, None]
    for k in range(10, 20):
        a, b = corners[k, 0], corners[k, 1]
        along, _ = _point_distance(kind, a + t * (b - a), parameters[k:k + 1].expand(len(t), -1))
        least = max(float(along.min()), 0.0)
        step = float(np.linalg.norm(b - a)) / 2000
        assert least - step - slack - 1e-12 <= ours[k] <= least + 1e-12


def test_float32_stays_close():
    """In float32 (the checkers' dtype) within 1e-5 m of float64's (the tree checker subtracts
    TRIANGLE_ROUNDING = 1e-5 m)."""
    for kind in (BOX, CYLINDER, CAPSULE):
        parameters, corners = _problems(kind, 5, 600)
        exact = triangle_primitive_distances(kind, torch.as_tensor(corners), torch.as_tensor(parameters))
        single = triangle_primitive_distances(kind, torch.as_tensor(corners).float(), torch.as_tensor(parameters).float())
        assert (single.double() - exact).abs().max() < 1e-5


def test_a_box_by_hand():
    """A triangle 2 mm above a box's top face, one crossing an edge, one wholly inside."""
    box = torch.tensor([[0.1, 0.2, 0.3]] * 3, dtype=torch.float64)
    corners = torch.tensor([[[0.0, 0, 0.302], [0.05, 0, 0.302], [0, 0.05, 0.302]],
                            [[0.09, 0, 0.31], [0.11, 0, 0.29], [0.11, 0.01, 0.31]],
                            [[0.0, 0, 0], [0.01, 0, 0], [0, 0.01, 0]]], dtype=torch.float64)
    torch.testing.assert_close(triangle_primitive_distances(BOX, corners, box),
                               torch.tensor([0.002, 0.0, 0.0], dtype=torch.float64))


def test_a_rim_takes_the_same_prism_distance_from_its_nearest_sectors():
    """Near a cylinder's rim the prism is measured only through the sectors a triangle's nearest
    point can lie in: the same distance as through all of the prism's faces (to rounding), at
    every angle (sector edges included), never above coal's and short by at most the prism's
    reach."""
    from ros_torch_kin.collision.triangle_primitive_distance import _PRISM, _PRISM_NORMALS, _PRISM_PLANES, \
        _face_distances, _prism_distances

    rng = np.random.default_rng(11)
    count = 600
    half, radius = rng.uniform(0.02, 0.1, count), rng.uniform(0.01, 0.05, count)
    angle = rng.uniform(-np.pi, np.pi, count)
    angle[:100] = np.round(angle[:100] / (2 * np.pi / PRISM_SIDES)) * (2 * np.pi / PRISM_SIDES)  # on sector edges
    up = rng.choice([-1.0, 1.0], count)
    rim = np.stack([radius * np.cos(angle), radius * np.sin(angle), up * half], 1)
    tilt = rng.uniform(0, np.pi / 2, count)  # within the rim's cone of normals
    normal = np.stack([np.cos(angle) * np.sin(tilt), np.sin(angle) * np.sin(tilt), up * np.cos(tilt)], 1)
    anchor = rim + normal * rng.uniform(0, 0.002, (count, 1))
    corners = anchor[:, None, :] + rng.normal(0, 1, (count, 3, 3)) * rng.uniform(0.001, 0.01, (count, 1, 1))
    corners[:, 0] = anchor
    c, h, r = (torch.as_tensor(t) for t in (corners, half, radius))
    ours = _prism_distances(c, h, r, _PRISM, _PRISM_PLANES, _PRISM_NORMALS)
    scale = torch.stack((r, r, h), 1)
    offset = _PRISM_PLANES[:, :2].norm(dim=1, keepdim=True) * r + _PRISM_PLANES[:, 2:].abs() * h
    across = c[..., :2] @ _PRISM_NORMALS.T
    inside = ((across.amax(2) <= r.unsqueeze(1)) & (c[..., 2].abs() <= h.unsqueeze(1))).any(1)
    F = _PRISM.shape[0]
    every = _face_distances(c, torch.arange(count).repeat_interleave(F), torch.arange(F).repeat(count), _PRISM,
                            _PRISM_PLANES, scale, offset.T.reshape(-1), inside)
    torch.testing.assert_close(ours, every, atol=1e-12, rtol=0)
    assert int((every > 0).sum()) > 300
    if pytest.importorskip("coal"):
        parameters = np.stack([half, radius], 1)
        whole = triangle_primitive_distances(CYLINDER, c, torch.as_tensor(parameters)).numpy()
        reference = np.array([_coal_distance(CYLINDER, p, x) for p, x in zip(parameters, corners)])
        reach = radius * (1 / np.cos(np.pi / PRISM_SIDES) - 1)
        assert (whole <= reference + 1e-9).all() and (whole >= reference - reach - 1e-6).all()
