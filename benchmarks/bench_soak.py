#!/usr/bin/env python3
"""Soak: the graph at its maximum ingest rate for a long time, with capacity eviction active.

    tools/env.sh python benchmarks/bench_soak.py --minutes 30 [--config test] [--capacity 2000]

The camera plays a looping sample video as fast as it can (``video.realtime: false``), the
gallery keeps at most ``--capacity`` embeddings and ``--thumb-budget`` bytes of JPEGs, so
eviction runs all the time. The RSS of every node process is sampled every ``--every``
seconds (every embedding of a track is kept, so the gallery grows into its capacity);
after the warm-up (``--warmup-minutes``) each node's growth is (last 10 % mean -
first post-warm-up 10 % mean) / the latter, and must stay under 5 %. The gallery's vector
count and thumbnail bytes (from the index node's /diagnostics) must stay under their
budgets. Prints a table and writes the RSS curves as a PNG (``--plot``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from graph_probe import DiagnosticsProbe, private_domain, rss_bytes  # noqa: E402


def growth(samples, warmup_s: float) -> float:
    """Relative RSS growth after the warm-up: mean of the last tenth vs the first tenth."""
    post = [r for t, r in samples if t >= warmup_s]
    if len(post) < 10:
        return float("nan")
    k = max(1, len(post) // 10)
    first, last = sum(post[:k]) / k, sum(post[-k:]) / k
    return (last - first) / first


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="test")
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--warmup-minutes", type=float, default=None, help="default: a sixth of the run, >= 1")
    ap.add_argument("--capacity", type=int, default=2000, help="gallery.capacity (embeddings)")
    ap.add_argument("--thumb-budget", type=int, default=4 << 20, help="gallery.thumb_budget_bytes")
    ap.add_argument("--every", type=float, default=5.0, help="seconds between RSS samples")
    ap.add_argument("--plot", default="", help="write the RSS curves here (PNG)")
    a = ap.parse_args()
    warmup_s = 60.0 * (a.warmup_minutes if a.warmup_minutes is not None else max(1.0, a.minutes / 6))

    from tqdm import tqdm
    from person_search.demo.sample import make_sample_video
    from person_search.graph import CameraSpec, make_graph

    private_domain()
    work = Path(tempfile.mkdtemp(prefix="bench_soak_"))
    video = make_sample_video(work / "sample.mp4", seconds=6.0)
    params = {"encoder.weights": "", "video.realtime": False, "gallery.capacity": a.capacity,
              "gallery.thumb_budget_bytes": a.thumb_budget, "gallery.window_s": 1e6,
              # keep every embedding of a track, so the gallery grows until capacity eviction
              "gallery.max_per_track": 10000, "gallery.diversity": 1.0}
    graph = make_graph(a.config, [CameraSpec("cam0", str(video))], loop=True, extra_params=params,
                       log_dir=work / "logs")
    probe = DiagnosticsProbe("bench_soak")
    rss = {}
    peak_vectors = peak_thumbs = 0
    with graph:
        t0 = time.monotonic()
        total = 60.0 * a.minutes
        with tqdm(total=int(total), unit="s", desc="soak", file=sys.stderr) as bar:
            while (now := time.monotonic() - t0) < total:
                dead = graph.dead()
                if dead:
                    print(f"node(s) died: {dead}; logs in {work / 'logs'}", file=sys.stderr)
                    return 1
                for name, proc in graph.procs.items():
                    r = rss_bytes(proc.pid)
                    if r is not None:
                        rss.setdefault(name, []).append((now, r))
                idx = probe.stage("index: index")
                peak_vectors = max(peak_vectors, int(idx.get("gallery_size", 0)))
                peak_thumbs = max(peak_thumbs, int(idx.get("thumb_bytes", 0)))
                time.sleep(a.every)
                bar.update(int(time.monotonic() - t0) - bar.n)
        idx = probe.stage("index: index")
        emb = probe.stage("embedder: embedder")
    probe.close()

    print(f"\nsoak: {a.minutes:.0f} min, config {a.config}, camera unpaced on a looping 6 s video, capacity "
          f"{a.capacity} embeddings, thumbnail budget {a.thumb_budget} B; warm-up {warmup_s / 60:.1f} min")
    print(f"{'node':<22} {'RSS start MB':>12} {'after warm-up':>14} {'end MB':>8} {'growth':>8}")
    worst = 0.0
    for name, samples in sorted(rss.items()):
        post = [r for t, r in samples if t >= warmup_s] or [samples[-1][1]]
        g = growth(samples, warmup_s)
        worst = max(worst, g) if g == g else worst
        print(f"{name:<22} {samples[0][1] / 2**20:>12.1f} {post[0] / 2**20:>14.1f} {samples[-1][1] / 2**20:>8.1f} "
              f"{100 * g:>7.1f}%")
    print(f"embedder crops embedded: {emb.get('count', '?')}; index evicted {idx.get('evicted_total', '?')} "
          f"embeddings; peak gallery {peak_vectors} / {a.capacity} embeddings, peak thumbnails "
          f"{peak_thumbs} / {a.thumb_budget} B")
    ok = worst < 0.05 and peak_vectors <= a.capacity and peak_thumbs <= a.thumb_budget
    print(f"worst RSS growth after warm-up {100 * worst:.1f}% (target < 5 %): {'PASS' if ok else 'FAIL'}")
    if a.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(8, 4))
        for name, samples in sorted(rss.items()):
            ax.plot([t / 60 for t, _ in samples], [r / 2**20 for _, r in samples], label=name)
        ax.axvline(warmup_s / 60, color="grey", ls="--", lw=1)
        ax.set_xlabel("minutes")
        ax.set_ylabel("RSS (MB)")
        ax.set_title(f"soak: RSS per node ({a.minutes:.0f} min, capacity {a.capacity})")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(a.plot, dpi=110)
        print(f"RSS curves: {a.plot}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
