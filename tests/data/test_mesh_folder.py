"""Mesh folders: reading mixed-cell meshes, validating bad files, exporting built-in samples.

Every file here is a real mesh file written with meshio (or by hand, for what meshio refuses
to write) and read back through the same code training uses.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import meshio
import numpy as np
import pytest

from meshgnn.data.export import export_samples
from meshgnn.data.generate import generate_samples
from meshgnn.data.graph import edges_from_cells
from meshgnn.data.folder_report import check_folder
from meshgnn.data.folder_spec import FolderSpec, source_spec
from meshgnn.data.mesh_files import list_mesh_files
from meshgnn.data.mesh_geometry import cell_measures
from meshgnn.data.mesh_read import read_sample
from meshgnn.data.sources import get_source
from meshgnn.errors import UserError

# A 2D mesh of one quad and two triangles (z = 0 in the file):
#   3 --- 4 --- 5
#   |     |  /  |
#   0 --- 1 --- 2
POINTS_2D = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [0, 1, 0], [1, 1, 0], [2, 1, 0]], dtype=np.float64)
CELLS_2D = [("quad", np.array([[0, 1, 4, 3]])), ("triangle", np.array([[1, 2, 5], [1, 5, 4]]))]
EDGES_2D = {(0, 1), (1, 4), (3, 4), (0, 3), (1, 2), (2, 5), (1, 5), (4, 5)}
KIND_VALUES = (0, 3, 7)  # declared node-type values, one-hot order
SPEC_2D = dict(inputs=("u",), targets=("T",), node_type_field="kind", node_type_values=KIND_VALUES,
               globals=("k",))

# A unit cube hexahedron with a tetrahedron on its top face, a line block and a vertex block.
POINTS_3D = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1],
                      [0, 1, 1], [0, 0, 2]], dtype=np.float64)
CELLS_3D = [("vertex", np.array([[8]])), ("hexahedron", np.arange(8)[None]),
            ("tetra", np.array([[4, 5, 7, 8]])), ("line", np.array([[0, 1]]))]
EDGES_3D = {(0, 1), (1, 2), (2, 3), (0, 3), (4, 5), (5, 6), (6, 7), (4, 7), (0, 4), (1, 5), (2, 6), (3, 7),
            (5, 7), (4, 8), (5, 8), (7, 8)}


def fields_2d(n: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    kind = np.array([3, 0, 3, 7, 0, 7] + [0] * (n - 6))
    return {"u": rng.normal(size=(n, 2)), "T": rng.normal(size=n), "kind": kind}


def write(path: Path, points, cells, point_data=None, *, cell_data=None, field_data=None, sidecar=None) -> Path:
    """A mesh file; field_data goes into a VTU's <FieldData> (meshio reads it but does not
    write it, so it is inserted the way ParaView/pyvista write it)."""
    mesh = meshio.Mesh(points, cells, point_data=point_data or {}, cell_data=cell_data or {})
    meshio.write(path, mesh)
    if field_data:
        arrays = "".join(f'<DataArray type="Float64" Name="{k}" NumberOfTuples="{len(np.atleast_1d(v))}" '
                         f'format="ascii">{" ".join(map(repr, np.atleast_1d(v).tolist()))}</DataArray>'
                         for k, v in field_data.items())
        text = path.read_text().replace("<UnstructuredGrid>", f"<UnstructuredGrid><FieldData>{arrays}</FieldData>")
        path.write_text(text)
    if sidecar is not None:
        path.with_suffix(".json").write_text(sidecar if isinstance(sidecar, str) else json.dumps(sidecar))
    return path


def undirected(edge_index) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in edge_index.t().tolist()}


def test_2d_mixed_cells_read_with_z_dropped_and_globals_from_field_data(tmp_path):
    data = fields_2d()
    write(tmp_path / "a.vtu", POINTS_2D, CELLS_2D, data, field_data={"k": 2.5})
    spec = FolderSpec(tmp_path, **SPEC_2D)
    report = check_folder(spec, workers=1, progress=False)
    assert report.problems == []
    assert report.dims == {"u": 2, "T": 1, "k": 1}
    assert report.spatial_dim == 2
    assert report.cell_counts == {"quad": 1, "triangle": 2}

    sample = read_sample(tmp_path / "a.vtu", spec, report.dims)
    assert sample.points.shape == (6, 2) and sample.points.dtype == np.float64
    np.testing.assert_array_equal(sample.points, POINTS_2D[:, :2])
    assert undirected(edges_from_cells(sample.cells, sample.num_nodes)) == EDGES_2D
    np.testing.assert_array_equal(sample.inputs["u"], data["u"])
    np.testing.assert_array_equal(sample.targets["T"], data["T"][:, None])
    np.testing.assert_array_equal(sample.node_type, [1, 0, 1, 2, 0, 2])  # index into KIND_VALUES
    np.testing.assert_array_equal(sample.globals, [2.5])
    assert sample.baseline == {}

    source = source_spec(spec, report.dims, report.spatial_dim)
    assert source.node_types == ("kind=0", "kind=3", "kind=7")
    assert [(f.name, f.dim) for f in source.inputs] == [("u", 2)]
    assert [(f.name, f.dim) for f in source.targets] == [("T", 1)]
    assert source.global_names == ("k",) and source.spatial_dim == 2


def test_3d_mixed_cells_with_line_block_and_globals_from_sidecar_json(tmp_path):
    rng = np.random.default_rng(0)
    data = {"f": rng.normal(size=(9, 3)), "y": rng.normal(size=(9, 1)), "extra": np.zeros(9)}
    write(tmp_path / "cube.vtk", POINTS_3D, CELLS_3D, data,
          sidecar={"E": 210.0, "load": [1.0, -2.0, 0.5], "unrelated": "ignored"})
    (tmp_path / "notes.txt").write_text("not a mesh")
    spec = FolderSpec(tmp_path, inputs=("f",), targets=("y",), globals=("E", "load"))
    assert list_mesh_files(spec) == [tmp_path / "cube.vtk"]  # .json and .txt skipped
    report = check_folder(spec, workers=1, progress=False)
    assert report.problems == []
    assert report.dims == {"f": 3, "y": 1, "E": 1, "load": 3}
    assert report.spatial_dim == 3
    assert report.ignored_fields == {"extra": 1}

    sample = read_sample(tmp_path / "cube.vtk", spec, report.dims)
    np.testing.assert_array_equal(sample.points, POINTS_3D)
    assert [t for t, _ in sample.cells] == ["hexahedron", "tetra", "line"]  # vertex block ignored
    assert undirected(edges_from_cells(sample.cells, sample.num_nodes)) == EDGES_3D
    np.testing.assert_array_equal(sample.inputs["f"], data["f"])
    np.testing.assert_array_equal(sample.node_type, np.zeros(9))
    np.testing.assert_array_equal(sample.globals, [210.0, 1.0, -2.0, 0.5])
    source = source_spec(spec, report.dims, report.spatial_dim)
    assert source.node_types == ("node",)
    assert source.global_names == ("E", "load[0]", "load[1]", "load[2]")
    assert source.spatial_dim == 3


def test_cell_measures_of_every_cell_type():
    cube = POINTS_3D[:8]
    assert cell_measures(cube, "hexahedron", np.arange(8)[None]) == pytest.approx([1.0])
    assert cell_measures(cube, "tetra", np.array([[0, 1, 3, 4]])) == pytest.approx([1 / 6])
    assert cell_measures(cube, "wedge", np.array([[0, 1, 3, 4, 5, 7]])) == pytest.approx([0.5])
    apex = np.vstack([cube, [[0.5, 0.5, 1.0]]])
    assert cell_measures(apex, "pyramid", np.array([[0, 1, 2, 3, 8]])) == pytest.approx([1 / 3])
    flat = POINTS_2D[:, :2]
    assert cell_measures(flat, "quad", np.array([[0, 1, 4, 3]])) == pytest.approx([1.0])
    assert cell_measures(flat, "triangle", np.array([[1, 2, 5], [0, 1, 2]])) == pytest.approx([0.5, 0.0])


def _tamper_rows(path: Path) -> None:
    """Drop one value of the ASCII VTU's "T" array (meshio will not write such a file)."""
    text = path.read_text()
    start = text.index("\n", text.index('Name="T"'))
    first = text.index("\n", start + 1)
    path.write_text(text[:first] + text[text.index("\n", first + 1):])


