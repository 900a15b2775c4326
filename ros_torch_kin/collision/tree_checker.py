"""The validity verdict on a tight model: a robot's sphere-tree leaves (thousands of spheres, a few
mm loose; see :mod:`.urdf_sphere_trees`) against a scene and themselves, through a three-level
bounding hierarchy so that only the leaves near a contact are ever touched.

Levels (bounding spheres in their link's frame, each holding every leaf sphere below it):

1. *link*: one sphere per link. World: (configuration, link, obstacle kind) blocks whose bound is
   farther than the threshold are dropped; self: (configuration, enabled link pair) blocks.
2. *group*: the sphere-tree nodes at the group depth (≤ 16 per link). Same test per
   (configuration, group) or (configuration, group pair).
3. *leaf*: the exact sphere distances, only for the surviving groups / group pairs.

A signed distance to an obstacle is 1-Lipschitz in the point, so a leaf inside a bound of radius R
centred at C is at least d(C) − R from the obstacle; for two bounds, |C_a − C_b| − R_a − R_b.
Every query returns the exact leaf-level minimum wherever it is below the threshold it was asked
with (and some value ≥ that threshold elsewhere): the verdict ``d < margin`` is exactly the
all-pairs verdict. Levels are gathered with ``nonzero`` (on CUDA one host synchronisation per
level); no Python loop over configurations, leaves or obstacles (only over the ≤ 4 kinds).

Self pairs: the enabled *link* pairs of a :class:`SelfCollisionPairs` (its sphere index tensors
are not used: a tight model has millions of leaf pairs, expanded here only where near).
Units: m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from torch import Tensor

from ..kinematics import Chain, world_transforms
from ..kinematics.fk import check_joint_positions
from .obstacles import PackedScene, Scene
from .robot_spheres import RobotSpheres
from .signed_distance import local_signed_distance, point_distances
from .sphere_centers import world_sphere_centers


@dataclass(frozen=True, eq=False)
class TreeDistances:
    """For B configurations: ``min_distance`` (B,) the smallest leaf distance, world or self,
    exact where below the query's threshold (else some value ≥ it); ``in_collision`` (B,) bool
    (``min_distance < margin``); ``pairs``: per configuration the closest pair's names, (link,
    obstacle id) or (link, link), '' where nothing is within the threshold."""

    min_distance: Tensor
    in_collision: Tensor
    pairs: tuple[tuple[str, str], ...]

    def nearest_pair(self, b: int) -> tuple[str, str]:
        return self.pairs[b]


#: Configurations per pass (bounds the gathered temporaries; the levels' sizes depend on how many
#: configurations are near contact).
CHUNK = 256
#: Leaf pairs per block of the self check's last level.
LEAF_PAIRS = 1 << 21


class _Level:
    """Bounding spheres over member spheres: ``centers`` (N, 3) in their link's frame, ``radius``
    (N,), ``links`` (N,) int64, ``members`` (N, m) int64 padded (repeating the first member) and
    ``valid`` (N, m) bool (False on the padding)."""

    def __init__(self, centers, radius, links, members: list[Tensor], device, dtype):
        self.centers = torch.as_tensor(centers, dtype=dtype, device=device)
        self.radius = torch.as_tensor(radius, dtype=dtype, device=device)
        self.links = torch.as_tensor(links, dtype=torch.int64, device=device)
        self.members, self.valid = (t.to(device) for t in _padded(members))
        self.frame = SimpleNamespace(sphere_links=self.links, centers=self.centers)


def _bound(centers: Tensor, radii: Tensor, index: list[Tensor], links: Tensor, rounding: float):
    """Per member list (indices into centres/radii, all of one link): the bounding sphere's centre
    (box middle), radius (rounded up) and link, in float64."""
    out_c, out_r, out_l = [], [], []
    for members in index:
        c = centers[members]
        middle = 0.5 * (c.amin(0) + c.amax(0))
        out_c.append(middle)
        out_r.append(float(((c - middle).norm(dim=1) + radii[members]).max()) * (1 + 1e-6) + rounding)
        out_l.append(int(links[members[0]]))
    return torch.stack(out_c), torch.tensor(out_r, dtype=torch.float64), torch.tensor(out_l)


def _padded(rows: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Rows of different lengths (each (n_i, ...)) -> one table (R, width, ...) padded by repeating
    a row's first entry (harmless for "any closer"), and (R, width) bool: False on the padding."""
    width = max(len(r) for r in rows)
    table = torch.stack([torch.cat([r, r[:1].repeat(width - len(r), *[1] * (r.dim() - 1))]) for r in rows])
    return table, torch.arange(width).unsqueeze(0) < torch.tensor([len(r) for r in rows]).unsqueeze(1)


