"""Time-optimal parameterisation (ros_torch_kin.motion.time_optimal): durations against hand-derived
bang-bang and jerk-limited profiles and against TOPP-RA computed independently on the same path;
limits respected when sampled at 1 kHz; scaling factors and durations; the timed curve stays
collision-free (a spline that would cut into an obstacle falls back to the checked segments); the
fallbacks say why."""

from __future__ import annotations

import dataclasses
import math
import time
import warnings

import numpy as np
import pytest
import torch

from conftest import ball_beside_the_last_link
from ros_torch_kin.collision import CollisionChecker, Obstacle, Scene, robot_spheres_from_urdf
from ros_torch_kin.kinematics import Chain, forward_kinematics
from ros_torch_kin.motion import MotionValidator, solve_trajectory
from ros_torch_kin.motion import time_optimal
from ros_torch_kin.motion.time_optimal import TimingRequest, retime
from ros_torch_kin.optim import TrajectoryLimits, TrajectoryOptions
from ros_torch_kin.robots import bundled_urdf

FAST = TrajectoryOptions(waypoints=16, seeds=6, max_iterations=25, time_budget=60.0)
KHZ = dict(sample_period=1e-3, control_period=1e-3)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def arm():
    chain = Chain.from_urdf(bundled_urdf(), device="cpu", dtype=torch.float64)
    return chain, CollisionChecker(chain, robot_spheres_from_urdf(bundled_urdf(), chain))


@pytest.fixture(scope="module")
def planned(arm):
    """Three free-space plans of the arm (configuration goals) and their limits."""
    chain, _ = arm
    g = torch.Generator().manual_seed(3)
    lower, upper = 0.9 * chain.lower_limits, 0.9 * chain.upper_limits
    start = lower + torch.rand(3, 7, generator=g, dtype=torch.float64) * (upper - lower)
    goal = lower + torch.rand(3, 7, generator=g, dtype=torch.float64) * (upper - lower)
    limits = TrajectoryLimits.from_chain(chain)
    result = solve_trajectory(chain, start, target_configuration=goal, options=FAST, limits=limits)
    assert result.success.all()
    return result, limits


def request_for(limits: TrajectoryLimits, **changes) -> TimingRequest:
    numpy = lambda t: t.double().numpy()  # noqa: E731
    return TimingRequest(velocity=numpy(limits.velocity), acceleration=numpy(limits.acceleration),
                         lower=numpy(limits.lower), upper=numpy(limits.upper), **changes)


def line(distance: float, count: int = 32) -> torch.Tensor:
    return torch.linspace(0.0, distance, count, dtype=torch.float64).unsqueeze(1)


@pytest.mark.parametrize("distance", [2.0, 0.3, 0.05])
def test_single_joint_rest_to_rest_is_the_bang_bang_profile(distance):
    v, a = 1.0, 5.0  # d > v²/a = 0.2: d/v + v/a; shorter: 2 √(d/a)
    expected = distance / v + v / a if distance > v * v / a else 2 * math.sqrt(distance / a)
    timed = retime(line(distance), TimingRequest(velocity=np.array([v]), acceleration=np.array([a]), **KHZ))
    assert timed.method == "time_optimal"
    assert timed.duration == pytest.approx(expected, rel=1e-4)
    # the polyline fallback (at rest at every waypoint) of a two-point line is the same profile
    stops = time_optimal._Stops(line(distance, 2).numpy(), TimingRequest(velocity=np.array([v]), acceleration=np.array([a])))
    assert stops.duration == pytest.approx(expected, rel=1e-12)


def test_single_joint_jerk_limited_matches_the_seven_phase_profile():
    d, v, a, j = 2.0, 1.0, 5.0, 50.0  # v ≥ a²/j and d long enough to cruise: d/v + v/a + a/j
    timed = retime(line(d), TimingRequest(velocity=np.array([v]), acceleration=np.array([a]), jerk=np.array([j]), **KHZ))
    assert timed.method == "jerk_limited"
    assert timed.duration == pytest.approx(d / v + v / a + a / j, rel=1e-4)
    assert max(timed.peak.values()) <= 1.0
    jerk = np.abs(np.diff(timed.accelerations.numpy(), axis=0)) / 1e-3
    assert jerk.max() <= j * 1.001


