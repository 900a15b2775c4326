"""The ros_torch_kin node: serves batched kinematics of the robot in ``robot_description``.

Services (node-private names, e.g. /ros_torch_kin/compute_fk):
  ~/compute_fk (ComputeFK), ~/compute_jacobian (ComputeJacobian), ~/compute_gradient
  (ComputeGradient), ~/get_robot_model (GetRobotModel), ~/check_collision (CheckCollision),
  ~/get_collision_model (GetCollisionModel), ~/compute_ik (ComputeIK), and ~/update_scene
  (UpdateScene, see :mod:`.scene_server`).
Action: ~/plan_trajectory (PlanTrajectory), the trajectory optimizer, see :mod:`.trajectory_action`.
Topics: subscribes ``robot_description`` and ``robot_description_semantic`` (std_msgs/String,
transient local), and the point-cloud and depth-image topics of the sensor parameters (see
:mod:`.point_cloud_input`); publishes ``~/collision_markers`` (visualization_msgs/MarkerArray, transient
local), ``~/planned_trajectory`` (trajectory_msgs/JointTrajectory) and ``~/planned_path``
(visualization_msgs/MarkerArray) for every successful plan. ``joint_states`` in, ``~/link_poses``
and ``~/end_effector_pose`` out run on an internal node of their own (:mod:`.link_pose_publisher`).

The node is an adapter: checks and conversions live in :mod:`.convert`, service logic in
:mod:`.handlers`, all math in the kinematics core. The served model is one immutable object
swapped by assignment, so a new description never tears a request in flight, and an invalid
description never replaces a valid one.

Threads: one single-threaded executor dispatches the services, descriptions and the action
(rclpy's MultiThreadedExecutor spends milliseconds per dispatch); their callbacks are ``async``
and in one reentrant callback group, and their work (large requests, every IK request, plans,
description builds) runs in a small thread pool (torch releases the GIL), so requests proceed
concurrently and none blocks another or a cancel. The joint_states pipeline has its own node
and executor thread (see :mod:`.link_pose_publisher`).
"""

from __future__ import annotations

from .. import allocator, threads

# before torch loads its OpenMP runtime, which reads the wait policy once (see ros_torch_kin.threads);
# silent when torch is already imported (the node in a test's process): main() logs the policy
threads.use_passive_waits(warn=False)

import dataclasses  # noqa: E402
import faulthandler  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
import concurrent.futures  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import rclpy  # noqa: E402
import torch  # noqa: E402
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from rclpy.task import Future
from std_msgs.msg import String

from ..collision.urdf_sphere_trees import cache_directory
from ..srv import CheckCollision, ComputeFK, ComputeGradient, ComputeIK, ComputeJacobian, GetCollisionModel, GetRobotModel
from . import collision_services, convert, handlers, ik_service
from .convert import RequestError
from .joint_states import JointStateTracker
from .link_pose_publisher import LinkPosePublisher
from .parameters import PARAMETERS, READ_ONLY, Settings, check_choice
from .point_cloud_input import PointCloudInput
from .qos import SERVICE_QOS
from .scene_server import SceneServer, scene_from_yaml
from .served_model import (
    CollisionOptions,
    ServedModel,
    build_model,
    check_description_size,
    configured_description,
    resolve_device,
    resolve_dtype,
    with_collision,
)
from .world_state import WorldState
from .trajectory_action import TrajectoryActionServer

NO_MODEL = (
    "no robot model: set the robot_description, robot_description_file or bundled_robot "
    "parameter, or publish the robot on the robot_description topic"
)
#: Requests with at most this many joint values are served on the executor thread (a few hundred
#: µs, less than handing them to a worker); larger ones go to the worker pool.
INLINE_VALUES = 512
#: Seconds the node waits at shutdown for worker jobs still running (a plan stops at its budget).
SHUTDOWN_WAIT = 10.0
#: s: a collision model that took longer was built cold (nothing cached): the log says why and where it is kept
COLD_BUILD_NOTE_AFTER = 5.0
_DESCRIPTION_PARAMETERS = {"robot_description", "robot_description_file", "bundled_robot"}
_CHAIN_PARAMETERS = {"device", "dtype", "floating_joints"}
_COLLISION_PARAMETERS = {"collision_checking", "robot_description_semantic", "collision_spheres_file",
                         "mesh_search_paths", "self_collision_samples", "collision_verdict"}
