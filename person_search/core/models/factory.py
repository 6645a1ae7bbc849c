"""``build_clip``: the one builder of CLIP models, for the runtime encoder and for training."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import torch
from torch import nn

from person_search.core.attention.patch import apply_attention
from person_search.core.attention.registry import KERNELS
from person_search.core.config import EncoderConfig
from person_search.core.errors import ConfigError
from person_search.core.models.run import CLIP_TEMPLATES
from person_search.core.models.pos_embed import patch_grid, set_image_size
from person_search.core.models.archs import model_config, open_clip_registered
from person_search.core.models.weights import (RANDOM_SEED, check_trained, load_checkpoint, load_kernel_state,
                                               preprocess_of, resolve_weights)

logger = logging.getLogger(__name__)

TOWERS = ("image", "text")


@dataclass(frozen=True)
class ModelFacts:
    """What the rest of the package needs to know about a built model."""

    arch: str
    model_id: str  # "<arch>@<weights id>[+<attention function id>]": the embedding space
    weights_id: str  # random-seed0 | pretrained tag | sha256-<12 hex>
    pretrained: bool  # real weights were loaded
    dim: int  # embedding dimension
    image_size: Tuple[int, int]  # (H, W) of the image tower input
    mean: Tuple[float, float, float]  # RGB normalisation, 0..1 scale
    std: Tuple[float, float, float]
    attention: str  # the attention kernel in use
    attention_modules: int  # how many attention modules got it
    text_templates: Tuple[str, ...] = CLIP_TEMPLATES  # how a description is put to these weights


@dataclass
class BuiltModel:
    """An open_clip model and its facts.

    ``model`` is the open_clip CLIP module (``encode_image`` / ``encode_text`` / ``logit_scale``);
    with ``towers=("image",)`` it is the image tower alone, with ``("text",)`` its
    ``visual`` is an ``nn.Identity``.
    """

    model: nn.Module
    facts: ModelFacts
    towers: Tuple[str, ...]
    device: torch.device
    dtype: torch.dtype
    tokenizer: Optional[Any] = None

    @property
    def image_tower(self) -> Optional[nn.Module]:
        """Return the image tower, or None without one."""
        if "image" not in self.towers:
            return None
        return self.model if self.towers == ("image",) else self.model.visual

    @property
    def text_model(self) -> Optional[nn.Module]:
        """Return the module with ``encode_text``, or None without a text tower."""
        return self.model if "text" in self.towers else None


def parse_device(device: str) -> torch.device:
    """Return the torch device of ``encoder.device`` ("cpu", "cuda", "cuda:1", "0")."""
    d = (device or "cpu").strip()
    if d.isdigit():
        d = f"cuda:{d}"
    try:
        return torch.device(d)
    except RuntimeError as e:
        raise ConfigError(f"encoder.device {device!r} is not a torch device") from e


def model_id_for(arch: str, weights_id: str, attention: Any) -> str:
    """Return the model id: ``<arch>@<weights id>``, plus the attention variant if it changes the function."""
    kernel = KERNELS.get(attention.kind)
    suffix = f"+{kernel.function_id(attention)}" if kernel.changes_function else ""
    return f"{arch}@{weights_id}{suffix}"


def _embed_dim(model: nn.Module) -> int:
    tp = getattr(model, "text_projection", None)
    if isinstance(tp, torch.Tensor):
        return int(tp.shape[1])
    if isinstance(tp, nn.Linear):
        return int(tp.out_features)
    visual = model.visual
    if hasattr(visual, "output_dim"):
        return int(visual.output_dim)
    size = getattr(visual, "image_size", (224, 224))
    with torch.no_grad():
        return int(visual(torch.zeros(1, 3, *(size if isinstance(size, tuple) else (size, size)))).shape[-1])


def _check_image_forward(visual: nn.Module, arch: str, size: Tuple[int, int], dim: int,
                         device: torch.device, dtype: torch.dtype) -> None:
    was_training = visual.training
    visual.eval()
    try:
        with torch.no_grad():
            out = visual(torch.zeros(1, 3, *size, device=device, dtype=dtype))
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"{arch}: the image tower does not accept {size[0]}x{size[1]} inputs "
                          f"({type(e).__name__}: {str(e)[:200]}); use its native size") from e
    finally:
        visual.train(was_training)
    out = out[0] if isinstance(out, (tuple, list)) else out
    if out.shape[-1] != dim:
        raise ConfigError(f"{arch}: image embedding dim {out.shape[-1]} != text dim {dim}")


def _reparameterize(visual: nn.Module, arch: str) -> None:
    """Fold MobileOne / FastViT train-time branches (exact, faster); serving only."""
    if hasattr(visual, "trunk"):
        try:
            from timm.utils.model import reparameterize_model
            visual.trunk = reparameterize_model(visual.trunk)
        except Exception as e:  # noqa: BLE001
            logger.debug("no reparameterisation for %s: %s", arch, e)


class _DropRandomInitWarning(logging.Filter):
    """Drop open_clip's "No pretrained weights loaded ... initialized randomly" (we never pass it weights)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded")


