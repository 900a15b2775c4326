"""Global search (batched bidirectional RRT-Connect + shortcuts): 2-D worlds with an analytic
``valid`` (a narrow gap, a bug trap, an enclosed goal), edge checks against a brute-force
reference, budgets, determinism, and the bundled 7-DOF arm getting out of a box open on one side
with the real collision checker."""

from __future__ import annotations

import math
import time

import pytest
import torch

from ros_torch_kin.collision import CollisionChecker, Obstacle, Scene, robot_spheres_from_urdf
from ros_torch_kin.kinematics import Chain
from ros_torch_kin.motion.global_search import (
    GlobalSearchOptions,
    GlobalSearchResult,
    Resolution,
    edges_valid,
    search_path,
    shortcut_path,
)
from ros_torch_kin.motion.checking import MotionValidator
from ros_torch_kin.robots import bundled_urdf

DTYPES = [torch.float64, torch.float32]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]

# Axis-aligned boxes (lower corner, upper corner) in the unit square.
#: a wall across the square with a gap of 0.05 (as the planner sees it, margin included)
GAP = [((0.48, 0.0), (0.52, 0.475)), ((0.48, 0.525), (0.52, 1.0))]
#: a box open on its right side around (0.5, 0.5); the goal is to its left
TRAP = [((0.35, 0.3), (0.38, 0.7)), ((0.35, 0.67), (0.65, 0.7)), ((0.35, 0.3), (0.65, 0.33))]
#: a closed box around (0.8, 0.8)
CAGE = [((0.7, 0.7), (0.9, 0.72)), ((0.7, 0.88), (0.9, 0.9)), ((0.7, 0.7), (0.72, 0.9)), ((0.88, 0.7), (0.9, 0.9))]


