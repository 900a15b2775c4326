"""A client for planners: numpy in, numpy out, over the node's services. No torch needed.

    import rclpy
    from ros_torch_kin.ros.client import KinematicsClient
    rclpy.init()
    client = KinematicsClient()                  # talks to /ros_torch_kin
    model = client.robot_model()
    poses = client.forward_kinematics(q)         # q (B, J) -> (B, L, 7): x y z qx qy qz qw
    J, ee = client.jacobian(q, "tool0")          # (B, 6, J), (B, 7)
    cost, grad = client.pose_target_gradient(q, ["tool0"], target)   # (B,), (B, J)

Each call raises :class:`KinematicsError` with the node's message when it answers success=false.
With ``node=None`` the client makes a private node and spins it while waiting; with your own node,
spin that node in another thread (e.g. a MultiThreadedExecutor) and the client waits on futures.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from ..action import PlanTrajectory
from ..msg import Obstacle
from ..srv import (
    CheckCollision,
    ComputeFK,
    ComputeGradient,
    ComputeIK,
    ComputeJacobian,
    GetCollisionModel,
    GetRobotModel,
    UpdateScene,
)
from .convert import as_float_array, pack, pose_msgs
from .qos import SERVICE_QOS


class KinematicsError(RuntimeError):
    """The node answered success=false; the message says why."""


@dataclass(frozen=True)
class RobotModel:
    """What GetRobotModel returns, as numpy."""

    name: str
    root_link: str
    base_link: str
    end_effector_link: str
    joint_names: tuple[str, ...]
    joint_types: tuple[str, ...]
    lower_limits: np.ndarray
    upper_limits: np.ndarray
    velocity_limits: np.ndarray
    effort_limits: np.ndarray
    link_names: tuple[str, ...]
    device: str
    dtype: str
    max_batch: int
    joint_limit_policy: str
    description_source: str


class KinematicsClient:
    def __init__(self, node: Node | None = None, server: str = "/ros_torch_kin", timeout: float = 30.0):
        self._own_node = node is None
        self.node = node or rclpy.create_node(f"ros_torch_kin_client_{os.getpid()}_{id(self):x}")
        self.timeout = timeout
        self._executor = None
        if self._own_node:
            self._executor = SingleThreadedExecutor()
            self._executor.add_node(self.node)
        server = server.rstrip("/")
        self._fk = self.node.create_client(ComputeFK, f"{server}/compute_fk", qos_profile=SERVICE_QOS)
        self._jacobian = self.node.create_client(ComputeJacobian, f"{server}/compute_jacobian", qos_profile=SERVICE_QOS)
        self._gradient = self.node.create_client(ComputeGradient, f"{server}/compute_gradient", qos_profile=SERVICE_QOS)
        self._model = self.node.create_client(GetRobotModel, f"{server}/get_robot_model", qos_profile=SERVICE_QOS)
        self._collision = self.node.create_client(CheckCollision, f"{server}/check_collision", qos_profile=SERVICE_QOS)
        self._collision_model = self.node.create_client(GetCollisionModel, f"{server}/get_collision_model", qos_profile=SERVICE_QOS)
        self._ik = self.node.create_client(ComputeIK, f"{server}/compute_ik", qos_profile=SERVICE_QOS)
        self._scene = self.node.create_client(UpdateScene, f"{server}/update_scene", qos_profile=SERVICE_QOS)
        from rclpy.action import ActionClient

        self._plan = ActionClient(self.node, PlanTrajectory, f"{server}/plan_trajectory")

    def wait_for_server(self, timeout: float | None = None) -> bool:
        timeout = self.timeout if timeout is None else timeout
        return all(c.wait_for_service(timeout_sec=timeout) for c in (self._fk, self._jacobian, self._gradient, self._model))

    def close(self) -> None:
        if self._own_node:
            self._executor.shutdown()
            self.node.destroy_node()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ calls
    def robot_model(self) -> RobotModel:
        r = self._call(self._model, GetRobotModel.Request())
        return RobotModel(
            r.robot_name, r.root_link, r.base_link, r.end_effector_link, tuple(r.joint_names),
            tuple(r.joint_types), as_float_array(r.lower_limits).copy(), as_float_array(r.upper_limits).copy(),
            as_float_array(r.velocity_limits).copy(), as_float_array(r.effort_limits).copy(),
            tuple(r.link_names), r.device, r.dtype, r.max_batch, r.joint_limit_policy, r.description_source,
        )

    def forward_kinematics(self, q, joint_names=(), links=(), reference_frame: str = "", full: bool = False):
        """q (B, J) or (J,) -> poses (B, L, 7) (or (L, 7)): x y z qx qy qz qw.
        With ``full``, returns the whole response's content: (poses, link_names, within_limits)."""
        q, single = _rows(q)
        request = ComputeFK.Request(joint_names=list(joint_names), link_names=list(links),
                                    reference_frame=reference_frame)
        request.positions = pack(q)
        r = self._call(self._fk, request)
        poses = as_float_array(r.poses).reshape(r.batch_size, len(r.link_names), 7)
        poses = poses[0] if single else poses
        return (poses, list(r.link_names), np.array(r.within_limits, dtype=bool)) if full else poses

    def jacobian(self, q, link: str = "", point=(0.0, 0.0, 0.0), joint_names=()):
        """q (B, J) -> (Jacobians (B, 6, J), link poses (B, 7)) in the root frame."""
        q, single = _rows(q)
        request = ComputeJacobian.Request(joint_names=list(joint_names), link_name=link)
        request.positions = pack(q)
        request.point.x, request.point.y, request.point.z = (float(v) for v in point)
        r = self._call(self._jacobian, request)
        J = as_float_array(r.jacobians).reshape(r.batch_size, 6, len(r.joint_names))
        poses = as_float_array(r.poses).reshape(r.batch_size, 7)
        return (J[0], poses[0]) if single else (J, poses)

    def pose_target_gradient(self, q, links, targets, position_weights=(), orientation_weights=(), joint_names=()):
        """Cost Σ_k w_p |p_k − p*_k|² + w_o |log(R_k R*_kᵀ)|² and its gradient.
        targets: (K, 7) or (B, K, 7) poses x y z qx qy qz qw. Returns (costs (B,), gradients (B, J))."""
        q, single = _rows(q)
        request = ComputeGradient.Request(mode=ComputeGradient.Request.POSE_TARGETS, joint_names=list(joint_names),
                                          link_names=list(links))
        request.positions = pack(q)
        request.target_poses = pose_msgs(np.asarray(targets, dtype=np.float64).reshape(-1, 7))
        request.position_weights = pack(np.asarray(position_weights, dtype=np.float64))
        request.orientation_weights = pack(np.asarray(orientation_weights, dtype=np.float64))
        r = self._call(self._gradient, request)
        costs = as_float_array(r.costs).copy()
        gradients = as_float_array(r.gradients).reshape(r.batch_size, len(r.joint_names))
        return (costs[0], gradients[0]) if single else (costs, gradients)

    def vector_jacobian_product(self, q, links, forces, torques, joint_names=()):
        """Σ_k J_kᵀ (f_k, τ_k): forces, torques (B, K, 3) in the root frame -> (B, J)."""
        q, single = _rows(q)
        request = ComputeGradient.Request(mode=ComputeGradient.Request.VECTOR_JACOBIAN_PRODUCT,
                                          joint_names=list(joint_names), link_names=list(links))
        request.positions = pack(q)
        request.forces = pack(np.asarray(forces, dtype=np.float64))
        request.torques = pack(np.asarray(torques, dtype=np.float64))
        r = self._call(self._gradient, request)
        gradients = as_float_array(r.gradients).reshape(r.batch_size, len(r.joint_names))
        return gradients[0] if single else gradients

    def plan_trajectory(self, goal: PlanTrajectory.Goal, on_feedback=None, cancel_after: float | None = None):
        """Send a PlanTrajectory goal and wait for its result; returns (status, result).

        on_feedback(feedback) is called for every feedback message; ``cancel_after`` (s) asks the
        node to cancel once that much time has passed (for tests and tools). Status is an
        action_msgs/GoalStatus value (4 succeeded, 5 canceled, 6 aborted).
        """
        import time

        if not self._plan.wait_for_server(timeout_sec=self.timeout):
            raise KinematicsError(f"action {self._plan._action_name} is not available")
        callback = (lambda msg: on_feedback(msg.feedback)) if on_feedback else None
        handle = self._wait(self._plan.send_goal_async(goal, feedback_callback=callback), self.timeout)
        if not handle.accepted:
            raise KinematicsError("the goal was rejected")
        result = handle.get_result_async()
        deadline = time.monotonic() + self.timeout
        if cancel_after is not None:
            self._wait(result, cancel_after, allow_timeout=True)
            if not result.done():
                self._wait(handle.cancel_goal_async(), self.timeout)
        self._wait(result, max(0.0, deadline - time.monotonic()) + self.timeout)
        response = result.result()
        return response.status, response.result

    # ------------------------------------------------------------------ collision and IK
    def check_collision(self, q, margin: float = 0.0, ignore_world: bool = False, ignore_self: bool = False,
                        gradient: bool = False, joint_names=()) -> "CollisionReport":
        """q (B, J) or (J,) -> a :class:`CollisionReport` (arrays of length B)."""
        q, _ = _rows(q)
        request = CheckCollision.Request(joint_names=list(joint_names), margin=float(margin),
                                         ignore_world=ignore_world, ignore_self=ignore_self,
                                         compute_gradient=gradient)
        request.positions = pack(q)
        r = self._call(self._collision, request)
        B = r.batch_size
        return CollisionReport(
            np.array(r.in_collision, dtype=bool), as_float_array(r.min_distance).copy(), tuple(r.link_a),
            tuple(r.link_b), np.array(r.pair_kind, dtype=np.uint8),
            as_float_array(r.costs).copy() if gradient else None,
            as_float_array(r.gradients).reshape(B, -1).copy() if gradient else None,
        )

    def inverse_kinematics(self, targets, links=(), position_only: bool = False, seed=None,
                           prefer_seed: bool = False, position_tolerance: float = 0.0,
                           orientation_tolerance: float = 0.0, num_seeds: int = 0, time_budget: float = 0.0,
                           avoid_collisions: bool = False, joint_names=()) -> "IKSolutions":
        """targets (B, K, 7) or (B, 7) poses x y z qx qy qz qw (root frame) of ``links`` (K names;
        empty: the node's end_effector_link) -> :class:`IKSolutions`. Zeros mean the defaults."""
        targets = np.asarray(targets, dtype=np.float64)
        B = targets.shape[0] if targets.ndim > 1 else 1
        request = ComputeIK.Request(
            link_names=list(links), targets=pose_msgs(targets.reshape(-1, 7)), position_only=position_only,
            joint_names=list(joint_names), prefer_seed=prefer_seed, position_tolerance=float(position_tolerance),
            orientation_tolerance=float(orientation_tolerance), num_seeds=int(num_seeds),
            time_budget=float(time_budget), avoid_collisions=avoid_collisions,
        )
        if seed is not None:
            request.seed = pack(np.asarray(seed, dtype=np.float64).reshape(-1))
        r = self._call(self._ik, request)
        return IKSolutions(
            as_float_array(r.solutions).reshape(r.batch_size, -1).copy(), np.array(r.solved, dtype=bool),
            as_float_array(r.position_errors).copy(), as_float_array(r.orientation_errors).copy(),
            np.array(r.iterations, dtype=np.int64), r.message,
        )

    def update_scene(self, operation: int, obstacles=()) -> tuple[list, int]:
        """UpdateScene.Request.ADD / MOVE / REMOVE / CLEAR / LIST with Obstacle messages (see
        :func:`obstacle`) -> (the scene's obstacles after it, scene_version)."""
        r = self._call(self._scene, UpdateScene.Request(operation=operation, obstacles=list(obstacles)))
        return list(r.obstacles), r.scene_version

    def collision_model(self):
        """The GetCollisionModel response (spheres per link, self pairs with reasons)."""
        return self._call(self._collision_model, GetCollisionModel.Request())

    # ------------------------------------------------------------------ plumbing
    def _wait(self, future, timeout: float, allow_timeout: bool = False):
        if self._own_node:
            self._executor.spin_until_future_complete(future, timeout_sec=timeout)
        else:
            done = threading.Event()
            future.add_done_callback(lambda _: done.set())
            done.wait(timeout)
        if not future.done() and not allow_timeout:
            raise KinematicsError(f"no answer within {timeout} s")
        return future.result() if future.done() else None

    def _call(self, client, request):
        if not client.wait_for_service(timeout_sec=self.timeout):
            raise KinematicsError(f"service {client.srv_name} is not available")
        future = client.call_async(request)
        response = self._wait(future, self.timeout, allow_timeout=True)
        if not future.done():
            future.cancel()
            raise KinematicsError(f"no answer from {client.srv_name} within {self.timeout} s")
        if not response.success:
            raise KinematicsError(response.message)
        return response


