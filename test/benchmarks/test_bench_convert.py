"""benchmarks.bench_convert: the document's block is drawn from the results file (its cells, its run, its load)."""

from __future__ import annotations


def test_doc_block_from_the_results_file():
    from benchmarks import bench_convert

    out = {"run_id": "bench_convert-x", "commit": "c4e9cb237881aa", "machine": {"cpu": "cpu", "cores": 2},
           "load1_start": 0.7, "load1_end": 0.8, "args": {"json": "docs/bench_convert.json", "doc": "docs/b.md"},
           "frame": [960, 540], "bgr_to_image_ms": 0.9,
           "cells": [{"field_checks": True, "bytes_ms": 74.42, "bytes_n": 5, "frombytes_ms": 0.1, "frombytes_n": 20,
                      "ratio": 744.2},
                     {"field_checks": False, "bytes_ms": 0.1, "bytes_n": 20, "frombytes_ms": 0.1, "frombytes_n": 20,
                      "ratio": 1.0}]}
    text = bench_convert.doc_block(out)
    assert "--json docs/bench_convert.json --doc docs/b.md` (run bench_convert-x, commit c4e9cb237881" in text
    assert "under load 0.7 -> 0.8" in text
    assert "on                      74.42 ms   5         0.10 ms  20    744x" in text