def test_every_problem_of_every_file_is_reported_at_once(tmp_path):
    ok_json = {"k": 1.0}
    for name in ("good_a", "good_b", "good_c"):
        write(tmp_path / f"{name}.vtu", POINTS_2D, CELLS_2D, fields_2d(), sidecar=ok_json)

    def case(name, points=POINTS_2D, cells=CELLS_2D, sidecar=ok_json, **changes):
        data = fields_2d(len(points))
        data.update({k: v for k, v in changes.items() if k != "cell_data"})
        data = {k: v for k, v in data.items() if v is not None}
        return write(tmp_path / name, points, cells, data, cell_data=changes.get("cell_data"), sidecar=sidecar)

    (tmp_path / "unreadable.vtu").write_text("this is not a VTU file")
    (tmp_path / "empty.vtk").write_text("# vtk DataFile Version 4.2\nempty\nASCII\nDATASET UNSTRUCTURED_GRID\n"
                                        "POINTS 0 double\nCELLS 0 0\nCELL_TYPES 0\n")
    case("vertex_only.vtu", cells=[("vertex", np.arange(6)[:, None])])
    case("quadratic.vtu", cells=[("triangle6", np.array([[0, 2, 5, 1, 4, 3]]))])
    case("polygon.vtu", cells=[("polygon", np.array([[0, 1, 2, 5, 4]]))] + CELLS_2D)
    case("typo.vtu", T=None, t=np.zeros(6))
    case("cell_data.vtu", u=None, cell_data={"u": [np.zeros((1, 2)), np.zeros((2, 2))]})
    rows = tmp_path / "rows.vtu"
    meshio.write(rows, meshio.Mesh(POINTS_2D, CELLS_2D, point_data=fields_2d()), binary=False)
    rows.with_suffix(".json").write_text(json.dumps(ok_json))
    _tamper_rows(rows)
    nan_u = fields_2d()["u"]
    nan_u[4, 1] = np.inf
    case("nan.vtu", T=np.array([0, np.nan, 0, np.nan, 0, 0.0]), u=nan_u)
    nan_points = POINTS_2D.copy()
    nan_points[2, 0] = np.nan
    case("nan_points.vtu", points=nan_points)
    case("duplicate.vtu", points=np.vstack([POINTS_2D, [[1e-14, 0, 0]]]))
    case("degenerate.vtu", cells=CELLS_2D + [("triangle", np.array([[0, 1, 2]]))])
    case("missing_points.vtu", cells=CELLS_2D + [("triangle", np.array([[0, 1, 99]]))])
    case("undeclared_kind.vtu", kind=np.array([3, 0, 5, 7, 9, 7]))
    case("fractional_kind.vtu", kind=np.array([3, 0, 0.5, 7, 0, 7]))
    case("no_global.vtu", sidecar=None)
    case("bad_json.vtu", sidecar="{not json")
    case("nan_global.vtu", sidecar='{"k": NaN}')
    case("three_components.vtu", u=np.full((6, 3), 0.5))  # z = 0 would be a flat 2D vector
    lifted = POINTS_2D.copy()
    lifted[:, 2] = 0.1 * np.arange(6)
    case("lifted.vtu", points=lifted)

    spec = FolderSpec(tmp_path, **SPEC_2D)
    report = check_folder(spec, workers=2, progress=False)
    expected = {
        "unreadable.vtu": ["file: cannot be read by meshio", "valid VTU file"],
        "empty.vtk": ["mesh: empty: the file has no points"],
        "vertex_only.vtu": ["mesh: empty: no 2D or 3D cells (only vertex)"],
        "quadratic.vtu": ["1 triangle6 cells", "convert to linear 'triangle' cells"],
        "polygon.vtu": ["unsupported type 'polygon'", "triangle, quad, tetra, hexahedron"],
        "typo.vtu": ["target field 'T': missing from point_data", "did you mean 't'?"],
        "cell_data.vtu": ["input field 'u': missing from point_data", "it is cell data"],
        "rows.vtu": ["field 'T': has 5 rows but the mesh has 6 points"],
        "nan.vtu": ["target field 'T': 2 of 6 nodes have NaN or Inf values (2 with NaN, 0 with Inf)",
                    "input field 'u': 1 of 6 nodes have NaN or Inf values (0 with NaN, 1 with Inf)"],
        "nan_points.vtu": ["points: 1 of 6 nodes have NaN or Inf coordinates"],
        "duplicate.vtu": ["points: 1 duplicate points", "merge duplicate points"],
        "degenerate.vtu": ["1 of 3 triangle cells have zero area"],
        "missing_points.vtu": ["1 triangle cells reference points that do not exist"],
        "undeclared_kind.vtu": ["node-type field 'kind': values 5, 9 are not declared (declared: 0, 3, 7"],
        "fractional_kind.vtu": ["node-type field 'kind': 1 nodes have non-integer values (e.g. 0.5)"],
        "no_global.vtu": ["global 'k': not in the file's field_data nor in a sidecar no_global.json",
                          'add "k": value to no_global.json'],
        "bad_json.vtu": ["sidecar bad_json.json: is not valid JSON"],
        "nan_global.vtu": ["global 'k': is not finite"],
        "three_components.vtu": ["field 'u': has 3 component(s) but 18 of 19 files have 2"],
        "lifted.vtu": ["points: 3D (z not all 0) coordinates but 19 of 20 files are 2D (all z = 0)"],
    }
    for file_name, fragments in expected.items():
        lines = [p for p in report.problems if p.startswith(f"{file_name}: ")]
        assert lines, f"no problem reported for {file_name}: {report.problems}"
        for fragment in fragments:
            assert any(fragment in line for line in lines), (file_name, fragment, lines)
    assert all("; fix: " in p for p in report.problems)
    assert not any(p.startswith("good_") for p in report.problems)
    assert len(report.files) == 23
    assert report.dims == {"u": 2, "T": 1, "k": 1} and report.spatial_dim == 2

    with pytest.raises(UserError) as err:
        report.raise_if_problems()
    message = str(err.value)
    assert message.startswith(f"{len(report.problems)} problem(s) in {tmp_path}:\n")
    assert all(p in message for p in report.problems)
    with pytest.raises(UserError, match="rows.vtu"):
        read_sample(tmp_path / "rows.vtu", spec, report.dims)


