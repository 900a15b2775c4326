"""URDF parsing follows the spec and rejects malformed trees with errors that name the culprit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ros_torch_kin.kinematics import Chain, forward_kinematics, parse_urdf


def robot(body: str, links=("a", "b", "c")) -> str:
    link_xml = "".join(f'<link name="{name}"/>' for name in links)
    return f'<robot name="r">{link_xml}{body}</robot>'


def joint(name, parent, child, kind="revolute", extra="", limit=True) -> str:
    limit_xml = '<limit lower="-1" upper="1" effort="1" velocity="1"/>' if limit else ""
    return (
        f'<joint name="{name}" type="{kind}"><parent link="{parent}"/><child link="{child}"/>'
        f"{extra}{limit_xml if kind in ('revolute', 'prismatic') else ''}</joint>"
    )


CHAIN_AB_BC = joint("j1", "a", "b") + joint("j2", "b", "c")


def test_missing_axis_defaults_to_x_as_the_spec_says():
    description = parse_urdf(robot(joint("j1", "a", "b"), links=("a", "b")))
    np.testing.assert_array_equal(description.joints[0].axis, [1.0, 0.0, 0.0])
    # and the motion really is about x: a point on y swings towards z
    urdf = robot(joint("j1", "a", "b") + joint("t", "b", "c", "fixed", '<origin xyz="0 1 0"/>'))
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float64)
    T = forward_kinematics(chain, torch.tensor([np.pi / 2], dtype=torch.float64), links="c")
    torch.testing.assert_close(T[:3, 3], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))


def test_non_unit_axis_is_normalised():
    description = parse_urdf(robot(joint("j1", "a", "b", extra='<axis xyz="0 0 5"/>'), ("a", "b")))
    np.testing.assert_allclose(description.joints[0].axis, [0.0, 0.0, 1.0])


def test_joint_limits_and_continuous_joints():
    urdf = robot(
        joint("j1", "a", "b", extra='<axis xyz="0 0 1"/>')
        + joint("j2", "b", "c", "continuous", '<limit effort="3" velocity="4"/>')
    )
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float64)
    assert chain.joint_names == ("j1", "j2")
    assert chain.lower_limits.tolist() == [-1.0, -np.inf]
    assert chain.upper_limits.tolist() == [1.0, np.inf]
    assert chain.velocity_limits.tolist() == [1.0, 4.0]
    assert chain.effort_limits.tolist() == [1.0, 3.0]


def test_mimic_defaults_and_is_not_a_degree_of_freedom():
    urdf = robot(joint("j1", "a", "b") + joint("j2", "b", "c", extra='<mimic joint="j1"/>'))
    description = parse_urdf(urdf)
    mimic = description.joints[1].mimic
    assert (mimic.leader, mimic.multiplier, mimic.offset) == ("j1", 1.0, 0.0)
    chain = Chain.from_urdf(urdf, device="cpu")
    assert chain.joint_names == ("j1",)
    with pytest.raises(ValueError, match="'j2'.*mimic joint"):
        chain.joint_index("j2")


def test_mimic_of_a_mimic_follows_the_independent_joint():
    urdf = robot(
        joint("j1", "a", "b")
        + joint("j2", "b", "c", extra='<mimic joint="j1" multiplier="2" offset="0.1"/>')
        + joint("j3", "c", "d", extra='<mimic joint="j2" multiplier="3" offset="0.2"/>'),
        links=("a", "b", "c", "d"),
    )
    j3 = parse_urdf(urdf).joints[2]
    # q3 = 3 (2 q1 + 0.1) + 0.2 = 6 q1 + 0.5
    assert j3.mimic.leader == "j1"
    assert j3.mimic.multiplier == pytest.approx(6.0)
    assert j3.mimic.offset == pytest.approx(0.5)


@pytest.mark.parametrize(
    "urdf, message",
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("<robot name='r'><link name='a'>", "not well-formed XML"),
        ("<robot name='r'></robot>", "no <link>"),
        ("<robot><link name='a'/></robot>", "could not be parsed.*name"),
        (robot(joint("j1", "a", "b", extra='<axis xyz="0 0 0"/>'), ("a", "b")), "joint 'j1': <axis> has zero length"),
        (robot(joint("j1", "a", "x"), ("a", "b")), "joint 'j1': child link 'x' is not defined"),
        (robot(joint("j1", "x", "b"), ("a", "b")), "joint 'j1': parent link 'x' is not defined"),
        (robot(joint("j1", "a", "c") + joint("j2", "b", "c")), "link 'c' has two parent joints: 'j1' and 'j2'"),
        (robot(joint("j1", "a", "b")), r"3 root links|2 root links \(a, c\)"),
        (robot(CHAIN_AB_BC + joint("j3", "c", "a")), "cycle: joints"),
        (robot(joint("j1", "a", "b") + joint("j2", "b", "c") + joint("j3", "c", "b", "fixed"), ("a", "b", "c")), "two parent joints"),
        (robot(joint("j1", "a", "b") + joint("j2", "b", "c", extra='<mimic joint="nope"/>')), "joint 'j2' mimics unknown joint 'nope'"),
        (robot(joint("j1", "a", "b", "fixed") + joint("j2", "b", "c", extra='<mimic joint="j1"/>')), "mimics joint 'j1', which is fixed"),
        (robot(joint("j1", "a", "b") + joint("j2", "b", "c", "floating")), "joint 'j2' is floating"),
        (robot(joint("j1", "a", "b") + joint("j2", "b", "c", "planar")), "joint 'j2' is planar"),
        (robot(joint("j1", "a", "b", "weird")), "could not be parsed.*weird"),
        (robot(joint("j1", "a", "b") + joint("j1", "b", "c")), "joint name 'j1' is used twice"),
        (robot("", links=("a", "a")), "link name 'a' is used twice"),
        ('<robot name="r"><link name="a"/><link name="b"/><joint name="j" type="revolute"><parent link="a"/><child link="b"/><limit lower="1" upper="-1" effort="1" velocity="1"/></joint></robot>', "lower limit 1.0 is above upper limit -1.0"),
    ],
)
def test_malformed_urdf_is_a_clear_value_error(urdf, message):
    with pytest.raises(ValueError, match=message):
        Chain.from_urdf(urdf, device="cpu")


def test_cycle_among_mimics_is_reported():
    urdf = robot(
        joint("j1", "a", "b", extra='<mimic joint="j2"/>') + joint("j2", "b", "c", extra='<mimic joint="j1"/>')
    )
    with pytest.raises(ValueError, match="mimic joints form a cycle"):
        parse_urdf(urdf)


def test_floating_joints_can_be_treated_as_fixed_on_request():
    urdf = robot(
        joint("base", "a", "b", "floating", '<origin xyz="1 2 3"/>') + joint("j2", "b", "c", extra='<axis xyz="0 0 1"/>')
    )
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float64, floating_joints="fixed")
    assert chain.joint_names == ("j2",)
    assert any("'base' (floating) is treated as fixed" in w for w in chain.warnings)
    T = forward_kinematics(chain, torch.zeros(1, dtype=torch.float64), links="b")
    torch.testing.assert_close(T[:3, 3], torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))


def test_non_kinematic_elements_are_ignored_and_warnings_collected_not_printed(capsys):
    # a transmission urdf_parser_py would reject (no <type>) must not stop the kinematics
    urdf = robot(
        CHAIN_AB_BC.replace("</joint>", "<calibration rising='0'/><foo/></joint>", 1)
        + "<transmission name='t'><foo/></transmission><gazebo/><ros2_control name='x'/>"
    )
    description = parse_urdf(urdf)
    assert any("<gazebo>, <ros2_control>, <transmission>" in w for w in description.warnings)
    assert any('Unknown tag "foo"' in w for w in description.warnings)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_encoding_declaration_and_comments_are_accepted():
    urdf = '<?xml version="1.0" encoding="utf-8"?>\n<!-- made by xacro -->\n' + robot(CHAIN_AB_BC)
    assert parse_urdf(urdf).link_names == ("a", "b", "c")


def test_root_element_must_be_robot():
    with pytest.raises(ValueError, match="root element is <sdf>, not <robot>"):
        parse_urdf("<sdf version='1.7'><model name='m'/></sdf>")


def test_link_order_is_breadth_first_and_joints_follow_the_tree():
    urdf = robot(
        joint("j_ab", "a", "b") + joint("j_bd", "b", "d") + joint("j_ac", "a", "c") + joint("j_ce", "c", "e"),
        links=("a", "b", "c", "d", "e"),
    )
    chain = Chain.from_urdf(urdf, device="cpu")
    assert chain.link_names == ("a", "b", "c", "d", "e")
    assert chain.joint_names == ("j_ab", "j_bd", "j_ac", "j_ce")  # depth-first: one limb at a time
    parents = chain.parent_index.tolist()
    assert all(parents[i] < i for i in range(1, chain.num_links))


def test_lookups_name_the_unknown_thing(arm7):
    assert arm7.link_index("tool0") == arm7.num_links - 1
    assert arm7.joint_index("joint_3") == 2
    with pytest.raises(ValueError, match="unknown link 'tool9' in robot 'rtk_arm7'"):
        arm7.link_index("tool9")
    with pytest.raises(ValueError, match="unknown joint 'elbow'"):
        arm7.joint_index("elbow")
    with pytest.raises(ValueError, match="'flange_joint'.*fixed or mimic"):
        arm7.joint_index("flange_joint")
