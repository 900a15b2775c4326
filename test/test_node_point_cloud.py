"""The real node with a point-cloud topic: a PointCloud2 in a URDF link's frame changes
~/check_collision, the robot's own points are filtered out, a silent camera's points decay, and a
cloud in an unknown frame is refused (once in the log, naming the frame) while the world stays.
The expected verdicts come from the library on the same robot and the same points."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from ros_fixtures import Spinner, requires_ros, running_node, wait_until

from ros_torch_kin.robots import bundled_urdf

pytestmark = requires_ros

TOPIC = "/camera/points"
VOXEL = 0.02


def cloud_msg(points: np.ndarray, frame: str):
    from sensor_msgs.msg import PointCloud2, PointField

    data = np.asarray(points, dtype=np.float32)
    msg = PointCloud2(height=1, width=data.shape[0], is_bigendian=False, point_step=12,
                      row_step=12 * data.shape[0], is_dense=False)
    msg.header.frame_id = frame
    msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate("xyz")]
    msg.data = data.tobytes()
    return msg


def wall(x: float = 0.45) -> np.ndarray:
    y, z = np.meshgrid(np.arange(-0.6, 0.6, 0.01), np.arange(0.0, 1.2, 0.01))
    points = np.stack([np.full(y.size, x), y.ravel(), z.ravel()], axis=1)
    points[::7] = np.nan  # depth holes are skipped
    return points


@pytest.fixture(scope="module")
def library(arm7):
    from ros_torch_kin.collision import CollisionChecker, Obstacle, Scene
    from ros_torch_kin.collision.urdf_spheres import robot_spheres_from_urdf

    spheres = robot_spheres_from_urdf(bundled_urdf(), arm7)
    checker = CollisionChecker(arm7, spheres, Scene([Obstacle.points("wall", wall(), VOXEL)])).without_self_pairs()
    return checker, spheres


@pytest.fixture(scope="module")
def served(ros_domain):
    parameters = {"point_cloud_topics": TOPIC, "sensor_voxel_size": VOXEL, "sensor_decay_time": 1.5,
                  "self_filter_padding": 0.02}
    with running_node(ros_domain, parameters) as (process, client):
        yield process, client


def _configurations(arm7, library):
    """A configuration the wall blocks and one it does not (both free of the robot itself)."""
    checker, _ = library
    g = torch.Generator().manual_seed(3)
    q = arm7.lower_limits + torch.rand(400, arm7.num_dofs, generator=g, dtype=arm7.dtype) * (arm7.upper_limits - arm7.lower_limits)
    hit = checker.in_collision(q)
    return q[hit][0].numpy(), np.zeros(arm7.num_dofs)


def test_cloud_in_a_link_frame_changes_check_collision_and_decays(served, arm7, library):
    from sensor_msgs.msg import JointState

    process, client = served
    blocked, free = _configurations(arm7, library)
    assert not client.check_collision(np.stack([blocked, free]), ignore_self=True).in_collision.any()
    spinner = Spinner("cloud_publisher")
    try:
        states = spinner.node.create_publisher(JointState, "joint_states", 10)
        clouds = spinner.node.create_publisher(PointCloud2Type(), TOPIC, 2)
        names = list(arm7.joint_names)
        _, spheres = library
        # the robot at the zero configuration, seen by the camera: its own points must be filtered
        from ros_torch_kin.collision.sphere_centers import world_sphere_centers
        from ros_torch_kin.kinematics import world_transforms

        centers = world_sphere_centers(world_transforms(arm7, torch.zeros(1, arm7.num_dofs, dtype=arm7.dtype)),
                                       spheres.to("cpu", arm7.dtype))[:, :, 0].numpy()
        rng = np.random.default_rng(0)
        directions = rng.normal(size=(len(centers), 20, 3))
        directions /= np.linalg.norm(directions, axis=2, keepdims=True)
        on_robot = (centers[:, None] + directions * spheres.radii.numpy()[:, None, None]).reshape(-1, 3)
        points = np.concatenate([wall(), on_robot])

        def publish():
            state = JointState(name=names, position=[0.0] * len(names))
            state.header.stamp = spinner.node.get_clock().now().to_msg()
            states.publish(state)
            msg = cloud_msg(points, "base_link")
            msg.header.stamp = state.header.stamp
            clouds.publish(msg)

        def blocked_now():
            publish()
            return bool(client.check_collision(blocked[None], ignore_self=True).in_collision[0])

        assert wait_until(blocked_now, timeout=30.0), process.log()[-3000:]
        report = client.check_collision(np.stack([blocked, free]), ignore_self=True)
        assert list(report.in_collision) == [True, False]  # the robot's own points were filtered out
        ids = [o.id for o in client.update_scene(4, [])[0]]
        assert f"sensor:{TOPIC}" in ids
        # a cloud in a frame that is no link: refused, named once in the log, the world unchanged
        for _ in range(3):
            clouds.publish(cloud_msg(points, "camera_nowhere"))
        assert wait_until(lambda: "'camera_nowhere' is not a link" in process.log(), timeout=10.0)
        time.sleep(0.3)
        assert process.log().count("'camera_nowhere' is not a link") == 1
        # the camera stops: its points decay
        assert wait_until(lambda: not client.check_collision(blocked[None], ignore_self=True).in_collision[0],
                          timeout=10.0)
        assert f"sensor:{TOPIC}" not in [o.id for o in client.update_scene(4, [])[0]]
    finally:
        spinner.close()


def PointCloud2Type():
    from sensor_msgs.msg import PointCloud2

    return PointCloud2


def test_mesh_obstacle_over_update_scene(served, arm7):
    import trimesh
    from geometry_msgs.msg import Point
    from shape_msgs.msg import MeshTriangle

    from ros_torch_kin.msg import Obstacle as ObstacleMsg
    from ros_torch_kin.ros.client import KinematicsError

    _, client = served
    box = trimesh.creation.box((0.3, 0.3, 0.3))
    msg = ObstacleMsg(id="crate")
    msg.mesh.vertices = [Point(x=x, y=y, z=z) for x, y, z in box.vertices.tolist()]
    msg.mesh.triangles = [MeshTriangle(vertex_indices=t) for t in box.faces.tolist()]
    msg.pose.position.z, msg.pose.orientation.w = 0.3, 1.0  # around the arm's base column
    listed = {o.id: o for o in client.update_scene(0, [msg])[0]}
    assert listed["crate"].voxels and listed["crate"].voxel_size == pytest.approx(0.01)
    assert client.check_collision(np.zeros((1, arm7.num_dofs)), ignore_self=True).in_collision[0]
    bad = ObstacleMsg(id="flat")
    bad.mesh.vertices = [Point(x=0.0), Point(x=1.0), Point(x=2.0)]
    bad.mesh.triangles = [MeshTriangle(vertex_indices=[0, 1, 2])]
    bad.pose.orientation.w = 1.0
    with pytest.raises(KinematicsError, match=r"obstacles\[0\]\.mesh.*degenerate"):
        client.update_scene(0, [bad])
    ids = [o.id for o in client.update_scene(4, [])[0]]
    assert "flat" not in ids and "crate" in ids
    client.update_scene(2, [ObstacleMsg(id="crate")])


def test_points_on_a_carried_box_are_filtered_and_far_points_kept(served, arm7, library):
    """A box attached to the tool (~/update_scene ATTACH) and seen by the camera is filtered out
    like the robot itself: the configuration carrying it stays free, while the wall seen in the
    same cloud still blocks its configuration."""
    from sensor_msgs.msg import JointState

    from ros_torch_kin.kinematics import forward_kinematics
    from ros_torch_kin.msg import Obstacle as ObstacleMsg
    from ros_torch_kin.ros.client import obstacle
    from ros_torch_kin.srv import UpdateScene

    process, client = served
    blocked, free = _configurations(arm7, library)  # free: the zero configuration
    side, offset = 0.12, 0.1  # a cube 0.1 m beyond the tool, well outside the robot's own spheres
    box = obstacle("carried_box", "box", (side,) * 3, (0.0, 0.0, offset, 0, 0, 0, 1))
    box.link = "tool0"
    client.update_scene(UpdateScene.Request.ATTACH, [box])
    spinner = Spinner("carried_cloud_publisher")
    try:
        assert wait_until(lambda: not client.check_collision(np.stack([blocked, free]),
                                                             ignore_self=True).in_collision.any(), timeout=10.0)
        tool = forward_kinematics(arm7.to("cpu", torch.float64), torch.as_tensor(free), "tool0").numpy()
        g = np.linspace(-side / 2, side / 2, 13)
        a, b = [x.ravel() for x in np.meshgrid(g, g)]
        faces = np.concatenate([np.stack(np.roll([a, b, np.full(a.size, s * side / 2)], k, axis=0), axis=1)
                                for k in range(3) for s in (-1, 1)])  # the box's six faces, its frame
        on_box = (faces + [0.0, 0.0, offset]) @ tool[:3, :3].T + tool[:3, 3]
        points = np.concatenate([wall(), on_box])  # the wall: far from the box and the robot at `free`
        states = spinner.node.create_publisher(JointState, "joint_states", 10)
        clouds = spinner.node.create_publisher(PointCloud2Type(), TOPIC, 2)

        def blocked_now():
            state = JointState(name=list(arm7.joint_names), position=[float(v) for v in free])
            state.header.stamp = spinner.node.get_clock().now().to_msg()
            states.publish(state)
            msg = cloud_msg(points, "base_link")
            msg.header.stamp = state.header.stamp
            clouds.publish(msg)
            return bool(client.check_collision(blocked[None], ignore_self=True).in_collision[0])

        assert wait_until(blocked_now, timeout=30.0), process.log()[-3000:]  # the far points are kept
        report = client.check_collision(np.stack([blocked, free]), ignore_self=True)
        # the box's own points were removed: carrying it at `free` touches nothing sensed
        assert list(report.in_collision) == [True, False], (list(report.link_a), list(report.link_b))
    finally:
        spinner.close()
        client.update_scene(UpdateScene.Request.DETACH, [ObstacleMsg(id="carried_box")])
        client.update_scene(UpdateScene.Request.REMOVE, [ObstacleMsg(id="carried_box")])
    assert wait_until(lambda: f"sensor:{TOPIC}" not in [o.id for o in client.update_scene(4, [])[0]], timeout=10.0)


def test_an_organised_cloud_gets_the_band_behind_what_it_sees(ros_domain, arm7, library):
    """With ``sensor_shadow_depth``, an organised cloud (rows, as a depth camera publishes) also
    occupies the band behind the patch it shows (ros_torch_kin.collision.depth_shadow), the same
    points unorganised do not: a configuration that reaches only into the band is blocked by the
    first and free with the second. The expected verdicts come from the library's
    ``sensed_obstacle`` on the same points."""
    from sensor_msgs.msg import JointState

    from ros_torch_kin.collision import CollisionChecker, Scene
    from ros_torch_kin.ros.point_cloud_input import sensed_obstacle

    topic, depth = "/camera/depth/points", 0.12
    y, z = np.meshgrid(np.arange(-0.15, 0.15, 0.01), np.arange(0.25, 0.55, 0.01))
    patch = np.stack([np.full(y.size, 0.55), y.ravel(), z.ravel()], axis=1)  # 30 rows of 30, base_link frame
    _, spheres = library
    checkers = {}
    for band in (0.0, depth):
        obstacle = sensed_obstacle("patch", patch, np.eye(4), VOXEL, 0.05, 3.0, None, 0.0, point_size=0.01,
                                   shadow=band, width=30)
        checkers[band] = CollisionChecker(arm7, spheres, Scene([obstacle])).without_self_pairs()
    g = torch.Generator().manual_seed(5)
    q = arm7.lower_limits + torch.rand(20000, arm7.num_dofs, generator=g, dtype=arm7.dtype) * (arm7.upper_limits - arm7.lower_limits)
    # 3 cm clear of the patch (the coarse spheres bound the node's tight leaves), the deepest in the band
    clear = checkers[0.0].min_distance(q) > 0.03
    banded = checkers[depth].min_distance(q[clear])
    assert banded.min() < -0.02
    behind = q[clear][banded.argmin()].numpy()
    parameters = {"point_cloud_topics": topic, "sensor_voxel_size": VOXEL, "sensor_shadow_depth": depth,
                  "self_filter_padding": 0.02}
    with running_node(ros_domain, parameters, name="banded_node") as (process, client):
        spinner = Spinner("organised_cloud_publisher")
        try:
            states = spinner.node.create_publisher(JointState, "joint_states", 10)
            clouds = spinner.node.create_publisher(PointCloud2Type(), topic, 2)

            def blocked(rows: int):
                state = JointState(name=list(arm7.joint_names), position=[0.0] * arm7.num_dofs)
                state.header.stamp = spinner.node.get_clock().now().to_msg()
                states.publish(state)
                msg = cloud_msg(patch, "base_link")
                msg.height, msg.width, msg.row_step = rows, patch.shape[0] // rows, 12 * patch.shape[0] // rows
                msg.header.stamp = state.header.stamp
                clouds.publish(msg)
                return bool(client.check_collision(behind[None], ignore_self=True).in_collision[0])

            assert wait_until(lambda: blocked(30), timeout=30.0), process.log()[-3000:]
            assert wait_until(lambda: not blocked(1), timeout=30.0), process.log()[-3000:]
        finally:
            spinner.close()
