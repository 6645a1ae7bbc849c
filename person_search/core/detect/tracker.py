"""`PersonTracker`: a detector (YOLO or HOG) + ultralytics' tracker + the crop policy, frame by frame."""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional

import numpy as np

from person_search.core.config import DetectorConfig
from person_search.core.detect.crops import crop_box, crop_quality
from person_search.core.detect.hog import HogDetector
from person_search.core.detect.yolo import YoloDetector, find_detector_weights, weights_missing_message
from person_search.core.errors import WeightsError
from person_search.core.imaging import check_image
from person_search.core.types import Frame, FrameDetections, PersonDetection

log = logging.getLogger(__name__)


def _tracker_args(cfg: DetectorConfig, overrides: Optional[Dict[str, Any]] = None):
    import yaml
    from ultralytics.utils import ROOT, IterableSimpleNamespace

    path = ROOT / "cfg" / "trackers" / f"{cfg.tracker}.yaml"
    args = dict(yaml.safe_load(path.read_text()))
    args["track_buffer"] = int(cfg.track_buffer)
    # A track starts from a detection >= conf; ByteTrack's second stage may continue it
    # with a weaker one (>= track_low_thresh), as in ultralytics' own track mode.
    args["track_high_thresh"] = float(cfg.conf)
    args["new_track_thresh"] = float(cfg.conf)
    args["track_low_thresh"] = min(float(args.get("track_low_thresh", 0.1)), float(cfg.conf))
    if cfg.tracker == "botsort":
        args["with_reid"] = False  # no ReID model download; appearance matching is CLIP's job downstream
    args.update(overrides or {})
    return IterableSimpleNamespace(**args)


def make_yolo(cfg: DetectorConfig, weights):
    """Return the YOLO detector for ``weights``: ultralytics, or the OpenVINO runtime directly (``threads`` > 0)."""
    if weights.is_dir() and weights.name.endswith("_openvino_model") and cfg.threads > 0:
        from person_search.core.detect.openvino_yolo import OpenVinoYolo
        from person_search.core.detect.yolo import _exported_imgsz
        return OpenVinoYolo(cfg, weights, _exported_imgsz(weights, cfg.imgsz))
    return YoloDetector(cfg, weights)


class PersonTracker:
    """Detect and track people frame by frame.

    Args:
        cfg: the detector section of the config.
        tracker_args: extra ultralytics tracker settings overriding its yaml (tuning, tests).

    Raises:
        WeightsError: backend "yolo" and the weights are missing or do not load.
    """

    def __init__(self, cfg: DetectorConfig, tracker_args: Optional[Dict[str, Any]] = None):
        cfg.validate()
        self.cfg = cfg
        self._closed = False
        self.detector = self._make_detector(cfg)
        from ultralytics.trackers.track import TRACKER_MAP
        from ultralytics.engine.results import Boxes

        self._Boxes = Boxes
        self._tracker_overrides = tracker_args
        self._targs = _tracker_args(cfg, tracker_args)
        self._tracker_cls = TRACKER_MAP[cfg.tracker]
        self._tracker = self._tracker_cls(args=self._targs)
        self._id_offset = 0
        self._max_id = 0
        self.frames = 0
        log.info("person detector: backend=%s (%s), tracker=%s (track_buffer=%d), conf=%.2f, min box %dx%d px",
                 self.backend_name, self.detector.description, cfg.tracker, cfg.track_buffer, cfg.conf,
                 cfg.min_box_w, cfg.min_box_h)

    def apply_config(self) -> None:
        """Take up changed thresholds of ``self.cfg`` (conf, iou, box limits) without losing the tracks."""
        self.cfg.validate()
        self._targs = _tracker_args(self.cfg, self._tracker_overrides)
        self._tracker.args = self._targs

    @staticmethod
    def _make_detector(cfg: DetectorConfig):
        if cfg.backend == "hog":
            return HogDetector(cfg)
        weights = find_detector_weights(cfg.model)
        if cfg.backend == "yolo":
            if weights is None:
                raise WeightsError(weights_missing_message(cfg.model))
            return make_yolo(cfg, weights)
        # auto
        if weights is None:
            log.warning("detector weights %r not found locally; using the OpenCV HOG people detector instead "
                        "(weaker; see models/README.md to get YOLO weights)", cfg.model)
            return HogDetector(cfg)
        try:
            return make_yolo(cfg, weights)
        except WeightsError as e:
            log.warning("%s; using the OpenCV HOG people detector instead", e)
            return HogDetector(cfg)

    @property
    def backend_name(self) -> str:
        """Return the detector backend's name: "yolo" or "hog"."""
        return self.detector.name

    @property
    def tracker_name(self) -> str:
        return self.cfg.tracker

    def detect(self, image: np.ndarray) -> np.ndarray:
        """Untracked person detections of one image: (N, 6) [x1, y1, x2, y2, conf, cls]."""
        check_image(image)
        return self.detector.detect(image, self._detect_conf())

    def _detect_conf(self) -> float:
        return float(min(self.cfg.conf, self._targs.track_low_thresh))

    def update(self, frame: Frame) -> FrameDetections:
        """Detect, track and crop the people of one frame.

        Raises:
            ValueError: the frame image is not BGR uint8 (H, W, 3).
        """
        if self._closed:
            raise RuntimeError("PersonTracker is closed")
        image = check_image(frame.image)
        h, w = image.shape[:2]
        dets = self.detector.detect(image, self._detect_conf())
        self.frames += 1
        out = FrameDetections(stamp_ns=frame.stamp_ns, source_id=frame.source_id, frame_index=frame.index,
                              frame_size=(w, h))
        tracks = self._track(dets, image)
        cfg = self.cfg
        for row in tracks:
            tid, idx = int(row[4]), int(row[7])
            if not 0 <= idx < len(dets):
                continue
            x1, y1, x2, y2, score = (float(v) for v in dets[idx, :5])
            x1, x2 = float(np.clip(x1, 0, w)), float(np.clip(x2, 0, w))
            y1, y2 = float(np.clip(y1, 0, h)), float(np.clip(y2, 0, h))
            if x2 - x1 < cfg.min_box_w or y2 - y1 < cfg.min_box_h:
                continue
            crop, _ = crop_box(image, (x1, y1, x2, y2), cfg.crop_pad)
            if crop.size == 0:
                continue
            gid = tid + self._id_offset
            self._max_id = max(self._max_id, gid)
            out.people.append(PersonDetection(track_id=gid, box=(x1, y1, x2, y2), score=score, crop=crop,
                                              quality=crop_quality(crop, y2 - y1, score)))
        out.people.sort(key=lambda p: p.track_id)
        return out

    def _track(self, dets: np.ndarray, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        boxes = self._Boxes(np.ascontiguousarray(dets, dtype=np.float32).reshape(-1, 6), (h, w))
        tracks = self._tracker.update(boxes, image)
        return np.asarray(tracks, dtype=np.float32).reshape(-1, 8) if len(tracks) else np.zeros((0, 8), np.float32)

    def reset(self) -> None:
        """Forget all tracks (e.g. the source jumped).

        New ids continue above the old ones, so an id never names two people within
        this tracker's life.
        """
        self._tracker.reset()
        self._id_offset = self._max_id
        self.frames = 0

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.detector.close()

    def __enter__(self) -> "PersonTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
