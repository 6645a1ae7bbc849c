"""Figures of an evaluation: the CMC curve (matplotlib, Agg) and a top-k contact sheet (OpenCV)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Dict, Optional, Sequence

import cv2
import numpy as np

from person_search.lab.data.datasets import EvalView
from person_search.lab.data.torchdata import read_image

GREEN, RED = (40, 170, 40), (40, 40, 220)  # BGR


def plot_cmc(curves: Dict[str, np.ndarray], path, *, title: str = "", max_rank: int = 50,
             chance: Optional[np.ndarray] = None) -> Path:
    """Write a CMC curve PNG.

    Args:
        curves: label -> CMC in percent (``cmc[k - 1]`` = CMC@k).
        path: the PNG to write.
        title: the figure title (say there when the data is generated).
        max_rank: last rank shown.
        chance: the CMC of a random ranking (``metrics.chance_cmc``), drawn dashed.

    Returns:
        the path written.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for label, cmc in curves.items():
        k = np.arange(1, min(max_rank, len(cmc)) + 1)
        ax.plot(k, cmc[:len(k)], marker=".", label=label)
    if chance is not None:
        k = np.arange(1, min(max_rank, len(chance)) + 1)
        ax.plot(k, chance[:len(k)], "k--", lw=1, label=f"random ranking (R1 {chance[0]:.2f} %)")
    ax.set_xlabel("rank k")
    ax.set_ylabel("CMC@k (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("\n".join(textwrap.wrap(title, 90)), fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def topk_sheet(view: EvalView, sim: np.ndarray, path, *, queries: Sequence[int], k: int = 5,
               cell=(64, 128), title: str = "") -> Path:
    """Write a contact sheet: per query its caption, then the top-k gallery images.

    A green border marks an image of the query's person, a red one any other person.

    Args:
        view: the ranked queries and gallery.
        sim: (queries, gallery) similarities.
        path: the PNG to write.
        queries: indices of the queries to show.
        k: images per query.
        cell: (width, height) of an image.
        title: written at the top.

    Returns:
        the path written.
    """
    cw, ch = cell
    width = 8 + k * (cw + 8)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    chars = max(20, int(width / 7.5))
    blocks = []
    if title:
        blocks.append(_text_block(textwrap.wrap(title, chars), width, font, scale))
    for qi in queries:
        lines = textwrap.wrap(f"q{qi} (pid {view.caption_pids[qi]}): {view.captions[qi]}", chars)
        row = np.full((ch + 26, width, 3), 255, np.uint8)
        for r, gi in enumerate(np.argsort(-sim[qi], kind="stable")[:k]):
            img = cv2.resize(read_image(view.image_paths[gi]), (cw - 6, ch - 6), interpolation=cv2.INTER_AREA)
            x0 = 8 + r * (cw + 8)
            colour = GREEN if view.image_pids[gi] == view.caption_pids[qi] else RED
            row[0:ch, x0:x0 + cw] = colour
            row[3:ch - 3, x0 + 3:x0 + cw - 3] = img
            cv2.putText(row, f"{r + 1}: {sim[qi, gi]:.3f}", (x0, ch + 16), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
        blocks += [_text_block(lines, width, font, scale), row]
    cv2.imwrite(str(path), np.vstack(blocks))
    return Path(path)


def _text_block(lines: Sequence[str], width: int, font, scale: float) -> np.ndarray:
    block = np.full((8 + 16 * len(lines), width, 3), 255, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(block, line, (8, 18 + 16 * i), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return block