_LINK_SETTINGS = ("base_link", "end_effector_link")


class KinematicsNode(Node):
    def __init__(self, **kwargs):
        super().__init__("ros_torch_kin", **kwargs)
        try:
            self._start()
        except BaseException:
            # a bad parameter, or SIGINT while starting (rclpy's handler invalidates the context
            # under the constructor, or a KeyboardInterrupt lands in it): what was started stops
            # here, as the caller has no node to destroy. A KeyboardInterrupt inside the worker
            # pool's submit, after its thread started and before the pool registered it for
            # interpreter exit, left that thread waiting for work forever: the process never
            # exited (about 1 start in 100 stopped just after the robot failed to load)
            self._release(quiet=True)
            raise

    def _start(self) -> None:
        for parameter in PARAMETERS:
            self.declare_parameter(parameter.name, parameter.default, parameter.descriptor())
        values = {p.name: self.get_parameter(p.name).value for p in PARAMETERS}
        for parameter in PARAMETERS:
            if (error := check_choice(parameter.name, values[parameter.name])):
                raise ValueError(error)
        sensor_values = {name: values[name] for name in READ_ONLY}  # point clouds and depth images
        self._device = resolve_device(values["device"])
        self._dtype = resolve_dtype(values["dtype"])
        if values["torch_threads"]:
            torch.set_num_threads(values["torch_threads"])
        #: the torch_threads parameter: threads per request, 0 = automatic (see run_in_worker)
        self._torch_threads = values["torch_threads"]
        self.settings = Settings.from_values(values)
        self.model: ServedModel | None = None
        #: the latest SRDF from the robot_description_semantic topic ('' until one arrives)
        self._srdf_from_topic = ""
        self.world = WorldState()
        self._workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ros_torch_kin")
        self._running: set = set()  # the workers' jobs not yet finished (concurrent.futures.Future)
        self._closing = False
        # descriptions are numbered as they arrive; a build that finishes after a newer one was
        # applied is dropped (see _on_robot_description)
        self._description_tickets = self._applied_ticket = 0
        self._load_configured_description(values)

        # Every callback that awaits the worker pool is in one reentrant group: in rclpy's default
        # (mutually exclusive) group a coroutine in flight keeps every other callback of the node
        # waiting, so a big description or request would stall all services.
        self.concurrent = ReentrantCallbackGroup()
        services = (
            (ComputeFK, "compute_fk", self._serving(handlers.serve_fk)),
            (ComputeJacobian, "compute_jacobian", self._serving(handlers.serve_jacobian)),
            (ComputeGradient, "compute_gradient", self._serving(handlers.serve_gradient)),
            (GetRobotModel, "get_robot_model", self._serving(handlers.serve_robot_model)),
            (CheckCollision, "check_collision", self._serving(collision_services.serve_check_collision, with_world=True)),
            (GetCollisionModel, "get_collision_model", self._serving(collision_services.serve_collision_model, with_world=True)),
            (ComputeIK, "compute_ik", self._serving(self._serve_ik, with_world=True)),
        )
        for kind, name, callback in services:
            self.create_service(kind, f"~/{name}", callback, qos_profile=SERVICE_QOS, callback_group=self.concurrent)
        self._scene = SceneServer(self)
        self._sensors = PointCloudInput(self, sensor_values)
        self._poses = LinkPosePublisher(self)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(String, "robot_description", self._on_robot_description, latched,
                                 callback_group=self.concurrent)
        self.create_subscription(String, "robot_description_semantic", self._on_robot_description_semantic, latched,
                                 callback_group=self.concurrent)
        self._planner = TrajectoryActionServer(self)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def destroy_node(self):
        self._release()
        super().destroy_node()

    def _release(self, quiet: bool = False) -> None:
        """Stop what the node started (the pose publisher's node and thread, the planner's action
        server, the worker pool), whichever of them exist. ``quiet``: after a failed start, each
        step's own error is dropped (the start's is the one to report) and running jobs are not
        waited for."""
        for stop in (getattr(getattr(self, "_poses", None), "close", None),  # its own node and thread
                     getattr(getattr(self, "_planner", None), "destroy", None)):  # either absent after an early failure
            try:
                if stop is not None:
                    stop()
            except Exception:  # noqa: BLE001
                if not quiet:
                    raise
        workers = getattr(self, "_workers", None)
        if workers is not None:
            # jobs still running (a plan, the timing warm-up) finish without touching rclpy: a worker
            # that woke a destroyed executor during shutdown crashed the process (SIGSEGV) now and then
            self._closing = True
            workers.shutdown(wait=False, cancel_futures=True)  # also wakes a thread it never registered
            if not quiet:
                concurrent.futures.wait(list(self._running), timeout=SHUTDOWN_WAIT)

    def run_in_worker(self, fn, *args, work: int | None = None) -> Future:
        """Run ``fn(*args)`` in the worker pool; an rclpy Future to ``await`` in a callback. The
        executor is woken when it completes, so the awaiting callback resumes at once. ``work``:
        the rows of the computation (configurations, targets × seeds), which choose its torch
        threads when the torch_threads parameter is 0 (None: a large computation)."""
        future = Future(executor=self.executor)
        count = self._torch_threads or threads.automatic_threads(threads.SERIAL_WORK if work is None else work)

        def work_():
            if self._closing:
                return
            try:
                with threads.limited_threads(count):  # per worker thread (torch keeps it per thread)
                    result, error = fn(*args), None
            except BaseException as caught:  # handed to the awaiting callback
                result, error = None, caught
            if self._closing:  # the executor and the context may be gone: touch no rclpy object
                return
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
            executor = self.executor
            if executor is not None:
                executor.wake()

        job = self._workers.submit(work_)
        self._running.add(job)
        job.add_done_callback(self._running.discard)
        return future

    # ------------------------------------------------------------------ robot descriptions
    def _load_configured_description(self, values) -> None:
        try:
            configured = configured_description(
                values["robot_description"], values["robot_description_file"], values["bundled_robot"]
            )
            if configured is None:
                self.get_logger().info("no robot configured; waiting for the robot_description topic")
                return
            urdf, source, base_dir = configured
            check_description_size(urdf, values["max_description_bytes"])
            self._apply(build_model(urdf, source, self._device, self._dtype, values["floating_joints"],
                                    self._collision_options(values), base_dir))
        except ValueError as error:
            self.get_logger().error(f"cannot load the configured robot: {error}")

    def _apply(self, model: ServedModel, ticket: int | None = None) -> None:
        """Serve ``model`` (one assignment: requests in flight keep their snapshot); the first
        model served also loads the scene_file parameter's scene."""
        self._applied_ticket = self._next_description_ticket() if ticket is None else ticket
        first = self.model is None
        self.model = model
        dropped = self.world.dropped_by(model)
        self.world = self.world.for_model(model)
        if dropped:
            self.get_logger().warning(f"the new robot model lacks the link (or a touch link) of carried "
                                      f"object(s) {', '.join(dropped)}: no longer carried nor checked")
        if first and (path := self.get_parameter("scene_file").value):
            try:
                self._use_scene(self._scene_from_file(path, model))
            except ValueError as error:
                self.get_logger().error(f"{error}; the scene stays as it was ({len(self.world.scene)} obstacles)")
        self.get_logger().info(f"serving {model.summary()}")
        if model.collision_build_seconds > COLD_BUILD_NOTE_AFTER:
            self.get_logger().info(
                f"the collision model took {model.collision_build_seconds:.0f} s: a robot's first start on this machine "
                f"covers its meshes (worker processes, one per core); what it built is cached in "
                f"{cache_directory().parent} and read in about a second by later starts")
        for warning in model.warnings:
            self.get_logger().warning(f"URDF: {warning}")
        scene = getattr(self, "_scene", None)  # absent while __init__ loads the configured robot
        if scene is not None:
            scene.publish_markers()
        for problem in _unknown_links(self.settings, model.chain, _LINK_SETTINGS):
            self.get_logger().warning(problem)

    async def _on_robot_description(self, msg: String) -> None:
        """Parse and build a description from the topic in the worker pool: a big one never
        stalls the services, which keep serving the current model meanwhile. The newest
        description received wins; an invalid one is logged and changes nothing."""
        if not self.get_parameter("subscribe_robot_description").value:
            return
        current = self.model
        if current is not None and msg.data == current.urdf:
            # a revert to the served description is the newest word: builds still in flight lose
            self._applied_ticket = self._next_description_ticket()
            return
        ticket = self._next_description_ticket()
        kept = f"still serving {current.summary()}" if current else "no robot model yet"
        try:
            check_description_size(msg.data, self.get_parameter("max_description_bytes").value)
            model = await self.run_in_worker(build_model, msg.data, "topic robot_description", self._device,
                                             self._dtype, self.get_parameter("floating_joints").value,
                                             self._collision_options(self._parameter_values()))
        except ValueError as error:
            self.get_logger().error(f"ignoring the description on the robot_description topic: {error}; {kept}")
            return
        if ticket < self._applied_ticket:
            self.get_logger().info("a description built meanwhile was newer; this one is dropped")
            return
        self._apply(model, ticket)

    async def _on_robot_description_semantic(self, msg: String) -> None:
        """An SRDF from the topic (as MoveIt's move_group publishes it): rebuild the self-collision
        pairs of the current model in the worker pool. The robot_description_semantic parameter,
        when set, takes precedence."""
        if not self.get_parameter("subscribe_robot_description").value or msg.data == self._srdf_from_topic:
            return
        self._srdf_from_topic = msg.data
        current = self.model
        values = self._parameter_values()
        if current is None or not values["collision_checking"] or values["robot_description_semantic"]:
            return  # used when the next model is built
        ticket = self._next_description_ticket()
        try:
            model = await self.run_in_worker(with_collision, current, self._collision_options(values))
        except ValueError as error:
            self.get_logger().error(f"ignoring the SRDF on the robot_description_semantic topic: {error}")
            return
        if ticket < self._applied_ticket or self.model is not current:
            return  # a newer model was applied meanwhile (it was built with this SRDF)
        self._apply(model, ticket)

    def _parameter_values(self) -> dict:
        return {p.name: self.get_parameter(p.name).value for p in PARAMETERS}

    def _collision_options(self, values: dict) -> CollisionOptions:
        """The collision build options from parameter values (the SRDF parameter wins over the topic's)."""
        return CollisionOptions(
            enabled=values["collision_checking"],
            srdf=values["robot_description_semantic"] or self._srdf_from_topic,
            spheres_file=values["collision_spheres_file"],
            mesh_search_paths=tuple(p for p in values["mesh_search_paths"].split(":") if p),
            self_collision_samples=values["self_collision_samples"],
            verdict=values["collision_verdict"],
        )

    def _scene_from_file(self, path: str, model: ServedModel):
        """The scene of the YAML file at ``path`` (see scene_server.scene_from_yaml); ValueError
        naming the file and the problem."""
        try:
            scene = scene_from_yaml(Path(path), model, self.current_positions(model))
        except ValueError as error:
            raise ValueError(f"cannot load scene_file '{path}': {error}") from None
        self.get_logger().info(f"scene_file '{path}': {len(scene)} obstacles")
        return scene

    def _use_scene(self, scene) -> None:
        self.world = self.world.with_scene(scene)
        server = getattr(self, "_scene", None)  # absent while __init__ loads the configured robot
        if server is not None:
            server.publish_markers()

    def current_positions(self, model: ServedModel):
        """The latest complete joint state for ``model``'s chain ((J,) float64), or None."""
        poses = getattr(self, "_poses", None)  # absent while __init__ loads the configured robot
        if poses is None:
            return None
        tracker = poses.tracker(model)
        return tracker.positions.copy() if tracker.complete else None

    def _next_description_ticket(self) -> int:
        self._description_tickets += 1
        return self._description_tickets

    # ------------------------------------------------------------------ parameters at runtime
    def _on_set_parameters(self, changed) -> SetParametersResult:
        updates = {p.name: p.value for p in changed}
        fixed = sorted(updates.keys() & READ_ONLY)
        if fixed:
            return SetParametersResult(successful=False, reason=f"{', '.join(fixed)}: read when the node starts")
        values = self._parameter_values() | updates
        try:
            for name in updates:
                if (error := check_choice(name, values[name])):
                    raise ValueError(error)
            device, dtype = resolve_device(values["device"]), resolve_dtype(values["dtype"])
            model = self.model
            if updates.keys() & _DESCRIPTION_PARAMETERS:
                configured = configured_description(
                    values["robot_description"], values["robot_description_file"], values["bundled_robot"]
                )
                if configured is not None:
                    urdf, source, base_dir = configured
                    check_description_size(urdf, values["max_description_bytes"])
                    model = build_model(urdf, source, device, dtype, values["floating_joints"],
                                        self._collision_options(values), base_dir)
            elif model is not None and "floating_joints" in updates:
                model = build_model(model.urdf, model.source, device, dtype, values["floating_joints"],
                                    self._collision_options(values), model.base_dir)
            elif model is not None and updates.keys() & (_CHAIN_PARAMETERS | _COLLISION_PARAMETERS):
                if updates.keys() & _CHAIN_PARAMETERS:  # the spheres and pairs move with the chain
                    chain = model.chain.to(device, dtype)
                    collision = None if model.collision is None else model.collision.on_chain(chain)
                    verdict = None if model.verdict is None else model.verdict.on_chain(chain, collision)
                    model = dataclasses.replace(model, chain=chain, collision=collision, verdict=verdict)
                if updates.keys() & _COLLISION_PARAMETERS:
                    model = with_collision(model, self._collision_options(values))
            settings = Settings.from_values(values)
            if model is not None:
                problems = _unknown_links(settings, model.chain, [n for n in _LINK_SETTINGS if n in updates])
                if problems:
                    raise ValueError(problems[0])
            scene = None
            if updates.get("scene_file") and model is not None:
                scene = self._scene_from_file(values["scene_file"], model)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        if "torch_threads" in updates:
            if values["torch_threads"]:
                torch.set_num_threads(values["torch_threads"])
            self._torch_threads = values["torch_threads"]
        self._device, self._dtype, self.settings = device, dtype, settings
        if model is not self.model:
            self._apply(model)
        if scene is not None:
            self._use_scene(scene)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ services
    def _serving(self, handler, with_world: bool = False):
        """A service callback around ``handler(model, settings, request, response[, world])``: one
        snapshot of the model, settings (and world) per request; any failure becomes
        success=false with a message; small requests run inline, large ones in the worker pool."""

        async def callback(request, response):
            model, settings, world = self.model, self.settings, self.world  # one snapshot per request
            if model is None:
                return _fail(response, NO_MODEL)
            arguments = (model, settings, request, response) + ((world,) if with_world else ())
            try:
                if len(getattr(request, "positions", ())) <= INLINE_VALUES and not _always_in_worker(request):
                    response = handler(*arguments)  # cheaper than a handoff
                else:
                    response = await self.run_in_worker(handler, *arguments, work=_rows(request, model))
                return _guard_finite(response, model)
            except RequestError as error:
                return _fail(response, str(error))
            except Exception as error:  # never leave a client without an answer
                if convert.is_out_of_memory(error):
                    return _fail(response, convert.out_of_memory_message(
                        model.chain.device, error, "send fewer configurations per request or lower max_batch"))
                self.get_logger().error(f"{handler.__name__} failed:\n{traceback.format_exc()}")
                return _fail(response, f"internal error in {handler.__name__}: {type(error).__name__}: {error}")

        return callback

    def _serve_ik(self, model, settings, request, response, world):
        """ComputeIK seeded by default from the latest complete joint state."""
        tracker = self.joint_state_tracker(model)
        current = tracker.positions.copy() if tracker.complete else None
        return ik_service.serve_ik(model, settings, request, response, world, current)

    # ------------------------------------------------------------------ joint_states -> poses
    def joint_state_tracker(self, model: ServedModel) -> JointStateTracker:
        """The latest joint positions received for ``model``'s chain (see LinkPosePublisher)."""
        return self._poses.tracker(model)


