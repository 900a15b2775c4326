"""Collision-aware motion generation on the Franka Panda (example-robot-data geometry): plans
around obstacles (checked by an exact reference: Pinocchio + coal on the URDF's collision
meshes), the segment check catches what the waypoints miss, refused goals say why, the sphere
speed bound and the swept check's clearance bound hold against dense sampling."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from conftest import example_robot_data_dir, real_urdf
from ros_torch_kin.collision import CollisionChecker, Obstacle, Scene, robot_spheres_from_urdf, self_collision_pairs
from ros_torch_kin.collision.sphere_centers import world_sphere_centers
from ros_torch_kin.kinematics import Chain, forward_kinematics, world_transforms
from ros_torch_kin.motion import solve_trajectory
from ros_torch_kin.optim import TrajectoryOptions
from ros_torch_kin.motion.checking import MotionValidator
from ros_torch_kin.motion.goals import GOAL_IN_COLLISION, GOAL_UNREACHABLE
from ros_torch_kin.motion.seeds import minimum_jerk_profile
from ros_torch_kin.motion.sphere_sweep import sphere_speed_bounds

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from motion_scenes import ExactReference  # noqa: E402

TOOL = "panda_hand_tcp"
START = torch.tensor([0.6, 0.3, 0.0, -2.0, 0.0, 2.3, 0.8, 0.02])
GOAL = torch.tensor([-0.6, 0.3, 0.0, -2.0, 0.0, 2.3, 0.8, 0.02])
FLOOR = Obstacle.box("floor", (1.5, 1.5, 0.05), [0.5, 0.0, -0.1, 0, 0, 0, 1])


@pytest.fixture(scope="module")
def panda():
    urdf = real_urdf("panda")
    robots = example_robot_data_dir()
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float32)
    share = str(robots.parents[1])
    srdf = (robots / "panda_description/srdf/panda.srdf").read_text()
    spheres = robot_spheres_from_urdf(urdf, chain, search_dirs=[share])
    checker = CollisionChecker(chain, spheres, self_pairs=self_collision_pairs(chain, spheres, srdf=srdf, samples=200))
    coarse = robot_spheres_from_urdf(urdf, chain, search_dirs=[share], max_spheres_per_link=4)
    cost = CollisionChecker(chain, coarse, self_pairs=self_collision_pairs(chain, coarse, srdf=srdf, samples=200))
    pytest.importorskip("pinocchio")
    pytest.importorskip("coal")
    reference = ExactReference(robots / "panda_description/urdf/panda.urdf", [share], chain, checker.self_pairs.enabled)
    return chain, checker, cost, reference


def straight(start: torch.Tensor, goal: torch.Tensor, T: int) -> torch.Tensor:
    return start + minimum_jerk_profile(T, start).view(-1, 1) * (goal - start)


def box_between(chain) -> Obstacle:
    """A box around the midpoint of the tool's straight path from START to GOAL."""
    middle = forward_kinematics(chain, straight(START, GOAL, 3)[1], links=TOOL)[:3, 3]
    return Obstacle.box("box", (0.15, 0.15, 0.3), [*middle.tolist(), 0, 0, 0, 1])


def test_plan_around_a_box_on_the_straight_path(panda):
    chain, checker, cost, reference = panda
    scene = Scene([FLOOR, box_between(chain)])
    checker, cost = checker.with_scene(scene), cost.with_scene(scene)
    options = TrajectoryOptions()
    # the straight motion hits the box (both on our spheres and on the exact meshes)
    naive = straight(START, GOAL, options.waypoints)
    assert not bool(MotionValidator(checker, options.clearance).check(naive).clear[0])
    reference.set_scene(scene)
    assert reference.collides(naive.double().numpy())[0]
    for goal in (dict(target_pose=forward_kinematics(chain, GOAL, links=TOOL)), dict(target_configuration=GOAL)):
        result = solve_trajectory(chain, START, TOOL, options=options, collision=checker, collision_cost=cost, **goal)
        assert bool(result.success[0]) and result.failure == ("",), result.failure
        assert bool(result.collision_free[0])
        assert float(result.clearance_bound[0]) >= options.required_clearance
        assert float(result.min_clearance[0]) >= float(result.clearance_bound[0])
        q = result.positions[0].double().numpy()
        hit, pair = reference.collides(q, max_step=0.005)
        assert not hit, pair
        assert not reference.collides(q, max_step=0.005, margin=options.required_clearance)[0]  # the required clearance holds
        assert reference.min_distance(q, max_step=0.05) >= float(result.clearance_bound[0]) - 1e-4
        assert len(result.closest_pair[0]) == 2 and all(result.closest_pair[0])
        assert set(result.timings) >= {"goals", "seeding", "iterations", "checking", "total"}


