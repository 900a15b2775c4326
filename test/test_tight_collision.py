"""The tight collision model (sphere trees) against independent references: Pinocchio + coal on
the Panda's own collision meshes (conservative: never a missed contact; tight: within the stated
slack), brute force over every leaf (the hierarchical verdict is exact), a table just under the
base, open meshes, and always-in-collision pairs decided by the tight model."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ros_torch_kin.collision import (
    Obstacle,
    Scene,
    TreeCollisionChecker,
    TreeSettings,
    robot_collision_model_from_urdf,
    robot_sphere_trees_from_urdf,
    robot_spheres_from_urdf,
    self_collision_pairs,
)
from ros_torch_kin.collision.signed_distance import sphere_obstacle_distances
from ros_torch_kin.collision.sphere_centers import world_sphere_centers
from ros_torch_kin.collision.sphere_cover import mesh_problem
from ros_torch_kin.collision.sphere_tree import TreeCover, build_sphere_tree
from ros_torch_kin.collision.urdf_sphere_trees import PIECES
from ros_torch_kin.kinematics import Chain, world_transforms

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

SLACK = 0.003  # the leaves' worst slack these tests build with (the benchmark's default)


@pytest.fixture(scope="module")
def panda(panda_collision_model):
    assert TreeSettings().target_slack == SLACK  # the shared model is built with the default
    return panda_collision_model


def _random_q(chain: Chain, count: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return chain.lower_limits + torch.rand(count, chain.num_dofs, generator=g) * (chain.upper_limits - chain.lower_limits)


def _scene(seed: int) -> Scene:
    rng = np.random.default_rng(seed)
    boxes = [Obstacle.box(f"box{i}", rng.uniform(0.05, 0.25, 3), np.r_[rng.uniform(-0.6, 0.6, 2), rng.uniform(0.0, 0.9), 0, 0, 0, 1])
             for i in range(6)]
    round_ = [Obstacle.cylinder(f"cyl{i}", 0.25, 0.04, np.r_[rng.uniform(-0.6, 0.6, 2), rng.uniform(0.1, 0.8), 0, 0, 0, 1])
              for i in range(3)] + [Obstacle.sphere(f"ball{i}", 0.05, np.r_[rng.uniform(-0.5, 0.5, 2), rng.uniform(0.1, 0.8), 0, 0, 0, 1])
                                    for i in range(3)]
    return Scene(boxes + round_)


def test_leaves_hold_the_mesh_within_the_slack(panda):
    chain, model, _, _ = panda
    spheres = model.verdict.spheres
    assert spheres.num_spheres > 0 and float(spheres.slack.max()) <= SLACK + 1e-9
    # far tighter than the coarse cover of the same meshes
    coarse = model.cost.spheres
    assert float(spheres.slack.median()) < 0.5 * float(coarse.slack.median())


def test_hierarchical_verdict_equals_brute_force_over_every_leaf(panda):
    chain, model, _, _ = panda
    scene = _scene(3)
    # leaves alone: no tiers (they may prune a leaf that pokes out of its tier's geometry bound),
    # and no triangles (the spheres' verdict; the triangles' is tested against coal below)
    checker = TreeCollisionChecker(chain, replace(model.verdict.spheres, tiers=None), scene, model.self_pairs,
                                   triangles=False)
    q = _random_q(chain, 96, 1)
    world = world_transforms(chain, q)
    centers = world_sphere_centers(world, checker.spheres)  # (S, 3, B)
    packed = scene.packed("cpu", torch.float32)
    links = checker.spheres.sphere_links
    index = {n: i for i, n in enumerate(chain.link_names)}
    brute = []
    for b in range(q.shape[0]):
        d, _ = sphere_obstacle_distances(centers[:, :, b], checker.spheres.radii, packed)
        best = float(d.min())
        for a, c in model.self_pairs.enabled:
            ia, ic = (links == index[a]).nonzero().squeeze(1), (links == index[c]).nonzero().squeeze(1)
            pair = torch.cdist(centers[ia, :, b], centers[ic, :, b]) - checker.spheres.radii[ia, None] - checker.spheres.radii[None, ic]
            best = min(best, float(pair.min()))
        brute.append(best)
    brute = torch.tensor(brute)
    assert bool(((brute < 0) == checker.in_collision(q)).all())
    near = brute < 0.05
    distance = checker.min_distance(q, 0.05)
    assert torch.allclose(distance[near], brute[near], atol=1e-5)
    assert bool((distance[~near] >= 0.05).all())
    assert 0 < int((brute < 0).sum()) < q.shape[0]  # the sample has both verdicts
    # with the coarse cover as the first level (its per-link and per-pair distances prune the
    # leaves): never below the leaves' own distance, never below the coarse distance (both hold
    # the geometry), and contacts only where the leaves have one
    layered = model.verdict.with_scene(scene)
    coarse = model.cost.with_scene(scene).min_distance(q)
    distance = layered.min_distance(q, 0.05)
    assert bool((distance >= torch.minimum(brute, torch.tensor(0.05)) - 1e-5).all())
    assert bool((distance >= torch.minimum(coarse, torch.tensor(0.05)) - 1e-5).all())
    hits = layered.in_collision(q)
    assert bool((hits <= ((brute < 0) & (coarse < 0))).all()) and bool(hits.any())
    # the verdict with early exit (clear) agrees with the distances, at one threshold or one per configuration
    # (thresholds that float rounding of threshold + rounding − rounding would move: it once did);
    # the spheres' verdict (at the margin, 0, the leaves' triangles decide: the test above)
    for threshold in (0.0, 0.004, 1.3338e-4, 0.01, torch.linspace(0.0, 0.03, q.shape[0]),
                      torch.linspace(0.0, 0.05, q.shape[0])):
        for c in (checker, layered.without_triangles()):
            assert bool((c.clear(q, threshold) == (c.min_distance(q, 0.05) >= threshold)).all())
    assert bool((layered.clear(q, 0.0) == (layered.min_distance(q, 0.0) >= 0.0)).all())


def test_never_misses_a_contact_that_coal_finds_and_is_tight(panda):
    pytest.importorskip("pinocchio")
    pytest.importorskip("coal")
    from motion_scenes import ExactReference

    chain, model, robots, share = panda
    reference = ExactReference(robots / "panda_description/urdf/panda.urdf", [share], chain, model.self_pairs.enabled)
    missed = false_alarms = colliding = 0
    for seed in range(3):
        scene = _scene(10 + seed)
        verdict = model.verdict.with_scene(scene)
        reference.set_scene(scene)
        q = _random_q(chain, 150, 20 + seed)
        ours = verdict.in_collision(q).numpy()
        exact = np.array([reference.collides(x[None], 1.0)[0] for x in q.double().numpy()])
        missed += int((exact & ~ours).sum())
        false_alarms += int((~exact & ours).sum())
        colliding += int(exact.sum())
    assert missed == 0
    assert colliding > 50  # the scenes do touch the robot
    assert false_alarms <= 0.08 * 450, false_alarms  # measured 3 % at 6 mm (bench/README: tight model)


def test_the_leaves_triangles_decide_self_contacts_as_coal_does(panda):
    """At the validity margin a self pair's grazing leaf pairs are decided by their triangles: the
    verdict calls a configuration in contact exactly where coal finds the meshes touching (up to
    0.1 mm either way), where the leaf spheres alone also call contacts up to ~6 mm away."""
    pytest.importorskip("pinocchio")
    pytest.importorskip("coal")
    from motion_scenes import ExactReference

    chain, model, robots, share = panda
    reference = ExactReference(robots / "panda_description/urdf/panda.urdf", [share], chain, model.self_pairs.enabled)
    reference.set_scene(Scene())
    verdict = model.verdict
    spheres = TreeCollisionChecker(chain, verdict.robot_spheres, None, model.self_pairs, triangles=False)
    q = _random_q(chain, 400, 31)
    ours, loose = verdict.in_collision(q).numpy(), spheres.in_collision(q).numpy()
    exact = np.array([reference.clearance(x) for x in q.double().numpy()])
    assert not (ours & ~loose).any()  # the triangles only ever lift a sphere contact
    assert not ((exact < -1e-4) & ~ours).any()  # no contact missed
    assert not ((exact > 1e-4) & ours).any()  # and none called where the meshes are apart
    assert int((loose & (exact > 1e-4)).sum()) >= 2  # the spheres alone do call such (this sample: 3; 6 contacts)
    # the same verdict with an early exit, without it, and the distances agree
    assert np.array_equal(ours, verdict.link_pair_collisions(q).any(1).numpy())
    assert np.array_equal(ours, (verdict.min_distance(q, verdict.margin) < verdict.margin).numpy())
    # only at the margin: a clearance above it is the spheres' (as ~/check_collision relies on)
    assert verdict.decides_by_triangles(verdict.margin) and not verdict.decides_by_triangles(verdict.margin + 0.01)
    assert not spheres.decides_by_triangles(verdict.margin)
    assert np.array_equal(~verdict.clear(q, 0.01).numpy(), ~spheres.clear(q, 0.01).numpy())


def test_the_leaves_triangles_decide_contacts_with_primitives_as_coal_does(panda):
    """At the validity margin a leaf grazing a box, cylinder or sphere of the scene is decided by
    its triangles too: the verdict (world and self) calls a configuration in contact exactly where
    coal finds the meshes touching a primitive or each other (up to 0.1 mm either way; a cylinder
    is bounded by a prism within 0.05 mm of it here), where the leaf spheres alone also call
    contacts up to ~6 mm away."""
    pytest.importorskip("pinocchio")
    pytest.importorskip("coal")
    from motion_scenes import ExactReference

    chain, model, robots, share = panda
    reference = ExactReference(robots / "panda_description/urdf/panda.urdf", [share], chain, model.self_pairs.enabled)
    lifted = contained = 0
    for seed in range(3):
        scene = _scene(10 + seed)
        verdict = model.verdict.with_scene(scene)
        assert verdict.decides_by_triangles(verdict.margin)
        reference.set_scene(scene)
        q = _random_q(chain, 400, 40 + seed)
        ours, loose = verdict.in_collision(q).numpy(), verdict.without_triangles().in_collision(q).numpy()
        depth = verdict.min_distance(q, verdict.margin).numpy()
        exact = np.array([reference.clearance(x) for x in q.double().numpy()])
        assert not (ours & ~loose).any()  # the triangles only ever lift a sphere contact
        assert not ((exact < -1e-4) & ~ours).any()  # no contact missed
        # none called where apart, but for a ball wholly inside a link (coal compares surfaces; the
        # leaves' inner balls, inside the link, reach deep into it: seed 0, configuration 357)
        apart = (exact > 1e-4) & ours
        assert (depth[apart] < -10 * SLACK).all(), (exact[apart], depth[apart])
        contained += int(apart.sum())
        assert np.array_equal(ours, depth < verdict.margin)
        lifted += int((loose & (exact > 1e-4) & (depth >= -10 * SLACK)).sum())
    assert lifted >= 5 and contained <= 2, (lifted, contained)  # the spheres alone call such (here 9; 1 contained)
    # a world of primitives alone decides by triangles too; a point world does not
    alone = model.verdict.with_scene(_scene(10)).without_self_pairs()
    assert alone.decides_by_triangles(alone.margin)
    cloud = Scene([Obstacle.points("cloud", np.random.default_rng(0).uniform(-0.5, 0.5, (500, 3)), 0.02)])
    assert not model.verdict.with_scene(cloud).without_self_pairs().decides_by_triangles(alone.margin)


def test_a_goal_the_spheres_put_in_contact_but_the_meshes_do_not_is_planned_to(panda):
    """A goal whose leaf spheres reach into a primitive while its meshes stay clear (a grasp's)
    is accepted (the triangles decide at the margin) and planned to: the motion check measures
    the leaves its spheres put within EXACT_WINDOW of the margin by their triangles, so the
    approach can be certified; the motion is clear under coal."""
    pytest.importorskip("pinocchio")
    pytest.importorskip("coal")
    from motion_scenes import ExactReference

    from ros_torch_kin.motion import solve_trajectory
    from ros_torch_kin.optim import TrajectoryOptions

    chain, model, robots, share = panda
    reference = ExactReference(robots / "panda_description/urdf/panda.urdf", [share], chain, model.self_pairs.enabled)
    for seed in range(10, 14):  # the first scene with such a goal among random configurations
        scene = _scene(seed)
        verdict, cost = model.verdict.with_scene(scene), model.cost.with_scene(scene)
        reference.set_scene(scene)
        q = _random_q(chain, 2000, 40 + seed)
        world = verdict.without_self_pairs()
        grazing = (world.without_triangles().in_collision(q) & ~verdict.in_collision(q)).nonzero().squeeze(1).tolist()
        goal = next((q[k] for k in grazing if reference.clearance(q[k].double().numpy()) > 2e-4), None)
        if goal is not None:
            break
    assert goal is not None
    free = (~verdict.in_collision(q)).nonzero().squeeze(1).tolist()
    start = min((q[k] for k in free if k not in grazing and float(verdict.min_distance(q[k:k + 1], 0.05)[0]) >= 0.05),
                key=lambda x: float((x - goal).abs().max()))
    result = solve_trajectory(chain, start, "panda_hand", target_configuration=goal, collision=verdict,
                              collision_cost=cost, options=TrajectoryOptions(time_budget=10.0))
    assert bool(result.success[0]), result.failure
    assert not reference.collides(result.positions[0].double().numpy(), 0.005)[0]


def test_a_motion_tens_of_micrometres_from_a_table_is_certified_with_the_exact_window(panda):
    """The hand slid along a table 20 µm above it (the base turning 0.02 rad): free under coal,
    certified by a motion check with the exact window, whose pieces are refined down to
    GRAZING_REFINEMENTS levels (~4 µm of sphere motion), and not with the default 4 levels
    (~62 µm), at which such a motion stays undecided (a grasp's goal that close ran out of budget)."""
    pytest.importorskip("pinocchio")
    pytest.importorskip("coal")
    from motion_scenes import ExactReference

    from ros_torch_kin.motion import MotionValidator
    from ros_torch_kin.motion.checking import GRAZING_REFINEMENTS

    chain, model, robots, share = panda
    goal = torch.tensor([0.0, 0.4, 0.0, -2.2, 0.0, 2.6, 0.785, 0.03])  # fingers 3 cm open

    def table(top: float) -> Scene:
        return Scene([Obstacle.box("table", [0.4, 0.6, 0.1], [0.55, 0.0, top - 0.05, 0, 0, 0, 1])])

    top = 0.0
    for _ in range(3):  # raise the table until its exact distance to the fingers is 20 µm
        exact = model.verdict.with_scene(table(top)).without_self_pairs().with_exact_window(0.02)
        top += float(exact.min_distance(goal[None], 0.05)[0]) - 20e-6
    exact = model.verdict.with_scene(table(top)).without_self_pairs().with_exact_window(0.02)
    assert 15e-6 < float(exact.min_distance(goal[None], 0.05)[0]) < 25e-6
    start = goal.clone()
    start[0] += 0.02
    motion = torch.stack((start, goal))[None]
    reference = ExactReference(robots / "panda_description/urdf/panda.urdf", [share], chain, model.self_pairs.enabled)
    reference.set_scene(table(top))
    assert 0.0 < reference.closest(goal.double().numpy())[0] < 1e-4
    assert not reference.collides(motion[0].double().numpy(), 0.001)[0]
    windowed = MotionValidator(model.verdict.with_scene(table(top)), clearance=0.01).with_exact_window()
    assert windowed.refinements == GRAZING_REFINEMENTS and bool(windowed.check(motion).clear[0])
    windowed.refinements = 4
    assert not bool(windowed.check(motion).clear[0])


def test_the_leaf_bounds_before_the_triangles_never_exceed_their_distance(panda):
    """The cuts before the triangle test (each leaf's sphere ∩ slab, the gap between two such
    along a few directions) are lower bounds: never above the least distance between the two
    leaves' triangles, on leaf pairs of two links placed near each other in random poses."""
    from ros_torch_kin.collision.tree_checker import _slab_gaps
    from ros_torch_kin.collision.triangle_distance import triangle_distances

    chain, model, _, _ = panda
    checker = model.verdict  # float32, as the checks run
    spheres, triangles = checker.spheres, checker.spheres.triangles
    g = torch.Generator().manual_seed(4)
    P = 300
    la, lb = torch.randint(0, spheres.num_spheres, (2, P), generator=g)
    rotation = torch.linalg.qr(torch.randn(P, 3, 3, generator=g, dtype=torch.float32))[0]
    # b's leaf centre put 0-1.5 radii beside a's, in a random direction
    direction = torch.nn.functional.normalize(torch.randn(P, 3, generator=g, dtype=torch.float32), dim=1)
    reach = (spheres.radii[la] + spheres.radii[lb]) * torch.rand(P, generator=g, dtype=torch.float32) * 1.5
    offset = spheres.centers[la] + direction * reach.unsqueeze(1) - (spheres.centers[lb].unsqueeze(1) @ rotation).squeeze(1)
    eye = torch.eye(3, dtype=torch.float32).expand(P, 3, 3)
    gaps = _slab_gaps(checker._leaf_shape(la, eye, torch.zeros(P, 3, dtype=torch.float32)),
                      checker._leaf_shape(lb, rotation, offset))
    exact = []
    for p in range(P):
        a = triangles.corners[triangles.start[la[p]]:triangles.start[la[p] + 1]]
        b = triangles.corners[triangles.start[lb[p]]:triangles.start[lb[p] + 1]] @ rotation[p] + offset[p]
        i, k = torch.meshgrid(torch.arange(len(a)), torch.arange(len(b)), indexing="ij")
        exact.append(float(triangle_distances(a[i.flatten()], b[k.flatten()]).min()))
    exact = torch.tensor(exact, dtype=torch.float32)
    assert bool((gaps <= exact + 1e-6).all())  # float32 rounding
    assert int((gaps > 0).sum()) > P // 4  # and they do separate many of them


def test_world_distance_is_a_lower_bound_within_the_slack(panda):
    pytest.importorskip("coal")
    from motion_scenes import ExactReference

    chain, model, robots, share = panda
    reference = ExactReference(robots / "panda_description/urdf/panda.urdf", [share], chain, ())  # world only
    scene = _scene(5)
    reference.set_scene(scene)
    verdict = TreeCollisionChecker(chain, model.verdict.spheres, scene, None)
    q = _random_q(chain, 60, 7)
    ours = verdict.min_distance(q, 0.2)
    for i, x in enumerate(q.double().numpy()):
        exact = reference.clearance(x)
        if exact < 0.15:  # below the threshold the model's distance is exact for its leaves
            assert float(ours[i]) <= exact + 1e-4
            if exact > 0:
                assert exact <= float(ours[i]) + SLACK + 1e-4


def test_a_large_threshold_gives_the_distances_of_a_small_one(panda):
    """min_distance with a threshold of 1 m (branch and bound: a node is cut where it is farther
    than the nearest representative leaf found plus what a leaf can poke out of its node's
    geometry) agrees with the same query at 3 cm wherever that one is below 3 cm: within the
    leaves' slack on each side (a leaf of a cut node may poke nearer), and contacts stay contacts."""
    chain, model, _, _ = panda
    verdict = model.verdict.with_scene(_scene(4))
    q = _random_q(chain, 200, 9)
    small, large = verdict.min_distance(q, 0.03), verdict.min_distance(q, 1.0)
    near = small < 0.03
    assert 20 < int(near.sum()) < q.shape[0]
    assert bool(((large[near] - small[near]).abs() <= 2 * SLACK + 1e-5).all())
    assert bool(((large < 0) == (small < 0)).all())
    assert bool((large[~near] >= 0.03 - 2 * SLACK - 1e-5).all()) and bool((large < 1.0).all())


def test_a_table_just_under_the_base_is_free(panda):
    """The base link's spheres reach 18-30 mm below its mesh in the coarse cover; the leaves do not."""
    chain, model, _, _ = panda
    base_bottom = 0.0  # panda_link0's mesh ends at z = 0 in its frame (the flange)
    table = Scene([Obstacle.box("table", (1.0, 1.0, 0.05), [0.0, 0.0, base_bottom - 0.01 - 0.025, 0, 0, 0, 1])])
    q = torch.tensor([[0.0, -0.3, 0.0, -2.0, 0.0, 1.8, 0.8, 0.02]])
    assert bool(model.cost.with_scene(table).in_collision(q)[0])  # the coarse spheres hit it
    assert not bool(model.verdict.with_scene(table).in_collision(q)[0])


def test_open_mesh_is_closed_with_a_warning_and_stays_covered(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    box = trimesh.creation.box(extents=(0.1, 0.06, 0.04))
    keep = np.ones(len(box.faces), dtype=bool)
    keep[:2] = False  # drop one face: the mesh is open
    open_box = trimesh.Trimesh(box.vertices, box.faces[keep], process=False)
    assert not open_box.is_watertight
    open_box.export(tmp_path / "open.stl")
    urdf = f"""<robot name="r"><link name="base"/><link name="arm"><collision><geometry>
      <mesh filename="{tmp_path / 'open.stl'}"/></geometry></collision></link>
      <joint name="j" type="revolute"><parent link="base"/><child link="arm"/><axis xyz="0 0 1"/>
      <limit lower="-1" upper="1" effort="1" velocity="1"/></joint></robot>"""
    chain = Chain.from_urdf(urdf, dtype=torch.float64)
    spheres = robot_sphere_trees_from_urdf(urdf, chain, settings=TreeSettings(target_slack=0.004), use_cache=False)
    assert any("'arm'" in w and "not closed" in w and "convex hull" in w for w in spheres.warnings), spheres.warnings
    points = trimesh.sample.sample_surface(open_box, 3000)[0]
    inside = (torch.cdist(torch.as_tensor(points), spheres.centers) <= spheres.radii + 1e-9).any(1)
    assert bool(inside.all())
    assert float(spheres.slack.max()) <= 0.004 + 1e-9


def test_leaves_hold_their_triangles_through_the_disk_cache(tmp_path, monkeypatch):
    """Each leaf's triangles (what the exact test of a grazing self pair reads) are the pieces it
    covers: inside its sphere, covering the mesh's area, in the link frame (the shape's origin
    applied), the same when read back from the disk cache; a sphere shape's leaf is its centre
    grown by its radius."""
    trimesh = pytest.importorskip("trimesh")
    from ros_torch_kin.collision import urdf_sphere_trees

    mesh = trimesh.creation.capsule(height=0.12, radius=0.035, count=[12, 12])
    mesh.export(tmp_path / "capsule.stl")
    urdf = f"""<robot name="r"><link name="base"><collision><geometry><sphere radius="0.05"/></geometry></collision>
      </link><link name="arm"><collision><origin xyz="0.3 0 0" rpy="0 1.2 0"/><geometry>
      <mesh filename="{tmp_path / 'capsule.stl'}"/></geometry></collision></link>
      <joint name="j" type="revolute"><parent link="base"/><child link="arm"/><axis xyz="0 0 1"/>
      <limit lower="-1" upper="1" effort="1" velocity="1"/></joint></robot>"""
    chain = Chain.from_urdf(urdf, dtype=torch.float64)
    monkeypatch.setenv("RTK_CACHE", str(tmp_path / "cache"))
    built = robot_sphere_trees_from_urdf(urdf, chain, settings=TreeSettings(target_slack=0.004))
    urdf_sphere_trees._MEMORY.clear()
    read = robot_sphere_trees_from_urdf(urdf, chain, settings=TreeSettings(target_slack=0.004))
    assert torch.equal(built.triangles.corners, read.triangles.corners) and torch.equal(built.triangles.start, read.triangles.start)
    triangles, arm = built.triangles, built.sphere_links == chain.link_index("arm")
    assert bool((triangles.counts[arm] > 0).all())
    assert triangles.counts[~arm].tolist() == [1]  # the base's sphere: its centre, grown by its radius
    owner = torch.repeat_interleave(torch.arange(built.num_spheres), triangles.counts)
    assert torch.allclose(triangles.radii, torch.where(arm[owner], 0.0, 0.05).to(triangles.radii))
    reach = (triangles.corners - built.centers[owner].unsqueeze(1)).norm(dim=-1).amax(1) + triangles.radii
    assert bool((reach <= built.radii[owner] + 1e-9).all())
    corners = triangles.corners
    area = 0.5 * torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]).norm(dim=-1).sum()
    assert float(area) == pytest.approx(mesh.area, rel=1e-6)  # every piece once (split triangles tile theirs)


def test_a_urdf_sphere_against_a_mesh_is_decided_exactly(tmp_path, monkeypatch):
    """A URDF <sphere> is its own exact leaf, its "triangle" its centre grown by its radius: a
    mesh box slid towards it along a prismatic joint is in contact by the verdict exactly when
    the gap is below 0 (±0.05 mm), where the box's leaf spheres (up to 4 mm loose here) call
    contacts millimetres early."""
    import types

    trimesh = pytest.importorskip("trimesh")
    from ros_torch_kin.collision.self_collision import SelfCollisionPairs

    trimesh.creation.box(extents=(0.1, 0.1, 0.1)).export(tmp_path / "box.stl")
    urdf = f"""<robot name="r"><link name="base"><collision><geometry><sphere radius="0.05"/></geometry></collision>
      </link><link name="middle"/><link name="arm"><collision><geometry><mesh filename="{tmp_path / 'box.stl'}"/>
      </geometry></collision></link>
      <joint name="slide" type="prismatic"><parent link="base"/><child link="middle"/><axis xyz="1 0 0"/>
      <limit lower="-1" upper="1" effort="1" velocity="1"/></joint>
      <joint name="fixed" type="fixed"><parent link="middle"/><child link="arm"/><origin xyz="0.1 0.02 0.01"/></joint>
      </robot>"""
    chain = Chain.from_urdf(urdf, dtype=torch.float64)
    monkeypatch.setenv("RTK_CACHE", str(tmp_path / "cache"))
    spheres = robot_sphere_trees_from_urdf(urdf, chain, settings=TreeSettings(target_slack=0.004))
    empty = torch.zeros(0, dtype=torch.int64)
    pairs = SelfCollisionPairs((("base", "arm"),), types.MappingProxyType({}), empty, empty)
    verdict = TreeCollisionChecker(chain, spheres, None, pairs)
    # the box's near face at x = slide + 0.05, the sphere's surface at x = 0.05: the gap is the slide
    gaps = torch.tensor([-0.002, -0.0005, 0.0005, 0.001, 0.002, 0.003], dtype=torch.float64)
    assert verdict.in_collision(gaps.unsqueeze(1)).tolist() == [True, True, False, False, False, False]
    assert bool(verdict.without_triangles().in_collision(gaps.unsqueeze(1))[2:].any())  # the spheres alone: early
    assert torch.allclose(verdict.min_distance(gaps[2:].unsqueeze(1), 0.0), torch.zeros(4, dtype=torch.float64))


def test_tree_cover_holds_every_surface_point_of_a_mesh():
    trimesh = pytest.importorskip("trimesh")
    mesh = trimesh.creation.capsule(height=0.12, radius=0.035, count=[16, 16])
    cover = build_sphere_tree(mesh_problem(mesh, PIECES, across=True), TreeSettings(target_slack=0.004)).leaves
    points = torch.as_tensor(np.asarray(trimesh.sample.sample_surface(mesh, 4000)[0]))
    inside = (torch.cdist(points, torch.as_tensor(cover.centers)) <= torch.as_tensor(cover.radii) + 1e-9).any(1)
    assert bool(inside.all())
    assert cover.worst_slack <= 0.004 + 1e-9


def _filleted_prism(half=(0.04, 0.08), height=0.2, radius=0.002, segments=6):
    """A box-like solid as CAD tessellates one: its vertical edges filleted (radius 2 mm, six
    faces each: slivers 200 mm by 0.5 mm side by side), its caps fans from their centres."""
    trimesh = pytest.importorskip("trimesh")
    outline = []
    for cx, cy, start in ((1, 1, 0), (-1, 1, 90), (-1, -1, 180), (1, -1, 270)):
        centre = np.array([cx * (half[0] - radius), cy * (half[1] - radius)])
        angles = np.radians(start + 90 * np.arange(segments + 1) / segments)
        outline += list(centre + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1))
    outline, n = np.array(outline), len(outline)
    vertices = np.concatenate([np.c_[outline, np.zeros(n)], np.c_[outline, np.full(n, height)],
                               [[0.0, 0.0, 0.0], [0.0, 0.0, height]]])
    faces = [f for i in range(n) for j in [(i + 1) % n]
             for f in ([i, j, n + j], [i, n + j, n + i], [2 * n, j, i], [2 * n + 1, n + i, n + j])]
    return trimesh.Trimesh(vertices, np.array(faces))


