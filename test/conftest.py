"""Shared fixtures and independent references for the tests.

References we did not write: Pinocchio (``pin``) and real robots' URDFs from the
``example-robot-data`` wheel. The Pinocchio helper reads mimic relations straight from the XML
(ElementTree), not through ros_torch_kin, so it does not share our parser's mistakes.
"""

from __future__ import annotations

import os
import site
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

from ros_torch_kin.kinematics import Chain
from ros_torch_kin.robots import bundled_urdf

torch.set_num_threads(min(2, os.cpu_count() or 1))

# The session-wide ROS fixture, defined once here for every module (it is only used by tests
# marked requires_ros, which skip when the colcon-built package is absent).
from ros_fixtures import ros_domain  # noqa: E402,F401


def example_robot_data_dir() -> Path | None:
    """Where the example-robot-data wheel puts its robots, if installed."""
    for base in site.getsitepackages() + [site.getusersitepackages()]:
        path = Path(base) / "cmeel.prefix" / "share" / "example-robot-data" / "robots"
        if path.is_dir():
            return path
    return None


#: Real URDFs (from example-robot-data) used as references, with what they exercise.
REAL_ROBOTS = {
    "panda": "panda_description/urdf/panda.urdf",  # mimic finger, rotated origins
    "ur5": "ur_description/urdf/ur5_robot.urdf",  # rpy origins, fixed tool frames
    "talos": "talos_data/robots/talos_full_v2.urdf",  # humanoid tree, mimic grippers
    "tiago": "tiago_description/robots/tiago.urdf",  # prismatic torso, continuous wheels
    "kinova": "kinova_description/robots/kinova.urdf",  # continuous joints
}


def real_urdf(name: str) -> str:
    root = example_robot_data_dir()
    if root is None:
        pytest.skip("example-robot-data is not installed (pip install example-robot-data)")
    return (root / REAL_ROBOTS[name]).read_text()


@pytest.fixture(scope="session")
def arm7_urdf() -> str:
    return bundled_urdf()


@pytest.fixture(scope="session")
def arm7() -> Chain:
    return Chain.from_urdf(bundled_urdf(), device="cpu", dtype=torch.float64)


@pytest.fixture(scope="session")
def panda_collision_model():
    """example-robot-data's Panda with both collision models (tight verdict at the default 3 mm
    slack under 6 mm tiers, coarse cost) and its SRDF's self pairs: (chain float32, model, robots dir, mesh share
    dir). Built once per test session (the tight trees are also cached on disk)."""
    from ros_torch_kin.collision import robot_collision_model_from_urdf

    robots = example_robot_data_dir()
    share = str(robots.parents[1])
    srdf = (robots / "panda_description/srdf/panda.srdf").read_text()
    chain = Chain.from_urdf(real_urdf("panda"), device="cpu", dtype=torch.float32)
    model = robot_collision_model_from_urdf(real_urdf("panda"), chain, srdf=srdf, search_dirs=[share], samples=300)
    return chain, model, robots, share


def ball_beside_the_last_link(chain: Chain, checker, q: torch.Tensor, gap: float, radius: float = 0.03):
    """A sphere obstacle ``gap`` m from the last link's last sphere of ``checker`` at configuration
    ``q`` (J,), on the first side (±z, ±y, ±x) where no other sphere is closer (checked)."""
    from ros_torch_kin.collision import Obstacle, Scene
    from ros_torch_kin.collision.sphere_centers import world_sphere_centers
    from ros_torch_kin.kinematics import world_transforms

    centers = world_sphere_centers(world_transforms(chain, q.unsqueeze(0)), checker.spheres)[:, :, 0]
    last = int(checker.spheres.sphere_links.max())
    s = int((checker.spheres.sphere_links == last).nonzero()[-1])
    for direction in ([0, 0, 1], [0, 0, -1], [0, 1, 0], [0, -1, 0], [1, 0, 0], [-1, 0, 0]):
        centre = centers[s] + (float(checker.spheres.radii[s]) + radius + gap) * torch.tensor(direction, dtype=chain.dtype)
        ball = Obstacle.sphere("ball", radius, [*centre.tolist(), 0, 0, 0, 1])
        if abs(float(checker.with_scene(Scene([ball])).distances(q).world_distance[0]) - gap) < 2e-4:
            return ball
    raise AssertionError(f"no side of the last link's sphere keeps a ball {gap} m from it alone")


