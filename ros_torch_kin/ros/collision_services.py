"""~/check_collision (CheckCollision) and ~/get_collision_model (GetCollisionModel): the robot's
collision model over ROS. Checks in numpy first (see :mod:`.convert`), then one batched call of
the collision core; every array is filled without a Python loop over the batch."""

from __future__ import annotations

import numpy as np
import torch

from ..collision import CollisionChecker, Scene
from ..srv import CheckCollision
from . import convert
from .convert import RequestError
from .handlers import column_names, request_positions
from .parameters import Settings
from .served_model import ServedModel
from .world_state import WorldState

#: An unchecked distance (no obstacle, no self pair) is +inf in the library and this over ROS.
NOTHING_CHECKED = 1e300
#: Largest clearance margin a request may ask for, m.
MAX_MARGIN = 100.0

NO_COLLISION_MODEL = "no collision model: the collision_checking parameter is false"


def require_checker(world: WorldState) -> CollisionChecker:
    if world.checker is None:
        raise RequestError(NO_COLLISION_MODEL)
    return world.checker


def request_margin(value: float, settings: Settings, field: str = "margin") -> float:
    """A request's clearance (m): its own when positive, else the node's collision_margin."""
    return convert.value_or_default(value, settings.collision_margin, MAX_MARGIN, field, " m")


def checker_for(checker, ignore_world: bool, ignore_self: bool):
    """``checker`` (a CollisionChecker or TreeCollisionChecker) without the world obstacles
    and/or without the self pairs."""
    if ignore_world:
        checker = checker.with_scene(Scene())
    return checker.without_self_pairs() if ignore_self else checker


#: How far beyond the margin (m) ~/check_collision reports the tight model's exact distance;
#: farther, min_distance is a lower bound (the larger of the coarse and the tight bounds). The
#: cost grows fast with it: 4,096 random arm configurations among three obstacles took 0.3 s at
#: 0, 0.6 s at 2 cm and 9 s at 10 cm on this CPU.
EXACT_RANGE = 0.02


def serve_check_collision(model: ServedModel, settings: Settings, request, response, world: WorldState):
    checker = checker_for(require_checker(world), request.ignore_world, request.ignore_self)
    margin = request_margin(request.margin, settings)
    q, columns, _ = request_positions(model, settings, request)
    chain = model.chain
    with torch.no_grad():
        q_tensor = convert.to_tensor(chain, q)
        if world.verdict is not None:
            verdict = checker_for(world.verdict, request.ignore_world, request.ignore_self)
            _serve_tight_check(verdict, checker, q_tensor, margin, response)
        else:
            _serve_coarse_check(checker, q_tensor, margin, response)
        if request.compute_gradient:
            cost, gradient = checker.penalty(q_tensor, margin)
            gradient = convert.to_numpy(gradient)
            response.costs = convert.pack(convert.to_numpy(cost))
            response.gradients = convert.pack(gradient if columns is None else gradient[:, columns])
    response.batch_size = q.shape[0]
    response.joint_names = column_names(model, request)
    response.success, response.message = True, ""
    return response


def _serve_tight_check(verdict, coarse: CollisionChecker, q: torch.Tensor, margin: float, response) -> None:
    """Verdicts from the tight model (its leaves' triangles deciding a grazing contact); distances
    exact within EXACT_RANGE of the margin (the leaf spheres'), beyond it the larger of the two
    models' lower bounds, and at least the margin where the verdict finds no contact; the pair
    from whichever model gave it."""
    tight = verdict.distances(q, margin + EXACT_RANGE)
    # at the validity margin the triangles may lift a grazing contact (self, or with a primitive) the spheres report
    contact = ~verdict.clear(q, margin) if verdict.decides_by_triangles(margin) else tight.min_distance < margin
    loose = coarse.distances(q)
    world = torch.maximum(tight.world_distance, loose.world_distance)
    own = torch.maximum(tight.self_distance, loose.self_distance)
    nearest = torch.minimum(world, own)
    minimum = convert.to_numpy(torch.where(contact, nearest, nearest.clamp(min=margin)))
    self_closer = convert.to_numpy(own < world).astype(bool)
    coarse_pairs = _coarse_pairs(loose, coarse, self_closer)
    link_a, link_b = [], []
    for b, (a, other) in enumerate(tight.pairs):
        if not a:  # nothing within the exact range: the coarse model's closest pair
            a, other = coarse_pairs[0][b], coarse_pairs[1][b]
        link_a.append(a)
        link_b.append(other)
    response.in_collision = convert.to_numpy(contact).astype(bool).tolist()
    response.min_distance = convert.pack(np.where(np.isfinite(minimum), minimum, NOTHING_CHECKED))
    response.link_a, response.link_b = link_a, link_b
    kinds = np.where(self_closer, CheckCollision.Response.SELF, CheckCollision.Response.WORLD)
    response.pair_kind = kinds.astype(np.uint8).tolist()


