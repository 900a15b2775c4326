"""Batched collision queries of a robot's spheres against a scene and against themselves.

Conventions. A signed distance d (m) is the gap between two spheres, or between a sphere and an
obstacle, negative when they overlap (penetration depth). ``margin`` (m, ≥ 0) is the clearance
required: a configuration is *in collision* when some checked pair has ``d < margin`` (with the
default margin 0, touching is not a collision, any overlap is). The penalty is
``Σ_pairs ½ max(0, margin − d)²`` over world pairs (every sphere against every obstacle) and the
enabled self pairs, in m².

Gradients are closed form, never autograd through FK: ∂cost/∂(sphere centre) = −hinge · normal;
each sphere's gradient g at its world centre c is a force g with moment c × g about the world
origin on its link, and :func:`world_wrench_vector_jacobian_product` turns those into ∂cost/∂q
on the transforms the forward pass already computed. Everything runs on the chain's device and
dtype without host synchronisation and without Python loops over configurations, spheres or
obstacles (only over the ≤ 4 obstacle kinds).
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass, replace
from types import SimpleNamespace

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..kinematics import Chain, world_transforms
from ..kinematics.fk import check_joint_positions
from ..kinematics.fk_backward import cross, world_wrench_vector_jacobian_product
from .obstacles import PackedScene, Scene
from .robot_spheres import RobotSpheres
from .self_collision import SelfCollisionPairs, self_collision_pairs
from .signed_distance import local_vectors_to_world_sum, point_distances, sphere_sphere_distance
from .sphere_centers import world_sphere_centers


#: On a CPU, batches are processed in chunks of about this many pair distances per temporary
#: tensor (so that they stay in cache), and at least MIN_CHUNK configurations at a time.
CHUNK_ELEMENTS = 1 << 19
MIN_CHUNK = 16
#: The CPU verdict (broad phase, then only the sphere pairs it cannot rule out) runs this many
#: configurations at a time.
VERDICT_CHUNK = 1024
#: ... for batches of at least this many configurations (smaller ones: every pair, cheaper).
MIN_BROAD_PHASE = 8


@dataclass(frozen=True, eq=False)
class CollisionDistances:
    """Distances for B configurations (all tensors on the chain's device; m).

    ``min_distance`` (B,): smallest signed distance over world and enabled self pairs (+inf when
    nothing is checked); ``in_collision`` (B,) bool: ``min_distance < margin``.
    ``world_distance`` (B,), ``nearest_sphere`` and ``nearest_obstacle`` (B,) int64: the smallest
    sphere–obstacle distance and its sphere (index into the RobotSpheres) and obstacle (index
    into ``obstacle_ids``); +inf and index 0 without obstacles.
    ``self_distance`` (B,), ``nearest_self_pair`` (B,) int64: the same over the enabled self
    sphere pairs (index into ``SelfCollisionPairs.sphere_a/sphere_b``).
    ``sphere_obstacle`` (B, S, O) and ``sphere_pairs`` (B, Q): every distance, when asked for.
    ``link_names`` and ``sphere_links`` name each sphere's *body*: the chain's links, then the
    attached objects' ids (a carried object's spheres are named by its id, not its link's).
    """

    min_distance: Tensor
    in_collision: Tensor
    world_distance: Tensor
    nearest_sphere: Tensor
    nearest_obstacle: Tensor
    self_distance: Tensor
    nearest_self_pair: Tensor
    obstacle_ids: tuple[str, ...]
    link_names: tuple[str, ...]
    sphere_links: Tensor
    self_sphere_a: Tensor
    self_sphere_b: Tensor
    sphere_obstacle: Tensor | None = None
    sphere_pairs: Tensor | None = None

    def nearest_pair(self, b: int) -> tuple[str, str]:
        """The pair giving configuration b's minimum distance: (link, obstacle id) for a world
        pair, (link, link) for a self pair. Reads the tensors back to the host."""
        if bool(self.self_distance[b] < self.world_distance[b]):
            q = int(self.nearest_self_pair[b])
            a, c = int(self.self_sphere_a[q]), int(self.self_sphere_b[q])
            return self.link_names[int(self.sphere_links[a])], self.link_names[int(self.sphere_links[c])]
        if not self.obstacle_ids:
            return "", ""
        sphere = int(self.nearest_sphere[b])
        return self.link_names[int(self.sphere_links[sphere])], self.obstacle_ids[int(self.nearest_obstacle[b])]

    def nearest_pairs(self) -> list[tuple[str, str]]:
        return [self.nearest_pair(b) for b in range(self.min_distance.shape[0])]


class CollisionChecker:
    """A robot's spheres against a scene and themselves (immutable; ``with_scene`` for a new scene).

    chain: the kinematics (its device and dtype are used throughout); spheres: the RobotSpheres
    of that chain; scene: world obstacles in the chain's root frame (default none); self_pairs:
    from :func:`self_collision_pairs` (default: built here with adjacency and 1000 samples, no
    SRDF); margin (m): the clearance required by :meth:`in_collision` and the default of
    :meth:`penalty`; attached: objects the robot carries, as ``with_attached`` gives them
    (check_self False: without their self pairs, as ``without_self_pairs`` leaves them).

    ``with_attached(objects)`` gives a checker whose robot carries objects
    (:mod:`.attached_objects`): ``spheres`` and ``self_pairs`` are then the robot's followed by
    the objects' (``robot_spheres`` / ``robot_self_pairs``: the robot's own), ``attached`` the
    objects, ``body_names`` the link names then the object ids.
    """

    def __init__(
        self,
        chain: Chain,
        spheres: RobotSpheres,
        scene: Scene | None = None,
        self_pairs: SelfCollisionPairs | None = None,
        margin: float = 0.0,
        *,
        attached=(),
        check_self: bool = True,
    ):
        if tuple(spheres.link_names) != tuple(chain.link_names):
            raise ValueError(f"the spheres were built for other links than those of robot '{chain.name}'")
        if not math.isfinite(margin) or margin < 0:
            raise ValueError(f"margin must be finite and ≥ 0 m, got {margin}")
        self.chain = chain
        self.spheres = spheres.to(chain.device, chain.dtype)
        self.scene = Scene() if scene is None else scene
        self.self_pairs = (self_collision_pairs(chain, self.spheres) if self_pairs is None else self_pairs).to(chain.device)
        self.margin = float(margin)
        self._packed: PackedScene = self.scene.packed(chain.device, chain.dtype)
        self.robot_spheres, self.robot_self_pairs = self.spheres, self.self_pairs
        self.attached: tuple = ()
        self.body_names: tuple[str, ...] = tuple(chain.link_names)
        self._bodies = self.spheres.sphere_links  # (S,) each sphere's body: a link, or L + k for object k
        self._checks_self = bool(check_self)
        if attached:
            self._attach(tuple(attached))
        # built once, on the robot and what it carries
        self._radii_a = self.spheres.radii[self.self_pairs.sphere_a].unsqueeze(1)  # (Q, 1)
        self._radii_b = self.spheres.radii[self.self_pairs.sphere_b].unsqueeze(1)
        self._broad = _BroadPhase(self.spheres, self.self_pairs, self._bodies) if chain.device.type == "cpu" else None

    def with_attached(self, objects) -> "CollisionChecker":
        """The same robot, scene and margin carrying ``objects`` (a sequence of
        :class:`.attached_objects.AttachedObject`, replacing any carried now; () for none).
        ValueError naming the object and field for an unknown link or touch link. Nothing carried
        before or after: this checker itself (no rebuild)."""
        objects = tuple(objects)
        if not objects and not self.attached:
            return self
        return CollisionChecker(self.chain, self.robot_spheres, self.scene, self.robot_self_pairs, self.margin,
                                attached=objects, check_self=self._checks_self)

    def _attach(self, objects: tuple) -> None:
        """Adds ``objects`` to the robot's spheres and self pairs (with their self pairs where
        ``_checks_self``); the constructor, calling it, then builds what depends on them."""
        from .attached_objects import attached_bodies, body_sphere_pairs

        check_self = self._checks_self
        bodies = attached_bodies(self.chain, self.robot_spheres, objects, tight=False)
        pairs = bodies.pairs if check_self else ()
        extra_a, extra_b = body_sphere_pairs(bodies.bodies, pairs)
        names = bodies.names
        disabled = dict(self.robot_self_pairs.disabled)
        if check_self:
            disabled.update(bodies.skipped)
        self.self_pairs = replace(
            self.robot_self_pairs,
            enabled=self.robot_self_pairs.enabled + tuple((names[a], names[b]) for a, b in pairs),
            disabled=types.MappingProxyType(disabled),
            sphere_a=torch.cat([self.robot_self_pairs.sphere_a, extra_a]),
            sphere_b=torch.cat([self.robot_self_pairs.sphere_b, extra_b]))
        self.spheres, self._bodies, self.body_names, self.attached = bodies.spheres, bodies.bodies, names, objects

    def with_scene(self, scene: Scene) -> "CollisionChecker":
        """The same robot and self pairs against another scene (cheap: nothing is rebuilt)."""
        checker = object.__new__(CollisionChecker)
        checker.__dict__.update(self.__dict__)
        checker.scene, checker._packed = scene, scene.packed(self.chain.device, self.chain.dtype)
        return checker

    def without_self_pairs(self) -> "CollisionChecker":
        """The same robot against the same scene, with no self-collision pair checked."""
        empty = self.robot_self_pairs.sphere_a[:0]
        pairs = replace(self.robot_self_pairs, enabled=(), sphere_a=empty, sphere_b=empty)
        return CollisionChecker(self.chain, self.robot_spheres, self.scene, pairs, self.margin, attached=self.attached,
                                check_self=False)

    def on_chain(self, chain: Chain) -> "CollisionChecker":
        """The same spheres, self pairs and scene on ``chain`` (the robot moved to another device
        or dtype): nothing is covered or sampled again."""
        return CollisionChecker(chain, self.robot_spheres, self.scene, self.robot_self_pairs, self.margin,
                                attached=self.attached, check_self=self._checks_self)

    # ------------------------------------------------------------------ geometry
    # Layout: batch innermost, as in world_transforms: centres (S, 3, b); one kind's world
    # distances (n, S, b); self pairs (Q, b). Each query runs chunk by chunk (FK included).
    def _chunks(self, q: Tensor) -> list[Tensor]:
        """(B, J) -> consecutive pieces of the batch whose per-pair temporaries stay in cache on
        a CPU (about CHUNK_ELEMENTS elements per tensor); the whole batch on a GPU."""
        if self.chain.device.type != "cpu":
            return [q]
        widest = max([self.self_pairs.num_sphere_pairs]
                     + [shapes.count * self.spheres.num_spheres for shapes in self._packed.shapes] + [1])
        return list(q.split(max(MIN_CHUNK, CHUNK_ELEMENTS // widest)))

    def _joint_positions(self, q: Tensor) -> Tensor:
        return check_joint_positions(self.chain, q).detach()

    def _centers(self, q: Tensor) -> tuple[Tensor, Tensor]:
        """(b, J) checked -> link-major world transforms (L, 4, 4, b) and sphere centres (S, 3, b)."""
        world = world_transforms(self.chain, q)
        return world, world_sphere_centers(world, self.spheres)

    def _world_distances(self, centers: Tensor, with_normal: bool):
        """(S, 3, b) centres -> per obstacle kind: (shapes, distance (n, S, b), local-frame
        normals (n, 3, S·b) or None)."""
        S, _, b = centers.shape
        points = centers.transpose(0, 1).reshape(3, S * b)
        radii = self.spheres.radii.view(1, S, 1)
        results = []
        for shapes in self._packed.shapes if S else ():
            d, n = point_distances(points, shapes, with_normal)
            results.append((shapes, d.view(shapes.count, S, b).sub_(radii), n))
        return results

    def _self_distances(self, centers: Tensor, with_normal: bool):
        """(S, 3, b) centres -> self pair distances (Q, b) and unit normals from b to a (Q, 3, b)."""
        pairs = self.self_pairs
        return sphere_sphere_distance(centers.index_select(0, pairs.sphere_a), self._radii_a,
                                      centers.index_select(0, pairs.sphere_b), self._radii_b, with_normal, dim=1)

    # ------------------------------------------------------------------ queries
    def in_collision(self, q: Tensor) -> Tensor:
        """(B, J) or (J,) joint positions -> (B,) bool: some checked pair is closer than the margin.

        On a CPU a broad phase (one bounding sphere per link) rules out most sphere pairs first
        and only the rest are computed, with the same arithmetic, so the verdict is the same as
        :meth:`_in_collision_all_pairs` (which the GPU runs: no host synchronisation)."""
        q = self._joint_positions(q)
        if self._broad is None or q.shape[0] < MIN_BROAD_PHASE:
            return self._in_collision_all_pairs(q)
        return torch.cat([self._verdict_broad(part) for part in q.split(VERDICT_CHUNK)])

    def _in_collision_all_pairs(self, q: Tensor) -> Tensor:
        """The verdict from every pair's distance (the GPU path; the CPU path's reference)."""
        return torch.cat([self._minimum(part) < self.margin for part in self._chunks(self._joint_positions(q))])

    def _verdict_broad(self, q: Tensor) -> Tensor:
        """(b, J) checked -> (b,) bool, CPU: link bounding spheres first; the sphere-level
        distances (computed as in :meth:`_minimum`) only for the (configuration, link pair) and
        (configuration, link, obstacle kind) blocks that the bounds cannot rule out."""
        return self._minimum_broad(q, self.margin, decide=True) < self.margin

    def _near_link_pairs(self, link_centers: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
        """(Lk, 3, b) link bounding-sphere centres -> (link pair, configuration) indices whose
        lower bound is below ``threshold``: every sphere pair of link pair p is
        ≥ |C_a − C_b| − R_a − R_b apart."""
        broad = self._broad
        offset = link_centers.index_select(0, broad.pair_a) - link_centers.index_select(0, broad.pair_b)
        lower = (offset * offset).sum(1).sqrt_().sub_(broad.pair_radius)  # (P, b)
        return (lower < threshold).nonzero(as_tuple=True)

    def _near_links(self, points: Tensor, shapes, threshold: float) -> Tensor:
        """(3, Lk·b) link bounding-sphere centres (link major) -> (Lk, b) bool: some obstacle of
        this kind is within ``threshold`` of the link's bound (a signed distance is 1-Lipschitz:
        sphere s of link l is ≥ d(C_l) − R_l away)."""
        Lk = self._broad.link_radius.shape[0]
        d, _ = point_distances(points, shapes, False)
        lower = d.view(shapes.count, Lk, -1).sub_(self._broad.link_radius.view(1, Lk, 1))
        return (lower < threshold).any(0)

    def _minimum(self, q: Tensor) -> Tensor:
        """(b, J) -> (b,) smallest signed distance over all checked pairs (+inf if none)."""
        _, centers = self._centers(q)
        minimum = centers.new_full((q.shape[0],), math.inf)
        for _, d, _ in self._world_distances(centers, with_normal=False):
            minimum = torch.minimum(minimum, d.flatten(0, 1).amin(0))
        if self.self_pairs.num_sphere_pairs:
            minimum = torch.minimum(minimum, self._self_distances(centers, False)[0].amin(0))
        return minimum

    def distances(self, q: Tensor, full: bool = False) -> CollisionDistances:
        """(B, J) or (J,) joint positions -> :class:`CollisionDistances` (``full``: every pair's
        distance too)."""
        world, own = [], []
        for part in self._chunks(self._joint_positions(q)):
            _, centers = self._centers(part)
            pieces = [d for _, d, _ in self._world_distances(centers, with_normal=False)]
            world.append(torch.cat(pieces, dim=0) if pieces else centers.new_empty(0, *centers.shape[::2]))
            if self.self_pairs.num_sphere_pairs:
                own.append(self._self_distances(centers, False)[0])
        by_obstacle = torch.cat(world, dim=2)  # (O, S, B)
        S, B = by_obstacle.shape[1:]
        zero_index = torch.zeros(B, dtype=torch.int64, device=by_obstacle.device)
        if by_obstacle.shape[0]:
            world_distance, flat = by_obstacle.flatten(0, 1).min(0)  # flat = o S + s
            nearest_obstacle, nearest_sphere = flat // S, flat % S
        else:
            world_distance, nearest_sphere, nearest_obstacle = by_obstacle.new_full((B,), math.inf), zero_index, zero_index
        if own:
            sphere_pairs = torch.cat(own, dim=1)  # (Q, B)
            self_distance, nearest_self_pair = sphere_pairs.min(0)
        else:
            sphere_pairs = by_obstacle.new_empty(0, B)
            self_distance, nearest_self_pair = by_obstacle.new_full((B,), math.inf), zero_index
        minimum = torch.minimum(world_distance, self_distance)
        return CollisionDistances(
            min_distance=minimum,
            in_collision=minimum < self.margin,
            world_distance=world_distance,
            nearest_sphere=nearest_sphere,
            nearest_obstacle=nearest_obstacle,
            self_distance=self_distance,
            nearest_self_pair=nearest_self_pair,
            obstacle_ids=self._packed.ids,
            link_names=self.body_names,
            sphere_links=self._bodies,
            self_sphere_a=self.self_pairs.sphere_a,
            self_sphere_b=self.self_pairs.sphere_b,
            sphere_obstacle=by_obstacle.permute(2, 1, 0) if full else None,
            sphere_pairs=sphere_pairs.mT if full else None,
        )

    def min_distance(self, q: Tensor, threshold: float = math.inf) -> Tensor:
        """(B, J) -> (B,) the smallest signed distance over all checked pairs (m), exact below
        ``threshold``, else a value ≥ it (the threshold itself where nothing was within it; +inf
        where nothing is checked). On a CPU with a finite threshold the broad phase of
        :meth:`in_collision` leaves out the blocks that cannot be within it; the GPU computes
        every pair (no host synchronisation)."""
        q = self._joint_positions(q)
        if math.isinf(threshold) or self._broad is None or q.shape[0] < MIN_BROAD_PHASE:
            return self.distances(q).min_distance
        return torch.cat([self._minimum_broad(part, float(threshold)) for part in q.split(VERDICT_CHUNK)])

    def _minimum_broad(self, q: Tensor, threshold: float, decide: bool = False) -> Tensor:
        """(b, J) checked -> (b,) as :meth:`min_distance` below ``threshold``: the sphere-level
        distances of the blocks whose link bounds are within it. ``decide``: the verdict alone
        (a configuration already below the threshold by its self pairs skips its world blocks)."""
        broad = self._broad
        world, centers = self._centers(q)  # (S, 3, b)
        b = q.shape[0]
        has = bool(self._packed.count) or bool(self.self_pairs.num_sphere_pairs)
        minimum = q.new_full((b,), threshold if has and self.spheres.num_spheres else math.inf)
        if not self.spheres.num_spheres or not b:
            return minimum
        link_centers = world_sphere_centers(world, broad.link_spheres)  # (Lk, 3, b)
        bound = threshold + broad.slack
        if broad.pair_a.numel():
            p_index, j_index = self._near_link_pairs(link_centers, bound)
            if p_index.numel():
                ia, ib = broad.pair_sphere_a[p_index], broad.pair_sphere_b[p_index]  # (K, m)
                jj = j_index.unsqueeze(1).expand_as(ia)
                d, _ = sphere_sphere_distance(centers[ia, :, jj], self.spheres.radii[ia],
                                              centers[ib, :, jj], self.spheres.radii[ib], False, dim=-1)
                minimum.scatter_reduce_(0, j_index, d.amin(1), "amin")
        points = link_centers.transpose(0, 1).reshape(3, -1)
        for shapes in self._packed.shapes:
            near = self._near_links(points, shapes, bound)  # (Lk, b)
            if decide:
                near &= minimum >= threshold
            l_index, j_index = near.nonzero(as_tuple=True)
            if not l_index.numel():
                continue
            spheres = broad.link_sphere_table[l_index]  # (K, m)
            sphere_points = centers[spheres, :, j_index.unsqueeze(1).expand_as(spheres)]  # (K, m, 3)
            d, _ = point_distances(sphere_points.reshape(-1, 3).mT.contiguous(), shapes, False)
            d = d.view(shapes.count, *spheres.shape).sub_(self.spheres.radii[spheres])
            minimum.scatter_reduce_(0, j_index, d.amin(0).amin(1), "amin")
        return minimum

    def clear(self, q: Tensor, threshold: float | Tensor) -> Tensor:
        """(B, J) -> (B,) bool: every checked pair is at least ``threshold`` (m; a float or one
        per configuration (B,)) apart (the interface :class:`TreeCollisionChecker` shares)."""
        return self.distances(q).min_distance >= torch.as_tensor(threshold, dtype=self.chain.dtype,
                                                                 device=self.chain.device)

    def world_and_self_distance(self, q: Tensor, world_threshold: float = math.inf,
                                self_threshold: float = math.inf) -> tuple[Tensor, Tensor]:
        """(B, J) -> the smallest world and self distances (B,) each (m; exact at any threshold)."""
        result = self.distances(q)
        return result.world_distance, result.self_distance

    def penalty(self, q: Tensor, margin: float | None = None) -> tuple[Tensor, Tensor]:
        """(B, J) or (J,) joint positions -> cost (B,) = Σ_pairs ½ max(0, margin − d)² (m²) and
        its gradient ∂cost/∂q (B, J), closed form (see the module docstring). ``margin``
        defaults to the checker's. On a CPU the verdict's broad phase skips the blocks of pairs
        that are ≥ margin apart (zero cost, zero gradient); same result as
        :meth:`_penalty_all_pairs` (the GPU path) up to round-off."""
        margin = self.margin if margin is None else float(margin)
        q = self._joint_positions(q)
        if self._broad is None or q.shape[0] < MIN_BROAD_PHASE:
            return self._penalty_all_pairs(q, margin)
        return self._concatenate([self._penalty_broad(part, margin) for part in q.split(VERDICT_CHUNK)])

    def _penalty_all_pairs(self, q: Tensor, margin: float) -> tuple[Tensor, Tensor]:
        """The penalty from every pair (the GPU path; the CPU path's reference)."""
        return self._concatenate([self._penalty(part, margin) for part in self._chunks(self._joint_positions(q))])

    @staticmethod
    def _concatenate(parts: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        if len(parts) == 1:
            return parts[0]
        return torch.cat([cost for cost, _ in parts]), torch.cat([gradient for _, gradient in parts])

    def _penalty_broad(self, q: Tensor, margin: float) -> tuple[Tensor, Tensor]:
        """(b, J) checked -> cost (b,), gradient (b, J), CPU: as :meth:`_penalty`, but only for
        the blocks the link bounding spheres cannot rule out (a pair at d ≥ margin adds exactly
        zero cost and zero gradient; the bound skips only blocks ≥ margin + slack away)."""
        broad = self._broad
        world, centers = self._centers(q)  # (S, 3, b)
        S, _, b = centers.shape
        cost = centers.new_zeros(b)
        gradient_t = centers.new_zeros(S * b, 3)  # ∂cost/∂centre, world frame, row s·b + j
        if S and b:
            link_centers = world_sphere_centers(world, broad.link_spheres)  # (Lk, 3, b)
            threshold = margin + broad.slack
            radii = self.spheres.radii
            if broad.pair_a.numel():
                p_index, j_index = self._near_link_pairs(link_centers, threshold)
                if p_index.numel():
                    ia, ib = broad.pair_sphere_a[p_index], broad.pair_sphere_b[p_index]  # (K, m)
                    jj = j_index.unsqueeze(1).expand_as(ia)
                    d, normal = sphere_sphere_distance(centers[ia, :, jj], radii[ia],
                                                       centers[ib, :, jj], radii[ib], True, dim=-1)
                    hinge = (margin - d).clamp_min_(0.0).mul_(broad.pair_valid[p_index])  # (K, m)
                    cost.index_add_(0, j_index, 0.5 * (hinge * hinge).sum(1))
                    push = normal.mul_(hinge.unsqueeze(2)).view(-1, 3)  # −∂cost/∂centre_a
                    gradient_t.index_add_(0, (ia * b + jj).view(-1), push, alpha=-1.0)
                    gradient_t.index_add_(0, (ib * b + jj).view(-1), push)
            points = link_centers.transpose(0, 1).reshape(3, -1)
            for shapes in self._packed.shapes:
                l_index, j_index = self._near_links(points, shapes, threshold).nonzero(as_tuple=True)
                if not l_index.numel():
                    continue
                spheres = broad.link_sphere_table[l_index]  # (K, m)
                jj = j_index.unsqueeze(1).expand_as(spheres)
                sphere_points = centers[spheres, :, jj]  # (K, m, 3)
                d, normal = point_distances(sphere_points.reshape(-1, 3).mT.contiguous(), shapes, True)
                hinge = (margin - d.view(shapes.count, *spheres.shape).sub_(radii[spheres])).clamp_min_(0.0)
                hinge.mul_(broad.link_sphere_valid[l_index])  # (n, K, m)
                cost.index_add_(0, j_index, 0.5 * (hinge * hinge).sum(2).sum(0))
                push = normal.mul_(hinge.view(shapes.count, 1, -1))  # (n, 3, K·m), local frames
                gradient_t.index_add_(0, (spheres * b + jj).view(-1), local_vectors_to_world_sum(push, shapes).mT,
                                      alpha=-1.0)
        sphere_gradient = gradient_t.view(S, b, 3).transpose(1, 2).contiguous()  # (S, 3, b)
        moment = cross(centers, sphere_gradient)  # about the world origin
        gradient = world_wrench_vector_jacobian_product(self.chain, world, self.spheres.sphere_links,
                                                        sphere_gradient, moment)
        return cost, gradient

    def _penalty(self, q: Tensor, margin: float) -> tuple[Tensor, Tensor]:
        world, centers = self._centers(q)
        S, _, b = centers.shape
        cost = centers.new_zeros(b)
        gradient_t = centers.new_zeros(3, S * b)  # ∂cost/∂centre, world frame, coordinates first
        for shapes, d, normal in self._world_distances(centers, with_normal=True):
            hinge = (margin - d).clamp_min_(0.0)  # (n, S, b)
            cost += 0.5 * (hinge * hinge).flatten(0, 1).sum(0)
            push = normal.mul_(hinge.view(shapes.count, 1, S * b))  # −∂cost/∂centre, local frames
            gradient_t -= local_vectors_to_world_sum(push, shapes)
        sphere_gradient = gradient_t.view(3, S, b).transpose(0, 1).contiguous()  # (S, 3, b)
        if self.self_pairs.num_sphere_pairs:
            d, normal = self._self_distances(centers, True)  # (Q, b), (Q, 3, b)
            hinge = (margin - d).clamp_min_(0.0)
            cost += 0.5 * (hinge * hinge).sum(0)
            push = normal.mul_(hinge.unsqueeze(1))  # −∂cost/∂centre_a = +∂cost/∂centre_b
            sphere_gradient.index_add_(0, self.self_pairs.sphere_a, push, alpha=-1.0)
            sphere_gradient.index_add_(0, self.self_pairs.sphere_b, push)
        moment = cross(centers, sphere_gradient)  # about the world origin
        gradient = world_wrench_vector_jacobian_product(self.chain, world, self.spheres.sphere_links,
                                                        sphere_gradient, moment)
        return cost, gradient

    def penalty_cost(self, q: Tensor, margin: float | None = None) -> Tensor:
        """The penalty cost (B,) as a differentiable function of q: ``.backward()`` uses the
        closed-form gradient of :meth:`penalty` (first order only)."""
        return CollisionPenaltyFunction.apply(q, self, margin)

    def self_collision_info(self) -> str:
        return self.self_pairs.info()

    def __repr__(self) -> str:
        carried = f", carrying {', '.join(o.id for o in self.attached)}" if self.attached else ""
        return (f"CollisionChecker('{self.chain.name}', {self.spheres.num_spheres} spheres, "
                f"{self._packed.count} obstacles, {self.self_pairs.num_sphere_pairs} self sphere pairs, "
                f"margin {self.margin} m{carried})")


class _BroadPhase:
    """Per link with spheres, one sphere bounding them (centre in the link frame, radius max_s
    |c_s − c_link| + r_s, rounded up), and the tables that expand a link (pair) to its spheres
    (sphere pairs), padded by repeating the first entry (harmless for "any pair closer"; the
    ``*_valid`` masks zero the padding out of sums). ``bodies`` (S,), optional: group by these
    instead of the links (an attached object gets a bounding sphere of its own, in its link's
    frame)."""

    def __init__(self, spheres: RobotSpheres, pairs: SelfCollisionPairs, bodies: Tensor | None = None):
        device, dtype = spheres.device, spheres.dtype
        links = (spheres.sphere_links if bodies is None else bodies).cpu()
        chain_links = spheres.sphere_links.cpu()
        centers, radii = spheres.centers.detach().cpu().double(), spheres.radii.detach().cpu().double()
        used = sorted(set(links.tolist()))
        slot = {link: k for k, link in enumerate(used)}
        members = [torch.nonzero(links == link).squeeze(1) for link in used]
        link_centers, link_radii = [], []
        for index in members:
            c = centers[index]
            middle = 0.5 * (c.amin(0) + c.amax(0))
            link_centers.append(middle)
            link_radii.append(float(((c - middle).norm(dim=1) + radii[index]).max()))
        width = max((len(index) for index in members), default=1)
        table = [torch.cat([index, index[:1].repeat(width - len(index))]) for index in members]
        self.link_sphere_table = (torch.stack(table) if table else torch.zeros(0, 1, dtype=torch.int64)).to(device)
        #: 1 for a table entry, 0 for its padding (sums, such as the penalty's, must skip those)
        self.link_sphere_valid = _valid_mask([len(index) for index in members], width, dtype, device)
        self.link_radius = torch.tensor([r * (1 + 1e-6) + 1e-6 for r in link_radii], dtype=dtype, device=device)
        self.link_spheres = SimpleNamespace(  # what world_sphere_centers reads
            sphere_links=torch.tensor([int(chain_links[index[0]]) for index in members], dtype=torch.int64,
                                      device=device),
            centers=(torch.stack(link_centers) if link_centers else torch.zeros(0, 3, dtype=torch.float64)).to(device, dtype))
        # self pairs grouped by link pair
        sphere_a, sphere_b = pairs.sphere_a.cpu(), pairs.sphere_b.cpu()
        groups: dict[tuple[int, int], list[int]] = {}
        for q, (a, b) in enumerate(zip(links[sphere_a].tolist(), links[sphere_b].tolist())):
            groups.setdefault((slot[a], slot[b]), []).append(q)
        width = max((len(g) for g in groups.values()), default=1)
        padded = [torch.tensor(g + [g[0]] * (width - len(g)), dtype=torch.int64) for g in groups.values()]
        keys = list(groups)
        self.pair_a = torch.tensor([a for a, _ in keys], dtype=torch.int64, device=device)
        self.pair_b = torch.tensor([b for _, b in keys], dtype=torch.int64, device=device)
        self.pair_radius = (self.link_radius[self.pair_a] + self.link_radius[self.pair_b]).unsqueeze(1)
        rows = torch.stack(padded) if padded else torch.zeros(0, 1, dtype=torch.int64)
        self.pair_sphere_a = sphere_a[rows].to(device)
        self.pair_sphere_b = sphere_b[rows].to(device)
        self.pair_valid = _valid_mask([len(g) for g in groups.values()], width, dtype, device)
        #: rounding allowance of the bounds (m): a block is skipped only if its bound exceeds
        #: margin + slack, far more than the float error of either computation
        self.slack = max(1e-3, 1e4 * torch.finfo(dtype).eps)


def _valid_mask(lengths: list[int], width: int, dtype: torch.dtype, device) -> Tensor:
    """(rows, width): 1 in each row's first ``lengths[row]`` entries, 0 in its padding."""
    mask = torch.arange(width).unsqueeze(0) < torch.tensor(lengths, dtype=torch.int64).view(-1, 1)
    return mask.to(device, dtype)


class CollisionPenaltyFunction(torch.autograd.Function):
    """cost = checker.penalty(q, margin)[0] with its closed-form gradient as the backward.
    Inputs: q (B, J), checker, margin (float or None). Output: (B,). Not twice differentiable."""

    @staticmethod
    def forward(ctx, q: Tensor, checker: CollisionChecker, margin: float | None):
        cost, gradient = checker.penalty(q, margin)
        ctx.save_for_backward(gradient)
        return cost

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_cost: Tensor):
        (gradient,) = ctx.saved_tensors
        return grad_cost.unsqueeze(1) * gradient, None, None
