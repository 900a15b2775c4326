"""Robots bundled with ros_torch_kin (package data) and generated test chains."""

from __future__ import annotations

from importlib import resources

#: Name of the bundled default robot (a 7-DOF arm, see ``arm7.urdf``).
DEFAULT_ROBOT = "arm7"
#: Its end-effector link.
DEFAULT_END_EFFECTOR = "tool0"


def bundled_urdf(name: str = DEFAULT_ROBOT) -> str:
    """The URDF text of a robot shipped in this package (default: the 7-DOF arm)."""
    path = resources.files(__package__).joinpath(f"{name}.urdf")
    if not path.is_file():
        available = sorted(p.name[:-5] for p in resources.files(__package__).iterdir() if p.name.endswith(".urdf"))
        raise ValueError(f"no bundled robot '{name}'; available: {', '.join(available)}")
    return path.read_text()


def bundled_urdf_path(name: str = DEFAULT_ROBOT) -> str:
    """Filesystem path of a bundled URDF (for launch files and tools that want a file)."""
    bundled_urdf(name)  # raises for an unknown name
    return str(resources.files(__package__).joinpath(f"{name}.urdf"))
