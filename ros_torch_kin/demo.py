"""Library demo on the bundled 7-DOF arm: batched FK, Jacobian, analytical gradient, timings.

Run: ``python -m ros_torch_kin.demo [--batch N]``. No ROS needed.
"""

from __future__ import annotations

import argparse
import time

import torch

from ros_torch_kin.kinematics import Chain, compute_jacobian, forward_kinematics, matrix_to_pose_xyzw
from ros_torch_kin.robots import DEFAULT_END_EFFECTOR, bundled_urdf


def _median_ms(fn, repeats: int = 20) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1e3


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=4096, help="number of configurations")
    args = parser.parse_args(argv)

    chain = Chain.from_urdf(bundled_urdf())
    print(f"robot: {chain}\n  joints: {', '.join(chain.joint_names)}")
    generator = torch.Generator().manual_seed(0)
    u = torch.rand(args.batch, chain.num_dofs, generator=generator).to(chain.device)
    q = chain.lower_limits + u * (chain.upper_limits - chain.lower_limits)

    T = forward_kinematics(chain, q)
    pose = matrix_to_pose_xyzw(T[:, chain.link_index(DEFAULT_END_EFFECTOR)])
    print(f"\nforward kinematics: {args.batch} configurations -> {tuple(T.shape)} link poses")
    print(f"  {DEFAULT_END_EFFECTOR} of configuration 0 (x y z qx qy qz qw): {pose[0].tolist()}")

    J = compute_jacobian(chain, q, DEFAULT_END_EFFECTOR)
    print(f"geometric Jacobian of {DEFAULT_END_EFFECTOR}: {tuple(J.shape)}; configuration 0, row vz: "
          f"{[round(v, 4) for v in J[0, 2].tolist()]}")

    target = torch.tensor([0.5, 0.0, 0.5], device=chain.device)
    qg = q.clone().requires_grad_()
    cost = (forward_kinematics(chain, qg, links=DEFAULT_END_EFFECTOR)[:, :3, 3] - target).pow(2).sum(-1)
    (grad,) = torch.autograd.grad(cost.sum(), qg)
    print(f"d(|p - target|^2)/dq (analytical backward), configuration 0: {[round(v, 4) for v in grad[0].tolist()]}")

    def fk():
        with torch.no_grad():
            forward_kinematics(chain, q)

    def fk_backward():
        qq = q.clone().requires_grad_()
        forward_kinematics(chain, qq, links=DEFAULT_END_EFFECTOR)[:, :3, 3].sum().backward()

    print(f"\ntimings on {chain.device} ({torch.get_num_threads()} threads), median of 20:")
    for name, fn in (("forward, all links", fk), ("forward + analytical backward", fk_backward),
                     ("Jacobian", lambda: compute_jacobian(chain, q, DEFAULT_END_EFFECTOR))):
        ms = _median_ms(fn)
        print(f"  {name:32s} {ms:8.3f} ms  ({ms * 1e6 / args.batch:7.1f} ns per configuration)")


if __name__ == "__main__":
    main()
