#!/usr/bin/env bash
# Run a command inside the project environment: the venv, the colcon install space and
# DDS discovery kept on this machine (loopback only) unless the caller says otherwise.
set -eo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${PERSON_SEARCH_VENV:-$ROOT/.venv}
if [ -f "$ROOT/install/local_setup.bash" ]; then
  # shellcheck disable=SC1091
  COLCON_CURRENT_PREFIX="$ROOT/install" source "$ROOT/install/local_setup.bash"
fi
# tools/bin first: `person-search` (this checkout's CLI), then the venv's python and tools
export PATH="$ROOT/tools/bin:$VENV/bin:$PATH"
export PERSON_SEARCH_ENV=1
if [ -z "${ROS_DISTRO:-}" ]; then
  # the PyPI wheels keep their share/ (ament index: std_msgs, rcl_interfaces ...) in the venv:
  # `ros2 interface show` / `ros2 pkg list` look there
  case ":${AMENT_PREFIX_PATH:-}:" in *":$VENV:"*) ;; *) export AMENT_PREFIX_PATH="${AMENT_PREFIX_PATH:+$AMENT_PREFIX_PATH:}$VENV" ;; esac
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
# shared memory large enough for whole frames; UDP on loopback only (config/fastdds_local.xml)
export FASTDDS_DEFAULT_PROFILES_FILE=${FASTDDS_DEFAULT_PROFILES_FILE:-$ROOT/config/fastdds_local.xml}
if [ "${ROS_DISTRO:-}" = humble ]; then  # Fast DDS 2.6 reads the older name
  export FASTRTPS_DEFAULT_PROFILES_FILE=${FASTRTPS_DEFAULT_PROFILES_FILE:-$FASTDDS_DEFAULT_PROFILES_FILE}
fi
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
export YOLO_OFFLINE=${YOLO_OFFLINE:-1}
export PYTHONUNBUFFERED=1
exec "$@"
