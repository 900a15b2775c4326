"""What the node checks collisions against: the world obstacles and the served robot's collision
model paired with them. Immutable and swapped by one assignment, like the served model, so a
request keeps the scene it started with while ~/update_scene installs a new one."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..collision import AttachedObject, CollisionChecker, Scene
from ..collision.tree_checker import TreeCollisionChecker
from .served_model import ServedModel


def _missing_links(obj: AttachedObject, chain) -> bool:
    return not all(chain.has_link(name) for name in (obj.link,) + obj.touch_links)


def _paired(checker, verdict, scene: Scene, attached: tuple):
    """(coarse, tight) checkers against ``scene`` carrying ``attached`` (None, None without a
    coarse one; tight None without one): ``with_scene`` only swaps the scene, ``with_attached``
    builds each once (not at all when nothing is carried before or after), the tight one on the
    coarse one's objects."""
    if checker is None:
        return None, None
    checker = checker.with_scene(scene).with_attached(attached)
    return checker, None if verdict is None else verdict.with_scene(scene).with_attached(attached, coarse=checker)


@dataclass(frozen=True)
class WorldState:
    """``scene``: the obstacles (root frame); ``version`` grows by one per change;
    ``checker``: the robot's spheres and self pairs against ``scene`` (None without a collision
    model); ``attached``: the objects the robot carries (AttachedObject, poses in their links'
    frames), which both checkers include."""

    scene: Scene = field(default_factory=Scene)
    version: int = 0
    checker: CollisionChecker | None = None
    #: the tight model against ``scene`` when the served model has one (it decides validity;
    #: ``checker`` gives costs and gradients)
    verdict: TreeCollisionChecker | None = None
    attached: tuple[AttachedObject, ...] = ()

    @property
    def deciding(self) -> CollisionChecker | TreeCollisionChecker | None:
        """The checker whose verdict counts: the tight one, else the coarse one."""
        return self.verdict if self.verdict is not None else self.checker

    def for_model(self, model: ServedModel) -> "WorldState":
        """The same scene against a newly served model's collision model; attached objects whose
        link or touch links the new robot lacks are dropped (see :meth:`dropped_by`)."""
        attached = tuple(o for o in self.attached if not _missing_links(o, model.chain))
        checker, verdict = _paired(model.collision, model.verdict, self.scene, attached)
        return replace(self, checker=checker, verdict=verdict, attached=attached)

    def dropped_by(self, model: ServedModel) -> tuple[str, ...]:
        """Ids of the attached objects :meth:`for_model` would drop for ``model`` (for the log)."""
        return tuple(o.id for o in self.attached if _missing_links(o, model.chain))

    def with_attached(self, scene: Scene, attached) -> "WorldState":
        """A new scene and set of carried objects together (version + 1; ATTACH and DETACH move
        an object between the two in one change)."""
        attached = tuple(attached)
        checker, verdict = _paired(self.checker, self.verdict, scene, attached)
        return replace(self, scene=scene, version=self.version + 1, checker=checker, verdict=verdict,
                       attached=attached)

    def attached_object(self, id: str) -> AttachedObject | None:
        return next((o for o in self.attached if o.id == id), None)

    def with_scene(self, scene: Scene) -> "WorldState":
        """A new scene (version + 1), paired with the same collision model."""
        checker = None if self.checker is None else self.checker.with_scene(scene)
        verdict = None if self.verdict is None else self.verdict.with_scene(scene)
        return replace(self, scene=scene, version=self.version + 1, checker=checker, verdict=verdict)
