"""The public MotionBenchMaker (MBM) problems for the Franka Panda, as VAMP ships them, and an exact
collision reference on the same robot (Pinocchio + coal on the URDF's own collision meshes).

The 700 problems (7 families × 100) live in the ``vamp-planner==0.6.4`` source distribution on
PyPI, under ``resources/panda/``: ``panda.urdf`` (the fingers fixed, 0.065 m open), ``panda.srdf``,
``meshes/collision/*.obj`` and ``problems.tar.bz2`` (per problem a MoveIt planning-scene YAML and a
MoveIt motion-plan request YAML). Nothing of it is in this repository: :func:`mbm_resources`
downloads the sdist once with pip (``pip download --no-deps --no-binary vamp-planner``, which gives
the .tar.gz; its SHA-256 is checked) and extracts that folder into ``$RTK_CACHE/mbm/`` (default
``~/.cache/ros_torch_kin/mbm/``); later calls only look there.

    import sys; sys.path.insert(0, "bench")
    from mbm_problems import load_problems, mbm_reference
    problems = load_problems(["cage"], limit=3)
    reference = mbm_reference()
    reference.set_scene(problems[0].scene())
    reference.collides(np.stack((problems[0].start, problems[0].goal)))  # (False, "")

Obstacles: ``MBMProblem.scene()`` reads the scene YAML with
``ros_torch_kin.collision.moveit_scene.scene_from_moveit_yaml``. Every MBM scene is in the
``world`` frame, which the scene's virtual joint puts at ``panda_link0`` (identity, checked here).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

VERSION = "0.6.4"
SDIST = f"vamp_planner-{VERSION}.tar.gz"
SDIST_SHA256 = "d3150c6b67ff941af9ad56480b31d3fb73b12211ea21dc684f7737b059f6daba"
#: the families in the order MBM and VAMP list them; their folders are ``<family>_panda``
FAMILIES = ("table_pick", "table_under_pick", "box", "bookshelf_small", "bookshelf_tall", "bookshelf_thin", "cage")
PER_FAMILY = 100
ARM_JOINTS = tuple(f"panda_joint{i}" for i in range(1, 8))
ROOT_FRAME = "panda_link0"
#: the link the benchmark's tool terms act on (0.105 m beyond the hand, between the fingertips)
TOOL = "panda_grasptarget"
_IDENTITY = {"translation": [0, 0, 0], "rotation": [0, 0, 0, 1]}
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster than pure Python


def cache_dir() -> Path:
    """``$RTK_CACHE/mbm`` (default ``~/.cache/ros_torch_kin/mbm``)."""
    return Path(os.environ.get("RTK_CACHE") or Path.home() / ".cache" / "ros_torch_kin").expanduser() / "mbm"


def mbm_resources() -> Path:
    """The folder holding ``panda.urdf``, ``panda.srdf``, ``meshes/`` and ``problems/<family>_panda/``,
    downloaded and extracted on the first call (about 15 s and 65 MB transferred; 8 MB kept).
    Raises RuntimeError saying why when the sdist cannot be had."""
    target = cache_dir() / f"vamp-{VERSION}-panda"
    if (target / ".complete").is_file():
        return target
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / SDIST
    shared = cache.parent / SDIST  # where test/test_moveit_scene.py leaves it: reused, kept
    if not sdist.is_file() and shared.is_file():
        sdist = shared
    elif not sdist.is_file():
        _download(cache)
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        sdist.unlink()
        raise RuntimeError(f"{sdist}: SHA-256 {digest}, expected {SDIST_SHA256} (removed; try again)")
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=cache))
    try:
        prefix = f"vamp_planner-{VERSION}/resources/panda/"
        with tarfile.open(sdist, "r:gz") as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(prefix) and (m.isfile() or m.isdir())]
            for member in members:
                member.name = member.name[len(prefix):]
            archive.extractall(staging, members=[m for m in members if m.name and _safe(m.name)])
        with tarfile.open(staging / "problems.tar.bz2", "r:bz2") as archive:
            members = [m for m in archive.getmembers() if (m.isfile() or m.isdir()) and _safe(m.name)]
            archive.extractall(staging, members=members)
        (staging / "problems.tar.bz2").unlink()
        missing = [f for f in ("panda.urdf", "panda.srdf", "meshes/collision/link0.obj", "problems/cage_panda/request0100.yaml")
                   if not (staging / f).is_file()]
        if missing:
            raise RuntimeError(f"{SDIST} lacks {', '.join(missing)}")
        staging.chmod(0o755)
        (staging / ".complete").write_text(f"vamp-planner {VERSION} sdist sha256 {SDIST_SHA256}\n")
        try:
            staging.rename(target)  # atomic: a concurrent caller that won the race keeps its copy
        except OSError:
            if not (target / ".complete").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if sdist != shared:
        sdist.unlink(missing_ok=True)  # 65 MB; the extracted folder is all that is used
    return target


def _safe(name: str) -> bool:
    return not name.startswith("/") and ".." not in Path(name).parts


def _download(cache: Path) -> None:
    """pip download of the sdist into ``cache``. ``--no-binary vamp-planner`` (not ``:all:``, which
    would also build pip's build dependencies from source: minutes) gives the .tar.gz."""
    scratch = Path(tempfile.mkdtemp(prefix="download-", dir=cache))
    try:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "vamp-planner",
                   "--disable-pip-version-check", "-q", "-d", str(scratch), f"vamp-planner=={VERSION}"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise RuntimeError(f"pip download of vamp-planner=={VERSION} failed: {error}") from None
        if done.returncode != 0 or not (scratch / SDIST).is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"pip download of vamp-planner=={VERSION} gave no {SDIST}: {' | '.join(tail)}")
        (scratch / SDIST).replace(cache / SDIST)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def urdf_text() -> str:
    """The MBM Panda URDF with every ``package://`` mesh filename made an absolute path into
    :func:`mbm_resources` (its meshes are named ``package://meshes/...``, relative to that folder),
    so the library's sphere builder and Pinocchio find them with no search directories."""
    root = mbm_resources()
    return re.sub(r'filename="package://([^"]+)"', lambda m: f'filename="{root / m.group(1)}"',
                  (root / "panda.urdf").read_text())


