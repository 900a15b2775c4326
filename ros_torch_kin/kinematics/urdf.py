"""URDF string -> validated :class:`RobotDescription` (float64), following the URDF spec.

Spec points that other libraries get wrong and that we follow: a missing ``<axis>`` is (1, 0, 0);
a non-unit axis is normalised; ``<mimic>`` multiplier defaults to 1 and offset to 0; continuous
joints are unbounded. Everything the tree cannot be built from is a ``ValueError`` that names the
joint or link at fault.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import replace
from typing import Literal

import numpy as np

from .description import (
    CONTINUOUS,
    FIXED,
    MOVABLE_TYPES,
    PRISMATIC,
    REVOLUTE,
    JointDescription,
    Mimic,
    RobotDescription,
)

FloatingJointPolicy = Literal["error", "fixed"]

# urdf_parser_py reports tolerated problems through a module-level hook; we swap it per call.
_PARSER_LOCK = threading.Lock()


def parse_urdf(urdf: str, floating_joints: FloatingJointPolicy = "error") -> RobotDescription:
    """Parse and validate a URDF document given as a string (what ``robot_description`` holds).

    floating_joints: ``"error"`` (default) rejects ``floating`` and ``planar`` joints with a
    ``ValueError`` naming the joint; ``"fixed"`` treats them as fixed at their ``<origin>`` (for a
    mobile base whose pose you handle elsewhere) and records a warning.

    Raises ValueError with a message that names the problem.
    """
    if floating_joints not in ("error", "fixed"):
        raise ValueError(f"floating_joints must be 'error' or 'fixed', not {floating_joints!r}")
    if not isinstance(urdf, str) or not urdf.strip():
        raise ValueError("the URDF is empty")
    robot, warnings = _read_xml(urdf)

    link_names = [link.name for link in robot.links]
    if not link_names:
        raise ValueError(f"robot '{robot.name}' has no <link>")
    _require_unique("link", link_names)
    _require_unique("joint", [j.name for j in robot.joints])

    known_links = set(link_names)
    joints: dict[str, JointDescription] = {}
    for raw in robot.joints:
        joint = _joint_from_parsed(raw, known_links, floating_joints, warnings)
        joints[joint.name] = joint
    joints = _resolve_mimics(joints, warnings)

    parent_of: dict[str, JointDescription] = {}
    children: dict[str, list[JointDescription]] = {name: [] for name in link_names}
    for joint in joints.values():
        if joint.child in parent_of:
            raise ValueError(
                f"link '{joint.child}' has two parent joints: '{parent_of[joint.child].name}' "
                f"and '{joint.name}' (a URDF must be a tree)"
            )
        parent_of[joint.child] = joint
        children[joint.parent].append(joint)

    roots = [name for name in link_names if name not in parent_of]
    if len(roots) > 1:
        raise ValueError(
            f"the URDF has {summarize_names(roots, 'root links')}; a kinematic tree has "
            "exactly one link without a parent joint"
        )
    if not roots:
        raise ValueError(
            "every link has a parent joint, so the joints form a cycle: "
            + _describe_cycle(link_names[0], parent_of)
        )

    order: list[str] = []
    stack = [roots[0]]
    while stack:
        link = stack.pop()
        order.append(link)
        stack.extend(j.child for j in reversed(children[link]))
    if len(order) != len(link_names):
        unreached = next(name for name in link_names if name not in set(order))
        raise ValueError("the joints form a cycle: " + _describe_cycle(unreached, parent_of))

    return RobotDescription(
        name=robot.name,
        link_names=tuple(order),
        parent_joint=tuple(parent_of.get(name) for name in order),
        warnings=tuple(warnings),
    )


def rpy_to_matrix(rpy: Iterable[float]) -> np.ndarray:
    """URDF fixed-axis roll, pitch, yaw (rad) -> (3, 3) rotation Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    r, p, y = (float(v) for v in rpy)
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


#: The top-level URDF elements kinematics needs; the rest (transmission, gazebo, ros2_control,
#: ...) is dropped before urdf_parser_py sees it, so a malformed plugin block cannot reject a robot
#: that robot_state_publisher accepts.
_KINEMATIC_ELEMENTS = ("link", "joint", "material")


