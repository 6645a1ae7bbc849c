"""RollingGallery: exact search, exact eviction, per-track aggregation, thumbnails, snapshots."""

from __future__ import annotations

import threading
import zipfile

import numpy as np
import pytest

from person_search.core.config import GalleryConfig
from person_search.core.gallery import GalleryMismatchError, RollingGallery, SnapshotError
from person_search.core.types import EmbeddingBatch, TrackMatch

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


# ---------------------------------------------------------------------------- search


def test_known_vectors_retrieve_their_tracks_with_exact_scores():
    rng = np.random.default_rng(1)
    g = gallery(dim=32)
    vecs = unit(rng.standard_normal((40, 32)))
    for i in range(40):  # one track per vector, spread over many blocks
        g.add(make_batch(vecs[i], [i], 1.0 + i))
    assert len(g) == 40 and g.num_tracks == 40 and g.stats()["blocks"] >= 3
    for i in range(40):
        res = g.search(vecs[i], 5)
        assert res[0].track_id == i and res[0].source_id == "cam0"
        assert res[0].score == pytest.approx(1.0, abs=1e-6)
        expected = np.sort(vecs @ vecs[i])[::-1][:5]
        np.testing.assert_allclose([m.score for m in res], expected, atol=1e-6)
        assert [m.track_id for m in res] == list(np.argsort(-(vecs @ vecs[i]), kind="stable")[:5])


@pytest.mark.parametrize("storage", ["fp32", "fp16"])
def test_search_matches_brute_force_with_tombstones_and_many_blocks(storage):
    rng = np.random.default_rng(2)
    g = gallery(dim=8, max_per_track=3, diversity=0.9, storage=storage)  # low dim: many replacements -> dead rows
    for f in range(300):
        v = unit(rng.standard_normal((4, 8)))
        g.add(make_batch(v, rng.integers(0, 30, 4), f * 0.1, source=f"cam{f % 2}"))
    rows = check_invariants(g)
    assert g.stats()["added_total"] > len(g)  # replacements happened
    assert any(len(v) == 3 for v in rows.values())
    for _ in range(25):
        q = rng.standard_normal(8)
        for k in (1, 5, 60):
            res = g.search(q, k)
            exp = brute_force(g, q, k)
            assert [(m.source_id, m.track_id) for m in res] == [e[1] for e in exp]
            np.testing.assert_allclose([m.score for m in res], [e[0] for e in exp], atol=1e-6)
            assert len({(m.source_id, m.track_id) for m in res}) == len(res)  # deduplicated


def test_top_k_exact_when_dedup_eats_the_first_candidates():
    rng = np.random.default_rng(3)
    d = 64
    q = unit(rng.standard_normal(d))
    g = gallery(dim=d, diversity=0.999)
    # 10 "close" tracks with 8 embeddings each all scoring above every other track:
    # the first 4*top_k candidate vectors belong to only a few tracks
    for t in range(10):
        noise = unit(rng.standard_normal((8, d)))
        g.add(make_batch(unit(q + 0.15 * noise), [t] * 8, 1.0))
    for t in range(10, 60):
        g.add(make_batch(unit(rng.standard_normal((2, d))), [t] * 2, 2.0))
    assert len(g) == 10 * 8 + 50 * 2
    res = g.search(q, 12)
    assert len(res) == 12
    exp = brute_force(g, q, 12)
    assert [(m.source_id, m.track_id) for m in res] == [e[1] for e in exp]
    assert {m.track_id for m in res[:10]} == set(range(10))
    assert all(m.num_embeddings == 8 for m in res[:10])
    # asking for more tracks than exist returns them all
    assert len(g.search(q, 1000)) == 60


