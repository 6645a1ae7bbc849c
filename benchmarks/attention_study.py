"""The attention study: speed, memory and accuracy of the attention variants and the small encoders.

    tools/env.sh python -m benchmarks.attention_study [--quick] [--only speed|memory|accuracy|report] [--seeds 3]
        [--rounds 5]

Every cell (one tower at one input size; one training run) runs in a fresh subprocess
(``python -m benchmarks.study_cells``) and its result is cached in ``docs/attention_study_cells.json``
(training) or ``docs/attention_study_speed_cells.json`` (speed, memory) as soon as it finishes, with the record
of the run that made it (``run``: run id, git commit, arguments, machine, load average; see
``benchmarks/common.py``). ``--only report`` rewrites ``docs/attention_study.md`` and its PNGs from the
cache alone.

A speed or memory run measures every cell of its kind again (a new run id); an interrupted run resumes under
its id when the commit and the arguments are the same. Ratios are formed only between cells of one run; a cell
without a run record (made by an earlier version of this code) is shown as such and used in no ratio and no
verdict. Training cells are compared only when they share the recipe (data, epochs, batch, learning rate,
warm-up, seeded initialisation): seed ``s`` draws the model's initial weights, the data order and the
augmentation. A verdict joins the speed and the accuracy of the same pair of models (the study-scale towers,
timed at the training input size), else it says "not measured".
Accuracy is measured on generated data (``person-search data synth``) with study-scale
models (CPU): never compare it with CUHK-PEDES numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

from tqdm import tqdm

from benchmarks.common import load_average, new_record, run_id
from benchmarks.study_plan import (CACHE, DOCS, ROOT, SHAPES, SMALL, SMALL_STUDY, SPEED_CACHE, SPEED_OF,  # noqa: F401
                                   STUDY_VIT, TRAIN_CELLS, TRAIN_SIZE, VARIANTS, VIT, WORK, current_recipe,
                                   recipe_of)
from benchmarks.study_report import write_report

TRAIN_PREFIXES = ("train|", "run|accuracy")
SPEED_PREFIXES = ("speed|", "attnmem|", "run|speed", "run|memory")


def _file(kind: str) -> Path:
    return CACHE if kind == "train" else SPEED_CACHE


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def load_cache() -> dict:
    """Return the cached cells (and run records) of both files ({} when none)."""
    train = {k: v for k, v in _read(CACHE).items() if k.startswith(TRAIN_PREFIXES)}
    return {**train, **{k: v for k, v in _read(SPEED_CACHE).items() if k.startswith(SPEED_PREFIXES)}}


def save_cache(cache: dict, kind: str) -> None:
    """Merge this run's ``kind`` cells into their file atomically (a speed and an accuracy run may run at once)."""
    DOCS.mkdir(exist_ok=True)
    path = _file(kind)
    prefixes = TRAIN_PREFIXES if kind == "train" else SPEED_PREFIXES
    merged = {**_read(path), **{k: v for k, v in cache.items() if k.startswith(prefixes)}}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(merged, indent=1, sort_keys=True))
    os.replace(tmp, path)


def run_cell(kind: str, spec: dict, timeout: float) -> dict:
    """Run one cell in a fresh subprocess; return its JSON result or {"error": ...}."""
    env = dict(os.environ, OMP_NUM_THREADS=str(spec.get("threads", 2)))
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.study_cells", kind, json.dumps(spec)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(lines[-1])


FIRST = ["sdpa", "prune", "PS-MobileNetV4-S", "eager", "window"]  # what the targets need, measured first


def study_speed_cells(quick: bool):
    """Yield (key, spec) of the study-scale towers timed at the training input size: the pairs the verdicts join.

    The accuracy cells train these towers (``TRAIN_CELLS``); a verdict compares their speed and their accuracy.
    """
    for name, (arch, att) in TRAIN_CELLS.items():
        yield f"speed|study|{name}", {"arch": arch, "attention": att, "size": list(TRAIN_SIZE),
                                      "batches": [1, 8] if quick else [1, 8, 32], "min_s": 4.0 if quick else 10.0,
                                      "max_iters": 3 if quick else 10, "device": "cpu",
                                      "config_dir": str((WORK / "configs").relative_to(ROOT))}


