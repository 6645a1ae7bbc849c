"""benchmarks.attention_study: cell plan, analytic figures, attention-only memory, study configs, verdicts."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Sequence

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def study():
    from benchmarks import attention_study, study_cells, study_report
    return attention_study, study_cells, study_report


def test_speed_plan_has_every_cell_once_and_targets_first(study):
    st, _, _ = study
    full = [k for k, _ in st.speed_cells(False)]
    assert len(full) == len(set(full)) == 2 * (len(st.VARIANTS) + len(st.SMALL))
    assert full[0] == "speed|ViT-B-16|sdpa|deploy"  # the baseline of every ratio is measured first
    quick = [k for k, _ in st.speed_cells(True)]
    assert {"speed|ViT-B-16|prune|deploy", "speed|ViT-B-16|window|large", "speed|PS-MobileNetV4-S|sdpa|deploy"} <= set(
        quick) and set(quick) < set(full)
    gpu = [k for k, s in st.speed_cells(False, "cuda")]
    assert all(k.endswith("|cuda") for k in gpu) and not set(gpu) & set(full)
    assert all(s["device"] == "cuda" for _, s in st.speed_cells(True, "cuda"))


def test_analytic_figures_of_prune_and_window(study):
    _, cells, _ = study
    full = cells.attention_figures(cells.vit_kernels({"kind": "sdpa"}, (24, 8)))
    prune = cells.attention_figures(cells.vit_kernels({"kind": "prune", "prune_keep": 0.5}, (24, 8)))
    assert full["token_layers"] == 12 * 193
    # keep 0.5 before layer 4: 4 layers at 193 tokens, 8 at 1 + 96 kept + 1 fused
    assert prune["token_layers"] == 4 * 193 + 8 * 98
    big = cells.attention_figures(cells.vit_kernels({"kind": "sdpa"}, (48, 16)))
    win = cells.attention_figures(cells.vit_kernels({"kind": "window", "window_size": 7}, (48, 16)))
    assert win["peak_scores_mb_b1"] < big["peak_scores_mb_b1"] / 3
    assert win["attn_gflops"] < big["attn_gflops"]


def test_attention_only_memory_cell_runs_the_kernel(study):
    _, cells, _ = study
    out = cells.attnmem({"attention": {"kind": "window", "window_size": 7}, "size": [384, 128], "batches": [1, 2],
                         "threads": 1})
    assert out["tokens"] == 193
    assert set(out["batches"]) == {"1", "2"} and all(v["ms"] > 0 for v in out["batches"].values())


def test_small_study_configs_share_the_study_text_tower(study, tmp_path):
    st, _, _ = study
    written = st.write_study_configs(tmp_path)
    cfgs = {p.stem: json.loads(p.read_text()) for p in written}
    assert set(cfgs) == {"PS-Study-ViT", *st.SMALL_STUDY}
    for name, shipped in st.SMALL_STUDY.items():
        assert cfgs[name]["text_cfg"] == st.STUDY_VIT["text_cfg"]
        assert cfgs[name]["embed_dim"] == st.STUDY_VIT["embed_dim"]
        own = json.loads((ROOT / "person_search" / "model_configs" / f"{shipped}.json").read_text())
        assert cfgs[name]["vision_cfg"] == own["vision_cfg"]  # the shipped timm tower, unchanged
    assert all(st.TRAIN_CELLS[n][0] in cfgs for n in st.TRAIN_CELLS)


def test_training_cell_goes_through_the_lab_loop_and_the_served_encoder(study, tmp_path):
    """A training cell is ``person-search train``'s loop (run folder, metrics log) and is scored as served."""
    from person_search.lab.data.synth import SynthConfig, generate
    _, cells, _ = study
    data = tmp_path / "data"
    generate(data, SynthConfig(ids=16, images_per_id=2, seed=3, size=(128, 64), val_ids=0, test_ids=8), progress=False)
    spec = {"name": "sdpa", "arch": "PS-Tiny-ViT", "attention": {"kind": "window", "window_size": 3},
            "size": [64, 32], "seed": 1, "data": str(data), "batch": 8, "lr": 1e-3, "warmup": 3, "epochs": 2,
            "threads": 1, "run_dir": str(tmp_path / "run"), "save": str(tmp_path / "ckpt.pt"), "progress": False}
    out = cells.train(spec)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if r["kind"] == "train"]
    assert steps == list(range(1, out["steps"] + 1)) and out["steps"] >= 4 and out["steps"] % 2 == 0  # 2 epochs
    assert rows[0]["lr"] < rows[1]["lr"]  # the linear warm-up of the loop
    info = json.loads((tmp_path / "run" / "model.json").read_text())
    assert info["attention"] == "window" and info["train_config"]["attention_settings"] == {"window_size": 3}
    assert info["loss"] == "infonce" and info["train_config"]["learn_logit_scale"]
    assert out["model_id"] == "PS-Tiny-ViT@random-seed1+window(window_size=3,window_dilation=1)"
    assert 0.0 <= out["rank1"] <= 100.0 and out["chance_rank1"] == pytest.approx(100 / 8)
    assert (tmp_path / "ckpt.pt").is_file()


