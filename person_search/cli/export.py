"""``person-search export``: turn models into deployable runtimes.

Today: the detector (``--detector``), through ultralytics' own exporter, to an OpenVINO IR
folder (``--format openvino``, optionally ``--int8``) that ``detector.model`` then names.
The image-tower exports (TensorRT / ONNX) will join this group.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

DETECTOR_FORMATS = ("openvino", "onnx")


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def export_detector(a) -> int:
    """Export a YOLO ``.pt`` with ultralytics; the result lands in ``--out`` (default: beside the .pt)."""
    from person_search.core.paths import model_dirs, resolve_model_path
    weights = resolve_model_path(a.model)
    if weights is None:
        where = ", ".join(str(d) for d in model_dirs())
        return _error(f"{a.model} not found (looked as given and in {where}); offline it cannot be downloaded: "
                      f"on a machine with internet run python -c \"from ultralytics import YOLO; "
                      f"YOLO('{Path(a.model).name}')\" and copy the file into models/ (see models/README.md)")
    if a.int8 and a.format != "openvino":
        return _error("--int8 is supported for --format openvino only")
    if a.format == "openvino":
        try:
            import openvino  # noqa: F401
        except ImportError:
            return _error("--format openvino needs the openvino runtime: pip install -r requirements.txt")
    if a.int8:
        try:
            import nncf  # noqa: F401
        except ImportError:
            return _error("--int8 needs nncf for post-training quantization: pip install nncf")
    out_dir = Path(a.out).expanduser() if a.out else weights.parent
    out_dir.mkdir(parents=True, exist_ok=True)

    import person_search.core.detect  # noqa: F401 - sets ultralytics' offline / no-pip-install defaults first
    from ultralytics import YOLO
    t0 = time.monotonic()
    print(f"[export] 1/3 loading {weights}", flush=True)
    model = YOLO(str(weights), task="detect")
    calib = f", int8 calibrated on {a.data} (takes minutes)" if a.int8 else ""
    print(f"[export] 2/3 exporting to {a.format} at imgsz {a.imgsz}{calib}", flush=True)
    kwargs = dict(format=a.format, imgsz=a.imgsz, int8=bool(a.int8), dynamic=False, device="cpu")
    if a.int8:
        kwargs["data"] = a.data
    try:
        produced = Path(model.export(**kwargs))
    except Exception as exc:  # noqa: BLE001 - ultralytics raises anything; one line for the user
        hint = (" (int8 calibration reads the --data dataset; offline, point --data at a local dataset yaml)"
                if a.int8 else "")
        return _error(f"export failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{hint}")
    target = out_dir / produced.name
    if produced.resolve() != target.resolve():
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        shutil.move(str(produced), str(target))
    print(f"[export] 3/3 wrote {target} ({_size_mb(target):.1f} MB) in {time.monotonic() - t0:.0f} s; "
          f"use it with --set detector.model={target.name if out_dir in model_dirs() else target}", flush=True)
    return 0


def cmd_export(a) -> int:
    """Dispatch ``person-search export``."""
    if not a.detector:
        return _error("say what to export: --detector (the image-tower exports are not here yet)")
    return export_detector(a)


def register(sub) -> None:
    """Add ``export``."""
    sp = sub.add_parser("export", help="export the YOLO detector to OpenVINO (int8) or ONNX with ultralytics")
    sp.add_argument("--detector", action="store_true", help="export the person detector")
    sp.add_argument("--model", default="yolo11n.pt", help="ultralytics .pt (as given or under models/)")
    sp.add_argument("--format", choices=DETECTOR_FORMATS, default="openvino", help="detector export format")
    sp.add_argument("--int8", action="store_true", help="post-training int8 quantization (OpenVINO, needs nncf)")
    sp.add_argument("--data", default="coco8.yaml",
                    help="int8 calibration dataset yaml (ultralytics downloads coco8 when online)")
    sp.add_argument("--imgsz", type=int, default=640, help="detector input size (px)")
    sp.add_argument("--out", help="folder for the result (default: beside the .pt)")
    sp.set_defaults(func=cmd_export)