def _rows(request, model: ServedModel) -> int:
    """Rows of a request's computation, for the automatic torch threads: configurations, or IK
    targets (each target's seeds are small operations that a second thread does not speed up:
    see ``threads.SERIAL_WORK``)."""
    if isinstance(request, ComputeIK.Request):
        return max(1, len(request.targets))
    return len(getattr(request, "positions", ())) // max(1, model.chain.num_dofs)


def _always_in_worker(request) -> bool:
    """IK requests iterate for up to their time budget: never on the executor thread."""
    return isinstance(request, ComputeIK.Request)


def _guard_finite(response, model: ServedModel):
    """The last guard: a reply never says success=true with a NaN or Inf in it (inputs are
    bounded, but a chain's dtype can still overflow in the math)."""
    if response.success and (field := convert.first_non_finite_output(response)):
        dtype = str(model.chain.dtype).replace("torch.", "")
        return _fail(type(response)(), f"the result's {field} is not finite ({dtype} overflowed); use the "
                               "float64 dtype parameter or smaller input values")
    return response


def _fail(response, message: str):
    response.success = False
    response.message = message
    return response


def _unknown_links(settings: Settings, chain, names) -> list[str]:
    """A message for each of the named link settings that is set but not a link of ``chain``."""
    return [f"{name} '{link}' is not a link of robot '{chain.name}'"
            for name in names if (link := getattr(settings, name)) and not chain.has_link(link)]