class TreeCollisionChecker:
    """A tight model's verdict and clearances (immutable; ``with_scene`` for another scene).

    chain; spheres: RobotSpheres with ``sphere_groups`` (from
    :func:`.urdf_sphere_trees.robot_sphere_trees_from_urdf`); scene; self_pairs: which link pairs
    are checked (:class:`SelfCollisionPairs`, or None for none); margin (m, ≥ 0): the distance
    below which :meth:`in_collision` says True (the validity margin); coarse: optionally a
    :class:`CollisionChecker` on a coarse conservative cover of the same links and self pairs
    (:func:`.urdf_spheres.robot_spheres_from_urdf`). Both covers hold the geometry, so the exact
    distance is at least the larger of their two distances: every query asks the (cheap) coarse
    model first and the leaves only for the configurations it cannot clear, and its sphere pairs
    are the self check's first level.
    """

    def __init__(self, chain: Chain, spheres: RobotSpheres, scene: Scene | None = None, self_pairs=None,
                 margin: float = 0.0, coarse=None):
        if tuple(spheres.link_names) != tuple(chain.link_names):
            raise ValueError(f"the spheres were built for other links than those of robot '{chain.name}'")
        if spheres.sphere_groups is None:
            raise ValueError("TreeCollisionChecker needs grouped spheres (robot_sphere_trees_from_urdf)")
        if not math.isfinite(margin) or margin < 0:
            raise ValueError(f"margin must be finite and ≥ 0 m, got {margin}")
        self.chain, self.margin = chain, float(margin)
        self.spheres = spheres.to(chain.device, chain.dtype)
        self.scene = Scene() if scene is None else scene
        self.self_pairs = self_pairs
        self._packed: PackedScene = self.scene.packed(chain.device, chain.dtype)
        device, dtype = chain.device, chain.dtype
        self._leaf_frame = SimpleNamespace(links=self.spheres.sphere_links, centers=self.spheres.centers)
        self.rounding = max(1e-6, 1e4 * torch.finfo(dtype).eps)
        centers = self.spheres.centers.detach().cpu().double()
        radii = self.spheres.radii.detach().cpu().double()
        links = self.spheres.sphere_links.cpu()
        groups = self.spheres.sphere_groups.cpu()
        group_ids = torch.unique(groups)
        group_members = [torch.nonzero(groups == g).squeeze(1) for g in group_ids.tolist()]
        gc, gr, gl = _bound(centers, radii, group_members, links, self.rounding)
        self._groups = _Level(gc, gr, gl, group_members, device, dtype)
        link_ids = sorted(set(gl.tolist()))
        link_members = [torch.nonzero(gl == l).squeeze(1) for l in link_ids]  # groups of each link
        # a link's bound holds its groups' bounds
        lc, lr, ll = _bound(gc, gr, link_members, gl, self.rounding)
        self._links = _Level(lc, lr, ll, link_members, device, dtype)
        self._link_slot = {l: k for k, l in enumerate(link_ids)}
        # enabled link pairs -> (pair of link slots) and their group pairs
        names = {n: i for i, n in enumerate(chain.link_names)}
        pair_slots, group_pairs = [], []
        for a, b in (self_pairs.enabled if self_pairs is not None else ()):
            la, lb = self._link_slot.get(names[a]), self._link_slot.get(names[b])
            if la is None or lb is None:
                continue
            pair_slots.append((la, lb))
            ga, gb = torch.meshgrid(link_members[la], link_members[lb], indexing="ij")
            group_pairs.append(torch.stack([ga.reshape(-1), gb.reshape(-1)], 1))
        self._pair_a = torch.tensor([a for a, _ in pair_slots], dtype=torch.int64, device=device)
        self._pair_b = torch.tensor([b for _, b in pair_slots], dtype=torch.int64, device=device)
        self._coarse_checker = None
        if coarse is not None:
            self._coarse_checker = coarse.with_scene(self.scene)
            self._coarse_maps(coarse, ll, pair_slots, device)
        if group_pairs:
            self._pair_groups, self._pair_groups_valid = (t.to(device) for t in _padded(group_pairs))
        else:
            self._pair_groups = torch.zeros(0, 1, 2, dtype=torch.int64, device=device)
            self._pair_groups_valid = torch.zeros(0, 1, dtype=torch.bool, device=device)

    # ------------------------------------------------------------------ construction
    def _coarse_maps(self, coarse, link_of_slot: Tensor, pair_slots: list[tuple[int, int]], device):
        """Maps from the coarse checker's spheres and sphere pairs to this checker's link slots and
        enabled link pairs, so that its distances bound the first level of both checks: a link's
        coarse spheres hold its geometry, so a link (pair) whose coarse spheres are all at least d
        from an obstacle (from each other) has its exact geometry at least d away."""
        slot_of_link = {int(l): k for k, l in enumerate(link_of_slot.tolist())}
        Lk, P = len(slot_of_link), len(pair_slots)
        coarse_links = coarse.spheres.sphere_links.cpu().tolist()
        sphere_slot = torch.tensor([slot_of_link.get(l, Lk) for l in coarse_links], dtype=torch.int64)
        covered = torch.zeros(Lk + 1, dtype=torch.bool)
        covered[sphere_slot] = True
        pair_of = {}
        for p, (a, b) in enumerate(pair_slots):
            pair_of[(a, b)] = pair_of[(b, a)] = p
        pairs = coarse.self_pairs
        slots_a = sphere_slot[pairs.sphere_a.cpu()].tolist()
        slots_b = sphere_slot[pairs.sphere_b.cpu()].tolist()
        pair_index = torch.tensor([pair_of.get((a, b), P) for a, b in zip(slots_a, slots_b)], dtype=torch.int64)
        pair_covered = torch.zeros(P + 1, dtype=torch.bool)
        pair_covered[pair_index] = True
        self._coarse_sphere_slot = sphere_slot.to(device)
        self._coarse_link_missing = (~covered[:Lk]).to(device)
        self._coarse_pair_index = pair_index.to(device)
        self._coarse_pair_missing = (~pair_covered[:P]).to(device)

    def _coarse_bounds(self, coarse, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Lower bounds on the exact distances from the coarse checker's full distances, for
        configurations ``rows``: per (obstacle, link slot) (O, Lk, b) and per enabled link pair
        (P, b); −inf where a link or pair has no coarse spheres."""
        Lk, P = self._links.radius.shape[0], self._pair_a.shape[0]
        by_sphere = coarse.sphere_obstacle[rows]  # (b, Sc, O)
        b, _, O = by_sphere.shape
        index = self._coarse_sphere_slot.view(1, -1, 1).expand_as(by_sphere)
        world = by_sphere.new_full((b, Lk + 1, O), math.inf).scatter_reduce_(1, index, by_sphere, "amin")
        world = world[:, :Lk].masked_fill_(self._coarse_link_missing.view(1, -1, 1), -math.inf).permute(2, 1, 0)
        pairs = coarse.sphere_pairs[rows]  # (b, Q)
        index = self._coarse_pair_index.view(1, -1).expand_as(pairs)
        own = pairs.new_full((b, P + 1), math.inf).scatter_reduce_(1, index, pairs, "amin")
        own = own[:, :P].masked_fill_(self._coarse_pair_missing.view(1, -1), -math.inf).mT
        return world.contiguous(), own.contiguous()

    def with_scene(self, scene: Scene) -> "TreeCollisionChecker":
        checker = object.__new__(TreeCollisionChecker)
        checker.__dict__.update(self.__dict__)
        checker.scene, checker._packed = scene, scene.packed(self.chain.device, self.chain.dtype)
        if self._coarse_checker is not None:
            checker._coarse_checker = self._coarse_checker.with_scene(scene)
        return checker

    def __repr__(self) -> str:
        return (f"TreeCollisionChecker('{self.chain.name}', {self.spheres.num_spheres} leaves in "
                f"{self._groups.radius.shape[0]} groups, {self._packed.count} obstacles, "
                f"{self._pair_a.shape[0]} self link pairs, margin {self.margin} m)")

    # ------------------------------------------------------------------ queries
    def in_collision(self, q: Tensor) -> Tensor:
        """(B, J) or (J,) -> (B,) bool: some leaf pair (world or enabled self) is closer than the
        margin. Exactly the all-pairs verdict of the leaves (module doc)."""
        return self._minimum(q, self.margin, names=False)[0] < self.margin

    def distances(self, q: Tensor, threshold: float | None = None) -> TreeDistances:
        """(B, J) -> :class:`TreeDistances`, exact below ``threshold`` (default: the margin)."""
        threshold = self.margin if threshold is None else float(threshold)
        minimum, pairs = self._minimum(q, threshold, names=True)
        return TreeDistances(minimum, minimum < self.margin, pairs)

    def min_distance(self, q: Tensor, threshold: float = math.inf) -> Tensor:
        """(B, J) -> (B,) the smallest leaf distance (m), exact where below ``threshold`` (else a
        value ≥ it). A finite threshold is much cheaper: only pairs that may be closer are looked at."""
        return self._minimum(q, float(threshold), names=False)[0]

    def link_pair_collisions(self, q: Tensor) -> Tensor:
        """(B, J) -> (B, P) bool: enabled link pair p has overlapping leaves (distance < 0)."""
        q = check_joint_positions(self.chain, q).detach()
        if q.shape[0] > CHUNK:
            return torch.cat([self.link_pair_collisions(part) for part in q.split(CHUNK)])
        B, P = q.shape[0], self._pair_a.shape[0]
        hits = torch.zeros(B * max(P, 1), dtype=torch.bool, device=q.device)
        if P and B:
            world = world_transforms(self.chain, q)
            d, j, p, _, _ = self._self_leaf_distances(world, 0.0)
            hits[(j * P + p)[d < 0]] = True
        return hits.view(B, max(P, 1))[:, :P]

    # ------------------------------------------------------------------ internals
    def world_and_self_distance(self, q: Tensor, world_threshold: float, self_threshold: float) -> tuple[Tensor, Tensor]:
        """(B, J) -> the smallest world distance (B,) and the smallest self distance (B,), each
        exact below its own threshold (m); a tighter self threshold skips most self pairs."""
        world, own, _ = self._parts(q, float(world_threshold), float(self_threshold), names=False)
        return world, own

    def _minimum(self, q: Tensor, threshold: float, names: bool):
        world, own, pairs = self._parts(q, threshold, threshold, names)
        minimum = torch.minimum(world, own)
        if names:
            pairs = tuple(w if bool(world[b] <= own[b]) else o for b, (w, o) in enumerate(pairs))
        return minimum, pairs

    def _parts(self, q: Tensor, threshold: float, self_threshold: float, names: bool):
        """(world min (B,), self min (B,), per configuration ((link, obstacle), (link, link))):
        the coarse model's distances where they reach the thresholds, else the larger of the
        coarse and the leaves' (both are lower bounds of the exact distance)."""
        q = check_joint_positions(self.chain, q).detach()
        if self._coarse_checker is None or not q.shape[0]:
            return self._tree_parts(q, threshold, self_threshold, names)
        coarse = self._coarse_checker.distances(q, full=True)
        world, own = coarse.world_distance.clone(), coarse.self_distance.clone()
        closer = (world < threshold) | (own < self_threshold)
        pairs = [(("", ""), ("", ""))] * q.shape[0]
        rows = closer.nonzero().squeeze(1)
        if rows.numel():
            bounds = self._coarse_bounds(coarse, rows)
            tree_world, tree_self, tree_pairs = self._tree_parts(q[rows], threshold, self_threshold, names, bounds)
            world[rows] = torch.maximum(world[rows], tree_world)
            own[rows] = torch.maximum(own[rows], tree_self)
            for i, b in enumerate(rows.tolist() if names else ()):
                pairs[b] = tree_pairs[i]
        return world, own, tuple(pairs)

    def _tree_parts(self, q: Tensor, threshold: float, self_threshold: float, names: bool, bounds=None):
        """As :meth:`_parts`, from the leaves alone (``bounds``: the coarse lower bounds of
        :meth:`_coarse_bounds` for these configurations, else the link bounds are used)."""
        if q.shape[0] > CHUNK:
            pieces = [None] * -(-q.shape[0] // CHUNK) if bounds is None else list(zip(
                bounds[0].split(CHUNK, dim=-1), bounds[1].split(CHUNK, dim=-1)))
            parts = [self._tree_parts(part, threshold, self_threshold, names, bound)
                     for part, bound in zip(q.split(CHUNK), pieces)]
            return (torch.cat([w for w, _, _ in parts]), torch.cat([o for _, o, _ in parts]),
                    tuple(p for _, _, pairs in parts for p in pairs))
        B = q.shape[0]
        result = []
        world = world_transforms(self.chain, q) if B and self.spheres.num_spheres else None
        for kind, limit in (("world", threshold), ("self", self_threshold)):
            minimum = q.new_full((B,), math.inf)
            found = []
            if world is not None and kind == "world":
                first = 0
                for shapes in self._packed.shapes:
                    lower = None if bounds is None else bounds[0][first:first + shapes.count]
                    first += shapes.count
                    d, j, leaf, obstacle = self._world_leaf_distances(world, shapes, limit, lower)
                    found.append((d, j, lambda i, leaf=leaf, obstacle=obstacle, shapes=shapes: (
                        self.chain.link_names[int(self.spheres.sphere_links[leaf[i]])], shapes.ids[int(obstacle[i])])))
            elif world is not None and self._pair_a.numel():
                d, j, _, la, lb = self._self_leaf_distances(world, limit, None if bounds is None else bounds[1])
                found.append((d, j, lambda i, la=la, lb=lb: (
                    self.chain.link_names[int(self.spheres.sphere_links[la[i]])],
                    self.chain.link_names[int(self.spheres.sphere_links[lb[i]])])))
            for d, j, _ in found:
                if d.numel():
                    minimum.scatter_reduce_(0, j, d, "amin")
            pairs = [("", "")] * B
            if names:
                for d, j, name in found:
                    for i in (d == minimum[j]).nonzero().squeeze(1).tolist() if d.numel() else ():
                        pairs[int(j[i])] = name(i)
            has = (kind == "world" and self._packed.count) or (kind == "self" and self._pair_a.numel())
            if has:  # nothing found below the threshold: report the threshold (a lower bound)
                minimum = torch.where(torch.isinf(minimum), torch.full_like(minimum, max(limit, 0.0) + self.rounding),
                                      minimum)
            result.append((minimum, pairs))
        (world_min, world_pairs), (self_min, self_pairs) = result
        return world_min, self_min, tuple(zip(world_pairs, self_pairs))

    def _world_leaf_distances(self, world: Tensor, shapes, threshold: float, lower: Tensor | None = None):
        """Leaf–obstacle distances of one kind below the bounds' threshold: (K,) distances, their
        configuration, leaf and obstacle (index within the kind). ``lower``: (n, Lk, B) lower
        bounds per (obstacle, link slot, configuration), else the link bounding spheres'."""
        B = world.shape[-1]
        limit = threshold + self.rounding
        links, groups, leaves = self._links, self._groups, self.spheres
        n = shapes.count
        # level 1: links (Lk, 3, B) -> near (obstacle, link, configuration)
        if lower is None:
            lc = world_sphere_centers(world, links.frame)
            d, _ = point_distances(lc.transpose(0, 1).reshape(3, -1), shapes, False)
            lower = d.view(n, -1, B) - links.radius.view(1, -1, 1)
        near = lower < limit
        l_index, j_index = near.any(0).nonzero(as_tuple=True)
        if not l_index.numel():
            return self._empty(world)
        # level 2: the groups of those links
        g = links.members[l_index]  # (K, m)
        jj = j_index.unsqueeze(1).expand_as(g)
        gc = world_sphere_centers(world, groups.frame)[g, :, jj]  # (K, m, 3)
        d, _ = point_distances(gc.reshape(-1, 3).mT.contiguous(), shapes, False)
        near = (d.view(n, *g.shape) - groups.radius[g]) < limit  # (n, K, m)
        near &= links.valid[l_index].unsqueeze(0)
        o_index, k_index, m_index = near.nonzero(as_tuple=True)
        if not o_index.numel():
            return self._empty(world)
        group, j = g[k_index, m_index], j_index[k_index]
        # level 3: the leaves of those groups against that obstacle only
        leaf = groups.members[group]  # (K2, m2)
        valid = groups.valid[group]
        jl = j.unsqueeze(1).expand_as(leaf)
        centers = self._centers_of(world, self._leaf_frame, leaf, jl)  # (K2, m2, 3)
        R, t = shapes.rotation[o_index], shapes.translation[o_index]  # (K2, 3, 3), (K2, 3)
        local = torch.einsum("kji,kmj->kim", R, centers - t.unsqueeze(1))  # (K2, 3, m2) = Rᵀ(p − t)
        d, _ = local_signed_distance(shapes.kind, local, shapes.parameters[o_index], False)
        d = torch.where(valid, d - leaves.radii[leaf], torch.full_like(d, math.inf))
        best, at = d.min(1)
        keep = best < limit
        return best[keep], j[keep], leaf[keep, at[keep]], o_index[keep]

    def _self_leaf_distances(self, world: Tensor, threshold: float, lower: Tensor | None = None):
        """Leaf–leaf distances of enabled link pairs below the bounds' threshold: (K,) distances,
        configuration, link-pair index, and the two leaves. ``lower``: (P, B) lower bounds per
        (link pair, configuration), else the link bounding spheres'."""
        B = world.shape[-1]
        limit = threshold + self.rounding
        links, groups, leaves = self._links, self._groups, self.spheres
        if lower is None:
            lc = world_sphere_centers(world, links.frame)  # (Lk, 3, B)
            offset = lc.index_select(0, self._pair_a) - lc.index_select(0, self._pair_b)
            lower = (offset * offset).sum(1).sqrt() - (links.radius[self._pair_a] + links.radius[self._pair_b]).unsqueeze(1)
        p_index, j_index = (lower < limit).nonzero(as_tuple=True)
        if not p_index.numel():
            return (*self._empty(world)[:2], p_index, p_index, p_index)
        gp = self._pair_groups[p_index]  # (K, w, 2)
        jj = j_index.unsqueeze(1).expand(gp.shape[:2])
        group_world = world_sphere_centers(world, groups.frame)  # (G, 3, B)
        ca = group_world[gp[..., 0], :, jj]
        cb = group_world[gp[..., 1], :, jj]
        offset = ca - cb
        lower = (offset * offset).sum(-1).sqrt() - groups.radius[gp[..., 0]] - groups.radius[gp[..., 1]]
        near = (lower < limit) & self._pair_groups_valid[p_index]
        k_index, w_index = near.nonzero(as_tuple=True)
        if not k_index.numel():
            return (*self._empty(world)[:2], p_index[:0], p_index[:0], p_index[:0])
        ga, gb = gp[k_index, w_index, 0], gp[k_index, w_index, 1]
        j, p = j_index[k_index], p_index[k_index]
        rows = max(1, LEAF_PAIRS // (groups.members.shape[1] ** 2))
        out = []
        for start in range(0, ga.shape[0], rows):  # bounded temporaries: row blocks of group pairs
            a, b, jr = ga[start:start + rows], gb[start:start + rows], j[start:start + rows]
            la, lb = groups.members[a], groups.members[b]  # (K2, ma), (K2, mb)
            pa = self._centers_of(world, self._leaf_frame, la, jr.unsqueeze(1).expand_as(la))  # (K2, ma, 3)
            pb = self._centers_of(world, self._leaf_frame, lb, jr.unsqueeze(1).expand_as(lb))
            d = torch.cdist(pa, pb) - leaves.radii[la].unsqueeze(2) - leaves.radii[lb].unsqueeze(1)
            valid = groups.valid[a].unsqueeze(2) & groups.valid[b].unsqueeze(1)
            d = torch.where(valid, d, torch.full_like(d, math.inf)).flatten(1)
            best, at = d.min(1)
            keep = best < limit
            mb = lb.shape[1]
            out.append((best[keep], jr[keep], p[start:start + rows][keep], la[keep, at[keep] // mb],
                        lb[keep, at[keep] % mb]))
        return tuple(torch.cat(parts) for parts in zip(*out))

    @staticmethod
    def _centers_of(world: Tensor, level, index: Tensor, configuration: Tensor) -> Tensor:
        """World centres (..., 3) of spheres ``index`` (...) of a level at ``configuration`` (...)."""
        T = world[level.links[index], :, :, configuration]  # (..., 4, 4)
        return torch.einsum("...ij,...j->...i", T[..., :3, :3], level.centers[index]) + T[..., :3, 3]

    @staticmethod
    def _empty(world: Tensor):
        empty = torch.zeros(0, dtype=torch.int64, device=world.device)
        return world.new_zeros(0), empty, empty, empty
