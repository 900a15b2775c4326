"""Batched inverse kinematics: Levenberg–Marquardt with restarts, for one or several links at once.

Problem: B targets, each a pose (or a position) of K links in the root frame. Every target is
solved from S seeds side by side; all B·S *rows* iterate in one batch, each row on its own:

1. Residual e (6K,): per link, position difference t − t* (m) and rotation vector of R R*ᵀ
   (rad, root frame; as :func:`~ros_torch_kin.kinematics.pose_error`), the rotation rows times
   ``rotation_weight``. Jacobian: the geometric Jacobian of each link's origin, weighted alike.
2. Step Δq = z − Jᵀ (J Jᵀ + λ I)⁻¹ (e + J z) (the equal form (JᵀJ + λI)⁻¹(λz − Jᵀe) when
   6K exceeds the number of joints), where z is the secondary motion (the null-space pull
   towards ``preferred`` and descent on a collision penalty; zero without them). Joints at a
   limit whose descent direction points outward are left out of the step (their Jacobian
   column is zeroed), and the new configuration is clamped into the limits: a projected step.
3. Adaptive damping per row: the step is taken if it lowers |e|²; then λ shrinks, else λ grows
   and the row tries again from where it was.

Seeds: the given ones, ``preferred``, then per target the configurations of a cached library of
random in-limit ones whose link poses are nearest to the target (one matrix product and a top-k;
far better starts than blind random ones). Every ``check_every`` iterations (the only host
synchronisations) rows within the tolerances solve their target (the nearest to ``preferred``
if several), the rows of solved targets leave the batch, and rows that stalled (no halving of
their error in ``stall_iterations`` iterations, or older than ``max_seed_iterations``) restart
from their next library candidate, then from random configurations, until every target is
solved or ``max_iterations`` or the ``time_budget`` (s) runs out. Only the joints that move a
target link take part; the others keep the preferred configuration, else the first given seed,
else the value nearest 0.
"""

from __future__ import annotations

import dataclasses
import math
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..kinematics import Chain
from ..kinematics.fk import world_transforms
from ..kinematics.fk_backward import cross, cross_summed
from .ik_options import CollisionModel, IKOptions, IKResult

#: seeds per target when the batch is small (see IKOptions.seeds), and the least for large ones
SMALL_BATCH_SEEDS = 4
LARGE_BATCH_SEEDS = 2


def solve_ik(
    chain: Chain,
    links: str | int | Sequence[str | int],
    targets: Tensor,
    options: IKOptions | None = None,
    seeds: Tensor | None = None,
    preferred: Tensor | None = None,
    collision: CollisionModel | None = None,
) -> IKResult:
    """Joint positions that put ``links`` at ``targets``, for a batch of targets.

    chain: the robot (any device and floating dtype; float32 is enough for 1e-4 m / rad).
    links: a link name or index (K = 1), or a sequence of K of them, all reached at once.
    targets: poses of the links in the root frame (m): (4, 4) or (B, 4, 4) for a single link,
    (K, 4, 4) or (B, K, 4, 4) for a sequence; with ``options.position_only`` positions
    (3,) / (B, 3) / (K, 3) / (B, K, 3) are accepted too (a pose's rotation is then ignored).
    seeds: optional starting configurations, (J,), (B, J) (e.g. the current state) or
    (B, S0, J); clamped into the limits; they take the first seed slots of each target.
    preferred: optional (J,) or (B, J) configuration: among the solutions found, the nearest
    (Euclidean, continuous joints wrapped) is returned; it is also a seed, the joints that do not
    move the links keep its values, and a null-space pull draws the seeds towards it.
    collision: optional object with ``in_collision(q (N, J)) -> (N,) bool`` and
    ``penalty(q) -> (cost (N,), gradient (N, J))`` (see :class:`CollisionModel`): a solution
    counts only when not in collision, and the penalty gradient steers seeds in the null space.

    Returns an :class:`IKResult` (batch of B; an unbatched target is a batch of one). Raises
    ValueError naming the argument for wrong shapes, non-finite values or unknown links.
    """
    options = IKOptions() if options is None else options
    if not isinstance(options, IKOptions):
        raise TypeError(f"options must be IKOptions, not {type(options).__name__}")
    start = time.perf_counter()
    problem = _Problem.build(chain, links, targets, options, seeds, preferred, collision)
    return _Solver(problem, start).run()


# ---------------------------------------------------------------------- the problem


