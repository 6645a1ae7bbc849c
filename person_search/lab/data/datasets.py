"""Text-based person search datasets in the layouts their users download (and IRRA / RDE read).

=============  ==========================================  ==============  =================
``--format``   annotation file (in ``root``)               image key       splits
=============  ==========================================  ==============  =================
cuhk-pedes     ``reid_raw.json``                           ``file_path``   train / val / test
icfg-pedes     ``ICFG-PEDES.json`` (or ``ICFG_PEDES.json``)  ``file_path``   train / test
rstpreid       ``data_captions.json``                      ``img_path``    train / val / test
=============  ==========================================  ==============  =================

A format is a :class:`DatasetFormat` in the :data:`FORMATS` registry (:func:`register_format`):
a new one brings its own reader and record parser. The three above are IRRA's layout:
each file is one JSON list of ``{"split", "captions": [...], <image key>, "id", ...}``
records, image paths relative to ``root/imgs/``. Extra keys (``processed_tokens``, the
generated set's ``attributes``) are ignored. ``root`` may also be the folder above, holding
``CUHK-PEDES/``, ``ICFG-PEDES/`` or ``RSTPReid/`` as IRRA expects.

Person ids: the train split gets contiguous labels 0..N-1 (sorted by the original id, which
stays in :attr:`Record.source_pid`); val and test keep the original ids, which is all the
retrieval metrics need (same id = correct match). Splits are taken as the file says; an id
found in two splits is logged as a warning (the standard files are identity-disjoint).

Every problem with the files (unreadable or malformed JSON, a missing key or a wrong type,
missing images, an empty split) is one :class:`DatasetError` naming the file and the record.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


ParsedRecord = Tuple[str, str, int, Tuple[str, ...]]  # split, image path (under imgs/), person id, captions


@dataclass(frozen=True)
class DatasetFormat:
    """A dataset format: where it keeps its annotations, how to read them and how to parse a record.

    ``read(path) -> list`` returns the raw records of the annotation file and
    ``parse(path, i, record, fmt) -> (split, image, pid, captions)`` one of them (raising
    :class:`DatasetError` with the record's position); the defaults read IRRA's JSON lists.
    A new format is one :func:`register_format` call; the loader is not edited.
    """

    name: str
    folder: str  # the folder name IRRA puts under its root
    files: Tuple[str, ...]  # annotation file names, first found wins
    image_key: str
    splits: Tuple[str, ...]
    read: Callable[[Path], list] = field(default=None, compare=False)  # None = _read_json
    parse: Callable[..., ParsedRecord] = field(default=None, compare=False)  # None = parse_irra_record


FORMATS: Dict[str, DatasetFormat] = {}


def register_format(fmt: DatasetFormat) -> DatasetFormat:
    """Add ``fmt`` to :data:`FORMATS` (``--format NAME``); a name taken already is an error."""
    if fmt.name in FORMATS:
        raise ValueError(f"dataset format {fmt.name!r} is registered already")
    FORMATS[fmt.name] = fmt
    return fmt


MAX_LISTED_MISSING = 5


class DatasetError(ValueError):
    """A dataset folder or annotation file that cannot be used; the message names file and record."""


@dataclass(frozen=True)
class Record:
    """One image of a split with its person id and captions.

    Attributes:
        image: absolute path of the image file.
        pid: training label (0..N-1) in the train split, the original id elsewhere.
        captions: the image's descriptions (at least one).
        source_pid: the id as the annotation file has it.
        index: the record's position in the annotation file (for messages).
    """

    image: Path
    pid: int
    captions: Tuple[str, ...]
    source_pid: int
    index: int


@dataclass
class EvalView:
    """The standard retrieval protocol on one split: every caption queries every image.

    Attributes:
        image_paths: the gallery, one entry per image.
        image_pids: (G,) int64 person ids of the gallery.
        captions: the queries, every caption of every image.
        caption_pids: (Q,) int64 person ids of the queries.
        caption_image: (Q,) int64 index into the gallery of the image each caption describes.
    """

    image_paths: List[Path]
    image_pids: np.ndarray
    captions: List[str]
    caption_pids: np.ndarray
    caption_image: np.ndarray

    def chance_rank1(self) -> float:
        """Return the expected Rank-1 (%) of a random ranking: mean over queries of positives / gallery.

        (``eval.metrics.chance_cmc`` gives the whole curve; its first point is this.)
        """
        positives = (self.caption_pids[:, None] == self.image_pids[None, :]).sum(1)
        return float(positives.mean() / len(self.image_pids) * 100.0)


@dataclass
class Split:
    """The records of one split.

    Attributes:
        name: "train", "val" or "test".
        records: one per image.
        source: the annotation file it came from.
    """

    name: str
    records: List[Record]
    source: Path
    num_ids: int = field(init=False)

    def __post_init__(self) -> None:
        self.num_ids = len({r.pid for r in self.records})

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_captions(self) -> int:
        """Return the number of captions (= training pairs, = evaluation queries)."""
        return sum(len(r.captions) for r in self.records)

    def pairs(self) -> List[Tuple[int, int]]:
        """Return (record index, caption index) for every caption: one training sample each, as IRRA."""
        return [(i, j) for i, r in enumerate(self.records) for j in range(len(r.captions))]

    def eval_view(self) -> EvalView:
        """Return the gallery (all images) and queries (all captions) of this split."""
        caps, cpids, cimg = [], [], []
        for i, r in enumerate(self.records):
            caps.extend(r.captions)
            cpids.extend([r.pid] * len(r.captions))
            cimg.extend([i] * len(r.captions))
        return EvalView([r.image for r in self.records], np.array([r.pid for r in self.records], np.int64),
                        caps, np.array(cpids, np.int64), np.array(cimg, np.int64))


@dataclass
class PersonTextDataset:
    """A loaded dataset: its format, root and the records of each split present in the file."""

    fmt: DatasetFormat
    root: Path
    annotations: Path
    splits: Dict[str, Split]

    def split(self, name: str) -> Split:
        """Return split ``name``.

        Raises:
            DatasetError: the split is not one of the format's or has no records in the file.
        """
        if name not in self.fmt.splits:
            raise DatasetError(f"{self.annotations}: {self.fmt.name} has no {name!r} split "
                               f"(it has {', '.join(self.fmt.splits)})")
        if name not in self.splits:
            raise DatasetError(f"{self.annotations}: the {name!r} split is empty (no record has split={name!r})")
        return self.splits[name]

    @property
    def generated(self) -> bool:
        """Return True for data written by ``person-search data synth`` (its stats.json says so)."""
        return bool(self.generator_stats())

    def generator_stats(self) -> Dict:
        """Return the generator's ``stats.json`` beside the annotations, or ``{}`` for other data."""
        try:
            stats = json.loads((self.annotations.parent / "stats.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return stats if isinstance(stats, dict) and "generator" in stats else {}

    def summary(self) -> str:
        """Return one line per split: ids, images, captions."""
        return "\n".join(f"{s.name:<5} {s.num_ids:>6} ids {len(s):>7} images {s.num_captions:>7} captions"
                         for s in self.splits.values())


def find_annotations(root: Path, fmt: DatasetFormat) -> Path:
    """Return the annotation file of ``fmt`` in ``root`` or in ``root/<folder>`` (IRRA's layout).

    Raises:
        DatasetError: none of the format's file names is there.
    """
    for base in (root, root / fmt.folder):
        for name in fmt.files:
            if (base / name).is_file():
                return base / name
    raise DatasetError(f"{root}: no {' or '.join(fmt.files)} here or in {root / fmt.folder} "
                       f"(is this a {fmt.name} dataset? --format {' | '.join(FORMATS)})")


def _read_json(path: Path) -> list:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read: {e}") from e
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of records, found {type(data).__name__}")
    if not data:
        raise DatasetError(f"{path}: holds no records")
    return data


def parse_irra_record(path: Path, i: int, rec, fmt: DatasetFormat) -> ParsedRecord:
    """Parse record ``i`` of an IRRA-style annotation list (split, captions, ``fmt.image_key``, id)."""
    where = f"{path}: record {i}"
    if not isinstance(rec, dict):
        raise DatasetError(f"{where}: expected an object, found {type(rec).__name__}")
    missing = [k for k in ("split", "captions", fmt.image_key, "id") if k not in rec]
    if missing:
        raise DatasetError(f"{where}: missing key {', '.join(repr(k) for k in missing)} "
                           f"(a {fmt.name} record has split, captions, {fmt.image_key}, id)")
    split = rec["split"]
    if split not in fmt.splits:
        raise DatasetError(f"{where}: split {split!r} is not one of {', '.join(fmt.splits)}")
    caps = rec["captions"]
    if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
        raise DatasetError(f"{where}: captions must be a list of strings")
    caps = [c.strip() for c in caps if c.strip()]  # a blank caption among good ones is dropped
    if not caps:
        raise DatasetError(f"{where}: no caption (captions is empty or blank)")
    img = rec[fmt.image_key]
    if not isinstance(img, str) or not img:
        raise DatasetError(f"{where}: {fmt.image_key} must be a non-empty string")
    try:
        pid = int(rec["id"])
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: id {rec['id']!r} is not an integer") from None
    return split, img, pid, tuple(caps)


for _fmt in (DatasetFormat("cuhk-pedes", "CUHK-PEDES", ("reid_raw.json",), "file_path", SPLITS),
             DatasetFormat("icfg-pedes", "ICFG-PEDES", ("ICFG-PEDES.json", "ICFG_PEDES.json"), "file_path",
                           ("train", "test")),
             DatasetFormat("rstpreid", "RSTPReid", ("data_captions.json",), "img_path", SPLITS)):
    register_format(_fmt)


def load_dataset(root, fmt: str = "cuhk-pedes", *, check_images: bool = True) -> PersonTextDataset:
    """Load a dataset folder.

    Args:
        root: the dataset folder (holding the annotation file and ``imgs/``), or its parent.
        fmt: one of :data:`FORMATS` ("cuhk-pedes", "icfg-pedes", "rstpreid").
        check_images: check that every image file exists (one ``stat`` per image).

    Returns:
        the dataset, with a :class:`Split` for every split that has records.

    Raises:
        DatasetError: unknown format, missing folder or file, malformed records, missing images.
    """
    if fmt not in FORMATS:
        raise DatasetError(f"unknown dataset format {fmt!r}; use one of {', '.join(FORMATS)}")
    f = FORMATS[fmt]
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset folder")
    path = find_annotations(root, f)
    img_dir = path.parent / "imgs"
    rows: Dict[str, List[Tuple[int, Path, int, Tuple[str, ...]]]] = {s: [] for s in f.splits}
    read, parse = f.read or _read_json, f.parse or parse_irra_record
    for i, rec in enumerate(read(path)):
        split, img, pid, caps = parse(path, i, rec, f)
        if split not in rows:
            raise DatasetError(f"{path}: record {i}: split {split!r} is not one of {', '.join(f.splits)}")
        rows[split].append((i, img_dir / img, pid, caps))
    if check_images:
        _check_images(path, img_dir, [(i, p) for recs in rows.values() for i, p, _, _ in recs])
    _warn_shared_ids(path, rows)
    splits = {}
    for name, recs in rows.items():
        if not recs:
            continue
        label = {p: k for k, p in enumerate(sorted({r[2] for r in recs}))} if name == "train" else None
        records = [Record(p, pid if label is None else label[pid], caps, pid, i) for i, p, pid, caps in recs]
        splits[name] = Split(name, records, path)
    counts = ", ".join(f"{s.name} {s.num_ids} ids / {len(s)} images" for s in splits.values())
    logger.info("%s (%s): %s", path, fmt, counts)
    return PersonTextDataset(f, root, path, splits)


def _check_images(path: Path, img_dir: Path, items: Sequence[Tuple[int, Path]]) -> None:
    missing = [(i, p) for i, p in items if not p.is_file()]
    if missing:
        listed = "; ".join(f"record {i}: {p}" for i, p in missing[:MAX_LISTED_MISSING])
        more = f" and {len(missing) - MAX_LISTED_MISSING} more" if len(missing) > MAX_LISTED_MISSING else ""
        raise DatasetError(f"{path}: {len(missing)} of {len(items)} images missing under {img_dir} "
                           f"({listed}{more})")


def _warn_shared_ids(path: Path, rows: Dict[str, list]) -> None:
    ids = {s: {r[2] for r in recs} for s, recs in rows.items()}
    names = list(ids)
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            shared = ids[names[a]] & ids[names[b]]
            if shared:
                logger.warning("%s: %d person ids are in both %s and %s (e.g. %s): the splits are not "
                               "identity-disjoint", path, len(shared), names[a], names[b], sorted(shared)[:3])
