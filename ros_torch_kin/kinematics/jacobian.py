"""Geometric Jacobians of any link (and any point on it), batched.

Column j of the Jacobian of a point p on link e, in the base (root link) frame:
revolute joint with world axis z through o: (z × (p − o), z); prismatic: (z, 0); zero when the
joint does not move e. A mimic joint adds its column, times its multiplier, to its leader's.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .chain import Chain
from .fk import check_joint_positions, link_index, world_transforms
from .fk_backward import apply_forward_kinematics, cross, joint_axes_in_world


def compute_jacobian(
    chain: Chain,
    q: Tensor,
    link: str | int,
    point: Tensor | None = None,
    return_pose: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Geometric Jacobian of ``link`` at ``q``.

    q: (B, J) or (J,) joint positions (rad / m) in ``chain.joint_names`` order.
    link: link name or index. point: (3,) or (B, 3) offset in that link's frame, m (default:
    the link origin).
    Returns J: (B, 6, J) — rows (vx, vy, vz, wx, wy, wz): linear velocity of the point (m/s) and
    angular velocity (rad/s) in the base frame per unit joint velocity; and, with
    ``return_pose``, the link's pose (B, 4, 4). 1-D ``q`` drops the B axis. Both are views with the
    batch innermost in memory. Differentiable (through the analytical FK backward).
    """
    q2 = check_joint_positions(chain, q)
    index = link_index(chain, link)
    if q2.requires_grad and torch.is_grad_enabled():
        world = apply_forward_kinematics(q2, chain, None).permute(1, 2, 3, 0)
    else:
        world = world_transforms(chain, q2)  # (L, 4, 4, B)
    T_link = world[index]  # (4, 4, B)
    position = T_link[:3, 3]  # (3, B)
    if point is not None:
        point = torch.as_tensor(point, dtype=chain.dtype, device=chain.device)
        if point.shape not in ((3,), (q2.shape[0], 3)):
            raise ValueError(f"point must have shape (3,) or ({q2.shape[0]}, 3), got {tuple(point.shape)}")
        offset = point.mT if point.dim() == 2 else point.view(3, 1)  # (3, B) or (3, 1), link frame
        position = position + (T_link[:3, :3] * offset.unsqueeze(0)).sum(1)
    axis, origin = joint_axes_in_world(chain, world)  # (M, 3, B)
    revolute, prismatic = chain.joint_is_revolute, chain.joint_is_prismatic  # (M, 1, 1)
    linear = revolute * cross(axis, position.unsqueeze(0) - origin) + prismatic * axis
    columns = torch.cat((linear, revolute * axis), dim=1)  # (M, 6, B)
    columns = columns * chain.joint_subtree_mask[:, index].view(-1, 1, 1)
    M, _, B = columns.shape
    J = (chain.joint_to_dof @ columns.view(M, 6 * B)).view(chain.num_dofs, 6, B).permute(2, 1, 0)  # (B, 6, J)
    if q.dim() == 1:
        J, T_link = J[0], T_link[..., 0]
    else:
        T_link = T_link.permute(2, 0, 1)
    return (J, T_link) if return_pose else J
