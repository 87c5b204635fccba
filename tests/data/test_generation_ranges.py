"""The 2D generators' data keys: data.mesh_size as a range, data.ranges, their validation, the
cache key they make, and old model packages' data sections."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import compose_config, run_train

from meshgnn.config import validate
from meshgnn.data.dataset import generating_keys
from meshgnn.data.generate import generate_samples, sample_mesh_size
from meshgnn.data.sources import SOURCES, elasticity2d, heat2d
from meshgnn.data.sources.parts import draw_part, streams
from meshgnn.errors import UserError

SOURCES_2D = ("heat2d", "elasticity2d")
COARSE = 0.2  # the tests check draws, not fields: the coarser the faster


def knobs(name: str, **changes) -> dict:
    """conf/data/<name>.yaml's generator and baseline keys, with `changes` (ranges merged)."""
    data = SOURCES[name].knob_values()
    ranges = {**data["ranges"], **changes.pop("ranges", {})}
    return {**data, "ranges": ranges, **changes}


def global_values(name: str, sample) -> dict[str, float]:
    return dict(zip(SOURCES[name].spec.global_names, sample.globals))


# ------------------------------------------------------------------ data.mesh_size
def test_mesh_size_range_draws_log_uniformly_from_its_own_stream():
    sizes = np.array([sample_mesh_size([0.05, 0.2], 3, i) for i in range(400)])
    assert sizes.min() >= 0.05 and sizes.max() <= 0.2
    logs = np.log(sizes / 0.05) / np.log(4)  # uniform in [0, 1] for a log-uniform draw
    assert abs(logs.mean() - 0.5) < 0.05 and (logs < 0.25).mean() == pytest.approx(0.25, abs=0.06)
    assert sample_mesh_size(0.08, 3, 5) == 0.08 and sample_mesh_size([0.07, 0.07], 3, 5) == 0.07
    assert sample_mesh_size([0.05, 0.2], 4, 5) != sample_mesh_size([0.05, 0.2], 3, 5)


@pytest.mark.parametrize("name", SOURCES_2D)
def test_a_halved_mesh_size_range_meshes_the_same_problems_twice_as_fine(name):
    source, seed, nodes = SOURCES[name], 7, np.zeros(2)
    for index in range(3):
        coarse_size, fine_size = (sample_mesh_size(spec, seed, index) for spec in ([0.08, 0.12], [0.04, 0.06]))
        assert fine_size == coarse_size / 2  # exactly
        coarse, fine = (source.generate(index, seed, size, 3) for size in (coarse_size, fine_size))
        np.testing.assert_array_equal(coarse.globals, fine.globals)  # every parameter, the length
        part_coarse, part_fine = (draw_part(streams(seed, index)[0], size, 3, **_part_keys(name))
                                  for size in (coarse_size, fine_size))
        np.testing.assert_array_equal(part_coarse.outer, part_fine.outer)
        assert part_coarse.family == part_fine.family and len(part_coarse.holes) == len(part_fine.holes)
        for hole_coarse, hole_fine in zip(part_coarse.holes, part_fine.holes):  # same place and size
            np.testing.assert_allclose(hole_coarse.mean(0), hole_fine.mean(0), atol=0.02)
        nodes += coarse.num_nodes, fine.num_nodes
    assert 3.0 < nodes[1] / nodes[0] < 5.0  # the holes' and arcs' least segment counts make it < 4


def _part_keys(name: str) -> dict:
    data = knobs(name)
    return {"ranges": data["ranges"], "families": data["families"], "hole_shapes": data["hole_shapes"]}


def test_a_numeric_mesh_size_meshes_every_sample_at_it():
    source = SOURCES["heat2d"]
    [first, second] = generate_samples(source, 2, 4, 0.15, 2, workers=1)
    for index, sample in enumerate((first, second)):
        again = source.generate(index, 4, 0.15, 2)
        np.testing.assert_array_equal(sample.points, again.points)


# ------------------------------------------------------------------ data.ranges
# (source, range name, the globals it sets): each global is a draw from the range.
RANGED_GLOBALS = [
    ("heat2d", "conductivity", ("k",)), ("heat2d", "mean_temperature", ("t0",)),
    ("heat2d", "source_amplitude", ("A",)), ("heat2d", "source_width", ("s",)), ("heat2d", "length", ("Lx",)),
    ("elasticity2d", "youngs_modulus", ("E",)), ("elasticity2d", "poisson_ratio", ("nu",)),
    ("elasticity2d", "traction_x", ("tx0", "tx1")), ("elasticity2d", "traction_y", ("ty0", "ty1")),
    ("elasticity2d", "length", ("Lx",)),
]


