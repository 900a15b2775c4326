"""Trajectory optimization and inverse kinematics on the kinematics core (pure torch; never imports ROS)."""

from .costs import TrajectoryState, pose_target_cost
from .ik import damped_least_squares_ik
from .ik_options import CollisionModel, IKOptions, IKResult
from .inverse_kinematics import solve_ik
from .motion_checking import MotionCheck, MotionChecker, sphere_speed_bounds
from .motion_seeding import GOAL_IN_COLLISION, GOAL_NOT_REACHED, GOAL_UNREACHABLE, NO_PATH, START_IN_COLLISION
from .options import CostWeights, TrajectoryLimits, TrajectoryOptions
from .time_parameterization import time_parameterize
from .trajectory import IterationReport, TrajectoryResult, solve_trajectory

__all__ = [
    "GOAL_IN_COLLISION",
    "GOAL_NOT_REACHED",
    "GOAL_UNREACHABLE",
    "NO_PATH",
    "START_IN_COLLISION",
    "CollisionModel",
    "CostWeights",
    "IKOptions",
    "IKResult",
    "IterationReport",
    "MotionCheck",
    "MotionChecker",
    "TrajectoryLimits",
    "TrajectoryOptions",
    "TrajectoryResult",
    "TrajectoryState",
    "damped_least_squares_ik",
    "pose_target_cost",
    "solve_ik",
    "solve_trajectory",
    "sphere_speed_bounds",
    "time_parameterize",
]
