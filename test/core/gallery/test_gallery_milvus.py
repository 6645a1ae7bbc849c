"""MilvusGallery against real Milvus Lite: parity with the FAISS gallery, eviction, models, two writers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="pymilvus is not installed (requirements.txt)")
pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (requirements.txt)")

from person_search.core.config import ConfigError, GalleryConfig  # noqa: E402
from person_search.core.gallery import (GalleryBackendError, GalleryMismatchError, MilvusGallery,  # noqa: E402
                                        RollingGallery, make_gallery)
from gallerykit import MODEL, S, clustered, make_batch, unit  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CFG = dict(window_s=1000.0, capacity=100_000, max_per_track=4, diversity=0.95, thumb_budget_bytes=1 << 20)


def both(tmp_path, dim=16, **cfg):
    c = GalleryConfig(**dict(CFG, **cfg))
    return RollingGallery(c, dim=dim, model_id=MODEL), MilvusGallery(c, dim=dim, model_id=MODEL,
                                                                     uri=str(tmp_path / "g.db"))


def as_rows(matches):
    return [(m.source_id, m.track_id, m.first_seen_ns, m.last_seen_ns, m.box, m.num_embeddings, m.crop_jpeg,
             m.frame_jpeg) for m in matches]


def test_same_inputs_same_answers_as_the_faiss_gallery(tmp_path):
    rng = np.random.default_rng(30)
    d, n_tracks = 16, 40
    v = clustered(rng, n_tracks, 6, d, groups=5)
    faiss_g, milvus_g = both(tmp_path, dim=d)
    quality = rng.random((6, 2, n_tracks // 2))
    assert milvus_g.rows_name.startswith("ps_test_model_") and milvus_g.rows_name.endswith("_d16_rows")
    for f in range(6):  # two cameras, max_per_track 4 of 6 views: replacements happen
        for g in (faiss_g, milvus_g):
            for c, cam in enumerate(("left", "right")):
                ids = np.arange(n_tracks // 2) + c * (n_tracks // 2)
                g.add(make_batch(v[ids, f], ids, 1.0 + f + 0.5 * c, source=cam, crops=[b"c%d" % i for i in ids],
                                 qualities=quality[f, c], frame=b"F%d" % f))
    assert len(milvus_g) == len(faiss_g) and milvus_g.num_tracks == faiss_g.num_tracks == n_tracks
    assert sorted(map(astuple, milvus_g.tracks())) == sorted(map(astuple, faiss_g.tracks()))
    for q in clustered(rng, 10, 1, d, groups=5)[:, 0]:
        for kw in ({}, {"source_id": "right"}, {"since_ns": int(4.6 * S)}, {"until_ns": int(1.2 * S)},
                   {"min_score": 0.5}):
            a, b = faiss_g.search(q, 5, **kw), milvus_g.search(q, 5, **kw)
            assert as_rows(b) == as_rows(a), kw
            np.testing.assert_allclose([m.score for m in b], [m.score for m in a], atol=1e-5)
    with pytest.raises(GalleryMismatchError):
        milvus_g.add(make_batch(np.ones(d), [1], 9.0, model="other"))
    with pytest.raises(ValueError):
        milvus_g.search(np.ones(d - 1), 3)
    milvus_g.close()


def test_window_and_capacity_eviction(tmp_path):
    e = unit(np.random.default_rng(31).standard_normal((30, 8)))
    faiss_g, milvus_g = both(tmp_path, dim=8, window_s=10.0, capacity=8)
    for i in range(20):
        for g in (faiss_g, milvus_g):
            g.add(make_batch(e[i], [i], float(i)))
    assert len(milvus_g) == len(faiss_g) == 8  # capacity: the oldest went first
    assert {t.track_id for t in milvus_g.tracks()} == {t.track_id for t in faiss_g.tracks()} == set(range(12, 20))
    assert milvus_g.evict(int(25 * S)) == faiss_g.evict(int(25 * S)) == 3  # stamps < 15 s go
    assert {m.track_id for m in milvus_g.search(e[0], 30)} == set(range(15, 20))
    assert milvus_g.num_tracks == 5
    assert milvus_g.add(make_batch(e[21], [21], 1.0)) == 0  # older than the window: dropped on arrival
    milvus_g.close()


def test_models_live_in_separate_collections(tmp_path):
    cfg = GalleryConfig(**CFG)
    uri = str(tmp_path / "m.db")
    a = MilvusGallery(cfg, dim=8, model_id="model-a", uri=uri)
    a.add(make_batch(np.eye(8)[0], [1], 1.0, model="model-a"))
    a.close()
    b = MilvusGallery(cfg, dim=8, model_id="model/b", uri=uri)
    assert b.rows_name != a.rows_name and len(b) == 0 and b.search(np.eye(8)[0], 3) == []
    b.add(make_batch(np.eye(8)[1], [2], 1.0, model="model/b"))
    with pytest.raises(GalleryMismatchError, match="model-a"):
        b.add(make_batch(np.eye(8)[0], [1], 1.0, model="model-a"))
    b.close()
    a = MilvusGallery(cfg, dim=8, model_id="model-a", uri=uri)  # reopened: the data stayed
    assert [m.track_id for m in a.search(np.eye(8)[0], 3)] == [1]
    a.close()


def test_factory_and_config_refusals(tmp_path):
    g = make_gallery(GalleryConfig(backend="milvus", milvus_uri=str(tmp_path / "f.db")), dim=4, model_id=MODEL)
    assert isinstance(g, MilvusGallery)
    g.close()
    assert isinstance(make_gallery(GalleryConfig(), dim=4, model_id=MODEL), RollingGallery)
    with pytest.raises(ConfigError, match="milvus_uri"):
        make_gallery(GalleryConfig(backend="milvus"), dim=4, model_id=MODEL)
    with pytest.raises(ConfigError, match="snapshot_path"):
        GalleryConfig(backend="milvus", milvus_uri="x.db", snapshot_path="s.npz").validate()
    with pytest.raises(GalleryBackendError, match="neither"):
        MilvusGallery(GalleryConfig(**CFG), dim=4, model_id=MODEL, uri="ftp://host/x")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from person_search.core.config import GalleryConfig
    from person_search.core.gallery import make_gallery
    from person_search.core.types import EmbeddingBatch
    uri, cam, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    g = make_gallery(GalleryConfig(backend="milvus", milvus_uri=uri), dim=8, model_id="shared")
    v = np.random.default_rng(seed).standard_normal((5, 8)).astype(np.float32)
    for f in range(3):
        g.add(EmbeddingBatch("shared", v, np.arange(5), np.zeros((5, 4), np.float32), np.ones(5, np.float32),
                             (f + 1) * 10**9, cam, crops_jpeg=[cam.encode()] * 5))
    g.close()
""")


