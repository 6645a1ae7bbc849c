"""RollingGallery eviction by age and capacity, memory, the thumbnail budget, refused input."""

from __future__ import annotations

import numpy as np
import pytest

from person_search.core.gallery import GalleryMismatchError
from gallerykit import S, check_invariants, gallery, live_rows, make_batch, unit


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
