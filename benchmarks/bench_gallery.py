"""Benchmark of the gallery options against a plain FAISS IndexFlatIP, side by side in one run.

For each size N: N L2-normalised 512-d vectors arriving as frames of 8 people (each track
seen in 8 consecutive frames and keeping all 8 embeddings), spread over one 600 s
window. The vectors are clustered like person embeddings: appearance groups of 32
tracks (unit group centres), each track centre at cosine ~0.86 to its group centre and
each embedding at cosine ~0.86 to its track centre (two embeddings of a track: ~0.73).
A query is a group centre plus the same noise, so its top-10 tracks are the
near-neighbours among its group (scores ~0.6), not noise-level ones. Flat search speed
does not depend on the data; recall does.

Searches, interleaved query by query in a rotating order, each after a 64 MiB write
that evicts the CPU caches (--warm skips it), all on one thread:
  Flat      faiss.IndexFlatIP.search(q, 10): the baseline (10 vectors, not tracks)
  fp32      RollingGallery(storage=fp32, index=flat).search(q, 10) -> 10 distinct tracks
  fp16      RollingGallery(storage=fp16, index=flat)
  ivf       RollingGallery(storage=fp16, index=ivf, ivf_nprobe=0 = a third of the lists): approximate
Columns: p50 / p95 ms; x = Flat p50 / that p50 (>= 1: no slower than one flat index);
rec = recall@10 of distinct tracks against the exact fp32 gallery; mem = memory_bytes()
/ raw fp32 vector bytes (N * 512 * 4); add/s = vectors added per second (with the
per-track logic; ivf includes training its quantizer); evict 1k = ms to evict 1,000
vectors (median of 5 steps).

Usage:
  tools/env.sh python -m benchmarks.bench_gallery            # 10k, 100k, 1M (~10 min, ~9 GB RAM)
  tools/env.sh python -m benchmarks.bench_gallery --quick    # 10k, 100k
  tools/env.sh python -m benchmarks.bench_gallery --quick --json docs/bench_gallery.json \
      --png docs/bench_gallery.png --doc docs/benchmarks.md  # results file, plot, the document's table
  tools/env.sh python -m benchmarks.bench_gallery --from-json docs/bench_gallery.json --doc docs/benchmarks.md
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread, set before numpy / faiss load their BLAS

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import List  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import (add_results_args, check_results_args, cpu_line, describe_run, new_record,  # noqa: E402
                               percentile_ms, replace_block, threshold_verdict, write_results)
from person_search.core.config import GalleryConfig  # noqa: E402
from person_search.core.gallery import RollingGallery  # noqa: E402
from person_search.core.types import EmbeddingBatch  # noqa: E402

DIM = 512
TOP_K = 10
PEOPLE_PER_FRAME = 8
FRAMES_PER_TRACK = 8
TRACKS_PER_GROUP = 32
NOISE = 0.6  # norm of the noise added at each level: cosine 1 / sqrt(1 + NOISE^2) ~ 0.86
WINDOW_S = 600.0
MIN_SIZE = 6000
S = 1_000_000_000
GALLERIES = {  # name -> GalleryConfig fields
    "fp32": dict(storage="fp32", index="flat"),
    "fp16": dict(storage="fp16", index="flat"),
    "ivf": dict(storage="fp16", index="ivf"),  # ivf_nprobe 0 = a third of the lists
}


def unit_rows(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def noisy(rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """Each centre plus a random direction of norm NOISE, renormalised."""
    e = unit_rows(rng.standard_normal(centres.shape, dtype=np.float32))
    return unit_rows(centres + NOISE * e)


def make_data(rng: np.random.Generator, n: int, n_queries: int):
    """Return (vectors (n, DIM) in arrival order, track id per row, queries)."""
    # frame f holds tracks base..base+7 (base = f // 8 * 8): row r belongs to track
    # (r // 64) * 8 + r % 8
    r = np.arange(n)
    track_of = (r // (PEOPLE_PER_FRAME * FRAMES_PER_TRACK)) * PEOPLE_PER_FRAME + r % PEOPLE_PER_FRAME
    n_tracks = int(track_of.max()) + 1
    groups = unit_rows(rng.standard_normal((max(1, n_tracks // TRACKS_PER_GROUP), DIM), dtype=np.float32))
    track_centre = noisy(rng, groups[rng.integers(0, groups.shape[0], n_tracks)])
    x = np.empty((n, DIM), np.float32)
    for i in range(0, n, 65536):  # in chunks: no large temporaries at 1M
        j = min(n, i + 65536)
        x[i:j] = noisy(rng, track_centre[track_of[i:j]])
    queries = noisy(rng, groups[rng.integers(0, groups.shape[0], n_queries)])
    return x, track_of, queries


_JUNK = None


def flush_caches() -> None:
    global _JUNK
    if _JUNK is None:
        _JUNK = np.zeros(16 << 20, np.float32)  # 64 MiB, larger than any L3 here
    _JUNK += 1.0


def build(name, x, track_of, dt_ns):
    cfg = GalleryConfig(window_s=WINDOW_S, capacity=x.shape[0], max_per_track=8, diversity=0.95,
                        thumb_budget_bytes=0, **GALLERIES[name])
    g = RollingGallery(cfg, dim=DIM, model_id="bench")
    boxes = np.zeros((PEOPLE_PER_FRAME, 4), np.float32)
    scores = np.ones(PEOPLE_PER_FRAME, np.float32)
    t0 = time.perf_counter()
    for f in range(x.shape[0] // PEOPLE_PER_FRAME):
        sl = slice(f * PEOPLE_PER_FRAME, (f + 1) * PEOPLE_PER_FRAME)
        g.add(EmbeddingBatch("bench", x[sl], track_of[sl], boxes, scores, f * dt_ns, "cam0"))
    add_s = time.perf_counter() - t0
    assert len(g) == x.shape[0], (name, len(g))
    return g, x.shape[0] / add_s


def evict_1k(g, dt_ns):
    now, ts = g.newest_ns, []
    for _ in range(5):
        now += 1000 // PEOPLE_PER_FRAME * dt_ns
        t = time.perf_counter()
        removed = g.evict(now)
        ts.append(time.perf_counter() - t)
        assert abs(removed - 1000) <= PEOPLE_PER_FRAME, removed  # stamps are rounded to whole ns
    return float(np.median(ts)) * 1e3


def bench(n: int, rng: np.random.Generator, n_queries: int, warm: bool = False):
    x, track_of, queries = make_data(rng, n, n_queries)
    dt_ns = int(WINDOW_S * S / (n // PEOPLE_PER_FRAME))  # the N vectors span [0, 600 s): one window
    flat = faiss.IndexFlatIP(DIM)
    flat.add(x)
    galleries, add_rate = {}, {}
    for name in GALLERIES:
        galleries[name], add_rate[name] = build(name, x, track_of, dt_ns)
    del x
    names = ["flat"] + list(GALLERIES)
    runs = {"flat": lambda q: flat.search(q[None], TOP_K)}  # noqa: F821 - deleted only after the loop
    runs.update({name: (lambda q, g=g: g.search(q, TOP_K)) for name, g in galleries.items()})
    times = {name: [] for name in names}
    results = {name: [] for name in GALLERIES}
    for fn in runs.values():  # warm-up
        fn(queries[0])
    flush = (lambda: None) if warm else flush_caches
    for i, q in enumerate(queries):
        order = names[i % len(names):] + names[: i % len(names)]  # rotate the order too
        for name in order:
            flush()
            t = time.perf_counter()
            res = runs[name](q)
            times[name].append(time.perf_counter() - t)
            if name != "flat":
                assert len(res) == TOP_K, (name, len(res))
                results[name].append({m.track_id for m in res})
    del flat
    exact = results["fp32"]
    raw = n * DIM * 4
    row = {"n": n, "queries": n_queries}
    for name in names:
        p50, p95 = percentile_ms(times[name], 50), percentile_ms(times[name], 95)
        row[name] = dict(p50=p50, p95=p95, x=percentile_ms(times["flat"], 50) / p50)
    for name, iv in x_intervals(times).items():
        row[name]["x_ci"] = iv
    row["flat"]["mem"] = 1.0
    for name, g in galleries.items():
        rec = np.mean([len(a & b) / TOP_K for a, b in zip(results[name], exact)])
        row[name].update(rec=float(rec), mem=g.memory_bytes() / raw, add=add_rate[name], evict=evict_1k(g, dt_ns))
    return row


def x_intervals(times: dict, n: int = 2000, seed: int = 0) -> dict:
    """Return {gallery: [low, high]}: the 95 % bootstrap interval of x = Flat p50 / gallery p50, resampling the
    queries (each query was timed on every gallery in turn, so the resample keeps them paired)."""
    t = {k: np.asarray(v) for k, v in times.items()}
    q = len(t["flat"])
    idx = np.random.default_rng(seed).integers(0, q, size=(n, q))
    flat = np.percentile(t["flat"][idx], 50, axis=1)
    return {name: [float(v) for v in np.percentile(flat / np.percentile(t[name][idx], 50, axis=1), [2.5, 97.5])]
            for name in GALLERIES}


TARGETS = {"fp32": 1.0, "ivf": 2.0}  # the default gallery no slower than one flat index; IVF twice as fast


def targets_text(rows) -> List[str]:
    """Return one line per gallery target and size: x with its interval, and met / missed / not resolved."""
    out = []
    for name, line in TARGETS.items():
        cells = []
        for r in rows:
            c, iv = r[name], r[name].get("x_ci")
            verdict = threshold_verdict(tuple(iv), line, at_most=False) if iv else "no interval recorded"
            cells.append(f"{r['n']:,}: x{c['x']:.2f}" + (f" [{iv[0]:.2f}, {iv[1]:.2f}]" if iv else "")
                         + f" **{verdict}**")
        out.append(f"`{name}` >= {line:g}x the flat index: " + "; ".join(cells) + ".")
    return out


def header() -> str:
    return (f"{'N':>9} | {'Flat p50':>7} {'p95':>7} {'x':>5} | "
            + " | ".join(f"{name + ' p50':>7} {'p95':>7} {'x':>5} {'rec':>5} {'mem':>5} {'add/s':>6} {'ev1k':>5}"
                         for name in GALLERIES))


def format_row(r) -> str:
    cells = [f"{r['n']:>9,}"]
    for name in ["flat"] + list(GALLERIES):
        c = r[name]
        cell = f"{c['p50']:>7.2f} {c['p95']:>7.2f} {c['x']:>5.2f}"
        if name != "flat":
            cell += f" {c['rec']:>5.3f} {c['mem']:>5.3f} {c['add'] / 1e3:>5.1f}k {c['evict']:>5.2f}"
        cells.append(cell)
    return " | ".join(cells)


def doc_block(result: dict) -> str:
    """Return the document's table of a results file: the command, the machine and load, the rows."""
    run = result["run"]
    args = run["args"]
    lines = [f"Generated by `tools/env.sh python -m benchmarks.bench_gallery --from-json {args.get('json') or 'FILE'}"
             f" --doc docs/benchmarks.md` from [bench_gallery.json](bench_gallery.json) ({describe_run(run)}, "
             f"{'warm' if args.get('warm') else 'cold'} caches; times in ms; generated vectors):", "", "```",
             header()]
    lines += [format_row(r) for r in result["rows"]]
    lines += ["```", "", "Targets (x with its 95 % bootstrap interval over the queries, paired; met / missed: the "
              "whole interval on one side of the line):", ""]
    return "\n".join(lines + ["- " + t for t in targets_text(result["rows"])])


