"""Typed configuration of every stage: the one source of truth for each parameter.

The ROS nodes declare these fields as parameters (``section.field``, nested sections as
``section.sub.field``) with the description and range given to :func:`param`; the YAML
files under config/ set them; the CLI reads the same YAML.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Tuple

import yaml

from person_search.core.attention.registry import KERNEL_SETTINGS, KERNELS, settings_classes
from person_search.core.backends.registry import BACKENDS
from person_search.core.errors import ConfigError  # noqa: F401 - re-exported: the config's error
from person_search.core.fields import param  # how every section declares a field (web/config.py imports it from here)


@dataclass
class VideoConfig:
    """Where frames come from."""

    source: str = param("", 'file path, V4L2 index ("0") or /dev/videoN, rtsp:// or http:// URL, or an image folder')
    source_id: str = param("camera", "camera name; becomes the frame_id of every message")
    loop: bool = param(False, "restart a file source at its end")
    fps: float = param(0.0, "files: keep <= this many frames per video s (0 = all); folders: their rate (0: 30); "
                            "live: max", range=(0.0, 240.0))
    realtime: bool = param(True, "files: play like a camera (the video's rate on the wall clock, late frames "
                                 "dropped, stamped at capture); False = as fast as read, stamped on the video's clock")
    max_width: int = param(0, "downscale wider frames to this width at the source (keeps aspect; 0 = as decoded)",
                           range=(0, 16384))
    read_timeout_s: float = param(5.0, "a read that takes longer is treated as a lost stream", range=(0.01, 3600.0))
    reconnect_initial_s: float = param(0.5, "first backoff after a lost stream", range=(0.001, 3600.0))
    reconnect_max_s: float = param(10.0, "backoff cap", range=(0.001, 3600.0))
    max_reconnects: int = param(-1, "-1 = forever", range=(-1, 1_000_000))

    def validate(self) -> None:
        _check_ranges(self)
        _check(self.fps >= 0, "video.fps must be >= 0")
        _check(self.max_width == 0 or self.max_width >= 16, "video.max_width must be 0 or >= 16")
        _check(self.read_timeout_s > 0, "video.read_timeout_s must be > 0")
        _check(self.reconnect_initial_s > 0, "video.reconnect_initial_s must be > 0")
        _check(self.reconnect_max_s >= self.reconnect_initial_s, "video.reconnect_max_s must be >= reconnect_initial_s")
        _check(bool(self.source_id), "video.source_id must not be empty")


@dataclass
class DetectorConfig:
    """Person detection, tracking and crop policy."""

    backend: str = param("auto", '"yolo", "hog" or "auto" (YOLO if its weights load, else HOG)')
    model: str = param("yolo11n.pt", "ultralytics .pt / .onnx / .engine or *_openvino_model folder, path or name")
    device: str = param("cpu", '"cpu", "cuda", "cuda:0", "0"')
    imgsz: int = param(640, "inference size of the YOLO input", range=(32, 4096))
    conf: float = param(0.25, "minimum detector confidence", range=(0.0, 1.0), runtime=True)
    iou: float = param(0.5, "NMS IoU threshold", range=(0.01, 1.0), runtime=True)
    tracker: str = param("bytetrack", '"bytetrack" or "botsort"')
    track_buffer: int = param(30, "frames a lost track survives", range=(1, 10_000))
    min_box_w: int = param(16, "boxes narrower than this (px) are dropped", range=(1, 4096), runtime=True)
    min_box_h: int = param(32, "boxes shorter than this (px) are dropped", range=(1, 4096), runtime=True)
    crop_pad: float = param(0.05, "padding added around each box, as a fraction of its size", range=(0.0, 1.0),
                            runtime=True)
    hog_scale: float = param(1.05, "HOG pyramid scale step", range=(1.01, 2.0), runtime=True)
    hog_max_width: int = param(640, "frames are downscaled to this width for HOG", range=(64, 4096), runtime=True)
    threads: int = param(0, "OpenVINO model folders: inference threads; > 0 runs the folder through the OpenVINO "
                            "runtime directly (0 = through ultralytics, the runtime's default threads)",
                         range=(0, 256))

    def validate(self) -> None:
        _check_ranges(self)
        _check(
            self.backend in ("auto", "yolo", "hog"), f"detector.backend must be auto, yolo or hog, not {self.backend!r}"
        )
        _check(
            self.tracker in ("bytetrack", "botsort"),
            f"detector.tracker must be bytetrack or botsort, not {self.tracker!r}",
        )
        _check(0.0 <= self.conf <= 1.0, "detector.conf must be in [0, 1]")
        _check(0.0 < self.iou <= 1.0, "detector.iou must be in (0, 1]")
        _check(self.imgsz >= 32 and self.imgsz % 32 == 0, "detector.imgsz must be a multiple of 32, >= 32")
        _check(self.min_box_w >= 1 and self.min_box_h >= 1, "detector.min_box_w/h must be >= 1")
        _check(0.0 <= self.crop_pad <= 1.0, "detector.crop_pad must be in [0, 1]")
        _check(self.track_buffer >= 1, "detector.track_buffer must be >= 1")


def _validate_attention(self) -> None:
    """Check the ranges, the kind and the chosen kernel's own settings."""
    _check_ranges(self)
    KERNELS.check(self.kind)
    settings = KERNEL_SETTINGS.get(self.kind)
    if settings is not None:
        settings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(settings)}).check()