RECIPE = {"data": "runs/attention_study/data_800", "ids": 800, "size": [96, 32], "batch": 32, "lr": 1e-3,
          "warmup": 0, "epochs": 10, "init": "seed", "loop": "lab"}


def _rec(run: str) -> dict:
    return {"run_id": run, "commit": "abc", "args": {}, "machine": {"cpu": "test", "cores": 2}, "load1_start": 1.0,
            "load1_cell": 1.0}


def _cells(rates: dict, r1: dict, *, run: str = "r1", runs: dict = None, recipe: dict = None) -> dict:
    """Cache with speed cells {(arch, name, shape): crops/s} (run ``run``, or ``runs[key]``; None = no record) and
    training cells {name: [Rank-1 per seed]} with ``recipe`` (default: the current one)."""
    cache = {}
    for (arch, name, shape), crops in rates.items():
        key = f"speed|{arch}|{name}|{shape}" if arch != "study" else f"speed|study|{name}"
        rid = (runs or {}).get((arch, name, shape), run)
        cache[key] = {"batches": {str(b): {"crops_s": crops, "peak_mb": 10.0} for b in (1, 8, 32)},
                      "spec": {"max_iters": 10}, **({"run": _rec(rid)} if rid else {})}
    for name, values in r1.items():
        for seed, v in enumerate(values):
            cache[f"train|{name}|{seed}"] = {"rank1": v, "map": v, "train_s": 1.0, "chance_rank1": 1.25,
                                             "spec": {**(RECIPE if recipe is None else recipe), "jobs": 2,
                                                      "threads": 1}, "run": _rec("acc")}
    return cache


@pytest.mark.parametrize("speedup, prune_r1, verdict", [
    (1.6, [50.5, 51.5, 52.5], "met"), (1.4, [50.5, 51.5, 52.5], "missed"), (1.6, [45.0, 46.0, 47.0], "missed"),
    (1.6, [47.0, 53.0, 46.5], "not resolved")])  # paired deltas -3, +2, -5.5: the interval straddles -2
def test_prune_verdict_needs_both_speed_and_accuracy_of_the_same_towers(study, speedup, prune_r1, verdict):
    _, _, rep = study
    rates = {("study", "sdpa", ""): 5.0, ("study", "prune 0.5", ""): 5.0 * speedup}
    cache = _cells(rates, {"sdpa": [50.0, 51.0, 52.0], "prune 0.5": prune_r1})
    assert rep.targets(cache, RECIPE)[0].split("Target")[1].startswith(
        f" >= 1.5x with <= 2 points lost: **{verdict}**")


def test_verdict_is_not_measured_without_the_same_pair_or_one_run(study):
    _, _, rep = study
    r1 = {"sdpa": [50.0, 51.0, 52.0], "prune 0.5": [50.5, 51.5, 52.5]}
    # the old join: ViT-B/16 speed (deploy size) with study-ViT accuracy -> no verdict
    vit = _cells({("ViT-B-16", "sdpa", "deploy"): 5.0, ("ViT-B-16", "prune", "deploy"): 8.0}, r1)
    assert "**not measured**" in rep.targets(vit, RECIPE)[0]
    # the same pair, but the two speed cells from different runs, or one without a run record
    pair = {("study", "sdpa", ""): 5.0, ("study", "prune 0.5", ""): 8.0}
    for runs in ({("study", "sdpa", ""): "other"}, {("study", "sdpa", ""): None}):
        line = rep.targets(_cells(pair, r1, runs=runs), RECIPE)[0]
        assert "**not measured**" in line and ("other run" in line or "no run record" in line)
    # accuracy cells of another recipe (the fixed-init cells of the earlier code) are not used either
    legacy = {k: v for k, v in RECIPE.items() if k != "init"}
    assert "**not measured**" in rep.targets(_cells(pair, r1, recipe=legacy), RECIPE)[0]
    assert "**met**" in rep.targets(_cells(pair, r1), RECIPE)[0]