@pytest.fixture(autouse=True)
def one_thread():
    """The search works on small tensors (tens to thousands of rows), for which one intra-op
    thread is as fast as two, and far faster on a loaded machine: with conftest's two threads
    on a 2-core machine shared with other processes, cdist, the checker's calls and the edge
    bookkeeping each got 10-30x slower here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Counted:
    """An analytic ``valid`` for boxes, grown by ``margin`` on every side, that counts its calls
    and the configurations it was given."""

    def __init__(self, boxes, margin: float = 0.0, delay: float = 0.0, delay_per_config: float = 0.0):
        self.lower = torch.tensor([b[0] for b in boxes], dtype=torch.float64) - margin
        self.upper = torch.tensor([b[1] for b in boxes], dtype=torch.float64) + margin
        self.delay, self.delay_per_config = delay, delay_per_config
        self.calls = self.configs = 0

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        assert q.dim() == 2 and q.shape[1] == self.lower.shape[1]
        self.calls += 1
        self.configs += q.shape[0]
        if self.delay or self.delay_per_config:
            time.sleep(self.delay + self.delay_per_config * q.shape[0])
        lower, upper = self.lower.to(q.device, q.dtype), self.upper.to(q.device, q.dtype)
        inside = ((q.unsqueeze(1) > lower) & (q.unsqueeze(1) < upper)).all(-1)
        return ~inside.any(1)


def square(dtype, device="cpu"):
    return torch.zeros(2, dtype=dtype, device=device), torch.ones(2, dtype=dtype, device=device)


def dense(path: torch.Tensor, resolution: float) -> torch.Tensor:
    """Every edge of ``path`` (K, J) sampled at most ``resolution`` apart (max-norm), ends included."""
    pieces = []
    for a, b in zip(path[:-1].double(), path[1:].double()):
        n = max(1, math.ceil(float((b - a).abs().max()) / resolution))
        pieces.append(torch.lerp(a, b, torch.linspace(0, 1, n + 1, dtype=torch.float64).unsqueeze(1)))
    return torch.cat(pieces)


def length(path: torch.Tensor) -> float:
    return float((path[1:] - path[:-1]).double().norm(dim=-1).sum())


def assert_valid_path(result: GlobalSearchResult, start, goals, true_valid, options: GlobalSearchOptions):
    """Found; starts at start and ends at one of the goals (exactly); within the square; every
    edge, re-checked at a tenth of the resolution against the obstacles without the planner's
    margin, is collision-free."""
    assert result.found and result.stopped == "connected", result
    path = result.path
    assert path.dim() == 2 and path.shape[0] >= 2 and path.dtype == start.dtype and path.device == start.device
    assert torch.equal(path[0], start)
    assert (path[-1] == goals).all(-1).any(), "the path ends at a goal"
    assert bool(((path >= 0) & (path <= 1)).all())
    assert bool(true_valid(dense(path.cpu(), options.edge_resolution / 10)).all())


# ------------------------------------------------------------------------------------ edge checks
def test_edges_valid_matches_a_brute_force_check_of_the_same_configurations():
    """Small obstacles that only single configurations of an edge hit: the staged, early-exit,
    coarse-to-fine check must see every one of them (no configuration skipped or duplicated)."""
    g = torch.Generator().manual_seed(5)
    centres = torch.rand(150, 2, generator=g, dtype=torch.float64)
    boxes = [((float(x) - 0.004, float(y) - 0.004), (float(x) + 0.004, float(y) + 0.004)) for x, y in centres]
    valid = Counted(boxes)
    a = torch.rand(300, 2, generator=g, dtype=torch.float64)
    b = torch.rand(300, 2, generator=g, dtype=torch.float64)
    b[:10] = a[:10]  # zero-length edges
    resolution = 0.013
    reference = []
    for p, q in zip(a, b):
        n = max(1, math.ceil(float((q - p).abs().max()) / resolution))
        t = torch.arange(n + 1, dtype=torch.float64) / n
        reference.append(bool(valid(torch.lerp(p.expand(n + 1, 2), q.expand(n + 1, 2), t.unsqueeze(1))).all()))
    reference = torch.tensor(reference)
    assert 50 < int(reference.sum()) < 250, "both verdicts are exercised"
    valid.calls = valid.configs = 0
    ok = edges_valid(valid, a, b, resolution)
    assert ok.dtype == torch.bool and ok.shape == (300,)
    assert torch.equal(ok, reference)
    total = sum(max(1, math.ceil(float((q - p).abs().max()) / resolution)) + 1 for p, q in zip(a, b))
    assert valid.configs < total, "early exit skipped the rest of the edges found invalid"
    assert valid.calls <= 16


def test_edges_checked_with_their_requirements_match_checking_them_one_after_the_other():
    """The search's rounds check each extension, its connect's first step and the rest together,
    each only while the one it requires is valid: the verdicts of the edge alone and'ed with its
    requirement's (a chain of two), fewer configurations than checking every edge in full."""
    from ros_torch_kin.motion.global_search import _check_edges, _Validity

    g = torch.Generator().manual_seed(7)
    centres = torch.rand(40, 2, generator=g, dtype=torch.float64)
    boxes = [((float(x) - 0.015, float(y) - 0.015), (float(x) + 0.015, float(y) + 0.015)) for x, y in centres]
    valid = Counted(boxes)
    E, resolution = 200, 0.01
    a = torch.rand(E, 2, generator=g, dtype=torch.float64)
    b, c = (a + 0.4 * (torch.rand(E, 2, generator=g, dtype=torch.float64) - 0.5) for _ in range(2))
    alone = [edges_valid(valid, p, q, resolution) for p, q in ((a, b), (b, c), (c, a))]
    chained = (alone[0], alone[0] & alone[1], alone[0] & alone[1] & alone[2])
    assert 5 < int(chained[2].sum()) and int(alone[0].sum()) < E, "both verdicts are exercised"
    valid.configs = 0
    index = torch.arange(E)
    ok = _check_edges(_Validity(valid), torch.cat((a, b, c)), torch.cat((b, c, a)), resolution,
                      requires=torch.cat((index, index, index + E)))
    assert torch.equal(ok, torch.cat(chained))
    full = sum(max(1, math.ceil(float((q - p).abs().max()) / resolution)) + 1
               for p, q in zip(torch.cat((a, b, c)), torch.cat((b, c, a))))
    assert valid.configs < full


def test_edges_valid_catches_a_wall_between_the_ends_with_few_checks():
    """Long edges across a thin wall in their middle: invalid, found by the coarse levels (the
    ends, the middle, ...) long before checking everything; edges beside the wall are valid."""
    wall = [((0.495, 0.0), (0.505, 0.5))]
    valid = Counted(wall)
    a = torch.stack((torch.full((64,), 0.1), torch.linspace(0.05, 0.95, 64)), 1).double()
    b = a.clone()
    b[:, 0] = 0.9
    ok = edges_valid(valid, a, b, 0.002)  # 400 segments per edge
    assert torch.equal(ok, a[:, 1] > 0.5)
    assert valid.configs < 64 * 401 * 0.6
    with pytest.raises(ValueError):
        edges_valid(valid, a, b[:3], 0.01)


