"""RollingGallery under concurrency and random operations; fp16 storage and the IVF index."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from gallerykit import S, brute_force, check_invariants, clustered, gallery, make_batch, unit


# ---------------------------------------------------------------------------- misc


def test_concurrent_add_and_search():
    rng = np.random.default_rng(11)
    g = gallery(dim=16, window_s=2.0, capacity=300, block_rows=32)
    errors = []
    stop = threading.Event()

    def searcher():
        r = np.random.default_rng(12)
        try:
            while not stop.is_set():
                for m in g.search(r.standard_normal(16), 5):
                    assert -1.0001 <= m.score <= 1.0001
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    th = threading.Thread(target=searcher)
    th.start()
    try:
        for f in range(400):
            g.add(make_batch(unit(rng.standard_normal((3, 16))), rng.integers(0, 40, 3), f * 0.02))
    finally:
        stop.set()
        th.join()
    assert not errors
    check_invariants(g)
    assert len(g) <= 300


def test_random_operations_keep_invariants_and_exact_search(storage):
    rng = np.random.default_rng(13)
    g = gallery(
        dim=6, window_s=3.0, capacity=120, max_per_track=4, diversity=0.8, block_rows=16, thumb_budget_bytes=500,
        storage=storage,
    )
    t = 0.0
    for step in range(400):
        t += rng.uniform(0, 0.05)
        n = int(rng.integers(1, 4))
        g.add(
            make_batch(
                unit(rng.standard_normal((n, 6))),
                rng.integers(0, 30, n),
                t - rng.uniform(0, 0.5),
                source=f"c{rng.integers(0, 2)}",
                crops=[b"z" * int(rng.integers(1, 40))] * n,
                qualities=rng.random(n),
            )
        )
        if step % 37 == 0:
            g.evict(int((t + rng.uniform(0, 1)) * S))
        if step % 10 == 0:
            check_invariants(g)
            q = rng.standard_normal(6)
            assert [(m.source_id, m.track_id) for m in g.search(q, 6)] == [e[1] for e in brute_force(g, q, 6)]


# ---------------------------------------------------------------------------- storage and index options


def test_fp16_storage_halves_vector_memory_and_keeps_the_ranking():
    rng = np.random.default_rng(20)
    d, n_tracks = 256, 400
    v = clustered(rng, n_tracks, 8, d)
    a, b = gallery(dim=d, block_rows=1024), gallery(dim=d, block_rows=1024, storage="fp16")
    for f in range(8):
        for x in (a, b):
            x.add(make_batch(v[:, f], np.arange(n_tracks), 1.0 + f))
    assert len(a) == len(b) == n_tracks * 8
    assert b.stats()["vector_bytes"] * 2 == a.stats()["vector_bytes"]
    assert b.memory_bytes() < 0.6 * a.memory_bytes()
    for q in clustered(rng, 20, 1, d)[:, 0]:
        ra, rb = a.search(q, 10), b.search(q, 10)
        np.testing.assert_allclose([m.score for m in rb], [m.score for m in ra], atol=2e-3)
        assert len({m.track_id for m in ra} & {m.track_id for m in rb}) >= 9  # near-ties may swap


def test_ivf_index_recall_and_exact_eviction():
    rng = np.random.default_rng(21)
    d, n_tracks = 32, 300
    v = clustered(rng, n_tracks, 8, d, groups=12)
    kw = dict(dim=d, window_s=100.0, capacity=2400, block_rows=256, diversity=0.999)
    exact, ivf = gallery(**kw), gallery(index="ivf", ivf_nprobe=16, **kw)
    for f in range(8):
        for x in (exact, ivf):
            x.add(make_batch(v[:, f], np.arange(n_tracks), 10.0 * f))
    assert ivf.stats()["ann_ready"] and not exact.stats()["ann_ready"]
    queries = clustered(rng, 30, 1, d, groups=12)[:, 0]

    def recall():
        hits = [len({m.track_id for m in ivf.search(q, 10)} & {m.track_id for m in exact.search(q, 10)})
                for q in queries]
        return sum(hits) / (10 * len(queries))

    assert recall() >= 0.9
    # evict the first 4 frames by time: no evicted row may come back, scores are the kept rows'
    for x in (exact, ivf):
        assert x.evict(int(135 * S)) == 4 * n_tracks
    for q in queries:
        exp = dict(((k[1], s) for s, k in brute_force(ivf, q, 10_000)))
        for m in ivf.search(q, 10):
            assert m.score == pytest.approx(exp[m.track_id], abs=1e-5)
    assert recall() >= 0.9
    # replacements (tombstones) are never returned either
    w = unit(rng.standard_normal((n_tracks, d)))
    for x in (exact, ivf):
        x.add(make_batch(w, np.arange(n_tracks), 80.0))
    check_invariants(ivf)
    for q in list(queries) + list(w[:5]):
        exp = dict(((k[1], s) for s, k in brute_force(ivf, q, 10_000)))
        for m in ivf.search(q, 10):
            assert m.score == pytest.approx(exp[m.track_id], abs=1e-5)


def test_bad_storage_or_index_refused_clearly():
    from person_search.core.config import ConfigError
    for bad in (dict(storage="int8"), dict(index="hnsw"), dict(backend="redis"), dict(backend="milvus")):
        with pytest.raises(ConfigError, match="gallery"):
            gallery(**bad)
