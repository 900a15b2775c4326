"""Batched sampling-based global search in joint space: bidirectional RRT-Connect, then shortcuts.

The trajectory optimizer starts from straight and one-via-point seeds, which cannot find the way
out of a box, a shelf or a cage. :func:`search_path` finds a collision-free piecewise-linear
joint path from a start to one of several goals, to seed the optimizer with. Plain torch: the
same code on CPU and CUDA, in float32 or float64; no Python loop over samples or configurations
within a round (only over rounds).

Conventions. J joints; configurations (..., J) in the chain's units (rad, or m for prismatic
joints). Steering and edge discretisation use the max-norm over joints ("rad" below); path
lengths and nearest neighbours are Euclidean in joint space. ``valid(q)`` takes (N, J)
configurations (the search's dtype and device) and returns (N,) bool, True = collision-free; it
is the only collision model used. A call costs a fixed overhead plus a little per configuration,
so the checks are made in few, large calls.

Edges. An edge a → b is checked at ``a + (k / n)(b − a)``, k = 0 .. n, n = ⌈‖b − a‖∞ / resolution⌉:
consecutive checked configurations are at most ``resolution`` apart (max-norm), so every point of
the edge lies within resolution / 2 (max-norm) of a checked one; the verdict is as fine as that
(give ``valid`` a margin that covers a motion of resolution / 2 to make it hold in between). The
checked configurations of all the edges of one batch are ordered coarse to fine -- both ends, the
middle, the quarters, ... (a bisection order) -- and given to ``valid`` in stages: the next
levels of that order, as many as make a call worth its fixed cost (about ``overhead /
per-configuration cost`` configurations, measured on the calls so far; within [16, 4096]). Once
an edge has an invalid configuration, its later configurations are dropped from the next stages
(early exit: most colliding edges are caught by an end or the middle). This is VAMP's idea of
checking a whole edge at once, coarse to fine, spread over all the edges of a round.

Search (bidirectional RRT-Connect, batched). Two trees: one rooted at the start, one rooted at
every valid goal (any goal may be reached). Each round the tree with fewer nodes grows (they
take turns while balanced; a tree stuck in a pocket -- a box around the start -- gets the rounds
it needs) and the other is its target:

1. draw the round's samples uniformly within [lower, upper]: ``batch`` of them, twice as many
   every ``batch_doubling`` rounds, up to ``max_batch``; with probability ``goal_bias`` a sample
   is instead a root of the other tree;
2. each sample's nearest node (one ``cdist``/argmin against the preallocated node tensor, whose
   capacity doubles when full) is steered towards it by at most ``step`` (max-norm);
3. every new edge of the round is checked in one batch (the stages above); each valid one adds
   its end as a node (duplicates dropped);
4. connect: from the other tree's nearest node y to each new node x, the straight edge, all at
   once, as two pieces: y's first step towards x (≤ ``step``) and the rest. Where both are valid
   the trees meet; of those, the one giving the shortest path (cost-to-root in both trees plus
   the edge) closes the path. Where only the first step is valid, its end joins the other tree
   (RRT-Connect's greedy connect, one step per round).

Easy problems connect within the first rounds, at ``batch`` samples each; a search that has not
connected by then gets ever larger rounds, whose checks cost less per configuration (a call's
fixed cost is shared by more of them): where a call is dear -- a point-cloud world's field and
exact points, several times a primitive world's -- this is what makes a cage or a shelf fit
within the budget (BENCHMARKS.md's notes compare the two on MBM problems as point clouds).

Steps 3 and 4 share one batched check: the connects' pieces are checked beside the new edges,
each piece's configurations only while its new edge (and, for the rest, the first step) is
still valid, so the verdicts are those of checking them one after the other, in about half the
``valid`` calls (each call has a fixed cost; BENCHMARKS.md's notes compare the two on MBM).

Pockets. A tree whose rounds find fewer than ``ESCAPE_BELOW`` of their extensions free
``ESCAPE_AFTER`` times in a row (or none at all in one round) has its roots in a pocket (a goal
deep in a shelf, a robot tucked against itself: few long edges out are free). Where the caller
gives ``escapes`` (paths from each root away from the obstacles, one or several per root: the
planner's go down a clearance cost's gradient and retreat its target link straight along its
axes), that tree then grows, once, each escape up to its first invalid edge, checked in one
batch like the round's edges.

The tree path is then shortened by :func:`shortcut_path`. Before searching: the start and the
goals are checked (refused, without search, when the start or every goal is invalid), a goal
equal to the start is returned as is, and if a straight edge from the start to a goal is valid
it is returned at once (the shortest such).

Budget. The search stops at ``min(deadline, entry + options.time_budget)`` (``deadline`` a
``time.perf_counter()`` value): a round is not started when the work of the slowest recent
round outside ``valid`` would not fit, and a ``valid`` call that could overrun is split (its cost
is predicted from the calls so far) or not made; the shortcuts use whatever time is left.
``max_nodes`` bounds both trees together.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

Valid = Callable[[Tensor], Tensor]

#: A tree whose round finds fewer than this fraction of its extensions free is in a pocket: its
#: roots' escapes are tried (once), where ``search_path`` is given them.
ESCAPE_BELOW = 0.1
#: ... in this many rounds in a row (or one round with no extension free). A goal tree's first
#: rounds near a table or shelf often find 3-7 % free and then recover: escaping at once cost the
#: MBM Panda's median ~20 % (142 -> 114 ms on 28 problems with two rounds, ad hoc).
ESCAPE_AFTER = 2
#: rad (max-norm): an escape's step shorter than this has stopped; the escape ends there.
ESCAPE_MOVED = 1e-3


@dataclass(frozen=True)
class GlobalSearchOptions:
    """Settings of :func:`search_path` and :func:`shortcut_path` (see the module docstring).

    step: rad (max-norm over joints), the longest tree extension; edge_resolution: rad
    (max-norm), the largest distance between consecutive checked configurations of an edge;
    batch: samples drawn per round at first (and random pairs tried per shortcut round),
    doubled every ``batch_doubling`` rounds up to ``max_batch``; max_nodes: the
    most configurations in both trees together; shortcut_rounds: rounds of shortcutting of the
    found path; goal_bias: the probability that a sample is a root of the other tree;
    time_budget: s of wall clock for the whole call; random_seed: the seed of the torch.Generator
    on the search's device (same problem, seed and device: the same path and nodes, unless the
    time runs out first; the number of checks may differ, as the stage sizes follow the measured
    cost of ``valid``).
    """

    step: float = 0.3
    edge_resolution: float = 0.02
    batch: int = 64
    max_batch: int = 512
    batch_doubling: int = 4
    max_nodes: int = 20000
    shortcut_rounds: int = 30
    goal_bias: float = 0.1
    time_budget: float = 1.0
    random_seed: int = 0

    def __post_init__(self):
        if not (math.isfinite(self.step) and self.step > 0):
            raise ValueError(f"step must be positive (rad), got {self.step}")
        if not (math.isfinite(self.edge_resolution) and self.edge_resolution > 0):
            raise ValueError(f"edge_resolution must be positive (rad), got {self.edge_resolution}")
        if self.batch < 1 or self.max_nodes < 1 or self.shortcut_rounds < 0:
            raise ValueError("batch and max_nodes must be ≥ 1 and shortcut_rounds ≥ 0")
        if self.max_batch < self.batch or self.batch_doubling < 1:
            raise ValueError(f"max_batch must be ≥ batch ({self.batch}) and batch_doubling ≥ 1, got "
                             f"{self.max_batch}, {self.batch_doubling}")
        if not 0 <= self.goal_bias <= 1:
            raise ValueError(f"goal_bias must be within [0, 1], got {self.goal_bias}")
        if not (math.isfinite(self.time_budget) and self.time_budget >= 0):
            raise ValueError(f"time_budget must be finite and ≥ 0 s, got {self.time_budget}")


@dataclass(frozen=True)
class GlobalSearchResult:
    """Outcome of :func:`search_path`.

    path: (K, J) waypoints from the start to one of the goals (K ≥ 2), every edge checked at
    ``edge_resolution``; None if not found. found: a path was found. nodes: configurations in
    both trees (goals and start included). checks: configurations given to ``valid``. elapsed: s
    of wall clock. rounds: search rounds run (0 when the ends or the straight edge decided).
    stopped: "connected" (found), "time_budget", "max_nodes", "start invalid" or
    "goal invalid" (every goal is invalid).
    """

    path: Tensor | None
    found: bool
    nodes: int
    checks: int
    elapsed: float
    stopped: str
    rounds: int = 0


class _OutOfTime(Exception):
    """A ``valid`` call would overrun the deadline."""


class _Validity:
    """``valid`` with its calls counted and timed; a call that could overrun the deadline is split
    into parts that fit (predicted from the calls so far), or raises :class:`_OutOfTime`."""

    def __init__(self, valid: Valid, deadline: float = math.inf):
        self.valid, self.deadline = valid, deadline
        self.calls = self.checks = 0
        self.time = 0.0
        self.overhead = math.inf  # s, the quickest call so far (≥ the fixed cost of a call)

    def _affordable(self, n: int) -> int:
        """How many of n configurations one call may take now (≥ 1), else raise."""
        remaining = self.deadline - time.perf_counter()
        if remaining <= 0:
            raise _OutOfTime
        if self.calls == 0 or self.deadline == math.inf:
            return n
        per_config = self._per_config()
        spare = remaining / 2 - self.overhead  # twice the predicted cost must fit
        if spare < per_config:
            raise _OutOfTime
        return n if per_config == 0 else max(1, min(n, int(spare / per_config)))

    def _per_config(self) -> float:
        """s per configuration beyond a call's fixed cost, from the calls so far (0 before)."""
        return max(self.time - self.calls * self.overhead, 0.0) / max(self.checks, 1)

    def stage_size(self) -> int:
        """How many configurations are worth one call: as many as cost what a call's fixed cost
        does (so early exit saves more than the extra calls cost), within [16, 4096]."""
        per_config = self._per_config()
        if self.calls == 0 or per_config == 0:
            return 64
        return int(min(max(self.overhead / per_config, 16), 4096))

    def __call__(self, q: Tensor) -> Tensor:
        """(N, J) -> (N,) bool."""
        parts, begin, n = [], 0, q.shape[0]
        while begin < n:
            size = self._affordable(n - begin)
            moment = time.perf_counter()
            ok = self.valid(q[begin:begin + size])
            ok = ok.to(torch.bool).reshape(-1)
            if ok.shape[0] != size:
                raise ValueError(f"valid returned {ok.shape[0]} verdicts for {size} configurations")
            int(ok.sum())  # wait for the result (a GPU runs asynchronously) before timing
            spent = time.perf_counter() - moment
            self.calls, self.checks, self.time = self.calls + 1, self.checks + size, self.time + spent
            self.overhead = min(self.overhead, spent)
            parts.append(ok)
            begin += size
        return torch.cat(parts) if len(parts) != 1 else parts[0]