@dataclass
class _Problem:
    """Everything fixed for one call, on the chain's device and dtype.

    B targets, K links, J DOFs of which A move a target link (``active``), M_a movable joints
    that move a target link. Targets are stored batch-innermost: positions (K, 3, B), rotations
    (K, 3, 3, B).
    """

    chain: Chain
    options: IKOptions
    link_indices: Tensor  # (K,)
    active: Tensor  # (A,) DOF indices
    joint_links: Tensor  # (M_a,) link index of each relevant movable joint
    joint_axis: Tensor  # (M_a, 3) in the joint's child link frame
    joint_revolute: Tensor  # (M_a, 1, 1)
    joint_prismatic: Tensor  # (M_a, 1, 1)
    joint_moves_link: Tensor  # (K, M_a, 1, 1): 1.0 where joint m moves target link k
    joint_to_active: Tensor | None  # (A, M_a) or None where it is the identity
    joint_lower: Tensor  # (J,) position limits, rounded inward to the chain's dtype
    joint_upper: Tensor
    lower: Tensor  # (A,) the same for the active DOFs
    upper: Tensor
    sample_lower: Tensor  # (A,) range of random seeds ([-π, π] for continuous joints)
    sample_upper: Tensor
    continuous: Tensor  # (J,) bool
    target_position: Tensor  # (K, 3, B)
    target_rotation: Tensor | None  # (K, 3, 3, B), None with position_only
    base: Tensor  # (B, J) values of the inactive joints
    given_seeds: Tensor | None  # (B, S0, J) within limits
    preferred: Tensor | None  # (B, J)
    collision: CollisionModel | None

    @property
    def num_targets(self) -> int:
        return self.base.shape[0]

    @property
    def num_links(self) -> int:
        return self.link_indices.shape[0]

    def subset(self, targets: Tensor, options: IKOptions, seeds: Tensor) -> "_Problem":
        """The problem of the targets at indices ``targets`` only, with other options, started
        from ``seeds`` (len(targets), J) (and ``preferred``, if any)."""

        def pick(t, dim=0):
            return None if t is None else t.index_select(dim, targets)

        return dataclasses.replace(
            self, options=options, target_position=pick(self.target_position, -1),
            target_rotation=pick(self.target_rotation, -1), base=pick(self.base),
            given_seeds=seeds.unsqueeze(1), preferred=pick(self.preferred),
        )

    @classmethod
    def build(cls, chain, links, targets, options, seeds, preferred, collision) -> "_Problem":
        if not isinstance(chain, Chain):
            raise TypeError(f"chain must be a Chain, not {type(chain).__name__}")
        single = isinstance(links, (str, int))
        link_list = [links] if single else list(links) if isinstance(links, Sequence) else None
        if not link_list:
            raise ValueError(f"links must be a link name or index or a non-empty sequence of them, got {links!r}")
        indices = []
        for link in link_list:
            try:
                indices.append(_link_index(chain, link))
            except ValueError as error:
                raise ValueError(f"links: {error}") from None
        if len(set(indices)) != len(indices):
            raise ValueError(f"links: each link may be targeted once, got {link_list!r}")
        K, J = len(indices), chain.num_dofs
        position, rotation = _parse_targets(chain, targets, K, single, options.position_only)
        B = position.shape[0]
        device, dtype = chain.device, chain.dtype

        link_indices = torch.tensor(indices, dtype=torch.int64, device=device)
        moves = chain.ancestor_mask[:, link_indices].any(1)  # (J,)
        active = moves.nonzero().squeeze(1)
        joint_links_all = _as_index(chain.plan.joint_links, device)
        relevant = (chain.joint_subtree_mask[:, link_indices] > 0).any(1)  # (M,)
        relevant_joints = relevant.nonzero().squeeze(1)
        joint_to_active = chain.joint_to_dof[active][:, relevant_joints]  # (A, M_a)
        if joint_to_active.shape[0] == joint_to_active.shape[1] and torch.equal(
            joint_to_active, torch.eye(joint_to_active.shape[0], dtype=dtype, device=device)
        ):
            joint_to_active = None
        moves_link = chain.joint_subtree_mask[relevant_joints][:, link_indices].mT  # (K, M_a)

        continuous = ~(torch.isfinite(chain.lower_limits) & torch.isfinite(chain.upper_limits))
        lower, upper = _inward_limits(chain)
        sample_lower = torch.where(continuous, torch.full_like(lower, -math.pi), lower)
        sample_upper = torch.where(continuous, torch.full_like(upper, math.pi), upper)

        def clamp(q):
            return torch.maximum(torch.minimum(q, upper), lower)

        given = _parse_configurations(chain, seeds, "seeds", B, allow_seed_axis=True)
        preferred_q = _parse_configurations(chain, preferred, "preferred", B)
        if given is not None:
            given = clamp(given)
        if preferred_q is not None:
            preferred_q = clamp(preferred_q)
            base = preferred_q
        elif given is not None:
            base = given[:, 0]
        else:
            base = clamp(torch.zeros(B, J, dtype=dtype, device=device))
        if collision is not None and not (callable(getattr(collision, "in_collision", None))
                                          and callable(getattr(collision, "penalty", None))):
            raise ValueError("collision must have in_collision(q) and penalty(q) methods")

        return cls(
            chain=chain, options=options, link_indices=link_indices, active=active,
            joint_links=joint_links_all[relevant_joints],
            joint_axis=chain.joint_axis[relevant_joints],
            joint_revolute=chain.joint_is_revolute[relevant_joints],
            joint_prismatic=chain.joint_is_prismatic[relevant_joints],
            joint_moves_link=moves_link.reshape(K, -1, 1, 1),
            joint_to_active=joint_to_active,
            joint_lower=lower, joint_upper=upper, lower=lower[active], upper=upper[active],
            sample_lower=sample_lower[active], sample_upper=sample_upper[active],
            continuous=continuous,
            target_position=position.permute(1, 2, 0).contiguous(),
            target_rotation=None if rotation is None else rotation.permute(1, 2, 3, 0).contiguous(),
            base=base.contiguous(), given_seeds=given, preferred=preferred_q, collision=collision,
        )


