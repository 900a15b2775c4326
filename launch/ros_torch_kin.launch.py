"""Start the ros_torch_kin node.

    ros2 launch ros_torch_kin ros_torch_kin.launch.py                          # bundled 7-DOF arm
    ros2 launch ros_torch_kin ros_torch_kin.launch.py urdf_file:=/path/robot.urdf
    ros2 launch ros_torch_kin ros_torch_kin.launch.py params_file:=/path/my_robot.yaml

For a robot whose robot_state_publisher publishes the robot_description topic, use a params file
(copy of config/default.yaml) with bundled_robot: "" and your end_effector_link.

Everything here is also reachable without launch (what CI and `make demo` do):
    ros_torch_kin_node --ros-args -r __node:=ros_torch_kin --params-file config/default.yaml \\
        -p robot_description_file:=/path/robot.urdf
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _node(context):
    parameters = [LaunchConfiguration("params_file").perform(context)]
    urdf_file = LaunchConfiguration("urdf_file").perform(context)
    if urdf_file:
        parameters.append({"robot_description_file": str(Path(urdf_file).expanduser().resolve())})
    return [
        Node(
            package="ros_torch_kin",
            executable="ros_torch_kin_node",
            name="ros_torch_kin",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            parameters=parameters,
        )
    ]


def generate_launch_description():
    default_params = str(Path(get_package_share_directory("ros_torch_kin")) / "config" / "default.yaml")
    return LaunchDescription(
        [
            DeclareLaunchArgument("params_file", default_value=default_params,
                                  description="YAML parameters of the node (see config/default.yaml)"),
            DeclareLaunchArgument("urdf_file", default_value="",
                                  description="URDF file of the robot; overrides the params file's robot"),
            DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
            OpaqueFunction(function=_node),
        ]
    )