def speed_cells(quick: bool, device: str = "cpu"):
    """Yield (key, spec) of every speed cell: (arch, variant, shape) with its batches, the targets' cells first.

    ``--quick``: only the cells the targets need (ViT-B/16 sdpa, eager, window, prune; MobileNetV4-S),
    batches 1 and 8 at 384x128, 1 at 768x256, at most 3 calls (4 s) per batch.
    """
    models = [(VIT, name, att) for name, att in VARIANTS.items()] + [(a, "sdpa", {"kind": "sdpa"}) for a in SMALL]
    cells = []
    for shape, size in SHAPES.items():
        for arch, name, att in models:
            batches = ([1, 8] if shape == "deploy" else [1]) if quick else [1, 8, 32]
            spec = {"arch": arch, "attention": att, "size": list(size), "batches": batches,
                    "min_s": 4.0 if quick else 10.0, "max_iters": 3 if quick else 10, "device": device}
            first = (name if arch == VIT else arch) in FIRST and (shape == "deploy" or arch == VIT)
            suffix = "" if device == "cpu" else f"|{device}"
            cells.append((not first, shape != "deploy", f"speed|{arch}|{name}|{shape}{suffix}", spec))
    rank = ["speed|ViT-B-16|sdpa|deploy", "speed|ViT-B-16|prune|deploy", "speed|PS-MobileNetV4-S|sdpa|deploy",
            "speed|ViT-B-16|sdpa|large", "speed|ViT-B-16|window|large", "speed|ViT-B-16|eager|large"]
    rank = [r + ("" if device == "cpu" else f"|{device}") for r in rank]
    cells.sort(key=lambda c: (c[0], rank.index(c[2]) if c[2] in rank else len(rank), c[1]))
    for later, _, key, spec in cells:
        if not (quick and later):  # --quick: only the cells the targets need
            yield key, spec


def attnmem_cells():
    """Yield (key, spec) of the attention-only memory cells: each ViT-B/16 variant's first layer at both shapes."""
    for shape, size in SHAPES.items():
        for name, att in VARIANTS.items():
            yield f"attnmem|{VIT}|{name}|{shape}", {"attention": att, "size": list(size), "batches": [1, 8, 32]}


def run_settings(args, kind: str) -> dict:
    """Return the arguments that define a run of ``kind`` (speed, memory, accuracy): a resumed run must match them."""
    if kind == "speed":
        return {"quick": bool(args.quick), "threads": args.threads, "cell_timeout": args.cell_timeout,
                "cells": getattr(args, "cells", None), "rounds": getattr(args, "rounds", 1)}
    if kind == "memory":
        return {"threads": args.threads, "cells": getattr(args, "cells", None)}
    return {k: getattr(args, k) for k in ("ids", "seeds", "epochs", "batch", "lr", "warmup", "jobs", "threads",
                                          "budget_min", "cell_timeout")}


def start_run(cache: dict, args, kind: str, keys: List[str]) -> dict:
    """Return the run record to measure ``keys`` under: the cached unfinished run of the same commit and
    arguments (resume), else a new one (stored in the cache as ``run|<kind>``)."""
    settings = run_settings(args, kind)
    last = cache.get(f"run|{kind}")
    fresh = new_record(settings, kind)
    if last and not last.get("finished") and last.get("args") == settings and last.get("commit") == fresh["commit"]:
        return last
    cache[f"run|{kind}"] = {**fresh, "cells": list(keys), "finished": False}
    return cache[f"run|{kind}"]


def _cell_record(rec: dict) -> dict:
    keep = ("run_id", "commit", "args", "machine", "load1_start")
    return {k: rec[k] for k in keep} | {"load1_cell": load_average()[0]}


def merge_round(cell: dict, result: dict, load1: float) -> dict:
    """Return ``cell`` with one more timing round (``result`` of a study-scale speed cell) appended.

    ``rounds`` keeps every round's per-batch figures; the cell's own ``batches`` become the median over the
    rounds (the tables' crops/s); ratios pair round i of one cell with round i of its baseline (same run)."""
    import statistics

    rounds = cell.get("rounds", []) + [{"batches": result["batches"], "load1_start": result.get("load1_start"),
                                        "load1_cell": load1}]
    batches = {}
    for b in result["batches"]:
        got = [r["batches"][b] for r in rounds if b in r["batches"]]
        batches[b] = {"crops_s": statistics.median(g["crops_s"] for g in got),
                      "iters": sum(g.get("iters", 0) for g in got),
                      "peak_mb": statistics.median(g["peak_mb"] for g in got)}
    return {**cell, **{k: v for k, v in result.items() if k != "batches"}, "batches": batches, "rounds": rounds}


