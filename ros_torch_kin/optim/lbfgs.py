"""Batched L-BFGS: search directions for N independent problems at once.

Each row keeps its own curvature pairs (s, y); a pair is stored only where sᵀy > 0, so every
row's implicit inverse Hessian stays positive definite. Rows without history take a steepest-
descent step scaled so that no variable moves more than ``initial_step``.
"""

from __future__ import annotations

import torch
from torch import Tensor


class BatchedLBFGS:
    def __init__(self, rows: int, size: int, memory: int, initial_step: float, like: Tensor):
        self.memory = memory
        self.initial_step = initial_step
        self.s = like.new_zeros(memory, rows, size)
        self.y = like.new_zeros(memory, rows, size)
        self.rho = like.new_zeros(memory, rows)  # 1 / sᵀy where valid, else 0
        self.valid = torch.zeros(memory, rows, dtype=torch.bool, device=like.device)
        self.newest = -1

    def direction(self, gradient: Tensor) -> Tensor:
        """(N, n) gradient -> (N, n) descent direction (two-loop recursion, per row)."""
        q = gradient.clone()
        order = [(self.newest - k) % self.memory for k in range(self.memory)]  # newest first
        alphas = {}
        for i in order:
            alpha = self.rho[i] * (self.s[i] * q).sum(-1)  # zero where invalid
            q -= alpha.unsqueeze(-1) * self.y[i]
            alphas[i] = alpha
        has_history = self.valid.any(0)
        newest = self.newest % self.memory
        sy = (self.s[newest] * self.y[newest]).sum(-1)
        yy = (self.y[newest] * self.y[newest]).sum(-1)
        gamma = torch.where(self.valid[newest], sy / yy.clamp(min=1e-30), torch.zeros_like(sy))
        steepest = self.initial_step / gradient.abs().amax(-1).clamp(min=1e-30)
        gamma = torch.where(has_history & (gamma > 0), gamma, steepest)
        r = gamma.unsqueeze(-1) * q
        for i in reversed(order):
            beta = self.rho[i] * (self.y[i] * r).sum(-1)
            r += self.s[i] * (alphas[i] - beta).unsqueeze(-1)
        return -r

    def update(self, s: Tensor, y: Tensor, rows: Tensor) -> None:
        """Store the pair (s, y) (N, n) for the rows where ``rows`` (N,) is true and sᵀy > 0."""
        self.newest = (self.newest + 1) % self.memory
        sy = (s * y).sum(-1)
        accept = rows & (sy > 1e-10 * s.norm(dim=-1) * y.norm(dim=-1))
        self.s[self.newest] = torch.where(accept.unsqueeze(-1), s, torch.zeros_like(s))
        self.y[self.newest] = torch.where(accept.unsqueeze(-1), y, torch.zeros_like(y))
        self.rho[self.newest] = torch.where(accept, 1.0 / sy.where(accept, torch.ones_like(sy)), torch.zeros_like(sy))
        self.valid[self.newest] = accept

    def reset(self, rows: Tensor) -> None:
        """Forget the history of the rows where ``rows`` (N,) is true."""
        keep = ~rows
        self.valid &= keep
        self.rho *= keep
