"""The batched triangle-triangle distance (collision/triangle_distance.py) against coal on random
and near-touching pairs and against hand-derived cases, and its cheap plane bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ros_torch_kin.collision.triangle_distance import (plane_gaps, segment_distances, triangle_distances, triangle_normals,
                                                       triangle_segment_distances)


def _coal_distance(a: np.ndarray, b: np.ndarray) -> float:
    import coal

    def mesh(corners):
        model = coal.BVHModelOBBRSS()
        model.beginModel(1, 3)
        model.addTriangle(*[np.asarray(c, dtype=np.float64) for c in corners])
        model.endModel()
        return model

    result = coal.DistanceResult()
    coal.distance(mesh(a), coal.Transform3s(), mesh(b), coal.Transform3s(), coal.DistanceRequest(), result)
    return max(result.min_distance, 0.0)


def _pairs(seed: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random pairs, a third of them nearly touching (b is a's copy moved by 0-2 mm along a random
    direction and turned a little), some degenerate (a repeated corner, three on a line)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(count, 3, 3, generator=g, dtype=torch.float64) * 0.05
    b = torch.rand(count, 3, 3, generator=g, dtype=torch.float64) * 0.05 + torch.rand(count, 1, 3, generator=g,
                                                                                      dtype=torch.float64) * 0.06
    near = count // 3
    direction = torch.randn(near, 1, 3, generator=g, dtype=torch.float64)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    b[:near] = a[:near] + direction * torch.rand(near, 1, 1, generator=g, dtype=torch.float64) * 0.002 + \
        torch.randn(near, 3, 3, generator=g, dtype=torch.float64) * 2e-4
    b[near:near + 20, 2] = b[near:near + 20, 1]  # a segment
    a[near + 20:near + 40, 2] = 0.5 * (a[near + 20:near + 40, 0] + a[near + 20:near + 40, 1])  # corners on a line
    return a, b


def test_equals_coal_on_random_and_near_touching_pairs():
    pytest.importorskip("coal")
    a, b = _pairs(3, 900)
    ours = triangle_distances(a, b)
    reference = torch.tensor([_coal_distance(x.numpy(), y.numpy()) for x, y in zip(a, b)], dtype=torch.float64)
    assert int((reference == 0).sum()) > 50 and int((reference > 0).sum()) > 500  # both kinds in the sample
    assert torch.allclose(ours, reference, atol=1e-12, rtol=0)


def test_triangle_to_segment_equals_coal():
    """The segment form (three edges, two ends over the face, a crossing) against coal with the
    segment as a degenerate triangle, on random, nearly touching and crossing pairs; and a
    segment through a face and one over its middle by hand."""
    pytest.importorskip("coal")
    a, b = _pairs(5, 600)
    g = torch.Generator().manual_seed(6)
    crossing = a[:100].mean(1)  # a segment through each of the first 100 triangles' centroid
    along = torch.randn(100, 3, generator=g, dtype=torch.float64) * 0.01
    b[:100, 0], b[:100, 1] = crossing - along, crossing + along
    ours = triangle_segment_distances(a, b[:, 0], b[:, 1])
    segment = torch.stack((b[:, 0], b[:, 1], b[:, 1]), 1)
    reference = torch.tensor([_coal_distance(x.numpy(), y.numpy()) for x, y in zip(a, segment)], dtype=torch.float64)
    assert int((reference == 0).sum()) > 100 and int((reference > 0).sum()) > 300
    assert torch.allclose(ours, reference, atol=1e-12, rtol=0)
    flat = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]] * 2, dtype=torch.float64)
    ends = torch.tensor([[0.2, 0.2, -1.0], [0.2, 0.2, 0.5]], dtype=torch.float64)
    heads = torch.tensor([[0.2, 0.2, 1.0], [0.3, 0.2, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(triangle_segment_distances(flat, ends, heads), torch.tensor([0.0, 0.5], dtype=torch.float64))


def test_hand_derived_cases():
    def one(a, b):
        return float(triangle_distances(torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64))[0])

    flat = [[0, 0, 0], [1, 0, 0], [0, 1, 0]]
    # a vertex above the face's interior: its height
    assert one(flat, [[0.2, 0.2, 0.3], [0.2, 0.2, 1.0], [0.5, 0.2, 1.0]]) == pytest.approx(0.3)
    # parallel and coplanar, side by side: the gap between the nearest edges
    assert one(flat, [[1.5, 0, 0], [2.5, 0, 0], [1.5, 1, 0]]) == pytest.approx(0.5)
    # an edge running over the face, its ends beyond it: the edge's height (an edge pair gives it)
    assert one(flat, [[0.25, -1, 0.1], [0.25, 1, 0.1], [0.25, 0, 2.0]]) == pytest.approx(0.1)
    # the same triangle lowered through the face: they meet
    assert one(flat, [[0.25, -1, -0.1], [0.25, 1, -0.1], [0.25, 0, 2.0]]) == 0.0
    # an edge through the middle of the other triangle, with no vertex near: they meet
    assert one(flat, [[0.2, 0.2, -1], [0.2, 0.2, 1], [5, 5, 5]]) == 0.0
    # a segment (degenerate triangle) and a point
    assert one(flat, [[0.2, 0.2, 0.5], [0.2, 0.2, 0.5], [0.2, 0.2, 0.5]]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"\(N, 3, 3\)"):
        triangle_distances(torch.zeros(2, 3, 3), torch.zeros(2, 4, 3))


def test_segment_distances_clamp_onto_the_segments():
    p0, p1 = torch.tensor([0.0, 0, 0]), torch.tensor([1.0, 0, 0])
    cases = [([2.0, 1, 0], [3.0, 1, 0], math.sqrt(2)),  # beyond the end: end to end
             ([0.5, 1, 1], [0.5, 1, 1], math.sqrt(2)),  # a point
             ([0.5, -1, 1], [0.5, 1, 1], 1.0),  # crossing above
             ([0.0, 1, 0], [1.0, 1, 0], 1.0)]  # parallel
    for q0, q1, expected in cases:
        got = segment_distances(p0.view(3, 1), p1.view(3, 1), torch.tensor(q0).view(3, 1), torch.tensor(q1).view(3, 1))
        assert float(got[0]) == pytest.approx(expected, abs=1e-6)


def test_plane_gaps_never_exceed_the_distance():
    a, b = _pairs(5, 600)
    gaps = plane_gaps(a, b, triangle_normals(a), triangle_normals(b))
    exact = triangle_distances(a, b)
    assert bool((gaps <= exact + 1e-12).all())
    assert int((gaps > 0.5 * exact).sum()) > 100  # and is often a good share of it
    assert bool((triangle_normals(torch.tensor([[[0.0, 0, 0], [1, 0, 0], [2, 0, 0]]])) == 0).all())  # on a line: none
