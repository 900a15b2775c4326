"""Objects the robot carries (collision/attached_objects.py) against independent references: the
carried box's distances to obstacles against coal's exact box distances (placed by Pinocchio's
FK), the self pairs MoveIt's AttachedCollisionObject rules give, the penalty gradient against
finite differences, and a plan that carries a box out of a shelf compartment, checked exactly
with coal along the whole motion, where the same plan without the box attached hits the shelf."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import real_urdf
from ros_torch_kin.collision import (AttachedObject, CollisionChecker, Obstacle, RobotSpheres, Scene,
                                     TreeCollisionChecker, TreeSettings)
from ros_torch_kin.kinematics import Chain, forward_kinematics
from ros_torch_kin.motion import MotionValidator, solve_trajectory
from ros_torch_kin.optim import TrajectoryOptions

pin = pytest.importorskip("pinocchio")
coal = pytest.importorskip("coal")

START = torch.tensor([0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.785, 0.03])
FINGERS = ("panda_leftfinger", "panda_rightfinger")
BOX_SIZE = (0.05, 0.05, 0.16)
#: the box in the hand frame: along the hand's z (the approach axis), below the fingertips
BOX_IN_HAND = np.r_[np.c_[np.eye(3), [0.0, 0.0, 0.15]], [[0.0, 0.0, 0.0, 1.0]]]
SLACK = TreeSettings().target_slack  # the tight leaves' target slack (objects are covered with the default)


@pytest.fixture(scope="module")
def panda(panda_collision_model):
    chain, model, robots, _ = panda_collision_model
    return chain, model, PinocchioHand(robots / "panda_description/urdf/panda.urdf", chain)


class PinocchioHand:
    """panda_hand's pose from Pinocchio's FK (an independent reference for placing the box)."""

    def __init__(self, urdf_path, chain: Chain):
        self.model = pin.buildModelFromUrdf(str(urdf_path))
        self.data = self.model.createData()
        self.frame = self.model.getFrameId("panda_hand")
        joints = {j.name: j for j in chain.description.joints}
        dof = {name: i for i, name in enumerate(chain.joint_names)}
        self.columns = []
        for jid in range(1, self.model.njoints):
            joint = joints[self.model.names[jid]]
            mimic = joint.mimic
            leader, m, o = (mimic.leader, mimic.multiplier, mimic.offset) if mimic else (joint.name, 1.0, 0.0)
            self.columns.append((self.model.idx_qs[jid], dof[leader], m, o))

    def poses(self, q: np.ndarray) -> np.ndarray:
        out = []
        for row in np.atleast_2d(q):
            x = pin.neutral(self.model)
            for index, column, m, o in self.columns:
                x[index] = m * row[column] + o
            pin.framesForwardKinematics(self.model, self.data, x)
            out.append(self.data.oMf[self.frame].homogeneous.copy())
        return np.stack(out)


def _coal(obstacle: Obstacle):
    d = obstacle.dimensions
    return {"sphere": lambda: coal.Sphere(d[0]), "box": lambda: coal.Box(*d),
            "cylinder": lambda: coal.Cylinder(d[1], d[0]), "capsule": lambda: coal.Capsule(d[1], d[0])}[obstacle.kind]()


def box_distances(hand: PinocchioHand, q, in_hand: np.ndarray, scene: Scene) -> np.ndarray:
    """(B,) exact distance (coal) from the box at ``in_hand`` in the hand frame to the nearest obstacle."""
    shape, out = coal.Box(*BOX_SIZE), []
    for T in hand.poses(np.asarray(q, dtype=np.float64)):
        P = T @ in_hand
        best = np.inf
        for o in scene:
            result = coal.DistanceResult()
            coal.distance(shape, coal.Transform3s(P[:3, :3], P[:3, 3]), _coal(o),
                          coal.Transform3s(o.pose[:3, :3], o.pose[:3, 3]), coal.DistanceRequest(), result)
            best = min(best, result.min_distance)
        out.append(best)
    return np.array(out)


def carried_box(chain, q=START) -> AttachedObject:
    hand = forward_kinematics(chain.to("cpu", torch.float64), q.double(), links="panda_hand").numpy()
    box = Obstacle.box("box", BOX_SIZE, hand @ BOX_IN_HAND)
    return AttachedObject.at_configuration(box, "panda_hand", chain, q.double().numpy(), touch_links=FINGERS)


def no_robot_spheres(chain: Chain) -> RobotSpheres:
    """A robot without collision geometry: only what it carries is checked."""
    empty = torch.zeros(0, dtype=chain.dtype)
    return RobotSpheres(chain.link_names, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 3, dtype=chain.dtype),
                        empty, empty, ("none",) * chain.num_links)


def random_scene(seed: int) -> Scene:
    rng = np.random.default_rng(seed)
    obstacles = [Obstacle.box(f"box{i}", rng.uniform(0.05, 0.3, 3),
                              np.r_[rng.uniform(-0.7, 0.7, 2), rng.uniform(0.0, 0.9), rng.normal(size=4)])
                 for i in range(6)]
    obstacles += [Obstacle.cylinder(f"cyl{i}", 0.3, 0.04, np.r_[rng.uniform(-0.7, 0.7, 2), rng.uniform(0.1, 0.8), 0, 0, 0, 1])
                  for i in range(2)]
    obstacles += [Obstacle.sphere("ball", 0.08, [0.4, 0.2, 0.4, 0, 0, 0, 1])]
    return Scene(obstacles)


def random_q(chain: Chain, count: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return chain.lower_limits + torch.rand(count, chain.num_dofs, generator=g) * (chain.upper_limits - chain.lower_limits)


def test_carried_box_distances_against_coal(panda):
    """With no robot geometry, the world distance is the box's: the tight model's within its slack
    below coal's exact distance (never above), the coarse one never above; contacts never missed."""
    chain, model, hand = panda
    obj = carried_box(chain)
    q = random_q(chain, 160, 4)
    for seed in (1, 2):
        scene = random_scene(seed)
        exact = box_distances(hand, q.double().numpy(), BOX_IN_HAND, scene)
        tight = TreeCollisionChecker(chain, no_robot_spheres(chain), scene, None, attached=[obj])
        coarse = CollisionChecker(chain, no_robot_spheres(chain), scene).with_attached([obj])
        threshold = 0.2
        d_tight = tight.distances(q, threshold).world_distance.double().numpy()
        d_coarse = coarse.distances(q).world_distance.double().numpy()
        assert (d_tight <= np.maximum(exact, threshold) + 1e-5).all()
        near = exact < threshold - SLACK
        assert near.sum() > 10 and (exact < 0).sum() > 0
        assert (d_tight[near] >= exact[near] - SLACK - 1e-5).all()
        assert (d_coarse <= exact + 1e-5).all()
        assert (tight.in_collision(q).numpy() == (d_tight < 0)).all()
        assert tight.in_collision(q).numpy()[exact < 0].all()


