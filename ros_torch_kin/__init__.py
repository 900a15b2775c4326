"""ros_torch_kin: GPU-batched, differentiable robot kinematics and trajectory optimization.

The library (``ros_torch_kin.kinematics``, ``ros_torch_kin.optim``) is plain PyTorch and never
imports ROS; ``ros_torch_kin.ros`` holds the ROS 2 node built on it.

The names below are imported on first use, so that ``import ros_torch_kin.threads`` (the thread
policy, which must run before torch is imported) and ``ros_torch_kin.allocator`` (the process's
allocator policy) do not import torch.
"""

__version__ = "0.1.0"

_KINEMATICS = ("Chain", "compute_jacobian", "forward_kinematics", "matrix_to_pose_xyzw", "parse_urdf", "pose_error")

__all__ = [
    "Chain",
    "__version__",
    "compute_jacobian",
    "forward_kinematics",
    "keep_freed_memory",
    "matrix_to_pose_xyzw",
    "parse_urdf",
    "pose_error",
    "use_passive_waits",
]


def __getattr__(name: str):
    if name in _KINEMATICS:
        from . import kinematics

        return getattr(kinematics, name)
    if name == "use_passive_waits":
        from .threads import use_passive_waits

        return use_passive_waits
    if name == "keep_freed_memory":
        from .allocator import keep_freed_memory

        return keep_freed_memory
    raise AttributeError(f"module 'ros_torch_kin' has no attribute '{name}'")


def __dir__():
    return sorted(set(globals()) | set(__all__))