def test_ratios_only_within_one_run(study):
    _, _, rep = study
    a = {"batches": {"8": {"crops_s": 10.0}}, "run": _rec("x")}
    b = {"batches": {"8": {"crops_s": 5.0}}, "run": _rec("x")}
    get = lambda c: c["batches"]["8"]["crops_s"]  # noqa: E731
    assert rep.same_run_ratio(a, b, get) == 2.0 and rep._rel(a, b, get) == "2.00"
    assert rep.same_run_ratio(a, {**b, "run": _rec("y")}, get) is None
    assert rep._rel(a, {**b, "run": _rec("y")}, get) == "other run"
    legacy = {"batches": {"8": {"crops_s": 5.0}}}
    assert rep.same_run_ratio(a, legacy, get) is None and rep._rel(a, legacy, get) == "no run record"
    cells = {"speed|ViT-B-16|sdpa|deploy": {**legacy, "spec": {}}, "speed|ViT-B-16|prune|deploy": {**a, "spec": {}}}
    table = "\n".join(rep.speed_tables(cells))
    assert "| ViT-B-16 | prune | x (load 1.0) | not run | 10.00 | not run | not run | no run record |" in table


def test_window_verdict_states_its_baselines(study):
    _, _, rep = study
    cache = {}
    for name, mb in (("sdpa", 20.0), ("eager", 400.0), ("window", 60.0)):
        cache[f"attnmem|ViT-B-16|{name}|large"] = {"batches": {str(b): {"peak_mb": mb * b} for b in (1, 8, 32)},
                                                   "run": _rec("m")}
    line = rep.targets(cache, RECIPE)[1]
    assert "x0.15/x0.15/x0.15 of full attention held as scores (eager)" in line
    assert "x3.00 of the CPU's fused SDPA" in line and line.endswith("**met**.")
    cache["attnmem|ViT-B-16|eager|large"]["run"] = _rec("other")
    assert rep.targets(cache, RECIPE)[1].endswith("**not measured**.")


def test_small_encoder_verdict(study):
    _, _, rep = study
    rates = {("study", "sdpa", ""): 5.0, ("study", "MobileNetV4-S", ""): 50.0}
    close = rep.targets(_cells(rates, {"sdpa": [50.0, 50.0, 51.0], "MobileNetV4-S": [49.0, 49.5, 50.0]}), RECIPE)[2]
    far = rep.targets(_cells(rates, {"sdpa": [50.0, 50.0, 51.0], "MobileNetV4-S": [40.0, 41.0, 41.5]}), RECIPE)[2]
    assert "**met**" in close and "**met**" not in far and "Overall: **missed**" in far


def test_interval95(study):
    _, _, rep = study
    mean, low, high = rep.interval95([1.0, 2.0, 3.0])
    assert mean == 2.0 and low == pytest.approx(2.0 - 4.303 / 3 ** 0.5) and high == pytest.approx(2 * mean - low)
    assert rep.interval95([1.0]) is None


def test_accuracy_table_counts_seeds_and_says_what_is_missing(study):
    _, _, rep = study
    args = argparse.Namespace(seeds=3, epochs=10, batch=32, ids=800, threads=2, jobs=2, lr=1e-3, warmup=0)
    cache = _cells({}, {"sdpa": [50.0, 52.0, 54.0], "lam": [40.0]})
    table = "\n".join(rep.accuracy_table(cache, args, RECIPE))
    assert "| sdpa | PS-Study-ViT | sdpa | 3/3 | 52.0 ± 2.0 | 50.0 / 52.0 / 54.0 | 0.0 ± 0.0 |" in table
    assert "| lam | PS-Study-ViT | lam | 1/3 | 40.0 ± 0.0 | 40.0 | -10.0 ± 0.0 | n < 2 |" in table
    assert "--only accuracy --seeds 3" in table and "lam" in table.split("fewer than 3 seeds")[1]
    # cells of the earlier code (no seeded init) are listed apart, labelled, and not counted
    old = {k: v for k, v in RECIPE.items() if k != "init"}
    cache.update({k.replace("sdpa", "window 5"): {**v, "spec": old} for k, v in
                  _cells({}, {"sdpa": [30.0]}, recipe=old).items()})
    table = "\n".join(rep.accuracy_table(cache, args, RECIPE))
    assert "| window 5 | PS-Study-ViT | window (window_size=5) | 0/3 |" in table
    assert "used in no ratio, no plot and no verdict" in table and "| window 5 | 1 | 30.0 ± 0.0 |" in table