def test_edges_near_a_grazing_goal_are_checked_finely():
    """A thin wall just before a goal, between the configurations the usual spacing checks: the
    straight edge to the goal passes at that spacing and is refused with ``fine_near`` (an edge
    checked at the finer spacing where it passes within its radius); the path found then goes
    around it, its edges near the goal valid at that spacing; the same wall far from the goal is
    still stepped over (the coarse spacing outside the radius, on the same edge)."""
    wall = [((0.83, 0.3), (0.835, 0.7))]  # 5 mm thick, 5-10 cm before the goal at x = 0.9
    start, goal = torch.tensor([0.1, 0.5], dtype=torch.float64), torch.tensor([[0.9, 0.5]], dtype=torch.float64)
    lower, upper = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    options = GlobalSearchOptions(edge_resolution=0.04, random_seed=3)
    coarse = search_path(Counted(wall), start, goal, lower, upper, options)
    assert coarse.found and coarse.path.shape[0] == 2  # straight through: the wall lies between checks
    fine = search_path(Counted(wall), start, goal, lower, upper, options, fine_near=(goal, 0.15, 0.004))
    assert fine.found and fine.path.shape[0] > 2
    a, b = fine.path[:-1], fine.path[1:]
    near = ((a - goal).abs().amax(-1) <= 0.15) | ((b - goal).abs().amax(-1) <= 0.15)
    assert bool(near[-1]) and bool(edges_valid(Counted(wall), a[near], b[near], 0.004).all())
    far = [((0.31, 0.3), (0.315, 0.7))]  # the same wall far from the goal: still between the coarse checks
    assert search_path(Counted(far), start, goal, lower, upper, options, fine_near=(goal, 0.15, 0.004)).path.shape[0] == 2
    # the grid: fine where an edge passes within the radius (that window, one fine step wider), coarse elsewhere
    n, low, high, stride = Resolution(0.04, goal, 0.15, 0.004).grid(
        torch.tensor([[0.1, 0.5], [0.1, 0.1], [0.5, 0.9]], dtype=torch.float64),
        torch.tensor([[0.9, 0.5], [0.5, 0.1], [0.9, 0.5]], dtype=torch.float64))
    assert n.tolist() == [200, 10, 100] and stride.tolist() == [10, 1, 10]
    torch.testing.assert_close(low[[0, 2]], torch.tensor([0.8125 - 1 / 200, 0.625 - 1 / 100], dtype=torch.float64))
    torch.testing.assert_close(high[[0, 2]], torch.tensor([1 + 1 / 200, 1 + 1 / 100], dtype=torch.float64))
    assert math.isinf(float(low[1])) and math.isinf(float(high[1]))


# ------------------------------------------------------------------------------------ 2-D worlds
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_narrow_gap(dtype, device):
    options = GlobalSearchOptions(time_budget=4.0)
    valid = Counted(GAP, margin=options.edge_resolution / 2)  # a half-resolution margin: exact between checks
    start = torch.tensor([0.1, 0.9], dtype=dtype, device=device)
    goal = torch.tensor([[0.9, 0.8]], dtype=dtype, device=device)
    assert not bool(edges_valid(valid, start.unsqueeze(0), goal, options.edge_resolution)[0])
    valid.calls = valid.configs = 0
    result = search_path(valid, start, goal, *square(dtype, device), options)
    assert_valid_path(result, start, goal, Counted(GAP), options)
    assert result.checks == valid.configs > 0 and result.nodes > 2
    assert result.elapsed < options.time_budget
    # through the gap: the path crosses x = 0.5 between y = 0.475 and 0.525
    crossing = dense(result.path.cpu(), 0.001)
    at_wall = crossing[(crossing[:, 0] - 0.5).abs() < 0.001]
    assert bool(((at_wall[:, 1] > 0.475) & (at_wall[:, 1] < 0.525)).all())


