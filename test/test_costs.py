"""Cost terms: values by hand and gradients against autograd through plain FK."""

from __future__ import annotations

import math

import torch
from conftest import random_q

from ros_torch_kin.kinematics import forward_kinematics
from ros_torch_kin.optim import pose_target_cost


def test_pose_target_cost_by_hand():
    T = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1, 1)  # (B=2, K=1, 4, 4)
    target = torch.eye(4, dtype=torch.float64)
    target[:3, 3] = torch.tensor([0.3, 0.0, 0.4], dtype=torch.float64)  # 0.5 m away
    c, s = math.cos(0.2), math.sin(0.2)
    target[:2, :2] = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)  # 0.2 rad about z
    cost = pose_target_cost(T, target, position_weight=2.0, orientation_weight=3.0)
    torch.testing.assert_close(cost, torch.full((2,), 2.0 * 0.25 + 3.0 * 0.04, dtype=torch.float64))


def test_pose_target_cost_gradient_through_analytical_fk(arm7):
    q = random_q(arm7, 16, 0)
    target = forward_kinematics(arm7, random_q(arm7, 16, 1), links=["tool0", "link_4"])
    grads = []
    for analytical in (True, False):
        qq = q.clone().requires_grad_()
        T = forward_kinematics(arm7, qq, links=["tool0", "link_4"], analytical_grad=analytical)
        cost = pose_target_cost(T, target, torch.tensor([1.0, 0.5], dtype=torch.float64), 0.3)
        (g,) = torch.autograd.grad(cost.sum(), qq)
        grads.append(g)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-12)
