"""What the node checks collisions against: the world obstacles and the served robot's collision
model paired with them. Immutable and swapped by one assignment, like the served model, so a
request keeps the scene it started with while ~/update_scene installs a new one."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..collision import CollisionChecker, Scene
from ..collision.tree_checker import TreeCollisionChecker
from .served_model import ServedModel


@dataclass(frozen=True)
class WorldState:
    """``scene``: the obstacles (root frame); ``version`` grows by one per change;
    ``checker``: the robot's spheres and self pairs against ``scene`` (None without a collision
    model)."""

    scene: Scene = field(default_factory=Scene)
    version: int = 0
    checker: CollisionChecker | None = None
    #: the tight model against ``scene`` when the served model has one (it decides validity;
    #: ``checker`` gives costs and gradients)
    verdict: TreeCollisionChecker | None = None

    @property
    def deciding(self) -> CollisionChecker | TreeCollisionChecker | None:
        """The checker whose verdict counts: the tight one, else the coarse one."""
        return self.verdict if self.verdict is not None else self.checker

    def for_model(self, model: ServedModel) -> "WorldState":
        """The same scene against a newly served model's collision model."""
        checker = None if model.collision is None else model.collision.with_scene(self.scene)
        verdict = None if model.verdict is None or checker is None else model.verdict.with_scene(self.scene)
        return replace(self, checker=checker, verdict=verdict)

    def with_scene(self, scene: Scene) -> "WorldState":
        """A new scene (version + 1), paired with the same collision model."""
        checker = None if self.checker is None else self.checker.with_scene(scene)
        verdict = None if self.verdict is None else self.verdict.with_scene(scene)
        return replace(self, scene=scene, version=self.version + 1, checker=checker, verdict=verdict)
