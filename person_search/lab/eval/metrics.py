"""Retrieval metrics of text-based person search, as IRRA's ``utils/metrics.py`` ``rank()`` defines them.

For every query the whole gallery is ranked by similarity (highest first), then:

* CMC@k: 1 when a correct match (same person id) is among the first k, else 0; averaged
  over queries. R1 / R5 / R10 are CMC@1 / @5 / @10.
* AP: mean over the query's positives of (positives found so far / rank of that positive).
* INP: positives / rank of the last positive; mINP is its mean.

All in percent. Ties are ordered as a stable argsort of ``-sim`` orders them (gallery
order among equal scores); IRRA's ``torch.argsort(descending=True)`` leaves tie order to
the backend, so results differ from it only where scores tie exactly. A query without a
single positive in the gallery is an error (IRRA's code fails on it too).
"""

from __future__ import annotations

from typing import Dict

import numpy as np

CHUNK = 512  # queries ranked at once: bounds memory at CHUNK x gallery int64


def retrieval_metrics(sim: np.ndarray, query_pids, gallery_pids) -> Dict[str, object]:
    """Rank the gallery for every query and return R1, R5, R10, mAP, mINP (percent) and the CMC curve.

    Args:
        sim: (Q, G) similarities, higher = more alike (text x image cosine for text-to-image).
        query_pids: (Q,) person ids of the queries.
        gallery_pids: (G,) person ids of the gallery.

    Returns:
        ``{"R1", "R5", "R10", "mAP", "mINP": float, "cmc": (G,) float64 array}`` where
        ``cmc[k - 1]`` is CMC@k in percent. R5 / R10 equal the last CMC value when the
        gallery holds fewer images.

    Raises:
        ValueError: shapes disagree, or a query has no positive in the gallery.
    """
    sim = np.asarray(sim)
    q = np.asarray(query_pids).reshape(-1)
    g = np.asarray(gallery_pids).reshape(-1)
    if sim.ndim != 2 or sim.shape != (len(q), len(g)) or not len(q) or not len(g):
        raise ValueError(f"sim must be (queries, gallery) = ({len(q)}, {len(g)}) and non-empty, not {sim.shape}")
    if not np.all(np.isfinite(sim)):
        raise ValueError("sim holds NaN or infinite values")
    first = np.empty(len(q), np.int64)
    ap = np.empty(len(q), np.float64)
    inp = np.empty(len(q), np.float64)
    for s in range(0, len(q), CHUNK):
        order = np.argsort(-sim[s:s + CHUNK], axis=1, kind="stable")
        matches = g[order] == q[s:s + CHUNK, None]
        npos = matches.sum(1)
        if np.any(npos == 0):
            bad = s + int(np.flatnonzero(npos == 0)[0])
            raise ValueError(f"query {bad} (pid {q[bad]}) has no positive in the gallery; "
                             f"{int((npos == 0).sum())} such queries in rows {s}..{s + len(npos) - 1}")
        ranks = np.arange(1, len(g) + 1, dtype=np.float64)
        hits = matches.cumsum(1)
        first[s:s + CHUNK] = matches.argmax(1)
        ap[s:s + CHUNK] = (hits / ranks * matches).sum(1) / npos
        last = len(g) - 1 - matches[:, ::-1].argmax(1)
        inp[s:s + CHUNK] = npos / (last + 1.0)
    cmc = np.cumsum(np.bincount(first, minlength=len(g))[:len(g)]) / len(q) * 100.0
    at = lambda k: float(cmc[min(k, len(g)) - 1])  # noqa: E731
    return {"R1": at(1), "R5": at(5), "R10": at(10), "mAP": float(ap.mean() * 100.0),
            "mINP": float(inp.mean() * 100.0), "cmc": cmc}


def chance_cmc(query_pids, gallery_pids, max_rank: int = 50) -> np.ndarray:
    """Return the expected CMC (%) of a uniformly random ranking, ranks 1..max_rank.

    A query with P positives among G images misses all of them in the first k with
    probability prod_{i<k} (G - P - i) / (G - i); ``[0]`` is the chance Rank-1 (mean P / G).

    Args:
        query_pids: (Q,) person ids of the queries.
        gallery_pids: (G,) person ids of the gallery.
        max_rank: the last rank (capped at G).

    Returns:
        (min(max_rank, G),) float64 array in percent.
    """
    g = np.asarray(gallery_pids).reshape(-1)
    ids, counts = np.unique(g, return_counts=True)
    pos = dict(zip(ids.tolist(), counts.tolist()))
    p = np.array([pos.get(int(v), 0) for v in np.asarray(query_pids).reshape(-1)], np.float64)[:, None]
    i = np.arange(min(max_rank, len(g)), dtype=np.float64)[None, :]
    miss = np.cumprod(np.clip((len(g) - p - i) / (len(g) - i), 0.0, 1.0), axis=1)
    return (1.0 - miss).mean(0) * 100.0
