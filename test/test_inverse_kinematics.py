"""Batched inverse kinematics (solve_ik): every claim is checked independently of the solver's
internals — reaching a target by forward kinematics in float64 of the returned configuration,
limits against the URDF's float64 limits, collisions by a fake checker written here with FK.

Targets are poses of random in-limit configurations, so they are reachable. The time budgets are
generous so that results do not depend on the load of the machine (the iteration limits decide).
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import random_q, real_urdf

from ros_torch_kin.kinematics import Chain, compute_jacobian, forward_kinematics, pose_error
from ros_torch_kin.optim import IKOptions, solve_ik
from ros_torch_kin.robots import bundled_urdf

OPTIONS = IKOptions(time_budget=60.0)
TOLERANCE = 1e-4  # the default position (m) and orientation (rad) tolerances


@pytest.fixture(scope="module")
def panda():
    return Chain.from_urdf(real_urdf("panda"), device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def arm7():
    return Chain.from_urdf(bundled_urdf(), device="cpu", dtype=torch.float32)


def targets_of(chain: Chain, links, count: int, seed: int) -> torch.Tensor:
    """Poses of ``links`` at random in-limit configurations, computed in float64."""
    q = random_q(chain.to(dtype=torch.float64), count, seed)
    return forward_kinematics(chain.to(dtype=torch.float64), q, links=links).to(chain.dtype)


def independent_errors(chain: Chain, q: torch.Tensor, links, targets: torch.Tensor):
    """Float64 FK of q against the targets: (position error (m), orientation error (rad)),
    the largest over the links."""
    chain64 = chain.to(dtype=torch.float64)
    error = pose_error(forward_kinematics(chain64, q.double(), links=links), targets.double())
    position, orientation = error[..., :3].norm(dim=-1), error[..., 3:].norm(dim=-1)
    if position.dim() == 2:
        position, orientation = position.amax(-1), orientation.amax(-1)
    return position, orientation


def assert_within_limits(chain: Chain, q: torch.Tensor):
    """Against the URDF limits in float64, with no tolerance."""
    dofs = chain.description.dof_joints
    lower = torch.tensor([j.lower for j in dofs], dtype=torch.float64)
    upper = torch.tensor([j.upper for j in dofs], dtype=torch.float64)
    assert ((q.double() >= lower) & (q.double() <= upper)).all()


@pytest.mark.parametrize("robot, link", [("panda", "panda_hand"), ("arm7", "tool0")])
def test_solutions_reach_their_targets_within_tolerance_and_limits(request, robot, link):
    chain = request.getfixturevalue(robot)
    targets = targets_of(chain, link, 200, seed=1)
    result = solve_ik(chain, link, targets, OPTIONS)
    assert result.success.float().mean() >= 0.995
    position, orientation = independent_errors(chain, result.q, link, targets)
    ok = result.success
    assert (position[ok] <= TOLERANCE).all() and (orientation[ok] <= TOLERANCE).all()
    torch.testing.assert_close(result.position_error[ok].double(), position[ok], atol=2e-6, rtol=0)
    torch.testing.assert_close(result.orientation_error[ok].double(), orientation[ok], atol=2e-6, rtol=0)
    assert_within_limits(chain, result.q)
    assert result.q.shape == (200, chain.num_dofs) and result.iterations.shape == (200,)
    assert (result.iterations >= 1).all() and result.solve_time > 0


def test_a_single_unbatched_target_is_a_batch_of_one(panda):
    target = targets_of(panda, "panda_hand", 1, seed=2)[0]
    result = solve_ik(panda, "panda_hand", target, OPTIONS)
    assert result.q.shape == (1, panda.num_dofs) and bool(result.success[0])
    position, orientation = independent_errors(panda, result.q, "panda_hand", target.unsqueeze(0))
    assert position[0] <= TOLERANCE and orientation[0] <= TOLERANCE


def test_an_empty_batch_gives_an_empty_result(panda):
    result = solve_ik(panda, "panda_hand", torch.zeros(0, 4, 4), OPTIONS)
    assert result.q.shape == (0, panda.num_dofs) and result.success.shape == (0,)


def test_position_only_reaches_the_positions_with_any_orientation(panda):
    positions = targets_of(panda, "panda_hand", 50, seed=3)[:, :3, 3]
    options = IKOptions(position_only=True, time_budget=60.0)
    result = solve_ik(panda, "panda_hand", positions, options)
    assert result.success.all()
    reached = forward_kinematics(panda.to(dtype=torch.float64), result.q.double(), links="panda_hand")[:, :3, 3]
    assert ((reached - positions.double()).norm(dim=-1) <= TOLERANCE).all()
    assert (result.orientation_error == 0).all()
    assert_within_limits(panda, result.q)
    # full poses are accepted too, their rotations ignored
    poses = targets_of(panda, "panda_hand", 5, seed=4)
    assert solve_ik(panda, "panda_hand", poses, options).success.all()


def test_two_links_at_once_reach_both_targets():
    talos = Chain.from_urdf(real_urdf("talos"), device="cpu", dtype=torch.float32)
    hands = ["arm_left_7_link", "arm_right_7_link"]
    targets = targets_of(talos, hands, 8, seed=5)  # (8, 2, 4, 4): both from one configuration
    result = solve_ik(talos, hands, targets, OPTIONS)
    assert result.success.all()
    position, orientation = independent_errors(talos, result.q, hands, targets)
    assert (position <= TOLERANCE).all() and (orientation <= TOLERANCE).all()
    assert_within_limits(talos, result.q)
    # joints that move neither hand (legs, head) keep their default (0 clamped into the limits)
    legs = [i for i, name in enumerate(talos.joint_names) if name.startswith(("leg_", "head_"))]
    default = torch.zeros(talos.num_dofs).clamp(talos.lower_limits, talos.upper_limits)
    assert torch.equal(result.q[:, legs], default[legs].expand(8, -1))


def test_two_links_of_one_arm(panda):
    links = ["panda_link7", "panda_hand"]
    targets = targets_of(panda, links, 20, seed=6)
    result = solve_ik(panda, links, targets, OPTIONS)
    assert result.success.all()
    position, orientation = independent_errors(panda, result.q, links, targets)
    assert (position <= TOLERANCE).all() and (orientation <= TOLERANCE).all()


def test_unreachable_target_fails_with_a_sensible_error(panda):
    targets = targets_of(panda, "panda_hand", 3, seed=7)
    targets[0, :3, 3] = torch.tensor([3.0, 0.0, 0.5])  # 3 m away: the Panda reaches under 1.2 m
    options = IKOptions(max_iterations=60, time_budget=60.0)
    result = solve_ik(panda, "panda_hand", targets, options)
    assert result.success.tolist() == [False, True, True]
    position, _ = independent_errors(panda, result.q, "panda_hand", targets)
    reach = 1.2
    assert 3.0 - reach <= position[0] <= 3.0 and abs(result.position_error[0].item() - position[0].item()) < 1e-4
    assert result.iterations[0] == 60
    assert_within_limits(panda, result.q)


def test_preferred_configuration_picks_the_nearest_solution(panda):
    q_goal = random_q(panda, 10, seed=8)
    targets = forward_kinematics(panda, q_goal, links="panda_hand")
    # preferred: near the goal configuration (a solution), but not at it
    offset = 0.1 * torch.where(q_goal > (panda.lower_limits + panda.upper_limits) / 2, -1.0, 1.0)
    preferred = q_goal + offset
    preferred[:, -1] = 0.03  # the finger, which does not move the hand, keeps the preferred value
    with_preference = solve_ik(panda, "panda_hand", targets, OPTIONS, preferred=preferred)
    without = solve_ik(panda, "panda_hand", targets, OPTIONS)
    assert with_preference.success.all() and without.success.all()
    near = (with_preference.q - preferred)[:, :7].norm(dim=-1)
    assert (near <= (without.q - preferred)[:, :7].norm(dim=-1) + 1e-6).all()
    assert (near <= (q_goal - preferred)[:, :7].norm(dim=-1) + 1e-3).all()  # as near as the known solution
    assert torch.equal(with_preference.q[:, -1], preferred[:, -1])


class HalfSpace:
    """A fake collision checker: ``link``'s origin must stay above height ``z_min`` (m), by FK.
    Penalty: max(0, z_min + margin − z)² and its gradient through the link's Jacobian."""

    def __init__(self, chain: Chain, link: str, z_min: float, margin: float = 0.02):
        self.chain, self.link, self.z_min, self.margin = chain, link, z_min, margin
        self.calls = 0

    def height(self, q):
        return forward_kinematics(self.chain, q, links=self.link)[:, 2, 3]

    def in_collision(self, q):
        self.calls += 1
        return self.height(q) < self.z_min

    def penalty(self, q):
        jacobian, pose = compute_jacobian(self.chain, q, self.link, return_pose=True)
        depth = torch.relu(self.z_min + self.margin - pose[:, 2, 3])
        return depth**2, -2.0 * depth.unsqueeze(1) * jacobian[:, 2]


