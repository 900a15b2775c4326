"""The ~/plan_trajectory action: the trajectory optimizer on the node's chain, with progress
feedback and cancel; results also published as a JointTrajectory and an RViz MarkerArray.

Every goal is accepted and answered: an invalid one (unknown link, NaN pose, start outside the
limits, ...) aborts at once with a message that names the problem; an unreachable target ends
with success=false, the errors reached and an empty trajectory (nothing unsafe to execute).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import traceback

import torch
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from visualization_msgs.msg import Marker, MarkerArray

from ..action import PlanTrajectory
from ..kinematics import forward_kinematics, pose_xyzw_to_matrix
from ..motion import solve_trajectory, time_optimal
from ..optim import TrajectoryLimits, TrajectoryOptions
from . import convert
from .convert import RequestError
from .scene_server import obstacle_markers

Goal = PlanTrajectory.Goal


class TrajectoryActionServer:
    """Serves ~/plan_trajectory for ``node`` (a KinematicsNode: model, settings, latest joint state)."""

    def __init__(self, node):
        self.node = node
        self._server = ActionServer(
            node, PlanTrajectory, "~/plan_trajectory", self._execute,
            goal_callback=lambda goal: GoalResponse.ACCEPT,
            cancel_callback=lambda goal_handle: CancelResponse.ACCEPT,
            callback_group=node.concurrent,  # a plan in flight must not hold up the services
        )
        self._one_plan_at_a_time = threading.Lock()  # plans share the CPU/GPU; others queue
        self._trajectory = node.create_publisher(JointTrajectory, "~/planned_trajectory", 10)
        self._markers = node.create_publisher(MarkerArray, "~/planned_path", 10)
        # the timing step's imports (toppra pulls in matplotlib: ~0.6 s) and first solves, now in the
        # worker pool rather than on the first goal (which, arriving meanwhile, waits for the imports)
        node.run_in_worker(self._warm_up, work=1)

    def _warm_up(self) -> None:
        try:
            seconds = time_optimal.warm_up()
        except Exception as error:  # noqa: BLE001 -- a plan will say what is wrong; the node serves on
            self.node.get_logger().warning(f"time parameterisation warm-up failed: {type(error).__name__}: {error}")
            return
        self.node.get_logger().info(f"time parameterisation ready (imports and warm-up: {seconds:.2f} s)")

    def destroy(self):
        self._server.destroy()

    # ------------------------------------------------------------------ execution
    async def _execute(self, goal_handle):
        """Runs on the executor; the solve runs in the node's worker pool (cancel stays responsive)."""
        node = self.node
        model, settings, world = node.model, node.settings, node.world  # one snapshot for the whole plan
        result = PlanTrajectory.Result()
        if model is None:
            return _abort(goal_handle, result, "no robot model")
        try:
            problem = self._read_goal(goal_handle.request, model, settings, world)
        except (RequestError, ValueError) as error:
            return _abort(goal_handle, result, str(error))

        published = []

        def on_iteration(report) -> bool:
            feedback = PlanTrajectory.Feedback(
                iteration=report.iteration, best_cost=float(report.best_cost[0]),
                position_error=float(report.position_error[0]), orientation_error=float(report.orientation_error[0]),
                elapsed=report.elapsed, min_clearance=-1.0,
            )
            goal_handle.publish_feedback(feedback)
            published.append(report.iteration)
            return not goal_handle.is_cancel_requested

        def solve():
            with self._one_plan_at_a_time:
                return solve_trajectory(model.chain, on_iteration=on_iteration, **problem)

        try:
            options = problem["options"]
            solution = await node.run_in_worker(solve, work=options.seeds * options.waypoints)
        except ValueError as error:
            return _abort(goal_handle, result, str(error))
        except Exception as error:  # never leave a client without a reason
            if convert.is_out_of_memory(error):
                return _abort(goal_handle, result, convert.out_of_memory_message(
                    model.chain.device, error, "use fewer seeds or waypoints"))
            node.get_logger().error(f"plan_trajectory failed:\n{traceback.format_exc()}")
            return _abort(goal_handle, result, f"internal error in plan_trajectory: {type(error).__name__}: {error}")
        result.position_error = float(solution.position_error[0])
        result.orientation_error = float(solution.orientation_error[0])
        result.iterations = solution.iterations
        result.solve_time = solution.solve_time
        if solution.stopped == "canceled":
            result.message = f"canceled after {solution.iterations} iterations"
            goal_handle.canceled()
            return result
        checked = solution.collision_free is not None
        result.collision_checked = checked
        if checked:
            clearance = float(solution.min_clearance[0])
            result.min_clearance = clearance if math.isfinite(clearance) else 1e300
            if solution.closest_pair:
                result.closest_link_a, result.closest_link_b = solution.closest_pair[0]
        # a plan that is published is one that passed every check
        result.success = bool(solution.success[0]) and (not checked or bool(solution.collision_free[0]))
        if not published:  # solved by its seeds (no iteration ran): one report of what was found
            goal_handle.publish_feedback(PlanTrajectory.Feedback(
                iteration=0, best_cost=float(solution.cost[0]) if math.isfinite(solution.cost[0]) else 1e300,
                position_error=result.position_error, orientation_error=result.orientation_error,
                elapsed=solution.solve_time, min_clearance=result.min_clearance if checked else -1.0,
            ))
        if result.success:
            timed = solution.trajectories[0]
            result.trajectory = self._trajectory_msg(model.chain, timed)
            result.duration = float(timed.duration)
            result.time_parameterization = timed.method
            result.message = (f"reached in {solution.iterations} iterations ({solution.stopped}), "
                              f"{1e3 * solution.solve_time:.0f} ms"
                              + (f", clearance {1e3 * result.min_clearance:.1f} mm" if checked else "")
                              + f"; {timed.method} motion of {timed.duration:.3f} s"
                              + (f" ({timed.note})" if timed.note else ""))
            self._trajectory.publish(result.trajectory)
            self._markers.publish(self._markers_msg(model.chain, solution, problem, world.scene))
        elif solution.failure and solution.failure[0]:
            result.message = (
                f"{solution.failure[0]} ({solution.iterations} iterations, {solution.stopped}): best position "
                f"error {1e3 * result.position_error:.2f} mm, orientation error "
                f"{math.degrees(result.orientation_error):.2f} deg"
            )
        else:
            result.message = (
                f"no seed reached the target within tolerance in {solution.iterations} iterations "
                f"({solution.stopped}): best position error {1e3 * result.position_error:.2f} mm, "
                f"orientation error {math.degrees(result.orientation_error):.2f} deg"
            )
        goal_handle.succeed()
        return result

    def _read_goal(self, goal, model, settings, world) -> dict:
        chain = model.chain
        node = self.node
        if goal.start.name:
            start, _ = convert.read_positions(chain, goal.start.name, goal.start.position, 1)
            start = start[0]
        else:
            tracker = node.joint_state_tracker(model)
            if not tracker.complete:
                raise RequestError("start is empty and joint_states has not given every joint yet (missing "
                                   + ", ".join(tracker.missing) + ")")
            start = tracker.positions.copy()
        _, violation = convert.limit_violation(chain, model.lower_limits, model.upper_limits, start[None])
        if violation is not None:
            raise RequestError(f"start: {violation[1]}")
        p = node.get_parameter
        clearance = _clearance(goal.clearance, p("trajectory_clearance").value)
        velocity_scaling = convert.value_or_default(goal.max_velocity_scaling_factor,
                                                    p("trajectory_velocity_scaling").value, 1.0,
                                                    "max_velocity_scaling_factor")
        acceleration_scaling = convert.value_or_default(goal.max_acceleration_scaling_factor,
                                                        p("trajectory_acceleration_scaling").value, 1.0,
                                                        "max_acceleration_scaling_factor")
        jerk = convert.value_or_default(goal.max_jerk, p("trajectory_jerk_limit").value, MAX_JERK, "max_jerk", " rad/s³")
        duration = convert.value_or_default(goal.duration, 0.0, MAX_DURATION, "duration", " s")
        options = TrajectoryOptions(
            waypoints=goal.waypoints or p("trajectory_waypoints").value,
            seeds=goal.seeds or p("trajectory_seeds").value,
            max_iterations=p("trajectory_max_iterations").value,
            time_budget=goal.time_budget or p("trajectory_time_budget").value,
            position_tolerance=goal.position_tolerance or 1e-3,
            orientation_tolerance=goal.orientation_tolerance or math.radians(1.0),
            clearance=clearance,
            required_clearance=clearance,  # the action promises it along the motion (outside the approaches)
            velocity_scaling=velocity_scaling,
            acceleration_scaling=acceleration_scaling,
            duration=duration,
            control_period=1.0 / p("trajectory_control_rate").value,
            sample_period=1.0 / p("trajectory_sample_rate").value,
        )
        limits = TrajectoryLimits.from_chain(chain, acceleration=p("trajectory_acceleration_limit").value)
        if jerk > 0:
            limits = dataclasses.replace(limits, jerk=torch.full_like(limits.velocity, jerk))
        problem = dict(start=convert.to_tensor(chain, start), options=options, limits=limits)
        if goal.avoid_collisions and world.checker is not None:
            # the tight model decides validity; the coarse spheres give the costs and gradients
            problem["collision"] = world.deciding
            problem["collision_cost"] = world.checker
        if goal.target_type == Goal.TARGET_CONFIGURATION:
            target, _ = convert.read_positions(chain, goal.target_configuration.name, goal.target_configuration.position, 1)
            problem["target_configuration"] = convert.to_tensor(chain, target[0])
            return problem
        if goal.target_type not in (Goal.TARGET_POSE, Goal.TARGET_POSITION):
            raise RequestError(f"target_type {goal.target_type} is unknown (0: pose, 1: position, 2: configuration)")
        link = goal.target_link or settings.end_effector_link
        if not link:
            raise RequestError("target_link is empty and the node has no end_effector_link")
        convert.link_index(chain, link, "target_link")
        frame = goal.target_pose.header.frame_id
        if frame not in ("", chain.root_link, settings.base_link):
            raise RequestError(f"target_pose.header.frame_id '{frame}' must be the root link '{chain.root_link}'"
                               + (f" or base_link '{settings.base_link}'" if settings.base_link else ""))
        pose = convert.poses_from_msgs([goal.target_pose.pose], "target_pose")
        target = pose_xyzw_to_matrix(convert.to_tensor(chain, pose[0]))
        if frame and frame != chain.root_link:  # base_link: must not move with the joints
            base = chain.link_index(frame)
            if chain.ancestor_mask[:, base].any():
                raise RequestError(f"target_pose.header.frame_id '{frame}' moves with the joints; use '{chain.root_link}'")
            target = forward_kinematics(chain, torch.zeros(chain.num_dofs, dtype=chain.dtype, device=chain.device),
                                        links=base) @ target
        problem.update(link=link, target_pose=target, position_only=goal.target_type == Goal.TARGET_POSITION)
        return problem

    # ------------------------------------------------------------------ messages
    def _trajectory_msg(self, chain, timed) -> JointTrajectory:
        """The timed motion (a :class:`~ros_torch_kin.motion.time_optimal.TimedTrajectory`)."""
        msg = JointTrajectory(joint_names=list(chain.joint_names))
        msg.header.frame_id = chain.root_link
        msg.header.stamp = self.node.get_clock().now().to_msg()
        times = convert.to_numpy(timed.times).tolist()
        for q, v, a, t in zip(convert.to_numpy(timed.positions).tolist(), convert.to_numpy(timed.velocities).tolist(),
                              convert.to_numpy(timed.accelerations).tolist(), times):
            seconds = math.floor(t)
            msg.points.append(JointTrajectoryPoint(
                positions=q, velocities=v, accelerations=a,
                time_from_start=Duration(sec=seconds, nanosec=int(round((t - seconds) * 1e9)) % 1_000_000_000),
            ))
        return msg

    def _markers_msg(self, chain, solution, problem, scene) -> MarkerArray:
        """The tool path (LINE_STRIP) and target (SPHERE) of a pose goal, and the obstacles the
        plan was checked against."""
        markers = MarkerArray()
        stamp = self.node.get_clock().now().to_msg()
        obstacles = [m for i, o in enumerate(scene) for m in obstacle_markers(o, i, chain.root_link, stamp)]
        link = problem.get("link")
        if link is None:
            markers.markers = obstacles
            return markers
        with torch.no_grad():
            points = convert.to_numpy(forward_kinematics(chain, solution.positions[0], links=link)[:, :3, 3])
        path = Marker(ns="ros_torch_kin/planned_path", id=0, type=Marker.LINE_STRIP, action=Marker.ADD)
        path.header.frame_id, path.header.stamp = chain.root_link, stamp
        path.scale.x = 0.005
        path.color.r, path.color.g, path.color.b, path.color.a = 0.1, 0.6, 1.0, 1.0
        path.pose.orientation.w = 1.0
        path.points = [Point(x=x, y=y, z=z) for x, y, z in points.tolist()]
        target = Marker(ns="ros_torch_kin/planned_path", id=1, type=Marker.SPHERE, action=Marker.ADD)
        target.header.frame_id, target.header.stamp = chain.root_link, stamp
        target.scale.x = target.scale.y = target.scale.z = 0.03
        target.color.r, target.color.g, target.color.a = 1.0, 0.4, 0.8
        goal = convert.to_numpy(problem["target_pose"])
        target.pose.position.x, target.pose.position.y, target.pose.position.z = goal[:3, 3].tolist()
        target.pose.orientation.w = 1.0
        markers.markers = [path, target] + obstacles
        return markers


#: Largest clearance a goal may ask for, m.
MAX_CLEARANCE = 1.0
#: Largest jerk limit (rad/s³) and duration (s) a goal may ask for.
MAX_JERK = 1e6
MAX_DURATION = 3600.0


def _clearance(requested: float, default: float) -> float:
    return convert.value_or_default(requested, default, MAX_CLEARANCE, "clearance", " m")


def _abort(goal_handle, result, message: str):
    result.success = False
    result.message = message
    goal_handle.abort()
    return result
