"""Seeded random robots as URDF text, for tests and benchmarks.

Axes are random unit vectors (rarely axis-aligned), origins have random rotations, so code that
assumes z axes or orthonormal-by-construction frames is caught.
"""

from __future__ import annotations

import numpy as np


def random_chain_urdf(
    seed: int,
    dofs: int = 7,
    branching: bool = False,
    prismatic_fraction: float = 0.0,
    fixed_fraction: float = 0.0,
    mimic_fraction: float = 0.0,
    continuous_fraction: float = 0.0,
    name: str | None = None,
) -> str:
    """A URDF with ``dofs`` independent movable joints (plus fixed and mimic joints if asked).

    branching: attach each new link to a random earlier link (a tree) instead of the last one.
    The fractions set how many joints are prismatic, continuous, fixed or mimic.
    """
    rng = np.random.default_rng(seed)
    name = name or f"random_{'tree' if branching else 'chain'}_{dofs}dof_seed{seed}"
    links = ["base"]
    joints: list[str] = []
    independent: list[str] = []
    movable_types: dict[str, str] = {}
    count = 0
    while len(independent) < dofs:
        count += 1
        parent = links[int(rng.integers(len(links)))] if branching and len(links) > 1 else links[-1]
        child = f"link{count}"
        joint = f"joint{count}"
        xyz = rng.uniform(-0.3, 0.3, 3)
        rpy = rng.uniform(-np.pi, np.pi, 3)
        roll = rng.random()
        if roll < fixed_fraction:
            kind = "fixed"
        elif rng.random() < prismatic_fraction:
            kind = "prismatic"
        elif rng.random() < continuous_fraction:
            kind = "continuous"
        else:
            kind = "revolute"
        body = [
            f'  <joint name="{joint}" type="{kind}">',
            f'    <parent link="{parent}"/><child link="{child}"/>',
            f'    <origin xyz="{_fmt(xyz)}" rpy="{_fmt(rpy)}"/>',
        ]
        if kind != "fixed":
            axis = rng.normal(size=3)
            axis *= rng.uniform(0.5, 2.0) / np.linalg.norm(axis)  # deliberately not unit length
            body.append(f'    <axis xyz="{_fmt(axis)}"/>')
            limit = 0.5 if kind == "prismatic" else 2.5
            if kind == "continuous":
                body.append('    <limit effort="10" velocity="2"/>')
            else:
                body.append(f'    <limit lower="{-limit}" upper="{limit}" effort="10" velocity="2"/>')
            candidates = [j for j in independent if movable_types[j] == kind]
            if candidates and rng.random() < mimic_fraction:
                leader = candidates[int(rng.integers(len(candidates)))]
                multiplier, offset = rng.uniform(-1.5, 1.5), rng.uniform(-0.2, 0.2)
                body.append(f'    <mimic joint="{leader}" multiplier="{multiplier:.6f}" offset="{offset:.6f}"/>')
            else:
                independent.append(joint)
                movable_types[joint] = kind
        body.append("  </joint>")
        joints.append("\n".join(body))
        links.append(child)
    link_xml = "\n".join(f'  <link name="{link}"/>' for link in links)
    return f'<?xml version="1.0"?>\n<robot name="{name}">\n{link_xml}\n' + "\n".join(joints) + "\n</robot>\n"


def _fmt(values) -> str:
    return " ".join(f"{v:.9f}" for v in values)
