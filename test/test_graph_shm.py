"""Stale Fast DDS shared-memory segments: removed when their owner is dead, kept while it lives.

The owner is a real process holding the ``flock`` as Fast DDS does; the segment files are
written in a temporary folder, not in /dev/shm (test/ros checks the real thing).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from person_search.graph.shm import clean_stale_segments, main

SEG = "fastdds_0123456789abcdef"
HOLDER = ("import fcntl, os, sys, time\n"
          "fd = os.open(sys.argv[1], os.O_RDWR)\n"
          "fcntl.flock(fd, fcntl.LOCK_EX)\n"
          "print('locked', flush=True)\n"
          "time.sleep(60)\n")


def _segment(d, name, size=4096, age_s=60.0):
    (d / name).write_bytes(b"\1" * size)
    (d / f"{name}_el").write_bytes(b"")
    old = time.time() - age_s
    for p in (d / name, d / f"{name}_el"):
        os.utime(p, (old, old))


def test_a_dead_owners_segment_is_removed_and_a_living_ones_kept(tmp_path):
    _segment(tmp_path, SEG)
    live = "fastdds_fedcba9876543210"
    _segment(tmp_path, live)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / f"{live}_el")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = clean_stale_segments(tmp_path)
        assert (r.removed, r.in_use) == (1, 1)
        assert r.freed_bytes >= 4096
        assert not (tmp_path / SEG).exists() and not (tmp_path / f"{SEG}_el").exists()
        assert (tmp_path / live).exists() and (tmp_path / f"{live}_el").exists()
    finally:
        holder.kill()
        holder.wait()
    # its owner is dead now: the next pass removes it
    assert clean_stale_segments(tmp_path).removed == 1
    assert not any(tmp_path.iterdir())


def test_young_files_and_other_files_are_left_alone(tmp_path):
    _segment(tmp_path, SEG, age_s=0.0)  # just created: its owner may not have locked it yet
    (tmp_path / "fastdds_not_a_segment_el").write_bytes(b"")
    (tmp_path / "someone_else").write_bytes(b"x")
    old = time.time() - 60
    for n in ("fastdds_not_a_segment_el", "someone_else"):
        os.utime(tmp_path / n, (old, old))
    r = clean_stale_segments(tmp_path, min_age_s=10.0)
    assert r.removed == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [SEG, f"{SEG}_el", "fastdds_not_a_segment_el", "someone_else"])
    assert clean_stale_segments(tmp_path, min_age_s=0.0).removed == 1


def test_a_dead_port_goes_with_its_semaphore(tmp_path):
    _segment(tmp_path, "fastdds_port7411", size=100)
    (tmp_path / "sem.fastdds_port7411_mutex").write_bytes(b"s")
    assert clean_stale_segments(tmp_path).removed == 1
    assert not any(tmp_path.iterdir())


def test_the_command_prints_one_line(tmp_path, capsys):
    _segment(tmp_path, SEG, size=2 * 2**20)
    assert main(["--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("removed 1 stale Fast DDS shared-memory segment(s), 2 MiB freed; 0 in use"), out


def test_a_missing_folder_is_nothing_to_clean(tmp_path):
    r = clean_stale_segments(tmp_path / "absent")
    assert (r.removed, r.in_use, r.errors) == (0, 0, [])


def test_a_dry_run_removes_nothing(tmp_path, capsys):
    _segment(tmp_path, SEG)
    assert main(["--dir", str(tmp_path), "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("(dry run) would have removed 1 stale")
    assert (tmp_path / SEG).exists() and (tmp_path / f"{SEG}_el").exists()
