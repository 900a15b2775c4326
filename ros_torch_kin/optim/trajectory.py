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
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from ..kinematics import Chain, forward_kinematics
from ..kinematics.fk import link_index
from .costs import CostTerm, TrajectoryState, acceleration_cost, goal_costs, goal_pose_errors, jerk_cost, path_cost
from .ik import damped_least_squares_ik
from .lbfgs import BatchedLBFGS
from .options import TrajectoryLimits, TrajectoryOptions
from .time_parameterization import time_parameterize


@dataclass(frozen=True)
class TrajectoryResult:
    """Best trajectory per problem. P problems, T waypoints, J joints; rad / m and s.

    positions, velocities, accelerations: (P, T, J) at times k · time_step (P,); success (P,):
    the target is reached within tolerance (every waypoint is within the position limits
    always); position_error (P,) m, orientation_error (P,) rad (0 for position-only and
    configuration goals; for configuration goals position_error is the joint-space distance);
    cost (P,) of the returned trajectory; iterations and solve_time (s) for the whole batch;
    stopped: why the iterations ended ("converged", "max_iterations", "time_budget", "canceled").
    """

    positions: Tensor
    velocities: Tensor
    accelerations: Tensor
    time_step: Tensor
    success: Tensor
    position_error: Tensor
    orientation_error: Tensor
    cost: Tensor
    iterations: int
    solve_time: float
    stopped: str

    @property
    def duration(self) -> Tensor:
        """(P,) motion time, s."""
        return self.time_step * (self.positions.shape[1] - 1)

    def times(self) -> Tensor:
        """(P, T) time of each waypoint from the start, s."""
        steps = torch.arange(self.positions.shape[1], dtype=self.time_step.dtype, device=self.time_step.device)
        return self.time_step.unsqueeze(-1) * steps


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
) -> TrajectoryResult:
    """Plan P trajectories from ``start`` to a target.

    start: (P, J) or (J,) configurations inside the limits. Goal: ``target_pose`` (P, 4, 4) or
    (4, 4) of ``link`` in the root frame (with ``position_only`` its rotation is ignored), or
    ``target_configuration`` (P, J) or (J,). ``extra_terms``: (weight, term) pairs added to the
    cost (see :mod:`.costs`). ``on_iteration(report)`` is called after each iteration; returning
    False stops the solve ("canceled"). Raises ValueError for an inconsistent problem.
    """
    options = options or TrajectoryOptions()
    limits = limits or TrajectoryLimits.from_chain(chain)
    started = time.perf_counter()
    problem = _Problem.make(chain, start, link, target_pose, target_configuration, position_only, limits)
    P, S, T, J = problem.start.shape[0], options.seeds, options.waypoints, chain.num_dofs
    weights = options.weights

    def rows(t: Tensor | None, repeat: int) -> Tensor | None:
        return None if t is None else t.repeat_interleave(repeat, dim=0)

    def evaluate(x: Tensor, repeat: int) -> tuple[Tensor, TrajectoryState]:
        """Cost (M,) of M = P·repeat trajectories whose free waypoints are x (M, T − 1, J)."""
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
        return cost, state

    def value_and_gradient(x: Tensor, repeat: int) -> tuple[Tensor, Tensor]:
        """Cost (M,) and its gradient (M, T − 1, J) for M = P·repeat rows of free waypoints."""
        x = x.detach().requires_grad_()
        with torch.enable_grad():
            cost, _ = evaluate(x, repeat)
            (gradient,) = torch.autograd.grad(cost.sum(), x)
        return cost.detach(), gradient

    x = _seed_trajectories(chain, problem, options, limits)[:, 1:]  # (P·S, T − 1, J)
    cost, gradient = value_and_gradient(x, S)
    lbfgs = BatchedLBFGS(P * S, (T - 1) * J, options.history, initial_step=0.05, like=x)
    steps = torch.tensor(options.line_search_steps, dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
    A = steps.shape[0]
    every_row = torch.arange(P * S, device=x.device)
    best = cost.view(P, S).amin(1)
    stopped, iteration, quiet = "max_iterations", 0, 0
    for iteration in range(1, options.max_iterations + 1):
        direction = lbfgs.direction(gradient.view(P * S, -1)).view_as(x)
        candidates = limits.clamp(x.unsqueeze(0) + steps * direction.unsqueeze(0))  # (A, P·S, T − 1, J)
        # every step size with its gradient in one batch (problem-major rows: P, A, S)
        grouped = candidates.view(A, P, S, T - 1, J).transpose(0, 1).reshape(-1, T - 1, J)
        tried, tried_gradient = value_and_gradient(grouped, A * S)
        tried = tried.view(P, A, S).transpose(0, 1).reshape(A, P * S)
        tried_gradient = tried_gradient.view(P, A, S, T - 1, J).transpose(0, 1).reshape(A, P * S, T - 1, J)
        lowest, choice = tried.min(0)
        improved = lowest < cost
        x_new = torch.where(improved.view(-1, 1, 1), candidates[choice, every_row], x)
        cost_new = torch.where(improved, lowest, cost)
        gradient_new = torch.where(improved.view(-1, 1, 1), tried_gradient[choice, every_row], gradient)
        lbfgs.update((x_new - x).view(P * S, -1), (gradient_new - gradient).view(P * S, -1), improved)
        lbfgs.reset(~improved)
        x, cost, gradient = x_new, cost_new, gradient_new

        previous, best = best, cost.view(P, S).amin(1)
        if on_iteration is not None and not on_iteration(_report(chain, problem, x, cost, S, iteration, started)):
            stopped = "canceled"
            break
        if time.perf_counter() - started > options.time_budget:
            stopped = "time_budget"
            break
        quiet = quiet + 1 if bool(((previous - best) <= options.relative_tolerance * previous.abs()).all()) else 0
        if quiet >= 2:
            stopped = "converged"
            break

    x = _polish_last_waypoint(chain, problem, options, limits, x)
    with torch.no_grad():
        cost, state = evaluate(x, S)
        position_error, orientation_error = _goal_errors(state, problem)
        success = (position_error <= options.position_tolerance) & (orientation_error <= options.orientation_tolerance)
        success &= limits.contains(state.positions).all(-1)
        # best per problem: the cheapest successful seed, else the one closest to the target
        score = torch.where(success, cost, math.inf + torch.zeros_like(cost))
        fallback = position_error + orientation_error
        pick = torch.where(success.view(P, S).any(1), score.view(P, S).argmin(1), fallback.view(P, S).argmin(1))
        index = torch.arange(P, device=x.device) * S + pick
        positions = state.positions[index]
        time_step, velocities, accelerations = time_parameterize(positions, limits.velocity, limits.acceleration)
    return TrajectoryResult(
        positions=positions,
        velocities=velocities,
        accelerations=accelerations,
        time_step=time_step,
        success=success[index],
        position_error=position_error[index],
        orientation_error=orientation_error[index],
        cost=cost[index],
        iterations=iteration,
        solve_time=time.perf_counter() - started,
        stopped=stopped,
    )


@dataclass(frozen=True)
class _Problem:
    start: Tensor  # (P, J)
    link: int | None
    target_pose: Tensor | None  # (P, 4, 4)
    target_configuration: Tensor | None  # (P, J)
    position_only: bool

    @classmethod
    def make(cls, chain, start, link, target_pose, target_configuration, position_only, limits) -> "_Problem":
        if (target_pose is None) == (target_configuration is None):
            raise ValueError("give exactly one of target_pose and target_configuration")
        start = _batch(chain, start, (chain.num_dofs,), "start")
        P = start.shape[0]
        _check_inside(chain, start, limits, "start")
        if target_configuration is not None:
            target_configuration = _batch(chain, target_configuration, (chain.num_dofs,), "target_configuration")
            target_configuration = target_configuration.expand(P, -1) if target_configuration.shape[0] == 1 else target_configuration
            _check_inside(chain, target_configuration, limits, "target_configuration")
            return cls(start, None, None, target_configuration, False)
        if link is None:
            raise ValueError("a target_pose needs the link it is for")
        target_pose = _batch(chain, target_pose, (4, 4), "target_pose")
        target_pose = target_pose.expand(P, -1, -1) if target_pose.shape[0] == 1 else target_pose
        if target_pose.shape[0] != P:
            raise ValueError(f"{target_pose.shape[0]} target poses for {P} start configurations")
        return cls(start, link_index(chain, link), target_pose, None, position_only)


def _batch(chain: Chain, value, shape: tuple[int, ...], name: str) -> Tensor:
    value = torch.as_tensor(value, dtype=chain.dtype, device=chain.device)
    if value.shape == shape:
        value = value.unsqueeze(0)
    if value.shape[1:] != shape or value.shape[0] == 0:
        raise ValueError(f"{name} must have shape (P, {', '.join(map(str, shape))}), got {tuple(value.shape)}")
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} is not finite")
    return value


def _check_inside(chain: Chain, q: Tensor, limits: TrajectoryLimits, name: str) -> None:
    outside = limits.outside(q)
    if outside.any():
        p, j = (int(i) for i in outside.nonzero()[0])
        raise ValueError(
            f"{name} of problem {p}: joint '{chain.joint_names[j]}' = {q[p, j].item():.6g} is outside its "
            f"limits [{limits.lower[j].item():.6g}, {limits.upper[j].item():.6g}]"
        )


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
    if problem.target_pose is None or options.polish_iterations == 0:
        return x
    S = x.shape[0] // problem.start.shape[0]
    last, _ = damped_least_squares_ik(
        chain, problem.link, problem.target_pose.repeat_interleave(S, dim=0), x[:, -1], limits.lower, limits.upper,
        options.polish_iterations, options.ik_damping, problem.position_only,
    )
    return torch.cat((x[:, :-1], last.unsqueeze(1)), dim=1)


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
