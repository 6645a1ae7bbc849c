"""Image-text matching losses: symmetric InfoNCE (CLIP) and IRRA's SDM.

Both take raw (unnormalised) features, normalise them in float32 and scale the cosine
similarities by ``scale`` (exp of the model's logit scale; IRRA fixes it at 50).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _cosine(image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    return F.normalize(image.float(), dim=-1) @ F.normalize(text.float(), dim=-1).t()


def infonce(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """Return the symmetric InfoNCE loss: pair i is the positive of row i, all others negatives.

    Args:
        image, text: (N, D) features of N matching pairs.
        scale: the logit scale (a tensor when it is learnt).
    """
    logits = scale * _cosine(image, text)
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def sdm(image: torch.Tensor, text: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor | float,
        epsilon: float = 1e-8) -> torch.Tensor:
    """Return IRRA's similarity distribution matching loss (identity-aware, both directions).

    KL(softmax(scale * sim) || q) for image->text and text->image, where q is the row-normalised
    label-match matrix: every caption of the same person is a positive, not only the paired one.
    [Jiang & Ye, CVPR 2023, ``compute_sdm`` in anosorae/IRRA model/objectives.py]

    Args:
        image, text: (N, D) features of N pairs.
        labels: (N,) person labels of the pairs.
        scale: the logit scale.
        epsilon: keeps log(q) finite where q is 0.
    """
    labels = labels.reshape(-1, 1)
    match = (labels == labels.t()).float()
    target = match / match.sum(dim=1, keepdim=True)
    log_target = torch.log(target + epsilon)
    i2t = scale * _cosine(image, text)
    loss = 0.0
    for logits in (i2t, i2t.t()):
        log_p = F.log_softmax(logits, dim=1)
        loss = loss + (log_p.exp() * (log_p - log_target)).sum(dim=1).mean()
    return loss


def matching_loss(kind: str, image: torch.Tensor, text: torch.Tensor, labels: torch.Tensor,
                  scale: torch.Tensor | float, sdm_weight: float = 1.0) -> torch.Tensor:
    """Return the training loss ``kind``: "infonce" or "infonce+sdm"."""
    loss = infonce(image, text, scale)
    if kind == "infonce+sdm":
        loss = loss + sdm_weight * sdm(image, text, labels, scale)
    elif kind != "infonce":
        raise ValueError(f"unknown loss {kind!r}")
    return loss
