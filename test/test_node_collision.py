"""The real node over ROS 2: ~/update_scene, ~/check_collision, ~/get_collision_model,
~/compute_ik and ~/collision_markers on the bundled arm, checked against the library computed
here on the same robot, against forward kinematics, and with every bad input refused by name
while the scene stays as it was."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from conftest import random_q
from ros_fixtures import Spinner, requires_ros, running_node, wait_until

from ros_torch_kin.kinematics import forward_kinematics, matrix_to_pose_xyzw
from ros_torch_kin.robots import bundled_urdf

pytestmark = requires_ros


@pytest.fixture(scope="module")
def served(ros_domain):
    with running_node(ros_domain, {"max_batch": 5000}) as (process, client):
        yield process, client


@pytest.fixture(scope="module")
def library_model(arm7):
    """Both collision models the node builds (tight verdict, coarse costs), built here from the
    same URDF in float64."""
    from ros_torch_kin.collision.robot_collision_model import robot_collision_model_from_urdf

    return robot_collision_model_from_urdf(bundled_urdf(), arm7)


@pytest.fixture(scope="module")
def library_checker(library_model):
    """The coarse model (the spheres ~/get_collision_model lists, the costs and gradients)."""
    return library_model.cost


def node_rule(model, scene, q, margin=0.0):
    """What ~/check_collision answers with the tight verdict (collision_verdict 'tight'): the
    tight model's verdict at the margin; distances exact within EXACT_RANGE beyond it, else the
    larger of both models' lower bounds (compare below EXACT_RANGE: the float32 node and this
    float64 model round the range's edge differently)."""
    from ros_torch_kin.ros.collision_services import EXACT_RANGE

    tight = model.verdict.with_scene(scene).distances(q, margin + EXACT_RANGE)
    loose = model.cost.with_scene(scene).distances(q)
    world = torch.maximum(tight.world_distance, loose.world_distance)
    own = torch.maximum(tight.self_distance, loose.self_distance)
    return torch.minimum(world, own), tight.min_distance < margin, tight, loose


def scene(client, operation, obstacles=()):
    from ros_torch_kin.srv import UpdateScene

    return client.update_scene(getattr(UpdateScene.Request, operation), obstacles)


def test_collision_model_reports_spheres_and_self_pairs(served, library_checker):
    _, client = served
    r = client.collision_model()
    assert list(r.link_names) == list(library_checker.chain.link_names)
    counts = dict(zip(r.link_names, r.sphere_counts))
    assert counts == library_checker.spheres.count_per_link()
    assert counts["link_3"] > 0 and counts["flange"] == 0 and "flange" in r.links_without_geometry
    assert len(r.sphere_links) == len(r.sphere_radii) == len(r.sphere_centers) // 3 == sum(counts.values())
    disabled = dict(zip(zip(r.disabled_link_a, r.disabled_link_b), r.disabled_reasons))
    assert disabled[("base_link", "link_1")] == "adjacent"
    enabled = set(zip(r.enabled_link_a, r.enabled_link_b))
    assert ("base_link", "link_3") in enabled and not enabled & set(disabled)


