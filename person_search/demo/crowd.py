"""A crowded street scene made from the people in the bundled photos (no download needed).

``make_crowd_video`` cuts the people out of ultralytics' ``bus.jpg`` (three full-body
pedestrians) and ``zidane.jpg`` (one man, upper body) with fixed boxes (found once by the
pretrained YOLO11n; a feathered elliptical mask hides most of the photo around them), makes
variants (mirrored, scaled, re-coloured clothes) and lets ``people`` of them walk across a
drawn street at 720p or 1080p, each on its own depth lane: far ones small and high, near
ones large and low, drawn back to front so near people occlude far ones. A person who
leaves the frame re-enters at the other side (a new track), so a run sees a steady stream
of new people while >= ``people`` are in view. Everything is seeded: the same arguments
give the same video.

**Captioned crowd** (``make_captioned_crowd``): each walker wears an outfit (``Outfit``: which
of the three full-body photo people, an upper and a lower garment colour from the synthetic
data's palette) painted over hand-drawn garment polygons of its cut-out (the photo's shading
kept), and a ground-truth JSON is written beside the video: per identity its attributes,
CUHK-PEDES-style captions written from them, and the frames and boxes where it is visible
(with the share of the box not covered by nearer walkers). ``colour_pair_split`` holds out
(upper, lower) colour pairs: a training set (``write_crowd_pedes``, the CUHK-PEDES
``reid_raw.json`` layout the lab reads) is drawn from the other pairs, so the identities of a
test crowd wear combinations the model never saw. Generated data: figures on it are never
comparable with a real dataset.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from person_search.demo.sample import sample_images

# (photo, x1, y1, x2, y2, height relative to a full-body walker) of each person cut out
CUTOUTS = (
    ("bus.jpg", 48, 396, 242, 903, 1.0),
    ("bus.jpg", 221, 405, 345, 859, 1.0),
    ("bus.jpg", 669, 391, 810, 880, 1.0),
    ("zidane.jpg", 749, 42, 1150, 710, 0.55),  # upper body
)
HORIZON = 0.42  # share of the height where the buildings meet the pavement

# garment polygons of the three full-body cut-outs, (x, y) as shares of the cut-out box, drawn
# by hand over the photos: (upper garment, lower garment). The upper-body cut-out (zidane.jpg)
# has no lower garment in view, so a caption could not tell two of its outfits apart by their
# trousers: captioned crowds use the full-body cut-outs only.
GARMENTS = (
    ([(.229, .13), (.654, .13), (.771, .25), (.797, .58), (.654, .605), (.065, .605), (.039, .375), (.118, .175)],
     [(.131, .595), (.621, .595), (.706, .75), (.771, .895), (.654, .905), (.556, .75), (.405, .655),
      (.294, .895), (.163, .9), (.118, .75)]),
    ([(.202, .16), (.734, .14), (.917, .225), (.963, .655), (.183, .66), (.018, .625), (.073, .25)],
     [(.229, .645), (.752, .645), (.826, .75), (.661, .825), (.606, .905), (.422, .915), (.367, .75),
      (.275, .68)]),
    ([(.365, .02), (.87, .02), (1.0, .1), (1.0, .58), (.539, .59), (.4, .375), (.348, .15)],
     [(.504, .57), (.974, .57), (.887, .73), (.713, .88), (.539, .905), (.365, .925), (.609, .75),
      (.539, .655)]),
)
CAPTIONED_CUTS = (0, 1, 2)
# what each full-body cut-out shows besides the painted garments (true of the photo person)
CUT_FACTS = (
    {"gender": "man", "upper_garment": ("coat", "fluffy coat", "jacket"), "hair": "short black hair",
     "extra": ("He has a beard and wears sunglasses.", "He wears sunglasses and light shoes.")},
    {"gender": "man", "upper_garment": ("long coat", "coat", "overcoat"), "hair": "short brown hair",
     "extra": ("He wears sunglasses.", "He wears dark sneakers and sunglasses.")},
    {"gender": "man", "upper_garment": ("jacket", "hooded jacket", "coat"), "hair": "dark hair",
     "extra": ("He is seen from behind.", "He wears dark sneakers.")},
)
PALETTE = ("red", "blue", "green", "yellow", "black", "white", "grey", "brown", "pink")


@dataclass(frozen=True)
class Outfit:
    """The look of one captioned walker: the photo person it is cut from and its garment colours."""

    cut: int
    upper: str
    lower: str

    @property
    def key(self) -> str:
        """Return a stable name of the outfit, e.g. ``c1-red-blue``."""
        return f"c{self.cut}-{self.upper}-{self.lower}"


def colour_pair_split(seed: int = 0, test: int = 18, val: int = 6) -> Dict[str, List[Tuple[str, str]]]:
    """Split the (upper, lower) colour pairs of ``PALETTE`` into train / val / test (disjoint, seeded).

    A model trained on the train pairs meets the val / test pairs for the first time: it must
    read each colour word, not remember a combination.
    """
    pairs = [(u, lo) for u in PALETTE for lo in PALETTE]
    if test + val >= len(pairs):
        raise ValueError(f"test + val pairs must leave some for training (of {len(pairs)})")
    order = np.random.default_rng(seed).permutation(len(pairs))
    pick = [pairs[i] for i in order]
    return {"test": sorted(pick[:test]), "val": sorted(pick[test:test + val]), "train": sorted(pick[test + val:])}


def crowd_outfits(people: int, pairs: Sequence[Tuple[str, str]], seed: int = 0) -> List[Outfit]:
    """Draw ``people`` outfits with distinct colour pairs from ``pairs`` (seeded; cuts in turn)."""
    if people > len(pairs):
        raise ValueError(f"{people} walkers need {people} distinct colour pairs, only {len(pairs)} given")
    order = np.random.default_rng(seed + 7919).permutation(len(pairs))[:people]
    return [Outfit(CAPTIONED_CUTS[i % len(CAPTIONED_CUTS)], *pairs[j]) for i, j in enumerate(order)]


@functools.lru_cache(maxsize=64)
def _garment_masks(cut: int, shape: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    h, w = shape
    out = []
    for poly in GARMENTS[cut]:
        m = np.zeros((h, w), np.float32)
        cv2.fillPoly(m, [np.array([(x * w, y * h) for x, y in poly], np.int32)], 1.0)
        out.append(cv2.GaussianBlur(m, (0, 0), sigmaX=max(1.0, w * 0.015)))
    return out[0], out[1]


def paint_outfit(crop: np.ndarray, outfit: Outfit, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Paint the outfit's colours over the garments of a full-body cut-out, keeping its shading.

    Each garment pixel becomes the nominal colour (``person_search.lab.data.attributes.COLOURS``,
    moved a little per call when ``rng`` is given: dye and light vary) times the pixel's
    brightness relative to the garment's median, so folds and shadows stay.
    """
    from person_search.lab.data.attributes import COLOURS, jitter_colour
    upper, lower = _garment_masks(outfit.cut, crop.shape[:2])
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(np.float32)
    out = crop.astype(np.float32)
    for mask, name in ((upper, outfit.upper), (lower, outfit.lower)):
        colour = COLOURS[name] if rng is None else jitter_colour(COLOURS[name], rng, 10)
        inside = mask > 0.5
        med = float(np.median(grey[inside])) if inside.any() else 128.0
        shade = np.clip(1.0 + (grey - med) / 160.0, 0.55, 1.35)[..., None]
        paint = np.clip(np.array(colour, np.float32)[None, None] * shade, 0, 255)
        out = mask[..., None] * paint + (1 - mask[..., None]) * out
    return out.astype(np.uint8)


