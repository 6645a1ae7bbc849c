"""An exported YOLO OpenVINO folder run by the OpenVINO runtime directly: thread count and LATENCY hint.

Ultralytics compiles an OpenVINO folder with the runtime's default threads and runs its own
torch pre- and post-processing. This detector compiles the IR with ``detector.threads``
inference threads (a lever where the detector shares 2 cores with the embedder) and the
LATENCY hint, and does the pre- and post-processing in OpenCV / numpy the way ultralytics
does (letterbox into the exported square with grey 114, centred; RGB / 255; a box is a
person where person is its best class and scores >= conf; NMS; at most 300 boxes).

The exported input size is kept: a fixed-shape YOLO11 export cannot be reshaped to a
smaller or rectangular input (its C2PSA attention block has the 20x20 grid baked into a
Reshape; OpenVINO refuses the reshape).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Tuple

import cv2
import numpy as np

from person_search.core.config import DetectorConfig
from person_search.core.detect.crops import PERSON_CLASS
from person_search.core.errors import WeightsError

log = logging.getLogger(__name__)

MAX_DET = 300


class OpenVinoYolo:
    """(N, 6) person detections from an ultralytics OpenVINO export, through the OpenVINO runtime."""

    name = "yolo"

    def __init__(self, cfg: DetectorConfig, weights: Path, imgsz: int):
        try:
            import openvino as ov
        except ImportError as e:
            raise WeightsError(f"{weights.name} is an OpenVINO model but the openvino runtime is not installed "
                               f"(pip install -r requirements.txt, or pip install openvino)") from e
        xml = sorted(weights.glob("*.xml"))
        if not xml:
            raise WeightsError(f"no OpenVINO .xml in {weights}")
        self.cfg = cfg
        self.weights = weights
        self.imgsz = int(imgsz)
        self._xml = xml[0]
        self._core = ov.Core()
        self._props: Dict[str, object] = {"PERFORMANCE_HINT": "LATENCY"}
        if cfg.threads > 0:
            self._props["INFERENCE_NUM_THREADS"] = int(cfg.threads)
        self._compiled: Dict[Tuple[int, int], object] = {}
        try:
            self._compile((self.imgsz, self.imgsz))
        except Exception as e:  # noqa: BLE001 - corrupt IR, unsupported ops
            raise WeightsError(f"cannot load detector weights {str(weights)!r} with OpenVINO: {type(e).__name__}: "
                               f"{e}") from e
        self.description = (f"OpenVINO runtime {weights} (imgsz {self.imgsz}, threads {cfg.threads or 'default'}, "
                            f"LATENCY hint)")

    def _compile(self, shape: Tuple[int, int]):
        if shape not in self._compiled:
            model = self._core.read_model(str(self._xml))
            model.reshape({model.inputs[0].any_name: [1, 3, shape[0], shape[1]]})
            self._compiled[shape] = self._core.compile_model(model, "CPU", self._props)
            log.info("OpenVINO detector compiled for a %dx%d input", shape[1], shape[0])
        return self._compiled[shape]

    def detect(self, image: np.ndarray, min_conf: float) -> np.ndarray:
        h0, w0 = image.shape[:2]
        H = W = self.imgsz
        r = min(H / h0, W / w0)
        h, w = int(round(h0 * r)), int(round(w0 * r))
        top, left = (H - h) // 2, (W - w) // 2
        canvas = np.full((H, W, 3), 114, np.uint8)
        canvas[top:top + h, left:left + w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        blob = cv2.dnn.blobFromImage(canvas, 1.0 / 255.0, swapRB=True)
        out = self._compile((H, W))(blob)
        pred = np.asarray(next(iter(out.values())))[0]  # (4 + classes, anchors)
        cls_scores = pred[4:]
        best = cls_scores.argmax(axis=0)
        conf = cls_scores[PERSON_CLASS]
        keep = (best == PERSON_CLASS) & (conf >= min_conf)
        if not keep.any():
            return np.zeros((0, 6), np.float32)
        xywh, conf = pred[:4, keep].T, conf[keep]
        tl = xywh[:, :2] - xywh[:, 2:] / 2
        idx = cv2.dnn.NMSBoxes(np.concatenate([tl, xywh[:, 2:]], 1).tolist(), conf.tolist(), float(min_conf),
                               float(self.cfg.iou), top_k=MAX_DET)
        idx = np.asarray(idx, np.int64).reshape(-1)[:MAX_DET]
        if idx.size == 0:
            return np.zeros((0, 6), np.float32)
        xyxy = np.concatenate([tl[idx], tl[idx] + xywh[idx, 2:]], 1)
        xyxy[:, [0, 2]] = np.clip((xyxy[:, [0, 2]] - left) / r, 0, w0)
        xyxy[:, [1, 3]] = np.clip((xyxy[:, [1, 3]] - top) / r, 0, h0)
        out6 = np.zeros((idx.size, 6), np.float32)
        out6[:, :4], out6[:, 4] = xyxy, conf[idx]
        return out6[np.argsort(-out6[:, 4], kind="stable")]

    def close(self) -> None:
        self._compiled.clear()
