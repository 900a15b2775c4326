"""`make demo`: start the ros_torch_kin node on the bundled 7-DOF arm, call its services with a few
thousand configurations, plan a trajectory with its action, follow joint_states to link poses, and
print results and timings.

Run after `colcon build` and sourcing the install: ``python -m ros_torch_kin.ros.demo``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import rclpy
from sensor_msgs.msg import JointState

from ..msg import LinkPoses
from .client import KinematicsClient, KinematicsError
from .node_process import NodeProcess


def _timed(fn, repeats: int):
    result, times = None, []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, 1e3 * float(np.median(times))


def _seconds(duration) -> float:
    """A builtin_interfaces/Duration in s."""
    return duration.sec + 1e-9 * duration.nanosec


def _fmt(values, digits=4) -> str:
    return "[" + ", ".join(f"{v:+.{digits}f}" for v in np.asarray(values).ravel()) + "]"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096, help="configurations per service call")
    parser.add_argument("--repeats", type=int, default=10, help="calls per timing (median reported)")
    args = parser.parse_args(argv)
    domain = int(os.environ.get("ROS_DOMAIN_ID", 0)) or 1 + os.getpid() % 100

    print(f"starting the ros_torch_kin node (ROS_DOMAIN_ID={domain}) ...")
    with NodeProcess(domain_id=domain) as node:
        os.environ["ROS_DOMAIN_ID"] = str(domain)
        rclpy.init()
        client = KinematicsClient()
        try:
            if not client.wait_for_server(30):
                raise SystemExit(f"the node did not come up; its log:\n{node.log()}")
            _run(client, args)
        finally:
            client.close()
            rclpy.try_shutdown()
        code = node.stop()
        print(f"\nnode stopped with SIGINT, exit code {code}")


def _run(client: KinematicsClient, args) -> None:
    model = client.robot_model()
    print(f"\nserving '{model.name}' on {model.device} ({model.dtype}), from {model.description_source}")
    print(f"  joints ({len(model.joint_names)}): {', '.join(model.joint_names)}")
    print(f"  links ({len(model.link_names)}): {', '.join(model.link_names)}")
    J = len(model.joint_names)
    rng = np.random.default_rng(0)
    q = model.lower_limits + rng.random((args.batch, J)) * (model.upper_limits - model.lower_limits)
    ee = model.end_effector_link

    poses, fk_ms = _timed(lambda: client.forward_kinematics(q), args.repeats)
    print(f"\nComputeFK: {args.batch} configurations -> poses {poses.shape} (B x L x [x y z qx qy qz qw])")
    print(f"  {ee} of configuration 0: {_fmt(poses[0, model.link_names.index(ee)])}")
    print(f"  round trip {fk_ms:.2f} ms median ({1e3 * fk_ms / args.batch:.1f} µs per configuration)")
    _, single_ms = _timed(lambda: client.forward_kinematics(q[0]), args.repeats)
    print(f"  single configuration: {single_ms:.2f} ms round trip")

    (jacobians, ee_poses), jac_ms = _timed(lambda: client.jacobian(q, ee), args.repeats)
    print(f"\nComputeJacobian of {ee}: {jacobians.shape} (B x 6 x J), {jac_ms:.2f} ms round trip")
    print(f"  configuration 0, linear z row: {_fmt(jacobians[0, 2])}")

    target = np.array([0.5, 0.2, 0.6, 0.0, 1.0, 0.0, 0.0])  # tool pointing down
    (costs, gradients), grad_ms = _timed(lambda: client.pose_target_gradient(q, [ee], [target]), args.repeats)
    print(f"\nComputeGradient (pose target {_fmt(target[:3], 2)}, tool down): costs {costs.shape}, "
          f"gradients {gradients.shape}, {grad_ms:.2f} ms round trip")
    print(f"  configuration 0: cost {costs[0]:.4f}, d(cost)/dq {_fmt(gradients[0])}")
    # a few gradient-descent steps on configuration 0, with gradients from the node
    q0 = q[:1].copy()
    for _ in range(50):
        cost, gradient = client.pose_target_gradient(q0, [ee], [target])
        q0 = np.clip(q0 - 0.2 * gradient, model.lower_limits, model.upper_limits)
    print(f"  50 gradient steps from configuration 0: cost {costs[0]:.4f} -> {cost[0]:.5f}")
    forces = np.tile([0.0, 0.0, -1.0], (args.batch, 1, 1))  # pull the tool down, no torque
    vjp, vjp_ms = _timed(lambda: client.vector_jacobian_product(q, [ee], forces, np.zeros_like(forces)), args.repeats)
    print(f"  VECTOR_JACOBIAN_PRODUCT (force -z on {ee}): {vjp.shape}, {vjp_ms:.2f} ms; "
          f"equals J^T f: {np.allclose(vjp, jacobians[:, 2] * -1.0, atol=1e-4)}")

    free_q, free_targets = _collision_and_ik(client, model, q, poses)
    _plan(client, model, free_q, free_targets)

    print("\njoint_states -> ~/link_poses:")
    received: list[LinkPoses] = []
    node = client.node
    node.create_subscription(LinkPoses, "/ros_torch_kin/link_poses", received.append, 10)
    publisher = node.create_publisher(JointState, "joint_states", 10)
    state = JointState(name=list(model.joint_names), position=q[1].tolist())
    deadline = time.monotonic() + 10.0
    while not received and time.monotonic() < deadline:
        state.header.stamp = node.get_clock().now().to_msg()
        publisher.publish(state)
        client._executor.spin_once(timeout_sec=0.1)
    if received:
        msg = received[-1]
        tip = msg.poses[msg.link_names.index(ee)]
        print(f"  {len(msg.poses)} link poses in '{msg.header.frame_id}'; {ee} at "
              f"({tip.position.x:+.4f}, {tip.position.y:+.4f}, {tip.position.z:+.4f}), same as ComputeFK: "
              f"{np.allclose([tip.position.x, tip.position.y, tip.position.z], poses[1, model.link_names.index(ee), :3], atol=1e-5)}")
    else:
        print("  no link poses received within 10 s")

    print("\nbad input is answered, and the node keeps serving:")
    for label, call in (
        ("6 values per row for a 7-joint robot", lambda: client.forward_kinematics(np.zeros((2, 6)).ravel())),
        ("a NaN", lambda: client.forward_kinematics(np.full(J, np.nan))),
        ("an unknown joint", lambda: client.forward_kinematics(np.zeros(J), joint_names=["elbow"] + list(model.joint_names[1:]))),
    ):
        try:
            call()
            print(f"  {label}: accepted?!")
        except KinematicsError as error:
            print(f"  {label}: {error}")
    print(f"  and then a good call: {client.forward_kinematics(q[:2]).shape}")


def _collision_and_ik(client: KinematicsClient, model, q, poses) -> tuple[np.ndarray, np.ndarray]:
    """A small scene, a batch of collision checks, and IK targets solved with and without it;
    returns the collision-free solutions that keep the planner's clearance and their targets."""
    from ..srv import UpdateScene
    from .client import obstacle

    collision = client.collision_model()
    counts = dict(zip(collision.link_names, collision.sphere_counts))
    print(f"\ncollision model: {sum(counts.values())} spheres "
          f"({', '.join(f'{name} {n}' for name, n in counts.items() if n)}); "
          f"{len(collision.enabled_link_a)} self-collision link pairs checked, "
          f"{len(collision.disabled_link_a)} not (adjacent, SRDF, always in collision)")
    scene = [obstacle("shelf", "box", (0.3, 0.8, 0.02), (0.55, 0.0, 0.55, 0, 0, 0, 1)),
             obstacle("post", "cylinder", (1.0, 0.05), (-0.45, 0.3, 0.5, 0, 0, 0, 1)),
             obstacle("ball", "sphere", (0.12,), (0.0, -0.5, 0.4, 0, 0, 0, 1))]
    obstacles, version = client.update_scene(UpdateScene.Request.ADD, scene)
    print(f"UpdateScene: {len(obstacles)} obstacles ({', '.join(o.id for o in obstacles)}), scene version {version}")
    report, check_ms = _timed(lambda: client.check_collision(q), 3)
    hits = report.in_collision
    print(f"CheckCollision: {len(q)} configurations in {check_ms:.1f} ms round trip: {int(hits.sum())} in collision "
          f"({int((hits & (report.pair_kind == 1)).sum())} with obstacles, "
          f"{int((hits & (report.pair_kind == 0)).sum())} self)")
    b = int(np.flatnonzero(hits)[0]) if hits.any() else 0
    print(f"  configuration {b}: closest pair {report.link_a[b]} - {report.link_b[b]}, "
          f"signed distance {1e3 * report.min_distance[b]:+.1f} mm")

    ee = model.end_effector_link
    targets = poses[:64, model.link_names.index(ee)]  # reachable: FK of random configurations
    free = client.inverse_kinematics(targets)
    print(f"ComputeIK: {len(targets)} {ee} targets (FK of random configurations): {free.message}; "
          f"worst error {1e3 * free.position_errors.max():.4f} mm, {np.degrees(free.orientation_errors.max()):.4f} deg")
    avoiding = client.inverse_kinematics(targets, avoid_collisions=True, time_budget=3.0)
    solved = avoiding.solutions[avoiding.solved]
    clear = int((~client.check_collision(solved).in_collision).sum()) if len(solved) else 0
    print(f"  with avoid_collisions: {avoiding.message} (targets inside an obstacle cannot be); "
          f"collision-free by CheckCollision: {clear} of {len(solved)}; without it, "
          f"{int(client.check_collision(free.solutions).in_collision.sum())} of the 64 solutions collide")
    # the planner keeps trajectory_clearance (10 mm) everywhere, its start included
    roomy = ~client.check_collision(solved, margin=0.012).in_collision if len(solved) else np.zeros(0, bool)
    return solved[roomy], targets[avoiding.solved][roomy]  # the scene stays for the planner


