"""Evaluate a CLIP encoder on a dataset split: every caption queries every image.

:func:`evaluate` encodes the gallery images and the query captions (batched, with progress
bars), takes text x image cosine similarities and computes the text-to-image metrics of
:mod:`person_search.lab.eval.metrics` (image-to-text as an option).

What ``person-search eval --weights`` reads is the model contract of
:mod:`person_search.core.models.run` (:func:`~person_search.core.models.run.servable`): a
checkpoint file (its sidecar ``FILE.json``, when present, says the arch, size and attention it
was trained with), or a training run folder (``best.safetensors``, else ``last``, and its
``model.json``, read strictly).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np
from tqdm import tqdm

from person_search.lab.data.datasets import EvalView
from person_search.lab.data.torchdata import read_image
from person_search.lab.eval.metrics import retrieval_metrics


class CheckpointError(ValueError):
    """A --weights path that is neither a checkpoint nor a run folder holding one."""


def build_encoder(cfg):
    """Build the CLIP encoder for ``cfg`` (an ``EncoderConfig``): the one place that names the class.

    Raises:
        CheckpointError: the weights cannot be found, read or loaded into ``cfg.arch``.
    """
    from person_search.core.clip_encoder import ClipEncoder
    from person_search.core.models.weights import WeightsError
    try:
        return ClipEncoder(cfg, towers=("image", "text"))
    except WeightsError as e:
        raise CheckpointError(str(e)) from e


def resolve_checkpoint(path):
    """Return (checkpoint file, ``ServingFacts`` or None) for a checkpoint file or a training run folder.

    Raises:
        CheckpointError: nothing usable there, or a model.json / sidecar that is not ours.
    """
    from person_search.core.models.run import RunError, servable
    try:
        return servable(path)
    except (OSError, RunError) as exc:
        raise CheckpointError(f"--weights {exc}") from None


@dataclass
class EvalResult:
    """What :func:`evaluate` measured.

    Attributes:
        t2i: text-to-image metrics (R1, R5, R10, mAP, mINP in percent; cmc array).
        i2t: image-to-text metrics, when asked for.
        sim: (queries, gallery) float32 text x image cosine similarities.
        view: the queries and gallery that were ranked.
        model_id: the encoder's model id.
        extra: further rows (name -> metrics), e.g. a subset of the queries (:meth:`queries_of`).
    """

    t2i: Dict[str, object]
    sim: np.ndarray
    view: EvalView
    model_id: str
    i2t: Optional[Dict[str, object]] = None
    extra: Dict[str, Dict[str, object]] = field(default_factory=dict)
    chance_rank1: float = field(init=False)

    def __post_init__(self) -> None:
        self.chance_rank1 = self.view.chance_rank1()

    def table(self) -> str:
        """Return the metrics as a small text table, the extra rows last."""
        rows = [("t2i", self.t2i)] + ([("i2t", self.i2t)] if self.i2t else []) + list(self.extra.items())
        width = max(5, *(len(n) + 1 for n, _ in rows))
        lines = [f"{'task':<{width}}{'R1':>8}{'R5':>8}{'R10':>8}{'mAP':>8}{'mINP':>8}"]
        lines += [f"{n:<{width}}" + "".join(f"{m[k]:>8.2f}" for k in ("R1", "R5", "R10", "mAP", "mINP"))
                  for n, m in rows]
        return "\n".join(lines)

    def queries_of(self, pids) -> Dict[str, object]:
        """Return the text-to-image metrics of the queries of persons ``pids`` against the whole gallery."""
        keep = np.isin(self.view.caption_pids, np.asarray(list(pids), np.int64))
        if not keep.any():
            raise ValueError("none of the queries belongs to the given person ids")
        return retrieval_metrics(self.sim[keep], self.view.caption_pids[keep], self.view.image_pids)

    def summary(self) -> Dict[str, object]:
        """Return the metrics without arrays (JSON-ready)."""
        def plain(m):
            return {k: round(float(v), 4) for k, v in m.items() if k != "cmc"}
        out = {"model_id": self.model_id, "queries": len(self.view.captions), "gallery": len(self.view.image_paths),
               "chance_rank1": round(self.chance_rank1, 4), "t2i": plain(self.t2i)}
        if self.i2t:
            out["i2t"] = plain(self.i2t)
        out.update({name: plain(m) for name, m in self.extra.items()})
        return out


def encode_view(encoder, view: EvalView, *, batch_size: int = 64,
                progress: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Encode the gallery images and the query captions of ``view``.

    Args:
        encoder: a ClipEncoder (``encode_images`` on BGR crops, ``encode_text`` on strings).
        view: the split's gallery and queries.
        batch_size: images / captions per call.
        progress: show progress bars.

    Returns:
        (text embeddings (Q, D), image embeddings (G, D)), L2-normalised float32.
    """
    paths, caps = view.image_paths, view.captions
    img, txt = [], []
    with tqdm(total=len(paths), desc="images", unit="img", disable=not progress) as bar:
        for i in range(0, len(paths), batch_size):
            img.append(encoder.encode_images([read_image(p) for p in paths[i:i + batch_size]]))
            bar.update(len(img[-1]))
    with tqdm(total=len(caps), desc="captions", unit="caption", disable=not progress) as bar:
        for i in range(0, len(caps), batch_size):
            txt.append(encoder.encode_text(caps[i:i + batch_size]))
            bar.update(len(txt[-1]))
    return np.concatenate(txt).astype(np.float32), np.concatenate(img).astype(np.float32)


def evaluate(encoder, view: EvalView, *, batch_size: int = 64, i2t: bool = False,
             progress: bool = True) -> EvalResult:
    """Rank every gallery image for every caption and compute the retrieval metrics.

    Args:
        encoder: a ClipEncoder with both towers.
        view: ``split.eval_view()``.
        batch_size: images / captions per encoder call.
        i2t: also rank the captions for every image (image-to-text).
        progress: show progress bars.

    Returns:
        the metrics, the similarity matrix and the view.
    """
    txt, img = encode_view(encoder, view, batch_size=batch_size, progress=progress)
    sim = txt @ img.T
    t2i = retrieval_metrics(sim, view.caption_pids, view.image_pids)
    i2t_m = retrieval_metrics(sim.T, view.image_pids, view.caption_pids) if i2t else None
    return EvalResult(t2i=t2i, sim=sim, view=view, model_id=encoder.model_id, i2t=i2t_m)
