# Source me (bash): the project's venv, the ROS 2 wheels as the underlay, and the built workspace.
#   source tools/ros_env.sh      # then: ros_torch_kin_node, python -P -m ros_torch_kin.ros.demo, ...
# RTK_VENV and RTK_WS choose another venv and workspace (make test-jazzy uses .venv-jazzy, ws-jazzy).
_rtk_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_rtk_nounset=$([[ $- == *u* ]] && echo 1 || true)
set +u  # colcon's setup scripts read unset variables
source "${RTK_VENV:-$_rtk_root/.venv}/bin/activate"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV" CMAKE_PREFIX_PATH="$VIRTUAL_ENV"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
if [ -f "${RTK_WS:-$_rtk_root/ws}/install/setup.bash" ]; then
  source "${RTK_WS:-$_rtk_root/ws}/install/setup.bash"
fi
[ -n "$_rtk_nounset" ] && set -u
unset _rtk_root _rtk_nounset