@pytest.mark.parametrize("dtype", DTYPES)
def test_bug_trap_with_an_invalid_goal_among_the_goals(dtype):
    options = GlobalSearchOptions(time_budget=4.0)
    valid = Counted(TRAP, margin=options.edge_resolution / 2)
    start = torch.tensor([0.5, 0.5], dtype=dtype)
    goals = torch.tensor([[0.36, 0.5], [0.1, 0.5]], dtype=dtype)  # the first is inside the trap's wall
    assert not bool(edges_valid(valid, start.unsqueeze(0), goals[1:], options.edge_resolution)[0])
    result = search_path(valid, start, goals, *square(dtype), options)
    assert_valid_path(result, start, goals, Counted(TRAP), options)
    assert torch.equal(result.path[-1], goals[1])
    assert bool((result.path[:, 0] > 0.65).any()), "out through the open side"


@pytest.mark.parametrize("dtype", DTYPES)
def test_shortcut_never_lengthens_and_keeps_the_path_valid(dtype):
    options = GlobalSearchOptions(shortcut_rounds=0, time_budget=4.0)
    valid = Counted(GAP, margin=options.edge_resolution / 2)
    start = torch.tensor([0.1, 0.9], dtype=dtype)
    goal = torch.tensor([[0.9, 0.8]], dtype=dtype)
    raw = search_path(valid, start, goal, *square(dtype), options)
    assert raw.found and raw.path.shape[0] > 4, "the tree path has many waypoints"
    previous = raw.path
    for rounds in (1, 3, 30):
        short = shortcut_path(valid, raw.path, GlobalSearchOptions(shortcut_rounds=rounds))
        assert short.dtype == dtype and short.shape[0] <= raw.path.shape[0]
        assert torch.equal(short[0], raw.path[0]) and torch.equal(short[-1], raw.path[-1])
        assert length(short) <= length(raw.path) * (1 + 1e-6)
        assert bool(Counted(GAP)(dense(short, options.edge_resolution / 10)).all())
        # each kept waypoint is one of the input's (sections are only replaced by straight edges)
        assert bool((short.unsqueeze(1) == raw.path.unsqueeze(0)).all(-1).any(1).all())
        previous = short
    assert length(previous) < 0.95 * length(raw.path), "30 rounds shorten a tree path"
    assert previous.shape[0] <= 5
    # no rounds: unchanged; collinear waypoints in free space: only the ends remain
    assert torch.equal(shortcut_path(valid, raw.path, GlobalSearchOptions(shortcut_rounds=0)), raw.path)
    line = torch.lerp(torch.tensor([0.1, 0.1], dtype=dtype), torch.tensor([0.3, 0.9], dtype=dtype),
                      torch.linspace(0, 1, 9, dtype=dtype).unsqueeze(1))
    assert shortcut_path(valid, line, GlobalSearchOptions(shortcut_rounds=5)).shape[0] == 2


def test_same_seed_same_path():
    valid = Counted(GAP, margin=0.01)
    start, goal = torch.tensor([0.1, 0.9], dtype=torch.float64), torch.tensor([[0.9, 0.8]], dtype=torch.float64)
    runs = [search_path(valid, start, goal, *square(torch.float64), GlobalSearchOptions(random_seed=s, time_budget=4.0))
            for s in (7, 7, 8)]
    assert all(r.found for r in runs)
    assert torch.equal(runs[0].path, runs[1].path)
    assert runs[0].nodes == runs[1].nodes  # (not checks: the stage sizes follow valid's measured cost)
    assert runs[0].path.shape != runs[2].path.shape or not torch.equal(runs[0].path, runs[2].path)


