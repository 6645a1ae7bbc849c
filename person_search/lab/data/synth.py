"""Generate a text-based person search dataset a model can learn and cannot cheat on.

``person-search data synth OUT --ids N --images-per-id K --seed S`` writes the CUHK-PEDES
layout (``OUT/reid_raw.json`` + ``OUT/imgs/<split>/*.jpg``), read by the same loader
(``--format cuhk-pedes``), plus ``OUT/stats.json``.

Why it is honest:

* Identities are attribute sets (:mod:`.attributes`); every caption is written from the
  attributes the image shows (:mod:`.captions`), so a caption can be derived from the pixels.
* Every nuisance is drawn per image (:mod:`.render`): pose, scale, position, view, skin
  tone, background, lighting, occlusion. No pixel, background or file name is tied to an
  identity; the only stable signal is the clothing the captions describe.
* No two identities share a full attribute combination, and train / val / test are
  identity-disjoint, so every val / test identity is a combination never seen in training.
  Beyond that, a few attribute-value pairs (e.g. upper=red with lower=skirt) are held out
  of training altogether and forced onto half of the val / test identities: the
  unseen-combination test (``stats.json``: ``held_out_pairs``, ``<split>_held_out_pair_ids``;
  ``person-search eval`` reports those identities' queries as an extra row).
* ``stats.json`` gives the chance Rank-1 of the test and val splits (expected Rank-1 of a
  random ranking: mean over queries of positives / gallery size). Figures measured on this
  data are figures on generated data: never compare them with CUHK-PEDES numbers.

``--domain shifted`` draws other backgrounds (park instead of street), darker tinted noisy
light, and garment colours never used in the base domain (purple, orange), for measuring
domain transfer. The output is deterministic for a seed.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from person_search.lab.data.attributes import DOMAINS, NONE, PAIRABLE, combo, sample_identity, values
from person_search.lab.data.captions import describe
from person_search.lab.data.datasets import load_dataset
from person_search.lab.data.render import render_person

logger = logging.getLogger(__name__)

CAPTIONS_PER_IMAGE = 2
HELD_OUT_PAIRS = 3
JPEG_QUALITY = 92
MAX_TRIES = 200
MARKER = ".person_search_synth"  # written into OUT first: --force removes only what a folder with it holds


class SynthError(ValueError):
    """Arguments the generator cannot honour (too few ids, an occupied output folder, ...)."""


@dataclass(frozen=True)
class SynthConfig:
    """What to generate.

    Attributes:
        ids: number of identities in all splits together.
        images_per_id: images of every identity.
        seed: the seed everything is drawn from.
        domain: "base" or "shifted".
        size: (H, W) of the images.
        val_ids, test_ids: identities of the val and test splits (-1 = 10 % each, at least 1).
    """

    ids: int
    images_per_id: int = 4
    seed: int = 0
    domain: str = "base"
    size: Tuple[int, int] = (192, 96)
    val_ids: int = -1
    test_ids: int = -1

    def split_sizes(self) -> Dict[str, int]:
        """Return the number of identities per split, checked."""
        default = max(1, round(0.1 * self.ids))
        val = default if self.val_ids < 0 else self.val_ids
        test = default if self.test_ids < 0 else self.test_ids
        sizes = {"train": self.ids - val - test, "val": val, "test": test}
        if sizes["train"] < 1 or test < 1 or val < 0:
            raise SynthError(f"--ids {self.ids} cannot hold {val} val + {test} test identities and a train split")
        if self.images_per_id < 1:
            raise SynthError("--images-per-id must be >= 1")
        if self.domain not in DOMAINS:
            raise SynthError(f"--domain must be one of {', '.join(DOMAINS)}, not {self.domain!r}")
        if self.size[0] < 64 or self.size[1] < 32:
            raise SynthError(f"--size {self.size[1]}x{self.size[0]} (WxH) is too small (at least 32 wide, 64 tall)")
        return sizes


def parse_size(text: str) -> Tuple[int, int]:
    """Parse "HxW" (e.g. "384x128") into (H, W).

    Raises:
        ValueError: not two positive integers joined by "x".
    """
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f"size {text!r} is not HxW (e.g. 384x128)")
    return int(m.group(1)), int(m.group(2))


def held_out_pairs(rng: np.random.Generator, domain: str, n: int = HELD_OUT_PAIRS) -> List[Tuple[Tuple[str, str], ...]]:
    """Draw ``n`` attribute-value pairs (two different attributes, no "none") kept out of training."""
    pairs: List[Tuple[Tuple[str, str], ...]] = []
    while len(pairs) < n:
        a, b = (str(x) for x in rng.choice(PAIRABLE, 2, replace=False))
        pair = tuple(sorted((k, str(rng.choice([v for v in values(k, domain) if v != NONE]))) for k in (a, b)))
        if pair not in pairs:
            pairs.append(pair)
    return pairs


def _has_pair(attrs: Dict[str, str], pairs) -> bool:
    return any(all(attrs[k] == v for k, v in p) for p in pairs)


def sample_identities(cfg: SynthConfig) -> Tuple[Dict[str, List[Dict[str, str]]], list]:
    """Draw every identity, unique combinations, held-out pairs only outside training.

    Returns:
        ({split: [attributes, ...]}, the held-out pairs).
    """
    rng = np.random.default_rng([cfg.seed, DOMAINS.index(cfg.domain)])
    pairs = held_out_pairs(rng, cfg.domain)
    seen = set()
    out: Dict[str, List[Dict[str, str]]] = {}
    for split, n in (("test", cfg.split_sizes()["test"]), ("val", cfg.split_sizes()["val"]),
                     ("train", cfg.split_sizes()["train"])):
        out[split] = []
        for i in range(n):
            force = pairs[i % len(pairs)] if split != "train" and i < (n + 1) // 2 else None
            for _ in range(MAX_TRIES):
                a = sample_identity(rng, cfg.domain, force)
                if combo(a) not in seen and (split != "train" or not _has_pair(a, pairs)) \
                        and (force is None or _has_pair(a, [force])):
                    break
            else:
                raise SynthError(f"could not draw {n} distinct {split} identities in {MAX_TRIES} tries each")
            seen.add(combo(a))
            out[split].append(a)
    return out, pairs


def _tokens(caption: str) -> List[str]:
    return re.findall(r"[a-z0-9\-]+", caption.lower())


def generate(out: Path, cfg: SynthConfig, *, force: bool = False, progress: bool = True) -> dict:
    """Write the dataset to ``out`` and return its statistics (also in ``out/stats.json``).

    Args:
        out: the output folder (created).
        cfg: what to generate.
        force: replace an earlier dataset in ``out``; only one this generator wrote (``MARKER`` file), never
            a folder it did not create.
        progress: show a progress bar.

    Returns:
        the statistics: counts per split, chance Rank-1, held-out pairs, seconds taken.

    Raises:
        SynthError: bad arguments, ``out`` already holds a dataset and not ``force``, or ``out`` holds a
            dataset or ``imgs/`` this generator did not write (with or without ``force``).
    """
    out = Path(out).expanduser()
    sizes = cfg.split_sizes()
    ours = (out / MARKER).is_file()
    if not ours and any((out / n).exists() for n in ("reid_raw.json", "imgs", "stats.json")):
        raise SynthError(f"{out} holds files that data synth did not write (no {MARKER}): "
                         "pick an empty or new folder, or remove them yourself")
    if (out / "reid_raw.json").exists() and not force:
        raise SynthError(f"{out} already holds a dataset (reid_raw.json); use --force to replace it")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by person-search data synth; --force replaces reid_raw.json, "
                              "stats.json and imgs/ of this folder\n")
    if force and ours and (out / "imgs").is_dir():
        shutil.rmtree(out / "imgs")
    t0, c0 = time.perf_counter(), time.process_time()
    identities, pairs = sample_identities(cfg)
    records = []
    pid = 0
    held: Dict[str, List[int]] = {"train": [], "val": [], "test": []}
    total = cfg.ids * cfg.images_per_id
    bar = tqdm(total=total, unit="img", desc="rendering", disable=not progress, leave=False)
    for split in ("train", "val", "test"):
        (out / "imgs" / split).mkdir(parents=True, exist_ok=True)
        for attrs in identities[split]:
            pid += 1
            if _has_pair(attrs, pairs):
                held[split].append(pid)
            for k in range(cfg.images_per_id):
                rng = np.random.default_rng([cfg.seed, DOMAINS.index(cfg.domain), pid, k])
                r = render_person(attrs, rng, cfg.size, cfg.domain)
                rel = f"{split}/{pid:05d}_{k:02d}.jpg"
                cv2.imwrite(str(out / "imgs" / rel), r.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                caps = [describe(attrs, r.hidden, rng) for _ in range(CAPTIONS_PER_IMAGE)]
                records.append({"split": split, "captions": caps, "file_path": rel,
                                "processed_tokens": [_tokens(c) for c in caps], "id": pid,
                                "attributes": attrs, "hidden": sorted(r.hidden), "view": r.view})
                bar.update(1)
    bar.close()
    with open(out / "reid_raw.json", "w", encoding="utf-8") as f:
        json.dump(records, f)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    ds = load_dataset(out, "cuhk-pedes")
    stats = {
        "generator": "person_search.lab.data.synth", "note": "generated data: never compare with CUHK-PEDES figures",
        "seed": cfg.seed, "domain": cfg.domain, "size": list(cfg.size), "images_per_id": cfg.images_per_id,
        "ids": sizes, "images": {s: len(ds.splits[s]) for s in ds.splits},
        "captions": {s: ds.splits[s].num_captions for s in ds.splits},
        "chance_rank1": {s: round(ds.splits[s].eval_view().chance_rank1(), 4) for s in ("val", "test")
                         if s in ds.splits},
        "held_out_pairs": [dict(p) for p in pairs],
        **{f"{s}_held_out_pair_ids": held[s] for s in ("val", "test")},
        "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
        "images_per_second": round(total / max(seconds, 1e-9), 1),
    }
    with open(out / "stats.json", "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=2)
    return stats


def format_stats(stats: dict, out: Path) -> Sequence[str]:
    """Return the lines ``data synth`` prints."""
    lines = [f"{out}: generated {stats['domain']} data, seed {stats['seed']}, "
             f"{stats['size'][1]}x{stats['size'][0]} px (WxH), {stats['seconds']:.1f} s "
             f"({stats['images_per_second']:.0f} images/s, {stats['cpu_seconds']:.1f} s CPU)"]
    for s in ("train", "val", "test"):
        if s in stats["images"]:
            lines.append(f"  {s:<5} {stats['ids'][s]:>6} ids {stats['images'][s]:>7} images "
                         f"{stats['captions'][s]:>7} captions")
    lines.append("  chance Rank-1: " + ", ".join(f"{s} {v:.2f} %" for s, v in stats["chance_rank1"].items()))
    lines.append("  held out of training: " + "; ".join(" + ".join(f"{k}={v}" for k, v in p.items())
                                                        for p in stats["held_out_pairs"])
                 + f" (worn by {len(stats['test_held_out_pair_ids'])} test identities)")
    return lines