def test_collision_checker_accepted_solutions_are_never_in_collision(panda):
    # the elbow (link4) must stay above 0.45 m; targets whose IK solution at the goal has it lower
    q_goal = random_q(panda, 40, seed=9)
    targets = forward_kinematics(panda, q_goal, links="panda_hand")
    checker = HalfSpace(panda, "panda_link4", z_min=0.45)
    goal_collides = checker.in_collision(q_goal)
    assert goal_collides.any() and not goal_collides.all()  # the test exercises both cases
    result = solve_ik(panda, "panda_hand", targets, OPTIONS, collision=checker)
    z = forward_kinematics(panda.to(dtype=torch.float64), result.q.double(), links="panda_link4")[:, 2, 3]
    assert (z[result.success] >= 0.45).all()
    position, orientation = independent_errors(panda, result.q, "panda_hand", targets)
    assert (position[result.success] <= TOLERANCE).all() and (orientation[result.success] <= TOLERANCE).all()
    # most targets whose goal configuration collides have another, collision-free solution
    assert result.success[goal_collides].float().mean() >= 0.5
    assert result.success[~goal_collides].all()


def test_results_are_reproducible_with_the_random_seed(panda):
    targets = targets_of(panda, "panda_hand", 30, seed=10)
    options = IKOptions(time_budget=60.0, random_seed=5)
    first, second = solve_ik(panda, "panda_hand", targets, options), solve_ik(panda, "panda_hand", targets, options)
    assert torch.equal(first.q, second.q) and torch.equal(first.iterations, second.iterations)