def test_check_collision_matches_the_library_with_and_without_obstacles(served, arm7, library_model):
    from ros_torch_kin.collision import Obstacle, Scene
    from ros_torch_kin.ros.client import obstacle
    from ros_torch_kin.ros.collision_services import EXACT_RANGE

    _, client = served
    scene(client, "CLEAR")
    q = random_q(arm7, 64, seed=3)
    report = client.check_collision(q.numpy())
    expected, hits, tight, loose = node_rule(library_model, Scene(), q)
    np.testing.assert_allclose(np.minimum(report.min_distance, EXACT_RANGE), expected.clamp(max=EXACT_RANGE).numpy(),
                               atol=2e-5)
    np.testing.assert_array_equal(report.in_collision, hits.numpy())
    assert set(report.pair_kind.tolist()) == {0}  # only self pairs without obstacles
    # the tight verdict is never looser than the coarse spheres, and tighter on some configurations
    assert not (report.in_collision & ~loose.in_collision.numpy()).any()
    assert (report.min_distance >= loose.min_distance.numpy() - 2e-5).all()
    assert (report.min_distance > loose.min_distance.numpy() + 1e-3).any()

    # a table just below the elbow's reach and a ball where the tool is at configuration 0
    tool = forward_kinematics(arm7, q[:1], "tool0")[0].numpy()
    obstacles, version = scene(client, "ADD", [
        obstacle("table", "box", (1.2, 1.2, 0.1), (0.7, 0.0, 0.2, 0, 0, 0, 1)),
        obstacle("ball", "sphere", (0.05,), tuple(tool[:3, 3]) + (0, 0, 0, 1)),
    ])
    assert [o.id for o in obstacles] == ["table", "ball"] and version >= 2
    report = client.check_collision(q.numpy())
    world = Scene([Obstacle.box("table", (1.2, 1.2, 0.1), np.array([0.7, 0, 0.2, 0, 0, 0, 1.0])),
                   Obstacle.sphere("ball", 0.05, np.array([*tool[:3, 3], 0, 0, 0, 1.0]))])
    expected, hits, tight, loose = node_rule(library_model, world, q)
    np.testing.assert_allclose(np.minimum(report.min_distance, EXACT_RANGE), expected.clamp(max=EXACT_RANGE).numpy(),
                               atol=2e-5)
    np.testing.assert_array_equal(report.in_collision, hits.numpy())
    assert report.in_collision[0] and report.link_b[0] == "ball" and report.pair_kind[0] == 1
    near = tight.min_distance.numpy() < EXACT_RANGE
    assert [p for p, n in zip(zip(report.link_a, report.link_b), near) if n] == [
        p for p, n in zip(tight.pairs, near) if n]

    # ignore_world gives the self-collision answer again; ignore both checks nothing
    alone = client.check_collision(q.numpy(), ignore_world=True)
    assert not any(b in ("table", "ball") for b in alone.link_b)
    nothing = client.check_collision(q.numpy(), ignore_world=True, ignore_self=True)
    assert not nothing.in_collision.any() and (nothing.min_distance == 1e300).all()
    scene(client, "CLEAR")


def test_coarse_verdict_parameter_answers_with_the_coarse_spheres(served, arm7, library_checker):
    from ros_torch_kin.collision import Obstacle, Scene
    from ros_torch_kin.ros.client import obstacle

    from ros_fixtures import set_parameters

    _, client = served
    spinner = Spinner("verdict_parameter")
    assert set_parameters(spinner, collision_verdict="coarse") == [(True, "")]
    try:
        scene(client, "CLEAR")
        scene(client, "ADD", [obstacle("table", "box", (1.2, 1.2, 0.1), (0.7, 0.0, 0.2, 0, 0, 0, 1))])
        q = random_q(arm7, 64, seed=3)
        report = client.check_collision(q.numpy())
        world = Scene([Obstacle.box("table", (1.2, 1.2, 0.1), np.array([0.7, 0, 0.2, 0, 0, 0, 1.0]))])
        expected = library_checker.with_scene(world).distances(q)
        np.testing.assert_allclose(report.min_distance, expected.min_distance.numpy(), atol=2e-5)
        np.testing.assert_array_equal(report.in_collision, expected.in_collision.numpy())
        assert list(zip(report.link_a, report.link_b)) == expected.nearest_pairs()
        assert set_parameters(spinner, collision_verdict="nearest")[0][0] is False
    finally:
        set_parameters(spinner, collision_verdict="tight")
        spinner.close()
        scene(client, "CLEAR")


