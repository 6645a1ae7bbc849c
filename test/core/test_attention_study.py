"""benchmarks/attention_study.py: cell plan, analytic figures, attention-only memory, study configs, verdicts."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def study():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import attention_study
        import study_cells
        import study_report
        yield attention_study, study_cells, study_report
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


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


def _cells(rates: dict, r1: dict) -> dict:
    cache = {}
    for (arch, name, shape), crops in rates.items():
        cache[f"speed|{arch}|{name}|{shape}"] = {"batches": {str(b): {"crops_s": crops, "peak_mb": 10.0}
                                                             for b in (1, 8, 32)}, "spec": {"max_iters": 10}}
    for name, values in r1.items():
        for seed, v in enumerate(values):
            cache[f"train|{name}|{seed}"] = {"rank1": v, "map": v, "train_s": 1.0, "chance_rank1": 1.25,
                                             "spec": {"ids": 800}}
    return cache


@pytest.mark.parametrize("speedup, prune_r1, verdict", [
    (1.6, [49.0, 50.0, 51.0], "met"), (1.4, [49.0, 50.0, 51.0], "missed"), (1.6, [45.0, 46.0, 47.0], "missed")])
def test_prune_verdict_needs_both_speed_and_accuracy(study, speedup, prune_r1, verdict):
    _, _, rep = study
    cache = _cells({("ViT-B-16", "sdpa", "deploy"): 5.0, ("ViT-B-16", "prune", "deploy"): 5.0 * speedup},
                   {"sdpa": [50.0, 51.0, 52.0], "prune 0.5": prune_r1})
    line = rep.targets(cache)[0]
    assert line.endswith(f"**{verdict}**.")


def test_small_encoder_verdict(study):
    _, _, rep = study
    rates = {("ViT-B-16", "sdpa", "deploy"): 5.0, ("PS-MobileNetV4-S", "sdpa", "deploy"): 50.0}
    close = rep.targets(_cells(rates, {"sdpa": [50.0, 50.0], "MobileNetV4-S": [47.0, 46.0]}))[2]
    far = rep.targets(_cells(rates, {"sdpa": [50.0, 50.0], "MobileNetV4-S": [40.0, 41.0]}))[2]
    assert "**met**" in close and "**met**" not in far


def test_accuracy_table_counts_seeds_and_says_what_is_missing(study):
    _, _, rep = study
    args = argparse.Namespace(seeds=3, epochs=10, batch=32, ids=800, threads=2, jobs=2)
    table = "\n".join(rep.accuracy_table(_cells({}, {"sdpa": [50.0, 52.0, 54.0], "lam": [40.0]}), args))
    assert "| sdpa | PS-Study-ViT | sdpa | 3/3 | 52.0 ± 2.0 | 50.0 / 52.0 / 54.0 | 0.0 ± 0.0 |" in table
    assert "| lam | PS-Study-ViT | lam | 1/3 | 40.0 ± 0.0 | 40.0 | -10.0 ± 0.0 |" in table
    assert "--only accuracy --seeds 3" in table and "lam" in table.split("fewer than 3 seeds")[1]


def test_pareto_front(study, tmp_path):
    _, _, rep = study
    rates = {("ViT-B-16", "sdpa", "deploy"): 5.0, ("ViT-B-16", "prune", "deploy"): 7.5,
             ("ViT-B-16", "window", "deploy"): 4.0}
    cache = _cells(rates, {"sdpa": [50.0], "prune 0.5": [45.0], "window 5": [40.0]})
    front = rep.pareto_plot(cache, tmp_path / "p.png")
    assert sorted(n for n, _, _ in front) == ["prune 0.5", "sdpa"]  # window is slower and worse: dominated
    assert (tmp_path / "p.png").stat().st_size > 0
