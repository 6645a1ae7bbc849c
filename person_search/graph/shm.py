"""Fast DDS shared-memory segments left behind by processes that died without cleaning up.

Each Fast DDS participant (one per node process) maps a segment file in /dev/shm; with
config/fastdds_local.xml a segment is 32 MiB so that whole camera frames fit. A process that
exits normally removes its files. One that is killed (SIGKILL, the OOM killer, a crash, a
supervisor escalating after SIGINT) leaves them, and /dev/shm is RAM: a graph restarted
a few hundred times fills the machine's memory.

The owner of a segment holds an exclusive ``flock`` on the companion ``<name>_el`` file for
as long as it lives (checked against /proc/locks with Fast DDS 2.14). A segment whose
``_el`` file can be locked by somebody else has no living owner and can be removed; this is
what Fast DDS's own ``fastdds shm clean`` does. Files younger than ``min_age_s`` are left
alone, so a participant that has created its lock file but not yet locked it is never hit.
"""
from __future__ import annotations

import fcntl
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

SHM_DIR = Path("/dev/shm")
# segment files: fastdds_<16 hex>; port files: fastdds_port<N> (shared by all participants
# of a domain on this machine; also guarded by an _el lock while anybody uses them)
MIN_AGE_S = 2.0  # an owner locks its file microseconds after creating it
_SEGMENT = re.compile(r"^(fastdds|fastrtps)_([0-9a-f]{16}|port\d+)_el$")


@dataclass
class CleanReport:
    removed: int = 0          # segments (or ports) removed
    freed_bytes: int = 0      # bytes of /dev/shm given back
    in_use: int = 0           # segments with a living owner, left alone
    errors: List[str] = field(default_factory=list)  # files that could not be examined or removed

    def line(self) -> str:
        return (f"removed {self.removed} stale Fast DDS shared-memory segment(s), "
                f"{self.freed_bytes / 2**20:.0f} MiB freed; {self.in_use} in use")


def _size(p: Path) -> int:
    try:
        return p.stat().st_blocks * 512  # what tmpfs really holds, not the sparse length
    except OSError:
        return 0


def clean_stale_segments(shm_dir: Optional[Path] = None, *, min_age_s: float = MIN_AGE_S,
                         now: Optional[float] = None, dry_run: bool = False) -> CleanReport:
    """Remove the Fast DDS segment files whose owner is dead; return what was removed and freed.

    Never raises for a file it cannot read (another user's segment, a race with its owner's
    exit); those are listed in ``errors``. With ``dry_run`` it removes nothing and returns
    what it would have removed.
    """
    shm_dir = Path(shm_dir) if shm_dir is not None else SHM_DIR
    report = CleanReport()
    if not shm_dir.is_dir():
        return report
    now = time.time() if now is None else now
    for lock_file in sorted(shm_dir.iterdir()):
        m = _SEGMENT.match(lock_file.name)
        if not m:
            continue
        try:
            if now - lock_file.stat().st_mtime < min_age_s:
                continue
            fd = os.open(lock_file, os.O_RDWR)
        except FileNotFoundError:
            continue  # its owner exited and removed it meanwhile
        except OSError as e:
            report.errors.append(f"{lock_file.name}: {e.strerror}")
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                report.in_use += 1
                continue
            # nobody holds it: the owner is gone. Remove the data file(s) first, then the lock.
            base = lock_file.name[:-3]
            victims = [shm_dir / base]
            if m.group(2).startswith("port"):
                victims.append(shm_dir / f"sem.{base}_mutex")
            if dry_run:
                report.removed += 1
                report.freed_bytes += sum(_size(v) for v in victims)
                continue
            for v in victims:
                size = _size(v)
                try:
                    v.unlink()
                    report.freed_bytes += size
                except FileNotFoundError:
                    pass
                except OSError as e:
                    report.errors.append(f"{v.name}: {e.strerror}")
            try:
                lock_file.unlink()
            except OSError:
                pass
            report.removed += 1
        finally:
            os.close(fd)
    return report


def main(argv: Optional[List[str]] = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(
        prog="python -m person_search.graph.shm",
        description="Remove Fast DDS shared-memory segments left by dead processes.")
    ap.add_argument("--dir", type=Path, default=SHM_DIR)
    ap.add_argument("--min-age", type=float, default=MIN_AGE_S, help="leave files younger than this (s)")
    ap.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    a = ap.parse_args(argv)
    r = clean_stale_segments(a.dir, min_age_s=a.min_age, dry_run=a.dry_run)
    print(("(dry run) would have " if a.dry_run else "") + r.line())
    for e in r.errors:
        print(f"  could not clean {e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
