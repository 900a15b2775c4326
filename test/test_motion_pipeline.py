"""The motion pipeline's promises (solve_trajectory with a collision model): the global search
gets out of a box that straight and via-point seeds cannot leave, validity apart from clearance
(a start or goal closer than the clearance is planned from and to, one in contact is refused
naming the pair), limits within URDF rounding are clamped, the time budget is honoured, and the
timings add up. Every success is re-checked densely with an independent margin-0 checker."""

from __future__ import annotations

import math
import time
import warnings

import pytest
import torch

from conftest import ball_beside_the_last_link
from ros_torch_kin.collision import CollisionChecker, Obstacle, Scene, robot_spheres_from_urdf
from ros_torch_kin.kinematics import Chain, forward_kinematics
from ros_torch_kin.motion.checking import MotionValidator
from ros_torch_kin.motion import solve_trajectory
from ros_torch_kin.optim import TrajectoryOptions
from ros_torch_kin.robots import bundled_urdf
from test_global_search import ARM_GOAL, ARM_START, box_open_towards_the_robot


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def arm(arm7: Chain):
    chain = arm7.to(dtype=torch.float64)
    spheres = robot_spheres_from_urdf(bundled_urdf(), chain)
    return chain, CollisionChecker(chain, spheres)


def dense(positions: torch.Tensor, step: float = 0.002) -> torch.Tensor:
    """Every configuration along the piecewise-linear motion, at most ``step`` rad apart."""
    parts = [positions[:1]]
    for a, b in zip(positions[:-1], positions[1:]):
        n = max(1, int(torch.ceil((b - a).abs().max() / step)))
        parts.append(a + torch.arange(1, n + 1, dtype=a.dtype).unsqueeze(1) / n * (b - a))
    return torch.cat(parts)


def test_global_search_gets_out_of_a_box_the_seeds_cannot_leave(arm):
    chain, checker = arm
    checker = checker.with_scene(box_open_towards_the_robot())
    start, goal = torch.tensor(ARM_START, dtype=chain.dtype), torch.tensor(ARM_GOAL, dtype=chain.dtype)
    # the seeds of the first draw and all 40 of the optimiser's iterations on them do not get out
    # (an iteration cap, not a time budget: the same on a fast or a loaded machine; redrawn wider
    # detours can find the opening by chance, so none are drawn here)
    without = solve_trajectory(chain, start, "tool0", target_configuration=goal, collision=checker,
                               options=TrajectoryOptions(global_search=0.0, time_budget=60.0, restart_every=1000))
    assert not bool(without.success[0]) and without.failure[0].startswith("no collision-free path")
    assert without.iterations == TrajectoryOptions().collision_iterations
    result = solve_trajectory(chain, start, "tool0", target_configuration=goal, collision=checker,
                              options=TrajectoryOptions(time_budget=10.0))
    assert bool(result.success[0]), result.failure
    assert result.timings["global_search"] > 0
    motion = result.positions[0]
    assert torch.allclose(motion[-1], goal, atol=1e-6)
    assert not bool(checker.in_collision(dense(motion)).any())  # margin 0, every 0.002 rad
    assert float(result.clearance_bound[0]) >= 0.0


def test_goal_closer_than_the_clearance_is_planned_to_and_the_approach_only_needs_validity(arm):
    chain, checker = arm
    start = torch.tensor([0.0, 0.3, 0.0, -1.2, 0.0, 0.6, 0.0], dtype=chain.dtype)
    goal = torch.tensor([0.8, 0.4, 0.0, -1.0, 0.0, 0.8, 0.0], dtype=chain.dtype)
    # a ball 3 mm from the spheres of the tool's link at the goal, on a side where nothing else is closer
    ball = ball_beside_the_last_link(chain, checker, goal, 0.003)
    scene = Scene([ball])
    close = checker.with_scene(scene)
    assert abs(float(close.distances(goal).world_distance[0]) - 0.003) < 2e-4  # closer than the 10 mm clearance
    result = solve_trajectory(chain, start, "tool0", target_configuration=goal, collision=close,
                              options=TrajectoryOptions(time_budget=10.0))
    assert bool(result.success[0]), result.failure
    assert not bool(close.in_collision(dense(result.positions[0])).any())
    # outside the approach the motion keeps the clearance
    validator = MotionValidator(close, clearance=0.01)
    assert bool(validator.check(result.positions[0]).clear[0])


