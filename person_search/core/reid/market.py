"""Re-id evaluation on a Market-1501-style folder, under the standard protocol.

Layout: ``<DIR>/query/`` and ``<DIR>/bounding_box_test/`` hold crops named
``PPPP_cCsS_FFFFFF_NN.jpg`` (person id, camera, sequence, frame, box). As in Market-1501's
own evaluation and Torchreid's ``eval_market1501``:

* files of person id ``-1`` (junk boxes) are left out of both sets;
* person ``0000`` (distractors) stays in the gallery as a wrong answer for every query;
* for each query, the gallery entries of the same person *and* the same camera are removed
  (finding a person again in the camera that just saw them is not re-identification);
* a query with no correct answer left is skipped; CMC is the share of queries whose first
  correct answer is within rank k; AP is the mean precision at the rank of each correct answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

NAME = re.compile(r"^(-?\d+)_c(\d+)(?:s\d+)?_")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
QUERY_DIR, GALLERY_DIR = "query", "bounding_box_test"


class ReidDataError(ValueError):
    """A Market-1501 folder is missing, empty, or holds names outside the layout."""


def parse_name(name: str) -> Tuple[int, int]:
    """Return (person id, camera id) of ``PPPP_cCsS_FFFFFF_NN.jpg``; ReidDataError when the name does not fit."""
    m = NAME.match(name)
    if not m:
        raise ReidDataError(f"{name}: not a Market-1501 name (expected PPPP_cCsS_FFFFFF_NN.jpg, e.g. "
                            f"0002_c1s1_000451_03.jpg)")
    return int(m.group(1)), int(m.group(2))


@dataclass
class Split:
    """The images of one folder: paths, person ids, camera ids (junk -1 already left out)."""

    paths: List[Path]
    pids: np.ndarray
    camids: np.ndarray
    junk: int = 0


def read_split(folder: Path) -> Split:
    """List one folder of the layout (images only, sorted), parsing every name."""
    if not folder.is_dir():
        raise ReidDataError(f"{folder}: no such folder (a Market-1501 layout has query/ and bounding_box_test/)")
    paths, pids, cams, junk = [], [], [], 0
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_EXTS or not p.is_file():
            continue  # Thumbs.db and the like
        pid, cam = parse_name(p.name)
        if pid == -1:
            junk += 1
            continue
        paths.append(p)
        pids.append(pid)
        cams.append(cam)
    if not paths:
        raise ReidDataError(f"{folder}: no images with a person id (>= 0)")
    return Split(paths, np.asarray(pids, np.int64), np.asarray(cams, np.int64), junk)


def read_market(root: str | Path) -> Tuple[Split, Split]:
    """Return the (query, gallery) splits of a Market-1501-style folder."""
    root = Path(root)
    if not root.is_dir():
        raise ReidDataError(f"{root}: no such folder")
    return read_split(root / QUERY_DIR), read_split(root / GALLERY_DIR)


def market_metrics(dist: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_cams: np.ndarray,
                   g_cams: np.ndarray, max_rank: int = 50) -> Dict[str, object]:
    """CMC and mAP of a (Q, G) distance matrix (smaller = more alike) under the standard protocol.

    Returns:
        ``cmc`` (list of max_rank floats), ``mAP``, ``rank1``/``rank5``/``rank10``, ``queries``
        (evaluated), ``skipped`` (no correct answer in another camera).
    """
    dist = np.asarray(dist, np.float64)
    q, g = dist.shape
    order = np.argsort(dist, axis=1, kind="stable")
    hits = np.zeros(max_rank, np.float64)
    aps: List[float] = []
    for i in range(q):
        ranked = order[i]
        valid = ~((g_pids[ranked] == q_pids[i]) & (g_cams[ranked] == q_cams[i]))
        rel = (g_pids[ranked] == q_pids[i])[valid]
        pos = np.flatnonzero(rel)  # 0-based ranks of the correct answers among the kept entries
        if pos.size == 0:
            continue
        if pos[0] < max_rank:
            hits[pos[0]:] += 1
        aps.append(float(np.mean(np.arange(1, pos.size + 1) / (pos + 1))))
    n = len(aps)
    if n == 0:
        raise ReidDataError("no query has a correct answer in another camera's gallery images")
    cmc = hits / n
    pad = lambda k: float(cmc[min(k, max_rank) - 1])  # noqa: E731 - three lookups
    return {"cmc": cmc.tolist(), "mAP": float(np.mean(aps)), "rank1": pad(1), "rank5": pad(5), "rank10": pad(10),
            "queries": n, "skipped": q - n, "gallery": g}


def load_crops(paths: Sequence[Path]) -> List[np.ndarray]:
    """Read BGR crops; ReidDataError names an unreadable file."""
    import cv2

    out = []
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None or img.size == 0:
            raise ReidDataError(f"{p}: not a readable image")
        out.append(img)
    return out


def evaluate_market(root: str | Path, encode: Callable[[Sequence[np.ndarray]], np.ndarray],
                    batch: int = 64) -> Dict[str, object]:
    """Encode every crop of a Market-1501 folder and score it (cosine distance, standard protocol)."""
    query, gallery = read_market(root)

    def feats(split: Split) -> np.ndarray:
        chunks = [encode(load_crops(split.paths[i:i + batch])) for i in range(0, len(split.paths), batch)]
        return np.concatenate(chunks, axis=0)

    qf, gf = feats(query), feats(gallery)
    res = market_metrics(1.0 - qf @ gf.T, query.pids, gallery.pids, query.camids, gallery.camids)
    res.update({"data": str(root), "query_images": len(query.paths), "gallery_images": len(gallery.paths),
                "junk_left_out": query.junk + gallery.junk, "ids": int(np.unique(query.pids).size)})
    return res
