"""Batched forward kinematics: joint positions -> world pose of every link.

Algorithm (no Python loop over the batch, no host round-trip):

1. Each link's joint value ``q_link = dof_to_link @ q + link_offset`` (mimic joints follow their
   leader), then all local transforms at once as one batched product of the chain's constant
   coefficients with the features ``(cos q_link, sin q_link, q_link)`` (see :mod:`.chain`).
2. World transforms ``T_world_link = T_world_parent @ T_parent_link``, composed either
   - level by level: one tree depth at a time, every link of that depth at once, with the batch
     as the innermost, contiguous dimension so that each product is a few wide elementwise
     operations (a transform stack here has shape (L, 4, 4, B), "link-major"); or
   - by pointer jumping, for tiny batches: ``ceil(log2 depth)`` rounds of "compose with the
     ancestor 2**k levels up" as batched 4×4 matrix products, fewer operations in all.

The batch size picks the faster route; all give the same numbers. Results are returned as
(B, L, 4, 4) views of link-major storage, so no transpose is paid.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .chain import Chain, take

#: Pointer jumping with 4×4 matrix products for a single configuration, and while batch size ×
#: number of links is at most this.
JUMP_MAX_PRODUCTS = 64
#: From this batch size on, levels are composed with three multiply-adds instead of one
#: broadcast product and sum (fewer bytes moved; more operations).
WIDE_BATCH = 2048
#: Bytes of world transforms per chunk of a large batch (a few MB: the chunk stays in cache).
CHUNK_BYTES = 4 << 20


def forward_kinematics(
    chain: Chain,
    q: Tensor,
    links: Sequence[str | int] | str | int | None = None,
    analytical_grad: bool = True,
) -> Tensor:
    """World pose of each link.

    q: (B, J) or (J,) joint positions in ``chain.joint_names`` order; rad for revolute and
    continuous joints, m for prismatic ones; same device and dtype as the chain.
    links: a link name or index, or a sequence of them (default: all, in ``chain.link_names``
    order). A single name gives (B, 4, 4).
    analytical_grad: when ``q.requires_grad``, differentiate with the analytical backward
    (geometric Jacobian; double backward works). ``False`` records plain autograd operations
    instead (slower; use it to differentiate with respect to chain constants).

    Returns T_world_link: (B, K, 4, 4) homogeneous transforms (m), without the B axis for a 1-D
    ``q``; world = the URDF root link's frame. The result is a view whose batch dimension is
    innermost in memory; call ``.contiguous()`` before ``.view()``.
    """
    q2 = check_joint_positions(chain, q)
    selection, single = _link_selection(chain, links)
    if analytical_grad and q2.requires_grad and torch.is_grad_enabled():
        from .fk_backward import apply_forward_kinematics

        T = apply_forward_kinematics(q2, chain, selection)
        if selection is not None:
            T = T[0]
    else:
        world = world_transforms(chain, q2)
        T = (world if selection is None else take(world, selection)).permute(3, 0, 1, 2)
    if single:
        T = T[:, 0]
    return T[0] if q.dim() == 1 else T


def world_transforms(chain: Chain, q: Tensor) -> Tensor:
    """(B, J) joint positions -> (L, 4, 4, B) world transforms of all links, link-major.

    No input checks. Differentiable by plain autograd, usable under ``torch.func.vmap`` and
    ``torch.compile``. The composition is chosen by :func:`composition_strategy`.
    """
    B = q.shape[0]
    if B == 0:
        return q.new_empty(chain.num_links, 4, 4, 0)
    recorded = (torch.is_grad_enabled() and q.requires_grad) or in_function_transform(q)
    strategy = composition_strategy(chain, B)
    if strategy == "jumping":
        return _compose_by_jumping(chain, q)
    if recorded:
        return _compose_by_levels_functional(chain, local_transforms(chain, q, rows=4))
    rows = 3 if strategy == "levels-wide" else 4
    world = q.new_empty(chain.num_links, 4, 4, B)
    world[:, 3].zero_()
    world[:, 3, 3].fill_(1.0)
    chunk = _chunk_size(chain, B)
    for start in range(0, B, chunk):  # chunks whose working set stays in cache
        stop = min(B, start + chunk)
        _compose_by_levels(chain, local_transforms(chain, q[start:stop], rows), world[..., start:stop])
    return world


def composition_strategy(chain: Chain, batch_size: int) -> str:
    """Which composition serves a batch fastest (measured on a 2-core CPU; see BENCHMARKS.md).

    "jumping": pointer jumping with batched 4×4 matrix products: ceil(log2(depth)) rounds over
    all links, the fewest operations, for tiny batches where per-operation overhead is all;
    "levels": one round per tree level over that level's bodies, batch innermost, as broadcast
    products; "levels-wide": the same with three multiply-adds per level, which move fewer
    bytes and win once the batch is wide.
    """
    if batch_size <= max(1, JUMP_MAX_PRODUCTS // chain.num_links):
        return "jumping"
    return "levels-wide" if batch_size >= WIDE_BATCH else "levels"


def _chunk_size(chain: Chain, batch_size: int) -> int:
    """Configurations per chunk of the level-by-level composition: about CHUNK_BYTES of world
    transforms (float32), a power of two, at least WIDE_BATCH."""
    per_configuration = chain.num_links * 16 * 4
    chunk = max(WIDE_BATCH, 1 << (CHUNK_BYTES // per_configuration).bit_length() - 1)
    return min(chunk, batch_size)


def local_transforms(chain: Chain, q: Tensor, rows: int = 4) -> Tensor:
    """(B, J) -> (N, rows, 4, B): the first ``rows`` rows of each body's pose in its parent body."""
    N = chain.plan.num_bodies
    q_body = torch.addmm(chain.link_offset[:N].unsqueeze(1), chain.link_dofs[:N], q.mT)  # (N, B)
    features = torch.stack((q_body.cos(), q_body.sin(), q_body), dim=1)  # (N, 3, B)
    n = 4 * rows
    local = torch.baddbmm(chain.local_constant[:N, :n], chain.local_linear[:N, :n], features)
    return local.view(N, rows, 4, q.shape[0])


