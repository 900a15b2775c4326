"""Batched trajectory optimization on the chain's analytical FK backward.

For P problems at once (start configuration, target pose / position / configuration of one
link), each with S seeds:

1. seed: batched damped-least-squares IK from the start and from many random configurations
   reaches the target; the S best solutions (within tolerance, nearest the start) each give a
   minimum-jerk interpolation from the start (T waypoints);
2. optimise all P·S trajectories together with batched L-BFGS on
   goal error + acceleration² + jerk² + tool path² (+ your terms); each iteration evaluates
   every step size of the line search, with its gradient, in one batch: forward kinematics of
   every waypoint of every candidate once, differentiated by the analytical backward;
   positions are projected into the limits;
3. polish the last waypoint with a few IK steps, keep per problem the lowest-cost seed that
   reaches the target within tolerance (else the closest), and time-parameterise it for the
   velocity and acceleration limits.

With a ``collision`` model (collision-aware motion generation; the verdict: a
:class:`~ros_torch_kin.collision.TreeCollisionChecker`, or a ``CollisionChecker``):

- goals (:mod:`.goals`): the start and a configuration goal must be valid (distance ≥
  ``options.validity_margin``), else the problem is refused before optimising, naming the pair
  ("start in collision: a – b, -2.1 mm"); a pose goal becomes valid IK goals ("goal in collision"
  / "goal unreachable" when there is none);
- seeds (:mod:`.seeds`): the ``collision_seeds`` least colliding of the straight and via-point
  motions to every goal (one scoring batch);
- global search (:mod:`.global_search`): when no seed passes the check, an RRT-Connect path on
  the verdict model replaces the worst seed and is checked at once;
- optimisation: the seeds are optimised together as above with the collision cost of
  :mod:`.collision_costs` on ``collision_cost`` (waypoints and segment midpoints, margin
  clearance + cost_margin);
- checking (:mod:`.checking`): after seeding and after every iteration the best seeds of each
  unsolved problem are polished and their whole motion is checked (every waypoint and every
  segment, ``required_clearance`` from the world outside the approach to a closer start or goal,
  validity everywhere); the iterations stop once every problem has one, or at the time budget;
- success: goal within tolerance, every waypoint within the limits, the whole motion checked,
  and the time parameterisation (:mod:`.timing`) within the velocity and acceleration limits
  (the motion to execute: :mod:`.time_optimal`, its curve checked again);
  otherwise ``failure`` says why ("no collision-free path found within budget" when the goal was
  fine but no seed passed the check).
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

from ..collision import CollisionChecker
from ..kinematics import Chain, compute_jacobian, forward_kinematics
from ..kinematics.fk import link_index
from ..optim.costs import CostTerm, TrajectoryState, acceleration_cost, goal_costs, goal_pose_errors, jerk_cost, path_cost
from ..optim.ik import damped_least_squares_ik
from ..optim.lbfgs import BatchedLBFGS
from ..optim.options import TrajectoryLimits, TrajectoryOptions
from .checking import EXACT_WINDOW, MotionValidator, _pair_names
from .collision_costs import ClearanceModel, trajectory_collision_cost
from .global_search import GlobalSearchOptions, search_path
from .goals import GOAL_IN_COLLISION, GOAL_NOT_REACHED, NO_PATH, START_IN_COLLISION, collision_free_goals
from .seeds import candidate_motions, rank_candidates
from .time_optimal import timed_trajectories


@dataclass(frozen=True)
class TrajectoryResult:
    """Best trajectory per problem. P problems, T waypoints, J joints; rad / m and s.

    The motion to execute is ``trajectories``: per problem a
    :class:`~ros_torch_kin.motion.time_optimal.TimedTrajectory` sampled every
    ``options.sample_period`` s (by default time-optimal on the spline through the waypoints, that
    curve checked again by the same collision check on success; see :mod:`.time_optimal`).
    Everything here that describes timing describes that motion:

    positions (P, T, J): the planned waypoints (the path the motion passes through, the one
    checked); times() (P, T) s: when the motion passes each of them; velocities, accelerations
    (P, T, J) per s and per s²: the motion's there (at rest at both ends); duration (P,) s: how long
    it takes. success (P,):
    the target is reached within tolerance (every waypoint is within the position limits
    always); position_error (P,) m, orientation_error (P,) rad (0 for position-only and
    configuration goals; for configuration goals position_error is the joint-space distance);
    cost (P,) of the returned trajectory; iterations and solve_time (s) for the whole batch;
    stopped: why the iterations ended ("converged", "max_iterations", "time_budget", "canceled",
    and with collision checking "solved": every problem has a checked collision-free motion, or
    "refused": no problem could be optimised).

    failure: per problem '' on success, else why: "start in collision", "goal in collision",
    "goal unreachable", "no collision-free path found within budget", "goal not reached within
    tolerance". With collision checking (else None / empty): min_clearance (P,) m, the smallest
    sphere distance (world or self) over the checked configurations of the returned motion;
    clearance_bound (P,) m, a lower bound of the sphere distances along the whole motion (≥ the
    clearance on success; the exact geometry's distance is at least this, as the spheres cover
    it); closest_pair: per problem the pair at min_clearance, (link, obstacle id) or (link, link);
    collision_free (P,) bool: the returned motion passed the check. timings: seconds spent in
    'goals' (collision-free IK), 'seeding', 'iterations' (the optimisation, checks excluded),
    'checking' (whole-motion checks), 'time_parameterization', 'total'.

    time_step is deprecated: the waypoints are no longer evenly spaced in time (it was the step of
    the earlier uniform time scaling, which ``options.time_parameterization="uniform"`` still gives).
    """

    positions: Tensor
    velocities: Tensor
    accelerations: Tensor
    success: Tensor
    position_error: Tensor
    orientation_error: Tensor
    cost: Tensor
    iterations: int
    solve_time: float
    stopped: str
    failure: tuple[str, ...] = ()
    min_clearance: Tensor | None = None
    clearance_bound: Tensor | None = None
    closest_pair: tuple[tuple[str, str], ...] = ()
    collision_free: Tensor | None = None
    timings: dict = field(default_factory=dict)
    trajectories: tuple = ()

    @property
    def duration(self) -> Tensor:
        """(P,) float64 s: how long each problem's motion (``trajectories[p].duration``) takes."""
        return torch.tensor([t.duration for t in self.trajectories], dtype=torch.float64,
                            device=self.positions.device)

    def times(self) -> Tensor:
        """(P, T) float64 s: when each problem's motion passes each waypoint, from 0 to ``duration``
        (``trajectories[p].waypoint_times``)."""
        return torch.stack([t.waypoint_times for t in self.trajectories])

    @property
    def time_step(self) -> Tensor:
        """Deprecated (the motion is not uniform in time): (P,) duration / (T − 1) s, the mean time
        between waypoints (the step itself with ``time_parameterization="uniform"``). Use times()."""
        warnings.warn("TrajectoryResult.time_step is deprecated: the waypoints are not evenly spaced in time; "
                      "use times() (or trajectories[p].times for the samples)", DeprecationWarning, stacklevel=2)
        return (self.duration / max(1, self.positions.shape[1] - 1)).to(self.positions.dtype)


