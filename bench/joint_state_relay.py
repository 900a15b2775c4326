"""The floor for the joint_states pipeline benchmark: a bare rclpy node that republishes every
sensor_msgs/JointState it receives, as-is (same single-threaded executor and joint_states QoS as
the kinematics node, no kinematics, no torch).

    python bench/joint_state_relay.py IN_TOPIC OUT_TOPIC     (started by service_benchmark.py)
"""

from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState


def main(in_topic: str, out_topic: str) -> None:
    rclpy.init()
    node = rclpy.create_node("joint_state_relay")
    out = node.create_publisher(JointState, out_topic, 10)
    node.create_subscription(JointState, in_topic, out.publish, qos_profile_sensor_data)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:3])
