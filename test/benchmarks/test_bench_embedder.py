"""benchmarks.bench_embedder: the results file it writes (run record, rows, the re-id rows' time share)."""

from __future__ import annotations

import json
import math

import pytest

from person_search.core.paths import shared_models_dir

OSNET = shared_models_dir() / "osnet_x0_25_msmt17" / "osnet_x0_25_msmt17.onnx"


@pytest.mark.skipif(not OSNET.is_file(), reason=f"pretrained OSNet x0_25 not in {OSNET.parent} (shared test data, "
                                                "absent in a user's clone)")
def test_reid_rows_and_run_record_in_the_results_file(tmp_path, capsys):
    from benchmarks import bench_embedder

    out = tmp_path / "reid.json"
    assert bench_embedder.main(["--archs", "PS-Tiny-ViT", "--batches", "1", "2", "--variants", "onnx", "--threads",
                                "1", "--seconds", "0.2", "--reid", "osnet_x0_25_msmt17/osnet_x0_25_msmt17.onnx",
                                "--json", str(out)]) in (0, None)
    text = out.read_text()
    assert "NaN" not in text  # strict JSON: what a reader of the results file can parse
    result = json.loads(text)
    run = result["run"]
    assert run["args"]["reid"].endswith("osnet_x0_25_msmt17.onnx") and run["commit"] and run["machine"]["cores"]
    rows = {(r["batch"], r["variant"]): r for r in result["rows"]}
    assert set(rows) == {(b, v) for b in (1, 2) for v in ("baseline", "onnx", "reid")}
    for b in (1, 2):
        reid, onnx = rows[(b, "reid")], rows[(b, "onnx")]
        assert reid["crops_s"] > 0 and reid["rss_mb"] is None
        share = reid["share_of_clip"]["onnx"]
        assert share == pytest.approx(onnx["crops_s"] / reid["crops_s"])  # re-id time per crop / CLIP tower's
        assert math.isfinite(share) and share > 0
        assert onnx["cos_min"] is None  # no torch row asked for: nothing to compare with, not NaN
    assert "n/a" in capsys.readouterr().out


def test_ratio_interval_and_target_verdict_in_the_table(tmp_path):
    """Each backend's ratio to open_clip eager carries the interval of its paired rounds and the >= 1.3x verdict
    comes from that interval (an old results file without rounds shows the plain ratio and no verdict)."""
    from benchmarks import bench_embedder

    run = {"run_id": "r", "commit": "abc", "machine": {"cpu": "cpu", "cores": 2}, "load1_start": 1.0, "load1_end": 1.0,
           "args": {"threads": 2, "seconds": 2.0, "attention": "sdpa", "json": "x.json"}}
    rows = [{"arch": "A", "batch": 1, "variant": "baseline", "crops_s": 10.0, "ratio": 1.0},
            {"arch": "A", "batch": 1, "variant": "onnx", "crops_s": 20.0, "ratio": 2.0, "ratio_paired": 1.95,
             "ratio_ci": [1.8, 2.1]},
            {"arch": "A", "batch": 1, "variant": "openvino", "crops_s": 13.0, "ratio": 1.3, "ratio_paired": 1.31,
             "ratio_ci": [1.1, 1.5]},
            {"arch": "A", "batch": 1, "variant": "torch", "crops_s": 10.0, "ratio": 1.0}]
    text = bench_embedder.doc_table({"run": run, "rows": rows})
    assert "| A | 1 | 10.00 | 20.00 (1.95 [1.80, 2.10]) | 13.00 (1.31 [1.10, 1.50]) | 10.00 (1.00) |" in text
    assert "met: `onnx` A b1; not resolved: `openvino` A b1." in text  # torch: no rounds recorded, no verdict


def test_from_json_that_is_not_a_results_file_is_a_usage_error(tmp_path, capsys):
    from benchmarks import bench_embedder

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for path in (tmp_path / "missing.json", bad):
        with pytest.raises(SystemExit) as exc:
            bench_embedder.main(["--from-json", str(path), "--doc", str(tmp_path / "d.md")])
        assert exc.value.code == 2 and "not a readable results file" in capsys.readouterr().err


def test_main_in_process_leaves_the_callers_logging_alone(tmp_path):
    """Called as a function (as these tests do), main() must not change the root logger: it once set it to ERROR
    and silenced every INFO record of the tests that ran after it."""
    import logging

    from benchmarks import bench_embedder

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    bench_embedder.main(["--archs", "PS-Tiny-ViT", "--batches", "1", "--variants", "torch", "--threads", "1",
                         "--seconds", "0.05", "--min-rounds", "2"])
    assert root.level == level and root.handlers == handlers