def thin_wall_between_waypoints(chain, checker, T: int):
    """A 4 mm wall across the tool's path exactly between two waypoints of a coarse straight
    motion (T waypoints), where no waypoint touches it."""
    naive = straight(START, GOAL, T)
    tool = forward_kinematics(chain, naive, links=TOOL)[:, :3, 3]
    k = T // 2 - 1
    y = float(tool[k, 1] + tool[k + 1, 1]) / 2
    x, z = float(tool[k:k + 2, 0].mean()), float(tool[k:k + 2, 2].mean())
    wall = Obstacle.box("wall", (0.3, 0.004, 0.3), [x, y, z, 0, 0, 0, 1])
    return naive, k, Scene([FLOOR, wall])


def test_thin_wall_between_two_waypoints_is_caught_by_the_segment_check(panda):
    chain, checker, cost, reference = panda
    T = 5
    naive, k, scene = thin_wall_between_waypoints(chain, checker, T)
    checker, cost = checker.with_scene(scene), cost.with_scene(scene)
    verdict = MotionValidator(checker, clearance=0.01, validity_margin=0.01, resolution=0.01).check(naive)
    assert bool(verdict.waypoint_clear.all()), "every waypoint is clear of the wall"
    assert not bool(verdict.clear[0])
    assert int(verdict.first_collision[0]) == k  # the segment across the wall
    reference.set_scene(scene)
    assert not any(reference.collides(naive[t:t + 1].double().numpy())[0] for t in range(T))
    assert reference.collides(naive.double().numpy(), max_step=0.005)[0]  # the exact geometry does cross it
    # the planner goes around (or over) the wall
    result = solve_trajectory(chain, START, TOOL, target_configuration=GOAL, collision=checker, collision_cost=cost)
    assert bool(result.success[0]), result.failure
    assert not reference.collides(result.positions[0].double().numpy(), max_step=0.005)[0]


def test_goal_inside_an_obstacle_is_refused_with_the_reason(panda):
    chain, checker, cost, _ = panda
    goal_pose = forward_kinematics(chain, GOAL, links=TOOL)
    block = Obstacle.box("block", (0.2, 0.2, 0.2), [*goal_pose[:3, 3].tolist(), 0, 0, 0, 1])
    scene = Scene([FLOOR, block])
    checker, cost = checker.with_scene(scene), cost.with_scene(scene)
    options = TrajectoryOptions()
    for goal in (dict(target_pose=goal_pose), dict(target_pose=goal_pose, position_only=True),
                 dict(target_configuration=GOAL)):
        result = solve_trajectory(chain, START, TOOL, options=options, collision=checker, collision_cost=cost, **goal)
        assert not bool(result.success[0])
        assert len(result.failure) == 1 and result.failure[0].startswith(GOAL_IN_COLLISION), goal
        if "target_configuration" in goal:  # the configuration is known: the message names the contact
            assert "– block, -" in result.failure[0] and result.failure[0].endswith(" mm"), result.failure
        assert result.iterations == 0 and result.stopped == "refused"
    far = goal_pose.clone()
    far[:3, 3] = torch.tensor([2.5, 0.0, 0.5])
    result = solve_trajectory(chain, START, TOOL, target_pose=far, options=options, collision=checker, collision_cost=cost)
    assert result.failure == (GOAL_UNREACHABLE,)
    # a batch: each problem gets its own verdict
    both = torch.stack((goal_pose, forward_kinematics(chain, START, links=TOOL)))
    result = solve_trajectory(chain, START.expand(2, -1), TOOL, target_pose=both, options=options,
                              collision=checker, collision_cost=cost)
    # (a goal in collision keeps its IK searching near its budget: on a loaded machine the reason adds that)
    assert result.failure[0].startswith(GOAL_IN_COLLISION) and result.failure[1] == "" and bool(result.success[1])