def test_start_in_contact_is_refused_naming_the_pair(arm):
    chain, checker = arm
    start = torch.tensor([0.0, 0.3, 0.0, -1.2, 0.0, 0.6, 0.0], dtype=chain.dtype)
    tool = forward_kinematics(chain, start, links="tool0")[:3, 3]
    scene = Scene([Obstacle.sphere("ball", 0.05, [*tool.tolist(), 0, 0, 0, 1])])
    result = solve_trajectory(chain, start, "tool0", target_configuration=torch.zeros(7, dtype=chain.dtype),
                              collision=checker.with_scene(scene))
    assert not bool(result.success[0])
    failure = result.failure[0]
    assert failure.startswith("start in collision: ") and "– ball, -" in failure and failure.endswith(" mm"), failure


def test_limits_within_urdf_rounding_are_clamped_farther_refused(arm):
    chain, checker = arm
    goal = chain.upper_limits.clone()
    goal[0] += 5e-6  # as a URDF that rounds ±π gives
    start = torch.zeros(7, dtype=chain.dtype)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = solve_trajectory(chain, start, "tool0", target_configuration=goal, collision=checker,
                                  options=TrajectoryOptions(time_budget=5.0))
    assert any("clamped" in str(w.message) and chain.joint_names[0] in str(w.message) for w in caught)
    assert bool((result.positions[0] <= chain.upper_limits).all())
    goal[0] += 1e-3
    with pytest.raises(ValueError, match=chain.joint_names[0]):
        solve_trajectory(chain, start, "tool0", target_configuration=goal, collision=checker)


def test_time_budget_is_honoured_on_a_problem_without_a_path(arm):
    chain, checker = arm
    start = torch.tensor(ARM_START, dtype=chain.dtype)
    # the goal's tool inside a closed box: no path at all
    goal = torch.tensor(ARM_GOAL, dtype=chain.dtype)
    tool = forward_kinematics(chain, goal, links="tool0")[:3, 3].tolist()
    shell = [Obstacle.box(f"wall{i}", size, [tool[0] + dx, tool[1] + dy, tool[2] + dz, 0, 0, 0, 1])
             for i, (size, dx, dy, dz) in enumerate([((0.02, 0.4, 0.4), 0.2, 0, 0), ((0.02, 0.4, 0.4), -0.2, 0, 0),
                                                      ((0.4, 0.02, 0.4), 0, 0.2, 0), ((0.4, 0.02, 0.4), 0, -0.2, 0),
                                                      ((0.4, 0.4, 0.02), 0, 0, 0.2), ((0.4, 0.4, 0.02), 0, 0, -0.2)])]
    blocked = checker.with_scene(Scene(shell))
    budget = 1.0
    began = time.perf_counter()
    result = solve_trajectory(chain, start, "tool0", target_configuration=goal, collision=blocked,
                              options=TrajectoryOptions(time_budget=budget))
    elapsed = time.perf_counter() - began
    assert not bool(result.success[0])
    assert elapsed <= 1.1 * budget + 0.2, elapsed  # budget + 10 %, and the final bookkeeping
    parts = sum(result.timings[k] for k in ("goals", "seeding", "global_search", "iterations", "checking"))
    assert parts <= result.timings["total"] * 1.01 + 1e-3, result.timings


def test_a_motion_check_past_its_deadline_is_late_and_not_clear(arm):
    """MotionValidator.check(deadline=...): no distance block starts after the deadline; the
    pieces not reached are undecided, so a free motion is not called clear, and the result says
    the check was late. With time left the same motion is clear."""
    chain, checker = arm
    start = torch.tensor(ARM_START, dtype=chain.dtype)
    goal = torch.tensor(ARM_GOAL, dtype=chain.dtype)
    motion = torch.stack([start + t * (goal - start) for t in torch.linspace(0, 1, 8, dtype=chain.dtype)])
    validator = MotionValidator(checker, clearance=0.0)
    in_time = validator.check(motion, deadline=time.perf_counter() + 60.0)
    assert bool(in_time.clear[0]) and not in_time.late
    late = validator.check(motion, deadline=time.perf_counter() - 1.0)
    assert not bool(late.clear[0]) and late.late
    assert late.checked == 0 < in_time.checked  # not even the waypoints are asked after it
    assert float(late.min_distance[0]) == -math.inf  # unknown, as an unchecked motion's


