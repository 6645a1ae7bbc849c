"""Person detection + tracking + crop policy.

Two detectors share one tracking path:

* ``yolo``: an ultralytics model (``.pt`` / ``.onnx`` / ``.engine``, or an exported
  ``*_openvino_model/`` folder, the fast path on x86 CPUs) run with
  ``predict(classes=[0])`` (person only) and cfg conf / iou / imgsz / device; an exported
  model with a fixed input size runs at the size its ``metadata.yaml`` names;
* ``hog``: OpenCV's pretrained HOG people detector (no download; weak but real), run on
  the frame downscaled to ``hog_max_width`` with pyramid step ``hog_scale``, then NMS.

Both hand their (N, 6) ``[x1, y1, x2, y2, conf, cls]`` detections, wrapped in an
``ultralytics.engine.results.Boxes``, to ultralytics' own tracker classes (``BYTETracker``
or ``BOTSORT``, configured from their packaged yaml with ``track_buffer`` from the config),
so ids persist across frames exactly as in ``model.track(persist=True)``.

``backend="auto"`` uses YOLO when the weights file exists locally and loads, else logs one
warning and uses HOG. ``backend="yolo"`` with a missing file raises `DetectorWeightsError`
at once (ultralytics is never asked to download anything, nor to pip-install).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

# Never let ultralytics reach for the network or pip at runtime (offline robots; no stalls).
os.environ.setdefault("YOLO_OFFLINE", "True")
os.environ.setdefault("YOLO_AUTOINSTALL", "False")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from .config import DetectorConfig  # noqa: E402
from .models.weights import WeightsError  # noqa: E402
from .types import Frame, FrameDetections, PersonDetection  # noqa: E402

log = logging.getLogger(__name__)

PERSON_CLASS = 0
SIZE_REF_PX = 256.0  # a box this tall (or taller) gets the full size score
SHARPNESS_REF = 300.0  # variance of Laplacian giving a sharpness score of 0.5
SHARPNESS_HEIGHT = 224  # crops are resized to this height (~ encoder input) before measuring sharpness
HOG_SCORE_SCALE = 1.0  # HOG SVM margin w maps to conf = 1 - exp(-w / HOG_SCORE_SCALE)
HOG_INSET = (0.10, 0.04)  # HOG windows include margin: shrink boxes by this fraction (x, y) each side


# the package's one weights error; the detector's name for it is kept for its callers
DetectorWeightsError = WeightsError


# ----------------------------------------------------------------------------- helpers
def check_image(image: Any) -> np.ndarray:
    """Return ``image`` if it is a BGR uint8 (H, W, 3) array, else raise a clear ValueError."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"frame image must be a numpy BGR uint8 (H, W, 3) array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1 or image.dtype != np.uint8:
        raise ValueError(f"frame image must be BGR uint8 (H, W, 3), got shape {tuple(image.shape)} dtype {image.dtype} "
                         "(convert gray/RGBA/float frames first)")
    return image


def resolve_weights(model: str) -> Optional[Path]:
    """Return the local weights for ``model`` (a file, or an exported model folder), or None.

    Looks at the path as given (absolute or relative to the CWD), then in
    ``person_search.core.paths.model_dirs()`` ($PERSON_SEARCH_MODELS, models/, the colcon
    share folder, ~/.cache/person_search). Never downloads.
    """
    if not model:
        return None
    from .paths import model_dirs, resolve_model_path

    found = resolve_model_path(model)
    if found is not None:
        return found
    p = Path(model).expanduser()
    for c in [p] + ([d / p for d in model_dirs()] if not p.is_absolute() else []):
        if c.is_dir() and any(c.iterdir()):  # e.g. an exported *_openvino_model/ folder
            return c.resolve()
    return None


def _weights_missing_message(model: str) -> str:
    from .paths import model_dirs

    where = ", ".join(str(d) for d in model_dirs())
    return (f"detector weights not found: {model!r} (looked as given and in {where}); see models/README.md: "
            f"on a machine with internet download yolo11n.pt "
            f"(python -c \"from ultralytics import YOLO; YOLO('yolo11n.pt')\") or `yolo export` it, copy it into "
            f"models/ and set detector.model, or use detector.backend: hog")


