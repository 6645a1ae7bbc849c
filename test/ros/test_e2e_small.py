"""The end-to-end accuracy benchmark, small: does the live graph answer a caption with the right person?

A tiny text model (PS-Tiny-ViT, random init) is trained here on crops of the crowd generator
(other identities, colour pairs held out), a captioned crowd of 4 walkers wearing held-out
pairs is played through the real graph (the CPU config: YOLO11n int8 from the shared test
models, re-id, crop budget), each identity's two captions are asked through /query_person,
and the person-level Rank-1 of the live answers is compared with the offline Rank-1 of the same
model on ground-truth crops of the same identities (``benchmarks/bench_e2e.py``).

Margin: the live Rank-1 may be at most ``MARGIN`` points below the offline one: 25 points =
2 of the 8 queries = one identity's two captions. On 4 walkers that occlude each other little,
one identity lost (to a neighbour on an occluded or partial crop) is the most the live path
should cost; the full benchmark's per-cause breakdown is in docs/e2e.md. A graph that loses two
of four identities (a detector that misses people, an embedder that encodes other crops or with
other weights than the query side, answers mapped to the wrong tracks, a query side that sends
the model other text than it was trained on) fails. The offline Rank-1 must itself reach
``MIN_OFFLINE`` (the model learned the colours), so that the comparison can fail at all.

Both sides encode a caption the same way, and nobody sets it by hand: the graph serves the run
folder, whose model.json says its captions were written as is (``text_templates: ["{}"]``), and
the offline bound encodes through the query service's ``QueryEngine`` over the same run folder.
When the graph sent the CLIP prompt ("a photo of {}.") instead, this test failed by more than
the margin.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from person_search.core.paths import shared_models_dir

pytestmark = [pytest.mark.ros, pytest.mark.slow]

MARGIN = 25.0
MIN_OFFLINE = 75.0
PEOPLE = 4
VARIANT = "all"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from person_search.demo.crowd import write_crowd_pedes
    root = tmp_path_factory.mktemp("e2e")
    write_crowd_pedes(root / "data", images_per_id=1, captions_per_image=2, splits=("train",))
    run = root / "run"
    cmd = [sys.executable, "-m", "person_search", "train", "--data", str(root / "data"), "--arch", "PS-Tiny-ViT",
           "--image-size", "32x64", "--out", str(run), "--mode", "full", "--weights", "", "--max-steps", "120",
           "--batch-size", "32", "--lr", "2e-3", "--warmup-steps", "10", "--logit-scale", "14.3", "--threads", "1",
           "--seed", "0"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert p.returncode == 0, p.stderr[-2000:]
    return run


def test_live_answers_lose_at_most_the_margin_to_the_offline_ranking(tiny_model, tmp_path):
    pytest.importorskip("openvino", reason="the openvino runtime is not installed")
    if not (shared_models_dir() / "yolo11n_int8_openvino_model").is_dir():
        pytest.skip(f"pretrained YOLO11n OpenVINO model not in {shared_models_dir()} (shared test data): "
                    f"HOG finds too few of the crowd's people for an accuracy comparison")
    try:
        from benchmarks.bench_e2e import (ground_truth_crops, model_settings, offline_upper_bound, queries_of,
                                          run_live)
    except ImportError as exc:  # run pytest from the repository root (python -m pytest)
        pytest.fail(f"cannot import benchmarks.bench_e2e ({exc}): run `python -m pytest` from the repository root")
    from person_search.demo.crowd import make_captioned_crowd
    video, tpath = make_captioned_crowd(tmp_path / "crowd.mp4", people=PEOPLE, seconds=10.0, fps=5,
                                        size=(640, 360), seed=5)
    truth = json.loads(tpath.read_text())
    settings = model_settings(tiny_model)
    assert "query.templates" not in settings  # the run folder carries how it is asked
    gt = ground_truth_crops(video, truth)
    offline = offline_upper_bound(settings, gt, queries_of(truth))
    assert offline["templates"] == ["{}"], offline["templates"]
    if offline["R1"] < MIN_OFFLINE:  # pytest.fail, not assert: the xfail below covers only the margin
        pytest.fail(f"the tiny model did not learn the colours: {offline['per_query']}")
    live = run_live(video, truth, settings, VARIANT, "cpu", tmp_path, timeout=240.0)
    why = [(r["caption"], r["rank"], r["top"], r["cause"]) for r in live["per_query"] if not r["r1"]]
    if live["align_mean_iou"] <= 0.5:
        pytest.fail("the reported boxes do not line up with the drawn ones")
    print(f"live Rank-1 {live['R1']:.1f} %, offline {offline['R1']:.1f} %, misses {why}")
    assert live["R1"] >= offline["R1"] - MARGIN, (live["R1"], offline["R1"], why)
