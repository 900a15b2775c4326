"""Joint tables for self pairs whose relative pose depends on one or two joints.

Some enabled self pairs stay close in every configuration: the Panda's ``panda_link5`` and
``panda_link7`` are 15-20 mm apart wherever joints 6 and 7 put them, the UR5's
``upper_arm_link`` passes its ``base_link`` within 1-15 mm. Proving such a pair clear takes the
sphere tree down to its leaves over a large area, on every configuration: on the MBM Panda that
one pair cost more than all the rest of the verdict. Yet the pair's relative pose depends on
two joints only (the joints on the kinematic path between the two links), so its distance is a
function of a point in a plane, and can be looked up.

A :class:`PairTable` is a grid over those joints (one or two DOFs; a revolute joint whose range
spans a turn over one period, [-π, π), since its transform repeats). Each node holds a value
``v`` with ``v <= d(node)``, d the pair's distance in the tight model (the leaf spheres' distance,
itself a lower bound of the meshes'): the largest of :data:`LEVELS` at which the tight verdict
finds the pair clear at the node, or −inf where it is clear at none. A configuration q reads its
nearest node and subtracts how far the pair can have moved between them:

    d(q) >= v(node) − Σₖ ρₖ |qₖ − nodeₖ|

ρₖ (m per rad, or 1 for a prismatic joint) bounds how fast a point of the pair moves relative
to the other link when joint k turns: the farthest a leaf sphere of a link reaches from the
joint's axis (the link on the side of the joint without the other DOF is fixed relative to that
axis: its exact distance to the line; on the other side the bound goes through the other
joint's origin, and is used where smaller). The distance between two sets changes by at most
the largest displacement of either, so the bound holds for every q, inside the grid's range or
not. Where it is at least a query's limit the pair is left out for that configuration before
the tree is descended (:class:`.tree_checker.TreeCollisionChecker`): the verdict and every
distance the tree reports are exactly what they would be without the table, only cheaper.

Grids are spaced so that the bound loses at most :data:`MOVE` (m) (at most :data:`MAX_NODES`
nodes; a coarser spacing beyond). Tables are built with the tree verdict itself
(:func:`pair_tables`; large ones in worker processes), only for pairs that cost the verdict
enough to be worth it and whose building is repaid within :data:`PAYBACK` configurations, within
a time budget, and cached on disk beside the trees (:func:`cached_pair_tables`). A chain with
mimic joints, a pair with three or more joints between its links, or a prismatic joint between
a link and another joint's axis gets no table (the tree alone, as before).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import types
from dataclasses import dataclass

import torch
from torch import Tensor

from ..kinematics import Chain, world_transforms
from .build_workers import WorkerPool, pool_or_own

#: The values a node can hold (m): the largest at which the tight verdict finds the pair clear.
LEVELS = (0.006, 0.010, 0.012)
#: The most (m) the Lipschitz bound loses at a configuration half a grid step from a node: a node
#: at the top level proves its pairs clear at 4 mm (the planner's self queries are at 4 mm and
#: below) from any configuration of its cell.
MOVE = 0.008
#: The most nodes a table has (its spacing grows beyond).
MAX_NODES = 65536
#: Configurations given to the verdict at once while a table is filled.
BUILD_CHUNK = 4096
#: Random configurations on which each candidate table's pairs are timed (and half as many of its
#: nodes, for its build time).
SAMPLES = 128
#: s per configuration (beyond a query's own cost) below which a candidate's pairs are left to
#: the tree: not worth a table.
WORTH = 20e-6
#: A table is built only when its estimated building time is repaid within this many verdict
#: configurations (what it saves each, times this): about a hundred plans' searches and checks.
PAYBACK = 300_000
#: s of estimated building (one process) for one robot's tables: the MBM UR5's take 20-25 s of
#: it (its upper arm over its base, its forearm over its wrist: 100-270 µs a configuration each
#: without; its shoulder over its forearm where it repays), the Panda's wrist table ~1-2 s.
BUDGET = 30.0
#: s of estimated filling above which the tables' nodes are split among worker processes
#: (:mod:`.build_workers`): a worker's start (importing torch, the hierarchy built again) costs
#: 1-2 s, so the MBM Panda's ~2 s table is filled faster here, the UR5's ~15 s in two processes.
PARALLEL_AFTER = 5.0


@dataclass(frozen=True, eq=False)
class PairTable:
    """One table. ``pairs``: the (link_a, link_b) pairs it bounds (every pair whose relative pose
    depends on the same DOFs: the bound is their least distance); ``dofs`` (K,) the chain's DOF indices
    (K = 1 or 2); ``first`` (K,) the first node (rad or m); ``step`` (K,); ``count`` (K,) nodes
    per DOF; ``periodic`` (K,) bool (a revolute joint read modulo 2π from −π); ``rate`` (K,) ρ
    (m per rad, or 1); ``values`` (count₀·count₁,) m, row-major, −inf where no level holds."""

    pairs: tuple[tuple[str, str], ...]
    dofs: tuple[int, ...]
    first: tuple[float, ...]
    step: tuple[float, ...]
    count: tuple[int, ...]
    periodic: tuple[bool, ...]
    rate: tuple[float, ...]
    values: Tensor


class PairTables:
    """Every table of a checker, packed for one lookup: ``lower_bound(q)`` (B, J) -> (B, T) the
    bound above for each table's pair (T tables, in ``tables`` order)."""

    def __init__(self, tables, device=None, dtype=torch.float32):
        self.tables = tuple(tables)
        T = len(self.tables)

        def column(name, fill, width=2):
            return [list(getattr(t, name)) + [fill] * (width - len(t.dofs)) for t in self.tables]

        options = dict(device=device)
        self.dofs = torch.tensor(column("dofs", 0), dtype=torch.int64, **options).reshape(T, 2)
        self.first = torch.tensor(column("first", 0.0), dtype=dtype, **options).reshape(T, 2)
        self.step = torch.tensor(column("step", 1.0), dtype=dtype, **options).reshape(T, 2)
        self.count = torch.tensor(column("count", 1), dtype=torch.int64, **options).reshape(T, 2)
        self.periodic = torch.tensor(column("periodic", False), dtype=torch.bool, **options).reshape(T, 2)
        self.rate = torch.tensor(column("rate", 0.0), dtype=dtype, **options).reshape(T, 2)
        sizes = [int(t.values.numel()) for t in self.tables]
        self.offset = torch.tensor([sum(sizes[:i]) for i in range(T)], dtype=torch.int64, **options)
        self.values = (torch.cat([t.values for t in self.tables]).to(device=device, dtype=dtype) if T
                       else torch.zeros(0, dtype=dtype, **options))

    def __len__(self) -> int:
        return len(self.tables)

    def to(self, device, dtype) -> "PairTables":
        return PairTables(self.tables, device, dtype)

    def lower_bound(self, q: Tensor) -> Tensor:
        """(B, J) -> (B, T) m: a lower bound of each table pair's tight distance."""
        x = q[:, self.dofs]  # (B, T, 2)
        turn = 2 * math.pi
        x = torch.where(self.periodic, torch.remainder(x + math.pi, turn) - math.pi, x)
        index = torch.floor((x - self.first) / self.step + 0.5)
        index = torch.minimum(index.clamp(min=0), (self.count - 1).to(x.dtype))
        node = self.first + index * self.step
        moved = ((x - node).abs() * self.rate).sum(-1)
        index = index.long()
        flat = self.offset + index[..., 0] * self.count[:, 1] + index[..., 1]
        return self.values[flat] - moved


