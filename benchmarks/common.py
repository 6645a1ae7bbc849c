"""What every benchmark shares: the machine it ran on, the run record, memory, percentiles, timing, results files.

* machine: :func:`cpu_model`, :func:`cpu_line` (model, cores, load average: figures on a shared box move with it);
* run record (:func:`new_record`): which run made a result, from which commit, with which arguments, where, under
  which load. A ratio or a verdict is formed only between results that carry the same ``run_id`` (timed in one run,
  on one machine, under the load recorded); a result without a record is shown as such and used in neither;
* memory: :func:`rss_bytes` (any process), :func:`proc_status_bytes`, :func:`reset_peak_rss`, :func:`peak_rss_mb`;
* statistics and timing: :func:`percentile_ms`, :func:`time_calls` (one callable), :func:`time_interleaved`
  (several, round by round);
* results files: :func:`write_results` (JSON next to the document it feeds, under ``docs/``) and
  :func:`replace_block` (a document's generated table between ``<!-- results:NAME -->`` markers).
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Union

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"  # results files live here, next to the document they feed


# -- machine ---------------------------------------------------------------------------------------------------------

def cpu_model() -> str:
    """Return the CPU model name (Linux /proc/cpuinfo), else the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine() or "unknown CPU"


def load_average() -> tuple:
    """Return the 1/5/15-minute load averages (NaN where the platform has none)."""
    return os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3


def cpu_line() -> str:
    """Return the CPU model, core count and load average, for the record."""
    load = load_average()
    return f"{cpu_model()}, {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


# -- run record ------------------------------------------------------------------------------------------------------

def git_commit(root: Path = ROOT) -> str:
    """Return HEAD's commit, ``+dirty`` when tracked code differs from it, or "unknown" outside a checkout.

    Documents and results files (``docs/``, ``*.md``) do not count: a benchmark rewrites its own results file
    while it runs.
    """
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                 capture_output=True, text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    code = [ln[3:] for ln in changed if not ln[3:].startswith("docs/") and not ln[3:].endswith(".md")]
    return (head or "unknown") + ("+dirty" if head and code else "")


