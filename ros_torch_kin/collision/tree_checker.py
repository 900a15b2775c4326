"""The validity verdict on a tight model: a robot's leaf spheres (thousands, a few mm loose; see
:mod:`.urdf_sphere_trees`) against a scene and themselves, through a bounding hierarchy so that
only the leaves near a contact are ever touched.

Levels, each a bound on everything below it (1-Lipschitz signed distances: a sphere of radius R
centred at C is at least d(C) − R from an obstacle; two spheres |C_a − C_b| − R_a − R_b apart):

1. *link roots*: one sphere per link. World: (obstacle, link, configuration) blocks farther than
   the threshold are dropped; self: (enabled link pair, configuration) blocks.
2. *coarse cover* (optional): the links' coarse conservative spheres
   (:func:`.urdf_spheres.robot_spheres_from_urdf`). They hold the link's geometry (not its
   leaves), so a block whose coarse distance reaches the threshold has its exact geometry that
   far and is dropped; the block's value is the larger of its coarse and its leaf distance.
3. *the leaf hierarchy* (:mod:`.leaf_hierarchy`): a few levels of ≤ 4 children per node, down to
   buckets of ≤ 4 leaves (or tiers, then their ≤ 8 leaves), expanded only where a node is within
   the threshold; then the leaves.
4. *the leaves' triangles* (at the validity margin; with :meth:`TreeCollisionChecker.with_exact_window`
   in every query, for the leaves its spheres put within the window of the margin, as a motion
   check near a grazing start or goal asks): a leaf pair below the threshold that
   its leaves' slack does not prove in contact gets the larger of its sphere distance and its
   triangles' exact one (:meth:`TreeCollisionChecker._exact_leaf_pairs`), and so does a leaf
   near a box, sphere, capsule or cylinder of the scene (its triangles' distance to the
   primitive, :meth:`TreeCollisionChecker._exact_leaf_obstacles`; a cylinder exactly on its side
   and caps, near a rim within 0.12 % of its radius), so a grazing contact is decided by the meshes, not
   by spheres up to ~6 mm beyond them. A point world's leaves stay the spheres'.

Every query returns, per configuration, the smallest block value wherever it is below the
threshold it was asked with (and some value ≥ that threshold elsewhere). Each block value is a
lower bound of the exact distance of that block's geometry (both covers hold it), at least the
leaves' own distance: the verdict ``d < margin`` never calls a contact free and is at most the
leaves' all-pairs verdict (without the triangles: equal to it). Levels are gathered with
``nonzero`` (on CUDA one host synchronisation
per level); no Python loop over configurations, leaves or obstacles (only over the ≤ 4 kinds and
the levels).

Self pairs: the enabled *link* pairs of a :class:`SelfCollisionPairs` (its sphere index tensors
are not used: a tight model has millions of leaf pairs, expanded here only where near).
Units: m.
"""

from __future__ import annotations

import functools
import math
import weakref
from dataclasses import dataclass

import torch
from torch import Tensor

from ..kinematics import Chain, world_transforms
from ..kinematics.fk import check_joint_positions
from .leaf_hierarchy import leaf_hierarchy
from .obstacles import PackedScene, Scene
from .occupancy import lattice_features, voxel_points_rows
from .pair_tables import PairTables
from .robot_spheres import RobotSpheres
from .signed_distance import local_signed_distance, point_distances, signed_distance_rows, to_local
from .triangle_distance import plane_gaps, triangle_distances, triangle_normals
from .triangle_primitive_distance import CONVEX_KINDS, triangle_primitive_distances


#: Thresholds (m) above which distance queries cut the hierarchy by branch and bound (see
#: ``nearest`` in :meth:`TreeCollisionChecker._world_blocks`). Below, the threshold itself cuts
#: about as much, and the representatives' extra distances cost more than they save: the MBM
#: Panda's planner (whole-motion checks at 14 / 4 mm) took 41 ms of checks a call with them,
#: 36 without.
NEAREST_ABOVE = 0.05
#: Subtracted from a distance between leaf triangles (m): float32 rounding of the corners, the
#: link poses and the distance itself is ~1e-7 m at the scale of a robot; this is 100 times that.
TRIANGLE_ROUNDING = 1e-5
#: A self pair's leaves, and a leaf near a convex primitive, are tested by their triangles in
#: queries at the validity margin (within this, m): the verdict of contact. A clearance above it
#: stays the spheres' (conservative, and a grazing configuration's hundreds of leaf pairs cost
#: more than the rest of its check), unless a checker is given an exact window.
EXACT_AT = 1e-6


@dataclass(frozen=True, eq=False)
class TreeDistances:
    """For B configurations: ``min_distance`` (B,) the smallest distance, world or self, exact
    (as the module doc says) where below the query's threshold (else some value ≥ it);
    ``in_collision`` (B,) bool (``min_distance < margin``); ``pairs``: per configuration the
    closest pair's names, (link, obstacle id) or (link, link), '' where nothing is within the
    threshold."""

    min_distance: Tensor
    in_collision: Tensor
    pairs: tuple[tuple[str, str], ...]
    #: (B,) the world part and the self part of ``min_distance`` (same exactness)
    world_distance: Tensor | None = None
    self_distance: Tensor | None = None

    def nearest_pair(self, b: int) -> tuple[str, str]:
        return self.pairs[b]


#: Configurations per pass (bounds the gathered temporaries; the levels' sizes depend on how many
#: configurations are near contact).
CHUNK = 1024
#: Rows (bucket pairs) per block of the self check's last level.
BUCKET_PAIRS = 1 << 14
#: Few blocks skip the hierarchy's upper levels: a world block goes from its link's root straight
#: to its descendants at the deepest level with at most this many per link (level 3 of a fan-out
#: 4 hierarchy), when blocks × that many distances are at most JUMP_DISTANCES. A small query's
#: time is its count of operations (each level a few dozen), not its distances; a large one's
#: is its distances, which the upper levels cut.
JUMP_WIDTH = 64
JUMP_DISTANCES = 1 << 14
#: A point world's verdict asks a level's representative leaves and children in one field query
#: while the level has at most this many blocks (per-call operations dominate; beyond it the
#: children of the blocks the representatives decide cost more than the second query)
MERGE_BLOCKS = 512
#: The same for a self block, whose two links' descendants meet pairwise (level 2: ≤ 16 each).
PAIR_JUMP_WIDTH = 16
#: A point world's roots (at most this many: configurations × links) are asked the field's bound
#: by row without the exact points (the roots are large; fewer operations, which decide a small
#: query); more go the general way (:func:`.signed_distance.point_distances`, exact points
#: included), which measured faster at B = 4,096.
ROOT_ROWS = 4096


#: Hierarchies built, per RobotSpheres object (held weakly) and rounding: a model's build makes
#: two checkers on the same leaves (the always-in-collision test's, the verdict's), ~0.3 s each
#: for the MBM UR5's 22,000 leaves.
_HIERARCHIES: "weakref.WeakKeyDictionary[RobotSpheres, dict]" = weakref.WeakKeyDictionary()


def _hierarchy(spheres: RobotSpheres, rounding: float, bodies):
    """:func:`.leaf_hierarchy.leaf_hierarchy` of ``spheres`` (its tiers), built once per spheres
    object and rounding where no bodies are given (carried objects make new spheres anyway)."""
    if bodies is not None:
        return leaf_hierarchy(spheres.centers, spheres.radii, spheres.sphere_links, rounding=rounding, bodies=bodies,
                              tiers=spheres.tiers)
    built = _HIERARCHIES.setdefault(spheres, {})
    if rounding not in built:
        built[rounding] = leaf_hierarchy(spheres.centers, spheres.radii, spheres.sphere_links, rounding=rounding,
                                         tiers=spheres.tiers)
    return built[rounding]


@dataclass(frozen=True, eq=False)
class _Blocks:
    """Blocks (one obstacle or link pair, one configuration) that reach below the threshold:
    ``value`` (K,) m, ``configuration`` (K,), ``a`` (K,) root slot, ``b`` (K,) obstacle index
    within its kind or root slot."""

    value: Tensor
    configuration: Tensor
    a: Tensor
    b: Tensor


