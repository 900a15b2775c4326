"""Time-optimal parameterisation of a planned path, with speed control, checked where it counts.

The geometric path. The planner checks its motion as the piecewise-linear joint path through
the waypoints (:mod:`.checking`); a controller cannot follow corners at speed, so the path that is
timed is the C² cubic spline through the waypoints (scipy's not-a-knot ``CubicSpline``,
parameterised by the cumulative joint-space chord length) and that curve is collision-checked
again with the planner's own :class:`~.checking.MotionValidator`:

* the spline is sampled with ``n_k`` pieces on waypoint segment k (its waypoints among the
  samples), chosen per segment so that the curve stays within ``curve_tolerance`` (m, of any
  collision sphere's motion) of the chords between its samples: on a piece of parameter length h
  a joint leaves its chord by at most h²/8 · max|q''| (q'' is linear on a cubic's piece, so its
  largest value is at a knot), and a sphere moves at most Σ_k δ_k · G[k, s] for joint
  displacements δ_k (the validator's own sweep bound); a straight stretch needs one piece, a bend
  many;
* the validator checks that polyline (every piece, its refinements, its approach rule on the
  original segments) with every requirement raised by twice that deviation (a self pair's two
  spheres both move): a polyline that passes keeps the planner's requirements along the curve.
  This sampling is skipped where the waypoints' own check already shows it: a segment each of
  whose checked distance columns (one per link and per self pair with the tight model) exceeds
  its requirement by how much the curve's deviation can change it (the deviation times the
  column's own speed) keeps the requirements as it is and gets one piece and no requirement;
* the curve must stay inside the position limits: a joint whose cubic would leave them (the
  optimiser holds waypoints on a limit, and a cubic through a plateau rings) is interpolated by
  the monotone PCHIP instead, which never leaves its waypoints' range (C¹: its acceleration steps
  at the waypoints, which the controller-rate check below accounts for).

Where the curve fails either check the trajectory follows the checked polyline itself, stopping
at every waypoint ("waypoint_stops": exact, slower). Without a validator only the limits are checked.

The timing. TOPP-RA (``toppra``) gives the time-optimal path velocity under the joint velocity and
acceleration limits (times the scaling factors), at rest at both ends; the motion is evaluated at
the controller's rate (``control_period``) and, where TOPP-RA's discretisation overshoots a limit
between its grid points (a fraction of a per cent), the whole motion is stretched in time until
every sample is within the limits. With jerk limits: TOPP-RA has no jerk constraints and Ruckig's
open-source edition cannot follow a path (intermediate waypoints are its commercial edition's), so
the path parameter's TOPP-RA profile s(t) is replaced by its moving average over a window τ
(continuous path acceleration, path jerk ≤ its largest jump / τ, τ longer in all; the window
chosen among a few around max(a / j)), then stretched in time until every controller-rate sample
is within the velocity, acceleration and jerk limits (jerk: finite differences of the
accelerations). For one joint's trapezoid this is exactly the time-optimal 7-phase profile; on
curved paths it is not optimal. Ruckig gives the jerk-limited rest-to-rest moves of the
"waypoint_stops" fallback.

Speed control. A requested ``duration`` longer than the fastest motion stretches it uniformly in
time (velocities / c, accelerations / c², jerks / c³: always within the limits); a shorter one is
honoured as "as fast as the limits allow" and the trajectory's ``note`` says so. If TOPP-RA fails,
the uniform time scaling of :mod:`.timing` is used and ``note`` says so.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .checking import MotionValidator
from .timing import time_parameterize

#: method names (TimedTrajectory.method)
TIME_OPTIMAL = "time_optimal"
JERK_LIMITED = "jerk_limited"
WAYPOINT_STOPS = "waypoint_stops"
UNIFORM = "uniform"


@dataclass(frozen=True)
class TimedTrajectory:
    """One motion sampled in time (K samples, J joints; rad / m and s), at rest at both ends.

    times (K,) float64 s, from 0 to ``duration`` every ``sample_period`` (the last one at the end);
    positions (K, J) rad / m, velocities (K, J) per s, accelerations (K, J) per s², in the
    waypoints' dtype and device. duration: s (float). method: "time_optimal" (TOPP-RA on the spline),
    "jerk_limited" (the spline, jerk-limited), "waypoint_stops" (the polyline, at rest at every
    waypoint) or "uniform" (the waypoints uniformly time-scaled; the fallback when TOPP-RA fails).
    fastest: the duration the limits allow (s; ``duration`` is longer only when a longer one was
    asked for). peak: the largest |velocity|, |acceleration| and |jerk| (finite differences of the
    accelerations) of the motion sampled at the controller's rate, each as a fraction of its
    limit (jerk: 0 without jerk limits). curve_checked: the curve passed the validator (None
    without one). note: '' or why the result differs from what was asked for.

    The same motion where it passes the T planned waypoints it was timed through (every method
    passes through each of them exactly): waypoint_times (T,) float64 s, nondecreasing from 0 to
    ``duration`` (repeated waypoints share a time, except with "uniform", which holds still
    for a step there); waypoint_velocities, waypoint_accelerations (T, J) per s and per s², zero at
    both ends ("uniform": its accelerations are second differences, not zero at the ends; where
    the acceleration steps at a waypoint, a C¹ joint's or every joint's with "waypoint_stops", the
    value just after it).
    """

    times: Tensor
    positions: Tensor
    velocities: Tensor
    accelerations: Tensor
    duration: float
    method: str
    fastest: float
    peak: dict
    curve_checked: bool | None = None
    note: str = ""
    waypoint_times: Tensor | None = None
    waypoint_velocities: Tensor | None = None
    waypoint_accelerations: Tensor | None = None


@dataclass(frozen=True)
class TimingRequest:
    """What :func:`retime` respects (float64 numpy arrays, J joints; rad or m, and s).

    velocity (J,) per s, acceleration (J,) per s² (already times any scaling factor), jerk (J,)
    per s³ or None (no jerk limit); lower, upper (J,) position limits or None (the curve is then not
    held within any); duration s (0: as fast as the limits allow; longer: slowed uniformly in
    time); control_period s, at which the limits are verified (the controller's rate);
    sample_period s, the spacing of the returned samples; curve_tolerance m, how far any collision
    sphere of the checked curve may leave the chords between its samples (see the module docstring).
    """

    velocity: np.ndarray
    acceleration: np.ndarray
    jerk: np.ndarray | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    duration: float = 0.0
    control_period: float = 1e-3
    sample_period: float = 0.01
    curve_tolerance: float = 1e-4


# ---------------------------------------------------------------------------------- the paths
class _Spline:
    """The not-a-knot cubic spline q(s) through waypoints at their cumulative chord lengths; a
    joint whose cubic would leave its position limits (waypoints held on a limit make it ring)
    is interpolated by the monotone PCHIP instead (C¹; never beyond its waypoints' values)."""

    def __init__(self, waypoints: np.ndarray, lower: np.ndarray | None = None, upper: np.ndarray | None = None):
        from scipy.interpolate import CubicSpline, PchipInterpolator, PPoly

        self.waypoints, self._lower, self._upper = waypoints, lower, upper
        self.knots = np.concatenate(([0.0], np.cumsum(np.linalg.norm(np.diff(waypoints, axis=0), axis=1))))
        self.length = float(self.knots[-1])
        self.spline = CubicSpline(self.knots, waypoints, bc_type="not-a-knot", axis=0)
        self.monotone = np.zeros(waypoints.shape[1], dtype=bool)
        #: the curve was sampled within 1e-6 of its chords and every sample is within 1e-6 of the
        #: limits given here (so :func:`_curve_ok` need not sample it again); None: not known
        self.within_limits: bool | None = None
        if lower is not None and waypoints.shape[0] > 2:
            samples = self.samples(self._pieces_for(1e-6))
            self.monotone = ((samples < lower - 1e-6) | (samples > upper + 1e-6)).any(0)
            self.within_limits = not self.monotone.any()
            if self.monotone.any():
                c = self.spline.c.copy()
                c[:, :, self.monotone] = PchipInterpolator(self.knots, waypoints, axis=0).c[:, :, self.monotone]
                self.spline = PPoly(c, self.knots)
        self.d1, self.d2, self.d3 = (self.spline.derivative(k) for k in (1, 2, 3))

    def limits_are(self, lower: np.ndarray | None, upper: np.ndarray | None) -> bool:
        """Whether ``lower``, ``upper`` are the limits this spline was built with."""
        return (lower is not None and self._lower is not None and np.array_equal(lower, self._lower)
                and np.array_equal(upper, self._upper))

    def _pieces_for(self, tolerance: float) -> int:
        """Pieces per segment so that every joint stays within ``tolerance`` of its chords."""
        return int(min(512, max(1, math.ceil(math.sqrt(self.chord_deviation().max() / tolerance)))))

    def __call__(self, s: np.ndarray, order: int = 0) -> np.ndarray:
        s = np.clip(s, 0.0, self.length)
        return self.spline(s) if order == 0 else (self.d1, self.d2, self.d3)[order - 1](s)

    def chord_deviation(self) -> np.ndarray:
        """(T − 1, J) how far each joint leaves the chord of a whole piece: h²/8 · max|q''| (q'' is
        linear on a cubic piece: its largest value at one end)."""
        c, h = self.spline.c, np.diff(self.knots)[:, None]  # c0 x³ + c1 x² + c2 x + c3 from the piece's start
        second = np.maximum(np.abs(2 * c[1]), np.abs(6 * c[0] * h + 2 * c[1]))
        return second * h**2 / 8

    def samples(self, pieces) -> np.ndarray:
        """(Σ pieces + 1, J) the curve at ``pieces`` equal parameter steps per waypoint segment
        (an int: the same for every segment, or (T − 1,) ints, one per segment); the segment
        ends are the waypoints themselves."""
        counts = np.broadcast_to(np.asarray(pieces, dtype=np.int64), (len(self.knots) - 1,))
        segment = np.repeat(np.arange(len(counts)), counts)
        step = np.arange(len(segment)) - np.repeat(np.cumsum(counts) - counts, counts)
        s = self.knots[segment] + step / counts[segment] * np.diff(self.knots)[segment]
        values = self(s)
        values[step == 0] = self.waypoints[:-1]  # exactly the waypoints the planner checked
        return np.concatenate((values, self.waypoints[-1:]))


def _kept(waypoints: np.ndarray) -> np.ndarray:
    """(T,) bool: the waypoints that differ from the one before (the first always)."""
    return np.concatenate(([True], np.abs(np.diff(waypoints, axis=0)).max(1) > 1e-12))


def _deduplicated(waypoints: np.ndarray) -> np.ndarray:
    return waypoints[_kept(waypoints)]


# ------------------------------------------------------------------------------ 1-D profiles
class _Profile:
    """A rest-to-rest motion of a scalar from 0 to ``length`` under |v| ≤ V, |a| ≤ A (and |j| ≤
    J): bang-bang (closed form) or jerk-limited (Ruckig)."""

    def __init__(self, length: float, V: float, A: float, J: float | None = None):
        self.length, self.V, self.A, self.J = length, V, A, J
        if length <= 0:
            self.duration = 0.0
            return
        if J is None:
            if length > V * V / A:
                self.ramp, self.duration = V / A, length / V + V / A
            else:
                self.ramp = math.sqrt(length / A)
                self.duration = 2 * self.ramp
            self.peak = self.A * self.ramp
            return
        from ruckig import InputParameter, Result, Ruckig, Trajectory

        given = InputParameter(1)
        given.current_position, given.target_position = [0.0], [length]
        given.max_velocity, given.max_acceleration, given.max_jerk = [V], [A], [J]
        self.trajectory = Trajectory(1)
        result = Ruckig(1).calculate(given, self.trajectory)
        if result not in (Result.Working, Result.Finished):
            raise RuntimeError(f"ruckig: {result}")
        self.duration = float(self.trajectory.duration)

    def __call__(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(s, ṡ, s̈) at times t (clipped to [0, duration])."""
        t = np.clip(t, 0.0, self.duration)
        if self.length <= 0:
            return np.zeros_like(t), np.zeros_like(t), np.zeros_like(t)
        if self.J is not None:
            at = [self.trajectory.at_time(float(x)) for x in t]
            return tuple(np.array([a[i][0] for a in at]) for i in range(3))
        A, r, D = self.A, self.ramp, self.duration
        up, down = t < r, t > D - r
        back = D - t
        s = np.where(up, 0.5 * A * t**2, np.where(down, self.length - 0.5 * A * back**2, 0.5 * A * r**2 + self.peak * (t - r)))
        sd = np.where(up, A * t, np.where(down, A * back, self.peak))
        sdd = np.where(up, A, np.where(down, -A, 0.0))
        return s, sd, sdd


# ------------------------------------------------------------------------------- timed motions
class _Motion:
    """q(t) = path(s(t)) and its derivatives, stretched in time by ``stretch``."""

    def evaluate(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError


class _PathMotion(_Motion):
    """A path q(s) timed by a parameter profile s(t)."""

    def __init__(self, path: _Spline, profile, duration: float):
        self.path, self.profile, self.duration = path, profile, duration

    def evaluate(self, t):
        s, sd, sdd = self.profile(t)
        d1 = self.path(s, 1)
        return self.path(s), d1 * sd[:, None], self.path(s, 2) * (sd**2)[:, None] + d1 * sdd[:, None]


class _ToppraProfile:
    """s(t) with constant s̈ between TOPP-RA's grid points (its ParametrizeConstAccel, vectorised)."""

    def __init__(self, gridpoints: np.ndarray, sd: np.ndarray):
        self.s, self.sd = gridpoints, sd
        ds = np.diff(gridpoints)
        self.u = (sd[1:] ** 2 - sd[:-1] ** 2) / (2 * ds)
        self.t = np.concatenate(([0.0], np.cumsum(2 * ds / (sd[1:] + sd[:-1]))))
        self.duration = float(self.t[-1])

        # ∫ s dt at the grid times (for the moving average of the jerk-limited variant)
        dt = np.diff(self.t)
        pieces = self.s[:-1] * dt + 0.5 * self.sd[:-1] * dt**2 + self.u * dt**3 / 6
        self.integral = np.concatenate(([0.0], np.cumsum(pieces)))

    def __call__(self, t):
        t = np.clip(t, 0.0, self.duration)
        i = np.clip(np.searchsorted(self.t, t, side="right") - 1, 0, len(self.u) - 1)
        dt = t - self.t[i]
        return self.s[i] + self.sd[i] * dt + 0.5 * self.u[i] * dt**2, self.sd[i] + self.u[i] * dt, self.u[i]

    def time_at(self, s: np.ndarray) -> np.ndarray:
        """The inverse: when s(t) reaches each of ``s`` (within [0, L]), s. On a grid piece
        s = sᵢ + ṡᵢ·dt + uᵢ·dt²/2, so dt = 2·Δs / (ṡᵢ + √(ṡᵢ² + 2·uᵢ·Δs)) (no cancellation; the
        root is ṡ at that time, ≥ 0)."""
        s = np.clip(s, self.s[0], self.s[-1])
        i = np.clip(np.searchsorted(self.s, s, side="right") - 1, 0, len(self.u) - 1)
        ds = s - self.s[i]
        speed = np.sqrt(np.maximum(self.sd[i] ** 2 + 2 * self.u[i] * ds, 0.0))
        denominator = self.sd[i] + speed
        dt = np.where(denominator > 0, 2 * ds / np.where(denominator > 0, denominator, 1.0), 0.0)
        return np.minimum(self.t[i] + dt, self.t[i + 1])

    def state(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(∫₀ᵗ s, s, ṡ, s̈) at any times: at rest at 0 before the start and at L after the end."""
        before, after = t <= 0, t >= self.duration
        inside = np.clip(t, 0.0, self.duration)
        i = np.clip(np.searchsorted(self.t, inside, side="right") - 1, 0, len(self.u) - 1)
        dt = inside - self.t[i]
        S = self.integral[i] + self.s[i] * dt + 0.5 * self.sd[i] * dt**2 + self.u[i] * dt**3 / 6
        s = self.s[i] + self.sd[i] * dt + 0.5 * self.u[i] * dt**2
        v = self.sd[i] + self.u[i] * dt
        a = np.where(before | after, 0.0, self.u[i])
        S = np.where(before, 0.0, np.where(after, self.integral[-1] + self.s[-1] * (t - self.duration), S))
        s = np.where(before, 0.0, np.where(after, self.s[-1], s))
        v = np.where(before | after, 0.0, v)
        return S, s, v, a


class _Stops(_Motion):
    """The polyline through the waypoints, at rest at each: one 1-D profile per segment."""

    def __init__(self, waypoints: np.ndarray, request: TimingRequest):
        self.start, self.delta = waypoints[:-1], np.diff(waypoints, axis=0)
        self.profiles = []
        for d in np.abs(self.delta):
            moving = d > 0
            V = float(np.min(request.velocity[moving] / d[moving]))
            A = float(np.min(request.acceleration[moving] / d[moving]))
            J = None if request.jerk is None else float(np.min(request.jerk[moving] / d[moving]))
            self.profiles.append(_Profile(1.0, V, A, J))
        self.begins = np.concatenate(([0.0], np.cumsum([p.duration for p in self.profiles])))
        self.duration = float(self.begins[-1])

    def evaluate(self, t):
        t = np.clip(t, 0.0, self.duration)
        i = np.clip(np.searchsorted(self.begins, t, side="right") - 1, 0, len(self.profiles) - 1)
        q = np.empty((t.shape[0], self.delta.shape[1]))
        v, a = np.empty_like(q), np.empty_like(q)
        for k in np.unique(i):
            rows = i == k
            s, sd, sdd = self.profiles[k](t[rows] - self.begins[k])
            q[rows] = self.start[k] + s[:, None] * self.delta[k]
            v[rows], a[rows] = sd[:, None] * self.delta[k], sdd[:, None] * self.delta[k]
        return q, v, a


# ------------------------------------------------------------------------------------- retime
def retime(waypoints: Tensor, request: TimingRequest, validator=None,
           segments: Tensor | None = None, deadline: float = math.inf) -> TimedTrajectory:
    """The motion through ``waypoints`` (T, J) (rad / m; any dtype and device: the result's
    positions, velocities and accelerations keep them, its times are float64 s) within
    ``request``'s limits, at rest at both ends, as fast as they allow (or as long as asked).
    ``validator``: the planner's :class:`~.checking.MotionValidator` that checked the waypoints'
    polyline; the curve is checked again with it and, failing, the motion stops at every
    waypoint (see the module docstring). Without one the curve is not collision-checked.
    ``segments`` (T − 1, C + 1): the validator's check of the waypoints' polyline, its
    per-segment bounds of each distance column and world requirements
    (:class:`~.sphere_sweep.MotionCheck`): a segment whose bounds exceed their requirements by
    what the curve's deviation from it can change them is clear without sampling; only the
    pieces of the curve near the other segments are sampled and checked. (The whole motion's ``clearance_bound`` is at most each of
    these bounds: a test on it would clear no segment that this one does not.) ``deadline``
    (``time.perf_counter()`` s): the curve's check starts no query block after it; a curve not
    shown clear by then is not followed either (the motion stops at every waypoint, on the
    polyline already checked), so a slow collision model costs speed, not the caller's budget."""
    dtype, device = waypoints.dtype, waypoints.device
    original = waypoints.detach().to("cpu", torch.float64).numpy()
    q = _deduplicated(original)
    per_segment = _merged_segments(segments, original)
    notes = []
    if q.shape[0] == 1:
        motion, method, checked = None, TIME_OPTIMAL, None
    else:
        path = _Spline(q, request.lower, request.upper)
        checked, why = _curve_ok(path, request, validator, per_segment, deadline)
        if not checked:
            notes.append(f"the spline through the waypoints {why}: the motion stops at every waypoint")
            motion, method = _Stops(q, request), WAYPOINT_STOPS
        elif request.jerk is not None:
            try:
                motion, method = _jerk_limited(path, request), JERK_LIMITED
                if path.monotone.any():  # C¹ joints: their acceleration steps at the waypoints may cost more
                    stops = _Stops(q, request)
                    if stops.duration < _stretched_duration(motion, request):
                        motion, method = stops, WAYPOINT_STOPS
                        notes.append("a joint held on a position limit made the jerk-limited spline slower "
                                     "than stopping at every waypoint")
            except Exception as error:  # noqa: BLE001 -- TOPP-RA failed: the exact, jerk-limited stops
                notes.append(f"TOPP-RA failed ({type(error).__name__}: {error}): the motion stops at every waypoint")
                warnings.warn(notes[-1], stacklevel=2)
                motion, method = _Stops(q, request), WAYPOINT_STOPS
        else:
            try:
                motion, method = _toppra(path, request), TIME_OPTIMAL
            except Exception as error:  # noqa: BLE001 -- any solver failure: the uniform fallback
                message = f"TOPP-RA failed ({type(error).__name__}: {error}): uniform time scaling used"
                warnings.warn(message, stacklevel=2)
                return _uniform(waypoints, request, message)
        checked = None if validator is None else checked
    trajectory, at_waypoints = _sampled(motion, q, request, method, checked, notes)
    index = np.cumsum(_kept(original)) - 1  # each waypoint's place among the deduplicated ones
    tensor = lambda x: torch.as_tensor(x, dtype=dtype, device=device)  # noqa: E731
    seconds = lambda x: torch.as_tensor(x, dtype=torch.float64, device=device)  # noqa: E731 -- float64 whatever the chain's dtype
    return TimedTrajectory(seconds(trajectory[0]), *(tensor(x) for x in trajectory[1:4]), *trajectory[4:],
                           waypoint_times=seconds(at_waypoints[0][index]),
                           waypoint_velocities=tensor(at_waypoints[1][index]),
                           waypoint_accelerations=tensor(at_waypoints[2][index]))


def _curve_ok(path: _Spline, request: TimingRequest, validator,
              segments: np.ndarray | None = None, deadline: float = math.inf) -> tuple[bool, str]:
    """Whether the spline keeps the position limits (within 2 µrad) and, with a validator, the
    polyline's collision requirements (see the module docstring); else why not. ``segments``
    (T − 1, C + 1) or None: see :func:`retime`."""
    bound = path.chord_deviation()  # (T − 1, J): one whole piece
    same_limits = path.within_limits and path.limits_are(request.lower, request.upper)
    if request.lower is not None and not same_limits:  # samples within 1e-6 of the limits, the curve within 1e-6 of its chords
        samples = path.samples(path._pieces_for(1e-6))
        if (samples < request.lower - 1e-6).any() or (samples > request.upper + 1e-6).any():
            return False, "leaves the position limits"
    if validator is None:
        return True, ""
    # the curve's spheres stay within spread_k of the polyline's along segment k (one piece each):
    # a world distance falls by at most that, a self distance by twice it
    deviation = torch.as_tensor(bound).to(validator.sphere_speed)
    spread = validator.sweep_bound(torch.zeros_like(deviation), deviation).cpu().double().numpy()  # (T − 1,) m
    certified = np.zeros(len(spread), dtype=bool)
    track = validator.column_track.cpu().numpy()
    if segments is not None and segments.shape[1] == len(track) + 1:
        # the segments whose own bounds cover their curve's deviation, column by column (each
        # distance column changes by at most the deviation times its own speed)
        shift = (deviation @ validator.column_speed).cpu().double().numpy()  # (T − 1, C) m
        need = np.where(track == 0, segments[:, -1:], validator.validity_margin)  # (T − 1, C)
        certified = (segments[:, :-1] - shift >= need).all(1)
        if certified.all():
            return True, ""
    pieces, slack = _curve_pieces(spread, request.curve_tolerance, certified)
    curve = _CurveValidator(validator, pieces, slack)
    like = validator.sphere_speed
    samples = torch.as_tensor(path.samples(pieces), dtype=like.dtype, device=like.device)
    verdict = curve.check(samples.unsqueeze(0), names=False, deadline=deadline)  # the verdict alone: no pair names
    if verdict.late:
        return False, "was not shown clear by the collision check within the time budget"
    if not bool(verdict.clear[0]):
        return False, "is not shown clear by the collision check"
    return True, ""


def _merged_segments(segments: Tensor | None, original: np.ndarray) -> np.ndarray | None:
    """A check's per-segment bounds (T − 1, C + 1) of the waypoints ``original`` (T, J) -> those of
    the deduplicated waypoints (a segment's bounds: the least of the original segments it spans,
    its requirement the largest), or None when they do not match the waypoints."""
    if segments is None:
        return None
    values = segments.detach().to("cpu", torch.float64).numpy()
    kept = np.flatnonzero(_kept(original))
    if values.ndim != 2 or values.shape[0] != original.shape[0] - 1 or values.shape[1] < 2 or len(kept) < 2:
        return None
    starts = kept[:-1]  # merged segment j spans the original segments starts[j] .. kept[j + 1] − 1
    return np.concatenate([np.minimum.reduceat(values[:, :-1], starts, axis=0),
                           np.maximum.reduceat(values[:, -1:], starts, axis=0)], 1)


def _curve_pieces(spread: np.ndarray, tolerance: float, certified: np.ndarray | None = None,
                  most: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Pieces per waypoint segment ((T − 1,) ints) so that, sampled with them, the curve stays within
    ``tolerance`` (m) of the chords between its samples, and per segment the slack (m) its
    requirements are raised by: twice the deviation left (a world distance changes by the
    deviation, a self distance by twice it). ``certified`` (T − 1,) bool: segments shown clear
    already (one piece and no requirement: the polyline's check covers them).

    ``spread`` (T − 1,) m: how far any sphere centre leaves a whole segment's chord
    (:meth:`MotionValidator.sweep_bound` of each joint's deviation from it); with n pieces it leaves
    them by at most spread_k / n² (a joint's deviation falls with the square of the piece's length). Each segment
    gets its own n_k = ⌈√(spread_k / tolerance)⌉ (at most ``most``) rather than all segments the
    largest one's: a plan's bends are few, and the check's cost is its number of samples."""
    pieces = np.clip(np.ceil(np.sqrt(spread / tolerance)), 1, most).astype(np.int64)
    slack = 2 * spread / pieces**2
    if certified is not None:
        pieces, slack = np.where(certified, 1, pieces), np.where(certified, -np.inf, slack)
    return pieces, slack


class _CurveValidator(MotionValidator):
    """The planner's validator on a curve's samples (``pieces`` (T − 1,) ints per waypoint segment,
    as :meth:`_Spline.samples` takes them): the same check, each segment's requirements (world
    and self) raised by its ``slack`` (T − 1,) m; the approach rule on the original segments."""

    def __init__(self, base: MotionValidator, pieces, slack):  # noqa: super().__init__ not wanted
        self.__dict__.update(base.__dict__)
        self._base = base
        self._pieces = np.asarray(pieces, dtype=np.int64).reshape(-1)
        self._slack = np.array(np.broadcast_to(np.asarray(slack, dtype=np.float64), self._pieces.shape))
        most = float(self._slack.max(initial=0.0))
        self.clearance = base.clearance + most  # the distances' thresholds
        self.validity_margin = base.validity_margin + most

    def _per_sample(self, like: Tensor) -> tuple[Tensor, Tensor]:
        counts = torch.as_tensor(self._pieces, device=like.device)
        return counts, torch.as_tensor(self._slack, dtype=like.dtype, device=like.device).repeat_interleave(counts)

    def requirements(self, waypoint_world: Tensor) -> Tensor:
        counts, slack = self._per_sample(waypoint_world)
        waypoints = torch.cat((counts.new_zeros(1), torch.cumsum(counts, 0)))  # the original waypoints' samples
        coarse = self._base.requirements(waypoint_world[:, waypoints])
        return coarse.repeat_interleave(counts, 1) + slack

    def self_requirements(self, world_need: Tensor) -> Tensor:
        return self._base.validity_margin + self._per_sample(world_need)[1].expand_as(world_need)


def _toppra(path: _Spline, request: TimingRequest) -> _PathMotion:
    import toppra
    import toppra.algorithm
    import toppra.constraint

    geometric = _GeometricPath(path)
    grid = _gridpoints(path)
    constraints = [toppra.constraint.JointVelocityConstraint(request.velocity),
                   toppra.constraint.JointAccelerationConstraint(request.acceleration)]
    solver = toppra.algorithm.TOPPRA(constraints, geometric, gridpoints=grid, parametrizer="ParametrizeConstAccel")
    solver.compute_parameterization(0.0, 0.0)
    data = solver.problem_data
    if data.return_code != toppra.algorithm.ParameterizationReturnCode.Ok or data.sd_vec is None:
        raise RuntimeError(f"return code {data.return_code}")
    sd = np.maximum(np.asarray(data.sd_vec, dtype=np.float64), 0.0)
    if not (np.isfinite(sd).all() and (sd[1:-1] > 0).all()):
        raise RuntimeError("a zero or non-finite path velocity inside the path")
    profile = _ToppraProfile(np.asarray(data.gridpoints, dtype=np.float64), sd)
    return _PathMotion(path, profile, profile.duration)


def _GeometricPath(path: _Spline):
    """``path`` as a toppra geometric path."""
    from toppra.interpolator import AbstractGeometricPath

    class Path(AbstractGeometricPath):
        def __call__(self, s, order=0):
            return path(np.asarray(s, dtype=np.float64), order)

        @property
        def dof(self):
            return path.waypoints.shape[1]

        @property
        def path_interval(self):
            return np.array([0.0, path.length])

        @property
        def waypoints(self):
            return path.knots, path.waypoints

    return Path()


def _gridpoints(path: _Spline, per_piece: int = 8) -> np.ndarray:
    """The knots and ``per_piece`` equal steps between them (TOPP-RA enforces the limits at its
    grid points; finer grids change the duration by well under 1 %)."""
    fractions = np.arange(per_piece) / per_piece
    grid = (path.knots[:-1, None] + fractions[None] * np.diff(path.knots)[:, None]).reshape(-1)
    return np.concatenate((grid, path.knots[-1:]))


def _jerk_limited(path: _Spline, request: TimingRequest) -> _PathMotion:
    """TOPP-RA's profile with its path acceleration averaged over a window τ (a moving average of
    s(t): s̈ becomes continuous, s⃛ ≤ the largest jump of s̈ / τ, 0 to L in T + τ); of a few τ around
    max(a / j) the one whose motion, stretched until every controller-rate sample is within the
    velocity, acceleration and jerk limits, is shortest. A single joint's trapezoid gives exactly
    the 7-phase jerk-limited profile (d/v + v/a + a/j) with τ = a/j."""
    profile = _toppra(path, dataclasses.replace(request, jerk=None)).profile
    base = float(np.max(request.acceleration / request.jerk))
    best, best_duration = None, math.inf
    for factor in (0.5, 1.0, 1.5, 2.0, 3.0):
        smoothed = _Smoothed(profile, factor * base)
        motion = _PathMotion(path, smoothed, smoothed.duration)
        duration = _stretched_duration(motion, request)
        if duration < best_duration:
            best, best_duration = motion, duration
    return best


class _Smoothed:
    """s_f(t) = (1/τ) ∫ s(u) du over [t − τ, t], s held at 0 before the start and at L after the end."""

    def __init__(self, profile: "_ToppraProfile", tau: float):
        self.profile, self.tau = profile, tau
        self.duration = profile.duration + tau

    def __call__(self, t):
        t = np.clip(t, 0.0, self.duration)
        p, tau = self.profile, self.tau
        (S1, s1, v1, a1), (S0, s0, v0, a0) = p.state(t), p.state(t - tau)
        return (S1 - S0) / tau, (s1 - s0) / tau, (v1 - v0) / tau


def _stretched_duration(motion: _Motion, request: TimingRequest) -> float:
    return motion.duration * max(1.0, _worst(_peaks(motion, request, 1.0)))


def _peaks(motion: _Motion, request: TimingRequest, stretch: float, times: np.ndarray | None = None) -> dict:
    """The largest |v|, |a|, |j| / limit of the motion stretched by ``stretch``, sampled at the
    controller's rate (or at ``times``, in the stretched motion's time); jerk: finite differences."""
    if times is None:
        count = max(2, int(math.ceil(motion.duration * stretch / request.control_period)) + 1)
        times = np.linspace(0.0, motion.duration * stretch, count)
    _, v, a = motion.evaluate(times / stretch)
    v, a = v / stretch, a / stretch**2
    jerk = np.abs(np.diff(a, axis=0)) / np.maximum(np.diff(times), 1e-12)[:, None]
    return dict(velocity=float((np.abs(v) / request.velocity).max()),
                acceleration=float((np.abs(a) / request.acceleration).max()),
                jerk=float((jerk / request.jerk).max()) if request.jerk is not None and len(times) > 1 else 0.0)


def _worst(*peaks: dict) -> float:
    """The time stretch that brings every peak within its limit."""
    return max(max(p["velocity"], math.sqrt(p["acceleration"]), p["jerk"] ** (1 / 3)) for p in peaks)


def _output_times(duration: float, period: float) -> np.ndarray:
    count = max(2, int(math.ceil(duration / period - 1e-9)) + 1)
    times = np.minimum(np.arange(count) * period, duration)
    times[-1] = duration
    return times


def _knot_times(motion: _Motion) -> np.ndarray:
    """(T,) when ``motion`` (unstretched) passes each of its (deduplicated) waypoints, s."""
    if isinstance(motion, _Stops):
        return motion.begins.copy()
    knots = motion.path.knots
    if isinstance(motion.profile, _ToppraProfile):  # piecewise quadratic: inverted exactly
        times = motion.profile.time_at(knots)
        times[0], times[-1] = 0.0, motion.duration
        return times
    # a path timed by a nondecreasing s(t), strictly increasing inside: bisection for s(t) = knot
    low, high = np.zeros_like(knots), np.full_like(knots, motion.duration)
    for _ in range(64):
        middle = 0.5 * (low + high)
        below = motion.profile(middle)[0] < knots
        low, high = np.where(below, middle, low), np.where(below, high, middle)
    high[0], high[-1] = 0.0, motion.duration
    return high


def _sampled(motion: _Motion | None, q: np.ndarray, request: TimingRequest, method: str, checked,
             notes: list) -> tuple[tuple, tuple]:
    """(the TimedTrajectory's fields up to ``note``, (times, velocities, accelerations) at the
    deduplicated waypoints ``q``)."""
    J = q.shape[1]
    if motion is None or motion.duration <= 0:
        zeros = np.zeros((1, J))
        rest = (np.zeros(q.shape[0]), np.zeros_like(q), np.zeros_like(q))
        return (np.zeros(1), q[:1], zeros, zeros, 0.0, method, 0.0,
                dict(velocity=0.0, acceleration=0.0, jerk=0.0), checked, "; ".join(notes)), rest
    # stretch until every sample, at the controller's rate and the returned ones, is within the
    # limits (TOPP-RA enforces them at its grid points only)
    stretch = 1.0
    for attempt in range(40):  # a step of the acceleration (a C¹ joint) scales by 1/c², not 1/c³: a few rounds
        fastest = motion.duration * stretch
        duration = max(fastest, request.duration)
        factor = duration / motion.duration
        times = _output_times(duration, request.sample_period)
        peak, returned = _peaks(motion, request, factor), _peaks(motion, request, factor, times)
        worst = _worst(peak, returned)
        if worst <= 1.0:
            break
        if attempt >= 20:  # every ratio falls at least as 1/c: this one ends it
            worst = max(max(peak.values()), max(returned.values()))
        stretch = factor * worst * (1 + 1e-6)
    if request.duration > 0 and request.duration < fastest * (1 - 1e-9):
        notes.append(f"a duration of {request.duration:.4g} s is shorter than the limits allow: the motion "
                     f"takes {fastest:.4g} s, as fast as the limits allow")
    positions, velocities, accelerations = motion.evaluate(times / factor)
    velocities, accelerations = velocities / factor, accelerations / factor**2
    if request.lower is not None:
        positions = np.clip(positions, request.lower, request.upper)
    positions[0], positions[-1] = q[0], q[-1]  # exactly the planned start and goal
    velocities[[0, -1]] = 0.0
    accelerations[[0, -1]] = 0.0
    knot_times = _knot_times(motion)
    _, knot_v, knot_a = motion.evaluate(knot_times)
    knot_v, knot_a = knot_v / factor, knot_a / factor**2
    knot_v[[0, -1]] = 0.0
    knot_a[[0, -1]] = 0.0
    knot_times = np.minimum(knot_times * factor, duration)
    knot_times[-1] = duration
    return ((times, positions, velocities, accelerations, duration, method, fastest, peak, checked, "; ".join(notes)),
            (knot_times, knot_v, knot_a))


def _uniform(waypoints: Tensor, request: TimingRequest, note: str) -> TimedTrajectory:
    """The waypoints uniformly time-scaled (:func:`.timing.time_parameterize`), the fallback."""
    like = dict(dtype=waypoints.dtype, device=waypoints.device)
    velocity, acceleration = torch.as_tensor(request.velocity, **like), torch.as_tensor(request.acceleration, **like)
    dt, v, a = time_parameterize(waypoints.unsqueeze(0), velocity, acceleration)
    fastest = float(dt[0]) * (waypoints.shape[0] - 1)
    stretch = max(1.0, request.duration / fastest) if fastest > 0 else 1.0
    times = torch.arange(waypoints.shape[0], dtype=torch.float64, device=waypoints.device) * float(dt[0]) * stretch
    peak = dict(velocity=float((v[0].abs() / velocity).max()) / stretch,
                acceleration=float((a[0].abs() / acceleration).max()) / stretch**2, jerk=0.0)
    v, a = v[0] / stretch, a[0] / stretch**2
    return TimedTrajectory(times, waypoints.clone(), v, a, fastest * stretch, UNIFORM, fastest, peak, None, note,
                           waypoint_times=times.clone(), waypoint_velocities=v.clone(), waypoint_accelerations=a.clone())


def warm_up() -> float:
    """Import what timing needs (scipy.interpolate, toppra, which imports matplotlib, and ruckig:
    ~0.6 s together) and time a tiny path each way once, so that the first plan of a process does
    not pay for it (the node calls this at start-up). Returns the seconds it took."""
    began = time.perf_counter()
    import ruckig  # noqa: F401
    import scipy.interpolate  # noqa: F401
    import toppra  # noqa: F401
    import toppra.algorithm  # noqa: F401
    import toppra.constraint  # noqa: F401
    import toppra.interpolator  # noqa: F401

    path = torch.tensor([[0.0, 0.0], [0.5, 0.2], [1.0, 0.0]], dtype=torch.float64)
    request = TimingRequest(velocity=np.ones(2), acceleration=np.full(2, 5.0), lower=np.full(2, -2.0),
                            upper=np.full(2, 2.0))
    retime(path, request)
    retime(path, dataclasses.replace(request, jerk=np.full(2, 50.0)))
    _Stops(path.numpy(), dataclasses.replace(request, jerk=np.full(2, 50.0)))  # ruckig's rest-to-rest moves
    return time.perf_counter() - began


def timed_trajectories(positions: Tensor, limits, options, validator=None, check=None,
                       segments=None, deadline: float = math.inf) -> tuple[TimedTrajectory, ...]:
    """The planner's timing step: each of the P waypoint paths ``positions`` (P, T, J) timed by
    :func:`retime` within ``limits`` (a :class:`~ros_torch_kin.optim.TrajectoryLimits`, times
    ``options``' velocity, acceleration and jerk scaling factors) as ``options``
    (a :class:`~ros_torch_kin.optim.TrajectoryOptions`: time_parameterization, duration,
    control_period, sample_period, curve_tolerance) say; the curves of the problems where
    ``check`` (P,) bool is true (all, if None) are checked with ``validator``; ``segments``: per
    problem its check's per-segment bounds (T − 1, C + 1) or None (see :func:`retime`); ``deadline``
    (``time.perf_counter()`` s, the planner's time budget): see :func:`retime`. Returns P
    :class:`TimedTrajectory`."""
    jerk = None
    if limits.jerk is not None:
        jerk = limits.jerk.detach().to("cpu", torch.float64).numpy() * options.jerk_scaling
    numpy = lambda t: t.detach().to("cpu", torch.float64).numpy()  # noqa: E731
    request = TimingRequest(
        velocity=numpy(limits.velocity) * options.velocity_scaling,
        acceleration=numpy(limits.acceleration) * options.acceleration_scaling,
        jerk=jerk, lower=numpy(limits.lower), upper=numpy(limits.upper), duration=options.duration,
        control_period=options.control_period, sample_period=options.sample_period,
        curve_tolerance=options.curve_tolerance,
    )
    result = []
    for p in range(positions.shape[0]):
        if options.time_parameterization == "uniform":
            result.append(_uniform(positions[p], request, ""))
            continue
        checking = validator if validator is not None and (check is None or bool(check[p])) else None
        result.append(retime(positions[p], request, checking, None if segments is None else segments[p], deadline))
    return tuple(result)
