"""The collision shapes a URDF declares: every ``<collision>`` of every ``<link>``, read from the XML.

Read with lxml directly, not through urdf_parser_py (which rejects some CAD-exported visual
markup): only ``<link>/<collision>`` elements are looked at, everything else is ignored.

Units: m, rad. Frames: each shape's ``origin`` places the shape in its link's frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..kinematics.urdf import rpy_to_matrix

ShapeKind = Literal["sphere", "box", "cylinder", "capsule", "mesh"]

#: Geometry elements understood, with the size attributes each needs.
_SIZE_ATTRIBUTES = {
    "sphere": ("radius",),
    "box": ("size",),
    "cylinder": ("radius", "length"),
    "capsule": ("radius", "length"),
    "mesh": (),
}


@dataclass(frozen=True, eq=False)
class CollisionShape:
    """One ``<collision>`` geometry of a link.

    ``kind``: 'sphere' (``radius``), 'box' (``size``: full edge lengths (3,) along the shape's
    x, y, z), 'cylinder' / 'capsule' (``radius``; ``length``: the cylindrical part along the
    shape's z, centred on its origin; a capsule adds hemispheres of ``radius`` at both ends) or
    'mesh' (``filename`` as written in the URDF, ``scale`` (3,) applied to the file's vertices).
    ``origin`` (4, 4) float64: the shape frame in the link frame (URDF ``<origin xyz rpy>``).
    Sizes in m; unused ones are 0.
    """

    link: str
    kind: ShapeKind
    origin: np.ndarray
    radius: float = 0.0
    length: float = 0.0
    size: tuple[float, float, float] = (0.0, 0.0, 0.0)
    filename: str = ""
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    name: str = field(default="")

    def describe(self) -> str:
        """A short human-readable label, e.g. "link 'panda_link1' mesh 'package://...'"."""
        what = f"mesh '{self.filename}'" if self.kind == "mesh" else self.kind
        return f"link '{self.link}' {what}"


def origin_matrix(xyz: tuple[float, float, float], rpy: tuple[float, float, float]) -> np.ndarray:
    """(4, 4) float64 transform from a URDF origin: translation xyz (m), fixed-axis roll, pitch,
    yaw (rad), rotation Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    T = np.eye(4)
    T[:3, :3] = rpy_to_matrix(rpy)
    T[:3, 3] = xyz
    return T


def read_collision_shapes(urdf: str) -> tuple[list[CollisionShape], list[str]]:
    """Every collision shape of every link of a URDF string, in document order.

    Returns (shapes, warnings): a ``<collision>`` with no or an unknown geometry element is
    skipped with a warning naming its link. Raises ValueError for XML that is not well formed,
    and for a non-finite or non-positive size (naming the link and the attribute).
    """
    from lxml import etree  # lazy: importing the package does not pay for lxml

    try:
        root = etree.fromstring(urdf.encode("utf-8"), etree.XMLParser(remove_comments=True))
    except etree.XMLSyntaxError as error:
        raise ValueError(f"the URDF is not well-formed XML: {error}") from None
    shapes: list[CollisionShape] = []
    warnings: list[str] = []
    for link in root.iter("link"):
        link_name = link.get("name", "")
        for collision in link.findall("collision"):
            shape = _read_collision(link_name, collision, warnings)
            if shape is not None:
                shapes.append(shape)
    return shapes, warnings


def _read_collision(link: str, collision, warnings: list[str]) -> CollisionShape | None:
    geometry = collision.find("geometry")
    elements = [child for child in (geometry if geometry is not None else ()) if isinstance(child.tag, str)]
    if not elements:
        warnings.append(f"link '{link}': a <collision> without geometry was skipped")
        return None
    element = elements[0]
    kind = element.tag
    if kind not in _SIZE_ATTRIBUTES:
        warnings.append(f"link '{link}': unknown collision geometry <{kind}> was skipped")
        return None
    origin = _read_origin(link, collision.find("origin"))
    name = collision.get("name", "")
    if kind == "mesh":
        filename = element.get("filename", "")
        if not filename:
            raise ValueError(f"link '{link}': <mesh> has no 'filename' attribute")
        scale = _read_numbers(link, element, "scale", 3, default=(1.0, 1.0, 1.0))
        _require_positive(link, "mesh", "scale", scale)
        return CollisionShape(link, "mesh", origin, filename=filename, scale=scale, name=name)
    if kind == "box":
        size = _read_numbers(link, element, "size", 3)
        _require_positive(link, kind, "size", size)
        return CollisionShape(link, "box", origin, size=size, name=name)
    values = {}
    for attribute in _SIZE_ATTRIBUTES[kind]:
        (value,) = _read_numbers(link, element, attribute, 1)
        _require_positive(link, kind, attribute, (value,))
        values[attribute] = value
    return CollisionShape(link, kind, origin, name=name, **values)


def _read_origin(link: str, element) -> np.ndarray:
    if element is None:
        return np.eye(4)
    xyz = _read_numbers(link, element, "xyz", 3, default=(0.0, 0.0, 0.0))
    rpy = _read_numbers(link, element, "rpy", 3, default=(0.0, 0.0, 0.0))
    for attribute, values in (("xyz", xyz), ("rpy", rpy)):
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"link '{link}': collision <origin {attribute}> is not finite: {values}")
    return origin_matrix(xyz, rpy)


def _read_numbers(link: str, element, attribute: str, count: int, default=None) -> tuple[float, ...]:
    text = element.get(attribute)
    if text is None:
        if default is None:
            raise ValueError(f"link '{link}': <{element.tag}> has no '{attribute}' attribute")
        return tuple(default)
    try:
        values = tuple(float(v) for v in text.split())
    except ValueError:
        raise ValueError(f"link '{link}': <{element.tag} {attribute}='{text}'> is not a number list") from None
    if len(values) != count:
        raise ValueError(f"link '{link}': <{element.tag} {attribute}='{text}'> needs {count} numbers")
    return values


def _require_positive(link: str, kind: str, attribute: str, values) -> None:
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(
            f"link '{link}': <{kind} {attribute}> must be finite and positive, got {tuple(values)}"
        )
