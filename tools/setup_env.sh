#!/usr/bin/env bash
# Set up everything person_search needs, idempotently, on a fresh Linux machine:
#   1. a project-local virtual environment (.venv) with the pinned Python stack
#      (ROS 2 Kilted wheels from PyPI unless a ROS 2 distribution is sourced),
#   2. the two fixes the ROS wheels need for building interfaces,
#   3. without a ROS distribution: the ROS 2 tools (launch, ros2cli, launch_pytest) from the
#      vendored sources in ../shared/vendor/ros2-python (or $PERSON_SEARCH_ROS_VENDOR),
#   4. a colcon build of person_search_interfaces and person_search (and, with step 3,
#      composition_interfaces and vision_msgs) into build/ install/.
# Re-running it only redoes what changed (stamp files hold the inputs' hashes).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${PERSON_SEARCH_VENV:-$ROOT/.venv}
PY_BOOT=${PYTHON:-python3}

log() { printf '[setup] %s\n' "$*" >&2; }
hash_of() { find "$@" -type f 2>/dev/null | LC_ALL=C sort | xargs cat 2>/dev/null | sha256sum | cut -c1-16; }

# ---- 1. virtual environment --------------------------------------------------------------
if [ -n "${ROS_DISTRO:-}" ]; then
  MODE="ros-$ROS_DISTRO"; REQS="requirements.txt requirements-humble.txt"
else
  MODE="wheels"; REQS="requirements-ros.txt requirements.txt"
fi
want=$(echo "$MODE $(hash_of $REQS)")
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.ps_stamp" 2>/dev/null)" != "$want" ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV ($MODE)"
    if [ "$MODE" = wheels ]; then "$PY_BOOT" -m venv "$VENV"
    else "$PY_BOOT" -m venv --system-site-packages "$VENV"; fi
  fi
  log "installing Python dependencies ($REQS); a fresh machine takes a few minutes"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  PIP_REQS=$REQS
  if [ "$MODE" != wheels ]; then
    # A sourced ROS distribution: requirements-humble.txt's numpy / pytest pins replace
    # requirements.txt's, and a torch that is already there (JetPack's CUDA build on a
    # Jetson, seen through --system-site-packages) is never replaced by PyPI's.
    skip="numpy|pytest"
    if [ "$(uname -m)" = aarch64 ] || "$VENV/bin/python" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
      log "keeping the installed torch/torchvision (aarch64 / CUDA torch found): install JetPack's wheels first on a Jetson"
      skip="$skip|torch|torchvision"
    fi
    grep -v -E "^($skip)([=<>~! ]|$)" requirements.txt > "$VENV/.ps_requirements.txt"
    cat requirements-humble.txt >> "$VENV/.ps_requirements.txt"
    PIP_REQS="$VENV/.ps_requirements.txt"
  fi
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install -q $(for r in $PIP_REQS; do printf -- '-r %s ' "$r"; done) 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  "$VENV/bin/python" -c "import torch, cv2, faiss, open_clip, ultralytics, numpy" \
    || { log "dependency install failed (see pip output above)"; exit 1; }
  echo "$want" > "$VENV/.ps_stamp"
fi
PY="$VENV/bin/python"

# ---- 2. ROS wheel quirks (only for the PyPI wheels) --------------------------------------
if [ "$MODE" = wheels ]; then
  "$PY" - <<'PYEOF'
import glob, os, sys, sysconfig
import numpy
prefix = sys.prefix
inc = sysconfig.get_paths()["include"]
npinc = numpy.get_include()
subs = {
    "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include": npinc,
    "/opt/python/cp311-cp311/include/python3.11": inc,
}
n = 0
for path in glob.glob(os.path.join(prefix, "**", "share", "*", "cmake", "*Export.cmake"), recursive=True):
    text = open(path).read()
    new = text
    for a, b in subs.items():
        new = new.replace(a, b)
    if new != text:
        open(path, "w").write(new)
        n += 1
if n:
    print(f"[setup] rewrote wheel build paths in {n} cmake export file(s)", file=sys.stderr)
PYEOF
fi