def crop_box(image: np.ndarray, box: Sequence[float], pad: float) -> Tuple[np.ndarray, Tuple[int, int, int, int]]:
    """Crop ``box`` (x1, y1, x2, y2) padded by ``pad`` x its width/height on each side.

    The crop is clipped to the image. Returns (crop copy, (x1, y1, x2, y2) of the crop
    in ints).
    """
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = max(0.0, x2 - x1), max(0.0, y2 - y1)
    px, py = pad * bw, pad * bh
    cx1 = int(np.clip(np.floor(x1 - px), 0, w))
    cy1 = int(np.clip(np.floor(y1 - py), 0, h))
    cx2 = int(np.clip(np.ceil(x2 + px), 0, w))
    cy2 = int(np.clip(np.ceil(y2 + py), 0, h))
    return image[cy1:cy2, cx1:cx2].copy(), (cx1, cy1, cx2, cy2)


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the crop (gray, resized to SHARPNESS_HEIGHT rows)."""
    if crop.size == 0:
        return 0.0
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    h, w = gray.shape[:2]
    if h != SHARPNESS_HEIGHT and h > 0:
        nw = max(1, int(round(w * SHARPNESS_HEIGHT / h)))
        gray = cv2.resize(gray, (nw, SHARPNESS_HEIGHT), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def crop_quality(crop: np.ndarray, box_h: float, score: float) -> float:
    """Quality in [0, 1]: normalised size x saturating sharpness x detector score."""
    size = min(1.0, max(0.0, float(box_h)) / SIZE_REF_PX)
    s = sharpness(crop)
    sharp = s / (s + SHARPNESS_REF)
    return float(size * sharp * float(np.clip(score, 0.0, 1.0)))


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Return the indices kept by greedy non-maximum suppression of (N, 4) xyxy boxes."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=int)
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(0, x2 - x1) * np.maximum(0, y2 - y1)
    order = np.argsort(-scores)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0, xx2 - xx1) * np.maximum(0, yy2 - yy1)
        ov = inter / np.maximum(areas[i] + areas[order[1:]] - inter, 1e-9)
        order = order[1:][ov <= iou]
    return np.asarray(keep, dtype=int)


# ----------------------------------------------------------------------------- detectors
class HogDetector:
    """OpenCV's default HOG + linear SVM people detector, as (N, 6) detections."""

    name = "hog"

    def __init__(self, cfg: DetectorConfig):
        self.cfg = cfg
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.description = f"OpenCV HOG people detector (max width {cfg.hog_max_width}, scale {cfg.hog_scale})"

    def detect(self, image: np.ndarray, min_conf: float) -> np.ndarray:
        h, w = image.shape[:2]
        s = min(1.0, self.cfg.hog_max_width / float(w)) if self.cfg.hog_max_width > 0 else 1.0
        small = cv2.resize(image, (max(1, int(round(w * s))), max(1, int(round(h * s)))),
                           interpolation=cv2.INTER_AREA) if s < 1.0 else image
        if small.shape[0] < 128 or small.shape[1] < 64:  # smaller than one detection window
            return np.zeros((0, 6), np.float32)
        rects, weights = self.hog.detectMultiScale(small, hitThreshold=0.0, winStride=(8, 8), padding=(8, 8),
                                                   scale=max(1.01, float(self.cfg.hog_scale)), groupThreshold=0)
        if len(rects) == 0:
            return np.zeros((0, 6), np.float32)
        r = np.asarray(rects, dtype=np.float32).reshape(-1, 4) / s
        wts = np.asarray(weights, dtype=np.float32).reshape(-1)
        conf = 1.0 - np.exp(-np.maximum(wts, 0.0) / HOG_SCORE_SCALE)
        ix, iy = HOG_INSET
        boxes = np.stack([r[:, 0] + ix * r[:, 2], r[:, 1] + iy * r[:, 3],
                          r[:, 0] + (1 - ix) * r[:, 2], r[:, 1] + (1 - iy) * r[:, 3]], axis=1)
        keep = nms(boxes, conf, self.cfg.iou)
        boxes, conf = boxes[keep], conf[keep]
        sel = conf >= min_conf
        boxes, conf = boxes[sel], conf[sel]
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
        out = np.zeros((len(boxes), 6), np.float32)
        out[:, :4], out[:, 4], out[:, 5] = boxes, conf, PERSON_CLASS
        return out

    def close(self) -> None:
        pass


