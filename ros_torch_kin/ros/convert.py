"""Between ROS messages and numpy/torch: reading and checking requests, packing responses.

Checks happen here, in numpy, before anything reaches the device; each failure raises
:class:`RequestError` with a message that names the field, configuration or joint at fault.
Large float64[] fields go through ``array.array`` / ``np.frombuffer`` (no per-element Python).
"""

from __future__ import annotations

import array
import math

import numpy as np
import torch

from ..kinematics import Chain, matrix_to_pose_xyzw


class RequestError(ValueError):
    """A request the node cannot serve; the message goes back to the client verbatim."""


#: Largest joint position accepted, rad or m. Beyond it a revolute angle has lost all float32
#: precision and a prismatic offset is not a robot; it also keeps every product finite in float32.
MAX_JOINT_POSITION = 1e6
#: Largest coordinate of a point or target position accepted, m.
MAX_COORDINATE = 1e6
#: Largest cost weight (1/m², 1/rad²) and upstream gradient component accepted: with positions
#: bounded above, costs and gradients stay far inside float32's range (3.4e38).
MAX_WEIGHT = 1e12


def require_bounded(values: np.ndarray, bound: float, field: str, unit: str, describe=None) -> None:
    """RequestError naming the field (and element) unless every value is finite and |value| <=
    bound. ``describe(i)`` names flat element i (e.g. "configuration 3, joint 'elbow'")."""
    bad = np.flatnonzero(~(np.abs(values) <= bound))  # NaN compares false: caught here too
    if bad.size:
        i = int(bad[0])
        where = f"{field}[{i}]" + (f" ({describe(i)})" if describe else "")
        value = values.reshape(-1)[i]
        problem = "is not finite" if not np.isfinite(value) else f"is beyond ±{bound:g} {unit}"
        raise RequestError(f"{where} = {value:.6g} {problem}")


def as_float_array(values) -> np.ndarray:
    """A float64[] field (array.array, list or ndarray) as a 1-D float64 ndarray (zero-copy for
    array.array)."""
    if isinstance(values, array.array) and values.typecode == "d":
        return np.frombuffer(values, dtype=np.float64) if len(values) else np.zeros(0)
    return np.asarray(values, dtype=np.float64).reshape(-1)


def pack(values: np.ndarray) -> array.array:
    """An ndarray as the array.array('d') that float64[] fields take without per-element work."""
    return array.array("d", np.ascontiguousarray(values, dtype=np.float64).tobytes())


def joint_columns(chain: Chain, joint_names) -> np.ndarray | None:
    """For each column named in ``joint_names``, its index in ``chain.joint_names``; None when
    the list is empty (the chain's own order). Every independent joint must appear exactly once."""
    names = list(joint_names)
    if not names:
        return None
    seen = set()
    for name in names:
        if name in seen:
            raise RequestError(f"joint '{name}' is listed twice in joint_names")
        seen.add(name)
    try:
        columns = np.array(chain.joint_indices(names), dtype=np.int64)
    except ValueError as error:
        raise RequestError(str(error)) from None
    missing = [name for name in chain.joint_names if name not in seen]
    if missing:
        raise RequestError(
            f"joint_names lacks {', '.join(missing)}: robot '{chain.name}' has {chain.num_dofs} "
            "independent joints and every one needs a value"
        )
    return columns


