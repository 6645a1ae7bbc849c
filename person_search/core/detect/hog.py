"""OpenCV's pretrained HOG people detector (no download; weak but real) and its NMS."""

from __future__ import annotations

import cv2
import numpy as np

from person_search.core.config import DetectorConfig
from person_search.core.detect.crops import PERSON_CLASS

HOG_SCORE_SCALE = 1.0  # HOG SVM margin w maps to conf = 1 - exp(-w / HOG_SCORE_SCALE)
HOG_INSET = (0.10, 0.04)  # HOG windows include margin: shrink boxes by this fraction (x, y) each side


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
