"""The real node's parameters: every change either works or is refused with a reason; start-up
from each description source; config/default.yaml matches the declared defaults."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ros_fixtures import Spinner, requires_ros, running_node, set_parameters, wait_until

from ros_torch_kin.kinematics import Chain, forward_kinematics
from ros_torch_kin.robots import bundled_urdf
from ros_torch_kin.robots.generated import random_chain_urdf

pytestmark = requires_ros
CONFIG = Path(__file__).resolve().parents[1] / "config" / "default.yaml"


@pytest.fixture()
def spinner(ros_domain):
    s = Spinner("parameter_tester")
    yield s
    s.close()


def test_config_file_matches_the_declared_parameters():
    from ros_torch_kin.ros.parameters import PARAMETERS

    values = yaml.safe_load(CONFIG.read_text())["/**"]["ros__parameters"]
    assert values == {p.name: p.default for p in PARAMETERS}


def test_runtime_changes_apply_or_are_refused_with_a_reason(ros_domain, spinner):
    from ros_torch_kin.ros.client import KinematicsError

    arm = Chain.from_urdf(bundled_urdf(), device="cpu", dtype=torch.float64)
    with running_node(ros_domain) as (process, client):
        assert set_parameters(spinner, end_effector_link="link_9") == [
            (False, "end_effector_link 'link_9' is not a link of robot 'rtk_arm7'")]
        assert set_parameters(spinner, dtype="float16") == [(False, "dtype must be one of float32, float64, not 'float16'")]
        assert set_parameters(spinner, joint_limit_policy="ignore")[0][0] is False
        assert set_parameters(spinner, max_batch=0)[0][0] is False  # the descriptor's range
        ok, reason = set_parameters(spinner, robot_description="<robot name='x'><link name='a'/><link name='a'/></robot>")[0]
        assert not ok and "link name 'a' is used twice" in reason
        if not torch.cuda.is_available():
            ok, reason = set_parameters(spinner, device="cuda")[0]
            assert not ok and "no CUDA device" in reason
        assert client.robot_model().name == "rtk_arm7"  # nothing refused was applied

        assert set_parameters(spinner, dtype="float64", end_effector_link="link_5", max_batch=3) == [(True, "")] * 3
        model = client.robot_model()
        assert (model.dtype, model.end_effector_link, model.max_batch) == ("float64", "link_5", 3)
        q = np.random.default_rng(0).uniform(-1, 1, (3, 7))
        J, pose = client.jacobian(q)  # the new default link
        np.testing.assert_allclose(pose[:, :3], forward_kinematics(arm, torch.from_numpy(q), links="link_5")[:, :3, 3].numpy(),
                                   rtol=0, atol=1e-12)  # float64 now
        with pytest.raises(KinematicsError, match="above max_batch \\(3\\)"):
            client.forward_kinematics(np.zeros((4, 7)))

        outside = np.zeros((2, 7))
        outside[1, 1] = 3.0  # joint_2 limit is ±2.094
        assert set_parameters(spinner, joint_limit_policy="reject") == [(True, "")]
        with pytest.raises(KinematicsError, match="configuration 1: joint 'joint_2' = 3 is outside its limits"):
            client.forward_kinematics(outside)
        assert set_parameters(spinner, joint_limit_policy="clamp") == [(True, "")]
        poses, _, within = client.forward_kinematics(outside, links=["tool0"], full=True)
        clamped = outside.copy()
        clamped[1, 1] = arm.upper_limits[1].item()
        expected = forward_kinematics(arm, torch.from_numpy(clamped), links="tool0")[:, :3, 3].numpy()
        np.testing.assert_allclose(poses[:, 0, :3], expected, rtol=0, atol=1e-9)
        assert within.tolist() == [True, False]

        other = random_chain_urdf(2, 4, name="set_by_parameter")
        assert set_parameters(spinner, robot_description=other, end_effector_link="") == [(True, "")] * 2
        assert client.robot_model().name == "set_by_parameter"
        assert "from parameter robot_description" in process.log()


def test_start_without_a_robot_then_receive_one_on_the_topic(ros_domain, spinner):
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from std_msgs.msg import String

    from ros_torch_kin.ros.client import KinematicsError

    with running_node(ros_domain, {"bundled_robot": ""}) as (process, client):
        with pytest.raises(KinematicsError, match="no robot model"):
            client.forward_kinematics(np.zeros(7))
        publisher = spinner.node.create_publisher(
            String, "/robot_description", QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        publisher.publish(String(data=bundled_urdf()))
        assert wait_until(lambda: process.wait_for_log("from topic robot_description", timeout=0.1), timeout=20)
        assert client.forward_kinematics(np.zeros(7)).shape == (10, 7)
        # the log says what it serves and how long its collision model took to build
        served = re.search(r"serving robot 'rtk_arm7' \(7 DOFs, .* sphere-tree leaves, built in (\d+\.\d) s\) on .*"
                           r"from topic robot_description", process.log())
        assert served and 0.0 <= float(served.group(1)) < 120.0, process.log()[-2000:]


def test_latched_description_published_before_the_node_starts(ros_domain, spinner):
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from std_msgs.msg import String

    publisher = spinner.node.create_publisher(
        String, "/robot_description", QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    publisher.publish(String(data=random_chain_urdf(5, 3, name="latched_robot")))
    with running_node(ros_domain, {"bundled_robot": ""}) as (_, client):
        assert wait_until(lambda: client.robot_model().name == "latched_robot" if _has_model(client) else False)


def _has_model(client) -> bool:
    from ros_torch_kin.ros.client import KinematicsError

    try:
        client.robot_model()
        return True
    except KinematicsError:
        return False


def test_robot_description_file_and_bad_start_parameters(ros_domain, tmp_path):
    from ros_torch_kin.ros.node_process import NodeProcess

    urdf = tmp_path / "robot.urdf"
    urdf.write_text(random_chain_urdf(9, 4, name="from_file"))
    with running_node(ros_domain, {"robot_description_file": str(urdf), "end_effector_link": ""}) as (_, client):
        model = client.robot_model()
        assert model.name == "from_file" and model.description_source == f"file {urdf}"
    with NodeProcess({"device": "tpu"}, domain_id=ros_domain) as process:
        assert process.process.wait(60) == 2
        assert "device must be auto, cpu, cuda or cuda:N, not 'tpu'" in process.log()
    with NodeProcess({"sensor_lattice": 0.001}, domain_id=ros_domain) as process:  # millions of nodes per view
        assert process.process.wait(60) == 2
        assert "sensor_lattice must be 0 (none) or at least 0.01 m, not 0.001" in process.log()
    with running_node(ros_domain, {"robot_description_file": str(tmp_path / "missing.urdf")},
                      wait_for_services=False) as (process, _):
        assert process.wait_for_log("cannot load the configured robot: robot_description_file")
        assert "cannot be read: No such file or directory" in process.log()


#: Runs a launch file as `ros2 launch` would (ros2launch itself is not needed): path, then name:=value.
LAUNCH = """
import sys
from launch import LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
path, *arguments = sys.argv[1:]
service = LaunchService()
service.include_launch_description(IncludeLaunchDescription(
    PythonLaunchDescriptionSource(path), launch_arguments=[tuple(a.split(":=", 1)) for a in arguments]))
