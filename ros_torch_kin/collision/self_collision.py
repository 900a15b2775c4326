"""Which of a robot's link pairs are checked against each other for self collision.

Every pair of links that carry spheres is checked except
- ``adjacent``: links on the same body (joined by a chain of fixed joints) or a body and its
  parent body (joined by one movable joint, possibly with fixed joints around it);
- ``srdf: <reason>``: a ``<disable_collisions link1 link2 reason>`` entry of an SRDF (links the
  chain does not have give a warning, not an error);
- ``always in collision (k/N samples)``: pairs whose spheres overlap in at least
  :data:`ALWAYS_IN_COLLISION_FRACTION` of N random in-limit configurations (as MoveIt's setup
  assistant does; 95 %, its default).

The enabled link pairs are expanded once into sphere-pair index tensors (every sphere of one link
against every sphere of the other).
"""

from __future__ import annotations

import math
import types
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import torch
from torch import Tensor

from ..kinematics import Chain, world_transforms
from .robot_spheres import RobotSpheres
from .signed_distance import sphere_sphere_distance
from .sphere_centers import world_sphere_centers

#: A pair in collision in at least this fraction of the sampled configurations is never checked.
ALWAYS_IN_COLLISION_FRACTION = 0.95
#: Default number of random configurations sampled for always-colliding pairs.
DEFAULT_SAMPLES = 1000
ADJACENT = "adjacent"
NO_SPHERES = "no spheres"


@dataclass(frozen=True, eq=False)
class SelfCollisionPairs:
    """The link pairs a self-collision check covers, and those it skips with the reason.

    ``enabled``: (link_a, link_b) names with a < b in chain order; ``disabled``: read-only
    mapping (link_a, link_b) -> reason. ``sphere_a``, ``sphere_b`` (Q,) int64: indices into the
    RobotSpheres of every sphere pair checked. ``warnings``: SRDF entries that were ignored.
    """

    enabled: tuple[tuple[str, str], ...]
    disabled: types.MappingProxyType
    sphere_a: Tensor
    sphere_b: Tensor
    warnings: tuple[str, ...] = ()

    @property
    def num_sphere_pairs(self) -> int:
        return int(self.sphere_a.shape[0])

    def reason(self, link_a: str, link_b: str) -> str | None:
        """Why a pair is not checked ('no spheres' when a link carries none), or None if it is."""
        reason = self.disabled.get((link_a, link_b), self.disabled.get((link_b, link_a)))
        if reason is None and (link_a, link_b) not in self.enabled and (link_b, link_a) not in self.enabled:
            return NO_SPHERES
        return reason

    def info(self) -> str:
        """A readable table: enabled pairs, then each disabled pair with its reason."""
        lines = [f"{len(self.enabled)} link pairs checked ({self.num_sphere_pairs} sphere pairs):"]
        lines += [f"  {a} - {b}" for a, b in self.enabled]
        lines.append(f"{len(self.disabled)} link pairs not checked:")
        lines += [f"  {a} - {b}: {reason}" for (a, b), reason in self.disabled.items()]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def to(self, device: torch.device | str) -> "SelfCollisionPairs":
        return SelfCollisionPairs(self.enabled, self.disabled, self.sphere_a.to(device), self.sphere_b.to(device),
                                  self.warnings)


def link_bodies(chain: Chain) -> list[int]:
    """(L,) for each link, the body it is rigidly attached to (itself for a body; a frame's
    anchor, found through the chain of fixed joints above it)."""
    N, parent = chain.plan.num_bodies, chain.parent_index.tolist()
    body = list(range(chain.num_links))
    for link in range(N, chain.num_links):  # frames are ordered by depth: parents come first
        body[link] = body[parent[link]]
    return body


def adjacent_link_pairs(chain: Chain) -> set[tuple[int, int]]:
    """(a, b) link index pairs, a < b, that are adjacent: same body, or a body and its parent body."""
    body, parent = link_bodies(chain), chain.parent_index.tolist()
    parent_body = [body[parent[b]] if parent[b] >= 0 else -1 for b in range(chain.num_links)]
    pairs = set()
    for a in range(chain.num_links):
        for b in range(a + 1, chain.num_links):
            ba, bb = body[a], body[b]
            if ba == bb or parent_body[ba] == bb or parent_body[bb] == ba:
                pairs.add((a, b))
    return pairs


def srdf_disabled_pairs(srdf: str, chain: Chain) -> tuple[dict[tuple[int, int], str], list[str]]:
    """``<disable_collisions link1 link2 reason>`` entries of an SRDF document -> ({(a, b) link
    index pair, a < b: reason}, warnings): one warning for all the entries that name links the
    chain does not have (an SRDF written for a larger robot names dozens), listing those links."""
    root = ET.fromstring(srdf)
    pairs, ignored, unknown = {}, 0, {}
    for entry in root.iter("disable_collisions"):
        names = (entry.get("link1"), entry.get("link2"))
        missing = [str(n) for n in names if n is None or not chain.has_link(n)]
        if missing:
            ignored += 1
            unknown.update(dict.fromkeys(missing))
            continue
        a, b = sorted(chain.link_index(n) for n in names)
        if a != b:
            pairs[(a, b)] = entry.get("reason", "") or "unspecified"
    problems = []
    if ignored:
        problems.append(f"SRDF disable_collisions: {ignored} entr{'y' if ignored == 1 else 'ies'} name unknown link(s) "
                        f"{', '.join(unknown)} in robot '{chain.name}'; ignored")
    return pairs, problems


