"""Mesh folders checked for what goes wrong: folded, inverted and overlapping cells, absurd
coordinate scales, paths that cannot be followed, too few files for the splits.

Every mesh is a real file written with meshio into tmp_path, every symlink a real one; the
checks run through `meshgnn data check` in-process and through training's folder loader.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import meshio
import numpy as np
import pytest

from conftest import as_nobody, compose_config
from meshgnn.cli import main
from meshgnn.data.dataset import load_datasets
from meshgnn.data.features import ModelInputs
from meshgnn.data.generate import generate_samples
from meshgnn.data.mesh_geometry import check_geometry
from meshgnn.data.sources import get_source
from meshgnn.errors import UserError

MODEL_INPUTS = ModelInputs(broadcast_globals=True, residual=False, hierarchy=None)


def grid(n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A unit square of n x n squares, each split into two counter-clockwise triangles."""
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    points = np.stack([i.ravel(), j.ravel()], axis=1).astype(np.float64) / n
    node = lambda a, b: a * (n + 1) + b  # noqa: E731
    cells = []
    for a in range(n):
        for b in range(n):
            p, q, r, s = node(a, b), node(a + 1, b), node(a + 1, b + 1), node(a, b + 1)
            cells += [(p, q, r), (p, r, s)]
    return points, np.array(cells)


def tets() -> tuple[np.ndarray, np.ndarray]:
    """A unit cube of 2 x 2 x 2 cubes, each split into six positively oriented tetrahedra."""
    from scipy.spatial import Delaunay

    i, j, k = np.meshgrid(*[np.arange(3)] * 3, indexing="ij")
    points = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1) / 2.0 + 0.01 * np.sin(np.arange(27))[:, None]
    cells = Delaunay(points).simplices
    p = points[cells]
    volume = np.einsum("ij,ij->i", p[:, 1] - p[:, 0], np.cross(p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]))
    cells[volume < 0] = cells[volume < 0][:, [0, 2, 1, 3]]
    return points, cells


def write(path: Path, points: np.ndarray, cell_type: str, cells: np.ndarray, **kwargs) -> Path:
    pts = np.pad(points, ((0, 0), (0, 3 - points.shape[1])))
    meshio.write(path, meshio.Mesh(pts, [(cell_type, cells)], point_data={"T": pts[:, 0] ** 2}), **kwargs)
    return path


def check(folder: Path, capsys, *extra: str) -> tuple[int, str, str]:
    """`meshgnn data check FOLDER --targets T`: (exit code, stdout, stderr)."""
    argv = ["data", "check", str(folder), "--targets", "T", "--workers", "1", *extra]
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code)
    out, err = capsys.readouterr()
    return code, out, err


def load(folder: Path, cache: Path):
    cfg = compose_config(["data=mesh_folder", f"data.path={folder}", "data.targets=[T]",
                          "data.process_workers=1"]).data
    return load_datasets(cfg, cache, MODEL_INPUTS)


def good_folder(folder: Path, count: int = 3, solid: bool = False) -> Path:
    """`count` valid triangle meshes (tetrahedron meshes if `solid`)."""
    folder.mkdir()
    points, cells = tets() if solid else grid()
    for k in range(count):
        write(folder / f"m{k}.vtu", points, "tetra" if solid else "triangle", cells)
    return folder


@pytest.mark.parametrize("name,size", [("heat2d", 0.12), ("elasticity2d", 0.12), ("elasticity3d", 0.3)])
def test_the_built_in_generators_meshes_pass(name, size):
    for sample in generate_samples(get_source(name), 2, 3, size, 2, workers=1):
        assert check_geometry(np.asarray(sample.points, dtype=np.float64), sample.cells) == []


def test_valid_meshes_pass_in_either_orientation_and_as_msh(tmp_path, capsys):
    folder = tmp_path / "ok"
    folder.mkdir()
    points, cells = grid()
    write(folder / "ccw.vtu", points, "triangle", cells)
    write(folder / "cw.vtu", points, "triangle", cells[:, ::-1])  # wholly clockwise: fine
    write(folder / "quads.msh", points, "quad", np.array([[0, 5, 6, 1]]), file_format="gmsh22")
    code, out, err = check(folder, capsys, "--split", "0.4", "0.3", "0.3")
    assert code == 0 and "error" not in err, err  # meshio itself warns about the MSH file's tags
    assert "ok: 3 files" in out and "warning" not in out
    points, cells = tets()
    assert check_geometry(points, [("tetra", cells)]) == []
    assert check_geometry(points, [("tetra", cells[:, [1, 0, 2, 3]])]) == []  # all inverted alike: fine


