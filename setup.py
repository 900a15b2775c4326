"""pip install of the ros_torch_kin library alone (kinematics + optimizer, no ROS needed).

Install torch==2.13.0 (or the build your platform needs) first: torch is declared as a range so
that pip never replaces the torch you have with a download of its own choosing.
The ROS 2 package (node, interfaces) is built by colcon from CMakeLists.txt instead.
"""

from setuptools import find_packages, setup

setup(
    name="ros_torch_kin",
    version="0.1.0",
    description="GPU-batched, differentiable robot kinematics and trajectory optimization for ROS 2",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["ros_torch_kin", "ros_torch_kin.*"], exclude=["ros_torch_kin.ros*"]),
    package_data={"ros_torch_kin.robots": ["*.urdf"]},
    install_requires=["torch>=2.1", "numpy", "urdfdom-py>=1.2", "trimesh", "pycollada", "pyyaml", "scipy", "toppra", "ruckig"],
    extras_require={"test": ["pytest", "pin", "example-robot-data"]},
)
