"""Benchmark of the rolling gallery against a plain FAISS IndexFlatIP and a numpy scan.

For each size N: N random L2-normalised 512-d vectors arriving as frames of 8 people
(each track seen in 8 consecutive frames, so every track keeps 8 embeddings), spread
over one 600 s window. Everything runs on one thread and every number of a row is
measured in the same run. The three searches are interleaved query by query so that
load from other processes hits them alike, and before each timed search a 64 MiB
buffer is written to evict the CPU caches (as in production, where YOLO and CLIP run
between queries; otherwise whichever method ran last finds its data in L3). Pass
--warm to skip the flush.

Columns:
  add/s        gallery add throughput (vectors per second, including per-track logic)
  RG p50/p95   RollingGallery.search(q, top_k=10) -> 10 distinct tracks, ms
  Flat p50/p95 faiss.IndexFlatIP.search(q, 10) over the same N vectors, ms
  np p50/p95   numpy: X @ q + argpartition + sort of the top 10, ms
  speed        Flat p50 / RG p50 (>= 1: the gallery is no slower than one flat index)
  evict step   one window step of 10 s (= N/60 vectors): ms, and us per evicted vector
               (median of 3 steps)
  evict 1k     evicting exactly 1,000 vectors, ms, median of 5 steps (flat across N =
               cost independent of the gallery size)
  mem          gallery memory_bytes() / raw vector bytes (N * 512 * 4)

Usage:
  .venv/bin/python benchmarks/bench_gallery.py            # 10k, 100k, 1M (~2-3 min, ~7 GB RAM)
  .venv/bin/python benchmarks/bench_gallery.py --quick    # 10k, 100k
  .venv/bin/python benchmarks/bench_gallery.py --sizes 10000 50000
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread, set before numpy / faiss load their BLAS

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from person_search.core.config import GalleryConfig  # noqa: E402
from person_search.core.gallery import RollingGallery  # noqa: E402
from person_search.core.types import EmbeddingBatch  # noqa: E402

DIM = 512
TOP_K = 10
PEOPLE_PER_FRAME = 8
FRAMES_PER_TRACK = 8
WINDOW_S = 600.0
STEP_S = 10.0
S = 1_000_000_000


def random_unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = np.empty((n, dim), np.float32)
    for i in range(0, n, 65536):  # in chunks: no float64 temporaries at 1M
        c = rng.standard_normal((min(65536, n - i), dim), dtype=np.float32)
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        x[i : i + c.shape[0]] = c
    return x


def pct(ts, p):
    return float(np.percentile(np.asarray(ts) * 1e3, p))


_JUNK = None


def flush_caches() -> None:
    global _JUNK
    if _JUNK is None:
        _JUNK = np.zeros(16 << 20, np.float32)  # 64 MiB, larger than any L3 here
    _JUNK += 1.0


def bench(n: int, rng: np.random.Generator, n_queries: int, warm: bool = False):
    x = random_unit(rng, n)
    frames = n // PEOPLE_PER_FRAME
    dt_ns = int(WINDOW_S * S / frames)  # the N vectors span [0, 600 s): all inside one window
    cfg = GalleryConfig(window_s=WINDOW_S, capacity=n, max_per_track=8, diversity=0.95, thumb_budget_bytes=0)
    g = RollingGallery(cfg, dim=DIM, model_id="bench")
    boxes = np.zeros((PEOPLE_PER_FRAME, 4), np.float32)
    scores = np.ones(PEOPLE_PER_FRAME, np.float32)
    t0 = time.perf_counter()
    for f in range(frames):
        base = (f // FRAMES_PER_TRACK) * PEOPLE_PER_FRAME
        g.add(
            EmbeddingBatch(
                "bench",
                x[f * PEOPLE_PER_FRAME : (f + 1) * PEOPLE_PER_FRAME],
                np.arange(base, base + PEOPLE_PER_FRAME),
                boxes,
                scores,
                f * dt_ns,
                "cam0",
            )
        )
    add_s = time.perf_counter() - t0
    assert len(g) == n, (len(g), n)
    mem = g.memory_bytes() / (n * DIM * 4)

    flat = faiss.IndexFlatIP(DIM)
    flat.add(x)
    queries = random_unit(rng, n_queries)

    def np_scan(q):
        s = x @ q
        top = np.argpartition(s, -TOP_K)[-TOP_K:]
        return top[np.argsort(-s[top])]

    # warm-up, and a check that all three agree on the best vector's score
    best = float(np.max(x @ queries[0]))
    assert abs(g.search(queries[0], TOP_K)[0].score - best) < 1e-5
    assert abs(float(flat.search(queries[:1], TOP_K)[0][0, 0]) - best) < 1e-5
    np_scan(queries[0])
    t_rg, t_flat, t_np = [], [], []
    flush = (lambda: None) if warm else flush_caches
    for i, q in enumerate(queries):
        q2 = q[None]
        runs = [
            ("rg", lambda: g.search(q, TOP_K)),
            ("flat", lambda: flat.search(q2, TOP_K)),  # noqa: F821 - deleted only after the loop
            ("np", lambda: np_scan(q)),
        ]
        for name, fn in runs[i % 3 :] + runs[: i % 3]:  # rotate the order too
            flush()
            t = time.perf_counter()
            res = fn()
            dt = time.perf_counter() - t
            {"rg": t_rg, "flat": t_flat, "np": t_np}[name].append(dt)
            if name == "rg":
                assert len(res) == TOP_K
    del flat

    # eviction: window steps of STEP_S of data (= N/60 vectors each), then steps of exactly
    # 1,000 vectors; medians of 3 and 5 steps
    now = g.newest_ns
    step_t, step_n = [], []
    for _ in range(3):
        before = len(g)
        now += int(STEP_S * S)
        t = time.perf_counter()
        removed = g.evict(now)
        step_t.append(time.perf_counter() - t)
        assert removed == before - len(g) and removed > 0
        step_n.append(removed)
    frames_1k = 1000 // PEOPLE_PER_FRAME
    k_t, k_n = [], []
    for _ in range(5):
        now += frames_1k * dt_ns
        t = time.perf_counter()
        k_n.append(g.evict(now))
        k_t.append(time.perf_counter() - t)
    step_s, k_s = float(np.median(step_t)), float(np.median(k_t))
    step_n, k_n = int(np.median(step_n)), int(np.median(k_n))
    return {
        "n": n,
        "add_per_s": n / add_s,
        "rg": (pct(t_rg, 50), pct(t_rg, 95)),
        "flat": (pct(t_flat, 50), pct(t_flat, 95)),
        "np": (pct(t_np, 50), pct(t_np, 95)),
        "speed": pct(t_flat, 50) / pct(t_rg, 50),
        "step": (step_s * 1e3, step_n, step_s * 1e6 / step_n),
        "k": (k_s * 1e3, k_n),
        "mem": mem,
        "blocks": g.stats()["blocks"],
        "queries": n_queries,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="gallery sizes (default 10000 100000 1000000)")
    ap.add_argument("--quick", action="store_true", help="sizes 10000 100000")
    ap.add_argument(
        "--queries", type=int, default=0, help="queries per size (default: 200 / 60 / 15 for 10k / 100k / 1M)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warm", action="store_true", help="do not evict the CPU caches before each timed search")
    args = ap.parse_args(argv)
    sizes = args.sizes or ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    print(
        f"faiss {faiss.__version__}, numpy {np.__version__}, dim {DIM}, top-{TOP_K}, "
        f"1 thread, {PEOPLE_PER_FRAME} people/frame, {FRAMES_PER_TRACK} frames/track"
    )
    head = (
        f"{'N':>9} {'add/s':>8} | {'RG p50':>7} {'RG p95':>7} | "
        f"{'Flat p50':>8} {'Flat p95':>8} | {'np p50':>7} {'np p95':>7} | "
        f"{'speed':>5} | {'evict step':>22} | {'evict 1k':>8} | {'mem':>5} | {'blocks':>6}"
    )
    print(head)
    print("-" * len(head))
    for n in sizes:
        nq = args.queries or (200 if n <= 20_000 else 60 if n <= 200_000 else 15)
        r = bench(n, rng, nq, warm=args.warm)
        step_ms, step_n, step_us = r["step"]
        print(
            f"{n:>9,} {r['add_per_s']:>8,.0f} | {r['rg'][0]:>7.2f} "
            f"{r['rg'][1]:>7.2f} | {r['flat'][0]:>8.2f} {r['flat'][1]:>8.2f} | "
            f"{r['np'][0]:>7.2f} {r['np'][1]:>7.2f} | {r['speed']:>5.2f} "
            f"| {step_ms:>6.2f} ms {step_n:>6} v {step_us:>4.1f} us/v | "
            f"{r['k'][0]:>5.2f} ms | {r['mem']:>5.3f} | {r['blocks']:>6}",
            flush=True,
        )
    print(
        f"times in ms ({'warm' if args.warm else 'cold'} caches); speed "
        "= Flat p50 / RG p50; mem = memory_bytes / raw vector bytes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