def test_given_seed_at_a_solution_converges_at_once(arm7):
    q_goal = random_q(arm7, 5, seed=11)
    targets = forward_kinematics(arm7, q_goal, links="tool0")
    result = solve_ik(arm7, "tool0", targets, OPTIONS, seeds=q_goal)
    assert result.success.all() and (result.iterations <= OPTIONS.check_every).all()
    torch.testing.assert_close(result.q, q_goal, atol=1e-4, rtol=0)


def test_continuous_joints_are_unbounded_and_wrapped():
    kinova = Chain.from_urdf(real_urdf("kinova"), device="cpu", dtype=torch.float32)
    link = "j2s6s200_end_effector"
    targets = targets_of(kinova, link, 30, seed=12)
    result = solve_ik(kinova, link, targets, OPTIONS)
    assert result.success.float().mean() >= 0.95
    position, orientation = independent_errors(kinova, result.q, link, targets)
    assert (position[result.success] <= TOLERANCE).all() and (orientation[result.success] <= TOLERANCE).all()
    continuous = [i for i, t in enumerate(kinova.joint_types) if t == "continuous"]
    assert (result.q[:, continuous].abs() <= math.pi + 1e-6).all()


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(links="panda_hand", targets=torch.eye(4)[:3]), "targets"),  # (3, 4): neither pose nor position
        (dict(links="panda_hand", targets=torch.rand(4, 3)), "targets"),  # positions without position_only
        (dict(links=["panda_hand", "panda_link7"], targets=torch.eye(4).expand(5, 4, 4)), "targets"),  # no link axis
        (dict(links="panda_hand", targets=torch.full((4, 4), math.nan)), "targets"),
        (dict(links="panda_hand", targets=2 * torch.eye(4)), "targets"),  # not a rotation
        (dict(links="no_such_link", targets=torch.eye(4)), "links"),
        (dict(links=[], targets=torch.eye(4)), "links"),
        (dict(links="panda_hand", targets=torch.eye(4), seeds=torch.zeros(3)), "seeds"),
        (dict(links="panda_hand", targets=torch.eye(4).expand(2, 4, 4), seeds=torch.zeros(3, 8)), "seeds"),
        (dict(links="panda_hand", targets=torch.eye(4), seeds=torch.full((8,), math.inf)), "seeds"),
        (dict(links="panda_hand", targets=torch.eye(4), preferred=torch.zeros(2, 8)), "preferred"),
        (dict(links="panda_hand", targets=torch.eye(4), collision=object()), "collision"),
    ],
)
def test_bad_inputs_raise_value_errors_naming_the_argument(panda, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        solve_ik(panda, **kwargs)


def test_bad_options_raise_value_errors_naming_the_option():
    with pytest.raises(ValueError, match="position_tolerance"):
        IKOptions(position_tolerance=0.0)
    with pytest.raises(ValueError, match="seeds"):
        IKOptions(seeds=0)
