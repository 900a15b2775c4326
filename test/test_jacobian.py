"""Geometric Jacobians against Pinocchio, finite differences of FK, and hand-expanded mimics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import PinocchioReference, random_q, real_urdf
from test_fk_gradients import MIXED

from ros_torch_kin.kinematics import Chain, compute_jacobian, forward_kinematics, rotation_log
from ros_torch_kin.robots.generated import random_chain_urdf


def finite_difference_jacobian(chain, q, link, point, h=1e-6):
    """(6, J) by central differences of FK: position of the point and the rotation vector."""
    columns = []
    for j in range(chain.num_dofs):
        step = torch.zeros_like(q)
        step[j] = h
        T_plus = forward_kinematics(chain, q + step, links=link)
        T_minus = forward_kinematics(chain, q - step, links=link)
        p_plus = T_plus[:3, :3] @ point + T_plus[:3, 3]
        p_minus = T_minus[:3, :3] @ point + T_minus[:3, 3]
        angular = rotation_log(T_plus[:3, :3] @ T_minus[:3, :3].mT)
        columns.append(torch.cat(((p_plus - p_minus) / (2 * h), angular / (2 * h))))
    return torch.stack(columns, dim=1)


@pytest.mark.parametrize("seed", range(6))
def test_jacobian_matches_finite_differences_with_point_offset(seed):
    urdf = random_chain_urdf(seed, 9, branching=seed % 2 == 1, **MIXED)
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float64)
    q = random_q(chain, 3, seed)
    point = torch.tensor([0.05, -0.1, 0.2], dtype=torch.float64)
    for link in (chain.link_names[-1], chain.link_names[chain.num_links // 2]):
        J = compute_jacobian(chain, q, link, point=point)
        assert J.shape == (3, 6, chain.num_dofs)
        for b in range(3):
            torch.testing.assert_close(J[b], finite_difference_jacobian(chain, q[b], link, point), rtol=0, atol=1e-8)


@pytest.mark.parametrize("name", ["ur5", "tiago", "talos"])
def test_jacobian_matches_pinocchio_on_real_robots(name):
    urdf = real_urdf(name)
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float64)
    reference = PinocchioReference(urdf)
    q = random_q(chain, 4, 0)
    # links at the ends of the tree (every joint above them counts)
    leaves = [n for i, n in enumerate(chain.link_names) if i not in set(chain.parent_index.tolist())]
    for link in leaves[:: max(1, len(leaves) // 4)]:
        J = compute_jacobian(chain, q, link)
        for b in range(4):
            values = dict(zip(chain.joint_names, q[b].tolist()))
            J_ref, _ = reference.frame_jacobian(values, link)
            for j, joint in enumerate(chain.joint_names):
                column = J_ref[:, reference.velocity_index(joint)]
                for follower, (leader, multiplier, _) in reference.mimics.items():
                    if leader == joint and reference.model.existJointName(follower):
                        column = column + multiplier * J_ref[:, reference.velocity_index(follower)]
                np.testing.assert_allclose(J[b, :, j].numpy(), column, rtol=0, atol=1e-12)


def test_panda_finger_jacobian_follows_the_mimic_leader_like_pinocchio():
    pin = pytest.importorskip("pinocchio")
    urdf = real_urdf("panda")
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float64)
    model = pin.buildModelFromXML(urdf, mimic=True)  # Pinocchio's own mimic handling
    data = model.createData()
    q = random_q(chain, 1, 4)[0]
    J = compute_jacobian(chain, q, "panda_rightfinger")  # moved by the mimic finger joint
    pin.computeJointJacobians(model, data, q.numpy())
    pin.updateFramePlacements(model, data)
    frame = model.getFrameId("panda_rightfinger", pin.BODY)
    J_ref = pin.getFrameJacobian(model, data, frame, pin.LOCAL_WORLD_ALIGNED)
    assert J_ref.shape[1] == chain.num_dofs == 8
    np.testing.assert_allclose(J.numpy(), J_ref, rtol=0, atol=1e-12)


def test_jacobian_pose_and_default_arm(arm7):
    q = random_q(arm7, 5, 1)
    J, T = compute_jacobian(arm7, q, "tool0", return_pose=True)
    torch.testing.assert_close(T, forward_kinematics(arm7, q, links="tool0"))
    # joint_1 turns about world z, so its angular column is (0, 0, 1) whatever q
    torch.testing.assert_close(J[:, 3:, 0], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(5, 3))
    # the base link does not move: its Jacobian is zero
    assert compute_jacobian(arm7, q, "base_link").abs().max() == 0
    # a per-configuration point offset
    points = torch.randn(5, 3, dtype=torch.float64)
    Jp = compute_jacobian(arm7, q, "tool0", point=points)
    for b in range(5):
        torch.testing.assert_close(Jp[b], compute_jacobian(arm7, q[b], "tool0", point=points[b]))
    with pytest.raises(ValueError, match="point must have shape"):
        compute_jacobian(arm7, q, "tool0", point=torch.zeros(2, 3, dtype=torch.float64))


def test_jacobian_is_differentiable_through_the_analytical_backward(arm7):
    q = random_q(arm7, 3, 2).requires_grad_()
    J = compute_jacobian(arm7, q, "tool0")
    torch.testing.assert_close(J, jacobian_from_autograd_fk(arm7, q), rtol=0, atol=1e-14)
    (g,) = torch.autograd.grad(J.pow(2).sum(), q)
    q2 = q.detach().requires_grad_()
    (g_ref,) = torch.autograd.grad(jacobian_from_autograd_fk(arm7, q2).pow(2).sum(), q2)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-12)


def jacobian_from_autograd_fk(chain, q):
    """Jacobian of tool0 built from autograd-recorded FK (analytical_grad=False)."""
    T = forward_kinematics(chain, q, analytical_grad=False)  # (B, L, 4, 4)
    p = T[:, chain.link_index("tool0"), :3, 3]
    columns = []
    for name in chain.joint_names:
        link = chain.link_joint_names.index(name)  # the joint's child link
        axis_local = chain.joint_axis[chain.moving_joint_names.index(name)]
        z = T[:, link, :3, :3] @ axis_local
        o = T[:, link, :3, 3]
        columns.append(torch.cat((torch.linalg.cross(z, p - o), z), dim=-1))
    return torch.stack(columns, dim=-1)


@pytest.mark.parametrize("seed", range(4))
def test_wrench_vector_jacobian_product_is_jacobian_transpose_times_wrench(seed):
    from ros_torch_kin.kinematics import wrench_vector_jacobian_product

    chain = Chain.from_urdf(random_chain_urdf(seed, 8, branching=True, **MIXED), device="cpu", dtype=torch.float64)
    q = random_q(chain, 6, seed)
    links = [chain.num_links - 1, chain.num_links // 2, 0]
    generator = torch.Generator().manual_seed(seed)
    forces = torch.randn(6, 3, 3, generator=generator, dtype=torch.float64)
    torques = torch.randn(6, 3, 3, generator=generator, dtype=torch.float64)
    result = wrench_vector_jacobian_product(chain, q, torch.tensor(links), forces, torques)
    expected = sum(
        (compute_jacobian(chain, q, link).mT @ torch.cat((forces[:, k], torques[:, k]), -1).unsqueeze(-1)).squeeze(-1)
        for k, link in enumerate(links)
    )
    torch.testing.assert_close(result, expected, rtol=0, atol=1e-12)
