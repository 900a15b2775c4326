"""Checking whole motions on the validity model: every waypoint and everything between them.

The motion is the piecewise-linear joint path through the waypoints (what a controller that
interpolates linearly between the stamped waypoints follows; the time parameterisation keeps the
path). Two requirements, as MoveIt and cuRobo users know them:

* *validity*: the tight model finds no contact anywhere along the motion (distance ≥
  ``validity_margin``, default 0);
* *clearance*: the distance to the world stays ≥ ``clearance`` (m), except within the *approach*
  to a start or a goal that is itself closer than the clearance (a grasp is): there only validity
  is required. The approach is the first (last) ``approach`` fraction of the segments. Self pairs
  need validity only (a robot's own links may pass close, as in MoveIt's default padding of 0).

Swept check. Along a piece q(τ) = q_a + τ Δq no sphere centre moves more than
``D = max_s Σ_k |Δq_k| G[k, s]`` (G: each centre's speed per unit of DOF k, from
:func:`.sphere_sweep.sphere_speed_bounds`, which needs no FK). The model's distances come in
*columns*, each with its own speed: with the tight model one per link (that link's spheres against
the world: they change by at most that link's D) and one per enabled self pair (only the joints
that move one link of the pair and not the other change its distance: a joint that moves both
moves them rigidly together), so a link that stays still next to an obstacle (a base on its
table) or a pair that the wrist keeps close costs nothing while the rest of the arm moves; with a
model without columns, the world distance (changing by D) and the self distance (by 2D). A column
is then at least ``min(d₀, d₁, (d₀ + d₁ − rate) / 2)`` along a piece whose ends are d₀ and d₁
away and along which it changes by at most ``rate``: the piece's *bound*. A segment whose bound is
short of its requirement is cut into pieces along which every column changes by at most its
ends' slack (their distance beyond the requirement: a piece keeps it if its inner distances stay
within half that of its ends'), never more pieces than pieces of sphere motion ``resolution``
would give; their distances are computed in one batch, and pieces still short while both ends
meet it are cut into 4 again, until a piece is as short as ``resolution / 4^(refinements − 1)``
(``refinements`` = 4 by default: the approach to a goal a fraction of a millimetre from an
object, as a grasp's is, needs pieces that short; only the pieces still short are cut, so it
costs little elsewhere). A motion is *clear* when every piece's bound meets its requirement; a
checked configuration closer than its requirement makes it *colliding*; anything else is
*undecided* and counted as not clear (the verdict is conservative).

World and self distances are two tracks, each with its own requirement, from the model's
``distance_columns(q, world_threshold, self_threshold)`` (or ``world_and_self_distance``): exact
wherever they are below the thresholds (the requirement plus the resolution), which is all the
bounds need; beyond them a lower bound, far beyond where the model can tell cheaply (the tight
model's root and coarse spheres), which is what lets far pieces be long.
"""

from __future__ import annotations

import math
import time
import weakref

import torch
from torch import Tensor

from .sphere_sweep import MotionCheck, sphere_speed_bounds

