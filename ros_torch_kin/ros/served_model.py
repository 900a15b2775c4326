"""The robot model a node serves: a chain plus where it came from. Immutable, so a request that
reads ``node.model`` once keeps a consistent chain while a new description is swapped in."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from ..kinematics import Chain, default_device
from ..robots import bundled_urdf


@dataclass(frozen=True)
class ServedModel:
    chain: Chain
    urdf: str
    #: where the description came from, for GetRobotModel and the logs
    source: str
    #: wall-clock time it was applied, ns since the epoch
    loaded_at_ns: int

    @cached_property
    def lower_limits(self) -> np.ndarray:
        """(J,) lower position limits in float64 as the URDF gives them (the chain may be float32)."""
        return np.array([j.lower for j in self.chain.description.dof_joints], dtype=np.float64)

    @cached_property
    def upper_limits(self) -> np.ndarray:
        """(J,) upper position limits in float64 as the URDF gives them."""
        return np.array([j.upper for j in self.chain.description.dof_joints], dtype=np.float64)

    def summary(self) -> str:
        chain = self.chain
        return (
            f"robot '{chain.name}' ({chain.num_dofs} DOFs, {chain.num_links} links) on "
            f"{chain.device} {str(chain.dtype).replace('torch.', '')}, from {self.source}"
        )


def resolve_device(text: str) -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> a usable device; ValueError with the reason if not."""
    if text == "auto":
        return default_device()
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not '{text}'") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device '{text}' was asked for but torch sees no CUDA device")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device '{text}' does not exist ({torch.cuda.device_count()} CUDA devices)")
    elif device.type != "cpu":
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not '{text}'")
    return device


def resolve_dtype(text: str) -> torch.dtype:
    if text not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, not '{text}'")
    return getattr(torch, text)


def build_model(urdf: str, source: str, device: torch.device, dtype: torch.dtype, floating_joints: str) -> ServedModel:
    """Parse and build; ValueError with the parser's reason for a bad description."""
    chain = Chain.from_urdf(urdf, device=device, dtype=dtype, floating_joints=floating_joints)
    return ServedModel(chain=chain, urdf=urdf, source=source, loaded_at_ns=time.time_ns())


def check_description_size(urdf: str, limit: int) -> None:
    """ValueError with the size and the limit when a description is above ``limit`` bytes (UTF-8)."""
    size = len(urdf) if urdf.isascii() else len(urdf.encode("utf-8"))
    if size > limit:
        raise ValueError(f"the description has {size:,} bytes, above max_description_bytes ({limit:,})")


def configured_description(robot_description: str, robot_description_file: str, bundled_robot: str):
    """(urdf, source) from the parameters in priority order, or None to wait for the topic.
    ValueError if a named file or bundled robot cannot be read."""
    if robot_description.strip():
        return robot_description, "parameter robot_description"
    if robot_description_file:
        path = Path(robot_description_file).expanduser()
        try:
            return path.read_text(), f"file {path}"
        except OSError as error:
            raise ValueError(f"robot_description_file '{path}' cannot be read: {error.strerror}") from None
    if bundled_robot:
        return bundled_urdf(bundled_robot), f"bundled robot '{bundled_robot}'"
    return None
