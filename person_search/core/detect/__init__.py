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
warning and uses HOG. ``backend="yolo"`` with a missing file raises ``WeightsError``
(``core/errors.py``, the package's one weights error) at once (ultralytics is never asked
to download anything, nor to pip-install).
"""

import os

# Never let ultralytics reach for the network or pip at runtime (offline robots; no stalls).
os.environ.setdefault("YOLO_OFFLINE", "True")
os.environ.setdefault("YOLO_AUTOINSTALL", "False")

from person_search.core.detect.crops import crop_box, crop_quality, PERSON_CLASS, sharpness  # noqa: E402
from person_search.core.detect.hog import HogDetector, nms  # noqa: E402
from person_search.core.detect.tracker import PersonTracker  # noqa: E402
from person_search.core.detect.yolo import find_detector_weights, YoloDetector  # noqa: E402
from person_search.core.imaging import check_image  # noqa: E402

__all__ = ["HogDetector", "PERSON_CLASS", "PersonTracker", "YoloDetector", "check_image",
           "crop_box", "crop_quality", "find_detector_weights", "nms", "sharpness"]