#: The largest threshold (m; the requirement plus the resolution) at which a check asks its model
#: for distance columns: the tight model's, as its branch and bound begins
#: (:data:`~ros_torch_kin.collision.tree_checker.NEAREST_ABOVE`); above it, the world and self minima.
COLUMNS_UP_TO = 0.05
#: A tight model's leaves that its spheres put closer than the validity margin plus this (m) are
#: measured by their triangles in a motion check (:meth:`~ros_torch_kin.collision.TreeCollisionChecker.with_exact_window`):
#: an approach to a goal that its spheres put in contact but its meshes do not (a grasp's) can
#: then be certified. On 28 such random MBM Panda goals (world grazes, coal 0.03-18 mm free,
#: the spheres −0.1 to −2.6 mm) 0 / 9 / 26 / 24 / 24 were planned with none / 0 / 1 / 2 / 4 mm,
#: none colliding under coal; the checks of the first 30 MBM problems per family cost ~1.5× /
#: ~2× / ~5× with 1 / 2 / 4 mm (ad hoc, BENCHMARKS.md's notes), so the planner asks for it only
#: where a start or goal is within it by its spheres (:meth:`MotionValidator.with_exact_window`).
EXACT_WINDOW = 0.001
#: Refinement levels of a check with the exact window (:meth:`MotionValidator.with_exact_window`):
#: its finest pieces resolution / 4^5 (~4 µm of sphere motion) instead of / 4^3 (~62 µm), so the
#: approach to a goal 10-50 µm from contact can be certified: of the MBM Panda goals drawn by
#: coal that close (bench/grazing_goal_benchmark.py), three at 12-39 µm failed with 4 levels even
#: with a 10 s budget and were planned in 0.24-1.06 s with 6 (ad hoc). Only pieces still short
#: are cut again; asked of every check, the MBM Panda's first 30 per family ran 0-50 % slower in
#: one A/B (ad hoc), so only the exact window asks it.
GRAZING_REFINEMENTS = 6
#: Configurations of the first query of a check that might not end by its deadline
#: (:meth:`MotionValidator.check`), drawn across the batch: it measures the rate the next ones
#: are sized by, so a check runs past its deadline by about one such query (the Fetch's
#: configurations deep in collision: ~8 ms each, ~130 ms).
FIRST_BLOCK = 16
#: Seconds per configuration assumed of a slow model (6× the MBM UR5's tight one): a query that
#: would end before the deadline even at this rate is not split (the Panda's checks stay one query).
SLOW_RATE = 1e-3
#: Queries of at least this many configurations measure a validator's rate (smaller ones are
#: mostly a call's fixed cost).
RATE_FROM = 64
#: How much slower than the slowest seen a batch may be: one query is made only where it ends in
#: time even so (the Fetch's failed seeds cost ~4× the ones checked first in the same call).
RATE_SPREAD = 4.0