# The attention kernel of both towers and its settings: ``kind`` plus every kernel's settings,
# each declared with its kernel (core/attention/settings.py) and gathered by the kernel registry.
AttentionConfig = dataclasses.make_dataclass(
    "AttentionConfig",
    [("kind", str, param("sdpa", '"sdpa" (fused), "eager" (explicit softmax), "window", "sparse", "lam" or "prune" '
                                 "(image tower of a ViT; text keeps sdpa except lam); see core/attention"))]
    + [(f.name, f.type, field(default=f.default, metadata=f.metadata))
       for cls in settings_classes() for f in dataclasses.fields(cls)],
    namespace={"validate": _validate_attention, "__module__": __name__,
               "__doc__": "The attention kernel of both towers (``encoder.attention.kind``) and every kernel's "
                          "settings (declared in ``attention/settings.py``)."})


@dataclass
class EncoderConfig:
    """The CLIP model: image tower in the embedder, text tower in the query node."""

    arch: str = param("ViT-B-16", "open_clip architecture name")
    weights: str = param("", 'local checkpoint path, a training run folder (its best.safetensors, served '
                             'with the arch and attention in its model.json), an open_clip pretrained tag '
                             '(e.g. "openai"), or "" = random init')
    image_height: int = param(224, "input height; person crops may use a tall shape such as 384x128",
                              range=(32, 2048))
    image_width: int = param(224, "", range=(32, 2048))
    device: str = param("cpu", "")
    precision: str = param("fp32", '"fp32" or "fp16" (GPU)')
    batch_size: int = param(8, "crops per forward pass", range=(1, 1024))
    threads: int = param(0, "torch CPU threads; 0 = leave torch's default", range=(0, 256))
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    backend: str = param("torch", 'image tower runtime: "torch" (CPU/GPU), "torch-int8", "onnx", "onnx-int8", '
                                  '"openvino" (CPU only), "tensorrt" (CUDA GPU)')
    trt_min_batch: int = param(1, "tensorrt: smallest batch of the engine's optimisation profile",
                               range=(1, 1024))
    trt_opt_batch: int = param(8, "tensorrt: the batch the engine is tuned for", range=(1, 1024))
    trt_max_batch: int = param(32, "tensorrt: largest batch of one engine call (larger batches are split)",
                               range=(1, 1024))
    trt_workspace_mb: int = param(2048, "tensorrt: builder workspace memory (MB) while building the engine",
                                  range=(64, 65536))
    crop_budget: str = param("auto", "crops/s embedded overall: auto (0.8 x measured encoder throughput), all, "
                                     "or a number")
    max_crops_per_track_s: float = param(0.0, "refreshes of a known track at most this often per second; "
                                              "0 = no cap", range=(0.0, 1000.0), runtime=True)

    def __post_init__(self) -> None:
        if isinstance(self.attention, str):  # EncoderConfig(attention="eager"): the kind alone
            self.attention = AttentionConfig(kind=self.attention)

    def validate(self) -> None:
        _check_ranges(self)
        _check(bool(self.arch), "encoder.arch must not be empty")
        _check(self.image_height >= 32 and self.image_width >= 32, "encoder.image_height/width must be >= 32")
        _check(self.precision in ("fp32", "fp16"), "encoder.precision must be fp32 or fp16")
        _check(self.batch_size >= 1, "encoder.batch_size must be >= 1")
        self.attention.validate()
        BACKENDS.check(self.backend)
        _check(self.trt_min_batch <= self.trt_opt_batch <= self.trt_max_batch,
               f"encoder.trt_min_batch <= trt_opt_batch <= trt_max_batch must hold, got "
               f"{self.trt_min_batch}/{self.trt_opt_batch}/{self.trt_max_batch}")
        _check(self.max_crops_per_track_s >= 0, "encoder.max_crops_per_track_s must be >= 0")
        from person_search.core.budget import parse_crop_budget
        try:
            parse_crop_budget(self.crop_budget)
        except ValueError as e:
            raise ConfigError(str(e)) from None


