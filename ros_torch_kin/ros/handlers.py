"""Service logic: request -> checks (numpy) -> kinematics core -> response. No math here beyond
reordering columns; each handler reads one model snapshot, so a description swap cannot tear a
request. Failures raise RequestError; the node turns them into success=false."""

from __future__ import annotations

import numpy as np
import torch

from ..kinematics import (
    compute_jacobian,
    forward_kinematics,
    invert_transform,
    pose_xyzw_to_matrix,
    wrench_vector_jacobian_product,
)
from ..optim import pose_target_cost
from . import convert
from .convert import RequestError
from .parameters import Settings
from .served_model import ServedModel


def request_positions(model: ServedModel, settings: Settings, request):
    """(q (B, J) float64 in chain order after the joint-limit policy, the request's columns or
    None, within (B,) bool) from a request's joint_names and positions."""
    chain = model.chain
    q, columns = convert.read_positions(chain, request.joint_names, request.positions, settings.max_batch)
    q, within = convert.apply_limit_policy(
        chain, model.lower_limits, model.upper_limits, q, settings.joint_limit_policy
    )
    return q, columns, within


def column_names(model: ServedModel, request) -> list[str]:
    return list(request.joint_names) or list(model.chain.joint_names)


def serve_fk(model: ServedModel, settings: Settings, request, response):
    chain = model.chain
    q, _, within = request_positions(model, settings, request)
    links = convert.link_indices(chain, request.link_names) if request.link_names else list(range(chain.num_links))
    reference = request.reference_frame or settings.base_link or chain.root_link
    reference_index = convert.link_index(chain, reference, "reference_frame")
    relative = reference_index != 0
    selection = None if not request.link_names and not relative else links + [reference_index] * relative
    with torch.no_grad():
        T = forward_kinematics(chain, convert.to_tensor(chain, q), links=selection)
        if relative:
            T = invert_transform(T[:, -1:]) @ T[:, :-1]
    poses = convert.poses_xyzw(T)  # (B, K, 7)
    response.link_names = [chain.link_names[i] for i in links]
    response.reference_frame = reference
    response.batch_size = q.shape[0]
    response.poses = convert.pack(poses)
    response.within_limits = within.tolist()
    response.success = True
    response.message = ""
    return response


def serve_jacobian(model: ServedModel, settings: Settings, request, response):
    chain = model.chain
    q, columns, _ = request_positions(model, settings, request)
    link = request.link_name or settings.end_effector_link
    if not link:
        raise RequestError("link_name is empty and the node has no end_effector_link")
    index = convert.link_index(chain, link, "link_name")
    point = np.array([request.point.x, request.point.y, request.point.z], dtype=np.float64)
    convert.require_bounded(point, convert.MAX_COORDINATE, "point", "m", lambda i: "xyz"[i])
    with torch.no_grad():
        J, T = compute_jacobian(
            chain, convert.to_tensor(chain, q), index, point=convert.to_tensor(chain, point), return_pose=True
        )
        J = convert.to_numpy(J)  # (B, 6, J) in chain column order
    poses = convert.poses_xyzw(T)
    if columns is not None:
        J = J[:, :, columns]
    response.link_name = chain.link_names[index]
    response.joint_names = column_names(model, request)
    response.batch_size = q.shape[0]
    response.jacobians = convert.pack(J)
    response.poses = convert.pack(poses)
    response.success = True
    response.message = ""
    return response


POSE_TARGETS = 0
VECTOR_JACOBIAN_PRODUCT = 1


def serve_gradient(model: ServedModel, settings: Settings, request, response):
    chain = model.chain
    q, columns, _ = request_positions(model, settings, request)
    B = q.shape[0]
    names = list(request.link_names)
    if not names and request.mode == POSE_TARGETS and settings.end_effector_link:
        names = [settings.end_effector_link]
    if not names:
        raise RequestError("link_names is empty (and the node has no end_effector_link)")
    links = convert.link_indices(chain, names)
    K = len(links)
    if request.mode == POSE_TARGETS:
        targets = convert.poses_from_msgs(request.target_poses, "target_poses")
        if targets.shape[0] not in (K, B * K):
            raise RequestError(
                f"target_poses has {targets.shape[0]} poses; expected {K} (one per link) or "
                f"{B * K} (B x K, configuration-major)"
            )
        w_position = convert.weights(request.position_weights, K, "position_weights")
        w_orientation = convert.weights(request.orientation_weights, K, "orientation_weights")
        T_target = pose_xyzw_to_matrix(convert.to_tensor(chain, targets)).view(-1, K, 4, 4)
        q_tensor = convert.to_tensor(chain, q).requires_grad_()
        with torch.enable_grad():
            T = forward_kinematics(chain, q_tensor, links=links)  # analytical backward
            cost = pose_target_cost(
                T, T_target, convert.to_tensor(chain, w_position), convert.to_tensor(chain, w_orientation)
            )
            (gradient,) = torch.autograd.grad(cost.sum(), q_tensor)
        response.costs = convert.pack(convert.to_numpy(cost))
    elif request.mode == VECTOR_JACOBIAN_PRODUCT:
        forces = convert.as_float_array(request.forces)
        torques = convert.as_float_array(request.torques)
        for field, values in (("forces", forces), ("torques", torques)):
            if values.size != B * K * 3:
                raise RequestError(f"{field} has {values.size} values; expected B x K x 3 = {B * K * 3}")
            convert.require_bounded(values, convert.MAX_WEIGHT, field, "")
        with torch.no_grad():
            gradient = wrench_vector_jacobian_product(
                chain,
                convert.to_tensor(chain, q),
                torch.tensor(links, device=chain.device),
                convert.to_tensor(chain, forces.reshape(B, K, 3)),
                convert.to_tensor(chain, torques.reshape(B, K, 3)),
            )
        response.costs = convert.pack(np.zeros(0))
    else:
        raise RequestError(f"mode {request.mode} is unknown: use POSE_TARGETS (0) or VECTOR_JACOBIAN_PRODUCT (1)")
    gradient = convert.to_numpy(gradient)
    if columns is not None:
        gradient = gradient[:, columns]
    response.joint_names = column_names(model, request)
    response.batch_size = B
    response.gradients = convert.pack(gradient)
    response.success = True
    response.message = ""
    return response


def serve_robot_model(model: ServedModel, settings: Settings, request, response):
    chain = model.chain
    response.robot_name = chain.name
    response.root_link = chain.root_link
    response.base_link = settings.base_link
    response.end_effector_link = settings.end_effector_link
    response.joint_names = list(chain.joint_names)
    response.joint_types = list(chain.joint_types)
    response.lower_limits = convert.pack(model.lower_limits)
    response.upper_limits = convert.pack(model.upper_limits)
    response.velocity_limits = convert.pack(convert.to_numpy(chain.velocity_limits))
    response.effort_limits = convert.pack(convert.to_numpy(chain.effort_limits))
    response.link_names = list(chain.link_names)
    response.device = str(chain.device)
    response.dtype = str(chain.dtype).replace("torch.", "")
    response.max_batch = settings.max_batch
    response.joint_limit_policy = settings.joint_limit_policy
    response.description_source = model.source
    response.loaded_at.sec, response.loaded_at.nanosec = divmod(model.loaded_at_ns, 1_000_000_000)
    response.success = True
    response.message = ""
    return response