def test_camera_and_time_filters_return_exactly_top_k():
    rng = np.random.default_rng(4)
    d = 16
    q = unit(rng.standard_normal(d))
    g = gallery(dim=d)
    for t in range(50):  # cam A: strong matches, seen at 10..59 s
        g.add(make_batch(unit(q + 0.2 * rng.standard_normal(d)), [t], 10.0 + t, source="A"))
    for t in range(20):  # cam B: weak matches with the same track ids
        g.add(make_batch(unit(rng.standard_normal(d)), [t], 100.0 + t, source="B"))
    res = g.search(q, 7, source_id="B")
    assert len(res) == 7 and all(m.source_id == "B" for m in res)
    assert [(m.source_id, m.track_id) for m in res] == [e[1] for e in brute_force(g, q, 7, source_id="B")]
    res = g.search(q, 5, since_ns=20 * S, until_ns=29 * S, source_id="A")
    assert len(res) == 5
    assert all(20 * S <= m.last_seen_ns and m.first_seen_ns <= 29 * S for m in res)
    assert [m.track_id for m in res] == [
        e[1][1] for e in brute_force(g, q, 5, source_id="A", since_ns=20 * S, until_ns=29 * S)
    ]
    assert len(g.search(q, 100, since_ns=20 * S, until_ns=29 * S)) == 10
    assert g.search(q, 5, source_id="nope") == []
    strong = g.search(q, 100, min_score=0.8)
    assert strong and all(m.score >= 0.8 for m in strong)
    assert len(strong) == len(brute_force(g, q, 100, min_score=0.8))


def test_time_filter_uses_the_interval_a_track_was_seen():
    e = np.eye(4, dtype=np.float32)
    g = gallery(dim=4)
    g.add(make_batch(e[0], [1], 10.0))
    g.add(make_batch(e[1], [1], 30.0))  # track 1 seen over [10 s, 30 s]
    g.add(make_batch(e[2], [2], 40.0))
    ids = lambda **kw: sorted(m.track_id for m in g.search(e[0], 5, **kw))  # noqa: E731
    assert ids(since_ns=20 * S) == [1, 2]  # seen after 20 s (last_seen 30 s) though first seen before
    assert ids(until_ns=15 * S) == [1]  # seen before 15 s (first_seen 10 s) though last seen after
    assert ids(since_ns=20 * S, until_ns=25 * S) == [1]
    assert ids(since_ns=31 * S) == [2]
    assert ids(until_ns=9 * S) == []
    assert ids(since_ns=30 * S, until_ns=30 * S) == [1]  # bounds are inclusive


def test_filtered_search_exact_when_tracks_hold_more_rows_than_max_per_track(tmp_path):
    # A snapshot loaded with a smaller max_per_track keeps its tracks' rows: the
    # candidate widening must still find exactly top_k tracks.
    rng = np.random.default_rng(14)
    d = 32
    q = unit(rng.standard_normal(d))
    g = gallery(dim=d, diversity=0.9999)
    for t in range(25):
        g.add(
            make_batch(np.stack([unit(q + 0.05 * rng.standard_normal(d)) for _ in range(8)]), [t] * 8, 1.0, source="A")
        )
        base = unit(q + 0.3 * rng.standard_normal(d))  # B: each track's 8 rows clump together
        g.add(
            make_batch(
                np.stack([unit(base + 0.01 * rng.standard_normal(d)) for _ in range(8)]), [t] * 8, 1.0, source="B"
            )
        )
    g.save(tmp_path / "g.npz")
    cfg = GalleryConfig(window_s=1000.0, capacity=100_000, max_per_track=1, diversity=0.9999)
    h = RollingGallery.load(tmp_path / "g.npz", cfg)
    assert len(h) == 400 and h.num_tracks == 50
    assert h.track("B", 3).num_embeddings == 8 > h.cfg.max_per_track
    res = h.search(q, 20, source_id="B")
    assert [(m.source_id, m.track_id) for m in res] == [e[1] for e in brute_force(h, q, 20, source_id="B")]
    assert len(res) == 20