@dataclass(frozen=True)
class IterationReport:
    """Passed to ``on_iteration`` after every iteration: the best seed of each problem so far."""

    iteration: int
    best_cost: Tensor  # (P,)
    position_error: Tensor  # (P,) m
    orientation_error: Tensor  # (P,) rad
    elapsed: float  # s


def solve_trajectory(
    chain: Chain,
    start: Tensor,
    link: str | int | None = None,
    target_pose: Tensor | None = None,
    target_configuration: Tensor | None = None,
    position_only: bool = False,
    options: TrajectoryOptions | None = None,
    limits: TrajectoryLimits | None = None,
    extra_terms: Sequence[tuple[float, CostTerm]] = (),
    on_iteration: Callable[[IterationReport], bool] | None = None,
    collision: CollisionChecker | None = None,
    collision_cost: CollisionChecker | None = None,
) -> TrajectoryResult:
    """Plan P trajectories from ``start`` to a target.

    start: (P, J) or (J,) configurations inside the limits. Goal: ``target_pose`` (P, 4, 4) or
    (4, 4) of ``link`` in the root frame (with ``position_only`` its rotation is ignored), or
    ``target_configuration`` (P, J) or (J,). ``extra_terms``: (weight, term) pairs added to the
    cost (see :mod:`.costs`). ``on_iteration(report)`` is called after each iteration; returning
    False stops the solve ("canceled"). Raises ValueError for an inconsistent problem.

    collision: a :class:`~ros_torch_kin.collision.CollisionChecker` (robot spheres, world scene,
    self pairs; its own margin is not used, ``options.clearance`` is) makes the motion
    collision-aware (see the module docstring); collision_cost: optionally a checker of the same
    robot and scene with fewer spheres, used for the optimisation's cost, the seed scoring, the
    IK's steering and the global search's escapes (cheaper; the verdict is always
    ``collision``'s); required when ``collision`` is a
    :class:`~ros_torch_kin.collision.TreeCollisionChecker`, which has no cost gradient
    (ValueError otherwise).
    """
    options = options or TrajectoryOptions()
    limits = limits or TrajectoryLimits.from_chain(chain)
    started = time.perf_counter()
    deadline = started + options.time_budget  # perf_counter() s: the call returns by it (+ one check block)
    problem = _Problem.make(chain, start, link, target_pose, target_configuration, position_only, limits,
                            options.limit_tolerance)
    P, S, T, J = problem.start.shape[0], options.seeds, options.waypoints, chain.num_dofs
    weights = options.weights
    motion = cost_checker = None
    timings = {"goals": 0.0, "seeding": 0.0, "global_search": 0.0, "iterations": 0.0, "checking": 0.0}
    if collision is not None:
        cost_checker = collision if collision_cost is None else collision_cost
        if not hasattr(cost_checker, "penalty_cost"):
            raise ValueError(f"collision_cost: {type(cost_checker).__name__} gives a verdict and distances but no "
                             "cost gradient; give a CollisionChecker of the same robot and scene as collision_cost "
                             "(e.g. robot_collision_model_from_urdf(...).cost.with_scene(scene))")
        motion = MotionValidator(collision, max(options.required_clearance, options.validity_margin),
                                 options.validity_margin, options.check_resolution, options.approach)
        cost_margin = options.clearance + options.cost_margin
        S = options.collision_seeds

    def rows(t: Tensor | None, repeat: int) -> Tensor | None:
        return None if t is None else t.repeat_interleave(repeat, dim=0)

    def evaluate(x: Tensor, repeat: int, with_collision: bool = True) -> tuple[Tensor, TrajectoryState, Tensor]:
        """Cost (M,) of M = P·repeat trajectories whose free waypoints are x (M, T − 1, J), the
        state, and the weighted collision part of the cost (M,) (zeros without collision or
        when not ``with_collision``). With a joint-space goal the last waypoint is the goal
        itself (x's last row gets no gradient and stays where the seeds put it, on the goal), so
        a goal closer to an object than the clearance is not pushed off by the collision cost."""
        if problem.target_configuration is not None:
            x = torch.cat((x[:, :-1], rows(problem.target_configuration, repeat).unsqueeze(1).to(x)), dim=1)
        positions = torch.cat((rows(problem.start, repeat).unsqueeze(1), x), dim=1)
        poses = None
        if problem.link is not None:
            flat = forward_kinematics(chain, positions.reshape(-1, J), links=problem.link,
                                      analytical_grad=options.analytical_grad)
            poses = flat.reshape(positions.shape[0], T, 4, 4)
        state = TrajectoryState(positions, poses, rows(problem.target_pose, repeat),
                                rows(problem.target_configuration, repeat), problem.position_only)
        cost = goal_costs(state, weights.goal_position, weights.goal_orientation, weights.goal_configuration)
        cost = cost + weights.acceleration * acceleration_cost(state) + weights.jerk * jerk_cost(state)
        if weights.path:
            cost = cost + weights.path * path_cost(state)
        for weight, term in extra_terms:
            cost = cost + weight * term(state)
        collision_part = torch.zeros_like(cost)
        if cost_checker is not None and weights.collision and with_collision:
            collision_part = weights.collision * trajectory_collision_cost(cost_checker, positions, cost_margin)
            cost = cost + collision_part
        return cost, state, collision_part

    def value_and_gradient(x: Tensor, repeat: int) -> tuple[Tensor, Tensor, Tensor]:
        """Cost (M,), its gradient (M, T − 1, J) and the collision part (M,) for M = P·repeat rows."""
        x = x.detach().requires_grad_()
        with torch.enable_grad():
            cost, _, collision_part = evaluate(x, repeat)
            (gradient,) = torch.autograd.grad(cost.sum(), x)
        return cost.detach(), gradient, collision_part.detach()

    failure = [""] * P
    if motion is None:
        x = _seed_trajectories(chain, problem, options, limits)[:, 1:]  # (P·S, T − 1, J)
    else:
        goals, valid = _collision_goals(chain, problem, options, limits, collision, cost_checker, failure, timings)
        motion = _grazing_ends(motion, collision, problem.start, goals, valid, options.validity_margin)
        x = _ranked_seeds(problem, options, limits, cost_checker, goals, valid, timings, draw=0)[:, 1:]
        checks = _MotionChecks(chain, problem, options, limits, motion, S, deadline)
        moment = time.perf_counter()
        checks.check_best(x, torch.zeros(P * S, dtype=x.dtype, device=x.device), failure)
        timings["checking"] += time.perf_counter() - moment
        if options.global_search > 0 and not checks.all_done(failure):
            x = _global_seeds(chain, problem, options, limits, collision, goals, valid, x, checks, failure,
                              started, S, timings, cost_checker)
    moment = time.perf_counter()
    stopped, iteration, quiet = "max_iterations", 0, 0
    # the last iteration's whole time (line search, checks, restarts): one that could not end by
    # the deadline is not begun (the line search alone left the checks after it to overrun)
    iteration_time = 0.0
    if motion is not None and checks.all_done(failure):  # solved by a seed, or nothing to optimise
        stopped = "solved" if any(not f for f in failure) else "refused"
    elif motion is not None and time.perf_counter() > deadline:
        stopped = "time_budget"  # the seeds' checks and the global search took the budget
    else:
        evaluated = time.perf_counter()
        cost, gradient, collision_part = value_and_gradient(x, S)
        lbfgs = BatchedLBFGS(P * S, (T - 1) * J, options.history, initial_step=0.05, like=x)
        steps = torch.tensor(options.line_search_steps, dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
        A = steps.shape[0]
        # before the first iteration, its line search (A step sizes of every seed in one batch) is
        # predicted from this evaluation: begun late, after a long global search, it overran
        iteration_time = A * (time.perf_counter() - evaluated)
        every_row = torch.arange(P * S, device=x.device)
        best = cost.view(P, S).amin(1)
    max_iterations = options.max_iterations if motion is None else options.collision_iterations
    for iteration in range(1, max_iterations + 1) if stopped == "max_iterations" else ():
        if motion is not None and time.perf_counter() + iteration_time > deadline:
            stopped = "time_budget"
            break
        line_search = time.perf_counter()
        direction = lbfgs.direction(gradient.view(P * S, -1)).view_as(x)
        candidates = limits.clamp(x.unsqueeze(0) + steps * direction.unsqueeze(0))  # (A, P·S, T − 1, J)
        # every step size with its gradient in one batch (problem-major rows: P, A, S)
        grouped = candidates.view(A, P, S, T - 1, J).transpose(0, 1).reshape(-1, T - 1, J)
        tried, tried_gradient, tried_collision = value_and_gradient(grouped, A * S)
        tried = tried.view(P, A, S).transpose(0, 1).reshape(A, P * S)
        tried_collision = tried_collision.view(P, A, S).transpose(0, 1).reshape(A, P * S)
        tried_gradient = tried_gradient.view(P, A, S, T - 1, J).transpose(0, 1).reshape(A, P * S, T - 1, J)
        lowest, choice = tried.min(0)
        improved = lowest < cost
        x_new = torch.where(improved.view(-1, 1, 1), candidates[choice, every_row], x)
        cost_new = torch.where(improved, lowest, cost)
        collision_part = torch.where(improved, tried_collision[choice, every_row], collision_part)
        gradient_new = torch.where(improved.view(-1, 1, 1), tried_gradient[choice, every_row], gradient)
        lbfgs.update((x_new - x).view(P * S, -1), (gradient_new - gradient).view(P * S, -1), improved)
        lbfgs.reset(~improved)
        x, cost, gradient = x_new, cost_new, gradient_new

        previous, best = best, cost.view(P, S).amin(1)
        if on_iteration is not None and not on_iteration(_report(chain, problem, x, cost, S, iteration, started)):
            stopped = "canceled"
            break
        if motion is not None and time.perf_counter() > deadline:
            stopped = "time_budget"
            break
        if motion is not None:
            moment_check = time.perf_counter()
            checks.check_best(x, collision_part, failure)
            timings["checking"] += time.perf_counter() - moment_check
            moment += time.perf_counter() - moment_check  # the iterations' time excludes checking
            if checks.all_done(failure):
                stopped = "solved"
                break
            if iteration % options.restart_every == 0 and iteration < max_iterations:  # new, wider detours
                moment_seed = time.perf_counter()
                fresh = _ranked_seeds(problem, options, limits, cost_checker, goals, valid, timings,
                                      draw=iteration // options.restart_every)[:, 1:]
                moment += time.perf_counter() - moment_seed
                unsolved = torch.tensor([not d for d in checks.done], device=x.device).repeat_interleave(S)
                x = torch.where(unsolved.view(-1, 1, 1), fresh, x)
                cost, gradient, collision_part = value_and_gradient(x, S)
                lbfgs.reset(unsolved)
                best = cost.view(P, S).amin(1)
                checks.check_best(x, collision_part, failure)
                if checks.all_done(failure):
                    stopped = "solved"
                    break
        iteration_time = time.perf_counter() - line_search
        if time.perf_counter() > deadline:
            stopped = "time_budget"
            break
        quiet = quiet + 1 if bool(((previous - best) <= options.relative_tolerance * previous.abs()).all()) else 0
        if quiet >= 2 and motion is None:
            stopped = "converged"
            break
    timings["iterations"] = time.perf_counter() - moment

    if motion is None:
        x = _polish_last_waypoint(chain, problem, options, limits, x)
    else:
        moment = time.perf_counter()
        x = checks.finish(x, deadline, failure)
        timings["checking"] += time.perf_counter() - moment
    with torch.no_grad():
        cost, state, _ = evaluate(x, S, with_collision=False)  # the motions' check replaces the collision cost
        position_error, orientation_error = _goal_errors(state, problem)
        reached = (position_error <= options.position_tolerance) & (orientation_error <= options.orientation_tolerance)
        success = reached & limits.contains(state.positions).all(-1)
        if motion is not None:
            success &= checks.clear
        # best per problem: the cheapest successful seed, else the one closest to the target
        score = torch.where(success, cost, math.inf + torch.zeros_like(cost))
        fallback = position_error + orientation_error
        if motion is not None:  # failed problems: the least colliding of those reaching the goal
            fallback = torch.where(reached, -checks.clearance_bound.clamp(max=1e3), 1e6 + fallback)
        pick = torch.where(success.view(P, S).any(1), score.view(P, S).argmin(1), fallback.view(P, S).argmin(1))
        index = torch.arange(P, device=x.device) * S + pick
        positions = state.positions[index]
        chosen_success = success[index]
    extra = {}
    if motion is not None:
        for p in range(P):
            if not failure[p] and not bool(chosen_success[p]):
                failure[p] = NO_PATH if bool(reached[index[p]]) or not bool(checks.clear[index[p]]) else GOAL_NOT_REACHED
        chosen_success &= torch.tensor([not f for f in failure], device=x.device)
        extra = dict(min_clearance=checks.min_distance[index], clearance_bound=checks.clearance_bound[index],
                     closest_pair=checks.closest_pairs(index), collision_free=checks.clear[index])
        segments = checks.segments[index]
    else:
        failure = ["" if bool(ok) else GOAL_NOT_REACHED for ok in chosen_success]
    moment = time.perf_counter()  # the motion to execute: its curve checked again where it succeeded
    trajectories = timed_trajectories(positions, limits, options, motion, chosen_success,
                                      segments if motion is not None else None, deadline)
    # success also needs the motion within the (scaled) limits, as verified at the controller's rate
    peaks = [max(t.peak["velocity"], t.peak["acceleration"], t.peak.get("jerk", 0.0)) for t in trajectories]
    for p, peak in enumerate(peaks):
        if bool(chosen_success[p]) and not peak <= 1 + 1e-5:
            chosen_success[p] = False
            failure[p] = f"timed motion exceeds its limits ({peak:.4g} × a limit)"
    timings["time_parameterization"] = time.perf_counter() - moment
    timings["total"] = time.perf_counter() - started
    return TrajectoryResult(
        positions=positions,
        velocities=torch.stack([t.waypoint_velocities for t in trajectories]),
        accelerations=torch.stack([t.waypoint_accelerations for t in trajectories]),
        success=chosen_success,
        position_error=position_error[index],
        orientation_error=orientation_error[index],
        cost=cost[index],
        iterations=iteration,
        solve_time=time.perf_counter() - started,
        stopped=stopped,
        failure=tuple(failure),
        timings=timings,
        trajectories=trajectories,
        **extra,
    )


@dataclass(frozen=True)
class _Problem:
    start: Tensor  # (P, J)
    link: int | None
    target_pose: Tensor | None  # (P, 4, 4)
    target_configuration: Tensor | None  # (P, J)
    position_only: bool
    #: the link whose straight retreats a search stuck at a start or goal tries (the target link;
    #: for a joint target without one, the chain's last link, the deepest: a tool's)
    retreat_link: int | None = None

    @classmethod
    def make(cls, chain, start, link, target_pose, target_configuration, position_only, limits,
             tolerance: float = 0.0) -> "_Problem":
        if (target_pose is None) == (target_configuration is None):
            raise ValueError("give exactly one of target_pose and target_configuration")
        start = _batch(chain, start, (chain.num_dofs,), "start")
        P = start.shape[0]
        start = _check_inside(chain, start, limits, "start", tolerance)
        if target_configuration is not None:
            target_configuration = _batch(chain, target_configuration, (chain.num_dofs,), "target_configuration")
            target_configuration = target_configuration.expand(P, -1) if target_configuration.shape[0] == 1 else target_configuration
            target_configuration = _check_inside(chain, target_configuration, limits, "target_configuration", tolerance)
            retreat = chain.num_links - 1 if link is None else link_index(chain, link)
            return cls(start, None, None, target_configuration, False, retreat)
        if link is None:
            raise ValueError("a target_pose needs the link it is for")
        target_pose = _batch(chain, target_pose, (4, 4), "target_pose")
        target_pose = target_pose.expand(P, -1, -1) if target_pose.shape[0] == 1 else target_pose
        if target_pose.shape[0] != P:
            raise ValueError(f"{target_pose.shape[0]} target poses for {P} start configurations")
        index = link_index(chain, link)
        return cls(start, index, target_pose, None, position_only, index)


def _batch(chain: Chain, value, shape: tuple[int, ...], name: str) -> Tensor:
    value = torch.as_tensor(value, dtype=chain.dtype, device=chain.device)
    if value.shape == shape:
        value = value.unsqueeze(0)
    if value.shape[1:] != shape or value.shape[0] == 0:
        raise ValueError(f"{name} must have shape (P, {', '.join(map(str, shape))}), got {tuple(value.shape)}")
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} is not finite")
    return value


def _check_inside(chain: Chain, q: Tensor, limits: TrajectoryLimits, name: str, tolerance: float = 0.0) -> Tensor:
    """q clamped onto the position limits where it is at most ``tolerance`` outside (URDF
    rounding: a warning names the joint); ValueError naming the joint where it is farther."""
    outside = limits.outside(q, tolerance=max(tolerance, 1e-9))
    if outside.any():
        p, j = (int(i) for i in outside.nonzero()[0])
        raise ValueError(
            f"{name} of problem {p}: joint '{chain.joint_names[j]}' = {q[p, j].item():.6g} is outside its "
            f"limits [{limits.lower[j].item():.6g}, {limits.upper[j].item():.6g}]"
        )
    slightly = limits.outside(q)
    if slightly.any():
        p, j = (int(i) for i in slightly.nonzero()[0])
        warnings.warn(f"{name} of problem {p}: joint '{chain.joint_names[j]}' = {q[p, j].item():.9g} is "
                      f"{_excess(q[p, j], limits, j):.2g} outside its limits: clamped onto them", stacklevel=3)
        q = limits.clamp(q)
    return q


def _excess(value: Tensor, limits: TrajectoryLimits, j: int) -> float:
    return float(torch.maximum(limits.lower[j] - value, value - limits.upper[j]))


def _seed_trajectories(chain: Chain, problem: _Problem, options: TrajectoryOptions, limits: TrajectoryLimits) -> Tensor:
    """(P·S, T, J) minimum-jerk interpolations from the start to each seed's end configuration.

    Pose targets: IK from ``ik_candidates`` starts per problem (the start itself, a third near
    it, the rest anywhere in the limits); the S best become seeds: those within tolerance first,
    nearest the start first (shorter motions), then the rest by their error.
    """
    P, S, J = problem.start.shape[0], options.seeds, chain.num_dofs
    C = max(S, options.ik_candidates) if problem.target_pose is not None else S
    generator = torch.Generator().manual_seed(options.random_seed)  # the same draws for every problem
    u = torch.rand(C, J, generator=generator, dtype=torch.float64).to(chain.device, chain.dtype)
    lower, upper = limits.lower.clamp(min=-math.pi), limits.upper.clamp(max=math.pi)
    start = problem.start.repeat_interleave(S, dim=0)  # (P·S, J)
    if problem.target_configuration is not None:
        end = problem.target_configuration.repeat_interleave(S, dim=0)
    else:
        near = limits.clamp(problem.start.unsqueeze(1) + 0.5 * (u - 0.5) * (upper - lower))
        anywhere = (lower + u * (upper - lower)).expand(P, C, J)
        initial = torch.where(torch.arange(C, device=chain.device).view(1, C, 1) < max(1, C // 3), near, anywhere)
        initial[:, 0] = problem.start
        solutions, error = damped_least_squares_ik(
            chain, problem.link, problem.target_pose.repeat_interleave(C, dim=0), initial.reshape(P * C, J),
            limits.lower, limits.upper, options.ik_iterations, options.ik_damping, problem.position_only,
        )
        position, rotation = error[:, :3].norm(dim=-1), error[:, 3:].norm(dim=-1)
        miss = position / options.position_tolerance
        if not problem.position_only:
            miss = torch.maximum(miss, rotation / options.orientation_tolerance)
        solutions = solutions.view(P, C, J)
        distance = (solutions - problem.start.unsqueeze(1)).norm(dim=-1)  # (P, C)
        score = torch.where(miss.view(P, C) <= 1, distance, 1e6 + miss.view(P, C))
        best = score.argsort(dim=1)[:, :S]  # (P, S)
        end = torch.gather(solutions, 1, best.unsqueeze(-1).expand(P, S, J)).reshape(P * S, J)
    tau = torch.linspace(0, 1, options.waypoints, dtype=chain.dtype, device=chain.device)
    profile = (10 * tau**3 - 15 * tau**4 + 6 * tau**5).view(1, -1, 1)  # zero velocity and acceleration at both ends
    trajectory = start.unsqueeze(1) + profile * (end - start).unsqueeze(1)
    if problem.target_configuration is not None and S > 1:  # different routes to the same end
        bump = torch.sin(math.pi * tau).view(1, -1, 1) * 0.3 * (u[:S] - 0.5).unsqueeze(1) * (upper - lower).clamp(max=2.0)
        bump[0] = 0
        trajectory = limits.clamp(trajectory + bump.repeat(P, 1, 1))
    return trajectory


def _polish_last_waypoint(chain, problem, options, limits, x: Tensor) -> Tensor:
    S = x.shape[0] // problem.start.shape[0]
    owner = torch.arange(problem.start.shape[0], device=x.device).repeat_interleave(S)
    return _polish_rows(chain, problem, options, limits, x, owner)


def _polish_rows(chain, problem, options, limits, x: Tensor, owner: Tensor) -> Tensor:
    """A few DLS IK steps on the last waypoint of rows x (n, T − 1, J) of problems ``owner`` (n,)."""
    if problem.target_pose is None or options.polish_iterations == 0 or x.shape[0] == 0:
        return x
    last, _ = damped_least_squares_ik(
        chain, problem.link, problem.target_pose[owner], x[:, -1], limits.lower, limits.upper,
        options.polish_iterations, options.ik_damping, problem.position_only,
    )
    return torch.cat((x[:, :-1], last.unsqueeze(1)), dim=1)


def _row_goal_errors(chain, problem, last: Tensor, owner: Tensor) -> tuple[Tensor, Tensor]:
    """Goal errors (n,) m and (n,) rad of last waypoints (n, J) of problems ``owner`` (n,)."""
    with torch.no_grad():
        poses = None if problem.link is None else forward_kinematics(chain, last, links=problem.link).unsqueeze(1)
        state = TrajectoryState(last.unsqueeze(1), poses,
                                None if problem.target_pose is None else problem.target_pose[owner],
                                None if problem.target_configuration is None else problem.target_configuration[owner],
                                problem.position_only)
        return _goal_errors(state, problem)


def _collision_goals(chain, problem, options, limits, collision, cost_checker, failure: list[str],
                     timings: dict) -> tuple[Tensor, Tensor]:
    """Goals (P, K, J) and valid (P, K) of collision-aware problems (see :mod:`.goals`);
    refused problems get their reason in ``failure``. A start or configuration goal is refused
    only when it is in contact (closer than ``options.validity_margin``): the message names the
    closest pair and its distance; one closer than the clearance is planned from or to."""
    moment = time.perf_counter()
    P, v = problem.start.shape[0], options.validity_margin
    with torch.no_grad():
        for p, reason in _contacts(collision, problem.start, v, START_IN_COLLISION).items():
            failure[p] = reason
        if problem.target_configuration is not None:
            goals = problem.target_configuration.unsqueeze(1)
            refused = _contacts(collision, problem.target_configuration, v, GOAL_IN_COLLISION)
            valid = torch.tensor([p not in refused for p in range(P)], device=chain.device).unsqueeze(1)
            for p, reason in refused.items():
                failure[p] = failure[p] or reason
        elif all(failure):
            goals, valid = problem.start.unsqueeze(1), torch.zeros(P, 1, dtype=torch.bool, device=chain.device)
        else:
            model = ClearanceModel(collision, v, options.clearance + options.cost_margin - v, steering=cost_checker)
            goals, valid, reasons = collision_free_goals(chain, problem.link, problem.target_pose, problem.position_only,
                                                         problem.start, model, options, limits)
            for p, reason in enumerate(reasons):
                failure[p] = failure[p] or reason
    timings["goals"] += time.perf_counter() - moment
    return goals, valid


def _grazing_ends(motion: MotionValidator, collision, start: Tensor, goals: Tensor, valid: Tensor,
                  margin: float) -> MotionValidator:
    """``motion`` with its exact window (:meth:`.checking.MotionValidator.with_exact_window`)
    where a start or valid goal is within it of the validity margin by the model's own distances
    (its spheres; the triangles accepted it), else as it is: the window costs every check."""
    if not hasattr(collision, "with_exact_window"):  # not a tight model: no triangles to measure
        return motion
    ends = torch.cat((start, goals[valid]))
    with torch.no_grad():
        if ends.shape[0] and bool(_grazes(collision.min_distance(ends, margin + EXACT_WINDOW), margin).any()):
            return motion.with_exact_window()
    return motion


def _grazes(distance: Tensor, margin: float) -> Tensor:
    """Which ends (their model distances (E,), m, exact below margin + EXACT_WINDOW) graze the
    model: within the exact window of the validity margin (a grasp's; the triangles accepted
    them). There the motion check measures by triangles and the search samples finely."""
    return distance < margin + EXACT_WINDOW


#: How much farther (m) than the check requires the global search keeps its configurations.
SEARCH_MARGIN = 0.004
#: rad (max-norm): the search's edge spacing near a start or goal that its spheres put within
#: :data:`.checking.EXACT_WINDOW` of the validity margin (a grasp's goal; there the search's
#: clearance is relaxed to the margin): at the usual spacing (``search_resolution``, 0.04) a
#: path's last edge into a goal grazing a can cut up to 14 mm into it between its checked
#: configurations, failed the whole-motion check and went to the optimiser (~1-1.3 s); at 0.01 it
#: passed as found (ad hoc, two MBM Panda goals 0.37 / 0.49 mm from a can: 1.9 / 1.5 s -> 0.37 /
#: 0.54 s a plan). Asked for every end closer than the clearance, it made the MBM Panda's searches
#: dearer (first 30 per family, ad hoc: bookshelf medians 74-94 -> 104-177 ms, cage 277 -> 346 ms).
SEARCH_FINE_RESOLUTION = 0.01
#: Global searches per problem: a path whose check finds a contact between the search's samples
#: (a thin wall its coarse samples straddled) is searched for again, with edges near that contact
#: checked at :data:`SEARCH_FINE_RESOLUTION` (MBM Panda box 30: a path 131 ms into the call touched
#: a box wall by 0.04 mm between two samples, and 20 iterations could not mend it in the budget)
SEARCH_ATTEMPTS = 2
#: A search's roots' escapes (:func:`_escape_paths`): steps, each step's length (rad, max-norm
#: over joints), and the clearance (m) whose penalty they descend.
ESCAPE_STEPS, ESCAPE_STEP, ESCAPE_MARGIN = 12, 0.06, 0.08


#: A search's roots' retreats (:func:`_retreat_paths`): steps, and each step's length (m) of the
#: target link's origin along one of its frame's six axis directions, its orientation held.
RETREAT_STEPS, RETREAT_STEP = 20, 0.02
#: The damping (m or rad) of the retreats' least-squares steps (small moves near a singularity).
RETREAT_DAMPING = 0.02


def _retreat_paths(chain, link: int, lower: Tensor, upper: Tensor, roots: Tensor) -> Tensor:
    """(R, J) -> (6R, RETREAT_STEPS + 1, J): from each root, the target link's origin moved in a
    straight line along each of its frame's axes, both ways (rows d·R + r: direction d of root r;
    +x, +y, +z, −x, −y, −z), RETREAT_STEP m a step, its orientation held, by damped
    least-squares steps of the geometric Jacobian towards the line's next point (closed loop),
    within [lower, upper]. A grasp deep in a shelf or a box was reached along one of them, and is
    left the same way: what random extensions of a tree rooted there almost never find.
    Unchecked: the search checks them."""
    R, J = roots.shape
    directions = torch.cat((torch.eye(3), -torch.eye(3))).to(roots).repeat_interleave(R, 0)  # (6R, 3)
    q, path = roots.repeat(6, 1), [roots.repeat(6, 1)]
    damping = RETREAT_DAMPING ** 2 * torch.eye(6, dtype=roots.dtype, device=roots.device)
    origin = None
    for k in range(RETREAT_STEPS):
        jacobian, pose = compute_jacobian(chain, q, link, return_pose=True)  # (6R, 6, J), (6R, 4, 4)
        if origin is None:  # each root's pose: the line's start and the orientation held
            origin, held = pose[:, :3, 3], pose[:, :3, :3]
            axis = (held @ directions.unsqueeze(2)).squeeze(2)
        # each step aims at the line's next point and the held orientation (closed loop: no drift)
        linear = origin + (k + 1) * RETREAT_STEP * axis - pose[:, :3, 3]
        angular = 0.5 * torch.linalg.cross(pose[:, :3, :3], held, dim=1).sum(2)  # small-angle error, root frame
        twist = torch.cat((linear, angular), 1).unsqueeze(2)
        step = jacobian.mT @ torch.linalg.solve(jacobian @ jacobian.mT + damping, twist)
        q = torch.minimum(torch.maximum(q + step.squeeze(2), lower), upper)
        path.append(q)
    return torch.stack(path, 1)


def _search_escapes(chain, link: int | None, cost_checker, lower: Tensor, upper: Tensor, roots: Tensor) -> Tensor:
    """(R, J) -> (M·R, K, J): each root's escapes for the global search (rows m·R + r: escape m
    of root r), the descent of the cost model's clearance penalty (:func:`_escape_paths`; with a
    cost model) and the target link's six retreats (:func:`_retreat_paths`; with a target link),
    the shorter ones repeating their last row; with neither, the roots alone (no escape)."""
    paths = []
    if cost_checker is not None:
        paths.append(_escape_paths(cost_checker, lower, upper, roots))
    if link is not None:
        paths.append(_retreat_paths(chain, link, lower, upper, roots))
    if not paths:
        return roots.unsqueeze(1)
    K = max(p.shape[1] for p in paths)
    return torch.cat([torch.cat((p, p[:, -1:].expand(-1, K - p.shape[1], -1)), 1) for p in paths])


def _escape_paths(cost_checker, lower: Tensor, upper: Tensor, roots: Tensor) -> Tensor:
    """(R, J) -> (R, ESCAPE_STEPS + 1, J): from each root, steps of ESCAPE_STEP (max-norm) down
    the gradient of the cost model's penalty at ESCAPE_MARGIN (away from what is near), within
    [lower, upper]; a path whose penalty is zero (nothing that near) stops there (its last row
    repeats). Unchecked: the search checks them (:func:`~.global_search.search_path`)."""
    q, path = roots, [roots]
    for _ in range(ESCAPE_STEPS):
        _, gradient = cost_checker.penalty(q, ESCAPE_MARGIN)
        size = gradient.abs().amax(-1, keepdim=True)
        step = torch.where(size > 0, ESCAPE_STEP * gradient / size.clamp_min(torch.finfo(q.dtype).tiny), 0.0)
        q = torch.minimum(torch.maximum(q - step, lower), upper)
        path.append(q)
    return torch.stack(path, 1)


def _global_seeds(chain, problem, options, limits, collision, goals: Tensor, valid: Tensor, x: Tensor, checks,
                  failure: list[str], started: float, S: int, timings: dict, cost_checker=None) -> Tensor:
    """For each open problem, a global search (:func:`~ros_torch_kin.motion.global_search.search_path`)
    from its start to its valid goals on the verdict model; a path found replaces the seed of
    highest collision cost and is checked at once (it often passes as it is). Configurations keep
    the required clearance plus :data:`SEARCH_MARGIN`, except within ``near`` rad (max-norm) of
    a start or goal that is itself closer (a grasp's): there half that end's own distance, never
    below the validity margin; near one its spheres put within the exact window of the margin,
    edges are checked :data:`SEARCH_FINE_RESOLUTION` apart. A search tree stuck in a pocket grows its roots' escapes
    (:func:`_search_escapes`): down the clearance gradient of ``cost_checker`` (the cost model)
    and, with a target link, that link's straight retreats."""
    P = problem.start.shape[0]
    # the path's configurations keep a little more than the check requires (they are checked
    # 0.01 rad apart; the check covers everything in between), and the clearance where they can
    v = options.validity_margin
    c = max(options.required_clearance, v) + min(options.clearance, SEARCH_MARGIN)
    lower, upper = limits.lower.clamp(min=-math.pi), limits.upper.clamp(max=math.pi)
    near = 0.15
    for p in range(P):
        if checks.done[p] or failure[p] or not bool(valid[p].any()):
            continue
        moment = time.perf_counter()
        remaining = started + options.time_budget - moment
        if remaining <= 0:
            break
        ends = torch.cat((problem.start[p:p + 1], goals[p][valid[p]]))
        # near an end closer than c, half its own distance (≥ v): a path that grazes the model
        # there could not be certified by the swept check between its configurations
        distance = collision.min_distance(ends, c)  # (E,)
        relaxed = torch.clamp(0.5 * distance, min=v, max=c)

        def free(q: Tensor, ends=ends, relaxed=relaxed) -> Tensor:
            close = (q.unsqueeze(1) - ends.unsqueeze(0)).abs().amax(-1) <= near  # (N, E)
            return collision.clear(q, torch.where(close, relaxed, torch.full_like(relaxed, c)).amin(1))

        escapes = functools.partial(_search_escapes, chain, problem.retreat_link, cost_checker, lower, upper)
        # near an end its spheres put within the exact window of the margin (a grasp's), finely
        fine_near = ends[_grazes(distance, v)]
        for attempt in range(SEARCH_ATTEMPTS):
            if attempt:  # the path's check found a contact between the search's samples: again,
                # its edges near that configuration checked finely (a wall the coarse samples straddled)
                moment = time.perf_counter()
                remaining = started + options.time_budget - moment
                if remaining <= 0:
                    break
                fine_near = torch.cat((fine_near, checks.closest[row].unsqueeze(0)))
            search = GlobalSearchOptions(time_budget=options.global_search * remaining, step=options.search_step,
                                         edge_resolution=options.search_resolution,
                                         random_seed=options.random_seed + attempt)
            fine = (fine_near, near, SEARCH_FINE_RESOLUTION) if fine_near.shape[0] else None
            found = search_path(free, problem.start[p], ends[1:], lower, upper, search, escapes=escapes, fine_near=fine)
            timings["global_search"] += time.perf_counter() - moment
            if not found.found:
                break
            row = p * S + S - 1  # the seeds are ranked: the last is the worst
            x = x.clone()
            x[row] = _path_waypoints(found.path, options.waypoints)[1:]
            moment = time.perf_counter()
            checks.check_rows(x, torch.tensor([row], device=x.device))
            timings["checking"] += time.perf_counter() - moment
            if checks.done[p]:
                break
    return x


def _path_waypoints(path: Tensor, T: int) -> Tensor:
    """A piecewise-linear path (K, J) -> (T, J) waypoints along it, every corner among them
    (when K ≤ T), the rest spread by length over the edges."""
    K = path.shape[0]
    if K > T:  # more corners than waypoints: even spacing by length
        cumulative = torch.cat((path.new_zeros(1), (path[1:] - path[:-1]).norm(dim=-1).cumsum(0)))
        at = torch.linspace(0, float(cumulative[-1]), T, dtype=path.dtype, device=path.device)
        edge = torch.searchsorted(cumulative, at, right=True).clamp(1, K - 1) - 1
        span = (cumulative[edge + 1] - cumulative[edge]).clamp_min(1e-12)
        t = ((at - cumulative[edge]) / span).clamp(0, 1).unsqueeze(1)
        return path[edge] + t * (path[edge + 1] - path[edge])
    lengths = (path[1:] - path[:-1]).abs().amax(-1).double().cpu() + 1e-9
    extra = T - K  # waypoints to add inside the K − 1 edges
    share = lengths / lengths.sum() * extra
    count = share.floor().long()
    for i in torch.argsort(share - count, descending=True)[: extra - int(count.sum())].tolist():
        count[i] += 1
    pieces = [path[:1]]
    for e in range(K - 1):
        n = int(count[e]) + 1
        t = torch.arange(1, n + 1, dtype=path.dtype, device=path.device).unsqueeze(1) / n
        pieces.append(path[e] + t * (path[e + 1] - path[e]))
    return torch.cat(pieces)


def _contacts(collision, q: Tensor, margin: float, reason: str) -> dict[int, str]:
    """Rows of q (P, J) closer than ``margin`` -> '<reason>: <a> – <b>, <d> mm' (the closest pair)."""
    distance = collision.min_distance(q, margin)
    rows = (distance < margin).nonzero().squeeze(1).tolist()
    if not rows:
        return {}
    named = _pair_names(collision, q[rows], margin)
    return {p: f"{reason}: {a} – {b}, {1000 * float(distance[p]):.1f} mm" for p, (a, b) in zip(rows, named)}


def _ranked_seeds(problem, options, limits, cost_checker, goals: Tensor, valid: Tensor, timings: dict,
                  draw: int) -> Tensor:
    """(P·S, T, J) seeds (S = options.collision_seeds): the best ranked candidate motions of
    draw ``draw`` (see :mod:`.seeds`)."""
    moment = time.perf_counter()
    P = problem.start.shape[0]
    with torch.no_grad():
        candidates = candidate_motions(problem.start, goals, valid, options, limits, draw)
        seeds = rank_candidates(cost_checker, candidates, options.clearance + options.cost_margin, options.collision_seeds)
    timings["seeding"] += time.perf_counter() - moment
    return seeds.reshape(P * options.collision_seeds, options.waypoints, -1)


class _MotionChecks:
    """Whole-motion checks of the optimizer's rows (P·S): per row whether it passed, its sphere
    distances, and per problem the first checked motion that reaches the goal collision-free."""

    def __init__(self, chain, problem, options, limits, motion: MotionValidator, S: int, deadline: float = math.inf):
        self.chain, self.problem, self.options, self.limits, self.motion, self.S = chain, problem, options, limits, motion, S
        #: perf_counter() s: no check block starts after it (the call's time budget); a check cut
        #: short leaves its motion not clear
        self.deadline = deadline
        P = problem.start.shape[0]
        device, dtype = chain.device, chain.dtype
        self.clear = torch.zeros(P * S, dtype=torch.bool, device=device)
        self.min_distance = torch.full((P * S,), -math.inf, dtype=dtype, device=device)
        self.clearance_bound = torch.full((P * S,), -math.inf, dtype=dtype, device=device)
        #: per row its last check's per-segment bounds (T − 1, C + 1) (MotionCheck.segments; −inf
        #: where unchecked: no segment certified) and closest configuration (J,), named only for
        #: the rows returned (:meth:`closest_pairs`)
        T, J, C = options.waypoints, chain.num_dofs, motion.column_track.shape[0]
        self.segments = torch.full((P * S, T - 1, C + 1), -math.inf, dtype=dtype, device=device)
        self.checked = torch.zeros(P * S, dtype=torch.bool, device=device)
        self.closest = torch.zeros(P * S, J, dtype=dtype, device=device)
        self.done = [False] * P
        self.found: dict[int, tuple[int, Tensor]] = {}  # problem -> (row, its checked x (T − 1, J))

    def all_done(self, failure: list[str]) -> bool:
        return all(d or f for d, f in zip(self.done, failure))

    def _check_rows(self, x: Tensor, rows: Tensor, verdict_only: bool = True) -> tuple[Tensor, Tensor]:
        """Polish and check rows (n,) of x -> their polished x (n, T − 1, J) and (n,) bool: the
        goal is reached, every waypoint is within the limits and the motion is collision-free.
        ``verdict_only`` (:meth:`.checking.MotionValidator.check`): a failing row's distances are
        those found until it failed (:meth:`finish` checks the rows it reports in full)."""
        owner = rows // self.S
        polished = _polish_rows(self.chain, self.problem, self.options, self.limits, x[rows], owner)
        positions = torch.cat((self.problem.start[owner].unsqueeze(1), polished), dim=1)
        position, orientation = _row_goal_errors(self.chain, self.problem, polished[:, -1], owner)
        verdict = self.motion.check(positions, names=False, deadline=self.deadline, verdict_only=verdict_only)
        ok = (verdict.clear & (position <= self.options.position_tolerance)
              & (orientation <= self.options.orientation_tolerance) & self.limits.contains(positions).all(-1))
        self.clear[rows] = ok
        self.min_distance[rows] = verdict.min_distance
        self.clearance_bound[rows] = verdict.clearance_bound
        self.segments[rows] = verdict.segments
        self.checked[rows] = True
        self.closest[rows] = verdict.closest_configuration
        return polished, ok

    def closest_pairs(self, rows: Tensor) -> tuple[tuple[str, str], ...]:
        """Per row its last check's closest pair by name (('', '') where never checked)."""
        checked = self.checked[rows]
        named = iter(self.motion.closest_pairs(self.closest[rows[checked]], self.min_distance[rows[checked]]))
        return tuple(next(named) if c else ("", "") for c in checked.tolist())

    def check_rows(self, x: Tensor, rows: Tensor) -> None:
        """Check the given rows; a problem whose row passes is solved by it."""
        polished, ok = self._check_rows(x, rows)
        for i in ok.nonzero().squeeze(1).tolist():
            p = int(rows[i]) // self.S
            if not self.done[p]:
                self.done[p] = True
                self.found[p] = (int(rows[i]), polished[i])

    def check_best(self, x: Tensor, collision_part: Tensor, failure: list[str]) -> None:
        """Check the ``checks_per_iteration`` rows of lowest collision cost of every open problem."""
        P, S = self.problem.start.shape[0], self.S
        open_problems = [p for p in range(P) if not self.done[p] and not failure[p]]
        if not open_problems:
            return
        k = min(self.options.checks_per_iteration, S)
        order = collision_part.view(P, S).argsort(dim=1)[:, :k]  # (P, k)
        problems = torch.tensor(open_problems, device=x.device)
        rows = (problems.unsqueeze(1) * S + order[problems]).reshape(-1)
        polished, ok = self._check_rows(x, rows)
        for i in ok.nonzero().squeeze(1).tolist():
            p = int(rows[i]) // S
            if not self.done[p]:
                self.done[p] = True
                self.found[p] = (int(rows[i]), polished[i])

    def finish(self, x: Tensor, deadline: float = math.inf, failure: list[str] | None = None) -> Tensor:
        """x with each solved problem's checked motion in its row, and every row of the other
        problems polished and, before ``deadline`` (perf_counter), checked (one batch), except the
        problems already refused (``failure`` set: their reason does not need the check)."""
        x = x.clone()
        P, S = self.problem.start.shape[0], self.S
        for p, (row, found) in self.found.items():
            x[row] = found
            others = [p * S + s for s in range(S) if p * S + s != row]
            self.clear[others] = False
        unsolved = [p * S + s for p in range(P) if not self.done[p] for s in range(S)]
        if unsolved:
            rows = torch.tensor(unsolved, device=x.device)
            owner = rows // S
            polished = _polish_rows(self.chain, self.problem, self.options, self.limits, x[rows], owner)
            x[rows] = polished
            open_rows = [r for r in unsolved if not (failure and failure[r // S])]
            if open_rows and time.perf_counter() < deadline:  # what the failed rows reach (skipped when late)
                self._check_rows(x, torch.tensor(open_rows, device=x.device), verdict_only=False)
        return x


def _goal_errors(state: TrajectoryState, problem: _Problem) -> tuple[Tensor, Tensor]:
    if problem.target_configuration is not None:
        distance = (state.positions[:, -1] - state.target_configuration).norm(dim=-1)
        return distance, torch.zeros_like(distance)
    position, orientation = goal_pose_errors(state)
    return position, torch.zeros_like(orientation) if problem.position_only else orientation


def _report(chain, problem, x, cost, S, iteration, started) -> IterationReport:
    """The goal errors of each problem's cheapest seed, from its last waypoint alone."""
    P = problem.start.shape[0]
    index = torch.arange(P, device=x.device) * S + cost.view(P, S).argmin(1)
    last = x[index, -1:]  # (P, 1, J)
    with torch.no_grad():
        poses = None if problem.link is None else forward_kinematics(chain, last[:, 0], links=problem.link).unsqueeze(1)
        state = TrajectoryState(last, poses, problem.target_pose, problem.target_configuration, problem.position_only)
        position, orientation = _goal_errors(state, problem)
    return IterationReport(iteration, cost.view(P, S).amin(1), position, orientation, time.perf_counter() - started)