def test_pairs_follow_moveit_attached_rules(panda):
    """The box is checked against every other link, also those the SRDF disables with its parent
    link; never against the parent link or the touch links."""
    chain, model, _ = panda
    carried = model.with_attached([carried_box(chain)])
    pairs = carried.cost.self_pairs
    disabled_with_hand = {a if b == "panda_hand" else b for (a, b), reason in model.self_pairs.disabled.items()
                          if "panda_hand" in (a, b) and reason.startswith("srdf")}
    assert disabled_with_hand  # the SRDF does disable some of the hand's pairs ...
    checked = {b for a, b in pairs.enabled if a == "box"}
    assert disabled_with_hand - set(FINGERS) <= checked  # ... which the box still meets
    assert not checked & {"panda_hand", *FINGERS}
    assert pairs.reason("box", "panda_hand") == "attached to this link"
    assert pairs.reason("box", "panda_leftfinger").startswith("touch link")
    # the tight model checks the same pairs: a hierarchy slot of its own for the box
    robot_pairs = model.verdict._pair_a.shape[0]
    assert carried.verdict._pair_a.shape[0] == robot_pairs + len(checked)
    assert carried.verdict.spheres.num_spheres > model.verdict.spheres.num_spheres
    # nothing attached: the same checkers as before
    again = carried.with_attached(())
    q = random_q(chain, 64, 7)
    assert torch.equal(again.cost.distances(q).min_distance, model.cost.distances(q).min_distance)
    assert torch.equal(again.verdict.in_collision(q), model.verdict.in_collision(q))
    # self pairs switched off stay off when carrying, and only then: a robot whose enabled link
    # pairs have no leaves on both links still gets its box-against-link pairs
    off = model.verdict.without_self_pairs().with_attached([carried_box(chain)])
    assert off._pair_a.shape[0] == 0 and off.with_attached(()).with_attached([carried_box(chain)])._pair_a.shape[0] == 0
    bare = TreeCollisionChecker(chain, model.verdict.robot_spheres, None, model.self_pairs.__class__(
        (("panda_link0", "world"),), model.self_pairs.disabled, model.self_pairs.sphere_a[:0], model.self_pairs.sphere_b[:0]))
    assert bare._pair_a.shape[0] == 0 and bare.with_attached([carried_box(chain)])._pair_a.shape[0] == len(checked)