def test_duration_is_toppra_s_on_the_same_path_computed_independently(planned):
    import toppra
    import toppra.algorithm
    import toppra.constraint

    result, limits = planned
    request = request_for(limits)
    uniform = [uniform_by_hand(result.positions[p], limits)[0] * (result.positions.shape[1] - 1) for p in range(3)]
    for p in range(result.positions.shape[0]):
        q = result.positions[p].numpy()
        q = q[np.concatenate(([True], np.abs(np.diff(q, axis=0)).max(1) > 1e-12))]
        knots = np.concatenate(([0.0], np.cumsum(np.linalg.norm(np.diff(q, axis=0), axis=1))))
        reference = toppra.algorithm.TOPPRA(
            [toppra.constraint.JointVelocityConstraint(request.velocity),
             toppra.constraint.JointAccelerationConstraint(request.acceleration)],
            toppra.SplineInterpolator(knots, q), gridpt_min_nb_points=2000, parametrizer="ParametrizeConstAccel",
        ).compute_trajectory(0.0, 0.0).duration
        timed = result.trajectories[p]
        assert timed.method == "time_optimal"
        assert 0.995 * reference <= timed.duration <= 1.01 * reference, (timed.duration, reference)
        assert timed.duration < float(uniform[p])  # faster than the earlier uniform scaling


def test_limits_hold_sampled_at_1_khz_and_the_samples_are_consistent(planned):
    result, limits = planned
    jerk = torch.full((7,), 50.0, dtype=torch.float64)
    for with_jerk in (False, True):
        request = request_for(limits, jerk=jerk.numpy() if with_jerk else None, **KHZ)
        for p in range(result.positions.shape[0]):
            timed = retime(result.positions[p], request)
            t, q, v, a = (x.numpy() for x in (timed.times, timed.positions, timed.velocities, timed.accelerations))
            dt = np.diff(t)
            assert dt.max() <= 1e-3 + 1e-12 and t[-1] == pytest.approx(timed.duration)
            assert (np.abs(v) <= request.velocity * (1 + 1e-6)).all()
            assert (np.abs(a) <= request.acceleration * (1 + 1e-6)).all()
            assert (q >= request.lower).all() and (q <= request.upper).all()
            np.testing.assert_allclose(q[0], result.positions[p, 0].numpy(), atol=1e-12)
            np.testing.assert_allclose(q[-1], result.positions[p, -1].numpy(), atol=1e-12)
            assert np.abs(v[[0, -1]]).max() == 0 and np.abs(a[[0, -1]]).max() == 0  # at rest at both ends
            # the velocities are those of the positions (trapezoid rule), the accelerations those of the velocities
            np.testing.assert_allclose(np.diff(q, axis=0), 0.5 * (v[1:] + v[:-1]) * dt[:, None], atol=1e-6)
            finite = np.diff(v, axis=0) / dt[:, None]
            assert (np.abs(finite) <= request.acceleration * 1.01).all()
            if with_jerk:
                assert timed.method == "jerk_limited"
                assert (np.abs(np.diff(a, axis=0)) / dt[:, None] <= 50.0 * 1.01).all()


