"""Seeded fuzz against the real node process (one node for the module): a few hundred random
requests across every service and a few dozen malformed descriptions on its robot_description
topic. Every request is answered (never a hang), either success=false with a message or
success=true with only finite numbers; a bad description changes nothing (same robot, same
loaded_at) and the newest valid description wins; the node survives it all."""

from __future__ import annotations

import math
import os
import random
import re

import numpy as np
import pytest
from ros_fixtures import ROS_SKIP, Spinner, requires_ros, running_node, wait_until

from ros_torch_kin.robots import bundled_urdf
from ros_torch_kin.robots.generated import random_chain_urdf

pytestmark = requires_ros

NAME = f"rtk_fuzz_{os.getpid()}"
JOINTS = [f"joint_{i}" for i in range(1, 8)]
LINKS = ["base_link", "link_1", "link_2", "link_3", "link_4", "link_5", "link_6", "link_7", "flange", "tool0"]
SPECIAL = [0.0, -0.0, 1e6, -1e6, 1.0000001e6, 1e39, -1e39, 3.4e38, 1e300, -1e300, 5e-324, 2.2e-308,
           math.nan, math.inf, -math.inf, 1e12, 1.0000001e12]
UNICODE = ["jöint_1", "リンク", "🤖", "link_1 ", " tool0", "TOOL0", "\u202etool0", "a" * 300, "ü" * 50, "𝔧𝔬𝔦𝔫𝔱"]
#: a reply comes within this or the request counts as hung
REPLY_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def fuzzed(ros_domain):
    """(process, client, publish(text)) of one node on the bundled arm, its robot_description
    topic private to this module."""
    if ROS_SKIP:
        pytest.skip(ROS_SKIP)
    from rclpy.duration import Duration
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from std_msgs.msg import String

    spinner = Spinner(f"{NAME}_tester")
    publisher = spinner.node.create_publisher(
        String, f"/{NAME}/robot_description", QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))

    def publish(text: str) -> None:
        publisher.publish(String(data=text))
        publisher.wait_for_all_acked(Duration(seconds=10))

    try:
        with running_node(ros_domain, {"max_batch": 200}, name=NAME,
                          remappings={"robot_description": f"/{NAME}/robot_description"}) as (process, client):
            assert wait_until(lambda: publisher.get_subscription_count() > 0)
            yield process, client, publish
    finally:
        spinner.close()


def reply(client, service, request):
    """The node's response, asserting it came within REPLY_TIMEOUT."""
    future = service.call_async(request)
    client._executor.spin_until_future_complete(future, timeout_sec=REPLY_TIMEOUT)
    assert future.done(), f"{service.srv_name} did not answer within {REPLY_TIMEOUT} s: {request}"
    return future.result()


def check_reply(response, what: str) -> None:
    """success=false with a message, or success=true with every float field finite."""
    from ros_torch_kin.ros.convert import first_non_finite_output

    if response.success:
        field = first_non_finite_output(response)
        assert field is None, f"{what}: success=true with a non-finite {field}"
    else:
        assert response.message.strip(), f"{what}: success=false without a message"


