"""CLIP image / text encoders (open_clip) for person crops and text queries.

``ClipEncoder(cfg)`` builds one open_clip model from an ``EncoderConfig`` and turns BGR
uint8 person crops into L2-normalised image embeddings and text descriptions into
L2-normalised text embeddings in the same space.

Key behaviours (see the docstrings below for details):

* Weights: ``cfg.weights`` = "" gives a random model with a fixed seed (identical in every
  process), a path loads a local open_clip checkpoint, a tag ("openai", ...) uses open_clip's
  pretrained registry but only from local caches when offline. Failures raise
  :class:`WeightsError` with one line saying what is missing and where to put it.
* ``model_id`` = ``"<arch>@<weights id>"`` where the weights id is ``random-seed0``, the
  pretrained tag, or ``sha256-<first 12 hex>`` of the checkpoint file. It identifies the
  embedding space: embeddings of different model_ids must never be compared. It does not
  depend on the image size, the backend or the precision (these change the numbers only
  slightly: same space).
* Non-square input (tall person crops such as 384x128): the model is always built and loaded
  at its native size, then the ViT positional embedding is interpolated (bicubic on the 2-D
  grid, class token kept) to the new grid. timm conv towers (MobileCLIP-S*) take any size.
* Preprocessing: numpy/cv2 only, *direct resize* ("squash") of each crop to (H, W) by
  default, so no pixels are wasted on padding; ``resize_mode="letterbox"`` keeps the aspect
  ratio and pads with the mean colour instead. Then BGR->RGB and the model's mean/std.
* Backends (image tower only; the text tower always runs in torch fp32/fp16):
  ``"torch"`` (eager PyTorch, attention "sdpa" or "eager"), ``"torch-int8"`` (dynamic int8
  quantisation of every Linear layer, CPU), ``"onnx"`` (ONNX Runtime fp32, CPU) and
  ``"onnx-int8"`` (ONNX Runtime with dynamically quantised int8 MatMuls, CPU; the fastest on
  CPUs with AVX512-VNNI/AVX-VNNI). The int8 backends trade a little accuracy (cosine with
  the fp32 embedding ~0.999+, see benchmarks/bench_embedder.py) for 2-5x speed.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from person_search.core.config import ENCODER_BACKENDS, ConfigError, EncoderConfig
from person_search.core.paths import MODELS_DIR, model_dirs, resolve_model_path
from person_search.core.paths import cache_dir as paths_cache_dir

logger = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).resolve().parent.parent / "model_configs"
RANDOM_SEED = 0
BACKENDS = ENCODER_BACKENDS
RESIZE_MODES = ("squash", "letterbox")
MODELS_README = "models/README.md"

_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class WeightsError(RuntimeError):
    """Model weights are missing, unreadable or cannot be fetched (offline)."""


# --------------------------------------------------------------------------------------
# open_clip import + registration of the shipped configs (PS-Tiny-ViT, TinyCLIP-*)
# --------------------------------------------------------------------------------------

def _import_open_clip():
    import open_clip  # heavy import; done lazily but once

    if MODEL_CONFIG_DIR.is_dir() and "PS-Tiny-ViT" not in open_clip.list_models():
        open_clip.add_model_config(MODEL_CONFIG_DIR)
    return open_clip


def register_model_configs() -> List[str]:
    """Register person_search/model_configs/*.json with open_clip; returns their names."""
    _import_open_clip()
    return sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json"))


try:  # register on import so that open_clip.create_model("PS-Tiny-ViT") works anywhere
    register_model_configs()
except ImportError:  # pragma: no cover - open_clip missing: ClipEncoder will fail clearly
    pass


# --------------------------------------------------------------------------------------
# Attention: checkpoint-compatible replacement of nn.MultiheadAttention
# --------------------------------------------------------------------------------------

class ClipAttention(nn.Module):
    """Self-attention with nn.MultiheadAttention's parameter names and two code paths.

    Parameters ``in_proj_weight`` (3D, D), ``in_proj_bias`` (3D,) and ``out_proj`` (Linear)
    are the ones of ``nn.MultiheadAttention``, so state dicts load unchanged.

    mode "sdpa": ``F.scaled_dot_product_attention`` (fused kernel); mode "eager": explicit
    ``softmax(Q K^T / sqrt(d) + mask) V``. :meth:`split_qkv_linear` moves the input projection
    into an ``nn.Linear`` (``self.qkv``) so that dynamic int8 quantisation covers it too.
    """

    def __init__(self, embed_dim: int, num_heads: int, mode: str = "sdpa", batch_first: bool = True):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.batch_first = batch_first
        self.mode = mode
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.qkv: Optional[nn.Module] = None

    @classmethod
    def from_mha(cls, mha: nn.MultiheadAttention, mode: str) -> "ClipAttention":
        """Wrap the parameters of an existing nn.MultiheadAttention (shared, not copied)."""
        with torch.random.fork_rng(devices=[]):  # the throw-away init must not touch the RNG
            att = cls(mha.embed_dim, mha.num_heads, mode=mode, batch_first=mha.batch_first)
        att.in_proj_weight = mha.in_proj_weight
        att.in_proj_bias = mha.in_proj_bias if mha.in_proj_bias is not None else nn.Parameter(
            torch.zeros(3 * mha.embed_dim, dtype=mha.in_proj_weight.dtype, device=mha.in_proj_weight.device))
        att.out_proj = mha.out_proj
        return att

    def split_qkv_linear(self) -> None:
        """Move in_proj_* into ``self.qkv = nn.Linear`` (for torch dynamic quantisation)."""
        with torch.random.fork_rng(devices=[]):
            lin = nn.Linear(self.embed_dim, 3 * self.embed_dim, device=self.in_proj_weight.device,
                            dtype=self.in_proj_weight.dtype)
        lin.weight = self.in_proj_weight
        lin.bias = self.in_proj_bias
        del self.in_proj_weight, self.in_proj_bias
        self.qkv = lin

    def forward(self, query, key=None, value=None, need_weights: bool = False, attn_mask=None, **_):
        if key is not None and key is not query:
            raise ValueError("ClipAttention supports self-attention only (key and value must be the query)")
        x = query if self.batch_first else query.transpose(0, 1)
        n, length, c = x.shape
        if self.qkv is not None:
            qkv = self.qkv(x)
        else:
            qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.reshape(n, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if attn_mask is not None and attn_mask.dtype == torch.bool:  # True = masked (MHA semantics)
            attn_mask = torch.zeros_like(attn_mask, dtype=q.dtype).masked_fill_(attn_mask, float("-inf"))
        if self.mode == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        else:
            attn = torch.matmul(q * (self.head_dim ** -0.5), k.transpose(-2, -1))
            if attn_mask is not None:
                attn = attn + attn_mask
            out = torch.matmul(attn.softmax(dim=-1), v)
        out = self.out_proj(out.transpose(1, 2).reshape(n, length, c))
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, None


def set_attention(model: nn.Module, mode: str) -> int:
    """Switch every attention of ``model`` to ``mode`` ("sdpa" or "eager"); returns the count.

    open_clip's default blocks (nn.MultiheadAttention) are replaced by :class:`ClipAttention`;
    open_clip's custom ``Attention`` and timm attentions have their fused flag set.
    """
    if mode not in ("sdpa", "eager"):
        raise ConfigError(f"attention must be sdpa or eager, not {mode!r}")
    count = 0
    for module in list(model.modules()):
        attn = getattr(module, "attn", None)
        if isinstance(attn, nn.MultiheadAttention) and not hasattr(module, "ln_1_kv") \
                and attn._qkv_same_embed_dim and attn.bias_k is None and not attn.add_zero_attn:
            module.attn = ClipAttention.from_mha(attn, mode)
            count += 1
        elif isinstance(attn, ClipAttention):
            attn.mode = mode
            count += 1
    for module in model.modules():
        if hasattr(module, "use_fsdpa") and not isinstance(module, ClipAttention):  # open_clip Attention
            module.use_fsdpa = mode == "sdpa"
            count += 1
        elif hasattr(module, "fused_attn") and isinstance(getattr(module, "fused_attn"), bool):  # timm
            module.fused_attn = mode == "sdpa"
            count += 1
    return count


# --------------------------------------------------------------------------------------
# Positional embedding resize (tall crops)
# --------------------------------------------------------------------------------------

def resize_pos_embed_2d(pos_embed: torch.Tensor, old_grid: Tuple[int, int], new_grid: Tuple[int, int],
                        extra_tokens: int = 1) -> torch.Tensor:
    """Interpolate a ViT positional embedding (T + gh*gw, D) from ``old_grid`` to ``new_grid``.

    Bicubic on the 2-D grid (antialiased when shrinking), the ``extra_tokens`` leading rows
    (class token) kept as they are. Equal grids return the input unchanged (same values).
    """
    old_grid, new_grid = tuple(old_grid), tuple(new_grid)
    if pos_embed.shape[0] != extra_tokens + old_grid[0] * old_grid[1]:
        raise ValueError(f"positional embedding has {pos_embed.shape[0]} rows, expected "
                         f"{extra_tokens} + {old_grid[0]}x{old_grid[1]}")
    if old_grid == new_grid:
        return pos_embed
    tok, grid = pos_embed[:extra_tokens], pos_embed[extra_tokens:]
    dtype = grid.dtype
    grid = grid.float().reshape(1, old_grid[0], old_grid[1], -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", align_corners=False, antialias=True)
    grid = grid.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], -1).to(dtype)
    return torch.cat([tok, grid], dim=0)


def _is_open_clip_vit(visual: nn.Module) -> bool:
    return hasattr(visual, "positional_embedding") and hasattr(visual, "grid_size") and hasattr(visual, "conv1")


def _set_image_size(visual: nn.Module, arch: str, size: Tuple[int, int]) -> None:
    """Adapt the image tower to ``size`` = (H, W) after its weights are loaded."""
    if _is_open_clip_vit(visual):
        ph, pw = visual.patch_size if isinstance(visual.patch_size, tuple) else (visual.patch_size,) * 2
        if size[0] % ph or size[1] % pw:
            raise ConfigError(f"{arch}: image size {size[0]}x{size[1]} must be a multiple of the "
                              f"patch size {ph}x{pw}")
        new_grid = (size[0] // ph, size[1] // pw)
        old_grid = tuple(visual.grid_size)
        if new_grid != old_grid:
            with torch.no_grad():
                new = resize_pos_embed_2d(visual.positional_embedding.data, old_grid, new_grid)
            visual.positional_embedding = nn.Parameter(new, requires_grad=False)
            logger.info("%s: positional embedding resized from grid %s to %s", arch, old_grid, new_grid)
        visual.grid_size = new_grid
        visual.image_size = tuple(size)
    elif hasattr(visual, "trunk"):  # open_clip TimmModel (MobileCLIP, ConvNeXt, ...)
        if hasattr(visual.trunk, "set_input_size"):
            visual.set_input_size(tuple(size))
        else:
            visual.image_size = tuple(size)
    else:
        visual.image_size = tuple(size)


# --------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------

def _is_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "PERSON_SEARCH_OFFLINE"))


def _looks_like_path(weights: str) -> bool:
    return (os.sep in weights or weights.startswith((".", "~"))
            or weights.lower().endswith((".pt", ".pth", ".bin", ".safetensors", ".ckpt")))


def file_digest(path: str | Path, chunk: int = 1 << 22) -> str:
    """sha256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _find_local_pretrained(open_clip, arch: str, tag: str, pcfg: Dict) -> Optional[str]:
    """Find a local file for (arch, tag): models dirs, then open_clip / Hugging Face caches."""
    names = [f"{arch}_{tag}", f"{arch}-{tag}", f"{arch}/{tag}/open_clip_model", f"{arch}/{tag}/open_clip_pytorch_model"]
    for d in model_dirs():
        for n in names:
            for ext in (".safetensors", ".bin", ".pt", ".pth"):
                p = d / (n + ext)
                if p.is_file():
                    return str(p)
    if pcfg.get("file") and os.path.isfile(pcfg["file"]):
        return pcfg["file"]
    url = pcfg.get("url", "")
    if url:
        p = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if p.is_file():
            return str(p)
    hub = pcfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return None
        repo_id, filename = os.path.split(hub)
        filename = filename or "open_clip_pytorch_model.bin"
        candidates = [filename]
        stem = os.path.splitext(filename)[0]
        candidates = [stem + ".safetensors", "open_clip_model.safetensors"] + candidates
        for fn in candidates:
            try:
                hit = try_to_load_from_cache(repo_id=repo_id, filename=fn)
            except Exception:  # noqa: BLE001 - malformed cache, treat as absent
                hit = None
            if isinstance(hit, str) and os.path.isfile(hit):
                return hit
    return None


def resolve_weights(arch: str, weights: str) -> Tuple[str, Optional[str], Dict]:
    """Resolve ``weights`` to (model_id suffix, checkpoint path or None, preprocess overrides).

    Raises:
        WeightsError: missing file, unknown tag, or a tag that is not cached while offline
            (HF_HUB_OFFLINE=1) or whose download fails.
    """
    open_clip = _import_open_clip()
    weights = (weights or "").strip()
    if not weights:
        return f"random-seed{RANDOM_SEED}", None, {}
    if _looks_like_path(weights) or os.path.exists(weights):
        path = resolve_model_path(weights)  # as given, else in the model folders
        if path is None:
            raise WeightsError(f"encoder weights file not found: {Path(weights).expanduser()} (encoder.weights; "
                               f"also looked in {', '.join(str(d) for d in model_dirs())}); put the open_clip "
                               f"checkpoint there or set encoder.weights to a pretrained tag or \"\" "
                               f"(random), see {MODELS_README}")
        return f"sha256-{file_digest(path)[:12]}", str(path), {}
    pcfg = open_clip.get_pretrained_cfg(arch, weights)
    if not pcfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise WeightsError(f"encoder weights {weights!r} is neither a file nor a pretrained tag of {arch} "
                           f"(tags: {', '.join(tags) or 'none'}), see {MODELS_README}")
    pre = {k: pcfg[k] for k in ("mean", "std") if k in pcfg}
    local = _find_local_pretrained(open_clip, arch, weights, pcfg)
    if local:
        return weights, local, pre
    where = (f"{MODELS_DIR / (arch + '_' + weights + '.safetensors')} "
             f"(or the Hugging Face cache: {pcfg.get('hf_hub') or pcfg.get('url')})")
    if _is_offline():
        raise WeightsError(f"pretrained weights {arch}/{weights} are not cached and downloads are off "
                           f"(HF_HUB_OFFLINE=1): put the checkpoint at {where}; how to get it: {MODELS_README}")
    try:
        path = open_clip.download_pretrained(pcfg)
    except Exception as e:  # noqa: BLE001 - any network / hub failure
        raise WeightsError(f"could not download pretrained weights {arch}/{weights} ({type(e).__name__}): "
                           f"put the checkpoint at {where}; how to get it: {MODELS_README}") from e
    if not path or not os.path.isfile(path):
        raise WeightsError(f"pretrained weights {arch}/{weights} could not be fetched: put the checkpoint "
                           f"at {where}; see {MODELS_README}")
    return weights, path, pre


def _default_preprocess(open_clip, arch: str) -> Dict:
    """mean/std of an arch when the weights do not say: the common value of its tags."""
    cfgs = [open_clip.get_pretrained_cfg(arch, t) for t in open_clip.list_pretrained_tags_by_model(arch)]
    means = {tuple(c.get("mean", _OPENAI_MEAN)) for c in cfgs}
    stds = {tuple(c.get("std", _OPENAI_STD)) for c in cfgs}
    if len(means) == 1 and len(stds) == 1:
        return {"mean": means.pop(), "std": stds.pop()}
    return {"mean": _OPENAI_MEAN, "std": _OPENAI_STD}


def _load_checkpoint(open_clip, model: nn.Module, path: str, target_grid: Optional[Tuple[int, int]]) -> None:
    """Load an open_clip checkpoint into ``model`` (built at its native size), strictly."""
    from open_clip.factory import load_state_dict

    try:
        sd = load_state_dict(path, device="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise WeightsError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from e
    try:
        from open_clip.convert import convert_state_dict
        sd = convert_state_dict(model, sd)
    except Exception:  # noqa: BLE001 - plain open_clip state dict
        pass
    if "positional_embedding" in sd and not hasattr(model, "positional_embedding"):
        from open_clip.model import convert_to_custom_text_state_dict
        sd = convert_to_custom_text_state_dict(sd)
    for key in ("logit_scale", "logit_bias"):
        if key in sd and getattr(model, key, None) is not None and sd[key].ndim != getattr(model, key).ndim:
            sd[key] = sd[key].reshape(getattr(model, key).shape)
    visual = getattr(model, "visual", None)
    pe = sd.get("visual.positional_embedding")
    if pe is not None and visual is not None and _is_open_clip_vit(visual) \
            and pe.shape[0] != visual.positional_embedding.shape[0]:
        # a checkpoint saved at another grid: square, or the configured target grid
        n = pe.shape[0] - 1
        side = int(round(math.sqrt(n)))
        if side * side == n:
            old = (side, side)
        elif target_grid is not None and target_grid[0] * target_grid[1] == n:
            old = tuple(target_grid)
        else:
            raise WeightsError(f"{path}: cannot infer the positional-embedding grid of {n} patches")
        sd["visual.positional_embedding"] = resize_pos_embed_2d(pe, old, tuple(visual.grid_size))
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise WeightsError(f"checkpoint {path} does not fit the architecture: "
                           f"{' '.join(first[:2])[:300]}") from e


# --------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------

def preprocess_crops(crops: Sequence[np.ndarray], size: Tuple[int, int], mean: Sequence[float],
                     std: Sequence[float], mode: str = "squash") -> np.ndarray:
    """BGR uint8 crops of any sizes -> float32 (N, 3, H, W) normalised RGB batch.

    mode "squash": direct cv2.resize to (H, W) (INTER_AREA when shrinking, else INTER_LINEAR);
    "letterbox": resize keeping the aspect ratio, centred, padded with the mean colour
    (zeros after normalisation).
    """
    h, w = size
    out = np.empty((len(crops), h, w, 3), dtype=np.uint8)
    for i, crop in enumerate(crops):
        img = np.asarray(crop)
        if img.dtype != np.uint8:
            raise TypeError(f"crop {i}: expected a uint8 BGR image, got dtype {img.dtype}")
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        elif img.ndim == 3 and img.shape[2] == 4:
            img = img[:, :, :3]
        elif img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"crop {i}: expected an (H, W, 3) BGR image, got shape {img.shape}")
        ch, cw = img.shape[:2]
        if ch == 0 or cw == 0:
            raise ValueError(f"crop {i}: empty image of shape {img.shape}")
        if mode == "squash":
            interp = cv2.INTER_AREA if (ch >= h and cw >= w) else cv2.INTER_LINEAR
            out[i] = cv2.resize(img, (w, h), interpolation=interp)
        elif mode == "letterbox":
            s = min(h / ch, w / cw)
            nh, nw = max(1, min(h, round(ch * s))), max(1, min(w, round(cw * s)))
            interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
            r = cv2.resize(img, (nw, nh), interpolation=interp)
            fill = np.clip(np.round(np.asarray(mean)[::-1] * 255), 0, 255).astype(np.uint8)  # BGR mean
            out[i] = fill
            y0, x0 = (h - nh) // 2, (w - nw) // 2
            out[i, y0:y0 + nh, x0:x0 + nw] = r
        else:
            raise ValueError(f"resize mode must be one of {RESIZE_MODES}, not {mode!r}")
    mean_a = np.asarray(mean, dtype=np.float32) * 255.0
    inv_std = 1.0 / (np.asarray(std, dtype=np.float32) * 255.0)
    x = out[..., ::-1].astype(np.float32)  # BGR -> RGB
    x -= mean_a
    x *= inv_std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


# --------------------------------------------------------------------------------------
# The encoder
# --------------------------------------------------------------------------------------

def _weights_fingerprint(module: nn.Module) -> str:
    """Cheap fingerprint of a module's weights (shapes + a sample of values)."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        flat = t.detach().reshape(-1)
        if flat.numel() and flat.is_floating_point():
            idx = torch.linspace(0, flat.numel() - 1, steps=min(64, flat.numel())).long()
            h.update(flat[idx].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _parse_device(device: str) -> torch.device:
    d = (device or "cpu").strip()
    if d.isdigit():
        d = f"cuda:{d}"
    try:
        return torch.device(d)
    except RuntimeError as e:
        raise ConfigError(f"encoder.device {device!r} is not a torch device") from e


class ClipEncoder:
    """open_clip CLIP model: person crops -> image embeddings, text -> text embeddings.

    Args:
        cfg: the encoder section of the pipeline config.
        towers: which towers to keep, ("image",), ("text",) or both; the other tower's
            modules are deleted after loading to save memory.
        backend: image-tower backend, one of BACKENDS; None = ``cfg.backend``.
        resize_mode: "squash" (default, direct resize) or "letterbox".
        cache_dir: where exported ONNX files are kept; None = $PERSON_SEARCH_CACHE or
            ~/.cache/person_search (``paths.cache_dir``), under ``onnx/``.

    Attributes:
        model_id: "<arch>@<random-seed0 | tag | sha256-xxxxxxxxxxxx>".
        dim: embedding dimension.
        pretrained: True when real weights were loaded.
        image_size: (H, W) of the image tower input.
        mean, std: RGB normalisation (0..1 scale).
    """

    def __init__(self, cfg: EncoderConfig, *, towers: Sequence[str] = ("image", "text"),
                 backend: Optional[str] = None, resize_mode: str = "squash",
                 cache_dir: Optional[str] = None):
        cfg.validate()
        towers = tuple(towers)
        if not towers or any(t not in ("image", "text") for t in towers):
            raise ConfigError(f"towers must be a non-empty subset of ('image', 'text'), not {towers!r}")
        backend = backend or cfg.backend
        if backend not in BACKENDS:
            raise ConfigError(f"encoder.backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        if resize_mode not in RESIZE_MODES:
            raise ConfigError(f"resize_mode must be one of {RESIZE_MODES}, not {resize_mode!r}")
        device = _parse_device(cfg.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"encoder.device is {cfg.device!r} but CUDA is not available")
        if cfg.precision == "fp16" and device.type != "cuda":
            raise ConfigError("encoder.precision fp16 needs a CUDA device; on CPU use fp32 "
                              "(or backend torch-int8 / onnx-int8 for speed)")
        if backend != "torch" and device.type != "cpu":
            raise ConfigError(f"encoder.backend {backend} runs on CPU only; use backend torch on {device}")
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)

        self.cfg = cfg
        self.arch = cfg.arch
        self.towers = towers
        self.backend = backend
        self.resize_mode = resize_mode
        self.device = device
        self.dtype = torch.float16 if cfg.precision == "fp16" else torch.float32
        self.image_size: Tuple[int, int] = (int(cfg.image_height), int(cfg.image_width))
        self._ort = None

        open_clip = _import_open_clip()
        if open_clip.get_model_config(cfg.arch) is None:
            raise ConfigError(f"unknown encoder.arch {cfg.arch!r}; known: ViT-B-16, ViT-B-32, MobileCLIP-S1, "
                              f"MobileCLIP-S2, MobileCLIP-B, MobileCLIP2-S0, TinyCLIP-ViT-8M-16-Text-3M, ... "
                              f"(open_clip.list_models())")
        weights_id, ckpt, pre = resolve_weights(cfg.arch, cfg.weights)
        self.model_id = f"{cfg.arch}@{weights_id}"
        self.pretrained = ckpt is not None
        if not pre:
            pre = _default_preprocess(open_clip, cfg.arch) if self.pretrained else {
                "mean": _OPENAI_MEAN, "std": _OPENAI_STD}
        self.mean = tuple(float(v) for v in pre["mean"])
        self.std = tuple(float(v) for v in pre["std"])

        # build at the native size with a fixed seed (same random model in every process),
        # load the weights, then adapt the image tower to the requested size
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            model = open_clip.create_model(cfg.arch, pretrained=None, device="cpu", precision="fp32")
        model.eval()
        patch = getattr(getattr(model, "visual", None), "patch_size", None)
        target_grid = None
        if patch is not None:
            p = patch if isinstance(patch, tuple) else (patch, patch)
            target_grid = (self.image_size[0] // p[0], self.image_size[1] // p[1])
        if ckpt is not None:
            _load_checkpoint(open_clip, model, ckpt, target_grid)
        self.dim = int(self._embed_dim(model))

        if "image" in towers:
            visual = model.visual
            _set_image_size(visual, cfg.arch, self.image_size)
            if hasattr(visual, "trunk"):
                try:  # MobileOne / FastViT: fold the train-time branches (exact, faster)
                    from timm.utils.model import reparameterize_model
                    visual.trunk = reparameterize_model(visual.trunk)
                except Exception as e:  # noqa: BLE001
                    logger.debug("no reparameterisation for %s: %s", cfg.arch, e)
            n = set_attention(visual, cfg.attention)
            logger.debug("%s image tower: %d attention modules set to %s", cfg.arch, n, cfg.attention)
            for prm in visual.parameters():
                prm.requires_grad_(False)
            self._visual: Optional[nn.Module] = visual.to(device=device, dtype=self.dtype).eval()
        else:
            self._visual = None
        if "text" in towers:
            if hasattr(model, "visual"):
                model.visual = nn.Identity()  # drop the image tower
            set_attention(model, cfg.attention)
            for prm in model.parameters():
                prm.requires_grad_(False)
            self._text_model: Optional[nn.Module] = model.to(device=device, dtype=self.dtype).eval()
            self._tokenizer = open_clip.get_tokenizer(cfg.arch)
        else:
            self._text_model = None
            self._tokenizer = None
        del model

        if self._visual is not None:
            self._check_image_forward()
            if backend == "torch-int8":
                self._quantize_torch()
            elif backend in ("onnx", "onnx-int8"):
                from person_search.core.backends.onnx_image import OnnxImageTower

                self._ort = OnnxImageTower.create(
                    self._visual, arch=cfg.arch, model_id=self.model_id, image_size=self.image_size,
                    mean=self.mean, std=self.std, dim=self.dim, int8=backend == "onnx-int8",
                    threads=cfg.threads, cache_dir=self._cache_dir(cache_dir),
                    fingerprint=_weights_fingerprint(self._visual))
                self._visual = None  # the ONNX session replaces the torch tower

        logger.info("ClipEncoder: arch=%s weights=%s model_id=%s image=%dx%d device=%s precision=%s "
                    "attention=%s backend=%s towers=%s dim=%d", cfg.arch, cfg.weights or "(random)",
                    self.model_id, self.image_size[0], self.image_size[1], device, cfg.precision,
                    cfg.attention, backend, ",".join(towers), self.dim)

    # -- construction helpers ------------------------------------------------------------

    @staticmethod
    def _embed_dim(model: nn.Module) -> int:
        tp = getattr(model, "text_projection", None)
        if isinstance(tp, torch.Tensor):
            return tp.shape[1]
        if isinstance(tp, nn.Linear):
            return tp.out_features
        visual = model.visual
        if hasattr(visual, "output_dim"):
            return visual.output_dim
        with torch.inference_mode():
            size = getattr(visual, "image_size", (224, 224))
            size = size if isinstance(size, tuple) else (size, size)
            return visual(torch.zeros(1, 3, *size)).shape[-1]

    def _check_image_forward(self) -> None:
        h, w = self.image_size
        try:
            with torch.inference_mode():
                out = self._visual(torch.zeros(1, 3, h, w, device=self.device, dtype=self.dtype))
        except Exception as e:  # noqa: BLE001
            raise ConfigError(f"{self.arch}: the image tower does not accept {h}x{w} inputs "
                              f"({type(e).__name__}: {str(e)[:200]}); use its native size") from e
        if out.shape[-1] != self.dim:
            raise ConfigError(f"{self.arch}: image embedding dim {out.shape[-1]} != text dim {self.dim}")

    def _quantize_torch(self) -> None:
        for m in self._visual.modules():
            if isinstance(m, ClipAttention) and m.qkv is None:
                m.split_qkv_linear()
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.ao.quantization import quantize_dynamic

            self._visual = quantize_dynamic(self._visual, {nn.Linear}, dtype=torch.qint8)

    @staticmethod
    def _cache_dir(cache_dir: Optional[str]) -> Path:
        return Path(cache_dir).expanduser() / "onnx" if cache_dir else paths_cache_dir("onnx")

    # -- public API ------------------------------------------------------------------------

    @property
    def has_image_tower(self) -> bool:
        return self._visual is not None or self._ort is not None

    @property
    def has_text_tower(self) -> bool:
        return self._text_model is not None

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """BGR uint8 crops -> float32 (N, 3, H, W) model input (see preprocess_crops)."""
        return preprocess_crops(crops, self.image_size, self.mean, self.std, self.resize_mode)

    def encode_images(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """BGR uint8 crops (any sizes) -> (N, dim) float32 L2-normalised embeddings."""
        if not self.has_image_tower:
            raise RuntimeError(f"this ClipEncoder was built with towers={self.towers}: no image tower "
                               f"(build it with towers=('image',) to encode images)")
        crops = list(crops)
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        bs = self.cfg.batch_size
        outs = []
        for i in range(0, len(crops), bs):
            outs.append(self.encode_preprocessed(self.preprocess(crops[i:i + bs])))
        return np.concatenate(outs, axis=0)

    def encode_preprocessed(self, batch: np.ndarray) -> np.ndarray:
        """Float32 (N, 3, H, W) preprocessed batch -> (N, dim) float32 L2-normalised."""
        if self._ort is not None:
            feats = self._ort.run(batch)
            norm = np.linalg.norm(feats, axis=1, keepdims=True)
            return (feats / np.maximum(norm, 1e-12)).astype(np.float32, copy=False)
        if self._visual is None:
            raise RuntimeError("no image tower")
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device, dtype=self.dtype, non_blocking=True)
            feats = self._visual(x)
            if isinstance(feats, (tuple, list)):
                feats = feats[0]
            feats = F.normalize(feats.float(), dim=-1)
        return feats.cpu().numpy()

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, dim) float32 L2-normalised embeddings (open_clip tokenizer of the arch)."""
        if self._text_model is None:
            raise RuntimeError(f"this ClipEncoder was built with towers={self.towers}: no text tower "
                               f"(build it with towers=('text',) to encode text)")
        texts = list(texts)
        if any(not isinstance(t, str) for t in texts):
            raise TypeError("encode_text expects a list of str")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        bs = max(self.cfg.batch_size, 32)
        outs = []
        with torch.inference_mode():
            for i in range(0, len(texts), bs):
                tokens = self._tokenizer(texts[i:i + bs]).to(self.device)
                feats = self._text_model.encode_text(tokens)
                outs.append(F.normalize(feats.float(), dim=-1).cpu().numpy())
        return np.concatenate(outs, axis=0)