def test_self_contact_of_the_box_is_reported_with_its_name(panda):
    """Folding the wrist back swings the box into the arm: the verdict names ('box', link)."""
    chain, model, _ = panda
    carried = model.with_attached([carried_box(chain)])
    q = random_q(chain, 512, 11)
    robot_free = ~model.verdict.in_collision(q)
    hit = carried.verdict.in_collision(q) & robot_free
    assert int(hit.sum()) > 0
    names = carried.verdict.distances(q[hit], 0.0).pairs
    assert all("box" in pair for pair in names)


def test_bad_attachments_name_the_field(panda):
    chain, model, _ = panda
    box = Obstacle.box("box", BOX_SIZE)
    with pytest.raises(ValueError, match="link 'gripper' is not a link"):
        model.with_attached([AttachedObject("box", "gripper", box)])
    with pytest.raises(ValueError, match=r"touch_links\[1\] 'thumb'"):
        model.with_attached([AttachedObject("box", "panda_hand", box, ("panda_leftfinger", "thumb"))])
    with pytest.raises(ValueError, match="appears twice"):
        model.cost.with_attached([AttachedObject("box", "panda_hand", box)] * 2)


def test_detach_puts_the_object_back_where_it_is(panda):
    chain, _, hand = panda
    obj = carried_box(chain)
    q = random_q(chain, 1, 3)[0]
    placed = obj.world_obstacle(hand.poses(q.double().numpy())[0])
    expected = hand.poses(q.double().numpy())[0] @ BOX_IN_HAND
    assert np.abs(placed.pose - expected).max() < 1e-6
    assert placed.id == "box" and placed.dimensions == BOX_SIZE


def test_penalty_gradient_with_the_box_against_finite_differences(panda):
    chain64 = Chain.from_urdf(real_urdf("panda"), device="cpu", dtype=torch.float64)
    _, model, _ = panda
    scene = Scene([Obstacle.box("wall", (0.05, 0.6, 0.6), [0.55, 0.0, 0.35, 0, 0, 0, 1])])
    checker = model.cost.on_chain(chain64).with_scene(scene).with_attached([carried_box(chain64, START.double())])
    q = START.double().clone()
    q[0] = 0.05
    cost, gradient = checker.penalty(q[None], margin=0.05)
    assert float(cost[0]) > 0
    eps, numeric = 1e-6, torch.zeros_like(q)
    for j in range(7):
        dq = torch.zeros_like(q)
        dq[j] = eps
        numeric[j] = (checker.penalty((q + dq)[None], 0.05)[0] - checker.penalty((q - dq)[None], 0.05)[0]) / (2 * eps)
    assert torch.allclose(gradient[0, :7], numeric[:7], atol=1e-6, rtol=1e-4)


