"""joint_states -> link poses: the node's streaming pipeline.

For every sensor_msgs/JointState that completes the chain's joint vector, one FK of that
configuration, then ``~/link_poses`` (LinkPoses, every link) and ``~/end_effector_pose``
(geometry_msgs/PoseStamped), stamped with the joint state's stamp, in the ``base_link`` frame.
Nothing is computed while nobody subscribes (the state is still tracked: the planner starts from
it). A robot without independent joints (J = 0) is complete from the first message.
"""

from __future__ import annotations

import numpy as np
import torch
from geometry_msgs.msg import PoseStamped
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState

from ..kinematics import forward_kinematics, invert_transform
from ..msg import LinkPoses
from . import convert
from .joint_states import JointStateTracker
from .served_model import ServedModel


class LinkPosePublisher:
    """Subscribes ``joint_states`` on ``node`` (a KinematicsNode: ``model``, ``settings``) and
    publishes the poses."""

    def __init__(self, node):
        self.node = node
        self._tracker: JointStateTracker | None = None
        self._message_cache: tuple | None = None  # (chain, LinkPoses message), see _link_poses_message
        self._link_poses = node.create_publisher(LinkPoses, "~/link_poses", 10)
        self._end_effector_pose = node.create_publisher(PoseStamped, "~/end_effector_pose", 10)
        node.create_subscription(JointState, "joint_states", self.on_joint_state, qos_profile_sensor_data)

    def tracker(self, model: ServedModel) -> JointStateTracker:
        """The latest joint positions received for ``model``'s chain (a new, empty tracker after a
        model change)."""
        tracker = self._tracker
        if tracker is None or tracker.chain is not model.chain:
            tracker = self._tracker = JointStateTracker(model.chain)
        return tracker

    def _link_poses_message(self, chain) -> LinkPoses:
        """One LinkPoses message per chain, filled in place for every joint state (building L
        Pose messages costs more than the kinematics)."""
        cached = self._message_cache
        if cached is None or cached[0] is not chain:
            message = LinkPoses(link_names=chain.link_names, poses=convert.pose_msgs(np.zeros((chain.num_links, 7))))
            cached = self._message_cache = (chain, message)
        return cached[1]

    def on_joint_state(self, msg: JointState) -> None:
        node = self.node
        model, settings = node.model, node.settings
        if model is None:
            return
        logger = node.get_logger()
        tracker = self.tracker(model)
        try:
            tracker.update(msg.name, msg.position)
        except ValueError as error:
            logger.warning(f"ignoring a joint_states message: {error}", throttle_duration_sec=5.0)
            return
        publish_links = settings.publish_link_poses and self._link_poses.get_subscription_count() > 0
        publish_end = settings.publish_end_effector_pose and self._end_effector_pose.get_subscription_count() > 0
        if not (publish_links or publish_end):
            return  # nobody listens (the state is still tracked: the planner starts from it)
        if not tracker.complete:
            logger.info(f"waiting for joint_states of {', '.join(tracker.missing)}", throttle_duration_sec=5.0)
            return
        chain = model.chain
        frame = settings.base_link or chain.root_link
        if not chain.has_link(frame):
            logger.warning(f"base_link '{frame}' is not a link of robot '{chain.name}'", throttle_duration_sec=5.0)
            return
        with torch.no_grad():
            T = forward_kinematics(chain, convert.to_tensor(chain, tracker.positions))  # (L, 4, 4)
            if frame != chain.root_link:
                T = invert_transform(T[chain.link_index(frame)]) @ T
        poses = convert.poses_xyzw(T)  # (L, 7)
        if publish_links:
            out = self._link_poses_message(chain)  # reused: publish() serialises at once
            for pose_msg, pose in zip(out.poses, poses.tolist()):
                convert.fill_pose(pose_msg, pose)
            out.header.stamp, out.header.frame_id = msg.header.stamp, frame
            self._link_poses.publish(out)
        end_effector = settings.end_effector_link
        if publish_end and chain.has_link(end_effector):
            out = PoseStamped()
            out.header.stamp, out.header.frame_id = msg.header.stamp, frame
            convert.fill_pose(out.pose, poses[chain.link_index(end_effector)])
            self._end_effector_pose.publish(out)
