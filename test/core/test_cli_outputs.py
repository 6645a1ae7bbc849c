"""What the command line's pictures and files show: labelled sheets, boxed thumbnails, honest curves."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from person_search.core.gallery.thumbs import frame_thumbnail
from person_search.core.imaging import contact_sheet, decode_jpeg, encode_jpeg


def test_frame_thumbnail_draws_each_persons_box_with_its_track_id():
    frame = np.full((1080, 1920, 3), 128, np.uint8)
    people = [SimpleNamespace(track_id=7, box=(400, 200, 800, 1000)),
              SimpleNamespace(track_id=12345678901, box=(1200, 300, 1500, 900))]
    plain = decode_jpeg(frame_thumbnail(frame, 480))
    boxed = decode_jpeg(frame_thumbnail(frame, 480, people=people))
    assert plain.shape == boxed.shape == (270, 480, 3)
    s = 480 / 1920
    x1, y1, x2, y2 = (int(round(v * s)) for v in people[0].box)
    edge = boxed[(y1 + y2) // 2, x1].astype(int)  # the left edge of the first box, scaled to the thumbnail
    assert edge[1] > 170 and edge[1] - max(edge[0], edge[2]) > 60, edge  # green
    inside = boxed[(y1 + y2) // 2, (x1 + x2) // 2].astype(int)
    assert np.abs(inside - 128).max() < 12  # the person itself is not painted over
    assert np.abs(plain.astype(int) - 128).max() < 12  # no people, no marks


def test_contact_sheet_labels_every_row_and_keeps_empty_rows():
    crop = encode_jpeg(np.zeros((64, 32, 3), np.uint8))
    rows = [[("#1 0.30", crop), ("#2 0.20", crop)], [], [("#3 0.10", crop)]]
    titled = contact_sheet(rows, row_titles=["'a man'", "'a child'", "'a dog walker'"])
    bare = contact_sheet(rows)
    assert titled.shape[0] == bare.shape[0] + 3 * 22  # one title band per row, the empty row kept
    band = titled[4:4 + 22]  # the first row's title band is written on
    assert (band < 250).any()


def test_curves_of_a_short_run_have_integer_steps_and_no_lagging_ema(tmp_path):
    pytest.importorskip("matplotlib")
    from person_search.lab.train.checkpoint import ema, plot_curves, smoothing_window
    assert smoothing_window(5) == 1 and smoothing_window(300) == 30 and smoothing_window(10_000) == 50
    values = [5.0, 4.0, 3.0, 2.0, 1.0]
    assert ema(values, 1) == values  # window 1: the curve itself
    smooth = ema([4.0] * 20, 10)
    assert all(abs(v - 4.0) < 1e-9 for v in smooth)  # bias-corrected: no pull towards 0 or the first value
    rows = [{"kind": "train", "step": i, "loss": v} for i, v in enumerate(values, 1)]
    rows.append({"kind": "eval", "step": 5, "R1": 12.5})
    path = tmp_path / "curves.png"

    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    ticks = {}
    real_savefig = plt.Figure.savefig

    def spy(fig, *a, **k):
        ticks["loss"] = [t for t in fig.axes[0].get_xticks() if 1 <= t <= 5]
        return real_savefig(fig, *a, **k)
    plt.Figure.savefig = spy
    try:
        plot_curves(rows, path)
    finally:
        plt.Figure.savefig = real_savefig
    assert cv2.imread(str(path)) is not None
    assert ticks["loss"] and all(float(t).is_integer() for t in ticks["loss"]), ticks