def path_dofs(chain: Chain, link_a: int, link_b: int) -> list[int] | None:
    """The DOFs of the movable joints on the kinematic path between the two links (those that move
    one of them and not the other), ascending: what the pair's relative pose depends on. None
    where a joint there is a mimic joint, or two of them follow the same DOF."""
    joints = _path_joints(chain, link_a, link_b)
    return None if joints is None else sorted(j for _, j in joints)


def _path_joints(chain: Chain, link_a: int, link_b: int) -> list[tuple[int, int]] | None:
    """(movable joint, its DOF) for each joint on the path (:func:`path_dofs`), by DOF."""
    moves = chain.joint_subtree_mask.cpu() > 0.5  # (M, L)
    to_dof = chain.joint_to_dof.cpu()  # (J, M)
    joints = []
    for m in range(moves.shape[0]):
        if bool(moves[m, link_a]) == bool(moves[m, link_b]):
            continue
        column = to_dof[:, m]
        leaders = column.nonzero().squeeze(1).tolist()
        if len(leaders) != 1 or float(column[leaders[0]]) != 1.0 or float(chain.link_offset[_joint_link(chain, m)]) != 0.0:
            return None
        joints.append((m, leaders[0]))
    if len({j for _, j in joints}) != len(joints):
        return None
    return sorted(joints, key=lambda joint: joint[1])


