"""Trajectory optimization on the kinematics core (pure torch; never imports ROS)."""

from .costs import pose_target_cost

__all__ = ["pose_target_cost"]
