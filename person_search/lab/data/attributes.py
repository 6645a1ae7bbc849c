"""The attribute vocabulary of the generated people: what an identity wears, and its colours.

An identity is a fixed dict of attributes (:data:`ATTRIBUTES` order); everything else about
an image (pose, scale, view, light, background, occlusion, skin tone) is drawn per image.
The "shifted" domain adds garment colours never used in the base domain (purple, orange).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

DOMAINS = ("base", "shifted")

# nominal BGR of every colour name a caption may use
COLOURS: Dict[str, Tuple[int, int, int]] = {
    "red": (40, 35, 200), "blue": (185, 85, 25), "green": (55, 150, 40), "yellow": (40, 210, 230),
    "black": (30, 30, 30), "white": (235, 235, 235), "grey": (128, 128, 128), "brown": (35, 70, 120),
    "pink": (190, 150, 245), "purple": (150, 45, 125), "orange": (20, 130, 250),
}
HAIR_COLOURS: Dict[str, Tuple[int, int, int]] = {
    "black": (22, 22, 28), "brown": (30, 62, 105), "blonde": (115, 195, 230), "grey": (175, 175, 175),
}
BASE_PALETTE = ("red", "blue", "green", "yellow", "black", "white", "grey", "brown", "pink")
SHIFTED_EXTRA = ("purple", "orange")
SHOE_COLOURS = ("black", "white", "brown", "red")
HAT_COLOURS = ("black", "white", "red", "blue", "grey")

ATTRIBUTES = ("gender", "hair_length", "hair_colour", "upper_colour", "sleeve", "pattern", "lower_type",
              "lower_colour", "shoe_colour", "bag", "bag_colour", "hat", "hat_colour")
# the attributes whose values a caption names as colours / kinds, for the held-out pairs
PAIRABLE = ("hair_colour", "upper_colour", "sleeve", "pattern", "lower_type", "lower_colour", "bag", "hat")
NONE = "none"


def palette(domain: str) -> Tuple[str, ...]:
    """Return the garment colours of a domain."""
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, not {domain!r}")
    return BASE_PALETTE + (SHIFTED_EXTRA if domain == "shifted" else ())


def values(name: str, domain: str) -> Tuple[str, ...]:
    """Return the possible values of attribute ``name`` in ``domain``."""
    garments = palette(domain)
    table = {
        "gender": ("man", "woman"), "hair_length": ("short", "long"), "hair_colour": tuple(HAIR_COLOURS),
        "upper_colour": garments, "sleeve": ("short", "long"), "pattern": ("plain", "striped", "checked"),
        "lower_type": ("trousers", "shorts", "skirt"), "lower_colour": garments, "shoe_colour": SHOE_COLOURS,
        "bag": (NONE, "backpack", "handbag", "shoulder bag"), "bag_colour": garments,
        "hat": (NONE, "cap", "beanie"), "hat_colour": HAT_COLOURS,
    }
    return table[name]


def sample_identity(rng: np.random.Generator, domain: str,
                    force: Optional[Sequence[Tuple[str, str]]] = None) -> Dict[str, str]:
    """Draw one identity's attributes uniformly (skirts for women only), ``force`` pairs set last.

    Args:
        rng: the random generator.
        domain: "base" or "shifted".
        force: (attribute, value) pairs to impose.

    Returns:
        attribute -> value; ``bag_colour`` / ``hat_colour`` are "none" without a bag / hat.
    """
    a = {n: str(rng.choice(values(n, domain))) for n in ATTRIBUTES}
    for k, v in force or ():
        a[k] = v
    if a["lower_type"] == "skirt" and not any(k == "gender" for k, _ in force or ()):
        a["gender"] = "woman"
    if a["bag"] == NONE:
        a["bag_colour"] = NONE
    if a["hat"] == NONE:
        a["hat_colour"] = NONE
    return a


def combo(attrs: Dict[str, str]) -> Tuple[str, ...]:
    """Return the full attribute combination as a hashable tuple."""
    return tuple(attrs[n] for n in ATTRIBUTES)


def jitter_colour(bgr: Sequence[int], rng: np.random.Generator, amount: int = 12) -> Tuple[int, int, int]:
    """Return a colour moved by up to ``amount`` per channel (dye and fabric vary per image)."""
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in bgr)