def read_positions(chain: Chain, joint_names, positions, max_batch: int) -> tuple[np.ndarray, np.ndarray | None]:
    """[B x J] positions in request column order -> (q (B, J) float64 in chain order, columns)."""
    columns = joint_columns(chain, joint_names)
    names = list(joint_names) or list(chain.joint_names)
    flat = as_float_array(positions)
    J = chain.num_dofs
    if J == 0:  # a robot without independent joints has one configuration: positions is empty
        if flat.size:
            raise RequestError(
                f"robot '{chain.name}' has no independent joints: send positions empty (B = 1), "
                f"not {flat.size} values"
            )
        return np.zeros((1, 0)), None
    if flat.size == 0:
        raise RequestError("positions is empty: send B >= 1 configurations of J values each")
    if flat.size % J:
        raise RequestError(
            f"positions has {flat.size} values, not a multiple of the {J} joints "
            f"({', '.join(names)}): expected B x {J} values, row-major"
        )
    batch = flat.size // J
    if batch > max_batch:
        raise RequestError(f"batch of {batch} configurations is above max_batch ({max_batch})")
    require_bounded(flat, MAX_JOINT_POSITION, "positions", "rad or m",
                    lambda i: f"configuration {i // J}, joint '{names[i % J]}'")
    rows = flat.reshape(batch, J)
    if columns is None:
        return rows, None
    q = np.empty_like(rows)
    q[:, columns] = rows
    return q, columns


def limit_violation(
    chain: Chain, lower: np.ndarray, upper: np.ndarray, q: np.ndarray, tolerance: float = 1e-9
) -> tuple[np.ndarray, tuple[int, str] | None]:
    """q (B, J) against the (J,) position limits: (within (B,) bool, and for the first joint
    outside its limits, (its configuration, "joint 'name' = value is outside its limits [lo, hi]"),
    or None when every row is within)."""
    outside = (q < lower - tolerance) | (q > upper + tolerance)
    within = ~outside.any(axis=1)
    if within.all():
        return within, None
    b, j = (int(i) for i in np.argwhere(outside)[0])
    return within, (b, f"joint '{chain.joint_names[j]}' = {q[b, j]:.6g} is outside its limits "
                       f"[{lower[j]:.6g}, {upper[j]:.6g}]")


def apply_limit_policy(
    chain: Chain, lower: np.ndarray, upper: np.ndarray, q: np.ndarray, policy: str
) -> tuple[np.ndarray, np.ndarray]:
    """(q after the policy, within (B,) bool: whether each row was inside the limits)."""
    within, violation = limit_violation(chain, lower, upper, q)
    if policy == "reject" and violation is not None:
        b, text = violation
        raise RequestError(f"configuration {b}: {text} (joint_limit_policy is 'reject')")
    if policy == "clamp":
        q = np.clip(q, lower, upper)
    return q, within


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is torch or Python running out of memory (CUDA or host)."""
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(error, RuntimeError) and ("out of memory" in str(error) or "allocate" in str(error))


def out_of_memory_message(device: torch.device, error: BaseException, advice: str) -> str:
    return f"out of memory on {device} ({str(error).splitlines()[0][:120]}); {advice}"


def link_indices(chain: Chain, link_names, field: str = "link_names") -> list[int]:
    try:
        return chain.link_indices(list(link_names))
    except ValueError as error:
        raise RequestError(f"{field}: {error}") from None


def link_index(chain: Chain, name: str, field: str) -> int:
    try:
        return chain.link_index(name)
    except ValueError as error:
        raise RequestError(f"{field}: {error}") from None


def to_tensor(chain: Chain, values: np.ndarray) -> torch.Tensor:
    """float64 ndarray -> tensor on the chain's device in its dtype."""
    return torch.from_numpy(np.ascontiguousarray(values)).to(device=chain.device, dtype=chain.dtype)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(device="cpu", dtype=torch.float64).contiguous().numpy()


def poses_from_msgs(poses, field: str) -> np.ndarray:
    """geometry_msgs/Pose[] -> (N, 7) x, y, z, qx, qy, qz, qw with a unit quaternion; rejects
    non-finite values, positions beyond MAX_COORDINATE and zero quaternions. Any finite non-zero
    quaternion is normalised without overflow: (1e300, 1e300, 0, 0) is (1, 1, 0, 0)."""
    values = np.array(
        [(p.position.x, p.position.y, p.position.z, p.orientation.x, p.orientation.y, p.orientation.z,
          p.orientation.w) for p in poses],
        dtype=np.float64,
    ).reshape(-1, 7)
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if bad.size:
        raise RequestError(f"{field}[{int(bad[0])}] is not finite")
    bad = np.flatnonzero(np.abs(values[:, :3]).max(axis=1, initial=0.0) > MAX_COORDINATE)
    if bad.size:
        raise RequestError(f"{field}[{int(bad[0])}].position is beyond ±{MAX_COORDINATE:g} m")
    values[:, 3:] = unit_quaternions(values[:, 3:], field)
    return values


