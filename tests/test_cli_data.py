"""`meshgnn data export` and `meshgnn data check`, run as a user would."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import meshio
import numpy as np
import pytest

from meshgnn.cli import main
from conftest import ROOT


def test_export_then_check_in_subprocesses(tmp_path, capsys):
    folder = tmp_path / "heat"
    main(["data", "export", "--data", "heat2d", "--out", str(folder), "--num-samples", "3",
          "--mesh-size", "0.15", "--workers", "1"])  # --max-holes from conf/data/heat2d.yaml
    printed = capsys.readouterr().out
    assert f"wrote 3 heat2d samples (mesh size 0.15, max holes 3) to {folder}" in printed
    check_line = next(line.strip() for line in (folder / "README.txt").read_text().splitlines()
                      if line.strip().startswith("meshgnn data check"))
    assert f"check:  {check_line}" in printed

    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    mesh = meshio.read(broken / "sample_00001.vtu")
    del mesh.point_data["temperature"]
    meshio.write(broken / "sample_00001.vtu", mesh)
    mesh = meshio.read(broken / "sample_00002.vtu")
    mesh.point_data["heat_flux"][:3] = np.nan
    meshio.write(broken / "sample_00002.vtu", mesh)

    # The README's exact command line, on the export and on the broken copy, run side by side.
    args = shlex.split(check_line)[3:]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = [subprocess.Popen([sys.executable, "-m", "meshgnn.cli", "data", "check", str(path), *args[1:],
                              "--workers", "1"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for path in (folder, broken)]
    (good_out, good_err), (bad_out, bad_err) = (run.communicate(timeout=120) for run in runs)

    assert runs[0].returncode == 0, good_err
    assert good_out.splitlines()[-1] == "ok: 3 files"
    assert "files        3 (3 readable)" in good_out
    assert "spatial dim  2" in good_out and "triangle" in good_out
    assert any(line.split()[:3] == ["heat_flux", "target", "2"] for line in good_out.splitlines())

    assert runs[1].returncode == 2, bad_err
    assert "ok:" not in bad_out and "files        3 (3 readable)" in bad_out
    assert bad_err.startswith(f"error: 2 problem(s) in {broken}:")
    assert "sample_00001.vtu: target field 'temperature': missing from point_data" in bad_err
    assert "sample_00002.vtu: target field 'heat_flux': 3 of " in bad_err
    assert "Traceback" not in bad_err


def test_check_reports_a_missing_folder_and_bad_options(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check", str(tmp_path / "nowhere"), "--targets", "T"])
    assert exit_info.value.code == 2
    assert f"error: mesh folder {tmp_path / 'nowhere'} does not exist" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check", str(tmp_path), "--targets", "T", "--node-type-field", "kind"])
    assert exit_info.value.code == 2
    assert "node_type_values is empty" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exit_info:
        main(["data", "export", "--data", "heat3d", "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    assert "unknown data source 'heat3d'" in capsys.readouterr().err