def _coarse_pairs(distances, checker: CollisionChecker, self_closer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per configuration the coarse model's closest pair names (link, link or obstacle id)."""
    chain_names = np.array(distances.link_names, dtype=object)
    sphere_links = distances.sphere_links.cpu().numpy()
    B = self_closer.shape[0]
    link_a, link_b = np.full(B, "", dtype=object), np.full(B, "", dtype=object)
    if distances.obstacle_ids and len(sphere_links):
        world_link = chain_names[sphere_links[distances.nearest_sphere.cpu().numpy()]]
        obstacle = np.array(distances.obstacle_ids + ("",), dtype=object)[distances.nearest_obstacle.cpu().numpy()]
        link_a[~self_closer], link_b[~self_closer] = world_link[~self_closer], obstacle[~self_closer]
    if checker.self_pairs.num_sphere_pairs:
        pair = distances.nearest_self_pair.cpu().numpy()
        self_a = sphere_links[distances.self_sphere_a.cpu().numpy()]
        self_b = sphere_links[distances.self_sphere_b.cpu().numpy()]
        link_a[self_closer] = chain_names[self_a[pair[self_closer]]]
        link_b[self_closer] = chain_names[self_b[pair[self_closer]]]
    return link_a, link_b


def _serve_coarse_check(checker: CollisionChecker, q_tensor: torch.Tensor, margin: float, response) -> None:
    """Verdicts and distances from the coarse spheres alone (collision_verdict 'coarse')."""
    distances = checker.distances(q_tensor)
    minimum = convert.to_numpy(distances.min_distance)
    self_closer = convert.to_numpy(distances.self_distance < distances.world_distance).astype(bool)
    link_a, link_b = _coarse_pairs(distances, checker, self_closer)
    response.in_collision = (minimum < margin).tolist()
    response.min_distance = convert.pack(np.where(np.isfinite(minimum), minimum, NOTHING_CHECKED))
    response.link_a, response.link_b = link_a.tolist(), link_b.tolist()
    kinds = np.where(self_closer, CheckCollision.Response.SELF, CheckCollision.Response.WORLD)
    response.pair_kind = kinds.astype(np.uint8).tolist()


def _attached_note(checker: CollisionChecker) -> str:
    """'carrying box (panda_hand, spheres 80-91)' for each attached object, '' for none."""
    if not checker.attached:
        return ""
    bodies = checker._bodies.cpu()
    L = checker.chain.num_links
    parts = []
    for k, obj in enumerate(checker.attached):
        index = torch.nonzero(bodies == L + k).flatten()
        parts.append(f"{obj.id} ({obj.link}, spheres {int(index.min())}-{int(index.max())})")
    return "carrying " + ", ".join(parts)


def serve_collision_model(model: ServedModel, settings: Settings, request, response, world: WorldState | None = None):
    """The served collision model; with ``world``, as it checks now: the carried objects' spheres
    follow the robot's (each on its parent link, centres in that link's frame, so a drawing of
    the spheres shows them), their pairs are listed by object id ("box" - "panda_link3"; not
    checked: its parent link and touch links, with the reason), and ``message`` names them."""
    checker = model.collision
    if checker is None:
        raise RequestError(NO_COLLISION_MODEL)
    if world is not None and world.checker is not None and world.attached:
        checker = world.checker
    spheres, pairs = checker.spheres, checker.self_pairs
    counts = spheres.count_per_link()
    response.link_names = list(spheres.link_names)
    response.sphere_counts = [counts[name] for name in spheres.link_names]
    response.sphere_sources = list(spheres.source)
    response.links_without_geometry = list(spheres.links_without_geometry)
    response.sphere_links = spheres.sphere_links.cpu().numpy().astype(np.uint32).tolist()
    response.sphere_centers = convert.pack(convert.to_numpy(spheres.centers))
    response.sphere_radii = convert.pack(convert.to_numpy(spheres.radii))
    response.sphere_slack = convert.pack(convert.to_numpy(spheres.slack))
    response.enabled_link_a = [a for a, _ in pairs.enabled]
    response.enabled_link_b = [b for _, b in pairs.enabled]
    disabled = list(pairs.disabled.items())
    response.disabled_link_a = [a for (a, _), _ in disabled]
    response.disabled_link_b = [b for (_, b), _ in disabled]
    response.disabled_reasons = [reason for _, reason in disabled]
    response.warnings = list(spheres.warnings + pairs.warnings)
    response.success, response.message = True, _attached_note(checker)
    return response