@pytest.mark.parametrize("defect,expected", [
    ("folded", "1 of 32 triangle cells are inverted, concave or self-intersecting"),
    ("swapped", "1 of 32 triangle cells are inverted, concave or self-intersecting"),
    ("duplicated", "edges are shared by more than two cells"),
    ("tet", "1 of 99 tetra cells are inverted"),
])
def test_inverted_folded_and_overlapping_cells_are_errors_in_check_and_training(tmp_path, capsys, defect,
                                                                                 expected):
    folder = good_folder(tmp_path / "meshes", 2, solid=defect == "tet")
    points, cells = grid()
    if defect == "folded":  # corner (1, 0), in one triangle only, moved over that triangle's diagonal
        points = points.copy()
        assert list(cells[24]) == [15, 20, 21] and list(points[20]) == [1, 0]
        points[20] = [0.8, 0.15]
        write(folder / "bad.vtu", points, "triangle", cells)
    elif defect == "swapped":
        cells = cells.copy()
        cells[10] = cells[10][[0, 2, 1]]
        write(folder / "bad.vtu", points, "triangle", cells)
    elif defect == "duplicated":
        write(folder / "bad.vtu", points, "triangle", np.concatenate([cells, cells[10:11]]))
    else:
        points, cells = tets()
        cells[5] = cells[5][[1, 0, 2, 3]]
        write(folder / "bad.vtu", points, "tetra", cells)
    code, _, err = check(folder, capsys)
    assert code == 2
    assert err.startswith("error: ") and "bad.vtu: cells: " in err and expected in err, err
    if defect != "duplicated":  # one problem, named once (an inverted cell is not counted as an overlap too)
        assert err.startswith("error: 1 problem(s) in") and err.count("bad.vtu") == 1, err
    with pytest.raises(UserError, match=expected):
        load(folder, tmp_path / "cache")


def test_absurd_coordinate_scale_is_a_counted_warning_and_still_trains(tmp_path, capsys):
    folder = good_folder(tmp_path / "meshes", 3)
    points, cells = grid()
    write(folder / "m0.vtu", points * 1e30, "triangle", cells)
    code, out, err = check(folder, capsys)
    assert (code, err) == (0, "")
    warning = [line for line in out.splitlines() if line.startswith("warning:")]
    assert warning == ["warning: coordinate scale: 1 of 3 files (m0.vtu: extent 1e+30); outside 1e-06..1e+06 in "
                       "the file's units; training normalises coordinates, so this is fine if intended (a micro- "
                       "or astronomic-scale mesh), otherwise check the export's units"]
    assert out.splitlines()[-1] == "ok: 3 files, 1 warning(s)"
    data = load(folder, tmp_path / "cache")
    for graph in data.splits["train"]:
        assert np.isfinite(graph.x.numpy()).all() and np.isfinite(graph.edge_attr.numpy()).all()

    write(folder / "m1.vtu", points * 1e38, "triangle", cells)  # beyond float32: garbage, so an error
    code, _, err = check(folder, capsys)
    assert code == 2 and "m1.vtu: points: coordinates reach 1e+38, beyond the 32-bit floats" in err


@pytest.mark.parametrize("kind", ["dangling symlink", "folder"])
def test_paths_that_cannot_be_followed_are_named_by_check_and_refused_by_training(tmp_path, capsys, kind):
    folder = good_folder(tmp_path / "meshes", 3)
    if kind == "dangling symlink":
        os.symlink(tmp_path / "moved.vtu", folder / "gone.vtu")
        why = f"is a symlink to {tmp_path / 'moved.vtu'}, which does not exist (or loops)"
    else:
        (folder / "gone.vtu").mkdir()
        why = "is a folder, not a file"
    code, _, err = check(folder, capsys)
    assert code == 2
    assert f"  gone.vtu: file: {why}; fix: repair or remove it" in err
    with pytest.raises(UserError) as caught:
        load(folder, tmp_path / "cache")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"1 path(s) matching '*' in {folder} cannot be read: "
                                                      f"gone.vtu {why}; fix: ")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.pt"))


def test_a_file_without_read_permission_is_named(tmp_path):
    prefix = as_nobody()
    shared = Path(tempfile.mkdtemp(prefix="meshgnn-perm-"))  # tmp_path's parents are private to root
    folder = good_folder(shared / "meshes", 3)
    shared.chmod(0o755)
    (folder / "m1.vtu").chmod(0o200)
    script = ("import sys; from meshgnn.data.folder_spec import FolderSpec; from meshgnn.data.mesh_files import "
              "list_mesh_files; list_mesh_files(FolderSpec(sys.argv[1], targets=('T',)))")
    run = subprocess.run([*prefix, sys.executable, "-c", script, str(folder)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2])
    shutil.rmtree(shared)
    assert "UserError: 1 path(s) matching '*'" in run.stderr
    assert "m1.vtu is not readable (permission denied); fix: " in run.stderr


@pytest.mark.parametrize("count", [1, 2])
def test_too_few_files_for_the_splits_is_one_line_in_check_and_training(tmp_path, capsys, count):
    folder = good_folder(tmp_path / "meshes", count)
    code, out, err = check(folder, capsys)
    expected = (f"{count} readable mesh file(s) matching '*' in {folder}: too few samples for the train/val/test "
                "splits (ratios 0.8/0.1/0.1 need at least 3); add mesh files to the folder, or change the ratios")
    assert (code, out) == (2, "") and err == f"error: {expected} (--split)\n"
    with pytest.raises(UserError) as caught:
        load(folder, tmp_path / "cache")
    assert str(caught.value) == f"{expected} (data.split)"
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.pt"))
    assert check(folder, capsys, "--split", "0.4", "0.3", "0.3")[0] == 2  # no ratios fit 2 files
