"""The record every benchmark result carries: which run made it, from which commit, with which arguments, where.

A ratio or a verdict is formed only between results that carry the same ``run_id`` (timed in one run, on one
machine, under the load recorded); a result without a record is shown as such and used in neither.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Optional

try:  # run as a module of the benchmarks package (python -m benchmarks.X)
    from benchmarks.machine import cpu_model
except ImportError:  # run as a script (its folder on sys.path)
    from machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]


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
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"run_id": f"{kind}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}",
            "kind": kind, "commit": git_commit(), "args": dict(args),
            "machine": {"cpu": cpu_model(), "cores": os.cpu_count()}, "load1_start": round(load[0], 2),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def run_id(result: Optional[dict]) -> Optional[str]:
    """Return the run id a cached result carries, or None (no record: an earlier version of the code made it)."""
    return ((result or {}).get("run") or {}).get("run_id")


def same_run(*results: Optional[dict]) -> bool:
    """Return True when every result carries a run record and all carry the same run id."""
    ids = {run_id(r) for r in results}
    return len(ids) == 1 and None not in ids
