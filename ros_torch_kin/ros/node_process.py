"""The installed ros_torch_kin node as a child process, for the demo, tests and benchmarks.

It starts ``lib/ros_torch_kin/ros_torch_kin_node`` from the package's install prefix with the
same Python interpreter, a params file and overrides, on a chosen ROS_DOMAIN_ID, and stops it the
way a terminal or launch does (SIGINT).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def package_share() -> Path:
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("ros_torch_kin"))


def node_executable() -> Path:
    from ament_index_python.packages import get_package_prefix

    return Path(get_package_prefix("ros_torch_kin")) / "lib" / "ros_torch_kin" / "ros_torch_kin_node"


def default_params_file() -> Path:
    return package_share() / "config" / "default.yaml"


class NodeProcess:
    """``with NodeProcess(parameters={...}, domain_id=42) as node: ...``; ``node.log()`` is its output.
    ``remappings`` maps topic names, e.g. {"joint_states": "/arm/joint_states"}."""

    def __init__(self, parameters: dict | None = None, params_file: Path | str | None = None,
                 domain_id: int | None = None, name: str = "ros_torch_kin", env: dict | None = None,
                 remappings: dict[str, str] | None = None):
        self.parameters = dict(parameters or {})
        self.remappings = dict(remappings or {})
        self.params_file = Path(params_file) if params_file else default_params_file()
        self.name = name
        self.env = dict(os.environ)
        self.env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        if domain_id is not None:
            self.env["ROS_DOMAIN_ID"] = str(domain_id)
        self.env.update(env or {})
        self._dir = tempfile.TemporaryDirectory(prefix="ros_torch_kin_node_")
        self.log_path = Path(self._dir.name) / "node.log"
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        command = [sys.executable, str(node_executable()), "--ros-args", "-r", f"__node:={self.name}",
                   "--params-file", str(self.params_file)]
        for source, target in self.remappings.items():
            command += ["-r", f"{source}:={target}"]
        if self.parameters:
            overrides = Path(self._dir.name) / "overrides.yaml"
            overrides.write_text(yaml.safe_dump({"/**": {"ros__parameters": self.parameters}}))
            command += ["--params-file", str(overrides)]
        return command

    def start(self) -> "NodeProcess":
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(self.command(), env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGINT, then SIGKILL after ``timeout`` s; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            if not self.running():
                return False
            time.sleep(0.05)
        return False

    def __enter__(self) -> "NodeProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self._dir.cleanup()