def new_record(args: dict, kind: str) -> dict:
    """Return a fresh run record: id, kind, commit, arguments, machine and its load now."""
    load = load_average()
    return {"run_id": f"{kind}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}",
            "kind": kind, "commit": git_commit(), "args": dict(args),
            "machine": {"cpu": cpu_model(), "cores": os.cpu_count()}, "load1_start": round(load[0], 2),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def finish_record(record: dict) -> dict:
    """Return ``record`` with the load average and the time at the end of the run added."""
    return dict(record, load1_end=round(load_average()[0], 2),
                finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def run_id(result: Optional[dict]) -> Optional[str]:
    """Return the run id a cached result carries, or None (no record: an earlier version of the code made it)."""
    return ((result or {}).get("run") or {}).get("run_id")


def same_run(*results: Optional[dict]) -> bool:
    """Return True when every result carries a run record and all carry the same run id."""
    ids = {run_id(r) for r in results}
    return len(ids) == 1 and None not in ids


# -- memory ----------------------------------------------------------------------------------------------------------

def proc_status_bytes(field: str, pid: Union[int, str] = "self") -> Optional[int]:
    """Return a size field of /proc/PID/status (``VmRSS``, ``VmHWM``, ...) in bytes; None if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def rss_bytes(pid: Union[int, str] = "self") -> Optional[int]:
    """Return the resident set size of a process (Linux /proc), None if it is gone."""
    return proc_status_bytes("VmRSS", pid)


def rss_mb(pid: Union[int, str] = "self") -> float:
    """Return the resident set size in MiB (NaN where /proc cannot tell)."""
    r = rss_bytes(pid)
    return r / 2 ** 20 if r is not None else float("nan")


def peak_rss_mb() -> float:
    """Return this process's peak resident set size so far in MiB (``getrusage``; kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Give free heap memory back to the OS (glibc), then reset VmHWM; False where that is not possible."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# -- statistics and timing -------------------------------------------------------------------------------------------

def percentile_ms(seconds: Iterable[float], q) -> float:
    """Return the ``q``-th percentile (or percentiles) of durations given in seconds, in ms; NaN when empty."""
    import numpy as np

    values = np.asarray(list(seconds), dtype=float)
    if values.size == 0:
        return float("nan")
    out = np.percentile(values * 1e3, q)
    return float(out) if np.ndim(out) == 0 else [float(v) for v in out]


# two-sided 95 % Student t quantiles by degrees of freedom (no scipy here); 1.96 beyond
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        15: 2.131, 20: 2.086, 30: 2.042}


def interval95(values) -> Optional[tuple]:
    """Return (mean, low, high): the mean and its two-sided 95 % Student t interval; None for fewer than 2."""
    import math
    import statistics

    values = list(values)
    if len(values) < 2:
        return None
    n = len(values)
    mean, sd = statistics.mean(values), statistics.stdev(values)
    t = _T95[max(d for d in _T95 if d <= n - 1)] if n - 1 <= 30 else 1.96  # the nearest df at or below
    half = t * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def paired_ratio_interval(base_s, other_s) -> Optional[tuple]:
    """Return (ratio, low, high, rounds): how many times faster ``other`` ran than ``base``, from durations timed
    round by round (``time_interleaved``): the geometric mean of the per-round ratios base / other over the rounds
    both ran, with its 95 % t interval on the logs; None with fewer than 2 shared rounds."""
    import math

    pairs = [(b, o) for b, o in zip(base_s, other_s) if b > 0 and o > 0]
    iv = interval95([math.log(b / o) for b, o in pairs])
    if iv is None:
        return None
    return math.exp(iv[0]), math.exp(iv[1]), math.exp(iv[2]), len(pairs)


def percentile_interval_ms(seconds: Iterable[float], q: float, *, block: int = 10, n: int = 2000,
                           seed: int = 0) -> Optional[tuple]:
    """Return a 95 % moving-block bootstrap interval (ms) of the ``q``-th percentile of durations in seconds.

    Consecutive samples of a running graph are correlated (one slow second slows several), so blocks of ``block``
    consecutive samples are resampled, not single samples. None with fewer than 2 blocks of samples."""
    import numpy as np

    values = np.asarray(list(seconds), dtype=float) * 1e3
    if values.size < 2 * block:
        return None
    rng = np.random.default_rng(seed)
    starts = np.arange(values.size - block + 1)
    k = int(np.ceil(values.size / block))
    idx = (rng.choice(starts, size=(n, k))[:, :, None] + np.arange(block)).reshape(n, -1)[:, :values.size]
    stats = np.percentile(values[idx], q, axis=1)
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def wilson_pct(k: int, n: int, z: float = 1.96) -> Optional[tuple]:
    """Return the 95 % Wilson score interval of the share ``k`` of ``n``, in percent (None when n is 0)."""
    if n <= 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def threshold_verdict(interval: Optional[tuple], line: float, *, at_most: bool) -> str:
    """met / missed / not resolved for "value <= line" (``at_most``) or "value >= line", from a 95 % interval:
    met when the whole interval clears the line, missed when the whole interval falls short, else not resolved."""
    if interval is None:
        return "not measured"
    low, high = interval
    if at_most:
        return "met" if high <= line else ("missed" if low > line else "not resolved")
    return "met" if low >= line else ("missed" if high < line else "not resolved")


def time_calls(fn: Callable[[], object], *, calls: int = 0, seconds: float = 0.0, max_calls: int = 1_000_000,
               warmup: int = 1, sync: Optional[Callable[[], object]] = None) -> List[float]:
    """Return the seconds of each timed call of ``fn()``: at least ``calls``, more until ``seconds`` have passed.

    ``warmup`` untimed calls come first (shape-specific kernels, allocations); ``max_calls`` caps the count;
    ``sync`` (e.g. ``torch.cuda.synchronize``) runs before and after every timed call, so the time is the work's.
    """
    for _ in range(warmup):
        fn()
    out: List[float] = []
    t_end = time.perf_counter() + seconds
    while len(out) < max_calls and (len(out) < max(1, calls) or time.perf_counter() < t_end):
        if sync is not None:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        out.append(time.perf_counter() - t0)
    return out


def time_interleaved(calls: Dict[str, Callable[[int], object]], *, seconds: float, min_calls: int = 1,
                     warmup: int = 1, wall: bool = False) -> Dict[str, List[float]]:
    """Time several callables round by round, so that load from other processes hits them all alike.

    Each round calls every callable once, in turn, with the round number (1, 2, ...); returns the seconds of each
    call per name. By default every callable runs until its own calls add up to ``seconds`` and it has ``min_calls``
    (one that is done sits out later rounds); with ``wall`` whole rounds run until ``seconds`` of wall time have
    passed (and at least ``min_calls`` rounds). ``warmup`` untimed calls of each come first (round number 0).
    """
    for fn in calls.values():
        for _ in range(warmup):
            fn(0)
    times: Dict[str, List[float]] = {name: [] for name in calls}
    spent = dict.fromkeys(calls, 0.0)
    t_end = time.perf_counter() + seconds
    k = 1
    while True:
        if wall:
            todo = list(calls) if (time.perf_counter() < t_end or k <= min_calls) else []
        else:
            todo = [n for n in calls if spent[n] < seconds or len(times[n]) < min_calls]
        if not todo:
            return times
        for name in todo:
            t0 = time.perf_counter()
            calls[name](k)
            dt = time.perf_counter() - t0
            times[name].append(dt)
            spent[name] += dt
        k += 1


# -- videos ----------------------------------------------------------------------------------------------------------

def video_frames(path: Union[str, Path]) -> Iterator:
    """Yield every frame of a video file (BGR uint8), in order; the capture is released at the end or on close."""
    import cv2
    cap = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                return
            yield img
    finally:
        cap.release()


# -- results files ---------------------------------------------------------------------------------------------------

def write_results(path: Union[str, Path], record: dict, **payload) -> Path:
    """Write ``payload`` with its run record (``run``) as JSON to ``path``; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run": finish_record(record), **payload}, indent=1) + "\n")
    print(f"wrote {path}")
    return path


def replace_block(doc: Union[str, Path], name: str, text: str) -> bool:
    """Replace what stands between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` in ``doc``.

    Returns False (and leaves the file alone, saying why on stderr) when the document or the block is missing.
    """
    doc = Path(doc)
    if not doc.is_file():
        print(f"{doc}: no such document", file=sys.stderr)
        return False
    src = doc.read_text()
    pattern = re.compile(rf"(<!-- results:{re.escape(name)} -->\n).*?(<!-- /results:{re.escape(name)} -->)", re.S)
    if not pattern.search(src):
        print(f"{doc} has no '<!-- results:{name} -->' block", file=sys.stderr)
        return False
    doc.write_text(pattern.sub(lambda m: m.group(1) + text.rstrip("\n") + "\n" + m.group(2), src, count=1))
    print(f"updated the '{name}' block of {doc}")
    return True


def add_results_args(ap, block: str, redraw: bool = True) -> None:
    """Add ``--json FILE``, ``--doc MD`` (the document's ``block``) and, with ``redraw``, ``--from-json FILE``."""
    ap.add_argument("--json", default="", metavar="FILE", help="write the results with the run record to FILE")
    ap.add_argument("--doc", default="", metavar="MD", help=f"rewrite the document's <!-- results:{block} --> block "
                    "from the results (needs --json" + (" or --from-json)" if redraw else ")"))
    if redraw:
        ap.add_argument("--from-json", default="", metavar="FILE", help="measure nothing: redraw from this file")


def check_results_args(ap, args) -> None:
    """Refuse ``--doc`` without a results file to cite (argparse's one-line error, exit 2)."""
    if args.doc and not (args.json or getattr(args, "from_json", "")):
        ap.error("--doc needs --json (or --from-json): the document cites its results file")
    src = getattr(args, "from_json", "")
    if src:
        try:
            json.loads(Path(src).read_text())
        except (OSError, ValueError) as exc:
            ap.error(f"--from-json {src}: not a readable results file ({exc.__class__.__name__}: {exc})")


def describe_run(run: dict) -> str:
    """Return the run record as a document states it: run id, short commit, machine, load at start and end."""
    commit = run["commit"][:12] + ("+dirty" if run["commit"].endswith("+dirty") else "")
    return (f"run {run['run_id']}, commit {commit}, {run['machine']['cpu']}, {run['machine']['cores']} cores, "
            f"**under load {run['load1_start']:.1f} -> {run.get('load1_end', float('nan')):.1f}**")