def _compose_by_levels(chain: Chain, local: Tensor, world: Tensor) -> None:
    """Level-by-level composition of (N, rows, 4, B) local transforms into ``world`` (L, 4, 4, B),
    whose bottom rows are already (0, 0, 0, 1).

    rows = 4: each level is one broadcast product summed over the inner index (the translation
    comes from the homogeneous row of the local transform); rows = 3: three multiply-adds and the
    parent translation. Views are taken once, so a level costs two slices and two operations.
    """
    N, rows = local.shape[0], local.shape[1]
    world_rows = world[:, :3]  # (L, 3, 4, B)
    levels = chain.plan.levels
    first = levels[0][1] if levels else N  # the root is the identity: its children's world = local
    world_rows[:first] = local[:first, :3]
    if rows == 4:
        parent_rows = world_rows.unsqueeze(3)  # (L, 3, 4, 1, B)
        local_rows = local.unsqueeze(1)  # (N, 1, 4, 4, B)
        for start, end, parents in levels[1:]:
            product = take(parent_rows, parents) * local_rows[start:end]  # (n, 3, 4, 4, B)
            torch.sum(product, dim=2, out=world_rows[start:end])
    else:
        parent_columns = world_rows.unsqueeze(3).transpose(2, 3)  # (L, 3, 1, 4, B): [.., k] = column k
        for start, end, parents in levels[1:]:
            above = take(parent_columns, parents)
            out, below = world_rows[start:end], local[start:end]
            torch.mul(above[..., 0, :], below[:, 0:1], out=out)
            out.addcmul_(above[..., 1, :], below[:, 1:2])
            out.addcmul_(above[..., 2, :], below[:, 2:3])
            out[:, :, 3] += above[:, :, 0, 3]
    if N < chain.num_links:
        torch.sum(_place_frames(chain, world), dim=2, out=world_rows[N:])


def _place_frames(chain: Chain, world: Tensor) -> Tensor:
    """(F, 3, 4, 4, B) products whose sum over dim 2 is rows 0..2 of each frame's world pose,
    ``T_world_anchor @ T_anchor_frame``."""
    N = chain.plan.num_bodies
    anchors = take(world, chain.plan.frame_anchors)[:, :3]  # (F, 3, 4, B)
    offset = chain.local_constant[N:].view(-1, 1, 4, 4, 1)  # (F, 1, 4, 4, 1)
    return anchors.unsqueeze(3) * offset