def test_slivers_side_by_side_cost_no_more_leaves_than_a_plain_box_and_stay_covered():
    """A filleted edge's slivers were parted lengthwise, each into leaves of its own (this prism:
    2,798 leaves where the same box with sharp edges gets ~1,400; the MBM Fetch's torso 16,165).
    The tree now cuts long pieces across first: about the box's count, every surface point in a
    leaf, each leaf's triangles inside its sphere and together the whole surface, slack exact."""
    trimesh = pytest.importorskip("trimesh")
    prism = _filleted_prism()
    assert prism.is_watertight
    box = trimesh.creation.box(extents=(0.08, 0.16, 0.2))
    box.apply_translation([0.0, 0.0, 0.1])
    settings = TreeSettings(target_slack=SLACK)
    problem = mesh_problem(prism, PIECES, across=True)
    tree = build_sphere_tree(problem, settings)
    plain = build_sphere_tree(mesh_problem(box, PIECES, across=True), settings)
    cover = tree.leaves
    assert cover.num_spheres <= 1.25 * plain.leaves.num_spheres
    assert cover.worst_slack <= SLACK + 1e-9
    assert np.allclose(cover.slack, np.maximum(cover.radii - problem.depth_at(cover.centers), 0.0), atol=1e-12)
    points = torch.as_tensor(np.asarray(trimesh.sample.sample_surface(prism, 20000, seed=5)[0]))
    assert bool((torch.cdist(points, torch.as_tensor(cover.centers)) <= torch.as_tensor(cover.radii) + 1e-9).any(1).all())
    corners, start, _ = tree.triangles
    owner = np.repeat(np.arange(cover.num_spheres), np.diff(start))
    reach = np.linalg.norm(corners - cover.centers[owner][:, None], axis=2).max(axis=1)
    assert bool((reach <= cover.radii[owner] + 1e-9).all())  # a leaf's triangles lie in its sphere
    area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1).sum()
    assert area == pytest.approx(prism.area, rel=1e-9)  # and tile the surface: nothing left out, nothing twice


