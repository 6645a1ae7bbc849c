"""TensorRT engine backend for the CLIP image tower (NVIDIA GPUs: Jetson Orin, desktop cards).

Export -> build -> load are three small steps (as NanoOWL does it):

1. the torch image tower (weights loaded, resized to the input shape, the attention variant
   in use) is exported to ONNX at opset 17 with a dynamic batch axis;
2. an FP16 engine is built from it with one optimisation profile (min / opt / max batch) and
   a timing cache. TensorRT 8.6 / 10.x (JetPack 6 has 10.3) build a weakly typed network
   from the FP32 ONNX with the FP16 builder flag; TensorRT 11 removed that flag, so there the
   tower is exported in FP16 and the network is built strongly typed;
3. the engine runs with ``execute_async_v3`` on named tensors bound to torch CUDA tensors
   that are allocated once for the largest batch; bigger batches are split.

Engines are cached under ``<cache>/tensorrt/``. Each engine has a JSON sidecar with its
:class:`EngineSpec` (weights fingerprint, architecture, attention variant, image size, batch
profile, precision, TensorRT version, GPU name and compute capability); the spec is
checked on load, so a stale or foreign engine is rebuilt, never used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from person_search.core.backends.base import ImageBackend
from person_search.core.errors import ConfigError

logger = logging.getLogger(__name__)

ENGINE_FORMAT = "1"
INPUT_NAME = "image"
OUTPUT_NAME = "embedding"


class TensorRTError(RuntimeError):
    """TensorRT or a CUDA GPU is missing, or an engine cannot be built or used here."""


@dataclass(frozen=True)
class EngineSpec:
    """Everything an engine depends on; two engines with equal specs are interchangeable."""

    model_id: str
    arch: str
    weights_fingerprint: str
    attention: str
    image_height: int
    image_width: int
    dim: int
    min_batch: int
    opt_batch: int
    max_batch: int
    precision: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    format: str = ENGINE_FORMAT

    def __post_init__(self) -> None:
        """Check the batch profile and precision."""
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(f"TensorRT batch profile must satisfy 1 <= min <= opt <= max, got "
                             f"{self.min_batch}/{self.opt_batch}/{self.max_batch}")
        if self.precision not in ("fp16", "fp32"):
            raise ValueError(f"TensorRT precision must be fp16 or fp32, not {self.precision!r}")

    def to_dict(self) -> Dict[str, Any]:
        """Return the spec as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "EngineSpec":
        """Build a spec from :meth:`to_dict` output (unknown keys are an error)."""
        names = {f.name for f in dataclasses.fields(cls)}
        extra = set(data) - names
        if extra:
            raise ValueError(f"unknown engine metadata keys: {sorted(extra)}")
        return cls(**data)

    def key(self) -> str:
        """Return a short hash of the whole spec: the engine cache key."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def filename(self) -> str:
        """Return the engine file name: readable prefix + the cache key."""
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.model_id)
        return (f"{safe}_{self.image_height}x{self.image_width}_{self.precision}_"
                f"b{self.min_batch}-{self.max_batch}_{self.key()}.engine")

    def mismatch(self, other: "EngineSpec") -> Dict[str, Tuple[Any, Any]]:
        """Return the fields that differ, as name -> (ours, theirs)."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b.get(k)) for k in a if a[k] != b.get(k)}


def sidecar_path(engine_path: Path) -> Path:
    """Return the metadata file that travels with an engine."""
    return Path(str(engine_path) + ".json")