def speed_plan(args, kind: str) -> List[tuple]:
    """Return (key, spec, round) of a speed or memory run in the order they are measured.

    The deploy-size cells are timed once. The study-scale cells (the speed half of every verdict) are timed
    ``--rounds`` times, round by round: every study cell once, then every one again, each in a fresh subprocess,
    so that the ratios of one round are taken close in time and the spread over rounds gives their interval."""
    if kind == "speed":
        import torch

        write_study_configs(WORK / "configs")
        gpu = [*speed_cells(args.quick, "cuda")] if torch.cuda.is_available() else []  # GPU rows where there is one
        once = [(k, sp, 0) for k, sp in [*speed_cells(args.quick), *gpu]]
        study = [*study_speed_cells(args.quick)]
        plan = once + [(k, dict(sp), r) for r in range(max(1, getattr(args, "rounds", 1))) for k, sp in study]
    else:
        plan = [(k, sp, 0) for k, sp in attnmem_cells()]
    return [(k, sp, r) for k, sp, r in plan if not getattr(args, "cells", None) or args.cells in k]


def _done(cell: Optional[dict], rid: str, rnd: int) -> bool:
    """Whether round ``rnd`` of a cell is already in the cache for run ``rid``."""
    if not cell or run_id(cell) != rid or "error" in cell:
        return False
    return rnd == 0 or len(cell.get("rounds", [])) > rnd


def run_speed(args, cache: dict, kind: str = "speed") -> None:
    """Measure every cell of a speed run (``kind`` speed: towers; memory: attention-only) under one run id."""
    plan = speed_plan(args, kind)
    rec = start_run(cache, args, kind, sorted({k for k, _, _ in plan}))
    save_cache(cache, "speed")
    todo = [(k, s, r) for k, s, r in plan if not _done(cache.get(k), rec["run_id"], r)]
    for key, spec, rnd in tqdm(todo, desc=f"{kind} cells (run {rec['run_id']})", unit="cell"):
        cell = cache.get(key)
        if rnd and not _done(cell, rec["run_id"], rnd - 1):
            continue  # its earlier round failed in this run: the cell stays an error (the run is not finished)
        spec["threads"] = args.threads
        cell_rec = _cell_record(rec)
        result = run_cell(key.split("|")[0], spec, args.cell_timeout)
        if "error" in result or not key.startswith("speed|study|"):
            cache[key] = {**result, "spec": spec, "run": cell_rec}
        else:
            cache[key] = merge_round({"spec": spec, "run": cell_rec} if rnd == 0 else cell, result,
                                     cell_rec["load1_cell"])
        save_cache(cache, "speed")
    cache[f"run|{kind}"]["finished"] = all(_done(cache.get(k), rec["run_id"], r) for k, _, r in plan)
    save_cache(cache, "speed")


def ensure_data(ids: int, seed: int = 0) -> Path:
    """Generate the study's dataset once (``ids`` identities x 4 images, 64 wide, 192 tall) and its model configs."""
    data = WORK / f"data_{ids}"
    if not (data / "stats.json").is_file():
        subprocess.run([sys.executable, "-m", "person_search", "data", "synth", str(data), "--ids", str(ids),
                        "--images-per-id", "4", "--seed", str(seed), "--size", "64x192"], cwd=ROOT, check=True)
    write_study_configs(WORK / "configs")
    return data


def write_study_configs(cfg_dir: Path) -> List[Path]:
    """Write the study's open_clip model configs (PS-Study-ViT and the small encoders with its text tower)."""
    cfg_dir.mkdir(parents=True, exist_ok=True)
    written = [cfg_dir / "PS-Study-ViT.json"]
    written[0].write_text(json.dumps(STUDY_VIT))
    for name, shipped in SMALL_STUDY.items():
        cfg = json.loads((ROOT / "person_search" / "model_configs" / f"{shipped}.json").read_text())
        cfg.update(embed_dim=STUDY_VIT["embed_dim"], text_cfg=STUDY_VIT["text_cfg"])
        written.append(cfg_dir / f"{name}.json")
        written[-1].write_text(json.dumps(cfg))
    return written