def test_two_writer_processes_share_one_milvus_lite_server(tmp_path):
    port = free_port()
    exe = Path(sys.executable).parent / "milvus-lite"  # the console script milvus-lite installs
    server = subprocess.Popen([str(exe), "server", "--data-dir", str(tmp_path / "srv"), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:  # wait for the port, not a fixed sleep
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()
                assert time.monotonic() < deadline, "milvus-lite server did not open its port"
                time.sleep(0.1)
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        writers = [subprocess.Popen([sys.executable, "-c", WRITER, uri, cam, str(i)], env=env,
                                    stderr=subprocess.PIPE) for i, cam in enumerate(("front", "back"))]
        for w in writers:
            assert w.wait(timeout=60) == 0, w.stderr.read().decode()[-2000:]
        reader = MilvusGallery(GalleryConfig(**CFG), dim=8, model_id="shared", uri=uri)
        assert reader.num_tracks == 10
        res = reader.search(np.ones(8), 10)
        assert {(m.source_id, m.track_id) for m in res} == {(c, t) for c in ("front", "back") for t in range(5)}
        assert all(m.crop_jpeg == m.source_id.encode() and m.first_seen_ns == S and m.last_seen_ns == 3 * S
                   for m in res)
        assert {m.source_id for m in reader.search(np.ones(8), 10, source_id="back")} == {"back"}
        reader.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