def test_penalty_gradient_over_ros_matches_finite_differences_of_its_cost(served, arm7):
    from ros_torch_kin.ros.client import obstacle

    _, client = served
    scene(client, "CLEAR")
    q = random_q(arm7, 1, seed=5).numpy()
    tool = forward_kinematics(arm7, torch.from_numpy(q), "tool0")[0].numpy()
    scene(client, "ADD", [obstacle("ball", "sphere", (0.08,), tuple(tool[:3, 3] + [0.05, 0, 0]) + (0, 0, 0, 1))])
    report = client.check_collision(q, margin=0.05, gradient=True)
    assert report.costs[0] > 0
    h = 1e-3  # the node computes in float32: a coarse step, a loose comparison
    numeric = np.zeros(7)
    for j in range(7):
        step = np.zeros(7)
        step[j] = h
        plus = client.check_collision(q + step, margin=0.05, gradient=True).costs[0]
        minus = client.check_collision(q - step, margin=0.05, gradient=True).costs[0]
        numeric[j] = (plus - minus) / (2 * h)
    np.testing.assert_allclose(report.gradients[0], numeric, rtol=0.05, atol=1e-3 * np.abs(numeric).max())
    scene(client, "CLEAR")


BAD_SCENES = [
    ("MOVE", dict(id="ghost", shape="box", dimensions=(1, 1, 1)), "'ghost' is not in the scene"),
    ("REMOVE", dict(id="ghost", shape="box", dimensions=(1, 1, 1)), "'ghost' is not in the scene"),
    ("ADD", dict(id="neg", shape="sphere", dimensions=(-0.1,)), "radius must not be negative"),
    ("ADD", dict(id="flat", shape="box", dimensions=(1, 0, 1)), "box size y must be positive"),
    ("ADD", dict(id="nan", shape="sphere", dimensions=(0.1,), pose=(np.nan, 0, 0, 0, 0, 0, 1)), "pose.*not finite"),
    ("ADD", dict(id="zero", shape="sphere", dimensions=(0.1,), pose=(0, 0, 0, 0, 0, 0, 0)), "zero quaternion"),
    ("ADD", dict(id="short", shape="box", dimensions=(1, 1)), "box has dimensions"),
    ("ADD", dict(id="", shape="sphere", dimensions=(0.1,)), "id is empty"),
]


@pytest.mark.parametrize("operation, fields, message", BAD_SCENES)
def test_bad_scene_changes_are_refused_and_leave_the_scene_unchanged(served, operation, fields, message):
    from ros_torch_kin.ros.client import KinematicsError, obstacle

    _, client = served
    scene(client, "CLEAR")
    before, version = scene(client, "ADD", [obstacle("keep", "sphere", (0.1,), (2, 0, 0, 0, 0, 0, 1))])
    good = obstacle("other", "sphere", (0.1,), (3, 0, 0, 0, 0, 0, 1))
    with pytest.raises(KinematicsError, match=message):
        scene(client, operation, [good, obstacle(**fields)] if operation == "ADD" else [obstacle(**fields)])
    after, version_after = scene(client, "LIST")
    assert [o.id for o in after] == ["keep"] and version_after == version  # all or nothing


def test_unsupported_shape_and_bad_collision_requests_are_refused(served):
    from shape_msgs.msg import SolidPrimitive

    from ros_torch_kin.ros.client import KinematicsError, obstacle

    _, client = served
    cone = obstacle("cone", "cylinder", (0.2, 0.1))
    cone.shape.type = SolidPrimitive.CONE
    with pytest.raises(KinematicsError, match="CONE is not supported"):
        scene(client, "ADD", [cone])
    with pytest.raises(KinematicsError, match="margin = -1.0"):
        client.check_collision(np.zeros(7), margin=-1.0)
    with pytest.raises(KinematicsError, match="above max_batch"):
        client.check_collision(np.zeros((5001, 7)))
    with pytest.raises(KinematicsError, match="positions\\[0\\].*not finite"):
        client.check_collision(np.full(7, np.nan))
    still = client.check_collision(np.zeros(7))  # still serving, and right: the upright arm is free
    assert still.in_collision.tolist() == [False] and still.min_distance[0] > 0.01