def test_zero_volume_cells_and_long_reports_are_capped(tmp_path):
    flat_tet = POINTS_3D.copy()
    flat_tet[8] = [0.5, 0.5, 1.0]  # apex in the plane of the tet's base: zero volume
    write(tmp_path / "flat.vtu", flat_tet, CELLS_3D, {"y": np.ones(9)})
    for i in range(60):
        write(tmp_path / f"m{i:02d}.vtu", POINTS_3D, CELLS_3D, {"x": np.ones(9)})
    report = check_folder(FolderSpec(tmp_path, targets=("y",)), workers=1, progress=False)
    assert "flat.vtu: cells: 1 of 1 tetra cells have zero volume" in "\n".join(report.problems)
    assert len(report.problems) == 61
    message = report.error_message()
    assert message.startswith(f"61 problem(s) in {tmp_path}:")
    assert message.splitlines()[-1] == "  ... and 11 more"


def test_spec_and_folder_errors(tmp_path):
    with pytest.raises(UserError, match="node_type_values is empty"):
        FolderSpec(tmp_path, targets=("T",), node_type_field="kind")
    with pytest.raises(UserError, match="node_type_field is not set"):
        FolderSpec(tmp_path, targets=("T",), node_type_values=(0, 1))
    with pytest.raises(UserError, match="'T' named more than once"):
        FolderSpec(tmp_path, inputs=("T",), targets=("T",))
    with pytest.raises(UserError, match="no target fields"):
        FolderSpec(tmp_path, inputs=("u",))
    with pytest.raises(UserError, match=f"mesh folder {tmp_path / 'nope'} does not exist"):
        list_mesh_files(FolderSpec(tmp_path / "nope", targets=("T",)))
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "b.csv").write_text("1,2")
    with pytest.raises(UserError, match=r"no mesh files matching '\*'.*matched only \.csv, \.json"):
        list_mesh_files(FolderSpec(tmp_path, targets=("T",)))
    nested = tmp_path / "run1" / "out"
    nested.mkdir(parents=True)
    write(nested / "m.vtu", POINTS_2D, CELLS_2D, {"T": np.ones(6)})
    assert list_mesh_files(FolderSpec(tmp_path, "**/*.vtu", targets=("T",))) == [nested / "m.vtu"]