def _compose_by_levels_functional(chain: Chain, local: Tensor) -> Tensor:
    """:func:`_compose_by_levels` without writes into a buffer, for autograd and vmap:
    (N, 4, 4, B) local -> (L, 4, 4, B) world, one tensor per level concatenated at the end."""
    levels = chain.plan.levels
    pieces = [local[: levels[0][1], :3]] if levels else [local[:, :3]]
    if levels:
        level_rows, level_start = local[levels[0][0] : levels[0][1], :3], levels[0][0]
    for start, end, parents in levels[1:]:
        if isinstance(parents, slice):
            parents = slice(parents.start - level_start, parents.stop - level_start)
        else:
            parents = parents - level_start
        product = take(level_rows, parents).unsqueeze(3) * local[start:end].unsqueeze(1)
        level_rows, level_start = product.sum(dim=2), start
        pieces.append(level_rows)
    bodies = torch.cat(pieces, dim=0)  # (N, 3, 4, B)
    if chain.plan.num_bodies < chain.num_links:
        bottom = local[:1, 3:].expand(bodies.shape[0], 1, 4, bodies.shape[-1])
        pieces.append(_place_frames(chain, torch.cat((bodies, bottom), dim=1)).sum(dim=2))
    world_rows = torch.cat(pieces, dim=0)
    bottom = local[:1, 3:].expand(world_rows.shape[0], 1, 4, world_rows.shape[-1])
    return torch.cat((world_rows, bottom), dim=1)


def _compose_by_jumping(chain: Chain, q: Tensor) -> Tensor:
    """Pointer jumping with batched 4×4 matrix products on (L, B, 4, 4) stacks: after round k
    every link holds the product of the 2**(k+1) local transforms above it (the root is the
    identity and its own ancestor; frames hang from their anchors). Returns (L, 4, 4, B)."""
    L, B = chain.num_links, q.shape[0]
    q_link = torch.addmm(chain.link_offset.unsqueeze(1), chain.link_dofs, q.mT)  # (L, B)
    features = torch.stack((q_link.cos(), q_link.sin(), q_link), dim=2)  # (L, B, 3)
    world = torch.baddbmm(chain.local_constant.mT, features, chain.local_linear.mT)  # (L, B, 16)
    if B == 1:
        world = world.view(L, 4, 4)
        for ancestors in chain.plan.jump_ancestors:  # at least one round
            world = torch.bmm(world.index_select(0, ancestors), world)
        return world.unsqueeze(3)
    world = world.view(L, B, 4, 4)
    for ancestors in chain.plan.jump_ancestors:
        above = world.index_select(0, ancestors)
        world = torch.bmm(above.view(L * B, 4, 4), world.view(L * B, 4, 4)).view(L, B, 4, 4)
    return world.permute(0, 2, 3, 1)


def in_function_transform(t: Tensor) -> bool:
    """True under torch.compile tracing or when ``t`` is wrapped by a torch.func transform
    (vmap, grad, jacrev, ...): then only out-of-place operations and the setup_context form of
    the autograd Function may be used."""
    if torch.compiler.is_compiling():
        return True
    return torch._C._functorch.is_functorch_wrapped_tensor(t)


def check_joint_positions(chain: Chain, q: Tensor) -> Tensor:
    """Validate shape, dtype and device of ``q``; return it as (B, J). No host sync."""
    if not isinstance(q, Tensor):
        raise TypeError(f"q must be a torch.Tensor, not {type(q).__name__}")
    J = len(chain.joint_names)
    if q.dim() not in (1, 2) or q.shape[-1] != J:
        raise ValueError(
            f"q must have shape (B, {J}) or ({J},) for robot '{chain.name}' "
            f"(joints {', '.join(chain.joint_names)}), got {tuple(q.shape)}"
        )
    if q.dtype != chain.dtype:
        raise TypeError(f"q is {q.dtype} but the chain is {chain.dtype}; use chain.to(dtype=...)")
    if q.device != chain.device:
        raise ValueError(f"q is on {q.device} but the chain is on {chain.device}")
    return q.unsqueeze(0) if q.dim() == 1 else q


def _link_selection(chain: Chain, links) -> tuple[Tensor | None, bool]:
    """(index tensor or None for all links, whether a single link was named)."""
    if links is None:
        return None, False
    single = isinstance(links, (str, int))
    indices = [link_index(chain, link) for link in ([links] if single else links)]
    return torch.tensor(indices, dtype=torch.int64, device=chain.device), single


def link_index(chain: Chain, link: str | int) -> int:
    """Index of a link given by name or (possibly negative) index; ValueError if there is none."""
    if isinstance(link, str):
        return chain.link_index(link)
    if not isinstance(link, int) or not -chain.num_links <= link < chain.num_links:
        raise ValueError(f"link index {link!r} is out of range for {chain.num_links} links")
    return link % chain.num_links
