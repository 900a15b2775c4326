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

Lost replies: on a busy computer the middleware can drop a reply without an error (see
:mod:`.qos`). A call whose reply has not come ``retry_timeout`` s after it was sent sends the same
request again, then again after twice that, four times that, ... (``tries`` sends in all; for
ComputeIK each wait also counts the request's time budget), and gives up, raising KinematicsError
naming the service and the tries, once the last try has waited its turn and ``timeout`` s have
passed since the first. Every try stays pending until the call ends: the first reply to arrive,
from any try, answers the call; the other tries are then forgotten, so their late replies are
dropped by rclpy (they never answer this call twice nor another call: replies are matched by
sequence number). Only requests that may be applied twice are resent: FK, Jacobian, gradients,
check_collision, IK, robot_model, collision_model, and update_scene's ADD (replaces an obstacle of
the same id), MOVE (sets a pose), CLEAR, LIST and LOAD_YAML (replaces the scene), which leave the
same scene when applied twice. A REMOVE applied twice fails the second time (the id is gone), so a
REMOVE without a reply is never resent blindly: the client LISTs the scene, returns that answer
as the REMOVE's when none of the ids is left, and resends the REMOVE only while they are all
there (a REMOVE of ids that were never in the scene whose reply is lost then counts as done).
ATTACH and DETACH likewise: applied twice they fail ("already attached" / "not attached"), so a
lost one is resent only while the LIST shows it was not applied (all or nothing).
A resent change can undo another client's change made in between (at-least-once delivery).

plan_trajectory: a goal is sent with a goal id chosen here; one not acknowledged in time is
resent with the same id, so the node plans it once (rclpy's action server refuses an id it
already has: that refusal of a resend means an earlier try was accepted). The result is asked for
again when the goal's status says it has finished and no result came within ``retry_timeout``,
and otherwise after growing waits (from ``retry_timeout`` + the goal's time budget); the node
keeps a finished goal's result for 10 s (rclpy's default result_timeout). Cancel requests are
resent like the idempotent services.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
import weakref
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


#: action_msgs/GoalStatus values of a finished goal: succeeded, canceled, aborted
_TERMINAL = (4, 5, 6)
#: ComputeIK's and PlanTrajectory's time budget when the request gives 0 (the node's defaults:
#: ik_service.DEFAULT_TIME_BUDGET and trajectory_time_budget), for the waits between tries
_IK_DEFAULT_BUDGET = 1.0
_PLAN_DEFAULT_BUDGET = 2.0


