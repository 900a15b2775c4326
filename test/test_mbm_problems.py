"""The MotionBenchMaker problem reader (bench/mbm_problems.py) on the real files: VAMP 0.6.4's sdist,
downloaded once with pip into ~/.cache/ros_torch_kin/mbm/ (RTK_CACHE); skipped when it cannot be.

All 700 problems in 7 families of 100, starts and goals within the MBM URDF's joint limits, and the
first problem of each family free of collision at its start and goal under the exact reference
(Pinocchio + coal on the URDF's meshes, the scene's primitives, the SRDF-enabled self pairs).
About 5 s once the files are cached.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import mbm_problems  # noqa: E402

from ros_torch_kin.kinematics import Chain  # noqa: E402


@pytest.fixture(scope="module")
def problems():
    try:
        mbm_problems.mbm_resources()
    except RuntimeError as error:
        pytest.skip(f"the MotionBenchMaker problems cannot be had: {error}")
    return mbm_problems.load_problems()


@pytest.fixture(scope="module")
def chain(problems):
    return Chain.from_urdf(mbm_problems.urdf_text(), device="cpu", dtype=torch.float64)


def test_seven_families_of_a_hundred(problems):
    assert len(problems) == 700
    by_family = {}
    for problem in problems:
        by_family.setdefault(problem.family, []).append(problem.index)
    assert tuple(by_family) == mbm_problems.FAMILIES
    assert all(indices == list(range(1, 101)) for indices in by_family.values())
    assert all(p.joint_names == mbm_problems.ARM_JOINTS and p.start.shape == p.goal.shape == (7,) for p in problems)
    assert all("collision_objects" in p.scene_yaml for p in problems)
    assert len(mbm_problems.load_problems(["cage", "box"], limit=2)) == 4


def test_starts_and_goals_within_the_urdf_limits(problems, chain):
    assert chain.joint_names == mbm_problems.ARM_JOINTS
    lower, upper = chain.lower_limits.numpy(), chain.upper_limits.numpy()
    q = np.stack([p.start for p in problems] + [p.goal for p in problems])
    assert np.isfinite(q).all()
    assert (q >= lower - 1e-5).all() and (q <= upper + 1e-5).all(), (q.min(0), q.max(0))
    # The request's goal joint constraints are read by name (they come in no fixed key order).
    first = problems[0]
    assert first.name == "table_pick/0001"
    np.testing.assert_allclose(first.start, [0, -0.785, 0, -2.356, 0, 1.571, 0.785])
    np.testing.assert_allclose(first.goal[:2], [-1.451140183264752, -0.9510103288438848])


def test_first_problem_of_each_family_is_free_under_the_exact_reference(problems, chain):
    pytest.importorskip("pinocchio")
    pytest.importorskip("coal")
    reference = mbm_problems.mbm_reference(chain)
    pairs = {frozenset(p) for p in reference.self_link_pairs}
    assert frozenset(("panda_link5", "panda_link7")) in pairs  # SRDF-enabled
    assert frozenset(("panda_link6", "panda_link7")) not in pairs  # adjacent
    assert frozenset(("panda_link0", "panda_link2")) not in pairs  # SRDF "Never"
    for family in mbm_problems.FAMILIES:
        problem = next(p for p in problems if p.family == family)
        scene = problem.scene()
        assert len(scene) > 0
        reference.set_scene(scene)
        for name, q in (("start", problem.start), ("goal", problem.goal)):
            hit, pair = reference.collides(q[None], 0.005)
            assert not hit, f"{problem.name} {name}: {pair}"
            assert reference.clearance(q) > 0, problem.name
    # ... and the reference does see a collision: the first cage goal pushed into its cubby wall.
    inside = problem.goal.copy()
    inside[1] += 0.3
    assert reference.collides(np.stack((problem.goal, inside)), 0.005)[0]


@pytest.mark.parametrize("robot", ["ur5", "fetch"])
def test_other_robots_read_with_their_planned_joints(robot):
    """The UR5's and the Fetch's sets: 7 families × 100, the goals' joints are the URDF's DOFs (the
    joints the URDF fixes are where the start states set them), every start and goal within the
    limits but for the Fetch's ±π goals (its URDF writes ±3.14159), and the scenes in the root."""
    try:
        mbm_problems.mbm_resources(robot)
    except RuntimeError as error:
        pytest.skip(f"the MotionBenchMaker problems cannot be had: {error}")
    spec = mbm_problems.ROBOTS[robot]
    problems = mbm_problems.load_problems(robot=robot)
    assert len(problems) == 700 and all(p.robot == robot and p.joint_names == spec.arm_joints for p in problems)
    chain = Chain.from_urdf(mbm_problems.urdf_text(robot), device="cpu", dtype=torch.float64)
    assert chain.joint_names == spec.arm_joints and chain.has_link(spec.tool)
    lower, upper = chain.lower_limits.numpy(), chain.upper_limits.numpy()
    q = np.stack([p.start for p in problems] + [p.goal for p in problems])
    assert (q >= lower - 3e-6).all() and (q <= upper + 3e-6).all()
    scene = problems[0].scene()
    assert len(scene) > 0
    pairs = {frozenset(p) for p in mbm_problems.reference_self_pairs(chain, mbm_problems.srdf_text(robot), robot)}
    assert pairs and all(chain.has_link(a) and chain.has_link(b) for a, b in pairs)


def test_a_search_path_that_touches_a_wall_between_its_samples_is_searched_again_finely(problems, monkeypatch):
    """MBM box 30 (the goal inside a box): the global search's path passed its samples 0.04 rad
    apart, but the certified motion check found it 0.04 mm into the box's wall between two of
    them, and 20 iterations could not mend that within the 2 s budget. The planner now searches
    again with the edges near that contact checked finely; the motion it returns is free under
    the exact reference (Pinocchio + coal, every 0.005 rad)."""
    pytest.importorskip("pinocchio")
    pytest.importorskip("coal")
    from mbm_benchmark import build_planner_models

    from ros_torch_kin.motion import planner, solve_trajectory
    from ros_torch_kin.optim import TrajectoryLimits, TrajectoryOptions

    problem = next(p for p in problems if p.family == "box" and p.index == 30)
    chain, verdict, cost = build_planner_models(mbm_problems.urdf_text(), mbm_problems.srdf_text(),
                                                [mbm_problems.mbm_resources()])
    scene = problem.scene()
    searches = []

    def counted(*args, **kwargs):  # the real search, its calls counted
        found = search(*args, **kwargs)
        searches.append((found.found, kwargs.get("fine_near")))
        return found

    search = planner.search_path
    monkeypatch.setattr(planner, "search_path", counted)
    start, goal = (torch.as_tensor(q, dtype=chain.dtype) for q in (problem.start, problem.goal))
    result = solve_trajectory(chain, start, link=mbm_problems.mbm_robot().tool, target_configuration=goal, options=TrajectoryOptions(),
                              limits=TrajectoryLimits.from_chain(chain), collision=verdict.with_scene(scene),
                              collision_cost=cost.with_scene(scene))
    assert bool(result.success[0]), result.failure
    assert len(searches) <= planner.SEARCH_ATTEMPTS and all(found for found, _ in searches)
    if len(searches) == 2:  # searched again: with a fine check near the first path's contact
        assert searches[1][1] is not None and result.iterations == 0
    reference = mbm_problems.mbm_reference(Chain.from_urdf(mbm_problems.urdf_text(), device="cpu", dtype=torch.float64))
    reference.set_scene(scene)
    hit, pair = reference.collides(result.positions[0].double().numpy(), 0.005)
    assert not hit, pair
