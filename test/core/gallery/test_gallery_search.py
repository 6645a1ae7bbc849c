"""RollingGallery search: exact top-k against brute force, filters, per-track aggregation."""

from __future__ import annotations

import numpy as np
import pytest

from person_search.core.config import GalleryConfig
from person_search.core.gallery import RollingGallery
from gallerykit import S, brute_force, check_invariants, gallery, live_rows, make_batch, unit


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
