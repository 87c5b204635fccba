"""Outer boundaries of the built-in 2D parts, as an engineer's plates and brackets vary.

Every outline is a counter-clockwise polygon in [0, length] x [0, 1] that starts at (0, 0),
keeps the whole left edge x = 0 (elasticity clamps it) and has a right edge on x = length
starting at (length, 0) (elasticity loads it). Curved features (fillets, notch roots) are arcs
of a fixed polygonal resolution, so a seed gives the same polygon at every mesh size.

Families and what they add over the rectangular plate:
- "plate": [0, length] x [0, 1].
- "l_shape": the top-right corner cut out; a re-entrant corner and a shorter loaded edge.
- "notched": one V, U (round root) or rectangular notch into the top or bottom edge.
- "tapered": constant height, then a straight taper down to a lower right edge.
- "filleted": a large-radius rounded top-right corner.
- "waisted": a reduced section from both edges with fillet transitions (tensile specimen).
Depths stay <= 0.6 of the height and cut-outs <= 0.6 of the length, so ligaments stay >= 0.4
(about 0.1 x length next to a notch); the sampler keeps holes `margin` away from all of it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from meshgnn.data.polygons import arc

FAMILIES: tuple[str, ...] = ("plate", "l_shape", "notched", "tapered", "filleted", "waisted")

# Family parameters; "of length" ranges are fractions of the part's length, others absolute
# (the height is 1).
L_CUT_WIDTH = (0.3, 0.6)  # of length
L_CUT_DEPTH = (0.3, 0.6)
NOTCH_KINDS = ("v", "u", "rect")
NOTCH_DEPTH = (0.15, 0.35)
NOTCH_CENTRE = (0.35, 0.65)  # of length
NOTCH_WIDTH = (0.1, 0.3)  # U and rectangular notches; a U's root radius is half of it
V_NOTCH_ANGLE = (np.pi / 6, np.pi / 3)  # included angle (Charpy's is 45 degrees)
TAPER_START = (0.1, 0.5)  # of length: where the taper begins
TAPER_END_HEIGHT = (0.4, 0.8)
FILLET_RADIUS = (0.2, 0.5)  # capped at half the length
WAIST_DEPTH = (0.08, 0.18)  # each side
WAIST_FILLET = (1.0, 2.0)  # transition radius / depth
WAIST_REGION = (0.1, 0.9)  # of length: the waist and its transitions lie in this span

ARC_MAX_ANGLE = np.pi / 12
ARC_MIN_CHORD = 0.02


def draw_outline(rng: np.random.Generator, family: str, length: float) -> np.ndarray:
    """[n, 2] counter-clockwise corners of a random outline of `family` (module doc)."""
    if family not in _BUILDERS:
        raise ValueError(f"unknown geometry family {family!r}; valid: {', '.join(FAMILIES)}")
    corners = _BUILDERS[family](rng, length)
    corners = np.clip(corners, (0.0, 0.0), (length, 1.0))  # arcs' rounding must not leave the box
    keep = np.linalg.norm(corners - np.roll(corners, 1, axis=0), axis=1) > 1e-12
    return corners[keep]


def _plate(rng: np.random.Generator, length: float) -> np.ndarray:
    return np.array([[0.0, 0.0], [length, 0.0], [length, 1.0], [0.0, 1.0]])


def _l_shape(rng: np.random.Generator, length: float) -> np.ndarray:
    width = length * rng.uniform(*L_CUT_WIDTH)
    depth = rng.uniform(*L_CUT_DEPTH)
    step = [[length, 1.0 - depth], [length - width, 1.0 - depth], [length - width, 1.0]]
    return np.array([[0.0, 0.0], [length, 0.0], *step, [0.0, 1.0]])


def _notched(rng: np.random.Generator, length: float) -> np.ndarray:
    kind = NOTCH_KINDS[rng.integers(len(NOTCH_KINDS))]
    on_top = bool(rng.integers(2))
    depth = rng.uniform(*NOTCH_DEPTH)
    centre = length * rng.uniform(*NOTCH_CENTRE)
    if kind == "v":
        half = depth * np.tan(rng.uniform(*V_NOTCH_ANGLE) / 2)
        profile = np.array([[centre - half, 0.0], [centre, depth], [centre + half, 0.0]])
    else:
        half = rng.uniform(*NOTCH_WIDTH) / 2
        if kind == "u":
            root = arc((centre, depth - half), half, np.pi, 0.0, ARC_MAX_ANGLE, ARC_MIN_CHORD)
            profile = np.vstack([[centre - half, 0.0], root, [centre + half, 0.0]])
        else:
            profile = np.array([[centre - half, 0.0], [centre - half, depth],
                                [centre + half, depth], [centre + half, 0.0]])
    return _with_profiles(length, profile if not on_top else None, profile if on_top else None)


def _tapered(rng: np.random.Generator, length: float) -> np.ndarray:
    start = length * rng.uniform(*TAPER_START)
    end_height = rng.uniform(*TAPER_END_HEIGHT)
    return np.array([[0.0, 0.0], [length, 0.0], [length, end_height], [start, 1.0], [0.0, 1.0]])


def _filleted(rng: np.random.Generator, length: float) -> np.ndarray:
    radius = min(rng.uniform(*FILLET_RADIUS), length / 2)
    corner = arc((length - radius, 1.0 - radius), radius, 0.0, np.pi / 2, ARC_MAX_ANGLE, ARC_MIN_CHORD)
    corner[0, 0], corner[-1, 1] = length, 1.0  # exact ends: the right edge stays on x == length
    return np.vstack([[0.0, 0.0], [length, 0.0], corner, [0.0, 1.0]])


def _waisted(rng: np.random.Generator, length: float) -> np.ndarray:
    depth = rng.uniform(*WAIST_DEPTH)
    radius = depth * rng.uniform(*WAIST_FILLET)
    meet = np.arcsin(1.0 - depth / radius)  # where the transition arc meets the full section
    run = radius * np.cos(meet)  # x-extent of one transition
    low, high = length * np.array(WAIST_REGION)
    straight = max(0.0, (high - low - 2 * run)) * rng.uniform()
    start = low + max(0.0, high - low - 2 * run - straight) * rng.uniform()
    left, right = start + run, start + run + straight  # ends of the straight reduced section
    down = arc((left, depth - radius), radius, np.pi - meet, np.pi / 2, ARC_MAX_ANGLE, ARC_MIN_CHORD)
    up = arc((right, depth - radius), radius, np.pi / 2, meet, ARC_MAX_ANGLE, ARC_MIN_CHORD)
    down[0, 1] = up[-1, 1] = 0.0
    profile = np.vstack([down, up])
    return _with_profiles(length, profile, profile)


def _with_profiles(length: float, bottom: np.ndarray | None, top: np.ndarray | None) -> np.ndarray:
    """The outline with a profile cut into the bottom and/or top edge. A profile runs in +x and
    gives (x, depth into the material); on the top edge it is mirrored and run backwards."""
    parts = [np.array([[0.0, 0.0]])]
    if bottom is not None:
        parts.append(bottom)
    parts.append(np.array([[length, 0.0], [length, 1.0]]))
    if top is not None:
        parts.append(np.c_[top[::-1, 0], 1.0 - top[::-1, 1]])
    parts.append(np.array([[0.0, 1.0]]))
    return np.vstack(parts)


_BUILDERS: dict[str, Callable[[np.random.Generator, float], np.ndarray]] = {
    "plate": _plate,
    "l_shape": _l_shape,
    "notched": _notched,
    "tapered": _tapered,
    "filleted": _filleted,
    "waisted": _waisted,
}
