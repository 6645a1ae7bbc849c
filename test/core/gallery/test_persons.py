"""Tracks linked into persons by re-id features: thresholds, the guards against chaining, snapshots."""

from __future__ import annotations

import numpy as np
import pytest

from person_search.core.config import ReidConfig
from person_search.core.gallery.persons import PersonLinker
from person_search.core.types import TrackMatch

S = 1_000_000_000
RNG = np.random.default_rng(0)
LOOKS = {name: v / np.linalg.norm(v) for name, v in zip("ABCD", RNG.normal(size=(4, 512)))}


def crops(look, n, noise=0.6, seed=0):
    """n noisy re-id features of one look (cosine to the look ~0.85 at noise 0.6)."""
    rng = np.random.default_rng(seed)
    base = LOOKS[look] if isinstance(look, str) else look
    out = base + noise * rng.normal(size=(n, 512)) / np.sqrt(512)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def feed(linker, cam, tid, look, t0, n=4, seed=None, step=0.2):
    for i, f in enumerate(crops(look, n, seed=tid * 100 + (seed or 0))):
        linker.observe(cam, [tid], int((t0 + i * step) * S), f[None], "osnet@test")
    return linker.person_of(cam, tid)


def test_same_look_later_joins_other_look_does_not():
    lk = PersonLinker(ReidConfig(link_threshold=0.6, min_link_crops=3))
    a1 = feed(lk, "cam0", 1, "A", 0.0)
    b = feed(lk, "cam0", 2, "B", 0.0)
    a2 = feed(lk, "cam0", 3, "A", 10.0)  # A comes back: a new track
    assert a1 == a2 and a1 != b
    assert lk.tracks_of(a1) == [("cam0", 1), ("cam0", 3)]
    assert lk.stats()["person_links"] == 1


def test_a_track_decides_only_after_enough_crops():
    lk = PersonLinker(ReidConfig(link_threshold=0.6, min_link_crops=3))
    a1 = feed(lk, "cam0", 1, "A", 0.0)
    assert feed(lk, "cam0", 2, "A", 10.0, n=2) != a1  # two glimpses are not evidence enough
    assert feed(lk, "cam0", 2, "A", 11.0, n=1) == a1  # the third crop decides


def test_two_at_once_in_one_camera_are_two_people_but_two_cameras_may_be_one():
    lk = PersonLinker(ReidConfig(link_threshold=0.6, min_link_crops=3))
    a1 = feed(lk, "cam0", 1, "A", 0.0, n=10)
    twin = feed(lk, "cam0", 2, "A", 0.5)  # same look, same camera, same time: not the same person
    assert twin != a1
    lk = PersonLinker(ReidConfig(link_threshold=0.6, min_link_crops=3))
    a1 = feed(lk, "cam0", 1, "A", 0.0, n=10)
    other_cam = feed(lk, "cam1", 7, "A", 0.5)  # same look, another camera, same time: may be
    assert other_cam == a1
    assert set(lk.tracks_of(a1)) == {("cam0", 1), ("cam1", 7)}


def test_no_chaining_through_an_in_between_track():
    lk = PersonLinker(ReidConfig(link_threshold=0.6, link_margin=0.05, min_link_crops=3))
    a = feed(lk, "cam0", 1, "A", 0.0)
    mid = LOOKS["A"] * 0.55 + LOOKS["C"] * 0.45  # half A, half C: cos to A ~0.77 (just links)
    m = feed(lk, "cam0", 2, mid / np.linalg.norm(mid), 10.0)
    c = feed(lk, "cam0", 3, "C", 20.0)  # C resembles the in-between track, not person A's mean
    assert c != a
    assert m == a or m != c  # whatever the middle one did, C was not chained to A through it


def test_ambiguous_track_stays_alone():
    lk = PersonLinker(ReidConfig(link_threshold=0.3, link_margin=0.1, min_link_crops=3))
    a = feed(lk, "cam0", 1, "A", 0.0)
    b = feed(lk, "cam0", 2, "B", 0.0)
    mix = LOOKS["A"] + LOOKS["B"]
    x = feed(lk, "cam0", 3, mix / np.linalg.norm(mix), 10.0)
    assert x not in (a, b)


