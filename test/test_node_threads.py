"""The node's thread policy: passive OpenMP waits set by its executable before torch loads, and the
torch_threads parameter (0 = automatic by request size) applied per request, also when changed;
its allocator policy (freed memory kept) in the same start-up line."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from ros_fixtures import Spinner, requires_ros, running_node, set_parameters

pytestmark = requires_ros


def test_passive_waits_and_torch_threads(ros_domain):
    with running_node(ros_domain, {"collision_checking": False}) as (process, client):
        assert "torch threads: automatic per request; OpenMP workers wait passively" in process.log(), process.log()
        assert "freed memory: kept (blocks up to 32 MiB" in process.log(), process.log()
        model = client.robot_model()
        rng = np.random.default_rng(0)
        q = rng.uniform(model.lower_limits, model.upper_limits, (2000, len(model.joint_names)))
        poses = client.forward_kinematics(q)  # large: in a worker, all cores
        spinner = Spinner("threads_parameters")
        try:
            for threads in (2, 1, 0):
                assert set_parameters(spinner, torch_threads=threads) == [(True, "")]
                np.testing.assert_allclose(client.forward_kinematics(q), poses, atol=1e-5)
                ik = client.inverse_kinematics(poses[:50, -1], time_budget=2.0)
                assert ik.solved.mean() > 0.9, ik.message
        finally:
            spinner.close()


def test_a_node_stopped_while_its_workers_run_exits_cleanly(ros_domain):
    """Stopped a few seconds after it starts, while its worker pool still runs the timing
    warm-up: the jobs finish without touching rclpy objects, and the process exits with 0 (a
    worker that woke the destroyed executor crashed it with SIGSEGV in about one stop of three).
    Stopped at once, while its modules still load: also 0 (a KeyboardInterrupt there once ended
    it with a traceback, when a slow moment of the machine kept it importing past 2 s)."""
    from ros_torch_kin.ros.node_process import NodeProcess

    codes = []
    for delay in (1.0, 2.0, 3.0, 4.0):
        with NodeProcess(parameters={}, domain_id=ros_domain, name="rtk_stopped") as process:
            time.sleep(delay)
            codes.append((process.stop(), process.log()[-2000:]))
    assert all(code == 0 for code, _ in codes), [log for code, log in codes if code != 0]


def test_a_start_interrupted_after_its_workers_began_leaves_no_thread(ros_domain, monkeypatch):
    """A SIGINT that lands in the constructor as a KeyboardInterrupt, after the node handed its
    worker pool a job (the timing warm-up, in the last step of its start), stops the pool and the
    pose publisher's thread with it: the caller has no node to destroy, and a pool thread left
    waiting for work kept the process from ever exiting (about one start in a hundred stopped
    just after the robot failed to load)."""
    import ros_torch_kin.ros.node as node_module  # rclpy: only where ROS is there (requires_ros)

    class InterruptedPlanner:  # the real start up to its last step, then the interrupt
        def __init__(self, node):
            node.run_in_worker(time.sleep, 0.3)
            raise KeyboardInterrupt

    before = set(threading.enumerate())
    monkeypatch.setattr(node_module, "TrajectoryActionServer", InterruptedPlanner)
    with pytest.raises(KeyboardInterrupt):
        node_module.KinematicsNode(namespace="interrupted_start")
    started = [t for t in threading.enumerate() if t not in before]
    assert any(t.name.startswith("ros_torch_kin") for t in started), [t.name for t in started]  # the pool's
    deadline = time.monotonic() + 10
    while any(t.is_alive() for t in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [t.name for t in started if t.is_alive()]


def test_a_crash_in_native_code_leaves_the_threads_stacks_in_the_log(ros_domain):
    """A fatal signal (here SIGSEGV sent to the running node, as a crash in a middleware or torch
    thread raises it) leaves every thread's Python stack in the node's log, not a bare -11."""
    import signal

    from ros_torch_kin.ros.node_process import NodeProcess

    with NodeProcess({"collision_checking": False}, domain_id=ros_domain, name="crashing_node") as process:
        assert process.wait_for_log("torch threads:", timeout=60), process.log()
        # the start-up warm-up (a worker thread importing toppra, scipy, matplotlib) done first: a
        # thread running Python while faulthandler walks its frames can cut the dump short (a
        # second fault), which twice left the log with one thread's first frames
        assert process.wait_for_log("time parameterisation ready", timeout=60), process.log()
        process.process.send_signal(signal.SIGSEGV)
        assert process.process.wait(timeout=30) == -signal.SIGSEGV
        log = process.log()
        assert "Fatal Python error: Segmentation fault" in log and "most recent call first" in log, log[-2000:]
        assert "ros_torch_kin/ros/node.py" in log, log[-2000:]  # the main thread's stack, in the executor's spin