def _bisection_level(k: Tensor, n: Tensor) -> Tensor:
    """Coarse-to-fine rank of checked configuration k (int64, 0 .. n) of an edge of n segments:
    level d ≥ 0 is the least with k / n within 1 / (2n) of a multiple of 2^-d (the ends are level
    0, the middle 1, the quarters 2, ...; every k has a level ≤ ⌈log2 n⌉). Exact integer
    arithmetic; a loop over levels only."""
    top = max(0, math.ceil(math.log2(max(int(n.max()), 1))))
    level = torch.full_like(k, top)
    for d in range(top - 1, -1, -1):
        p = 1 << d
        m = torch.div(2 * k * p + n, 2 * n, rounding_mode="floor")  # the nearest multiple: round(k p / n)
        level = torch.where(2 * (k * p - m * n).abs() <= p, d, level)
    return level


class Resolution:
    """The spacing (rad, max-norm) of an edge's checked configurations: ``coarse``, and ``fine``
    along the part of it within ``radius`` (rad, max-norm) of one of ``near`` (K, J): where a path
    comes to an end that grazes the model (a grasp's goal), edges checked at the coarse spacing
    cut into what lies beside it between their configurations."""

    def __init__(self, coarse: float, near: Tensor, radius: float, fine: float):
        self.coarse, self.near, self.radius, self.fine = float(coarse), near, float(radius), min(float(fine), coarse)

    def grid(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Edges a → b (E, J) each -> per edge its segments n (E,) int64, the parameter window
        [low, high] (E,) each where every configuration k / n is checked, and the stride (E,)
        int64 of those checked outside it. An edge that passes within the radius gets the fine
        grid, the window where it does (the slab method on each near configuration's box of
        half-width radius, one fine step wider) and a stride that keeps the coarse spacing
        outside; the others their coarse grid, every configuration checked."""
        length = (b - a).abs().amax(-1)
        direction = (b - a).unsqueeze(1)  # (E, 1, J)
        low_side = self.near.unsqueeze(0) - self.radius - a.unsqueeze(1)  # (E, K, J)
        high_side = low_side + 2 * self.radius
        moving = direction != 0
        safe = torch.where(moving, direction, torch.ones_like(direction))
        t0, t1 = torch.minimum(low_side / safe, high_side / safe), torch.maximum(low_side / safe, high_side / safe)
        still = (low_side <= 0) & (high_side >= 0)  # a joint that does not move: inside its slab or never
        t0 = torch.where(moving, t0, torch.where(still, -math.inf, math.inf))
        t1 = torch.where(moving, t1, torch.where(still, math.inf, -math.inf))
        enter, leave = t0.amax(-1).clamp(min=0.0), t1.amin(-1).clamp(max=1.0)  # (E, K)
        meets = enter <= leave
        enter = torch.where(meets, enter, torch.full_like(enter, math.inf)).amin(1)
        leave = torch.where(meets, leave, torch.full_like(leave, -math.inf)).amax(1)
        touches = meets.any(1)
        coarse_n = torch.ceil(length / self.coarse).clamp(min=1).to(torch.int64)
        fine_n = torch.ceil(length / self.fine).clamp(min=1).to(torch.int64)
        n = torch.where(touches, fine_n, coarse_n)
        step = 1.0 / n.to(a.dtype)
        low = torch.where(touches, enter - step, torch.full_like(enter, math.inf))
        high = torch.where(touches, leave + step, torch.full_like(leave, -math.inf))
        stride = torch.where(touches, torch.full_like(n, max(1, int(self.coarse / self.fine + 1e-9))), torch.ones_like(n))
        return n, low, high, stride


def _check_edges(check: _Validity, a: Tensor, b: Tensor, resolution: "float | Resolution", skip_start: bool | Tensor = False,
                 skip_end: bool | Tensor = False, requires: Tensor | None = None) -> Tensor:
    """Edges a → b, (E, J) each -> (E,) bool: every checked configuration of the edge is valid
    (see the module docstring). ``skip_start`` / ``skip_end``: that end is known valid and not
    checked again (a bool, or one per edge (E,)). The configurations of all edges in bisection
    order, in stages of ``check.stage_size()`` configurations (a few ``valid`` calls), dropping
    those of edges already found invalid. ``requires`` (E,) int64 (optional): per edge another
    edge (or itself) it is worth checking only with: an edge whose required one is invalid is
    dropped too and reported invalid (chains of requirements are followed)."""
    E = a.shape[0]
    alive = torch.ones(E, dtype=torch.bool, device=a.device)
    if E == 0:
        return alive
    depth = 0
    if requires is not None:  # how many steps the longest chain of requirements takes (one host read)
        on_host = requires.cpu()
        reach = on_host
        while depth < E and not bool((reach == on_host[reach]).all()):
            reach, depth = on_host[reach], depth + 1
        depth += 1
    window = None
    if isinstance(resolution, Resolution):  # fine where an edge passes near given configurations
        n, low, high, stride = resolution.grid(a, b)
        window = (low, high, stride)
    else:
        n = torch.ceil((b - a).abs().amax(-1) / resolution).clamp(min=1).to(torch.int64)  # segments per edge
    first = torch.as_tensor(skip_start, device=a.device).to(torch.int64).expand(E)
    count = (n - torch.as_tensor(skip_end, device=a.device).to(torch.int64) - first + 1).clamp(min=0)
    edge = torch.repeat_interleave(torch.arange(E, device=a.device), count)  # per checked configuration
    if edge.numel() == 0:
        return alive
    k = torch.arange(edge.shape[0], device=a.device) - (torch.cumsum(count, 0) - count)[edge] + first[edge]
    if window is not None:  # outside its window an edge keeps every stride-th configuration and its ends
        low, high, stride = window
        t = k.to(a.dtype) / n[edge].to(a.dtype)
        keep = ((t >= low[edge]) & (t <= high[edge])) | (k % stride[edge] == 0) | (k == n[edge])
        edge, k = edge[keep], k[keep]
        if edge.numel() == 0:
            return alive
    level = _bisection_level(k, n[edge])
    order = torch.argsort(level, stable=True)  # coarse to fine; each level a contiguous run
    edge, k, level = edge[order], k[order], level[order]
    top = int(level[-1])
    bounds = torch.searchsorted(level, torch.arange(top + 2, device=a.device)).tolist()
    stage, low = check.stage_size(), 0
    while low <= top:  # a stage: the next levels, until it has `stage` configurations of live edges
        parts, size = [], 0
        while low <= top and size < stage:
            live = alive[edge[bounds[low]:bounds[low + 1]]].nonzero().squeeze(1) + bounds[low]
            parts.append(live)
            size += live.shape[0]
            low += 1
        if size == 0:
            continue
        chosen = torch.cat(parts)
        e = edge[chosen]
        t = (k[chosen].to(a.dtype) / n[e].to(a.dtype)).unsqueeze(1)
        ok = check(torch.lerp(a[e], b[e], t))  # lerp is exact at t = 0 and t = 1
        alive[e[~ok]] = False
        for _ in range(depth):
            alive &= alive[requires]
    return alive


def edges_valid(valid: Valid, a: Tensor, b: Tensor, resolution: float) -> Tensor:
    """Straight joint-space edges a → b, (E, J) each -> (E,) bool: every configuration
    ``a + (k / n)(b − a)``, k = 0 .. n, n = ⌈‖b − a‖∞ / resolution⌉ (both ends included) is valid.
    resolution: rad (max-norm). Coarse-to-fine order with early exit over a few ``valid`` calls
    (see the module docstring)."""
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"a and b must both be (E, J), got {tuple(a.shape)} and {tuple(b.shape)}")
    if not (math.isfinite(resolution) and resolution > 0):
        raise ValueError(f"resolution must be positive (rad), got {resolution}")
    return _check_edges(_Validity(valid), a, b, float(resolution))


# ---------------------------------------------------------------------------------------- trees
class _Tree:
    """Nodes (capacity, J) with parent (capacity,) (−1 for roots) and Euclidean cost-to-root;
    the first ``roots`` nodes are the roots; the capacity doubles when full."""

    def __init__(self, roots: Tensor, capacity: int):
        R, J = roots.shape
        capacity = max(capacity, R)
        self.nodes = roots.new_empty(capacity, J)
        self.nodes[:R] = roots
        self.parent = torch.full((capacity,), -1, dtype=torch.int64, device=roots.device)
        self.cost = roots.new_zeros(capacity)
        self.size = self.roots = R
        self.escaped = False  # its roots' escapes were tried (search_path's ``escapes``)
        self.poor = 0  # its rounds in a row that found fewer than ESCAPE_BELOW of their extensions free

    def nearest(self, q: Tensor) -> tuple[Tensor, Tensor]:
        """(B, J) -> index (B,) and Euclidean distance (B,) of each one's nearest node."""
        distance, index = torch.cdist(q, self.nodes[:self.size]).min(1)
        return index, distance

    def add(self, q: Tensor, parent: Tensor) -> Tensor:
        """Adds nodes q (m, J) with their parents (m,) -> their indices (m,)."""
        m = q.shape[0]
        if self.size + m > self.nodes.shape[0]:
            capacity = max(2 * self.nodes.shape[0], self.size + m)
            self.nodes = torch.cat((self.nodes, self.nodes.new_empty(capacity - self.nodes.shape[0], q.shape[1])))
            self.parent = torch.cat((self.parent, self.parent.new_full((capacity - self.parent.shape[0],), -1)))
            self.cost = torch.cat((self.cost, self.cost.new_zeros(capacity - self.cost.shape[0])))
        index = torch.arange(self.size, self.size + m, device=q.device)
        self.nodes[index] = q
        self.parent[index] = parent
        self.cost[index] = self.cost[parent] + (q - self.nodes[parent]).norm(dim=-1)
        self.size += m
        return index

    def branch(self, i: int) -> Tensor:
        """(depth, J) the nodes from node i's root to node i."""
        parent = self.parent[:self.size].tolist()
        chain = [i]
        while parent[chain[-1]] >= 0:
            chain.append(parent[chain[-1]])
        return self.nodes[torch.tensor(chain[::-1], device=self.nodes.device)]


def _first_unique_rows(q: Tensor) -> Tensor:
    """(m, J) -> the sorted indices of the first occurrence of each distinct row."""
    _, inverse = torch.unique(q, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), q.shape[0], dtype=torch.int64, device=q.device)
    first.scatter_reduce_(0, inverse, torch.arange(q.shape[0], device=q.device), "amin")
    return first.sort().values


