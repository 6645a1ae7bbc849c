"""The detector's export paths, and fps of each format, measured in one run.

Exports a YOLO11n ``.pt`` with ``person-search export --detector`` (ultralytics' own exporter)
to OpenVINO fp32, OpenVINO int8 (post-training quantisation with nncf, calibrated on a local
dataset yaml: no download), and, on a CUDA machine with TensorRT, an FP16 engine; then times
each format on the same frames (a generated 1080p crowd) and prints fps as a ratio to the
``.pt`` measured in the same run, with each export's wall time. Where the pretrained shared
OpenVINO int8 YOLO11n exists (``$PERSON_SEARCH_SHARED_MODELS``), it gets a row too.

Without ``--weights`` the ``.pt`` is a randomly initialised YOLO11n (``yolo11n.yaml``): the
export paths and speed are real, its detections are not (speed does not depend on the weights;
int8 calibration then only proves the path). With a real ``yolo11n.pt`` pass ``--weights``.

    tools/env.sh python -m benchmarks.bench_detector [--weights yolo11n.pt] [--frames 40] [--no-int8]

int8 needs nncf: ``tools/env.sh pip install -r requirements-export.txt``. ``--json FILE`` writes the rows with the
run record; ``--doc docs/benchmarks.md`` rewrites the document's ``<!-- results:bench_detector -->`` block from them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import itertools
from pathlib import Path

from benchmarks.common import (ROOT, add_results_args, check_results_args, cpu_line, describe_run, new_record,
                               replace_block, video_frames, write_results)


def frames_of(video: Path, n: int):
    """Return the first ``n`` frames of ``video`` (BGR)."""
    out = list(itertools.islice(video_frames(video), n))
    if not out:
        raise SystemExit(f"no frames in {video}")
    return out


def calibration_yaml(frames, folder: Path) -> Path:
    """Write ``frames`` as a one-class (person) ultralytics dataset and return its yaml (no labels needed)."""
    import cv2

    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(images / f"{i:04d}.jpg"), f)
    yaml = folder / "calib.yaml"  # int8 calibration reads the val split; train must exist: the same folder
    yaml.write_text(f"path: {folder}\ntrain: images\nval: images\nnames:\n  0: person\n")
    return yaml


def export(pt: Path, fmt: str, out: Path, int8: bool = False, data: Path = None):
    """Run ``person-search export --detector``; return (the exported path or None, seconds, last line)."""
    argv = [sys.executable, "-m", "person_search", "export", "--detector", "--model", str(pt), "--format", fmt,
            "--out", str(out)]
    if int8:
        argv += ["--int8", "--data", str(data)]
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    secs = time.monotonic() - t0
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    last = lines[-1] if lines else ""
    if proc.returncode:
        return None, secs, last
    made = [p for p in out.iterdir() if p.name != pt.name and not p.name.endswith(".person_search_export")]
    return (made[0] if made else None), secs, last


def fps(weights: Path, frames, imgsz: int, device: str) -> float:
    """Return frames/s of ultralytics predict (person class) on ``frames`` (best of two passes after a warm-up)."""
    from person_search.core.detect import yolo as _yolo  # noqa: F401 - ultralytics' offline defaults
    from ultralytics import YOLO

    model = YOLO(str(weights), task="detect")
    model.predict(frames[0], classes=[0], imgsz=imgsz, device=device, verbose=False)
    best = 0.0
    for _ in range(2):
        t0 = time.perf_counter()
        for f in frames:
            model.predict(f, classes=[0], imgsz=imgsz, device=device, verbose=False)
        best = max(best, len(frames) / (time.perf_counter() - t0))
    return best


def main() -> int:
    """Export, time and print; return the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", help="a YOLO .pt (default: a randomly initialised YOLO11n)")
    ap.add_argument("--frames", type=int, default=40, help="timed frames (and int8 calibration images)")
    ap.add_argument("--no-int8", action="store_true", help="skip the int8 export")
    ap.add_argument("--imgsz", type=int, default=640)
    add_results_args(ap, "bench_detector", redraw=False)
    a = ap.parse_args()
    check_results_args(ap, a)
    record = new_record(vars(a), "bench_detector")

    import torch

    from person_search.core.detect import yolo as _yolo  # noqa: F401
    from person_search.core.paths import shared_models_dir
    from ultralytics import YOLO

    work = Path(tempfile.mkdtemp(prefix="bench_detector_"))
    if a.weights:
        pt = Path(a.weights).resolve()
        what = f"{pt.name} (given)"
    else:
        pt = work / "pt" / "yolo11n_random.pt"
        pt.parent.mkdir()
        YOLO("yolo11n.yaml", task="detect").save(str(pt))
        what = "YOLO11n, random weights (yolo11n.yaml)"
    video = work / "crowd.mp4"
    subprocess.run([sys.executable, "-m", "person_search", "sample-video", str(video), "--crowd", "12", "--seconds",
                    str(max(2, a.frames // 15 + 1)), "--size", "1920x1080"], cwd=ROOT, check=True,
                   capture_output=True)
    frames = frames_of(video, a.frames)
    setup = (f"torch threads {torch.get_num_threads()}; {len(frames)} frames 1920x1080 (generated crowd), imgsz "
             f"{a.imgsz}; model {what}")
    print(f"CPU: {cpu_line()}; {setup}")

    rows = []  # (format, path or None, export s, note)
    rows.append((".pt (torch, CPU)", pt, None, ""))
    out = work / "openvino_fp32"
    out.mkdir()
    path, secs, last = export(pt, "openvino", out)
    rows.append(("OpenVINO fp32", path, secs, "" if path else last))
    if not a.no_int8:
        out = work / "openvino_int8"
        out.mkdir()
        calib = calibration_yaml(frames, work / "calib")
        path, secs, last = export(pt, "openvino", out, int8=True, data=calib)
        rows.append((f"OpenVINO int8 (nncf, {len(frames)} calibration frames)", path, secs, "" if path else last))
    if torch.cuda.is_available():
        rows.append((".pt (torch, CUDA)", pt, None, ""))
        out = work / "engine"
        out.mkdir()
        path, secs, last = export(pt, "engine", out)
        rows.append(("TensorRT FP16 engine", path, secs, "" if path else last))
    else:
        rows.append(("TensorRT FP16 engine", None, None, "not run: no CUDA GPU"))
    shared = shared_models_dir() / "yolo11n_int8_openvino_model"
    rows.append(("shared pretrained OpenVINO int8", shared if shared.is_dir() else None, None,
                 "" if shared.is_dir() else f"not run: {shared} absent"))

    base = {}  # device -> fps of the .pt there
    print(f"\n{HEADER}")
    cells = []
    for name, path, secs, note in rows:
        cell = {"format": name, "export_s": secs, "fps": None, "x_pt": None, "note": note}
        if path is not None:
            device = "0" if ("TensorRT" in name or "CUDA" in name) else "cpu"
            f = fps(path, frames, a.imgsz, device)
            base.setdefault(device, f)
            cell.update(fps=f, x_pt=f / base[device])
        cells.append(cell)
        print(format_row(cell), flush=True)
    print(f"\n(exports and engines under {work}; not kept in the repository); {cpu_line()}")
    if a.json:
        out = write_results(a.json, record, setup=setup, rows=cells)
        if a.doc and not replace_block(a.doc, "bench_detector", doc_block(json.loads(out.read_text()))):
            return 2
    return 0


HEADER = f"{'format':<48} {'export s':>9} {'fps':>7} {'x .pt':>6}  (x .pt: against the .pt on the same device)"


def format_row(cell: dict) -> str:
    if cell["fps"] is None:
        return f"{cell['format']:<48} {'-':>9} {'-':>7} {'-':>6}  {cell['note']}"
    exp = f"{cell['export_s']:.0f}" if cell["export_s"] is not None else "-"
    return f"{cell['format']:<48} {exp:>9} {cell['fps']:>7.2f} {cell['x_pt']:>6.2f}"


def doc_block(result: dict) -> str:
    """Return the document's detector table of a results file."""
    run = result["run"]
    head = (f"Written by the command above into [bench_detector.json](bench_detector.json) ({describe_run(run)}; "
            f"{result['setup']}):")
    return "\n".join([head, "", "```", HEADER, *(format_row(c) for c in result["rows"]), "```"])


if __name__ == "__main__":
    raise SystemExit(main())
