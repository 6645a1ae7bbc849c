"""benchmarks.bench_gallery: a small real run writes x with its paired bootstrap interval and the verdicts."""

from __future__ import annotations

import json


def test_small_run_writes_intervals_and_verdicts(tmp_path):
    from benchmarks import bench_gallery

    import faiss

    out, doc = tmp_path / "g.json", tmp_path / "doc.md"
    doc.write_text("<!-- results:bench_gallery -->\n<!-- /results:bench_gallery -->\n")
    threads = faiss.omp_get_max_threads()
    assert bench_gallery.main(["--sizes", "10000", "--queries", "30", "--warm", "--json", str(out), "--doc",
                               str(doc)]) == 0
    assert faiss.omp_get_max_threads() == threads  # main() times on one thread; its caller keeps its own
    row = json.loads(out.read_text())["rows"][0]
    for name in ("fp32", "fp16", "ivf"):
        low, high = row[name]["x_ci"]
        assert 0 < low <= high
    text = doc.read_text()
    assert "`fp32` >= 1x the flat index: 10,000: x" in text and "`ivf` >= 2x the flat index" in text
    assert any(f"**{v}**" in text for v in ("met", "missed", "not resolved"))


def test_interval_is_paired_over_queries():
    from benchmarks import bench_gallery

    flat = [1.0, 2.0, 3.0, 4.0] * 10
    times = {"flat": flat, "fp32": [t * 2 for t in flat], "fp16": flat, "ivf": [t / 2 for t in flat]}
    iv = bench_gallery.x_intervals(times)
    assert iv["fp32"] == [0.5, 0.5] and iv["fp16"] == [1.0, 1.0] and iv["ivf"] == [2.0, 2.0]


def test_too_small_a_gallery_is_a_usage_error(capsys):
    import pytest

    from benchmarks import bench_gallery

    with pytest.raises(SystemExit) as exc:
        bench_gallery.main(["--sizes", "4096"])
    assert exc.value.code == 2 and "sizes must be >= 6000" in capsys.readouterr().err