def _inputs(start: Tensor, goals: Tensor, lower, upper) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    start = torch.as_tensor(start)
    if start.dim() == 2 and start.shape[0] == 1:
        start = start[0]
    if start.dim() != 1 or start.shape[0] == 0:
        raise ValueError(f"start must be (J,), got {tuple(start.shape)}")
    J = start.shape[0]
    goals = torch.as_tensor(goals, dtype=start.dtype, device=start.device)
    goals = goals.unsqueeze(0) if goals.dim() == 1 else goals
    if goals.dim() != 2 or goals.shape[1] != J or goals.shape[0] == 0:
        raise ValueError(f"goals must be (G, {J}) with G ≥ 1, got {tuple(goals.shape)}")
    lower = torch.as_tensor(lower, dtype=start.dtype, device=start.device).reshape(-1)
    upper = torch.as_tensor(upper, dtype=start.dtype, device=start.device).reshape(-1)
    if lower.shape != (J,) or upper.shape != (J,):
        raise ValueError(f"lower and upper must be ({J},)")
    if not (torch.isfinite(lower).all() and torch.isfinite(upper).all() and (lower <= upper).all()):
        raise ValueError("the limits must be finite with lower ≤ upper (bound unlimited joints, e.g. to ±π)")
    if not (torch.isfinite(start).all() and torch.isfinite(goals).all()):
        raise ValueError("start and goals must be finite")
    return start, goals, lower, upper