def random_q(chain: Chain, batch: int, seed: int) -> torch.Tensor:
    """Joint positions inside the limits (or in [-π, π] for unbounded joints), (batch, J)."""
    generator = torch.Generator().manual_seed(seed)
    lower = torch.clamp(chain.lower_limits, min=-np.pi).cpu()
    upper = torch.clamp(chain.upper_limits, max=np.pi).cpu()
    u = torch.rand(batch, chain.num_dofs, generator=generator, dtype=torch.float64)
    return (lower + u * (upper - lower)).to(chain.dtype)


def mimic_relations(urdf: str) -> dict[str, tuple[str, float, float]]:
    """follower -> (leader, multiplier, offset), read directly from the XML."""
    relations = {}
    for joint in ET.fromstring(urdf).iter("joint"):
        mimic = joint.find("mimic")
        if mimic is not None and joint.get("type") != "fixed":
            relations[joint.get("name")] = (
                mimic.get("joint"),
                float(mimic.get("multiplier", 1.0)),
                float(mimic.get("offset", 0.0)),
            )
    return relations


class PinocchioReference:
    """World placement of every link by Pinocchio, one configuration at a time (float64)."""

    def __init__(self, urdf: str):
        pin = pytest.importorskip("pinocchio")
        self.pin = pin
        self.model = pin.buildModelFromXML(urdf)  # mimic joints as ordinary joints; we set them
        self.data = self.model.createData()
        self.mimics = mimic_relations(urdf)

    def configuration(self, joint_values: dict[str, float]) -> np.ndarray:
        """Pinocchio q from independent joint values (mimic followers derived here)."""
        values = dict(joint_values)
        for follower, (leader, multiplier, offset) in self.mimics.items():
            while leader in self.mimics and leader not in values:  # mimic of a mimic
                leader_of, m, o = self.mimics[leader]
                values[leader] = m * values[leader_of] + o
            values[follower] = multiplier * values[leader] + offset
        model, q = self.model, self.pin.neutral(self.model)
        for name, value in values.items():
            if not model.existJointName(name):
                continue
            jid = model.getJointId(name)
            start, width = model.idx_qs[jid], model.nqs[jid]
            if width == 2:  # continuous: (cos, sin)
                q[start : start + 2] = (np.cos(value), np.sin(value))
            elif width == 1:
                q[start] = value
        return q

    def link_poses(self, joint_values: dict[str, float], links) -> np.ndarray:
        """(len(links), 4, 4) world poses of the named links."""
        q = self.configuration(joint_values)
        self.pin.framesForwardKinematics(self.model, self.data, q)
        return np.stack(
            [self.data.oMf[self.model.getFrameId(name, self.pin.BODY)].homogeneous for name in links]
        )

    def frame_jacobian(self, joint_values: dict[str, float], link: str) -> tuple[np.ndarray, np.ndarray]:
        """(6, nv) Jacobian of the link origin in the world-aligned frame, and the link pose."""
        pin = self.pin
        q = self.configuration(joint_values)
        pin.computeJointJacobians(self.model, self.data, q)
        pin.updateFramePlacements(self.model, self.data)
        frame = self.model.getFrameId(link, pin.BODY)
        J = pin.getFrameJacobian(self.model, self.data, frame, pin.LOCAL_WORLD_ALIGNED)
        return J, self.data.oMf[frame].homogeneous

    def velocity_index(self, joint: str) -> int:
        return self.model.idx_vs[self.model.getJointId(joint)]