def test_query_validation():
    g = gallery(dim=8)
    g.add(make_batch(unit(np.ones(8)), [1], 1.0))
    for bad in (np.ones(7), np.ones((2, 8)), np.full(8, np.nan), np.zeros(8), np.array(["a"] * 8)):
        with pytest.raises(ValueError):
            g.search(bad, 3)
    for k in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            g.search(np.ones(8), k)
    assert len(g.search(np.ones((1, 8)), 3)) == 1
    assert gallery(dim=8).search(np.ones(8), 3) == []


def test_result_carries_box_of_best_matching_embedding_and_best_crop():
    g = gallery(dim=4, diversity=0.99)
    e = np.eye(4, dtype=np.float32)
    g.add(make_batch(e[0], [7], 1.0, boxes=[[1, 1, 2, 2]], qualities=[0.5], crops=[b"crop-a"], frame=b"frame-a"))
    g.add(make_batch(e[1], [7], 2.0, boxes=[[5, 5, 6, 6]], qualities=[0.9], crops=[b"crop-b"], frame=b"frame-b"))
    g.add(make_batch(e[2], [7], 3.0, boxes=[[8, 8, 9, 9]], qualities=[0.1], crops=[b"crop-c"], frame=b"frame-c"))
    (m,) = g.search(e[0], 5)
    assert m.box == (1.0, 1.0, 2.0, 2.0)  # box of the embedding that matched
    assert (m.crop_jpeg, m.frame_jpeg) == (b"crop-b", b"frame-b")  # best quality observation
    assert (m.first_seen_ns, m.last_seen_ns, m.num_embeddings) == (1 * S, 3 * S, 3)
    assert g.search(e[1], 1)[0].box == (5.0, 5.0, 6.0, 6.0)
    assert g.track("cam0", 7).last_box == (8.0, 8.0, 9.0, 9.0)
    # without qualities the detector score decides
    g.add(make_batch(e[3], [8], 4.0, scores=[0.3], crops=[b"low"]))
    g.add(make_batch(e[3], [8], 5.0, scores=[0.8], crops=[b"high"]))
    g.add(make_batch(e[3], [8], 6.0, scores=[0.5], crops=[b"mid"]))
    assert g.search(e[3], 1)[0].crop_jpeg == b"high"


# ---------------------------------------------------------------------------- aggregation


def test_per_track_diversity_and_max_per_track():
    d = 8
    e = np.eye(d, dtype=np.float32)
    g = gallery(dim=d, max_per_track=3, diversity=0.95)
    g.add(make_batch(e[0], [1], 1.0))
    near = unit(e[0] + 0.1 * e[1])  # cos 0.995 with e0
    assert g.add(make_batch(near, [1], 2.0)) == 0  # near duplicate: not stored
    assert len(g) == 1 and g.track("cam0", 1).last_seen_ns == 2 * S
    assert g.add(make_batch(e[1], [1], 3.0)) == 1
    assert g.add(make_batch(e[2], [1], 4.0)) == 1
    assert len(g) == 3
    # full and the new one is not more diverse than the kept set (kept are orthogonal): skipped
    assert g.add(make_batch(unit(e[0] + e[1]), [1], 5.0)) == 0
    assert len(g) == 3 and g.track("cam0", 1).num_embeddings == 3
    # a track is scored by its best embedding
    assert g.search(e[2], 1)[0].score == pytest.approx(1.0)
    check_invariants(g)

    # full with two similar kept embeddings: the most redundant one is replaced
    g2 = gallery(dim=d, max_per_track=3, diversity=0.95)
    a, b = e[0], unit(e[0] + 0.5 * e[1])  # cos(a, b) = 0.894 < diversity
    g2.add(make_batch(np.stack([a]), [1], 1.0))
    g2.add(make_batch(b, [1], 2.0))
    g2.add(make_batch(e[2], [1], 3.0))
    assert g2.add(make_batch(e[3], [1], 4.0)) == 1
    kept = np.stack([r[1] for r in live_rows(g2)[("cam0", 1)]])
    assert len(kept) == 3
    assert np.isclose(kept @ e[3], 1.0).sum() == 1 and np.isclose(kept @ e[2], 1.0).sum() == 1
    assert (np.isclose(kept @ a, 1.0).sum() + np.isclose(kept @ b, 1.0).sum()) == 1
    assert len(g2) == 3
    check_invariants(g2)