def plot(rows, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ns = [r["n"] for r in rows]
    for name in ["flat"] + list(GALLERIES):
        label = "IndexFlatIP" if name == "flat" else f"gallery {name}"
        ax[0].plot(ns, [r[name]["p50"] for r in rows], marker="o", label=label)
        ax[1].plot(ns, [r[name]["x"] for r in rows], marker="o", label=label)
    for a, title in zip(ax, ("p50 search latency (ms), top-10, 1 thread", "speed vs IndexFlatIP (p50 ratio)")):
        a.set_xscale("log")
        a.set_xlabel("vectors in the gallery (512-d)")
        a.set_title(title)
        a.grid(True, alpha=0.3)
        a.legend()
    for a in ax:
        a.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="gallery sizes (default 10000 100000 1000000)")
    ap.add_argument("--quick", action="store_true", help="sizes 10000 100000")
    ap.add_argument("--queries", type=int, default=0,
                    help="queries per size (default: 200 / 60 / 20 for 10k / 100k / 1M)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warm", action="store_true", help="do not evict the CPU caches before each timed search")
    ap.add_argument("--png", default="", help="also draw the figures into this PNG (needs matplotlib)")
    add_results_args(ap, "bench_gallery")
    args = ap.parse_args(argv)
    sizes = args.sizes or ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    if min(sizes) < MIN_SIZE:
        ap.error(f"sizes must be >= {MIN_SIZE} (the eviction figure evicts 5 x 1,000 of the vectors)")
    check_results_args(ap, args)
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
    else:
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        rng = np.random.default_rng(args.seed)
        record = new_record(vars(args), "bench_gallery")
        print(f"faiss {faiss.__version__}, numpy {np.__version__}, dim {DIM}, top-{TOP_K}, 1 thread, "
              f"{'warm' if args.warm else 'cold'} caches; times in ms; {cpu_line()}")
        print(header())
        print("-" * len(header()))
        rows = []
        try:
            for n in sizes:
                nq = args.queries or (200 if n <= 20_000 else 60 if n <= 200_000 else 20)
                rows.append(bench(n, rng, nq, warm=args.warm))
                print(format_row(rows[-1]), flush=True)
        finally:
            faiss.omp_set_num_threads(threads)  # timed on one thread; a caller in this process keeps its own
        for t in targets_text(rows):
            print(t.replace("**", ""))
        print("x = Flat p50 / p50; rec = recall@10 of distinct tracks vs the exact fp32 gallery; "
              f"mem = memory_bytes / raw fp32 bytes; ev1k = ms to evict 1,000 vectors; {cpu_line()}")
        result = {"rows": rows, "run": record}
        if args.json:
            result = json.loads(write_results(args.json, record, rows=rows).read_text())
    if args.png:
        try:
            plot(result["rows"], args.png)
        except ImportError:
            print("no PNG: matplotlib is not installed")
    if args.doc and not replace_block(args.doc, "bench_gallery", doc_block(result)):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
