"""The public MotionBenchMaker (MBM) problems for the Franka Panda (and the UR5 and the Fetch), as
VAMP ships them, and an exact collision reference on the same robot (Pinocchio + coal on the URDF's
own collision meshes).

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

Other robots (``robot=`` of every function; :data:`ROBOTS`): the same sdist ships the same 7 families
× 100 for ``ur5`` (``resources/ur5/``: a UR5 on a fixed 0.9144 m offset under ``offset_link``, a
Robotiq 85 gripper and force-torque sensor, every gripper joint fixed at 0 as the requests set them;
planned joints: the 6 arm joints) and ``fetch`` (``resources/fetch/``: torso, head and fingers of
the Fetch with its base fixed at ``base_link``; planned joints: ``torso_lift_joint`` and the 7 arm
joints; the URDF fixes the head at 0 and the fingers 0.05 m open, as every request's start state
sets them; the requests' wheel and bellows joints have no geometry in this URDF). Neither SRDF
declares a virtual joint: MoveIt's ``world`` is the URDF root (``offset_link``, ``base_link``);
the UR5 scenes' objects have no frame (world = root; their ``fixed_frame_transforms`` put
``world`` at the identity, checked), the Fetch scenes' are in ``base_link`` (the root). The Fetch
URDF writes its ±π limits as ±3.14159, 2.7e-6 rad inside the ±π that 6 of its joints' goals
reach; :func:`load_problems` leaves the requests as they are.
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
#: the families in the order MBM and VAMP list them; their folders are ``<family>_<robot>``
FAMILIES = ("table_pick", "table_under_pick", "box", "bookshelf_small", "bookshelf_tall", "bookshelf_thin", "cage")
PER_FAMILY = 100
ARM_JOINTS = tuple(f"panda_joint{i}" for i in range(1, 8))
ROOT_FRAME = "panda_link0"
#: the link the benchmark's tool terms act on (0.105 m beyond the hand, between the fingertips)
TOOL = "panda_grasptarget"


@dataclass(frozen=True)
class MBMRobot:
    """One robot of the sdist's ``resources/<name>/``. arm_joints: the joints every request's goal
    constrains, in the URDF's chain order (the planner's DOFs); root_frame: the URDF root, where
    the scenes' ``world`` is; tool: an end link for the planner's ``link`` argument (only pose
    goals use it; the MBM goals are joint-space); fixed: joints the requests' start states set
    that the URDF fixes, with the value it fixes them at (a start state that differs is refused);
    ignored: joints the start states set that have no geometry in the URDF (the mobile base's
    wheels, the Fetch's bellows); check: files that must be in the folder."""

    name: str
    arm_joints: tuple[str, ...]
    root_frame: str
    tool: str
    fixed: tuple[tuple[str, float], ...]
    ignored: tuple[str, ...]
    check: tuple[str, ...]


ROBOTS = {
    "panda": MBMRobot("panda", ARM_JOINTS, ROOT_FRAME, TOOL,
                      (("panda_finger_joint1", 0.065), ("panda_finger_joint2", 0.065)), (),
                      ("meshes/collision/link0.obj",)),
    "ur5": MBMRobot("ur5", ("shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint", "wrist_1_joint",
                            "wrist_2_joint", "wrist_3_joint"), "offset_link", "ee_link",
                    tuple((f"robotiq_85_{side}_{part}_joint", 0.0) for side in ("left", "right")
                          for part in ("inner_knuckle", "finger_tip", "knuckle")), (),
                    ("meshes/ur5/collision/base.stl", "meshes/robotiq/robotiq_85_base_link_fine.STL")),
    "fetch": MBMRobot("fetch", ("torso_lift_joint", "shoulder_pan_joint", "shoulder_lift_joint", "upperarm_roll_joint",
                                "elbow_flex_joint", "forearm_roll_joint", "wrist_flex_joint", "wrist_roll_joint"),
                      "base_link", "gripper_link",
                      (("head_pan_joint", 0.0), ("head_tilt_joint", 0.0), ("l_gripper_finger_joint", 0.05),
                       ("r_gripper_finger_joint", 0.05)), ("l_wheel_joint", "r_wheel_joint", "bellows_joint"),
                      ("meshes/base_link_collision_2.stl", "meshes/gripper_link_2.stl")),
}


def mbm_robot(robot: str | MBMRobot = "panda") -> MBMRobot:
    if isinstance(robot, MBMRobot):
        return robot
    if robot not in ROBOTS:
        raise ValueError(f"unknown MBM robot {robot!r} (one of {', '.join(ROBOTS)})")
    return ROBOTS[robot]
_IDENTITY = {"translation": [0, 0, 0], "rotation": [0, 0, 0, 1]}
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster than pure Python


def cache_dir() -> Path:
    """``$RTK_CACHE/mbm`` (default ``~/.cache/ros_torch_kin/mbm``)."""
    return Path(os.environ.get("RTK_CACHE") or Path.home() / ".cache" / "ros_torch_kin").expanduser() / "mbm"


def mbm_resources(robot: str | MBMRobot = "panda") -> Path:
    """The folder holding ``<robot>.urdf``, ``<robot>.srdf``, ``meshes/`` and
    ``problems/<family>_<robot>/``, downloaded and extracted on the first call (about 15 s and
    65 MB transferred; 8 MB kept for the Panda, 12 MB for the UR5, 19 MB for the Fetch). The
    sdist is read once for every robot whose folder is not there yet. Raises RuntimeError saying
    why when the sdist cannot be had."""
    robot = mbm_robot(robot)
    target = _target(robot)
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
    wanted = [r for r in ROBOTS.values() if not (_target(r) / ".complete").is_file()]
    stagings = {r.name: Path(tempfile.mkdtemp(prefix=f"staging-{r.name}-", dir=cache)) for r in wanted}
    try:
        prefixes = {f"vamp_planner-{VERSION}/resources/{r.name}/": r.name for r in wanted}
        with tarfile.open(sdist, "r:gz") as archive:
            members = {name: [] for name in stagings}
            for member in archive.getmembers():
                prefix = next((p for p in prefixes if member.name.startswith(p)), None)
                if prefix is not None and (member.isfile() or member.isdir()):
                    member.name = member.name[len(prefix):]
                    if member.name and _safe(member.name):
                        members[prefixes[prefix]].append(member)
            for name, staging in stagings.items():
                archive.extractall(staging, members=members[name])
        for r in wanted:
            staging = stagings[r.name]
            with tarfile.open(staging / "problems.tar.bz2", "r:bz2") as archive:
                members = [m for m in archive.getmembers() if (m.isfile() or m.isdir()) and _safe(m.name)]
                archive.extractall(staging, members=members)
            (staging / "problems.tar.bz2").unlink()
            required = (f"{r.name}.urdf", f"{r.name}.srdf", *r.check, f"problems/cage_{r.name}/request0100.yaml")
            missing = [f for f in required if not (staging / f).is_file()]
            if missing:
                raise RuntimeError(f"{SDIST} lacks {', '.join(missing)} of {r.name}")
            staging.chmod(0o755)
            (staging / ".complete").write_text(f"vamp-planner {VERSION} sdist sha256 {SDIST_SHA256}\n")
            try:
                staging.rename(_target(r))  # atomic: a concurrent caller that won the race keeps its copy
            except OSError:
                if not (_target(r) / ".complete").is_file():
                    raise
    finally:
        for staging in stagings.values():
            shutil.rmtree(staging, ignore_errors=True)
    if sdist != shared:
        sdist.unlink(missing_ok=True)  # 65 MB; the extracted folders are all that is used
    return target


def _target(robot: MBMRobot) -> Path:
    return cache_dir() / f"vamp-{VERSION}-{robot.name}"


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


def urdf_text(robot: str | MBMRobot = "panda") -> str:
    """The robot's MBM URDF with every mesh filename made an absolute path into
    :func:`mbm_resources` (its meshes are named ``package://meshes/...`` or, for some of the UR5's
    gripper, plain ``meshes/...``, both relative to that folder), so the library's sphere builder
    and Pinocchio find them with no search directories."""
    robot = mbm_robot(robot)
    root = mbm_resources(robot)

    def absolute(match) -> str:
        name = match.group(1)
        if name.startswith("package://"):
            name = name[len("package://"):]
        elif name.startswith(("/", "file://")):
            return match.group(0)
        return f'filename="{root / name}"'

    return re.sub(r'filename="([^"]+)"', absolute, (root / f"{robot.name}.urdf").read_text())


def urdf_path(robot: str | MBMRobot = "panda") -> Path:
    """A file holding :func:`urdf_text` (written once next to the resources)."""
    robot = mbm_robot(robot)
    path = mbm_resources(robot) / f"{robot.name}_resolved.urdf"
    if not path.is_file():
        scratch = path.with_suffix(f".{os.getpid()}.tmp")
        scratch.write_text(urdf_text(robot))
        scratch.replace(path)
    return path


def srdf_text(robot: str | MBMRobot = "panda") -> str:
    robot = mbm_robot(robot)
    return (mbm_resources(robot) / f"{robot.name}.srdf").read_text()


@dataclass(frozen=True, eq=False)
class MBMProblem:
    """One MBM problem. index: the file number (1…100: ``scene0001.yaml``, ``request0001.yaml``);
    scene_yaml: the planning-scene file's text; start, goal: (J,) in ``joint_names`` order
    (the robot's :attr:`MBMRobot.arm_joints`; for the Panda its arm joints panda_joint1…7); the goal
    is a joint-space goal (MoveIt joint constraints, no tolerances given)."""

    family: str
    index: int
    scene_yaml: str
    start: np.ndarray
    goal: np.ndarray
    joint_names: tuple[str, ...] = ARM_JOINTS
    robot: str = "panda"

    @property
    def name(self) -> str:
        return f"{self.family}/{self.index:04d}"

    def scene(self, root_frame: str | None = None):
        """The obstacles in the robot's root frame (``scene_from_moveit_yaml``)."""
        return scene_from_yaml(self.scene_yaml, root_frame or ROBOTS[self.robot].root_frame)


def scene_from_yaml(text: str, root_frame: str = ROOT_FRAME):
    """An MBM scene file's obstacles as a ``ros_torch_kin.collision.Scene`` in ``root_frame``.
    Checks that the robot's virtual joint (world -> root) and the scene's fixed frames (``world``
    or the root) are the identity, as in all 2100 scenes; ``world`` is the root."""
    data = yaml.load(text, Loader=_LOADER)
    transforms = data.get("robot_state", {}).get("multi_dof_joint_state", {}).get("transforms", [])
    if any(not _is_identity(t) for t in transforms):
        raise ValueError(f"the scene's virtual joint is not the identity: {transforms}")
    fixed = [f for f in data.get("fixed_frame_transforms") or () if f.get("child_frame_id") in ("world", root_frame)]
    if any(not _is_identity(f["transform"]) for f in fixed):
        raise ValueError(f"the scene's fixed frame is not the identity: {fixed}")
    from ros_torch_kin.collision.moveit_scene import scene_from_moveit_yaml

    world = lambda frame: np.eye(4) if frame == "world" else None  # noqa: E731
    return scene_from_moveit_yaml(data, root_frame, world)  # the parsed document: the YAML is read once


def _is_identity(transform: dict) -> bool:
    return all(math.isclose(float(a), float(b), abs_tol=1e-12)
               for key in ("translation", "rotation") for a, b in zip(transform[key], _IDENTITY[key]))


def read_request(text: str, robot: str | MBMRobot = "panda") -> tuple[np.ndarray, np.ndarray]:
    """(start (J,), goal (J,)) of a MoveIt motion-plan request, in the robot's arm-joint order:
    ``start_state.joint_state`` by name, and the one ``goal_constraints`` entry's
    ``joint_constraints`` for all the arm joints. Raises ValueError for anything else (other
    constraint kinds, a moved virtual joint, a joint the URDF fixes set elsewhere, an unknown joint)."""
    robot = mbm_robot(robot)
    arm = robot.arm_joints
    data = yaml.load(text, Loader=_LOADER)
    state = data["start_state"]
    joint_state = dict(zip(state["joint_state"]["name"], state["joint_state"]["position"]))
    if any(not _is_identity(t) for t in state.get("multi_dof_joint_state", {}).get("transforms", [])):
        raise ValueError("the start state's virtual joint is not the identity")
    fixed = dict(robot.fixed)
    for joint, value in joint_state.items():
        if joint in fixed and not math.isclose(value, fixed[joint], abs_tol=1e-9):
            raise ValueError(f"{joint} = {value} in the start state; the URDF fixes it at {fixed[joint]}")
        if joint not in fixed and joint not in arm and joint not in robot.ignored:
            raise ValueError(f"the start state sets {joint}, which is neither planned nor fixed")
    missing = [j for j in arm if j not in joint_state]
    if missing:
        raise ValueError(f"the start state lacks {missing}")
    start = np.array([joint_state[j] for j in arm], dtype=np.float64)
    goals = data["goal_constraints"]
    if len(goals) != 1 or set(goals[0]) != {"joint_constraints"}:
        raise ValueError(f"expected one goal of joint constraints, got {goals}")
    constraints = {c["joint_name"]: c for c in goals[0]["joint_constraints"]}
    if sorted(constraints) != sorted(arm) or len(goals[0]["joint_constraints"]) != len(arm):
        raise ValueError(f"the goal constrains {sorted(constraints)}, not the {len(arm)} arm joints")
    goal = np.array([constraints[j]["position"] for j in arm], dtype=np.float64)
    return start, goal


def load_problems(families=None, limit: int | None = None, robot: str | MBMRobot = "panda") -> list[MBMProblem]:
    """The problems of ``families`` (default: all seven, in :data:`FAMILIES` order), the first
    ``limit`` of each (by file number; default all 100), of ``robot`` (:data:`ROBOTS`)."""
    robot = mbm_robot(robot)
    families = list(FAMILIES if families is None else families)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown MBM families {unknown} (one of {', '.join(FAMILIES)})")
    root = mbm_resources(robot) / "problems"
    problems = []
    for family in families:
        folder = root / f"{family}_{robot.name}"
        indices = sorted(int(p.stem[len("request"):]) for p in folder.glob("request[0-9][0-9][0-9][0-9].yaml"))
        for index in indices[:limit]:
            request = folder / f"request{index:04d}.yaml"
            try:
                start, goal = read_request(request.read_text(), robot)
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{request}: {error}") from None
            problems.append(MBMProblem(family, index, (folder / f"scene{index:04d}.yaml").read_text(), start, goal,
                                       robot.arm_joints, robot.name))
    return problems


def reference_self_pairs(chain, srdf: str, robot: str | MBMRobot = "panda") -> tuple[tuple[str, str], ...]:
    """The link pairs the exact reference checks for self collision: every pair of links with
    collision geometry, less the adjacent ones (the same rigid body, or a body and its parent)
    and those the SRDF disables. Unlike the planner's pairs, none is dropped by sampling."""
    from ros_torch_kin.collision.self_collision import adjacent_link_pairs, srdf_disabled_pairs
    from ros_torch_kin.collision.urdf_geometry import read_collision_shapes

    with_geometry = {shape.link for shape in read_collision_shapes(urdf_text(robot))[0]}
    names = chain.link_names
    links = sorted(chain.link_index(n) for n in with_geometry if chain.has_link(n))
    disabled = set(adjacent_link_pairs(chain)) | set(srdf_disabled_pairs(srdf, chain)[0])
    return tuple((names[a], names[b]) for i, a in enumerate(links) for b in links[i + 1:] if (a, b) not in disabled)


def mbm_reference(chain=None, robot: str | MBMRobot = "panda"):
    """The exact reference (bench/motion_scenes.py ``ExactReference``) on the robot's MBM URDF's
    collision meshes, checking :func:`reference_self_pairs`; call ``set_scene`` before use."""
    import torch

    from motion_scenes import ExactReference
    from ros_torch_kin.kinematics import Chain

    if chain is None:
        chain = Chain.from_urdf(urdf_text(robot), device="cpu", dtype=torch.float64)
    return ExactReference(urdf_path(robot), [mbm_resources(robot)], chain,
                          reference_self_pairs(chain, srdf_text(robot), robot))