class MotionValidator:
    """Checks motions (N, T, J) against a collision model with ``min_distance(q, threshold)``
    (a :class:`~ros_torch_kin.collision.TreeCollisionChecker` or a ``CollisionChecker``).

    clearance (m): required along the motion outside the approaches; validity_margin (m): the
    least distance anywhere; resolution (m): the most any pair's distance can change between two
    checked configurations of a piece where its ends' slack does not allow longer pieces (see the
    module docstring); approach: fraction of the segments at each end where a
    start or goal closer than the clearance relaxes it to the validity margin.
    """

    def __init__(self, checker, clearance: float, validity_margin: float = 0.0, resolution: float = 0.004,
                 approach: float = 0.125, refinements: int = 4, max_substeps: int = 512):
        if not (math.isfinite(clearance) and clearance >= 0 and math.isfinite(validity_margin) and validity_margin >= 0):
            raise ValueError(f"clearance and validity_margin must be finite and ≥ 0 m, got {clearance}, {validity_margin}")
        if not (math.isfinite(resolution) and resolution > 0):
            raise ValueError(f"resolution must be positive (m), got {resolution}")
        self.checker = checker
        self.clearance = max(float(clearance), float(validity_margin))
        self.validity_margin = float(validity_margin)
        self.resolution = float(resolution)
        self.approach = float(approach)
        self.refinements = int(refinements)
        self.max_substeps = int(max_substeps)
        #: (J, K) how fast the sphere centres move per unit of each DOF (m per rad or per m): per
        #: link with spheres, a bound on all of its spheres' centres
        self.sphere_speed = _sphere_speed(checker.chain, checker.spheres)
        #: distances by column (:meth:`_distance`): where the model has them and the thresholds are
        #: within COLUMNS_UP_TO (above it the model's branch and bound keeps the memory bounded)
        self._by_column = (hasattr(checker, "distance_columns")
                           and self.clearance + self.resolution <= COLUMNS_UP_TO)
        #: (J, C) how fast each distance column (:meth:`_distance`) can change per unit of each DOF,
        #: and (C,) int64 its track (0 world, 1 self)
        self.column_speed, self.column_track = _column_speeds(checker, self.sphere_speed, self._by_column)
        #: the world columns and the self columns (index tensors: masks would read the device)
        self._track_columns = tuple((self.column_track == t).nonzero().squeeze(1) for t in (0, 1))
        #: s per configuration assumed of a query with a deadline: the slowest seen of this
        #: validator's (queries of ≥ RATE_FROM configurations), at least SLOW_RATE
        self._rate = SLOW_RATE

    #: m: leaves its spheres put below validity_margin + this are measured by their triangles
    #: (:meth:`with_exact_window`); None: the model's own distances
    exact_window: float | None = None

    def with_exact_window(self, window: float = EXACT_WINDOW) -> "MotionValidator":
        """The same validator measuring, with a tight model, the leaves its spheres put within
        ``window`` (m) of the validity margin by their triangles
        (:meth:`~ros_torch_kin.collision.TreeCollisionChecker.with_exact_window`): what a motion
        to or from a configuration that the spheres put in contact but the meshes do not (a
        grasp's) needs to be certified; and pieces refined down to :data:`GRAZING_REFINEMENTS`
        levels (a goal tens of µm from contact needs pieces that short). The planner asks for it
        only when a start or goal is that close by its spheres (it makes the checks dearer)."""
        other = object.__new__(MotionValidator)
        other.__dict__.update(self.__dict__)
        other.exact_window = float(window)
        if hasattr(self.checker, "with_exact_window"):  # a tight model (its scene swaps keep the window)
            other.checker = self.checker.with_exact_window(other.exact_window)
        other.refinements = max(self.refinements, GRAZING_REFINEMENTS)
        return other

    def with_scene(self, scene) -> "MotionValidator":
        other = object.__new__(MotionValidator)
        other.__dict__.update(self.__dict__)
        other.checker = self.checker.with_scene(scene)
        return other

    def sweep_bound(self, start: Tensor, end: Tensor) -> Tensor:
        """(..., J) piece ends -> (...,) D, the most any sphere centre moves along it (m): a world
        distance changes by at most D, a self distance by at most 2D."""
        if not self.sphere_speed.shape[1]:
            return start.new_zeros(start.shape[:-1])
        return _moved((end - start).abs(), self.sphere_speed).amax(-1)

    def _distance(self, q: Tensor) -> Tensor:
        """(n, J) -> (n, C) distance columns, exact below their tracks' thresholds (else lower
        bounds ≥ them, clamped to 1 km): a model with :meth:`distance_columns` (the tight one)
        gives one per link (world) and one per self pair, each changing only as fast as its own
        links move; else the world and the self distance, changing as fast as any sphere."""
        C = self.column_track.shape[0]
        if not q.shape[0]:
            return q.new_zeros(0, C)
        world_threshold, self_threshold = self.clearance + self.resolution, self.validity_margin + self.resolution
        if self._by_column:
            columns = self.checker.distance_columns(q, world_threshold, self_threshold)
        else:
            columns = torch.stack(self.checker.world_and_self_distance(q, world_threshold, self_threshold), 1)
        return columns.clamp(max=1e3)

    def _tracks(self, columns: Tensor) -> Tensor:
        """(..., C) distance columns -> (..., 2) the least world and the least self one."""
        return torch.stack([_least(columns.index_select(-1, c)) for c in self._track_columns], -1)

    def _distance_until(self, q: Tensor, deadline: float) -> tuple[Tensor, Tensor | None, int]:
        """(n, J) -> (n, C) distances as :meth:`_distance`, (n,) bool which rows were computed
        (None: all) and how many, none started after ``deadline``: one query where it ends in time
        even at ``RATE_SPREAD`` times the slowest rate this validator has seen (at least
        ``SLOW_RATE``); else the rows in a fixed shuffled order (a batch's rows differ: a failed
        plan's seeds are free at first and ~20× dearer deep in collision further on, so blocks in
        their order measure nothing), a first block of ``FIRST_BLOCK`` of them measuring the
        batch's time per row, the next blocks what ends by the deadline at ``RATE_SPREAD`` times
        the last block's rate. Rows not reached get +inf (the caller marks them undecided)."""
        n = q.shape[0]
        if deadline == math.inf:
            return self._distance(q), None, n
        if time.perf_counter() + RATE_SPREAD * self._rate * n <= deadline:
            return self._measured(q), None, n  # ends in time even at several times the slowest rate seen
        order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).to(q.device)
        shuffled = q.index_select(0, order)
        parts, done, rate = [], 0, None
        while done < n:
            now = time.perf_counter()
            if now > deadline:
                break
            if rate is None:  # a first small block measures this batch's rate
                size = min(n, FIRST_BLOCK)
            else:  # then as many as end by the deadline even at RATE_SPREAD times it
                size = min(n - done, max(FIRST_BLOCK // 2, int((deadline - now) / max(RATE_SPREAD * rate, 1e-9))))
            parts.append(self._measured(shuffled[done:done + size]))
            _wait(parts[-1])
            rate = (time.perf_counter() - now) / size
            done += size
        distance = q.new_full((n, self.column_track.shape[0]), math.inf)
        reached = torch.zeros(n, dtype=torch.bool, device=q.device)
        if done:
            distance[order[:done]] = torch.cat(parts)
            reached[order[:done]] = True
        return distance, reached, done

    def _measured(self, q: Tensor) -> Tensor:
        """:meth:`_distance`, its time per configuration kept as ``_rate`` where it is the slowest
        yet (configurations deep in collision cost several times free ones: the Fetch's failed
        seeds ~4 ms each, and one query of them, begun in time at SLOW_RATE, ran a second late)."""
        began = time.perf_counter()
        distance = self._distance(q)
        if q.shape[0] >= RATE_FROM and q.device.type == "cpu":  # a device's time shows only after a sync
            self._rate = max(self._rate, (time.perf_counter() - began) / q.shape[0])
        return distance

    def requirements(self, waypoint_world: Tensor) -> Tensor:
        """(N, T) waypoint world distances -> (N, T − 1) the world distance each segment keeps."""
        N, T = waypoint_world.shape
        required = waypoint_world.new_full((N, T - 1), self.clearance)
        zone = max(1, int(round(self.approach * (T - 1))))
        relaxed = waypoint_world.new_tensor(self.validity_margin)
        near_start = (waypoint_world[:, 0] < self.clearance).unsqueeze(1)
        near_goal = (waypoint_world[:, -1] < self.clearance).unsqueeze(1)
        index = torch.arange(T - 1, device=waypoint_world.device).unsqueeze(0)
        required = torch.where(near_start & (index < zone), relaxed, required)
        return torch.where(near_goal & (index >= T - 1 - zone), relaxed, required)

    def self_requirements(self, world_need: Tensor) -> Tensor:
        """(N, T − 1) the segments' world requirements -> the self distance each keeps."""
        return torch.full_like(world_need, self.validity_margin)

    def check(self, positions: Tensor, names: bool = True, deadline: float = math.inf,
              verdict_only: bool = False) -> MotionCheck:
        """positions (N, T, J) (or (T, J)) -> :class:`MotionCheck` (its ``min_distance`` and
        ``clearance_bound``, the lesser of world and self, are exact only below the requirement
        plus the resolution). ``names``: False leaves ``closest_pair`` empty (naming a pair
        beyond the threshold takes up to four more distance queries); :meth:`closest_pairs` of
        ``closest_configuration`` gives the same names later. ``deadline`` (``time.perf_counter()``
        s): no distance query of the waypoints or the pieces starts after it (:meth:`_distance_until`:
        blocks sized by the measured rate where one query might not end in time); the waypoints
        and pieces not reached are undecided, the motions they belong to not clear (a motion with
        a waypoint not reached has min_distance −inf: unknown), and the result ``late``.
        ``verdict_only``: a motion already shown not clear (a configuration closer than its
        requirement) has no further pieces cut (they stay undecided): its ``clear`` is the same,
        its distances and bounds only those found so far (the planner's checks of candidates it
        drops when they fail; a failed seed deep in collision cost a full refinement before)."""
        if positions.dim() == 2:
            positions = positions.unsqueeze(0)
        positions = positions.detach()
        N, T, J = positions.shape
        C = self.column_track.shape[0]
        # the waypoints too stop at the deadline: a batch of motions deep in collision (a failed
        # plan's seeds) costs ~2 ms a configuration, and one query of them ran a second past it
        columns, computed, reached = self._distance_until(positions.reshape(-1, J), deadline)
        unreached = (torch.zeros(N, T, dtype=torch.bool, device=positions.device) if computed is None
                     else ~computed.view(N, T))  # their columns are +inf
        columns = columns.view(N, T, C)
        waypoint = self._tracks(columns)  # (N, T, 2)
        world_need = self.requirements(waypoint[..., 0])  # (N, T − 1)
        own_need = self.self_requirements(world_need)
        need = torch.stack((world_need, own_need), -1)  # (N, T − 1, 2)
        at_waypoint = torch.minimum(torch.cat([need[:, :1], need], 1), torch.cat([need, need[:, -1:]], 1))
        at_waypoint[:, 0], at_waypoint[:, -1] = own_need[:, :1], own_need[:, -1:]  # an end: validity only
        waypoint_clear = (waypoint >= at_waypoint).all(-1) & ~unreached
        checked = reached
        track = self.column_track
        segment = torch.arange(N * (T - 1), device=positions.device)
        need = need.reshape(-1, 2)
        qa, qb = positions[:, :-1].reshape(-1, J), positions[:, 1:].reshape(-1, J)
        da, db = columns[:, :-1].reshape(-1, C), columns[:, 1:].reshape(-1, C)
        colliding = ((da < need[:, track]) | (db < need[:, track])).any(-1)
        bound = torch.full((N * (T - 1), C), math.inf, dtype=positions.dtype, device=positions.device)  # per column
        undecided = (unreached[:, :-1] | unreached[:, 1:]).reshape(-1)  # a segment whose end was not reached
        extra_q, extra_d, extra_motion = [], [], []
        cut, late = False, reached < N * T
        finest = self.resolution / 4 ** max(self.refinements - 1, 0)  # a piece this short is not cut again
        while True:
            change = _moved((qb - qa).abs(), self.column_speed)  # (n, C): how much each column can change
            piece_bound = _piece_bound(da, db, change)  # (n, C)
            piece_need = need[segment][:, track]
            margin = (piece_bound - piece_need).amin(-1)
            short = (margin < 0) & ~colliding[segment]
            sweep = self.sweep_bound(qa, qb)
            again = short & (sweep > finest * (1 + 1e-6)) if cut else short
            if verdict_only:  # a motion shown not clear needs no finer pieces
                failed = colliding.view(N, T - 1).any(1) | ~waypoint_clear.all(1)
                again &= ~failed[torch.div(segment, T - 1, rounding_mode="floor")]
            if not self.refinements or late or not bool(again.any()):
                bound.scatter_reduce_(0, segment.unsqueeze(1).expand(-1, C), piece_bound, "amin")
                undecided.index_fill_(0, segment[short], True)
                break
            done = (~again).nonzero().squeeze(1)
            bound.scatter_reduce_(0, segment[done].unsqueeze(1).expand(-1, C), piece_bound[done], "amin")
            undecided.index_fill_(0, segment[short & ~again], True)
            keep = again.nonzero().squeeze(1)
            segment, qa, qb, da, db = segment[keep], qa[keep], qb[keep], da[keep], db[keep]
            if not cut:  # first cut: each column's change within its ends' slack (a piece keeps its
                # requirement if its inner distances stay within half the slack of its ends'), and
                # no piece shorter than the resolution needs: ⌈sweep / resolution⌉ at most
                slack = (torch.minimum(da, db) - piece_need[keep]).clamp(min=1e-9)
                pieces = torch.minimum((change[keep] / slack).amax(-1), sweep[keep] / self.resolution)
                n = torch.ceil(pieces).clamp(2, self.max_substeps).to(torch.int64)
                cut = True
            else:
                n = torch.full_like(segment, 4)
            piece = torch.repeat_interleave(torch.arange(segment.shape[0], device=segment.device), n)
            k = torch.arange(piece.shape[0], device=segment.device) - (torch.cumsum(n, 0) - n)[piece]
            a, b, n_piece = qa[piece], qb[piece], n[piece].unsqueeze(1).to(qa.dtype)
            new_a = a + (k.unsqueeze(1) / n_piece) * (b - a)
            new_b = a + ((k + 1).unsqueeze(1) / n_piece) * (b - a)
            interior = k > 0
            d_new, computed, reached = self._distance_until(new_a[interior], deadline)
            checked += reached
            owner = segment[piece[interior]]
            if computed is not None and reached < d_new.shape[0]:  # past the deadline: the rest stays undecided
                late = True
                undecided.index_fill_(0, owner[~computed], True)
            colliding.index_fill_(0, owner[(d_new < need[owner][:, track]).any(-1)], True)
            extra_q.append(new_a[interior])
            extra_d.append(d_new.amin(-1))
            extra_motion.append(owner // (T - 1))
            d_start = da[piece].clone()
            d_start[interior] = d_new
            last = k == n[piece] - 1
            d_end = torch.roll(d_start, -1, 0)
            d_end[last] = db[piece[last]]
            segment, qa, qb, da, db = segment[piece], new_a, new_b, d_start, d_end
        not_clear = (colliding | undecided).view(N, T - 1)
        clear = ~not_clear.any(1) & waypoint_clear.all(1)
        first_collision = torch.where(not_clear.any(1), not_clear.to(torch.int8).argmax(1), -1)
        all_q = torch.cat([positions.reshape(-1, J)] + extra_q)
        all_d = torch.cat([waypoint.amin(-1).reshape(-1)] + extra_d)
        all_motion = torch.cat([torch.arange(N, device=positions.device).repeat_interleave(T)] + extra_motion)
        min_distance = torch.full((N,), math.inf, dtype=positions.dtype, device=positions.device)
        min_distance.scatter_reduce_(0, all_motion, all_d, "amin")
        if late:  # a motion with a waypoint not reached: its distances unknown (as an unchecked one's)
            min_distance = torch.where(unreached.any(1), -math.inf, min_distance)
        clearance_bound = torch.minimum(_least(bound).view(N, T - 1).amin(1), min_distance)
        segments = torch.cat((bound.view(N, T - 1, C), world_need.unsqueeze(-1)), -1)
        # per motion its first checked configuration at min_distance (one scatter: no loop, no host read)
        order = torch.arange(all_d.shape[0], device=positions.device)
        at = torch.full((N,), all_d.shape[0], dtype=torch.int64, device=positions.device)
        at.scatter_reduce_(0, all_motion, torch.where(all_d == min_distance[all_motion], order, all_d.shape[0]), "amin")
        closest = all_q[at.clamp(max=all_d.shape[0] - 1)]
        pairs = self.closest_pairs(closest, min_distance) if names else ()
        return MotionCheck(clear, min_distance, clearance_bound, waypoint_clear, first_collision, pairs, checked,
                           segments, closest, late)

    def closest_pairs(self, q: Tensor, distance: Tensor | None = None) -> tuple[tuple[str, str], ...]:
        """(N, J) -> the closest pair of each configuration by name, as :meth:`check` names
        them at its ``closest_configuration``. ``distance`` (N,) m (optional): what the check
        found there (its ``min_distance``): the pairs are asked for within it (plus 1 mm) at once
        where it is beyond the check's own threshold, instead of at that threshold and then at
        ever four times farther (a query of a single configuration costs a few ms: one descent)."""
        threshold = self.clearance + self.resolution
        if distance is not None and distance.numel():
            finite = distance[torch.isfinite(distance)]
            if finite.numel():
                threshold = max(threshold, float(finite.max()) + 1e-3)
        return _pair_names(self.checker, q, threshold)


#: spheres -> (chain, (M, L) per moving joint and link the largest speed of its spheres' centres, (M, L)
#: bool whether the joint moves the link): derived once per robot model, not per plan (a Python loop
#: over the spheres: ~0.3 s for the MBM Panda's 10,564 leaves)
_SPEEDS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _link_speeds(chain, spheres) -> tuple[Tensor, Tensor]:
    cached = _SPEEDS.get(spheres)
    if cached is not None and cached[0] is chain:
        return cached[1], cached[2]
    rho, moves = sphere_speed_bounds(chain, spheres)  # (M, S)
    # per link: the elementwise largest of its spheres'. Every use takes the largest
    # Σ_j |Δq_j|·speed[j, s] over the spheres, which this bounds, and equals: a sphere's bound is
    # the same per link up to its centre's distance from the link origin (times the revolute
    # joints' motion), so the sphere farthest out has the largest entries.
    links = spheres.sphere_links.detach().cpu()
    per_link = torch.zeros(rho.shape[0], chain.num_links, dtype=rho.dtype)
    moved = torch.zeros(rho.shape[0], chain.num_links, dtype=torch.float64)
    if rho.shape[1]:
        per_link.scatter_reduce_(1, links.expand(rho.shape[0], -1), rho, "amax")
        moved.scatter_reduce_(1, links.expand(rho.shape[0], -1), moves.double(), "amax")
    moved = moved > 0
    _SPEEDS[spheres] = (chain, per_link, moved)
    return per_link, moved


def _sphere_speed(chain, spheres) -> Tensor:
    """(J, K) per DOF and link with spheres (in link order) the largest speed of its centres."""
    per_link, _ = _link_speeds(chain, spheres)
    links = torch.unique(spheres.sphere_links.detach().cpu())
    per_dof = chain.joint_to_dof.detach().double().cpu().abs()  # (J, M)
    return (per_dof @ per_link[:, links]).to(chain.device, chain.dtype)


def _moved(displacement: Tensor, speed: Tensor) -> Tensor:
    """(..., J) |Δq| @ (J, K) speeds -> (..., K), +inf where an unbounded speed (a prismatic joint
    without limits between) meets no displacement (0·inf, NaN, would certify anything)."""
    return torch.nan_to_num(displacement @ speed, nan=math.inf)


def _column_speeds(checker, sphere_speed: Tensor, by_column: bool = True) -> tuple[Tensor, Tensor]:
    """(J, C) how fast each of :meth:`MotionValidator._distance`'s columns can change per unit of
    each DOF, and (C,) each column's track (0 world, 1 self). A world column (one link's spheres
    against the world) changes as fast as that link's spheres move; a self column (a pair of
    links) only by the joints that move one link and not the other (a joint that moves both
    moves them rigidly together: their distance stays), at the speed of the one it moves. Not
    ``by_column`` (a model without columns, or thresholds above COLUMNS_UP_TO): two columns, the
    world at the fastest sphere's speed and the self distance at twice it."""
    device, dtype = sphere_speed.device, sphere_speed.dtype
    if not by_column:
        fastest = sphere_speed.amax(1) if sphere_speed.shape[1] else sphere_speed.new_zeros(sphere_speed.shape[0])
        return torch.stack((fastest, 2 * fastest), 1), torch.tensor([0, 1], device=device)
    chain = checker.chain
    per_link, moved = _link_speeds(chain, checker.spheres)  # (M, L)
    world_links, pair_links = checker.column_links
    a, b = pair_links[:, 0], pair_links[:, 1]
    zero = per_link.new_zeros(())  # (a speed of inf times 0 would be NaN)
    relative = (torch.where(moved[:, a] & ~moved[:, b], per_link[:, a], zero)
                + torch.where(moved[:, b] & ~moved[:, a], per_link[:, b], zero))
    per_dof = chain.joint_to_dof.detach().double().cpu().abs()  # (J, M)
    speed = per_dof @ torch.cat((per_link[:, world_links], relative), 1)
    pairs = speed[:, world_links.shape[0]:]
    pairs.copy_(torch.minimum(pairs, _pair_rates(chain, checker.spheres, pair_links)))
    track = torch.cat((torch.zeros(world_links.shape[0], dtype=torch.int64), torch.ones(a.shape[0], dtype=torch.int64)))
    return speed.to(device, dtype), track.to(device)


#: spheres -> (chain, pair links (P, 2), (J, P) rates): derived once per model
_PAIR_RATES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _pair_rates(chain, spheres, pair_links: Tensor) -> Tensor:
    """(J, P) float64 CPU: per self column whose two links one or two DOFs move apart, how fast
    (m per rad, or 1 for a prismatic joint) each of those DOFs can change their distance
    (:func:`~ros_torch_kin.collision.pair_tables.motion_rates`: the nearer of the two links to the
    joint's axis, as seen from the other), +inf elsewhere: often several times below the moving
    link's own speed (the UR5's upper arm over its base: 0.11 m/rad for the base joint, against
    ~0.5 for the arm's farthest leaf), so the checks cut such a pair's segments less finely."""
    from ..collision.pair_tables import motion_rates, path_dofs

    cached = _PAIR_RATES.get(spheres)
    if cached is not None and cached[0] is chain and torch.equal(cached[1], pair_links):
        return cached[2]
    rates = torch.full((chain.num_dofs, pair_links.shape[0]), math.inf, dtype=torch.float64)
    for column, (link_a, link_b) in enumerate(pair_links.tolist()):  # once per model
        dofs = path_dofs(chain, link_a, link_b)
        found = motion_rates(chain, spheres, link_a, link_b) if dofs is not None and 1 <= len(dofs) <= 2 else None
        if found is not None:
            rates[dofs, column] = torch.tensor(found, dtype=torch.float64)
    _PAIR_RATES[spheres] = (chain, pair_links.clone(), rates)
    return rates


def _wait(result: Tensor) -> None:
    """Wait for a device's result before timing it (a GPU runs asynchronously): one value read."""
    if result.device.type != "cpu" and result.numel():
        result.reshape(-1)[:1].cpu()


def _least(values: Tensor) -> Tensor:
    """(..., k) -> (...,) the least of the last dimension (+inf where k = 0)."""
    if values.shape[-1]:
        return values.amin(-1)
    return values.new_full(values.shape[:-1], math.inf)


def _pair_names(checker, q: Tensor, threshold: float) -> tuple[tuple[str, str], ...]:
    """The closest pair of each configuration (N, J), by name. A tight checker names only pairs
    within the threshold it is asked with: where none is, it is asked again four times farther
    (up to 1 m), so a configuration whose pairs are all beyond the first threshold is named too."""
    if not q.shape[0]:
        return ()
    if not hasattr(checker, "link_pair_collisions"):
        result = checker.distances(q)
        return tuple(result.nearest_pair(b) for b in range(q.shape[0]))
    names = list(checker.distances(q, threshold).pairs)
    while threshold < 1.0 and any(not a for a, _ in names):
        threshold = max(4 * threshold, 0.01)
        rows = [b for b, (a, _) in enumerate(names) if not a]
        for b, pair in zip(rows, checker.distances(q[rows], threshold).pairs):
            names[b] = pair
    return tuple(names)


def _piece_bound(d0: Tensor, d1: Tensor, change: Tensor) -> Tensor:
    """The least distance along a piece whose ends are d0, d1 away and along which it changes by
    at most ``change`` in all."""
    return torch.minimum(torch.minimum(d0, d1), 0.5 * (d0 + d1 - change))
