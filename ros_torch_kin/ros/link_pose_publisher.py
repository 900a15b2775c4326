"""joint_states -> link poses: the node's streaming pipeline.

For every sensor_msgs/JointState that completes the chain's joint vector, one FK of that
configuration, then ``~/link_poses`` (LinkPoses, every link) and ``~/end_effector_pose``
(geometry_msgs/PoseStamped), stamped with the joint state's stamp, in the ``base_link`` frame.
Nothing is computed while nobody subscribes (the state is still tracked: the planner starts from
it). A robot without independent joints (J = 0) is complete from the first message.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.qos import qos_profile_sensor_data
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import JointState

from ..kinematics import Chain
from ..msg import LinkPoses
from . import convert
from .joint_states import JointStateTracker
from .served_model import ServedModel
from .single_fk import SingleConfigurationFK

#: CDR little-endian encapsulation: the first 4 bytes of every message rclpy serializes here
_CDR_LE = b"\x00\x01"
#: header.stamp right after the encapsulation: int32 sec, uint32 nanosec, little-endian
_STAMP = struct.Struct("<iI")
#: doubles per geometry_msgs/Pose (position x y z, orientation x y z w)
_POSE_DOUBLES = 7


class SerializedPoses:
    """One message whose header comes first and whose last field is N poses (LinkPoses,
    PoseStamped), serialized once; each :meth:`payload` rewrites only the stamp and the poses'
    56·N bytes at the end of the buffer and returns the bytes, which ``Publisher.publish`` sends
    as they are. Filling L Pose messages field by field and converting them to C on publish costs
    more than the kinematics; this costs a copy of the buffer.

    ``poses`` are the message's Pose objects (``message.poses``, or ``[message.pose]``). The
    layout is checked once against rclpy's own deserializer; if it does not hold (another
    middleware's encoding), :meth:`payload` fills and returns the message object instead.
    """

    def __init__(self, message, poses: list):
        self.message, self._pose_msgs = message, poses
        count = len(poses)
        self._buffer = bytearray(serialize_message(message))
        size = len(self._buffer)
        self._pose_block = np.frombuffer(self._buffer, dtype="<f8", count=_POSE_DOUBLES * count,
                                         offset=size - 8 * _POSE_DOUBLES * count).reshape(count, _POSE_DOUBLES)
        #: whether payload() returns bytes (else the filled message)
        self.raw = self._buffer[:2] == _CDR_LE and self._layout_holds()

    def payload(self, stamp, poses: np.ndarray):
        """Serialized bytes (or the filled message) with ``stamp`` (builtin_interfaces/Time) and
        ``poses`` (N, 7) float64 x y z qx qy qz qw."""
        if self.raw:
            return self._serialized(stamp, poses)
        for pose_msg, pose in zip(self._pose_msgs, poses.tolist()):
            convert.fill_pose(pose_msg, pose)
        self.message.header.stamp = stamp
        return self.message

    def _serialized(self, stamp, poses: np.ndarray) -> bytes:
        _STAMP.pack_into(self._buffer, 4, stamp.sec, stamp.nanosec)
        self._pose_block[...] = poses
        return bytes(self._buffer)

    def _layout_holds(self) -> bool:
        """Whether the stamp and the poses are where :meth:`payload` writes them: a probe payload
        read back by rclpy."""
        from builtin_interfaces.msg import Time

        probe = np.arange(self._pose_block.size, dtype=np.float64).reshape(self._pose_block.shape) + 0.25
        read = deserialize_message(self._serialized(Time(sec=123456789, nanosec=987654321), probe), type(self.message))
        poses = read.poses if hasattr(read, "poses") else [read.pose]
        values = [(p.position.x, p.position.y, p.position.z, p.orientation.x, p.orientation.y, p.orientation.z,
                   p.orientation.w) for p in poses]
        stamp = read.header.stamp
        return (stamp.sec, stamp.nanosec) == (123456789, 987654321) and np.array_equal(np.array(values).reshape(probe.shape), probe)


@dataclass(frozen=True)
class _Outputs:
    """What one (chain, frame, end effector) publishes with: built once, used for every state."""

    frame_index: int  # of the poses' frame in chain.link_names (0: the root link)
    link_poses: SerializedPoses
    end_effector_index: int | None  # None: the end effector is not a link of the chain
    end_effector_pose: SerializedPoses


class LinkPosePublisher:
    """Subscribes ``joint_states`` on ``node`` (a KinematicsNode: ``model``, ``settings``) and
    publishes the poses. Per state: the tracker update, one float64 numpy FK of the configuration
    (:class:`SingleConfigurationFK`) and the pre-serialized messages' stamps and poses rewritten
    (:class:`SerializedPoses`)."""

    def __init__(self, node):
        self.node = node
        self._tracker: JointStateTracker | None = None
        self._fk: SingleConfigurationFK | None = None
        self._outputs: tuple[tuple, _Outputs] | None = None  # ((chain, frame, end effector), outputs)
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

    def forward_kinematics(self, chain: Chain) -> SingleConfigurationFK:
        """The single-configuration FK of ``chain`` (built again only after a model change)."""
        fk = self._fk
        if fk is None or fk.chain is not chain:
            fk = self._fk = SingleConfigurationFK(chain)
        return fk

    def _outputs_for(self, chain: Chain, frame: str, end_effector: str) -> _Outputs:
        key = (chain, frame, end_effector)
        cached = self._outputs
        if cached is None or cached[0][0] is not chain or cached[0][1:] != key[1:]:
            zeros = np.zeros((chain.num_links, _POSE_DOUBLES))
            links = LinkPoses(link_names=chain.link_names, poses=convert.pose_msgs(zeros))
            links.header.frame_id = frame
            end = PoseStamped()
            end.header.frame_id = frame
            outputs = _Outputs(chain.link_index(frame), SerializedPoses(links, links.poses),
                               chain.link_index(end_effector) if chain.has_link(end_effector) else None,
                               SerializedPoses(end, [end.pose]))
            cached = self._outputs = (key, outputs)
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
        outputs = self._outputs_for(chain, frame, settings.end_effector_link)
        poses = self.forward_kinematics(chain).poses(tracker.positions, outputs.frame_index)  # (L, 7)
        stamp = msg.header.stamp
        if publish_links:
            self._link_poses.publish(outputs.link_poses.payload(stamp, poses))
        end = outputs.end_effector_index
        if publish_end and end is not None:
            self._end_effector_pose.publish(outputs.end_effector_pose.payload(stamp, poses[end : end + 1]))
