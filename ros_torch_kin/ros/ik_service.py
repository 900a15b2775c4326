"""~/compute_ik (ComputeIK): the batched IK of :mod:`ros_torch_kin.optim` over ROS.

Checks in numpy first (shapes, finiteness, bounds, names); the solve runs in the worker pool
(never on the executor thread: it iterates for up to its time budget). With avoid_collisions a
solution counts only when it keeps the node's collision_margin from the obstacles of the scene
the request started with and from the robot itself.
"""

from __future__ import annotations

import numpy as np
import torch

from ..collision import CollisionChecker
from ..kinematics import pose_xyzw_to_matrix
from ..optim.ik_options import IKOptions
from ..optim.inverse_kinematics import solve_ik
from . import convert
from .collision_services import require_checker
from .convert import RequestError
from .handlers import column_names
from .parameters import Settings
from .served_model import ServedModel
from .world_state import WorldState

#: Defaults of ComputeIK's zero fields (the message documents them).
DEFAULT_TOLERANCE = 1e-4
DEFAULT_TIME_BUDGET = 1.0
#: Bounds of the request's fields: tolerances (m or rad), seeds per target, time budget (s).
MAX_TOLERANCE = 1.0
MAX_SEEDS = 1024
MAX_TIME_BUDGET = 60.0


class ClearanceCheck:
    """A collision checker seen with a clearance margin: what :func:`solve_ik` calls. The
    verdict comes from ``verdict`` (the tight model, or the coarse checker itself), the penalty
    and its gradient from the coarse ``checker``."""

    def __init__(self, checker: CollisionChecker, margin: float, verdict=None):
        self.checker, self.margin = checker, margin
        self.verdict = checker if verdict is None else verdict

    def in_collision(self, q: torch.Tensor) -> torch.Tensor:
        return ~self.verdict.clear(q, self.margin)

    def penalty(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # a little beyond the margin, so the descent keeps solutions off the boundary
        return self.checker.penalty(q, self.margin + 0.01)


def serve_ik(model: ServedModel, settings: Settings, request, response, world: WorldState,
             current_positions: np.ndarray | None = None):
    """``current_positions``: the node's latest complete joint state (J,), the default seed."""
    chain = model.chain
    names = list(request.link_names) or ([settings.end_effector_link] if settings.end_effector_link else [])
    if not names:
        raise RequestError("link_names is empty and the node has no end_effector_link")
    links = convert.link_indices(chain, names)
    K = len(links)
    targets = convert.poses_from_msgs(request.targets, "targets")
    if targets.shape[0] == 0 or targets.shape[0] % K:
        raise RequestError(f"targets has {targets.shape[0]} poses; expected B x K with K = {K} "
                           f"({', '.join(names)}) and B >= 1, configuration-major")
    B = targets.shape[0] // K
    if B > settings.max_batch:
        raise RequestError(f"batch of {B} targets is above max_batch ({settings.max_batch})")
    options = _options(request, B)
    columns = convert.joint_columns(chain, request.joint_names)
    seed = _seed(chain, request, columns, B, current_positions)
    collision = None
    if request.avoid_collisions:
        collision = ClearanceCheck(require_checker(world), settings.collision_margin, world.verdict)
    T_target = pose_xyzw_to_matrix(convert.to_tensor(chain, targets)).view(B, K, 4, 4)
    seed_tensor = None if seed is None else convert.to_tensor(chain, seed)
    preferred = seed_tensor if (request.prefer_seed and seed_tensor is not None) else None
    with torch.no_grad():
        result = solve_ik(chain, links, T_target, options, seeds=seed_tensor, preferred=preferred, collision=collision)
    q = convert.to_numpy(result.q)
    solved = convert.to_numpy(result.success).astype(bool)
    response.batch_size = B
    response.joint_names = column_names(model, request)
    response.solutions = convert.pack(q if columns is None else q[:, columns])
    response.solved = solved.tolist()
    response.position_errors = convert.pack(convert.to_numpy(result.position_error))
    response.orientation_errors = convert.pack(convert.to_numpy(result.orientation_error))
    response.iterations = result.iterations.cpu().numpy().astype(np.uint32).tolist()
    response.success = True
    response.message = f"{int(solved.sum())} of {B} targets solved in {result.solve_time * 1e3:.1f} ms"
    return response


def _options(request, B: int) -> IKOptions:
    if request.num_seeds > MAX_SEEDS:
        raise RequestError(f"num_seeds = {request.num_seeds} is above {MAX_SEEDS}")
    return IKOptions(
        position_tolerance=convert.value_or_default(request.position_tolerance, DEFAULT_TOLERANCE, MAX_TOLERANCE, "position_tolerance"),
        orientation_tolerance=convert.value_or_default(request.orientation_tolerance, DEFAULT_TOLERANCE, MAX_TOLERANCE,
                                       "orientation_tolerance"),
        seeds=int(request.num_seeds) or None,
        time_budget=convert.value_or_default(request.time_budget, DEFAULT_TIME_BUDGET, MAX_TIME_BUDGET, "time_budget"),
        position_only=bool(request.position_only),
    )


def _seed(chain, request, columns, B: int, current_positions) -> np.ndarray | None:
    """(J,) or (B, J) float64 seed in chain order, or None."""
    values = convert.as_float_array(request.seed)
    J = chain.num_dofs
    if values.size == 0:
        return None if current_positions is None else np.asarray(current_positions, dtype=np.float64)
    if values.size not in (J, B * J):
        raise RequestError(f"seed has {values.size} values; expected J = {J} or B x J = {B * J}")
    names = list(request.joint_names) or list(chain.joint_names)
    convert.require_bounded(values, convert.MAX_JOINT_POSITION, "seed", "rad or m",
                            lambda i: f"joint '{names[i % J]}'")
    rows = values.reshape(-1, J)
    if columns is not None:
        ordered = np.empty_like(rows)
        ordered[:, columns] = rows
        rows = ordered
    return rows[0] if values.size == J else rows
