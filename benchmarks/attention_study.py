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
from typing import List

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
# study-scale small encoders: the shipped timm image towers with the study ViT's text tower and embedding width, so
# that every cell trains the same text side and only the image tower (or its attention) differs
SMALL_STUDY = {"PS-Study-MobileNetV4-S": "PS-MobileNetV4-S", "PS-Study-MobileNetV3-L": "PS-MobileNetV3-L",
               "PS-Study-EfficientNet-B0": "PS-EfficientNet-B0"}
TRAIN_CELLS = {  # name -> (arch, attention); in priority order
    "sdpa": ("PS-Study-ViT", {"kind": "sdpa"}),
    "prune 0.5": ("PS-Study-ViT", {"kind": "prune", "prune_keep": 0.5}),
    "window 5": ("PS-Study-ViT", {"kind": "window", "window_size": 5}),
    "lam": ("PS-Study-ViT", {"kind": "lam"}),
    "MobileNetV4-S": ("PS-Study-MobileNetV4-S", {"kind": "sdpa"}),
    "sparse": ("PS-Study-ViT", {"kind": "sparse", "sparse_block": 4, "sparse_stride": 8}),
    "MobileNetV3-L": ("PS-Study-MobileNetV3-L", {"kind": "sdpa"}),
    "EfficientNet-B0": ("PS-Study-EfficientNet-B0", {"kind": "sdpa"}),
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
    return {**train, **{k: v for k, v in _read(SPEED_CACHE).items() if k.startswith(("speed|", "attnmem|"))}}


def save_cache(cache: dict, kind: str) -> None:
    """Merge this run's ``kind`` cells into their file atomically (a speed and an accuracy run may run at once)."""
    DOCS.mkdir(exist_ok=True)
    path = _file(kind)
    prefixes = ("train|",) if kind == "train" else ("speed|", "attnmem|")
    merged = {**_read(path), **{k: v for k, v in cache.items() if k.startswith(prefixes)}}
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


def run_speed(args, cache: dict) -> None:
    """Measure every speed and attention-memory cell not cached yet."""
    import torch

    gpu = [*speed_cells(args.quick, "cuda")] if torch.cuda.is_available() else []  # GPU rows where there is one
    todo = [(k, s) for k, s in [*speed_cells(args.quick), *gpu, *attnmem_cells()]
            if k not in cache or "error" in cache[k]]
    for key, spec in tqdm(todo, desc="speed cells", unit="cell"):
        spec["threads"] = args.threads
        cache[key] = {**run_cell(key.split("|")[0], spec, args.cell_timeout), "spec": spec}
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
    """Train every (cell, seed) not cached yet, in priority order, ``--jobs`` at a time, within ``--budget-min``."""
    import time
    from concurrent.futures import ThreadPoolExecutor, as_completed

    data = ensure_data(args.ids)
    deadline = time.monotonic() + args.budget_min * 60
    todo = [(n, s) for n in TRAIN_CELLS for s in range(args.seeds)
            if f"train|{n}|{s}" not in cache or "error" in cache[f"train|{n}|{s}"]]
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
                "jobs": args.jobs, "save": save}
        return {**run_cell("train", spec, args.cell_timeout), "spec": spec}

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
    if skipped:
        print(f"budget of {args.budget_min} min spent; {skipped} run(s) stay 'not run'", file=sys.stderr)


def main() -> None:
    """Run what is missing, then write the report."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="batches 1/8 at 384x128, batch 1 at 768x256, <= 3 calls")
    p.add_argument("--only", choices=["speed", "accuracy", "report"])
    p.add_argument("--threads", type=int, default=2, help="CPU threads in all (training: split over --jobs)")
    p.add_argument("--jobs", type=int, default=2, help="training runs at once (each gets threads/jobs threads)")
    p.add_argument("--ids", type=int, default=800, help="identities of the generated study dataset (10 %% test)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW peak learning rate (every training cell)")
    p.add_argument("--warmup", type=int, default=0, help="linear warm-up steps before the cosine decay")
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