def _joint_link(chain: Chain, m: int) -> int:
    """The child link of movable joint m (its origin lies on the joint's axis)."""
    links = chain.plan.joint_links
    return (links.start + m) if isinstance(links, slice) else int(links[m])


def motion_rates(chain: Chain, spheres, link_a: int, link_b: int) -> list[float] | None:
    """ρ per DOF of :func:`path_dofs` (the module doc), from the leaf spheres ``spheres``
    (RobotSpheres) of the two links; None where no sound bound is known (a mimic joint on the
    path, a prismatic joint between a link and the other joint's axis)."""
    joints = _path_joints(chain, link_a, link_b)
    if joints is None:
        return None
    chain64 = chain.to("cpu", torch.float64)
    frames = world_transforms(chain64, torch.zeros(1, chain.num_dofs, dtype=torch.float64))[..., 0]  # (L, 4, 4)
    centers, radii = spheres.centers.cpu().double(), spheres.radii.cpu().double()
    of_link = spheres.sphere_links.cpu()
    moves = chain.joint_subtree_mask.cpu() > 0.5  # (M, L)
    prismatic = chain.joint_is_prismatic.reshape(-1).cpu() > 0.5

    def world_points(link: int) -> tuple[Tensor, Tensor]:
        rows = of_link == link
        T = frames[link]
        return centers[rows] @ T[:3, :3].T + T[:3, 3], radii[rows]

    rates = []
    for m, _ in joints:
        if bool(prismatic[m]):
            rates.append(1.0)  # a point moves exactly as far as the joint
            continue
        child = frames[_joint_link(chain, m)]
        origin, axis = child[:3, 3], child[:3, :3] @ chain64.joint_axis[m].reshape(3)
        axis = axis / axis.norm()
        best = math.inf
        for link in (link_a, link_b):
            c, r = world_points(link)
            if not r.numel():
                best = 0.0
                continue
            # fixed relative to the axis unless the other path joint lies between them
            between = [n for n, _ in joints if n != m and bool(moves[n, link]) != bool(moves[n, _joint_link(chain, m)])]
            if not between:  # the exact distance to the axis line
                offset = c - origin
                along = offset @ axis
                best = min(best, float(((offset - along.unsqueeze(1) * axis).norm(dim=1) + r).max()))
            elif not bool(prismatic[between[0]]):  # through the other joint's origin, fixed for both
                pivot = frames[_joint_link(chain, between[0])][:3, 3]
                best = min(best, float(((c - pivot).norm(dim=1) + r).max() + (pivot - origin).norm()))
        if not math.isfinite(best):
            return None
        rates.append(best)
    return rates


