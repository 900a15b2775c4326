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