@dataclass(frozen=True)
class CollisionReport:
    """CheckCollision's answer for B configurations: verdicts, closest signed distance (m; 1e300
    when nothing was checked), the closest pair (link_a, link_b: a link or an obstacle id;
    pair_kind SELF = 0, WORLD = 1) and, when asked, penalty costs (B,) and gradients (B, J)."""

    in_collision: np.ndarray
    min_distance: np.ndarray
    link_a: tuple[str, ...]
    link_b: tuple[str, ...]
    pair_kind: np.ndarray
    costs: np.ndarray | None
    gradients: np.ndarray | None


@dataclass(frozen=True)
class IKSolutions:
    """ComputeIK's answer for B targets: solutions (B, J), solved (B,), the worst link's position
    (m) and orientation (rad) errors, iterations, and the node's summary line."""

    solutions: np.ndarray
    solved: np.ndarray
    position_errors: np.ndarray
    orientation_errors: np.ndarray
    iterations: np.ndarray
    message: str


#: Obstacle shape names accepted by :func:`obstacle`.
OBSTACLE_SHAPES = ("box", "sphere", "cylinder", "capsule")


def obstacle(id: str, shape: str, dimensions, pose=(0, 0, 0, 0, 0, 0, 1)) -> Obstacle:
    """An Obstacle message: shape 'box' (x, y, z sizes), 'sphere' (radius,), 'cylinder' or
    'capsule' (height, radius); pose (x, y, z, qx, qy, qz, qw) in the root frame (m)."""
    from shape_msgs.msg import SolidPrimitive

    if shape not in OBSTACLE_SHAPES:
        raise ValueError(f"shape must be one of {', '.join(OBSTACLE_SHAPES)}, not '{shape}'")
    msg = Obstacle(id=id, capsule=shape == "capsule")
    msg.shape.type = {"box": SolidPrimitive.BOX, "sphere": SolidPrimitive.SPHERE}.get(shape, SolidPrimitive.CYLINDER)
    msg.shape.dimensions = [float(d) for d in dimensions]
    msg.pose = pose_msgs(np.asarray(pose, dtype=np.float64).reshape(1, 7))[0]
    return msg


def _rows(q) -> tuple[np.ndarray, bool]:
    q = np.asarray(q, dtype=np.float64)
    return (q[None], True) if q.ndim == 1 else (q, False)
