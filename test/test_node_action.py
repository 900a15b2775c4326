"""The real node serves ~/plan_trajectory: goal, feedback, result, cancel, invalid goals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ros_fixtures import Spinner, requires_ros, running_node, set_parameters, wait_until

from ros_torch_kin.kinematics import Chain, forward_kinematics, matrix_to_pose_xyzw, pose_error, pose_xyzw_to_matrix
from ros_torch_kin.robots import bundled_urdf

pytestmark = requires_ros
SUCCEEDED, CANCELED, ABORTED = 4, 5, 6


@pytest.fixture(scope="module")
def arm():
    return Chain.from_urdf(bundled_urdf(), device="cpu", dtype=torch.float64)


@pytest.fixture(scope="module")
def planner(ros_domain):
    with running_node(ros_domain, {"trajectory_waypoints": 16, "trajectory_seeds": 8, "trajectory_time_budget": 20.0}) as (
        process, client
    ):
        yield process, client


def goal_for(arm, start, target_q, link="tool0", target_type=0):
    from sensor_msgs.msg import JointState

    from ros_torch_kin.action import PlanTrajectory
    from ros_torch_kin.ros.convert import fill_pose

    goal = PlanTrajectory.Goal(target_type=target_type, target_link=link)
    if start is not None:
        goal.start = JointState(name=list(arm.joint_names), position=[float(v) for v in start])
    pose = matrix_to_pose_xyzw(forward_kinematics(arm, torch.tensor(target_q, dtype=torch.float64), links=link))
    fill_pose(goal.target_pose.pose, pose.numpy())
    goal.target_configuration = JointState(name=list(arm.joint_names), position=[float(v) for v in target_q])
    return goal, pose


def random_configuration(arm, seed):
    rng = np.random.default_rng(seed)
    return 0.8 * (arm.lower_limits.numpy() + rng.random(7) * (arm.upper_limits - arm.lower_limits).numpy())


def test_plans_a_reachable_pose_with_feedback_and_publishes_it(ros_domain, planner, arm):
    from trajectory_msgs.msg import JointTrajectory
    from visualization_msgs.msg import MarkerArray

    _, client = planner
    spinner = Spinner("plan_listener")
    published = {"trajectory": [], "markers": []}
    spinner.node.create_subscription(JointTrajectory, "/ros_torch_kin/planned_trajectory", published["trajectory"].append, 10)
    spinner.node.create_subscription(MarkerArray, "/ros_torch_kin/planned_path", published["markers"].append, 10)
    try:
        start, target_q = random_configuration(arm, 1), random_configuration(arm, 2)
        goal, target = goal_for(arm, start, target_q)
        feedback = []
        status, result = client.plan_trajectory(goal, on_feedback=feedback.append)
        assert status == SUCCEEDED and result.success, result.message
        iterations = [f.iteration for f in feedback]
        # one report per iteration, or a single report 0 when the collision-free seeds solved it
        assert iterations == list(range(1, len(feedback) + 1)) or iterations == [0], iterations
        if iterations == [0]:
            assert feedback[0].min_clearance == pytest.approx(result.min_clearance)
        trajectory = result.trajectory
        assert list(trajectory.joint_names) == list(arm.joint_names)
        positions = np.array([p.positions for p in trajectory.points])
        times = np.array([p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in trajectory.points])
        np.testing.assert_allclose(positions[0], start, atol=1e-5)
        assert np.all(np.diff(times) > 0) and times[-1] == pytest.approx(result.duration, rel=1e-6)
        # the time-optimal motion sampled at trajectory_sample_rate (100 Hz), the end included
        assert result.time_parameterization == "time_optimal" and "time_optimal motion of" in result.message
        assert len(trajectory.points) == math.ceil(result.duration / 0.01 - 1e-9) + 1 and np.diff(times).max() <= 0.01 + 1e-9
        final = forward_kinematics(arm, torch.from_numpy(positions[-1]), links="tool0")
        error = pose_error(final, pose_xyzw_to_matrix(target))
        assert error[:3].norm() <= 1.01e-3 and error[3:].norm() <= math.radians(1.01)
        velocities = np.array([p.velocities for p in trajectory.points])
        assert (np.abs(velocities) <= arm.velocity_limits.numpy() * (1 + 1e-5)).all()
        assert result.position_error <= 1e-3 and result.iterations == (0 if iterations == [0] else len(feedback)) and result.solve_time > 0
        assert wait_until(lambda: published["trajectory"] and published["markers"])
        assert len(published["markers"][-1].markers[0].points) == 16
    finally:
        spinner.close()


def test_starts_from_joint_states_when_start_is_empty(ros_domain, planner, arm):
    from sensor_msgs.msg import JointState

    _, client = planner
    goal, _ = goal_for(arm, None, random_configuration(arm, 4))
    status, result = client.plan_trajectory(goal)  # no joint_states yet
    assert status == ABORTED and "joint_states has not given every joint" in result.message
    spinner = Spinner("joint_state_source")
    try:
        publisher = spinner.node.create_publisher(JointState, "/joint_states", 10)
        start = random_configuration(arm, 3)
        assert wait_until(lambda: publisher.get_subscription_count() > 0)
        for _ in range(10):  # like a driver: a stream of states (best effort may drop one)
            publisher.publish(JointState(name=list(arm.joint_names), position=start.tolist()))
            wait_until(lambda: False, timeout=0.1)
        status, result = client.plan_trajectory(goal)
        assert status == SUCCEEDED and result.success, result.message
        np.testing.assert_allclose(result.trajectory.points[0].positions, start, atol=1e-5)
    finally:
        spinner.close()


def test_position_and_configuration_targets(planner, arm):
    _, client = planner
    start, target_q = random_configuration(arm, 5), random_configuration(arm, 6)
    goal, target = goal_for(arm, start, target_q, target_type=1)
    goal.target_pose.pose.orientation.x, goal.target_pose.pose.orientation.w = 1.0, 0.0  # ignored
    status, result = client.plan_trajectory(goal)
    assert status == SUCCEEDED and result.success and result.orientation_error == 0
    goal, _ = goal_for(arm, start, target_q, target_type=2)
    status, result = client.plan_trajectory(goal)
    assert status == SUCCEEDED and result.success
    np.testing.assert_allclose(result.trajectory.points[-1].positions, target_q, atol=1e-3)


def test_cancel_mid_solve(planner, arm):
    _, client = planner
    spinner = Spinner("cancel_tester")
    try:  # a plan that takes several seconds: many iterations, each over 256 seeds x 128 waypoints
        assert set_parameters(spinner, trajectory_max_iterations=100_000) == [(True, "")]
        goal, _ = goal_for(arm, random_configuration(arm, 7), random_configuration(arm, 8))
        goal.seeds, goal.waypoints, goal.time_budget = 256, 128, 60.0
        # free-space optimisation iterates long enough to be cancelled; a collision-aware plan
        # stops at its first checked motion (the same iteration loop and cancel hook)
        goal.avoid_collisions = False
        status, result = client.plan_trajectory(goal, cancel_after=1.5)
        assert status == CANCELED and result.message.startswith("canceled after"), result.message
        assert not result.success and len(result.trajectory.points) == 0
    finally:
        set_parameters(spinner, trajectory_max_iterations=10)
        spinner.close()


def test_unreachable_target_is_a_clean_failure(planner, arm):
    _, client = planner
    goal, _ = goal_for(arm, random_configuration(arm, 9), random_configuration(arm, 10))
    goal.target_pose.pose.position.x = 3.0  # the arm reaches 1.4 m
    status, result = client.plan_trajectory(goal)
    assert status == SUCCEEDED and not result.success
    assert "goal unreachable" in result.message and result.position_error > 1.0
    assert len(result.trajectory.points) == 0  # nothing to execute by mistake


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda g: setattr(g, "target_link", "hand"), "target_link: unknown link 'hand'"),
        (lambda g: setattr(g.target_pose.pose.position, "x", float("nan")), "target_pose\\[0\\] is not finite"),
        (lambda g: setattr(g.target_pose.pose.orientation, "w", 0.0) or setattr(g.target_pose.pose.orientation, "x", 0.0)
         or setattr(g.target_pose.pose.orientation, "y", 0.0) or setattr(g.target_pose.pose.orientation, "z", 0.0),
         "zero quaternion"),
        (lambda g: g.start.position.__setitem__(1, 3.0), "start: joint 'joint_2' = 3 is outside its limits"),
        (lambda g: setattr(g.target_pose.header, "frame_id", "world"), "frame_id 'world' must be the root link"),
        (lambda g: setattr(g, "target_type", 9), "target_type 9 is unknown"),
        (lambda g: setattr(g.start, "name", ["joint_1"]), "joint_names lacks joint_2"),
        (lambda g: setattr(g, "max_velocity_scaling_factor", 1.5), "max_velocity_scaling_factor = 1.5 must be between 0"),
        (lambda g: setattr(g, "max_acceleration_scaling_factor", -0.1), "max_acceleration_scaling_factor = -0.1 must be"),
        (lambda g: setattr(g, "max_jerk", float("nan")), "max_jerk = nan must be"),
        (lambda g: setattr(g, "duration", -1.0), "duration = -1.0 must be"),
    ],
)
def test_invalid_goals_abort_with_a_reason_and_the_node_keeps_planning(planner, arm, change, message):
    _, client = planner
    goal, _ = goal_for(arm, random_configuration(arm, 11), random_configuration(arm, 12))
    change(goal)
    status, result = client.plan_trajectory(goal)
    assert status == ABORTED and not result.success
    assert pytest.importorskip("re").search(message, result.message), result.message
    good, _ = goal_for(arm, random_configuration(arm, 11), random_configuration(arm, 12))
    assert client.plan_trajectory(good)[1].success


def test_speed_control_scales_durations_and_limits(planner, arm):
    """max_velocity_scaling_factor and max_acceleration_scaling_factor (0: the node's defaults),
    max_jerk and duration, on one configuration goal: the same path, timed as asked."""
    _, client = planner
    goal, _ = goal_for(arm, random_configuration(arm, 13), random_configuration(arm, 14), target_type=2)

    def plan(**fields):
        for name, value in fields.items():
            setattr(goal, name, value)
        status, result = client.plan_trajectory(goal)
        assert status == SUCCEEDED and result.success, result.message
        points = result.trajectory.points
        q = np.array([p.positions for p in points])
        v = np.array([p.velocities for p in points])
        a = np.array([p.accelerations for p in points])
        t = np.array([p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in points])
        return result, q, v, a, t

    fastest, q, v, a, _ = plan()
    limit_v, limit_a = arm.velocity_limits.numpy(), 5.0  # the node's defaults: URDF velocities, 5 rad/s²
    assert (np.abs(v) <= limit_v * (1 + 1e-6)).all() and (np.abs(a) <= limit_a * (1 + 1e-6)).all()
    assert (np.abs(v) / limit_v).max() > 0.99  # time-optimal: some limit is reached
    slow, q_slow, v, a, _ = plan(max_velocity_scaling_factor=0.5, max_acceleration_scaling_factor=0.25)
    assert (np.abs(v) <= 0.5 * limit_v * (1 + 1e-6)).all() and (np.abs(a) <= 0.25 * limit_a * (1 + 1e-6)).all()
    if q_slow.shape[1] == q.shape[1] and np.allclose(q_slow[[0, -1]], q[[0, -1]]):  # the same plan: twice as long
        assert slow.duration == pytest.approx(2 * fastest.duration, rel=0.05)
    long, *_ = plan(max_velocity_scaling_factor=0.0, max_acceleration_scaling_factor=0.0, duration=3 * fastest.duration)
    assert long.duration == pytest.approx(3 * fastest.duration, rel=1e-6)
    short, *_ = plan(duration=0.1 * fastest.duration)
    assert short.duration == pytest.approx(fastest.duration, rel=0.05) and "shorter than the limits allow" in short.message
    jerky, _, _, a, t = plan(duration=0.0, max_jerk=50.0)
    assert jerky.time_parameterization == "jerk_limited" and jerky.duration >= fastest.duration * 0.99
    assert (np.abs(np.diff(a, axis=0)) / np.diff(t)[:, None] <= 50.0 * 1.05).all()  # at 100 Hz
