"""Fixtures for integration tests: the real, installed node as a process and clients in this one.

The whole session uses one ROS_DOMAIN_ID, picked at random in 150..199 unless ROS_DOMAIN_ID is
set, so a concurrent run on the same machine does not see our nodes. Modules that need the node
import these fixtures; they skip with the reason when the package was not built by colcon.
"""

from __future__ import annotations

import os
import random
import threading
import time
from contextlib import contextmanager

import pytest

try:  # the generated interfaces exist only in the colcon-installed package
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from ros_torch_kin.ros.client import KinematicsClient
    from ros_torch_kin.ros.node_process import NodeProcess, node_executable
    from ros_torch_kin.srv import ComputeFK  # noqa: F401

    ROS_SKIP = "" if node_executable().exists() else "the ros_torch_kin node is not installed"
except ImportError as error:
    ROS_SKIP = f"ROS 2 package not built/sourced ({error}); run `make test`"

requires_ros = pytest.mark.skipif(bool(ROS_SKIP), reason=ROS_SKIP or "-")


@pytest.fixture(scope="session")
def ros_domain():
    domain = int(os.environ.get("ROS_DOMAIN_ID") or random.Random(os.getpid()).randint(150, 199))
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    rclpy.init()
    yield domain
    rclpy.try_shutdown()


@contextmanager
def running_node(ros_domain, parameters=None, name="ros_torch_kin", wait_for_services=True, remappings=None):
    """The installed node with ``parameters``; yields (process, client) once it answers a call
    (the graph can still list a previous node's endpoints for a while after it exited)."""
    with NodeProcess(parameters=parameters, domain_id=ros_domain, name=name, remappings=remappings) as process:
        client = KinematicsClient(server=f"/{name}", timeout=60.0)
        try:
            if wait_for_services and not (client.wait_for_server(60.0) and _answers(client)):
                pytest.fail(f"the node's services did not answer; its log:\n{process.log()}")
            yield process, client
        finally:
            client.close()
        code = process.stop()
        assert code == 0, f"the node exited with {code}; its log:\n{process.log()}"


def _answers(client) -> bool:
    from ros_torch_kin.ros.client import KinematicsError

    try:
        client.robot_model()
    except KinematicsError as error:
        return "no robot model" in str(error)  # alive, configured to wait for a description
    return True


class Spinner:
    """A node of this process spun in a background thread, for topics and parameter services."""

    def __init__(self, name: str):
        self.node = rclpy.create_node(name)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()

    def call(self, client, request, timeout=30.0):
        assert client.wait_for_service(timeout_sec=timeout), f"{client.srv_name} not available"
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert future.done(), f"no answer from {client.srv_name}"
        return future.result()


def wait_until(predicate, timeout=20.0, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def set_parameters(spinner: Spinner, **values):
    """Call /ros_torch_kin/set_parameters; returns [(successful, reason)] per parameter."""
    from rcl_interfaces.msg import Parameter, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter as RclpyParameter

    client = spinner.node.create_client(SetParameters, "/ros_torch_kin/set_parameters")
    request = SetParameters.Request(
        parameters=[Parameter(name=k, value=RclpyParameter(k, value=v).get_parameter_value()) for k, v in values.items()]
    )
    assert isinstance(request.parameters[0].value, ParameterValue)
    result = spinner.call(client, request)
    spinner.node.destroy_client(client)
    return [(r.successful, r.reason) for r in result.results]
