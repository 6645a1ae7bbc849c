"""Shared by the gallery tests: batches of known vectors, small galleries, invariants and a brute-force reference."""

from __future__ import annotations

import numpy as np

from person_search.core.config import GalleryConfig
from person_search.core.gallery import RollingGallery
from person_search.core.types import EmbeddingBatch

S = 1_000_000_000  # ns per second
MODEL = "test-model"


def unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def make_batch(
    vecs,
    track_ids,
    stamp_s,
    *,
    source="cam0",
    model=MODEL,
    qualities=None,
    scores=None,
    crops=None,
    frame=b"",
    boxes=None,
):
    vecs = np.atleast_2d(np.asarray(vecs, np.float32))
    n = vecs.shape[0]
    if boxes is None:
        boxes = np.tile(np.arange(4, dtype=np.float32), (n, 1)) + np.arange(n, dtype=np.float32)[:, None]
    return EmbeddingBatch(
        model_id=model,
        vectors=vecs,
        track_ids=np.asarray(track_ids, np.int64).reshape(-1),
        boxes=np.asarray(boxes, np.float32),
        scores=np.full(n, 0.9, np.float32) if scores is None else np.asarray(scores, np.float32),
        stamp_ns=int(round(stamp_s * S)),
        source_id=source,
        crops_jpeg=list(crops) if crops is not None else [],
        qualities=None if qualities is None else np.asarray(qualities, np.float32),
        frame_jpeg=frame,
    )


def gallery(dim=16, block_rows=16, **cfg):
    base = dict(window_s=1000.0, capacity=100_000, max_per_track=8, diversity=0.95, thumb_budget_bytes=1 << 20)
    base.update(cfg)
    return RollingGallery(GalleryConfig(**base), dim=dim, model_id=MODEL, block_rows=block_rows)


def live_rows(g):
    """{(source, track): [(id, vector, stamp), ...]} read through the public API."""
    return {(t.source_id, t.track_id): g.embeddings(t.source_id, t.track_id) for t in g.tracks()}


def check_invariants(g):
    rows = live_rows(g)
    infos = g.tracks()
    assert len(g) == sum(len(v) for v in rows.values())
    assert g.num_tracks == len(rows) == len(infos)  # no track without vectors
    assert all(rs for rs in rows.values())
    all_ids = [r[0] for rs in rows.values() for r in rs]
    assert len(set(all_ids)) == len(all_ids)
    for t in infos:
        assert t.num_embeddings == len(rows[(t.source_id, t.track_id)]) <= g.cfg.max_per_track
    st = g.stats()
    assert st["vectors"] == len(g) and st["tracks"] == g.num_tracks and st["dead_rows"] >= 0
    assert st["thumb_bytes"] == sum(t.crop_bytes + t.frame_bytes for t in infos)
    assert st["thumb_bytes"] <= g.cfg.thumb_budget_bytes
    return rows


def brute_force(g, q, top_k, *, source_id=None, since_ns=None, until_ns=None, min_score=-1.0):
    q = unit(q).astype(np.float64)
    best = []
    for key, rs in live_rows(g).items():
        tr = g.track(*key)
        if source_id is not None and key[0] != source_id:
            continue
        if since_ns is not None and tr.last_seen_ns < since_ns:
            continue
        if until_ns is not None and tr.first_seen_ns > until_ns:
            continue
        s = max(float(r[1].astype(np.float64) @ q) for r in rs)
        if s >= min_score:
            best.append((s, key))
    best.sort(key=lambda x: -x[0])
    return best[:top_k]


def busy_gallery(storage="fp32"):
    rng = np.random.default_rng(10)
    g = gallery(dim=8, max_per_track=3, diversity=0.9, window_s=20.0, thumb_budget_bytes=3000, storage=storage)
    for f in range(150):
        v = unit(rng.standard_normal((3, 8)))
        crops = [bytes(rng.integers(0, 256, rng.integers(10, 60), dtype=np.uint8)) for _ in range(3)]
        g.add(
            make_batch(
                v,
                rng.integers(0, 25, 3),
                f * 0.2,
                source=f"cam{f % 3}",
                qualities=rng.random(3),
                crops=crops,
                frame=bytes([f % 256]) * 40,
            )
        )
    return g, rng


def clustered(rng, n_tracks, per_track, d, groups=8):
    """Person-like embeddings: tracks around group centres, embeddings around track centres."""
    g = unit(rng.standard_normal((groups, d)))
    centres = unit(g[rng.integers(0, groups, n_tracks)] + 0.6 * unit(rng.standard_normal((n_tracks, d))))
    return np.stack([unit(centres + 0.6 * unit(rng.standard_normal((n_tracks, d)))) for _ in range(per_track)], 1)