def unit_quaternions(q: np.ndarray, field: str) -> np.ndarray:
    """(N, 4) finite quaternions -> unit quaternions; RequestError for a zero one. Scaled by the
    largest component first, so the norm cannot overflow or underflow."""
    scale = np.abs(q).max(axis=1, initial=0.0)
    bad = np.flatnonzero(scale == 0.0)
    if bad.size:
        raise RequestError(f"{field}[{int(bad[0])}] has a zero quaternion")
    q = q / scale[:, None]
    norms = np.linalg.norm(q, axis=1)
    return q / norms[:, None]


def weights(values, count: int, field: str) -> np.ndarray:
    """[K] weights, or ones when empty; non-negative and finite."""
    w = as_float_array(values)
    if w.size == 0:
        return np.ones(count)
    if w.size != count:
        raise RequestError(f"{field} has {w.size} values; expected {count} (one per link) or none")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise RequestError(f"{field} must be finite and non-negative")
    require_bounded(w, MAX_WEIGHT, field, "")
    return w


#: Response fields where ±inf is a legitimate value (a continuous joint has no position limit,
#: URDF may give no velocity or effort limit); NaN is refused there too.
UNBOUNDED_FIELDS = frozenset({"lower_limits", "upper_limits", "velocity_limits", "effort_limits"})


def value_or_default(value: float, default: float, bound: float, field: str, unit: str = "") -> float:
    """An optional request number where 0 means the default: ``value`` if 0 < value <= bound,
    ``default`` if 0; RequestError naming the field for a negative, too large or non-finite one."""
    if not math.isfinite(value) or value < 0 or value > bound:
        raise RequestError(f"{field} = {value} must be between 0 (the default) and {bound:g}{unit}")
    return float(value) if value > 0 else float(default)


def first_non_finite_output(response) -> str | None:
    """The name of the first float64 field (or array) of a response message holding NaN or Inf
    (only NaN in :data:`UNBOUNDED_FIELDS`), else None: the last guard before a reply says
    success=true."""
    for name, kind in response.get_fields_and_field_types().items():
        if kind not in ("double", "sequence<double>", "float", "sequence<float>"):
            continue
        value = getattr(response, name)
        values = as_float_array(value) if kind.startswith("sequence") else np.array([value], dtype=np.float64)
        bad = np.isnan(values) if name in UNBOUNDED_FIELDS else ~np.isfinite(values)
        if values.size and bad.any():
            return name
    return None


def fill_pose(msg, pose):
    """Set a geometry_msgs/Pose from (7,) x, y, z, qx, qy, qz, qw."""
    x, y, z, qx, qy, qz, qw = (float(v) for v in pose)
    position, orientation = msg.position, msg.orientation
    position.x, position.y, position.z = x, y, z
    orientation.x, orientation.y, orientation.z, orientation.w = qx, qy, qz, qw
    return msg


def pose_msgs(poses: np.ndarray) -> list:
    """(N, 7) -> N geometry_msgs/Pose."""
    from geometry_msgs.msg import Pose

    return [fill_pose(Pose(), pose) for pose in poses.tolist()]


#: Below this many poses the conversion runs in numpy on the host (lower per-call cost).
HOST_POSES = 256


def poses_xyzw(T: torch.Tensor) -> np.ndarray:
    """(..., 4, 4) transforms on any device -> (..., 7) float64 poses x, y, z, qx, qy, qz, qw."""
    if T[..., 0, 0].numel() <= HOST_POSES:
        return matrix_to_pose_xyzw(to_numpy(T))
    return to_numpy(matrix_to_pose_xyzw(T))