@dataclass
class GalleryConfig:
    """The rolling gallery of everyone seen."""

    CHOICES: ClassVar[Dict[str, Tuple[str, ...]]] = {
        "backend": ("faiss", "milvus"),
        "storage": ("fp32", "fp16"),
        "index": ("flat", "ivf"),
    }

    window_s: float = param(600.0, "embeddings older than this are evicted", range=(0.001, 1e9))
    capacity: int = param(100_000, "most embeddings kept; the oldest go first", range=(1, 1_000_000_000))
    max_per_track: int = param(8, "most embeddings kept per track (diverse ones)", range=(1, 10_000))
    diversity: float = param(0.95, "a new embedding this similar (cosine) to a kept one of its track replaces "
                                   "nothing", range=(0.001, 1.0))
    thumb_budget_bytes: int = param(64 * 1024 * 1024, "JPEG crops + frame thumbnails, all tracks", range=(0, 1 << 40))
    snapshot_path: str = param("", 'where the index node saves / reloads the gallery; "" = no snapshot')
    snapshot_interval_s: float = param(10.0, "seconds between snapshots", range=(0.01, 1e6))
    backend: str = param("faiss", '"faiss" (embedded, this process) or "milvus" (a Milvus Lite file or server, '
                                  'shared)')
    storage: str = param("fp32", 'faiss: "fp32" or "fp16" vectors (half the memory, scores within ~1e-3)')
    index: str = param("flat", 'faiss: "flat" (exact) or "ivf" (approximate, faster on large galleries)')
    ivf_nprobe: int = param(0, "faiss ivf: inverted lists scanned per query; 0 = a third of them "
                               "(recall@10 >= 0.99)", range=(0, 4096))
    milvus_uri: str = param("", "milvus: a local .db path (Milvus Lite) or http://host:19530; token from "
                                "MILVUS_TOKEN")

    def validate(self) -> None:
        _check_ranges(self)
        _check(self.window_s > 0, "gallery.window_s must be > 0")
        _check(self.capacity >= 1, "gallery.capacity must be >= 1")
        _check(self.max_per_track >= 1, "gallery.max_per_track must be >= 1")
        _check(0.0 < self.diversity <= 1.0, "gallery.diversity must be in (0, 1]")
        _check(self.thumb_budget_bytes >= 0, "gallery.thumb_budget_bytes must be >= 0")
        _check(self.snapshot_interval_s > 0, "gallery.snapshot_interval_s must be > 0")
        for name, choices in self.CHOICES.items():
            _check(getattr(self, name) in choices,
                   f"gallery.{name} must be one of {', '.join(choices)}, not {getattr(self, name)!r}")
        if self.backend == "milvus":
            _check(bool(self.milvus_uri), "gallery.milvus_uri must be set with gallery.backend=milvus "
                   "(a local .db path or http://host:19530)")
            _check(not self.snapshot_path, "gallery.snapshot_path must be empty with gallery.backend=milvus "
                   "(Milvus keeps the gallery itself)")


