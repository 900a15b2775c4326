"""What the node checks collisions against: the world obstacles and the served robot's collision
model paired with them. Immutable and swapped by one assignment, like the served model, so a
request keeps the scene it started with while ~/update_scene installs a new one."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..collision import CollisionChecker, Scene
from .served_model import ServedModel


@dataclass(frozen=True)
class WorldState:
    """``scene``: the obstacles (root frame); ``version`` grows by one per change;
    ``checker``: the robot's spheres and self pairs against ``scene`` (None without a collision
    model)."""

    scene: Scene = field(default_factory=Scene)
    version: int = 0
    checker: CollisionChecker | None = None

    def for_model(self, model: ServedModel) -> "WorldState":
        """The same scene against a newly served model's collision model."""
        checker = None if model.collision is None else model.collision.with_scene(self.scene)
        return replace(self, checker=checker)

    def with_scene(self, scene: Scene) -> "WorldState":
        """A new scene (version + 1), paired with the same collision model."""
        checker = None if self.checker is None else self.checker.with_scene(scene)
        return WorldState(scene=scene, version=self.version + 1, checker=checker)