def test_export_round_trips_the_generated_samples_exactly(tmp_path):
    source = get_source("heat2d")
    paths = export_samples("heat2d", tmp_path / "out", num_samples=3, seed=5, mesh_size=0.12, max_holes=2,
                           workers=1)
    folder = tmp_path / "out"
    assert paths == [folder / f"sample_{i:05d}.vtu" for i in range(3)]
    # 2D vectors are written with z = 0 (as predict writes them, so ParaView draws both alike)
    # and read back as the 2 components the dataset has
    assert meshio.read(paths[0]).point_data["heat_flux"].shape[1] == 3
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.txt", "sample_00000.json", "sample_00000.vtu", "sample_00001.json", "sample_00001.vtu",
        "sample_00002.json", "sample_00002.vtu"]
    readme = (folder / "README.txt").read_text()
    assert f"meshgnn data check {folder}" in readme
    assert "'data.inputs=[boundary_temperature,heat_source,conductivity]'" in readme
    assert "'data.node_type_values=[0,1,2]'" in readme and "data.node_type_field=node_type" in readme

    spec = FolderSpec(folder, inputs=tuple(f.name for f in source.spec.inputs),
                      targets=tuple(f.name for f in source.spec.targets), node_type_field="node_type",
                      node_type_values=(0, 1, 2), globals=source.spec.global_names)
    report = check_folder(spec, workers=1, progress=False)
    assert report.problems == []
    assert report.dims == {**{f.name: f.dim for f in (*source.spec.inputs, *source.spec.targets)},
                           **{g: 1 for g in source.spec.global_names}}
    rebuilt = source_spec(spec, report.dims, report.spatial_dim)
    assert (rebuilt.inputs, rebuilt.targets, rebuilt.global_names, rebuilt.spatial_dim) == (
        source.spec.inputs, source.spec.targets, source.spec.global_names, 2)

    expected = generate_samples(source, 3, 5, 0.12, 2, workers=1)
    for want, got in zip(expected, (read_sample(path, spec, report.dims) for path in paths)):
        assert got.points.dtype == np.float64
        np.testing.assert_array_equal(got.points, want.points)
        assert [t for t, _ in got.cells] == [t for t, _ in want.cells]
        for (_, a), (_, b) in zip(got.cells, want.cells):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(got.node_type, want.node_type)
        for name in want.inputs:
            np.testing.assert_array_equal(got.inputs[name], want.inputs[name])
        for name in want.targets:
            np.testing.assert_array_equal(got.targets[name], want.targets[name])
        np.testing.assert_array_equal(got.globals, want.globals)

    # A second export into the same folder replaces the first; foreign files are refused.
    export_samples("heat2d", folder, num_samples=1, seed=5, mesh_size=0.12, max_holes=2, workers=1)
    assert sorted(p.name for p in folder.iterdir()) == ["README.txt", "sample_00000.json", "sample_00000.vtu"]
    shutil.copy(folder / "README.txt", folder / "mine.txt")
    with pytest.raises(UserError, match="already holds mine.txt"):
        export_samples("heat2d", folder, num_samples=1, seed=5, mesh_size=0.12, max_holes=2, workers=1)
