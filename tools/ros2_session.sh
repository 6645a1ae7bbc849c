#!/usr/bin/env bash
# Run what a ROS user types first, for real, and write the transcript (commands and their
# output) that the README's ROS 2 section quotes:
#   tools/env.sh bash tools/ros2_session.sh [docs/ros2_session.txt] [cpu.launch.py]
# ros2 launch (random CLIP weights: none can be downloaded here) on a generated sample
# video, ros2 service call /query_person, ros2 topic echo --once /cam0/detections,
# ros2 node list, ros2 lifecycle get, ros2 param set, then SIGINT to the launch.
set -uo pipefail
OUT=${1:-docs/ros2_session.txt}
LAUNCH=${2:-cpu.launch.py}
WORK=$(mktemp -d /tmp/person_search_ros2_session.XXXXXX)
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$((150 + $$ % 80))}
python -m person_search sample-video "$WORK/sample.mp4" --seconds 8 > /dev/null
mkdir -p "$(dirname "$OUT")"
{
  echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null) $(uname -m) load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# ROS_DISTRO=${ROS_DISTRO:-none (PyPI Kilted wheels + vendored launch/ros2cli)}; sample video generated from bundled photos"
} > "$OUT"
show() { echo; echo "\$ $*"; "$@" 2>&1; }
ros2 launch person_search "$LAUNCH" source:="$WORK/sample.mp4" loop:=true random_weights:=true > "$WORK/launch.log" 2>&1 &
LPID=$!
# wait until the service answers with matches (models load; the gallery fills)
for _ in $(seq 120); do
  ros2 service call /query_person person_search_interfaces/srv/QueryPerson "{description: 'x', top_k: 1}" \
    2>/dev/null | grep -q "success=True" && break
  sleep 3
done
{
  echo; echo "\$ ros2 launch person_search $LAUNCH source:=sample.mp4 loop:=true random_weights:=true &"
  grep -E "^\[INFO\] \[launch\]|process started|active|serving" "$WORK/launch.log" | sed -E 's/\x1b\[[0-9;]*m//g' | head -20
  show ros2 service call /query_person person_search_interfaces/srv/QueryPerson "{description: 'a man in a dark suit', top_k: 3}"
  echo; echo "\$ ros2 topic echo --once /cam0/detections   (first detection shown)"
  ros2 topic echo --once /cam0/detections 2>&1 | awk '/^- header/{n++} n<2' | grep -v -E "^\s+- 0\.0$" | head -45
  show ros2 node list
  show ros2 lifecycle get /embedder
  show ros2 param set /cam0/detector detector.conf 0.4
  show ros2 param set /cam0/detector detector.conf 1.5
  echo; echo "\$ kill -INT <launch pid>   (the launch was started by this script: SIGINT inherited ignored)"
  t0=$(date +%s.%N)
  kill -INT $LPID
  wait $LPID
  rc=$?
  echo "launch exited with code $rc after $(echo "$(date +%s.%N) - $t0" | bc | cut -c1-4) s"
  tail -n 12 "$WORK/launch.log" | sed -E 's/\x1b\[[0-9;]*m//g' | cut -c1-160
  echo; echo "\$ pgrep -f 'person_search/lib/person_search/' | wc -l   # node processes left"
  pgrep -f "$PWD/install/person_search/lib/person_search/" | wc -l
} >> "$OUT" 2>&1
ros2 daemon stop > /dev/null 2>&1 || true
echo "wrote $OUT (launch log: $WORK/launch.log)"
