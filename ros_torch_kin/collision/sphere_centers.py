"""Where a robot's spheres are for a batch of configurations: their centres in the world frame."""

from __future__ import annotations

from torch import Tensor

from .robot_spheres import RobotSpheres


def world_sphere_centers(world: Tensor, spheres: RobotSpheres) -> Tensor:
    """Link-major world transforms (L, 4, 4, B) (as from ``world_transforms``) -> (S, 3, B) sphere
    centres in the world (root link) frame, m: ``R_link c + t_link`` for each sphere."""
    T = world.index_select(0, spheres.sphere_links)[:, :3]  # (S, 3, 4, B)
    S = spheres.num_spheres
    return (T[:, :, :3] * spheres.centers.view(S, 1, 3, 1)).sum(2) + T[:, :, 3]
