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