class YoloDetector:
    """An ultralytics model restricted to the person class, as (N, 6) detections."""

    name = "yolo"

    def __init__(self, cfg: DetectorConfig, weights: Path):
        _quiet_ultralytics()
        from ultralytics import YOLO

        self.cfg = cfg
        self.weights = weights
        self.imgsz = _exported_imgsz(weights, cfg.imgsz)
        if weights.is_dir() and weights.name.endswith("_openvino_model"):
            _require_openvino(weights)
        try:
            self.model = YOLO(str(weights), task="detect")
        except Exception as e:  # noqa: BLE001 - corrupt file, wrong format, missing runtime
            raise DetectorWeightsError(f"cannot load detector weights {str(weights)!r}: {type(e).__name__}: {e} "
                                       f"(see models/README.md)") from e
        names = getattr(self.model, "names", None) or {}
        if names and str(names.get(PERSON_CLASS, "person")).lower() != "person":
            log.warning("detector model %s: class 0 is %r, not 'person' (COCO order expected)", weights,
                        names.get(PERSON_CLASS))
        self.description = f"ultralytics YOLO {weights} (imgsz {self.imgsz}, device {cfg.device})"

    def detect(self, image: np.ndarray, min_conf: float) -> np.ndarray:
        res = self.model.predict(image, classes=[PERSON_CLASS], conf=min_conf, iou=self.cfg.iou, imgsz=self.imgsz,
                                 device=self.cfg.device, verbose=False)
        boxes = res[0].boxes
        if boxes is None or len(boxes) == 0:
            return np.zeros((0, 6), np.float32)
        data = boxes.data.cpu().numpy().astype(np.float32)
        if data.shape[1] == 7:  # [x1, y1, x2, y2, id, conf, cls]: drop any id
            data = data[:, [0, 1, 2, 3, 5, 6]]
        return data[data[:, 5] == PERSON_CLASS]

    def close(self) -> None:
        self.model = None


def _exported_imgsz(weights: Path, imgsz: int) -> int:
    """Return the input size to run ``weights`` at: its fixed exported size, else ``imgsz``."""
    meta = weights / "metadata.yaml" if weights.is_dir() else None
    if meta is None or not meta.is_file():
        return int(imgsz)
    import yaml

    try:
        data = yaml.safe_load(meta.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return int(imgsz)
    size = data.get("imgsz")
    dynamic = bool((data.get("args") or {}).get("dynamic", False))
    if dynamic or not isinstance(size, (list, tuple)) or not size:
        return int(imgsz)
    fixed = int(max(size))
    if fixed != int(imgsz):
        log.warning("detector model %s was exported for a fixed %s input; running at %d, not detector.imgsz=%d",
                    weights.name, "x".join(str(v) for v in size), fixed, imgsz)
    return fixed


def _require_openvino(weights: Path) -> None:
    try:
        import openvino  # noqa: F401
    except ImportError as e:
        raise DetectorWeightsError(f"{weights.name} is an OpenVINO model but the openvino runtime is not "
                                   f"installed (pip install -r requirements.txt, or pip install openvino)") from e


def _quiet_ultralytics() -> None:
    try:
        import ultralytics.utils.checks as checks

        checks.AUTOINSTALL = False  # in case ultralytics was imported before our env defaults
    except Exception:  # pragma: no cover
        pass


# ----------------------------------------------------------------------------- tracker
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


class PersonTracker:
    """Detect and track people frame by frame.

    Args:
        cfg: the detector section of the config.
        tracker_args: extra ultralytics tracker settings overriding its yaml (tuning, tests).

    Raises:
        DetectorWeightsError: backend "yolo" and the weights are missing or do not load.
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
        weights = resolve_weights(cfg.model)
        if cfg.backend == "yolo":
            if weights is None:
                raise DetectorWeightsError(_weights_missing_message(cfg.model))
            return YoloDetector(cfg, weights)
        # auto
        if weights is None:
            log.warning("detector weights %r not found locally; using the OpenCV HOG people detector instead "
                        "(weaker; see models/README.md to get YOLO weights)", cfg.model)
            return HogDetector(cfg)
        try:
            return YoloDetector(cfg, weights)
        except DetectorWeightsError as e:
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
