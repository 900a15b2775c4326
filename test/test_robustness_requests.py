"""Property-based robustness of request handling (Hypothesis): the conversion functions of
ros/convert.py and the service handlers of ros/handlers.py called directly with real srv
messages, random shapes, names (unicode too), magnitudes (1e300, subnormals) and NaN/Inf.

The invariant: a RequestError (a ValueError) whose message names the field at fault, or success
with finite, correctly shaped outputs equal to the library's float64 kinematics on the same q (as
the float32 chain sees it) to float32 tolerance. With the bundled arm and bounded inputs nothing
overflows, so a handler called directly never returns a non-finite number; the node's last guard
(_guard_finite) is checked on a robot that does overflow.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from ros_fixtures import ROS_SKIP, requires_ros

from ros_torch_kin.kinematics import (
    Chain,
    compute_jacobian,
    forward_kinematics,
    invert_transform,
    matrix_to_pose_xyzw,
    pose_xyzw_to_matrix,
)
from ros_torch_kin.optim import pose_target_cost
from ros_torch_kin.robots import bundled_urdf

pytestmark = requires_ros

if not ROS_SKIP:
    from geometry_msgs.msg import Pose

    from ros_torch_kin.ros import convert, handlers
    from ros_torch_kin.ros.convert import RequestError
    from ros_torch_kin.ros.node import _guard_finite
    from ros_torch_kin.ros.parameters import PARAMETERS, Settings
    from ros_torch_kin.ros.served_model import build_model
    from ros_torch_kin.srv import ComputeFK, ComputeGradient, ComputeJacobian, GetRobotModel

BOUNDED = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_CACHE: dict = {}


def model():
    """The served bundled arm, float32 on the CPU, as the node builds it."""
    if "model" not in _CACHE:
        _CACHE["model"] = build_model(bundled_urdf(), "test", torch.device("cpu"), torch.float32, "error")
    return _CACHE["model"]


def arm64() -> Chain:
    if "arm64" not in _CACHE:
        _CACHE["arm64"] = Chain.from_urdf(bundled_urdf(), device="cpu", dtype=torch.float64)
    return _CACHE["arm64"]


def node_settings(**overrides):
    return Settings.from_values({p.name: p.default for p in PARAMETERS} | overrides)


JOINTS = ("joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "joint_7")
SPECIAL = [0.0, -0.0, 1e6, -1e6, 1e6 * (1 + 1e-12), 1e7, 1e39, -1e39, 3.4e38, 1e300, -1e300, 5e-324, -5e-324,
           2.2250738585072014e-308, math.nan, math.inf, -math.inf]

#: joint values: mostly plausible angles, sometimes large but accepted, sometimes anything
joint_values = st.one_of(
    st.floats(-math.pi, math.pi), st.floats(-1e6, 1e6), st.sampled_from(SPECIAL),
    st.floats(allow_nan=True, allow_infinity=True),
)
#: any float at all, specials weighted up
any_float = st.one_of(st.sampled_from(SPECIAL), st.floats(allow_nan=True, allow_infinity=True), st.floats(-10, 10))
#: names: real ones, unicode, empty
unicode_name = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
link_name = st.one_of(st.sampled_from(["base_link", "link_1", "link_3", "link_5", "tool0", "flange"]),
                      unicode_name, st.just(""))
joint_name = st.one_of(st.sampled_from(JOINTS + ("flange_joint",)), unicode_name)

#: the fields a message may name
FIELDS = ("positions", "joint_names", "joint '", "link_names", "link_name", "reference_frame", "point",
          "target_poses", "position_weights", "orientation_weights", "forces", "torques", "mode")


def names_a_field(message: str, fields=FIELDS) -> bool:
    return any(field in message for field in fields)


def corrupted(draw, values: list, bad=None) -> list:
    """``values``, or (half the time) with one element replaced by any float at all."""
    values = list(values)
    if values and draw(st.booleans()):
        values[draw(st.integers(0, len(values) - 1))] = draw(bad or any_float)
    return values


#: accepted joint values: plausible angles, now and then large ones up to the bound
good_joint_values = st.one_of(st.floats(-math.pi, math.pi), st.floats(-math.pi, math.pi),
                              st.floats(-1e6, 1e6), st.sampled_from([1e6, -1e6, 5e-324, -0.0]))


@st.composite
def positions_and_names(draw):
    """(joint_names, flat positions): usually well-formed (B x 7), sometimes not."""
    kind = draw(st.sampled_from(["chain order", "permuted", "permuted", "random names"]))
    if kind == "chain order":
        names = []
    elif kind == "permuted":
        names = list(draw(st.permutations(JOINTS)))
    else:
        names = draw(st.lists(joint_name, max_size=9))
    J = len(names) or 7
    if draw(st.integers(0, 4)):
        batch = draw(st.integers(1, 3))
        values = corrupted(draw, draw(st.lists(good_joint_values, min_size=J * batch, max_size=J * batch)))
    else:
        values = draw(st.lists(joint_values, max_size=30))
    return names, values


@st.composite
def target_lists(draw, count: int):
    """``count`` (or sometimes another number of) target rows x y z qx qy qz qw, now and then
    corrupted; quaternions of any scale."""
    n = count if draw(st.integers(0, 5)) else draw(st.integers(0, 4))
    rows = []
    for _ in range(n):
        position = draw(st.lists(st.one_of(st.floats(-2, 2), st.floats(-1e6, 1e6)), min_size=3, max_size=3))
        scale = draw(st.sampled_from([1.0, 1.0, 1e300, 1e-100, 3.0]))
        quaternion = [scale * v for v in draw(st.lists(st.floats(-1, 1), min_size=4, max_size=4))]
        rows.append(corrupted(draw, position + quaternion) if draw(st.integers(0, 3)) == 0 else position + quaternion)
    return rows


def float32_q(q: np.ndarray) -> torch.Tensor:
    """q as the float32 chain sees it, in float64 (the reference for float32 results)."""
    return torch.from_numpy(q.astype(np.float32).astype(np.float64))


def request_q(names, values) -> np.ndarray:
    """The (B, 7) chain-order q a successful request meant."""
    rows = np.asarray(values, dtype=np.float64).reshape(-1, 7)
    if not names:
        return rows
    q = np.empty_like(rows)
    q[:, [JOINTS.index(n) for n in names]] = rows
    return q


def pose(values) -> "Pose":
    p = Pose()
    p.position.x, p.position.y, p.position.z, p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = (
        float(v) for v in values)
    return p


# ------------------------------------------------------------------------------ convert functions
@BOUNDED
@given(values=st.lists(any_float, max_size=12), bound=st.sampled_from([1.0, 1e6, 1e12]))
def test_require_bounded_refuses_exactly_the_first_out_of_range_value(values, bound):
    array = np.array(values, dtype=np.float64)
    outside = [i for i, v in enumerate(values) if not abs(v) <= bound]
    if not outside:
        convert.require_bounded(array, bound, "field_x", "m")
        return
    with pytest.raises(RequestError) as caught:
        convert.require_bounded(array, bound, "field_x", "m", lambda i: f"element {i}")
    message = str(caught.value)
    assert message.startswith(f"field_x[{outside[0]}] (element {outside[0]})"), message
    assert ("is not finite" in message) == (not math.isfinite(values[outside[0]])), message


@BOUNDED
@given(positions_and_names())
def test_read_positions_refuses_naming_the_field_or_returns_bounded_q(case):
    names, values = case
    try:
        q, columns = convert.read_positions(model().chain, names, values, max_batch=3)
    except RequestError as error:
        event("refused")
        assert names_a_field(str(error), ("positions", "joint_names", "joint '", "batch of")), str(error)
        return
    assert q.shape == (len(values) // 7, 7) and 1 <= q.shape[0] <= 3
    assert np.isfinite(q).all() and np.abs(q).max() <= convert.MAX_JOINT_POSITION
    np.testing.assert_array_equal(q, request_q(names, values))
    assert (columns is None) == (not names)


@BOUNDED
@given(target_lists(3))
def test_poses_from_msgs_refuses_naming_the_field_or_returns_unit_quaternions(rows):
    try:
        values = convert.poses_from_msgs([pose(r) for r in rows], "target_poses")
    except RequestError as error:
        event("refused")
        assert str(error).startswith("target_poses["), str(error)
        bad = [r for r in rows if not (all(map(math.isfinite, r)) and max(map(abs, r[:3])) <= 1e6
                                       and max(map(abs, r[3:])) >= 1e-100)]
        zero_ish = [r for r in rows if all(map(math.isfinite, r)) and 0 < max(map(abs, r[3:])) < 1e-100]
        assert bad or zero_ish, f"refused {rows}: {error}"
        return
    assert values.shape == (len(rows), 7) and np.isfinite(values).all()
    raw = np.array(rows, dtype=np.float64).reshape(-1, 7)
    np.testing.assert_array_equal(values[:, :3], raw[:, :3])
    np.testing.assert_allclose(np.linalg.norm(values[:, 3:], axis=1), 1.0, rtol=1e-14)
    scaled = raw[:, 3:] / np.abs(raw[:, 3:]).max(axis=1, keepdims=True)  # parallel, same sense
    np.testing.assert_allclose(values[:, 3:] * np.linalg.norm(scaled, axis=1, keepdims=True), scaled, atol=1e-14)


@BOUNDED
@given(st.lists(st.tuples(*[st.one_of(st.floats(-1e300, 1e300), st.sampled_from([0.0, 5e-324, 1e-200]))] * 4),
                min_size=1, max_size=5))
def test_unit_quaternions_do_not_overflow_or_underflow(rows):
    q = np.array(rows, dtype=np.float64)
    scale = np.abs(q).max(axis=1)
    assume((scale > 1e-150).all())
    unit = convert.unit_quaternions(q, "target_poses")
    assert np.isfinite(unit).all()
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-14)


def test_unit_quaternion_of_huge_components_equals_the_small_one_exactly():
    huge = convert.unit_quaternions(np.array([[1e300, 1e300, 0.0, 0.0]]), "target_poses")
    small = convert.unit_quaternions(np.array([[1.0, 1.0, 0.0, 0.0]]), "target_poses")
    np.testing.assert_array_equal(huge, small)
    np.testing.assert_allclose(huge, [[math.sqrt(0.5), math.sqrt(0.5), 0, 0]], rtol=1e-15)
    with pytest.raises(RequestError, match=r"target_poses\[1\] has a zero quaternion"):
        convert.unit_quaternions(np.array([[0, 0, 0, 1.0], [0, 0, 0, 0.0]]), "target_poses")


@BOUNDED
@given(values=st.one_of(st.lists(any_float, max_size=4), st.lists(st.floats(0, 1e12), min_size=1, max_size=3)),
       count=st.integers(1, 3))
def test_weights_refuse_naming_the_field_or_are_finite_bounded_non_negative(values, count):
    try:
        w = convert.weights(values, count, "position_weights")
    except RequestError as error:
        event("refused")
        assert str(error).startswith("position_weights"), str(error)
        assert len(values) not in (0, count) or not all(0 <= v <= convert.MAX_WEIGHT for v in values), values
        return
    assert w.shape == (count,) and np.isfinite(w).all() and (w >= 0).all() and (w <= convert.MAX_WEIGHT).all()
    if values:
        np.testing.assert_array_equal(w, values)
    else:
        np.testing.assert_array_equal(w, np.ones(count))


# ------------------------------------------------------------------------------ handlers
def fk_reference(q: np.ndarray, links: list[int], reference: int) -> np.ndarray:
    T = forward_kinematics(arm64(), float32_q(q))
    T = invert_transform(T[:, reference:reference + 1]) @ T[:, links]
    return matrix_to_pose_xyzw(T).numpy()


def serve_or_refuse(handler, request, response, settings=None, also=()):
    """The handler's response, or None once its refusal was checked to name a field (or one of
    the phrases in ``also``)."""
    try:
        return handler(model(), settings or node_settings(), request, response)
    except RequestError as error:
        event("refused")
        message = str(error)
        assert names_a_field(message) or any(phrase in message for phrase in also), message
        return None


@BOUNDED
@given(case=positions_and_names(),
       links=st.one_of(st.just([]), st.lists(st.sampled_from(["tool0", "link_1", "link_6"]), max_size=3),
                       st.lists(link_name, max_size=4)),
       reference=st.one_of(st.just(""), st.sampled_from(["link_2", "tool0"]), link_name),
       policy=st.sampled_from(["report", "clamp", "reject"]))
def test_serve_fk_refuses_naming_a_field_or_matches_the_library(case, links, reference, policy):
    names, values = case
    request = ComputeFK.Request(joint_names=names, link_names=links, reference_frame=reference)
    request.positions = values
    response = serve_or_refuse(handlers.serve_fk, request, ComputeFK.Response(),
                               node_settings(joint_limit_policy=policy), also=("batch of", "configuration"))
    if response is None:
        return
    assert response.success
    chain = arm64()
    q = request_q(names, values)
    lower, upper = chain.lower_limits.numpy(), chain.upper_limits.numpy()
    within = ((q >= lower - 1e-9) & (q <= upper + 1e-9)).all(axis=1)  # as requested, before any clamping
    assert policy != "reject" or within.all()
    if policy == "clamp":
        q = np.clip(q, lower, upper)
    link_indices = [chain.link_index(n) for n in links] if links else list(range(chain.num_links))
    poses = np.asarray(response.poses).reshape(response.batch_size, len(response.link_names), 7)
    assert response.batch_size == q.shape[0] and list(response.link_names) == [chain.link_names[i] for i in link_indices]
    assert np.isfinite(poses).all(), "a handler answered a non-finite pose for the bundled arm"
    expected = fk_reference(q, link_indices, chain.link_index(reference or chain.root_link))
    np.testing.assert_allclose(poses[..., :3], expected[..., :3], rtol=0, atol=1e-4)
    rotation_gap = np.minimum(np.abs(poses[..., 3:] - expected[..., 3:]).max(-1),
                              np.abs(poses[..., 3:] + expected[..., 3:]).max(-1))
    assert rotation_gap.max() < 1e-4
    assert list(response.within_limits) == within.tolist()


@BOUNDED
@given(case=positions_and_names(), link=st.one_of(st.sampled_from(["tool0", "link_4", ""]), link_name),
       point=st.tuples(*[st.one_of(st.floats(-2, 2), st.floats(-2, 2), st.floats(-1e6, 1e6), any_float)] * 3))
def test_serve_jacobian_refuses_naming_a_field_or_matches_the_library(case, link, point):
    names, values = case
    request = ComputeJacobian.Request(joint_names=names, link_name=link)
    request.positions = values
    request.point.x, request.point.y, request.point.z = point
    response = serve_or_refuse(handlers.serve_jacobian, request, ComputeJacobian.Response(), also=("batch of",))
    if response is None:
        return
    chain = arm64()
    q = request_q(names, values)
    B = q.shape[0]
    J = np.asarray(response.jacobians).reshape(B, 6, 7)
    assert response.success and response.batch_size == B and np.isfinite(J).all()
    assert max(map(abs, point)) <= convert.MAX_COORDINATE
    p = torch.tensor(point, dtype=torch.float64).to(torch.float32).to(torch.float64)
    expected = compute_jacobian(chain, float32_q(q), link or "tool0", point=p).numpy()
    if names:
        expected = expected[:, :, [JOINTS.index(n) for n in names]]
    np.testing.assert_allclose(J, expected, rtol=0, atol=1e-4 * max(1.0, float(p.abs().max())))


def target_rows(draw_rows):
    return [pose(r) for r in draw_rows]


@st.composite
def pose_target_requests(draw):
    """(q rows, links, targets, position weights, orientation weights), mostly consistent."""
    q = draw(st.lists(st.tuples(*[st.floats(-math.pi, math.pi)] * 7), min_size=1, max_size=3))
    links = draw(st.lists(st.sampled_from(["tool0", "link_3", "link_5"]), min_size=1, max_size=2))
    K = len(links)
    targets = draw(target_lists(K if draw(st.booleans()) else K * len(q)))

    def weights(good):
        if draw(st.booleans()):
            return []
        return corrupted(draw, draw(st.lists(good, min_size=K, max_size=K))) if draw(st.integers(0, 4)) else \
            draw(st.lists(any_float, max_size=3))

    return q, links, targets, weights(st.floats(0, 1e12)), weights(st.floats(0, 10))


@BOUNDED
@given(pose_target_requests())
def test_serve_gradient_pose_targets_refuses_naming_a_field_or_matches_the_library(case):
    q, links, targets, w_position, w_orientation = case
    request = ComputeGradient.Request(mode=ComputeGradient.Request.POSE_TARGETS, link_names=links)
    request.positions = [v for row in q for v in row]
    request.target_poses = target_rows(targets)
    request.position_weights, request.orientation_weights = w_position, w_orientation
    response = serve_or_refuse(handlers.serve_gradient, request, ComputeGradient.Response())
    if response is None:
        return
    B, K = len(q), len(links)
    costs, gradients = np.asarray(response.costs), np.asarray(response.gradients).reshape(B, 7)
    assert response.success and costs.shape == (B,) and np.isfinite(costs).all() and np.isfinite(gradients).all()
    chain = arm64()
    target = torch.from_numpy(convert.poses_from_msgs(request.target_poses, "t").astype(np.float32).astype(np.float64))
    qq = float32_q(np.array(q)).requires_grad_()
    cost = pose_target_cost(forward_kinematics(chain, qq, links=links), pose_xyzw_to_matrix(target).view(-1, K, 4, 4),
                            torch.from_numpy(convert.weights(w_position, K, "p")),
                            torch.from_numpy(convert.weights(w_orientation, K, "o")))
    (expected,) = torch.autograd.grad(cost.sum(), qq)
    cost_scale = max(1.0, float(cost.detach().abs().max()))
    np.testing.assert_allclose(costs, cost.detach().numpy(), rtol=1e-3, atol=1e-4 * cost_scale)
    gradient_scale = max(1.0, float(expected.abs().max()))
    # at a rotation error of π the orientation term has no gradient (every axis is a subgradient,
    # and float32 round-off picks one): compare only away from it
    rotations = forward_kinematics(chain, qq.detach(), links=links)[..., :3, :3]
    goal = pose_xyzw_to_matrix(target).view(-1, K, 4, 4)[..., :3, :3].expand_as(rotations)
    cosine = ((rotations.transpose(-1, -2) @ goal).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    weighted = torch.from_numpy(convert.weights(w_orientation, K, "o")) > 0
    if bool(((cosine < -1 + 1e-4) & weighted).any()):
        return
    np.testing.assert_allclose(gradients, expected.numpy(), rtol=0, atol=2e-3 * gradient_scale)


@BOUNDED
@given(q=st.lists(st.tuples(*[good_joint_values] * 7), min_size=1, max_size=2),
       links=st.one_of(st.lists(st.sampled_from(["tool0", "link_2", "link_4"]), min_size=1, max_size=2),
                       st.lists(link_name, max_size=2)),
       wrench=st.lists(st.one_of(st.floats(-1e12, 1e12), st.floats(-10, 10), st.floats(-10, 10)), max_size=14),
       sizes_match=st.integers(0, 5), corrupt=st.data(), mode=st.sampled_from([1, 1, 1, 1, 2, 255]))
def test_serve_gradient_vector_jacobian_product_refuses_naming_a_field_or_matches_the_library(q, links, wrench,
                                                                                              sizes_match, corrupt, mode):
    B, K = len(q), len(links)
    n = B * K * 3
    forces = (wrench * (1 + n) + [0.5] * n)[:n] if sizes_match else wrench
    torques = list(reversed(forces))
    if corrupt.draw(st.integers(0, 3)) == 0:
        torques = corrupted(corrupt.draw, torques)
    request = ComputeGradient.Request(mode=mode, link_names=links)
    request.positions = [v for row in q for v in row]
    request.forces, request.torques = forces, torques
    response = serve_or_refuse(handlers.serve_gradient, request, ComputeGradient.Response())
    if response is None:
        return
    assert mode == 1
    gradients = np.asarray(response.gradients).reshape(B, 7)
    assert response.success and np.isfinite(gradients).all()
    chain = arm64()
    qq = float32_q(np.array(q, dtype=np.float64))
    f = torch.tensor(forces, dtype=torch.float64).view(B, K, 3).to(torch.float32).to(torch.float64)
    t = torch.tensor(torques, dtype=torch.float64).view(B, K, 3).to(torch.float32).to(torch.float64)
    expected = sum((compute_jacobian(chain, qq, link).mT @ torch.cat((f[:, k], t[:, k]), -1)[..., None])[..., 0]
                   for k, link in enumerate(links))
    scale = max(1.0, float(torch.cat((f, t)).abs().max()))
    np.testing.assert_allclose(gradients, expected.numpy(), rtol=0, atol=1e-4 * scale)


# ------------------------------------------------------------------------------ promised refusals
def fk(positions, **fields):
    request = ComputeFK.Request(**fields)
    request.positions = positions
    return handlers.serve_fk(model(), node_settings(), request, ComputeFK.Response())


def test_joint_position_bound_is_one_million_and_names_index_and_joint():
    assert fk([0, 0, 0, 0, 0, 0, 1e6]).success
    assert fk([0, 0, 0, 0, 0, 0, -1e6]).success
    with pytest.raises(RequestError, match=r"positions\[9\] \(configuration 1, joint 'joint_3'\) = 1\.00001e\+06 is beyond"):
        fk([0.0] * 7 + [0, 0, 1.00001e6, 0, 0, 0, 0])
    with pytest.raises(RequestError, match=r"positions\[0\] \(configuration 0, joint 'joint_7'\) = -1e\+300"):
        fk([-1e300, 0, 0, 0, 0, 0, 0], joint_names=list(reversed(JOINTS)))


def test_jacobian_point_beyond_the_bound_is_refused_naming_point():
    request = ComputeJacobian.Request(link_name="tool0")
    request.positions = [0.0] * 7
    request.point.x = 1e39
    with pytest.raises(RequestError, match=r"point\[0\] \(x\) = 1e\+39 is beyond"):
        handlers.serve_jacobian(model(), node_settings(), request, ComputeJacobian.Response())


def gradient(mode, **fields):
    request = ComputeGradient.Request(mode=mode, link_names=["tool0"])
    request.positions = [0.1] * 7
    for name, value in fields.items():
        setattr(request, name, value)
    return handlers.serve_gradient(model(), node_settings(), request, ComputeGradient.Response())


IDENTITY = [0.4, 0.1, 0.5, 0, 0, 0, 1]


def test_vector_jacobian_product_force_beyond_the_bound_is_refused_naming_forces():
    with pytest.raises(RequestError, match=r"forces\[1\] = 1e\+39"):
        gradient(1, forces=[0.0, 1e39, 0.0], torques=[0.0] * 3)
    with pytest.raises(RequestError, match=r"torques\[2\] = -inf is not finite"):
        gradient(1, forces=[0.0] * 3, torques=[0.0, 0.0, -math.inf])
    assert gradient(1, forces=[1e12, 0.0, 0.0], torques=[0.0] * 3).success


def test_pose_target_beyond_the_bound_is_refused_naming_target_poses():
    with pytest.raises(RequestError, match=r"target_poses\[0\]"):
        gradient(0, target_poses=[pose([1e39, 0, 0, 0, 0, 0, 1])])


@pytest.mark.parametrize("field", ["position_weights", "orientation_weights"])
def test_weight_beyond_the_bound_is_refused_naming_the_weights_field(field):
    with pytest.raises(RequestError, match=rf"^{field}"):
        gradient(0, target_poses=[pose(IDENTITY)], **{field: [1e39]})
    assert gradient(0, target_poses=[pose(IDENTITY)], **{field: [1e12]}).success


def test_huge_target_quaternion_gives_exactly_the_cost_and_gradient_of_the_small_one():
    huge = gradient(0, target_poses=[pose([0.4, 0.1, 0.5, 1e300, 1e300, 0, 0])])
    small = gradient(0, target_poses=[pose([0.4, 0.1, 0.5, 1, 1, 0, 0])])
    assert huge.success and small.success
    assert list(huge.costs) == list(small.costs) and list(huge.gradients) == list(small.gradients)
    assert np.isfinite(huge.costs).all() and np.isfinite(huge.gradients).all()


# ------------------------------------------------------------------------------ the last guard
OVERFLOW = ("<robot name='overflow'><link name='a'/><link name='b'/><link name='c'/>"
            "<joint name='j1' type='revolute'><parent link='a'/><child link='b'/><origin xyz='3e38 0 0'/>"
            "<axis xyz='0 0 1'/><limit lower='-1' upper='1' effort='1' velocity='1'/></joint>"
            "<joint name='j2' type='revolute'><parent link='b'/><child link='c'/><origin xyz='3e38 0 0'/>"
            "<axis xyz='0 0 1'/><limit lower='-1' upper='1' effort='1' velocity='1'/></joint></robot>")


def test_guard_turns_a_float32_overflow_into_success_false_naming_poses():
    overflowing = build_model(OVERFLOW, "test", torch.device("cpu"), torch.float32, "error")
    request = ComputeFK.Request()
    request.positions = [0.0, 0.0]
    response = handlers.serve_fk(overflowing, node_settings(), request, ComputeFK.Response())
    assert response.success and not np.isfinite(response.poses).all()  # the premise: float32 overflowed
    guarded = _guard_finite(response, overflowing)
    assert not guarded.success and "poses" in guarded.message and "float64" in guarded.message
    assert len(guarded.poses) == 0
    wide = build_model(OVERFLOW, "test", torch.device("cpu"), torch.float64, "error")
    response = _guard_finite(handlers.serve_fk(wide, node_settings(), request, ComputeFK.Response()), wide)
    assert response.success and np.isfinite(response.poses).all() and max(response.poses) == pytest.approx(6e38)


def test_guard_leaves_a_finite_success_alone():
    response = fk([0.0] * 7)
    assert _guard_finite(response, model()) is response and response.success


CONTINUOUS = ("<robot name='wheel'><link name='a'/><link name='b'/>"
              "<joint name='spin' type='continuous'><parent link='a'/><child link='b'/><axis xyz='0 0 1'/></joint>"
              "</robot>")


def test_get_robot_model_of_a_robot_with_continuous_joints_passes_the_guard():
    wheel = build_model(CONTINUOUS, "test", torch.device("cpu"), torch.float32, "error")
    response = handlers.serve_robot_model(wheel, node_settings(end_effector_link="b"), GetRobotModel.Request(),
                                          GetRobotModel.Response())
    assert response.success and list(response.lower_limits) == [-math.inf]
    guarded = _guard_finite(response, wheel)
    assert guarded.success, guarded.message


def test_robot_without_joints_is_served_by_the_handlers_with_one_configuration():
    single = build_model("<robot name='single'><link name='only'/></robot>", "test", torch.device("cpu"),
                         torch.float32, "error")
    settings_ = node_settings(end_effector_link="only")
    response = handlers.serve_fk(single, settings_, ComputeFK.Request(), ComputeFK.Response())
    assert response.success and response.batch_size == 1 and list(response.poses) == [0, 0, 0, 0, 0, 0, 1]
    request = ComputeFK.Request()
    request.positions = [0.0]
    with pytest.raises(RequestError, match="positions"):
        handlers.serve_fk(single, settings_, request, ComputeFK.Response())
    response = handlers.serve_jacobian(single, settings_, ComputeJacobian.Request(), ComputeJacobian.Response())
    assert response.success and response.batch_size == 1 and len(response.jacobians) == 0
