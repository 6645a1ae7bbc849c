"""benchmarks.bench_e2e: the logic beyond the live graph (arguments, the training commands, the intervals).

The live run itself is test/ros/test_e2e_small.py.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def e2e():
    from benchmarks import bench_e2e
    return bench_e2e


def test_model_or_train_is_required_and_not_both(e2e, capsys):
    assert e2e.main([]) == 2
    assert "--model RUN (a lab run folder) or --train is required" in capsys.readouterr().err
    assert e2e.main(["--model", "x", "--train"]) == 2
    assert "not both" in capsys.readouterr().err


def test_train_commands_are_the_recipe_and_stay_in_the_work_folder(e2e, tmp_path):
    run, data, cmds = e2e.train_commands(tmp_path, steps=123, seed=4, threads=1)
    assert run.parent.parent == tmp_path and data.parent == tmp_path
    assert cmds[0][:3] == ["data", "crowd", str(data)]
    train = cmds[1]
    opt = dict(zip(train[1::2], train[2::2]))  # every option of `train` takes one value
    assert opt["--max-steps"] == "123" and opt["--seed"] == "4" and opt["--out"] == str(run)
    assert opt["--arch"] == e2e.TRAIN_RECIPE["arch"] and opt["--weights"] == ""


def test_a_trained_folder_is_reused_only_for_the_same_commands(e2e, tmp_path, monkeypatch):
    run, data, cmds = e2e.train_commands(tmp_path, steps=10, seed=0, threads=1)
    run.mkdir(parents=True)
    data.mkdir()
    (data / "reid_raw.json").write_text("[]")
    monkeypatch.setattr("person_search.core.models.run.read_model_json", lambda r: {"arch": "x"})
    shown = [{"command": "person-search " + shlex.join(c), "wall_s": 1.0} for c in cmds]
    (tmp_path / "train_steps.json").write_text(json.dumps(shown))
    assert e2e.train_model(tmp_path, steps=10, seed=0, threads=1) == (run, data, shown)

    calls = []

    class Done:
        returncode = 1

    monkeypatch.setattr(e2e.subprocess, "run", lambda *a, **k: calls.append(a) or Done())
    with pytest.raises(SystemExit, match="failed"):  # other steps: the folder is not taken as theirs
        e2e.train_model(tmp_path, steps=11, seed=0, threads=1)
    assert calls


def test_intervals_draw_identities_and_pair_by_query(e2e):
    perfect = [{"id": i, "caption": f"c{i}{j}", "r1": 1.0} for i in range(6) for j in range(2)]
    assert e2e.bootstrap_interval(perfect) == (100.0, 100.0)
    half = [dict(q, r1=float(q["id"] % 2)) for q in perfect]
    lo, hi = e2e.bootstrap_interval(half)
    assert lo < 50.0 < hi and 0.0 <= lo and hi <= 100.0
    assert e2e.paired_interval(perfect, perfect) == (0.0, 0.0)
    lo, hi = e2e.paired_interval(half, perfect)  # live loses half the identities: a paired change below 0
    assert hi <= 0.0 and lo < -50.0 < hi


def test_the_page_is_written_from_the_results_file_alone(e2e, tmp_path):
    doc = json.loads((Path(e2e.ROOT) / "docs" / "e2e.json").read_text())
    md = e2e.render_md(doc)
    assert "95 % bootstrap interval" in md and doc["command"] in md
    assert ("run by the command above" in md) == bool(doc["model"].get("trained_here"))
