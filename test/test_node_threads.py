"""The node's thread policy: passive OpenMP waits set by its executable before torch loads, and the
torch_threads parameter (0 = automatic by request size) applied per request, also when changed."""

from __future__ import annotations

import numpy as np
from ros_fixtures import Spinner, requires_ros, running_node, set_parameters

pytestmark = requires_ros


def test_passive_waits_and_torch_threads(ros_domain):
    with running_node(ros_domain, {"collision_checking": False}) as (process, client):
        assert "torch threads: automatic per request; OpenMP workers wait passively" in process.log(), process.log()
        model = client.robot_model()
        rng = np.random.default_rng(0)
        q = rng.uniform(model.lower_limits, model.upper_limits, (2000, len(model.joint_names)))
        poses = client.forward_kinematics(q)  # large: in a worker, all cores
        spinner = Spinner("threads_parameters")
        try:
            for threads in (2, 1, 0):
                assert set_parameters(spinner, torch_threads=threads) == [(True, "")]
                np.testing.assert_allclose(client.forward_kinematics(q), poses, atol=1e-5)
                ik = client.inverse_kinematics(poses[:50, -1], time_budget=2.0)
                assert ik.solved.mean() > 0.9, ik.message
        finally:
            spinner.close()


def test_a_node_stopped_while_its_workers_run_exits_cleanly(ros_domain):
    """Stopped a few seconds after it starts, while its worker pool still runs the timing
    warm-up: the jobs finish without touching rclpy objects, and the process exits with 0 (a
    worker that woke the destroyed executor crashed it with SIGSEGV in about one stop of three)."""
    import time

    from ros_torch_kin.ros.node_process import NodeProcess

    codes = []
    for delay in (2.0, 3.0, 4.0):
        with NodeProcess(parameters={}, domain_id=ros_domain, name="rtk_stopped") as process:
            time.sleep(delay)
            codes.append((process.stop(), process.log()[-2000:]))
    assert all(code == 0 for code, _ in codes), [log for code, log in codes if code != 0]
