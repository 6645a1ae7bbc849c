"""RollingGallery snapshots: round trip, empty, mismatches, corrupt or missing files."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from person_search.core.gallery import GalleryMismatchError, RollingGallery, SnapshotError
from person_search.core.types import TrackMatch
from gallerykit import MODEL, S, busy_gallery, check_invariants, gallery, make_batch, unit


# ---------------------------------------------------------------------------- snapshots


def test_snapshot_round_trip_answers_every_query_identically(tmp_path, storage):
    g, rng = busy_gallery(storage=storage)
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
    g, _ = busy_gallery()
    g.save(tmp_path / "g.npz")
    with pytest.raises(GalleryMismatchError, match="test-model.*other"):
        RollingGallery.load(tmp_path / "g.npz", model_id="other")
    with pytest.raises(GalleryMismatchError, match="dim 8.*512"):
        RollingGallery.load(tmp_path / "g.npz", dim=512)


def test_corrupt_or_missing_snapshot_refused_clearly(tmp_path):
    g, _ = busy_gallery()
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
