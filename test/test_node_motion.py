"""The real node plans around obstacles added through ~/update_scene: the plan it returns is
collision-free when its motion is checked densely through ~/check_collision, the same goal
without avoidance would hit the obstacle, and a goal inside an obstacle is refused with that
reason. (Cancel mid-solve, with collision checking on by default, is in test_node_action.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ros_fixtures import requires_ros, running_node

from ros_torch_kin.kinematics import forward_kinematics

pytestmark = requires_ros
SUCCEEDED, CANCELED, ABORTED = 4, 5, 6

START = [0.0, 1.0, 0.0, -1.0, 0.0, 0.5, 0.0]
GOAL = [math.pi / 1.2, 1.0, 0.0, -1.0, 0.0, 0.5, 0.0]  # joint_1 swings the leaning arm round


@pytest.fixture(scope="module")
def planner(ros_domain):
    with running_node(ros_domain, {"trajectory_time_budget": 20.0}, name="rtk_motion") as (process, client):
        yield process, client


@pytest.fixture()
def wall(planner, arm7):
    """A box where the tool passes halfway along the straight joint-space motion."""
    from ros_torch_kin.ros.client import obstacle
    from ros_torch_kin.srv import UpdateScene

    _, client = planner
    halfway = torch.tensor(START, dtype=torch.float64)
    halfway[0] = GOAL[0] / 2
    tool = forward_kinematics(arm7, halfway, "tool0")[:3, 3].tolist()
    client.update_scene(UpdateScene.Request.ADD, [obstacle("wall", "box", (0.2, 0.2, 0.3), (*tool, 0, 0, 0, 1))])
    yield tool
    client.update_scene(UpdateScene.Request.CLEAR)


def configuration_goal(arm7, start, target, **fields):
    from sensor_msgs.msg import JointState

    from ros_torch_kin.action import PlanTrajectory

    goal = PlanTrajectory.Goal(target_type=PlanTrajectory.Goal.TARGET_CONFIGURATION, **fields)
    goal.start = JointState(name=list(arm7.joint_names), position=[float(v) for v in start])
    goal.target_configuration = JointState(name=list(arm7.joint_names), position=[float(v) for v in target])
    return goal


def densely(trajectory, steps: int = 12) -> np.ndarray:
    """Every waypoint of a JointTrajectory and ``steps`` - 1 configurations between each pair."""
    points = np.array([p.positions for p in trajectory.points])
    fractions = np.linspace(0.0, 1.0, steps, endpoint=False)[None, :, None]
    between = points[:-1, None] + fractions * (points[1:] - points[:-1])[:, None]
    return np.concatenate((between.reshape(-1, points.shape[1]), points[-1:]))


def test_plan_goes_around_an_obstacle_added_through_the_scene_service(planner, arm7, wall):
    _, client = planner
    feedback = []
    status, result = client.plan_trajectory(configuration_goal(arm7, START, GOAL), on_feedback=feedback.append)
    assert status == SUCCEEDED and result.success, result.message
    assert result.collision_checked and result.min_clearance >= 0.01 - 1e-6
    assert result.closest_link_a and result.closest_link_b
    np.testing.assert_allclose(result.trajectory.points[-1].positions, GOAL, atol=1e-3)
    motion = densely(result.trajectory)
    report = client.check_collision(motion)
    assert not report.in_collision.any(), f"closest: {report.link_a[report.min_distance.argmin()]} - " \
                                          f"{report.link_b[report.min_distance.argmin()]}"
    assert report.min_distance.min() > 0.0


def test_without_avoidance_the_same_plan_would_hit_the_obstacle(planner, arm7, wall):
    _, client = planner
    status, result = client.plan_trajectory(configuration_goal(arm7, START, GOAL, avoid_collisions=False))
    assert status == SUCCEEDED and result.success and not result.collision_checked
    report = client.check_collision(densely(result.trajectory))
    assert report.in_collision.any() and "wall" in report.link_b


def test_a_goal_inside_an_obstacle_is_refused_with_the_reason(planner, arm7):
    from ros_torch_kin.ros.client import obstacle
    from ros_torch_kin.srv import UpdateScene

    _, client = planner
    tool = forward_kinematics(arm7, torch.tensor(GOAL, dtype=torch.float64), "tool0")[:3, 3].tolist()
    client.update_scene(UpdateScene.Request.ADD, [obstacle("block", "sphere", (0.1,), (*tool, 0, 0, 0, 1))])
    try:
        status, result = client.plan_trajectory(configuration_goal(arm7, START, GOAL))
        assert not result.success and "goal in collision" in result.message, result.message
        assert len(result.trajectory.points) == 0
    finally:
        client.update_scene(UpdateScene.Request.CLEAR)


def test_a_bad_clearance_is_refused(planner, arm7):
    _, client = planner
    status, result = client.plan_trajectory(configuration_goal(arm7, START, GOAL, clearance=-0.1))
    assert status == ABORTED and "clearance = -0.1" in result.message
