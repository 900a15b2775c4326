"""joint_states -> link poses: the node's streaming pipeline.

For every sensor_msgs/JointState that completes the chain's joint vector, one FK of that
configuration, then ``~/link_poses`` (LinkPoses, every link) and ``~/end_effector_pose``
(geometry_msgs/PoseStamped), stamped with the joint state's stamp, in the ``base_link`` frame.
Nothing is computed while nobody subscribes (the state is still tracked: the planner starts from
it). A robot without independent joints (J = 0) is complete from the first message.

The subscription and the two publishers live on a small internal node of their own, spun by its
own executor in a daemon thread: rclpy's executor rebuilds the wait set of all a node's entities
on every wake, and at 1 kHz the main node's services, action server and parameter services cost
more than the pipeline itself. The topic names are resolved by the main node, so its namespace
and the user's remappings still apply.
"""

from __future__ import annotations

import struct
import threading
import traceback
from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from rclpy.task import Future
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
    """Subscribes ``joint_states`` of ``node`` (a KinematicsNode: ``model``, ``settings``) and
    publishes its ``~/link_poses`` and ``~/end_effector_pose``. Per state: the tracker update, one
    float64 numpy FK of the configuration (:class:`SingleConfigurationFK`) and the pre-serialized
    messages' stamps and poses rewritten (:class:`SerializedPoses`).

    The subscription and the publishers belong to an internal node (``<node name>_link_poses``,
    same context and namespace; no parameter or type description services, no rosout, no global
    arguments: the names are already resolved by ``node``), whose callbacks run in a daemon
    thread; :meth:`close` stops it. ``node.model`` and ``node.settings`` are read once per state (each is replaced whole, never
    modified); the tracker is read from other threads (:class:`JointStateTracker` is safe for one
    writer and any readers)."""

    #: seconds close() waits for the thread (a callback in flight) to finish
    CLOSE_TIMEOUT = 5.0

    def __init__(self, node):
        self.node = node
        self._tracker: JointStateTracker | None = None
        self._tracker_lock = threading.Lock()
        self._fk: SingleConfigurationFK | None = None
        self._outputs: tuple[tuple, _Outputs] | None = None  # ((chain, frame, end effector), outputs)
        topics = {name: node.resolve_topic_name(name) for name in ("joint_states", "~/link_poses", "~/end_effector_pose")}
        self._node = Node(f"{node.get_name()}_link_poses", namespace=node.get_namespace(), context=node.context,
                          use_global_arguments=False, enable_rosout=False, start_parameter_services=False,
                          parameter_overrides=[Parameter("start_type_description_service", value=False)])
        try:
            self._link_poses = self._node.create_publisher(LinkPoses, topics["~/link_poses"], 10)
            self._end_effector_pose = self._node.create_publisher(PoseStamped, topics["~/end_effector_pose"], 10)
            self._node.create_subscription(JointState, topics["joint_states"], self.on_joint_state,
                                           qos_profile_sensor_data)
            self._executor = SingleThreadedExecutor(context=node.context)
            self._executor.add_node(self._node)
        except BaseException:
            self._node.destroy_node()
            raise
        self._stop = Future()  # done: the thread returns
        self._thread = threading.Thread(target=self._spin, name=self._node.get_name(), daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        """The thread: this executor's callbacks until :meth:`close` or the context's shutdown. A
        callback's exception is logged and the pipeline goes on."""
        executor, context, stop = self._executor, self.node.context, self._stop
        while context.ok() and not stop.done():
            try:
                executor.spin_until_future_complete(stop)
            except ExternalShutdownException:
                return
            except Exception as error:  # noqa: BLE001 (a daemon thread: nothing above it would report it)
                if not context.ok() or stop.done():
                    return
                self.node.get_logger().error(f"joint_states pipeline: {type(error).__name__}: {error}\n"
                                             f"{traceback.format_exc()}", throttle_duration_sec=5.0)

    def close(self) -> None:
        """Stop the thread (waits up to CLOSE_TIMEOUT s for a callback in flight) and destroy the
        internal node. Idempotent."""
        if self._stop.done():
            return
        self._stop.set_result(None)  # wakes the executor (spin_until_future_complete's done callback)
        self._thread.join(self.CLOSE_TIMEOUT)
        if self._thread.is_alive():
            self.node.get_logger().warning("the joint_states pipeline did not stop in time")
            return  # its node is still in use: a daemon thread, gone with the process
        self._executor.shutdown(0.0)
        self._node.destroy_node()

    def tracker(self, model: ServedModel) -> JointStateTracker:
        """The latest joint positions received for ``model``'s chain (a new, empty tracker after a
        model change). Safe to call from any thread."""
        tracker = self._tracker
        if tracker is None or tracker.chain is not model.chain:
            with self._tracker_lock:
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
            if node.model is not model or node.settings is not settings:
                return  # a parameter change between the two reads above: the next state has both
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
