"""Persons across robots: two index nodes' linkers share their decided tracks through one Milvus (Lite, real).

Each "robot" is a MilvusGallery + PersonLinker on the same Milvus Lite file (one process,
as the fleet shares a server); robot B's track joins the person robot A already knows, with
the same guards as on one robot; answers by person on either robot show both cameras.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="pymilvus is not installed (requirements.txt)")
pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (requirements.txt)")

from person_search.core.config import GalleryConfig, ReidConfig  # noqa: E402
from person_search.core.gallery import MilvusGallery  # noqa: E402
from person_search.core.gallery.persons import PersonLinker, search_persons  # noqa: E402
from gallerykit import MODEL, make_batch, unit  # noqa: E402
from test_persons import LOOKS, S, crops  # noqa: E402

REID = "osnet@test"
CLIP_DIM = 16


def robot(uri: str, cfg: ReidConfig):
    g = MilvusGallery(GalleryConfig(window_s=1000.0, max_per_track=4), dim=CLIP_DIM, model_id=MODEL, uri=uri)
    lk = PersonLinker(cfg, window_s=1000.0)
    lk.attach(g.person_store(REID, 512))
    return g, lk


def see(g, lk, cam, tid, look, t0, clip_vec, n=4, step=0.2):
    """A track seen on n frames: its CLIP embedding into the gallery, its re-id features into the linker."""
    for i, f in enumerate(crops(look, n, seed=tid)):
        stamp = t0 + i * step
        g.add(make_batch(clip_vec[None], [tid], stamp, source=cam))
        lk.observe(cam, [tid], int(stamp * S), f[None], REID)
    return lk.person_of(cam, tid)


def test_robot_b_links_to_the_person_robot_a_knows(tmp_path):
    uri = str(tmp_path / "fleet.db")
    cfg = ReidConfig(link_threshold=0.6, link_margin=0.05, min_link_crops=3)
    ga, la = robot(uri, cfg)
    gb, lb = robot(uri, cfg)
    rng = np.random.default_rng(1)
    red, blue = unit(rng.normal(size=CLIP_DIM)), unit(rng.normal(size=CLIP_DIM))
    a = see(ga, la, "front1", 1, "A", 0.0, red)
    b = see(ga, la, "front1", 2, "B", 0.0, blue)
    assert a != b and a > la.shared.id_base  # robot A's ids come from its own range
    # robot B: person A walks by later, and a stranger (look C)
    assert see(gb, lb, "front2", 7, "A", 30.0, red) == a
    c = see(gb, lb, "front2", 8, "C", 30.0, unit(rng.normal(size=CLIP_DIM)))
    assert c not in (a, b) and c > lb.shared.id_base and lb.shared.id_base != la.shared.id_base
    assert lb.stats()["person_links"] == 1 and lb.stats()["person_tracks_shared"] == 2
    # an ambiguous track (half A, half B) stays alone, as on one robot
    mix = LOOKS["A"] + LOOKS["B"]
    assert see(gb, lb, "front2", 9, mix / np.linalg.norm(mix), 40.0, red) not in (a, b)

    # answers by person: one entry for A, with both robots' cameras, asked on either robot
    for g, lk in ((gb, lb), (ga, la)):
        _, groups = search_persons(g, lk, red, 5)
        first = groups[0]
        assert first.person_id == a
        assert sorted(zip(first.cameras, first.track_ids)) == [("front1", 1), ("front2", 7)]
        assert first.first_seen_ns == 0 and first.last_seen_ns >= int(30.6 * S)
        assert len({gr.person_id for gr in groups}) == len(groups)
    tracks, groups = search_persons(gb, lb, red, 5, by_track=True)
    assert groups is None and {(m.source_id, m.track_id) for m in tracks} >= {("front1", 1), ("front2", 7)}
    # robot A's "find similar" sees robot B's sightings too
    la.sync()
    assert la.similar(la.track_feature("front1", 1), 1, exclude=[("front1", 1)])[0][0] == ("front2", 7)

    # a third robot restarted later reads the same persons; its own file holds only its tracks
    gc, lc = robot(uri, cfg)
    assert see(gc, lc, "rear3", 3, "B", 60.0, blue) == b
    path = lc.save(tmp_path / "c.persons.npz")
    assert set(PersonLinker.load(path, cfg).tracks) == {("rear3", 3)}


def test_same_camera_at_once_is_never_one_person_across_robots(tmp_path):
    """Two robots that name a camera alike: a remote track in that camera at the same time is not joined."""
    uri = str(tmp_path / "fleet.db")
    cfg = ReidConfig(link_threshold=0.6, link_margin=0.05, min_link_crops=3)
    ga, la = robot(uri, cfg)
    gb, lb = robot(uri, cfg)
    v = unit(np.ones(CLIP_DIM))
    a = see(ga, la, "gate", 1, "A", 0.0, v, n=6)
    assert see(gb, lb, "yard", 3, "A", 0.4, v) == a  # another camera at that time: may be the same person
    assert see(gb, lb, "gate", 2, "A", 0.4, v) != a  # overlaps track 1's span in camera "gate": never


def test_eviction_reaches_the_shared_store(tmp_path):
    uri = str(tmp_path / "fleet.db")
    cfg = ReidConfig(link_threshold=0.6, min_link_crops=3)
    ga, la = robot(uri, cfg)
    gb, lb = robot(uri, cfg)
    v = unit(np.ones(CLIP_DIM))
    see(ga, la, "front1", 1, "A", 0.0, v)
    assert lb.sync() == 1
    la.window_ns = 10 * S
    see(ga, la, "front1", 2, "B", 100.0, v)
    assert la.evict(100 * S) == 1
    assert [(t.source_id, t.track_id) for t in lb.shared.others()] == [("front1", 2)]


def test_sync_reads_only_what_changed_and_a_full_read_drops_the_forgotten(tmp_path, monkeypatch):
    import person_search.core.gallery.persons as persons
    uri = str(tmp_path / "fleet.db")
    cfg = ReidConfig(link_threshold=0.6, link_margin=0.05, min_link_crops=3)
    ga, la = robot(uri, cfg)
    gb, lb = robot(uri, cfg)
    rng = np.random.default_rng(2)
    vec = unit(rng.normal(size=CLIP_DIM))
    for tid, look in enumerate("ABC", start=1):  # robot A decides three tracks
        see(ga, la, "front1", tid, look, 0.0, vec)
    assert lb.sync(full=True) == 3 and lb.stats()["person_tracks_shared"] == 3
    assert lb.sync() <= 1  # nothing new: at most the newest row again (read at or after its stamp)
    # robot A's track 1 is seen again: its row (span, mean) changes, and only it is read again
    see(ga, la, "front1", 1, "A", 5.0, vec, n=1)
    assert lb.sync() <= 2
    assert lb.tracks[("front1", 1)].last_ns == int(5.0 * S)
    # robot A forgets track 2 (its window): an incremental read cannot see a deletion, a full one does
    la._forget(("front1", 2))
    la.shared.remove([("front1", 2)])
    lb.sync()
    assert ("front1", 2) in lb.tracks
    monkeypatch.setattr(persons, "FULL_SYNC_S", 0.0)  # the periodic full re-read is due
    assert lb.sync() == 2 and ("front1", 2) not in lb.tracks and ("front1", 1) in lb.tracks
    assert lb.synced_rows <= 3 + 1 + 2 + 1 + 2
