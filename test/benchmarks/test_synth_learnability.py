"""benchmarks.synth_learnability: the document block comes from the results file (and only the block)."""

from __future__ import annotations

import json

import pytest

from benchmarks import synth_learnability as sl
from benchmarks.common import new_record, finish_record


def _result(tmp_path):
    rec = finish_record(new_record({"ids": 400, "epochs": 15, "lr": 0.001, "seed": 0,
                                    "json": "docs/synth_learnability.json", "doc": "docs/lab.md"}, "learnability"))
    rows = {"trained": {"R1": 31.25, "R5": 60.0, "R10": 75.0, "mAP": 30.0, "mINP": 20.0},
            "untrained": {"R1": 2.5, "R5": 12.5, "R10": 25.0, "mAP": 5.0, "mINP": 3.0},
            "caption-shuffled control": {"R1": 2.5, "R5": 11.0, "R10": 24.0, "mAP": 5.1, "mINP": 3.0}}
    res = {"run": rec, "data": {"path": "runs/x", "ids": {"train": 320, "val": 40, "test": 40}, "size": [128, 64],
                                "chance_rank1_test": 2.5, "test_queries": 160, "test_ids_with_a_held_out_pair": 20},
           "model": {"arch": "PS-Tiny-ViT", "input": [64, 64], "epochs": 15, "lr": 0.001, "batch": 64, "seed": 0},
           "train_s": {"trained": 900.0, "caption-shuffled control": 910.0}, "rows": rows}
    path = tmp_path / "sl.json"
    path.write_text(json.dumps(res))
    return path


def test_from_json_writes_the_block_with_its_command_and_run(tmp_path):
    doc = tmp_path / "lab.md"
    doc.write_text("before\n<!-- results:learnability -->\nold\n<!-- /results:learnability -->\nafter\n")
    assert sl.main(["--from-json", str(_result(tmp_path)), "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text
    assert "`python -m benchmarks.synth_learnability --ids 400 --epochs 15 --lr 0.001 --seed 0 " in text
    assert "| trained | 31.25 | 60.00 |" in text and "| trained: t2i-unseen-pairs | not run" in text
    assert "chance Rank-1 2.50 %" in text and "never comparable with CUHK-PEDES" in text


def test_doc_needs_a_results_file(tmp_path):
    with pytest.raises(SystemExit) as e:
        sl.main(["--doc", str(tmp_path / "lab.md")])
    assert e.value.code == 2