def _read_xml(urdf: str):
    # Imported here so that importing ros_torch_kin does not pay for lxml until a URDF is parsed.
    from lxml import etree

    try:  # bytes: lxml refuses str documents that declare an encoding
        root = etree.fromstring(urdf.encode("utf-8"), etree.XMLParser(remove_comments=True))
    except etree.XMLSyntaxError as error:
        raise ValueError(f"the URDF is not well-formed XML: {error}") from None
    if root.tag != "robot":
        raise ValueError(f"the URDF's root element is <{root.tag}>, not <robot>")
    warnings: list[str] = []
    skipped = sorted({child.tag for child in root if child.tag not in _KINEMATIC_ELEMENTS and isinstance(child.tag, str)})
    for child in [c for c in root if c.tag not in _KINEMATIC_ELEMENTS]:
        root.remove(child)
    if skipped:
        warnings.append("ignored non-kinematic elements: " + ", ".join(f"<{tag}>" for tag in skipped))
    try:
        robot = _parse_tree(root, warnings)
    except ValueError as error:
        # CAD exporters write visual markup urdf_parser_py rejects (an empty <texture/>, ...) that
        # urdfdom, RViz and Pinocchio accept. Kinematics never reads visuals, materials, inertials
        # or (here) collisions: drop them and try again; the collision model reads <collision> itself.
        stripped = _without_link_contents(root)
        if stripped == 0:
            raise
        warnings = [w for w in warnings if not w.startswith("urdf_parser_py:")]
        robot = _parse_tree(root, warnings)
        warnings.insert(0,  # first: the parser's own warnings may be cut to MAX_WARNINGS
            f"skipped the <visual>, <collision>, <inertial> and <material> markup of the links "
            f"({stripped} elements), which urdf_parser_py could not read ({error}); kinematics "
            "does not use it"
        )
    return robot, _summarize_warnings(warnings)


#: Link children that kinematics does not read (the collision model parses <collision> itself).
_NON_KINEMATIC_LINK_CHILDREN = ("visual", "collision", "inertial")


def _without_link_contents(root) -> int:
    """Remove every link's visual, collision and inertial elements and the top-level materials, in
    place; return how many elements were removed."""
    removed = [c for c in root if c.tag == "material"]
    for link in root.iter("link"):
        removed += [c for c in link if c.tag in _NON_KINEMATIC_LINK_CHILDREN]
    for element in removed:
        element.getparent().remove(element)
    return len(removed)


def _parse_tree(root, warnings: list[str]):
    from lxml import etree
    from urdf_parser_py import urdf as urdf_module
    from urdf_parser_py.xml_reflection import core as reflection_core

    with _PARSER_LOCK:
        previous = reflection_core.on_error
        reflection_core.on_error = lambda message: warnings.append(f"urdf_parser_py: {message}")
        try:
            return urdf_module.URDF.from_xml_string(etree.tostring(root))
        except Exception as error:  # urdf_parser_py raises ParseError, AssertionError, ...
            detail = " ".join(str(error).split()) or type(error).__name__
            raise ValueError(f"the URDF could not be parsed: {detail[:500]}") from None
        finally:
            reflection_core.on_error = previous


#: At most this many distinct parser warnings are kept; the rest are counted.
MAX_WARNINGS = 20


def _summarize_warnings(warnings: list[str]) -> list[str]:
    distinct = list(dict.fromkeys(" ".join(w.split())[:300] for w in warnings))
    if len(distinct) <= MAX_WARNINGS:
        return distinct
    return distinct[:MAX_WARNINGS] + [f"... and {len(distinct) - MAX_WARNINGS:,} more parser warnings"]


