"""The analytical backward of forward kinematics (a custom autograd Function).

For a loss ℓ of the world transforms, let ``G_l = ∂ℓ/∂T_world_l`` (rows 0..2 of a 4×4). Turning
joint j (world axis z_j through origin o_j) by dθ moves every link l below it by
``dR_l = [z_j]ₓ R_l dθ`` and ``dt_l = z_j × (t_l − o_j) dθ``, so

    ∂ℓ/∂θ_j = z_j · Σ_{l below j} (m_l − o_j × f_l),   m_l = Σ_k T_l[:, k] × G_l[:, k],  f_l = G_l[:, 3]

(``m_l`` = τ_l + t_l × f_l, with τ_l = Σ_k R_l[:, k] × G_l[:, k]). A prismatic joint gives
``z_j · Σ f_l``. The subtree sums are one matrix product with the joint subtree mask; mimic joints
fold onto their leader through ``joint_to_dof``.

Only the links the caller asked for enter the backward (their gradients are (B, K, 4, 4), not
(B, L, 4, 4)), and the full transforms are a second output of the Function: saved as an output,
they carry this Function's graph, so double backward (``create_graph=True``: Hessian-vector
products, Gauss-Newton) is exact and itself runs through this analytical backward.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .chain import Chain, take
from .fk import in_function_transform, world_transforms


def _forward(q: Tensor, chain: Chain, selection: Tensor | None):
    world = world_transforms(chain, q)  # (L, 4, 4, B)
    if selection is None:
        return world.permute(3, 0, 1, 2)
    return world.index_select(0, selection).permute(3, 0, 1, 2), world.permute(3, 0, 1, 2)


def _save(ctx, chain: Chain, selection: Tensor | None, output) -> None:
    ctx.chain = chain
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(*((output,) if selection is None else (output[1], selection)))


def _backward(chain: Chain, saved, grads):
    if len(saved) == 2:
        T_all, selection = saved
        grad_selected, grad_all = grads
    else:
        (T_all,) = saved
        selection, grad_selected, (grad_all,) = None, None, grads
    return fk_vector_jacobian_product(chain, T_all, grad_all, selection, grad_selected), None, None


class ForwardKinematicsFunction(torch.autograd.Function):
    """Forward kinematics with the analytical backward.

    Inputs: q (B, J); chain; selection (K,) int64 link indices or None.
    Outputs: with a selection, (T_selected (B, K, 4, 4), T_all (B, L, 4, 4)); else T_all.
    The transforms are views of link-major (L, 4, 4, B) storage.
    Use :func:`apply_forward_kinematics`, which picks the variant that ``torch.func`` needs.
    """

    @staticmethod
    def forward(ctx, q: Tensor, chain: Chain, selection: Tensor | None):
        output = _forward(q, chain, selection)
        _save(ctx, chain, selection, output)
        return output

    @staticmethod
    def backward(ctx, *grads):
        return _backward(ctx.chain, ctx.saved_tensors, grads)


class VmappableForwardKinematicsFunction(torch.autograd.Function):
    """The same Function in the form ``torch.func`` transforms (vmap, grad, jacrev) and
    torch.compile handle best: a ctx-free forward, ``setup_context`` and a generated vmap rule.
    Slower to call in eager mode (~45 µs on a CPU), so it is used only inside those."""

    generate_vmap_rule = True

    @staticmethod
    def forward(q: Tensor, chain: Chain, selection: Tensor | None):
        return _forward(q, chain, selection)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, chain, selection = inputs
        _save(ctx, chain, selection, output)

    @staticmethod
    def backward(ctx, *grads):
        return _backward(ctx.chain, ctx.saved_tensors, grads)


def apply_forward_kinematics(q: Tensor, chain: Chain, selection: Tensor | None):
    """Forward kinematics with the analytical backward (see :class:`ForwardKinematicsFunction`)."""
    if in_function_transform(q):
        return VmappableForwardKinematicsFunction.apply(q, chain, selection)
    return ForwardKinematicsFunction.apply(q, chain, selection)


def fk_vector_jacobian_product(
    chain: Chain,
    T_all: Tensor,
    grad_all: Tensor | None,
    selection: Tensor | None = None,
    grad_selected: Tensor | None = None,
) -> Tensor | None:
    """``∂ℓ/∂q`` (B, J) from the world transforms ``T_all`` (B, L, 4, 4) and the gradient of ℓ
    with respect to all of them (``grad_all``, (B, L, 4, 4)) and/or to the links in
    ``selection`` (``grad_selected``, (B, K, 4, 4)). Rows 3 of the gradients are ignored."""
    world = T_all.permute(1, 2, 3, 0)  # (L, 4, 4, B)
    below = None  # (M, 6 B): force and moment summed over each joint's subtree
    if grad_selected is not None:
        below = _subtree_sums(chain, link_wrenches(world.index_select(0, selection), grad_selected), selection)
    if grad_all is not None:
        below_all = _subtree_sums(chain, link_wrenches(world, grad_all), None)
        below = below_all if below is None else below + below_all
    return None if below is None else _joint_gradient(chain, world, below)


def wrench_vector_jacobian_product(
    chain: Chain, q: Tensor, links: Tensor, forces: Tensor, torques: Tensor
) -> Tensor:
    """``Σ_k J_kᵀ (f_k, τ_k)``: the gradient with respect to q of a scalar whose gradient with
    respect to each link's motion is given as a force-like part ``f = ∂L/∂p`` (link origin,
    world frame) and a torque-like part ``τ = ∂L/∂θ`` (small world-frame rotation vector).

    q: (B, J); links: (K,) int64 link indices; forces, torques: (B, K, 3). Returns (B, J).
    """
    world = world_transforms(chain, q)  # (L, 4, 4, B)
    origin = world.index_select(0, links)[:, :3, 3]  # (K, 3, B)
    f, tau = forces.permute(1, 2, 0), torques.permute(1, 2, 0)  # (K, 3, B)
    return world_wrench_vector_jacobian_product(chain, world, links, f, tau + cross(origin, f.contiguous()))


def world_wrench_vector_jacobian_product(
    chain: Chain, world: Tensor, links: Tensor, forces: Tensor, moments: Tensor
) -> Tensor:
    """:func:`wrench_vector_jacobian_product` on world transforms already computed, in the
    link-major layout: world (L, 4, 4, B) (from :func:`world_transforms`); links (K,) int64, a
    link may repeat (e.g. one entry per point on it); forces ``f = ∂L/∂p`` and moments
    (K, 3, B), world frame, the moment taken about the world origin: ``m = τ + p_link × f``, so
    for a gradient g at a point c fixed to the link, f = g and m = c × g. Returns (B, J)."""
    wrench = torch.cat((forces, moments), dim=1)  # (K, 6, B)
    return _joint_gradient(chain, world, _subtree_sums(chain, wrench, links))


def _subtree_sums(chain: Chain, wrench: Tensor, selection: Tensor | None) -> Tensor:
    """(K, 6, B) link wrenches -> (M, 6 B): their sums over each movable joint's subtree."""
    K, _, B = wrench.shape
    mask = chain.joint_subtree_mask if selection is None else chain.joint_subtree_mask.index_select(1, selection)
    return mask @ wrench.reshape(K, 6 * B)