def test_a_goal_ik_that_runs_out_of_time_says_so(panda):
    """A starved CPU: the goal IK stops on its budget, not its iterations; the refusal keeps its
    kind and says that the budget ended it (not that the goal is in collision or unreachable)."""
    chain, checker, cost, _ = panda
    scene = Scene([FLOOR])
    checker, cost = checker.with_scene(scene), cost.with_scene(scene)
    goal_pose = forward_kinematics(chain, GOAL, links=TOOL)
    options = TrajectoryOptions(goal_ik_time_budget=1e-9)
    result = solve_trajectory(chain, START, TOOL, target_pose=goal_pose, options=options, collision=checker,
                              collision_cost=cost)
    assert not bool(result.success[0])
    assert result.failure[0].startswith((GOAL_IN_COLLISION, GOAL_UNREACHABLE)), result.failure
    assert "stopped at its 1e-09 s budget" in result.failure[0], result.failure
    # with its default budget the same goal is planned to, and no note
    result = solve_trajectory(chain, START, TOOL, target_pose=goal_pose, options=TrajectoryOptions(),
                              collision=checker, collision_cost=cost)
    assert bool(result.success[0]) and result.failure == ("",), result.failure


def folded_configuration(chain, checker) -> torch.Tensor:
    """An in-limit configuration where the arm folds into itself (a checked self pair overlaps)."""
    g = torch.Generator().manual_seed(3)
    lower, upper = chain.lower_limits, chain.upper_limits
    q = lower + torch.rand(4096, chain.num_dofs, generator=g) * (upper - lower)
    distances = checker.distances(q)
    folded = (distances.self_distance < -0.02).nonzero().squeeze(1)
    assert folded.numel(), "some random configurations fold the arm into itself"
    return q[int(folded[0])]


def test_goal_that_folds_the_arm_into_itself_is_refused_or_avoided(panda):
    chain, checker, cost, reference = panda
    scene = Scene([FLOOR])
    checker, cost = checker.with_scene(scene), cost.with_scene(scene)
    folded = folded_configuration(chain, checker)
    a, b = checker.distances(folded).nearest_pair(0)
    assert a.startswith("panda_") and b.startswith("panda_")  # a self pair, not the floor
    result = solve_trajectory(chain, START, TOOL, target_configuration=folded, collision=checker, collision_cost=cost)
    assert result.failure[0].startswith(GOAL_IN_COLLISION) and not bool(result.success[0])
    assert "panda_" in result.failure[0].split(":")[1] and result.failure[0].endswith(" mm")  # the self pair, named
    # the same tool pose: reached by another, unfolded configuration (or refused with a reason)
    result = solve_trajectory(chain, START, TOOL, target_pose=forward_kinematics(chain, folded, links=TOOL),
                              collision=checker, collision_cost=cost)
    if bool(result.success[0]):
        end = result.positions[0, -1]
        assert float(checker.distances(end).self_distance[0]) >= 0.0  # a goal needs validity, not clearance
        reference.set_scene(scene)
        assert not reference.collides(result.positions[0].double().numpy(), max_step=0.005)[0]
    else:
        assert result.failure[0] in (GOAL_IN_COLLISION, GOAL_UNREACHABLE)