sys.exit(service.run())
"""


def test_launch_file_starts_the_node_with_its_arguments(ros_domain, tmp_path):
    pytest.importorskip("launch_ros", reason="launch_ros is not installed (no ROS 2 launch here)")
    from ros_torch_kin.ros.client import KinematicsClient
    from ros_torch_kin.ros.node_process import package_share

    urdf = tmp_path / "robot.urdf"
    urdf.write_text(random_chain_urdf(4, 3, name="launched_robot"))
    launch_file = package_share() / "launch" / "ros_torch_kin.launch.py"
    log = tmp_path / "launch.log"
    with open(log, "w") as output:
        process = subprocess.Popen([sys.executable, "-c", LAUNCH, str(launch_file), f"urdf_file:={urdf}",
                                    "namespace:=launched"], stdout=output, stderr=subprocess.STDOUT)
    client = KinematicsClient(server="/launched/ros_torch_kin", timeout=60.0)
    try:
        assert client.wait_for_server(60.0), log.read_text()
        model = client.robot_model()
        # urdf_file overrides the params file's bundled robot; the rest comes from config/default.yaml
        assert model.name == "launched_robot" and model.description_source == f"file {urdf}"
        assert (model.max_batch, model.joint_limit_policy, model.dtype) == (100_000, "report", "float32")
    finally:
        client.close()
        process.send_signal(signal.SIGINT)
        code = process.wait(30)
    assert code == 0, log.read_text()
    assert "process has finished cleanly" in log.read_text()