@dataclass
class QueryConfig:
    """Text queries."""

    templates: List[str] = param([], "prompt templates, embeddings averaged; [] = the model's own "
                                     "(a lab run's model.json: captions as written; CLIP: 'a photo of {}.')")
    max_chars: int = param(1000, "longer descriptions are refused", range=(1, 100_000), runtime=True)
    default_top_k: int = param(10, "matches returned when a request asks for top_k 0", range=(1, 10_000), runtime=True)
    max_top_k: int = param(100, "largest top_k a request may ask for", range=(1, 10_000), runtime=True)

    def validate(self) -> None:
        _check_ranges(self)
        _check(isinstance(self.templates, list) and all(isinstance(t, str) and "{}" in t for t in self.templates),
               "query.templates must each contain {}")
        _check(self.max_chars >= 1, "query.max_chars must be >= 1")
        _check(1 <= self.default_top_k <= self.max_top_k, "query.default_top_k must be in [1, max_top_k]")


@dataclass
class ReidConfig:
    """Person re-identification (OSNet): crops -> 512-d appearance features; tracks linked into persons."""

    CHOICES: ClassVar[Dict[str, Tuple[str, ...]]] = {"backend": ("onnx", "torch", "openvino", "tensorrt")}

    enabled: bool = param(True, "run re-id on the admitted crops and link tracks into persons; without the "
                                "weights the graph runs on without person identities")
    model: str = param("osnet_x0_25_msmt17/osnet_x0_25_msmt17.onnx",
                       "OSNet .onnx or Torchreid .pth (path, or a name under the model folders)")
    arch: str = param("osnet_x0_25", "OSNet width of a .pth: osnet_x0_25, osnet_x0_5, osnet_x0_75, osnet_x1_0")
    backend: str = param("onnx", '"onnx" (the .onnx as is, or exported from a .pth), "torch" (needs the .pth), '
                                 '"openvino" (CPU), "tensorrt" (CUDA GPU, from the .pth)')
    device: str = param("cpu", '"cpu" or "cuda"')
    batch_size: int = param(16, "crops per forward pass", range=(1, 1024))
    threads: int = param(1, "inference threads; 0 = the runtime's default", range=(0, 256))
    link_threshold: float = param(0.80, "a new track joins an earlier person when the cosine of their mean re-id "
                                        "features is at least this", range=(-1.0, 1.0), runtime=True)
    link_margin: float = param(0.05, "...and beats the second-best person by this much (ambiguity guard)",
                               range=(0.0, 2.0), runtime=True)
    min_link_crops: int = param(6, "crops a track needs before it may join a person (no chaining on one glimpse)",
                                range=(1, 1000), runtime=True)
    max_track_features: int = param(16, "re-id features kept per track (its mean is the track's appearance)",
                                    range=(1, 10_000))

    def validate(self) -> None:
        _check_ranges(self)
        _check(self.backend in self.CHOICES["backend"],
               f"reid.backend must be one of {', '.join(self.CHOICES['backend'])}, not {self.backend!r}")
        from person_search.core.reid.osnet_names import ARCHS
        _check(self.arch in ARCHS, f"reid.arch must be one of {', '.join(ARCHS)}, not {self.arch!r}")


