"""The robot model a node serves: a chain plus where it came from. Immutable, so a request that
reads ``node.model`` once keeps a consistent chain while a new description is swapped in."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from ..collision import CollisionChecker, self_collision_pairs
from ..collision.robot_collision_model import robot_collision_model_from_urdf
from ..collision.tree_checker import TreeCollisionChecker
from ..collision.urdf_spheres import robot_spheres_from_urdf
from ..kinematics import Chain, default_device
from ..robots import bundled_urdf, bundled_urdf_path


@dataclass(frozen=True)
class CollisionOptions:
    """How the collision model is built (the node's collision parameters)."""

    #: build it at all (collision_checking)
    enabled: bool = True
    #: SRDF text whose <disable_collisions> pairs are not checked ('' for none)
    srdf: str = ""
    #: YAML file of user spheres (cuRobo's collision_spheres layout) overriding links it names
    spheres_file: str = ""
    #: directories that package:// mesh URIs are resolved in (besides ament_index)
    mesh_search_paths: tuple[str, ...] = ()
    #: random configurations sampled to find link pairs that are always in collision
    self_collision_samples: int = 1000
    #: what decides validity (collision_verdict): 'tight' (sphere trees a few mm from the
    #: meshes) or 'coarse' (the spheres the costs use); user spheres always decide themselves
    verdict: str = "tight"


@dataclass(frozen=True)
class ServedModel:
    chain: Chain
    urdf: str
    #: where the description came from, for GetRobotModel and the logs
    source: str
    #: wall-clock time it was applied, ns since the epoch
    loaded_at_ns: int
    #: the robot's spheres and self-collision pairs against an empty scene (None: collision
    #: checking is off); the node pairs it with its current scene per request. Its coarse
    #: spheres give the costs and gradients (and the verdict when ``verdict`` is None).
    collision: CollisionChecker | None = None
    #: the tight model that decides validity (collision_verdict 'tight'), or None
    verdict: TreeCollisionChecker | None = None
    #: how ``collision`` was built (to rebuild it when only the SRDF or a collision setting changes)
    collision_options: CollisionOptions = CollisionOptions()
    #: directory that relative mesh paths are resolved against (a URDF file's directory)
    base_dir: str | None = None
    #: wall-clock seconds its collision model took to build (0: none built); seconds on a robot's
    #: first start on a machine (nothing cached), about one after
    collision_build_seconds: float = 0.0

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
        collision = ""
        if self.collision is not None:
            spheres, pairs = self.collision.spheres, self.collision.self_pairs
            collision = (f", {spheres.num_spheres} collision spheres, {len(pairs.enabled)} self-collision "
                         "link pairs checked")
            if self.verdict is not None:
                collision += f", verdict on {self.verdict.spheres.num_spheres} sphere-tree leaves"
            collision += f", built in {self.collision_build_seconds:.1f} s"
        return (
            f"robot '{chain.name}' ({chain.num_dofs} DOFs, {chain.num_links} links{collision}) on "
            f"{chain.device} {str(chain.dtype).replace('torch.', '')}, from {self.source}"
        )

    @property
    def warnings(self) -> tuple[str, ...]:
        """What was tolerated while building: the URDF parser's and the collision model's."""
        collision = () if self.collision is None else self.collision.spheres.warnings + self.collision.self_pairs.warnings
        return self.chain.warnings + collision


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


def build_model(
    urdf: str,
    source: str,
    device: torch.device,
    dtype: torch.dtype,
    floating_joints: str,
    collision: CollisionOptions = CollisionOptions(),
    base_dir: str | None = None,
) -> ServedModel:
    """Parse and build the chain and, when enabled, the collision model (covering meshes is the
    slow part: call it off the executor). ValueError with the reason for a bad description."""
    chain = Chain.from_urdf(urdf, device=device, dtype=dtype, floating_joints=floating_joints)
    model = ServedModel(chain=chain, urdf=urdf, source=source, loaded_at_ns=time.time_ns(), base_dir=base_dir)
    return with_collision(model, collision)


def with_collision(model: ServedModel, options: CollisionOptions) -> ServedModel:
    """``model`` with its collision model (re)built for ``options`` (the chain is kept)."""
    if not options.enabled:
        return replace(model, collision=None, verdict=None, collision_options=options, collision_build_seconds=0.0)
    chain = model.chain
    began = time.perf_counter()
    if options.verdict == "tight" and not options.spheres_file:
        both = robot_collision_model_from_urdf(model.urdf, chain, srdf=options.srdf or None,
                                               search_dirs=options.mesh_search_paths, base_dir=model.base_dir,
                                               samples=options.self_collision_samples)
        return replace(model, collision=both.cost, verdict=both.verdict, collision_options=options,
                       collision_build_seconds=time.perf_counter() - began)
    spheres = robot_spheres_from_urdf(
        model.urdf, chain, search_dirs=options.mesh_search_paths, base_dir=model.base_dir,
        overrides=options.spheres_file or None,
    )
    pairs = self_collision_pairs(chain, spheres.to(chain.device, chain.dtype), srdf=options.srdf or None,
                                 samples=options.self_collision_samples)
    checker = CollisionChecker(chain, spheres, self_pairs=pairs)
    return replace(model, collision=checker, verdict=None, collision_options=options,
                   collision_build_seconds=time.perf_counter() - began)


def check_description_size(urdf: str, limit: int) -> None:
    """ValueError with the size and the limit when a description is above ``limit`` bytes (UTF-8)."""
    size = len(urdf) if urdf.isascii() else len(urdf.encode("utf-8"))
    if size > limit:
        raise ValueError(f"the description has {size:,} bytes, above max_description_bytes ({limit:,})")


def configured_description(robot_description: str, robot_description_file: str, bundled_robot: str):
    """(urdf, source, base directory for relative mesh paths or None) from the parameters in
    priority order, or None to wait for the topic.
    ValueError if a named file or bundled robot cannot be read."""
    if robot_description.strip():
        return robot_description, "parameter robot_description", None
    if robot_description_file:
        path = Path(robot_description_file).expanduser()
        try:
            return path.read_text(), f"file {path}", str(path.resolve().parent)
        except OSError as error:
            raise ValueError(f"robot_description_file '{path}' cannot be read: {error.strerror}") from None
    if bundled_robot:
        return bundled_urdf(bundled_robot), f"bundled robot '{bundled_robot}'", str(Path(bundled_urdf_path(bundled_robot)).parent)
    return None
