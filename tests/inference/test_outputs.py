"""Outputs never overwrite inputs: `predict`, `export` and `ensemble` refuse an output location
at, inside or around their inputs, a file, a path under a file or an unwritable folder, in one
line (exit 2), before anything is written."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import meshio
import numpy as np
import pytest

from conftest import as_nobody
from inference_fixtures import files, package_dir  # noqa: F401 (fixtures)
from meshgnn.cli import main as meshgnn
from meshgnn.errors import UserError
from meshgnn.inference.outputs import Inputs, check_output_location
from meshgnn.inference.predict import plan_outputs


def write_mesh(path):
    """A real (tiny) triangle mesh file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mesh = meshio.Mesh(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), [("triangle", np.array([[0, 1, 2]]))],
                       point_data={"u": np.arange(3.0)})
    meshio.write(path, mesh)
    return path


def tree(root):
    """Every path under `root` with its bytes (None for folders): what must stay unchanged."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def refused(out, inputs, match):
    with pytest.raises(UserError, match=match) as info:
        check_output_location(out, Inputs(inputs), "--out")
    assert len(str(info.value).splitlines()) == 1
    return str(info.value)


def test_a_file_and_a_path_under_a_file_are_refused(tmp_path):
    a_file = write_mesh(tmp_path / "a.vtu")
    refused(a_file, [], r"a.vtu: is a file; pass a folder path for --out")
    refused(a_file / "deeper" / "out", [], r"lies under .*a.vtu, which is a file")
    assert not (tmp_path / "a.vtu" / "deeper").exists()
    check_output_location(tmp_path / "new" / "out", Inputs([]), "--out")  # fine, and creates nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.vtu"]


def test_outputs_at_inside_or_around_inputs_are_refused_after_resolving_symlinks(tmp_path):
    meshes = tmp_path / "meshes"
    first = write_mesh(meshes / "a.vtu")
    (tmp_path / "link").symlink_to(meshes)
    refused(meshes, [meshes], "is the input")
    refused(tmp_path / "link", [meshes], "is the input")  # the same folder under another name
    refused(tmp_path / "link" / "predictions", [meshes], "lies inside the input")
    refused(tmp_path, [first], r"contains the input .*a.vtu; outputs never go where inputs are")
    refused(meshes, [tmp_path / "link" / "a.vtu"], "contains the input")
    check_output_location(tmp_path / "predictions", Inputs([meshes, tmp_path / "link"]), "--out")


def test_a_symlinked_input_file_counts_where_it_points(tmp_path):
    """meshes/a.vtu -> elsewhere/a.vtu: writing into elsewhere/ would replace the real file."""
    target = write_mesh(tmp_path / "elsewhere" / "a.vtu")
    (tmp_path / "meshes").mkdir()
    (tmp_path / "meshes" / "a.vtu").symlink_to(target)
    with pytest.raises(UserError, match=r"elsewhere: contains the input .*meshes/a.vtu"):
        plan_outputs([], [tmp_path / "meshes"], tmp_path / "elsewhere")
    assert target.read_bytes() == (tmp_path / "meshes" / "a.vtu").read_bytes()


def test_two_inputs_that_would_write_one_output_file_are_refused(tmp_path):
    meshes = tmp_path / "meshes"
    one, two = write_mesh(meshes / "one" / "x.vtu"), write_mesh(meshes / "two" / "x.vtu")
    with pytest.raises(UserError, match=r"one/x.vtu and .*two/x.vtu would both be written to .*out/x.vtu; "
                                        "predict them into separate --out folders"):
        plan_outputs([], [one, two], tmp_path / "out")
    other = write_mesh(meshes / "one" / "x.vtk")  # x.vtk and x.vtu of one folder both become x.vtu
    with pytest.raises(UserError, match="would both be written to"):
        plan_outputs([], [meshes / "one"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    other.unlink()
    plan = plan_outputs([], [meshes], tmp_path / "out")  # one folder: relative paths keep them apart
    assert [target.relative_to(tmp_path / "out").as_posix() for _, _, target in plan] == ["one/x.vtu", "two/x.vtu"]


def test_a_dangling_symlink_in_an_input_folder_is_refused_not_skipped(tmp_path):
    write_mesh(tmp_path / "meshes" / "a.vtu")
    (tmp_path / "meshes" / "b.vtu").symlink_to(tmp_path / "gone.vtu")
    with pytest.raises(UserError, match=r"meshes/b.vtu: a symlink to a missing file; repair or remove it"):
        plan_outputs([], [tmp_path / "meshes"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_read_only_mount_is_refused_before_writing(tmp_path):
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here (needs root and mount)")
    try:
        refused(mount / "predictions", [], r"ro/predictions: .*ro is not writable; pass a writable folder")
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture
def shared_tmp():
    """A temporary folder other users may enter (pytest's own is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="meshgnn-outputs-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def test_a_folder_the_user_cannot_write_or_reach_is_refused(shared_tmp):
    """A real non-root user (nobody): a folder only root may write, and one it may not enter."""
    prefix = as_nobody()
    (shared_tmp / "locked").mkdir(mode=0o755)
    (shared_tmp / "private").mkdir(mode=0o700)
    code = ("import sys; from pathlib import Path; from meshgnn.inference.outputs import Inputs, "
            "check_output_location as check\n"
            "for out in sys.argv[1:]:\n"
            "    try: check(Path(out), Inputs([]), '--out')\n"
            "    except Exception as exc: print(type(exc).__name__, exc)")
    outs = [shared_tmp / "locked" / "out", shared_tmp / "private" / "out"]
    proc = subprocess.run([*prefix, sys.executable, "-c", code, *map(str, outs)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0, proc.stderr
    locked, private = proc.stdout.splitlines()  # one line each
    assert locked == (f"UserError {outs[0]}: {outs[0].parent} is not writable; pass a writable folder for --out, "
                      "or fix that folder's permissions")
    assert private.startswith(f"UserError {outs[1]}: cannot be reached (Permission denied: ")
    assert not any(out.exists() for out in outs)


# ------------------------------------------------------- the commands, on a real package


def one_error_line(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        meshgnn(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, captured.err
    return err, captured.out


@pytest.mark.slow
def test_predict_refuses_to_write_onto_into_or_around_its_inputs(package_dir, files, tmp_path, capsys):
    meshes = tmp_path / "my_meshes"
    shutil.copytree(files, meshes)
    (tmp_path / "notes.txt").write_text("mine")
    before, package_before = tree(tmp_path), tree(package_dir)
    for out, expected in [(meshes, "is the input"), (meshes / "predictions", "lies inside the input"),
                          (tmp_path, "contains the input"), (package_dir, "is the input"),
                          (tmp_path / "notes.txt", "is a file"), (tmp_path / "notes.txt" / "out", "which is a file")]:
        err, _ = one_error_line(capsys, ["predict", str(package_dir), str(meshes), "--out", str(out)])
        assert expected in err and str(out) in err
    err, _ = one_error_line(capsys, ["predict", str(package_dir), str(meshes / "sample_00000.vtu"),
                                     str(meshes / "sample_00000.vtu"), "--out", str(tmp_path / "pred")])
    assert "would both be written to" in err
    assert tree(tmp_path) == before and tree(package_dir) == package_before  # byte-identical, no folder made


@pytest.mark.slow
def test_export_refuses_a_file_a_path_under_one_and_its_own_source(debug_run, package_dir, tmp_path, capsys):
    run_dir = debug_run[0]
    (tmp_path / "taken").write_text("mine")
    run_before, package_before = tree(run_dir), tree(package_dir)
    for source, out, expected in [(run_dir, tmp_path / "taken", "is a file"),
                                  (run_dir, tmp_path / "taken" / "pkg", "which is a file"),
                                  (run_dir, run_dir / "package", "lies inside the input"),
                                  (run_dir / "checkpoints" / "best.ckpt", run_dir / "checkpoints" / "best.ckpt",
                                   "is a file"),
                                  (package_dir, package_dir, "is the input")]:
        err, _ = one_error_line(capsys, ["export", str(source), str(out)])
        assert expected in err
    assert tree(run_dir) == run_before and tree(package_dir) == package_before
    assert (tmp_path / "taken").read_text() == "mine"


@pytest.mark.slow
def test_ensemble_refuses_members_and_inputs_as_out_before_the_test_table(package_dir, files, tmp_path, capsys):
    before = tree(files)
    for out, expected in [(files, "is the input"), (package_dir / "pred", "lies inside the input")]:
        err, printed = one_error_line(capsys, ["ensemble", str(package_dir), str(package_dir), "--predict",
                                               str(files), "--out", str(out), "--data-dir", str(tmp_path)])
        assert expected in err and "test split" not in printed
    assert tree(files) == before and not (package_dir / "pred").exists()
    assert list(tmp_path.iterdir()) == []  # no dataset cache built for the table either


@pytest.mark.slow
def test_a_full_disk_while_predicting_or_exporting_is_one_storage_line(debug_run, package_dir, files, tmp_path,
                                                                      capsys):
    """A real 16 KiB tmpfs: the VTU files and the package do not fit."""
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(full)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and mount)")
    try:
        for argv in (["predict", str(package_dir), str(files), "--out", str(full / "pred")],
                     ["export", str(debug_run[0]), str(full / "pkg")]):
            with pytest.raises(SystemExit) as exit_info:
                meshgnn(argv)
            assert exit_info.value.code == 4
            err = capsys.readouterr().err.strip()
            assert err.startswith(f"error: cannot write {full}/") and len(err.splitlines()) == 1, err
            assert "no space left" in err.lower()
        assert not [p for p in full.rglob(".*tmp*")]  # no half-written temporary files left
    finally:
        subprocess.run(["umount", str(full)], check=True)
