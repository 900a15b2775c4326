"""KinematicsClient against the real node with replies lost on purpose: every call still gets its
own answer, once.

Two ways of losing a reply:
* the middleware's (what happens on a busy computer): the client's reply reader keeps only 5
  replies and the client sleeps between sending its first try and reading, while other client
  processes (bench/concurrency_stress.py's) keep the node answering: with Fast DDS every client
  of a service receives every reply, so the others' replies push the client's own out of its
  reader;
* deterministic: the client sends a try for real (the node computes and answers it) and forgets it
  at once, so rclpy drops its reply as it would drop a reply that never came.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ros_fixtures import requires_ros, running_node

from ros_torch_kin.kinematics import Chain, forward_kinematics, matrix_to_pose_xyzw
from ros_torch_kin.robots import bundled_urdf

pytestmark = requires_ros
BENCH = Path(__file__).resolve().parents[1] / "bench"
SUCCEEDED = 4


@pytest.fixture(scope="module")
def arm():
    return Chain.from_urdf(bundled_urdf(), device="cpu", dtype=torch.float64)


@pytest.fixture(scope="module")
def node(ros_domain):
    parameters = {"torch_threads": 1, "trajectory_waypoints": 16, "trajectory_seeds": 8}
    with running_node(ros_domain, parameters) as (process, client):
        yield process, client


def _client_class():
    from ros_torch_kin.ros.client import KinematicsClient

    class LossyClient(KinematicsClient):
        """``stall``: s to sleep, not reading, after sending each call's first try; ``forget``:
        what-substrings whose first ``forget_tries`` tries are sent and forgotten at once."""

        stall = 0.0
        forget: tuple[str, ...] = ()
        forget_tries = 1
        forget_results = 0
        forgotten = 0

        def _exchange(self, what, send, *args, **kwargs):
            tries = [0]

            def lossy_send():
                future = send()
                tries[0] += 1
                if tries[0] == 1 and self.stall:
                    time.sleep(self.stall)  # a descheduled process: the others' replies pile up
                if tries[0] <= self.forget_tries and any(word in what for word in self.forget):
                    return self._forget(future)
                return future

            return super()._exchange(what, lossy_send, *args, **kwargs)

        def _request_result(self, handle):
            future = super()._request_result(handle)
            if self.forget_results > 0:
                self.forget_results -= 1
                return self._forget(future)
            return future

        def _forget(self, future):
            from rclpy.task import Future

            future.cancel()  # rclpy forgets the request: the node's reply to it is dropped
            self.forgotten += 1
            return Future()  # never done, as for a lost reply

    return LossyClient


def _expected_poses(arm, q):
    return matrix_to_pose_xyzw(forward_kinematics(arm, torch.from_numpy(q))).numpy()


def _same_poses(poses, expected) -> bool:
    return poses.shape == expected.shape and bool(
        np.abs(poses[..., :3] - expected[..., :3]).max() < 1e-4
        and np.abs(np.abs((poses[..., 3:] * expected[..., 3:]).sum(-1)) - 1).max() < 1e-5)


def _noise_clients(count: int, requests: int):
    """bench/concurrency_stress.py client processes sending ComputeFK requests back to back."""
    command = [sys.executable, str(BENCH / "concurrency_stress.py"), "--client", "--requests", str(requests),
               "--batch", "100", "--reply-timeout", "2"]
    return [subprocess.Popen(command + ["--seed", str(10 + i)], env=dict(os.environ), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL) for i in range(count)]


def test_replies_lost_in_the_middleware_are_resent(node, arm):
    from rclpy.qos import QoSProfile

    LossyClient = _client_class()
    noise = _noise_clients(3, 3000)
    client = LossyClient(timeout=60.0, retry_timeout=0.5, tries=6, service_qos=QoSProfile(depth=5))
    client.stall = 0.3
    rng = np.random.default_rng(7)
    try:
        assert client.wait_for_server(60.0)
        calls, wrong = 0, []
        deadline = time.monotonic() + 90
        # until several calls needed a resend (the noise clients take a few seconds to start)
        while calls < 20 or (client.resends < 5 and time.monotonic() < deadline):
            q = rng.uniform(-1.0, 1.0, (100, arm.num_dofs))
            poses = client.forward_kinematics(q)
            calls += 1
            if not _same_poses(poses, _expected_poses(arm, q)):
                wrong.append(calls)
    finally:
        client.close()
        for process in noise:
            process.terminate()
            process.wait(10)
    print(f"{calls} calls, {client.resends} resends")
    assert not wrong, f"calls answered with another request's poses: {wrong}"
    # the stalled first tries lost their replies, and the resends answered every call
    assert client.resends >= 1, f"no reply was lost in {calls} calls: the test did not test anything"


def test_first_reply_wins_and_late_replies_are_dropped(node, arm):
    from ros_torch_kin.ros.client import KinematicsClient

    # resends long before any reply can come: every call has several tries in flight (1,000
    # configurations take the node a few ms to answer; with 50, a quick moment of this shared
    # machine answered most calls within the 1 ms, and only 5 of 60 resent)
    client = KinematicsClient(timeout=60.0, retry_timeout=0.001, tries=4)
    rng = np.random.default_rng(8)
    try:
        for _ in range(30):  # each call's answer is its own, never a late one of the call before
            q = rng.uniform(-1.0, 1.0, (1000, arm.num_dofs))
            assert _same_poses(client.forward_kinematics(q), _expected_poses(arm, q))
            model = client.robot_model()  # another service in between: still its own answer
            assert model.joint_names == tuple(arm.joint_names)
        assert client.resends >= 10  # most calls had several tries in flight
    finally:
        client.close()


def test_an_unanswered_call_fails_naming_the_service_and_the_tries(node, arm):
    from ros_torch_kin.ros.client import KinematicsError

    client = _client_class()(timeout=0.5, retry_timeout=0.1, tries=3)
    client.forget, client.forget_tries = ("compute_fk",), 3
    try:
        start = time.monotonic()
        with pytest.raises(KinematicsError, match=r"no answer from service /ros_torch_kin/compute_fk after 3 tries"):
            client.forward_kinematics(np.zeros(arm.num_dofs))
        assert time.monotonic() - start < 5
        assert client.forgotten == 3
        client.forget = ()
        assert client.forward_kinematics(np.zeros(arm.num_dofs)).shape == (arm.num_links, 7)  # the client still works
    finally:
        client.close()


def test_lost_scene_replies(node):
    from ros_torch_kin.ros.client import KinematicsError, obstacle
    from ros_torch_kin.srv import UpdateScene

    client = _client_class()(timeout=30.0, retry_timeout=0.2, tries=4)
    client.forget = ("update_scene",)
    R = UpdateScene.Request
    try:
        # ADD is resent: the node applies it twice, the scene holds the box once
        obstacles, _ = client.update_scene(R.ADD, [obstacle("retry_box", "box", (0.1, 0.1, 0.1), (2, 0, 0, 0, 0, 0, 1))])
        assert [o.id for o in obstacles].count("retry_box") == 1
        assert client.forgotten == 1
        # REMOVE applied, reply lost: a LIST shows the id gone, and that is the answer
        obstacles, _ = client.update_scene(R.REMOVE, [obstacle("retry_box", "box", (0.1, 0.1, 0.1))])
        assert "retry_box" not in [o.id for o in obstacles]
        assert client.forgotten == 3  # the REMOVE's first try and the LIST's first try
        # a REMOVE the node refuses (unknown id, nothing removed), reply lost: resent, refused again
        client.update_scene(R.ADD, [obstacle("kept", "sphere", (0.05,), (2, 0, 0, 0, 0, 0, 1))])
        with pytest.raises(KinematicsError, match="'ghost' is not in the scene"):
            client.update_scene(R.REMOVE, [obstacle("kept", "sphere", (0.05,)), obstacle("ghost", "sphere", (0.05,))])
        # ATTACH applied, reply lost: the LIST shows it carried, and that is the answer (a resend would
        # be refused as already attached); DETACH the same way
        obstacles, _ = client.update_scene(R.ATTACH, [_attach("kept", "tool0")])
        assert {o.id: o.link for o in obstacles}["kept"] == "tool0"
        obstacles, _ = client.update_scene(R.DETACH, [_attach("kept", "")])
        assert {o.id: o.link for o in obstacles}["kept"] == ""
        client.forget = ()
        assert "kept" in [o.id for o in client.update_scene(R.LIST)[0]]
        client.update_scene(R.CLEAR)
    finally:
        client.close()


def _attach(id: str, link: str):
    """An Obstacle message naming a scene obstacle by id (and the link to carry it on)."""
    from ros_torch_kin.msg import Obstacle

    return Obstacle(id=id, link=link)


def test_lost_goal_acceptance_and_result_are_recovered(node, arm):
    from sensor_msgs.msg import JointState

    from ros_torch_kin.action import PlanTrajectory

    start, target = np.zeros(arm.num_dofs), np.full(arm.num_dofs, 0.3)
    goal = PlanTrajectory.Goal(target_type=PlanTrajectory.Goal.TARGET_CONFIGURATION, time_budget=5.0)
    goal.start = JointState(name=list(arm.joint_names), position=start.tolist())
    goal.target_configuration = JointState(name=list(arm.joint_names), position=target.tolist())
    client = _client_class()(timeout=60.0, retry_timeout=0.3, tries=4)
    # the first goal request is accepted by the node but its acceptance is lost; the resend (same
    # goal id) is refused as a duplicate, so the client follows the accepted goal; the first
    # result request's reply is lost too
    client.forget, client.forget_results = ("goal request",), 1
    try:
        status, result = client.plan_trajectory(goal)
        assert status == SUCCEEDED and result.success, result.message
        assert np.allclose(result.trajectory.points[-1].positions, target, atol=1e-3)
        assert client.forgotten == 2 and client.resends >= 2
        client.forget = ()
        status, result = client.plan_trajectory(goal)  # a plain goal afterwards
        assert status == SUCCEEDED and result.success, result.message
    finally:
        client.close()