def _require_unique(kind: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{kind} name '{name}' is used twice")
        seen.add(name)


def _joint_from_parsed(raw, known_links: set[str], floating_joints, warnings) -> JointDescription:
    name = raw.name
    for role, link in (("parent", raw.parent), ("child", raw.child)):
        if link not in known_links:
            raise ValueError(f"joint '{name}': {role} link '{link}' is not defined")
    if raw.parent == raw.child:
        raise ValueError(f"joint '{name}' has link '{raw.parent}' as both parent and child")

    T = np.eye(4)
    if raw.origin is not None:
        xyz = raw.origin.xyz if raw.origin.xyz is not None else (0.0, 0.0, 0.0)
        rpy = raw.origin.rpy if raw.origin.rpy is not None else (0.0, 0.0, 0.0)
        _require_finite(name, "<origin xyz>", xyz)
        _require_finite(name, "<origin rpy>", rpy)
        T[:3, :3] = rpy_to_matrix(rpy)
        T[:3, 3] = np.asarray(xyz, dtype=np.float64)
    _check_joint_extras(raw)

    joint_type = raw.type
    if joint_type in ("floating", "planar"):
        if floating_joints == "error":
            raise ValueError(
                f"joint '{name}' is {joint_type}: ros_torch_kin models revolute, continuous, "
                "prismatic and fixed joints; parse with floating_joints='fixed' to treat it as "
                "fixed at its <origin>"
            )
        warnings.append(f"joint '{name}' ({joint_type}) is treated as fixed at its <origin>")
        joint_type = FIXED
    if joint_type not in MOVABLE_TYPES + (FIXED,):
        raise ValueError(f"joint '{name}' has unsupported type '{joint_type}'")

    if joint_type == FIXED:
        if raw.mimic is not None:
            warnings.append(f"joint '{name}' is fixed; its <mimic> is ignored")
        return JointDescription(name, FIXED, raw.parent, raw.child, T, np.zeros(3))

    axis = np.asarray(raw.axis if raw.axis is not None else (1.0, 0.0, 0.0), dtype=np.float64)
    _require_finite(name, "<axis xyz>", axis)
    scale = float(np.abs(axis).max())  # divide by it first: the norm of (1e300, 1e300, 0) overflows
    if scale < 1e-12:
        raise ValueError(f"joint '{name}': <axis> has zero length")
    axis = axis / scale
    axis = axis / np.linalg.norm(axis)

    lower, upper, velocity, effort = -np.inf, np.inf, np.inf, np.inf
    limit = raw.limit
    if limit is not None:
        for attribute in ("lower", "upper", "velocity", "effort"):
            _require_finite(name, f"<limit {attribute}>", getattr(limit, attribute, None))
        velocity = _limit_value(limit.velocity, np.inf)
        effort = _limit_value(limit.effort, np.inf)
        if joint_type != CONTINUOUS:
            lower = _limit_value(limit.lower, 0.0)
            upper = _limit_value(limit.upper, 0.0)
    elif joint_type in (REVOLUTE, PRISMATIC):
        warnings.append(f"joint '{name}' ({joint_type}) has no <limit>; treated as unbounded")
    if lower > upper:
        raise ValueError(f"joint '{name}': lower limit {lower} is above upper limit {upper}")

    mimic = None
    if raw.mimic is not None:
        _require_finite(name, "<mimic multiplier>", raw.mimic.multiplier)
        _require_finite(name, "<mimic offset>", raw.mimic.offset)
        mimic = Mimic(
            leader=raw.mimic.joint,
            multiplier=_limit_value(raw.mimic.multiplier, 1.0),
            offset=_limit_value(raw.mimic.offset, 0.0),
        )
    return JointDescription(
        name, joint_type, raw.parent, raw.child, T, axis, lower, upper, velocity, effort, mimic
    )


def _limit_value(value, default: float) -> float:
    return default if value is None else float(value)


def _require_finite(joint: str, attribute: str, values) -> None:
    """ValueError naming the joint and attribute unless every given number is finite (None: not
    given). urdfdom, and so robot_state_publisher and RViz, refuse such descriptions too."""
    if values is None:
        return
    array = np.atleast_1d(np.asarray(values, dtype=np.float64))
    bad = array[~np.isfinite(array)]
    if bad.size:
        raise ValueError(
            f"joint '{joint}': {attribute} is {bad[0]}; every number of the kinematic model must be finite"
        )


#: Optional joint elements whose numbers must be finite although kinematics does not use them.
_JOINT_EXTRAS = {
    "safety_controller": ("k_velocity", "k_position", "soft_lower_limit", "soft_upper_limit"),
    "dynamics": ("damping", "friction"),
    "calibration": ("rising", "falling", "reference_position"),
}


def _check_joint_extras(raw) -> None:
    for element, attributes in _JOINT_EXTRAS.items():
        parsed = getattr(raw, element, None)
        if parsed is None:
            continue
        for attribute in attributes:
            _require_finite(raw.name, f"<{element} {attribute}>", getattr(parsed, attribute, None))


def summarize_names(names, what: str, shown: int = 5) -> str:
    """'3 root links: a, b, c' or, for a long list, '192,308 root links: a, b, c, d, e, …' (a
    message never carries an unbounded list)."""
    names = list(names)
    listed = ", ".join(names[:shown]) + (", …" if len(names) > shown else "")
    return f"{len(names):,} {what} ({listed})"


def _resolve_mimics(joints: dict[str, JointDescription], warnings) -> dict[str, JointDescription]:
    """Point every mimic at an independent joint, composing mimic-of-mimic chains."""
    resolved = dict(joints)
    for name, joint in joints.items():
        if joint.mimic is None:
            continue
        multiplier, offset, seen, current = 1.0, 0.0, [name], joint
        while current.mimic is not None:
            leader_name = current.mimic.leader
            if leader_name not in joints:
                raise ValueError(f"joint '{current.name}' mimics unknown joint '{leader_name}'")
            leader = joints[leader_name]
            if not leader.is_movable:
                raise ValueError(
                    f"joint '{current.name}' mimics joint '{leader_name}', which is {leader.type}"
                )
            if leader_name in seen:
                raise ValueError("mimic joints form a cycle: " + " -> ".join(seen + [leader_name]))
            # q_current = m * q_leader + o, and q_joint = multiplier * q_current + offset
            offset += multiplier * current.mimic.offset
            multiplier *= current.mimic.multiplier
            seen.append(leader_name)
            current = leader
        if len(seen) > 2:
            warnings.append(f"joint '{name}' mimics a mimic joint; it follows '{current.name}'")
        resolved[name] = replace(joint, mimic=Mimic(current.name, multiplier, offset))
    return resolved


def _describe_cycle(start: str, parent_of: dict[str, JointDescription]) -> str:
    path, link = [], start
    while link in parent_of and parent_of[link].name not in path:
        path.append(parent_of[link].name)
        link = parent_of[link].parent
    return "joints " + ", ".join(f"'{name}'" for name in path)
