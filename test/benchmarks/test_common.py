"""benchmarks.common: the timing loops, percentiles, memory readers and results files every benchmark uses."""

from __future__ import annotations

import json
import math
import os

import pytest

from benchmarks import common


def test_time_calls_counts_warmup_calls_and_cap():
    seen = []
    times = common.time_calls(lambda: seen.append(1), calls=3, max_calls=3, warmup=2)
    assert len(times) == 3 and len(seen) == 5 and all(t >= 0 for t in times)
    assert len(common.time_calls(lambda: None, calls=1, seconds=0.05, max_calls=7)) == 7  # the cap wins
    synced = []
    common.time_calls(lambda: None, calls=2, max_calls=2, warmup=0, sync=lambda: synced.append(1))
    assert len(synced) == 4  # before and after every timed call


def test_time_interleaved_rounds():
    order = []
    calls = {"a": lambda k: order.append(("a", k)), "b": lambda k: order.append(("b", k))}
    times = common.time_interleaved(calls, seconds=0.0, min_calls=3, warmup=1)
    assert {n: len(t) for n, t in times.items()} == {"a": 3, "b": 3}
    assert order[:2] == [("a", 0), ("b", 0)]  # warm-up, round 0
    assert order[2:] == [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3), ("b", 3)]  # interleaved, in turn
    order.clear()
    wall = common.time_interleaved(calls, seconds=0.0, min_calls=2, warmup=0, wall=True)
    assert {n: len(t) for n, t in wall.items()} == {"a": 2, "b": 2} and order[0] == ("a", 1)


def test_percentile_ms():
    assert common.percentile_ms([0.001, 0.002, 0.003], 50) == pytest.approx(2.0)
    assert common.percentile_ms([0.001, 0.003], [0, 100]) == pytest.approx([1.0, 3.0])
    assert math.isnan(common.percentile_ms([], 95))


def test_memory_readers():
    rss = common.rss_bytes()
    assert rss and rss > 1 << 20 and common.rss_mb() == pytest.approx(rss / 2 ** 20, rel=0.2)
    assert common.rss_bytes(2 ** 22 + 12345) is None  # no such process
    assert common.peak_rss_mb() >= common.rss_mb() * 0.5
    assert common.proc_status_bytes("VmHWM") >= common.proc_status_bytes("VmRSS") * 0.5


def test_results_file_and_document_block(tmp_path):
    rec = common.new_record({"n": 1}, "unit")
    out = common.write_results(tmp_path / "r.json", rec, rows=[1, 2])
    data = json.loads(out.read_text())
    assert data["rows"] == [1, 2] and data["run"]["run_id"] == rec["run_id"] and "load1_end" in data["run"]
    assert data["run"]["machine"]["cores"] == os.cpu_count()
    doc = tmp_path / "doc.md"
    doc.write_text("before\n<!-- results:x -->\nold\n<!-- /results:x -->\nafter\n")
    assert common.replace_block(doc, "x", "new table")
    assert doc.read_text() == "before\n<!-- results:x -->\nnew table\n<!-- /results:x -->\nafter\n"
    assert not common.replace_block(doc, "y", "nothing") and "new table" in doc.read_text()
    assert not common.replace_block(tmp_path / "missing.md", "x", "t")
    assert "under load" in common.describe_run(data["run"]) and rec["run_id"] in common.describe_run(data["run"])