class TreeCollisionChecker:
    """A tight model's verdict and clearances (immutable; ``with_scene`` for another scene).

    chain; spheres: the leaf spheres (RobotSpheres, e.g. from
    :func:`.urdf_sphere_trees.robot_sphere_trees_from_urdf`); scene; self_pairs: which link
    pairs are checked (:class:`SelfCollisionPairs`, or None for none); margin (m, ≥ 0): the
    distance below which :meth:`in_collision` says True (the validity margin); coarse: optionally
    a :class:`CollisionChecker` on a coarse conservative cover of the same links
    (:func:`.urdf_spheres.robot_spheres_from_urdf`), the hierarchy's second level, carrying the
    same objects in the same order (ValueError naming both lists otherwise); attached:
    objects the robot carries (:class:`.attached_objects.AttachedObject`), each a root slot of
    its own on its link, checked against the world and against the links and objects
    :mod:`.attached_objects` says (``spheres`` is then the robot's leaves followed by the
    objects', ``robot_spheres`` the robot's own; ``with_attached`` for other objects);
    pair_tables: :class:`.pair_tables.PairTable` s of enabled self pairs, each a lower bound of
    its pairs' distance from a lookup over one or two joints: a pair it puts at or beyond a
    query's limit is not descended (the results are the same, only cheaper); triangles: whether
    a self pair's grazing leaf pairs are decided by their triangles at the validity margin
    (level 4 of the module doc; the leaves must carry them, as sphere trees built by
    :func:`.urdf_sphere_trees.robot_sphere_trees_from_urdf` do).
    """

    #: leaves closer than margin + this (m) by their spheres get their triangles' distance in
    #: queries above the margin too (:meth:`with_exact_window`); None: at the margin only
    exact_window: float | None = None

    def __init__(self, chain: Chain, spheres: RobotSpheres, scene: Scene | None = None, self_pairs=None,
                 margin: float = 0.0, coarse=None, attached=(), pair_tables=(), triangles: bool = True):
        if tuple(spheres.link_names) != tuple(chain.link_names):
            raise ValueError(f"the spheres were built for other links than those of robot '{chain.name}'")
        if not math.isfinite(margin) or margin < 0:
            raise ValueError(f"margin must be finite and ≥ 0 m, got {margin}")
        self.chain, self.margin = chain, float(margin)
        #: False after :meth:`without_self_pairs` (kept by with_attached and on_chain)
        self._checks_self = True
        device, dtype = chain.device, chain.dtype
        self.robot_spheres = self.spheres = spheres.to(device, dtype)
        self.attached, self._coarse_source, bodies, body_names = tuple(attached), coarse, None, chain.link_names
        if self.attached:
            from .attached_objects import attached_bodies

            carried = attached_bodies(chain, self.robot_spheres, self.attached, tight=True)
            self.spheres, bodies, body_names, spheres = carried.spheres, carried.bodies, carried.names, carried.spheres
        self.scene = Scene() if scene is None else scene
        self.self_pairs = self_pairs
        self._packed: PackedScene = self.scene.packed(device, dtype)
        self.rounding = max(1e-6, 1e4 * torch.finfo(dtype).eps)
        #: the leaves' triangles (:class:`.robot_spheres.LeafTriangles`), for the exact test of
        #: the self pairs and primitives that decide a verdict (see :meth:`_exact_leaf_pairs`,
        #: :meth:`_exact_leaf_obstacles`); None: spheres only
        self._triangles = self.spheres.triangles if self.spheres.num_spheres and triangles else None
        if self._triangles is not None:  # each triangle's bounding sphere: centre (N, 3) and radius (N,)
            corners = self._triangles.corners
            middle = 0.5 * (corners.amax(1) + corners.amin(1))
            self._triangle_spheres = (middle, (corners - middle.unsqueeze(1)).norm(dim=-1).amax(1) * (1 + 1e-6)
                                      + self._triangles.radii, triangle_normals(corners))
            self._leaf_slabs = _leaf_slabs(self._triangles, self.spheres.centers)
        if self.spheres.num_spheres:
            tree = _hierarchy(spheres, self.rounding, bodies)
            self._levels = tuple(level.to(device, dtype) for level in tree.levels)
            #: per level: whether padding is over a quarter of its children table (then a world
            #: kind whose queries are dear, a point world's, is asked about the real children only)
            self._sparse = tuple(float(level.valid.float().mean()) < 0.75 for level in tree.levels)
            self._child_spheres, self._representative_spheres = self._packed_levels()
            #: per level, its nodes' representative leaves' slack (N,)
            self._representative_slack = tuple(self.spheres.slack.index_select(0, level.representative)
                                               for level in self._levels)
            #: (level k, per root its level-k nodes (roots, D), their spheres (roots, D, 4)): see JUMP_*
            self._world_jump, self._pair_jump = self._descendants(JUMP_WIDTH), self._descendants(PAIR_JUMP_WIDTH)
            root_bodies = list(tree.bodies)
        else:
            self._levels, root_bodies, self._sparse = (), [], ()
            self._child_spheres = self._representative_spheres = self._representative_slack = ()
            self._world_jump = self._pair_jump = (0, None, None)
        slot = {body: k for k, body in enumerate(root_bodies)}  # a robot link's body is its index
        #: each root slot's name: its link's, or the attached object's id
        self._slot_names = tuple(body_names[body] for body in root_bodies)
        names = {n: i for i, n in enumerate(chain.link_names)}
        robot_pairs = [(a, b) for a, b in (self_pairs.enabled if self_pairs is not None else ())
                       if names.get(a) in slot and names.get(b) in slot]
        pairs = [(slot[names[a]], slot[names[b]]) for a, b in robot_pairs]
        if self.attached and self_pairs is not None:
            pairs += [(slot[a], slot[b]) for a, b in carried.pairs if a in slot and b in slot]
        self._pair_a = torch.tensor([a for a, _ in pairs], dtype=torch.int64, device=device)
        self._pair_b = torch.tensor([b for _, b in pairs], dtype=torch.int64, device=device)
        # the joint tables of enabled robot pairs (:mod:`.pair_tables`), and which pair each bounds
        enabled = {pair: k for k, pair in enumerate(robot_pairs)}
        self._robot_pairs = tuple(robot_pairs)  # the first len(robot_pairs) entries of _pair_a / _pair_b
        kept = tuple(t for t in pair_tables if any(pair in enabled for pair in t.pairs))
        self._pair_table_source = tuple(pair_tables)
        self._pair_tables = PairTables(kept, device, dtype) if kept else None
        members = [(enabled[pair], k) for k, t in enumerate(kept) for pair in t.pairs if pair in enabled]
        #: each tabled pair's index among the self pairs, and its table's among the kept tables
        self._table_pairs = torch.tensor([p for p, _ in members], dtype=torch.int64, device=device)
        self._table_of = torch.tensor([k for _, k in members], dtype=torch.int64, device=device)
        self.coarse = None
        if coarse is not None and root_bodies:
            carried = tuple(o.id for o in getattr(coarse, "attached", ()))
            if carried != tuple(o.id for o in self.attached):  # its bodies L + k must be the same objects
                raise ValueError(f"the coarse checker carries {list(carried)}, this one "
                                 f"{[o.id for o in self.attached]}: give both the same objects in the same order")
            self.coarse = coarse.spheres.to(device, dtype)
            coarse_bodies = getattr(coarse, "_bodies", coarse.spheres.sphere_links).cpu()
            rows = [torch.nonzero(coarse_bodies == body).squeeze(1) for body in root_bodies]
            self._coarse_has = torch.tensor([len(r) > 0 for r in rows], device=device)
            rows = [r if len(r) else torch.zeros(1, dtype=torch.int64) for r in rows]
            table, valid = (t.to(device) for t in _padded(rows))
            #: (slots, W, 4) each root slot's coarse spheres (centre in the link frame, radius; −inf on the padding)
            spheres = torch.cat((self.coarse.centers, self.coarse.radii.unsqueeze(1)), 1)[table]
            spheres[..., 3] = torch.where(valid, spheres[..., 3], torch.full_like(spheres[..., 3], -math.inf))
            self._coarse_spheres = spheres.contiguous()

    def with_attached(self, objects, coarse=None) -> "TreeCollisionChecker":
        """The same robot, scene, self pairs and margin carrying ``objects`` (replacing any carried
        now; () for none). ``coarse``: the coarse checker carrying the same objects (default:
        this checker's coarse one, given them). ValueError naming the object and field for an
        unknown link or touch link. Nothing carried before or after: this checker itself (its
        hierarchy is not built again; the coarse level only lends its spheres)."""
        objects = tuple(objects)
        if not objects and not self.attached:
            return self
        if coarse is None and self._coarse_source is not None:
            coarse = self._coarse_source.with_attached(objects)
        checker = TreeCollisionChecker(self.chain, self.robot_spheres, self.scene, self.self_pairs, self.margin,
                                       coarse, objects, self._pair_table_source, self._triangles is not None)
        return checker if self._checks_self else checker.without_self_pairs()

    # ------------------------------------------------------------------ construction
    def with_scene(self, scene: Scene) -> "TreeCollisionChecker":
        checker = object.__new__(TreeCollisionChecker)
        checker.__dict__.update(self.__dict__)
        checker.scene, checker._packed = scene, scene.packed(self.chain.device, self.chain.dtype)
        return checker

    def on_chain(self, chain: Chain, coarse=None) -> "TreeCollisionChecker":
        """The same leaves, self pairs, scene and margin on ``chain`` (another device or dtype),
        with ``coarse`` (a :class:`CollisionChecker` already on that chain) as its coarse level, and
        the same attached objects (``coarse`` should carry them too)."""
        checker = TreeCollisionChecker(chain, self.robot_spheres, self.scene, self.self_pairs, self.margin, coarse,
                                       self.attached, self._pair_table_source, self._triangles is not None)
        return checker if self._checks_self else checker.without_self_pairs()

    def for_pairs(self, pairs) -> "TreeCollisionChecker":
        """The same checker checking only the self pairs ``pairs`` ((link_a, link_b), each one of
        its enabled robot pairs; KeyError otherwise), with no joint table: its hierarchy is not
        built again."""
        enabled = {pair: k for k, pair in enumerate(self._robot_pairs)}
        index = torch.tensor([enabled[pair] for pair in pairs], dtype=torch.int64, device=self._pair_a.device)
        checker = object.__new__(TreeCollisionChecker)
        checker.__dict__.update(self.__dict__)
        checker._pair_a, checker._pair_b = self._pair_a[index], self._pair_b[index]
        checker._robot_pairs = tuple(pairs)
        checker._pair_tables, checker._pair_table_source = None, ()
        checker._table_pairs = checker._table_of = self._table_pairs[:0]
        return checker

    def without_self_pairs(self) -> "TreeCollisionChecker":
        """The same checker with no self pair checked."""
        checker = object.__new__(TreeCollisionChecker)
        checker.__dict__.update(self.__dict__)
        checker._pair_a, checker._pair_b = self._pair_a[:0], self._pair_b[:0]
        checker._checks_self = False
        return checker

    def decides_by_triangles(self, threshold: float) -> bool:
        """Whether a query at ``threshold`` (m) lets the leaves' triangles decide grazing self
        pairs or grazing contacts with the scene's primitives (at the validity margin, with
        triangles; see :data:`EXACT_AT`): elsewhere the spheres' distances below it give the same
        verdict as :meth:`clear`."""
        if self._triangles is None or threshold > self.margin + EXACT_AT:
            return False
        return bool(self._pair_a.numel()) or any(shapes.kind in CONVEX_KINDS for shapes in self._packed.shapes)

    def with_exact_window(self, window: float) -> "TreeCollisionChecker":
        """The same checker whose leaves (and leaf pairs) closer than ``margin + window`` (m) by
        their spheres get their triangles' distance in every query, whatever its threshold (by
        default only queries at the validity margin do, :data:`EXACT_AT`): what a motion check
        needs near a start or goal that its spheres put in contact but its meshes do not (a
        grasp's, a fraction of a millimetre from what it grasps). The values stay lower bounds;
        below the window they are exact. Costs the triangle test wherever a leaf is that near."""
        checker = object.__new__(TreeCollisionChecker)
        checker.__dict__.update(self.__dict__)
        checker.exact_window = float(window)
        return checker

    def _exact_rows(self, decisive: Tensor, applies: bool = True) -> tuple[Tensor | None, float | None]:
        """Which blocks (their ``decisive`` limits (K,)) have their last level's leaves decided by
        triangles, and below what distance (m; None: their own threshold): at the validity margin
        only, or with :meth:`with_exact_window` every block below ``margin + window``."""
        if self._triangles is None or not applies:
            return None, None
        if self.exact_window is not None:
            return torch.ones_like(decisive, dtype=torch.bool), self.margin + self.exact_window
        return decisive <= self.margin + EXACT_AT, None

    def without_triangles(self) -> "TreeCollisionChecker":
        """The same checker deciding by its leaf spheres alone (no triangle test; see
        :meth:`_exact_leaf_pairs`, :meth:`_exact_leaf_obstacles`): about twice as fast on random configurations (BENCHMARKS.md,
        section `tight`), with the spheres' false alarms (contacts called up to ~6 mm from the
        meshes)."""
        checker = object.__new__(TreeCollisionChecker)
        checker.__dict__.update(self.__dict__)
        checker._triangles = None
        return checker

    def __repr__(self) -> str:
        nodes = sum(level.radius.shape[0] for level in self._levels)
        return (f"TreeCollisionChecker('{self.chain.name}', {self.spheres.num_spheres} leaves under {nodes} nodes, "
                f"{self._packed.count} obstacles, {self._pair_a.shape[0]} self link pairs, "
                f"{'with' if self.coarse is not None else 'without'} coarse cover, margin {self.margin} m)")

    @functools.cached_property
    def _poke(self) -> float:
        """How far a leaf sphere can reach beyond the geometry it covers (m): a node's bound holds
        the geometry (its tiers'), so its leaves may be this much nearer (see ``nearest`` in
        :meth:`_world_blocks`). Read once, at the first query that cuts by branch and bound."""
        return float(self.spheres.slack.max()) if self.spheres.num_spheres else 0.0

    # ------------------------------------------------------------------ queries
    def in_collision(self, q: Tensor) -> Tensor:
        """(B, J) or (J,) -> (B,) bool: some block (world or enabled self pair) is closer than the
        margin (module doc)."""
        return ~self.clear(q, self.margin)

    def clear(self, q: Tensor, threshold: float | Tensor) -> Tensor:
        """(B, J) or (J,) -> (B,) bool: every block is at least ``threshold`` (m; a float or one
        per configuration (B,)) away. The verdict alone: a configuration stops being looked at
        once one of its blocks is certainly closer (a representative leaf pair is), which makes
        deep contacts as cheap as free configurations."""
        q = check_joint_positions(self.chain, q).detach()
        threshold = torch.as_tensor(threshold, dtype=q.dtype, device=q.device).expand(q.shape[0])
        world, own, _, _ = self._parts(q, threshold, threshold, names=False, decide=True)
        return (world >= threshold) & (own >= threshold)

    def distances(self, q: Tensor, threshold: float | None = None) -> TreeDistances:
        """(B, J) -> :class:`TreeDistances`, exact below ``threshold`` (default: the margin)."""
        threshold = self.margin if threshold is None else float(threshold)
        world, own, pairs, _ = self._parts(q, threshold, threshold, names=True)
        minimum = torch.minimum(world, own)
        pairs = tuple(w if bool(world[b] <= own[b]) else o for b, (w, o) in enumerate(pairs))
        return TreeDistances(minimum, minimum < self.margin, pairs, world, own)

    def min_distance(self, q: Tensor, threshold: float = math.inf) -> Tensor:
        """(B, J) -> (B,) the smallest distance (m), exact where below ``threshold`` (else a value
        ≥ it). A finite threshold is much cheaper: only blocks that may be closer are looked at."""
        return self._minimum(q, float(threshold), names=False)[0]

    def world_and_self_distance(self, q: Tensor, world_threshold: float, self_threshold: float) -> tuple[Tensor, Tensor]:
        """(B, J) -> the smallest world distance (B,) and the smallest self distance (B,), each
        exact below its own threshold (m); a tighter self threshold skips most self pairs."""
        world, own, _, _ = self._parts(q, float(world_threshold), float(self_threshold), names=False)
        return world, own

    def distance_columns(self, q: Tensor, world_threshold: float, self_threshold: float) -> Tensor:
        """(B, J) -> (B, Lk + P): per root slot (a link with spheres, :attr:`column_links`) its
        smallest world distance, then per enabled self pair its distance (m), each exact below its
        threshold, else a lower bound ≥ it (the least bound of the blocks cut at the roots or the
        coarse spheres, often far beyond the threshold: a motion check cuts its pieces by it);
        +inf for a world column without obstacles. Every block within a threshold is descended
        (no branch and bound), so a large threshold costs more than with :meth:`min_distance`."""
        q = check_joint_positions(self.chain, q).detach()
        world_threshold, self_threshold = float(world_threshold), float(self_threshold)
        # no branch and bound: it keeps each configuration's least value, not every column's
        *_, (world, own) = self._parts(q, world_threshold, self_threshold, names=False, nearest=(False, False),
                                       bounds=True)
        if self._packed.count:
            world = torch.where(torch.isinf(world), max(world_threshold, 0.0), world)
        return torch.cat((world, torch.where(torch.isinf(own), max(self_threshold, 0.0), own)), 1)

    @property
    def column_links(self) -> tuple[Tensor, Tensor]:
        """The links of :meth:`distance_columns`' columns (chain link indices, CPU): (Lk,) one per
        world column, (P, 2) a pair per self column."""
        slots = self._levels[0].links.cpu() if self._levels else torch.zeros(0, dtype=torch.int64)
        return slots, torch.stack((slots[self._pair_a.cpu()], slots[self._pair_b.cpu()]), 1)

    def link_pair_collisions(self, q: Tensor) -> Tensor:
        """(B, J) -> (B, P) bool: enabled link pair p (in ``self_pairs.enabled`` order, pairs
        without leaves left out) is in contact (its block value < 0)."""
        q = check_joint_positions(self.chain, q).detach()
        if q.shape[0] > CHUNK:
            return torch.cat([self.link_pair_collisions(part) for part in q.split(CHUNK)])
        B, P = q.shape[0], self._pair_a.shape[0]
        hits = torch.zeros(B * max(P, 1), dtype=torch.bool, device=q.device)
        if P and B:
            frames = self._frames(q)
            blocks, pair = self._self_blocks(frames, self._root_centers(frames), q.new_full((B,), self.rounding), None, q)
            hits[(blocks.configuration * P + pair)[blocks.value < 0]] = True
        return hits.view(B, max(P, 1))[:, :P]

    # ------------------------------------------------------------------ internals
    def _minimum(self, q: Tensor, threshold: float, names: bool):
        world, own, pairs, _ = self._parts(q, threshold, threshold, names)
        minimum = torch.minimum(world, own)
        if names:
            pairs = tuple(w if bool(world[b] <= own[b]) else o for b, (w, o) in enumerate(pairs))
        return minimum, pairs

    def _frames(self, q: Tensor) -> Tensor:
        """(B, J) checked -> (B, L, 3, 4) link poses in the root frame, configuration major."""
        return world_transforms(self.chain, q)[:, :3].permute(3, 0, 1, 2).contiguous()

    def _parts(self, q: Tensor, threshold, self_threshold, names: bool, decide: bool = False, nearest=None,
               bounds: bool = False):
        """(world min (B,), self min (B,), per configuration ((link, obstacle), (link, link)),
        (world per root slot (B, Lk), self per enabled pair (B, P))). Thresholds: floats or (B,)
        tensors. ``decide``: the verdict alone (:meth:`clear`): a configuration with a block
        certainly below its threshold gets some value below it (its columns are then not all
        filled). ``nearest``: (world, self) bools, branch and bound (default: for float thresholds
        above :data:`NEAREST_ABOVE` when not deciding; decided here, before the thresholds are
        tensors, so that no device value is read). Beyond its threshold a value is a lower bound
        ≥ it: the threshold itself, or with ``bounds`` (not with ``decide``) the least bound of the
        blocks cut at the roots or the coarse spheres (the threshold where a block went deeper)."""
        if nearest is None:
            nearest = tuple(not decide and isinstance(t, (int, float)) and t > NEAREST_ABOVE
                            for t in (threshold, self_threshold))
        q = check_joint_positions(self.chain, q).detach()
        B = q.shape[0]
        threshold = torch.as_tensor(threshold, dtype=q.dtype, device=q.device).expand(B)
        self_threshold = torch.as_tensor(self_threshold, dtype=q.dtype, device=q.device).expand(B)
        if B > CHUNK:  # per-configuration thresholds are split with their configurations
            parts = [self._parts(*part, names, decide, nearest, bounds) for part in
                     zip(q.split(CHUNK), threshold.split(CHUNK), self_threshold.split(CHUNK))]
            return (torch.cat([w for w, _, _, _ in parts]), torch.cat([o for _, o, _, _ in parts]),
                    tuple(p for _, _, pairs, _ in parts for p in pairs),
                    tuple(torch.cat([c[k] for _, _, _, c in parts]) for k in range(2)))
        world_limit = threshold + self.rounding
        self_limit = self_threshold + self.rounding
        frames = self._frames(q) if B and self._levels else None
        slot_names = self._slot_names
        decided = torch.zeros(B, dtype=torch.bool, device=q.device) if decide else None
        widths = (self._levels[0].links.shape[0] if self._levels else 0, self._pair_a.shape[0])
        columns = tuple(q.new_full((B, width), math.inf) for width in widths)  # also the floors, below
        floors = columns if bounds and not decide else (None, None)
        found_world, found_self = [], []
        if frames is not None:
            centers = self._root_centers(frames)  # once for every kind and the self pairs
            for shapes in self._packed.shapes:
                blocks = self._world_blocks(frames, centers, shapes, world_limit, decided, nearest=nearest[0],
                                            floor=floors[0])
                found_world.append((blocks, blocks.a, lambda k, blocks=blocks, shapes=shapes: (
                    slot_names[int(blocks.a[k])], shapes.ids[int(blocks.b[k])])))
            if self._pair_a.numel():
                blocks, pair = self._self_blocks(frames, centers, self_limit, decided, q, nearest=nearest[1],
                                                 floor=floors[1])
                found_self.append((blocks, pair, lambda k, blocks=blocks: (
                    slot_names[int(blocks.a[k])], slot_names[int(blocks.b[k])])))
        result = []
        for found, limit, has, table in ((found_world, threshold, self._packed.count, columns[0]),
                                         (found_self, self_threshold, self._pair_a.numel(), columns[1])):
            width = table.shape[1]
            for blocks, column, _ in found:
                if blocks.value.numel():
                    table.view(-1).scatter_reduce_(0, blocks.configuration * width + column, blocks.value, "amin")
            minimum = table.amin(1) if width else q.new_full((B,), math.inf)
            pairs = [("", "")] * B
            if names:
                for blocks, _, name in found:
                    hit = blocks.value == minimum[blocks.configuration]
                    for k in hit.nonzero().squeeze(1).tolist():
                        pairs[int(blocks.configuration[k])] = name(k)
            if has and frames is not None:  # nothing below the threshold and no bound: the threshold
                # itself (not limit − rounding: float rounding could put it just below)
                minimum = torch.where(torch.isinf(minimum), limit.clamp(min=0.0), minimum)
            result.append((minimum, pairs))
        (world_min, world_pairs), (self_min, self_pairs) = result
        return world_min, self_min, tuple(zip(world_pairs, self_pairs)), columns

    def _root_centers(self, frames: Tensor) -> Tensor:
        """(B, L, 3, 4) -> (B, Lk, 3) the link roots' centres in the root frame."""
        roots = self._levels[0]
        T = frames[:, roots.links]  # (B, Lk, 3, 4)
        return (T[..., :3] @ roots.centers.unsqueeze(-1)).squeeze(-1) + T[..., 3]

    def _packed_levels(self) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """Per level, its nodes' children as spheres (N, F, 4): centre (3) in the link frame and
        radius, −inf on the padding (every distance to a padded child is then +inf, with no mask
        to apply); and its nodes' representative leaves (N, 4). One gather per level and query
        instead of four (the checks are dominated by gathers on small batches)."""
        children, representatives = [], []
        leaves = torch.cat((self.spheres.centers, self.spheres.radii.unsqueeze(1)), 1)
        for index, level in enumerate(self._levels):
            below = self._levels[index + 1] if index + 1 < len(self._levels) else None
            spheres = leaves if below is None else torch.cat((below.centers, below.radius.unsqueeze(1)), 1)
            table = spheres[level.children].clone()  # (N, F, 4)
            table[..., 3] = torch.where(level.valid, table[..., 3], torch.full_like(table[..., 3], -math.inf))
            children.append(table.contiguous())
            representatives.append(leaves[level.representative].contiguous())
        return tuple(children), tuple(representatives)

    def _descendants(self, width: int) -> tuple[int, Tensor | None, Tensor | None]:
        """The deepest level k ≥ 2 whose nodes number at most ``width`` under every root, and per
        root its level-k nodes (roots, D) (padded by repeating the first) and their spheres
        (roots, D, 4) (−inf radius on the padding); (0, None, None) when no level qualifies."""
        nodes = torch.arange(self._levels[0].radius.shape[0], device=self._levels[0].radius.device).unsqueeze(1)
        valid = torch.ones_like(nodes, dtype=torch.bool)
        found = (0, None, None)
        for index in range(len(self._levels) - 1):
            level = self._levels[index]
            children = level.children[nodes]  # (roots, D, F)
            valid = (valid.unsqueeze(2) & level.valid[nodes]).flatten(1)
            nodes = children.flatten(1)
            order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)  # real children first
            nodes, valid = nodes.gather(1, order), valid.gather(1, order)
            width_here = int(valid.sum(1).max())
            if width_here > width:
                break
            nodes, valid = nodes[:, :width_here], valid[:, :width_here]
            if index + 1 >= 2:
                below = self._levels[index + 1]
                spheres = torch.cat((below.centers, below.radius.unsqueeze(1)), 1)[nodes]
                spheres[..., 3] = torch.where(valid, spheres[..., 3], torch.full_like(spheres[..., 3], -math.inf))
                found = (index + 1, nodes.contiguous(), spheres.contiguous())
        return found

    def _children(self, index: int, nodes: Tensor) -> Tensor:
        """Children of ``nodes`` (R,) of level ``index`` as spheres (R, F, 4): centres in the link
        frame and radii, −inf on the padding."""
        return self._child_spheres[index].index_select(0, nodes)

    def _next_nodes(self, index: int, nodes: Tensor, near: Tensor) -> tuple[Tensor, Tensor]:
        """``near`` (R, F) bool over the children of ``nodes`` (R,) of level ``index`` -> the rows
        (K,) and the next level's nodes (K,) where it holds."""
        return _near_nodes(self._levels[index].children, nodes, near)

    def _world_blocks(self, frames: Tensor, centers: Tensor, shapes, limit: Tensor, decided: Tensor | None,
                      nearest: bool = False, floor: Tensor | None = None) -> _Blocks:
        """(obstacle of one kind, link, configuration) blocks below ``limit`` (B,) (module doc);
        ``centers``: the roots' centres of ``frames`` (:meth:`_root_centers`). ``decided`` (B,)
        bool, updated: configurations already known to be below (verdict mode). ``nearest``: only
        each configuration's smallest value is wanted (branch and bound): a node is also cut where
        its bound exceeds the least representative value found for its configuration by more than
        a leaf can poke out of the geometry the node bounds (the leaves' largest slack; twice for
        a self pair), and never below 0 (a leaf deep in a contact can be farther inside than its
        node's bound shows), which keeps the smallest value what the threshold alone gives; another
        block's value may then be one of its upper bounds. It bounds the work of a large threshold
        (everything within it was descended: 0.2 m filled 23 GB on the MBM UR5)."""
        B, L, n = frames.shape[0], frames.shape[1], shapes.count
        roots = self._levels[0]
        costly = shapes.kind == "voxels"  # a field query is dear
        if costly and centers.shape[0] * centers.shape[1] <= ROOT_ROWS:  # see ROOT_ROWS
            field = shapes.kind.narrowed(shapes.kind.features - {"points"})
            local = to_local(centers.reshape(-1, 3).mT.contiguous(), shapes)  # (n, 3, B·L)
            d = signed_distance_rows(field, local.mT, shapes.parameters)
        else:
            d, _ = point_distances(centers.reshape(-1, 3).mT.contiguous(), shapes, False)
        bounds = d.view(n, B, -1) - roots.radius
        near = bounds < limit.view(1, B, 1)
        if floor is not None:  # the blocks cut here: their bound
            torch.minimum(floor, bounds.masked_fill(near, math.inf).amin(0), out=floor)
        if decided is not None:
            near &= ~decided.view(1, B, 1)
        o, j, s = near.nonzero(as_tuple=True)
        if not o.numel():
            return self._no_blocks(frames)
        link, row_limit = roots.links.index_select(0, s), limit.index_select(0, j)
        T = frames.reshape(B * L, 12).index_select(0, j * L + link).view(-1, 3, 4)  # (K, 3, 4)
        R_o = shapes.rotation.index_select(0, o)  # (K, 3, 3)
        # the link frame seen from the obstacle: x_obstacle = Rₒᵀ (R x + t − tₒ); one row per block
        # (rotation transposed for row vectors, offset, the obstacle's parameters), gathered once a level
        rotation = torch.bmm(R_o.mT, T[..., :3]).mT  # (K, 3, 3)
        offset = torch.bmm(R_o.mT, (T[..., 3] - shapes.translation.index_select(0, o)).unsqueeze(2))  # (K, 3, 1)
        packed = torch.cat((rotation.reshape(-1, 9), offset.reshape(-1, 3), shapes.parameters.index_select(0, o)), 1)

        kind = rough = shapes.kind
        if costly:
            # below the roots, where every grid has a far-field lattice, the lattice instead of the
            # voxel field (half the operations; see occupancy.lattice_features); a node's sphere
            # (not a leaf) needs only a lower bound: without the exact points (a node found near
            # by it is opened; the leaves below get the exact distance)
            kind = shapes.kind.narrowed(lattice_features(shapes.kind.features) or shapes.kind.features)
            rough = shapes.kind.narrowed(kind.features - {"points"})

        def distance(rows: Tensor, spheres: Tensor, kind=kind, exact_first: bool = False) -> Tensor:
            # rows (R,), spheres (R, m, 4) -> (R, m); exact_first: ``kind`` the rough field, the first
            # sphere of each row raised to the exact points' distance (one field query for both)
            block = packed.index_select(0, rows)
            local = torch.baddbmm(block[:, 9:12].unsqueeze(1), spheres[..., :3], block[:, :9].view(-1, 3, 3))
            d = signed_distance_rows(kind, local, block[:, 12:])
            if exact_first:
                d = torch.cat((voxel_points_rows(local[:, :1], block[:, 12:], kind.values, d[:, :1]), d[:, 1:]), 1)
            d = d - spheres[..., 3]
            exact_columns = 0 if not costly else d.shape[1] if "points" in (kind.features or ()) else int(exact_first)
            if exact_columns:  # a large sphere beyond the exact points' reach (_wide_leaf_points)
                wide = _wide_leaf_points(block, local[:, :exact_columns], spheres[:, :exact_columns, 3],
                                         d[:, :exact_columns], row_limit.index_select(0, rows), kind.values)
                d = torch.cat((wide, d[:, exact_columns:]), 1) if exact_columns < d.shape[1] else wide
            return d

        bound = torch.full_like(row_limit, -math.inf)
        if self.coarse is not None:
            rows = torch.arange(o.shape[0], device=o.device)
            d = distance(rows, self._coarse_spheres.index_select(0, s), rough).amin(1)
            bound = torch.where(self._coarse_has.index_select(0, s), d, bound)
            if floor is not None:  # cut here: the coarse bound; kept: the limit
                floor.view(-1).scatter_reduce_(0, j * floor.shape[1] + s, torch.maximum(bound, row_limit), "amin")
            keep = (bound < row_limit).nonzero().squeeze(1)
            o, j, s, bound, row_limit = (t.index_select(0, keep) for t in (o, j, s, bound, row_limit))
            packed = packed.index_select(0, keep)
        elif floor is not None:
            floor.view(-1).scatter_reduce_(0, j * floor.shape[1] + s, row_limit, "amin")
        block, nodes = torch.arange(o.shape[0], device=o.device), s
        leaf_min, early = torch.full_like(bound, math.inf), torch.full_like(bound, math.inf)
        decisive = row_limit - self.rounding  # below the threshold itself
        # at the validity margin a convex primitive's leaves are decided by their triangles: a
        # representative leaf decides only when in contact by more than its slack
        exact, cap = self._exact_rows(decisive, shapes.kind in CONVEX_KINDS)
        upper = limit.clone() if nearest else None  # per configuration: the least value found, + the poke
        first, jump_nodes, jump_spheres = self._world_jump
        if (jump_nodes is not None and not nearest and not costly and block.numel()
                and block.numel() * jump_nodes.shape[1] <= JUMP_DISTANCES):
            # few blocks: from the roots straight to their level-k descendants (module constants;
            # not for a field, whose every query is dear: there the levels' cuts pay)
            d = distance(block, jump_spheres.index_select(0, nodes))
            rows, nodes = _near_nodes(jump_nodes, nodes, d < row_limit.unsqueeze(1))
            block = block.index_select(0, rows)
        else:
            first = 0
        merged = costly and decided is not None and "points" in (shapes.kind.features or ())
        for index in range(first, len(self._levels)) if block.numel() else ():
            last = index + 1 == len(self._levels)
            d = None
            if merged and not self._sparse[index] and block.shape[0] <= MERGE_BLOCKS:
                # a field query is dear: the representative leaf (exact) and the children (the
                # rough field, the exact one for leaves) in one query (for few blocks: the
                # children of blocks the representatives decide are asked too)
                representative = self._representative_spheres[index].index_select(0, nodes).unsqueeze(1)
                both = distance(block, torch.cat((representative, self._children(index, nodes)), 1),
                                kind if last else rough, exact_first=not last)
                value, d = torch.maximum(bound.index_select(0, block), both[:, 0]), both[:, 1:]
            elif decided is not None or (upper is not None and not costly):  # a value the block reaches
                representative = self._representative_spheres[index].index_select(0, nodes).unsqueeze(1)
                value = torch.maximum(bound.index_select(0, block), distance(block, representative)[:, 0])
            if decided is not None:  # ... within the limit, it decides its configuration
                if exact is not None:  # (a certain contact: the leaf's inner ball reaches the obstacle)
                    value = value + torch.where(exact.index_select(0, block),
                                                self._representative_slack[index].index_select(0, nodes), 0.0)
                alive = _decide(block, value, decisive, j, early, decided)
                if alive is not None:
                    block, nodes = block.index_select(0, alive), nodes.index_select(0, alive)
                    d = None if d is None else d.index_select(0, alive)
                    if not block.numel():
                        break
            elif upper is not None and not costly:
                _lower_upper(block, value, j, early, upper, self._poke)
            if d is None:
                d = self._sphere_distances(block, self._children(index, nodes), distance, kind if last else rough,
                                           costly and self._sparse[index])
            if last:
                if exact is not None:
                    d = self._exact_leaf_obstacles(packed, block, nodes, d, decisive.index_select(0, block),
                                                   exact.index_select(0, block), j.index_select(0, block), B,
                                                   shapes.kind, cap)
                leaf_min.scatter_reduce_(0, block, d.amin(1), "amin")
                break
            rows, nodes = self._next_nodes(index, nodes, d < _cut(row_limit, upper, j, block).unsqueeze(1))
            if not rows.numel():
                break
            block = block.index_select(0, rows)
        value = torch.minimum(torch.maximum(bound, leaf_min), early)
        keep = value < row_limit
        if decided is not None:
            decided[j[value < decisive]] = True
        return _Blocks(value[keep], j[keep], s[keep], o[keep])

    @staticmethod
    def _sphere_distances(block: Tensor, spheres: Tensor, distance, kind, sparse: bool) -> Tensor:
        """``distance(block, spheres, kind)`` (R, m) for blocks (R,) and spheres (R, m, 4) (−inf
        radius on padding: +inf there); ``sparse``: only the real spheres are asked (a field
        query is dear)."""
        if not sparse:
            return distance(block, spheres, kind)
        r, f = (spheres[..., 3] > -math.inf).nonzero(as_tuple=True)
        d = torch.full(spheres.shape[:2], math.inf, dtype=spheres.dtype, device=spheres.device)
        d[r, f] = distance(block[r], spheres[r, f].unsqueeze(1), kind)[:, 0]
        return d

    def _self_blocks(self, frames: Tensor, centers: Tensor, limit: Tensor, decided: Tensor | None,
                     q: Tensor, nearest: bool = False, floor: Tensor | None = None) -> tuple[_Blocks, Tensor]:
        """(enabled link pair, configuration) blocks below ``limit`` (B,), and their pair index;
        ``centers``, ``decided`` and ``nearest`` as in :meth:`_world_blocks`; ``q`` (B, J): the
        configurations, for the joint tables."""
        B, L = frames.shape[0], frames.shape[1]
        roots = self._levels[0]
        a, b = self._pair_a, self._pair_b
        offset = centers[:, a] - centers[:, b]
        lower = (offset * offset).sum(-1).sqrt() - roots.radius[a] - roots.radius[b]  # (B, P)
        if self._pair_tables is not None:  # pairs their joint table proves clear
            lower[:, self._table_pairs] = torch.maximum(lower[:, self._table_pairs],
                                                        self._pair_tables.lower_bound(q)[:, self._table_of])
        near = lower < limit.unsqueeze(1)
        if floor is not None:  # the blocks cut here: their bound
            torch.minimum(floor, lower.masked_fill(near, math.inf), out=floor)
        if decided is not None:
            near &= ~decided.unsqueeze(1)
        j, p = near.nonzero(as_tuple=True)
        if not j.numel():
            return self._no_blocks(frames), j
        sa, sb = a.index_select(0, p), b.index_select(0, p)
        flat = frames.reshape(B * L, 12)
        Ta = flat.index_select(0, j * L + roots.links.index_select(0, sa)).view(-1, 3, 4)
        Tb = flat.index_select(0, j * L + roots.links.index_select(0, sb)).view(-1, 3, 4)
        row_limit = limit.index_select(0, j)
        # link b's frame seen from link a's: x_a = R_aᵀ (R_b x + t_b − t_a); one row per block
        # (rotation transposed for row vectors, offset), gathered once a level
        rotation = torch.bmm(Ta[..., :3].mT, Tb[..., :3]).mT
        offset = torch.bmm(Ta[..., :3].mT, (Tb[..., 3] - Ta[..., 3]).unsqueeze(2))  # (K, 3, 1)
        packed = torch.cat((rotation.reshape(-1, 9), offset.reshape(-1, 3)), 1)

        def distance(rows, spheres_a, spheres_b):  # (R,), (R, ma, 4), (R, mb, 4) -> (R, ma, mb)
            block = packed.index_select(0, rows)
            seen = torch.baddbmm(block[:, 9:12].unsqueeze(1), spheres_b[..., :3], block[:, :9].view(-1, 3, 3))
            return torch.cdist(spheres_a[..., :3], seen) - spheres_a[..., 3].unsqueeze(2) - spheres_b[..., 3].unsqueeze(1)

        bound = torch.full_like(row_limit, -math.inf)
        if self.coarse is not None:
            rows = torch.arange(j.shape[0], device=j.device)
            d = distance(rows, self._coarse_spheres.index_select(0, sa), self._coarse_spheres.index_select(0, sb))
            d = d.flatten(1).amin(1)
            bound = torch.where(self._coarse_has.index_select(0, sa) & self._coarse_has.index_select(0, sb), d, bound)
            if floor is not None:  # cut here: the coarse bound; kept: the limit
                floor.view(-1).scatter_reduce_(0, j * floor.shape[1] + p, torch.maximum(bound, row_limit), "amin")
            keep = (bound < row_limit).nonzero().squeeze(1)
            j, p, sa, sb, bound, row_limit = (t.index_select(0, keep) for t in (j, p, sa, sb, bound, row_limit))
            packed = packed.index_select(0, keep)
        elif floor is not None:
            floor.view(-1).scatter_reduce_(0, j * floor.shape[1] + p, row_limit, "amin")
        block, na, nb = torch.arange(j.shape[0], device=j.device), sa, sb
        leaf_min, early = torch.full_like(bound, math.inf), torch.full_like(bound, math.inf)
        decisive = row_limit - self.rounding  # below the threshold itself
        # below it, a representative leaf pair decides its configuration; where the leaves'
        # triangles decide (at the margin), only when it is in contact by more than their slack
        exact, cap = self._exact_rows(decisive)
        upper = limit.clone() if nearest else None  # per configuration: the least value found
        first, jump_nodes, jump_spheres = self._pair_jump
        if jump_nodes is not None and not nearest and block.numel() and (
                block.numel() * jump_nodes.shape[1] ** 2 <= JUMP_DISTANCES):
            # few blocks: from both roots straight to their level-k descendants, pairwise
            d = distance(block, jump_spheres.index_select(0, na), jump_spheres.index_select(0, nb))  # (R, D, D)
            r, na, nb = _near_node_pairs(jump_nodes, na, nb, d < row_limit.view(-1, 1, 1))
            block = block.index_select(0, r)
        else:
            first = 0
        for index in range(first, len(self._levels)) if block.numel() else ():
            if decided is not None or upper is not None:  # a representative leaf pair: a value each block reaches
                table = self._representative_spheres[index]
                d = distance(block, table.index_select(0, na).unsqueeze(1), table.index_select(0, nb).unsqueeze(1))
                value = torch.maximum(bound.index_select(0, block), d[:, 0, 0])
            if decided is not None:  # ... within the limit, it decides its configuration
                if exact is not None:  # (a certain contact: the two leaves' inner balls meet)
                    reach = self._representative_slack[index]
                    value = value + torch.where(exact.index_select(0, block), reach.index_select(0, na)
                                                + reach.index_select(0, nb), 0.0)
                alive = _decide(block, value, decisive, j, early, decided)
                if alive is not None:
                    block, na, nb = (t.index_select(0, alive) for t in (block, na, nb))
                    if not block.numel():
                        break
            elif upper is not None:
                _lower_upper(block, value, j, early, upper, 2 * self._poke)
            last = index + 1 == len(self._levels)
            step = BUCKET_PAIRS if last else block.shape[0] + 1
            following = []
            for begin in range(0, block.shape[0], step):  # bounded temporaries on the last level
                rows, pa, pb = block[begin:begin + step], na[begin:begin + step], nb[begin:begin + step]
                d = distance(rows, self._children(index, pa), self._children(index, pb))  # (R, F, F)
                if last:
                    if self._triangles is not None:
                        d = self._exact_leaf_pairs(packed, rows, pa, pb, d, decisive.index_select(0, rows),
                                                   exact.index_select(0, rows), j.index_select(0, rows), B, cap)
                    leaf_min.scatter_reduce_(0, rows, d.flatten(1).amin(1), "amin")
                    continue
                r, ca, cb = _near_node_pairs(self._levels[index].children, pa, pb,
                                             d < _cut(row_limit, upper, j, rows).view(-1, 1, 1))
                following.append((rows.index_select(0, r), ca, cb))
            if last:
                break
            block, na, nb = following[0]
            if not block.numel():
                break
        value = torch.minimum(torch.maximum(bound, leaf_min), early)
        keep = value < row_limit
        if decided is not None:
            decided[j[value < decisive]] = True
        return _Blocks(value[keep], j[keep], sa[keep], sb[keep]), p[keep]

    def _exact_leaf_obstacles(self, packed: Tensor, rows: Tensor, nodes: Tensor, d: Tensor, threshold: Tensor,
                              exact: Tensor, configuration: Tensor, B: int, kind: str, cap: float | None = None
                              ) -> Tensor:
        """The last level's leaf distances ``d`` (R, F) to a convex primitive of ``kind`` for
        blocks ``rows`` (R,) (the link frame in the obstacle's and the obstacle's parameters:
        ``packed`` rows; their ``configuration`` (R,) of B), nodes ``nodes`` (R,), with the leaves
        that decide a verdict at the validity margin (``exact`` (R,) bool) made exact below the
        block's ``threshold`` (R,): as :meth:`_exact_leaf_pairs` does for self pairs (a leaf
        whose slack does not already put it in contact gets the larger of its sphere distance
        and its triangles' (:meth:`_triangle_obstacle_distances`), in :func:`_two_rounds`); with
        ``cap`` (m, :meth:`with_exact_window`) the leaves below it, all of them."""
        chosen = threshold if cap is None else threshold.clamp(max=cap)  # the leaves looked at: below it
        below = (d < chosen.unsqueeze(1)).any(1) & exact
        sub = below.nonzero().squeeze(1)
        if not sub.numel():
            return d
        leaves = self._levels[-1].children[nodes.index_select(0, sub)]  # (R, F)
        part, rows, threshold = d.index_select(0, sub), rows.index_select(0, sub), threshold.index_select(0, sub)
        limit = chosen.index_select(0, sub).unsqueeze(1)
        # certain: in contact below the threshold (with a cap, below the margin: a distance is asked)
        sure = limit if cap is None else self.margin
        certain = (part + self.spheres.slack[leaves] < sure).any(1)
        window = (part < limit) & ~certain.unsqueeze(1) & (self._triangles.counts[leaves] > 0)

        def measure(r: Tensor, m: Tensor) -> Tensor:
            return self._triangle_obstacle_distances(packed.index_select(0, rows.index_select(0, r)), leaves[r, m],
                                                     threshold.index_select(0, r), kind)

        _two_rounds(part, window, certain, threshold, configuration.index_select(0, sub), B, measure, cap is None)
        d = d.clone()
        d[sub] = part
        return d

    def _triangle_obstacle_distances(self, block: Tensor, leaves: Tensor, threshold: Tensor, kind: str) -> Tensor:
        """(P,) the least distance from the triangles of ``leaves`` (P,) to a convex primitive of
        ``kind`` (``block`` (P, 12 + k): the link frame in the obstacle's, as the packed rows hold
        it, then the obstacle's parameters), capped at ``threshold`` (P,), less the triangles'
        radii and :data:`TRIANGLE_ROUNDING` (:func:`.triangle_primitive_distance.triangle_primitive_distances`:
        exact for boxes, spheres and capsules, and for cylinders but near a rim, within 0.12 % of
        the radius below it there). Only triangles whose bounding sphere is within the threshold of the obstacle
        are measured; the others are at least that far."""
        rotation, offset, parameters = block[:, :9].view(-1, 3, 3), block[:, 9:12], block[:, 12:]
        least = threshold.clone()
        pair, within = _runs(self._triangles.counts.index_select(0, leaves))
        triangle = self._triangles.start.index_select(0, leaves).index_select(0, pair) + within
        middle, radius, _ = self._triangle_spheres
        rotation, offset = rotation.index_select(0, pair), offset.index_select(0, pair)
        centre = _moved(middle.index_select(0, triangle), rotation, offset)
        gap, _ = local_signed_distance(kind, centre.unsqueeze(2), parameters.index_select(0, pair), with_normal=False)
        near = (gap[:, 0] - radius.index_select(0, triangle) < (threshold + TRIANGLE_ROUNDING).index_select(0, pair))
        near = near.nonzero().squeeze(1)
        pair, triangle = pair.index_select(0, near), triangle.index_select(0, near)
        corners = torch.baddbmm(offset.index_select(0, near).unsqueeze(1), self._triangles.corners.index_select(0, triangle),
                                rotation.index_select(0, near))  # (K, 3, 3) in the obstacle's frame
        exact = (triangle_primitive_distances(kind, corners, parameters.index_select(0, pair))
                 - self._triangles.radii.index_select(0, triangle) - TRIANGLE_ROUNDING)
        least.scatter_reduce_(0, pair, exact, "amin")
        return least

    def _exact_leaf_pairs(self, packed: Tensor, rows: Tensor, nodes_a: Tensor, nodes_b: Tensor, d: Tensor,
                          threshold: Tensor, exact: Tensor, configuration: Tensor, B: int, cap: float | None = None
                          ) -> Tensor:
        """The last level's leaf-pair distances ``d`` (R, F, F) of blocks ``rows`` (R,) (link b's
        frame in link a's: ``packed`` rows; their ``configuration`` (R,) of B), nodes ``nodes_a`` /
        ``nodes_b`` (R,), with the pairs that decide a verdict at the validity margin (``exact``
        (R,) bool) made exact below the block's ``threshold`` (R,).

        A pair is looked at where it is below the threshold but its leaves' slack does not
        already put it in contact (d + slack_a + slack_b ≥ the threshold) and both leaves cover
        triangles (:meth:`_triangle_distances`), in :func:`_two_rounds` (a grazing configuration
        can have hundreds; a contact needs one). A pair's value becomes the larger of its sphere
        distance and its triangles' (capped at the threshold): exact below the threshold, a lower
        bound either way, as the spheres' own. With ``cap`` (m, :meth:`with_exact_window`) the
        pairs below it, all of them."""
        chosen = threshold if cap is None else threshold.clamp(max=cap)  # the pairs looked at: below it
        below = (d < chosen.view(-1, 1, 1)).flatten(1).any(1) & exact
        sub = below.nonzero().squeeze(1)  # the bucket pairs with a pair below the threshold
        if not sub.numel():
            return d
        level = self._levels[-1]
        leaf_a = level.children[nodes_a.index_select(0, sub)]  # (R, F)
        leaf_b = level.children[nodes_b.index_select(0, sub)]
        part, rows, threshold = d.index_select(0, sub), rows.index_select(0, sub), threshold.index_select(0, sub)
        slack, counts = self.spheres.slack, self._triangles.counts
        limit = chosen.index_select(0, sub).view(-1, 1, 1)
        # certain: in contact below the threshold (with a cap, below the margin: a distance is asked)
        sure = limit if cap is None else self.margin
        certain = (part + slack[leaf_a].unsqueeze(2) + slack[leaf_b].unsqueeze(1) < sure).flatten(1).any(1)
        window = ((part < limit) & ~certain.view(-1, 1, 1) & (counts[leaf_a] > 0).unsqueeze(2)
                  & (counts[leaf_b] > 0).unsqueeze(1))
        F = part.shape[1]

        def measure(r: Tensor, m: Tensor) -> Tensor:  # pair m of row r: leaves m // F of a, m % F of b
            return self._triangle_distances(packed.index_select(0, rows.index_select(0, r)), leaf_a[r, m // F],
                                            leaf_b[r, m % F], threshold.index_select(0, r))

        _two_rounds(part.view(part.shape[0], -1), window.view(window.shape[0], -1), certain, threshold,
                    configuration.index_select(0, sub), B, measure, cap is None)
        d = d.clone()
        d[sub] = part
        return d

    def _triangle_distances(self, block: Tensor, la: Tensor, lb: Tensor, threshold: Tensor) -> Tensor:
        """(P,) the least distance between the triangles of leaves ``la`` (P,) (link a) and ``lb``
        (P,) (link b; ``block`` (P, 12) its frame in link a's, as the packed rows hold it), capped
        at ``threshold`` (P,), less both triangles' radii and :data:`TRIANGLE_ROUNDING`.

        Of each leaf's triangles only those whose bounding sphere is within the threshold of the
        other leaf's sphere can be that near the other's triangles (which that sphere holds); of
        their pairs, those whose bounding spheres are that near and that no plane of either
        triangle separates by that much (:func:`.triangle_distance.plane_gaps`) meet pairwise
        (:func:`.triangle_distance.triangle_distances`); every other pair is at least the
        threshold apart."""
        rotation, offset = block[:, :9].view(-1, 3, 3), block[:, 9:12]  # x_a = x_b @ rotation + offset
        cut = threshold + TRIANGLE_ROUNDING  # (P,) a triangle pair this far cannot matter
        least = threshold.clone()
        # the pairs whose leaves' sphere-and-slab bounds are not that far apart
        open_ = (_slab_gaps(self._leaf_shape(la), self._leaf_shape(lb, rotation, offset)) < cut).nonzero().squeeze(1)
        if not open_.numel():
            return least
        la, lb, rotation, offset, cut = (t.index_select(0, open_) for t in (la, lb, rotation, offset, cut))
        # each side's triangles near the other leaf (its sphere and its slab), each in its own frame
        ta, pair_a = self._near_triangles(la, self._leaf_shape(lb, rotation, offset), cut)
        back = -torch.bmm(offset.unsqueeze(1), rotation.mT).squeeze(1)  # link a's frame in link b's
        tb, pair_b = self._near_triangles(lb, self._leaf_shape(la, rotation.mT, back), cut)
        P = la.shape[0]
        na, nb = (torch.bincount(pair, minlength=P) for pair in (pair_a, pair_b))
        first_a, first_b = _starts(na), _starts(nb)
        pair, within = _runs(na * nb)  # every near triangle of a against every one of b, pair by pair
        nb_pair = nb.index_select(0, pair)
        sa = ta.index_select(0, first_a.index_select(0, pair) + torch.div(within, nb_pair, rounding_mode="floor"))
        sb = tb.index_select(0, first_b.index_select(0, pair) + within % nb_pair)
        # the triangle pairs whose bounding spheres are near, then those no plane of theirs separates
        middle, radius, normal = self._triangle_spheres
        rotation, offset = rotation.index_select(0, pair), offset.index_select(0, pair)
        gap = ((middle.index_select(0, sa) - _moved(middle.index_select(0, sb), rotation, offset)).norm(dim=-1)
               - radius.index_select(0, sa) - radius.index_select(0, sb))
        near = (gap < cut.index_select(0, pair)).nonzero().squeeze(1)
        pair, sa, sb, rotation, offset = (t.index_select(0, near) for t in (pair, sa, sb, rotation, offset))
        corners = self._triangles.corners
        mine = corners.index_select(0, sa)
        seen = torch.baddbmm(offset.unsqueeze(1), corners.index_select(0, sb), rotation)  # (K, 3, 3) in link a's frame
        grown = self._triangles.radii.index_select(0, sa) + self._triangles.radii.index_select(0, sb)
        gap = plane_gaps(mine, seen, normal.index_select(0, sa), _moved(normal.index_select(0, sb), rotation, 0.0)) - grown
        near = (gap < cut.index_select(0, pair)).nonzero().squeeze(1)
        pair, mine, seen, grown = (t.index_select(0, near) for t in (pair, mine, seen, grown))
        exact = triangle_distances(mine, seen) - grown - TRIANGLE_ROUNDING
        least.scatter_reduce_(0, open_.index_select(0, pair), exact, "amin")
        return least

    def _leaf_shape(self, leaves: Tensor, rotation: Tensor | None = None, offset: Tensor | None = None
                    ) -> tuple[Tensor, ...]:
        """Leaves (P,), moved by ``rotation`` (P, 3, 3) and ``offset`` (P, 3) (row vectors) unless
        None: their sphere centres (P, 3) and radii (P,), their slabs' unit normals (P, 3) and the
        least and greatest heights (P,) of their triangles' corners above the centre along it."""
        normal, low, high = self._leaf_slabs
        center, normal = self.spheres.centers.index_select(0, leaves), normal.index_select(0, leaves)
        if rotation is not None:
            center, normal = _moved(center, rotation, offset), _moved(normal, rotation, 0.0)
        return center, self.spheres.radii.index_select(0, leaves), normal, low.index_select(0, leaves), \
            high.index_select(0, leaves)

    def _near_triangles(self, leaves: Tensor, other: tuple[Tensor, ...], cut: Tensor) -> tuple[Tensor, Tensor]:
        """For P leaf pairs: the triangles of ``leaves`` (P,) that may be nearer than ``cut`` (P,)
        to the other leaf's triangles, which lie in its sphere and its slab (``other``: see
        :meth:`_leaf_shape`, in the frame of ``leaves``' link) -> their indices (K,) and their
        pair's (K,), pair after pair."""
        center, radius, normal, low, high = other
        pair, within = _runs(self._triangles.counts.index_select(0, leaves))
        triangle = self._triangles.start.index_select(0, leaves).index_select(0, pair) + within
        middle = self._triangle_spheres[0].index_select(0, triangle)
        center, cut = center.index_select(0, pair), cut.index_select(0, pair)
        gap = (middle - center).norm(dim=-1) - self._triangle_spheres[1].index_select(0, triangle) - radius.index_select(0, pair)
        height = ((self._triangles.corners.index_select(0, triangle) - center.unsqueeze(1))
                  * normal.index_select(0, pair).unsqueeze(1)).sum(-1)  # (K, 3): the corners above the other's slab
        grown = self._triangles.radii.index_select(0, triangle)
        gap = torch.maximum(gap, torch.maximum(height.amin(1) - grown - high.index_select(0, pair),
                                               low.index_select(0, pair) - height.amax(1) - grown))
        near = (gap < cut).nonzero().squeeze(1)
        return triangle.index_select(0, near), pair.index_select(0, near)

    @staticmethod
    def _no_blocks(frames: Tensor) -> _Blocks:
        empty = torch.zeros(0, dtype=torch.int64, device=frames.device)
        return _Blocks(frames.new_zeros(0), empty, empty, empty)


def _wide_leaf_points(block: Tensor, local: Tensor, radius: Tensor, d: Tensor, limit: Tensor, values: Tensor) -> Tensor:
    """Sphere distances ``d`` (R, m) to a point world (rows ``block`` (R, 12 + k) as ``packed``
    holds them, the spheres' centres ``local`` (R, m, 3) in the grid's frame, their ``radius``
    (R, m)) made exact where they are below ``limit`` (R,) only because the exact points reach
    c − r from a centre and the sphere is larger: its centre's distance was then bounded, not
    measured, so a leaf of a few cm grazing what a camera saw counted as a contact (an MBM grasp
    goal 14.7 mm clear under coal and 1.1 mm from the sensed balls refused at −0.2 mm). Those few
    get the 125 cells' reach (:func:`.point_hash.refine_wide`, exact to 2c − r)."""
    from .occupancy import POINT_COLUMN
    from .point_hash import refine_wide

    parameters = block[:, 12:]
    has = parameters[:, POINT_COLUMN] > 0
    floor = parameters[:, POINT_COLUMN + 1] - parameters[:, POINT_COLUMN + 12]  # c − r: the 27 cells' exact reach
    bounded = (d < limit.unsqueeze(1)) & (d + radius >= (floor * (1 - 1e-5)).unsqueeze(1)) & has.unsqueeze(1)
    r, f = bounded.nonzero(as_tuple=True)
    if not r.numel():
        return d
    centre = refine_wide(local[r, f], parameters.index_select(0, r), values, d[r, f] + radius[r, f], POINT_COLUMN)
    d = d.clone()
    d[r, f] = centre - radius[r, f]
    return d


def _leaf_slabs(triangles, centers: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Each sphere's slab around its triangles (:class:`.robot_spheres.LeafTriangles`): the unit
    normal (S, 3) of their summed area vectors (any unit vector where they cancel), and the least
    and greatest height (S,) of their corners above the sphere's centre along it, less / plus
    their radii (−inf / +inf for a sphere without triangles): a bound of its triangles that is
    thin where they are flat."""
    S = centers.shape[0]
    corners = triangles.corners
    owner, _ = _runs(triangles.counts)
    area = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normal = torch.zeros_like(centers).index_add_(0, owner, area)
    length = normal.norm(dim=-1, keepdim=True)
    fallback = torch.zeros_like(normal)
    fallback[:, 2] = 1.0
    normal = torch.where(length > 0, normal / length.clamp(min=torch.finfo(length.dtype).tiny), fallback)
    height = ((corners - centers.index_select(0, owner).unsqueeze(1)) * normal.index_select(0, owner).unsqueeze(1)).sum(-1)
    low = torch.full((S,), -math.inf, dtype=centers.dtype, device=centers.device)
    high = torch.full((S,), math.inf, dtype=centers.dtype, device=centers.device)
    if owner.numel():
        low = torch.full_like(low, math.inf).scatter_reduce_(0, owner, height.amin(1) - triangles.radii, "amin")
        high = torch.full_like(high, -math.inf).scatter_reduce_(0, owner, height.amax(1) + triangles.radii, "amax")
        empty = triangles.counts == 0
        low, high = low.masked_fill(empty, -math.inf), high.masked_fill(empty, math.inf)
    return normal, low, high


def _slab_gaps(a: tuple[Tensor, ...], b: tuple[Tensor, ...]) -> Tensor:
    """(P,) a lower bound of the distance between two leaves' triangles, each held by its sphere
    and its slab (``a``, ``b``: :meth:`TreeCollisionChecker._leaf_shape` in one frame): how far
    apart the two sets' extents lie along each slab's normal and along the line of the centres
    (for any unit u, the least of u·x over one set less the greatest over the other)."""
    directions = torch.stack((a[2], b[2], b[0] - a[0]), 1)  # (P, 3, 3)
    directions = directions / directions.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    directions = torch.cat((directions, -directions), 1)  # (P, 6, 3)
    gap = -_support(b, -directions) - _support(a, directions)
    return gap.amax(1)


def _support(shape: tuple[Tensor, ...], u: Tensor) -> Tensor:
    """(P, k) the greatest u·x over a leaf's sphere ∩ slab (``shape``, P leaves) for unit
    directions ``u`` (P, k, 3): u = α n + β w (w ⟂ n), the best height along n is α r clamped
    into the slab's, the rest of the reach β √(r² − t²)."""
    center, radius, normal, low, high = shape
    r = radius.unsqueeze(1)
    alpha = (u * normal.unsqueeze(1)).sum(-1)
    beta = (1.0 - alpha * alpha).clamp(min=0.0).sqrt()
    t = torch.minimum(torch.maximum(alpha * r, torch.maximum(low, -radius).unsqueeze(1)),
                      torch.minimum(high, radius).unsqueeze(1))
    return (u * center.unsqueeze(1)).sum(-1) + alpha * t + beta * (r * r - t * t).clamp(min=0.0).sqrt()


def _starts(counts: Tensor) -> Tensor:
    """(P,) counts -> (P,) where each one's run begins in their concatenation."""
    return torch.cumsum(counts, 0) - counts


def _runs(counts: Tensor) -> tuple[Tensor, Tensor]:
    """(P,) counts -> for each entry of their concatenated runs, its run (K,) and its place in
    it (K,) (K = counts.sum(); one host synchronisation on CUDA, for K)."""
    owner = torch.repeat_interleave(torch.arange(counts.shape[0], device=counts.device), counts)
    return owner, torch.arange(owner.shape[0], device=counts.device) - _starts(counts).index_select(0, owner)


def _moved(points: Tensor, rotation: Tensor, offset: Tensor) -> Tensor:
    """(..., 3) points in link b's frame -> link a's: ``points @ rotation + offset`` (row vectors,
    as the packed blocks hold them; ``rotation`` (..., 3, 3) and ``offset`` broadcast)."""
    return torch.matmul(points.unsqueeze(-2), rotation).squeeze(-2) + offset


def _near_nodes(table: Tensor, nodes: Tensor, near: Tensor) -> tuple[Tensor, Tensor]:
    """``near`` (R, W) bool over the entries of ``nodes``' (R,) rows of ``table`` (N, W) (their
    children, or their descendants at a deeper level) -> the rows (K,) and the entries (K,) where
    it holds."""
    rows, slot = near.nonzero(as_tuple=True)
    return rows, table[nodes.index_select(0, rows), slot]


def _near_node_pairs(table: Tensor, nodes_a: Tensor, nodes_b: Tensor, near: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``near`` (R, W, W) bool over the pairs of entries of rows ``nodes_a``, ``nodes_b`` (R,) of
    ``table`` (N, W) -> the rows (K,) and each side's entry (K,) where it holds."""
    rows, slot_a, slot_b = near.nonzero(as_tuple=True)
    return rows, table[nodes_a.index_select(0, rows), slot_a], table[nodes_b.index_select(0, rows), slot_b]


def _lower_upper(block: Tensor, value: Tensor, configuration: Tensor, early: Tensor, upper: Tensor,
                 poke: float) -> None:
    """Branch and bound at one level: the representative ``value`` (R,) of blocks ``block`` (R,)
    is a value each reaches (into ``early``, per block), and their ``configuration`` (per block)
    need open no node farther than it plus ``poke`` (into ``upper`` (B,))."""
    early.scatter_reduce_(0, block, value, "amin")
    upper.scatter_reduce_(0, configuration.index_select(0, block), value + poke, "amin")


def _cut(limit: Tensor, upper: Tensor | None, configuration: Tensor, rows: Tensor) -> Tensor:
    """(R,) the distance at which the children of blocks ``rows`` are cut: their ``limit`` (per
    block), or with branch and bound (``upper`` (B,)) the lesser of it and their configuration's
    ``upper``, never below 0 (a leaf deep in a contact can be farther in than its node shows)."""
    cut = limit.index_select(0, rows)
    if upper is None:
        return cut
    return torch.minimum(cut, upper.index_select(0, configuration.index_select(0, rows)).clamp(min=0.0))


def _two_rounds(part: Tensor, window: Tensor, certain: Tensor, threshold: Tensor, configuration: Tensor, B: int,
                measure, settle: bool = True) -> None:
    """The triangle test's rounds over the last level's leaf (or leaf-pair) distances ``part``
    (R, M), raised in place where ``window`` (R, M) bool (below the threshold, not certain by the
    slack, with triangles) to ``measure(r, m)`` (P,) (the triangles' distance of entries (r, m),
    capped at ``threshold[r]``). First each configuration's nearest entry in its window (ties:
    each); then the others, only in configurations that no contact decides already: a certain
    one (``certain`` (R,)), a nearest one its triangles put in contact, or an entry below the
    threshold outside the window (no triangles to lift it). ``configuration`` (R,) of B; ``window``
    is used up. ``settle`` False: every entry of the window at once (a distance, not a verdict)."""
    if not settle:
        r, m = window.nonzero(as_tuple=True)
        if r.numel():
            part[r, m] = torch.maximum(part[r, m], measure(r, m))
        return
    limit = threshold.unsqueeze(1)
    value, nearest = part.masked_fill(~window, math.inf).min(1)
    least = torch.full((B,), math.inf, dtype=part.dtype, device=part.device)
    least.scatter_reduce_(0, configuration, value, "amin")
    r = (window.any(1) & (value == least.index_select(0, configuration))).nonzero().squeeze(1)
    m = nearest.index_select(0, r)
    part[r, m] = torch.maximum(part[r, m], measure(r, m))
    touching = certain | ((part < limit) & ~window).any(1)
    touching[r] |= part[r, m] < threshold.index_select(0, r)
    window[r, m] = False
    settled = torch.zeros(B, dtype=torch.bool, device=part.device)
    settled[configuration[touching]] = True
    window &= ~settled.index_select(0, configuration).unsqueeze(1)
    r, m = window.nonzero(as_tuple=True)
    if r.numel():
        part[r, m] = torch.maximum(part[r, m], measure(r, m))


def _decide(block: Tensor, value: Tensor, decisive: Tensor, configuration: Tensor, early: Tensor,
            decided: Tensor) -> Tensor | None:
    """The verdict's early exit at one level: blocks ``block`` (R,) whose representative value
    (R,) is below their block's ``decisive`` limit put it into ``early`` (per block) and decide
    their ``configuration`` (per block) in ``decided`` (B,) bool. -> the positions in ``block``
    still undecided, or None when no block was below (all still are)."""
    hit = (value < decisive.index_select(0, block)).nonzero().squeeze(1)
    if not hit.numel():
        return None
    hit_block = block.index_select(0, hit)
    early.scatter_reduce_(0, hit_block, value.index_select(0, hit), "amin")
    decided[configuration.index_select(0, hit_block)] = True
    return (~decided.index_select(0, configuration.index_select(0, block))).nonzero().squeeze(1)


def _padded(rows: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Rows of different lengths (each (n_i,)) -> one table (R, width) padded by repeating a row's
    first entry, and (R, width) bool: False on the padding."""
    width = max(len(r) for r in rows)
    table = torch.stack([torch.cat([r, r[:1].repeat(width - len(r))]) for r in rows])
    return table, torch.arange(width).unsqueeze(0) < torch.tensor([len(r) for r in rows]).unsqueeze(1)
