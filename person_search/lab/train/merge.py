"""``person-search lora merge``: a training run folder -> one plain open_clip checkpoint + metadata."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict

from person_search.lab.train.lora import merge_lora
from person_search.lab.train.checkpoint import describe_checkpoint, save_weights, training_file
from person_search.lab.train.model import load_run

logger = logging.getLogger(__name__)


class MergeError(RuntimeError):
    """A run folder cannot be merged (missing files, bad checkpoint, bad output name)."""


def merge_run(run_dir: str | Path, out: str | Path, *, checkpoint: str = "best") -> Dict[str, Any]:
    """Merge a LoRA run's checkpoint into a plain open_clip safetensors file ``out`` (+ ``out.json``).

    Reads ``RUN/<checkpoint>.adapters.safetensors`` (the training layout), folds the adapters
    and ``qkv`` back. A full or frozen-text run's checkpoint is already plain: it is re-saved.

    Args:
        run_dir: the training run folder (``model.json``, ``best.safetensors``, ...).
        out: the merged checkpoint to write (``.safetensors``).
        checkpoint: "best" or "last".

    Returns:
        the metadata written to ``out.json``.

    Raises:
        MergeError: a missing or unreadable run file, or a checkpoint that does not fit.
    """
    run_dir, out = Path(run_dir), Path(out)
    if out.suffix != ".safetensors":
        raise MergeError(f"{out}: the merged checkpoint must be a .safetensors file")
    if not run_dir.is_dir():
        raise MergeError(f"run folder {run_dir}: no such file or folder")
    if out.is_dir():
        raise MergeError(f"{out} is a folder: give the merged checkpoint's file name (.safetensors)")
    try:  # the output folder first: a bad --out is refused before the model loads
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MergeError(f"cannot create the folder of {out}: {exc.strerror or exc}") from None
    try:
        trainable, info = load_run(run_dir, checkpoint)
    except (OSError, RuntimeError, ValueError) as exc:
        raise MergeError(str(exc)) from None
    clip = merge_lora(trainable.peft) if trainable.peft is not None else trainable.clip
    layout = "lora" if trainable.peft is not None else "open_clip"
    meta = describe_checkpoint(info, source=str(run_dir / training_file(checkpoint, layout)))
    try:
        save_weights(clip, out)
        out.with_name(out.name + ".json").write_text(json.dumps(meta, indent=2) + "\n")
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own SafetensorError for an unwritable file
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MergeError(f"cannot write {out}: {why}") from None
    logger.info("merged %s -> %s", meta["source"], out)
    return meta
