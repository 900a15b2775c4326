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


def checker_for(checker: CollisionChecker, ignore_world: bool, ignore_self: bool) -> CollisionChecker:
    """``checker`` without the world obstacles and/or without the self pairs."""
    if ignore_world:
        checker = checker.with_scene(Scene())
    return checker.without_self_pairs() if ignore_self else checker


def serve_check_collision(model: ServedModel, settings: Settings, request, response, world: WorldState):
    checker = checker_for(require_checker(world), request.ignore_world, request.ignore_self)
    margin = request_margin(request.margin, settings)
    q, columns, _ = request_positions(model, settings, request)
    chain = model.chain
    with torch.no_grad():
        q_tensor = convert.to_tensor(chain, q)
        distances = checker.distances(q_tensor)
        minimum = convert.to_numpy(distances.min_distance)
        self_closer = convert.to_numpy(distances.self_distance < distances.world_distance).astype(bool)
        sphere_links = distances.sphere_links.cpu().numpy()
        link_names = np.array(chain.link_names, dtype=object)
        self_a = sphere_links[distances.self_sphere_a.cpu().numpy()] if checker.self_pairs.num_sphere_pairs else None
        self_b = sphere_links[distances.self_sphere_b.cpu().numpy()] if checker.self_pairs.num_sphere_pairs else None
        pair = distances.nearest_self_pair.cpu().numpy()
        world_link = link_names[sphere_links[distances.nearest_sphere.cpu().numpy()]] if len(sphere_links) else None
        obstacle_ids = np.array(distances.obstacle_ids + ("",), dtype=object)
        obstacle = obstacle_ids[distances.nearest_obstacle.cpu().numpy()] if distances.obstacle_ids else None
        B = q.shape[0]
        link_a, link_b = np.full(B, "", dtype=object), np.full(B, "", dtype=object)
        if obstacle is not None:
            link_a[~self_closer], link_b[~self_closer] = world_link[~self_closer], obstacle[~self_closer]
        if self_a is not None:
            link_a[self_closer] = link_names[self_a[pair[self_closer]]]
            link_b[self_closer] = link_names[self_b[pair[self_closer]]]
        if request.compute_gradient:
            cost, gradient = checker.penalty(q_tensor, margin)
            gradient = convert.to_numpy(gradient)
            response.costs = convert.pack(convert.to_numpy(cost))
            response.gradients = convert.pack(gradient if columns is None else gradient[:, columns])
    response.batch_size = B
    response.joint_names = column_names(model, request)
    response.in_collision = (minimum < margin).tolist()
    response.min_distance = convert.pack(np.where(np.isfinite(minimum), minimum, NOTHING_CHECKED))
    response.link_a, response.link_b = link_a.tolist(), link_b.tolist()
    kinds = np.where(self_closer, CheckCollision.Response.SELF, CheckCollision.Response.WORLD)
    response.pair_kind = kinds.astype(np.uint8).tolist()
    response.success, response.message = True, ""
    return response


def serve_collision_model(model: ServedModel, settings: Settings, request, response):
    checker = model.collision
    if checker is None:
        raise RequestError(NO_COLLISION_MODEL)
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
    response.success, response.message = True, ""
    return response
