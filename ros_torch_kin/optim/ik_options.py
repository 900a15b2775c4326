"""Settings and result of the batched inverse kinematics (:mod:`.inverse_kinematics`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from torch import Tensor


class CollisionModel(Protocol):
    """What :func:`~.inverse_kinematics.solve_ik` needs from a collision checker (duck-typed).

    in_collision: (N, J) joint positions -> (N,) bool, True where the robot collides.
    penalty: (N, J) -> (cost (N,), gradient (N, J)): a non-negative cost that is zero when clear of
    collision, and its gradient with respect to the joint positions (per rad / per m).
    """

    def in_collision(self, q: Tensor) -> Tensor: ...

    def penalty(self, q: Tensor) -> tuple[Tensor, Tensor]: ...


@dataclass(frozen=True)
class IKOptions:
    """How :func:`~.inverse_kinematics.solve_ik` solves.

    Success of a target: every link within ``position_tolerance`` (m, distance of the link origin
    to its target) and, unless ``position_only``, within ``orientation_tolerance`` (rad, angle of
    the rotation between link and target orientation), every joint within its limits, and, when a
    collision model is given, not in collision. The defaults (0.1 mm, 1e-4 rad ≈ 0.006°) are
    finer than any robot's repeatability and still about 100× above float32 round-off of FK.

    Each target is solved from ``seeds`` configurations at once (the given seeds, the preferred
    configuration if any, then the library configurations nearest to the target); a seed that
    stops making progress is replaced by the next library candidate, then by random ones. The
    call returns when every target has a solution, after ``max_iterations`` Levenberg–Marquardt
    iterations, or once ``time_budget`` seconds of wall clock have passed (checked every
    ``check_every`` iterations), whichever comes first: the time budget makes results depend on
    the machine's speed, so for reproducible results let ``max_iterations`` bind.
    """

    position_tolerance: float = 1e-4
    orientation_tolerance: float = 1e-4
    #: seeds per target solved side by side. ``None``: 4 for batches up to ``batch_rows`` / 4
    #: targets, fewer for larger ones (about ``batch_rows`` rows in all, at least 2 per target):
    #: a large batch is bound by arithmetic, where restarting the few seeds that stall beats
    #: iterating many side by side. Four suffice with library seeds and their restarts, and
    #: keep a single solve on the FK route for tiny batches (fewer operations per iteration)
    seeds: int | None = None
    batch_rows: int = 8192
    #: the random seeds are not drawn afresh: they are, per target, the configurations whose link
    #: poses are nearest to the target among ``seed_library`` random in-limit ones (made once per
    #: chain and links, then cached; far fewer iterations than blind seeds). 0: blind seeds
    seed_library: int = 4096
    #: restarts of each seed from the next nearest library configurations before random ones
    library_restarts: int = 4
    max_iterations: int = 200
    #: targets still unsolved after ``tail_after`` iterations are solved again with
    #: ``tail_seeds`` seeds each (their best configuration so far and untried library ones):
    #: the few hard ones, near singularities or limits, get the width a small batch has for free
    tail_after: int = 40
    tail_seeds: int = 16
    time_budget: float = 5.0
    #: only the link positions are targeted (orientation free)
    position_only: bool = False
    #: metres of position error per radian of orientation error in the least-squares cost
    #: (affects the path, not the tolerances)
    rotation_weight: float = 0.5
    #: Levenberg–Marquardt damping λ of (J Jᵀ + λ I) (residual units², m²): start, bounds, and
    #: the factors applied after an accepted (λ · decrease) and a rejected (λ · increase) step
    initial_damping: float = 1e-2
    min_damping: float = 1e-9
    max_damping: float = 1e3
    damping_decrease: float = 0.2
    damping_increase: float = 8.0
    #: 2: a joint that the step would take past its limit stops at the limit and the other
    #: joints solve for the remaining error (a second, smaller solve); 1: the step is clamped
    limit_passes: int = 2
    #: iterations between convergence checks (each check synchronises with the host)
    check_every: int = 2
    #: a seed is restarted from a random configuration when its error has not halved in
    #: ``stall_iterations`` iterations (seen at the checks), or after ``max_seed_iterations``
    #: iterations without converging
    stall_iterations: int = 6
    max_seed_iterations: int = 16
    #: a seed counts as converged at this fraction of the tolerances (the errors are computed in
    #: the chain's dtype; the margin keeps the reported success true under an independent check)
    convergence_margin: float = 0.5
    #: null-space pull towards ``preferred`` (fraction of the difference per iteration) and
    #: descent on the collision penalty (rad per unit of penalty gradient per iteration)
    preferred_gain: float = 0.2
    collision_gain: float = 1.0
    #: random seed of the seed and restart configurations: equal calls give equal results
    random_seed: int = 0

    def __post_init__(self):
        for name in ("position_tolerance", "orientation_tolerance", "time_budget", "rotation_weight",
                     "initial_damping", "min_damping", "max_damping"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if not (isinstance(self.seed_library, int) and self.seed_library >= 0):
            raise ValueError(f"seed_library must be a non-negative integer, got {self.seed_library!r}")
        if not (isinstance(self.library_restarts, int) and self.library_restarts >= 0):
            raise ValueError(f"library_restarts must be a non-negative integer, got {self.library_restarts!r}")
        for name in ("batch_rows", "max_iterations", "limit_passes", "tail_after", "tail_seeds", "check_every", "stall_iterations", "max_seed_iterations"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.seeds is not None and not (isinstance(self.seeds, int) and self.seeds >= 1):
            raise ValueError(f"seeds must be a positive integer or None, got {self.seeds!r}")
        if not 0 < self.damping_decrease < 1 < self.damping_increase:
            raise ValueError("damping_decrease must be in (0, 1) and damping_increase above 1")
        if not 0 < self.convergence_margin <= 1:
            raise ValueError(f"convergence_margin must be in (0, 1], got {self.convergence_margin!r}")
        if self.preferred_gain < 0 or self.collision_gain < 0:
            raise ValueError("preferred_gain and collision_gain must be non-negative")


@dataclass(frozen=True)
class IKResult:
    """Per target b of a batch of B: the best configuration found and how good it is.

    q: (B, J) joint positions (rad / m, ``chain.joint_names`` order), always within the joint
    limits; continuous joints wrapped to [-π, π]. Where ``success`` is False it is the seed with
    the smallest error found (or the preferred configuration's neighbourhood, see solve_ik).
    success: (B,) bool, see :class:`IKOptions`.
    position_error: (B,) m, orientation_error: (B,) rad: the largest over the target links
    (orientation 0 with ``position_only``), computed in the chain's dtype.
    iterations: (B,) int64 Levenberg–Marquardt iterations until the solution was found (or run).
    restarts: (B,) int64 seeds re-initialised for that target.
    solve_time: wall-clock seconds of the whole call.
    """

    q: Tensor
    success: Tensor
    position_error: Tensor
    orientation_error: Tensor
    iterations: Tensor
    restarts: Tensor
    solve_time: float
