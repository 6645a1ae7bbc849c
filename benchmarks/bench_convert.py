"""Per-frame cost of building image messages, with the generated field checks on and off.

On Humble every generated setter checks its value; on newer distributions only with
``ROS_PYTHON_CHECK_FIELDS=1``. For a uint8[] field, a ``bytes`` value is checked element by
element in Python, while an ``array.array('B')`` filled with ``frombytes`` (what cv_bridge
and ``person_search.nodes.convert`` do) is taken as is. Both ways are timed here in the same
run, with checks on (``check_fields=True``, the Humble behaviour) and off.

    tools/env.sh python -m benchmarks.bench_convert [--width 960 --height 540 --repeat 20]
        [--json docs/bench_convert.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.common import cpu_line, new_record, time_calls


def _time(fn, repeat: int) -> float:
    """Return the median seconds of ``fn()`` over ``repeat`` runs (after one warm-up call)."""
    return float(np.median(time_calls(fn, calls=repeat, max_calls=repeat)))


def slow_repeat(repeat: int) -> int:
    """Return the calls timed for the slow path (bytes through the checking setter): a quarter, at least 3."""
    return max(3, repeat // 4)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=960)
    ap.add_argument("--height", type=int, default=540)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--json", metavar="FILE", help="also write the cells with the run record to FILE")
    a = ap.parse_args()

    from sensor_msgs.msg import Image
    from person_search.nodes import convert

    img = np.random.default_rng(0).integers(0, 255, (a.height, a.width, 3), dtype=np.uint8)
    raw = img.tobytes()

    def message(checks: bool) -> Image:
        try:
            return Image(check_fields=checks)
        except TypeError:  # Humble: no check_fields argument, checks always on
            return Image()

    def old_way(checks: bool):
        msg = message(checks)
        msg.data = raw  # what nodes/convert.py did before: bytes through the checking setter
        return msg

    def new_way(checks: bool):
        msg = message(checks)
        msg.data.frombytes(raw)  # cv_bridge's way
        return msg

    print(f"{a.width}x{a.height} bgr8 ({len(raw) / 1e6:.2f} MB), each cell the median of the calls in its "
          f"column 'n', {cpu_line()}")
    print(f"{'field checks':<14}{'msg.data = bytes':>18}{'n':>4}{'data.frombytes':>16}{'n':>4}{'ratio':>8}")
    rec = new_record(vars(a), "bench_convert")
    cells = []
    for checks in (True, False):
        n_old = slow_repeat(a.repeat) if checks else a.repeat
        t_old = _time(lambda: old_way(checks), n_old)
        t_new = _time(lambda: new_way(checks), a.repeat)
        print(f"{'on' if checks else 'off':<14}{1e3 * t_old:>15.2f} ms{n_old:>4}{1e3 * t_new:>13.2f} ms"
              f"{a.repeat:>4}{t_old / t_new:>7.0f}x")
        cells.append({"field_checks": checks, "bytes_ms": 1e3 * t_old, "bytes_n": n_old,
                      "frombytes_ms": 1e3 * t_new, "frombytes_n": a.repeat, "ratio": t_old / t_new})
    t_conv = _time(lambda: convert.bgr_to_image(img), a.repeat)
    print(f"convert.bgr_to_image (whole message, environment default checks): {1e3 * t_conv:.2f} ms, median of "
          f"{a.repeat}")
    if a.json:
        out = dict(rec, cells=cells, bgr_to_image_ms=1e3 * t_conv, frame=[a.width, a.height])
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