def pair_tables(chain: Chain, spheres, pairs, verdict=None, budget: float = BUDGET, seed: int = 0,
                workers: int | None = None, pool: WorkerPool | None = None) -> tuple[PairTable, ...]:
    """Tables for the pairs of ``pairs`` ((link_a, link_b) names) whose relative pose depends on
    one or two DOFs with a sound rate bound; pairs that depend on the same DOFs share one.
    ``spheres``: the tight model's leaves; ``verdict(pairs, q, level)`` -> (N,) bool: the tight
    verdict finds every pair of ``pairs`` clear at ``level`` (m) at configurations q (N, J)
    (float64, CPU); None: :class:`.tree_checker.TreeCollisionChecker` on ``chain`` and
    ``spheres`` (the only verdict whose filling may go to worker processes).

    A table costs its nodes' verdicts once (then the cache keeps it) and saves what its pairs
    cost the verdict, so they are chosen by that: each candidate's verdict is timed on
    :data:`SAMPLES` random configurations; those that add less than :data:`WORTH` s per
    configuration to a query are left to the tree, and so are those whose building time
    (estimated from :data:`SAMPLES` / 2 of their nodes) would not be repaid within
    :data:`PAYBACK` configurations; the others are built dearest first while their time stays
    within ``budget`` s. The choice follows this machine's timings; the verdict is the same with
    any choice. ``workers``: processes that fill the nodes side by side when the estimate exceeds
    :data:`PARALLEL_AFTER` (None: one per core this process may use; 1: all in this process);
    ``pool``: a :class:`.build_workers.WorkerPool` to use instead (a model build's: when its
    workers run already, from the trees, they share any table)."""
    tight = verdict is None
    if tight:
        verdict = _TightVerdict(chain, spheres, pairs)
    names = {n: i for i, n in enumerate(chain.link_names)}
    lower, upper = chain.lower_limits.cpu().double(), chain.upper_limits.cpu().double()
    low = lower.clamp(min=-math.pi)
    generator = torch.Generator().manual_seed(seed)
    sample = low + torch.rand(SAMPLES, chain.num_dofs, generator=generator, dtype=torch.float64) * (
        upper.clamp(max=math.pi) - low)
    groups: dict[tuple[int, ...], list[tuple[str, str]]] = {}
    for a, b in pairs:
        dofs = path_dofs(chain, names[a], names[b])
        if dofs is not None and 1 <= len(dofs) <= 2:
            dofs = tuple(dofs)
            groups.setdefault(dofs, []).append((a, b))
    plans, base = [], None
    for dofs, members in groups.items():
        grid = _grid(chain, spheres, names, dofs, members)
        if grid is None:
            continue
        if base is None:  # a query's own cost, with no pair to check
            verdict((), sample[:8], LEVELS[0])
            moment = time.perf_counter()
            verdict((), sample, LEVELS[0])
            base = time.perf_counter() - moment
        verdict(tuple(members), sample[:8], LEVELS[-1])  # warm
        moment = time.perf_counter()
        verdict(tuple(members), sample, LEVELS[0])
        cost = (time.perf_counter() - moment - base) / SAMPLES
        if cost < WORTH:
            continue
        nodes = _nodes(grid, dofs, lower, upper)
        probe = nodes[torch.randperm(nodes.shape[0], generator=generator)[:SAMPLES // 2]]
        moment = time.perf_counter()
        _fill(verdict, tuple(members), probe)
        estimate = (time.perf_counter() - moment) / probe.shape[0] * nodes.shape[0]
        if PAYBACK == math.inf or estimate <= PAYBACK * cost:  # (an infinite payback takes any)
            plans.append((cost, estimate, dofs, members, grid, nodes))
    chosen, spent = [], 0.0
    for plan in sorted(plans, key=lambda p: -p[0]):
        if spent + plan[1] <= budget:
            spent += plan[1]
            chosen.append(plan)
    with pool_or_own(pool, workers) as pool:
        if tight and pool.size and (spent > PARALLEL_AFTER or pool.warm) and chosen and chain.device.type == "cpu":
            values = _fill_in_workers(chain, spheres, [(p[3], p[5], p[1]) for p in chosen], pool)
        else:
            values = [_fill(verdict, tuple(p[3]), p[5]) for p in chosen]
    tables = []
    for (cost, estimate, dofs, members, grid, q), filled in zip(chosen, values):
        first, step, count, periodic, rates = grid
        tables.append(PairTable(tuple(members), dofs, tuple(first), tuple(step), tuple(count), tuple(periodic),
                                tuple(rates), filled))
    return tuple(tables)


class _TightVerdict:
    """``verdict(members, q, level)`` of :func:`pair_tables` on the tight model itself, for any of
    ``pairs``: one hierarchy for every group's checks, built at the first call."""

    def __init__(self, chain: Chain, spheres, pairs):
        self.chain, self.spheres, self.pairs, self.checker = chain, spheres, tuple(pairs), None

    def __call__(self, members, q: Tensor, level: float) -> Tensor:
        if self.checker is None:
            from .self_collision import SelfCollisionPairs
            from .tree_checker import TreeCollisionChecker

            empty = torch.zeros(0, dtype=torch.int64, device=self.chain.device)
            every = SelfCollisionPairs(self.pairs, types.MappingProxyType({}), empty, empty)
            self.checker = TreeCollisionChecker(self.chain, self.spheres, None, every, triangles=False)
        return self.checker.for_pairs(members).clear(q.to(self.chain.device, self.chain.dtype), level).cpu()


#: A worker's verdict, kept from one job to the next (its jobs share one chain and one set of spheres)
_WORKER_VERDICT: list = []


def fill_rows(chain: Chain, spheres, pairs, members, q: Tensor) -> Tensor:
    """:func:`_fill` on the tight model (``pairs``: every pair the jobs ask): a worker process's
    job (:mod:`.build_workers`)."""
    if not _WORKER_VERDICT or _WORKER_VERDICT[0].spheres is not spheres or _WORKER_VERDICT[0].pairs != tuple(pairs):
        _WORKER_VERDICT[:] = [_TightVerdict(chain, spheres, pairs)]
    return _fill(_WORKER_VERDICT[0], tuple(members), q)


def _fill_in_workers(chain: Chain, spheres, tables, pool: WorkerPool) -> list[Tensor]:
    """Each table's values from ``tables`` ((members, nodes (N, J), estimated s)), its nodes cut
    into pieces shared among ``pool``'s processes and this one, the dearest first; a piece whose
    worker failed is filled here."""
    pieces, owner = [], []
    total = sum(estimate for _, _, estimate in tables)
    share = max(total / (4 * (pool.size + 1)), 1e-9)  # a few pieces per process, to balance them
    for t, (members, q, estimate) in enumerate(tables):
        parts = max(1, math.ceil(estimate / share))
        for rows in torch.arange(q.shape[0]).tensor_split(parts):
            if rows.numel():
                pieces.append((tuple(members), q[rows], estimate * rows.numel() / q.shape[0]))
                owner.append(t)
    every = tuple(pair for members, _, _ in tables for pair in members)
    filled = pool.map(fill_rows, [(members, q) for members, q, _ in pieces], [estimate for _, _, estimate in pieces],
                      shared=(chain, spheres, every))
    _WORKER_VERDICT.clear()
    return [torch.cat([f for f, o in zip(filled, owner) if o == t]) for t in range(len(tables))]


def _fill(verdict, members, q: Tensor) -> Tensor:
    """(N,) float64: per configuration of q (N, J) the largest of :data:`LEVELS` at which
    ``verdict`` finds ``members`` clear, −inf where none. The highest level first, each lower one
    asked only where the one above failed: a pair that is clear at a level is clear at every lower
    one (a lower threshold prunes more and reaches a subset of the leaf pairs), and most nodes of
    a tabled pair hold at the highest, so this asks fewer than the levels bottom up."""
    values = torch.full((q.shape[0],), -math.inf, dtype=torch.float64)
    open_rows = torch.arange(q.shape[0])
    for level in sorted(LEVELS, reverse=True):
        if not open_rows.numel():
            break
        clear = torch.cat([verdict(members, q[rows], level) for rows in open_rows.split(BUILD_CHUNK)])
        values[open_rows[clear]] = level
        open_rows = open_rows[~clear]
    return values


def _nodes(grid, dofs, lower: Tensor, upper: Tensor) -> Tensor:
    """(N, J) the configurations of a grid's nodes: its DOFs at the nodes, the others mid-range."""
    first, step, count = grid[:3]
    axes = [first[k] + step[k] * torch.arange(count[k], dtype=torch.float64) for k in range(len(dofs))]
    nodes = torch.cartesian_prod(*axes).reshape(-1, len(dofs))
    middle = torch.where(torch.isfinite(lower) & torch.isfinite(upper), (lower + upper) / 2, torch.zeros_like(lower))
    q = middle.repeat(nodes.shape[0], 1)
    q[:, list(dofs)] = nodes
    return q


def _grid(chain: Chain, spheres, names, dofs, members):
    """(first, step, count, periodic, rates) of the grid over ``dofs`` for the pairs ``members``,
    or None where a rate has no sound bound or a range is unbounded."""
    every = [motion_rates(chain, spheres, names[a], names[b]) for a, b in members]
    if any(r is None for r in every):
        return None
    rates = [max(r[k] for r in every) for k in range(len(dofs))]
    prismatic = chain.joint_is_prismatic.reshape(-1).cpu()
    first, step, count, periodic = [], [], [], []
    for j, rate in zip(dofs, rates):
        low, high = float(chain.lower_limits[j]), float(chain.upper_limits[j])
        turn = not bool(prismatic[j]) and (not math.isfinite(high - low) or high - low >= 2 * math.pi - 1e-9)
        if turn:
            low, high = -math.pi, math.pi
        if not math.isfinite(high - low):
            return None
        n = max(1, math.ceil((high - low) / (2 * MOVE / (len(dofs) * max(rate, 1e-9)))))
        first.append(low + 0.5 * (high - low) / n)
        step.append((high - low) / n)
        count.append(n)
        periodic.append(turn)
    while math.prod(count) > MAX_NODES:  # coarser: the bound then loses more than MOVE
        k = max(range(len(count)), key=lambda i: step[i] * rates[i])
        span = step[k] * count[k]
        count[k] = max(1, count[k] // 2)
        step[k] = span / count[k]
        first[k] = (-math.pi if periodic[k] else float(chain.lower_limits[dofs[k]])) + 0.5 * step[k]
    return first, step, count, periodic, rates


#: Cache format version: bump when the method changes.
_VERSION = "2"


def cached_pair_tables(chain: Chain, spheres, pairs, verdict=None, budget: float = BUDGET,
                       use_cache: bool = True, pool: WorkerPool | None = None) -> tuple[PairTable, ...]:
    """:func:`pair_tables`, from the disk cache when the same chain, leaves, pairs and settings
    were tabled before (``$RTK_CACHE``/``~/.cache/ros_torch_kin/pair_tables``), else built and
    stored (a read-only cache directory only costs the storing). ``pool``: see :func:`pair_tables`."""
    from .urdf_sphere_trees import cache_directory

    digest = hashlib.sha256(repr((_VERSION, LEVELS, MOVE, MAX_NODES, WORTH, PAYBACK, budget, tuple(pairs),
                                  chain.link_names, chain.joint_names)).encode())
    for tensor in (chain.local_constant, chain.local_linear, chain.lower_limits, chain.upper_limits, chain.joint_axis,
                   spheres.centers, spheres.radii, spheres.sphere_links):
        digest.update(tensor.detach().cpu().double().numpy().tobytes())
    path = cache_directory().parent / "pair_tables" / f"{digest.hexdigest()}.pt"
    if use_cache and path.is_file():
        try:
            return tuple(PairTable(**entry) for entry in torch.load(path, weights_only=True))
        except Exception:  # noqa: BLE001 -- a damaged or foreign file: built again
            pass
    tables = pair_tables(chain, spheres, pairs, verdict, budget, pool=pool)
    if use_cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(f".{os.getpid()}.tmp")
            torch.save([dict(pairs=t.pairs, dofs=t.dofs, first=t.first, step=t.step, count=t.count,
                             periodic=t.periodic, rate=t.rate, values=t.values) for t in tables], temporary)
            os.replace(temporary, path)
        except OSError:
            pass
    return tables
