"""``person-search export``: turn models into deployable runtimes.

* ``--detector``: the YOLO detector through ultralytics' own exporter, to an OpenVINO IR
  folder (``--format openvino``, optionally ``--int8``), ONNX, or a TensorRT engine
  (``--format engine``, FP16, on the GPU that will run it); ``detector.model`` then names it.
* ``--to onnx|engine``: the CLIP image tower of the configured encoder (``--config`` /
  ``--set``, any checkpoint, a merged LoRA one included) to ONNX (opset 17, dynamic batch)
  or to a TensorRT engine with its metadata sidecar (default: into the engine cache, where
  ``encoder.backend: tensorrt`` finds it).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

DETECTOR_FORMATS = ("openvino", "onnx", "engine")
TOWER_TARGETS = ("onnx", "engine")
MARKER = ".person_search_export"  # inside an exported folder (or FILE.person_search_export beside a file)


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def default_out_dir() -> Path:
    """Return where ``export --detector`` writes without ``--out``: the checkout's models/, else the user cache.

    Both are on the model search path (``core.paths.model_dirs``), so ``detector.model`` can name the result.
    """
    from person_search.core.paths import MODELS_DIR
    return MODELS_DIR if MODELS_DIR.is_dir() else Path.home() / ".cache" / "person_search" / "models"


def _marker(target: Path) -> Path:
    return target / MARKER if target.is_dir() else target.with_name(target.name + MARKER)


def exported_name(stem: str, fmt: str, int8: bool) -> str:
    """Return the file or folder name ultralytics gives an export of ``stem``.pt."""
    return {"openvino": f"{stem}{'_int8' if int8 else ''}_openvino_model", "onnx": f"{stem}.onnx",
            "engine": f"{stem}.engine"}[fmt]


def occupied(target: Path) -> Optional[str]:
    """Return why ``target`` may not be replaced (it exists and export did not write it), else None."""
    if not target.exists() and not target.is_symlink():
        return None
    if _marker(target).is_file():
        return None
    return (f"{target} exists and was not written by person-search export (no {_marker(target).name}): "
            "remove it yourself or pick another --out")


def replace_with(produced: Path, target: Path) -> None:
    """Move ``produced`` to ``target``, first removing an earlier export there (only one this command wrote)."""
    why = occupied(target)
    if why:
        raise FileExistsError(why)
    if target.exists():
        marker = _marker(target)
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        if marker.exists():
            marker.unlink()
    shutil.move(str(produced), str(target))
    _marker(target).write_text("written by person-search export; a later export may replace it\n")


def export_detector(a) -> int:
    """Export a YOLO ``.pt`` with ultralytics; the result lands in ``--out`` (default: ``default_out_dir()``).

    ultralytics writes its export beside the .pt it reads, so the .pt is copied into a temporary folder first:
    nothing is written beside the source (which may be a read-only shared folder or a cache).
    """
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
    if a.format == "engine":
        import torch
        if not torch.cuda.is_available():
            return _error("--format engine needs a CUDA GPU with TensorRT, and torch sees none: export the engine "
                          "on the machine that runs it (an engine is tied to its GPU and TensorRT version)")
    if a.int8:
        try:
            import nncf  # noqa: F401
        except ImportError:
            return _error("--int8 needs nncf for post-training quantization: pip install nncf")
    out_dir = Path(a.out).expanduser() if a.out else default_out_dir()
    why = occupied(out_dir / exported_name(weights.stem, a.format, a.int8))
    if why:
        return _error(why)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _error(f"cannot create {out_dir}: {exc.strerror or exc}")
    with tempfile.TemporaryDirectory(prefix="ps-export-") as tmp:
        work = Path(tmp) / weights.name
        shutil.copy2(weights, work)
        return _export_detector(a, weights, work, out_dir)


def _export_detector(a, weights: Path, work: Path, out_dir: Path) -> int:
    from person_search.core.paths import model_dirs

    import person_search.core.detect  # noqa: F401 - sets ultralytics' offline / no-pip-install defaults first
    from ultralytics import YOLO
    t0 = time.monotonic()
    print(f"[export] 1/3 loading {weights}", flush=True)
    model = YOLO(str(work), task="detect")
    calib = f", int8 calibrated on {a.data} (takes minutes)" if a.int8 else ""
    print(f"[export] 2/3 exporting to {a.format} at imgsz {a.imgsz}{calib}", flush=True)
    kwargs = dict(format=a.format, imgsz=a.imgsz, int8=bool(a.int8), dynamic=False, device="cpu")
    if a.format == "engine":  # FP16 TensorRT engine built by ultralytics on the GPU
        kwargs.update(device=0, half=True)
    if a.int8:
        kwargs["data"] = a.data
    try:
        produced = Path(model.export(**kwargs))
    except Exception as exc:  # noqa: BLE001 - ultralytics raises anything; one line for the user
        hint = (" (int8 calibration reads the --data dataset; offline, point --data at a local dataset yaml)"
                if a.int8 else "")
        return _error(f"export failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{hint}")
    target = out_dir / produced.name
    try:
        replace_with(produced, target)
    except FileExistsError as exc:
        return _error(str(exc))
    print(f"[export] 3/3 wrote {target} ({_size_mb(target):.1f} MB) in {time.monotonic() - t0:.0f} s; "
          f"use it with --set detector.model={target.name if out_dir in model_dirs() else target}", flush=True)
    return 0


def _check_engine_machine() -> str:
    """Return why no engine can be built here ("" when a CUDA GPU and TensorRT are present)."""
    import torch

    from person_search.core.backends.tensorrt import TensorRTError, import_tensorrt
    if not torch.cuda.is_available():
        return ("--to engine needs a CUDA GPU with TensorRT, and torch sees none: build the engine on the machine "
                "that runs it (an engine is tied to its GPU and TensorRT version), or use --to onnx")
    try:
        import_tensorrt()
    except TensorRTError as exc:
        return str(exc)
    return ""


def export_tower(a) -> int:
    """Export the configured CLIP image tower to ONNX or a TensorRT engine."""
    from person_search.cli.common import load_config_args
    from person_search.core.errors import ConfigError
    from person_search.core.models.factory import build_clip
    from person_search.core.models.weights import WeightsError

    if a.to == "engine":
        why = _check_engine_machine()
        if why:
            return _error(why)
    elif not a.out:
        return _error("--to onnx needs --out FILE.onnx")
    t0 = time.monotonic()
    try:
        cfg = load_config_args(a).encoder
        if a.to == "engine":
            cfg.device = cfg.device if cfg.device.startswith("cuda") else "cuda"
            cfg.precision = a.precision or cfg.precision
        else:  # an FP16 file is traced on the GPU where there is one (else on the CPU, in half)
            import torch
            gpu = a.precision == "fp16" and torch.cuda.is_available()
            cfg.device, cfg.precision = ("cuda", "fp16") if gpu else ("cpu", "fp32")
        print(f"[export] 1/3 building {cfg.arch} ({cfg.weights or 'random weights'}) at "
              f"{cfg.image_height}x{cfg.image_width}, attention {cfg.attention.kind}", flush=True)
        built = build_clip(cfg, towers=("image",))
    except (ConfigError, WeightsError, ValueError) as exc:
        return _error(str(exc).splitlines()[0])
    tower, facts = built.image_tower, built.facts
    if a.to == "onnx":
        from person_search.core.backends.export import export_image_tower, metadata_for
        from person_search.core.models.weights import module_fingerprint
        out = Path(a.out).expanduser()
        half = a.precision == "fp16"
        print(f"[export] 2/3 exporting to ONNX ({'fp16' if half else 'fp32'}, opset 17, dynamic batch)", flush=True)
        meta = {**metadata_for(facts, False, module_fingerprint(tower)), "precision": "fp16" if half else "fp32"}
        export_image_tower(tower, out, facts.image_size, meta, half=half)
    else:
        from person_search.core.backends.tensorrt import (
            BUILD_MINUTES_ORIN, TensorRTError, engine_spec, export_and_build)
        from person_search.core.paths import cache_dir
        precision = cfg.precision
        try:
            spec = engine_spec(tower, facts, device=built.device, precision=precision,
                               profile=(cfg.trt_min_batch, cfg.trt_opt_batch, cfg.trt_max_batch))
            out = Path(a.out).expanduser() if a.out else cache_dir() / "tensorrt" / spec.filename()
            print(f"[export] 2/3 building the TensorRT {precision} engine, batch {spec.min_batch}/{spec.opt_batch}/"
                  f"{spec.max_batch} on {spec.gpu_name} (TensorRT {spec.tensorrt_version}; takes ~"
                  f"{BUILD_MINUTES_ORIN} min on an Orin)", flush=True)
            export_and_build(tower, facts, spec, out, workspace_mb=cfg.trt_workspace_mb)
        except TensorRTError as exc:
            return _error(str(exc).splitlines()[0])
    print(f"[export] 3/3 wrote {out} ({_size_mb(out):.1f} MB) in {time.monotonic() - t0:.0f} s", flush=True)
    return 0


def cmd_export(a) -> int:
    """Dispatch ``person-search export``."""
    if a.detector == bool(a.to):
        return _error("say what to export: --detector, or --to onnx|engine for the CLIP image tower")
    return export_detector(a) if a.detector else export_tower(a)


def register(sub) -> None:
    """Add ``export``."""
    sp = sub.add_parser("export", help="export the YOLO detector (OpenVINO, ONNX, TensorRT) or the CLIP image "
                                       "tower (ONNX, TensorRT engine)")
    sp.add_argument("--detector", action="store_true", help="export the person detector")
    sp.add_argument("--to", choices=TOWER_TARGETS, help="export the CLIP image tower of the configured encoder")
    sp.add_argument("--config", default="cpu",
                    help="image tower: cpu, orin, test, or a YAML path (default cpu, like every command; "
                         "--config orin for the Orin's ViT-B-16)")
    sp.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="image tower: override a config value (repeatable)")
    sp.add_argument("--random-weights", action="store_true", help="image tower: random CLIP weights")
    sp.add_argument("--precision", choices=("fp32", "fp16"),
                    help="image tower: onnx fp32 (default, CPU) or fp16 (on a GPU); engine: default encoder.precision")
    sp.add_argument("--model", default="yolo11n.pt", help="ultralytics .pt (as given or under models/)")
    sp.add_argument("--format", choices=DETECTOR_FORMATS, default="openvino", help="detector export format")
    sp.add_argument("--int8", action="store_true", help="post-training int8 quantization (OpenVINO, needs nncf)")
    sp.add_argument("--data", default="coco8.yaml",
                    help="int8 calibration dataset yaml (ultralytics downloads coco8 when online)")
    sp.add_argument("--imgsz", type=int, default=640, help="detector input size (px)")
    sp.add_argument("--out", help="detector: folder for the result (default: the checkout's models/, else "
                                  "~/.cache/person_search/models; an earlier export there is replaced, anything else "
                                  "is refused); image tower: the "
                                  ".onnx / .engine file (engine default: the engine cache the backend reads)")
    sp.set_defaults(func=cmd_export)