def test_scaling_factors_and_durations(arm, planned):
    chain, _ = arm
    result, limits = planned
    start, goal = result.positions[0, 0], result.positions[0, -1]
    options = dataclasses.replace(FAST, time_parameterization="time_optimal")
    fastest = solve_trajectory(chain, start, target_configuration=goal, options=options, limits=limits)
    half = solve_trajectory(chain, start, target_configuration=goal, limits=limits,
                            options=dataclasses.replace(options, velocity_scaling=0.5, acceleration_scaling=0.25))
    torch.testing.assert_close(half.positions, fastest.positions)  # the same path ...
    # ... at half the speed: v / 2 and a / 4 make every motion take twice as long
    assert half.trajectories[0].duration == pytest.approx(2 * fastest.trajectories[0].duration, rel=2e-3)
    assert half.trajectories[0].peak["velocity"] <= 1.0
    assert (half.trajectories[0].velocities.abs() <= 0.5 * limits.velocity * (1 + 1e-6)).all()
    # velocity scaling alone slows the single-joint cruise by exactly 1/s (d/v + v/a, d > v²/a)
    one = TimingRequest(velocity=np.array([0.5]), acceleration=np.array([5.0]))
    assert retime(line(2.0), one).duration == pytest.approx(2.0 / 0.5 + 0.5 / 5.0, rel=1e-4)

    T = fastest.trajectories[0].duration
    slower = retime(fastest.positions[0], request_for(limits, duration=2.5 * T))
    assert slower.duration == pytest.approx(2.5 * T, rel=1e-9) and slower.fastest == pytest.approx(T, rel=1e-5)
    assert slower.note == "" and slower.peak["velocity"] <= 1 / 2.5 + 1e-6
    quicker = retime(fastest.positions[0], request_for(limits, duration=0.5 * T))
    assert quicker.duration == pytest.approx(T, rel=1e-5)  # as fast as the limits allow, and it says so
    assert "shorter than the limits allow" in quicker.note
    with pytest.raises(ValueError, match="velocity_scaling"):
        TrajectoryOptions(velocity_scaling=1.5)
    with pytest.raises(ValueError, match="acceleration_scaling"):
        TrajectoryOptions(acceleration_scaling=0.0)
    with pytest.raises(ValueError, match="duration"):
        TrajectoryOptions(duration=float("nan"))


def uniform_by_hand(q: torch.Tensor, limits: TrajectoryLimits | None = None, dt: float | None = None):
    """Uniform time scaling of waypoints q (T, J) from its definition (:mod:`ros_torch_kin.motion.timing`'s
    docstring), in numpy: the path held at rest before and after; the step dt (given, or the smallest with
    every |Δq| / dt ≤ v and |Δ²q| / dt² ≤ a, at least 1 ms); velocities the central differences (zero
    at the ends), accelerations the second differences. -> (dt, velocities (T, J), accelerations (T, J))."""
    q = q.double().numpy()
    rest = np.concatenate((q[:1], q, q[-1:]))
    step, second = np.diff(rest, axis=0), np.diff(rest, 2, axis=0)
    if dt is None:
        v, a = limits.velocity.double().numpy(), limits.acceleration.double().numpy()
        dt = max(1e-3, float((np.abs(step) / v).max()), math.sqrt(float((np.abs(second) / a).max())))
    velocities = (rest[2:] - rest[:-2]) / (2 * dt)
    velocities[[0, -1]] = 0.0
    return dt, velocities, second / dt**2