def _inward_limits(chain: Chain) -> tuple[Tensor, Tensor]:
    """(J,) lower and upper position limits in the chain's dtype, rounded towards the inside of
    the URDF's (float64) limits, so a configuration clamped to them is within the URDF limits
    exactly, whatever the precision it is checked in."""
    dofs = chain.description.dof_joints
    exact = [torch.tensor([getattr(j, name) for j in dofs], dtype=torch.float64, device=chain.device)
             for name in ("lower", "upper")]
    rounded = [limit.to(chain.dtype) for limit in exact]
    lower = torch.where(rounded[0].double() < exact[0], torch.nextafter(rounded[0], torch.full_like(rounded[0], math.inf)), rounded[0])
    upper = torch.where(rounded[1].double() > exact[1], torch.nextafter(rounded[1], torch.full_like(rounded[1], -math.inf)), rounded[1])
    return lower, upper


def _link_index(chain: Chain, link) -> int:
    if isinstance(link, str):
        return chain.link_index(link)
    if isinstance(link, int) and not isinstance(link, bool) and -chain.num_links <= link < chain.num_links:
        return link % chain.num_links
    raise ValueError(f"link {link!r} is neither a link name nor an index below {chain.num_links}")


def _as_index(index, device) -> Tensor:
    """A chain plan's index (a slice or an index tensor) as an index tensor."""
    if isinstance(index, slice):
        return torch.arange(index.start, index.stop, device=device)
    return index


def _parse_targets(chain: Chain, targets, K: int, single: bool, position_only: bool):
    """-> positions (B, K, 3) and rotations (B, K, 3, 3) (None with position_only)."""
    if not isinstance(targets, Tensor):
        try:
            targets = torch.as_tensor(targets)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"targets must be a tensor, not {type(targets).__name__}") from None
    targets = targets.to(device=chain.device, dtype=chain.dtype)
    link_axis = () if single else (K,)
    poses = targets.shape[-2:] == (4, 4) and targets.dim() in (2 + len(link_axis), 3 + len(link_axis))
    points = targets.dim() in (1 + len(link_axis), 2 + len(link_axis)) and targets.shape[-1] == 3
    if poses and targets.shape[targets.dim() - 2 - len(link_axis):-2] != link_axis:
        poses = False
    if points and targets.shape[targets.dim() - 1 - len(link_axis):-1] != link_axis:
        points = False
    expected = " or ".join(
        f"({', '.join(['B', *map(str, link_axis), *tail])})" for tail in ((["4", "4"],) + ((["3"],) if position_only else ()))
    )
    if not poses and not (points and position_only):
        hint = " (positions need options.position_only=True)" if points else ""
        raise ValueError(f"targets must have shape {expected} for {K} link(s), got {tuple(targets.shape)}{hint}")
    if not torch.isfinite(targets).all():
        raise ValueError("targets contain non-finite values (nan or inf)")
    if poses:
        batched = targets.dim() == 3 + len(link_axis)
        T = (targets if batched else targets.unsqueeze(0)).reshape(-1, K, 4, 4)
        rotation = T[..., :3, :3]
        orthonormal = rotation @ rotation.mT - torch.eye(3, dtype=T.dtype, device=T.device)
        if (orthonormal.abs() > 1e-3).any() or (torch.linalg.det(rotation) < 0).any():
            raise ValueError("targets: the rotation parts must be rotation matrices (orthonormal, det +1)")
        return T[..., :3, 3], (None if position_only else rotation)
    batched = targets.dim() == 2 + len(link_axis)
    return (targets if batched else targets.unsqueeze(0)).reshape(-1, K, 3), None


def _parse_configurations(chain: Chain, q, name: str, B: int, allow_seed_axis: bool = False):
    """(J,) / (B, J) [/ (B, S0, J)] -> (B, J) [(B, S0, J)], or None."""
    if q is None:
        return None
    if not isinstance(q, Tensor):
        raise ValueError(f"{name} must be a tensor, not {type(q).__name__}")
    J = chain.num_dofs
    shapes = [f"({J},)", f"({B}, {J})"] + ([f"({B}, S, {J})"] if allow_seed_axis else [])
    ok = q.dim() >= 1 and q.shape[-1] == J and (
        q.dim() == 1 or (q.dim() == 2 and q.shape[0] == B) or (allow_seed_axis and q.dim() == 3 and q.shape[0] == B)
    )
    if not ok:
        raise ValueError(f"{name} must have shape {' or '.join(shapes)} for {B} target(s), got {tuple(q.shape)}")
    q = q.to(device=chain.device, dtype=chain.dtype)
    if not torch.isfinite(q).all():
        raise ValueError(f"{name} contains non-finite values (nan or inf)")
    q = q.expand(B, J) if q.dim() == 1 else q
    if allow_seed_axis and q.dim() == 2:
        q = q.unsqueeze(1)
    return q


# ---------------------------------------------------------------------- the solver


class _Rows:
    """The state of the N rows (seeds) in the batch; tensors have the row as first dimension,
    except the targets, which are batch-innermost (see _Problem)."""

    def __init__(self, **tensors):
        self.__dict__.update(tensors)

    def select(self, keep: Tensor) -> None:
        for name, value in list(self.__dict__.items()):
            if isinstance(value, Tensor):
                self.__dict__[name] = value.index_select(value.dim() - 1 if name.startswith("target_") else 0, keep)