def test_two_cameras_same_track_id_are_separate_tracks():
    e = np.eye(4, dtype=np.float32)
    g = gallery(dim=4)
    g.add(make_batch(e[0], [1], 1.0, source="left"))
    g.add(make_batch(e[1], [1], 1.0, source="right"))
    assert g.num_tracks == 2 and len(g) == 2
    assert ("left", 1) in g and ("right", 1) in g and ("left", 2) not in g and "left" not in g
    res = g.search(e[1], 2)
    assert [(m.source_id, m.track_id) for m in res] == [("right", 1), ("left", 1)]
    assert res[0].score == pytest.approx(1.0) and res[1].score == pytest.approx(0.0, abs=1e-7)
    assert {(t.source_id, t.track_id) for t in g.tracks()} == {("left", 1), ("right", 1)}


def test_near_duplicate_refreshes_an_old_embedding_so_a_long_track_survives():
    e = np.eye(4, dtype=np.float32)
    g = gallery(dim=4, window_s=10.0)
    for t in range(0, 31):  # the same person, same appearance, for 30 s (3 windows)
        g.add(make_batch(e[0], [5], float(t)))
        assert ("cam0", 5) in g
        assert len(g) == 1
    tr = g.track("cam0", 5)
    assert tr.first_seen_ns == 0 and tr.last_seen_ns == 30 * S
    ((rid, vec, stamp),) = live_rows(g)[("cam0", 5)]
    assert stamp >= 20 * S  # refreshed at least once per half window


# ---------------------------------------------------------------------------- eviction


def test_age_eviction_is_exact_at_the_vector_level():
    rng = np.random.default_rng(5)
    g = gallery(dim=8, window_s=10.0, block_rows=16)
    stamps = np.arange(0, 40, 0.25)  # 4 vectors per second, one track each
    for i, s in enumerate(stamps):
        g.add(make_batch(unit(rng.standard_normal(8)), [i], s))
        kept = sorted(r[2] for rs in live_rows(g).values() for r in rs)
        cutoff = int(round(s * S)) - 10 * S
        assert kept == [int(round(x * S)) for x in stamps[: i + 1] if int(round(x * S)) >= cutoff]
    assert len(g) == 41  # [29.75, 39.75] inclusive: the boundary stamp is kept
    # explicit now: exactly the stamps >= now - window survive, also mid-block
    for now in (41.1, 43.0, 47.3):
        removed_before = len(g)
        n = g.evict(int(now * S))
        kept = sorted(r[2] for rs in live_rows(g).values() for r in rs)
        assert kept == [int(round(x * S)) for x in stamps if int(round(x * S)) >= int(now * S) - 10 * S]
        assert n == removed_before - len(g)
        check_invariants(g)
    assert g.evict(100 * S) == len(stamps[stamps >= 37.3]) and len(g) == 0 and g.num_tracks == 0
    assert g.stats()["blocks"] == 0 and g.search(np.ones(8), 3) == []