def urdf_path() -> Path:
    """A file holding :func:`urdf_text` (written once next to the resources)."""
    path = mbm_resources() / "panda_resolved.urdf"
    if not path.is_file():
        scratch = path.with_suffix(f".{os.getpid()}.tmp")
        scratch.write_text(urdf_text())
        scratch.replace(path)
    return path


def srdf_text() -> str:
    return (mbm_resources() / "panda.srdf").read_text()


@dataclass(frozen=True, eq=False)
class MBMProblem:
    """One MBM problem. index: the file number (1…100: ``scene0001.yaml``, ``request0001.yaml``);
    scene_yaml: the planning-scene file's text; start, goal: (7,) rad in ``joint_names`` order
    (the URDF's arm joints panda_joint1…7); the goal is a joint-space goal (MoveIt joint
    constraints, no tolerances given)."""

    family: str
    index: int
    scene_yaml: str
    start: np.ndarray
    goal: np.ndarray
    joint_names: tuple[str, ...] = ARM_JOINTS

    @property
    def name(self) -> str:
        return f"{self.family}/{self.index:04d}"

    def scene(self, root_frame: str = ROOT_FRAME):
        """The obstacles in the robot's root frame (``scene_from_moveit_yaml``)."""
        return scene_from_yaml(self.scene_yaml, root_frame)


def scene_from_yaml(text: str, root_frame: str = ROOT_FRAME):
    """An MBM scene file's obstacles as a ``ros_torch_kin.collision.Scene`` in ``root_frame``.
    Checks that the robot's virtual joint (world -> panda_link0) is the identity, as in all 700."""
    data = yaml.load(text, Loader=_LOADER)
    transforms = data.get("robot_state", {}).get("multi_dof_joint_state", {}).get("transforms", [])
    if any(not _is_identity(t) for t in transforms):
        raise ValueError(f"the scene's virtual joint is not the identity: {transforms}")
    from ros_torch_kin.collision.moveit_scene import scene_from_moveit_yaml

    return scene_from_moveit_yaml(data, root_frame)  # the parsed document: the YAML is read once


def _is_identity(transform: dict) -> bool:
    return all(math.isclose(float(a), float(b), abs_tol=1e-12)
               for key in ("translation", "rotation") for a, b in zip(transform[key], _IDENTITY[key]))


