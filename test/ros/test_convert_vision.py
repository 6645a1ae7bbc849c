"""Detection2DArray conversion: the real vision_msgs where installed, else Humble's field layout."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from person_search.core.types import FrameDetections, PersonDetection
from person_search.nodes import convert


def _humble_vision_msgs():
    """Return a module with vision_msgs 4.x (Humble) message shapes: Pose2D with a position."""
    def msg(name, **fields):
        def init(self):
            for k, v in fields.items():
                setattr(self, k, v() if callable(v) else v)
        return type(name, (), {"__init__": init})
    Point2D = msg("Point2D", x=0.0, y=0.0)
    Pose2D = msg("Pose2D", position=Point2D, theta=0.0)
    BoundingBox2D = msg("BoundingBox2D", center=Pose2D, size_x=0.0, size_y=0.0)
    ObjectHypothesis = msg("ObjectHypothesis", class_id="", score=0.0)
    ObjectHypothesisWithPose = msg("ObjectHypothesisWithPose", hypothesis=ObjectHypothesis, pose=None)
    from std_msgs.msg import Header
    Detection2D = msg("Detection2D", header=Header, results=list, bbox=BoundingBox2D, id="")
    Detection2DArray = msg("Detection2DArray", header=Header, detections=list)
    mod = types.ModuleType("vision_msgs.msg")
    mod.Detection2D, mod.Detection2DArray, mod.ObjectHypothesisWithPose = Detection2D, Detection2DArray, \
        ObjectHypothesisWithPose
    return mod


@pytest.fixture
def vision_msgs(monkeypatch):
    if convert.vision_msgs_available():
        return
    pkg = types.ModuleType("vision_msgs")
    pkg.msg = _humble_vision_msgs()
    monkeypatch.setitem(sys.modules, "vision_msgs", pkg)
    monkeypatch.setitem(sys.modules, "vision_msgs.msg", pkg.msg)


def test_detections_to_vision(vision_msgs):
    crop = np.zeros((4, 4, 3), np.uint8)
    det = FrameDetections(stamp_ns=1_500_000_000, source_id="front", frame_index=3, frame_size=(640, 480),
                          people=[PersonDetection(track_id=9127846102, box=(10, 20, 50, 120), score=0.8, crop=crop)])
    msg = convert.detections_to_vision(det)
    assert msg.header.frame_id == "front" and msg.header.stamp.sec == 1 and msg.header.stamp.nanosec == 500_000_000
    d, = msg.detections
    assert d.id == "9127846102"
    center = d.bbox.center.position if hasattr(d.bbox.center, "position") else d.bbox.center
    assert (center.x, center.y, d.bbox.size_x, d.bbox.size_y) == (30.0, 70.0, 40.0, 100.0)
    hyp, = d.results
    assert hyp.hypothesis.class_id == "person" and hyp.hypothesis.score == pytest.approx(0.8)