def _wall(id: str, low, high) -> Obstacle:
    low, high = np.asarray(low), np.asarray(high)
    return Obstacle.box(id, high - low, [*(0.5 * (low + high)), 0, 0, 0, 1])


#: a shelf compartment around the box as the hand holds it at START: a board below, lips on
#: four sides reaching 6 cm up the box but below the fingers
SHELF = Scene([_wall("board", (0.3, -0.16, 0.255), (0.7, 0.16, 0.275)),
               _wall("lip_left", (0.36, 0.05, 0.275), (0.62, 0.07, 0.35)),
               _wall("lip_right", (0.36, -0.07, 0.275), (0.62, -0.05, 0.35)),
               _wall("lip_front", (0.36, -0.07, 0.275), (0.38, 0.07, 0.35)),
               _wall("lip_back", (0.60, -0.07, 0.275), (0.62, 0.07, 0.35))])


def _dense(path: torch.Tensor, step: float = 0.004) -> np.ndarray:
    """The piecewise-linear motion through ``path`` (T, J) sampled at most ``step`` per joint."""
    path, pieces = path.double(), []
    for a, b in zip(path[:-1], path[1:]):
        n = max(1, int(np.ceil(float((b - a).abs().max()) / step)))
        pieces.append(a + torch.linspace(0, 1, n + 1, dtype=torch.float64)[:-1, None] * (b - a))
    pieces.append(path[-1:])
    return torch.cat(pieces).numpy()


def test_carrying_a_box_out_of_a_shelf_compartment(panda, monkeypatch):
    chain, model, hand = panda
    goal = START.clone()
    goal[0] = 0.7  # beside the shelf
    obj = carried_box(chain)
    assert box_distances(hand, START[None].double().numpy(), BOX_IN_HAND, SHELF)[0] > 0.005  # held clear of it
    world = model.with_scene(SHELF)
    carried = world.with_attached([obj])
    options = TrajectoryOptions()
    plain = solve_trajectory(chain, START, target_configuration=goal, options=options, collision=world.verdict,
                             collision_cost=world.cost)
    assert bool(plain.success[0])
    # the robot alone passes over the lips; the box it holds would go through one
    assert box_distances(hand, _dense(plain.positions[0]), BOX_IN_HAND, SHELF).min() < -0.01
    named = []  # the planner names the closest pair of the returned motion only, not of every check
    closest_pairs = MotionValidator.closest_pairs
    monkeypatch.setattr(MotionValidator, "closest_pairs", lambda self, q, *distance: named.append(q.shape[0]) or closest_pairs(self, q, *distance))
    result = solve_trajectory(chain, START, target_configuration=goal, options=options, collision=carried.verdict,
                              collision_cost=carried.cost)
    monkeypatch.undo()
    assert bool(result.success[0]) and bool(result.collision_free[0]), result.failure
    assert named == [1]
    # ... and names the pair a fresh check of the returned motion names
    validator = MotionValidator(carried.verdict, max(options.required_clearance, options.validity_margin),
                                options.validity_margin, options.check_resolution, options.approach)
    again = validator.check(result.positions[0])
    assert result.closest_pair == again.closest_pair and all(result.closest_pair[0]), result.closest_pair
    assert float(result.min_clearance[0]) == pytest.approx(float(again.min_distance[0]), abs=1e-6)
    exact = box_distances(hand, _dense(result.positions[0]), BOX_IN_HAND, SHELF)
    assert exact.min() > 0.0, exact.min()  # the box never touches the shelf ...
    assert exact.min() >= float(result.clearance_bound[0]) - 1e-4  # ... and keeps the bound the check gives


