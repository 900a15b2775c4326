"""Forward kinematics against independent references: Pinocchio on URDFs we did not write, on
seeded random trees with skewed axes, and a pose derived by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import REAL_ROBOTS, PinocchioReference, random_q, real_urdf

from ros_torch_kin.kinematics import Chain, forward_kinematics
from ros_torch_kin.kinematics.fk import JUMP_MAX_PRODUCTS, WIDE_BATCH, composition_strategy
from ros_torch_kin.robots.generated import random_chain_urdf


def batch_sizes_covering_every_strategy(chain: Chain) -> list[int]:
    sizes = [1, 2, max(1, JUMP_MAX_PRODUCTS // chain.num_links), 97, WIDE_BATCH]
    strategies = {composition_strategy(chain, b) for b in sizes}
    assert strategies == {"jumping", "levels", "levels-wide"}, strategies
    return sizes


def assert_matches_pinocchio(urdf: str, chain: Chain, q: torch.Tensor, rows, atol=1e-12):
    reference = PinocchioReference(urdf)
    T = forward_kinematics(chain, q)
    assert T.shape == (q.shape[0], chain.num_links, 4, 4)
    for b in rows:
        values = dict(zip(chain.joint_names, q[b].tolist()))
        expected = reference.link_poses(values, chain.link_names)
        np.testing.assert_allclose(T[b].cpu().numpy(), expected, rtol=0, atol=atol)


@pytest.mark.parametrize("name", sorted(REAL_ROBOTS))
def test_every_link_of_real_robots_matches_pinocchio(name):
    urdf = real_urdf(name)
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float64)
    for batch in batch_sizes_covering_every_strategy(chain):
        q = random_q(chain, batch, seed=batch)
        assert_matches_pinocchio(urdf, chain, q, rows=sorted({0, batch // 2, batch - 1}))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("branching", [False, True])
def test_random_trees_with_skewed_axes_match_pinocchio(seed, branching):
    urdf = random_chain_urdf(
        seed, dofs=9, branching=branching, prismatic_fraction=0.3, fixed_fraction=0.2,
        mimic_fraction=0.25, continuous_fraction=0.2,
    )
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float64)
    for batch in batch_sizes_covering_every_strategy(chain):
        q = random_q(chain, batch, seed=seed)
        assert_matches_pinocchio(urdf, chain, q, rows=[0, batch - 1])


def test_generated_robots_exercise_what_they_claim():
    kinds = set()
    for seed in range(6):
        for branching in (False, True):
            chain = Chain.from_urdf(
                random_chain_urdf(seed, 9, branching, 0.3, 0.2, 0.25, 0.2), device="cpu"
            )
            kinds.update(chain.joint_types)
            kinds.add("mimic" if len(chain.moving_joint_names) > chain.num_dofs else "")
            kinds.add("fixed" if len(chain.moving_joint_names) < chain.num_links - 1 else "")
            kinds.add("branching" if (chain.parent_index[1:].bincount() > 1).any() else "")
    assert {"revolute", "prismatic", "continuous", "mimic", "fixed", "branching"} <= kinds


def test_default_arm_by_hand(arm7):
    # q = 0: straight up; tool0 at 0.1575 + 0.2025 + 0.2045 + 0.2155 + 0.1845 + 0.2155 + 0.081
    # + 0.045 + 0.1 = 1.406 m
    T = forward_kinematics(arm7, torch.zeros(7, dtype=torch.float64), links="tool0")
    torch.testing.assert_close(T, torch.tensor(
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1.406], [0, 0, 0, 1]], dtype=torch.float64))
    # joint_2 (about +y, 0.36 m up) at +90°: the rest of the arm (1.046 m) lies along +x and the
    # tool frame is Ry(90°)
    q = torch.zeros(7, dtype=torch.float64)
    q[1] = math.pi / 2
    T = forward_kinematics(arm7, q, links="tool0")
    expected = torch.tensor([[0, 0, 1, 1.046], [0, 1, 0, 0], [-1, 0, 0, 0.36], [0, 0, 0, 1]], dtype=torch.float64)
    torch.testing.assert_close(T, expected)


def test_batched_equals_one_by_one_and_link_selection(arm7):
    q = random_q(arm7, 300, seed=3)
    batched = forward_kinematics(arm7, q)
    for b in (0, 150, 299):
        torch.testing.assert_close(forward_kinematics(arm7, q[b]), batched[b], rtol=0, atol=1e-14)
    picked = forward_kinematics(arm7, q, links=["tool0", "link_3", 0])
    torch.testing.assert_close(picked, batched[:, [9, 3, 0]], rtol=0, atol=0)
    single = forward_kinematics(arm7, q, links="tool0")
    assert single.shape == (300, 4, 4)


def test_rotations_stay_orthonormal_in_float32():
    chain = Chain.from_urdf(random_chain_urdf(7, 30), device="cpu")  # deep, skewed, float32
    assert chain.dtype == torch.float32
    T = forward_kinematics(chain, random_q(chain, 4096, seed=1))
    R = T[..., :3, :3].double()
    identity = torch.eye(3, dtype=torch.float64).expand_as(R)
    torch.testing.assert_close(R @ R.mT, identity, rtol=0, atol=2e-5)
    torch.testing.assert_close(T[..., 3, :], torch.tensor([0.0, 0, 0, 1]).expand(4096, 31, 4))


def test_float32_is_the_float64_result_rounded():
    urdf = random_chain_urdf(8, 12, branching=True)
    chain64 = Chain.from_urdf(urdf, device="cpu", dtype=torch.float64)
    chain32 = chain64.to(dtype=torch.float32)
    q = random_q(chain64, 500, seed=2)
    torch.testing.assert_close(
        forward_kinematics(chain32, q.float()).double(), forward_kinematics(chain64, q), rtol=0, atol=5e-6
    )


def test_empty_batch_and_bad_inputs(arm7):
    assert forward_kinematics(arm7, torch.zeros(0, 7, dtype=torch.float64)).shape == (0, 10, 4, 4)
    with pytest.raises(ValueError, match=r"shape \(B, 7\) or \(7,\).*got \(3, 6\)"):
        forward_kinematics(arm7, torch.zeros(3, 6, dtype=torch.float64))
    with pytest.raises(TypeError, match="q is torch.float32 but the chain is torch.float64"):
        forward_kinematics(arm7, torch.zeros(7))
    with pytest.raises(ValueError, match="unknown link 'hand'"):
        forward_kinematics(arm7, torch.zeros(7, dtype=torch.float64), links="hand")
    with pytest.raises(ValueError, match="link index 10 is out of range"):
        forward_kinematics(arm7, torch.zeros(7, dtype=torch.float64), links=10)
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        forward_kinematics(arm7, [0.0] * 7)


def test_large_batches_are_composed_in_chunks_with_the_same_result():
    from ros_torch_kin.kinematics.fk import _chunk_size

    chain = Chain.from_urdf(real_urdf("talos"), device="cpu", dtype=torch.float64)
    chunk = _chunk_size(chain, 10**9)
    batch = 2 * chunk + 37  # three chunks, the last one partial
    q = random_q(chain, batch, seed=9)
    fast = forward_kinematics(chain, q)
    recorded = forward_kinematics(chain, q.clone().requires_grad_(), analytical_grad=False).detach()
    torch.testing.assert_close(fast, recorded, rtol=0, atol=1e-13)
    assert_matches_pinocchio(real_urdf("talos"), chain, q, rows=[0, chunk, batch - 1])