def test_report_text_comes_from_the_cells(study):
    _, _, rep = study
    args = argparse.Namespace(seeds=3, epochs=10, batch=32, ids=800, threads=2, jobs=2, lr=1e-3, warmup=0)
    cache = _cells({}, {"sdpa": [50.0]})
    cache["train|sdpa|0"]["spec"].update(jobs=1, threads=2)
    text = rep.render([], [], [], [], [], args, RECIPE, "note", cache)
    assert "1 run(s) at a time with 2 CPU thread(s) each" in text and "two runs" not in text
    assert "seed s draws the model's initial weights" in text


def test_resumed_run_keeps_its_id_only_for_the_same_commit_and_arguments(study, monkeypatch):
    st, _, _ = study
    args = argparse.Namespace(quick=True, threads=2, cell_timeout=900.0, cells=None)
    cache = {}
    first = st.start_run(cache, args, "speed", ["a"])
    assert st.start_run(cache, args, "speed", ["a"])["run_id"] == first["run_id"]  # unfinished: resume
    args.threads = 1
    assert st.start_run(cache, args, "speed", ["a"])["run_id"] != first["run_id"]  # other arguments: a new run
    cache["run|speed"]["finished"] = True
    before = cache["run|speed"]["run_id"]
    assert st.start_run(cache, args, "speed", ["a"])["run_id"] != before  # finished: a new run


def test_pareto_front(study, tmp_path):
    _, _, rep = study
    rates = {("study", "sdpa", ""): 5.0, ("study", "prune 0.5", ""): 7.5, ("study", "window 5", ""): 4.0}
    cache = _cells(rates, {"sdpa": [50.0], "prune 0.5": [45.0], "window 5": [40.0]})
    front = rep.pareto_plot(cache, tmp_path / "p.png", RECIPE)
    assert sorted(n for n, _, _ in front) == ["prune 0.5", "sdpa"]  # window is slower and worse: dominated
    assert (tmp_path / "p.png").stat().st_size > 0
    assert rep.pareto_plot(_cells(rates, {"sdpa": [50.0]}, run=None), tmp_path / "q.png", RECIPE) == []


def test_run_record_says_commit_arguments_machine_and_load(study):
    from benchmarks import common as run_record
    rec = run_record.new_record({"threads": 2}, "speed")
    assert rec["run_id"].startswith("speed-") and rec["args"] == {"threads": 2}
    assert rec["commit"] == "unknown" or len(rec["commit"].split("+")[0]) == 40
    assert rec["machine"]["cores"] and isinstance(rec["load1_start"], float)
    assert run_record.same_run({"run": rec}, {"run": dict(rec)}) and not run_record.same_run({"run": rec}, {})


def test_no_verdict_from_speed_alone(study):
    _, _, rep = study
    rates = {("study", "sdpa", ""): 5.0, ("study", "prune 0.5", ""): 5.5}  # too slow, but no accuracy cells
    assert "**not measured**" in rep.targets(_cells(rates, {}), RECIPE)[0]
    assert rep.verdict([1.1], 1.5, [], 2.0) == "not measured" and rep.verdict([1.1], 1.5, [0.0, 1.0], 2.0) == "missed"