def test_rounds_grow_their_batch_until_max_batch():
    """A search that has not connected after ``batch_doubling`` rounds draws twice the samples a
    round, up to ``max_batch``: behind a closed wall both trees fill their halves, and a node
    budget takes far fewer rounds than at a fixed batch (each round adds at most two nodes a
    sample: its extension and the other tree's connect step). A search that connects within the
    first rounds is the same as at a fixed batch."""
    wall = Counted([((0.48, 0.0), (0.52, 1.0))], margin=0.01)
    start, goal = torch.tensor([0.1, 0.1], dtype=torch.float64), torch.tensor([[0.8, 0.8]], dtype=torch.float64)
    fixed = search_path(wall, start, goal, *square(torch.float64),
                        GlobalSearchOptions(max_nodes=3000, time_budget=30, max_batch=64))
    growing = search_path(wall, start, goal, *square(torch.float64), GlobalSearchOptions(max_nodes=3000, time_budget=30))
    assert fixed.stopped == growing.stopped == "max_nodes"
    assert fixed.rounds >= (3000 - 2) / (2 * 64)
    assert growing.rounds < fixed.rounds / 2
    # the doubling stops at max_batch: 4 rounds of 64 samples, then 128 a round
    capped = search_path(wall, start, goal, *square(torch.float64),
                         GlobalSearchOptions(max_nodes=3000, time_budget=30, max_batch=128))
    assert capped.stopped == "max_nodes" and capped.rounds >= 4 + (3000 - 2 - 2 * 4 * 64) / (2 * 128)
    assert capped.rounds > 2 * growing.rounds  # the bound above holds without a cap too: compare
    short_wall = Counted([((0.45, 0.2), (0.55, 0.8))], margin=0.01)  # around it in a few rounds
    start, goal = torch.tensor([0.2, 0.5], dtype=torch.float64), torch.tensor([[0.8, 0.5]], dtype=torch.float64)
    early = [search_path(short_wall, start, goal, *square(torch.float64), GlobalSearchOptions(time_budget=4.0, **extra))
             for extra in ({}, dict(max_batch=64))]
    assert early[0].found and 0 < early[0].rounds <= GlobalSearchOptions().batch_doubling
    assert torch.equal(early[0].path, early[1].path) and early[0].rounds == early[1].rounds
    with pytest.raises(ValueError, match="max_batch"):
        GlobalSearchOptions(batch=64, max_batch=32)
    with pytest.raises(ValueError, match="batch_doubling"):
        GlobalSearchOptions(batch_doubling=0)


# ----------------------------------------------------------------------------------- the budgets
def test_enclosed_goal_stops_at_the_time_budget():
    valid = Counted(CAGE, margin=0.01)
    start, goal = torch.tensor([0.1, 0.1], dtype=torch.float64), torch.tensor([[0.8, 0.8]], dtype=torch.float64)
    options = GlobalSearchOptions(time_budget=0.3, max_nodes=10**7)
    began = time.perf_counter()
    result = search_path(valid, start, goal, *square(torch.float64), options)
    wall = time.perf_counter() - began
    assert not result.found and result.path is None and result.stopped == "time_budget"
    assert wall <= options.time_budget + 0.05 and result.elapsed <= options.time_budget + 0.05
    assert result.elapsed > 0.5 * options.time_budget, "the budget was used, not abandoned early"
    assert result.nodes > 100 and result.checks == valid.configs
    # an earlier deadline wins over the time budget
    began = time.perf_counter()
    result = search_path(valid, start, goal, *square(torch.float64), GlobalSearchOptions(time_budget=10.0),
                         deadline=began + 0.15)
    assert result.stopped == "time_budget" and time.perf_counter() - began <= 0.15 + 0.05


def test_a_slow_valid_is_not_called_past_the_deadline():
    """A ``valid`` costing 3 ms a call plus 50 µs a configuration: the calls are split or left
    out so that the search still returns within the budget."""
    valid = Counted(CAGE, margin=0.01, delay=0.003, delay_per_config=50e-6)
    start, goal = torch.tensor([0.1, 0.1], dtype=torch.float64), torch.tensor([[0.8, 0.8]], dtype=torch.float64)
    options = GlobalSearchOptions(time_budget=0.4, max_nodes=10**7, batch=256)
    began = time.perf_counter()
    result = search_path(valid, start, goal, *square(torch.float64), options)
    assert result.stopped == "time_budget"
    assert time.perf_counter() - began <= options.time_budget + 0.05


def test_a_closed_wall_stops_at_max_nodes():
    valid = Counted([((0.48, 0.0), (0.52, 1.0))], margin=0.01)
    start, goal = torch.tensor([0.1, 0.1], dtype=torch.float64), torch.tensor([[0.8, 0.8]], dtype=torch.float64)
    options = GlobalSearchOptions(max_nodes=1000, time_budget=10)
    result = search_path(valid, start, goal, *square(torch.float64), options)
    assert not result.found and result.stopped == "max_nodes" and result.nodes == 1000


