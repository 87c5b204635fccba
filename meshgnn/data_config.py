"""The checks and nested schemas of the 2D generators' data keys (heat2d, elasticity2d, flow2d):
`data.mesh_size` as a number or a range, `data.ranges.<parameter>`, `data.families` and
`data.hole_shapes`. Apart from meshgnn.config because they are the generators' own vocabulary
(the parameter names and the physics that bounds them), and import-light like it: the geometry
names come from meshgnn.data.geometry only when a value is checked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional

from meshgnn.constraints import Check, Range, at_least, key, positive

# The least ligament between holes and from a hole to the outline (meshgnn.data.geometry's
# random_part margin; the sources pass it).
HOLE_MARGIN = 0.08
# Largest hole size (a circle's radius, or the radius of a circle of about a shape's extent)
# whose hole still fits the unit height of every part with HOLE_MARGIN around it.
MAX_HOLE_SIZE = 0.4
# flow2d's channel (meshgnn.data.channel): obstacle centres lie in x in [CLEARANCE, REGION *
# length], and keep one obstacle size (at least HOLE_MARGIN) to the walls, so an obstacle of
# size s needs s + max(s, HOLE_MARGIN) <= 1/2: at most MAX_OBSTACLE_SIZE.
CHANNEL_INLET_CLEARANCE = 0.5
CHANNEL_OBSTACLE_REGION = 0.6
MAX_OBSTACLE_SIZE = 0.25
MIN_CHANNEL_LENGTH = CHANNEL_INLET_CLEARANCE / CHANNEL_OBSTACLE_REGION
# The Reynolds number (on the obstacle scale) above which the wake of a cylinder sheds vortices
# (Re ~ 47): flow2d's steady solutions exist only below it.
SHEDDING_REYNOLDS = 47.0


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class MeshSize(Check):
    """data.mesh_size: one positive number (every sample at that size) or [min, max] with
    0 < min <= max (each sample's size drawn log-uniformly in it)."""

    def problem(self, value: Any, key: str) -> Optional[str]:
        fix = f"set e.g. {key}=0.08 or '{key}=[0.065,0.1]'"
        if _number(value):
            return None if math.isfinite(value) and value > 0 else f"must be positive; {fix}"
        if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(map(_number, value)):
            return f"must be a number or a pair [min, max] of numbers; {fix}"
        lo, hi = value
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
            return f"must be a range [min, max] with 0 < min <= max; {fix}"
        return None


@dataclass(frozen=True)
class Interval(Check):
    """A parameter's range [lo, hi]: lo <= hi (lo == hi: a fixed value), both within `item`."""

    item: Range
    example: str

    def problem(self, value: Any, key: str) -> Optional[str]:
        fix = f"set e.g. '{key}={self.example}'"
        if len(value) != 2:
            return f"must be a range [lo, hi] (two numbers); {fix}"
        lo, hi = value
        for end, name in ((lo, "lo"), (hi, "hi")):
            if not math.isfinite(end):
                return f"has {name}={end}, which must be a finite number; {fix}"
            if self.item.problem(end, key) is not None:
                return f"has {name}={end:g}, which must be {self.item.bounds()}; {fix}"
        if lo > hi:
            return f"has lo > hi: write [lo, hi] with lo <= hi (lo == hi fixes the value); {fix}"
        return None


@dataclass(frozen=True)
class GeometryNames(Check):
    """A non-empty list of names of meshgnn.data.geometry's `kind` (FAMILIES or HOLE_SHAPES)."""

    kind: str

    def problem(self, value: Any, key: str) -> Optional[str]:
        from meshgnn.data import geometry

        valid = getattr(geometry, self.kind)
        if not value:
            return f"needs at least one of {', '.join(valid)}"
        unknown = [name for name in value if name not in valid]
        if unknown:
            return f"has unknown {unknown[0]!r}; the valid ones are {', '.join(valid)}"
        return None


ANY = Range()  # any finite number
LENGTH = Interval(positive("the part's x-extent; its height is 1"), "[1,2]")
HOLE_SIZE = Interval(Range(lo=0, hi=MAX_HOLE_SIZE, lo_open=True,
                           meaning=f"a hole's radius; at most {MAX_HOLE_SIZE:g} fits the unit height"), "[0.08,0.2]")


def holes_fit_the_length(v: Mapping[str, Any], prefix: str) -> Optional[str]:
    """A relation of a 2D generator's data section: the shortest part leaves room for the
    largest hole with its margins on both sides (when there are holes)."""
    shortest, largest = v["ranges"]["length"][0], v["ranges"]["hole_size"][1]
    need = 2 * (largest + HOLE_MARGIN)
    if v["max_holes"] == 0 or shortest >= need:
        return None
    ranges, fits = f"{prefix}.ranges", shortest / 2 - HOLE_MARGIN
    smaller = f" or lower {ranges}.hole_size's hi to {fits:g}" if fits > 0 else ""
    return (f"{ranges}.length's lo={shortest:g} is too short for holes of {ranges}.hole_size up to {largest:g}: one "
            f"needs 2 x (size + {HOLE_MARGIN:g} margin) = {need:g}; raise {ranges}.length's lo to {need:g}{smaller}"
            f" (or set {prefix}.max_holes=0)")


@dataclass
class Heat2dRanges:
    """The range each heat2d parameter is drawn from (uniformly): meshgnn.data.sources.heat2d."""

    conductivity: List[float] = key(Interval(positive("conductivity k"), "[0.5,2]"))
    mean_temperature: List[float] = key(Interval(ANY, "[0,1]"))
    boundary_amplitude: List[float] = key(Interval(at_least(0, "mode 1's amplitude; mode m's is 1/m of a draw"),
                                                   "[0,1.25]"))
    source_amplitude: List[float] = key(Interval(ANY, "[0,40]"))
    source_width: List[float] = key(Interval(positive("the Gaussian source's standard deviation"), "[0.1,0.25]"))
    length: List[float] = key(LENGTH)
    hole_size: List[float] = key(HOLE_SIZE)


@dataclass
class Elasticity2dRanges:
    """The range each elasticity2d parameter is drawn from (uniformly): ...sources.elasticity2d."""

    youngs_modulus: List[float] = key(Interval(positive("Young's modulus E"), "[0.5,2]"))
    poisson_ratio: List[float] = key(Interval(Range(lo=0, hi=0.5, hi_open=True, meaning="Poisson's ratio"),
                                              "[0.2,0.4]"))
    traction_x: List[float] = key(Interval(ANY, "[-0.01,0.01]"))
    traction_y: List[float] = key(Interval(ANY, "[-0.001,0.001]"))
    length: List[float] = key(LENGTH)
    hole_size: List[float] = key(HOLE_SIZE)


@dataclass
class Flow2dRanges:
    """The range each flow2d parameter is drawn from (uniformly): meshgnn.data.sources.flow2d."""

    length: List[float] = key(Interval(Range(lo=MIN_CHANNEL_LENGTH, meaning=(
        f"the channel's length (its height is 1); at least {MIN_CHANNEL_LENGTH:.3g}, so obstacles fit in its first "
        f"{CHANNEL_OBSTACLE_REGION:.0%} past {CHANNEL_INLET_CLEARANCE:g} from the inlet")), "[2,3]"))
    hole_size: List[float] = key(Interval(Range(lo=0, hi=MAX_OBSTACLE_SIZE, lo_open=True, meaning=(
        f"an obstacle's circumradius; at most {MAX_OBSTACLE_SIZE:g} keeps one size to both walls")), "[0.08,0.15]"))
    mean_velocity: List[float] = key(Interval(positive("the inflow's mean speed U (its peak is 1.5 U)"),
                                              "[0.5,1.5]"))
    reynolds: List[float] = key(Interval(Range(lo=0, hi=SHEDDING_REYNOLDS, lo_open=True, hi_open=True, meaning=(
        f"Re = U D / nu on the largest obstacle's diameter D; below {SHEDDING_REYNOLDS:g}, where a cylinder's "
        "wake starts shedding vortices and no steady flow is physical")), "[10,40]"))