def caption_outfit(outfit: Outfit, rng: np.random.Generator) -> str:
    """Write one CUHK-PEDES-style caption of a captioned walker from its outfit (and the photo's facts)."""
    from person_search.lab.data.captions import SUBJECTS
    facts = CUT_FACTS[outfit.cut]

    def pick(options):
        return options[int(rng.integers(len(options)))]

    def col(c):
        return pick(("grey", "gray")) if c == "grey" else c

    top = f"a {col(outfit.upper)} {pick(facts['upper_garment'])}"
    legs = ("trousers", "pants", "jeans") if outfit.lower == "blue" else ("trousers", "pants")
    bottom = f"{col(outfit.lower)} {pick(legs)}"
    subj = pick(SUBJECTS[facts["gender"]])
    form = int(rng.integers(4))
    if form == 0:
        lead = f"{subj} wears {top} and {bottom}."
    elif form == 1:
        lead = f"{subj} is wearing {top} over {bottom}."
    elif form == 2:
        lead = f"{subj} with {facts['hair']} is dressed in {top} and {bottom}."
    else:
        lead = f"{subj} in {top} and {bottom} is walking down the street."
    return lead + (" " + pick(facts["extra"]) if rng.random() < 0.5 else "")


@dataclass
class _Walker:
    sprite: np.ndarray  # BGR
    alpha: np.ndarray  # float32 (h, w) in [0, 1]
    feet_y: float  # px
    x: float  # left edge, px
    speed: float  # px per second, signed
    phase: float
    ident: int = 0  # ground-truth person (the walker's index before drawing order)
    cut: int = 0  # which real cut-out person it was made from
    outfit: Optional[Outfit] = None  # captioned crowds: the painted garment colours


