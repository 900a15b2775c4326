"""Joint tables of self pairs (ros_torch_kin.collision.pair_tables) on example-robot-data's Panda:
each table's bound is a lower bound of its pairs' distance in the tight model (the tree's own
distances, exact over the leaves below the threshold, are the reference), the rates bound how
fast the distance changes with each joint, and a checker with tables gives exactly the verdicts
and distances of one without."""

from __future__ import annotations

import math
import types

import pytest
import torch

from ros_torch_kin.collision import Obstacle, Scene, TreeCollisionChecker
from ros_torch_kin.collision import pair_tables as tables_module
from ros_torch_kin.collision.pair_tables import PairTable, PairTables, cached_pair_tables, path_dofs
from ros_torch_kin.collision.self_collision import SelfCollisionPairs
from ros_torch_kin.kinematics import Chain

WRIST = (("panda_link5", "panda_link7"), ("panda_link5", "panda_hand"))


def _probe(chain, model, pairs) -> TreeCollisionChecker:
    empty = model.self_pairs.sphere_a[:0]
    return TreeCollisionChecker(chain, model.verdict.robot_spheres, None,
                                SelfCollisionPairs(tuple(pairs), types.MappingProxyType({}), empty, empty))


@pytest.fixture(scope="module")
def wrist_table(panda_collision_model, monkeypatch_module):
    """The Panda's wrist pairs tabled whatever this machine's timings (no worth or budget test)."""
    chain, model, _, _ = panda_collision_model
    monkeypatch_module.setattr(tables_module, "WORTH", -math.inf)
    monkeypatch_module.setattr(tables_module, "PAYBACK", math.inf)
    checkers = {}

    def verdict(members, q, level):
        if members not in checkers:
            checkers[members] = _probe(chain, model, members)
        return checkers[members].clear(q.to(chain.dtype), level)

    built = tables_module.pair_tables(chain, model.verdict.robot_spheres, WRIST, verdict, budget=math.inf)
    assert len(built) == 1 and set(built[0].pairs) == set(WRIST)  # both depend on joints 6 and 7 alone
    return built[0]


@pytest.fixture(scope="module")
def monkeypatch_module():
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


