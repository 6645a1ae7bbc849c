"""Write CUHK-PEDES-style captions of a generated pedestrian from its attributes.

"A woman with long black hair wears a red short-sleeved shirt, blue jeans and white shoes.
She carries a black backpack." Sentence forms, clause order and synonyms (shirt / top /
t-shirt, trousers / pants, ...) vary; a minor attribute (shoes, hair colour) is sometimes
left out; attributes the image hides (occlusion) are never mentioned, so every word a
caption says about the person can be checked in the pixels.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Set, Tuple

import numpy as np

from person_search.lab.data.attributes import NONE

SUBJECTS = {"man": ("A man", "The man", "This man", "A guy", "A male pedestrian", "A young man"),
            "woman": ("A woman", "The woman", "This woman", "A lady", "A female pedestrian", "A young woman")}
PRONOUN = {"man": ("He", "his"), "woman": ("She", "her")}
OMIT_MINOR = 0.25


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _colour(rng: np.random.Generator, c: str) -> str:
    return _pick(rng, ("grey", "gray")) if c == "grey" else c


def _upper(a: Dict[str, str], rng: np.random.Generator) -> str:
    pattern = {"plain": ("", "", "plain"), "striped": ("striped",), "checked": ("checked", "plaid")}[a["pattern"]]
    if a["sleeve"] == "short":
        noun = _pick(rng, ("short-sleeved shirt", "short-sleeved top", "t-shirt", "short-sleeve shirt"))
    else:
        noun = _pick(rng, ("long-sleeved shirt", "long-sleeved top", "sweater", "jacket", "long-sleeve shirt"))
    return " ".join(w for w in ("a", _colour(rng, a["upper_colour"]), _pick(rng, pattern), noun) if w)


def _lower(a: Dict[str, str], rng: np.random.Generator) -> str:
    c, t = _colour(rng, a["lower_colour"]), a["lower_type"]
    if t == "skirt":
        return f"a {c} {_pick(rng, ('skirt', 'skirt', 'knee-length skirt'))}"
    if t == "shorts":
        return f"{c} shorts"
    return f"{c} {_pick(rng, ('trousers', 'pants', 'jeans') if c == 'blue' else ('trousers', 'pants'))}"


def _hair(a: Dict[str, str], rng: np.random.Generator, omit_colour: bool) -> Tuple[str, str]:
    return a["hair_length"], "" if omit_colour else _colour(rng, a["hair_colour"])


def _shoes(a: Dict[str, str], rng: np.random.Generator) -> str:
    return f"{_colour(rng, a['shoe_colour'])} {_pick(rng, ('shoes', 'sneakers', 'shoes'))}"


def _bag(a: Dict[str, str], rng: np.random.Generator, poss: str) -> str:
    c = _colour(rng, a["bag_colour"])
    return {"backpack": (f"a {c} backpack", f"a {c} backpack"),
            "handbag": (f"a {c} handbag", f"a {c} bag in {poss} hand"),
            "shoulder bag": (f"a {c} shoulder bag", f"a {c} bag over {poss} shoulder")}[a["bag"]][int(rng.integers(2))]


def _hat(a: Dict[str, str], rng: np.random.Generator) -> str:
    c = _colour(rng, a["hat_colour"])
    return _pick(rng, (f"a {c} cap", f"a {c} baseball cap")) if a["hat"] == "cap" else \
        _pick(rng, (f"a {c} beanie", f"a {c} knit hat"))


def _join(items: List[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def describe(attrs: Dict[str, str], hidden: Set[str], rng: np.random.Generator) -> str:
    """Write one caption of an image.

    Args:
        attrs: the identity's attributes.
        hidden: attributes this image does not show (never mentioned).
        rng: the generator that picks forms, order and synonyms.

    Returns:
        a caption of two to four sentences.
    """
    pron, poss = PRONOUN[attrs["gender"]]
    subj = _pick(rng, SUBJECTS[attrs["gender"]])
    minor = [k for k in ("shoe_colour", "hair_colour") if k not in hidden]
    omit = _pick(rng, minor) if minor and rng.random() < OMIT_MINOR else None
    shows = {k: k not in hidden for k in ("hair_colour", "upper_colour", "lower_colour", "shoe_colour", "bag", "hat")}
    length, hcol = _hair(attrs, rng, omit == "hair_colour")
    hair = " ".join(w for w in (length, hcol, "hair") if w) if shows["hair_colour"] else None
    clothes = [_upper(attrs, rng)] if shows["upper_colour"] else []
    clothes += [_lower(attrs, rng)] if shows["lower_colour"] else []
    shoes = _shoes(attrs, rng) if shows["shoe_colour"] and omit != "shoe_colour" else None

    rest: List[Callable[[], str]] = []
    form = int(rng.integers(4))
    if form == 0 and clothes:
        lead = f"{subj} {'with ' + hair + ' ' if hair else ''}wears {_join(clothes + ([shoes] if shoes else []))}."
        hair = shoes = None
    elif form == 1 and clothes:
        lead = f"{subj} is wearing {_join(clothes)}."
    elif form == 2 and clothes and hair:
        lead = f"{subj} has {hair} and is dressed in {' with '.join(clothes)}."
        hair = None
    elif form == 3 and clothes:
        lead = f"{subj} in {_join(clothes)} is walking."
    else:
        lead = f"{subj} is walking{' and wears ' + _join(clothes) if clothes else ''}."
    if hair:
        told = f"{length} and {hcol}" if hcol else length
        rest.append(lambda: _pick(rng, (f"{pron} has {hair}.", f"{poss.capitalize()} hair is {told}.")))
    if shoes:
        rest.append(lambda: _pick(rng, (f"{pron} wears {shoes}.", f"{pron} has {shoes} on.")))
    if attrs["bag"] != NONE and shows["bag"]:
        bag = _bag(attrs, rng, poss)
        rest.append(lambda: _pick(rng, (f"{pron} carries {bag}.", f"{pron} is carrying {bag}.")))
    if attrs["hat"] != NONE and shows["hat"]:
        hat = _hat(attrs, rng)
        rest.append(lambda: _pick(rng, (f"{pron} wears {hat}.", f"{pron} has {hat} on {poss} head.")))
    order = rng.permutation(len(rest))
    return " ".join([lead] + [rest[i]() for i in order])