def _joint_gradient(chain: Chain, world: Tensor, below: Tensor) -> Tensor:
    """(M, 6 B) subtree wrenches -> (B, J): each joint's twist dotted with its wrench, folded onto
    the DOFs (mimic multipliers)."""
    B = world.shape[-1]
    below = below.view(below.shape[0], 6, B)
    axis, origin = joint_axes_in_world(chain, world)  # (M, 3, B) each
    revolute, prismatic = chain.joint_is_revolute, chain.joint_is_prismatic  # (M, 1, 1)
    # ∂ℓ/∂θ = twist · (F, M): revolute twist (o × z, z) gives (o × z)·F + z·M = z·(M − o × F);
    # prismatic twist (z, 0) gives z·F
    twist = torch.cat((revolute * cross(origin, axis) + prismatic * axis, revolute * axis), dim=1)
    grad_joint = (twist * below).sum(1)  # (M, B)
    return (chain.joint_to_dof @ grad_joint).mT  # (B, J)


def link_wrenches(world: Tensor, grad_T: Tensor) -> Tensor:
    """Link-major transforms (K, 4, 4, B) and ∂ℓ/∂T (B, K, 4, 4) -> (K, 6, B): the force-like
    ``f = G[:3, 3]`` and the moment-like ``m = Σ_k T[:3, k] × G[:3, k]`` of each link."""
    G = link_major_rows(grad_T)  # (K, 3, 4, B), batch innermost
    moment = cross_summed(world[:, :3], G)  # (K, 3, B)
    return torch.cat((G[:, :, 3], moment), dim=1)