# --------------------------------------------------------------------------------- special cases
def test_refusals_and_trivial_cases_need_no_search():
    options = GlobalSearchOptions()
    valid = Counted(TRAP)
    bounds = square(torch.float64)
    free, blocked = torch.tensor([0.5, 0.5], dtype=torch.float64), torch.tensor([0.36, 0.5], dtype=torch.float64)
    outside = torch.tensor([[0.9, 0.5], [0.95, 0.1]], dtype=torch.float64)
    result = search_path(valid, blocked, outside, *bounds, options)
    assert (result.found, result.stopped, result.path, result.checks, result.rounds) == (False, "start invalid", None, 3, 0)
    result = search_path(valid, free, blocked.unsqueeze(0), *bounds, options)
    assert (result.found, result.stopped, result.path) == (False, "goal invalid", None)
    # start == goal
    result = search_path(valid, free, torch.stack((outside[0], free)), *bounds, options)
    assert result.found and result.stopped == "connected" and result.path.shape == (2, 2)
    assert torch.equal(result.path[0], free) and torch.equal(result.path[1], free) and result.checks == 3
    # a valid straight edge is returned at once: the shortest of the valid ones
    valid.calls = 0
    result = search_path(valid, free, outside.flip(0), *bounds, options)
    assert result.found and torch.equal(result.path, torch.stack((free, outside[0])))
    assert result.nodes == 3 and valid.calls <= 3 and result.checks < 60 and result.rounds == 0
    with pytest.raises(ValueError):
        search_path(valid, free, outside[:, :1], *bounds, options)
    with pytest.raises(ValueError):
        search_path(valid, free, outside, torch.tensor([0.0, -math.inf]), bounds[1], options)
    with pytest.raises(ValueError):
        GlobalSearchOptions(step=0)


# ---------------------------------------------------------------------------- the 7-DOF arm, a box
#: a box open towards the robot (−x) in front of it: interior 0.5 × 0.5 × 0.45 m, walls 0.02 m
BOX_CENTRE, BOX_INSIDE, BOX_WALL = (0.71, 0.0, 0.52), (0.5, 0.5, 0.45), 0.02
#: the tool inside the box, reaching forward; the goal: the same pose turned 1.5 rad about the base
ARM_START = [0.0, 0.5, 0.0, -1.6, 0.0, -0.5, 0.0]
ARM_GOAL = [1.5, 0.5, 0.0, -1.6, 0.0, -0.5, 0.0]


def box_open_towards_the_robot() -> Scene:
    (x, y, z), (ix, iy, iz), w = BOX_CENTRE, BOX_INSIDE, BOX_WALL
    return Scene([
        Obstacle.box("top", (ix, iy + 2 * w, w), [x, y, z + (iz + w) / 2, 0, 0, 0, 1]),
        Obstacle.box("bottom", (ix, iy + 2 * w, w), [x, y, z - (iz + w) / 2, 0, 0, 0, 1]),
        Obstacle.box("back", (w, iy + 2 * w, iz + 2 * w), [x + (ix + w) / 2, y, z, 0, 0, 0, 1]),
        Obstacle.box("left", (ix, w, iz + 2 * w), [x, y + (iy + w) / 2, z, 0, 0, 0, 1]),
        Obstacle.box("right", (ix, w, iz + 2 * w), [x, y - (iy + w) / 2, z, 0, 0, 0, 1]),
    ])


@pytest.fixture(scope="module")
def arm_in_a_box(arm7):
    """The bundled arm's spheres against the box: the exact verdict (margin 0) and the planner's
    (margin 1 cm: between two configurations checked 0.02 rad apart a sphere moves ~1 cm)."""
    spheres = robot_spheres_from_urdf(bundled_urdf(), arm7)
    checker = CollisionChecker(arm7, spheres, box_open_towards_the_robot())
    planner = CollisionChecker(arm7, spheres, checker.scene, checker.self_pairs, margin=0.01)
    return checker, planner