def write_sidecar(engine_path: Path, spec: EngineSpec) -> None:
    """Write the spec beside the engine (atomically)."""
    path = sidecar_path(engine_path)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(spec.to_dict(), indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_sidecar(engine_path: Path) -> Optional[EngineSpec]:
    """Return the spec stored beside an engine, or None when it is missing or unreadable."""
    try:
        return EngineSpec.from_dict(json.loads(sidecar_path(engine_path).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        logger.debug("no usable sidecar for %s: %s", engine_path, exc)
        return None


def import_tensorrt():
    """Import TensorRT or raise a TensorRTError saying how to get it."""
    try:
        import tensorrt as trt
    except Exception as exc:  # noqa: BLE001 - ImportError or a broken CUDA library load
        raise TensorRTError(
            f"encoder.backend tensorrt needs TensorRT ({type(exc).__name__}: {str(exc)[:120]}): it ships "
            f"with JetPack on a Jetson; on a desktop GPU `pip install tensorrt`; see models/README.md") from exc
    return trt


def current_gpu(device: Any = None) -> Tuple[str, str]:
    """Return (name, "major.minor" compute capability) of the CUDA device, or raise."""
    import torch

    if not torch.cuda.is_available():
        raise TensorRTError("encoder.backend tensorrt needs a CUDA GPU, and torch sees none "
                            "(on CPU use backend onnx or onnx-int8)")
    dev = torch.device(device) if device is not None else torch.device("cuda")
    major, minor = torch.cuda.get_device_capability(dev)
    return torch.cuda.get_device_name(dev), f"{major}.{minor}"


def strongly_typed(trt) -> bool:
    """Return True where the weakly typed FP16 builder flag is gone (TensorRT 11+)."""
    return not hasattr(trt.BuilderFlag, "FP16")


def build_engine(onnx_path: Path, engine_path: Path, spec: EngineSpec, *, timing_cache: Optional[Path] = None,
                 workspace_mb: int = 2048) -> Path:
    """Build an engine for ``spec`` from ``onnx_path`` and write it with its sidecar.

    Args:
        onnx_path: the exported image tower (FP16 weights where TensorRT is strongly typed).
        engine_path: where the serialized engine goes (written atomically).
        spec: the engine's spec; its batch profile and precision are used here.
        timing_cache: a file reused across builds (read if present, updated after).
        workspace_mb: the builder's workspace memory limit.

    Returns:
        ``engine_path``.
    """
    trt = import_tensorrt()
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    flags = 0
    if strongly_typed(trt):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    elif hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # TensorRT 8.x needs it
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TensorRTError(f"TensorRT cannot parse {onnx_path}: {errors[:400]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if spec.precision == "fp16" and not strongly_typed(trt):
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    shape = (3, spec.image_height, spec.image_width)
    profile.set_shape(INPUT_NAME, (spec.min_batch, *shape), (spec.opt_batch, *shape), (spec.max_batch, *shape))
    config.add_optimization_profile(profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=True)
    t0 = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TensorRTError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = engine_path.with_suffix(".engine.tmp")
    with open(tmp, "wb") as f:
        f.write(memoryview(serialized))
    os.replace(tmp, engine_path)
    write_sidecar(engine_path, spec)
    if timing_cache is not None:
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        timing_cache.write_bytes(memoryview(config.get_timing_cache().serialize()))
    logger.info("TensorRT engine built in %.0f s: %s", time.monotonic() - t0, engine_path)
    return engine_path


def cached_engine(cache_dir: Path, spec: EngineSpec) -> Optional[Path]:
    """Return the cached engine for ``spec`` if it exists and its sidecar matches, else None."""
    path = Path(cache_dir) / spec.filename()
    if not path.is_file():
        return None
    stored = read_sidecar(path)
    if stored is None:
        logger.warning("TensorRT engine %s has no readable metadata: rebuilding it", path)
        return None
    diff = spec.mismatch(stored)
    if diff:
        logger.warning("TensorRT engine %s was built for another setup %s: rebuilding it", path, diff)
        return None
    return path


_TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT32": "int32"}


class TensorRTImageTower:
    """A deserialized engine computing un-normalised image features of a batch on the GPU.

    Args:
        engine_path: the engine file; its sidecar must match ``spec`` (else TensorRTError).
        spec: what the caller expects (GPU, TensorRT version, shapes, weights).
        device: the torch CUDA device the engine runs on.
    """

    def __init__(self, engine_path: Path, spec: EngineSpec, device: Any = "cuda"):
        import torch

        trt = import_tensorrt()
        stored = read_sidecar(engine_path)
        if stored is None:
            raise TensorRTError(f"{engine_path}: no metadata file {sidecar_path(engine_path).name}; "
                                f"build engines with `person-search export --to engine`")
        diff = spec.mismatch(stored)
        if diff:
            raise TensorRTError(f"{engine_path} was built for another setup ({diff}); rebuild it here")
        self.spec = spec
        self.device = torch.device(device)
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise TensorRTError(f"TensorRT cannot deserialize {engine_path} (another TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        h, w = spec.image_height, spec.image_width
        in_dtype = getattr(torch, _TORCH_DTYPES[self.engine.get_tensor_dtype(INPUT_NAME).name])
        out_dtype = getattr(torch, _TORCH_DTYPES[self.engine.get_tensor_dtype(OUTPUT_NAME).name])
        self._input = torch.empty((spec.max_batch, 3, h, w), dtype=in_dtype, device=self.device)
        self._output = torch.empty((spec.max_batch, spec.dim), dtype=out_dtype, device=self.device)
        self.context.set_tensor_address(INPUT_NAME, self._input.data_ptr())
        self.context.set_tensor_address(OUTPUT_NAME, self._output.data_ptr())
        self.run(np.zeros((spec.opt_batch, 3, h, w), dtype=np.float32))  # warm-up

    @property
    def device_memory_bytes(self) -> int:
        """Return the engine's activation memory on the GPU (beside its weights and our buffers)."""
        for name in ("device_memory_size_v2", "device_memory_size"):
            if hasattr(self.engine, name):
                return int(getattr(self.engine, name))
        return 0

    def run_torch(self, batch) -> "Any":
        """Run a (N, 3, H, W) tensor of any N, device and float dtype; return a float32 (N, D) CUDA tensor."""
        import torch

        outs = []
        with torch.cuda.device(self.device):
            stream = torch.cuda.current_stream(self.device)
            for i in range(0, batch.shape[0], self.spec.max_batch):
                chunk = batch[i:i + self.spec.max_batch]
                n = chunk.shape[0]
                self._input[:n].copy_(chunk, non_blocking=True)  # casts to the engine's input dtype
                self.context.set_input_shape(INPUT_NAME, (n, *self._input.shape[1:]))
                if not self.context.execute_async_v3(stream.cuda_stream):
                    raise TensorRTError("TensorRT execution failed")
                # a copy: the next chunk overwrites the shared output buffer
                outs.append(self._output[:n].to(torch.float32, copy=True))
            if not outs:
                return self._output[:0].float()
            return outs[0] if len(outs) == 1 else torch.cat(outs)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run a float32 (N, 3, H, W) numpy batch; return float32 (N, D) features (not normalised)."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        return self.run_torch(x).cpu().numpy()


BUILD_MINUTES_ORIN = "5-15"  # an estimate for ViT-B/16 on a Jetson AGX Orin, not measured here


def engine_spec(tower, facts, *, device: Any, precision: str, profile: Tuple[int, int, int]) -> EngineSpec:
    """Return the spec of an engine for this tower on this GPU and TensorRT (raises TensorRTError)."""
    from person_search.core.models.weights import module_fingerprint

    trt = import_tensorrt()
    gpu_name, capability = current_gpu(device)
    h, w = facts.image_size
    return EngineSpec(model_id=facts.model_id, arch=facts.arch, weights_fingerprint=module_fingerprint(tower),
                      attention=facts.attention, image_height=int(h), image_width=int(w), dim=int(facts.dim),
                      min_batch=profile[0], opt_batch=profile[1], max_batch=profile[2], precision=precision,
                      tensorrt_version=str(trt.__version__), gpu_name=gpu_name, compute_capability=capability)


def export_and_build(tower, facts, spec: EngineSpec, engine_path: Path, *, workspace_mb: int = 2048) -> Path:
    """Export ``tower`` to ONNX beside ``engine_path`` and build the engine from it (the ONNX is removed).

    The ONNX is FP32 for a weakly typed build (TensorRT <= 10: the FP16 flag picks the
    kernels) and FP16 where TensorRT is strongly typed (11+: the types in the file are used).
    The timing cache lives in the engine's folder and is shared by all builds there.
    """
    from person_search.core.backends.export import export_image_tower, metadata_for

    trt = import_tensorrt()
    half = spec.precision == "fp16" and strongly_typed(trt)
    engine_path = Path(engine_path)
    onnx_path = engine_path.with_suffix(".onnx")
    export_image_tower(tower, onnx_path, facts.image_size, metadata_for(facts, False, spec.weights_fingerprint),
                       half=half)
    try:
        return build_engine(onnx_path, engine_path, spec, timing_cache=engine_path.parent / "timing.cache",
                            workspace_mb=workspace_mb)
    finally:
        onnx_path.unlink(missing_ok=True)


class TensorRTBackend(ImageBackend):
    """TensorRT engine (FP16 by default) on a CUDA GPU, built once per spec and cached."""

    name = "tensorrt"
    devices = ("cuda",)

    def __init__(self, tower, facts, ctx):
        super().__init__(tower, facts, ctx)
        import torch

        precision = "fp16" if ctx.dtype == torch.float16 else "fp32"
        try:
            spec = engine_spec(tower, facts, device=ctx.device, precision=precision, profile=ctx.batch_profile)
            folder = Path(ctx.cache_dir) / "tensorrt"
            path = cached_engine(folder, spec)
            if path is None:
                path = folder / spec.filename()
                logger.warning("building the TensorRT engine for %s at %dx%d %s, batch %d-%d on %s (takes ~%s min "
                               "on an Orin, once), cached at %s", facts.arch, spec.image_height, spec.image_width,
                               precision, spec.min_batch, spec.max_batch, spec.gpu_name, BUILD_MINUTES_ORIN, path)
                export_and_build(tower, facts, spec, path, workspace_mb=ctx.workspace_mb)
            else:
                logger.info("TensorRT engine loaded from cache %s", path)
            self.path = path
            self.tower = TensorRTImageTower(path, spec, ctx.device)
        except TensorRTError as exc:
            raise ConfigError(str(exc)) from None

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.tower.run(batch)

    def describe(self):
        spec = self.tower.spec
        return {**super().describe(), "precision": spec.precision, "file": str(self.path),
                "batch_profile": f"{spec.min_batch}/{spec.opt_batch}/{spec.max_batch}",
                "tensorrt": spec.tensorrt_version, "gpu": spec.gpu_name}
