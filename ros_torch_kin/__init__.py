"""ros_torch_kin: GPU-batched, differentiable robot kinematics and trajectory optimization.

The library (``ros_torch_kin.kinematics``, ``ros_torch_kin.optim``) is plain PyTorch and never
imports ROS; ``ros_torch_kin.ros`` holds the ROS 2 node built on it.
"""

__version__ = "0.1.0"

from .kinematics import (  # noqa: E402
    Chain,
    compute_jacobian,
    forward_kinematics,
    matrix_to_pose_xyzw,
    parse_urdf,
    pose_error,
)

__all__ = [
    "Chain",
    "__version__",
    "compute_jacobian",
    "forward_kinematics",
    "matrix_to_pose_xyzw",
    "parse_urdf",
    "pose_error",
]