# ---- 3. ROS 2 tools: launch, ros2cli, launch_pytest, vision_msgs (only for the PyPI wheels) -------
# The wheels bring rclpy but not `ros2 launch`, `ros2 service call`, launch_pytest or
# vision_msgs. Their upstream sources (tarballs, never copied into this repository) are
# installed from ../shared/vendor/ros2-python or $PERSON_SEARCH_ROS_VENDOR: the Python ones
# with pip --no-deps into the venv (which writes the `ros2` script), the two message
# packages built by the colcon step below into install/. A sourced distribution has its own.
VENDOR_MSGS=()
if [ "$MODE" = wheels ]; then
  VENDOR=${PERSON_SEARCH_ROS_VENDOR:-$ROOT/../shared/vendor/ros2-python}
  TARBALLS="launch launch_ros ros2cli rosidl_runtime_py composition_interfaces vision_msgs"
  missing=""
  for t in $TARBALLS; do [ -f "$VENDOR/$t.tar.gz" ] || missing="$missing $t.tar.gz"; done
  if [ -n "$missing" ]; then
    [ -d "$VENDOR" ] && where="$VENDOR lacks$missing" || where="no $VENDOR"
    log "ROS 2 tools: $where (set PERSON_SEARCH_ROS_VENDOR to their folder): ros2 launch and ros2 service call are unavailable here; start the graph with person-search up"
  else
    SRC="$ROOT/build/ros2_vendor"
    want_tools="$(cd "$VENDOR" && sha256sum $(for t in $TARBALLS; do printf '%s.tar.gz ' "$t"; done) | sha256sum | cut -c1-16)"
    if [ ! -f "$SRC/.ps_stamp" ] || [ "$(cat "$SRC/.ps_stamp")" != "$want_tools" ]; then
      rm -rf "$SRC" && mkdir -p "$SRC"
      for t in $TARBALLS; do tar -xzf "$VENDOR/$t.tar.gz" -C "$SRC"; done
      echo "$want_tools" > "$SRC/.ps_stamp"
    fi
    if [ "$(cat "$VENV/.ps_ros_tools_stamp" 2>/dev/null)" != "$want_tools" ] \
       || ! "$PY" -c "import launch.actions, launch_pytest, ros2cli.cli, ros2launch" 2>/dev/null; then
      log "installing launch, launch_ros, launch_pytest, ros2cli and rosidl_runtime_py from $VENDOR into the venv"
      t0=$(date +%s)
      # setup.py packages of the ament_python kind: no build isolation (setuptools is in the
      # venv), no dependencies (rclpy & co. come from the wheels, osrf-pycommon is pinned in
      # requirements-ros.txt)
      mkdir -p log
      # shellcheck disable=SC2046
      "$PY" -m pip install --no-deps --no-build-isolation \
        $(find "$SRC" -mindepth 2 -maxdepth 3 -name setup.py -printf '%h\n' | LC_ALL=C sort) \
        > log/ros_tools_pip.txt 2>&1 || true
      "$PY" -c "import launch.actions, launch_pytest, ros2cli.cli, ros2launch" \
        || { tail -n 30 log/ros_tools_pip.txt >&2; log "installing the ROS 2 tools failed; pip's log: log/ros_tools_pip.txt"; exit 1; }
      echo "$want_tools" > "$VENV/.ps_ros_tools_stamp"
      log "ROS 2 tools installed in $(( $(date +%s) - t0 )) s"
    fi
    # launch_testing's and launch_testing_ros's pytest plugins (for `launch_test` files, which
    # this project does not use) declare hooks with the `path` argument that pytest 9 removed:
    # registered, they stop every pytest run in the venv ("Error while loading plugin
    # pytest11"). Unregister them; launch_pytest's plugin stays.
    "$PY" - <<'PYEOF'
import glob, os, sysconfig
site = sysconfig.get_paths()["purelib"]
for path in glob.glob(os.path.join(site, "launch_testing*.dist-info", "entry_points.txt")):
    text = open(path).read()
    lines, skip = [], False
    for line in text.splitlines():
        if line.startswith("["):
            skip = line.strip() == "[pytest11]"
        if not skip:
            lines.append(line)
    new = "\n".join(lines).strip() + "\n"
    if new != text:
        open(path, "w").write(new)
PYEOF
    VENDOR_MSGS=("$SRC/composition_interfaces/composition_interfaces" "$SRC/vision_msgs/vision_msgs")
  fi
fi

# ---- 4. colcon build ------------------------------------------------------------------------
want_build=$(hash_of package.xml setup.py setup.cfg person_search_interfaces launch config rviz models/README.md)"-$MODE"
[ ${#VENDOR_MSGS[@]} -eq 0 ] || want_build="$want_build-$want_tools"
if [ ! -f install/.ps_stamp ] || [ "$(cat install/.ps_stamp)" != "$want_build" ]; then
  log "building person_search_interfaces and person_search with colcon"
  t_build=$(date +%s)
  export PATH="$VENV/bin:$PATH"
  if [ "$MODE" = wheels ]; then
    SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    export CMAKE_PREFIX_PATH="$VENV:${CMAKE_PREFIX_PATH:-}"
    export AMENT_PREFIX_PATH="$VENV:${AMENT_PREFIX_PATH:-}"
  fi
  mkdir -p log
  COLCON="$VENV/bin/colcon"
  [ -x "$COLCON" ] || COLCON=$(command -v colcon) || { log "colcon not found: install python3-colcon-common-extensions"; exit 1; }
  [ ${#VENDOR_MSGS[@]} -eq 0 ] || log "also building composition_interfaces and vision_msgs (first time: about a minute)"
  if ! "$COLCON" --log-base log build --base-paths "$ROOT" "$ROOT/person_search_interfaces" ${VENDOR_MSGS[@]+"${VENDOR_MSGS[@]}"} \
       --build-base build --install-base install \
       --cmake-args -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF > log/colcon_build.txt 2>&1; then
    tail -n 40 log/colcon_build.txt >&2
    log "colcon build failed; full log in log/colcon_build.txt"
    exit 1
  fi
  echo "$want_build" > install/.ps_stamp
  log "colcon build took $(( $(date +%s) - t_build )) s"
fi
bash tools/setup_browser.sh  # chromium + chromium-driver for the browser tests (test/web)
log "environment ready: $VENV, install/"
