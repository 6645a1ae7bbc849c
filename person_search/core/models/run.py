"""The model contract from training to serving: the run folder, ``model.json`` and the merge sidecar.

A training run folder ``RUN/`` (written by ``person_search.lab.train``) holds:

* ``best.safetensors`` / ``last.safetensors``: plain open_clip checkpoints in every mode (a
  LoRA run's adapters are merged into them as they are written): servable as they are.
* ``best.adapters.safetensors`` / ``last.adapters.safetensors`` (LoRA runs only): the same
  weights in the training layout, for ``--resume``.
* ``state.pt``, ``metrics.jsonl``, ``curves.png``: resumable state, metrics log, curves.
* ``model.json`` (format :data:`FORMAT`): arch, image_size [H, W], attention (the kernel),
  mean, std, embed_dim, mode, lora, the training config (its ``attention_settings`` are the
  kernel's settings), ``text_templates`` (how a description is put to the model: ``["{}"]``,
  captions as written, which is how the lab trains; a run without the key means the same),
  data provenance, best / final figures, versions.

A plain checkpoint written out of a run (``person-search lora merge``) carries a sidecar
``FILE.json`` (format "open_clip") whose ``encoder`` block says how to serve it: arch, image
height / width, attention kind and settings, text templates.

:func:`read_model_json` and :func:`read_sidecar` are the one strict reader of each;
:func:`servable` turns a weights path (a checkpoint file, or a run folder) into the file to load
and the :class:`ServingFacts` it was trained with. ``encoder.weights``, ``person-search eval``
and ``lora merge`` all go through it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

MODEL_JSON = "model.json"
LAST, BEST, STATE, METRICS, CURVES = "last.safetensors", "best.safetensors", "state.pt", "metrics.jsonl", "curves.png"
FORMAT = "person_search.train/1"  # model.json's format name
# The lab trains on captions as written: a description is sent to such a model as it is.
# (CLIP's own weights expect its prompt style instead: query.CLIP_TEMPLATES.)
TRAINED_TEMPLATES: Tuple[str, ...] = ("{}",)
CLIP_TEMPLATES: Tuple[str, ...] = ("a photo of {}.",)  # open_clip's weights (and random ones)
SIDECAR_FORMAT = "open_clip"  # FILE.json beside a plain checkpoint
CHECKPOINTS = ("best", "last")


class RunError(ValueError):
    """A run folder, ``model.json`` or sidecar that is missing, unreadable or not ours: one line."""


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` then rename ``tmp`` onto ``path`` (readers never see half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def checkpoint_file(name: str, layout: str = "open_clip") -> str:
    """Return the file of checkpoint ``name`` ("best" / "last") in ``layout`` ("open_clip" or "lora")."""
    return f"{name}.adapters.safetensors" if layout == "lora" else f"{name}.safetensors"


def is_run_folder(path: str | Path) -> bool:
    """Return True for a folder holding a ``model.json``."""
    return (Path(path) / MODEL_JSON).is_file()


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(info, dict):
        raise RunError(f"{path}: expected a JSON object")
    return info


def _check_size(path: Path, size) -> None:
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise RunError(f"{path}: image_size must be [H, W], not {size!r}")


def write_model_json(run_dir: str | Path, info: Dict[str, Any]) -> None:
    """Write ``RUN/model.json`` atomically (``info`` with ``format`` :data:`FORMAT`)."""
    if info.get("format") != FORMAT:
        raise ValueError(f"model.json must have format {FORMAT!r}")
    path = Path(run_dir) / MODEL_JSON
    atomic_write(path, lambda p: p.write_text(json.dumps(info, indent=2) + "\n"))


def read_model_json(run_dir: str | Path) -> Dict[str, Any]:
    """Read ``RUN/model.json`` strictly.

    Raises:
        FileNotFoundError: no model.json there. RunError: not JSON, not ours, or a key missing.
    """
    path = Path(run_dir) / MODEL_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (is {run_dir} a training run folder?)")
    info = _read_json(path)
    if info.get("format") != FORMAT:
        raise RunError(f"{path}: not a {FORMAT} model.json")
    missing = [k for k in ("arch", "image_size", "attention", "mean", "std", "embed_dim", "mode", "train_config")
               if k not in info]
    if missing:
        raise RunError(f"{path}: missing {', '.join(missing)}")
    _check_size(path, info["image_size"])
    return info


def describe_checkpoint(info: Dict[str, Any], *, source: str) -> Dict[str, Any]:
    """Return the sidecar JSON of a plain checkpoint written out of the run ``info`` (its model.json)."""
    h, w = info["image_size"]
    evaluation = (info.get("best") or {}).get("metrics") or info.get("final_eval")
    return {
        "format": SIDECAR_FORMAT, "arch": info["arch"], "image_size": [h, w], "attention": info["attention"],
        "mean": info["mean"], "std": info["std"], "embed_dim": info["embed_dim"], "mode": info["mode"],
        "lora": info.get("lora"), "data": info.get("data", {}), "evaluation": evaluation,
        "trained_steps": info.get("steps"), "source": source,
        "encoder": {"arch": info["arch"], "image_height": h, "image_width": w, "attention": info["attention"],
                    "attention_settings": dict(info["train_config"].get("attention_settings") or {}),
                    "text_templates": list(text_templates_of(info, "model.json"))},
    }


def sidecar_of(path: str | Path) -> Path:
    """Return the sidecar path ``FILE.json`` of checkpoint ``FILE``."""
    p = Path(path)
    return p.with_name(p.name + ".json")


def read_sidecar(path: str | Path) -> Dict[str, Any]:
    """Read a checkpoint's sidecar ``FILE.json`` strictly (format "open_clip" with an ``encoder`` block).

    Raises:
        RunError: unreadable, not ours, or the encoder block incomplete.
    """
    side = sidecar_of(path)
    info = _read_json(side)
    enc = info.get("encoder")
    if info.get("format") != SIDECAR_FORMAT or not isinstance(enc, dict):
        raise RunError(f"{side}: not a checkpoint sidecar (format {SIDECAR_FORMAT!r} with an encoder block)")
    missing = [k for k in ("arch", "image_height", "image_width", "attention") if k not in enc]
    if missing:
        raise RunError(f"{side}: encoder block without {', '.join(missing)}")
    _check_size(side, [enc["image_height"], enc["image_width"]])
    return info


@dataclass(frozen=True)
class ServingFacts:
    """How a trained checkpoint must be served: what it was trained with."""

    arch: str
    image_size: Tuple[int, int]  # (H, W)
    attention: str  # the kernel
    attention_settings: Dict[str, Any] = field(default_factory=dict)
    mean: Tuple[float, ...] = ()  # RGB normalisation it was trained with (0..1 scale)
    std: Tuple[float, ...] = ()
    source: str = ""  # the model.json or sidecar these facts come from
    text_templates: Tuple[str, ...] = TRAINED_TEMPLATES  # how its captions were written in training

    def attention_dict(self) -> Dict[str, Any]:
        """Return the ``encoder.attention`` section (kind + settings)."""
        return {"kind": self.attention, **self.attention_settings}


def text_templates_of(info: Dict[str, Any], where: str) -> Tuple[str, ...]:
    """Return the ``text_templates`` of a model.json / encoder block (runs before the key: as written)."""
    t = info.get("text_templates", list(TRAINED_TEMPLATES))
    if not isinstance(t, list) or not t or not all(isinstance(x, str) and "{}" in x for x in t):
        raise RunError(f"{where}: text_templates must be a non-empty list of strings with {{}}, not {t!r}")
    return tuple(t)


def _facts_of_run(run_dir: Path, info: Dict[str, Any]) -> ServingFacts:
    settings = dict(info["train_config"].get("attention_settings") or {})
    return ServingFacts(arch=info["arch"], image_size=tuple(info["image_size"]), attention=info["attention"],
                        attention_settings=settings, mean=tuple(info["mean"]), std=tuple(info["std"]),
                        source=str(run_dir / MODEL_JSON),
                        text_templates=text_templates_of(info, str(run_dir / MODEL_JSON)))


def servable(path: str | Path, checkpoint: str = "best") -> Tuple[Path, Optional[ServingFacts]]:
    """Return (checkpoint file to load, its serving facts or None) for a weights path.

    * a run folder (``model.json``): ``RUN/<checkpoint>.safetensors`` (``best``, else ``last`` when
      no best was written) and the facts of model.json;
    * a checkpoint file with a sidecar ``FILE.json``: the file and the sidecar's encoder block;
    * a plain checkpoint file: the file, no facts.

    Raises:
        FileNotFoundError: nothing there, or a run folder without the checkpoint.
        RunError: a model.json / sidecar that is not ours.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        info = read_model_json(p)
        names = [checkpoint] + [n for n in CHECKPOINTS if n != checkpoint and checkpoint == "best"]
        for name in names:
            if (p / checkpoint_file(name)).is_file():
                return p / checkpoint_file(name), _facts_of_run(p, info)
        raise FileNotFoundError(f"{p / checkpoint_file(checkpoint)}: no such checkpoint (train the run first)")
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file or run folder")
    if not sidecar_of(p).is_file():
        return p, None
    info = read_sidecar(p)
    enc = info["encoder"]
    return p, ServingFacts(arch=enc["arch"], image_size=(int(enc["image_height"]), int(enc["image_width"])),
                           attention=enc["attention"], attention_settings=dict(enc.get("attention_settings") or {}),
                           mean=tuple(info.get("mean") or ()), std=tuple(info.get("std") or ()),
                           source=str(sidecar_of(p)), text_templates=text_templates_of(enc, str(sidecar_of(p))))