def test_tiers_hold_the_geometry_of_their_leaves_and_the_tiered_verdict_stays_conservative(panda):
    """Each leaf's tier (a tree node at 6 mm) must hold all the surface its leaves cover: every
    surface point lies in some leaf whose tier holds it too. A checker that skips a tier's leaves
    where the tier is clear then never calls a contact free (against brute force over the leaves)."""
    trimesh = pytest.importorskip("trimesh")
    mesh = trimesh.creation.capsule(height=0.12, radius=0.035, count=[16, 16])
    tree = build_sphere_tree(mesh_problem(mesh, PIECES, across=True), TreeSettings(target_slack=0.002, tier_slack=0.006, tier_size=8))
    leaves, tiers, of = tree.leaves, tree.tiers, tree.tier_of
    assert tiers is not None and len(of) == leaves.num_spheres and tiers.num_spheres < leaves.num_spheres
    assert np.bincount(of).max() <= 8 and np.bincount(of).min() >= 1 and leaves.worst_slack <= 0.002 + 1e-9
    points = np.asarray(trimesh.sample.sample_surface(mesh, 4000, seed=2)[0])
    in_leaf = np.linalg.norm(points[:, None] - leaves.centers[None], axis=2) <= leaves.radii + 1e-9  # (P, K)
    in_tier = np.linalg.norm(points[:, None] - tiers.centers[of][None], axis=2) <= tiers.radii[of] + 1e-9
    assert bool((in_leaf & in_tier).any(1).all())
    # the check can fail: the same leaves given each other's tiers leave surface points uncovered
    wrong = np.roll(of, len(of) // 2)
    in_wrong = np.linalg.norm(points[:, None] - tiers.centers[wrong][None], axis=2) <= tiers.radii[wrong] + 1e-9
    assert not bool((in_leaf & in_wrong).any(1).all())
    plain = build_sphere_tree(mesh_problem(mesh, PIECES, across=True), TreeSettings(target_slack=0.004, tier_slack=0.0))
    assert plain.tiers is None
    both = TreeCover.concatenate([tree, plain])  # leaves without a tier get themselves as one
    K = plain.leaves.num_spheres
    assert np.array_equal(both.tier_of[-K:], tiers.num_spheres + np.arange(K))
    assert np.array_equal(both.tiers.centers[-K:], plain.leaves.centers)
    # the Panda's tight model: tiered verdict never below the leaves' own distance, contacts only where they have one
    chain, model, _, _ = panda
    assert model.verdict.spheres.tiers is not None
    scene = _scene(5)
    q = _random_q(chain, 256, 7)
    leaves_only = TreeCollisionChecker(chain, replace(model.verdict.spheres, tiers=None), scene, model.self_pairs)
    tiered = TreeCollisionChecker(chain, model.verdict.spheres, scene, model.self_pairs)
    plain, layered = leaves_only.min_distance(q, 0.05), tiered.min_distance(q, 0.05)
    assert bool((layered >= plain - 1e-6).all())
    assert bool((tiered.in_collision(q) <= leaves_only.in_collision(q)).all()) and bool(tiered.in_collision(q).any())


def test_tree_slack_is_the_exact_bound_whatever_the_estimate_and_the_build_is_deterministic():
    """The centre search follows the problem's depth estimate, but each leaf's slack is its radius
    minus the exact depth bound at its centre; a misleading estimate (here: deep everywhere) costs
    leaves, never the guarantees. Two builds give the same tree."""
    trimesh = pytest.importorskip("trimesh")
    from dataclasses import replace

    mesh = trimesh.creation.capsule(height=0.12, radius=0.035, count=[16, 16])
    problem = mesh_problem(mesh, PIECES, across=True)
    settings = TreeSettings(target_slack=0.004)
    points = torch.as_tensor(np.asarray(trimesh.sample.sample_surface(mesh, 4000, seed=4)[0]))
    first = build_sphere_tree(problem, settings)
    again = build_sphere_tree(problem, settings)
    assert np.array_equal(first.leaves.centers, again.leaves.centers) and np.array_equal(first.groups, again.groups)
    misleading = replace(problem, depth_estimate=lambda x: np.full(len(x), 1.0))
    for tree in (first, build_sphere_tree(misleading, settings)):
        cover = tree.leaves
        exact = cover.radii - problem.depth_at(cover.centers)
        assert np.allclose(cover.slack, np.maximum(exact, 0.0), atol=1e-12)
        assert cover.worst_slack <= 0.004 + 1e-9
        inside = (torch.cdist(points, torch.as_tensor(cover.centers)) <= torch.as_tensor(cover.radii) + 1e-9).any(1)
        assert bool(inside.all())


def test_a_pair_the_coarse_spheres_always_touch_stays_checked_when_the_meshes_are_apart():
    """Two boxes 8 mm apart in every configuration: the coarse spheres overlap in every sample
    (MoveIt's rule would disable the pair), the tight leaves do not, so the pair stays checked."""
    urdf = """<robot name="r">
      <link name="base"><collision><origin xyz="0 0 0.05"/><geometry><box size="0.2 0.2 0.1"/></geometry></collision></link>
      <link name="mid"/>
      <link name="top"><collision><geometry><box size="0.2 0.2 0.1"/></geometry></collision></link>
      <joint name="j1" type="revolute"><parent link="base"/><child link="mid"/><axis xyz="0 0 1"/>
        <limit lower="-0.01" upper="0.01" effort="1" velocity="1"/></joint>
      <joint name="j2" type="prismatic"><parent link="mid"/><child link="top"/><origin xyz="0 0 0.158"/>
        <axis xyz="0 0 1"/><limit lower="0" upper="0.001" effort="1" velocity="1"/></joint></robot>"""
    chain = Chain.from_urdf(urdf, dtype=torch.float64)
    coarse_only = self_collision_pairs(chain, robot_spheres_from_urdf(urdf, chain), samples=200)
    assert coarse_only.disabled[("base", "top")].startswith("always in collision")
    model = robot_collision_model_from_urdf(urdf, chain, samples=200, settings=TreeSettings(target_slack=0.004))
    assert ("base", "top") in model.self_pairs.enabled and ("base", "top") not in model.self_pairs.disabled
    assert model.cost.self_pairs.num_sphere_pairs > 0  # the coarse cost checks the pair too
    # 8 mm apart: valid; moved 5 mm into each other: the pair is caught
    assert bool(model.verdict.in_collision(torch.zeros(1, 2, dtype=chain.dtype))[0]) is False
    lowered = urdf.replace('xyz="0 0 0.158"', 'xyz="0 0 0.145"')
    low_chain = Chain.from_urdf(lowered, dtype=torch.float64)
    low = robot_collision_model_from_urdf(lowered, low_chain, samples=0, settings=TreeSettings(target_slack=0.004))
    assert bool(low.verdict.in_collision(torch.zeros(1, 2, dtype=low_chain.dtype))[0])


def test_always_in_collision_only_where_the_tight_model_says_so(panda):
    chain, model, _, _ = panda
    for pair, reason in model.self_pairs.disabled.items():
        if reason.startswith("always in collision"):
            assert "tight model" in reason
    # every pair the SRDF leaves enabled and the leaves do not always overlap is checked
    assert len(model.self_pairs.enabled) >= 1
    assert model.verdict.self_pairs.enabled == model.cost.self_pairs.enabled


@pytest.mark.parametrize("lattice", [None, 0.02])
def test_tight_verdict_on_a_point_world_equals_brute_force_over_the_leaves(panda, monkeypatch, lattice):
    # nodes are kept or cut by the points' field alone (with a far-field lattice: the lattice
    # alone below the roots), leaves get the exact distance to the points' balls: the verdict and
    # the distances below the threshold are the leaves' own
    from scipy.spatial import cKDTree

    from ros_torch_kin.collision.occupancy import lattice_features

    chain, model, _, _ = panda
    rng = np.random.default_rng(11)
    shelf = np.stack(np.meshgrid(np.arange(0.2, 0.8, 0.01), np.arange(-0.4, 0.4, 0.01), [0.35, 0.6]), -1).reshape(-1, 3)
    post = np.c_[np.full(200, 0.45), np.full(200, 0.25), np.linspace(0.0, 0.9, 200)] + rng.normal(0, 0.002, (200, 3))
    points, radius = np.concatenate([shelf, post]), 0.006
    world = model.verdict.without_self_pairs().with_scene(Scene([Obstacle.points("cloud", points, 0.02, radius=radius,
                                                                                  lattice=lattice)]))
    features = world._packed.shapes[0].kind.features
    assert (lattice_features(features) is not None) == (lattice is not None)
    q = _random_q(chain, 48, 12)
    leaves = model.verdict.spheres
    centers = world_sphere_centers(world_transforms(chain.to("cpu", torch.float64), q.double()), leaves.to("cpu", torch.float64))
    nearest = cKDTree(points)
    brute = torch.tensor([float((torch.as_tensor(nearest.query(centers[:, :, b].numpy())[0]) - leaves.radii.double()).min())
                          for b in range(q.shape[0])], dtype=torch.float64) - radius
    assert 0 < int((brute < 0).sum()) < q.shape[0]  # both verdicts in the sample
    import ros_torch_kin.collision.tree_checker as tree_checker

    assert "points" in world._packed.shapes[0].kind.features  # the exact points: the merged queries apply
    for merge in (0, 1 << 30):  # a level's representatives and children in one query, or in two
        monkeypatch.setattr(tree_checker, "MERGE_BLOCKS", merge)
        for threshold in (0.0, 0.004, 0.012):
            decided = (brute - threshold).abs() > 1e-5  # float32 rounding aside
            assert torch.equal(world.clear(q, threshold)[decided], (brute >= threshold)[decided])
    # more configurations: both ways give the same verdicts, never a missed contact, and no false
    # alarm: a large leaf (up to 4.7 cm on the Panda) whose centre lies beyond the 27 cells' exact
    # reach (a cell, 4 cm here, less the point radius) gets the 125 cells' (twice that)
    many = _random_q(chain, 240, 13)
    verdicts = []
    for merge in (0, 1 << 30):
        monkeypatch.setattr(tree_checker, "MERGE_BLOCKS", merge)
        verdicts.append(world.clear(many, 0.0))
    assert torch.equal(verdicts[0], verdicts[1])
    monkeypatch.undo()
    many_centers = world_sphere_centers(world_transforms(chain.to("cpu", torch.float64), many.double()),
                                        leaves.to("cpu", torch.float64))
    many_brute = torch.tensor([float((torch.as_tensor(nearest.query(many_centers[:, :, b].numpy())[0])
                                      - leaves.radii.double()).min()) for b in range(many.shape[0])]) - radius
    assert not bool((verdicts[0] & (many_brute < -1e-5)).any())  # no missed contact
    assert not bool((~verdicts[0] & (many_brute > 1e-5)).any())
    distance = world.min_distance(q, 0.03)
    near = (brute < 0.03) & (brute > 0)
    assert torch.allclose(distance[near].double(), brute[near], atol=2e-5)
    assert bool((distance.double() <= brute + 2e-5).all())


def test_skipping_the_upper_levels_for_few_blocks_changes_no_answer(panda, monkeypatch):
    # a small query jumps from the roots to deeper nodes (tree_checker.JUMP_*): the same answers
    # as the level-by-level descent, for verdicts and distances, world and self
    import ros_torch_kin.collision.tree_checker as tree_checker

    chain, model, _, _ = panda
    checker = model.verdict.with_scene(_scene(7))
    q = _random_q(chain, 200, 6)
    answers = {}
    for name, budget in (("levels", 0), ("jump", 1 << 30)):
        monkeypatch.setattr(tree_checker, "JUMP_DISTANCES", budget)
        answers[name] = ([checker.clear(q[i:i + 8], t) for i in range(0, 200, 8) for t in (0.0, 0.004, 0.02)],
                         [checker.world_and_self_distance(q[i:i + 8], 0.014, 0.004) for i in range(0, 200, 8)])
    assert checker._world_jump[1] is not None and checker._pair_jump[1] is not None
    for a, b in zip(answers["levels"][0], answers["jump"][0]):
        assert torch.equal(a, b)
    for (wa, sa), (wb, sb) in zip(answers["levels"][1], answers["jump"][1]):
        assert torch.equal(wa, wb) and torch.equal(sa, sb)
    hits = torch.cat(answers["jump"][0][::3])
    assert bool(hits.any()) and not bool(hits.all())


def test_distance_columns_are_per_link_and_per_pair_exact_below_the_threshold_and_bounds_beyond(panda):
    """distance_columns: per root slot the world distance of its link's leaves, per enabled self
    pair the pair's, equal to brute force over the leaves below the threshold and a lower bound
    ≥ the threshold beyond it (often far beyond: what a motion check cuts its pieces by)."""
    chain, model, _, _ = panda
    scene = _scene(3)
    checker = TreeCollisionChecker(chain, replace(model.verdict.spheres, tiers=None), scene, model.self_pairs,
                                   coarse=model.cost)
    q = _random_q(chain, 48, 2)
    world_threshold, self_threshold = 0.02, 0.01
    columns = checker.distance_columns(q, world_threshold, self_threshold)
    world_links, pair_links = checker.column_links
    assert columns.shape == (q.shape[0], world_links.shape[0] + pair_links.shape[0])
    centers = world_sphere_centers(world_transforms(chain, q), checker.spheres)  # (S, 3, B)
    radii, links = checker.spheres.radii, checker.spheres.sphere_links
    packed = scene.packed("cpu", torch.float32)
    brute = torch.empty_like(columns)
    for b in range(q.shape[0]):
        d, _ = sphere_obstacle_distances(centers[:, :, b], radii, packed)  # (S, O)
        per_sphere = d.amin(1)
        for k, link in enumerate(world_links.tolist()):
            brute[b, k] = per_sphere[links == link].min()
        for k, (a, c) in enumerate(pair_links.tolist()):
            ia, ic = (links == a).nonzero().squeeze(1), (links == c).nonzero().squeeze(1)
            pair = torch.cdist(centers[ia, :, b], centers[ic, :, b]) - radii[ia, None] - radii[None, ic]
            brute[b, world_links.shape[0] + k] = pair.min()
    threshold = torch.cat((torch.full((world_links.shape[0],), world_threshold),
                           torch.full((pair_links.shape[0],), self_threshold)))
    near = brute < threshold
    assert 0 < int(near.sum()) < near.numel()
    # below: the tree's value (the larger of the coarse bound and the leaves': ≥ the leaves')
    assert bool((columns[near] >= brute[near] - 1e-5).all())
    leaves_only = TreeCollisionChecker(chain, replace(model.verdict.spheres, tiers=None), scene, model.self_pairs)
    exact = leaves_only.distance_columns(q, world_threshold, self_threshold)
    assert torch.allclose(exact[near], brute[near], atol=1e-5)
    for values in (columns, exact):  # beyond: a lower bound ≥ the threshold
        assert bool((values[~near] >= threshold.expand_as(values)[~near]).all())
    assert bool((exact[~near] <= brute[~near] + 1e-5).all())
    assert bool((columns[~near] > 5 * threshold.expand_as(columns)[~near]).any())  # informative
    # the columns' least per track is world_and_self_distance's below its threshold (beyond it,
    # that one reports the threshold itself, the columns their bounds)
    world, own = checker.world_and_self_distance(q, world_threshold, self_threshold)
    for least, value, threshold_ in ((columns[:, :world_links.shape[0]].amin(1), world, world_threshold),
                                     (columns[:, world_links.shape[0]:].amin(1), own, self_threshold)):
        below = value < threshold_
        assert torch.equal(least[below], value[below]) and bool((least[~below] >= value[~below]).all())
        assert bool((value[~below] == threshold_).all())


def test_a_motion_check_by_columns_keeps_its_promises_under_dense_sampling(panda):
    """The motion check on the tight model (a distance column per link and per self pair, each
    changing only as fast as its own links move: a pair's distance not at all by the joints that
    move both): each column changes no faster than its speed along straight motions, and the
    check's clearance bound and verdict hold against dense sampling."""
    from ros_torch_kin.motion.checking import MotionValidator

    chain, model, _, _ = panda
    scene = Scene([Obstacle.box("floor", (1.5, 1.5, 0.05), [0.5, 0, -0.1, 0, 0, 0, 1]),
                   Obstacle.box("wall", (0.02, 0.6, 0.5), [0.45, 0, 0.4, 0, 0, 0, 1]),
                   Obstacle.sphere("ball", 0.08, [0.0, 0.5, 0.5, 0, 0, 0, 1])])
    checker = model.verdict.with_scene(scene)
    motion = MotionValidator(checker, clearance=0.01, validity_margin=0.01, resolution=0.01)
    world_links, pair_links = checker.column_links
    generic = motion.sphere_speed.amax(1, keepdim=True)  # (J, 1): the fastest sphere's
    selfs = motion.column_speed[:, world_links.shape[0]:]
    assert bool((selfs <= 2 * generic + 1e-6).all()) and bool((selfs < 2 * generic - 1e-3).any())
    g = torch.Generator().manual_seed(3)
    lower, upper = chain.lower_limits, chain.upper_limits
    N, T, dense = 24, 16, 601
    a = lower + torch.rand(N, chain.num_dofs, generator=g) * (upper - lower)
    b = torch.minimum(torch.maximum(a + (torch.rand(N, chain.num_dofs, generator=g) - 0.5) * 2.0, lower), upper)
    tau = torch.linspace(0, 1, dense).view(1, -1, 1)
    q = a.unsqueeze(1) + tau * (b - a).unsqueeze(1)  # (N, dense, J)
    flat = q.reshape(-1, chain.num_dofs)
    threshold = 0.05
    columns = checker.distance_columns(flat, threshold, threshold).view(N, dense, -1)
    # (1) each column's change between samples 40 apart is within its speed bound
    step = 40
    change = (columns[:, step:] - columns[:, :-step]).abs()
    exact = (columns[:, step:] < threshold) & (columns[:, :-step] < threshold)
    allowed = ((q[:, step:] - q[:, :-step]).abs() @ motion.column_speed)
    assert bool(exact.any()) and bool((change[exact] <= allowed[exact] + 1e-5).all())
    # (2) the clearance bound is below every exactly sampled distance; clear => clear
    verdict = motion.check(q[:, :: (dense - 1) // (T - 1)])
    sampled = columns.amin(-1)
    exact = sampled < threshold
    assert bool((verdict.clearance_bound.unsqueeze(1).expand_as(sampled)[exact] <= sampled[exact] + 1e-5).all())
    assert not bool((verdict.clear & (sampled < 0.01).any(1)).any())
    assert bool(verdict.clear.any()) and not bool(verdict.clear.all())
    # (3) each motion's closest configuration is one of its checked configurations at min_distance
    world, own = checker.world_and_self_distance(verdict.closest_configuration, 0.02, 0.02)
    near = verdict.min_distance < 0.01
    assert bool(near.any())
    assert torch.allclose(torch.minimum(world, own)[near], verdict.min_distance[near], atol=1e-6)


def test_a_motion_check_with_a_large_clearance_asks_the_world_and_self_minima():
    """Above COLUMNS_UP_TO the check does not ask for columns (every block within the threshold
    would be descended: no branch and bound), but for the world and self minima, whose speeds
    are the fastest sphere's and twice it."""
    from ros_torch_kin.motion.checking import COLUMNS_UP_TO, MotionValidator

    class Columns:
        chain, spheres = None, None

        def distance_columns(self, q, world, own):
            raise AssertionError("not asked above COLUMNS_UP_TO")

    urdf = (Path(__file__).resolve().parents[1] / "ros_torch_kin" / "robots" / "arm7.urdf").read_text()
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float64)
    spheres = robot_spheres_from_urdf(urdf, chain)
    fake = Columns()
    fake.chain, fake.spheres = chain, spheres
    wide = MotionValidator(fake, clearance=COLUMNS_UP_TO, resolution=0.004)
    assert not wide._by_column and wide.column_track.tolist() == [0, 1]
    assert torch.allclose(wide.column_speed[:, 1], 2 * wide.column_speed[:, 0])


def test_planning_on_the_tight_model_alone_asks_for_a_cost_model(panda):
    """The tight model gives verdicts and distances, no cost gradient: solve_trajectory with it as
    ``collision`` and no ``collision_cost`` is refused up front, naming the argument (it used
    to fail midway, where the optimiser or the search's escapes first needed the gradient)."""
    from ros_torch_kin.motion import solve_trajectory

    chain, model, _, _ = panda
    q = _random_q(chain, 2, 3)
    with pytest.raises(ValueError, match="collision_cost"):
        solve_trajectory(chain, q[0], target_configuration=q[1], collision=model.verdict)
    from ros_torch_kin.optim import TrajectoryOptions

    result = solve_trajectory(chain, q[0], target_configuration=q[0], collision=model.verdict, collision_cost=model.cost)
    assert result.positions.shape == (1, TrajectoryOptions().waypoints, chain.num_dofs)  # with a cost model it plans


def test_a_pair_moved_by_two_joints_changes_no_faster_than_their_pair_rates(panda):
    """A self column whose links only joints 6 and 7 move apart (the wrist's pairs, which MBM's
    SRDF checks) gets those joints' pair rates as its speeds (the nearer link to each axis, as
    seen from the other: below the moving link's own speed), and along straight motions its
    distance changes no faster than that."""
    import types

    from ros_torch_kin.collision.self_collision import SelfCollisionPairs
    from ros_torch_kin.motion.checking import MotionValidator, _pair_rates

    chain, model, _, _ = panda
    wrist = (("panda_link5", "panda_link7"), ("panda_link5", "panda_hand"))
    empty = model.self_pairs.sphere_a[:0]
    checker = TreeCollisionChecker(chain, model.verdict.robot_spheres, None,
                                   SelfCollisionPairs(wrist, types.MappingProxyType({}), empty, empty),
                                   coarse=model.cost)
    motion = MotionValidator(checker, clearance=0.0, resolution=0.01)
    world_links, pair_links = checker.column_links
    rates = _pair_rates(chain, checker.spheres, pair_links)  # (J, 2)
    joint6, joint7 = chain.joint_names.index("panda_joint6"), chain.joint_names.index("panda_joint7")
    assert torch.isfinite(rates).nonzero()[:, 0].unique().tolist() == [joint6, joint7]
    assert bool(torch.isfinite(rates[[joint6, joint7]]).all())  # both columns, both joints
    selfs = motion.column_speed[:, world_links.shape[0]:]
    assert bool((selfs[[joint6, joint7]].double() <= rates[[joint6, joint7]] * (1 + 1e-6)).all())  # float32 rounding
    others = [j for j in range(chain.num_dofs) if j not in (joint6, joint7)]
    assert float(selfs[others].abs().max()) == 0.0  # the joints that move both or neither
    g = torch.Generator().manual_seed(8)
    lower, upper = chain.lower_limits, chain.upper_limits
    a = lower + torch.rand(40, chain.num_dofs, generator=g) * (upper - lower)
    b = torch.minimum(torch.maximum(a + (torch.rand(40, chain.num_dofs, generator=g) - 0.5) * 2.0, lower), upper)
    q = a.unsqueeze(1) + torch.linspace(0, 1, 201).view(1, -1, 1) * (b - a).unsqueeze(1)
    threshold = 0.1
    columns = checker.distance_columns(q.reshape(-1, chain.num_dofs), threshold, threshold).view(40, 201, -1)
    step = 20
    change = (columns[:, step:] - columns[:, :-step]).abs()
    exact = (columns[:, step:] < threshold) & (columns[:, :-step] < threshold)
    allowed = (q[:, step:] - q[:, :-step]).abs() @ motion.column_speed
    assert bool(exact.any()) and bool((change[exact] <= allowed[exact] + 1e-5).all())


def test_checkers_on_the_same_leaves_share_one_hierarchy(panda, monkeypatch):
    """A model's build makes two checkers on the same leaves (the always-in-collision test's and
    the verdict's): the hierarchy is built once per leaves object and rounding, and a checker on
    a copy of the leaves (its own hierarchy) gives the same verdicts."""
    import dataclasses

    import ros_torch_kin.collision.tree_checker as tree_checker
    from ros_torch_kin.collision import TreeCollisionChecker

    chain, model, _, _ = panda
    built = []
    original = tree_checker.leaf_hierarchy
    monkeypatch.setattr(tree_checker, "leaf_hierarchy", lambda *a, **k: built.append(1) or original(*a, **k))
    leaves = dataclasses.replace(model.verdict.robot_spheres)  # a fresh object: nothing built for it yet
    first = TreeCollisionChecker(chain, leaves, _scene(3), model.verdict.self_pairs)
    second = TreeCollisionChecker(chain, leaves, _scene(3), model.verdict.self_pairs)
    assert len(built) == 1
    own = TreeCollisionChecker(chain, dataclasses.replace(leaves), _scene(3), model.verdict.self_pairs)
    assert len(built) == 2  # another leaves object: its own
    q = _random_q(chain, 256, 21)
    assert torch.equal(second.in_collision(q), own.in_collision(q))
    assert torch.equal(first.in_collision(q), own.in_collision(q))


def test_closest_pairs_asked_within_the_found_distance_are_those_found_step_by_step(panda):
    """The motion check names its closest pair within the distance it found there (one query)
    instead of at its own threshold and then four times farther: the same names, fewer queries."""
    from ros_torch_kin.motion.checking import MotionValidator

    chain, model, _, _ = panda
    scene = Scene([Obstacle.box("floor", (1.5, 1.5, 0.05), [0.5, 0, -0.3, 0, 0, 0, 1]),
                   Obstacle.sphere("ball", 0.05, [0.6, 0.4, 0.6, 0, 0, 0, 1])])
    checker = model.verdict.with_scene(scene)
    motion = MotionValidator(checker, clearance=0.01, validity_margin=0.0, resolution=0.01)
    g = torch.Generator().manual_seed(5)
    lower, upper = chain.lower_limits, chain.upper_limits
    q = lower + torch.rand(40, chain.num_dofs, generator=g) * (upper - lower)
    distance = checker.min_distance(q, 1.0)
    far = distance > 0.05  # beyond the check's threshold: named stepwise before
    assert int(far.sum()) >= 5
    queries = []
    asked = checker.distances
    checker.distances = lambda *args, **kwargs: queries.append(1) or asked(*args, **kwargs)
    stepwise = motion.closest_pairs(q[far])
    steps = len(queries)
    at_once = motion.closest_pairs(q[far], distance[far])
    assert at_once == stepwise and all(a and b for a, b in at_once)
    assert len(queries) - steps == 1 < steps