def test_compute_ik_reaches_fk_targets_within_limits(served, arm7):
    _, client = served
    q = random_q(arm7, 20, seed=7)
    T = forward_kinematics(arm7, q, "tool0")
    targets = matrix_to_pose_xyzw(T).numpy()
    answer = client.inverse_kinematics(targets)
    assert answer.solved.all(), answer.message
    reached = forward_kinematics(arm7, torch.from_numpy(answer.solutions), "tool0")
    np.testing.assert_allclose(reached[:, :3, 3].numpy(), T[:, :3, 3].numpy(), atol=3e-4)
    lower, upper = arm7.lower_limits.numpy(), arm7.upper_limits.numpy()
    assert ((answer.solutions >= lower - 1e-6) & (answer.solutions <= upper + 1e-6)).all()
    assert (answer.position_errors <= 1e-4).all() and (answer.orientation_errors <= 1e-4).all()

    # columns in another order, position only, with a seed preferred
    order = list(reversed(arm7.joint_names))
    seeded = client.inverse_kinematics(targets[:5], position_only=True, seed=q[0].numpy()[::-1], prefer_seed=True,
                                       joint_names=order)
    assert seeded.solved.all()
    solutions = seeded.solutions[:, ::-1]  # back to the chain's order
    reached = forward_kinematics(arm7, torch.from_numpy(solutions.copy()), "tool0")
    np.testing.assert_allclose(reached[:, :3, 3].numpy(), T[:5, :3, 3].numpy(), atol=3e-4)


def test_compute_ik_with_avoid_collisions_returns_collision_free_solutions(served, arm7):
    from ros_torch_kin.ros.client import obstacle

    _, client = served
    scene(client, "CLEAR")
    scene(client, "ADD", [obstacle("pillar", "cylinder", (1.0, 0.08), (0.35, 0.35, 0.5, 0, 0, 0, 1))])
    q = random_q(arm7, 16, seed=11)
    free = ~client.check_collision(q.numpy()).in_collision
    targets = matrix_to_pose_xyzw(forward_kinematics(arm7, q[free], "tool0")).numpy()
    answer = client.inverse_kinematics(targets, avoid_collisions=True, time_budget=5.0)
    assert answer.solved.mean() >= 0.9, answer.message
    verdict = client.check_collision(answer.solutions[answer.solved])
    assert not verdict.in_collision.any()
    scene(client, "CLEAR")


def test_bad_ik_requests_are_refused_by_name(served):
    from ros_torch_kin.ros.client import KinematicsError

    _, client = served
    target = np.array([[0.3, 0.0, 0.8, 0, 0, 0, 1.0]])
    cases = [
        (dict(links=["gripper"]), "link_names: unknown link 'gripper'"),
        (dict(links=["tool0", "link_7"]), "targets has 1 poses; expected B x K with K = 2"),
        (dict(seed=np.zeros(3)), "seed has 3 values"),
        (dict(time_budget=-1.0), "time_budget = -1.0"),
        (dict(num_seeds=100000), "num_seeds = 100000 is above"),
        (dict(position_tolerance=np.nan), "position_tolerance = nan"),
    ]
    for kwargs, message in cases:
        with pytest.raises(KinematicsError, match=message):
            client.inverse_kinematics(target, **kwargs)
    with pytest.raises(KinematicsError, match="targets\\[0\\] has a zero quaternion"):
        client.inverse_kinematics(np.array([[0.3, 0, 0.8, 0, 0, 0, 0.0]]))
    assert client.inverse_kinematics(target).solutions.shape == (1, 7)