def test_age_eviction_with_out_of_order_stamps_from_several_cameras():
    rng = np.random.default_rng(6)
    g = gallery(dim=8, window_s=5.0, block_rows=16)
    sent = []
    for f in range(200):
        cam = f % 3
        s = f * 0.1 - cam * 0.7 + rng.uniform(0, 0.3)  # cameras lag each other
        b = make_batch(unit(rng.standard_normal((2, 8))), [f, f + 10_000], s, source=f"cam{cam}")
        g.add(b)
        sent.extend([b.stamp_ns] * 2)
        newest = max(sent)
        kept = sorted(r[2] for rs in live_rows(g).values() for r in rs)
        assert kept == sorted(x for x in sent if x >= newest - 5 * S)
    check_invariants(g)
    # a batch older than the window is dropped on arrival
    assert g.add(make_batch(unit(np.ones(8)), [99_999], (max(sent) - 6 * S) / S)) == 0


def test_capacity_eviction_drops_the_oldest_vectors():
    rng = np.random.default_rng(7)
    g = gallery(dim=8, capacity=50, block_rows=16)
    for i in range(80):
        g.add(make_batch(unit(rng.standard_normal(8)), [i], 1.0 + i * 0.01))
        assert len(g) == min(i + 1, 50)
    assert {t.track_id for t in g.tracks()} == set(range(30, 80))
    check_invariants(g)
    # multi-vector tracks: a track only disappears when its last vector goes
    g = gallery(dim=8, capacity=10, block_rows=16)
    g.add(make_batch(np.eye(8, dtype=np.float32)[:3], [1, 1, 1], 1.0))
    g.add(make_batch(unit(rng.standard_normal((8, 8))), list(range(10, 18)), 2.0))
    assert len(g) == 10 and g.track("cam0", 1).num_embeddings == 2
    check_invariants(g)