def _plan(client: KinematicsClient, model, free_q, free_targets) -> None:
    """PlanTrajectory among the obstacles: from one collision-free IK solution to the tool pose of
    another, then the same goal with avoidance off, both motions checked densely."""
    from sensor_msgs.msg import JointState as Start

    from ..action import PlanTrajectory
    from ..srv import UpdateScene
    from .convert import fill_pose

    ee = model.end_effector_link
    if len(free_q) < 2:
        print("\nPlanTrajectory: fewer than two collision-free IK solutions to plan between; skipped")
        return
    results = {}
    for avoid in (True, False):
        goal = PlanTrajectory.Goal(target_type=PlanTrajectory.Goal.TARGET_POSE, target_link=ee, avoid_collisions=avoid)
        goal.start = Start(name=list(model.joint_names), position=free_q[0].tolist())
        fill_pose(goal.target_pose.pose, free_targets[1])
        feedback = []
        started = time.perf_counter()
        status, result = client.plan_trajectory(goal, on_feedback=feedback.append)
        results[avoid] = (status, result, feedback, 1e3 * (time.perf_counter() - started))
    status, result, feedback, wall_ms = results[True]
    print(f"\nPlanTrajectory (action) among the obstacles: {ee} to {_fmt(free_targets[1, :3], 3)}")
    print(f"  {len(feedback)} feedback messages; {'succeeded' if result.success else 'failed'}: {result.message}")
    if result.success:
        points = result.trajectory.points
        period = _seconds(points[1].time_from_start) - _seconds(points[0].time_from_start) if len(points) > 1 else 0.0
        print(f"  final error {1e3 * result.position_error:.3f} mm, {np.degrees(result.orientation_error):.3f} deg; "
              f"a {result.duration:.2f} s motion timed '{result.time_parameterization}', sent as {len(points)} "
              f"samples every {1e3 * period:.0f} ms; clearance "
              f"{1e3 * result.min_clearance:.1f} mm ({result.closest_link_a} - {result.closest_link_b}); "
              f"solved in {1e3 * result.solve_time:.0f} ms ({wall_ms:.0f} ms round trip, status {status})")
    for avoid, label in ((True, "with avoidance"), (False, "without avoidance")):
        plan = results[avoid][1]
        if plan.success:
            points = np.array([p.positions for p in plan.trajectory.points])
            dense = np.concatenate([a + np.linspace(0, 1, 10, endpoint=False)[:, None] * (b - a)
                                    for a, b in zip(points[:-1], points[1:])] + [points[-1:]])
            hits = client.check_collision(dense).in_collision
            print(f"  {label}: {int(hits.sum())} of {len(dense)} configurations along the motion in collision")
    client.update_scene(UpdateScene.Request.CLEAR)


if __name__ == "__main__":
    main()
