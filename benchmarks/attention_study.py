"""The attention study: speed, memory and accuracy of the attention variants and the small encoders.

    tools/env.sh python benchmarks/attention_study.py [--quick] [--only speed|accuracy|report] [--seeds 3]

Every cell (one tower at one input size; one training run) runs in a fresh subprocess
(``benchmarks/study_cells.py``) and its result is cached in ``docs/attention_study_cells.json``
(training) or ``docs/attention_study_speed_cells.json`` (speed) as soon as it finishes, so
an interrupted study resumes where it stopped and ``--only report`` rewrites
``docs/attention_study.md`` and its PNGs from the cache alone. Speed figures are ratios
against ViT-B/16 with sdpa measured in the same run (CPU, ``--threads``).
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

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CACHE = DOCS / "attention_study_cells.json"  # training cells
SPEED_CACHE = DOCS / "attention_study_speed_cells.json"
WORK = ROOT / "runs" / "attention_study"  # generated data, model configs, checkpoints (not committed)
SHAPES = {"deploy": (384, 128), "large": (768, 256)}
VIT = "ViT-B-16"
VARIANTS = {  # name -> encoder.attention of the deploy-size ViT-B/16
    "sdpa": {"kind": "sdpa"}, "eager": {"kind": "eager"},
    "window": {"kind": "window", "window_size": 7}, "sparse": {"kind": "sparse", "sparse_block": 4, "sparse_stride": 8},
    "lam": {"kind": "lam"}, "prune": {"kind": "prune", "prune_keep": 0.5},
}
SMALL = ["PS-MobileNetV3-L", "PS-EfficientNet-B0", "PS-MobileNetV4-S", "TinyCLIP-ViT-8M-16-Text-3M", "MobileCLIP-S1"]
STUDY_VIT = {"embed_dim": 64, "vision_cfg": {"image_size": [96, 32], "layers": 6, "width": 64, "head_width": 32,
                                             "patch_size": 8},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
TRAIN_SIZE = (96, 32)  # a 12 x 4 patch grid at patch 8
TRAIN_CELLS = {  # name -> (arch, attention); in priority order
    "sdpa": ("PS-Study-ViT", {"kind": "sdpa"}),
    "prune 0.5": ("PS-Study-ViT", {"kind": "prune", "prune_keep": 0.5}),
    "window 5": ("PS-Study-ViT", {"kind": "window", "window_size": 5}),
    "lam": ("PS-Study-ViT", {"kind": "lam"}),
    "MobileNetV4-S": ("PS-MobileNetV4-S", {"kind": "sdpa"}),
    "sparse": ("PS-Study-ViT", {"kind": "sparse", "sparse_block": 4, "sparse_stride": 8}),
    "MobileNetV3-L": ("PS-MobileNetV3-L", {"kind": "sdpa"}),
    "EfficientNet-B0": ("PS-EfficientNet-B0", {"kind": "sdpa"}),
}
SPEED_OF = {"sdpa": (VIT, "sdpa"), "prune 0.5": (VIT, "prune"), "window 5": (VIT, "window"), "lam": (VIT, "lam"),
            "sparse": (VIT, "sparse"), "MobileNetV4-S": ("PS-MobileNetV4-S", "sdpa"),
            "MobileNetV3-L": ("PS-MobileNetV3-L", "sdpa"), "EfficientNet-B0": ("PS-EfficientNet-B0", "sdpa")}


def _file(kind: str) -> Path:
    return CACHE if kind == "train" else SPEED_CACHE


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def load_cache() -> dict:
    """Return the cached cells of both files ({} when none)."""
    train = {k: v for k, v in _read(CACHE).items() if k.startswith("train|")}
    return {**train, **{k: v for k, v in _read(SPEED_CACHE).items() if k.startswith("speed|")}}


def save_cache(cache: dict, kind: str) -> None:
    """Merge this run's ``kind`` cells into their file atomically (a speed and an accuracy run may run at once)."""
    DOCS.mkdir(exist_ok=True)
    path = _file(kind)
    merged = {**_read(path), **{k: v for k, v in cache.items() if k.startswith(kind + "|")}}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(merged, indent=1, sort_keys=True))
    os.replace(tmp, path)


def run_cell(kind: str, spec: dict, timeout: float) -> dict:
    """Run one cell in a fresh subprocess; return its JSON result or {"error": ...}."""
    env = dict(os.environ, OMP_NUM_THREADS=str(spec.get("threads", 2)))
    try:
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "study_cells.py"), kind, json.dumps(spec)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(lines[-1])


