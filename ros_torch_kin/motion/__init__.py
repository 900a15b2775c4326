"""The motion pipeline (pure torch; never imports ROS), one stage a file:

goals (:mod:`.goals`) -> seeds (:mod:`.seeds`) -> global search (:mod:`.global_search`) ->
optimisation (:mod:`.planner`, with the collision cost of :mod:`.collision_costs`) -> checking
(:mod:`.checking`, on the sphere sweep bounds of :mod:`.sphere_sweep`) -> timing
(:mod:`.time_optimal`: the motion to execute, :class:`TimedTrajectory`; :mod:`.timing`: the
uniform time scaling, its fallback). :func:`solve_trajectory` is the one entry point;
:func:`retime` times any waypoint path on its own (``TimingRequest`` says within what). The generic
solvers (L-BFGS, IK, cost terms, options) stay in :mod:`ros_torch_kin.optim`.
"""

from .checking import MotionValidator
from .global_search import GlobalSearchOptions, GlobalSearchResult, search_path, shortcut_path
from .goals import GOAL_IN_COLLISION, GOAL_NOT_REACHED, GOAL_UNREACHABLE, NO_PATH, START_IN_COLLISION
from .planner import IterationReport, TrajectoryResult, solve_trajectory
from .sphere_sweep import MotionCheck, sphere_speed_bounds
from .time_optimal import (JERK_LIMITED, TIME_OPTIMAL, UNIFORM, WAYPOINT_STOPS, TimedTrajectory, TimingRequest, retime,
                           timed_trajectories)
from .timing import time_parameterize

__all__ = [
    "GOAL_IN_COLLISION",
    "GOAL_NOT_REACHED",
    "GOAL_UNREACHABLE",
    "JERK_LIMITED",
    "NO_PATH",
    "START_IN_COLLISION",
    "TIME_OPTIMAL",
    "UNIFORM",
    "WAYPOINT_STOPS",
    "GlobalSearchOptions",
    "GlobalSearchResult",
    "IterationReport",
    "MotionCheck",
    "MotionValidator",
    "TimedTrajectory",
    "TimingRequest",
    "TrajectoryResult",
    "retime",
    "search_path",
    "shortcut_path",
    "solve_trajectory",
    "sphere_speed_bounds",
    "time_parameterize",
    "timed_trajectories",
]