def main(args=None) -> None:
    # the node's process reuses the memory it frees (ros_torch_kin.allocator): no page faults for a
    # cloud's or a plan's temporaries in steady state
    memory = allocator.keep_freed_memory()
    # a crash in native code (a middleware or torch thread) leaves every thread's Python stack on
    # stderr, beside the log, instead of a bare exit code
    faulthandler.enable()
    rclpy.init(args=args)
    node = executor = None
    exit_code = 0
    try:
        try:
            node = KinematicsNode()
            node.get_logger().info(
                f"torch threads: {node._torch_threads or 'automatic'} per request; OpenMP workers wait "
                + ("passively" if threads.passive_waits() else "actively (OMP_WAIT_POLICY is set but not PASSIVE: "
                   "they spin, and lose time beside busy processes; see ros_torch_kin.threads)")
                + f"; freed memory: {memory}")
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            executor.spin()
        except ValueError as error:  # a parameter the node cannot start with
            if rclpy.ok():
                print(f"ros_torch_kin: {error}", file=sys.stderr)
                exit_code = 2
        except Exception:
            if rclpy.ok():
                raise
            # else: SIGINT while starting (rclpy's handler invalidated the context under us)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # also a KeyboardInterrupt delivered while the handlers above ran
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C (launch sends two) during cleanup
        if node is not None:
            node.destroy_node()
        if executor is not None:
            # destroy its guard conditions now, while the context lives: left to Executor.__del__ at
            # interpreter exit, after the context's shutdown, they crashed the process (SIGSEGV)
            executor.shutdown(timeout_sec=0.0)
        rclpy.try_shutdown()
    if exit_code:
        sys.exit(exit_code)
