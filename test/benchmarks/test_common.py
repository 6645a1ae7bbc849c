"""benchmarks.common: the timing loops, percentiles, memory readers and results files every benchmark uses."""

from __future__ import annotations

import json
import math
import os

import numpy as np
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


def test_percentile_interval_and_wilson_and_threshold_verdict():
    from benchmarks.common import percentile_interval_ms, threshold_verdict, wilson_pct

    rng = np.random.default_rng(1)
    seconds = list(rng.uniform(0.4, 0.6, 400))
    low, high = percentile_interval_ms(seconds, 95)
    p95 = float(np.percentile(np.array(seconds) * 1e3, 95))
    assert 400 < low <= p95 <= high < 600 and high - low < 40
    assert percentile_interval_ms(seconds[:15], 95) is None  # fewer than two blocks: no interval
    assert percentile_interval_ms(seconds, 95) == percentile_interval_ms(seconds, 95)  # seeded
    # 54 of 55 is 98 %, but its interval reaches below 95 %: not resolved against ">= 95 %"
    iv = wilson_pct(54, 55)
    assert iv[0] < 95 < 98.2 < iv[1] <= 100 and threshold_verdict(iv, 95.0, at_most=False) == "not resolved"
    assert threshold_verdict(wilson_pct(990, 1000), 95.0, at_most=False) == "met"
    assert threshold_verdict(wilson_pct(50, 100), 95.0, at_most=False) == "missed"
    assert wilson_pct(0, 0) is None and threshold_verdict(None, 1.0, at_most=True) == "not measured"
    assert threshold_verdict((600.0, 700.0), 1000.0, at_most=True) == "met"
    assert threshold_verdict((240.0, 300.0), 250.0, at_most=True) == "not resolved"
    assert threshold_verdict((260.0, 300.0), 250.0, at_most=True) == "missed"


def test_load_and_graph_documents_come_from_the_record():
    from benchmarks import bench_graph, bench_load

    mode = {"answered": 4961, "queries_s": 124.0, "errors": 0, "p50_ms": 152.0, "p95_ms": 278.0,
            "p95_ci_ms": [265.0, 290.0], "p99_ms": 331.0, "ingest_base": 1.0, "ingest_loaded": 0.2,
            "load_avg_start": [8.6, 0, 0], "load_avg_end": [8.5, 0, 0]}
    rec = {"command": "tools/env.sh python -m benchmarks.bench_load --compare-serial", "git": "abc", "machine": "cpu",
           "config": "test", "clients": 20, "seconds": 40.0, "verdict": "missed",
           "modes": {"concurrent": mode, "serial": {**mode, "queries_s": 62.0, "p95_ms": 556.0, "p95_ci_ms": None}},
           "ratios": {"queries_s": 2.0, "p95": 0.5}}
    text = bench_load.doc_table(rec)
    assert "| concurrent | 4,961 (124/s) | 0 | 152 | **278** [265, 290] | 331 | 0.20 | 8.6-8.5 |" in text
    assert "| serial |" in text and "queries/s x2.00, p95 x0.50" in text and "**missed**" in text
    assert text.startswith("Generated by `tools/env.sh python -m benchmarks.bench_load --compare-serial`")
    g = {"command": "tools/env.sh python -m benchmarks.bench_graph --seconds 5", "label": "x", "git": "abc",
         "machine": {"cpu": "cpu"}, "load_avg_start": [1.0], "load_avg_end": [2.0], "video": "v.mp4"}
    block = bench_graph.doc_block(g, "\nline one\nline two\n")
    assert "```\nline one\nline two\n```" in block and "load average 1.0 at the start, 2.0 at the end" in block


def test_paired_ratio_interval():
    base = [2.0, 2.2, 1.8, 2.1, 2.0]
    other = [1.0, 1.1, 0.9, 1.05, 1.0]  # every round exactly twice as fast
    ratio, low, high, n = common.paired_ratio_interval(base, other)
    assert n == 5 and ratio == pytest.approx(2.0) and low == pytest.approx(2.0) and high == pytest.approx(2.0)
    ratio, low, high, n = common.paired_ratio_interval(base + [9.0], [1.0, 1.0, 1.0, 1.0, 1.0])  # extra round unpaired
    assert n == 5 and low < ratio < high
    assert common.paired_ratio_interval([1.0], [0.5]) is None