#: Bytes of (B, K, 4, 4) gradient transposed per chunk by :func:`link_major_rows` (the chunk's
#: source stays in cache while it is read column by column).
TRANSPOSE_CHUNK_BYTES = 512 << 10


def link_major_rows(grad_T: Tensor) -> Tensor:
    """(B, K, 4, 4) -> rows 0..2 in the link-major layout (K, 3, 4, B), batch innermost.

    A gradient already in that layout (e.g. computed from the link-major transforms) is used as
    the view it is. A (B, K, 4, 4)-contiguous one is transposed a few hundred configurations at
    a time: one strided copy over a large batch reads the source with a stride of K·16 floats
    and runs out of cache (~6× slower for Talos at B = 4096)."""
    G = grad_T.permute(1, 2, 3, 0)[:, :3]
    if G.stride(-1) == 1:
        return G
    B, K = grad_T.shape[0], grad_T.shape[1]
    per_configuration = max(1, K * 16 * grad_T.element_size())
    chunk = max(16, 1 << max(0, (TRANSPOSE_CHUNK_BYTES // per_configuration).bit_length() - 1))
    if B <= chunk or torch.is_grad_enabled() or in_function_transform(grad_T):
        return G.contiguous()
    out = G.new_empty(G.shape)
    for start in range(0, B, chunk):
        out[..., start : start + chunk].copy_(G[..., start : start + chunk])
    return out


def joint_axes_in_world(chain: Chain, world: Tensor) -> tuple[Tensor, Tensor]:
    """World axis z = R a and origin o = t of every movable joint, (M, 3, B) each, from
    link-major transforms (L, 4, 4, B). (A joint's frame is its child link's frame, and its
    motion leaves its own axis in place.)"""
    T_joint = take(world, chain.plan.joint_links)[:, :3]  # (M, 3, 4, B)
    axis = (T_joint[:, :, :3] * chain.joint_axis.view(-1, 1, 3, 1)).sum(2)
    return axis, T_joint[:, :, 3]


def cross(a: Tensor, b: Tensor) -> Tensor:
    """Cross product along dim 1 (size 3) of equally shaped (n, 3, ...) tensors."""
    return cross_summed(a.unsqueeze(2), b.unsqueeze(2))


def cross_summed(a: Tensor, b: Tensor) -> Tensor:
    """Σ_k a[:, :, k] × b[:, :, k] for (n, 3, K, ...) tensors -> (n, 3, ...).

    As ε_ijk (Σ a_j b_k): one outer product summed over k, then one product with the constant
    3 × 9 Levi-Civita matrix: three dispatches at any size and on any device (torch.linalg.cross
    costs ~5 ns per element on a CPU and needs a sum on top).
    """
    outer = (a.unsqueeze(2) * b.unsqueeze(1)).sum(3)  # (n, 3, 3, ...): Σ_k a_j b_k
    n, rest = outer.shape[0], outer.shape[3:]
    return (_levi_civita(outer) @ outer.reshape(n, 9, math.prod(rest))).view(n, 3, *rest)


_LEVI_CIVITA: dict = {}


def _levi_civita(like: Tensor) -> Tensor:
    """(3, 9): row i holds ε_ijk at column 3 j + k, on ``like``'s device and dtype (made once)."""
    key = (like.device, like.dtype)
    matrix = _LEVI_CIVITA.get(key)
    if matrix is None:
        matrix = torch.zeros(3, 9, dtype=like.dtype)
        for i, j, k, sign in ((0, 1, 2, 1), (0, 2, 1, -1), (1, 2, 0, 1), (1, 0, 2, -1), (2, 0, 1, 1), (2, 1, 0, -1)):
            matrix[i, 3 * j + k] = sign
        matrix = _LEVI_CIVITA.setdefault(key, matrix.to(like.device))
    return matrix