@pytest.mark.parametrize("dtype", DTYPES)
def test_arm_gets_out_of_a_box_open_on_one_side(arm7: Chain, arm_in_a_box, dtype):
    checker, planner = arm_in_a_box
    chain = arm7.to(dtype=dtype)
    planner = planner.on_chain(chain)
    start = torch.tensor(ARM_START, dtype=dtype)
    goal = torch.tensor([ARM_GOAL], dtype=dtype)
    calls = [0]

    def valid(q):
        calls[0] += 1
        return ~planner.in_collision(q)

    options = GlobalSearchOptions(time_budget=20.0)
    motion = MotionValidator(checker, clearance=0.0, resolution=0.005)
    # the straight motion is blocked (the forearm swings through the box's side wall)
    assert not bool(edges_valid(valid, start.unsqueeze(0), goal, options.edge_resolution)[0])
    assert not bool(motion.check(torch.stack((start, goal[0])).double()).clear[0])
    calls[0] = 0
    result = search_path(valid, start, goal, chain.lower_limits, chain.upper_limits, options)
    assert result.found and result.stopped == "connected", result
    path = result.path
    assert torch.equal(path[0], start) and torch.equal(path[-1], goal[0]) and path.dtype == dtype
    assert bool((chain.lower_limits <= path).all() and (path <= chain.upper_limits).all())
    # the exact checker (float64, no margin) agrees densely (0.002 rad) and by its swept bound
    fine = dense(path, 0.002)
    assert not bool(checker.in_collision(fine).any())
    assert bool(motion.check(path.double()).clear[0])
    assert result.checks > 0 and 0 < calls[0] <= result.checks


#: a slot open at its top (x in [0.46, 0.54], from y = 0.2 up), the goal at its bottom: from the
#: goal, few random extensions are free
SLOT = [((0.40, 0.15), (0.46, 0.9)), ((0.54, 0.15), (0.60, 0.9)), ((0.40, 0.15), (0.60, 0.2))]


def up_the_slot(roots: torch.Tensor) -> torch.Tensor:
    """An escape: 12 steps of 0.06 straight up from each root (y clamped to 1: the last rows repeat)."""
    steps = torch.arange(13, dtype=roots.dtype).view(1, -1, 1) * torch.tensor([0.0, 0.06], dtype=roots.dtype)
    return torch.minimum(roots.unsqueeze(1) + steps, torch.ones(2, dtype=roots.dtype))


def test_escapes_join_a_tree_up_to_their_first_invalid_edge():
    from ros_torch_kin.motion.global_search import _grow_escapes, _Tree, _Validity

    wall = Counted([((0.0, 0.58), (1.0, 0.65))])  # across the square: the escape crosses it
    roots = torch.tensor([[0.5, 0.3], [0.2, 0.95]], dtype=torch.float64)
    tree = _Tree(roots, 16)
    _grow_escapes(_Validity(wall), tree, up_the_slot, 0.02, *square(torch.float64))
    assert tree.escaped
    added = tree.nodes[tree.roots:tree.size]
    # the first root: 0.36, 0.42, 0.48, 0.54 below the wall (0.60 is in it), nothing beyond;
    # the second: 1.0 once (then its escape repeats its end: nothing more)
    assert torch.allclose(added[:, 1].sort().values, torch.tensor([0.36, 0.42, 0.48, 0.54, 1.0], dtype=torch.float64))
    # each joins its own chain: the parent of a node is the one before it (the root for the first)
    for i in range(tree.roots, tree.size):
        parent = int(tree.parent[i])
        assert tree.nodes[parent, 0] == tree.nodes[i, 0] and tree.nodes[parent, 1] < tree.nodes[i, 1]
        assert math.isclose(float(tree.cost[i]), float(tree.cost[parent] + (tree.nodes[i] - tree.nodes[parent]).norm()))