FIRST = ["sdpa", "prune", "PS-MobileNetV4-S", "eager", "window"]  # what the targets need, measured first


def speed_cells(quick: bool):
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
                    "min_s": 4.0 if quick else 10.0, "max_iters": 3 if quick else 10}
            first = (name if arch == VIT else arch) in FIRST and (shape == "deploy" or arch == VIT)
            cells.append((not first, shape != "deploy", f"speed|{arch}|{name}|{shape}", spec))
    rank = ["speed|ViT-B-16|sdpa|deploy", "speed|ViT-B-16|prune|deploy", "speed|PS-MobileNetV4-S|sdpa|deploy",
            "speed|ViT-B-16|sdpa|large", "speed|ViT-B-16|window|large", "speed|ViT-B-16|eager|large"]
    cells.sort(key=lambda c: (c[0], rank.index(c[2]) if c[2] in rank else len(rank), c[1]))
    for later, _, key, spec in cells:
        if not (quick and later):  # --quick: only the cells the targets need
            yield key, spec


def run_speed(args, cache: dict) -> None:
    """Measure every speed cell not cached yet."""
    todo = [(k, s) for k, s in speed_cells(args.quick) if k not in cache or "error" in cache[k]]
    for key, spec in tqdm(todo, desc="speed cells", unit="cell"):
        spec["threads"] = args.threads
        cache[key] = {**run_cell("speed", spec, args.cell_timeout), "spec": spec}
        save_cache(cache, "speed")


def ensure_data(seed: int = 0) -> Path:
    """Generate the study's dataset once (240 ids x 4 images, 192x64) and write the study ViT config."""
    data = WORK / "data"
    if not (data / "stats.json").is_file():
        subprocess.run([sys.executable, "-m", "person_search", "data", "synth", str(data), "--ids", "240",
                        "--images-per-id", "4", "--seed", str(seed), "--size", "192x64"], cwd=ROOT, check=True)
    cfg_dir = WORK / "configs"
    cfg_dir.mkdir(parents=True, exist_ok=True)
    (cfg_dir / "PS-Study-ViT.json").write_text(json.dumps(STUDY_VIT))
    return data


def run_accuracy(args, cache: dict) -> None:
    """Train every (cell, seed) not cached yet, in priority order, within ``--budget-min``."""
    import time

    data = ensure_data()
    deadline = time.monotonic() + args.budget_min * 60
    todo = [(n, s) for n in TRAIN_CELLS for s in range(args.seeds)
            if f"train|{n}|{s}" not in cache or "error" in cache[f"train|{n}|{s}"]]
    order = list(TRAIN_CELLS)  # the first five cells with all their seeds, then the rest
    todo.sort(key=lambda t: (order.index(t[0]) >= 5, t[1], order.index(t[0])))
    for name, seed in tqdm(todo, desc="training cells", unit="run"):
        if time.monotonic() > deadline:
            print(f"budget of {args.budget_min} min spent; the rest stays 'not run'", file=sys.stderr)
            break
        arch, att = TRAIN_CELLS[name]
        save = str(WORK / "ckpt" / f"{name.replace(' ', '_')}_{seed}.pt") if seed == 0 else ""
        spec = {"name": name, "arch": arch, "attention": att, "size": list(TRAIN_SIZE), "seed": seed,
                "data": str(data), "config_dir": str(WORK / "configs"), "batch": args.batch, "lr": 1e-3,
                "epochs": args.epochs, "threads": args.threads, "save": save}
        cache[f"train|{name}|{seed}"] = {**run_cell("train", spec, args.cell_timeout), "spec": spec}
        save_cache(cache, "train")


def main() -> None:
    """Run what is missing, then write the report."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="batches 1/8 at 384x128, batch 1 at 768x256, <= 3 calls")
    p.add_argument("--only", choices=["speed", "accuracy", "report"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--budget-min", type=float, default=60.0, help="stop starting training runs after this long")
    p.add_argument("--cell-timeout", type=float, default=900.0)
    args = p.parse_args()
    cache = load_cache()
    if args.only in (None, "speed"):
        run_speed(args, cache)
    if args.only in (None, "accuracy"):
        run_accuracy(args, cache)
    from study_report import write_report

    write_report(cache, args)


if __name__ == "__main__":
    main()
