"""An ultralytics YOLO model as a person detector: weights lookup, exported folders (OpenVINO), loading."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np

from person_search.core.config import DetectorConfig
from person_search.core.detect.crops import PERSON_CLASS
from person_search.core.errors import WeightsError

log = logging.getLogger(__name__)


def find_detector_weights(model: str) -> Optional[Path]:
    """Return the local weights for ``model`` (a file, or an exported model folder), or None.

    Looks at the path as given (absolute or relative to the CWD), then in
    ``person_search.core.paths.model_dirs()`` ($PERSON_SEARCH_MODELS, models/, the colcon
    share folder, ~/.cache/person_search). Never downloads.
    """
    if not model:
        return None
    from person_search.core.paths import model_dirs, resolve_model_path

    found = resolve_model_path(model)
    if found is not None:
        return found
    p = Path(model).expanduser()
    for c in [p] + ([d / p for d in model_dirs()] if not p.is_absolute() else []):
        if c.is_dir() and any(c.iterdir()):  # e.g. an exported *_openvino_model/ folder
            return c.resolve()
    return None


def weights_missing_message(model: str) -> str:
    """Return the error line for detector weights that are not found, naming where they were looked for."""
    from person_search.core.paths import model_dirs

    where = ", ".join(str(d) for d in model_dirs())
    return (f"detector weights not found: {model!r} (looked as given and in {where}); see models/README.md: "
            f"on a machine with internet download yolo11n.pt "
            f"(python -c \"from ultralytics import YOLO; YOLO('yolo11n.pt')\") or `yolo export` it, copy it into "
            f"models/ and set detector.model, or use detector.backend: hog")


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
            raise WeightsError(f"cannot load detector weights {str(weights)!r}: {type(e).__name__}: {e} "
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
        raise WeightsError(f"{weights.name} is an OpenVINO model but the openvino runtime is not "
                           f"installed (pip install -r requirements.txt, or pip install openvino)") from e


def _quiet_ultralytics() -> None:
    try:
        import ultralytics.utils.checks as checks

        checks.AUTOINSTALL = False  # in case ultralytics was imported before our env defaults
    except Exception:  # pragma: no cover
        pass
