"""Draw a generated pedestrian with OpenCV: an identity's clothes under per-image nuisances.

:func:`render_person` paints the attributes of one identity (hair, hat, upper garment with
sleeves and pattern, lower garment, shoes, bag) on a person whose pose, scale, position,
view (front / back / side), skin tone, lighting, background clutter and occlusion are drawn
for every image from its own generator, so that nothing but the clothes identifies a person.
It returns the image and the attributes an occluder hid, which captions must then leave out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Set, Tuple

import cv2
import numpy as np

from person_search.lab.data.attributes import COLOURS, HAIR_COLOURS, NONE, jitter_colour

SKIN = ((150, 180, 225), (120, 160, 205), (90, 125, 170), (60, 90, 130), (170, 200, 235))
EYE = (30, 30, 30)
Box = Tuple[int, int, int, int]


@dataclass
class Rendered:
    """An image and what it does not show.

    Attributes:
        image: BGR uint8 (H, W, 3).
        hidden: attribute names mostly covered by the occluder in this image.
        view: "front", "back" or "side".
    """

    image: np.ndarray
    hidden: Set[str]
    view: str


def _background(rng: np.random.Generator, h: int, w: int, domain: str) -> np.ndarray:
    if domain == "base":  # street: wall, pavement, windows and signs
        wall = np.array(rng.integers(120, 215, 3), np.float64) * np.array([0.9, 0.95, 1.0])
        ground = wall * rng.uniform(0.5, 0.8)
        img = np.empty((h, w, 3), np.uint8)
        horizon = int(h * rng.uniform(0.55, 0.8))
        img[:horizon], img[horizon:] = wall.astype(np.uint8), ground.astype(np.uint8)
        for _ in range(int(rng.integers(2, 6))):
            x, y = int(rng.integers(-w // 4, w)), int(rng.integers(0, horizon))
            c = tuple(int(v) for v in rng.integers(40, 230, 3))
            cv2.rectangle(img, (x, y), (x + int(rng.integers(8, w // 2)), y + int(rng.integers(6, h // 4))), c, -1)
        for _ in range(int(rng.integers(1, 4))):
            y = int(rng.integers(horizon, h))
            cv2.line(img, (0, y), (w, y + int(rng.integers(-6, 7))), tuple(int(v) for v in ground * 0.8), 1)
    else:  # park: dark foliage gradient, leaves, mottled noise
        top = rng.uniform([20, 60, 20], [90, 140, 70])
        bottom = rng.uniform([30, 40, 60], [80, 90, 120])
        t = np.linspace(0.0, 1.0, h)[:, None, None]
        img = ((1 - t) * top + t * bottom).repeat(w, axis=1).astype(np.uint8)
        for _ in range(int(rng.integers(10, 25))):
            c = tuple(int(v) for v in rng.integers(10, 160, 3) * np.array([0.6, 1.0, 0.7]))
            cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(2, w // 6)), c, -1)
        img = cv2.add(img, rng.integers(0, 25, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
                      .repeat(8, 0).repeat(8, 1)[:h, :w])
    for _ in range(int(rng.integers(0, 4))):  # clutter of any colour, garment colours included
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(2, 8)), c, -1)
    return img


def _light(img: np.ndarray, rng: np.random.Generator, domain: str) -> np.ndarray:
    f = img.astype(np.float32)
    if domain == "base":
        gain, contrast, cast, noise = rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.15), rng.uniform(-12, 12, 3), 0.0
    else:  # dusk or sodium lamps: darker, flatter, strongly tinted, noisy
        gain, contrast, noise = rng.uniform(0.6, 0.95), rng.uniform(0.75, 1.0), 4.0
        cast = (np.array([25.0, 5.0, -15.0]) if rng.random() < 0.5 else np.array([-20.0, 5.0, 25.0]))
        cast = cast + rng.uniform(-8, 8, 3)
    mean = f.mean()
    f = (mean + (f - mean) * contrast) * gain + cast
    if noise:
        f += rng.normal(0.0, noise, f.shape).astype(np.float32)
    out = np.clip(f, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (3, 3), 0)
    return out


def _pt(x: float, y: float) -> Tuple[int, int]:
    return int(round(x)), int(round(y))


def _limb(img, a, b, colour, t) -> None:
    cv2.line(img, _pt(*a), _pt(*b), colour, max(1, int(round(t))), cv2.LINE_AA)


def _bbox(points) -> Box:
    p = np.concatenate([np.asarray(q, np.float64).reshape(-1, 2) for q in points]) \
        if isinstance(points, list) else np.asarray(points, np.float64).reshape(-1, 2)
    return int(p[:, 0].min()), int(p[:, 1].min()), int(np.ceil(p[:, 0].max())), int(np.ceil(p[:, 1].max()))


def _pattern(img: np.ndarray, poly: np.ndarray, colour, kind: str, period: int) -> None:
    """Fill ``poly`` with ``colour`` and stripes / checks of a contrasting shade."""
    cv2.fillPoly(img, [poly], colour, cv2.LINE_AA)
    if kind == "plain":
        return
    mask = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(mask, [poly], 1)
    second = np.array(colour, np.float64)
    second = second * 0.35 if second.mean() > 110 else second + (255 - second) * 0.7
    yy, xx = np.indices(img.shape[:2])
    on = (yy // period) % 2 == 0
    if kind == "checked":
        on = on ^ ((xx // period) % 2 == 0)
    img[(mask > 0) & on] = second.astype(np.uint8)


def render_person(attrs: Dict[str, str], rng: np.random.Generator, size: Tuple[int, int],
                  domain: str = "base") -> Rendered:
    """Render one image of the identity ``attrs``.

    Args:
        attrs: the identity's attributes (see :mod:`person_search.lab.data.attributes`).
        rng: this image's generator (all nuisances come from it).
        size: (H, W) of the image.
        domain: "base" or "shifted" (backgrounds and lighting).

    Returns:
        the image, the attributes the occluder hid, and the view.
    """
    h, w = size
    img = _background(rng, h, w, domain)
    view = str(rng.choice(["front", "back", "side"]))
    face = 1 if rng.random() < 0.5 else -1  # side view: which way the person faces
    ph = h * rng.uniform(0.78, 0.95)
    y0 = rng.uniform(0.01 * h, h - ph - 0.01 * h)
    cx = w / 2 + rng.uniform(-0.08, 0.08) * w
    u = ph / 100.0  # one percent of the person's height
    side = view == "side"
    woman = attrs["gender"] == "woman"
    narrow = 0.55 if side else 1.0
    sw, hw = (9.5 if woman else 12.0) * u * narrow, (10.5 if woman else 8.5) * u * narrow
    skin = jitter_colour(SKIN[int(rng.integers(len(SKIN)))], rng, 8)
    col = {k: jitter_colour(COLOURS[attrs[k]], rng) for k in ("upper_colour", "lower_colour", "shoe_colour")
           if attrs[k] in COLOURS}
    hair = jitter_colour(HAIR_COLOURS[attrs["hair_colour"]], rng, 8)
    bag = jitter_colour(COLOURS[attrs["bag_colour"]], rng) if attrs["bag"] != NONE else None
    hr = 6.2 * u
    head = (cx + (1.5 * u * face if side else 0), y0 + hr + 0.5 * u)
    sh_y, hip_y, knee_y, ank_y = y0 + 15 * u, y0 + 50 * u, y0 + 72 * u, y0 + 95 * u
    parts: Dict[str, Box] = {}

    # legs: angles per image; side view puts them one behind the other
    legs = []
    for s in (-1, 1):
        hip = (cx + s * hw * 0.55, hip_y)
        ang = np.deg2rad(rng.uniform(-14, 14) + (s * 8 if side else 0))
        knee = (hip[0] + np.sin(ang) * (knee_y - hip_y), knee_y)
        ank = (knee[0] + np.sin(ang * 0.6) * (ank_y - knee_y), ank_y)
        legs.append((hip, knee, ank))
    lower, lt, leg_t = col["lower_colour"], attrs["lower_type"], 6.0 * u
    for hip, knee, ank in legs:
        _limb(img, hip, knee, skin if lt == "skirt" else lower, leg_t)
        if lt == "shorts":
            mid = (hip[0] + 0.55 * (knee[0] - hip[0]), hip[1] + 0.55 * (knee[1] - hip[1]))
            _limb(img, mid, knee, skin, leg_t * 0.9)
        _limb(img, knee, ank, lower if lt == "trousers" else skin, leg_t * 0.9)
        shoe_c = (ank[0] + (2.5 * u * face if side else 0), ank[1] + 2.2 * u)
        cv2.ellipse(img, _pt(*shoe_c), _pt(4.5 * u if side else 3.2 * u, 2.4 * u), 0, 0, 360, col["shoe_colour"],
                    -1, cv2.LINE_AA)
    parts["shoe_colour"] = _bbox([(a[0] - 5 * u, a[1]) for _, _, a in legs] + [(a[0] + 5 * u, a[1] + 5 * u)
                                                                               for _, _, a in legs])
    pelvis = np.array([_pt(cx - hw, hip_y - 2 * u), _pt(cx + hw, hip_y - 2 * u), _pt(cx + hw * 1.05, hip_y + 7 * u),
                       _pt(cx - hw * 1.05, hip_y + 7 * u)], np.int32)
    if lt == "skirt":
        pelvis = np.array([_pt(cx - hw, hip_y - 2 * u), _pt(cx + hw, hip_y - 2 * u),
                           _pt(cx + hw * 1.7, knee_y + 1 * u), _pt(cx - hw * 1.7, knee_y + 1 * u)], np.int32)
    cv2.fillPoly(img, [pelvis], lower, cv2.LINE_AA)
    parts["lower_colour"] = parts["lower_type"] = _bbox([pelvis] + [k for _, k, _ in legs])

    # bags carried behind the body
    strap_t = max(1, int(round(1.6 * u)))
    if attrs["bag"] == "backpack" and side:
        bx = cx - face * (sw + 5 * u)
        pack = np.array([_pt(bx - 5 * u, sh_y + 2 * u), _pt(bx + 5 * u, sh_y + 2 * u), _pt(bx + 5 * u, hip_y - 6 * u),
                         _pt(bx - 5 * u, hip_y - 6 * u)], np.int32)
        cv2.fillPoly(img, [pack], bag, cv2.LINE_AA)
        parts["bag"] = _bbox(pack)

    back = view == "back"
    if attrs["hair_length"] == "long" and not back:  # falls behind the shoulders: drawn before the torso
        cv2.rectangle(img, _pt(head[0] - hr * 1.3, head[1]), _pt(head[0] + hr * 1.3, sh_y + 9 * u), hair, -1)

    # torso: shoulders wider than the waist for men, waist narrower than the hips for women
    waist = hw * (0.85 if woman else 1.0)
    torso = np.array([_pt(cx - sw, sh_y), _pt(cx + sw, sh_y), _pt(cx + waist, hip_y - 8 * u), _pt(cx + hw, hip_y),
                      _pt(cx - hw, hip_y), _pt(cx - waist, hip_y - 8 * u)], np.int32)
    upper = col["upper_colour"]
    _pattern(img, torso, upper, attrs["pattern"], max(2, int(round(3.2 * u))))
    parts["upper_colour"] = parts["pattern"] = _bbox(torso)

    # arms: swing and elbow bend per image; one arm in side view
    hands = []
    arm_t = 4.2 * u
    for s in ((face,) if side else (-1, 1)):
        shoulder = (cx + s * (sw - 1.5 * u) * (0.3 if side else 1.0), sh_y + 1.5 * u)
        a1 = np.deg2rad(rng.uniform(-25, 25) + (0 if side else s * 8))
        a2 = a1 + np.deg2rad(rng.uniform(0, 30)) * (face if side else s)
        elbow = (shoulder[0] + np.sin(a1) * 17 * u, shoulder[1] + np.cos(a1) * 17 * u)
        wrist = (elbow[0] + np.sin(a2) * 16 * u, elbow[1] + np.cos(a2) * 16 * u)
        if attrs["sleeve"] == "long":
            _limb(img, shoulder, elbow, upper, arm_t)
            _limb(img, elbow, wrist, upper, arm_t * 0.9)
        else:
            cuff = (shoulder[0] + 0.55 * (elbow[0] - shoulder[0]), shoulder[1] + 0.55 * (elbow[1] - shoulder[1]))
            _limb(img, cuff, elbow, skin, arm_t * 0.85)
            _limb(img, elbow, wrist, skin, arm_t * 0.8)
            _limb(img, shoulder, cuff, upper, arm_t * 1.1)
        cv2.circle(img, _pt(*wrist), max(1, int(round(2.2 * u))), skin, -1, cv2.LINE_AA)
        hands.append(wrist)
    parts["sleeve"] = parts["upper_colour"]

    # head, hair, hat
    cv2.circle(img, _pt(*head), int(round(hr)), skin, -1, cv2.LINE_AA)
    if back:
        cv2.circle(img, _pt(*head), int(round(hr * 1.05)), hair, -1, cv2.LINE_AA)
        if attrs["hair_length"] == "long":
            cv2.rectangle(img, _pt(head[0] - hr * 1.1, head[1]), _pt(head[0] + hr * 1.1, sh_y + 9 * u), hair, -1)
    else:
        cv2.ellipse(img, _pt(*head), _pt(hr * 1.08, hr * 1.08), 0, 180, 360, hair, -1, cv2.LINE_AA)
        for s in ((-face,) if side else (-1, 1)):  # hair at the temples stays visible under a hat
            cv2.rectangle(img, _pt(head[0] + s * hr * 0.75, head[1] - hr * 0.4), _pt(head[0] + s * hr * 1.15,
                                                                                     head[1] + hr * 0.35), hair, -1)
        if side:
            cv2.ellipse(img, _pt(*head), _pt(hr * 1.05, hr * 1.05), 0, 90 if face > 0 else 0,
                        180 if face > 0 else 90, hair, -1, cv2.LINE_AA)
        eyes = [head[0] + face * 3 * u] if side else [head[0] - 2.3 * u, head[0] + 2.3 * u]
        for ex in eyes:
            cv2.circle(img, _pt(ex, head[1] + 0.8 * u), max(1, int(round(0.8 * u))), EYE, -1)
    parts["hair_colour"] = parts["hair_length"] = _bbox([(head[0] - hr, head[1] - hr), (head[0] + hr, sh_y + 9 * u)])
    if attrs["hat"] != NONE:
        hat = jitter_colour(COLOURS[attrs["hat_colour"]], rng)
        if attrs["hat"] == "cap":
            cv2.ellipse(img, _pt(head[0], head[1] - 1.5 * u), _pt(hr * 1.1, hr * 0.8), 0, 180, 360, hat, -1,
                        cv2.LINE_AA)
            bx0, bx1 = ((head[0], head[0] + face * hr * 2.0) if side else
                        (head[0] - hr * (1.4 if not back else 0.9), head[0] + hr * (1.4 if not back else 0.9)))
            cv2.rectangle(img, _pt(min(bx0, bx1), head[1] - 2.5 * u), _pt(max(bx0, bx1), head[1] - 1.0 * u), hat, -1)
        else:
            cv2.ellipse(img, _pt(head[0], head[1] - 0.5 * u), _pt(hr * 1.12, hr * 1.15), 0, 180, 360, hat, -1,
                        cv2.LINE_AA)
            fold = tuple(int(c * 0.7) for c in hat)
            cv2.rectangle(img, _pt(head[0] - hr * 1.12, head[1] - 2.0 * u), _pt(head[0] + hr * 1.12, head[1]), fold, -1)
        parts["hat"] = parts["hat_colour"] = _bbox([(head[0] - hr * 1.4, head[1] - hr * 1.2), (head[0] + hr * 1.4,
                                                                                               head[1])])

    # bags seen in front of the body
    kind = attrs["bag"]
    if kind == "backpack" and back:
        pack = np.array([_pt(cx - sw * 0.8, sh_y + 2 * u), _pt(cx + sw * 0.8, sh_y + 2 * u),
                         _pt(cx + sw * 0.75, hip_y - 5 * u), _pt(cx - sw * 0.75, hip_y - 5 * u)], np.int32)
        cv2.fillPoly(img, [pack], bag, cv2.LINE_AA)
        cv2.line(img, _pt(cx - sw * 0.5, sh_y + 18 * u), _pt(cx + sw * 0.5, sh_y + 18 * u),
                 tuple(int(c * 0.6) for c in bag), max(1, strap_t // 2))
        parts["bag"] = _bbox(pack)
    elif kind == "backpack" and not side:
        for s in (-1, 1):
            cv2.line(img, _pt(cx + s * sw * 0.55, sh_y), _pt(cx + s * sw * 0.5, sh_y + 22 * u), bag, strap_t + 1)
        parts["bag"] = _bbox([(cx - sw * 0.6, sh_y), (cx + sw * 0.6, sh_y + 22 * u)])
    elif kind == "handbag":
        hx, hy = hands[int(rng.integers(len(hands)))]
        box = np.array([_pt(hx - 3.5 * u, hy + 2 * u), _pt(hx + 3.5 * u, hy + 2 * u), _pt(hx + 4.5 * u, hy + 9 * u),
                        _pt(hx - 4.5 * u, hy + 9 * u)], np.int32)
        cv2.line(img, _pt(hx - 2 * u, hy + 2 * u), _pt(hx, hy - 0.5 * u), bag, strap_t)
        cv2.line(img, _pt(hx + 2 * u, hy + 2 * u), _pt(hx, hy - 0.5 * u), bag, strap_t)
        cv2.fillPoly(img, [box], bag, cv2.LINE_AA)
        parts["bag"] = _bbox(box)
    elif kind == "shoulder bag":
        s = (-face if side else (1 if rng.random() < 0.5 else -1))
        top = (cx - s * sw * 0.7, sh_y)
        at = (cx + s * (hw + (1 if side else 3) * u), hip_y - 4 * u)
        cv2.line(img, _pt(*top), _pt(*at), bag, strap_t)
        box = np.array([_pt(at[0] - 4.5 * u, at[1]), _pt(at[0] + 4.5 * u, at[1]), _pt(at[0] + 4.5 * u, at[1] + 8 * u),
                        _pt(at[0] - 4.5 * u, at[1] + 8 * u)], np.int32)
        cv2.fillPoly(img, [box], bag, cv2.LINE_AA)
        parts["bag"] = _bbox(box)
    if "bag" in parts:
        parts["bag_colour"] = parts["bag"]

    hidden = _occlude(img, rng, parts)
    return Rendered(_light(img, rng, domain), hidden, view)


def _occlude(img: np.ndarray, rng: np.random.Generator, parts: Dict[str, Box]) -> Set[str]:
    """Cover part of the image with a box (a car, a pole, a passer-by) in 30 % of the images."""
    h, w = img.shape[:2]
    if rng.random() >= 0.3:
        return set()
    if rng.random() < 0.6:  # from below
        box = (0, int(h * rng.uniform(0.75, 0.9)), w, h)
    else:  # from one side
        bw = int(w * rng.uniform(0.15, 0.3))
        x0 = 0 if rng.random() < 0.5 else w - bw
        box = (x0, int(h * rng.uniform(0.0, 0.5)), x0 + bw, h)
    fill = np.array(rng.integers(30, 220, 3), np.float64)
    img[box[1]:box[3], box[0]:box[2]] = fill.astype(np.uint8)
    cv2.rectangle(img, box[:2], (box[2] - 1, box[3] - 1), tuple(int(c * 0.6) for c in fill), 2)
    return {name for name, b in parts.items() if _covered(b, box) > 0.4}


def _covered(part: Box, box: Box) -> float:
    area = max(1, (part[2] - part[0]) * (part[3] - part[1]))
    iw = max(0, min(part[2], box[2]) - max(part[0], box[0]))
    ih = max(0, min(part[3], box[3]) - max(part[1], box[1]))
    return iw * ih / area
