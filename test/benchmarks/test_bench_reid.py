"""benchmarks.bench_reid: docs/reid.md's tables are drawn from the results file, part by part, with each run."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = ("reid_identity", "reid_sweep", "reid_text", "reid_rerank", "reid_cost", "reid_graph")


def test_redraw_writes_every_block_from_the_results_file(tmp_path):
    from benchmarks import bench_reid

    doc = tmp_path / "reid.md"
    doc.write_text("".join(f"<!-- results:{b} -->\nPLACEHOLDER-XYZ\n<!-- /results:{b} -->\n" for b in BLOCKS))
    res = json.loads((ROOT / "docs" / "reid_results.json").read_text())
    assert bench_reid.main(["--redraw", "--doc", str(doc), "--out", str(ROOT / "docs" / "reid_results.json")]) == 0
    text = doc.read_text()
    assert "PLACEHOLDER-XYZ" not in text
    first = res["identity"]["rows"][1]
    assert (f"| {first['view']} | {first['identity']} | {first['persons']} | {first['ids_per_person']} | "
            f"{first['split_share']} | {first['merge_share']} | {first['bcubed_precision']} | "
            f"{first['bcubed_recall']} |") in text
    assert f"mAP by track {res['text']['mAP_by_track']}, by person {res['text']['mAP_by_person']}" in text
    assert f"**{res['cost']['crops_per_s_reid_off']} crops/s off, {res['cost']['crops_per_s_reid_on']} on**" in text
    assert f"x{res['graph']['throughput_ratio_off_over_on']} in throughput" in text
    assert res["identity"]["run"]["command"] in text  # each block names the run that wrote its part


def test_the_document_is_the_redraw_of_the_committed_results():
    """docs/reid.md holds exactly what --redraw writes from docs/reid_results.json (no hand-edited figure)."""
    from benchmarks import bench_reid

    res = json.loads((ROOT / "docs" / "reid_results.json").read_text())
    doc = (ROOT / "docs" / "reid.md").read_text()
    for name, text in bench_reid.doc_blocks(res).items():
        assert f"<!-- results:{name} -->\n{text}\n<!-- /results:{name} -->" in doc, name
