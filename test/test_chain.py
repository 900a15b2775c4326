"""The Chain: precomputed structure, dtype/device moves, and the library's layering."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import random_q, real_urdf

from ros_torch_kin.kinematics import Chain, forward_kinematics
from ros_torch_kin.robots import bundled_urdf, bundled_urdf_path

PACKAGE = Path(__file__).resolve().parents[1] / "ros_torch_kin"


def test_ancestor_mask_says_which_dofs_move_which_links():
    chain = Chain.from_urdf(real_urdf("panda"), device="cpu")
    mask = chain.ancestor_mask
    assert mask.shape == (chain.num_dofs, chain.num_links) and mask.dtype == torch.bool
    finger = chain.joint_index("panda_finger_joint1")
    # the finger DOF moves both fingers (the right one through its mimic) and nothing else
    assert {chain.link_names[l] for l in mask[finger].nonzero().flatten().tolist()} == {
        "panda_leftfinger", "panda_rightfinger"}
    # joint 1 moves everything but the base
    assert mask[chain.joint_index("panda_joint1")].sum() == chain.num_links - 1
    # a DOF moves a link exactly when changing it changes the link's pose
    q = random_q(chain.to(dtype=torch.float64), 1, 0)[0]
    base = forward_kinematics(chain.to(dtype=torch.float64), q)
    for j in range(chain.num_dofs):
        moved = forward_kinematics(chain.to(dtype=torch.float64), q + 0.1 * torch.eye(chain.num_dofs, dtype=torch.float64)[j])
        changed = (moved - base).abs().amax(dim=(1, 2)) > 1e-12
        assert changed.tolist() == mask[j].tolist()


def test_to_changes_dtype_and_keeps_index_tensors(arm7):
    chain32 = arm7.to(dtype=torch.float32)
    assert chain32.dtype == torch.float32 and arm7.dtype == torch.float64
    assert chain32.parent_index.dtype == torch.int64 and chain32.ancestor_mask.dtype == torch.bool
    assert chain32.joint_names == arm7.joint_names
    with pytest.raises(TypeError, match="floating point"):
        arm7.to(dtype=torch.int32)
    assert repr(chain32).startswith("Chain('rtk_arm7', 7 DOFs, 10 links")


def test_default_device_and_device_mismatch_is_an_error():
    chain = Chain.from_urdf(bundled_urdf())
    assert chain.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert chain.dtype == torch.float32
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="q is on cpu but the chain is on cuda"):
            forward_kinematics(chain, torch.zeros(7))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu():
    cpu = Chain.from_urdf(real_urdf("talos"), device="cpu", dtype=torch.float64)
    gpu = cpu.to("cuda")
    q = random_q(cpu, 2048, 0)
    torch.testing.assert_close(forward_kinematics(gpu, q.cuda()).cpu(), forward_kinematics(cpu, q))
    qg = q.cuda().requires_grad_()
    forward_kinematics(gpu, qg, links=[-1]).sum().backward()
    qc = q.clone().requires_grad_()
    forward_kinematics(cpu, qc, links=[-1]).sum().backward()
    torch.testing.assert_close(qg.grad.cpu(), qc.grad)


def test_bundled_robot_is_package_data():
    assert Path(bundled_urdf_path()).is_file()
    with pytest.raises(ValueError, match="no bundled robot 'nope'; available: arm7"):
        bundled_urdf("nope")


def test_library_never_imports_ros():
    code = (
        "import sys, ros_torch_kin, ros_torch_kin.kinematics, ros_torch_kin.robots;"
        "import ros_torch_kin.collision, ros_torch_kin.optim;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('rclpy', 'rosidl_runtime_py', 'std_msgs')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of everything the module at ``path`` (in ``package``) imports, including
    each name of a ``from X import name`` as X.name (it may be a module: ``from .. import ros``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_import_resolution_sees_relative_and_from_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from .. import ros\nfrom ..optim.ik import x\nimport rclpy.node\nfrom .fk import y\n")
    names = imported_modules(probe, "ros_torch_kin.kinematics")
    assert {"ros_torch_kin.ros", "ros_torch_kin.optim.ik", "rclpy.node", "ros_torch_kin.kinematics.fk.y"} <= names


@pytest.mark.parametrize(
    "layer, forbidden",
    [("kinematics", ("collision", "optim", "motion", "ros")), ("collision", ("optim", "motion", "ros")),
     ("optim", ("motion", "ros")), ("motion", ("ros",))],
)
def test_imports_point_one_way(layer, forbidden):
    for path in (PACKAGE / layer).glob("*.py"):
        for name in imported_modules(path, f"ros_torch_kin.{layer}"):
            assert name.split(".")[0] != "rclpy", f"{path.name} imports {name}"
            assert not any(name == f"ros_torch_kin.{bad}" or name.startswith(f"ros_torch_kin.{bad}.")
                           for bad in forbidden), f"{path.name} imports {name}"


def test_to_float64_rebuilds_with_full_precision():
    urdf = real_urdf("panda")
    exact = Chain.from_urdf(urdf, device="cpu", dtype=torch.float64)
    upcast = Chain.from_urdf(urdf, device="cpu", dtype=torch.float32).to(dtype=torch.float64)
    q = random_q(exact, 100, 0)
    torch.testing.assert_close(forward_kinematics(upcast, q), forward_kinematics(exact, q), rtol=0, atol=0)