def run_accuracy(args, cache: dict) -> None:
    """Train every (cell, seed) not cached with the current recipe, in priority order, ``--jobs`` at a time.

    ``--budget-min`` (default: none) stops starting runs after that long; the report says which are missing.
    """
    import time
    from concurrent.futures import ThreadPoolExecutor, as_completed

    data = ensure_data(args.ids)
    deadline = time.monotonic() + (args.budget_min * 60 if args.budget_min else float("inf"))
    recipe = current_recipe(args)
    todo = [(n, s) for n in TRAIN_CELLS for s in range(args.seeds)
            if "rank1" not in cache.get(f"train|{n}|{s}", {})
            or recipe_of(cache[f"train|{n}|{s}"].get("spec", {})) != recipe]
    rec = start_run(cache, args, "accuracy", [f"train|{n}|{s}" for n, s in todo])
    order = list(TRAIN_CELLS)  # the first five cells with all their seeds, then the rest
    todo.sort(key=lambda t: (order.index(t[0]) >= 5, t[1], order.index(t[0])))
    threads = max(1, args.threads // args.jobs)

    def one(name: str, seed: int):
        if time.monotonic() > deadline:
            return None
        arch, att = TRAIN_CELLS[name]
        rel = WORK.relative_to(ROOT)  # paths relative to the repository (the cells run there): the cache travels
        save = str(rel / "ckpt" / f"{name.replace(' ', '_')}_{seed}.pt") if seed == 0 else ""
        spec = {"name": name, "arch": arch, "attention": att, "size": list(TRAIN_SIZE), "seed": seed,
                "data": str(data.relative_to(ROOT)), "ids": args.ids, "config_dir": str(rel / "configs"),
                "batch": args.batch, "lr": args.lr, "warmup": args.warmup, "epochs": args.epochs, "threads": threads,
                "jobs": args.jobs, "save": save, "init": "seed", "loop": "lab"}
        cell_rec = _cell_record(rec)
        return {**run_cell("train", spec, args.cell_timeout), "spec": spec, "run": cell_rec}

    skipped = 0
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(one, n, s): f"train|{n}|{s}" for n, s in todo}
        for fut in tqdm(as_completed(futures), total=len(futures), desc="training cells", unit="run"):
            result = fut.result()
            if result is None:
                skipped += 1
                continue
            cache[futures[fut]] = result  # results are handled here, in this thread alone
            save_cache(cache, "train")
    cache["run|accuracy"]["finished"] = not skipped
    save_cache(cache, "train")
    if skipped:
        print(f"budget of {args.budget_min} min spent; {skipped} run(s) stay 'not run'", file=sys.stderr)


def main() -> None:
    """Run what is missing, then write the report."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="batches 1/8 at 384x128, batch 1 at 768x256, <= 3 calls")
    p.add_argument("--only", choices=["speed", "memory", "accuracy", "report"],
                   help="speed: tower timing (deploy-size towers and study-scale towers); memory: attention-only "
                        "peak memory; accuracy: training; report: redraw from the cache")
    p.add_argument("--cells", default=None, metavar="TEXT",
                   help="speed / memory: measure only the cells whose key holds TEXT (e.g. 'speed|study|', "
                        "'|large'), as one run; ratios are formed within that run")
    p.add_argument("--rounds", type=int, default=5,
                   help="speed: times each study-scale cell is timed, round by round (their ratios carry the "
                        "spread over rounds as a 95 %% interval; deploy-size cells are timed once)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads in all (training: split over --jobs)")
    p.add_argument("--jobs", type=int, default=2, help="training runs at once (each gets threads/jobs threads)")
    p.add_argument("--ids", type=int, default=800, help="identities of the generated study dataset (10 %% test)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW peak learning rate (every training cell)")
    p.add_argument("--warmup", type=int, default=0, help="linear warm-up steps before the cosine decay")
    p.add_argument("--budget-min", type=float, default=None,
                   help="stop starting training runs after this long (default: no limit; the full study trains "
                        "len(cells) x seeds runs of ~8 min each, --jobs at a time, on 2 quiet cores)")
    p.add_argument("--cell-timeout", type=float, default=900.0)
    args = p.parse_args()
    cache = load_cache()
    if args.only in (None, "speed"):
        run_speed(args, cache, "speed")
    if args.only in (None, "memory"):
        run_speed(args, cache, "memory")
    if args.only in (None, "accuracy"):
        run_accuracy(args, cache)
    write_report(cache, args)


if __name__ == "__main__":
    main()
