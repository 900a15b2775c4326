"""ROS 2 layer of ros_torch_kin: the node, its parameters, conversions and a client. The only
place that imports rclpy; needs the package built by colcon (for the generated interfaces)."""
