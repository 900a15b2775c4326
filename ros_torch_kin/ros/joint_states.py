"""Merging sensor_msgs/JointState messages into one full joint vector.

Drivers often publish partial messages (an arm and a gripper separately) in any joint order and
with joints the model does not know (wheels, other robots). The tracker keeps the latest value of
each of the chain's independent joints and says which are still unknown.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from ..kinematics import Chain
from .convert import MAX_JOINT_POSITION


class JointStateTracker:
    """Latest position of every independent joint of one chain (float64, rad / m).

    One thread updates, any thread reads: every :meth:`update` builds a new ``positions`` array
    and swaps it in whole, so ``tracker.positions`` (and a copy of it) is always one message's
    complete result, never half of an update."""

    def __init__(self, chain: Chain):
        self.chain = chain
        self.positions = np.full(chain.num_dofs, np.nan)
        self._index = {name: i for i, name in enumerate(chain.joint_names)}
        #: names seen in messages that are not independent joints of the chain
        self.ignored: set[str] = set()
        self._complete = False  # once every joint has a value it keeps one (only finite values replace it)
        self._update_lock = threading.Lock()  # concurrent updates would lose one another's values

    def update(self, names, positions) -> None:
        """Take the values of the named joints; ignore unknown names and non-finite values.
        ValueError (and nothing taken) if the message's arrays disagree in length or a known
        joint's value is beyond ±MAX_JOINT_POSITION (rad or m; a float32 chain would answer NaN)."""
        if len(positions) != len(names):
            raise ValueError(f"JointState has {len(names)} names but {len(positions)} positions")
        for name, value in zip(names, positions):
            if abs(value) > MAX_JOINT_POSITION and math.isfinite(value) and name in self._index:
                raise ValueError(f"joint '{name}' = {value:.6g} is beyond ±{MAX_JOINT_POSITION:g} rad or m")
        with self._update_lock:
            updated = self.positions.copy()
            for name, value in zip(names, positions):
                index = self._index.get(name)
                if index is None:
                    self.ignored.add(name)
                elif math.isfinite(value):
                    updated[index] = value
            self.positions = updated  # one reference assignment: readers see the old or the new array

    @property
    def missing(self) -> list[str]:
        """Joints not received yet (poses are published once this is empty)."""
        return [name for name, value in zip(self.chain.joint_names, self.positions) if np.isnan(value)]

    @property
    def complete(self) -> bool:
        """Every joint has a value (for J = 0, from the start)."""
        if not self._complete:
            self._complete = not np.isnan(self.positions).any()
        return self._complete
