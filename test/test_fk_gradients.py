"""The analytical FK backward against autograd, finite differences and hand-expanded mimics;
double backward; torch.func and torch.compile."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import random_q, real_urdf

from ros_torch_kin.kinematics import Chain, forward_kinematics
from ros_torch_kin.kinematics.fk import WIDE_BATCH
from ros_torch_kin.robots.generated import random_chain_urdf

MIXED = dict(prismatic_fraction=0.3, fixed_fraction=0.2, mimic_fraction=0.3, continuous_fraction=0.2)


def random_tree(seed: int, dofs: int = 12) -> Chain:
    urdf = random_chain_urdf(seed, dofs, branching=seed % 2 == 1, **MIXED)
    return Chain.from_urdf(urdf, device="cpu", dtype=torch.float64)


def weights(chain: Chain, batch: int, seed: int, links: int | None = None) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1000 + seed)
    return torch.randn(batch, links or chain.num_links, 4, 4, generator=generator, dtype=torch.float64)


def grad_of(chain, q, w, links=None, analytical=True, create_graph=False):
    q = q.detach().requires_grad_()
    loss = (forward_kinematics(chain, q, links=links, analytical_grad=analytical) * w).sum()
    (g,) = torch.autograd.grad(loss, q, create_graph=create_graph)
    return q, g


@pytest.mark.parametrize("seed", range(20))
def test_analytical_gradient_equals_autograd(seed):
    chain = random_tree(seed)
    batch = [1, 5, 300, WIDE_BATCH][seed % 4]  # every composition strategy
    q = random_q(chain, batch, seed)
    w = weights(chain, batch, seed)
    _, fast = grad_of(chain, q, w)
    _, reference = grad_of(chain, q, w, analytical=False)
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-12)


@pytest.mark.parametrize("layout", ["batch-major", "link-major"])
def test_gradient_in_either_memory_layout_equals_autograd(layout):
    """A (B, L, 4, 4)-contiguous gradient over a batch that is not a whole number of transpose
    chunks, and one already in the link-major layout (used as a view, not copied)."""
    chain = random_tree(3)
    batch = 1001
    q = random_q(chain, batch, 3)
    w = weights(chain, batch, 3)
    if layout == "link-major":
        w = w.permute(1, 2, 3, 0).contiguous().permute(3, 0, 1, 2)
    _, fast = grad_of(chain, q, w)
    _, reference = grad_of(chain, q, w, analytical=False)
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_gradient_through_selected_links_equals_autograd(seed):
    chain = random_tree(seed)
    q = random_q(chain, 64, seed)
    links = [chain.link_names[-1], chain.link_names[len(chain.link_names) // 2], chain.link_names[-1]]
    w = weights(chain, 64, seed, links=3)
    _, fast = grad_of(chain, q, w, links=links)
    _, reference = grad_of(chain, q, w, links=links, analytical=False)
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_analytical_gradient_matches_central_differences(seed):
    chain = random_tree(seed)
    q = random_q(chain, 3, seed)
    w = weights(chain, 3, seed)

    def loss(qq):  # summed over the batch: row b's gradient depends on row b only
        return (forward_kinematics(chain, qq) * w).sum()

    _, g = grad_of(chain, q, w)
    h = 1e-6
    numeric = torch.zeros_like(q)
    for j in range(chain.num_dofs):
        step = torch.zeros_like(q)
        step[:, j] = h
        for b in range(3):
            row = torch.zeros_like(q)
            row[b] = step[b]
            numeric[b, j] = (loss(q + row) - loss(q - row)) / (2 * h)
    relative = (g - numeric).abs().max() / numeric.abs().max()
    assert relative < 1e-8, relative


def test_gradient_on_real_humanoid_with_mimic_grippers_equals_autograd():
    chain = Chain.from_urdf(real_urdf("talos"), device="cpu", dtype=torch.float64)
    assert len(chain.moving_joint_names) > chain.num_dofs  # it has mimic joints
    q = random_q(chain, 50, 0)
    w = weights(chain, 50, 0)
    torch.testing.assert_close(grad_of(chain, q, w)[1], grad_of(chain, q, w, analytical=False)[1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_double_backward_equals_autograd(seed):
    chain = random_tree(seed, dofs=8)
    q = random_q(chain, 7, seed)
    w = weights(chain, 7, seed, links=2)
    links = [chain.link_names[-1], chain.link_names[-2]]
    v = torch.randn(q.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    results = []
    for analytical in (True, False):
        qq, g = grad_of(chain, q, w, links=links, analytical=analytical, create_graph=True)
        (hvp,) = torch.autograd.grad((g * v).sum(), qq)  # Hessian-vector product
        results.append(hvp)
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=1e-11)


def test_gradgradcheck_of_the_analytical_path():
    chain = random_tree(3, dofs=5)
    q = random_q(chain, 2, 3).requires_grad_()
    w = weights(chain, 2, 3)
    assert torch.autograd.gradgradcheck(lambda qq: (forward_kinematics(chain, qq) * w).sum(), (q,))


def test_backward_is_the_analytical_function_not_graph_replay():
    chain = random_tree(0)
    q = random_q(chain, 4, 0).requires_grad_()
    T = forward_kinematics(chain, q)
    assert "ForwardKinematicsFunction" in type(T.grad_fn).__name__
    T_autograd = forward_kinematics(chain, q, analytical_grad=False)
    assert "ForwardKinematicsFunction" not in type(T_autograd.grad_fn).__name__


def expand_mimics(urdf: str) -> str:
    """The same robot with every <mimic> removed: followers become independent joints."""
    return re.sub(r"\s*<mimic [^>]*/>", "", urdf)


@pytest.mark.parametrize("seed", range(5))
def test_mimic_joints_equal_the_robot_with_mimics_expanded_by_hand(seed):
    urdf = random_chain_urdf(seed, 8, branching=seed % 2 == 0, mimic_fraction=0.5, prismatic_fraction=0.3)
    relations = re.findall(r'<joint name="(\w+)".*?(?:<mimic joint="(\w+)" multiplier="([-\d.]+)" offset="([-\d.]+)"/>|</joint>)', urdf, re.S)
    mimics = {name: (leader, float(m), float(o)) for name, leader, m, o in relations if leader}
    assert mimics, "the generated robot should have mimic joints"
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float64)
    expanded = Chain.from_urdf(expand_mimics(urdf), device="cpu", dtype=torch.float64)
    q = random_q(chain, 20, seed)
    q_expanded = torch.zeros(20, expanded.num_dofs, dtype=torch.float64)
    for j, name in enumerate(expanded.joint_names):
        if name in mimics:
            leader, multiplier, offset = mimics[name]
            q_expanded[:, j] = multiplier * q[:, chain.joint_index(leader)] + offset
        else:
            q_expanded[:, j] = q[:, chain.joint_index(name)]
    torch.testing.assert_close(forward_kinematics(chain, q), forward_kinematics(expanded, q_expanded), rtol=0, atol=1e-13)

    # chain rule by hand: ∂ℓ/∂q_leader = ∂ℓ/∂q_leader(expanded) + Σ multiplier · ∂ℓ/∂q_follower(expanded)
    w = weights(chain, 20, seed)
    _, g = grad_of(chain, q, w)
    _, g_expanded = grad_of(expanded, q_expanded, w)
    expected = torch.zeros_like(g)
    for j, name in enumerate(expanded.joint_names):
        if name in mimics:
            leader, multiplier, _ = mimics[name]
            expected[:, chain.joint_index(leader)] += multiplier * g_expanded[:, j]
        else:
            expected[:, chain.joint_index(name)] += g_expanded[:, j]
    torch.testing.assert_close(g, expected, rtol=0, atol=1e-12)


def test_vmap_grad_equals_batched_gradient():
    from torch.func import grad, vmap

    chain = random_tree(2, dofs=6)
    q = random_q(chain, 40, 2)
    tip = chain.link_names[-1]

    def loss(qq):
        return (forward_kinematics(chain, qq, links=tip)[..., :3, 3] ** 2).sum()

    per_sample = vmap(grad(loss))(q)
    qq = q.clone().requires_grad_()
    (batched,) = torch.autograd.grad(loss(qq), qq)
    torch.testing.assert_close(per_sample, batched, rtol=0, atol=1e-12)


def test_torch_compile_fullgraph_forward_and_backward():
    chain = random_tree(1, dofs=4)
    q = random_q(chain, 33, 1)
    tip = chain.link_names[-1]

    def loss(qq):
        return (forward_kinematics(chain, qq, links=[tip])[..., :3, 3] ** 2).sum()

    compiled = torch.compile(loss, fullgraph=True)
    q1, q2 = q.clone().requires_grad_(), q.clone().requires_grad_()
    compiled(q1).backward()
    loss(q2).backward()
    torch.testing.assert_close(q1.grad, q2.grad, rtol=0, atol=1e-12)


def test_gradient_with_respect_to_chain_constants_needs_autograd_mode():
    chain = random_tree(0, dofs=4)
    offsets = chain.local_constant.clone().requires_grad_()
    import dataclasses

    trainable = dataclasses.replace(chain, local_constant=offsets)
    q = random_q(chain, 3, 0)
    forward_kinematics(trainable, q, analytical_grad=False).sum().backward()
    assert offsets.grad is not None and offsets.grad.abs().sum() > 0
