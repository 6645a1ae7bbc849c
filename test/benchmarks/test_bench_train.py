"""benchmarks.bench_train: its results file feeds docs/lab.md's generated block (no training here: seconds)."""

from __future__ import annotations

import json

import pytest

from benchmarks import bench_train, common


def _result(tmp_path, modes=("full", "frozen-text", "lora")):
    args = {"arch": "ViT-B-16", "image_size": "384x128", "batch": 8, "steps": 2, "warmup": 1, "threads": 2,
            "lora_rank": 16, "modes": list(modes), "device": "cpu", "precision": "auto",
            "json": "docs/bench_train.json", "doc": "docs/lab.md", "from_json": ""}
    figures = {"full": (1000, 10.0, 400.0), "frozen-text": (600, 8.0, 300.0), "lora": (30, 11.0, 100.0)}
    rows = [{"mode": m, "trainable": figures[m][0], "total": 1000, "step_s": figures[m][1],
             "steps": [figures[m][1] - 1, figures[m][1], figures[m][1] + 2],
             "peak_mb": figures[m][2], "model_rss_mb": 50.0, "device": "cpu", "amp": "fp32", "load1_start": 5.5,
             "load1_end": 6.0} for m in modes]
    path = common.write_results(tmp_path / "bench_train.json", common.new_record(args, "bench_train"), rows=rows)
    return path, json.loads(path.read_text())


def test_block_states_the_command_the_run_and_ratios_to_full(tmp_path):
    _, result = _result(tmp_path)
    block = bench_train.doc_block(result)
    assert ("tools/env.sh python -m benchmarks.bench_train --arch ViT-B-16 --image-size 384x128 --batch 8 "
            "--steps 2") in block
    assert "--json docs/bench_train.json --doc docs/lab.md" in block
    assert result["run"]["run_id"] in block and "under load" in block
    lines = {ln.split(" | ")[0].strip("| "): ln for ln in block.splitlines() if ln.startswith("| ")}
    assert "| 8.00 (7.00-10.00) | 0.80 | 300 | 0.75 | 5.5 |" in lines["frozen-text"]  # ratios to full, load
    assert "| 3.00 % | 11.00 (10.00-13.00) | 1.10 | 100 | 0.25 |" in lines["lora"]


def test_no_ratio_without_a_full_row_of_the_same_run(tmp_path):
    _, result = _result(tmp_path, modes=("lora",))
    row = [ln for ln in bench_train.table(result) if ln.startswith("| lora")][0]
    assert row.split(" | ")[4] == "-" and row.split(" | ")[6] == "-"


def test_from_json_redraws_the_block_and_only_the_block(tmp_path):
    path, result = _result(tmp_path)
    doc = tmp_path / "lab.md"
    doc.write_text("before\n<!-- results:bench_train -->\nold figures\n<!-- /results:bench_train -->\nafter\n")
    assert bench_train.main(["--from-json", str(path), "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert "old figures" not in text and text.startswith("before\n") and text.endswith("after\n")
    assert bench_train.doc_block(result) in text


def test_doc_without_block_or_results_file_is_refused(tmp_path, capsys):
    path, _ = _result(tmp_path)
    doc = tmp_path / "other.md"
    doc.write_text("no block here\n")
    assert bench_train.main(["--from-json", str(path), "--doc", str(doc)]) == 2
    assert doc.read_text() == "no block here\n"
    with pytest.raises(SystemExit) as exc:
        bench_train.main(["--doc", str(doc)])  # a document must cite a results file
    assert exc.value.code == 2