def read_request(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(start (7,), goal (7,)) of a MoveIt motion-plan request: ``start_state.joint_state`` by
    name, and the one ``goal_constraints`` entry's ``joint_constraints`` for all seven arm joints.
    Raises ValueError for anything else (other constraint kinds, a moved virtual joint, fingers
    not where the URDF fixes them)."""
    data = yaml.load(text, Loader=_LOADER)
    state = data["start_state"]
    joint_state = dict(zip(state["joint_state"]["name"], state["joint_state"]["position"]))
    if any(not _is_identity(t) for t in state.get("multi_dof_joint_state", {}).get("transforms", [])):
        raise ValueError("the start state's virtual joint is not the identity")
    for finger in ("panda_finger_joint1", "panda_finger_joint2"):
        if finger in joint_state and not math.isclose(joint_state[finger], 0.065, abs_tol=1e-9):
            raise ValueError(f"{finger} = {joint_state[finger]} in the start state; the URDF fixes it at 0.065")
    missing = [j for j in ARM_JOINTS if j not in joint_state]
    if missing:
        raise ValueError(f"the start state lacks {missing}")
    start = np.array([joint_state[j] for j in ARM_JOINTS], dtype=np.float64)
    goals = data["goal_constraints"]
    if len(goals) != 1 or set(goals[0]) != {"joint_constraints"}:
        raise ValueError(f"expected one goal of joint constraints, got {goals}")
    constraints = {c["joint_name"]: c for c in goals[0]["joint_constraints"]}
    if sorted(constraints) != sorted(ARM_JOINTS) or len(goals[0]["joint_constraints"]) != len(ARM_JOINTS):
        raise ValueError(f"the goal constrains {sorted(constraints)}, not the seven arm joints")
    goal = np.array([constraints[j]["position"] for j in ARM_JOINTS], dtype=np.float64)
    return start, goal


def load_problems(families=None, limit: int | None = None) -> list[MBMProblem]:
    """The problems of ``families`` (default: all seven, in :data:`FAMILIES` order), the first
    ``limit`` of each (by file number; default all 100)."""
    families = list(FAMILIES if families is None else families)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown MBM families {unknown} (one of {', '.join(FAMILIES)})")
    root = mbm_resources() / "problems"
    problems = []
    for family in families:
        folder = root / f"{family}_panda"
        indices = sorted(int(p.stem[len("request"):]) for p in folder.glob("request[0-9][0-9][0-9][0-9].yaml"))
        for index in indices[:limit]:
            request = folder / f"request{index:04d}.yaml"
            try:
                start, goal = read_request(request.read_text())
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{request}: {error}") from None
            problems.append(MBMProblem(family, index, (folder / f"scene{index:04d}.yaml").read_text(), start, goal))
    return problems


def reference_self_pairs(chain, srdf: str) -> tuple[tuple[str, str], ...]:
    """The link pairs the exact reference checks for self collision: every pair of links with
    collision geometry, less the adjacent ones (the same rigid body, or a body and its parent)
    and those the SRDF disables. Unlike the planner's pairs, none is dropped by sampling."""
    from ros_torch_kin.collision.self_collision import adjacent_link_pairs, srdf_disabled_pairs
    from ros_torch_kin.collision.urdf_geometry import read_collision_shapes

    with_geometry = {shape.link for shape in read_collision_shapes(urdf_text())[0]}
    names = chain.link_names
    links = sorted(chain.link_index(n) for n in with_geometry if chain.has_link(n))
    disabled = set(adjacent_link_pairs(chain)) | set(srdf_disabled_pairs(srdf, chain)[0])
    return tuple((names[a], names[b]) for i, a in enumerate(links) for b in links[i + 1:] if (a, b) not in disabled)


def mbm_reference(chain=None):
    """The exact reference (bench/motion_scenes.py ``ExactReference``) on the MBM URDF's
    collision meshes, checking :func:`reference_self_pairs`; call ``set_scene`` before use."""
    import torch

    from motion_scenes import ExactReference
    from ros_torch_kin.kinematics import Chain

    if chain is None:
        chain = Chain.from_urdf(urdf_text(), device="cpu", dtype=torch.float64)
    return ExactReference(urdf_path(), [mbm_resources()], chain, reference_self_pairs(chain, srdf_text()))