def test_a_slow_check_stops_within_a_small_block_of_its_deadline(arm):
    """Waypoints that cost 4 ms each (a batch deep in collision costs several times a free one):
    a check begun 0.1 s before its deadline measures the rate on a first small block and starts
    nothing after the deadline, so it ends within about that block of it, late and not clear."""
    from ros_torch_kin.motion.checking import FIRST_BLOCK

    chain, checker = arm
    start = torch.tensor(ARM_START, dtype=chain.dtype)
    goal = torch.tensor(ARM_GOAL, dtype=chain.dtype)
    motion = torch.stack([start + t * (goal - start) for t in torch.linspace(0, 1, 8, dtype=chain.dtype)])
    pause = 0.004
    slow = SlowChecker(checker, pause)
    validator = MotionValidator(slow, clearance=0.0)
    began = time.perf_counter()
    result = validator.check(motion.expand(32, -1, -1), deadline=began + 0.1)  # 256 waypoints: ~1 s
    elapsed = time.perf_counter() - began
    assert result.late and not bool(result.clear.any())
    assert slow.asked < 256 and elapsed <= 0.1 + FIRST_BLOCK * pause + 0.05, (elapsed, slow.asked)


class SlowChecker:
    """A collision model whose distance queries take ``pause`` s per configuration (the MBM
    UR5's tight model takes ~170 µs on this machine, the bundled arm's coarse one a few), counting
    the configurations asked."""

    def __init__(self, inner, pause: float):
        self.inner, self.pause, self.asked = inner, pause, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def world_and_self_distance(self, q, world_threshold, self_threshold):
        self.asked += q.shape[0]
        time.sleep(self.pause * q.shape[0])
        return self.inner.world_and_self_distance(q, world_threshold, self_threshold)


def test_time_budget_is_honoured_when_the_motion_checks_are_slow(arm):
    """Whole-motion checks slower than the budget (1 ms a configuration, the rate the checks
    assume of a slow model): the call returns within its budget + 10 % and one block of a check
    (a check starts no block after the deadline; an iteration that cannot end by it is not
    begun; the curve's check is skipped after it), and says why it stopped."""
    from ros_torch_kin.motion.checking import FIRST_BLOCK, SLOW_RATE
    from ros_torch_kin.motion.time_optimal import warm_up

    warm_up()  # the imports of the first timing (~0.6 s), as the node does at start-up
    chain, checker = arm
    start = torch.tensor(ARM_START, dtype=chain.dtype)
    goal = torch.tensor(ARM_GOAL, dtype=chain.dtype)
    tool = forward_kinematics(chain, 0.5 * (start + goal), links="tool0")[:3, 3].tolist()
    pause, budget = SLOW_RATE, 0.02  # the straight seed's check asks ~120 configurations (0.12 s)
    slow = SlowChecker(checker.with_scene(Scene([Obstacle.sphere("ball", 0.05, [*tool, 0, 0, 0, 1])])), pause)
    began = time.perf_counter()
    result = solve_trajectory(chain, start, "tool0", target_configuration=goal, collision=slow,
                              options=TrajectoryOptions(time_budget=budget))
    elapsed = time.perf_counter() - began
    assert elapsed <= 1.1 * budget + FIRST_BLOCK * pause + 0.1, (elapsed, result.timings)
    assert not bool(result.success[0]) and result.stopped == "time_budget", (result.stopped, result.failure)
    assert "within budget" in result.failure[0]


def test_a_refused_goal_costs_no_motion_check(arm):
    """A goal in contact is refused without checking motions towards it (the refusal names the
    pair; the polished rows of a refused problem are not checked)."""
    chain, checker = arm
    start = torch.tensor(ARM_START, dtype=chain.dtype)
    goal = torch.tensor(ARM_GOAL, dtype=chain.dtype)
    tool = forward_kinematics(chain, goal, links="tool0")[:3, 3].tolist()
    slow = SlowChecker(checker.with_scene(Scene([Obstacle.sphere("ball", 0.05, [*tool, 0, 0, 0, 1])])), 0.002)
    result = solve_trajectory(chain, start, "tool0", target_configuration=goal, collision=slow,
                              options=TrajectoryOptions(time_budget=5.0))
    assert not bool(result.success[0]) and result.failure[0].startswith("goal in collision: tool0"), result.failure
    assert slow.asked == 0


