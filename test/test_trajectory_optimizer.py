"""The trajectory optimizer: reaches reachable targets, respects limits, is smooth and correctly
time-parameterised, handles position-only and configuration goals, batches like one by one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ros_torch_kin.kinematics import Chain, forward_kinematics, pose_error
from ros_torch_kin.motion import solve_trajectory, time_parameterize
from ros_torch_kin.optim import TrajectoryLimits, TrajectoryOptions
from ros_torch_kin.robots import bundled_urdf

FAST = TrajectoryOptions(waypoints=16, seeds=6, max_iterations=25, time_budget=60.0)


@pytest.fixture(scope="module")
def arm32():
    return Chain.from_urdf(bundled_urdf(), device="cpu", dtype=torch.float32)


def reachable_problems(chain, count, seed):
    """Starts and targets that are poses of random in-limit configurations (inside 90% of the range)."""
    lower, upper = 0.9 * chain.lower_limits.double(), 0.9 * chain.upper_limits.double()
    g = torch.Generator().manual_seed(seed)
    start = (lower + torch.rand(count, chain.num_dofs, generator=g, dtype=torch.float64) * (upper - lower)).to(chain.dtype)
    goal_q = (lower + torch.rand(count, chain.num_dofs, generator=g, dtype=torch.float64) * (upper - lower)).to(chain.dtype)
    return start, goal_q, forward_kinematics(chain, goal_q, links="tool0")


def test_reaches_reachable_targets_within_tolerance_and_limits(arm32):
    start, _, target = reachable_problems(arm32, 12, seed=0)
    result = solve_trajectory(arm32, start, "tool0", target_pose=target, options=FAST)
    assert result.success.all(), (result.position_error, result.orientation_error)
    assert (result.position_error <= 1e-3).all() and (result.orientation_error <= math.radians(1)).all()
    # independently: FK of the returned last waypoint
    final = forward_kinematics(arm32, result.positions[:, -1], links="tool0")
    error = pose_error(final, target)
    assert (error[:, :3].norm(dim=-1) <= 1e-3).all() and (error[:, 3:].norm(dim=-1) <= math.radians(1)).all()
    torch.testing.assert_close(result.positions[:, 0], start)  # starts where asked
    limits = TrajectoryLimits.from_chain(arm32)
    assert ((result.positions >= limits.lower) & (result.positions <= limits.upper)).all()


def test_time_parameterization_respects_velocity_and_acceleration_limits(arm32):
    """The result's timing describes the motion it returns: velocities, accelerations and times()
    at the waypoints are those of ``trajectories`` (sampled at 1 kHz here), within the limits."""
    start, _, target = reachable_problems(arm32, 4, seed=1)
    limits = TrajectoryLimits.from_chain(arm32, acceleration=3.0)
    options = TrajectoryOptions(waypoints=16, seeds=6, max_iterations=25, time_budget=60.0, sample_period=1e-3)
    result = solve_trajectory(arm32, start, "tool0", target_pose=target, options=options, limits=limits)
    q, v, a, t = result.positions.double(), result.velocities.double(), result.accelerations.double(), result.times()
    tolerance = 1 + 1e-5
    assert (v.abs() <= limits.velocity.double() * tolerance).all()
    assert (a.abs() <= limits.acceleration.double() * tolerance).all()
    # starts and ends at rest; the waypoints are passed in order, from 0 to the motion's duration
    assert v[:, 0].abs().max() == 0 and v[:, -1].abs().max() == 0
    assert (t[:, 0] == 0).all() and (t[:, 1:] >= t[:, :-1]).all()
    for p, motion in enumerate(result.trajectories):
        # the samples (1 ms apart) pass through the waypoints at times(), with these velocities there
        samples_t = motion.times.numpy()
        # ... and arrive when the duration and the last waypoint's time say: within 1 µrad of the goal
        # from then on (braking at ≤ 3 rad/s², the last 1 µrad takes < 1 ms), farther a sample before
        samples_q = motion.positions.double().numpy()
        away = samples_t[np.flatnonzero(np.abs(samples_q - q[p, -1].numpy()).max(1) > 1e-6)[-1]]
        assert 0 < float(result.duration[p]) - away <= 2e-3 and 0 < float(t[p, -1]) - away <= 2e-3
        for j in range(arm32.num_dofs):
            along = np.interp(t[p].numpy(), samples_t, motion.positions[:, j].double().numpy())
            np.testing.assert_allclose(along, q[p, :, j].numpy(), atol=1e-5)  # chords of 1 ms: ≤ a·dt²/8
            speed = np.interp(t[p].numpy(), samples_t, motion.velocities[:, j].double().numpy())
            np.testing.assert_allclose(speed, v[p, :, j].numpy(), atol=float(limits.acceleration[j]) * 1e-3 + 1e-5)
        # at least one limit is active: the motion is not slower than needed
        assert max(motion.peak["velocity"], motion.peak["acceleration"]) > 0.99
    with pytest.warns(DeprecationWarning, match="time_step"):  # the old uniform step: now the mean interval
        torch.testing.assert_close(result.time_step.double(), result.duration / 15, rtol=1e-6, atol=0)


def test_result_is_smooth(arm32):
    start, _, target = reachable_problems(arm32, 4, seed=2)
    result = solve_trajectory(arm32, start, "tool0", target_pose=target, options=FAST)
    q = result.positions.double()
    straight = (q[:, -1] - q[:, 0]).norm(dim=-1)
    # no detours: the joint-space path is at most a little longer than the straight line ...
    length = (q[:, 1:] - q[:, :-1]).norm(dim=-1).sum(-1)
    assert (length <= 1.5 * straight + 0.05).all(), (length, straight)
    # ... and no spikes: the largest second difference is close to that of a minimum-jerk profile
    # over the same distance (10τ³ − 15τ⁴ + 6τ⁵ peaks at 5.77 per unit τ²)
    second = (q[:, 2:] - 2 * q[:, 1:-1] + q[:, :-2]).norm(dim=-1)
    ideal = 5.77 * straight / (q.shape[1] - 1) ** 2
    assert (second.amax(-1) <= 1.5 * ideal + 0.01).all(), (second.amax(-1), ideal)


def test_time_parameterize_by_hand():
    q = torch.tensor([[[0.0], [0.0], [1.0], [1.0]]], dtype=torch.float64)  # one joint, a single jump
    dt, v, a = time_parameterize(q, torch.tensor([2.0], dtype=torch.float64), torch.tensor([100.0], dtype=torch.float64))
    assert dt.item() == pytest.approx(0.5)  # the 1-rad step at 2 rad/s; acceleration allows 0.14 s
    assert v[0, :, 0].tolist() == pytest.approx([0.0, 1.0, 1.0, 0.0])
    assert a[0, :, 0].tolist() == pytest.approx([0.0, 4.0, -4.0, 0.0])


def test_position_only_goals_ignore_orientation(arm32):
    start, _, target = reachable_problems(arm32, 4, seed=3)
    twisted = target.clone()
    twisted[:, :3, :3] = torch.eye(3)  # an orientation the arm may not reach there; position only
    result = solve_trajectory(arm32, start, "tool0", target_pose=twisted, position_only=True, options=FAST)
    assert result.success.all() and (result.position_error <= 1e-3).all()
    assert (result.orientation_error == 0).all()


def test_configuration_goals(arm32):
    start, goal_q, _ = reachable_problems(arm32, 3, seed=4)
    result = solve_trajectory(arm32, start, target_configuration=goal_q, options=FAST)
    assert result.success.all()
    torch.testing.assert_close(result.positions[:, -1], goal_q, rtol=0, atol=1e-3)


def test_batched_problems_agree_with_one_by_one(arm32):
    start, _, target = reachable_problems(arm32, 3, seed=5)
    options = TrajectoryOptions(waypoints=12, seeds=4, max_iterations=8, time_budget=60.0, relative_tolerance=0.0)
    together = solve_trajectory(arm32.to(dtype=torch.float64), start.double(), "tool0", target_pose=target.double(),
                                options=options)
    for p in range(3):
        alone = solve_trajectory(arm32.to(dtype=torch.float64), start[p].double(), "tool0",
                                 target_pose=target[p].double(), options=options)
        torch.testing.assert_close(alone.positions[0], together.positions[p], rtol=0, atol=1e-9)
        assert alone.success[0] == together.success[p]


def test_analytical_and_autograd_backends_give_the_same_solution():
    chain = Chain.from_urdf(bundled_urdf(), device="cpu", dtype=torch.float64)
    start, _, target = reachable_problems(chain, 2, seed=6)
    options = TrajectoryOptions(waypoints=10, seeds=3, max_iterations=6, time_budget=60.0, relative_tolerance=0.0)
    a = solve_trajectory(chain, start, "tool0", target_pose=target, options=options)
    b = solve_trajectory(chain, start, "tool0", target_pose=target,
                         options=TrajectoryOptions(**{**options.__dict__, "analytical_grad": False}))
    torch.testing.assert_close(a.positions, b.positions, rtol=0, atol=1e-8)


def test_cancel_and_progress_reports(arm32):
    start, _, target = reachable_problems(arm32, 2, seed=7)
    reports = []

    def on_iteration(report):
        reports.append(report)
        return report.iteration < 3

    result = solve_trajectory(arm32, start, "tool0", target_pose=target, options=FAST, on_iteration=on_iteration)
    assert result.stopped == "canceled" and result.iterations == 3 and len(reports) == 3
    assert reports[0].best_cost.shape == (2,) and (reports[-1].best_cost <= reports[0].best_cost + 1e-6).all()
    assert reports[-1].position_error.shape == (2,)


def test_extra_cost_terms_shape_the_solution(arm32):
    start, _, target = reachable_problems(arm32, 1, seed=8)
    # keep joint 3 near zero all along
    term = (10.0, lambda state: state.positions[..., 2].pow(2).sum(-1))
    plain = solve_trajectory(arm32, start, "tool0", target_pose=target, options=FAST)
    shaped = solve_trajectory(arm32, start, "tool0", target_pose=target, options=FAST, extra_terms=[term])
    assert shaped.positions[..., 2].pow(2).sum() < plain.positions[..., 2].pow(2).sum()


def test_unreachable_target_fails_cleanly(arm32):
    start = torch.zeros(7)
    far = torch.eye(4)
    far[:3, 3] = torch.tensor([3.0, 0.0, 0.5])  # 3 m away; the arm reaches 1.4 m
    result = solve_trajectory(arm32, start, "tool0", target_pose=far, options=FAST)
    assert not result.success.item() and result.position_error.item() > 1.0
    assert result.positions.shape == (1, 16, 7)  # the closest attempt is still returned


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(start=torch.full((7,), 3.0)), "start of problem 0: joint 'joint_1' = 3 is outside its limits"),
        (dict(target_pose=torch.full((4, 4), float("nan"))), "target_pose is not finite"),
        (dict(target_pose=None), "exactly one of target_pose and target_configuration"),
        (dict(link=None), "needs the link"),
        (dict(link="hand"), "unknown link 'hand'"),
        (dict(start=torch.zeros(6)), "start must have shape"),
    ],
)
def test_invalid_problems_are_value_errors(arm32, kwargs, message):
    problem = dict(start=torch.zeros(7), link="tool0", target_pose=torch.eye(4))
    problem.update(kwargs)
    with pytest.raises(ValueError, match=message):
        solve_trajectory(arm32, problem.pop("start"), problem.pop("link"), options=FAST, **problem)


def test_options_are_checked():
    with pytest.raises(ValueError, match="waypoints must be at least 3"):
        TrajectoryOptions(waypoints=2)
    for bad in (dict(search_step=0.0), dict(search_resolution=float("nan"))):
        with pytest.raises(ValueError, match="search_step and search_resolution must be positive"):
            TrajectoryOptions(**bad)