@dataclass
class PipelineConfig:
    """The whole pipeline: one section per stage."""

    video: VideoConfig = field(default_factory=VideoConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    gallery: GalleryConfig = field(default_factory=GalleryConfig)
    query: QueryConfig = field(default_factory=QueryConfig)
    reid: ReidConfig = field(default_factory=ReidConfig)

    def validate(self) -> "PipelineConfig":
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate()
        return self


SECTIONS = {f.name: f.type for f in dataclasses.fields(PipelineConfig)}

SECTION_OF = {
    "VideoConfig": "video",
    "DetectorConfig": "detector",
    "EncoderConfig": "encoder",
    "GalleryConfig": "gallery",
    "QueryConfig": "query",
    "ReidConfig": "reid",
    "AttentionConfig": "encoder.attention",
}


def _check_ranges(cfg) -> None:
    """Check every field that :func:`param` gave a range (inclusive bounds; also the ROS descriptor ranges)."""
    section = SECTION_OF.get(type(cfg).__name__, type(cfg).__name__)
    for f in dataclasses.fields(cfg):
        if not f.metadata.get("range"):
            continue
        name, (lo, hi) = f.name, f.metadata["range"]
        v = getattr(cfg, name)
        if not (lo <= v <= hi):
            raise ConfigError(f"{section}.{name} must be in [{lo:g}, {hi:g}], got {v!r}")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def section_from_dict(cls, data: Optional[Dict[str, Any]], where: str = ""):
    """Build one config dataclass from a dict, refusing unknown keys and wrong types.

    A nested section (``encoder.attention``) is a mapping, dotted keys (``"attention.kind"``,
    as ROS parameters and ``--set`` give them), or a plain string that sets its first field
    (``attention: eager`` is ``attention: {kind: eager}``).
    """
    data = dict(data or {})
    for key in [k for k in data if "." in k]:  # "attention.kind": v -> {"attention": {"kind": v}}
        head, rest = key.split(".", 1)
        if not dataclasses.is_dataclass(getattr(cls(), head, None)):
            continue  # reported as unknown below
        sub = data.get(head)
        data[head] = dict(sub) if isinstance(sub, dict) else _shorthand(cls, head, sub)
        data[head][rest] = data.pop(key)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown {where or cls.__name__} key(s): {', '.join(unknown)}")
    obj = cls()
    for name, value in data.items():
        default = getattr(obj, name)
        path = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(default):
            value = _shorthand(cls, name, value) if not isinstance(value, dict) else value
            setattr(obj, name, section_from_dict(type(default), value, path))
        else:
            setattr(obj, name, _coerce(value, default, path))
    return obj


def _shorthand(cls, name: str, value: Any) -> Dict[str, Any]:
    """Return the mapping a plain value stands for in nested section ``name``: its first field."""
    if value is None:
        return {}
    first = dataclasses.fields(type(getattr(cls(), name)))[0].name
    return {first: value}


def _coerce(value: Any, default: Any, where: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, not {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, not {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, not {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where} must be a string, not {value!r}")
        return str(value)
    if isinstance(default, list):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings")
        return list(value)
    return value


def config_from_dict(data: Optional[Dict[str, Any]]) -> PipelineConfig:
    """Build and validate a PipelineConfig from a dict of sections."""
    data = dict(data or {})
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown config section(s): {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    cfg = PipelineConfig(**{name: section_from_dict(_cls(name), data.get(name), name) for name in SECTIONS})
    return cfg.validate()


def _cls(name: str):
    return {f.name: f.default_factory for f in dataclasses.fields(PipelineConfig)}[name]


def load_config(path: Optional[str | Path] = None, overrides: Optional[Dict[str, Any]] = None) -> PipelineConfig:
    """Load a pipeline YAML (sections video/detector/encoder/gallery/query), apply overrides.

    Args:
        path: YAML file; None gives the defaults.
        overrides: {"section": {"key": value}} applied on top of the file.

    Returns:
        The validated config.
    """
    data: Dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:  # one line naming the file and the place
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            raise ConfigError(f"{p}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: top level must be a mapping of sections")
        data = unwrap_ros_params(loaded)
    for section, values in (overrides or {}).items():
        data.setdefault(section, {}).update(values)
    return config_from_dict(data)


def unwrap_ros_params(loaded: Dict[str, Any]) -> Dict[str, Any]:
    """Return the pipeline sections of a YAML mapping.

    The files under config/ are ROS 2 parameter files (``/**: ros__parameters: {...}``) so
    that launch files can pass them to nodes unchanged; the sections inside are the same
    as the plain form. The ``ros`` section holds node-only settings (QoS, rates) and is
    not part of the core config.
    """
    params: Dict[str, Any] = {}
    wrapped = [v for v in loaded.values() if isinstance(v, dict) and "ros__parameters" in v]
    if wrapped:
        for block in wrapped:  # wildcard first, then node-specific blocks, in file order
            for k, v in (block["ros__parameters"] or {}).items():
                params.setdefault(k, {}).update(v or {})
    else:
        params = {k: dict(v or {}) for k, v in loaded.items()}
    params.pop("ros", None)
    return params


def runtime_fields(cls: type) -> Tuple[str, ...]:
    """Return the names of a section's fields that a running node takes up (``param(runtime=True)``)."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("runtime"))