def _random_q(chain: Chain, count: int, seed: int, spill: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low, high = chain.lower_limits - spill, chain.upper_limits + spill
    return low + torch.rand(count, chain.num_dofs, generator=g) * (high - low)


def test_the_path_dofs_are_the_joints_between_the_links(panda_collision_model):
    chain, _, _, _ = panda_collision_model
    index = chain.link_names.index
    joint = chain.joint_names.index
    assert path_dofs(chain, index("panda_link5"), index("panda_link7")) == [joint("panda_joint6"), joint("panda_joint7")]
    assert path_dofs(chain, index("panda_link5"), index("panda_hand")) == [joint("panda_joint6"), joint("panda_joint7")]
    assert len(path_dofs(chain, index("panda_link1"), index("panda_hand"))) == 6


def test_the_bound_never_exceeds_the_pairs_distance(panda_collision_model, wrist_table):
    chain, model, _, _ = panda_collision_model
    table = PairTables([wrist_table], "cpu", chain.dtype)
    # random configurations, some beyond the limits (the bound holds there too), and configurations
    # half a step from nodes (where it loses the most)
    q = _random_q(chain, 1500, 4, spill=0.3)
    dofs = list(wrist_table.dofs)
    corner = _random_q(chain, 500, 5)
    for k, j in enumerate(dofs):
        cells = torch.randint(0, wrist_table.count[k], (500,), generator=torch.Generator().manual_seed(6 + k))
        corner[:, j] = wrist_table.first[k] + (cells + 0.5) * wrist_table.step[k]
    q = torch.cat([q, corner])
    bound = table.lower_bound(q)[:, 0]
    for pair in WRIST:
        distance = _probe(chain, model, [pair]).min_distance(q, 0.05)  # exact below 5 cm
        assert bool((bound <= distance + 1e-5).all()), float((bound - distance).max())
    # and it is useful: most configurations of this pair are proven clear at 4 mm
    assert float((bound >= 0.004).float().mean()) > 0.5


def test_the_rates_bound_how_fast_the_distance_changes(panda_collision_model, wrist_table):
    chain, model, _, _ = panda_collision_model
    q = _random_q(chain, 400, 7)
    for pair in WRIST:
        probe = _probe(chain, model, [pair])
        before = probe.min_distance(q, 0.2)
        for k, j in enumerate(wrist_table.dofs):
            step = torch.full((q.shape[0],), 0.05)
            moved = q.clone()
            moved[:, j] += step
            after = probe.min_distance(moved, 0.2)
            both = (before < 0.15) & (after < 0.15)  # exact values on both sides
            assert bool(both.any())
            change = (after - before).abs()[both]
            assert bool((change <= wrist_table.rate[k] * 0.05 + 1e-5).all()), (pair, j, float(change.max()))


def test_a_checker_with_tables_gives_the_same_answers(panda_collision_model, wrist_table):
    chain, model, _, _ = panda_collision_model
    scene = Scene([Obstacle.box("shelf", (0.4, 0.8, 0.02), (0.55, 0.0, 0.45, 0, 0, 0, 1)),
                   Obstacle.sphere("ball", 0.08, (0.3, 0.3, 0.6, 0, 0, 0, 1))])
    # this Panda's SRDF leaves the wrist pairs unchecked (MBM's checks them): checked here, with the others
    empty = model.self_pairs.sphere_a[:0]
    pairs = SelfCollisionPairs(model.self_pairs.enabled + WRIST, types.MappingProxyType({}), empty, empty)
    plain = TreeCollisionChecker(chain, model.verdict.robot_spheres, scene, pairs, coarse=model.cost)
    tabled = TreeCollisionChecker(chain, model.verdict.robot_spheres, scene, pairs, coarse=model.cost,
                                  pair_tables=(wrist_table,))
    assert tabled._pair_tables is not None and plain._pair_tables is None
    q = _random_q(chain, 600, 8)
    for threshold in (0.0, 0.004, 0.01, torch.linspace(0.0, 0.02, q.shape[0])):
        assert torch.equal(plain.clear(q, threshold), tabled.clear(q, threshold))
    assert torch.equal(plain.in_collision(q), tabled.in_collision(q))
    for world, own in ((0.014, 0.004), (0.01, 0.0), (0.08, 0.08)):
        a, b = plain.world_and_self_distance(q, world, own), tabled.world_and_self_distance(q, world, own)
        for x, y, threshold in ((a[0], b[0], world), (a[1], b[1], own)):
            # exact below the threshold; beyond it each a lower bound ≥ it (the table's may be another)
            below = (x < threshold) | (y < threshold)
            assert torch.equal(x[below], y[below]) and bool((x[~below] >= threshold).all())
    assert torch.equal(plain.link_pair_collisions(q), tabled.link_pair_collisions(q))
    # the tables go with the checker to another scene, device or dtype, and when it carries objects
    assert tabled.with_scene(Scene())._pair_tables is not None
    chain64 = chain.to("cpu", torch.float64)
    moved = tabled.on_chain(chain64, model.cost.on_chain(chain64))
    assert moved._pair_tables is not None and moved._pair_tables.values.dtype == torch.float64
    assert torch.equal(moved.in_collision(q.double()), plain.in_collision(q))


def test_a_periodic_joint_reads_the_same_node_a_turn_away():
    values = torch.arange(12, dtype=torch.float64) * 0.001
    table = PairTable((("a", "b"),), (0,), (-math.pi + math.pi / 12,), (math.pi / 6,), (12,), (True,), (0.1,), values)
    packed = PairTables([table], "cpu", torch.float64)
    q = torch.linspace(-3.0, 3.0, 25, dtype=torch.float64).unsqueeze(1)
    base = packed.lower_bound(q)
    for turns in (-2, 1, 3):
        assert torch.allclose(packed.lower_bound(q + turns * 2 * math.pi), base, atol=1e-9)
    # the nearest node's value less the rate times the distance to it
    node = torch.round((q[:, 0] + math.pi - math.pi / 12) / (math.pi / 6)).clamp(0, 11)
    expected = values[node.long()] - 0.1 * (q[:, 0] - (-math.pi + math.pi / 12 + node * math.pi / 6)).abs()
    assert torch.allclose(base[:, 0], expected, atol=1e-9)


def test_tables_come_back_from_the_cache(panda_collision_model, monkeypatch, tmp_path):
    chain, model, _, _ = panda_collision_model
    monkeypatch.setenv("RTK_CACHE", str(tmp_path))
    monkeypatch.setattr(tables_module, "WORTH", -math.inf)
    monkeypatch.setattr(tables_module, "PAYBACK", math.inf)
    calls = []

    def verdict(members, q, level):
        calls.append(len(q))
        return _probe(chain, model, members).clear(q.to(chain.dtype), level)

    pairs = (("panda_link5", "panda_hand"),)
    first = cached_pair_tables(chain, model.verdict.robot_spheres, pairs, verdict, budget=math.inf)
    assert calls and len(first) == 1
    calls.clear()
    again = cached_pair_tables(chain, model.verdict.robot_spheres, pairs, verdict, budget=math.inf)
    assert not calls and torch.equal(again[0].values, first[0].values) and again[0].count == first[0].count
    for path in (tmp_path / "pair_tables").iterdir():  # a damaged file is built again
        path.write_bytes(b"not a table")
    rebuilt = cached_pair_tables(chain, model.verdict.robot_spheres, pairs, verdict, budget=math.inf)
    assert calls and torch.equal(rebuilt[0].values, first[0].values)


def test_no_table_without_the_budget_for_it(panda_collision_model):
    chain, model, _, _ = panda_collision_model

    def verdict(members, q, level):
        return _probe(chain, model, members).clear(q.to(chain.dtype), level)

    assert tables_module.pair_tables(chain, model.verdict.robot_spheres, WRIST, verdict, budget=0.0) == ()


def test_no_table_that_would_not_repay_its_building(panda_collision_model, monkeypatch):
    chain, model, _, _ = panda_collision_model
    monkeypatch.setattr(tables_module, "WORTH", -math.inf)

    def verdict(members, q, level):
        return _probe(chain, model, members).clear(q.to(chain.dtype), level)

    monkeypatch.setattr(tables_module, "PAYBACK", 0)  # nothing repays within no configuration
    assert tables_module.pair_tables(chain, model.verdict.robot_spheres, WRIST, verdict, budget=math.inf) == ()


def test_tables_filled_by_worker_processes_equal_those_filled_here(panda_collision_model, monkeypatch, wrist_table):
    """The tight model's own verdict (no ``verdict`` given) fills the nodes, shared with a worker
    process (a model build's pool, its worker already running): the values of the fixture's
    table, with some pieces filled by the worker."""
    chain, model, _, _ = panda_collision_model
    from ros_torch_kin.collision.build_workers import WorkerPool

    import worker_jobs

    here = []
    fill = tables_module._fill
    monkeypatch.setattr(tables_module, "_fill", lambda *args: here.append(1) or fill(*args))  # this process's
    pieces = []
    run = WorkerPool.map
    monkeypatch.setattr(WorkerPool, "map",
                        lambda self, f, j, *args, **kwargs: pieces.append(len(j)) or run(self, f, j, *args, **kwargs))
    with WorkerPool(2) as pool:
        pool.map(worker_jobs.process_with, [("ros_torch_kin.collision.pair_tables",)] * 2)  # ready
        built = tables_module.pair_tables(chain, model.verdict.robot_spheres, WRIST, budget=math.inf, pool=pool)
    assert len(pieces) == 2 and pieces[1] >= 2 and len(here) < pieces[1]  # after the warm-up: split, not all here
    assert len(built) == 1 and torch.equal(built[0].values, wrist_table.values)


def test_a_checker_for_some_of_its_pairs_equals_one_built_for_them(panda_collision_model):
    chain, model, _, _ = panda_collision_model
    every = TreeCollisionChecker(chain, model.verdict.robot_spheres, None, model.self_pairs)
    chosen = model.self_pairs.enabled[::3]
    q = _random_q(chain, 300, 9)
    fresh = _probe(chain, model, chosen)
    for threshold in (0.0, 0.004):
        assert torch.equal(every.for_pairs(chosen).clear(q, threshold), fresh.clear(q, threshold))
    assert torch.equal(every.for_pairs(chosen).link_pair_collisions(q), fresh.link_pair_collisions(q))
    assert not bool(every.for_pairs(()).in_collision(q).any())  # no pair, no scene: nothing to hit
    with pytest.raises(KeyError):
        every.for_pairs([("panda_link0", "panda_link1")])  # adjacent: not one of its pairs
