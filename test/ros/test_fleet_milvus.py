"""A fleet: two robots' index nodes write to one Milvus (a milvus-lite server on loopback); one
query node answers over both robots' cameras, and a person robot 1 saw is the same person when
robot 2 sees them (re-id features shared through Milvus). Real rclpy, real DDS, real Milvus Lite."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="pymilvus is not installed (requirements.txt)")
pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (requirements.txt)")

from person_search.graph import Graph, NodeSpec, config_path  # noqa: E402

DIM = 64  # PS-Tiny-ViT, the test config's CLIP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def milvus_server(tmp_path):
    port = _free_port()
    exe = Path(sys.executable).parent / "milvus-lite"
    server = subprocess.Popen([str(exe), "server", "--data-dir", str(tmp_path / "milvus"), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "milvus-lite server did not open its port"
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=20)


def _batch_msg(model_id: str, camera: str, track: int, vec: np.ndarray, reid=None, stamp_ns=None):
    from person_search.core.types import EmbeddingBatch
    from person_search.nodes.convert import batch_to_msg
    return batch_to_msg(EmbeddingBatch(model_id=model_id, vectors=vec[None].astype(np.float32),
                                       track_ids=np.array([track], np.int64),
                                       boxes=np.array([[0, 0, 10, 20]], np.float32), scores=np.ones(1, np.float32),
                                       stamp_ns=stamp_ns or time.time_ns(), source_id=camera,
                                       reid_vectors=None if reid is None else reid[None].astype(np.float32),
                                       reid_model_id="osnet@fleet-test" if reid is not None else ""))


def _look(seed: int, n: int) -> np.ndarray:
    """n re-id features of one appearance (cosine to each other ~0.85)."""
    rng = np.random.default_rng(seed)
    out = rng.normal(size=512) + 0.6 * rng.normal(size=(n, 512))
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_two_robots_write_one_milvus_and_one_query_node_sees_both(probe, tmp_path, milvus_server):
    from tinykit import cfg
    from person_search.nodes.convert import time_to_ns
    from person_search.core.clip_encoder import ClipEncoder
    from person_search.nodes.qos import RELIABLE_QOS
    from person_search_interfaces.msg import PersonEmbeddings

    gallery = {"gallery.backend": "milvus", "gallery.milvus_uri": milvus_server, "gallery.snapshot_path": ""}
    specs = [NodeSpec("index", "index_node", "/robot1", parameters=gallery),
             NodeSpec("index", "index_node", "/robot2", parameters=gallery),
             NodeSpec("query", "query_node", "/robot1")]
    # the embeddings the robots publish: the text embedding of what each camera "saw", so that
    # a query ranks them; the model id is the query node's (the test config's tiny CLIP)
    enc = ClipEncoder(cfg(), towers=("text",))
    seen = {"robot1": ("front1", "a photo of a man in a red jacket."),
            "robot2": ("front2", "a photo of a woman with a blue bag.")}
    pubs = {r: probe.node.create_publisher(PersonEmbeddings, f"/{r}/person_embeddings", RELIABLE_QOS) for r in seen}
    with Graph(specs, config_path("test"), log_dir=tmp_path / "logs") as graph:
        probe.wait_for(lambda: all(p.get_subscription_count() >= 1 for p in pubs.values()), 90,
                       "both index nodes to subscribe", graph=graph)
        for robot, (camera, text) in seen.items():
            vec = enc.encode_text([text])[0]
            for track in range(3):
                pubs[robot].publish(_batch_msg(enc.model_id, camera, 100 + track, vec))

        def answers_both() -> bool:
            resp = probe.query("a person", top_k=10, service="/robot1/query_person", timeout=30)
            # all six tracks, not only both cameras: each index node writes its rows as they come, so a
            # robot's last track may land a moment after its first (a fresh clone caught 5 of 6)
            return (resp.success and len(resp.matches) == 6
                    and {m.camera_frame_id for m in resp.matches} == {"front1", "front2"})
        probe.wait_for(answers_both, 120, "robot1's query node to see both robots' six tracks", graph=graph)
        resp = probe.query("a man in a red jacket", top_k=10, service="/robot1/query_person")
        assert resp.success and len(resp.matches) == 6, resp.message
        assert resp.matches[0].camera_frame_id == "front1"  # the robot that saw him ranks first
        only2 = probe.query("a man in a red jacket", top_k=10, camera="front2", service="/robot1/query_person")
        assert {m.camera_frame_id for m in only2.matches} == {"front2"}

        # one person: robot 1 sees him first (track 500), robot 2 later (track 600); each robot's
        # index node links its own tracks, robot 2's through the decided tracks robot 1 put in Milvus
        red = enc.encode_text(["a photo of a man in a red jacket."])[0]
        look, t0 = _look(7, 16), time.time_ns()
        for i in range(8):
            pubs["robot1"].publish(_batch_msg(enc.model_id, "front1", 500, red, look[i], t0 + i * 100_000_000))

        def robot1_has_seen_all() -> bool:  # its 8th crop is in: track 500 is decided and shared
            r = probe.query("a man in a red jacket", top_k=10, by_track=True, service="/robot1/query_person")
            return any(m.track_id == 500 and time_to_ns(m.last_seen) == t0 + 7 * 100_000_000 for m in r.matches)
        probe.wait_for(robot1_has_seen_all, 60, "robot 1 to take track 500", graph=graph)
        t1 = t0 + 5_000_000_000
        for i in range(8):
            pubs["robot2"].publish(_batch_msg(enc.model_id, "front2", 600, red, look[8 + i], t1 + i * 100_000_000))

        def one_person_on_both_robots() -> bool:
            r = probe.query("a man in a red jacket", top_k=10, service="/robot1/query_person")
            him = [m for m in r.matches if 500 in m.person_track_ids]
            return bool(him) and sorted(zip(him[0].cameras, him[0].person_track_ids)) == [("front1", 500),
                                                                                          ("front2", 600)]
        probe.wait_for(one_person_on_both_robots, 60, "robot 2's track 600 to join robot 1's person", graph=graph)
        per_track = probe.query("a man in a red jacket", top_k=10, by_track=True, service="/robot1/query_person")
        ids = {(m.camera_frame_id, m.track_id): m.person_id for m in per_track.matches}
        assert ids[("front1", 500)] == ids[("front2", 600)] > 0 and ids[("front1", 100)] == -1
        assert not graph.dead()