def test_scene_swaps_while_requests_are_in_flight(served, arm7):
    from ros_torch_kin.ros.client import KinematicsClient, obstacle

    _, client = served
    scene(client, "CLEAR")
    q = random_q(arm7, 2000, seed=13).numpy()  # large enough to run in the worker pool
    answers, errors = [], []

    def check_many():
        with KinematicsClient(server="/ros_torch_kin", timeout=60.0) as other:
            for _ in range(6):
                try:
                    answers.append(other.check_collision(q))
                except Exception as error:  # noqa: BLE001 - collected and asserted below
                    errors.append(error)

    worker = threading.Thread(target=check_many)
    worker.start()
    for i in range(20):
        scene(client, "ADD", [obstacle(f"box{i}", "box", (0.2, 0.2, 0.2), (0.5, 0.0, 0.1 * i, 0, 0, 0, 1))])
        time.sleep(0.02)
    worker.join(120)
    assert not errors and len(answers) == 6
    assert all(a.min_distance.shape == (2000,) and np.isfinite(a.min_distance).all() for a in answers)
    final, _ = scene(client, "LIST")
    assert len(final) == 20
    scene(client, "CLEAR")


def test_collision_markers_show_the_spheres_and_the_obstacles(served, library_checker):
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from visualization_msgs.msg import MarkerArray

    from ros_torch_kin.ros.client import obstacle

    _, client = served
    scene(client, "CLEAR")
    scene(client, "ADD", [obstacle("ball", "sphere", (0.1,), (1, 0, 0, 0, 0, 0, 1)),
                          obstacle("rod", "capsule", (0.4, 0.05), (0, 1, 0, 0, 0, 0, 1))])
    spinner = Spinner("marker_listener")
    received = []
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    spinner.node.create_subscription(MarkerArray, "/ros_torch_kin/collision_markers", received.append, latched)
    try:
        assert wait_until(lambda: bool(received), 20.0), "no MarkerArray on ~/collision_markers"
        markers = received[-1].markers
        spheres = [m for m in markers if m.ns == "robot_spheres"]
        assert len(spheres) == library_checker.spheres.num_spheres
        assert {m.header.frame_id for m in spheres} <= set(library_checker.chain.link_names)
        assert len([m for m in markers if m.ns == "obstacles"]) == 2
        assert len([m for m in markers if m.ns == "obstacle_capsule_ends"]) == 2
    finally:
        spinner.close()
        scene(client, "CLEAR")


def test_a_urdf_whose_meshes_are_missing_is_served_without_those_links(ros_domain, tmp_path):
    urdf = bundled_urdf().replace(
        '<collision><origin xyz="0 0 0.11"/><geometry><cylinder radius="0.065" length="0.22"/></geometry></collision>',
        '<collision><geometry><mesh filename="package://nowhere/meshes/link3.stl"/></geometry></collision>', 1)
    assert "nowhere" in urdf
    # its own node name: the module's `served` node may still be running
    with running_node(ros_domain, {"robot_description": urdf}, name="rtk_missing_meshes") as (_, client):
        r = client.collision_model()
        counts = dict(zip(r.link_names, r.sphere_counts))
        assert counts["link_3"] == 0 and counts["link_2"] > 0
        assert any("link_3" in w and "nowhere/meshes/link3.stl" in w for w in r.warnings)
        assert client.check_collision(np.zeros(7)).min_distance.shape == (1,)


def test_srdf_parameter_disables_its_pairs(ros_domain):
    srdf = ('<robot name="rtk_arm7"><disable_collisions link1="base_link" link2="link_3" reason="Never"/>'
            '</robot>')
    with running_node(ros_domain, {"robot_description_semantic": srdf}, name="rtk_srdf") as (_, client):
        r = client.collision_model()
        disabled = dict(zip(zip(r.disabled_link_a, r.disabled_link_b), r.disabled_reasons))
        assert "srdf" in disabled[("base_link", "link_3")].lower()
        assert ("base_link", "link_3") not in set(zip(r.enabled_link_a, r.enabled_link_b))