@pytest.mark.parametrize("name,parameter,names", RANGED_GLOBALS)
def test_every_range_is_honoured(name, parameter, names):
    default = knobs(name)["ranges"][parameter]
    lo, hi = default[0] + 0.4 * (default[1] - default[0]), default[0] + 0.6 * (default[1] - default[0])
    narrow, fixed = knobs(name, ranges={parameter: [lo, hi]}), knobs(name, ranges={parameter: [hi, hi]})
    for index in range(4):
        drawn = global_values(name, SOURCES[name].generate(index, 1, COARSE, 1, narrow))
        assert all(lo <= drawn[g] <= hi for g in names), drawn
        pinned = global_values(name, SOURCES[name].generate(index, 1, COARSE, 1, fixed))
        assert all(pinned[g] == hi for g in names), pinned


def test_boundary_amplitude_range_sets_every_mode_amplitude():
    for amplitude in (0.0, 0.8):
        data = knobs("heat2d", ranges={"boundary_amplitude": [amplitude, amplitude]})
        g = global_values("heat2d", SOURCES["heat2d"].generate(2, 1, COARSE, 1, data))
        for m in range(1, heat2d.NUM_MODES + 1):
            assert np.hypot(g[f"a{m}"], g[f"b{m}"]) == pytest.approx(amplitude / m, abs=1e-15)


@pytest.mark.parametrize("name", SOURCES_2D)
def test_hole_size_range_sizes_every_hole(name):
    data = knobs(name, families=["plate"], hole_shapes=["circle"], ranges={"hole_size": [0.15, 0.15]})
    holes = [hole for index in range(4) for hole in
             draw_part(streams(2, index)[0], COARSE, 3, data["ranges"], data["families"], data["hole_shapes"]).holes]
    assert holes
    for hole in holes:
        np.testing.assert_allclose(np.linalg.norm(hole - hole.mean(0), axis=1), 0.15, rtol=1e-9)


def test_parameters_do_not_depend_on_the_part():
    """Part and parameters come from separate streams: other families, same conductivity, loads, ..."""
    plates, shapes = (SOURCES["heat2d"].generate(3, 0, COARSE, 2, knobs("heat2d", families=families))
                      for families in (["plate"], ["l_shape"]))
    differ = [n for n, a, b in zip(heat2d.SPEC.global_names, plates.globals, shapes.globals) if a != b]
    assert set(differ) <= {"cx", "cy", "Lx"}, differ  # the source centre lands in the material


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("override,expected", [
    ("data.families=[plate,wing]", "data.families=.*'wing'.*plate, l_shape"),
    ("data.hole_shapes=[star]", "data.hole_shapes=.*'star'.*circle"),
    ("data.hole_shapes=[]", "data.hole_shapes=.*at least one"),
    ("data.ranges.conductivity=[2,1]", r"data.ranges.conductivity=.*lo > hi"),
    ("data.ranges.conductivity=[0,1]", r"data.ranges.conductivity=.*lo=0.*> 0"),
    ("data.ranges.length=[-1,2]", r"data.ranges.length=.*lo=-1"),
    ("data.ranges.hole_size=[0.1,0.45]", r"data.ranges.hole_size=.*hi=0.45.*0.4"),
    ("data.ranges.source_width=[0.1,0.2,0.3]", r"data.ranges.source_width=.*two numbers"),
    ("data.mesh_size=[0.1,0.05]", r"data.mesh_size=.*0 < min <= max"),
    ("data.mesh_size=[0.1]", r"data.mesh_size=.*a number or a pair"),
    ("data.mesh_size=fine", r"data.mesh_size=.*a number or a pair"),
    ("data.mesh_size=0", r"data.mesh_size=0 must be positive"),
    ("data.label_refinement=-1", r"data.label_refinement=-1 must be >= 0"),
    ("data.ranges.length=[0.5,1]", r"data.ranges.length's lo=0.5 is too short .* 0.56"),
])
def test_bad_generator_values_are_one_line_naming_the_key(override, expected):
    with pytest.raises(UserError, match=expected) as info:
        validate(compose_config([override]))
    assert "\n" not in str(info.value)


def test_short_parts_without_holes_are_fine():
    validate(compose_config(["data.ranges.length=[0.3,0.4]", "data.max_holes=0"]))
    sample = SOURCES["heat2d"].generate(0, 0, COARSE, 0, knobs("heat2d", ranges={"length": [0.3, 0.4]}))
    assert 0.3 <= sample.points[:, 0].max() <= 0.4


