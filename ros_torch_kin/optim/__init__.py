"""Trajectory optimization and inverse kinematics on the kinematics core (pure torch; never imports ROS)."""

from .costs import TrajectoryState, pose_target_cost
from .ik import damped_least_squares_ik
from .ik_options import CollisionModel, IKOptions, IKResult
from .inverse_kinematics import solve_ik
from .options import CostWeights, TrajectoryLimits, TrajectoryOptions
from .time_parameterization import time_parameterize
from .trajectory import IterationReport, TrajectoryResult, solve_trajectory

__all__ = [
    "CollisionModel",
    "CostWeights",
    "IKOptions",
    "IKResult",
    "IterationReport",
    "TrajectoryLimits",
    "TrajectoryOptions",
    "TrajectoryResult",
    "TrajectoryState",
    "damped_least_squares_ik",
    "pose_target_cost",
    "solve_ik",
    "solve_trajectory",
    "time_parameterize",
]
