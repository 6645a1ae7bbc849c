#!/usr/bin/env python3
"""Crops/s of ClipEncoder variants vs a plain open_clip eager loop (CPU, random weights).

Baseline: ``open_clip.create_model(arch)`` + ``model.encode_image(tensor)`` under
``torch.inference_mode`` on an already-preprocessed tensor (so the baseline does NOT pay
for preprocessing, while ClipEncoder variants are timed end to end from BGR crops through
``encode_images``: conservative for ClipEncoder).

For every arch x batch it prints crops/s (median over calls; the variants are timed
interleaved, round by round, so that load from other processes hits all of them alike), the
ratio to the baseline, the cosine agreement of the variant's embeddings with the fp32 torch
embeddings (min over the batch) and the RSS added by building the variant (baseline: process
RSS with the baseline model). All measured in one run, same threads, random weights.

Example (default, ~5 min on 2 quiet cores):
    python -m benchmarks.bench_embedder --archs ViT-B-16 ViT-B-32 MobileCLIP-S1 --batches 1 8 32 --threads 2

``--json FILE`` writes every CPU row with the run record; ``--doc docs/benchmarks.md`` then rewrites the table
between the document's ``<!-- results:bench_embedder -->`` markers from it (``--from-json FILE --doc ...`` redraws
the table without measuring).

``--reid MODEL`` (e.g. ``osnet_x0_25_msmt17/osnet_x0_25_msmt17.onnx``) adds a row ``reid`` per
arch x batch: the re-id encoder (``reid.backend`` onnx by default) on the same crops, timed
interleaved with the CLIP variants, and one line with re-id's time per crop as a share of
each CLIP variant's (docs/reid.md).

Where torch sees a CUDA GPU, GPU rows follow (``gpu_rows.py``): torch eager fp32 / fp16,
sdpa fp16 and TensorRT fp16 of ``--gpu-archs`` at ``--gpu-size`` (crops/s, p50/p95 ms, GPU
memory, ratio to torch eager fp16), and the YOLO ``.pt`` vs ``.engine`` frames/s;
``--gpu-only`` skips the CPU rows. Without a GPU it says "GPU rows: not run (no CUDA GPU)".
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import (add_results_args, check_results_args, cpu_line, cpu_model, describe_run, new_record,
                               paired_ratio_interval, replace_block, rss_mb, threshold_verdict, time_interleaved,
                               write_results)
from person_search.core.attention.registry import KERNELS
from person_search.core.backends.registry import BACKENDS
from person_search.core.config import AttentionConfig, EncoderConfig
from person_search.core.clip_encoder import ClipEncoder
from person_search.core.models.archs import native_image_size, open_clip_registered

TARGET = 1.3  # an encoder backend should be >= 1.3x open_clip eager (the CPU speed target)
VARIANTS = tuple(n for n in BACKENDS.names() if "cpu" in BACKENDS.get(n).devices)  # CPU rows; GPU rows below


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", nargs="+", default=["ViT-B-16", "ViT-B-32", "MobileCLIP-S1"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement (at least 1 call)")
    ap.add_argument("--min-rounds", type=int, default=5,
                    help="at least this many interleaved rounds per cell (the ratio's interval pairs them)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--attention", default="sdpa", choices=KERNELS.names())
    ap.add_argument("--cache-dir", default="", help="ONNX / OpenVINO / TensorRT cache (default: a temporary folder)")
    ap.add_argument("--gpu-only", action="store_true", help="skip the CPU rows")
    ap.add_argument("--reid", default="", metavar="MODEL", help="also time this re-id model (.onnx/.pth) on the "
                    "same crops and print its cost as a share of each CLIP variant")
    ap.add_argument("--reid-backend", default="onnx", help="backend of the --reid row (default onnx)")
    ap.add_argument("--gpu-archs", nargs="+", default=["ViT-B-16"])
    ap.add_argument("--gpu-size", default="384x128", help="HxW of the GPU rows (the deploy shape)")
    ap.add_argument("--gpu-batches", nargs="+", type=int, default=[1, 8, 32])
    ap.add_argument("--detector-model", default="yolo11n.pt", help="YOLO .pt of the detector GPU rows")
    add_results_args(ap, "bench_embedder")
    args = ap.parse_args(argv)
    check_results_args(ap, args)
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
        return 0 if not args.doc or replace_block(args.doc, "bench_embedder", doc_table(result)) else 2
    record = new_record(vars(args), "bench_embedder")
    results = []

    torch.set_num_threads(args.threads)
    open_clip = open_clip_registered()
    cache = args.cache_dir or tempfile.mkdtemp(prefix="ps_bench_")
    rng = np.random.default_rng(0)
    print(f"CPU: {cpu_line()}")
    print(f"torch {torch.__version__}, open_clip {open_clip.__version__}, threads {args.threads}, "
          f"{args.seconds}s/measurement, random weights; ClipEncoder timed from BGR crops (incl. preprocessing)")
    header = f"{'arch':<14}{'batch':>6}  {'variant':<11}{'crops/s':>9}{'ratio':>7}{'cos_min':>9}{'+rss_MB':>8}"
    rows = [header, "-" * len(header)]
    print(header, flush=True)

    def emit(line):
        rows.append(line)
        print(line, flush=True)

    reid = None
    if args.reid:
        from person_search.core.config import ReidConfig
        from person_search.core.reid.encoder import ReidEncoder
        reid = ReidEncoder(ReidConfig(model=args.reid, backend=args.reid_backend, threads=args.threads,
                                      batch_size=max(args.batches)))
        print(f"re-id row: {reid.model_id} {reid.describe()}", flush=True)
    for arch in [] if args.gpu_only else args.archs:
        h, w = native_image_size(arch)
        crops = [rng.integers(0, 256, (int(rng.integers(120, 320)), int(rng.integers(50, 140)), 3), dtype=np.uint8)
                 for _ in range(max(args.batches))]
        torch.manual_seed(0)
        base = open_clip.create_model(arch).eval()
        mem = {"baseline": rss_mb()}
        encs = {}
        for variant in args.variants:
            cfg = EncoderConfig(arch=arch, image_height=h, image_width=w, batch_size=max(args.batches),
                                threads=args.threads,
                                attention=AttentionConfig(kind=args.attention))
            t0 = time.perf_counter()
            before = rss_mb()
            encs[variant] = ClipEncoder(cfg, towers=("image",), backend=variant, cache_dir=cache)
            mem[variant] = rss_mb() - before
            print(f"  {arch} {variant}: build {time.perf_counter() - t0:.1f}s", flush=True)
        for b in args.batches:
            x = torch.randn(b, 3, h, w)
            batch = crops[:b]

            def run_base(x=x):
                with torch.inference_mode():
                    base.encode_image(x)  # noqa: F821 - deleted only after the loop

            calls = {"baseline": lambda _k, run_base=run_base: run_base()}
            for variant, enc in encs.items():
                calls[variant] = (lambda _k, enc=enc, batch=batch: enc.encode_images(batch))
            if reid is not None:
                calls["reid"] = lambda _k, batch=batch: reid.encode(batch)
            ref = encs["torch"].encode_images(batch) if "torch" in encs else None
            cos = {v: float((e.encode_images(batch) * ref).sum(1).min()) if ref is not None else None
                   for v, e in encs.items()}  # None: no torch row to compare with (not asked for)
            mem.setdefault("reid", float("nan"))
            times = time_interleaved(calls, seconds=args.seconds, min_calls=args.min_rounds)
            rates = {v: [b / dt for dt in ts] for v, ts in times.items()}
            base_rate = float(np.median(rates["baseline"]))
            for v in calls:
                r = float(np.median(rates[v]))
                c = "" if v in ("baseline", "reid") else ("n/a" if cos[v] is None else f"{cos[v]:.4f}")
                emit(f"{arch:<14}{b:>6}  {v:<11}{r:>9.2f}{r / base_rate:>7.2f}{c:>9}{mem[v]:>8.0f}")
                iv = paired_ratio_interval(times["baseline"], times[v]) if v != "baseline" else None
                results.append({"arch": arch, "batch": b, "variant": v, "crops_s": r, "ratio": r / base_rate,
                                "ratio_paired": None if iv is None else iv[0],
                                "ratio_ci": None if iv is None else [iv[1], iv[2]],
                                "paired_rounds": None if iv is None else iv[3],
                                "cos_min": None if v in ("baseline", "reid") else cos[v],
                                "rss_mb": None if np.isnan(mem[v]) else mem[v], "calls": len(rates[v])})
            if reid is not None:
                rr = float(np.median(rates["reid"]))
                results[-1]["share_of_clip"] = {v: float(np.median(rates[v])) / rr for v in calls if v != "reid"}
                emit(f"{'':<14}{b:>6}  re-id time per crop as a share of the CLIP tower: " + ", ".join(
                    f"{v} {float(np.median(rates[v])) / rr:.3f}" for v in calls if v != "reid"))
        del base, encs, calls, run_base
        gc.collect()
    if torch.cuda.is_available():
        from benchmarks import gpu_rows

        emit(f"GPU rows: {torch.cuda.get_device_name()}, image {args.gpu_size}, ratio to {gpu_rows.BASELINE}")
        h, w = (int(v) for v in args.gpu_size.lower().split("x"))
        gpu_rows.clip_rows(args.gpu_archs, (h, w), args.gpu_batches, args.seconds, cache, emit)
        gpu_rows.detector_rows(args.detector_model, args.seconds, emit)
    else:
        emit("GPU rows: not run (no CUDA GPU)")
    print("\n" + "\n".join(rows))
    print(f"CPU at the end: {cpu_line()}")
    if args.json:
        result = json.loads(write_results(args.json, record, rows=results, cpu_model=cpu_model()).read_text())
        if args.doc and not replace_block(args.doc, "bench_embedder", doc_table(result)):
            return 2
    return 0


def doc_table(result: dict) -> str:
    """Return the document's table of a results file: crops/s (ratio to the baseline) [lowest cosine to fp32]."""
    run = result["run"]
    args = run["args"]
    rows = result["rows"]
    variants = [v for v in dict.fromkeys(r["variant"] for r in rows) if v != "baseline"]
    verdicts: dict = {}
    lines = [f"Generated by `tools/env.sh python -m benchmarks.bench_embedder --from-json {args.get('json') or 'FILE'} "
             f"--doc docs/benchmarks.md` from [bench_embedder.json](bench_embedder.json) ({describe_run(run)}, "
             f"{args['threads']} threads, {args['seconds']} s per cell, attention `{args['attention']}`, "
             "random weights). "
             "crops/s (median over calls; ratio to open_clip eager on the same model, batch and threads: where the "
             "rounds are recorded, the geometric mean of the per-round ratios with its 95 % interval, else the "
             "ratio of the medians) [lowest cosine to fp32 torch]:",
             "", "| arch | batch | open_clip eager | " + " | ".join(f"`{v}`" for v in variants) + " |",
             "|---|---|---|" + "---|" * len(variants)]
    for arch, b in dict.fromkeys((r["arch"], r["batch"]) for r in rows):
        cell = {r["variant"]: r for r in rows if r["arch"] == arch and r["batch"] == b}
        out = [arch, str(b), f"{cell['baseline']['crops_s']:.2f}"]
        for v in variants:
            r = cell.get(v)
            if r is None:
                out.append("not run")
                continue
            cos = f" [{r['cos_min']:.4f}]" if r.get("cos_min") is not None and v.endswith("int8") else ""
            ci = r.get("ratio_ci")
            ratio = (f"{r['ratio_paired']:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci and r.get("ratio_paired")
                     else f"{r['ratio']:.2f}")
            out.append(f"{r['crops_s']:.2f} ({ratio}){cos}")
            if ci:
                verdict = threshold_verdict(tuple(ci), TARGET, at_most=False)
                verdicts.setdefault(verdict, []).append(f"`{v}` {arch} b{b}")
        lines.append("| " + " | ".join(out) + " |")
    if verdicts:
        lines += ["", f"Target >= {TARGET}x open_clip eager (the 95 % interval of the per-round ratio, paired rounds): "
                  + "; ".join(f"{k}: {', '.join(cells)}" for k, cells in sorted(verdicts.items())) + "."]
    return "\n".join(lines)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger().setLevel(logging.ERROR)  # open_clip's "initialized randomly" warnings (the script only:
    sys.exit(main())                             # main() called in-process leaves the caller's logging alone)
