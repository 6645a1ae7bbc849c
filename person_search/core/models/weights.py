"""Model weights: where they come from, what they are called, how they are loaded.

* ``""``: a random model with a fixed seed (identical in every process), id ``random-seed0``.
* a path (absolute, relative, or a name under the model folders of ``paths.model_dirs()``):
  an open_clip checkpoint, id ``sha256-<first 12 hex of the file>``; or a training run folder
  (its ``best.safetensors``). A run's ``model.json`` or a checkpoint's sidecar ``FILE.json``
  (the model contract, ``run.py``) says what it was trained with: :func:`check_trained`.
* a pretrained tag ("openai", ...): open_clip's registry, looked up in local folders and
  caches first; downloaded only when downloads are on (not ``HF_HUB_OFFLINE=1``).

Every failure is a :class:`WeightsError` with one line saying what is missing and where to
put it (:class:`~person_search.core.errors.WeightsError`, the one weights error of the
package; the detector raises it too). This module imports no torch at import time.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional, Tuple

from person_search.core.errors import WeightsError
from person_search.core.models.archs import open_clip_registered
from person_search.core.paths import MODELS_DIR, model_dirs, resolve_model_path

RANDOM_SEED = 0
MODELS_README = "models/README.md"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class ResolvedWeights(NamedTuple):
    """What ``encoder.weights`` resolved to."""

    weights_id: str  # random-seed0 | the tag | sha256-<12 hex>
    path: Optional[str]  # checkpoint file; None = random init
    preprocess: Dict  # mean / std the weights were trained with (empty if they do not say)
    trained: Optional[Any] = None  # run.ServingFacts of a run folder / a checkpoint with a sidecar


def _is_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "PERSON_SEARCH_OFFLINE"))


def _looks_like_path(weights: str) -> bool:
    return (os.sep in weights or weights.startswith((".", "~"))
            or weights.lower().endswith((".pt", ".pth", ".bin", ".safetensors", ".ckpt")))


def file_digest(*paths: str | Path, chunk: int = 1 << 22) -> str:
    """Return the sha256 hex digest of the contents of ``paths`` (in the order given; one file: its sha256).

    The one file digest of the package: checkpoint ids (``sha256-<first 12 hex>``) and the
    data provenance of a training run (``sha256-<first 16 hex>`` of the annotation file).
    """
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(chunk), b""):
                h.update(block)
    return h.hexdigest()


def module_fingerprint(module) -> str:
    """Return a cheap fingerprint of a module's weights (names, shapes and a sample of values)."""
    import torch

    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        flat = t.detach().reshape(-1)
        if flat.numel() and flat.is_floating_point():
            idx = torch.linspace(0, flat.numel() - 1, steps=min(64, flat.numel())).long()
            h.update(flat[idx].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _find_local_pretrained(arch: str, tag: str, pcfg: Dict) -> Optional[str]:
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
        stem = os.path.splitext(filename)[0]
        for fn in (stem + ".safetensors", "open_clip_model.safetensors", filename):
            try:
                hit = try_to_load_from_cache(repo_id=repo_id, filename=fn)
            except Exception:  # noqa: BLE001 - malformed cache, treat as absent
                hit = None
            if isinstance(hit, str) and os.path.isfile(hit):
                return hit
    return None


def _resolved_file(weights: str, path: Path) -> ResolvedWeights:
    """Resolve a checkpoint file or run folder through the model contract (run.py)."""
    from person_search.core.models.run import RunError, servable
    try:
        path, trained = servable(path)
    except (OSError, RunError) as exc:
        raise WeightsError(f"encoder.weights {weights}: {exc}") from None
    pre = {"mean": trained.mean, "std": trained.std} if trained is not None and trained.mean else {}
    return ResolvedWeights(f"sha256-{file_digest(path)[:12]}", str(path), pre, trained)


def check_trained(cfg, trained) -> None:
    """Refuse to serve weights with another arch or attention than they were trained with (``cfg``: EncoderConfig).

    Raises:
        WeightsError: one line naming the settings to use.
    """
    want = trained.attention_dict()
    have = {k: getattr(cfg.attention, k, None) for k in want}
    if cfg.arch != trained.arch or have != want:
        sets = [f"encoder.arch={trained.arch}"] + [f"encoder.attention.{k}={v}" for k, v in want.items()]
        raise WeightsError(f"encoder.weights {cfg.weights} was trained as {trained.arch} with attention "
                           f"{want} ({trained.source}), not {cfg.arch} with {have}: set {' '.join(sets)}")


def resolve_weights(arch: str, weights: str) -> ResolvedWeights:
    """Resolve ``encoder.weights`` to its id, checkpoint file and preprocessing; builds no model.

    Args:
        arch: the open_clip architecture.
        weights: "" (random), a checkpoint path or name in the model folders, or a pretrained tag.

    Returns:
        The resolved weights.

    Raises:
        WeightsError: missing file, unknown tag, or a tag that is not cached while offline
            (HF_HUB_OFFLINE=1) or whose download fails.
    """
    open_clip = open_clip_registered()
    weights = (weights or "").strip()
    if not weights:
        return ResolvedWeights(f"random-seed{RANDOM_SEED}", None, {})
    if Path(weights).expanduser().is_dir():  # a training run folder
        return _resolved_file(weights, Path(weights).expanduser())
    if _looks_like_path(weights) or os.path.exists(weights):
        path = resolve_model_path(weights)  # as given, else in the model folders
        if path is None:
            raise WeightsError(f"encoder weights file not found: {Path(weights).expanduser()} (encoder.weights; "
                               f"also looked in {', '.join(str(d) for d in model_dirs())}); put the open_clip "
                               f"checkpoint there or set encoder.weights to a pretrained tag or \"\" "
                               f"(random), see {MODELS_README}")
        return _resolved_file(weights, path)
    pcfg = open_clip.get_pretrained_cfg(arch, weights)
    if not pcfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise WeightsError(f"encoder weights {weights!r} is neither a file nor a pretrained tag of {arch} "
                           f"(tags: {', '.join(tags) or 'none'}), see {MODELS_README}")
    pre = {k: pcfg[k] for k in ("mean", "std") if k in pcfg}
    local = _find_local_pretrained(arch, weights, pcfg)
    if local:
        return ResolvedWeights(weights, local, pre)
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
    return ResolvedWeights(weights, path, pre)


def preprocess_of(arch: str, resolved: ResolvedWeights) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Return (mean, std) for the weights: theirs, else the arch's common value, else OpenAI's."""
    pre = dict(resolved.preprocess)
    if not pre and resolved.path is not None:
        open_clip = open_clip_registered()
        cfgs = [open_clip.get_pretrained_cfg(arch, t) for t in open_clip.list_pretrained_tags_by_model(arch)]
        means = {tuple(c.get("mean", OPENAI_MEAN)) for c in cfgs}
        stds = {tuple(c.get("std", OPENAI_STD)) for c in cfgs}
        if len(means) == 1 and len(stds) == 1:
            pre = {"mean": means.pop(), "std": stds.pop()}
    mean = pre.get("mean", OPENAI_MEAN)
    std = pre.get("std", OPENAI_STD)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


KERNEL_KEY = ".attn.kernel."  # parameters of attention kernels (lam): loaded after the kernels exist


def load_checkpoint(model, path: str, target_grid: Optional[Tuple[int, int]] = None) -> Dict[str, Any]:
    """Load an open_clip checkpoint into ``model`` (built at its native size), strictly.

    A ViT positional embedding saved at another grid (square, or ``target_grid``, e.g. a
    checkpoint fine-tuned at 384x128) is resized to the model's grid first.

    Args:
        model: the open_clip model, built at its native size.
        path: the checkpoint file (open_clip / OpenAI state dict, .pt/.bin/.safetensors).
        target_grid: the patch grid of the configured input size, for non-square checkpoints.

    Returns:
        The attention-kernel parameters of the checkpoint (keys with ``.attn.kernel.``, e.g. a
        trained ``lam``), held back for :func:`load_kernel_state` once the kernels are installed.

    Raises:
        WeightsError: unreadable file, unknown grid, or a checkpoint of another architecture.
    """
    from open_clip.factory import load_state_dict

    from person_search.core.models.pos_embed import is_vit_tower, resize_pos_embed_2d, set_image_size

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
    if pe is not None and visual is not None and is_vit_tower(visual) \
            and pe.shape[0] != visual.positional_embedding.shape[0]:
        n = pe.shape[0] - 1
        side = int(round(math.sqrt(n)))
        if target_grid is not None and target_grid[0] * target_grid[1] == n:
            # saved at the configured size (e.g. fine-tuned at 384x128): move the model to that
            # grid and load the embedding as it is, rather than through the native grid and back
            ph, pw = visual.patch_size if isinstance(visual.patch_size, tuple) else (visual.patch_size,) * 2
            set_image_size(visual, type(model).__name__, (target_grid[0] * ph, target_grid[1] * pw))
        elif side * side == n:
            sd["visual.positional_embedding"] = resize_pos_embed_2d(pe, (side, side), tuple(visual.grid_size))
        else:
            raise WeightsError(f"{path}: cannot infer the positional-embedding grid of {n} patches")
    kernel_sd = {k: sd.pop(k) for k in [k for k in sd if KERNEL_KEY in k]}
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise WeightsError(f"checkpoint {path} does not fit the architecture: "
                           f"{' '.join(first[:2])[:300]}") from e
    return kernel_sd


def load_kernel_state(model, kernel_sd: Dict[str, Any], path: str, kind: str) -> None:
    """Load the held-back attention-kernel parameters of a checkpoint into ``model`` (kernels installed).

    A checkpoint without kernel parameters leaves the kernels at their initialisation (a
    pretrained CLIP starting ``lam`` training); otherwise the keys must match exactly.

    Raises:
        WeightsError: the checkpoint's kernel parameters do not fit the configured kernel.
    """
    own = {k for k in model.state_dict() if KERNEL_KEY in k}
    if not kernel_sd:
        return
    if set(kernel_sd) != own:
        missing, extra = sorted(own - set(kernel_sd)), sorted(set(kernel_sd) - own)
        raise WeightsError(f"checkpoint {path} has attention-kernel parameters that do not fit "
                           f"encoder.attention.kind {kind!r} (missing {missing[:2]}, unexpected {extra[:2]}); "
                           f"serve it with the attention settings it was trained with")
    try:
        model.load_state_dict(kernel_sd, strict=False)
    except RuntimeError as e:
        raise WeightsError(f"checkpoint {path}: attention-kernel parameters do not fit: "
                           f"{str(e).strip().splitlines()[-1][:300]}") from e
