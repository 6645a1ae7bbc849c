"""benchmarks.lab_proof: the logic beyond calling person-search (recovery, spread, skipping, resuming)."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def lab():
    from benchmarks import lab_proof
    return lab_proof


def test_recovery(lab):
    assert lab.recovery(10.0, 50.0, 46.0) == pytest.approx(90.0)
    assert lab.recovery(10.0, 50.0, 10.0) == pytest.approx(0.0)
    assert lab.recovery(10.0, 50.0, 60.0) == pytest.approx(125.0)  # LoRA above full: over 100 %
    assert lab.recovery(10.0, 10.0, 30.0) is None  # no gain to recover: undefined, not a division by zero
    assert lab.recovery(10.0, 5.0, 30.0) is None


def test_mean_spread(lab):
    assert lab.mean_spread([50.0]) == {"mean": 50.0, "std": 0.0, "min": 50.0, "max": 50.0, "n": 1}
    ms = lab.mean_spread([40.0, 50.0, 60.0])
    assert ms["mean"] == pytest.approx(50.0) and ms["std"] == pytest.approx(10.0)
    with pytest.raises(ValueError):
        lab.mean_spread([])


def test_plan_is_ordered_and_complete(lab, tmp_path):
    steps = lab.plan(tmp_path, seeds=(0, 1), quick=True)
    names = [s.name for s in steps]
    assert len(names) == len(set(names))
    for i, s in enumerate(steps):  # every dependency comes earlier
        assert all(d in names[:i] for d in s.after), s.name
    assert {"train scratch-s0", "train scratch-s1", "train shuffled-s0", "eval untrained", "eval zero-shot-s0",
            "eval zero-shot-s1"} <= set(names)
    by = {s.name: s for s in steps}
    assert "--shuffle-captions" in by["train shuffled-s0"].argv
    # both methods: the same learning-rate grid, steps and batch, from the same seed's model, for every seed
    for seed in (0, 1):
        for lr in lab.QUICK["lr_grid"]:
            full, lora = (by[f"train {lab.adapt_name(m, lr, seed)}"].argv for m in ("full", "lora"))
            assert lora[lora.index("--mode") + 1] == "lora" and "--mode" not in full
            for argv in (full, lora):
                assert argv[argv.index("--weights") + 1] == str(tmp_path / f"scratch-s{seed}" / "best.safetensors")
                assert argv[argv.index("--max-steps") + 1] == str(lab.QUICK["adapt_steps"])
                assert argv[argv.index("--lr") + 1] == f"{lr:g}" and argv[argv.index("--seed") + 1] == str(seed)
    assert by["train scratch-s0"].shell().startswith("person-search train --data ")


def test_default_is_the_passing_recipe_with_three_seeds(lab, tmp_path):
    steps = {s.name: s for s in lab.plan(tmp_path)}
    data = steps["data base"].argv
    assert data[data.index("--ids") + 1] == "1600" and data[data.index("--test-ids") + 1] == "50"
    train = steps["train scratch-s0"].argv
    assert train[train.index("--max-steps") + 1] == "1400" and train[train.index("--batch-size") + 1] == "64"
    assert {"train scratch-s0", "train scratch-s1", "train scratch-s2"} <= set(steps)
    assert train[train.index("--eval-every") + 1] == "200"
    assert tuple(lab.DEFAULT_SEEDS) == (0, 1, 2)


def test_bootstrap_interval_and_verdicts(lab):
    pids = [i // 4 for i in range(200)]  # 50 identities x 4 queries
    rng = np.random.default_rng(0)
    strong = (rng.random(200) < 0.8).astype(int)
    reps = lab.bootstrap_r1([strong], pids, n=500)
    low, high = lab.interval(reps)
    assert low < 100 * strong.mean() < high and high - low < 25
    assert lab.verdict((low, high), 50.0) == "met" and lab.verdict((low, high), 95.0) == "missed"
    assert lab.verdict((45.0, 55.0), 50.0) == "not resolved"
    # identical seeds: the interval is the identities' alone; a seed at chance widens it
    two = lab.interval(lab.bootstrap_r1([strong, strong], pids, n=500))
    assert two == pytest.approx((low, high), abs=3)
    mixed = lab.interval(lab.bootstrap_r1([strong, np.zeros(200, int)], pids, n=500))
    assert mixed[1] - mixed[0] > 3 * (high - low)


def test_bootstrap_recovery(lab):
    pids = [i // 4 for i in range(200)]
    rng = np.random.default_rng(1)
    zero = (rng.random(200) < 0.2).astype(int)
    full = np.maximum(zero, (rng.random(200) < 0.6).astype(int))
    reps = lab.bootstrap_recovery([zero], [full], [full], pids, n=300)
    assert lab.interval(reps) == pytest.approx((100.0, 100.0))
    reps = lab.bootstrap_recovery([zero], [full], [zero], pids, n=300)
    assert lab.verdict(lab.interval(reps), 90.0) == "missed"
    undefined = lab.bootstrap_recovery([zero], [zero], [full], pids, n=100)
    assert lab.interval(undefined) is None and lab.verdict(None, 90.0).startswith("not resolved")


def test_learning_rate_is_picked_on_validation(lab):
    runs = {lab.adapt_name("lora", lr, 0): {"train": {"val_r1": v}, "hits": [1]} for lr, v in ((1e-4, 30.0),
                                                                                               (1e-3, 40.0))}
    runs[lab.adapt_name("full", 1e-4, 0)] = {"train": {"val_r1": 35.0}, "hits": [1]}
    assert lab.select_lr(runs, "lora", 0, (1e-4, 1e-3)) == lab.adapt_name("lora", 1e-3, 0)
    assert lab.select_lr(runs, "full", 0, (1e-4, 1e-3)) == lab.adapt_name("full", 1e-4, 0)
    assert lab.select_lr(runs, "full", 1, (1e-4, 1e-3)) is None


def _results(lab, seeds=(0, 1)) -> dict:
    """A results file as ``collect`` writes it, with made-up per-query hits (the report is generated from it)."""
    pids = [i // 4 for i in range(40)]
    rng = np.random.default_rng(0)

    def run(p, val=None):
        hits = (rng.random(40) < p).astype(int).tolist()
        r1 = 100 * float(np.mean(hits))
        out = {"test": {"R1": r1, "R5": 90.0, "R10": 95.0, "mAP": 50.0, "mINP": 30.0}, "hits": hits,
               "query_pids": pids, "cmc": [r1] * 10}
        if val is not None:
            out["train"] = {"steps": 3, "best_step": 3, "val_r1": val, "trainable": 10, "total": 100,
                            "median_step_s": 0.5, "wall_s": 12.0}
            out["curves"] = {"loss": [[1, 2.0], [2, 1.5]], "val_r1": [[2, val]]}
        return out

    runs = {"untrained": run(0.1), "shuffled-s0": run(0.1, 5.0)}
    for s in seeds:
        runs[f"scratch-s{s}"] = run(0.8, 70.0)
        runs[f"zero-shot-s{s}"] = run(0.2)
        for m in ("full", "lora"):
            for lr, v in zip(lab.QUICK["lr_grid"], (30.0, 40.0)):
                runs[lab.adapt_name(m, lr, s)] = run(0.7, v)
    rec = {"commit": "0123456789abcdef", "machine": {"cpu": "test CPU", "cores": 2}, "load1_start": 1.5,
           "started": "2026-01-01T00:00:00Z", "args": {"out": "runs/x", "seeds": list(seeds), "jobs": 1,
                                                       "threads": 2, "eval_every": 7, "results": "x.json"}}
    data = {k: {"ids": {"train": 32, "val": 4, "test": 10}, "chance_rank1_test": 10.0, "size": [96, 48],
                "images_per_id": 4, "seed": i, "domain": k, "chance_cmc": [10.0] * 10}
            for i, k in enumerate(("base", "shifted"))}
    return {"record": rec, "quick": True, "commands": [["train scratch-s0", "person-search train ..."]],
            "walls": {"train scratch-s0": 12.0}, "data": data, "runs": runs}


def test_report_is_generated_whole_from_the_results_file(lab, tmp_path):
    res = _results(lab)
    text = lab.render(json.loads(json.dumps(res)), tmp_path / "lab_proof.md")
    assert (tmp_path / "lab_proof.md").read_text() == text
    assert (tmp_path / "lab_proof_cmc.png").is_file() and (tmp_path / "lab_proof_loss.png").is_file()
    # the text follows the arguments, not constants
    assert "2 torch thread(s) per run, 1 run(s) at once; validation every 7 steps" in text
    assert "one torch thread per run, two runs at once" not in text
    assert "commit 0123456789ab" in text and "x.json" in text
    assert "95 % bootstrap interval" in text and "Targets: R1 >= 50 % **" in text
    assert "learning rate picked" in text and "Both methods had the same learning-rate grid" in text
    assert "Addendum" not in text
    # a missing seed shows as not run, and LoRA's interval straddling 90 % is "not resolved", never "met"
    res["runs"].pop("scratch-s1")
    assert "| scratch-s1 | not run |" in lab.render(res, tmp_path / "lab_proof.md")


def test_report_only_needs_the_results_file(lab, tmp_path, capsys):
    doc = tmp_path / "doc.md"
    assert lab.main(["--report-only", "--doc", str(doc)]) == 2  # no results file yet: one line
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "doc.json").write_text(json.dumps(_results(lab)))
    assert lab.main(["--report-only", "--doc", str(doc)]) == 0
    assert doc.read_text().startswith("# Proof on generated data (CPU)")


def test_steps_skip_and_resume(lab, tmp_path):
    step = lab.plan(tmp_path, quick=True)[2]  # train scratch-s0
    assert step.name == "train scratch-s0" and not step.is_done()
    assert "--resume" not in step.command()
    (tmp_path / "scratch-s0").mkdir()
    (tmp_path / "scratch-s0" / "state.pt").write_bytes(b"")
    assert step.command()[-1] == "--resume"  # a run cut short continues
    (tmp_path / "scratch-s0" / "model.json").write_text("{}")
    assert step.is_done()


def test_run_steps_skips_finished_steps(lab, tmp_path, monkeypatch):
    steps = lab.plan(tmp_path, quick=True)
    for s in steps:
        s.done.parent.mkdir(parents=True, exist_ok=True)
        s.done.write_text("{}")
    (tmp_path / "walltimes.json").write_text(json.dumps({"train scratch-s0": 12.0}))
    monkeypatch.setattr(lab, "_launch", lambda *a: pytest.fail("a finished step was launched"))
    assert lab.run_steps(steps, tmp_path) == {"train scratch-s0": 12.0}


def test_median_step_time(lab, tmp_path):
    rows = [{"kind": "train", "step_time_s": t} for t in (3.0, 1.0, 2.0)] + [{"kind": "eval", "R1": 5.0}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert lab.median_step_s(tmp_path) == 2.0
    assert lab.median_step_s(tmp_path / "missing") is None
