"""Where a robot's spheres are for a batch of configurations: their centres in the world frame."""

from __future__ import annotations

import torch
from torch import Tensor

from .robot_spheres import RobotSpheres


def world_sphere_centers(world: Tensor, spheres: RobotSpheres) -> Tensor:
    """Link-major world transforms (L, 4, 4, B) (as from ``world_transforms``) -> (S, 3, B) sphere
    centres in the world (root link) frame, m: ``R_link c + t_link`` for each sphere."""
    T = world.index_select(0, spheres.sphere_links)  # (S, 4, 4, B)
    c = spheres.centers.view(-1, 3, 1, 1).unbind(1)  # three (S, 1, 1)
    centers = torch.addcmul(T[:, :3, 3], T[:, :3, 0], c[0])
    centers.addcmul_(T[:, :3, 1], c[1])
    return centers.addcmul_(T[:, :3, 2], c[2])