def test_sphere_speed_bound_and_clearance_bound_hold_under_dense_sampling(panda):
    chain, checker, _, _ = panda
    scene = Scene([FLOOR, Obstacle.box("wall", (0.02, 0.6, 0.5), [0.45, 0, 0.4, 0, 0, 0, 1]),
                   Obstacle.sphere("ball", 0.08, [0.0, 0.5, 0.5, 0, 0, 0, 1])])
    checker = checker.with_scene(scene)
    # the same clearance from everything, everywhere (no approach relaxation, self pairs too)
    motion = MotionValidator(checker, clearance=0.01, validity_margin=0.01, resolution=0.01)
    g = torch.Generator().manual_seed(1)
    lower, upper = chain.lower_limits, chain.upper_limits
    N, T, dense = 24, 16, 801
    a = lower + torch.rand(N, chain.num_dofs, generator=g) * (upper - lower)
    b = (a + (torch.rand(N, chain.num_dofs, generator=g) - 0.5) * 2.0).clamp(lower, upper)
    tau = torch.linspace(0, 1, dense).view(1, -1, 1)
    q = a.unsqueeze(1) + tau * (b - a).unsqueeze(1)  # (N, dense, J), straight in joint space
    # (1) no sphere centre travels farther than the bound along a segment
    centres = world_sphere_centers(world_transforms(chain, q.reshape(-1, chain.num_dofs)), checker.spheres)
    centres = centres.permute(2, 0, 1).reshape(N, dense, -1, 3)
    travelled = (centres[:, 1:] - centres[:, :-1]).norm(dim=-1).sum(1)  # (N, S)
    links = checker.spheres.sphere_links
    column = torch.searchsorted(torch.unique(links), links)  # each sphere's link's column
    bound = ((b - a).abs() @ motion.sphere_speed)[:, column]
    assert (travelled <= bound * (1 + 1e-4) + 1e-6).all()
    # one column per link loses nothing: the largest bound equals the per-sphere one's
    rho, _ = sphere_speed_bounds(chain, checker.spheres)
    per_sphere = (b - a).abs().double() @ (chain.joint_to_dof.double().abs() @ rho)
    assert torch.allclose(bound.amax(1).double(), per_sphere.amax(1), rtol=1e-5)
    # (2) the checked motions' clearance bound is below every densely sampled distance; clear => clear
    waypoints = q[:, :: (dense - 1) // (T - 1)]
    verdict = motion.check(waypoints)
    sampled = checker.distances(q.reshape(-1, chain.num_dofs)).min_distance.view(N, -1).amin(1)
    assert (verdict.clearance_bound <= sampled + 1e-5).all()
    assert not bool((verdict.clear & (sampled < 0.01)).any())
    assert bool(verdict.clear.any()) and not bool(verdict.clear.all())  # both outcomes exercised


def test_a_verdict_only_check_decides_the_same_motions_with_fewer_configurations(panda):
    """The planner's checks of candidates stop refining a motion once it is shown not clear: the
    same clear flags as the full check, the clear motions' results unchanged, fewer configurations."""
    chain, checker, _, _ = panda
    scene = Scene([FLOOR, Obstacle.box("wall", (0.02, 0.6, 0.5), [0.45, 0, 0.4, 0, 0, 0, 1]),
                   Obstacle.sphere("ball", 0.08, [0.0, 0.5, 0.5, 0, 0, 0, 1])])
    motion = MotionValidator(checker.with_scene(scene), clearance=0.01, validity_margin=0.0, resolution=0.01)
    g = torch.Generator().manual_seed(3)
    lower, upper = chain.lower_limits, chain.upper_limits
    N, T = 32, 12
    a = lower + torch.rand(N, chain.num_dofs, generator=g) * (upper - lower)
    b = (a + (torch.rand(N, chain.num_dofs, generator=g) - 0.5) * 1.5).clamp(lower, upper)
    waypoints = a.unsqueeze(1) + torch.linspace(0, 1, T).view(1, -1, 1) * (b - a).unsqueeze(1)
    full, quick = motion.check(waypoints), motion.check(waypoints, verdict_only=True)
    assert torch.equal(full.clear, quick.clear)
    assert bool(full.clear.any()) and not bool(full.clear.all())  # both outcomes exercised
    assert quick.checked < full.checked
    for field in ("min_distance", "clearance_bound"):
        assert torch.equal(getattr(full, field)[full.clear], getattr(quick, field)[full.clear])
    # what a failing motion reports stays true: its smallest distance is one that was measured, so
    # never below the full check's minimum
    assert (quick.min_distance >= full.min_distance).all()