def test_revived_track_is_split_off():
    lk = PersonLinker(ReidConfig(link_threshold=0.6, min_link_crops=3))
    a1 = feed(lk, "cam0", 1, "A", 0.0)
    assert feed(lk, "cam0", 2, "A", 10.0) == a1
    feed(lk, "cam0", 1, "A", 10.5, n=1)  # the tracker revives track 1 while track 2 is in view
    assert lk.person_of("cam0", 2) != lk.person_of("cam0", 1)
    assert lk.stats()["person_splits"] == 1


def test_snapshot_keeps_persons_and_goes_on(tmp_path):
    cfg = ReidConfig(link_threshold=0.6, min_link_crops=3)
    lk = PersonLinker(cfg)
    a = feed(lk, "cam0", 1, "A", 0.0)
    b = feed(lk, "cam1", 2, "B", 0.0)
    assert feed(lk, "cam1", 3, "A", 5.0) == a
    path = lk.save(tmp_path / "g.persons.npz")
    back = PersonLinker.load(path, cfg)
    assert {k: back.person_of(*k) for k in lk.tracks} == {k: lk.person_of(*k) for k in lk.tracks}
    assert feed(back, "cam0", 9, "B", 20.0) == b  # links after the restore too
    assert feed(back, "cam0", 10, "D", 20.0) not in (a, b) and back.next_person > lk.next_person
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(ValueError, match="not a person file"):
        PersonLinker.load(tmp_path / "bad.npz")


def test_other_model_refused_and_eviction():
    lk = PersonLinker(ReidConfig(min_link_crops=3), window_s=10.0)
    a = feed(lk, "cam0", 1, "A", 0.0)
    with pytest.raises(ValueError, match="re-id model mismatch"):
        lk.observe("cam0", [1], 5 * S, crops("A", 1), "other-model")
    feed(lk, "cam0", 2, "B", 30.0)
    assert lk.evict(30 * S) == 1 and lk.person_of("cam0", 1) == -1 and a not in lk.members


def test_group_answers_by_person_best_track_first():
    lk = PersonLinker(ReidConfig(link_threshold=0.6, min_link_crops=3))
    a = feed(lk, "cam0", 1, "A", 0.0)
    feed(lk, "cam1", 5, "A", 10.0)
    b = feed(lk, "cam0", 2, "B", 0.0)

    def m(cam, tid, score):
        return TrackMatch(track_id=tid, score=score, source_id=cam, first_seen_ns=1, last_seen_ns=2, box=(0, 0, 1, 1))

    groups = lk.group([m("cam1", 5, 0.9), m("cam0", 2, 0.8), m("cam0", 1, 0.7), m("cam0", 99, 0.1)], top_k=10)
    assert [g.person_id for g in groups] == [a, b, -1]
    assert groups[0].track_ids == [5, 1] and groups[0].cameras == ["cam1", "cam0"]
    assert groups[0].first_seen_ns == 0 and groups[0].last_seen_ns >= 10 * S
    assert len(lk.group([m("cam1", 5, 0.9), m("cam0", 2, 0.8)], top_k=1)) == 1


def test_similar_ranks_by_appearance():
    lk = PersonLinker(ReidConfig(link_threshold=0.99, min_link_crops=3))  # nothing links
    feed(lk, "cam0", 1, "A", 0.0)
    feed(lk, "cam0", 2, "B", 0.0)
    feed(lk, "cam1", 3, "A", 0.0)
    ranked = lk.similar(lk.track_feature("cam0", 1), 3, exclude=[("cam0", 1)])
    assert ranked[0][0] == ("cam1", 3) and ranked[0][1] > ranked[1][1] and len(ranked) == 2
    others = lk.similar(LOOKS["B"], 5, exclude_person=lk.person_of("cam0", 1))
    assert [k for k, _ in others] == [("cam0", 2), ("cam1", 3)]
    # a track the caller cannot answer (evicted from the gallery) is left out before top_k, not after
    kept = lk.similar(lk.track_feature("cam0", 1), 1, exclude=[("cam0", 1)], keep=lambda k: k != ("cam1", 3))
    assert [k for k, _ in kept] == [("cam0", 2)]