def self_collision_pairs(
    chain: Chain,
    spheres: RobotSpheres,
    srdf: str | None = None,
    samples: int = DEFAULT_SAMPLES,
    always_fraction: float = ALWAYS_IN_COLLISION_FRACTION,
    seed: int = 0,
) -> SelfCollisionPairs:
    """The self-collision pairs of a robot's spheres (see the module docstring).

    srdf: SRDF text (optional); samples: random configurations for the always-in-collision test
    (0 skips it; joint limits, continuous joints in [−π, π]); seed: for those samples.
    """
    if tuple(spheres.link_names) != tuple(chain.link_names):
        raise ValueError("the spheres were built for other links than the chain's")
    spheres = spheres.to(chain.device, chain.dtype)
    names, counts = chain.link_names, spheres.count_per_link()
    with_spheres = [l for l, n in enumerate(names) if counts[n] > 0]
    candidates = [(a, b) for i, a in enumerate(with_spheres) for b in with_spheres[i + 1:]]
    disabled: dict[tuple[int, int], str] = {}
    adjacent = adjacent_link_pairs(chain)
    srdf_pairs, problems = srdf_disabled_pairs(srdf, chain) if srdf is not None else ({}, [])
    for problem in problems:
        warnings.warn(problem, stacklevel=2)
    for pair in candidates:
        if pair in adjacent:
            disabled[pair] = ADJACENT
        elif pair in srdf_pairs:
            disabled[pair] = f"srdf: {srdf_pairs[pair]}"
    remaining = [p for p in candidates if p not in disabled]
    if samples > 0 and remaining:
        hits = _collision_counts(chain, spheres, remaining, samples, seed)
        needed = math.ceil(always_fraction * samples)
        for pair, count in zip(remaining, hits):
            if count >= needed:
                disabled[pair] = f"always in collision ({count}/{samples} samples)"
    enabled = [p for p in candidates if p not in disabled]
    sphere_a, sphere_b = _sphere_pairs(spheres, enabled)
    return SelfCollisionPairs(
        enabled=tuple((names[a], names[b]) for a, b in enabled),
        disabled=types.MappingProxyType({(names[a], names[b]): disabled[(a, b)] for a, b in candidates if (a, b) in disabled}),
        sphere_a=sphere_a,
        sphere_b=sphere_b,
        warnings=tuple(problems),
    )


def _sphere_pairs(spheres: RobotSpheres, link_pairs) -> tuple[Tensor, Tensor]:
    """Every sphere of link a against every sphere of link b, for each (a, b) -> (Q,) index
    tensors into the spheres (on their device)."""
    links = spheres.sphere_links.cpu()
    members = {l: torch.nonzero(links == l).flatten() for l in set(int(x) for pair in link_pairs for x in pair)}
    a_parts, b_parts = [], []
    for a, b in link_pairs:
        ia, ib = torch.meshgrid(members[a], members[b], indexing="ij")
        a_parts.append(ia.reshape(-1))
        b_parts.append(ib.reshape(-1))
    empty = torch.zeros(0, dtype=torch.int64)
    a_index = torch.cat(a_parts) if a_parts else empty
    b_index = torch.cat(b_parts) if b_parts else empty
    return a_index.to(spheres.device), b_index.to(spheres.device)


def _collision_counts(chain: Chain, spheres: RobotSpheres, link_pairs, samples: int, seed: int) -> list[int]:
    """For each link pair, in how many of ``samples`` random in-limit configurations any of its
    sphere pairs overlaps (distance < 0)."""
    sphere_a, sphere_b = _sphere_pairs(spheres, link_pairs)
    sizes = [int((spheres.sphere_links == a).sum()) * int((spheres.sphere_links == b).sum()) for a, b in link_pairs]
    pair_of = torch.repeat_interleave(torch.arange(len(link_pairs)), torch.tensor(sizes)).to(chain.device)
    generator = torch.Generator().manual_seed(seed)
    lower = chain.lower_limits.clamp(min=-math.pi).cpu().double()
    upper = chain.upper_limits.clamp(max=math.pi).cpu().double()
    hits = torch.zeros(len(link_pairs), dtype=torch.int64, device=chain.device)
    chunk = 256
    for start in range(0, samples, chunk):
        n = min(chunk, samples - start)
        u = torch.rand(n, chain.num_dofs, generator=generator, dtype=torch.float64)
        q = (lower + u * (upper - lower)).to(chain.device, chain.dtype)
        centers = world_sphere_centers(world_transforms(chain, q), spheres)  # (S, 3, n)
        d, _ = sphere_sphere_distance(centers[sphere_a], spheres.radii[sphere_a, None], centers[sphere_b],
                                      spheres.radii[sphere_b, None], with_normal=False, dim=1)
        d = d.mT  # (n, Q)
        pair_min = torch.full((n, len(link_pairs)), math.inf, dtype=d.dtype, device=d.device)
        pair_min = pair_min.scatter_reduce(1, pair_of.expand(n, -1), d, reduce="amin")
        hits += (pair_min < 0).sum(0)  # per link pair: does any of its sphere pairs overlap
    return hits.tolist()