def test_several_escapes_per_root_each_join_from_their_own_root():
    """``escapes`` may give M paths per root (rows m·R + r: escape m of root r, as the planner's
    clearance descent and its six tool retreats): each joins the tree from its own root, up to
    its first invalid edge; one that stops (steps under ESCAPE_MOVED) adds nothing more."""
    from ros_torch_kin.motion.global_search import ESCAPE_MOVED, _grow_escapes, _Tree, _Validity

    wall = Counted([((0.0, 0.58), (1.0, 0.65))])  # across the square: up is blocked from the first root
    roots = torch.tensor([[0.5, 0.3], [0.2, 0.1]], dtype=torch.float64)

    def up_and_right(r):  # M = 2: up the slot, then to the right; the right one of root 1 stalls
        steps = torch.arange(13, dtype=r.dtype).view(1, -1, 1)
        right = r.unsqueeze(1) + steps * torch.tensor([0.05, 0.0], dtype=r.dtype)
        right[1, 3:] = right[1, 2] + steps[0, 3:] * torch.tensor([0.1 * ESCAPE_MOVED, 0.0], dtype=r.dtype)
        return torch.cat((up_the_slot(r), torch.minimum(right, torch.ones(2, dtype=r.dtype))))

    tree = _Tree(roots, 64)
    _grow_escapes(_Validity(wall), tree, up_and_right, 0.02, *square(torch.float64))
    added = tree.nodes[tree.roots:tree.size]
    def root_of(i):
        while int(tree.parent[i]) >= 0:
            i = int(tree.parent[i])
        return i
    roots_of = [root_of(i) for i in range(tree.roots, tree.size)]
    from_first = added[[r == 0 for r in roots_of]]
    from_second = added[[r == 1 for r in roots_of]]
    # root 0: up to 0.54 (the wall above), and right along y = 0.3 up to x = 1 (clamped)
    assert torch.allclose(from_first[from_first[:, 0] == 0.5, 1].sort().values,
                          torch.tensor([0.36, 0.42, 0.48, 0.54], dtype=torch.float64))
    assert bool((from_first[from_first[:, 1] == 0.3, 0] > 0.5).all()) and float(from_first[:, 0].max()) == 1.0
    # root 1: up to 0.58 (the wall's face: free, its inside starts beyond), and two steps right
    # before its escape stalls
    assert torch.allclose(from_second[from_second[:, 0] == 0.2, 1].max(), torch.tensor(0.58, dtype=torch.float64))
    right = from_second[from_second[:, 1] == 0.1, 0].sort().values
    assert torch.allclose(right, torch.tensor([0.25, 0.3], dtype=torch.float64))
    with pytest.raises(ValueError, match="M·R"):
        _grow_escapes(_Validity(wall), _Tree(roots, 8), lambda r: up_the_slot(r)[:1], 0.02, *square(torch.float64))


def test_a_tree_in_a_pocket_gets_its_roots_escapes_once():
    options = GlobalSearchOptions(time_budget=10.0, max_nodes=400)
    valid = Counted(SLOT, margin=options.edge_resolution / 2)
    start = torch.tensor([0.1, 0.5], dtype=torch.float64)
    goal = torch.tensor([[0.5, 0.25]], dtype=torch.float64)
    calls = []

    def escapes(roots):
        calls.append(roots.clone())
        return up_the_slot(roots)

    result = search_path(valid, start, goal, *square(torch.float64), options, escapes=escapes)
    assert_valid_path(result, start, goal, Counted(SLOT), options)
    assert len(calls) == 1 and torch.equal(calls[0], goal)  # the goal's tree, stuck in the slot; not the start's
    assert bool((result.path[:, 1] > 0.9).any()), "out of the slot's top"


def test_a_tree_escapes_after_poor_rounds_in_a_row_or_one_round_with_nothing_free(monkeypatch):
    """A tree whose round finds a few of its extensions free (below ESCAPE_BELOW) waits for
    ESCAPE_AFTER such rounds in a row before its escapes (goal trees near a table often recover);
    one whose round finds none escapes at once."""
    import ros_torch_kin.motion.global_search as global_search
    from ros_torch_kin.motion.global_search import _Tree

    calls = []
    monkeypatch.setattr(global_search, "_grow_escapes", lambda check, tree, *a: (calls.append(tree.poor),
                                                                                 setattr(tree, "escaped", True)))
    tree = _Tree(torch.zeros(1, 2, dtype=torch.float64), 8)
    for free, expected in ((2, []), (30, []), (2, []), (2, [2])):  # rounds of 40 extensions: 5 %, 75 %, 5 %, 5 %
        ok = torch.zeros(40, dtype=torch.bool)
        ok[:free] = True
        global_search._note_round(None, tree, ok, lambda roots: roots, 0.02, None, None)
        assert calls == expected
    stuck = _Tree(torch.zeros(1, 2, dtype=torch.float64), 8)
    global_search._note_round(None, stuck, torch.zeros(40, dtype=torch.bool), lambda roots: roots, 0.02, None, None)
    assert calls == [2, 1]
