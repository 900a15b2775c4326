"""Collision model (pure torch): the robot as spheres on its links, world obstacles, batched
signed distances with gradients through the FK analytical backward. Imports ``kinematics`` only."""

from .robot_spheres import RobotSpheres
from .obstacles import KINDS, Obstacle, PackedScene, PackedShapes, Scene, pose_from_xyz_quat_xyzw
from .signed_distance import sphere_obstacle_distances, sphere_sphere_distance
from .self_collision import SelfCollisionPairs, self_collision_pairs
from .collision_checker import CollisionChecker, CollisionDistances, CollisionPenaltyFunction

__all__ = [
    "CollisionChecker",
    "CollisionDistances",
    "CollisionPenaltyFunction",
    "KINDS",
    "Obstacle",
    "PackedScene",
    "PackedShapes",
    "RobotSpheres",
    "Scene",
    "SelfCollisionPairs",
    "pose_from_xyz_quat_xyzw",
    "self_collision_pairs",
    "sphere_obstacle_distances",
    "sphere_sphere_distance",
]

# Building the spheres from a URDF's <collision> elements (numpy + trimesh; lazy mesh loading).
from .urdf_spheres import clear_cover_cache, robot_spheres_from_urdf  # noqa: E402

__all__ += ["clear_cover_cache", "robot_spheres_from_urdf"]

# MoveIt / MotionBenchMaker planning-scene YAML -> Scene (PyYAML, imported when it is read).
from .moveit_scene import scene_from_moveit_yaml  # noqa: E402

__all__ += ["scene_from_moveit_yaml"]

# The tight model: sphere trees per link and their hierarchical verdict.
from .sphere_tree import TreeSettings  # noqa: E402
from .tree_checker import TreeCollisionChecker, TreeDistances  # noqa: E402
from .urdf_sphere_trees import robot_sphere_trees_from_urdf  # noqa: E402

__all__ += ["TreeCollisionChecker", "TreeDistances", "TreeSettings", "robot_sphere_trees_from_urdf"]
from .robot_collision_model import RobotCollisionModel, robot_collision_model_from_urdf  # noqa: E402

__all__ += ["RobotCollisionModel", "robot_collision_model_from_urdf"]

# Sensed and CAD geometry: point clouds, depth images and meshes as voxel grids with a
# conservative distance field (numpy + scipy at build time, torch queries).
from .occupancy import VoxelGrid  # noqa: E402

__all__ += ["VoxelGrid"]

# Objects the robot carries (MoveIt's attached collision objects).
from .attached_objects import AttachedObject  # noqa: E402

__all__ += ["AttachedObject"]
