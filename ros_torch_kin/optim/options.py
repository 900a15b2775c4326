"""Settings of the trajectory optimizer and the joint limits it respects."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..kinematics import Chain


@dataclass(frozen=True)
class CostWeights:
    """Weights of the built-in cost terms (see :mod:`.costs`). Units make each term comparable:
    goal terms per m² and per rad², smoothness per (rad per waypoint step)²."""

    goal_position: float = 1e4
    goal_orientation: float = 1e3
    goal_configuration: float = 1e3
    acceleration: float = 1.0
    jerk: float = 1.0
    #: squared Cartesian step of the target link between waypoints (a short, smooth tool path)
    path: float = 10.0
    #: collision penalty Σ ½ max(0, margin − d)² (m²) over the sphere pairs of every waypoint and
    #: segment midpoint (only when a collision checker is given; see :mod:`.collision_costs`)
    collision: float = 3e4


@dataclass(frozen=True)
class TrajectoryOptions:
    """How a trajectory problem is solved.

    waypoints T (the start included), seeds S per problem, at most ``max_iterations`` L-BFGS
    iterations within ``time_budget`` seconds of wall clock. Success: the target link ends within
    ``position_tolerance`` (m) and ``orientation_tolerance`` (rad) of the target.
    """

    waypoints: int = 32
    seeds: int = 16
    max_iterations: int = 10
    time_budget: float = 2.0
    position_tolerance: float = 1e-3
    orientation_tolerance: float = math.radians(1.0)
    weights: CostWeights = field(default_factory=CostWeights)
    #: damped-least-squares IK for seeding (from ``ik_candidates`` starts per problem, of which the
    #: ``seeds`` best become trajectories) and for the final polish of the last waypoint
    ik_candidates: int = 32
    ik_iterations: int = 15
    ik_damping: float = 0.02
    polish_iterations: int = 5
    #: L-BFGS memory and the step sizes tried together (in one batch) by the line search
    history: int = 5
    line_search_steps: tuple[float, ...] = (1.0, 0.3, 0.05)
    #: stop when the best cost of every problem improved by less than this fraction in one iteration
    relative_tolerance: float = 1e-3
    #: use the analytical FK backward (False: plain autograd, for comparisons)
    analytical_grad: bool = True
    #: random seed of the seeding; solving the same problem twice gives the same result
    random_seed: int = 0

    # --- with a collision checker (see solve_trajectory's ``collision``) ---------------------
    #: distance (m) every sphere of the robot keeps from the obstacles and from the spheres of
    #: the link pairs checked for self collision, at every waypoint and along every segment
    clearance: float = 0.01
    #: the finest first cut (m of sphere motion) of a segment whose end points alone do not prove
    #: it clear: its pieces are longer where its ends' slack allows, and pieces still short are
    #: cut again (see :mod:`ros_torch_kin.motion.checking`)
    check_resolution: float = 0.01
    #: the collision cost acts from ``clearance + cost_margin`` (m) on, so the optimised motion
    #: keeps a little more than the clearance the check requires
    cost_margin: float = 0.02
    #: collision-free IK goals per pose goal (from different preferred configurations) and the
    #: time budget (s) of that IK
    goal_candidates: int = 4
    goal_ik_time_budget: float = 0.5
    #: via-point detours per goal: start -> via -> goal seeds, via = the midpoint of the straight
    #: motion plus a random offset of up to ``detour_scales`` rad per joint (cycled)
    detours: int = 12
    detour_scales: tuple[float, ...] = (0.4, 0.8, 1.4)
    #: of all candidate seeds (straight and detours to every goal), scored by their collision
    #: depth, the ``collision_seeds`` best are optimised together
    collision_seeds: int = 6
    #: seeds per problem whose whole motion is checked after each iteration; the iterations stop
    #: once every problem has a checked collision-free motion reaching the goal
    checks_per_iteration: int = 1
    #: iteration limit with collision checking (instead of ``max_iterations``; the iterations
    #: usually stop much earlier, once a checked motion is found); ``relative_tolerance`` does not
    #: stop them while some problem is unsolved
    collision_iterations: int = 40
    #: with collision checking, the seeds of problems still unsolved after this many iterations
    #: are drawn anew (other, wider detours) and optimised from scratch
    restart_every: int = 12
    #: validity (m): a configuration is valid when the collision model's distance is at least
    #: this (0: no contact). Starts and goals need only validity. ``clearance`` is what the motion
    #: keeps where it can (the cost, and the global search's preference); ``required_clearance``
    #: (≤ clearance) is the minimum the check requires along the motion, except within the
    #: ``approach`` (fraction of the segments at each end) to a start or goal that is closer than
    #: it (see :mod:`ros_torch_kin.motion.checking`). 0 (the default) requires validity, as MoveIt,
    #: VAMP and cuRobo do; the tight model itself lies up to its slack (3 mm) outside the meshes
    validity_margin: float = 0.0
    required_clearance: float = 0.0
    approach: float = 0.125
    #: a start or goal at most this far outside a position limit (rad or m; URDF rounding) is
    #: clamped onto it; farther out it is refused naming the joint
    limit_tolerance: float = 1e-5
    #: when the straight and detour seeds give no checked motion, a global search
    #: (:mod:`ros_torch_kin.motion.global_search`) finds a collision-free path to seed with, within
    #: this fraction of the remaining time budget (0: never)
    global_search: float = 0.8
    #: rad (max-norm) the global search's longest tree extension and its edges' check spacing.
    #: Its path is only a seed (the whole-motion check certifies what is returned), and each
    #: verdict call has a fixed cost, so few large rounds pay: on the 700 MBM problems (0.6, 0.04)
    #: against (0.3, 0.02): 699 against 698 solved, median 156 against 187 ms at commit ed9c8dc
    #: (BENCHMARKS.md's notes; ``bench/mbm_benchmark.py --search-step 0.3 --search-resolution 0.02``
    #: runs the other)
    search_step: float = 0.6
    search_resolution: float = 0.04

    # --- timing (see :mod:`ros_torch_kin.motion.time_optimal`) ---------------------------------
    #: "time_optimal": TOPP-RA on the spline through the waypoints (jerk-limited when the limits
    #: have jerk limits), the curve collision-checked again; "uniform": the waypoints uniformly
    #: time-scaled (the planner's earlier parameterisation, and the fallback when TOPP-RA fails)
    time_parameterization: str = "time_optimal"
    #: fractions (0 < s ≤ 1) of the velocity, acceleration and jerk limits the motion uses
    velocity_scaling: float = 1.0
    acceleration_scaling: float = 1.0
    jerk_scaling: float = 1.0
    #: the motion's duration (s); 0: as fast as the limits allow. Longer: the fastest motion is
    #: slowed uniformly in time; shorter than the limits allow: the fastest, with a note
    duration: float = 0.0
    #: the controller's period (s): the timed motion is verified within the limits at this rate
    control_period: float = 1e-3
    #: the period (s) of the returned trajectory's samples
    sample_period: float = 0.01
    #: how far (m) the re-checked curve may leave the chords between its checked samples (the
    #: check's requirements are raised by twice this; see ros_torch_kin.motion.time_optimal)
    curve_tolerance: float = 1e-4

    def __post_init__(self):
        if self.waypoints < 3:
            raise ValueError(f"waypoints must be at least 3, got {self.waypoints}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be at least 1, got {self.seeds}")
        if not (self.position_tolerance > 0 and self.orientation_tolerance > 0):
            raise ValueError("tolerances must be positive")
        if not (math.isfinite(self.clearance) and self.clearance >= 0 and math.isfinite(self.cost_margin)
                and self.cost_margin >= 0):
            raise ValueError("clearance and cost_margin must be finite and ≥ 0 m")
        if not (math.isfinite(self.check_resolution) and self.check_resolution > 0):
            raise ValueError(f"check_resolution must be positive (m), got {self.check_resolution}")
        if not (math.isfinite(self.validity_margin) and self.validity_margin >= 0):
            raise ValueError(f"validity_margin must be finite and ≥ 0 m, got {self.validity_margin}")
        if not (math.isfinite(self.required_clearance) and 0 <= self.required_clearance):
            raise ValueError(f"required_clearance must be finite and ≥ 0 m, got {self.required_clearance}")
        if not all(math.isfinite(v) and v > 0 for v in (self.search_step, self.search_resolution)):
            raise ValueError(f"search_step and search_resolution must be positive (rad), got "
                             f"{self.search_step}, {self.search_resolution}")
        if not (0 <= self.approach <= 0.5 and 0 <= self.global_search <= 1 and self.limit_tolerance >= 0):
            raise ValueError("approach must be in [0, 0.5], global_search in [0, 1], limit_tolerance ≥ 0")
        if min(self.goal_candidates, self.collision_seeds, self.checks_per_iteration) < 1 or self.detours < 0:
            raise ValueError("goal_candidates, collision_seeds and checks_per_iteration must be ≥ 1, detours ≥ 0")
        if self.time_parameterization not in ("time_optimal", "uniform"):
            raise ValueError(f"time_parameterization must be 'time_optimal' or 'uniform', got {self.time_parameterization!r}")
        for name in ("velocity_scaling", "acceleration_scaling", "jerk_scaling"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 < value <= 1):
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        if not (math.isfinite(self.duration) and self.duration >= 0):
            raise ValueError(f"duration must be finite and ≥ 0 s (0: the fastest), got {self.duration}")
        for name in ("control_period", "sample_period", "curve_tolerance"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive, got {value}")


@dataclass(frozen=True)
class TrajectoryLimits:
    """(J,) joint limits the trajectory respects: position (rad or m; ±inf where unbounded),
    velocity (rad/s or m/s) and acceleration (rad/s² or m/s²); jerk (rad/s³ or m/s³) or None (no
    jerk limits: the time-optimal parameterisation; with them, a jerk-limited one)."""

    lower: Tensor
    upper: Tensor
    velocity: Tensor
    acceleration: Tensor
    jerk: Tensor | None = None

    @classmethod
    def from_chain(
        cls,
        chain: Chain,
        acceleration: float | Tensor = 5.0,
        default_velocity: float = 1.0,
        velocity_scaling: float = 1.0,
    ) -> "TrajectoryLimits":
        """The URDF's position limits and velocity limits times ``velocity_scaling`` (a joint
        without a velocity limit gets ``default_velocity``); URDF has no acceleration limits, so
        ``acceleration`` (a scalar or (J,)) fills them in."""
        velocity = torch.where(torch.isfinite(chain.velocity_limits) & (chain.velocity_limits > 0),
                               chain.velocity_limits, torch.full_like(chain.velocity_limits, default_velocity))
        acceleration = torch.as_tensor(acceleration, dtype=chain.dtype, device=chain.device).expand(chain.num_dofs)
        return cls(chain.lower_limits, chain.upper_limits, velocity * velocity_scaling, acceleration.clone())

    def clamp(self, q: Tensor) -> Tensor:
        return torch.maximum(torch.minimum(q, self.upper), self.lower)

    def outside(self, q: Tensor, tolerance: float = 1e-9) -> Tensor:
        """(..., J) bool: each joint of each configuration (..., J) outside its position limits."""
        return (q < self.lower - tolerance) | (q > self.upper + tolerance)

    def contains(self, q: Tensor, tolerance: float = 1e-9) -> Tensor:
        """(...) bool: every joint of each configuration (..., J) inside the position limits."""
        return ~self.outside(q, tolerance).any(-1)
