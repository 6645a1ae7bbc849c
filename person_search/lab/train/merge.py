"""``person-search lora merge``: a training run folder -> one plain open_clip checkpoint + its sidecar.

Training already merged: every ``RUN/<checkpoint>.safetensors`` is a plain open_clip checkpoint
(a LoRA run's adapters folded in as it was written, see ``checkpoint.save_checkpoint``), so
merging is copying that file out with the sidecar ``FILE.json`` that says how to serve it
(``core.models.run.describe_checkpoint``). No model is built and nothing is merged twice.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Dict

from person_search.core.models.run import (RunError, atomic_write, checkpoint_file, describe_checkpoint,
                                           read_model_json, sidecar_of)

logger = logging.getLogger(__name__)


class MergeError(RuntimeError):
    """A run folder cannot be merged (missing files, bad model.json, bad output name)."""


def merge_run(run_dir: str | Path, out: str | Path, *, checkpoint: str = "best") -> Dict[str, Any]:
    """Write the run's plain checkpoint ``RUN/<checkpoint>.safetensors`` to ``out`` (+ ``out.json``).

    Args:
        run_dir: the training run folder (``model.json``, ``best.safetensors``, ...).
        out: the merged checkpoint to write (``.safetensors``).
        checkpoint: "best" or "last".

    Returns:
        the metadata written to ``out.json``.

    Raises:
        MergeError: a missing or unreadable run file, or an output that cannot be written.
    """
    run_dir, out = Path(run_dir), Path(out)
    if out.suffix != ".safetensors":
        raise MergeError(f"{out}: the merged checkpoint must be a .safetensors file")
    if not run_dir.is_dir():
        raise MergeError(f"run folder {run_dir}: no such file or folder")
    if out.is_dir():
        raise MergeError(f"{out} is a folder: give the merged checkpoint's file name (.safetensors)")
    try:  # the output folder first: a bad --out is refused before the run is read
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MergeError(f"cannot create the folder of {out}: {exc.strerror or exc}") from None
    try:
        info = read_model_json(run_dir)
    except (OSError, RunError) as exc:
        raise MergeError(str(exc)) from None
    source = run_dir / checkpoint_file(checkpoint)
    if not source.is_file():
        raise MergeError(f"{source}: no such checkpoint (train the run first)")
    meta = describe_checkpoint(info, source=str(source))
    try:
        atomic_write(out, lambda p: shutil.copyfile(source, p))
        atomic_write(sidecar_of(out), lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    except OSError as exc:
        raise MergeError(f"cannot write {out}: {exc.strerror or exc}") from None
    logger.info("merged %s -> %s", source, out)
    return meta
