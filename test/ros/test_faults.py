"""Faults over real DDS: corrupt snapshots, failed snapshot writes, kill -9 of every node under `up`."""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from person_search.core.types import EmbeddingBatch
from person_search.graph import Graph, NodeSpec, config_path
from procs import node_processes

ROOT = Path(__file__).resolve().parents[2]
DIM = 64


def _batch(rng, track: int, stamp_ns: int) -> EmbeddingBatch:
    v = rng.normal(size=(1, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return EmbeddingBatch(model_id="fault-test@random", vectors=v, track_ids=np.array([track], np.int64),
                          boxes=np.array([[0, 0, 10, 20]], np.float32), scores=np.ones(1, np.float32),
                          stamp_ns=stamp_ns, source_id="cam0")


def _index_graph(tmp_path, snapshot: Path) -> Graph:
    return Graph([NodeSpec("index", "index_node")], config_path("test"), log_dir=tmp_path / "logs",
                 extra_params={"gallery.snapshot_path": str(snapshot), "gallery.snapshot_interval_s": 0.5})


def _log(tmp_path) -> str:
    p = tmp_path / "logs" / "index.log"
    return p.read_text(errors="replace") if p.exists() else ""


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def publisher(probe):
    from person_search.nodes.qos import RELIABLE_QOS
    from person_search_interfaces.msg import PersonEmbeddings
    pub = probe.node.create_publisher(PersonEmbeddings, "/person_embeddings", RELIABLE_QOS)
    yield pub
    probe.node.destroy_publisher(pub)


def _publish(publisher, rng, n: int, first_track: int) -> None:
    from person_search.nodes.convert import batch_to_msg
    for i in range(n):
        publisher.publish(batch_to_msg(_batch(rng, first_track + i, time.time_ns())))


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_snapshot_is_moved_aside_and_index_starts_empty(tmp_path, probe, publisher, damage):
    snap = tmp_path / "gallery.npz"
    if damage == "garbage":
        snap.write_bytes(os.urandom(4096))
    else:  # the first half of a real snapshot, as a crash mid-copy would leave it
        from person_search.core.config import GalleryConfig
        from person_search.core.gallery import RollingGallery
        g = RollingGallery(GalleryConfig(), dim=DIM, model_id="fault-test@random")
        rng = np.random.default_rng(0)
        for t in range(20):
            g.add(_batch(rng, t, time.time_ns()))
        g.save(str(snap))
        data = snap.read_bytes()
        snap.write_bytes(data[:len(data) // 2])
    with _index_graph(tmp_path, snap) as graph:
        probe.wait_for(lambda: "moved aside" in _log(tmp_path), 60, "the corrupt snapshot log line", graph=graph)
        probe.wait_for(lambda: publisher.get_subscription_count() > 0, 60, "the index to subscribe", graph=graph)
        aside = list(tmp_path.glob("gallery.npz.corrupt-*"))
        assert len(aside) == 1 and aside[0].stat().st_size > 0
        # the index still works: it takes embeddings and snapshots them to a fresh file
        _publish(publisher, np.random.default_rng(1), 5, first_track=100)
        probe.wait_for(lambda: snap.exists() and probe.last_size() >= 5, 30, "a fresh gallery", graph=graph)
        assert not graph.dead()
        assert "Traceback" not in _log(tmp_path)


def test_failed_snapshot_write_keeps_the_previous_snapshot(tmp_path, probe, publisher):
    snap = tmp_path / "gallery.npz"
    rng = np.random.default_rng(2)
    with _index_graph(tmp_path, snap) as graph:
        proc = graph.procs["/index"]
        probe.wait_for(lambda: publisher.get_subscription_count() > 0, 60, "the index to subscribe", graph=graph)
        _publish(publisher, rng, 10, first_track=1)
        probe.wait_for(lambda: snap.exists(), 30, "the first snapshot", graph=graph)
        time.sleep(1.0)  # let a second snapshot of the same content settle
        before = _digest(snap)
        # a file-size limit of 1 byte: every write of a new snapshot fails (EFBIG), as on a full
        # disk (the node's log file is limited too, so the failure is read from /diagnostics)
        soft, hard = resource.prlimit(proc.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (1, hard))
        _publish(publisher, rng, 10, first_track=50)

        def failures() -> int:
            with probe.lock:
                diag = next((v for k, v in probe.diagnostics.items() if k.endswith("index: index")), {})
            return int(diag.get("snapshot_failures", 0))
        probe.wait_for(lambda: failures() > 0, 30, "a failed snapshot on /diagnostics", graph=graph)
        assert _digest(snap) == before, "the previous snapshot was damaged by a failed write"
        assert proc.poll() is None, "the index died on a failed snapshot write"
        assert not list(tmp_path.glob("*.tmp*")), "a partial temporary file was left behind"
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (soft, hard))
        probe.wait_for(lambda: _digest(snap) != before, 30, "a snapshot once the disk has room again",
                       graph=graph)


def _node_pids(up_pid: int) -> dict:
    """Return {fully qualified node name: pid} of the children of ``up`` (from their command lines)."""
    return {name: pid for pid, name in node_processes(up_pid).items()}


def test_kill9_of_each_node_in_turn_is_survived_under_up(sample_video, tmp_path, probe):
    snap = tmp_path / "gallery.npz"
    up = subprocess.Popen([sys.executable, "-m", "person_search", "up", "--config", "test", "--source",
                           str(sample_video), "--loop", "--snapshot", str(snap), "--log-dir", str(tmp_path / "logs")],
                          cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        probe.wait_for(lambda: probe.last_size() > 0 and snap.exists(), 180, "the gallery and a snapshot")
        for name in ["/cam0/camera", "/cam0/detector", "/embedder", "/index", "/query"]:
            pids = _node_pids(up.pid)
            assert name in pids, f"{name} not running under up: {pids}"
            size_before = probe.last_size()
            os.kill(pids[name], signal.SIGKILL)
            probe.wait_for(lambda: _node_pids(up.pid).get(name) not in (None, pids[name]), 60,
                           f"{name} to be restarted")
            assert up.poll() is None, f"up gave up after killing {name}: {up.stderr.read()[-2000:]}"
            # the graph recovers: the gallery grows again past its size before the kill
            probe.wait_for(lambda: probe.last_size() > size_before, 120, f"ingest to resume after killing {name}")
        from person_search.cli.ros import query_service
        resp = query_service("a person", top_k=3, timeout=60)
        assert resp.success and len(resp.matches) > 0, resp.message
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            up.kill()
