"""The global crop budget on synthetic tracks: the clock is the frame stamps passed in."""

from __future__ import annotations

import math

import numpy as np
import pytest

from person_search.core.budget import CropBudget, parse_crop_budget
from person_search.core.config import EncoderConfig
from person_search.core.embed_stage import Embedder
from person_search.core.types import FrameDetections, PersonDetection

S = 1_000_000_000  # ns per second
CROP = np.zeros((8, 4, 3), np.uint8)


def people(ids, quality=0.5):
    return [PersonDetection(track_id=i, box=(0, 0, 4, 8), score=0.9, crop=CROP, quality=quality) for i in ids]


def run(budget, frames, fps=10):
    """Feed ``frames`` (lists of track ids per frame) at ``fps``; return the admitted ids per frame."""
    return [[p.track_id for p in budget.select("cam", k * S // fps, people(ids))] for k, ids in enumerate(frames)]


def test_parse_crop_budget():
    assert parse_crop_budget("auto") is None and parse_crop_budget("all") == math.inf
    assert parse_crop_budget("7.5") == 7.5 and parse_crop_budget(3) == 3.0
    for bad in ("0", "-1", "nan", "inf", "lots", ""):
        with pytest.raises(ValueError, match="encoder.crop_budget"):
            parse_crop_budget(bad)


def test_new_tracks_come_before_refreshes_of_known_ones():
    b = CropBudget(rate=10.0, burst_s=0.5)  # 10 crops/s, at most 5 at once
    got = run(b, [[1, 2, 3, 4, 5]] + [[1, 2, 3, 4, 5, 6, 7]] * 9)
    assert got[0] == [1, 2, 3, 4, 5]  # a full bucket admits the first five
    assert 6 in got[1] or 6 in got[2]  # the newcomers take the next tokens, not 1-5 again
    first = {t: next(k for k, ids in enumerate(got) if t in ids) for t in (6, 7)}
    assert all(not set(ids) & {1, 2, 3, 4, 5} for ids in got[1:max(first.values()) + 1])
    assert sum(len(ids) for ids in got) <= 5 + 10 * 0.9 + 1e-9  # the bucket: burst + rate x 0.9 s
    st = b.state()
    assert st["new_tracks"] == 7 and st["crops_admitted"] == sum(map(len, got))
    assert st["crops_dropped"] == st["crops_offered"] - st["crops_admitted"] > 0


def test_a_crowd_is_searchable_within_two_seconds_when_the_budget_allows():
    # 30 people arrive in waves over 3 s while 20 known ones stay in view; 15 crops/s for 50 people
    b = CropBudget(rate=15.0, per_track_s=1.0)
    frames = [list(range(100, 120)) + list(range(min(30, 1 + k)))for k in range(60)]
    seen, admitted = {}, {}
    for k, ids in enumerate(frames):
        for t in ids:
            seen.setdefault(t, k)
        for t in b.select("cam", k * S // 10, people(ids)):
            admitted.setdefault(t.track_id, k)
    for t, k0 in seen.items():
        assert t in admitted and admitted[t] - k0 <= 20, (t, k0, admitted.get(t))  # <= 2 s at 10 fps
    assert b.state()["late"] == 0 and b.state()["pending"] == 0


def test_refreshes_respect_the_per_track_cap_and_upgrades_pass_it():
    b = CropBudget(rate=math.inf, per_track_s=2.0)
    got = run(b, [[1]] * 10)  # 10 frames at 10 fps: refresh every 0.5 s
    assert [k for k, ids in enumerate(got) if ids] == [0, 5]
    assert b.select("cam", 11 * S // 10, people([1], quality=0.9)) != []  # 1.8x the best: an upgrade
    assert b.select("cam", 12 * S // 10, people([1], quality=1.0)) == []  # not 1.5x better: capped
    st = b.state()
    assert (st["new_tracks"], st["refreshes"], st["upgrades"]) == (1, 1, 1)


def test_dropped_crops_are_not_queued():
    b = CropBudget(rate=2.0, burst_s=0.5)  # 1 token at most
    got = run(b, [[1, 2, 3]] * 20, fps=10)  # 2 s
    assert sum(map(len, got)) <= 1 + 2 * 1.9 + 1e-9
    b.select("cam", 10 * S, [])  # 8 s of nothing: the bucket refills to its cap, not to 16 crops
    assert len(b.select("cam", 10 * S, people(range(10, 20)))) == 1


def test_auto_rate_follows_measured_throughput():
    b = CropBudget(rate=None, headroom=0.8, ewma=0.5)
    assert b.rate == math.inf and b.state()["budget_crops_s"] == "unmeasured"
    b.observe(10, 1.0)
    assert b.rate == pytest.approx(8.0)
    b.observe(30, 1.0)
    assert b.rate == pytest.approx(0.8 * 20.0) and b.state()["throughput_crops_s"] == 20.0


def test_stamps_going_back_do_not_mint_tokens():
    b = CropBudget(rate=1.0, burst_s=1.0)
    assert len(b.select("a", 5 * S, people([1, 2]))) == 1
    assert b.select("b", 4 * S, people([3])) == []  # another camera a second behind: no new tokens
    assert len(b.select("a", 6 * S, people([2]))) == 1


class CountingEncoder:
    """A real (if trivial) image tower stand-in with a clock we control: each crop costs 0.1 s."""

    model_id = "counting"
    dim = 4

    def __init__(self, clock):
        self.clock = clock

    def encode_images(self, crops):
        self.clock[0] += 0.1 * len(crops)
        v = np.ones((len(crops), 4), np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_embedder_sizes_the_auto_budget_to_the_encoder_and_reports_it():
    clock = [0.0]
    emb = Embedder(EncoderConfig(crop_budget="auto"), CountingEncoder(clock), clock=lambda: clock[0])
    for k in range(50):  # 5 s at 10 fps of 12 people: 120 crops/s offered, the encoder does 10/s
        det = FrameDetections(stamp_ns=k * S // 10, source_id="cam", frame_index=k, frame_size=(64, 64),
                              people=people(range(12)))
        emb.embed(det)
    st = emb.budget_state()
    assert st["throughput_crops_s"] == pytest.approx(10.0)  # measured with the clock passed in
    assert st["budget_crops_s"] == pytest.approx(8.0, rel=0.05)
    assert st["new_tracks"] == 12 and st["late"] == 0
    assert st["crops_admitted"] <= 12 + 4 + 8.0 * 4.9 + 1e-9 and emb.skipped == st["crops_dropped"] > 400


def test_refreshes_leave_tokens_for_a_newcomer_seen_in_other_frames():
    # camera a: five known people in every even frame; camera b: one newcomer in every odd frame
    b = CropBudget(rate=5.0, burst_s=1.0)
    admitted_b = []
    for k in range(40):
        cam, ids = ("a", [1, 2, 3, 4, 5]) if k % 2 == 0 else ("b", [9])
        got = b.select(cam, k * S // 10, people(ids))
        if cam == "b" and got:
            admitted_b.append(k)
    assert admitted_b and admitted_b[0] <= 5  # without the reserve camera a's refreshes take every token


def test_late_frames_get_new_tracks_only():
    b = CropBudget(rate=math.inf)
    b.select("cam", 0, people([1, 2]))
    got = b.select("cam", S, people([1, 2, 3]), arrived_ns=S + 3 * S // 2)  # 1.5 s in the queue upstream
    assert [p.track_id for p in got] == [3] and b.state()["late_frames"] == 1
    assert len(b.select("cam", 2 * S, people([1, 2]), arrived_ns=2 * S + S // 10)) == 2  # fresh again: refreshes


def test_overhead_of_calls_that_embed_nothing_counts_against_throughput():
    b = CropBudget(rate=None, ewma=0.5)
    b.observe(0, 0.5)  # before any crop: no measurement yet
    assert b.throughput is None
    b.observe(4, 1.0)
    b.observe(0, 1.0)  # a second spent on a frame that embedded nothing
    assert b.throughput == pytest.approx(2.0 / 1.0)  # (0.5 * 4) / (0.5 * 1 + 0.5 * 1)