def _rounds(rates: Sequence[float], rid: str = "r1") -> dict:
    """A study-scale speed cell timed in len(rates) rounds (crops/s of round i at every batch)."""
    rounds = [{"batches": {str(b): {"crops_s": r, "peak_mb": 10.0} for b in (1, 8, 32)}, "load1_cell": 1.0}
              for r in rates]
    med = sorted(rates)[len(rates) // 2]
    return {"batches": {str(b): {"crops_s": med, "peak_mb": 10.0} for b in (1, 8, 32)}, "rounds": rounds,
            "spec": {"max_iters": 10}, "run": _rec(rid)}


def test_ratio_over_rounds_pairs_round_i_with_round_i_and_gives_an_interval(study):
    _, _, rep = study
    base, cell = _rounds([10.0, 5.0, 8.0]), _rounds([15.0, 7.5, 12.0])  # every round exactly x1.5
    get = lambda c: c["batches"]["8"]["crops_s"]  # noqa: E731
    x, low, high = rep.ratio_interval(cell, base, get)
    assert x == pytest.approx(1.5) and low == pytest.approx(1.5) and high == pytest.approx(1.5)
    assert rep._rel(cell, base, get) == "1.50 [1.50, 1.50]"
    noisy = _rounds([14.0, 8.0, 12.0])  # per-round x1.4, x1.6, x1.5: geometric mean, t interval on the logs
    x, low, high = rep.ratio_interval(noisy, base, get)
    logs = [math.log(v) for v in (1.4, 1.6, 1.5)]
    assert x == pytest.approx(math.exp(sum(logs) / 3)) and low < 1.4 < 1.6 < high
    assert rep.same_run_ratio(noisy, base, get) == pytest.approx(x)
    assert rep.ratio_interval(noisy, {**base, "run": _rec("other")}, get) is None  # never across runs
    single = {**cell, "rounds": []}  # one measurement: the ratio, no interval
    assert rep.ratio_interval(single, base, get) == (pytest.approx(1.5),) * 3 and rep._rel(single, base, get) == "1.50"


@pytest.mark.parametrize("prune_rounds, verdict", [
    ([7.8, 7.9, 7.7], "met"),  # x1.54-1.58 every round: the interval clears 1.5
    ([6.0, 6.1, 5.9], "missed"),  # x1.2: the whole interval below 1.5
    ([9.0, 5.0, 7.5], "not resolved")])  # x1.8, x1.0, x1.5: the interval straddles 1.5
def test_prune_verdict_uses_the_speed_interval_over_rounds(study, prune_rounds, verdict):
    _, _, rep = study
    cache = _cells({}, {"sdpa": [50.0, 51.0, 52.0], "prune 0.5": [50.5, 51.5, 52.5]})
    cache["speed|study|sdpa"] = _rounds([5.0, 5.0, 5.0])
    cache["speed|study|prune 0.5"] = _rounds(prune_rounds)
    line = rep.targets(cache, RECIPE)[0]
    assert f"lost: **{verdict}**" in line and "[" in line.split("study ViT throughput")[1].split("(b1")[0]
    assert rep.verdict([(1.3, 1.0, 1.6)], 1.5, [0.0, 1.0], 2.0) == "not resolved"
    assert rep.verdict([(1.3, 1.0, 1.6)], 1.5, [-9.0, -8.0], 2.0) == "missed"  # a missed half decides


def test_speed_run_times_study_cells_in_rounds_in_one_run(study, monkeypatch, tmp_path):
    """``--rounds 2``: the study sdpa tower timed twice in fresh subprocesses, both rounds under one run id."""
    st, _, rep = study
    monkeypatch.setattr(st, "SPEED_CACHE", tmp_path / "speed.json")
    monkeypatch.setattr(st, "CACHE", tmp_path / "train.json")
    args = argparse.Namespace(quick=True, threads=1, cell_timeout=300.0, cells="speed|study|sdpa", rounds=2)
    plan = st.speed_plan(args, "speed")
    assert [(k, r) for k, _, r in plan] == [("speed|study|sdpa", 0), ("speed|study|sdpa", 1)]
    full = st.speed_plan(argparse.Namespace(quick=False, cells=None, rounds=3), "speed")
    study_rounds = [r for k, _, r in full if k.startswith("speed|study|")]
    assert study_rounds == sorted(study_rounds) and study_rounds.count(2) == len(st.TRAIN_CELLS)  # round by round
    assert all(r == 0 for k, _, r in full if not k.startswith("speed|study|"))  # deploy-size cells: once
    cache = {}
    st.run_speed(args, cache, "speed")
    cell = json.loads((tmp_path / "speed.json").read_text())["speed|study|sdpa"]
    assert len(cell["rounds"]) == 2 and cell["run"]["run_id"] == cache["run|speed"]["run_id"]
    assert cache["run|speed"]["finished"] and cache["run|speed"]["args"]["rounds"] == 2
    per_round = [r["batches"]["8"]["crops_s"] for r in cell["rounds"]]
    assert cell["batches"]["8"]["crops_s"] == pytest.approx(sum(per_round) / 2) and min(per_round) > 0
    assert rep.ratio_interval(cell, cell, lambda c: rep._crops(c, 8)) == (pytest.approx(1.0),) * 3
    st.run_speed(args, cache, "speed")  # a finished run is not resumed: a new run id, timed again
    assert json.loads((tmp_path / "speed.json").read_text())["speed|study|sdpa"]["run"]["run_id"] != cell["run"][
        "run_id"]