@contextlib.contextmanager
def _no_random_init_warning():
    """Silence open_clip's random-init warning while it builds the bare architecture.

    ``build_clip`` always asks open_clip for an untrained model and loads the checkpoint itself;
    open_clip's warning (logged on the root logger) would claim a trained checkpoint is random.
    """
    flt = _DropRandomInitWarning()
    root = logging.getLogger()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def build_clip(cfg: EncoderConfig, *, towers: Sequence[str] = TOWERS, for_training: bool = False,
               init_seed: Optional[int] = None) -> BuiltModel:
    """Build the CLIP model of ``cfg``: weights, input size, attention kernel, device.

    The model is created at its native size with a fixed seed (the same random model in
    every process, the caller's RNG untouched), the weights loaded, the ViT positional
    embedding resized to ``cfg.image_height x image_width``, every attention module given
    the ``cfg.attention`` kernel, then moved to ``cfg.device``.

    Args:
        cfg: the encoder config (arch, weights, image size, attention, device, precision).
        towers: ("image",), ("text",) or both; the other tower is dropped to save memory.
        for_training: True gives a trainable module (train mode, gradients on, fp32, no
            re-parameterisation); False a frozen eval-mode module in ``cfg.precision``.
        init_seed: the seed of a random init (``cfg.weights`` empty) instead of the fixed one;
            the weights id becomes ``random-seed<init_seed>``. Ignored when weights are loaded.

    Returns:
        The module and its :class:`ModelFacts`.

    Raises:
        ConfigError: unknown arch, bad towers / device / precision / image size.
        WeightsError: weights missing or not fitting the architecture.
    """
    cfg.validate()
    towers = tuple(towers)
    if not towers or any(t not in TOWERS for t in towers):
        raise ConfigError(f"towers must be a non-empty subset of {TOWERS}, not {towers!r}")
    towers = tuple(t for t in TOWERS if t in towers)
    device = parse_device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"encoder.device is {cfg.device!r} but CUDA is not available")
    fp16 = cfg.precision == "fp16" and not for_training
    if fp16 and device.type != "cuda":
        raise ConfigError("encoder.precision fp16 needs a CUDA device; on CPU use fp32 "
                          "(or backend torch-int8 / onnx-int8 for speed)")
    dtype = torch.float16 if fp16 else torch.float32
    size = (int(cfg.image_height), int(cfg.image_width))
    model_config(cfg.arch)  # unknown arch -> ConfigError
    open_clip = open_clip_registered()
    resolved = resolve_weights(cfg.arch, cfg.weights)
    if resolved.trained is not None:  # a run folder or a checkpoint with its sidecar: serve it as it was trained
        check_trained(cfg, resolved.trained)
    mean, std = preprocess_of(cfg.arch, resolved)

    seed = RANDOM_SEED if init_seed is None or resolved.path is not None else int(init_seed)
    if resolved.path is None and resolved.weights_id.startswith("random-seed"):
        resolved = resolved._replace(weights_id=f"random-seed{seed}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with _no_random_init_warning():  # we load the weights ourselves, below, or say they are random
            model = open_clip.create_model(cfg.arch, pretrained=None, device="cpu", precision="fp32")
    visual = getattr(model, "visual", None)
    kernel_sd = {}
    if resolved.path is not None:
        grid = patch_grid(visual, size) if getattr(visual, "patch_size", None) is not None else None
        kernel_sd = load_checkpoint(model, resolved.path, grid)
    dim = _embed_dim(model)
    if "image" in towers:
        set_image_size(visual, cfg.arch, size)
        if not for_training:
            _reparameterize(visual, cfg.arch)
    else:
        model.visual = nn.Identity()
    count = apply_attention(model, cfg.attention)
    load_kernel_state(model, {k: v for k, v in kernel_sd.items()
                              if "image" in towers or not k.startswith("visual.")}, resolved.path, cfg.attention.kind)
    if towers == ("image",):
        model = model.visual
    model = model.to(device=device, dtype=dtype)
    for prm in model.parameters():
        prm.requires_grad_(for_training)
    model.train(for_training)
    if "image" in towers:
        tower = model if towers == ("image",) else model.visual
        _check_image_forward(tower, cfg.arch, size, dim, device, dtype)
    facts = ModelFacts(arch=cfg.arch, model_id=model_id_for(cfg.arch, resolved.weights_id, cfg.attention),
                       weights_id=resolved.weights_id, pretrained=resolved.path is not None, dim=dim,
                       image_size=size, mean=mean, std=std, attention=cfg.attention.kind,
                       attention_modules=count,
                       text_templates=resolved.trained.text_templates if resolved.trained else CLIP_TEMPLATES)
    tokenizer = open_clip.get_tokenizer(cfg.arch) if "text" in towers else None
    logger.debug("%s: %d attention modules set to %s", cfg.arch, count, cfg.attention.kind)
    return BuiltModel(model=model, facts=facts, towers=towers, device=device, dtype=dtype, tokenizer=tokenizer)
