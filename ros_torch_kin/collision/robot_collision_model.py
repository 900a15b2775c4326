"""A robot's two collision models, built together from its URDF (and SRDF):

* ``verdict``: the tight model (:class:`TreeCollisionChecker` on sphere-tree leaves, a few mm
  loose): what decides whether a configuration or a motion is valid;
* ``cost``: the coarse model (:class:`CollisionChecker` on a dozen spheres per link, 10-30 mm
  loose): what the optimiser's collision cost, the seed ranking and the IK's steering use (cheap,
  smooth gradients).

Both check the same self pairs. A pair is disabled as "always in collision" only when the tight
model says so (its leaves overlap in ≥ 95 % of the samples, as MoveIt's setup assistant decides
on the meshes): the coarse spheres of a pair whose meshes stay apart may touch in every sample,
and disabling such a pair would leave a real collision unchecked.

Self pairs that stay close in every configuration and whose relative pose depends on one or two
joints (the Panda's wrist, the UR5's upper arm over its base) get joint tables
(:mod:`.pair_tables`): a lookup that proves them clear before the tree is descended, with the
same verdict, cached beside the trees.
"""

from __future__ import annotations

import math
import os
import time
import types
from dataclasses import dataclass, replace

import torch

from ..kinematics import Chain
from .build_workers import WorkerPool, patience
from .collision_checker import CollisionChecker
from .obstacles import Scene
from .self_collision import ALWAYS_IN_COLLISION_FRACTION, DEFAULT_SAMPLES, SelfCollisionPairs, _sphere_pairs, self_collision_pairs
from .sphere_tree import TreeSettings
from .pair_tables import BUDGET, cached_pair_tables
from .tree_checker import TreeCollisionChecker
from .urdf_sphere_trees import robot_sphere_trees_from_urdf
from .urdf_spheres import cache_covers, covers_missing, robot_spheres_from_urdf


@dataclass(frozen=True, eq=False)
class RobotCollisionModel:
    """The verdict (tight) and cost (coarse) checkers of one robot against one scene."""

    verdict: TreeCollisionChecker
    cost: CollisionChecker

    def with_scene(self, scene: Scene) -> "RobotCollisionModel":
        return RobotCollisionModel(self.verdict.with_scene(scene), self.cost.with_scene(scene))

    def with_attached(self, objects) -> "RobotCollisionModel":
        """Both models carrying ``objects`` (:class:`.attached_objects.AttachedObject`, replacing
        any carried now; () for none): the coarse cover of each object for the costs, its tight
        cover for the verdict (see :mod:`.attached_objects`)."""
        cost = self.cost.with_attached(objects)
        return RobotCollisionModel(self.verdict.with_attached(objects, coarse=cost), cost)

    @property
    def attached(self) -> tuple:
        return self.cost.attached

    @property
    def self_pairs(self) -> SelfCollisionPairs:
        return self.cost.self_pairs


def robot_collision_model_from_urdf(
    urdf: str,
    chain: Chain,
    srdf: str | None = None,
    search_dirs=(),
    base_dir: str | os.PathLike | None = None,
    settings: TreeSettings = TreeSettings(),
    samples: int = DEFAULT_SAMPLES,
    validity_margin: float = 0.0,
    scene: Scene | None = None,
    seed: int = 0,
    table_budget: float = BUDGET,
) -> RobotCollisionModel:
    """Both models of the robot (see the module docstring). ``settings``: the tight model's sphere
    trees; ``samples``: random configurations for the always-in-collision test (0: none);
    ``validity_margin`` (m): the verdict's margin; ``table_budget`` (s): the building time of the
    joint tables of self pairs that stay close (:mod:`.pair_tables`; 0: none). Warnings of both
    builds are on the spheres."""
    # a cold robot: one pool of worker processes for the whole build (started only if something
    # is missing from the cache), the coarse covers in one of them (into the disk cache) while this
    # process starts on the trees, whose jobs that worker then shares, and the joint tables'
    with WorkerPool() as pool:
        covering = (pool.submit(cache_covers, (urdf, tuple(search_dirs), base_dir))
                    if pool.size and covers_missing(urdf, chain, search_dirs, base_dir) else None)
        began = time.perf_counter()
        tight = robot_sphere_trees_from_urdf(urdf, chain, search_dirs=search_dirs, base_dir=base_dir,
                                             settings=settings, pool=pool)
        if covering is not None:  # whatever it did not cache is covered here
            covering.wait(patience(time.perf_counter() - began))
        coarse = robot_spheres_from_urdf(urdf, chain, search_dirs=search_dirs, base_dir=base_dir)
        pairs = self_collision_pairs(chain, coarse, srdf=srdf, samples=samples, seed=seed)
        pairs = _confirmed_by_tight(chain, coarse, tight, pairs, samples, seed)
        cost = CollisionChecker(chain, coarse, scene, pairs)
        tables = _pair_tables(chain, tight, pairs, table_budget, pool) if table_budget > 0 else ()
    verdict = TreeCollisionChecker(chain, tight, scene, pairs, margin=validity_margin, coarse=cost, pair_tables=tables)
    return RobotCollisionModel(verdict, cost)


def _pair_tables(chain: Chain, tight, pairs: SelfCollisionPairs, budget: float, pool: WorkerPool | None = None):
    """The joint tables of the enabled pairs (:mod:`.pair_tables`), filled by the tight verdict on
    the leaves alone (not the coarse level): the leaves' distance moves no faster than the table's
    rates, so a table only ever proves clear what the model's verdict would find clear."""
    return cached_pair_tables(chain, tight, pairs.enabled, budget=budget, pool=pool)


def _confirmed_by_tight(chain: Chain, coarse, tight, pairs: SelfCollisionPairs, samples: int, seed: int) -> SelfCollisionPairs:
    """Re-enable the pairs the coarse spheres called always in collision unless the tight leaves
    overlap in at least the same fraction of the same kind of samples."""
    suspects = [pair for pair, reason in pairs.disabled.items() if reason.startswith("always in collision")]
    if not suspects or samples <= 0:
        return pairs
    probe = SelfCollisionPairs(tuple(suspects), types.MappingProxyType({}), pairs.sphere_a[:0], pairs.sphere_b[:0])
    checker = TreeCollisionChecker(chain, tight, None, probe)
    generator = torch.Generator().manual_seed(seed)
    lower = chain.lower_limits.clamp(min=-math.pi).cpu().double()
    upper = chain.upper_limits.clamp(max=math.pi).cpu().double()
    u = torch.rand(samples, chain.num_dofs, generator=generator, dtype=torch.float64)
    q = (lower + u * (upper - lower)).to(chain.device, chain.dtype)
    counts = checker.link_pair_collisions(q).sum(0).tolist()
    needed = math.ceil(ALWAYS_IN_COLLISION_FRACTION * samples)
    disabled = dict(pairs.disabled)
    enabled = list(pairs.enabled)
    order = {name: i for i, name in enumerate(chain.link_names)}
    for pair, count in zip(suspects, counts):
        if count >= needed:
            disabled[pair] = f"always in collision (tight model: {count}/{samples} samples)"
        else:
            del disabled[pair]
            enabled.append(pair)
    enabled.sort(key=lambda p: (order[p[0]], order[p[1]]))
    index = [(order[a], order[b]) for a, b in enabled]
    sphere_a, sphere_b = _sphere_pairs(coarse.to(chain.device, chain.dtype), index)
    return replace(pairs, enabled=tuple(enabled), disabled=types.MappingProxyType(disabled), sphere_a=sphere_a,
                   sphere_b=sphere_b)