# --------------------------------------------------------------------------------------- search
def search_path(valid: Valid, start: Tensor, goals: Tensor, lower: Tensor, upper: Tensor,
                options: GlobalSearchOptions = GlobalSearchOptions(), deadline: float | None = None,
                escapes: Callable[[Tensor], Tensor] | None = None,
                fine_near: tuple[Tensor, float, float] | None = None) -> GlobalSearchResult:
    """A collision-free joint path from ``start`` (J,) to one of ``goals`` (G, J) within
    [lower, upper] (J,) each (finite; rad or m), by batched bidirectional RRT-Connect and
    shortcuts (see the module docstring).

    valid: (N, J) -> (N,) bool, True = collision-free. deadline: a ``time.perf_counter()`` value;
    the call returns by ``min(deadline, entry + options.time_budget)`` (plus the time of the
    last non-``valid`` work, a few ms). escapes (optional): roots (R, J) -> (M·R, K, J), M
    paths from each root (its first row; row m·R + r is escape m of root r; a path that stops
    repeats its end) away from the obstacles, unchecked (e.g. down the gradient of a clearance
    cost, a tool's straight retreat): a tree whose rounds find fewer than ESCAPE_BELOW of their extensions
    free ESCAPE_AFTER times in a row, or none in one round (its roots in a pocket: a goal deep
    in a shelf), gets, once, the checked prefix of its roots' escapes. fine_near (optional):
    (configurations (K, J), radius, resolution): where an edge (of the trees, connects and
    shortcuts) passes within radius (rad, max-norm) of one of them it is checked at that finer
    resolution (:class:`Resolution`). Returns a :class:`GlobalSearchResult`; raises ValueError
    for inconsistent shapes or limits.
    """
    began = time.perf_counter()
    stop_at = began + options.time_budget if deadline is None else min(deadline, began + options.time_budget)
    start, goals, lower, upper = _inputs(start, goals, lower, upper)
    check = _Validity(valid, stop_at)
    resolution = float(options.edge_resolution)
    if fine_near is not None:
        resolution = Resolution(resolution, fine_near[0].to(start), float(fine_near[1]), float(fine_near[2]))
    trees: list[_Tree] = []
    checked, rounds = [0], [0]  # before the trees: the start and the valid goals, once checked

    def result(path: Tensor | None, stopped: str) -> GlobalSearchResult:
        nodes = sum(tree.size for tree in trees) if trees else checked[0]
        return GlobalSearchResult(path, path is not None, nodes, check.checks, time.perf_counter() - began, stopped,
                                  rounds[0])

    try:
        ok = check(torch.cat((start.unsqueeze(0), goals)))
        if not bool(ok[0]):
            return result(None, "start invalid")
        if not bool(ok[1:].any()):
            return result(None, "goal invalid")
        goals = goals[ok[1:]]
        G, J = goals.shape
        checked[0] = 1 + G
        distance = (goals - start).norm(dim=-1)
        same = (goals == start).all(-1)
        if bool(same.any()):
            return result(torch.stack((start, goals[int(same.to(torch.int8).argmax())])), "connected")
        straight = _check_edges(check, start.expand(G, J), goals, resolution, skip_start=True, skip_end=True)
        if bool(straight.any()):
            best = int(torch.where(straight, distance, math.inf).argmin())
            return result(torch.stack((start, goals[best])), "connected")
    except _OutOfTime:
        return result(None, "time_budget")

    generator = torch.Generator(device=start.device).manual_seed(options.random_seed)
    capacity = min(options.max_nodes, 1024)
    trees = [_Tree(start.unsqueeze(0), capacity), _Tree(goals, capacity)]
    step = float(options.step)
    slowest, path = 0.0, None  # s, a decaying maximum of the rounds' time outside `valid`
    try:
        while True:
            if sum(tree.size for tree in trees) >= options.max_nodes:
                return result(None, "max_nodes")
            moment, in_valid = time.perf_counter(), check.time
            if moment + slowest > stop_at:  # the next round's own work would not fit (`check` guards valid's)
                raise _OutOfTime
            smaller = int(trees[1].size < trees[0].size)  # the trees take turns while balanced
            grow, other = trees[smaller], trees[1 - smaller]
            # the batch doubles every `batch_doubling` rounds up to `max_batch` (module doc)
            B = min(options.batch << min(rounds[0] // options.batch_doubling, 30), options.max_batch)
            rounds[0] += 1
            # 1. samples, a few of them the other tree's roots
            u = torch.rand(B, J, generator=generator, device=start.device, dtype=start.dtype)
            samples = lower + u * (upper - lower)
            biased = torch.rand(B, generator=generator, device=start.device) < options.goal_bias
            root = torch.randint(other.roots, (B,), generator=generator, device=start.device)
            samples = torch.where(biased.unsqueeze(1), other.nodes[root], samples)
            # 2. steer each sample's nearest node towards it by at most `step` (max-norm)
            near, _ = grow.nearest(samples)
            base = grow.nodes[near]
            delta = samples - base
            length = delta.abs().amax(-1)
            new = base + delta * (step / length).clamp(max=1).unsqueeze(1)
            new = torch.minimum(torch.maximum(new, lower), upper)
            moved = (length > 0).nonzero().squeeze(1)
            new, near = new[moved], near[moved]
            if new.shape[0]:
                distinct = _first_unique_rows(new)
                new, near = new[distinct], near[distinct]
            # 3. the round's edges and 4. the connects from the other tree's nearest node y to
            # each new end x: the straight edge as its first step (≤ `step`) and the rest, all in
            # one batched check, a connect's configurations only while its extension (and first
            # step) are valid (the results of checking them one after the other, in fewer calls)
            y_index, gap = other.nearest(new)
            y = other.nodes[y_index]
            fraction = (step / (new - y).abs().amax(-1)).clamp(max=1)
            longer = fraction < 1
            reach = torch.where(longer.unsqueeze(1), torch.lerp(y, new, fraction.unsqueeze(1)), new)
            E = new.shape[0]
            index = torch.arange(E, device=new.device)
            ok = _check_edges(check, torch.cat((grow.nodes[near], y, reach)), torch.cat((new, reach, new)), resolution,
                              skip_start=True, skip_end=torch.cat((torch.zeros_like(longer), ~longer,
                                                                   torch.ones_like(longer))),
                              requires=torch.cat((index, index, index + E)))
            ok, first, rest = ok.split(E)
            _note_round(check, grow, ok, escapes, resolution, lower, upper)  # a tree in a pocket escapes, once
            room = options.max_nodes - sum(tree.size for tree in trees)
            kept = ok.nonzero().squeeze(1)[:room]  # the valid extensions add their end
            new, near = new[kept], near[kept]
            if new.shape[0]:
                added = grow.add(new, near)
                # valid first steps of longer connects grow the other tree towards x (RRT-Connect's
                # greedy connect); a connect valid all the way joins the trees
                y_index, gap, longer, reach, first = (t[kept] for t in (y_index, gap, longer, reach, first))
                joined = rest[kept]
                if bool(joined.any()):
                    total = torch.where(joined, grow.cost[added] + gap + other.cost[y_index], math.inf)
                    best = int(total.argmin())
                    middle = reach[best:best + 1] if bool(longer[best]) else reach[:0]
                    through = torch.cat((grow.branch(int(added[best])), middle,
                                         other.branch(int(y_index[best])).flip(0)))
                    repeated = (through[1:] == through[:-1]).all(-1)  # x may be y itself
                    through = torch.cat((through[:1], through[1:][~repeated]))
                    path = through if grow is trees[0] else through.flip(0)
                    break
                stepped = (first & longer).nonzero().squeeze(1)
                room = options.max_nodes - sum(tree.size for tree in trees)
                if stepped.numel() and room > 0:
                    stepped = stepped[_first_unique_rows(reach[stepped])][:room]
                    other.add(reach[stepped], y_index[stepped])
            slowest = max(0.9 * slowest, time.perf_counter() - moment - (check.time - in_valid))
    except _OutOfTime:
        return result(None, "time_budget")
    return result(_shortcut(check, path, options, generator, resolution), "connected")


def _note_round(check: _Validity, tree: _Tree, ok: Tensor, escapes, resolution, lower: Tensor,
                upper: Tensor) -> None:
    """After a round of ``tree`` whose extensions' validity was ``ok`` (E,): counts its poor rounds
    in a row (fewer than ESCAPE_BELOW free) and, with ``escapes``, grows its roots' escapes once
    it is in a pocket: ESCAPE_AFTER poor rounds in a row, or a round with none free."""
    if escapes is None or tree.escaped:
        return
    free = int(ok.sum())
    tree.poor = tree.poor + 1 if free < ESCAPE_BELOW * ok.shape[0] else 0
    if tree.poor >= ESCAPE_AFTER or (free == 0 and ok.shape[0] > 0):
        _grow_escapes(check, tree, escapes, resolution, lower, upper)


def _grow_escapes(check: _Validity, tree: _Tree, escapes: Callable[[Tensor], Tensor], resolution,
                  lower: Tensor, upper: Tensor) -> None:
    """The tree's roots' escapes (``escapes(roots)`` (M·R, K, J), row m·R + r from root r, first
    row the root), clamped into the limits and checked edge by edge in one batch; every escape
    up to its first invalid edge (or its first step under ESCAPE_MOVED) joins the tree from its
    root, node by node. Done once per tree (``tree.escaped``)."""
    tree.escaped = True
    roots = tree.nodes[:tree.roots]
    path = escapes(roots)
    R = roots.shape[0]
    if path.dim() != 3 or path.shape[0] % R or not path.shape[0] or path.shape[2] != roots.shape[1]:
        raise ValueError(f"escapes must return (M·R, K, J) paths for R = {R} roots, got {tuple(path.shape)}")
    path = torch.minimum(torch.maximum(path.to(roots), lower), upper)
    N, K, J = path.shape
    if K < 2:
        return
    free = _check_edges(check, path[:, :-1].reshape(-1, J), path[:, 1:].reshape(-1, J), resolution, skip_start=True)
    # an escape that stopped repeats its end (or nearly: a least-squares step at a singularity)
    moved = (path[:, 1:] - path[:, :-1]).abs().amax(-1) > ESCAPE_MOVED
    prefix = (free.view(N, K - 1) & moved).to(torch.int64).cumprod(1).to(torch.bool)  # up to the first invalid edge
    parent = torch.arange(N, device=path.device) % R  # escape m·R + r starts at root r
    for k in range(K - 1):
        rows = prefix[:, k].nonzero().squeeze(1)
        if not rows.numel():
            break
        parent[rows] = tree.add(path[rows, k + 1], parent[rows])


# ------------------------------------------------------------------------------------ shortcuts
def _shortcut_pairs(K: int, count: int, generator: torch.Generator, device) -> tuple[Tensor, Tensor, bool]:
    """Index pairs (i, j), i + 2 ≤ j < K, to try: every (i, i + 2) and ``count`` random pairs,
    distinct; or all pairs when there are not more than that. Returns i, j (M,) and whether all
    pairs are there."""
    if (K - 1) * (K - 2) // 2 <= count + K - 2:
        i, j = torch.triu_indices(K, K, offset=2, device=device)
        return i, j, True
    x = torch.randint(K, (2, count), generator=generator, device=device)
    i, j = x.amin(0), x.amax(0)
    i = torch.cat((torch.arange(K - 2, device=device), i))
    j = torch.cat((torch.arange(2, K, device=device), j))
    key = torch.unique(i * K + j)  # sorted, distinct
    key = key[key % K - key // K >= 2]
    return key // K, key % K, False


def _shortcut(check: _Validity, path: Tensor, options: GlobalSearchOptions, generator: torch.Generator,
              resolution: "float | Resolution | None" = None) -> Tensor:
    """``path`` (K, J) shortened by ``options.shortcut_rounds`` rounds (see :func:`shortcut_path`);
    returns the current path when the time is up. ``resolution``: the edges' spacing (default
    ``options.edge_resolution``)."""
    resolution = float(options.edge_resolution) if resolution is None else resolution
    try:
        for _ in range(options.shortcut_rounds):
            K = path.shape[0]
            if K <= 2:
                break
            i, j, every = _shortcut_pairs(K, options.batch, generator, path.device)
            ok = _check_edges(check, path[i], path[j], resolution, skip_start=True, skip_end=True)
            along = torch.cat((path.new_zeros(1), torch.cumsum((path[1:] - path[:-1]).norm(dim=-1), 0)))
            gain = along[j] - along[i] - (path[j] - path[i]).norm(dim=-1)
            section = along[j] - along[i]
            ok &= gain >= -4 * torch.finfo(path.dtype).eps * section  # collinear waypoints: gain 0 up to round-off
            if not bool(ok.any()):
                if every:
                    break  # no vertex pair of this path can be joined: done
                continue
            # the pairs better than every overlapping candidate (more gain, then longer, then first)
            i, j, gain = i[ok], j[ok], gain[ok]
            order = torch.argsort(-(j - i), stable=True)
            order = order[torch.argsort(-gain[order], stable=True)]
            rank = torch.empty_like(order)
            rank[order] = torch.arange(order.shape[0], device=order.device)
            overlap = (i.unsqueeze(1) < j.unsqueeze(0)) & (i.unsqueeze(0) < j.unsqueeze(1))
            overlap.fill_diagonal_(False)
            chosen = ~(overlap & (rank.unsqueeze(0) < rank.unsqueeze(1))).any(1)
            k = torch.arange(K, device=path.device).unsqueeze(1)
            inside = ((i[chosen] < k) & (k < j[chosen])).any(1)
            path = path[~inside]
    except _OutOfTime:
        pass
    return path


def shortcut_path(valid: Valid, path: Tensor, options: GlobalSearchOptions,
                  deadline: float | None = None) -> Tensor:
    """A shorter (never longer, Euclidean in joint space) path with the same ends: ``path``
    (K, J), a valid path, -> (K', J), K' ≤ K.

    Each of ``options.shortcut_rounds`` rounds tries, in one batched edge check (at
    ``options.edge_resolution``), every pair (i, i + 2) of waypoint indices (dropping a redundant
    waypoint) and ``options.batch`` random pairs i < j; the valid ones whose straight edge is
    shorter than the section i .. j are applied, non-overlapping: those better than every
    overlapping valid candidate (largest length saved, then longest section). Stops early when
    every pair was tried and none can be joined, or at ``min(deadline, now +
    options.time_budget)`` (``deadline`` a ``time.perf_counter()`` value), returning the path as
    shortened so far. Deterministic with ``options.random_seed``.
    """
    if path.dim() != 2:
        raise ValueError(f"path must be (K, J), got {tuple(path.shape)}")
    began = time.perf_counter()
    stop_at = began + options.time_budget if deadline is None else min(deadline, began + options.time_budget)
    generator = torch.Generator(device=path.device).manual_seed(options.random_seed)
    return _shortcut(_Validity(valid, stop_at), path, options, generator)
