"""Trajectory optimization on the kinematics core (pure torch; never imports ROS)."""

from .costs import TrajectoryState, pose_target_cost
from .ik import damped_least_squares_ik
from .options import CostWeights, TrajectoryLimits, TrajectoryOptions
from .time_parameterization import time_parameterize
from .trajectory import IterationReport, TrajectoryResult, solve_trajectory

__all__ = [
    "CostWeights",
    "IterationReport",
    "TrajectoryLimits",
    "TrajectoryOptions",
    "TrajectoryResult",
    "TrajectoryState",
    "damped_least_squares_ik",
    "pose_target_cost",
    "solve_trajectory",
    "time_parameterize",
]
