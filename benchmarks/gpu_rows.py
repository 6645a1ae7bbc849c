"""GPU rows of bench_embedder.py: torch fp32 / fp16 / sdpa fp16 and TensorRT fp16, the YOLO engine.

Every image-tower variant runs the same preprocessed float32 batch through
``ClipEncoder.encode_preprocessed`` (host -> GPU copy, the tower, features back to the host,
L2 norm), timed per call after a warm-up; ratios are to torch eager fp16 in the same run.
Memory: ``torch.cuda.max_memory_allocated`` while the variant runs (peak since a reset after
its build: weights, buffers, activations), plus for TensorRT what TensorRT allocates outside
torch: the engine's activation memory and the serialized engine size (~ its weights).
Cosine: the lowest over the batch against torch eager fp32.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch

from benchmarks.common import percentile_ms, time_calls
from person_search.core.clip_encoder import ClipEncoder
from person_search.core.config import AttentionConfig, EncoderConfig

# name -> (backend, precision, attention kind)
GPU_VARIANTS: Dict[str, Tuple[str, str, str]] = {
    "torch-eager-fp32": ("torch", "fp32", "eager"),
    "torch-eager-fp16": ("torch", "fp16", "eager"),
    "torch-sdpa-fp16": ("torch", "fp16", "sdpa"),
    "tensorrt-fp16": ("tensorrt", "fp16", "sdpa"),
}
BASELINE = "torch-eager-fp16"


def _times(fn: Callable[[], object], seconds: float) -> List[float]:
    """Return the seconds of GPU calls of ``fn``: 3 untimed, then at least 5 and ``seconds`` of timed calls."""
    return time_calls(fn, calls=5, seconds=seconds, warmup=3, sync=torch.cuda.synchronize)


def clip_rows(archs: Sequence[str], size: Tuple[int, int], batches: Sequence[int], seconds: float,
              cache: str, emit: Callable[[str], None]) -> None:
    """Emit one row per arch x batch x GPU variant."""
    h, w = size
    emit(f"{'arch':<14}{'batch':>6}  {'variant':<18}{'crops/s':>9}{'ratio':>7}{'p50_ms':>8}{'p95_ms':>8}"
         f"{'cos_min':>9}{'gpu_MB':>8}")
    for arch in archs:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((max(batches), 3, h, w)).astype(np.float32)
        results: Dict[str, Dict[int, Tuple[float, float, float, float, float]]] = {}
        ref: Dict[int, np.ndarray] = {}
        for name, (backend, precision, kind) in GPU_VARIANTS.items():
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            cfg = EncoderConfig(arch=arch, image_height=h, image_width=w, device="cuda", precision=precision,
                                batch_size=max(batches), backend=backend, attention=AttentionConfig(kind=kind),
                                trt_min_batch=1, trt_opt_batch=min(8, max(batches)), trt_max_batch=max(batches))
            t0 = time.perf_counter()
            enc = ClipEncoder(cfg, towers=("image",), cache_dir=cache)
            print(f"  {arch} {name}: build {time.perf_counter() - t0:.1f}s", flush=True)
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()  # the peak of running, not of building (export, engine build)
            extra = 0  # TensorRT allocates outside torch: its activation memory + the engine (~ its weights)
            if backend == "tensorrt":
                extra = enc.backend.tower.device_memory_bytes + enc.backend.path.stat().st_size
            results[name] = {}
            for b in batches:
                xb = x[:b]
                out = enc.encode_preprocessed(xb)
                if name == "torch-eager-fp32":
                    ref[b] = out
                cos = float((out * ref[b]).sum(1).min())
                ts = _times(lambda xb=xb, enc=enc: enc.encode_preprocessed(xb), seconds)
                p50, p95 = (v / 1e3 for v in percentile_ms(ts, [50, 95]))
                mem = (torch.cuda.max_memory_allocated() + extra) / 2**20
                results[name][b] = (b / p50, p50 * 1e3, p95 * 1e3, cos, mem)
            del enc
        for b in batches:
            base = results[BASELINE][b][0]
            for name in GPU_VARIANTS:
                rate, p50, p95, cos, mem = results[name][b]
                emit(f"{arch:<14}{b:>6}  {name:<18}{rate:>9.1f}{rate / base:>7.2f}{p50:>8.2f}{p95:>8.2f}"
                     f"{cos:>9.4f}{mem:>8.0f}")


def detector_rows(model: str, seconds: float, emit: Callable[[str], None]) -> None:
    """Emit the YOLO ``.pt`` vs ``.engine`` (FP16, exported by ultralytics) frames/s on the GPU."""
    from person_search.core.paths import resolve_model_path

    import person_search.core.detect  # noqa: F401 - ultralytics offline defaults first
    from ultralytics import YOLO

    pt = resolve_model_path(model)
    if pt is None:
        emit(f"detector rows: not run ({model} not found in the model folders)")
        return
    work = Path(tempfile.mkdtemp(prefix="ps_bench_yolo_"))
    local = work / pt.name
    shutil.copy(pt, local)
    t0 = time.perf_counter()
    engine = Path(YOLO(str(local)).export(format="engine", half=True, device=0, imgsz=640, verbose=False))
    print(f"  {pt.name} -> {engine.name}: export {time.perf_counter() - t0:.0f}s", flush=True)
    frame = np.random.default_rng(0).integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    rates = {}
    for label, path in (("pt fp32", local), ("engine fp16", engine)):
        yolo = YOLO(str(path), task="detect")
        ts = _times(lambda: yolo.predict(frame, imgsz=640, device=0, half=label.endswith("fp16"), verbose=False),
                    seconds)
        rates[label] = 1.0 / float(np.median(ts))
    for label, r in rates.items():
        emit(f"detector {pt.name:<12} {label:<12}{r:>8.1f} fps{r / rates['pt fp32']:>7.2f}x (1080p frame, imgsz 640)")
    shutil.rmtree(work, ignore_errors=True)