@pytest.mark.parametrize("override,expected", [
    ("data.ranges.youngs_modulus=[0,1]", r"data.ranges.youngs_modulus=.*lo=0"),
    ("data.ranges.poisson_ratio=[0.3,0.5]", r"data.ranges.poisson_ratio=.*hi=0.5.*\[0, 0.5\)"),
])
def test_bad_elasticity_values_are_one_line(override, expected):
    with pytest.raises(UserError, match=expected):
        validate(compose_config(["data=elasticity2d", override]))


def test_an_unknown_range_name_fails_at_composition_listing_the_valid_ones():
    with pytest.raises(Exception, match="youngs_modulus"):  # train.py's line: test_train_py_names_...
        compose_config(["data.ranges.youngs_modulus=[1,2]"])


def test_train_py_refuses_a_bad_range_in_one_line(tmp_path):
    proc = run_train(["data.ranges.conductivity=[2,1]"], cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert "data.ranges.conductivity" in line and "lo > hi" in line


def test_train_py_names_the_valid_range_names(tmp_path):
    proc = run_train(["data=elasticity2d", "data.ranges.conductivity=[1,2]"], cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert "conductivity" in line and "youngs_modulus, poisson_ratio, traction_x" in line


# ------------------------------------------------------------------ the cache key
def test_every_generating_key_is_in_the_cache_key_and_it_is_stable():
    base = ["data.num_samples=20"]
    default = generating_keys(compose_config(base).data)
    assert default == generating_keys(compose_config(base).data)
    json.dumps(default)  # plain values: the hash is of their JSON
    assert default["version"] == heat2d.VERSION == 6 and elasticity2d.VERSION == 3
    assert default["mesh_size"] == [0.065, 0.1]
    ints, floats = (generating_keys(compose_config(base + [f"data.mesh_size={size}"]).data)
                    for size in ("[1,2]", "[1.0,2.0]"))
    assert ints == floats  # the same sizes make the same cache, however written
    for change in ("data.mesh_size=0.07", "data.families=[plate]", "data.hole_shapes=[slot]",
                   "data.label_refinement=1", "data.shepard_cell=0.1", "data.ranges.conductivity=[1,1]", "data.ranges.hole_size=[0.1,0.1]"):
        assert generating_keys(compose_config(base + [change]).data) != default, change


# ------------------------------------------------------------------ old model packages
OLD_HEAT2D = {"name": "heat2d", "seed": 0, "num_samples": 1000, "mesh_size": 0.08, "max_holes": 3,
              "shepard_neighbours": 64, "generate_workers": 0}  # a data section from before data.ranges
OLD_ELASTICITY2D = {"name": "elasticity2d", "seed": 0, "num_samples": 1000, "mesh_size": 0.08, "max_holes": 3}


@pytest.mark.parametrize("name,old", [("heat2d", OLD_HEAT2D), ("elasticity2d", OLD_ELASTICITY2D)])
def test_an_old_data_section_still_gives_the_baseline_and_an_example_mesh(name, old):
    """It reads as the data its model was trained on: plates with circular holes, and heat2d's
    nearest-node baseline with a fixed neighbour count (`GeneratedSource.predating`)."""
    source = SOURCES[name]
    sample = source.generate(1, 0, COARSE, 2, {**source.knob_values(), **source.predating, **old})
    assert sample.num_nodes != source.generate(1, 0, COARSE, 2).num_nodes  # not today's default mixture
    stripped = dataclasses.replace(sample, baseline={})
    for key, value in source.baseline(stripped, old).items():
        np.testing.assert_array_equal(value, sample.baseline[key], err_msg=key)
    example = source.generate(1, 0, COARSE, 2, source.with_generator_defaults(old))  # as `meshgnn export --program`
    np.testing.assert_array_equal(example.points, sample.points)


def test_elasticity_baseline_moves_with_the_part():
    """x from the clamped edge, y from its bottom: a rigid translation leaves the baseline as it is."""
    sample = SOURCES["elasticity2d"].generate(0, 0, COARSE, 2)
    moved = dataclasses.replace(sample, points=sample.points + [3.25, -1.5], baseline={})
    for key, value in SOURCES["elasticity2d"].baseline(moved).items():
        np.testing.assert_allclose(value, sample.baseline[key], rtol=1e-9, atol=1e-12, err_msg=key)
    no_clamp = dataclasses.replace(sample, node_type=np.zeros_like(sample.node_type))
    with pytest.raises(ValueError, match="clamped"):
        SOURCES["elasticity2d"].baseline(no_clamp)


def test_debug_data_stays_small():
    for name in SOURCES_2D:
        data = compose_config([f"data={name}", "debug=default"]).data
        assert data.num_samples <= 40 and data.mesh_size == 0.12