def test_uniform_option_and_the_fallback_when_toppra_fails(planned, monkeypatch):
    result, limits = planned
    uniform = time_optimal.timed_trajectories(result.positions, limits, TrajectoryOptions(time_parameterization="uniform"))
    assert [t.method for t in uniform] == ["uniform"] * 3
    T = result.positions.shape[1]
    for p, timed in enumerate(uniform):
        dt, v, a = uniform_by_hand(result.positions[p], limits)
        assert timed.duration == pytest.approx(dt * (T - 1), rel=1e-9)
        np.testing.assert_allclose(timed.waypoint_times.numpy(), np.arange(T) * dt, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(timed.velocities.numpy(), v, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(timed.accelerations.numpy(), a, rtol=1e-9, atol=1e-12)

    def broken(path, request):
        raise RuntimeError("no solution")

    monkeypatch.setattr(time_optimal, "_toppra", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fallback = retime(result.positions[0], request_for(limits))
    assert fallback.method == "uniform" and "TOPP-RA failed" in fallback.note
    assert any("TOPP-RA failed" in str(w.message) for w in caught)
    assert fallback.duration == pytest.approx(uniform_by_hand(result.positions[0], limits)[0] * (T - 1), rel=1e-6)


def test_a_joint_whose_spline_would_leave_its_limits_is_interpolated_monotonically():
    # joint 0 holds two waypoints on its upper limit (as the optimiser's projection leaves them), joint 1 moves on
    q = torch.tensor([[0.0, 0.0], [0.6, 0.1], [1.0, 0.2], [1.0, 0.3], [0.4, 0.4]], dtype=torch.float64)
    request = TimingRequest(velocity=np.ones(2), acceleration=np.full(2, 5.0), lower=np.full(2, -1.0),
                            upper=np.ones(2), **KHZ)
    cubic = time_optimal._Spline(q.numpy())
    assert cubic(np.linspace(0.0, cubic.length, 401))[:, 0].max() > 1.001  # the cubic rings beyond the limit
    assert time_optimal._Spline(q.numpy(), request.lower, request.upper).monotone.tolist() == [True, False]
    timed = retime(q, request)
    assert timed.method == "time_optimal" and float(timed.positions.max()) <= 1.0
    assert (timed.velocities.abs() <= 1.0 * (1 + 1e-6)).all() and (timed.accelerations.abs() <= 5.0 * (1 + 1e-6)).all()
    # with jerk limits, acceleration steps at the waypoints of the C¹ joint: stopping at them may be faster
    jerky = retime(q, dataclasses.replace(request, jerk=np.full(2, 50.0)))
    assert jerky.method in ("jerk_limited", "waypoint_stops") and float(jerky.positions.max()) <= 1.0
    assert jerky.peak["jerk"] <= 1.0


def dense(positions: torch.Tensor, step: float = 0.002) -> torch.Tensor:
    """Every configuration along the piecewise-linear motion, at most ``step`` rad apart."""
    parts = [positions[:1]]
    for a, b in zip(positions[:-1], positions[1:]):
        n = max(1, int(torch.ceil((b - a).abs().max() / step)))
        parts.append(a + torch.arange(1, n + 1, dtype=a.dtype).unsqueeze(1) / n * (b - a))
    return torch.cat(parts)


def test_a_spline_that_would_cut_into_an_obstacle_stops_at_the_waypoints_instead(arm, monkeypatch):
    chain, checker = arm
    a = torch.tensor([0.0, 0.3, 0.0, -1.2, 0.0, 0.6, 0.0], dtype=torch.float64)
    b = a + torch.tensor([0.8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    c = b + torch.tensor([0.0, 0.0, 0.0, 0.6, 0.0, 0.0, 0.0], dtype=torch.float64)
    q = torch.stack((a, b, c))  # a corner: the spline through it bulges out of the segments
    spline = time_optimal._Spline(q.numpy())
    s = np.linspace(0.0, spline.length, 401)
    bulge = np.abs(spline(s)[:, None, :] - dense(q, 0.001).numpy()[None]).max(-1).min(-1)  # from the polyline
    widest = torch.as_tensor(spline(s[int(np.argmax(bulge))]))
    assert bulge.max() > 0.05  # rad
    # a ball on the tool where the spline bulges most, 2 cm radius: the segments pass it, the spline does not
    tool = forward_kinematics(chain, widest, links="tool0")[:3, 3]
    scene = Scene([Obstacle.sphere("ball", 0.02, [*tool.tolist(), 0, 0, 0, 1])])
    close = checker.with_scene(scene)
    validator = MotionValidator(close, clearance=0.0)
    assert bool(validator.check(q).clear[0]) and bool(close.in_collision(widest.unsqueeze(0))[0])
    request = TimingRequest(velocity=np.ones(7), acceleration=np.full(7, 5.0), **KHZ)
    assert retime(q, request).method == "time_optimal"  # unchecked: the spline
    timed = retime(q, request, validator)
    assert timed.method == "waypoint_stops" and timed.curve_checked is False and "collision check" in timed.note
    # the polyline's own segment bounds do not let the bulge through without sampling it ...
    assert time_optimal._merged_segments(validator.check(q).segments[0], q.numpy()).shape == (q.shape[0] - 1, 3)
    assert retime(q, request, validator, validator.check(q).segments[0]).method == "waypoint_stops"
    # ... and where each segment's bounds exceed its requirements by the curve's deviation the curve passes
    # unsampled, and is clear
    far = checker.with_scene(Scene([Obstacle.sphere("ball", 0.02, [*(tool + 2.0).tolist(), 0, 0, 0, 1])]))
    far_validator = MotionValidator(far, clearance=0.0)
    path = dense(torch.stack((a, c)), 0.05)  # a plan's spacing: short chords, small sweep bounds, a spline on them
    sampled, curve_validator = [], time_optimal._CurveValidator
    monkeypatch.setattr(time_optimal, "_CurveValidator", lambda *args: sampled.append(args) or curve_validator(*args))
    shortcut = retime(path, request, far_validator, far_validator.check(path).segments[0])
    assert not sampled  # decided without sampling the curve
    assert shortcut.method == "time_optimal" and shortcut.curve_checked is True
    # without the check's segments the same curve is sampled (and passes)
    assert retime(path, request, far_validator).curve_checked is True and len(sampled) == 1
    monkeypatch.undo()
    assert not bool(far.in_collision(shortcut.positions).any())
    assert not bool(close.in_collision(timed.positions).any())


def test_planned_motions_retimed_at_1_khz_stay_collision_free(arm):
    """A plan close to an obstacle at its goal (3 mm, closer than the 10 mm clearance): the timed
    motion sampled at 1 kHz is free of collision on the checker's own geometry, margin 0."""
    chain, checker = arm
    start = torch.tensor([0.0, 0.3, 0.0, -1.2, 0.0, 0.6, 0.0], dtype=chain.dtype)
    goal = torch.tensor([0.8, 0.4, 0.0, -1.0, 0.0, 0.8, 0.0], dtype=chain.dtype)
    # a ball 3 mm from the spheres of the tool's link at the goal, on a side where nothing else is closer
    ball = ball_beside_the_last_link(chain, checker, goal, 0.003)
    close = checker.with_scene(Scene([ball]))
    options = TrajectoryOptions(time_budget=10.0, **KHZ)
    for jerk in (None, torch.full((7,), 50.0, dtype=chain.dtype)):
        limits = dataclasses.replace(TrajectoryLimits.from_chain(chain), jerk=jerk)
        result = solve_trajectory(chain, start, "tool0", target_configuration=goal, collision=close, options=options,
                                  limits=limits)
        assert bool(result.success[0]), result.failure
        timed = result.trajectories[0]
        assert timed.method == ("time_optimal" if jerk is None else "jerk_limited") and timed.curve_checked is True
        samples = timed.positions
        assert float((samples[1:] - samples[:-1]).abs().max()) < 0.003  # 1 kHz: at most a few mrad apart
        assert not bool(close.in_collision(dense(samples)).any())
        assert result.timings["time_parameterization"] > 0


def test_the_planner_hands_its_segment_bounds_to_the_curve_check(arm, monkeypatch):
    """A plan far from the one obstacle: the planner passes the chosen motion's per-segment
    bounds to the timing step, which then certifies the curve without sampling it."""
    chain, checker = arm
    start = torch.tensor([0.0, 0.3, 0.0, -1.2, 0.0, 0.6, 0.0], dtype=chain.dtype)
    goal = torch.tensor([0.8, 0.4, 0.0, -1.0, 0.0, 0.8, 0.0], dtype=chain.dtype)
    far = checker.with_scene(Scene([Obstacle.sphere("ball", 0.05, [3.0, 0.0, 0.0, 0, 0, 0, 1])]))
    sampled, curve_validator = [], time_optimal._CurveValidator
    monkeypatch.setattr(time_optimal, "_CurveValidator", lambda *args: sampled.append(args) or curve_validator(*args))
    result = solve_trajectory(chain, start, "tool0", target_configuration=goal, collision=far, options=FAST)
    assert bool(result.success[0]), result.failure
    assert result.trajectories[0].curve_checked is True and result.trajectories[0].method == "time_optimal"
    assert not sampled


def at_times(motion, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A timed trajectory's positions and velocities at ``times``, interpolated between its samples."""
    t = motion.times.numpy()
    q, v = motion.positions.double().numpy(), motion.velocities.double().numpy()
    return (np.stack([np.interp(times, t, q[:, j]) for j in range(q.shape[1])], 1),
            np.stack([np.interp(times, t, v[:, j]) for j in range(v.shape[1])], 1))


@pytest.mark.parametrize("method", ["time_optimal", "jerk_limited", "waypoint_stops", "uniform"])
def test_the_motion_at_its_waypoints_is_the_motion_itself(planned, method, monkeypatch):
    """waypoint_times / waypoint_velocities / waypoint_accelerations (the result's times(),
    velocities, accelerations) are the returned motion where it passes each waypoint, whatever the
    method; a repeated waypoint shares its neighbour's time (except with uniform scaling)."""
    result, limits = planned
    q = torch.cat((result.positions[0, :3], result.positions[0, 2:]))  # waypoint 2 twice
    request = request_for(limits, jerk=np.full(7, 50.0) if method == "jerk_limited" else None, **KHZ)
    if method == "uniform":
        timed = time_optimal._uniform(q, request, "")
    elif method == "waypoint_stops":  # as when the curve fails its check
        monkeypatch.setattr(time_optimal, "_curve_ok", lambda path, request, validator, *rest: (False, "fails"))
        timed = retime(q, request)
    else:
        timed = retime(q, request)
    assert timed.method == method
    T = q.shape[0]
    t, v, a = timed.waypoint_times.numpy(), timed.waypoint_velocities.numpy(), timed.waypoint_accelerations.numpy()
    assert t.shape == (T,) and v.shape == a.shape == (T, 7) and timed.waypoint_times.dtype == torch.float64
    assert t[0] == 0 and t[-1] == timed.duration and (np.diff(t) >= 0).all()
    assert (t[2] == t[3]) == (method != "uniform")  # uniform scaling holds still for a step
    assert np.abs(v[[0, -1]]).max() == 0  # at rest at both ends (uniform: its second differences start it)
    assert (np.abs(a[[0, -1]]).max() == 0) == (method != "uniform")
    assert (np.abs(v) <= request.velocity * (1 + 1e-6)).all() and (np.abs(a) <= request.acceleration * (1 + 1e-6)).all()
    if method == "waypoint_stops":
        assert np.abs(v).max() == 0  # at rest at every waypoint
    if method == "uniform":  # the samples are the waypoints, evenly spaced: the differences of their positions
        assert np.allclose(np.diff(t), t[1]) and np.allclose(timed.times.numpy(), t)
        _, by_hand_v, by_hand_a = uniform_by_hand(q, dt=float(t[1]))
        np.testing.assert_allclose(timed.positions.numpy(), q.numpy(), atol=1e-12)
        np.testing.assert_allclose(v, by_hand_v, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(a, by_hand_a, rtol=1e-9, atol=1e-12)
        return
    positions, velocities = at_times(timed, t)
    np.testing.assert_allclose(positions, q.numpy(), atol=1e-5)
    np.testing.assert_allclose(velocities, v, atol=float(request.acceleration.max()) * 1e-3 + 1e-6)


def test_the_result_s_timing_is_its_waypoints_uniform_scaling_by_hand(arm, planned):
    """With uniform timing, the result's duration, times(), velocities and accelerations (each
    problem's, stacked) are the uniform scaling of its own waypoints, derived from the definition."""
    chain, _ = arm
    planned_result, limits = planned
    options = dataclasses.replace(FAST, time_parameterization="uniform")
    result = solve_trajectory(chain, planned_result.positions[:, 0], target_configuration=planned_result.positions[:, -1],
                              options=options, limits=limits)
    assert result.success.all() and result.duration.dtype == torch.float64
    P, T = result.positions.shape[:2]
    for p in range(P):
        dt, v, a = uniform_by_hand(result.positions[p], limits)
        assert float(result.duration[p]) == pytest.approx(dt * (T - 1), rel=1e-9)
        np.testing.assert_allclose(result.times()[p].numpy(), np.arange(T) * dt, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(result.velocities[p].numpy(), v, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(result.accelerations[p].numpy(), a, rtol=1e-9, atol=1e-12)
    with pytest.warns(DeprecationWarning):
        np.testing.assert_allclose(result.time_step.numpy(), result.duration.numpy() / (T - 1), rtol=1e-12)


def test_waypoint_timing_of_one_joint_is_the_trapezoid_by_hand():
    """One joint along a straight line, 2 rad at v = 1 rad/s, a = 5 rad/s²: the time-optimal motion
    is the trapezoid (accelerate over 0.1 rad, cruise, brake over the last 0.1 rad; 2.2 s), so each
    waypoint x is passed at t = √(2x/a), x/v + v/(2a) or 2.2 − √(2(2 − x)/a), at velocity a·t, v or
    a·(2.2 − t), with acceleration a, 0 or −a just after it (zero at both ends, at rest)."""
    d, V, A = 2.0, 1.0, 5.0
    q = line(d, 32)
    timed = retime(q, TimingRequest(velocity=np.array([V]), acceleration=np.array([A]), **KHZ))
    x, D = q[:, 0].numpy(), d / V + V / A
    ramp = V * V / (2 * A)
    t = np.where(x <= ramp, np.sqrt(2 * x / A), np.where(x < d - ramp, x / V + V / (2 * A), D - np.sqrt(2 * np.clip(d - x, 0, None) / A)))
    v = np.where(x <= ramp, A * t, np.where(x < d - ramp, V, A * (D - t)))
    a = np.where(x < ramp, A, np.where(x < d - ramp, 0.0, -A))
    a[[0, -1]] = 0.0
    np.testing.assert_allclose(timed.waypoint_times.numpy(), t, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(timed.waypoint_velocities.numpy()[:, 0], v, atol=1e-2)
    np.testing.assert_allclose(timed.waypoint_accelerations.numpy()[:, 0], a, atol=0.05 * A)


def test_curve_samples_per_segment_keep_every_sphere_within_the_tolerance(arm):
    """Each segment gets its own number of curve samples (a bend many, a straight stretch one);
    every sphere centre on the curve stays within the slack / 2 of the same point of the polyline
    through the samples (measured by FK, not by the bound), the samples include the waypoints
    exactly, and the approach rule still falls on the original segments."""
    from ros_torch_kin.collision.sphere_centers import world_sphere_centers
    from ros_torch_kin.kinematics import world_transforms

    chain, checker = arm
    a = torch.tensor([0.0, 0.3, 0.0, -1.2, 0.0, 0.6, 0.0], dtype=torch.float64)
    steps = torch.zeros(7, 7, dtype=torch.float64)
    steps[:5, 0] = 0.2  # along joint 0, then a bend into joint 3
    steps[4:, 3] = torch.tensor([0.5, 0.2, 0.2], dtype=torch.float64)
    q = torch.cat((a.unsqueeze(0), a + torch.cumsum(steps, 0)))
    path = time_optimal._Spline(q.numpy())
    validator = MotionValidator(checker, clearance=0.01)
    tolerance = 1e-4
    deviation = torch.as_tensor(path.chord_deviation()).to(validator.sphere_speed)
    spread = validator.sweep_bound(torch.zeros_like(deviation), deviation).double().numpy()
    pieces, slack = time_optimal._curve_pieces(spread, tolerance)
    assert pieces.shape == (7,) and 2 * pieces.min() < pieces.max() < 64 and 0 < slack.max() <= 2 * tolerance
    samples = path.samples(pieces)
    starts = np.concatenate(([0], np.cumsum(pieces)))
    np.testing.assert_array_equal(samples[starts], q.numpy())  # the waypoints themselves
    # the curve at 20 points inside every sample piece against the chord between its samples
    fractions = np.linspace(0.0, 1.0, 21)
    knots = np.repeat(path.knots[:-1], pieces) + np.concatenate([np.arange(n) / n for n in pieces]) * np.repeat(np.diff(path.knots), pieces)
    ends = np.append(knots[1:], path.length)
    s = (knots[:, None] + fractions[None] * (ends - knots)[:, None]).reshape(-1)
    chords = (samples[:-1, None] + fractions[None, :, None] * (samples[1:] - samples[:-1])[:, None]).reshape(-1, 7)

    def centres(x):
        return world_sphere_centers(world_transforms(chain, torch.as_tensor(x)), checker.spheres)

    deviation = (centres(path(s)) - centres(chords)).norm(dim=1).max()
    assert float(deviation) <= slack.max() / 2 * (1 + 1e-9), (float(deviation), slack)
    # the approach rule of the original 7 segments (1 segment at each end), carried to the samples
    curve = time_optimal._CurveValidator(validator, pieces, slack)
    world = torch.full((1, len(samples)), 1.0, dtype=torch.float64)
    world[0, 0] = 0.001  # a start closer than the clearance: its first segment only needs validity
    need = curve.requirements(world)[0]
    per_sample = torch.as_tensor(slack).repeat_interleave(torch.as_tensor(pieces))
    expected = validator.requirements(world[:, starts])[0].repeat_interleave(torch.as_tensor(pieces)) + per_sample
    torch.testing.assert_close(need, expected)
    assert need[0] == slack[0] and need[-1] == 0.01 + slack[-1]
    torch.testing.assert_close(curve.self_requirements(need.unsqueeze(0))[0], per_sample)  # validity margin 0


def test_warm_up_imports_and_runs_what_timing_needs():
    """What the node runs at start-up so that its first goal does not import toppra (~0.6 s)."""
    import sys

    assert time_optimal.warm_up() >= 0.0
    assert {"toppra", "toppra.algorithm", "ruckig", "scipy.interpolate"} <= set(sys.modules)


def test_a_curve_check_past_its_deadline_falls_back_to_the_checked_polyline(arm):
    """retime's deadline (the planner's time budget): a curve whose check cannot start before it
    is not followed; the motion stops at every waypoint on the polyline already checked, and the
    note says why. The same curve with time left is checked and followed."""
    chain, checker = arm
    a = torch.tensor([0.0, 0.3, 0.0, -1.2, 0.0, 0.6, 0.0], dtype=torch.float64)
    c = a + torch.tensor([0.8, 0.0, 0.0, 0.6, 0.0, 0.0, 0.0], dtype=torch.float64)
    path = dense(torch.stack((a, a + 0.5 * (c - a) + 0.2, c)), 0.05)  # a bend: the curve needs sampling
    validator = MotionValidator(checker, clearance=0.0)
    request = TimingRequest(velocity=np.ones(7), acceleration=np.full(7, 5.0), **KHZ)
    in_time = retime(path, request, validator, deadline=time.perf_counter() + 60.0)
    assert in_time.method == "time_optimal" and in_time.curve_checked is True
    late = retime(path, request, validator, deadline=time.perf_counter() - 1.0)
    assert late.method == "waypoint_stops" and late.curve_checked is False
    assert "within the time budget" in late.note, late.note
    assert late.duration > in_time.duration  # stopping at every waypoint is slower


def test_a_toppra_profile_inverted_exactly_meets_its_path_parameters():
    """_ToppraProfile.time_at (the waypoints' times, instead of 64 bisections of s(t)) inverts
    s(t): s(time_at(s)) = s on every grid piece, at rest at the start (ṡ = 0: the root's form)
    and on a piece of constant speed (ṡ̈ = 0)."""
    grid = np.array([0.0, 0.1, 0.25, 0.5, 0.7, 1.0])
    sd = np.array([0.0, 0.6, 0.9, 0.9, 0.5, 0.0])
    profile = time_optimal._ToppraProfile(grid, sd)
    s = np.concatenate([grid, np.linspace(0, 1, 101)])
    t = profile.time_at(s)
    assert (np.diff(t[len(grid):]) >= 0).all() and t[0] == 0 and t[len(grid) - 1] == pytest.approx(profile.duration)
    np.testing.assert_allclose(profile(t)[0], s, atol=1e-12)
    np.testing.assert_allclose(t[:len(grid)], profile.t, atol=1e-12)
