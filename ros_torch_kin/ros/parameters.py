"""The node's parameters: names, defaults, descriptions and validation (config/default.yaml mirrors
these defaults)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from rcl_interfaces.msg import IntegerRange, ParameterDescriptor

JOINT_LIMIT_POLICIES = ("report", "clamp", "reject")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Parameter:
    name: str
    default: object
    description: str
    integer_range: tuple[int, int] | None = None
    choices: tuple[str, ...] | None = None
    read_only: bool = False  # read when the node starts; set_parameters refuses a change

    def descriptor(self) -> ParameterDescriptor:
        text = self.description
        if self.choices:
            text += f" One of: {', '.join(self.choices)}."
        descriptor = ParameterDescriptor(description=text, read_only=self.read_only)
        if self.integer_range:
            descriptor.integer_range = [IntegerRange(from_value=self.integer_range[0], to_value=self.integer_range[1], step=1)]
        return descriptor


PARAMETERS = (
    Parameter("robot_description", "", "URDF XML of the robot. Empty: use robot_description_file, "
              "else bundled_robot, else wait for the robot_description topic."),
    Parameter("robot_description_file", "", "Path of a URDF file, used when robot_description is empty."),
    Parameter("bundled_robot", "arm7", "A robot shipped with ros_torch_kin, used when neither "
              "robot_description nor robot_description_file is set. Empty: none (wait for the topic)."),
    Parameter("subscribe_robot_description", True, "Also follow the robot_description topic "
              "(std_msgs/String, transient local, as robot_state_publisher publishes it). The newest "
              "valid description wins; an invalid one is logged and the current model stays."),
    Parameter("max_description_bytes", 10_000_000, "Largest robot description accepted (bytes of URDF "
              "XML), from the parameters or the topic; a larger one is refused with its size and the "
              "current model stays.", integer_range=(1_000, 1_000_000_000)),
    Parameter("floating_joints", "error", "What to do with floating and planar joints: 'error' "
              "rejects the URDF, 'fixed' treats them as fixed at their origin.", choices=("error", "fixed")),
    Parameter("device", "auto", "Where the chain lives and the math runs: auto (cuda when a GPU is "
              "visible, else cpu), cpu, cuda or cuda:N."),
    Parameter("dtype", "float32", "Floating type of the chain and the computation.", choices=DTYPES),
    Parameter("base_link", "", "Frame of published poses and default reference frame of ComputeFK. "
              "Empty: the URDF root link."),
    Parameter("end_effector_link", "tool0", "Link of the end_effector_pose topic and the default "
              "link of ComputeJacobian and ComputeGradient. Empty: none."),
    Parameter("max_batch", 100_000, "Largest number of configurations B served in one request.",
              integer_range=(1, 10_000_000)),
    Parameter("joint_limit_policy", "report", "Configurations outside the URDF position limits: "
              "'report' computes them as given (ComputeFK flags them in within_limits), 'clamp' clamps "
              "them into the limits first, 'reject' fails the request.", choices=JOINT_LIMIT_POLICIES),
    Parameter("publish_link_poses", True, "Publish every link's pose (LinkPoses on ~/link_poses) for "
              "each joint_states message."),
    Parameter("publish_end_effector_pose", True, "Publish the end effector's pose (PoseStamped on "
              "~/end_effector_pose) for each joint_states message."),
    Parameter("torch_threads", 0, "CPU threads torch uses for each request's math. 0: automatic, by the "
              "request's size (1 thread for small ones, every core the node may use for large ones, see "
              "ros_torch_kin.threads); N: N threads for every request. The node's torch workers wait "
              "passively (OMP_WAIT_POLICY=PASSIVE unless the environment sets it), so they leave the cores "
              "to the robot's other processes between operations.", integer_range=(0, 1024)),
    Parameter("collision_checking", True, "Build the robot's collision model (spheres covering its URDF "
              "<collision> geometry, self-collision pairs) for ~/check_collision, ~/compute_ik with "
              "avoid_collisions and the planner. false: those requests are refused."),
    Parameter("collision_verdict", "tight", "What decides whether a configuration or motion is in "
              "collision: 'tight' (sphere trees within 3 mm of the URDF's collision meshes and shapes, "
              "conservative: never misses a contact; a grazing self contact, or one with a box, sphere, "
              "capsule or cylinder, at the validity margin decided by the meshes' triangles; built once "
              "per robot, then cached in "
              "~/.cache/ros_torch_kin) or 'coarse' (the dozen spheres per link that the costs and "
              "gradients always use: 10-50 mm loose, quick to build). With collision_spheres_file the "
              "given spheres decide.", choices=("tight", "coarse")),
    Parameter("robot_description_semantic", "", "SRDF XML of the robot: its <disable_collisions> pairs "
              "are not checked for self collision. Empty: none, unless one arrives on the "
              "robot_description_semantic topic (transient local, as MoveIt publishes it)."),
    Parameter("collision_spheres_file", "", "YAML file of collision spheres (cuRobo's collision_spheres "
              "layout: link -> list of {center: [x, y, z], radius: r}, m, link frame) that replace the "
              "generated spheres of the links it names. Empty: generated spheres only."),
    Parameter("mesh_search_paths", "", "Directories, separated by ':', in which package://PKG/... mesh "
              "URIs are looked up as DIR/PKG/... (besides ament_index when ROS knows the package)."),
    Parameter("self_collision_samples", 1000, "Random configurations sampled when the model is built to "
              "find link pairs that are always in collision (those are not checked).",
              integer_range=(0, 1_000_000)),
    Parameter("collision_margin", 0.0, "Clearance (m) a configuration must keep from obstacles and "
              "between its own links to count as collision-free, in ~/check_collision (when the "
              "request gives 0), ~/compute_ik and the planner."),
    Parameter("scene_file", "", "Path of a MoveIt planning-scene YAML (world: collision_objects, as "
              "MoveIt and MotionBenchMaker write it) whose objects become the scene when the first robot "
              "model is served and whenever this parameter is set (then a bad file is refused). Frames: "
              "the root or any robot link, by FK at the latest joint state, else at the zero "
              "configuration clamped into the limits. A file that cannot be used is logged and the "
              "scene stays as it was. Empty: none."),
    Parameter("trajectory_waypoints", 32, "Waypoints of a planned trajectory (start included) when "
              "the goal does not say.", integer_range=(3, 1000)),
    Parameter("trajectory_seeds", 16, "Seeds optimised in parallel per plan when the goal does not say.",
              integer_range=(1, 1024)),
    Parameter("trajectory_max_iterations", 10, "Most L-BFGS iterations per plan (the seeds already reach the "
              "target; iterations smooth and shorten the path).", integer_range=(1, 100_000)),
    Parameter("trajectory_time_budget", 2.0, "Wall-clock seconds a plan may take when the goal does not say."),
    Parameter("trajectory_clearance", 0.01, "Distance (m) planned motions keep from obstacles and between "
              "the robot's own links, at every waypoint and along every segment, when the goal says 0."),
    Parameter("trajectory_acceleration_limit", 5.0, "Joint acceleration limit of planned trajectories "
              "(rad/s² or m/s²; URDF has none)."),
    Parameter("trajectory_velocity_scaling", 1.0, "Fraction of the URDF velocity limits planned "
              "trajectories may use (0 < s <= 1); the default of a goal's max_velocity_scaling_factor."),
    Parameter("trajectory_acceleration_scaling", 1.0, "Fraction of trajectory_acceleration_limit planned "
              "trajectories may use (0 < s <= 1); the default of a goal's max_acceleration_scaling_factor."),
    Parameter("trajectory_jerk_limit", 0.0, "Joint jerk limit of planned trajectories (rad/s³ or m/s³, every "
              "joint); the default of a goal's max_jerk. 0: none (time-optimal under velocity and "
              "acceleration limits; with a jerk limit the timing is jerk-limited and slower)."),
    Parameter("trajectory_control_rate", 1000.0, "Rate (Hz) of the controller that executes plans: every "
              "trajectory is verified within its limits sampled at this rate."),
    Parameter("trajectory_sample_rate", 100.0, "Rate (Hz) of the points of a planned trajectory (the timed "
              "motion sampled every 1/rate s, the end included)."),
    # cameras (ros_torch_kin.ros.point_cloud_input): read when the node starts
    Parameter("point_cloud_topics", "", "sensor_msgs/PointCloud2 topics whose points become world obstacles "
              "('sensor:<topic>'), separated by ','. header.frame_id must be a link of the robot (the camera "
              "mounted in the URDF); other frames are refused. Empty: none.", read_only=True),
    Parameter("depth_image_topics", "", "sensor_msgs/Image depth topics (16UC1 in mm or 32FC1 in m), separated "
              "by ','; the intrinsics come from the sibling camera_info topic (…/image -> …/camera_info). "
              "Empty: none.", read_only=True),
    Parameter("sensor_voxel_size", 0.02, "Voxel size s (m) of sensed points. Distances to them are lower bounds "
              "of the true ones (never a missed contact): exact where a kept voxel centre is within 2·s, farther "
              "within 4√3·s up to 4.8·s and 8√3·s up to 13.6·s of the truth (ros_torch_kin.collision.occupancy), "
              "or closer with sensor_lattice.", read_only=True),
    Parameter("sensor_min_range", 0.05, "Points closer to the sensor than this (m) are dropped.", read_only=True),
    Parameter("sensor_max_range", 3.0, "Points farther from the sensor than this (m) are dropped.", read_only=True),
    Parameter("sensor_decay_time", 2.0, "Seconds a topic's points stay in the world after its last message "
              "(a camera that stops never leaves a stale world).", read_only=True),
    Parameter("sensor_max_points", 2_000_000, "Largest cloud or image (points, holes included) accepted; a "
              "larger message is refused and logged.", integer_range=(1, 100_000_000), read_only=True),
    Parameter("sensor_point_radius", 0.0, "Sensed points are kept as the centres of their occupied cubes "
              "(sensor_point_size), each a ball of radius √3/2·side + this (m): the ball covers every sensed point "
              "of its cube, this adds a margin for sensor noise. Distances to the balls are exact where a ball's "
              "centre is within 2·s (s the voxel size; ros_torch_kin.collision.point_hash), lower bounds "
              "farther.", read_only=True),
    Parameter("sensor_point_size", 0.01, "Side (m) of the cubes sensed points are kept by: each occupied cube "
              "is one point, a ball of radius √3/2·side + sensor_point_radius around its centre, so what the "
              "camera saw stands at most √3·side proud of itself (a grasp goal nearer than that is refused). "
              "0: the voxel size; else the voxel size divided by the least whole number that brings it to this "
              "or below. Smaller keeps more points: insertion and queries near them cost more.", read_only=True),
    Parameter("sensor_lattice", 0.04, "Spacing (m) of the exact far-field lattice of sensed points: distances "
              "to the kept balls are kept exactly at its nodes out to 0.1 m (stamped around the kept cubes), so a configuration a few centimetres from what the camera sees is "
              "not called in collision by the voxel field's looser bound (error about 3·spacing²/(8·d) at "
              "distance d). 0: none; else at least 0.01 m (a finer lattice has millions of nodes).", read_only=True),
    Parameter("sensor_shadow_depth", 0.0, "Depth (m, along each ray) of the band behind every surface a depth "
              "image or organised cloud shows that counts as occupied: a camera sees no object's thickness, and a "
              "plan through an obstacle's unseen back would hit it (a TSDF's truncation band does the same; "
              "ros_torch_kin.collision.depth_shadow). Kept as the band's back face and its side walls at depth "
              "edges. 0: none (what is not seen is free, as in MoveIt's octomap). Unorganised clouds get none.",
              read_only=True),
    Parameter("self_filter_padding", 0.02, "Sensed points within the robot's collision spheres (the tight model's, a "
              "few mm from the meshes, where collision_verdict is 'tight') and the spheres of the objects it "
              "carries (at the joint state nearest the message's stamp) plus this (m) are removed before "
              "insertion, by cubes of sensor_point_size.", read_only=True),
)

BY_NAME = {p.name: p for p in PARAMETERS}


@dataclass(frozen=True)
class Settings:
    """The parameters that shape how requests are served (not the robot itself); each field is
    the parameter of the same name."""

    base_link: str
    end_effector_link: str
    max_batch: int
    joint_limit_policy: str
    publish_link_poses: bool
    publish_end_effector_pose: bool
    collision_margin: float

    @classmethod
    def from_values(cls, values: dict) -> "Settings":
        """From a {parameter name: value} mapping (other names are ignored)."""
        return cls(**{f.name: values[f.name] for f in fields(cls)})

    @classmethod
    def defaults(cls) -> "Settings":
        return cls.from_values({p.name: p.default for p in PARAMETERS})


_NON_NEGATIVE = ("collision_margin", "trajectory_clearance", "sensor_min_range", "self_filter_padding",
                 "sensor_point_radius", "sensor_point_size", "sensor_lattice",
                 "sensor_shadow_depth")
_POSITIVE = ("sensor_voxel_size", "sensor_max_range", "sensor_decay_time",
             "trajectory_time_budget", "trajectory_acceleration_limit", "trajectory_velocity_scaling",
             "trajectory_acceleration_scaling", "trajectory_control_rate", "trajectory_sample_rate")
_FINITE = ("trajectory_jerk_limit", "trajectory_control_rate", "trajectory_sample_rate", "sensor_voxel_size",
           "sensor_max_range", "sensor_decay_time")
#: The finest far-field lattice of sensed points (m): finer ones span millions of nodes.
MIN_SENSOR_LATTICE = 0.01
#: Parameters read when the node starts only (the camera inputs).
READ_ONLY = frozenset(p.name for p in PARAMETERS if p.read_only)


def check_choice(name: str, value) -> str | None:
    """An error message if ``value`` is not allowed for parameter ``name``, else None."""
    spec = BY_NAME[name]
    if spec.choices and value not in spec.choices:
        return f"{name} must be one of {', '.join(spec.choices)}, not '{value}'"
    if name in _POSITIVE and not value > 0:
        return f"{name} must be positive, not {value}"
    if name in _NON_NEGATIVE and not (math.isfinite(value) and value >= 0):
        return f"{name} must be a finite number of metres >= 0, not {value}"
    if name in ("trajectory_velocity_scaling", "trajectory_acceleration_scaling") and value > 1:
        return f"{name} must be at most 1, not {value}"
    if name in _FINITE and not (math.isfinite(value) and value >= 0):
        return f"{name} must be finite and >= 0, not {value}"
    if name == "sensor_lattice" and 0 < value < MIN_SENSOR_LATTICE:
        return f"{name} must be 0 (none) or at least {MIN_SENSOR_LATTICE} m, not {value}"
    return None
