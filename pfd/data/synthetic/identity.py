"""What a synthetic person looks like: a tuple of discrete attributes drawn from small palettes.

Palettes are small on purpose: many identities share any one value (the same red shirt, the same
black trousers), so a re-ID model has to combine several body parts to tell people apart, which is
what makes occlusion hurt and pose guidance help.
"""
from collections import Counter
from dataclasses import astuple, dataclass

import numpy as np

RGB = tuple[int, int, int]

SKIN_TONES: dict[str, RGB] = {
    "pale": (241, 206, 180), "light": (224, 180, 140), "tan": (198, 145, 100),
    "brown": (150, 100, 65), "dark": (95, 62, 42),
}
HAIR_COLOURS: dict[str, RGB] = {
    "black": (25, 22, 20), "dark_brown": (70, 45, 30), "brown": (125, 85, 50),
    "blond": (215, 185, 120), "grey": (165, 165, 160),
}
UPPER_COLOURS: dict[str, RGB] = {
    "red": (200, 35, 40), "orange": (235, 130, 35), "yellow": (235, 210, 60), "green": (50, 140, 70),
    "blue": (45, 90, 190), "purple": (120, 60, 150), "white": (235, 235, 230), "black": (35, 35, 38),
}
LOWER_COLOURS: dict[str, RGB] = {
    "black": (30, 30, 34), "navy": (35, 45, 85), "grey": (120, 120, 125),
    "khaki": (185, 165, 120), "brown": (105, 70, 45), "denim": (80, 115, 160),
}
SHOE_COLOURS: dict[str, RGB] = {
    "black": (20, 20, 20), "white": (240, 240, 240), "brown": (110, 70, 40), "red": (180, 30, 35),
}
ACCESSORY_COLOURS: dict[str, RGB] = {
    "black": (30, 30, 30), "brown": (120, 80, 45), "red": (170, 40, 45), "blue": (50, 80, 160),
}

# attribute -> {value: relative frequency}; the order of keys is the order of Identity's fields.
ATTRIBUTES: dict[str, dict[str, int]] = {
    "height": {"short": 1, "medium": 1, "tall": 1},
    "build": {"slim": 1, "medium": 1, "broad": 1},
    "skin": dict.fromkeys(SKIN_TONES, 1),
    "hair_colour": dict.fromkeys(HAIR_COLOURS, 1),
    "hair_length": {"short": 1, "long": 1},
    "upper_colour": dict.fromkeys(UPPER_COLOURS, 1),
    "upper_pattern": {"solid": 1, "stripes": 1, "checks": 1, "logo": 1},
    "sleeves": {"long": 1, "short": 1},
    "lower_colour": dict.fromkeys(LOWER_COLOURS, 1),
    "lower_style": {"trousers": 2, "shorts": 1, "skirt": 1},
    "shoes": dict.fromkeys(SHOE_COLOURS, 1),
    "bag": {"none": 2, "backpack": 1, "shoulder_bag": 1, "handbag": 1},
    "bag_colour": dict.fromkeys(ACCESSORY_COLOURS, 1),
    "hat": {"none": 3, "cap": 1, "beanie": 1},
    "hat_colour": dict.fromkeys(ACCESSORY_COLOURS, 1),
}
HEIGHT_SCALE = {"short": 0.93, "medium": 1.0, "tall": 1.06}
BUILD_SCALE = {"slim": 0.88, "medium": 1.0, "broad": 1.14}


@dataclass(frozen=True)
class Identity:
    """The attributes of one person; fields follow ATTRIBUTES' order and hold keys of its palettes."""
    height: str
    build: str
    skin: str
    hair_colour: str
    hair_length: str
    upper_colour: str
    upper_pattern: str
    sleeves: str
    lower_colour: str
    lower_style: str
    shoes: str
    bag: str
    bag_colour: str
    hat: str
    hat_colour: str


def _balanced_column(values: dict[str, int], n: int, rng: np.random.Generator) -> list[str]:
    """n values in proportion to their frequencies (largest remainder), in random order.

    Balanced rather than i.i.d. so that, with enough identities, every value is shared by several.
    """
    names = list(values)
    weights = np.array([values[k] for k in names], dtype=np.float64)
    quota = n * weights / weights.sum()
    counts = np.floor(quota).astype(int)
    remainder_order = np.argsort(-(quota - counts) + rng.random(len(names)) * 1e-9, kind="stable")
    counts[remainder_order[: n - counts.sum()]] += 1
    column = [name for name, c in zip(names, counts) for _ in range(c)]
    return [column[i] for i in rng.permutation(n)]


def make_identities(n: int, rng: np.random.Generator) -> list[Identity]:
    """n identities with pairwise different attribute tuples and balanced attribute values."""
    if n < 0:
        raise ValueError(f"number of identities must be >= 0, got {n}")
    columns = [_balanced_column(values, n, rng) for values in ATTRIBUTES.values()]
    rows = [list(r) for r in zip(*columns)]
    # Resolve (rare) duplicate tuples by swapping one attribute with another row: keeps the balance.
    for _ in range(100 * max(n, 1)):
        seen: dict[tuple, int] = {}
        duplicate = next((i for i, r in enumerate(rows) if seen.setdefault(tuple(r), i) != i), None)
        if duplicate is None:
            return [Identity(*r) for r in rows]
        other, attr = int(rng.integers(n)), int(rng.integers(len(ATTRIBUTES)))
        rows[duplicate][attr], rows[other][attr] = rows[other][attr], rows[duplicate][attr]
    raise RuntimeError(f"could not make {n} distinct identities from the attribute palettes")


def attribute_counts(identities: list[Identity]) -> dict[str, Counter]:
    """For each attribute, how many identities carry each value (used to check sharing)."""
    return {name: Counter(column) for name, column in zip(ATTRIBUTES, zip(*map(astuple, identities)))}