def test_retreat_paths_move_the_tool_straight_along_its_axes_and_hold_its_orientation(arm):
    """The global search's retreats (planner._retreat_paths): from each root, six paths moving
    the target link's origin along its own frame's +x, +y, +z, −x, −y, −z by RETREAT_STEP a step
    (compared with the straight line from the root's pose), its orientation held, within the
    limits."""
    from ros_torch_kin.motion.planner import RETREAT_STEP, RETREAT_STEPS, _retreat_paths

    chain, _ = arm
    lower, upper = chain.lower_limits, chain.upper_limits
    roots = torch.tensor([ARM_START, ARM_GOAL], dtype=chain.dtype)
    link = chain.link_names.index("tool0")
    paths = _retreat_paths(chain, link, lower, upper, roots)
    assert paths.shape == (12, RETREAT_STEPS + 1, chain.num_dofs)
    assert torch.equal(paths[:, 0], roots.repeat(6, 1))
    assert bool(((paths >= lower) & (paths <= upper)).all())
    poses = forward_kinematics(chain, paths.reshape(-1, chain.num_dofs), links="tool0").reshape(12, -1, 4, 4)
    axes = torch.cat((torch.eye(3), -torch.eye(3))).to(chain.dtype)
    steps = 5  # near the roots, far from any singularity: the least-squares steps follow the line
    for d in range(6):
        for r in range(2):
            row = d * 2 + r
            start = poses[row, 0]
            axis = start[:3, :3] @ axes[d]  # the direction in the root frame
            moved = poses[row, :steps + 1, :3, 3] - start[:3, 3]
            along = moved @ axis
            k = torch.arange(steps + 1, dtype=chain.dtype)
            # on the line, at its points (each step aims at the next: closed loop)
            assert float((moved - along.unsqueeze(1) * axis).norm(dim=1).max()) < 1e-3, (d, r)
            assert bool((along - k * RETREAT_STEP).abs().max() < 1e-3), (d, r)
            turned = (poses[row, :steps + 1, :3, :3] @ start[:3, :3].T).diagonal(dim1=-2, dim2=-1).sum(-1)
            assert bool((turned > 3 - 1e-3).all()), (d, r)  # trace of the relative rotation: within ~2°


def test_search_escapes_are_the_clearance_descent_then_the_six_retreats(arm):
    """What a stuck search tree is given (planner._search_escapes): per root, the descent of the
    cost model's penalty (padded by repeating its end to the retreats' length), then the six
    retreats, rows m·R + r; without a cost model the retreats alone, with neither the roots."""
    from ros_torch_kin.motion.planner import _escape_paths, _retreat_paths, _search_escapes

    chain, checker = arm
    lower, upper = chain.lower_limits, chain.upper_limits
    roots = torch.tensor([ARM_START, ARM_GOAL], dtype=chain.dtype)
    near = checker.with_scene(Scene([ball_beside_the_last_link(chain, checker, roots[0], 0.005)]))
    link = chain.link_names.index("tool0")
    paths = _search_escapes(chain, link, near, lower, upper, roots)
    descent, retreats = _escape_paths(near, lower, upper, roots), _retreat_paths(chain, link, lower, upper, roots)
    K = retreats.shape[1]
    assert descent.shape[1] < K and paths.shape == (7 * 2, K, chain.num_dofs)
    assert torch.equal(paths[:2, :descent.shape[1]], descent)
    assert torch.equal(paths[:2, descent.shape[1]:], descent[:, -1:].expand(-1, K - descent.shape[1], -1))
    assert torch.equal(paths[2:], retreats)
    assert torch.equal(_search_escapes(chain, link, None, lower, upper, roots), retreats)
    assert torch.equal(_search_escapes(chain, None, None, lower, upper, roots), roots.unsqueeze(1))


def test_escape_paths_step_away_from_what_is_near(arm):
    """The global search's escapes (planner._escape_paths): from a configuration 5 mm from a
    ball, steps of at most ESCAPE_STEP (max-norm) within the limits down the cost model's penalty
    at ESCAPE_MARGIN, which falls; from a configuration with nothing that near, no step."""
    from ros_torch_kin.motion.planner import ESCAPE_MARGIN, ESCAPE_STEP, ESCAPE_STEPS, _escape_paths

    chain, checker = arm
    start = torch.tensor(ARM_START, dtype=chain.dtype)
    near = checker.with_scene(Scene([ball_beside_the_last_link(chain, checker, start, 0.005)]))
    lower, upper = chain.lower_limits, chain.upper_limits
    path = _escape_paths(near, lower, upper, start.unsqueeze(0))
    assert path.shape == (1, ESCAPE_STEPS + 1, chain.num_dofs) and torch.equal(path[0, 0], start)
    assert bool(((path[0, 1:] - path[0, :-1]).abs().amax(-1) <= ESCAPE_STEP + 1e-12).all())
    assert bool(((path >= lower) & (path <= upper)).all())
    before, after = (float(near.penalty(q.unsqueeze(0), ESCAPE_MARGIN)[0]) for q in (path[0, 0], path[0, -1]))
    assert before > 0 and after < 0.5 * before
    far = checker.with_scene(Scene())
    still = _escape_paths(far.without_self_pairs(), lower, upper, start.unsqueeze(0))
    assert torch.equal(still[0, -1], start)