class KinematicsClient:
    """Numpy calls to the node at ``server``. ``timeout`` (s): the least a call waits for its
    answer (and for the service to appear); ``retry_timeout`` (s): the wait before the first
    resend of an unanswered request, doubled for each later one; ``tries``: sends in all (1: never
    resend). ``service_qos``: the services' and the action's reply readers (the node's
    SERVICE_QOS; tests lower it to lose replies on purpose)."""

    def __init__(self, node: Node | None = None, server: str = "/ros_torch_kin", timeout: float = 30.0,
                 retry_timeout: float = 2.0, tries: int = 4, service_qos=SERVICE_QOS):
        if not (retry_timeout > 0 and isinstance(tries, int) and tries >= 1):
            raise ValueError(f"retry_timeout must be > 0 and tries an integer >= 1, not {retry_timeout}, {tries}")
        self._own_node = node is None
        self.node = node or rclpy.create_node(f"ros_torch_kin_client_{os.getpid()}_{id(self):x}")
        self.timeout = timeout
        self.retry_timeout = retry_timeout
        self.tries = tries
        #: requests sent again because no reply came in time (services, goals, result requests)
        self.resends = 0
        self._executor = None
        if self._own_node:
            self._executor = SingleThreadedExecutor()
            self._executor.add_node(self.node)
        server = server.rstrip("/")
        qos = service_qos
        self._fk = self.node.create_client(ComputeFK, f"{server}/compute_fk", qos_profile=qos)
        self._jacobian = self.node.create_client(ComputeJacobian, f"{server}/compute_jacobian", qos_profile=qos)
        self._gradient = self.node.create_client(ComputeGradient, f"{server}/compute_gradient", qos_profile=qos)
        self._model = self.node.create_client(GetRobotModel, f"{server}/get_robot_model", qos_profile=qos)
        self._collision = self.node.create_client(CheckCollision, f"{server}/check_collision", qos_profile=qos)
        self._collision_model = self.node.create_client(GetCollisionModel, f"{server}/get_collision_model", qos_profile=qos)
        self._ik = self.node.create_client(ComputeIK, f"{server}/compute_ik", qos_profile=qos)
        self._scene = self.node.create_client(UpdateScene, f"{server}/update_scene", qos_profile=qos)
        from rclpy.action import ActionClient

        self._plan = ActionClient(self.node, PlanTrajectory, f"{server}/plan_trajectory", goal_service_qos_profile=qos,
                                  result_service_qos_profile=qos, cancel_service_qos_profile=qos)

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
        action_msgs/GoalStatus value (4 succeeded, 5 canceled, 6 aborted). A goal or result
        request whose reply is lost is sent again (see the module's docstring); the result is
        awaited up to ``timeout`` s (plus ``cancel_after``) after the goal was accepted, and
        KinematicsError names the action and what was tried when it does not come.
        """
        action = self._plan._action_name
        if not self._plan.wait_for_server(timeout_sec=self.timeout):
            raise KinematicsError(f"action {action} is not available")
        callback = (lambda msg: on_feedback(msg.feedback)) if on_feedback else None
        goal_id = type(PlanTrajectory.Impl.SendGoalService.Request().goal_id)(uuid=list(uuid.uuid4().bytes))
        budget = goal.time_budget or _PLAN_DEFAULT_BUDGET
        handle, tries = self._exchange(
            f"action {action} (goal request)",
            lambda: self._plan.send_goal_async(goal, feedback_callback=callback, goal_uuid=goal_id))
        if not handle.accepted:
            if tries == 1:
                raise KinematicsError(f"the goal was rejected by {action}")
            # an earlier try was accepted (the server refuses a goal id it has): follow that one
            handle = self._accepted_handle(goal_id, handle)
        return self._result(handle, action, budget, cancel_after)

    def _accepted_handle(self, goal_id, refusal):
        """The handle of goal ``goal_id`` that an earlier, unacknowledged try got accepted."""
        from rclpy.action.client import ClientGoalHandle

        accepted = PlanTrajectory.Impl.SendGoalService.Response(accepted=True, stamp=refusal.stamp)
        handle = ClientGoalHandle(self._plan, goal_id, accepted)
        handles = getattr(self._plan, "_goal_handles", None)  # as rclpy does on acceptance: status updates
        if isinstance(handles, dict):
            handles.setdefault(bytes(goal_id.uuid), weakref.ref(handle))
        return handle

    def _request_result(self, handle):
        """Send a get_result request for ``handle``'s goal; its Future."""
        return handle.get_result_async()

    def _result(self, handle, action: str, budget: float, cancel_after: float | None):
        """Wait for the result of an accepted goal, asking again when a reply is lost."""
        start = time.monotonic()
        give_up = start + self.timeout + (cancel_after or 0.0)
        requests = [self._request_result(handle)]
        next_request = start + self.retry_timeout + budget  # while the status says nothing
        wait = self.retry_timeout + budget
        finished_at = None  # when the status first said the goal is finished
        cancel_at = None if cancel_after is None else start + cancel_after
        while True:
            now = time.monotonic()
            done = next((f for f in requests if f.done()), None)
            if done is not None:
                break
            if cancel_at is not None and now >= cancel_at:
                cancel_at = None
                self._exchange(f"action {action} (cancel request)", handle.cancel_goal_async)
                give_up = max(give_up, time.monotonic() + self.timeout)
                continue
            if handle.status in _TERMINAL and finished_at is None:
                finished_at = now
                next_request = min(next_request, now + self.retry_timeout)
            if now >= give_up:
                for f in requests:
                    f.cancel()
                raise KinematicsError(
                    f"no result from action {action} within {now - start:.1f} s of the goal's acceptance "
                    f"({len(requests)} result request(s); goal status {handle.status})")
            if now >= next_request:
                requests.append(self._request_result(handle))
                self.resends += 1
                if finished_at is None:
                    wait *= 2
                next_request = now + (self.retry_timeout if finished_at is not None else wait)
            until = min(give_up, next_request, cancel_at if cancel_at is not None else give_up, now + 0.1)
            self._wait_any(requests, until)
        for f in requests:
            if f is not done:
                f.cancel()  # a late answer to another request is dropped
        response = done.result()
        if response.status == 0:  # STATUS_UNKNOWN: the node does not know the goal
            raise KinematicsError(f"action {action} does not know the goal (rejected, or its result expired)")
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
        r = self._call(self._ik, request, extra=float(time_budget) or _IK_DEFAULT_BUDGET)
        return IKSolutions(
            as_float_array(r.solutions).reshape(r.batch_size, -1).copy(), np.array(r.solved, dtype=bool),
            as_float_array(r.position_errors).copy(), as_float_array(r.orientation_errors).copy(),
            np.array(r.iterations, dtype=np.int64), r.message,
        )

    def update_scene(self, operation: int, obstacles=()) -> tuple[list, int]:
        """UpdateScene.Request.ADD / MOVE / REMOVE / CLEAR / LIST / LOAD_YAML / ATTACH / DETACH with
        Obstacle messages (see :func:`obstacle`) -> (the scene's obstacles after it,
        scene_version). A REMOVE, ATTACH or DETACH whose reply is lost is confirmed by a LIST
        before it is resent (see the module's docstring)."""
        request = UpdateScene.Request(operation=operation, obstacles=list(obstacles))
        ids = {o.id for o in request.obstacles}
        if operation == UpdateScene.Request.REMOVE:
            r = self._call(self._scene, request, before_resend=lambda: self._removed(ids))
        elif operation in (UpdateScene.Request.ATTACH, UpdateScene.Request.DETACH):
            carried = operation == UpdateScene.Request.ATTACH
            r = self._call(self._scene, request, before_resend=lambda: self._carried(ids, carried))
        else:
            r = self._call(self._scene, request)
        return list(r.obstacles), r.scene_version

    def _carried(self, ids: set, carried: bool):
        """Before an ATTACH (``carried``) or DETACH is resent: the LIST answer if every one of
        ``ids`` is already carried (attached to a link) or, for DETACH, back in the world, else
        None (resend: the lost request was not applied, it is all or nothing)."""
        listed = self._call(self._scene, UpdateScene.Request(operation=UpdateScene.Request.LIST))
        state = {o.id: bool(o.link) for o in listed.obstacles}
        return listed if all(state.get(i) is carried for i in ids) else None

    def _removed(self, ids: set):
        """Before a REMOVE is resent: the LIST answer if none of ``ids`` is in the scene (the
        REMOVE was applied), else None (resend; the node names an id that is missing)."""
        listed = self._call(self._scene, UpdateScene.Request(operation=UpdateScene.Request.LIST))
        return None if ids & {o.id for o in listed.obstacles} else listed

    def collision_model(self):
        """The GetCollisionModel response (spheres per link, self pairs with reasons)."""
        return self._call(self._collision_model, GetCollisionModel.Request())

    # ------------------------------------------------------------------ plumbing
    def _wait_any(self, futures, until: float) -> None:
        """Spin (own node) or wait until one of ``futures`` is done or time.monotonic() >= until."""
        if self._own_node:
            while not any(f.done() for f in futures) and (left := until - time.monotonic()) > 0:
                self._executor.spin_once(timeout_sec=left)
        else:
            done = threading.Event()
            for f in futures:
                f.add_done_callback(lambda _: done.set())
            done.wait(max(0.0, until - time.monotonic()))

    def _exchange(self, what: str, send, idempotent: bool = True, extra: float = 0.0, before_resend=None):
        """Send (``send()`` -> a Future) until a reply comes; returns (its result, tries sent).

        Try k + 1 is sent (retry_timeout + extra) · 2^k s after try k while none has answered
        (``tries`` in all; one when not ``idempotent`` and no ``before_resend``);
        ``before_resend()`` may return a result to finish with instead of resending. Every try
        stays pending (the first reply wins) until the call ends, then the others are forgotten.
        Gives up after the last try's wait, and not before ``timeout`` s, with KinematicsError.
        """
        tries = self.tries if idempotent or before_resend is not None else 1
        start = time.monotonic()
        futures, sent_at = [], []
        wait = self.retry_timeout + extra
        try:
            for k in range(tries):
                if k:
                    finished = before_resend() if before_resend is not None else None
                    if finished is not None:
                        return finished, k
                    self.resends += 1
                futures.append(send())
                sent_at.append(time.monotonic() - start)
                until = time.monotonic() + wait * 2**k
                if k == tries - 1:
                    until = max(until, start + self.timeout)
                self._wait_any(futures, until)
                done = next((f for f in futures if f.done()), None)
                if done is not None:
                    return done.result(), k + 1
        finally:
            for f in futures:
                if not f.done():
                    f.cancel()  # rclpy forgets it: a late reply is dropped
        sent = ", ".join(f"{t:.1f}" for t in sent_at)
        raise KinematicsError(f"no answer from {what} after {tries} {'try' if tries == 1 else 'tries'} "
                              f"(sent at {sent} s; gave up after {time.monotonic() - start:.1f} s)")

    def _call(self, client, request, idempotent: bool = True, extra: float = 0.0, before_resend=None):
        """Call a service of the node (resending as :meth:`_exchange` says); KinematicsError with
        the node's message when it answers success=false."""
        if not client.wait_for_service(timeout_sec=self.timeout):
            raise KinematicsError(f"service {client.srv_name} is not available")
        response, _ = self._exchange(f"service {client.srv_name}", lambda: client.call_async(request),
                                     idempotent, extra, before_resend)
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