def test_an_attachment_builds_each_checker_once(panda, monkeypatch):
    """The node's world update (WorldState.with_attached, for ATTACH and DETACH) builds the coarse
    checker, its broad phase and the tight checker once each, and they carry the object."""
    from ros_torch_kin.collision import collision_checker, tree_checker
    from ros_torch_kin.ros.world_state import WorldState

    chain, model, _ = panda
    built = []
    for module, name in ((collision_checker, "CollisionChecker"), (collision_checker, "_BroadPhase"),
                         (tree_checker, "TreeCollisionChecker")):
        kind = getattr(module, name)
        init = kind.__init__
        monkeypatch.setattr(kind, "__init__", lambda self, *a, init=init, name=name, **k: built.append(name) or init(self, *a, **k))
    world = WorldState(checker=model.cost, verdict=model.verdict).with_attached(SHELF, [carried_box(chain)])
    assert sorted(built) == ["CollisionChecker", "TreeCollisionChecker", "_BroadPhase"]
    assert [o.id for o in world.checker.attached] == [o.id for o in world.verdict.attached] == ["box"]
    assert world.checker._broad.link_radius.shape[0] == model.cost._broad.link_radius.shape[0] + 1  # the box's own
    built.clear()
    world = world.with_attached(SHELF, [])
    assert sorted(built) == ["CollisionChecker", "TreeCollisionChecker", "_BroadPhase"]
    assert world.checker.attached == world.verdict.attached == ()


def test_carried_mesh_is_covered_conservatively(panda):
    """A closed mesh (the same box as triangles, a voxel grid of 1 cm) carried by the hand: its
    distances never exceed coal's exact ones for the box, and stay within the grid's bound."""
    chain, _, hand = panda
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) * np.array(BOX_SIZE) / 2
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    T = forward_kinematics(chain.to("cpu", torch.float64), START.double(), links="panda_hand").numpy()
    mesh = Obstacle.mesh("box", corners, faces, T @ BOX_IN_HAND, voxel_size=0.01)
    obj = AttachedObject.at_configuration(mesh, "panda_hand", chain, START.double().numpy(), FINGERS)
    q = random_q(chain, 96, 6)
    scene = random_scene(1)
    exact = box_distances(hand, q.double().numpy(), BOX_IN_HAND, scene)
    tight = TreeCollisionChecker(chain, no_robot_spheres(chain), scene, None, attached=[obj])
    coarse = CollisionChecker(chain, no_robot_spheres(chain), scene).with_attached([obj])
    d_tight = tight.distances(q, 0.2).world_distance.double().numpy()
    assert (d_tight <= np.maximum(exact, 0.2) + 1e-5).all()
    assert (coarse.distances(q).world_distance.double().numpy() <= exact + 1e-5).all()
    bound = 2 * (0.5 * np.sqrt(3) * 0.01 + mesh.grid.bound) + 1e-5  # a voxel sphere's reach beyond the box
    near = exact < 0.2 - bound
    assert near.any() and (d_tight[near] >= exact[near] - bound).all()


def test_a_coarse_level_carrying_other_objects_is_refused(panda):
    """The tight checker's coarse level is matched to its carried objects by position (body L + k):
    a coarse checker that carries other objects, or the same in another order, would bound the
    wrong object, so it is refused by name."""
    chain, model, _ = panda
    box = carried_box(chain)
    other = AttachedObject.at_configuration(Obstacle.box("other", (0.04, 0.04, 0.04), [0.5, 0.0, 0.5, 0, 0, 0, 1]),
                                            "panda_hand", chain, START)
    coarse = model.cost.with_attached([box, other])
    with pytest.raises(ValueError, match=r"coarse checker carries \['box', 'other'\].*\['other', 'box'\]"):
        model.verdict.with_attached([other, box], coarse=coarse)
    same = model.verdict.with_attached([box, other], coarse=coarse)  # the same objects, the same order
    assert [o.id for o in same.attached] == ["box", "other"]