def test_memory_is_close_to_raw_vector_bytes():
    rng = np.random.default_rng(8)
    d, n = 512, 10_000
    g = gallery(dim=d, block_rows=4096, thumb_budget_bytes=0)
    v = unit(rng.standard_normal((n, d)))
    for f in range(0, n, 8):
        g.add(make_batch(v[f : f + 8], [f // 64 * 8 + i for i in range(8)], f * 0.001))
    assert len(g) == n
    raw = n * d * 4
    assert raw <= g.memory_bytes() <= 1.10 * raw
    st = g.stats()
    assert st["vectors"] == n and st["vector_bytes"] == raw and st["memory_bytes"] == g.memory_bytes()


# ---------------------------------------------------------------------------- thumbnails


def test_thumbnail_budget_drops_frames_of_oldest_tracks_first_then_crops():
    e = unit(np.random.default_rng(9).standard_normal((20, 8)))
    g = gallery(dim=8, thumb_budget_bytes=1000)
    for t in range(4):  # 4 tracks x (100 B crop + 200 B frame) = 1200 B > 1000
        g.add(make_batch(e[t], [t], 1.0 + t, crops=[b"c" * 100], frame=b"f" * 200))
        check_invariants(g)
    info = {t.track_id: t for t in g.tracks()}
    assert info[0].frame_bytes == 0 and info[0].crop_bytes == 100  # oldest loses its frame first
    assert all(info[t].frame_bytes == 200 and info[t].crop_bytes == 100 for t in (1, 2, 3))
    # seeing track 1 again makes track 2 the oldest holder of a frame: the next new
    # track (+300 B) costs the frames of tracks 2 and 3, not 1's
    g.add(make_batch(e[1], [1], 5.0))
    g.add(make_batch(e[10], [4], 6.0, crops=[b"c" * 100], frame=b"f" * 200))
    info = {t.track_id: t for t in g.tracks()}
    assert [info[t].frame_bytes for t in range(5)] == [0, 200, 0, 0, 200]
    assert all(t.crop_bytes == 100 for t in info.values())
    # a big crop: all frames go before any crop
    g.add(make_batch(e[11], [5], 7.0, crops=[b"c" * 600]))
    info = {t.track_id: t for t in g.tracks()}
    assert sum(t.frame_bytes for t in info.values()) <= 200
    assert sum(t.crop_bytes + t.frame_bytes for t in info.values()) <= 1000
    check_invariants(g)
    assert g.search(e[11], 1)[0].crop_jpeg == b"c" * 600
    g.add(make_batch(e[12], [6], 8.0, crops=[b"x" * 5000]))  # larger than the budget on its own
    assert g.track("cam0", 6).crop_bytes == 0
    check_invariants(g)


def test_thumbnails_released_with_their_track():
    g = gallery(dim=4, window_s=10.0)
    g.add(make_batch(np.eye(4)[0], [1], 0.0, crops=[b"c" * 50], frame=b"f" * 70))
    assert g.stats()["thumb_bytes"] == 120
    g.add(make_batch(np.eye(4)[1], [2], 20.0))
    assert ("cam0", 1) not in g and g.stats()["thumb_bytes"] == 0
    check_invariants(g)


# ---------------------------------------------------------------------------- refusals


def test_model_and_dim_mismatch_refused():
    g = gallery(dim=8)
    with pytest.raises(GalleryMismatchError, match=r"other-model.*test-model"):
        g.add(make_batch(np.ones(8), [1], 1.0, model="other-model"))
    with pytest.raises(GalleryMismatchError, match=r"dim 6.*dim 8"):
        g.add(make_batch(np.ones(6), [1], 1.0))
    assert issubclass(GalleryMismatchError, ValueError) and len(g) == 0


def test_non_finite_and_malformed_rows_refused_without_losing_state():
    g = gallery(dim=4)
    g.add(make_batch(np.eye(4)[:2], [1, 2], 1.0))
    before = (len(g), g.num_tracks, g.stats()["newest_ns"])
    bad = np.eye(4, dtype=np.float32)[:2].copy()
    bad[1, 2] = np.inf
    for b in (
        make_batch(bad, [3, 4], 2.0),
        make_batch(np.array([[np.nan] * 4]), [5], 2.0),
        make_batch(np.zeros((1, 4)), [5], 2.0),
    ):
        with pytest.raises(ValueError):
            g.add(b)
    wrong = make_batch(np.eye(4)[:2], [3], 2.0)  # 2 rows, 1 track id
    with pytest.raises(ValueError):
        g.add(wrong)
    wrong = make_batch(np.eye(4)[:2], [3, 4], 2.0, crops=[b"x"])
    with pytest.raises(ValueError):
        g.add(wrong)
    assert (len(g), g.num_tracks, g.stats()["newest_ns"]) == before
    assert g.add(make_batch(np.zeros((0, 4)), [], 3.0)) == 0
    # rows are re-normalised defensively
    g.add(make_batch(np.array([[0, 0, 3.0, 0]]), [9], 3.0))
    assert g.search(np.eye(4)[2], 1)[0].score == pytest.approx(1.0)


# ---------------------------------------------------------------------------- snapshots


def _busy_gallery(storage="fp32"):
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


@pytest.mark.parametrize("storage", ["fp32", "fp16"])
def test_snapshot_round_trip_answers_every_query_identically(tmp_path, storage):
    g, rng = _busy_gallery(storage=storage)
    assert g.stats()["dead_rows"] > 0 and g.stats()["thumb_bytes"] > 0
    path = tmp_path / "snap" / "gallery.npz"
    g.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["gallery.npz"]  # no temporary file left
    h = RollingGallery.load(path, model_id=MODEL, dim=8)
    assert (len(h), h.num_tracks, h.model_id, h.dim, h.cfg) == (len(g), g.num_tracks, g.model_id, g.dim, g.cfg)
    assert h.tracks() == g.tracks()
    assert h.stats()["thumb_bytes"] == g.stats()["thumb_bytes"]
    check_invariants(h)
    queries = rng.standard_normal((40, 8))
    for q in queries:
        for kw in ({}, {"source_id": "cam1"}, {"since_ns": 20 * S}, {"min_score": 0.3}):
            a = g.search(q, 7, **kw)
            assert a == h.search(q, 7, **kw)
            assert all(isinstance(m, TrackMatch) for m in a)
    # both keep evolving identically (same ids, eviction, thumbnail order)
    for f in range(150, 190):
        v = unit(rng.standard_normal((2, 8)))
        for x in (g, h):
            x.add(
                make_batch(
                    v,
                    [f % 7, 30],
                    f * 0.2,
                    source="cam0",
                    qualities=[0.5, 0.7],
                    crops=[b"a" * 30, b"b" * 30],
                    frame=b"F" * 100,
                )
            )
    assert h.tracks() == g.tracks()
    for q in queries:
        assert g.search(q, 10) == h.search(q, 10)
    # overwrite atomically
    h.save(path)
    assert RollingGallery.load(path).tracks() == h.tracks()


def test_snapshot_of_empty_gallery(tmp_path):
    g = gallery(dim=8)
    g.save(tmp_path / "e.npz")
    h = RollingGallery.load(tmp_path / "e.npz")
    assert len(h) == 0 and h.search(np.ones(8), 3) == []
    h.add(make_batch(np.ones(8), [1], 1.0))
    assert len(h) == 1


def test_snapshot_model_and_dim_mismatch_refused(tmp_path):
    g, _ = _busy_gallery()
    g.save(tmp_path / "g.npz")
    with pytest.raises(GalleryMismatchError, match="test-model.*other"):
        RollingGallery.load(tmp_path / "g.npz", model_id="other")
    with pytest.raises(GalleryMismatchError, match="dim 8.*512"):
        RollingGallery.load(tmp_path / "g.npz", dim=512)


def test_corrupt_or_missing_snapshot_refused_clearly(tmp_path):
    g, _ = _busy_gallery()
    good = tmp_path / "good.npz"
    g.save(good)
    data = good.read_bytes()
    cases = {}
    cases["missing.npz"] = None
    cases["truncated.npz"] = data[: len(data) // 2]
    cases["garbage.npz"] = b"not a zip at all" * 10
    cases["empty.npz"] = b""
    for name, content in cases.items():
        p = tmp_path / name
        if content is not None:
            p.write_bytes(content)
        with pytest.raises(SnapshotError, match=name):
            RollingGallery.load(p)
    # valid zip, wrong content
    with np.load(good, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    bad_meta = dict(arrays, meta=np.frombuffer(b'{"format": "something-else"}', np.uint8))
    bad_version = dict(
        arrays, meta=np.frombuffer(arrays["meta"].tobytes().replace(b'"version": 1', b'"version": 99'), np.uint8)
    )
    bad_rows = dict(arrays, ids=arrays["ids"][:-1])
    bad_track = dict(arrays, row_tidx=arrays["row_tidx"] + 10_000)
    no_meta = {k: v for k, v in arrays.items() if k != "meta"}
    pickled = dict(arrays, meta=np.array([{"a": 1}], dtype=object))
    for i, a in enumerate((bad_meta, bad_version, bad_rows, bad_track, no_meta, pickled)):
        p = tmp_path / f"bad{i}.npz"
        np.savez(p, **a)
        with pytest.raises(SnapshotError, match=f"bad{i}"):
            RollingGallery.load(p)
    assert issubclass(SnapshotError, ValueError)
    with zipfile.ZipFile(good) as z:
        assert all(n.endswith(".npy") for n in z.namelist())


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


@pytest.mark.parametrize("storage", ["fp32", "fp16"])
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


def clustered(rng, n_tracks, per_track, d, groups=8):
    """Person-like embeddings: tracks around group centres, embeddings around track centres."""
    g = unit(rng.standard_normal((groups, d)))
    centres = unit(g[rng.integers(0, groups, n_tracks)] + 0.6 * unit(rng.standard_normal((n_tracks, d))))
    return np.stack([unit(centres + 0.6 * unit(rng.standard_normal((n_tracks, d)))) for _ in range(per_track)], 1)


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