class _Solver:
    """One call's iterations: the rows (see _Rows) and, per target, the answer so far (best_q
    (B, J), best_cost (B,) — 0 once solved —, solved, iterations, restarts). ``start``: the
    perf_counter time the call began (the time budget counts from it)."""

    def __init__(self, problem: _Problem, start: float):
        self.problem, self.start = problem, start
        options, chain = problem.options, problem.chain
        self.options, self.chain = options, chain
        B, K = problem.num_targets, problem.num_links
        device, dtype = chain.device, chain.dtype
        self.generator = torch.Generator(device=device).manual_seed(options.random_seed)
        given = 0 if problem.given_seeds is None else problem.given_seeds.shape[1]
        S = options.seeds or max(LARGE_BATCH_SEEDS, min(SMALL_BATCH_SEEDS, options.batch_rows // max(B, 1)))
        self.seeds = max(S, given + (problem.preferred is not None))
        self.rows_per_link = 3 if problem.target_rotation is None else 6
        weights = torch.ones(self.rows_per_link, dtype=dtype, device=device)
        weights[3:] = options.rotation_weight
        self.residual_weights = weights.repeat(K)  # (R,)
        self.thresholds = (options.convergence_margin * options.position_tolerance,
                           options.convergence_margin * options.orientation_tolerance)
        # per target: the answer so far
        self.best_q = problem.base.clone()
        self.best_cost = torch.full((B,), math.inf, dtype=dtype, device=device)
        self.solved = torch.zeros(B, dtype=torch.bool, device=device)
        self.iterations = torch.zeros(B, dtype=torch.int64, device=device)
        self.restarts = torch.zeros(B, dtype=torch.int64, device=device)

    # ------------------------------------------------------------------ rows
    def initial_rows(self, library_offset: int = 0) -> _Rows:
        problem, S = self.problem, self.seeds
        B = problem.num_targets
        target = torch.arange(B, device=self.chain.device).repeat_interleave(S)  # (N,)
        q = problem.base.repeat_interleave(S, dim=0)  # (N, J)
        slots = q.view(B, S, -1)
        given = (problem.preferred is not None) + (0 if problem.given_seeds is None else problem.given_seeds.shape[1])
        # library candidates: the S - given nearest start, the next ones wait for restarts
        count = S * (1 + self.options.library_restarts)
        self.candidates = self.nearest_seeds(library_offset + count)[:, library_offset:]
        if given < S:
            slots[:, given:, problem.active] = self.candidates[:, : S - given]
        first = 0
        if problem.preferred is not None:
            slots[:, 0] = problem.preferred
            first = 1
        if problem.given_seeds is not None:
            slots[:, first : first + problem.given_seeds.shape[1]] = problem.given_seeds
        N = q.shape[0]
        dtype, device = q.dtype, q.device
        rows = _Rows(
            target=target, q=q, fresh=torch.zeros(N, dtype=torch.bool, device=device),
            damping=torch.full((N,), self.options.initial_damping, dtype=dtype, device=device),
            accepted=torch.ones(N, dtype=torch.bool, device=device),
            cost_at_check=torch.full((N,), math.inf, dtype=dtype, device=device),
            stalled=torch.zeros(N, dtype=torch.int64, device=device),
            age=torch.zeros(N, dtype=torch.int64, device=device),
            # the next library candidate of each row: its slot, then every S-th one
            next_candidate=torch.arange(N, device=device) % S + (S - given),
            target_position=problem.target_position.repeat_interleave(S, dim=-1),
            target_rotation=None if problem.target_rotation is None else problem.target_rotation.repeat_interleave(S, dim=-1),
        )
        rows.residual, rows.jacobian = self.evaluate(q, rows)  # the seeds' errors (not an iteration)
        rows.cost = (rows.residual * rows.residual).sum(-1)
        if problem.preferred is not None:
            rows.preferred = problem.preferred.repeat_interleave(S, dim=0)
        return rows

    def nearest_seeds(self, count: int) -> Tensor | None:
        """(B, count, A) active joint values: per target, the configurations of the seed library
        whose link poses are nearest to the target, nearest first (random ones without a
        library)."""
        p, o = self.problem, self.options
        B = p.num_targets
        if o.seed_library < count:
            return self.random_active(B * count).view(B, count, -1)
        library_q, features = _seed_library(self, o.seed_library)
        # nearest = smallest Σ_k |t_k − t*_k|² + w² (3 − tr R_k R*_kᵀ), as one product with the
        # library's features (p, vec R, Σ|p|²): the terms that do not depend on the entry drop out
        K = p.num_links
        query = [-2.0 * p.target_position.permute(2, 0, 1).reshape(B, 3 * K)]
        if p.target_rotation is not None:
            query.append(-(o.rotation_weight**2) * p.target_rotation.permute(3, 0, 1, 2).reshape(B, 9 * K))
        query.append(p.target_position.new_ones(B, 1))
        query = torch.cat(query, dim=1)
        chunk = max(1, (1 << 22) // features.shape[1])  # about 16 MB of distances at a time
        picks = [torch.topk(_product(query[start : start + chunk], features), count, dim=1, largest=False).indices
                 for start in range(0, B, chunk)]
        return library_q[torch.cat(picks)]  # (B, count, A)

    def random_active(self, n: int) -> Tensor:
        p = self.problem
        u = torch.rand(n, p.active.shape[0], generator=self.generator, dtype=self.chain.dtype, device=self.chain.device)
        return p.sample_lower + u * (p.sample_upper - p.sample_lower)

    # ------------------------------------------------------------------ residual and Jacobian
    def evaluate(self, q: Tensor, rows: _Rows) -> tuple[Tensor, Tensor]:
        """(N, J) -> weighted residual (N, R) and weighted Jacobian (N, R, A)."""
        p, K = self.problem, self.problem.num_links
        world = world_transforms(self.chain, q)  # (L, 4, 4, N)
        T = world.index_select(0, p.link_indices)  # (K, 4, 4, N)
        position = T[:, :3, 3]  # (K, 3, N)
        parts = [position - rows.target_position]
        if rows.target_rotation is not None:
            parts.append(_rotation_residual(T[:, :3, :3], rows.target_rotation))
        T_joint = world.index_select(0, p.joint_links)[:, :3]  # (M_a, 3, 4, N)
        axis = (T_joint[:, :, :3] * p.joint_axis.view(-1, 1, 3, 1)).sum(2)  # (M_a, 3, N)
        lever = position.unsqueeze(1) - T_joint[:, :, 3].unsqueeze(0)  # (K, M_a, 3, N)
        M_a, N = axis.shape[0], q.shape[0]
        linear = cross(axis.expand(K, M_a, 3, N).reshape(K * M_a, 3, N), lever.reshape(K * M_a, 3, N))
        linear = p.joint_revolute * linear.view(K, M_a, 3, N) + p.joint_prismatic * axis
        columns = [linear]
        if rows.target_rotation is not None:
            columns.append((p.joint_revolute * axis).expand(K, M_a, 3, N))
        columns = torch.cat(columns, dim=2) * p.joint_moves_link  # (K, M_a, r, N)
        if p.joint_to_active is not None:
            columns = (p.joint_to_active @ columns.reshape(K, M_a, -1)).view(K, -1, self.rows_per_link, N)
        jacobian = columns.permute(3, 0, 2, 1).reshape(N, -1, columns.shape[1])  # (N, R, A)
        residual = torch.cat(parts, dim=1).permute(2, 0, 1).reshape(N, -1)  # (N, R)
        w = self.residual_weights
        return residual * w, jacobian * w.unsqueeze(-1)

    def errors(self, residual: Tensor) -> tuple[Tensor, Tensor]:
        """Weighted residuals (N, R) -> largest position (m) and orientation (rad) error over
        the links, (N,) each."""
        per_link = residual.view(residual.shape[0], -1, self.rows_per_link)
        position = per_link[..., :3].norm(dim=-1).amax(-1)
        if self.rows_per_link == 3:
            return position, torch.zeros_like(position)
        return position, per_link[..., 3:].norm(dim=-1).amax(-1) / self.options.rotation_weight

    # ------------------------------------------------------------------ one iteration
    def secondary_motion(self, rows: _Rows) -> Tensor | None:
        """(N, A) joint motion of the secondary objectives, or None without any."""
        p, o = self.problem, self.options
        motion = None
        if p.preferred is not None and o.preferred_gain > 0:
            difference = _wrap_difference(rows.preferred - rows.q, p.continuous)
            motion = o.preferred_gain * difference[:, p.active]
        if p.collision is not None and o.collision_gain > 0:
            _, gradient = p.collision.penalty(rows.q)
            push = -o.collision_gain * gradient.to(rows.q.dtype)[:, p.active]
            motion = push if motion is None else motion + push
        if motion is not None:
            motion = motion * (rows.accepted | rows.fresh).unsqueeze(1).to(motion.dtype)
        return motion

    def iterate(self, rows: _Rows) -> None:
        p, o = self.problem, self.options
        q_active = rows.q[:, p.active]
        e, Jw = rows.residual, rows.jacobian
        gradient = (Jw.mT @ e.unsqueeze(-1)).squeeze(-1)  # (N, A)
        # joints at a limit that the descent direction pushes outward stay put
        free = ~(((q_active <= p.lower) & (gradient > 0)) | ((q_active >= p.upper) & (gradient < 0)))
        z = self.secondary_motion(rows)
        step = _damped_step(Jw * free.unsqueeze(1).to(Jw.dtype), e, rows.damping, z)
        target = q_active + step
        past = (target < p.lower) | (target > p.upper)
        # (on a CPU a look at the flags costs less than the second pass it can save)
        if o.limit_passes > 1 and (self.chain.device.type != "cpu" or bool(past.any())):
            # joints the step would take past a limit stop there; the others solve for the rest
            to_limit = torch.where(past, torch.maximum(torch.minimum(target, p.upper), p.lower) - q_active, 0.0)
            moving = free & ~past
            e_after = e + (Jw @ to_limit.unsqueeze(-1)).squeeze(-1)
            z_free = None if z is None else z * moving.to(z.dtype)
            step = to_limit + _damped_step(Jw * moving.unsqueeze(1).to(Jw.dtype), e_after, rows.damping, z_free) * moving.to(step.dtype)
        trial_active = torch.maximum(torch.minimum(q_active + step, p.upper), p.lower)
        # restarted rows evaluate their new seed instead of a step
        trial_active = torch.where(rows.fresh.unsqueeze(1), q_active, trial_active)
        trial = rows.q.index_copy(1, p.active, trial_active)
        trial_residual, trial_jacobian = self.evaluate(trial, rows)
        trial_cost = (trial_residual * trial_residual).sum(-1)
        accept = (trial_cost < rows.cost) | rows.fresh
        if z is not None:  # a converged row may move along the null space while it stays converged
            position, orientation = self.errors(trial_residual)
            accept |= (position <= 0.5 * self.thresholds[0]) & (orientation <= 0.5 * self.thresholds[1])
        a1, a2 = accept.unsqueeze(1), accept.view(-1, 1, 1)
        rows.q = torch.where(a1, trial, rows.q)
        rows.residual = torch.where(a1, trial_residual, e)
        rows.jacobian = torch.where(a2, trial_jacobian, Jw)
        rows.cost = torch.where(accept, trial_cost, rows.cost)
        factor = torch.where(accept, o.damping_decrease, o.damping_increase)
        rows.damping = torch.where(rows.fresh, o.initial_damping, rows.damping * factor).clamp(o.min_damping, o.max_damping)
        rows.accepted = accept
        rows.fresh = torch.zeros_like(rows.fresh)
        rows.age += 1

    # ------------------------------------------------------------------ checks
    def check(self, rows: _Rows, iteration: int, steps: int) -> _Rows | None:
        """Record solutions, drop solved targets' rows, restart stalled rows. None: all done."""
        p, o = self.problem, self.options
        B = p.num_targets
        position, orientation = self.errors(rows.residual)
        converged = (position <= self.thresholds[0]) & (orientation <= self.thresholds[1])
        if p.collision is not None and bool(converged.any()):
            candidates = converged.nonzero().squeeze(1)
            clear = ~p.collision.in_collision(rows.q.index_select(0, candidates)).to(torch.bool)
            converged = torch.zeros_like(converged).index_put_((candidates,), clear)
        # the fallback answer of unsolved targets: their lowest cost so far
        lowest = torch.full((B,), math.inf, dtype=rows.cost.dtype, device=rows.cost.device)
        lowest = lowest.scatter_reduce(0, rows.target, rows.cost, "amin")
        better = (rows.cost == lowest[rows.target]) & (rows.cost < self.best_cost[rows.target])
        self.store(rows, better, lowest)
        if bool(converged.any()):
            if p.preferred is not None:
                key = _wrap_difference(rows.q - rows.preferred, p.continuous).norm(dim=-1)
            else:
                key = rows.cost
            key = torch.where(converged, key, torch.full_like(key, math.inf))
            nearest = torch.full((B,), math.inf, dtype=key.dtype, device=key.device).scatter_reduce(0, rows.target, key, "amin")
            chosen = converged & (key == nearest[rows.target])
            self.store(rows, chosen, rows.cost.new_zeros(B))  # best_cost 0: a solution is never replaced
            self.solved[rows.target[chosen]] = True
            self.iterations[rows.target[chosen]] = iteration
        keep = ~self.solved[rows.target]
        if not bool(keep.any()):
            return None
        if not bool(keep.all()):
            rows.select(keep.nonzero().squeeze(1))
        # restarts
        progress = rows.cost < 0.25 * rows.cost_at_check
        rows.stalled = torch.where(progress, 0, rows.stalled + steps)
        rows.cost_at_check = torch.where(progress, rows.cost, rows.cost_at_check)
        restart = (rows.stalled >= o.stall_iterations) | (rows.age >= o.max_seed_iterations) | (rows.damping >= o.max_damping)
        if bool(restart.any()):
            # restart from the next library candidate of the row, once they are used up at random
            C = self.candidates.shape[1]
            from_library = (rows.next_candidate < C).unsqueeze(1)
            candidate = self.candidates[rows.target, rows.next_candidate.clamp(max=C - 1)]
            new_active = torch.where(from_library, candidate, self.random_active(rows.q.shape[0]))
            fresh_active = torch.where(restart.unsqueeze(1), new_active, rows.q[:, p.active])
            rows.next_candidate = torch.where(restart, rows.next_candidate + self.seeds, rows.next_candidate)
            rows.q = rows.q.index_copy(1, p.active, fresh_active)
            rows.fresh = restart
            rows.cost = torch.where(restart, math.inf, rows.cost)
            rows.cost_at_check = torch.where(restart, math.inf, rows.cost_at_check)
            rows.stalled = torch.where(restart, 0, rows.stalled)
            rows.age = torch.where(restart, 0, rows.age)
            self.restarts.index_add_(0, rows.target, restart.to(torch.int64))
        return rows

    def store(self, rows: _Rows, mask: Tensor, cost_per_target: Tensor) -> None:
        """Copy the rows in ``mask`` into their targets' answers (either one where several tie)."""
        if not bool(mask.any()):
            return
        picked = mask.nonzero().squeeze(1)
        targets = rows.target[picked]
        self.best_q[targets] = rows.q[picked]
        self.best_cost[targets] = cost_per_target[targets]

    # ------------------------------------------------------------------ the loop
    def run(self) -> IKResult:
        o = self.options
        if self.problem.num_targets == 0:
            empty = self.best_q.new_zeros(0)
            return IKResult(q=self.best_q, success=self.solved, position_error=empty, orientation_error=empty,
                            iterations=self.iterations, restarts=self.restarts, solve_time=time.perf_counter() - self.start)
        tail = o.tail_seeds > self.seeds
        with torch.no_grad():
            iteration = self.solve(min(o.max_iterations, o.tail_after) if tail else o.max_iterations)
            if (tail and not bool(self.solved.all()) and iteration < o.max_iterations
                    and not self.out_of_time(self.step_time)):
                self.solve_tail(iteration)
            return self.result()

    #: wall time (s) of the latest iteration: the next one is expected to take as long
    step_time = 0.0

    def out_of_time(self, ahead: float = 0.0) -> bool:
        """Whether the time budget is spent, or will be ``ahead`` s from now."""
        return time.perf_counter() - self.start + ahead > self.options.time_budget

    def solve(self, max_iterations: int, library_offset: int = 0) -> int:
        """Iterate until every target is solved, ``max_iterations`` or the time budget; returns
        the iterations run. No iteration starts that would end past the budget (by the time the
        previous one took; the first by the seeding's time): the budget is checked before every
        iteration, not only at the checks every ``check_every`` iterations, so a loaded CPU (slower
        iterations) still returns in time."""
        o = self.options
        began = time.perf_counter()
        rows = self.initial_rows(library_offset)
        if self.step_time == 0.0:  # before any iteration: seeding costs about as much as one (more, measured)
            self.step_time = time.perf_counter() - began
        iteration = 0
        while True:
            steps = min(o.check_every, max_iterations - iteration)
            ran = 0
            for _ in range(steps):
                if self.out_of_time(self.step_time):
                    break
                began = time.perf_counter()
                self.iterate(rows)
                self.step_time = time.perf_counter() - began
                ran += 1
            iteration += ran
            rows = self.check(rows, iteration, ran)  # records what the iterations (or the seeds) reached
            if rows is None or iteration >= max_iterations or ran < steps or self.out_of_time(self.step_time):
                break
        self.iterations = torch.where(self.solved, self.iterations, iteration)
        return iteration

    def solve_tail(self, iteration: int) -> None:
        """The targets still unsolved after ``tail_after`` iterations (near singularities, near
        limits) again, with ``tail_seeds`` seeds each: their best configuration so far and library
        candidates not tried yet."""
        p, o = self.problem, self.options
        unsolved = (~self.solved).nonzero().squeeze(1)
        options = dataclasses.replace(o, seeds=o.tail_seeds, max_iterations=o.max_iterations - iteration,
                                      random_seed=o.random_seed + 1)
        tail = _Solver(p.subset(unsolved, options, self.best_q[unsolved]), self.start)
        tail.step_time = self.step_time
        tail.solve(options.max_iterations, library_offset=self.seeds * (1 + o.library_restarts))
        better = tail.solved | (tail.best_cost < self.best_cost[unsolved])
        self.best_q[unsolved] = torch.where(better.unsqueeze(1), tail.best_q, self.best_q[unsolved])
        self.best_cost[unsolved] = torch.where(better, tail.best_cost, self.best_cost[unsolved])
        self.solved[unsolved] = tail.solved
        self.iterations[unsolved] = iteration + tail.iterations
        self.restarts[unsolved] += tail.restarts + 1

    def result(self) -> IKResult:
        p = self.problem
        q = torch.where(p.continuous, _wrap(self.best_q), self.best_q)
        q = torch.maximum(torch.minimum(q, p.joint_upper), p.joint_lower)
        rows = _Rows(target_position=p.target_position, target_rotation=p.target_rotation)
        residual, _ = self.evaluate(q, rows)
        position, orientation = self.errors(residual)
        success = (position <= self.options.position_tolerance) & (orientation <= self.options.orientation_tolerance)
        if p.collision is not None:
            success &= ~p.collision.in_collision(q).to(torch.bool)
        return IKResult(
            q=q, success=success, position_error=position, orientation_error=orientation,
            iterations=self.iterations, restarts=self.restarts, solve_time=time.perf_counter() - self.start,
        )


def _product(a: Tensor, b: Tensor, serial_columns: int = 1024) -> Tensor:
    """a @ b for (m, k) and (k, n); for a few rows in pieces of ``serial_columns`` columns, small
    enough for a CPU to multiply on the calling thread (a thread pool's start can cost
    milliseconds on a busy machine, more than the product)."""
    if a.shape[0] > 8 or b.shape[1] <= serial_columns:
        return a @ b
    return torch.cat([a @ piece for piece in b.split(serial_columns, dim=1)], dim=1)


_SEED_LIBRARIES: "weakref.WeakKeyDictionary[Chain, dict]" = weakref.WeakKeyDictionary()


def _seed_library(solver: "_Solver", size: int) -> tuple[Tensor, Tensor]:
    """(size, A) random in-limit configurations of the active joints (the others at their
    defaults do not move the links) and (F, size) features of their link poses: per link the
    position and the row-major rotation, then Σ_k |t_k|² (see _Solver.nearest_seeds).

    Made once per chain, links, orientation weight and random seed (FK of ``size``
    configurations), then cached with the chain.
    """
    p, o = solver.problem, solver.options
    key = (tuple(p.link_indices.tolist()), p.target_rotation is None, size, o.rotation_weight, o.random_seed)
    cache = _SEED_LIBRARIES.setdefault(p.chain, {})
    if key not in cache:
        generator = torch.Generator(device=p.chain.device).manual_seed(o.random_seed + 1)
        u = torch.rand(size, p.active.shape[0], generator=generator, dtype=p.chain.dtype, device=p.chain.device)
        library_q = p.sample_lower + u * (p.sample_upper - p.sample_lower)
        q = torch.zeros(size, p.chain.num_dofs, dtype=p.chain.dtype, device=p.chain.device)
        q[:, p.active] = library_q
        T = world_transforms(p.chain, q).index_select(0, p.link_indices)  # (K, 4, 4, size)
        features = [T[:, :3, 3].reshape(-1, size)]
        if p.target_rotation is not None:
            features.append(T[:, :3, :3].reshape(-1, size))
        features.append((T[:, :3, 3] ** 2).sum((0, 1)).unsqueeze(0))
        cache[key] = (library_q, torch.cat(features).contiguous())
    return cache[key]


def _rotation_residual(R: Tensor, R_target: Tensor) -> Tensor:
    """(K, 3, 3, N) current and target rotations -> (K, 3, N) rotation vector of R R*ᵀ (rad).

    With M = R R*ᵀ = Σ_k r_k t_kᵀ (columns r_k of R, t_k of R*): the axis times sin θ is
    vee((M − Mᵀ)/2) = ½ Σ_k t_k × r_k and cos θ = (tr M − 1)/2 = (Σ R ⊙ R* − 1)/2, so
    θ = atan2(sin θ, cos θ) is accurate at every angle (near π the axis is ill-conditioned).
    """
    axis_sin = 0.5 * cross_summed(R_target, R)  # (K, 3, N)
    cos = 0.5 * ((R * R_target).sum((1, 2)) - 1.0)  # (K, N)
    sin = axis_sin.norm(dim=1)
    angle = torch.atan2(sin, cos)
    tiny = sin < 1e-7
    factor = torch.where(tiny, torch.ones_like(sin), angle / torch.where(tiny, torch.ones_like(sin), sin))
    return axis_sin * factor.unsqueeze(1)


def _damped_step(jacobian: Tensor, residual: Tensor, damping: Tensor, secondary: Tensor | None) -> Tensor:
    """The Levenberg–Marquardt step Δq minimising |e + J Δq|² + λ |Δq − z|² per row.

    jacobian (N, R, A), residual (N, R), damping λ (N,), secondary motion z (N, A) or None.
    Δq = z − Jᵀ (J Jᵀ + λ I)⁻¹ (e + J z) when R ≤ A (the R × R system), else the equal
    (JᵀJ + λ I)⁻¹ (λ z − Jᵀ e) (the A × A one): the smaller system is solved.
    """
    R, A = jacobian.shape[1], jacobian.shape[2]
    eye = torch.eye(min(R, A), dtype=jacobian.dtype, device=jacobian.device)
    if R <= A:
        system = torch.baddbmm(damping.view(-1, 1, 1) * eye, jacobian, jacobian.mT)
        rhs = residual if secondary is None else residual + (jacobian @ secondary.unsqueeze(-1)).squeeze(-1)
        step = -(jacobian.mT @ _solve_positive_definite(system, rhs.unsqueeze(-1))).squeeze(-1)
        return step if secondary is None else step + secondary
    system = torch.baddbmm(damping.view(-1, 1, 1) * eye, jacobian.mT, jacobian)
    rhs = -(jacobian.mT @ residual.unsqueeze(-1)).squeeze(-1)
    if secondary is not None:
        rhs = rhs + damping.unsqueeze(1) * secondary
    return _solve_positive_definite(system, rhs.unsqueeze(-1)).squeeze(-1)


#: up to this many systems, _solve_positive_definite eliminates with elementwise operations
SMALL_SYSTEMS = 64


def _solve_positive_definite(system: Tensor, rhs: Tensor) -> Tensor:
    """(N, n, n) symmetric positive definite, (N, n, 1) -> (N, n, 1) solution, without an error
    check (no host sync).

    Up to SMALL_SYSTEMS systems by Gauss–Jordan elimination without pivoting (stable for positive
    definite matrices): n rounds of three elementwise operations on small tensors, which a CPU
    runs on the calling thread. LAPACK's batched Cholesky (and LU) start the thread pool for any
    batch; on a busy machine each such call can wait milliseconds for a second thread. Larger
    batches use Cholesky, where that cost is amortised.
    """
    N, n = system.shape[0], system.shape[-1]
    if N > SMALL_SYSTEMS:
        return torch.cholesky_solve(rhs, torch.linalg.cholesky_ex(system)[0])
    augmented = torch.cat((system, rhs), dim=-1)  # (N, n, n + 1)
    for k in range(n):
        pivot_row = augmented[:, k : k + 1] / augmented[:, k : k + 1, k : k + 1]  # (N, 1, n + 1)
        augmented = torch.addcmul(augmented, augmented[:, :, k : k + 1], pivot_row, value=-1.0)
        augmented[:, k : k + 1] = pivot_row
    return augmented[:, :, n:]


def _wrap(q: Tensor) -> Tensor:
    """Angles wrapped to [-π, π]."""
    return torch.remainder(q + math.pi, 2 * math.pi) - math.pi


def _wrap_difference(difference: Tensor, continuous: Tensor) -> Tensor:
    """Joint differences (..., J) with the continuous joints' wrapped to [-π, π]."""
    return torch.where(continuous, _wrap(difference), difference)
