"""Generic solvers on the kinematics core (pure torch; never imports ROS or the motion pipeline):
cost terms, L-BFGS, damped least squares and batched IK, and the options and limits the motion
pipeline (:mod:`ros_torch_kin.motion`) runs with."""

from .costs import TrajectoryState, pose_target_cost
from .ik import damped_least_squares_ik
from .ik_options import CollisionModel, IKOptions, IKResult
from .inverse_kinematics import solve_ik
from .options import CostWeights, TrajectoryLimits, TrajectoryOptions

__all__ = [
    "CollisionModel",
    "CostWeights",
    "IKOptions",
    "IKResult",
    "TrajectoryLimits",
    "TrajectoryOptions",
    "TrajectoryState",
    "damped_least_squares_ik",
    "pose_target_cost",
    "solve_ik",
]

