"""Kinematics core: URDF -> :class:`Chain` -> batched forward kinematics, Jacobians, poses.

Plain PyTorch (+ numpy and urdf_parser_py to read URDF); never imports ROS.
"""

from .chain import Chain, default_device
from .description import JointDescription, Mimic, RobotDescription
from .fk import forward_kinematics, world_transforms
from .fk_backward import fk_vector_jacobian_product, wrench_vector_jacobian_product
from .jacobian import compute_jacobian
from .pose import (
    invert_transform,
    matrix_to_pose_xyzw,
    matrix_to_quat_xyzw,
    pose_error,
    pose_xyzw_to_matrix,
    quat_xyzw_to_matrix,
    rotation_log,
)
from .urdf import parse_urdf

__all__ = [
    "Chain",
    "JointDescription",
    "Mimic",
    "RobotDescription",
    "compute_jacobian",
    "default_device",
    "fk_vector_jacobian_product",
    "invert_transform",
    "forward_kinematics",
    "matrix_to_pose_xyzw",
    "matrix_to_quat_xyzw",
    "parse_urdf",
    "pose_error",
    "pose_xyzw_to_matrix",
    "quat_xyzw_to_matrix",
    "rotation_log",
    "world_transforms",
    "wrench_vector_jacobian_product",
]