def _cutouts() -> List[Tuple[np.ndarray, np.ndarray, float]]:
    photos = {p.name: cv2.imread(str(p), cv2.IMREAD_COLOR) for p in sample_images()}
    out = []
    for name, x1, y1, x2, y2, rel in CUTOUTS:
        img = photos[name]
        if img is None:
            raise FileNotFoundError(f"cannot decode bundled photo {name}")
        crop = img[y1:y2, x1:x2].copy()
        h, w = crop.shape[:2]
        mask = np.zeros((h, w), np.float32)
        cv2.ellipse(mask, (w // 2, h // 2), (int(w * 0.42), int(h * 0.49)), 0, 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=max(2.0, w * 0.04))
        out.append((crop, mask, rel))
    return out


def street_background(size: Tuple[int, int], seed: int = 0) -> np.ndarray:
    """Draw a street: sky, a row of building facades with windows, pavement, a road."""
    w, h = size
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    hz = int(h * HORIZON)
    for y in range(hz):  # sky gradient
        img[y] = (230 - 60 * y // max(1, hz), 200 - 40 * y // max(1, hz), 170)
    x = 0
    while x < w:  # facades
        bw = int(rng.integers(w // 10, w // 5))
        top = int(rng.integers(0, hz // 2))
        color = tuple(int(c) for c in rng.integers(70, 190, 3))
        cv2.rectangle(img, (x, top), (x + bw, hz), color, -1)
        win = max(8, bw // 8)
        for wy in range(top + win, hz - win, 2 * win):
            for wx in range(x + win // 2, x + bw - win, 2 * win):
                shade = int(rng.integers(30, 90))
                cv2.rectangle(img, (wx, wy), (wx + win, wy + int(win * 1.3)), (shade, shade + 10, shade + 20), -1)
        x += bw
    road = int(h * 0.93)
    img[hz:road] = (150, 152, 156)  # pavement with tile joints in perspective
    for i in range(1, 12):
        y = hz + int((road - hz) * (i / 12) ** 1.5)
        cv2.line(img, (0, y), (w, y), (120, 122, 126), 1)
    img[road:] = (70, 70, 74)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def _variant(crop: np.ndarray, mask: np.ndarray, height: int, rng, outfit: Optional[Outfit] = None,
             dye_rng: Optional[np.random.Generator] = None) -> Tuple[np.ndarray, np.ndarray]:
    s = height / crop.shape[0]
    size = (max(8, int(crop.shape[1] * s)), max(16, int(height)))
    sprite = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    if outfit is not None:  # painted garments instead of a random hue turn (the colours must stay nameable)
        sprite = paint_outfit(sprite, outfit, dye_rng)
    alpha = cv2.resize(mask, size, interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        sprite, alpha = sprite[:, ::-1].copy(), alpha[:, ::-1].copy()
    hsv = cv2.cvtColor(sprite, cv2.COLOR_BGR2HSV).astype(np.int16)
    if outfit is not None:
        hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(0.85, 1.1), 0, 255)
        return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR), alpha
    sat = hsv[..., 1] > 60  # re-colour saturated parts (clothes, bags), keep skin-ish greys
    hsv[..., 0] = np.where(sat, (hsv[..., 0] + int(rng.integers(0, 180))) % 180, hsv[..., 0])
    hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(0.8, 1.15), 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR), alpha


def _paste(frame: np.ndarray, sprite: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
    h, w = sprite.shape[:2]
    fh, fw = frame.shape[:2]
    x1, y1, x2, y2 = max(0, x), max(0, y), min(fw, x + w), min(fh, y + h)
    if x2 <= x1 or y2 <= y1:
        return
    sp = sprite[y1 - y:y2 - y, x1 - x:x2 - x].astype(np.float32)
    a = alpha[y1 - y:y2 - y, x1 - x:x2 - x, None]
    roi = frame[y1:y2, x1:x2].astype(np.float32)
    frame[y1:y2, x1:x2] = (a * sp + (1 - a) * roi).astype(np.uint8)


def make_crowd_video(path, *, people: int = 12, seconds: float = 10.0, fps: int = 15,
                     size: Tuple[int, int] = (1920, 1080), seed: int = 0, truth: Optional[list] = None,
                     outfits: Optional[Sequence[Outfit]] = None) -> Path:
    """Write an mp4 (mp4v) of ``people`` pedestrians walking across a street.

    Args:
        path: output file (parent folders are created).
        people: walkers in the scene (each in view most of the time; leaving ones re-enter).
        seconds: duration.
        fps: frame rate.
        size: (width, height); 1920x1080 or 1280x720 are typical.
        seed: the scene (lanes, speeds, looks) is a function of it.
        truth: a list that receives, per frame, the ground truth: a list of
            ``(person, cut_out, x1, y1, x2, y2)`` (sprite boxes clipped to the frame, ``person``
            the walker, ``cut_out`` the real photo person it was made from). Occlusion is not
            taken out: a box may be partly hidden by a nearer walker.
        outfits: one ``Outfit`` per walker (full-body cut-outs only): walker i is cut from
            ``outfits[i].cut`` with its garments painted; None = the cut-outs in turn with a
            random hue turn of their saturated parts (the scene of earlier versions).

    Returns:
        The path written.

    Raises:
        ValueError: bad arguments. FileNotFoundError: the bundled photos are missing.
        RuntimeError: OpenCV cannot write mp4v here.
    """
    if outfits is not None and (len(outfits) != people or any(o.cut not in CAPTIONED_CUTS for o in outfits)):
        raise ValueError(f"outfits: one per walker ({people}) from the full-body cut-outs {CAPTIONED_CUTS}")
    if people < 1 or seconds <= 0 or fps <= 0:
        raise ValueError(f"people, seconds and fps must be > 0, got {people}, {seconds}, {fps}")
    w, h = int(size[0]), int(size[1])
    if w < 320 or h < 240:
        raise ValueError(f"size too small for a crowd: {size} (at least 320x240)")
    rng = np.random.default_rng(seed)
    cut = _cutouts()
    bg = street_background((w, h), seed)
    hz, road = h * HORIZON, h * 0.93
    walkers = []
    for i in range(people):
        depth = (i + rng.uniform(0.1, 0.9)) / people  # spread over the pavement, far to near
        feet = hz + 0.12 * h + depth * (road - hz - 0.12 * h)
        height = h * (0.22 + 0.33 * depth)
        k = i % len(cut) if outfits is None else outfits[i].cut
        crop, mask, rel = cut[k]
        sprite, alpha = _variant(crop, mask, int(height * rel), rng, None if outfits is None else outfits[i])
        speed = rng.uniform(0.04, 0.09) * w * rng.choice([-1.0, 1.0])
        walkers.append(_Walker(sprite, alpha, feet, rng.uniform(0, w - sprite.shape[1]), speed,
                               rng.uniform(0, 2 * np.pi), ident=i, cut=k,
                               outfit=None if outfits is None else outfits[i]))
    walkers.sort(key=lambda k: k.feet_y)  # far first: near people are drawn over them

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write an mp4v video to {out}")
    try:
        for k in range(max(1, int(round(seconds * fps)))):
            t = k / fps
            frame = bg.copy()
            seen = []
            for p in walkers:
                sw = p.sprite.shape[1]
                span = w + sw
                x = (p.x + sw + p.speed * t) % span - sw  # leaves one side, re-enters at the other
                bob = 0.01 * p.sprite.shape[0] * np.sin(2 * np.pi * 1.8 * t + p.phase)
                px, py = int(round(x)), int(round(p.feet_y - p.sprite.shape[0] + bob))
                _paste(frame, p.sprite, p.alpha, px, py)
                sh, sw2 = p.sprite.shape[:2]
                box = (max(0, px), max(0, py), min(w, px + sw2), min(h, py + sh))
                if box[2] > box[0] and box[3] > box[1]:
                    seen.append((p.ident, p.cut) + box)
            if truth is not None:
                truth.append(seen)
            writer.write(frame)
    finally:
        writer.release()
    if not out.is_file() or out.stat().st_size == 0:
        raise RuntimeError(f"OpenCV wrote nothing to {out} (mp4v encoder missing?)")
    return out


def _visible_shares(seen: list) -> List[float]:
    """Per box of one frame (drawn far to near), the share not covered by boxes drawn after it."""
    out = []
    for i, (_, _, x1, y1, x2, y2) in enumerate(seen):
        area = max(1, (x2 - x1) * (y2 - y1))
        m = np.ones((y2 - y1, x2 - x1), bool)
        for (_, _, a1, b1, a2, b2) in seen[i + 1:]:
            ix1, iy1, ix2, iy2 = max(x1, a1), max(y1, b1), min(x2, a2), min(y2, b2)
            if ix2 > ix1 and iy2 > iy1:
                m[iy1 - y1:iy2 - y1, ix1 - x1:ix2 - x1] = False
        out.append(round(float(m.sum()) / area, 3))
    return out


def truth_path(video) -> Path:
    """Return where the ground truth of a captioned crowd video is written: ``<video>.truth.json``."""
    v = Path(video)
    return v.with_name(v.name + ".truth.json")


def make_captioned_crowd(path, *, people: int = 8, seconds: float = 20.0, fps: int = 10,
                         size: Tuple[int, int] = (960, 540), seed: int = 0, split: str = "test",
                         captions_per_id: int = 2, pair_seed: int = 0) -> Tuple[Path, Path]:
    """Write a crowd video of captioned walkers and its ground truth ``<video>.truth.json``.

    Args:
        path: the .mp4 to write.
        people, seconds, fps, size, seed: as ``make_crowd_video``.
        split: which colour pairs of ``colour_pair_split(pair_seed)`` the walkers wear
            ("test": combinations a model trained on ``write_crowd_pedes(..., pair_seed)`` never saw).
        captions_per_id: captions written per identity (each a query).
        pair_seed: the seed of the colour-pair split (must match the training set's).

    Returns:
        (video path, truth path). The truth JSON holds ``identities``: per walker ``id``,
        ``outfit`` (key), ``cut``, ``photo``, ``gender``, ``upper_colour``, ``lower_colour``,
        ``captions`` and ``boxes`` (``[frame, x1, y1, x2, y2, visible_share]`` for every frame
        where its sprite is in view; visible share = the part of the box no nearer walker's
        box covers), plus the arguments, the frame count and a note that the data are generated.
    """
    pairs = colour_pair_split(pair_seed)
    if split not in pairs:
        raise ValueError(f"split must be one of {sorted(pairs)}, got {split!r}")
    outfits = crowd_outfits(people, pairs[split], seed)
    truth: list = []
    video = make_crowd_video(path, people=people, seconds=seconds, fps=fps, size=size, seed=seed, truth=truth,
                             outfits=outfits)
    boxes: Dict[int, list] = {i: [] for i in range(people)}
    for f, seen in enumerate(truth):
        for (ident, _cut, x1, y1, x2, y2), vis in zip(seen, _visible_shares(seen)):
            boxes[ident].append([f, x1, y1, x2, y2, vis])
    rng = np.random.default_rng(seed + 104729)
    ids = []
    for i, o in enumerate(outfits):
        ids.append({"id": i, "outfit": o.key, "cut": o.cut, "photo": CUTOUTS[o.cut][0],
                    "gender": CUT_FACTS[o.cut]["gender"], "upper_colour": o.upper, "lower_colour": o.lower,
                    "captions": [caption_outfit(o, rng) for _ in range(captions_per_id)], "boxes": boxes[i]})
    doc = {"generator": "person_search.demo.crowd.make_captioned_crowd",
           "note": "generated data: real photo people re-coloured on a drawn street",
           "args": {"people": people, "seconds": seconds, "fps": fps, "size": list(size), "seed": seed,
                    "split": split, "pair_seed": pair_seed, "captions_per_id": captions_per_id},
           "video": Path(video).name, "frames": len(truth), "identities": ids}
    out = truth_path(video)
    out.write_text(json.dumps(doc, separators=(",", ":")))
    return Path(video), out


def load_truth(path) -> dict:
    """Read a captioned crowd's ground truth (the video or its ``.truth.json``); ValueError if it is not one."""
    p = Path(path)
    if p.suffix != ".json":
        p = truth_path(p)
    try:
        doc = json.loads(p.read_text())
        doc["identities"][0]["boxes"]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"{p}: not a captioned crowd ground truth ({exc})") from None
    return doc


def _render_crop(crop: np.ndarray, mask: np.ndarray, outfit: Outfit, bg: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """One training image of an outfit: the painted cut-out at a street scale and place, cut out padded."""
    height = int(bg.shape[0] * rng.uniform(0.22, 0.55))
    sprite, alpha = _variant(crop, mask, height, rng, outfit, dye_rng=rng)  # dye jittered per image
    h, w = sprite.shape[:2]
    fh, fw = bg.shape[:2]
    x = int(rng.integers(0, max(1, fw - w)))
    y = int(rng.uniform(HORIZON * fh, fh - h)) if fh - h > HORIZON * fh else max(0, fh - h)
    frame = bg.copy()
    _paste(frame, sprite, alpha, x, y)
    if rng.random() < 0.25:  # a nearer walker's edge in front (partial occlusion)
        ow = int(w * rng.uniform(0.15, 0.35))
        ox = x + (0 if rng.random() < 0.5 else w - ow)
        grey = int(rng.integers(30, 140))  # unsaturated: it must not add a colour the caption does not name
        cv2.rectangle(frame, (ox, y + h // 3), (ox + ow, y + h), (grey, grey, grey + 6), -1)
    pad = 0.05
    x1, y1 = max(0, int(x - pad * w)), max(0, int(y - pad * h))
    x2, y2 = min(fw, int(x + w + pad * w)), min(fh, int(y + h + pad * h))
    return frame[y1:y2, x1:x2]


def write_crowd_pedes(root, *, images_per_id: int = 8, captions_per_image: int = 2, seed: int = 0,
                      pair_seed: int = 0, frame_size: Tuple[int, int] = (960, 540),
                      splits: Sequence[str] = ("train", "val", "test")) -> Path:
    """Write crops of captioned-crowd outfits as a CUHK-PEDES layout dataset (``reid_raw.json`` + ``imgs/``).

    One identity per (full-body cut-out, colour pair); its split is the pair's split in
    ``colour_pair_split(pair_seed)``, so val / test identities wear held-out combinations.
    Each image is the outfit at a random street scale and place (mirrored, re-lit, dye jittered,
    sometimes partly occluded), cut out with a 5 % margin like the detector's crops; each caption
    is written from the outfit. ``splits`` limits what is written (e.g. only "train").
    Returns the annotation file. Generated data.
    """
    root = Path(root)
    (root / "imgs").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cut = _cutouts()
    bgs = [street_background(frame_size, seed * 1000 + k) for k in range(6)]
    records, pid = [], 0
    for split, pairs in colour_pair_split(pair_seed).items():
        if split not in splits:
            continue
        for u, lo in pairs:
            for c in CAPTIONED_CUTS:
                o = Outfit(c, u, lo)
                for n in range(images_per_id):
                    img = _render_crop(cut[c][0], cut[c][1], o, bgs[int(rng.integers(len(bgs)))], rng)
                    rel = f"{split}/{pid:05d}_{n}.jpg"
                    (root / "imgs" / split).mkdir(exist_ok=True)
                    cv2.imwrite(str(root / "imgs" / rel), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
                    records.append({"split": split, "id": pid, "file_path": rel, "outfit": o.key,
                                    "captions": [caption_outfit(o, rng) for _ in range(captions_per_image)]})
                pid += 1
    out = root / "reid_raw.json"
    out.write_text(json.dumps(records, indent=0))
    return out