# ------------------------------------------------------------------------------ random requests
class RequestFuzzer:
    """Random requests from one seed: random.Random for choices, numpy for values."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.np = np.random.default_rng(seed)

    def value(self) -> float:
        r = self.rng.random()
        if r < 0.6:
            return float(self.np.uniform(-3, 3))
        if r < 0.75:
            return float(self.np.uniform(-1e6, 1e6))
        if r < 0.9:
            return self.rng.choice(SPECIAL)
        return float(self.np.standard_normal() * 10.0 ** self.rng.randint(-320, 308))

    def values(self, n: int, clean: float = 0.7) -> list[float]:
        if self.rng.random() < clean:
            return [float(v) for v in self.np.uniform(-2, 2, n)]
        return [self.value() for _ in range(n)]

    def name(self, pool: list[str]) -> str:
        r = self.rng.random()
        if r < 0.75:
            return self.rng.choice(pool)
        if r < 0.9:
            return self.rng.choice(UNICODE)
        return "" if r < 0.95 else "".join(chr(self.rng.randint(1, 0xD7FF)) for _ in range(self.rng.randint(1, 8)))

    def joints(self) -> tuple[list[str], int]:
        """(joint_names, values per configuration)."""
        r = self.rng.random()
        if r < 0.5:
            return [], 7
        if r < 0.8:
            names = JOINTS[:]
            self.rng.shuffle(names)
            return names, 7
        names = [self.name(JOINTS + ["flange_joint", "tool_joint"]) for _ in range(self.rng.randint(0, 9))]
        return names, len(names) or 7

    def positions(self, J: int) -> list[float]:
        r = self.rng.random()
        if r < 0.75:
            batch = self.rng.choice([1, 1, 2, 5, 80, 150])  # 80 x 7 and more: served in the worker pool
        elif r < 0.85:
            batch = 201  # above max_batch
        else:
            return self.values(self.rng.randint(0, 20))
        return self.values(batch * J)

    def pose(self, msg):
        x = self.values(7)
        if self.rng.random() < 0.2:
            x[3:] = [v * self.rng.choice([1e300, 1e-300, 0.0]) for v in x[3:]]
        msg.position.x, msg.position.y, msg.position.z = x[:3]
        msg.orientation.x, msg.orientation.y, msg.orientation.z, msg.orientation.w = x[3:]
        return msg

    def request(self):
        """(service attribute of KinematicsClient, request, description)."""
        from geometry_msgs.msg import Pose

        from ros_torch_kin.srv import ComputeFK, ComputeGradient, ComputeJacobian, GetRobotModel

        kind = self.rng.choice(["fk", "fk", "jacobian", "gradient", "gradient", "model"])
        if kind == "model":
            return "_model", GetRobotModel.Request(), "get_robot_model"
        names, J = self.joints()
        positions = self.positions(J)
        if kind == "fk":
            request = ComputeFK.Request(
                joint_names=names,
                link_names=[self.name(LINKS) for _ in range(self.rng.choice([0, 0, 1, 3]))],
                reference_frame=self.name(LINKS) if self.rng.random() < 0.3 else "",
            )
            service = "_fk"
        elif kind == "jacobian":
            request = ComputeJacobian.Request(joint_names=names,
                                              link_name=self.name(LINKS) if self.rng.random() < 0.7 else "")
            request.point.x, request.point.y, request.point.z = self.values(3, clean=0.8)
            service = "_jacobian"
        else:
            mode = self.rng.choice([0, 0, 1, 1, 2, 255])
            links = [self.name(LINKS) for _ in range(self.rng.choice([0, 1, 1, 2]))]
            request = ComputeGradient.Request(mode=mode, joint_names=names, link_names=links)
            K, B = max(1, len(links)), max(1, len(positions) // max(J, 1))
            count = self.rng.choice([K, K, B * K, self.rng.randint(0, 4)])
            request.target_poses = [self.pose(Pose()) for _ in range(count)]
            request.position_weights = self.values(self.rng.choice([0, K, K, 1]), clean=0.8)
            request.orientation_weights = [abs(v) for v in self.values(self.rng.choice([0, K, 2]), clean=0.8)]
            n = B * K * 3 if self.rng.random() < 0.8 else self.rng.randint(0, 9)
            request.forces, request.torques = self.values(n), self.values(n)
            service = "_gradient"
        request.positions = positions
        return service, request, f"{kind}: {len(positions)} positions, joint_names={names}"


REQUESTS = 600


def test_random_requests_are_all_answered_with_an_error_message_or_finite_results(fuzzed):
    process, client, _ = fuzzed
    fuzzer = RequestFuzzer(seed=0)
    outcomes = {True: 0, False: 0}
    for k in range(REQUESTS):
        service, request, what = fuzzer.request()
        response = reply(client, getattr(client, service), request)
        check_reply(response, f"request {k} ({what})")
        outcomes[response.success] += 1
    assert process.running(), process.log()[-3000:]
    # the seed exercises both outcomes (else the fuzz would prove little)
    assert outcomes[True] >= REQUESTS // 10 and outcomes[False] >= REQUESTS // 10, outcomes
    assert "internal error" not in process.log(), process.log()[-3000:]


# ------------------------------------------------------------------------------ promised refusals
def _fk(client, positions, **fields):
    from ros_torch_kin.srv import ComputeFK

    request = ComputeFK.Request(**fields)
    request.positions = positions
    return reply(client, client._fk, request)


def test_node_refuses_out_of_bound_values_by_name(fuzzed):
    from geometry_msgs.msg import Pose

    from ros_torch_kin.srv import ComputeGradient, ComputeJacobian

    _, client, _ = fuzzed
    response = _fk(client, [0, 0, 0, 0, 0, 2e6, 0])
    assert not response.success and re.search(r"positions\[5\] \(configuration 0, joint 'joint_6'\)", response.message)
    assert _fk(client, [0, 0, 0, 0, 0, 1e6, 0]).success
    request = ComputeJacobian.Request(link_name="tool0", positions=[0.0] * 7)
    request.point.x = 1e39
    response = reply(client, client._jacobian, request)
    assert not response.success and response.message.startswith("point[0]"), response.message
    request = ComputeGradient.Request(mode=1, link_names=["tool0"], positions=[0.0] * 7, forces=[1e39, 0.0, 0.0],
                                      torques=[0.0] * 3)
    response = reply(client, client._gradient, request)
    assert not response.success and response.message.startswith("forces[0]"), response.message
    target = Pose()
    target.position.x, target.orientation.w = 1e39, 1.0
    request = ComputeGradient.Request(mode=0, link_names=["tool0"], positions=[0.0] * 7, target_poses=[target])
    response = reply(client, client._gradient, request)
    assert not response.success and response.message.startswith("target_poses[0]"), response.message
    target.position.x = 0.5
    request.position_weights = [1e39]
    response = reply(client, client._gradient, request)
    assert not response.success and response.message.startswith("position_weights"), response.message


def test_node_normalises_a_huge_target_quaternion_exactly(fuzzed):
    from geometry_msgs.msg import Pose

    from ros_torch_kin.srv import ComputeGradient

    _, client, _ = fuzzed
    answers = []
    for scale in (1e300, 1.0):
        target = Pose()
        target.position.x, target.position.z = 0.4, 0.5
        target.orientation.x, target.orientation.y, target.orientation.w = scale, scale, 0.0
        request = ComputeGradient.Request(mode=0, link_names=["tool0"], positions=[0.1] * 7, target_poses=[target])
        response = reply(client, client._gradient, request)
        assert response.success, response.message
        answers.append((list(response.costs), list(response.gradients)))
    assert answers[0] == answers[1]


# ------------------------------------------------------------------------------ bad descriptions
def in_first_joint(urdf: str, old: str, new: str) -> str:
    """``urdf`` with ``old`` replaced by ``new`` once, inside its first <joint>."""
    start = urdf.index("<joint")
    end = urdf.index("</joint>", start)
    assert old in urdf[start:end], old
    return urdf[:start] + urdf[start:end].replace(old, new, 1) + urdf[end:]


def malformed_descriptions(seed: int) -> list[tuple[str, str]]:
    """(what, text): a few dozen descriptions the node must refuse."""
    rng = random.Random(seed)
    arm = bundled_urdf()
    link = "<link name='{0}'/>"
    revolute = ("<joint name='{0}' type='revolute'><parent link='{1}'/><child link='{2}'/>"
                "<limit lower='-1' upper='1' effort='1' velocity='1'/></joint>")
    cases = [(f"truncated at {cut}", arm[:cut]) for cut in sorted(rng.sample(range(1, len(arm) - 1), 8))]
    cases += [
        ("empty string", ""),
        ("whitespace", "   \n\t "),
        ("wrong root tag", arm.replace("<robot", "<sdf", 1).replace("</robot>", "</sdf>")),
        ("not XML", "robot: {name: yaml}"),
        ("no links", "<robot name='empty'/>"),
        ("cycle", "<robot name='cycle'>" + link.format("a") + link.format("b") + link.format("c")
         + revolute.format("j1", "a", "b") + revolute.format("j2", "b", "c") + revolute.format("j3", "c", "a")
         + "</robot>"),
        ("two roots", "<robot name='two'>" + link.format("a") + link.format("b") + link.format("c")
         + revolute.format("j1", "a", "b") + "</robot>"),
        ("unknown parent link", "<robot name='orphan'>" + link.format("a") + link.format("b")
         + revolute.format("j1", "ghost", "b") + "</robot>"),
        ("duplicate links", "<robot name='dup'>" + link.format("a") + link.format("a") + "</robot>"),
        ("non-finite limit", arm.replace('lower="-2.0943951"', 'lower="nan"', 1)),
        ("infinite joint origin", in_first_joint(arm, '<origin xyz="0 0 0.1575"', '<origin xyz="0 inf 0"')),
        ("infinite joint rpy", in_first_joint(arm, 'rpy="0 0 0"', 'rpy="-inf 0 0"')),
        ("non-finite axis", arm.replace('<axis xyz="0 0 1"/>', '<axis xyz="nan 0 1"/>', 1)),
        ("joint origin beyond float32", in_first_joint(arm, '<origin xyz="0 0 0.1575"', '<origin xyz="1e39 0 0"')),
        ("huge number text", arm.replace('upper="2.0943951"', 'upper="1' + "0" * 400 + '"', 1)),
        ("non-finite mimic", "<robot name='m'>" + link.format("a") + link.format("b") + link.format("c")
         + revolute.format("j1", "a", "b")
         + revolute.format("j2", "b", "c").replace("</joint>", "<mimic joint='j1' multiplier='inf'/></joint>")
         + "</robot>"),
        ("zero axis", arm.replace('<axis xyz="0 0 1"/>', '<axis xyz="0 0 0"/>', 1)),
        ("bad joint type", arm.replace('type="revolute"', 'type="hinge"', 1)),
        ("60,000 root links", "<robot name='many'>" + "".join(link.format(f"l{i}") for i in range(60_000))
         + "</robot>"),
    ]
    for k in range(6):
        garbage = bytes(rng.randrange(1, 256) for _ in range(rng.randint(1, 2000)))
        cases.append((f"binary garbage {k}", garbage.decode("latin-1")))
    cases.append(("garbage after a valid robot", arm + "\x01\x02<robot>"))
    assert all(text != arm for _, text in cases)
    return cases


def robot_identity(client):
    from ros_torch_kin.srv import GetRobotModel

    response = reply(client, client._model, GetRobotModel.Request())
    assert response.success, response.message
    return response.robot_name, response.loaded_at.sec, response.loaded_at.nanosec


def test_malformed_descriptions_change_nothing_and_the_newest_valid_one_wins(fuzzed):
    process, client, publish = fuzzed
    before = robot_identity(client)
    assert before[0] == "rtk_arm7"
    fuzzer = RequestFuzzer(seed=1)
    marker = "ignoring the description on the robot_description topic"
    refused = process.log().count(marker)
    for what, text in malformed_descriptions(seed=0):
        publish(text)
        for _ in range(3):  # requests while the description is handled
            service, request, description = fuzzer.request()
            check_reply(reply(client, getattr(client, service), request), f"{description} during '{what}'")
        assert wait_until(lambda: process.log().count(marker) > refused, timeout=60), \
            f"'{what}' was not refused; log:\n{process.log()[-3000:]}"
        refused = process.log().count(marker)
        assert robot_identity(client) == before, f"the model changed after '{what}'"
        assert process.running()
    # a valid, different robot at the end: served
    publish(random_chain_urdf(7, 4, name="fuzz_final_robot"))
    assert wait_until(lambda: robot_identity(client)[0] == "fuzz_final_robot", timeout=30), process.log()[-3000:]
    assert robot_identity(client)[1:] != before[1:]
    assert process.running(), process.log()[-3000:]
    for line in process.log().splitlines():
        assert len(line) < 2000 or "URDF:" in line, f"a log line of {len(line)} characters: {line[:300]}..."


def test_get_robot_model_of_a_robot_with_a_continuous_joint_over_ros(fuzzed):
    """Runs last: it replaces the fuzzed node's robot."""
    from ros_torch_kin.srv import GetRobotModel

    process, client, publish = fuzzed
    publish(random_chain_urdf(3, 3, continuous_fraction=1.0, name="wheel_robot"))
    assert process.wait_for_log("serving robot 'wheel_robot'", timeout=30), process.log()[-3000:]
    response = reply(client, client._model, GetRobotModel.Request())
    assert response.success, response.message
    assert response.robot_name == "wheel_robot" and list(response.lower_limits) == [-math.inf] * 3
