#!/usr/bin/env bash
# Create or update the project's virtual environment (default .venv): torch==2.13.0 first, then
# the library's needs, ROS 2 kilted wheels, the test references and, with the argument "bench",
# pytorch_kinematics. Idempotent: a stamp per requirements group records what is installed; a
# re-run with the same requirements returns at once. Usage: tools/setup_env.sh [bench]
# Environment: VENV (default .venv), ROS_GROUP (ros-kilted | ros-jazzy), CONSTRAINTS (pip -c file).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$root/.venv}
python=${PYTHON:-python3.11}
ros_group=${ROS_GROUP:-ros-kilted}  # ros-jazzy: the LTS, for make test-jazzy
constraints=${CONSTRAINTS:-$root/requirements/constraints.txt}
groups="library $ros_group test ${1:-}"
stamps="$venv/.ros_torch_kin-installed"  # one stamp per requirements group: its hash when installed
group_hash() { cat "$root/requirements/$1.txt" "$constraints" | sha256sum | cut -d' ' -f1; }
missing=""
for g in $groups; do
  [ -f "$stamps/$g" ] && [ "$(cat "$stamps/$g")" = "$(group_hash "$g")" ] || missing="$missing $g"
done
if [ -z "$missing" ] && "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('torch').startswith('2.13.0')" 2>/dev/null; then
  exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv"
  "$python" -m venv "$venv"
fi
pip_install() {  # quiet; drop the notes this machine's pip config prints for absent local indexes
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -c "$constraints" "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}
echo "installing torch==2.13.0 (first, so nothing else can pull another torch)"
pip_install "setuptools>=77.0.3,<80" torch==2.13.0
mkdir -p "$stamps"
for g in ${missing:-$groups}; do
  echo "installing requirements/$g.txt"
  pip_install -r "$root/requirements/$g.txt"
  group_hash "$g" > "$stamps/$g"
done
"$venv/bin/python" -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"

# The kilted wheels' CMake exports hard-code the wheel builder's include dirs under /opt/python
# (shared/ros-pip-recipe.md, workaround A): point them at this interpreter's and numpy's.
pyinc=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
npinc=$("$venv/bin/python" -c 'import numpy; print(numpy.get_include())')
{ grep -rlF --include='*.cmake' /opt/python/cp311-cp311 "$venv/share" 2>/dev/null || true; } | xargs -r sed -i \
  -e "s#/opt/python/cp311-cp311/include/python3.11#$pyinc#g" \
  -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$npinc#g"
echo "environment ready: $venv"
