"""Collision model (pure torch): the robot as spheres on its links, world obstacles, batched
signed distances with gradients through the FK analytical backward. Imports ``kinematics`` only."""

from .robot_spheres import RobotSpheres

__all__ = ["RobotSpheres"]
