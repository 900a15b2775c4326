"""Forward kinematics of ONE configuration in float64 numpy, for the joint_states pipeline.

Through torch, the FK of a single configuration is nothing but per-operation overhead (about a
dozen dispatched operations, 45 µs on an idle core of the development VM, 250 µs under load);
the same pointer-jumping composition on a handful of small numpy arrays costs a fraction of
that, and float64 throughout. The constants are the chain's own, rebuilt once in float64 from
its description (``Chain.from_description``), so a float32 chain's poses here are the exact
geometry of its URDF (they agree with ``forward_kinematics`` to float32 rounding) and a float64
chain's agree to the last bits. Mimic joints follow their leaders through the chain's
``link_dofs`` / ``link_offset``, as in :func:`ros_torch_kin.kinematics.forward_kinematics`.
"""

from __future__ import annotations

import numpy as np
import torch

from ..kinematics import Chain
from ..kinematics.pose import _SHEPPERD

#: Rotation entries R[i, j] in a row-major 4×4 transform (flat index 4 i + j).
_ROTATION_ENTRIES = [4 * i + j for i in range(3) for j in range(3)]
#: Shepperd's candidates (see kinematics.pose.matrix_to_quat_xyzw) from a whole flat 4×4 transform:
#: candidates (16,) = T.reshape(16) @ _CANDIDATES + _CANDIDATE_CONSTANT; [4 k + k] is 4 q_k².
_CANDIDATES = np.zeros((16, 16))
_CANDIDATES[_ROTATION_ENTRIES] = _SHEPPERD[0]
_CANDIDATE_CONSTANT = _SHEPPERD[1]


class SingleConfigurationFK:
    """``fk(q)``: (J,) float64 joint positions (rad / m, ``chain.joint_names`` order) -> (L, 4, 4)
    float64 world transforms of every link (m), ``chain.link_names`` order; world = the URDF root
    link's frame. Built once per chain (a few ms); each call is about 15 numpy operations."""

    def __init__(self, chain: Chain):
        self.chain = chain
        exact = chain
        if chain.dtype != torch.float64 or chain.device.type != "cpu":
            exact = Chain.from_description(chain.description, device="cpu", dtype=torch.float64)
        L = exact.num_links
        #: (L, J), (L,): each link's joint value = link_dofs @ q + link_offset (rad / m)
        self._link_dofs = exact.link_dofs.numpy().copy()
        self._link_offset = exact.link_offset.numpy().copy()
        #: (L, 16), (L, 16, 3): row-major local pose = constant + linear @ (cos, sin, q_link)
        self._local_constant = exact.local_constant.numpy().reshape(L, 16).copy()
        self._local_linear = exact.local_linear.numpy().copy()
        #: (K, L): each link's ancestor 2**k levels up (pointer jumping, see kinematics.fk)
        self._jump_ancestors = [row.copy() for row in exact.plan.jump_ancestors.cpu().numpy()]
        self._features = np.empty((L, 3, 1))
        self._links = np.arange(L)

    def __call__(self, q: np.ndarray) -> np.ndarray:
        q_link = self._link_dofs @ q
        q_link += self._link_offset
        features = self._features
        np.cos(q_link, out=features[:, 0, 0])
        np.sin(q_link, out=features[:, 1, 0])
        features[:, 2, 0] = q_link
        world = (self._local_linear @ features).reshape(-1, 4, 4)  # (L, 4, 4)
        world += self._local_constant.reshape(-1, 4, 4)
        for ancestors in self._jump_ancestors:  # compose with the ancestor 2**k levels up
            world = world[ancestors] @ world
        return world

    def poses(self, q: np.ndarray, frame_index: int = 0) -> np.ndarray:
        """(J,) -> (L, 7) float64 poses x, y, z, qx, qy, qz, qw (m; unit quaternion, w ≥ 0) of every
        link in the frame of link ``frame_index`` (0: the root link, no change)."""
        world = self(q)
        if frame_index:
            base = world[frame_index]
            inverse = np.eye(4)
            inverse[:3, :3] = base[:3, :3].T
            inverse[:3, 3] = -(base[:3, :3].T @ base[:3, 3])
            world = inverse @ world
        return self._to_poses(world)

    def _to_poses(self, world: np.ndarray) -> np.ndarray:
        """(L, 4, 4) -> (L, 7): :func:`ros_torch_kin.kinematics.matrix_to_pose_xyzw` (Shepperd's
        method: the best-conditioned candidate, normalised, w ≥ 0; the same numbers to rounding)
        in ten operations on the whole stack, without its generic reshapes and gathers."""
        candidates = world.reshape(-1, 16) @ _CANDIDATES
        candidates += _CANDIDATE_CONSTANT  # (L, 16): candidate k's (x, y, z, w), each scaled by 4 q_k
        best = candidates[:, ::5].argmax(axis=1)  # the largest 4 q_k² (entries 0, 5, 10, 15)
        quat = candidates.reshape(-1, 4, 4)[self._links, best]  # (L, 4), a positive multiple of q
        scale = np.where(quat[:, 3] < 0, -1.0, 1.0)  # w ≥ 0
        scale /= np.sqrt(np.einsum("lk,lk->l", quat, quat))
        poses = np.empty((len(quat), 7))
        poses[:, :3] = world[:, :3, 3]
        np.multiply(quat, scale[:, None], out=poses[:, 3:])
        return poses
