"""End to end: `python train.py` through Hydra in a subprocess, as a user runs it."""

import json
import shutil

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import run_train

pytestmark = pytest.mark.slow


def test_debug_run_leaves_a_complete_run_directory(debug_run):
    run_dir, proc = debug_run

    for name in (".hydra/config.yaml", ".hydra/overrides.yaml", "train.log", "checkpoints/last.ckpt",
                 "checkpoints/best.ckpt", "checkpoints/epoch_0001.ckpt", "checkpoints/epoch_0002.ckpt",
                 "metrics.jsonl", "normalization.json", "results.json", "run.json"):
        assert (run_dir / name).is_file(), name

    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2]
    trained_with = json.loads((run_dir / "run.json").read_text())["config"]  # what diagnose reads
    assert trained_with["trainer"]["epochs"] == 2 and trained_with["trainer"]["image_every"] == 1

    results = json.loads((run_dir / "results.json").read_text())
    for who in ("model", "baseline_mean", "baseline_analytic"):
        for target in ("temperature", "heat_flux"):
            for metric in ("rel_l2", "mae", "max_abs"):
                assert results[who][f"test/{target}/{metric}"] >= 0
    assert "temperature" in proc.stdout + proc.stderr  # the printed table

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {"train/loss/total", "val/loss/total", "lr", "epoch_time_s", "consistency/grad",
                "val/temperature/rel_l2", "val/heat_flux/rel_l2", "train/temperature/l1", "val/heat_flux/l1"}
    expected |= {f"{split}/loss/{term}" for split in ("train", "val") for term in
                 ("l1", "relative_l1", "smoothness", "gradient_consistency", "curvature")}
    assert expected <= tags, expected - tags
    assert [e.step for e in events.Scalars("val/loss/total")] == [1, 2]
    assert {"train/grad_norm", "train/param_norm", "train/loss/oscillation"} <= tags
    assert all(e.value > 0 for e in events.Scalars("train/grad_norm"))
    # a fixed validation mesh drawn every epoch, per target; the HParams record at the end
    assert set(events.Tags()["images"]) == {"fields/temperature", "fields/heat_flux"}
    assert [(e.step, e.width > e.height) for e in events.Images("fields/heat_flux")] == [(1, True), (2, True)]
    hparams = events.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in hparams and b"model.hidden_dim" in hparams["_hparams_/session_start_info"]
    assert events.Scalars("test/temperature/rel_l2")[0].value == pytest.approx(
        results["model"]["test/temperature/rel_l2"])

    log = (run_dir / "train.log").read_text()
    assert "epoch 2/2" in log and "graphs/s" in log and "ETA" in log
    assert not [c for c in log if ord(c) < 32 and c not in "\n\t"]  # no bars or colours in the log
    diagnosis = json.loads((run_dir / "diagnosis.json").read_text())
    assert [f["symptom"] for f in diagnosis["findings"]] == [
        "diverged", "not_decreasing", "oscillating", "target_imbalance", "overfitting", "under_trained",
        "consistency_not_decreasing"]
    assert "diagnosis of" in log


def test_overrides_from_the_issue_work(tmp_path, data_cache):
    run_dir = tmp_path / "run"
    proc = run_train(["trainer=debug", "model.hidden_dim=256", "data.fourier_features=32", "optim.lr=1e-3",
                      "loss.smoothness_weight=0.1", "trainer.epochs=1", "model.num_layers=2",
                      "data.num_samples=20", "trainer.activation_checkpointing=true",
                      f"hydra.run.dir={run_dir}", f"paths.data_dir={data_cache}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "hidden_dim: 256" in config and "fourier_features: 32" in config
    assert "activation checkpointing on" in (run_dir / "train.log").read_text()


@pytest.mark.parametrize("override,needle", [
    ("model.hiden_dim=3", "hiden_dim"),
    ("optim.lr=fast", "optim.lr"),
    ("data.num_samples=0", "data.num_samples"),  # semantic checks: the rest in test_config.py
])
def test_bad_config_fails_before_data_work_naming_the_key(tmp_path, override, needle):
    cache = tmp_path / "cache"
    proc = run_train(["trainer=debug", override, f"hydra.run.dir={tmp_path / 'run'}",
                      f"paths.data_dir={cache}"], cwd=tmp_path, timeout=60)
    assert proc.returncode != 0
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not cache.exists()  # failed before any data work


def test_unwritable_output_dir_is_one_clear_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    proc = run_train(["debug=default", f"hydra.run.dir={blocker / 'run'}", f"paths.data_dir={tmp_path / 'c'}"],
                     cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert "hydra.run.dir" in proc.stderr and str(blocker) in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_help_lists_groups_and_cfg_job_prints_config(tmp_path):
    proc = run_train(["--help"], cwd=tmp_path, timeout=60)
    assert proc.returncode == 0
    for line in ("data: elasticity2d, elasticity3d, flow2d, heat2d, mesh_folder", "loss: stage1, stage2",
                 "model: edge_gnn, meshgraphnet, multiscale_gnn", "trainer: debug, default", "debug: default",
                 "python train.py debug=default"):
        assert line in proc.stdout
    proc = run_train(["--cfg", "job"], cwd=tmp_path, timeout=60)
    assert proc.returncode == 0 and "hidden_dim:" in proc.stdout


def test_unknown_objective_fails_before_training(tmp_path, data_cache):
    run_dir = tmp_path / "run"
    proc = run_train(["trainer=debug", "objective=val/temprature/rel_l2", f"hydra.run.dir={run_dir}",
                      f"paths.data_dir={data_cache}"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "objective='val/temprature/rel_l2'" in proc.stderr and "val/temperature/rel_l2" in proc.stderr
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "normalization.json").exists()


def test_elasticity_dataset_trains_end_to_end(tmp_path, data_cache):
    run_dir = tmp_path / "run"
    proc = run_train(["data=elasticity2d", "trainer=debug", "trainer.epochs=1", f"hydra.run.dir={run_dir}",
                      f"paths.data_dir={data_cache}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert {"test/displacement/rel_l2", "test/von_mises/rel_l2"} <= set(results["model"])


@pytest.mark.parametrize("model", ["edge_gnn", "meshgraphnet"])
def test_model_preset_trains_then_tests_its_weights_on_finer_meshes(tmp_path, data_cache, model):
    """Every preset trains on trainer=debug (the default one is covered above), and
    `trainer.epochs=0 init_from=` tests trained weights on other data without training
    (checked once: it does not depend on the preset)."""
    run_dir, fine_dir = tmp_path / "run", tmp_path / "fine"
    proc = run_train(["trainer=debug", f"model={model}", "model.num_layers=3", "trainer.epochs=1", "data.num_samples=20",
                      f"hydra.run.dir={run_dir}",
                      f"paths.data_dir={data_cache}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"name: {model}" in (run_dir / ".hydra" / "config.yaml").read_text()
    if model != "meshgraphnet":
        return

    proc = run_train(["trainer=debug", f"model={model}", "model.num_layers=3", "trainer.epochs=0",
                      "data.mesh_size=0.09", "data.num_samples=20",
                      f"init_from={run_dir}", f"hydra.run.dir={fine_dir}", f"paths.data_dir={data_cache}"],
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (fine_dir / "metrics.jsonl").exists() or not (fine_dir / "metrics.jsonl").read_text()
    trained = json.loads((run_dir / "results.json").read_text())["model"]
    fine = json.loads((fine_dir / "results.json").read_text())["model"]
    assert fine["test/temperature/rel_l2"] != trained["test/temperature/rel_l2"]  # other meshes
    assert 0 < fine["test/temperature/rel_l2"] < 10


def test_mesh_folder_trains_and_a_broken_file_is_one_clear_error(tmp_path, data_cache):
    from meshgnn.data.export import export_samples

    folder = tmp_path / "meshes"
    export_samples("heat2d", folder, 6, seed=0, mesh_size=0.2, max_holes=1, workers=1)
    args = ["data=mesh_folder", f"data.path={folder}", "data.inputs=[boundary_temperature,heat_source]",
            "data.targets=[temperature,heat_flux]", "data.node_type_field=node_type",
            "data.node_type_values=[0,1,2]", "model.hidden_dim=16", "trainer.epochs=1", "data.process_workers=1",
            f"paths.data_dir={data_cache}"]
    proc = run_train([*args, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "heat_flux" in json.dumps(json.loads((tmp_path / "run" / "results.json").read_text()))

    (folder / "sample_00003.vtu").write_text("not a mesh")
    proc = run_train([*args, f"hydra.run.dir={tmp_path / 'broken'}"], cwd=tmp_path)
    assert proc.returncode == 2
    message = proc.stderr.strip().splitlines()
    assert any("sample_00003.vtu" in line for line in message), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args,needle", [
    (["seed=-1"], "error: seed=-1 must be in [0, "),
    (["hparams_search=optuna", "hydra.sweeper.storage=bogus://x"], "error: hydra.sweeper.storage='bogus://x'"),
])
def test_refused_launch_is_one_line_and_writes_nothing(tmp_path, args, needle):
    """Checked before Hydra: no outputs/<date>/<time>, no multirun/, exit 2, one line."""
    proc = run_train(args, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr
    assert proc.stderr.startswith(needle), proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_resume_at_a_directory_that_is_not_a_run_leaves_it_unchanged(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    proc = run_train([f"resume={notes}"], cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (f"error: resume={notes}: not a meshgnn run directory (no checkpoints/last.ckpt); "
                                   "pass a run directory that has trained at least one epoch, or a .ckpt file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]
    assert [p.name for p in notes.iterdir()] == ["todo.txt"]  # no .hydra/ written into it


def test_a_launch_refused_inside_the_task_leaves_no_run_directory(tmp_path):
    """A data folder without mesh files is found after Hydra made outputs/<date>/<time>_...:
    the launch removes that directory (and the outputs/ it made), so `meshgnn plot
    outputs/<date>/*` never meets an empty run."""
    empty = tmp_path / "meshes"
    empty.mkdir()
    proc = run_train(["data=mesh_folder", f"data.path={empty}", "data.targets=[temperature]", "debug=default",
                      f"paths.data_dir={tmp_path / 'cache'}"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "no mesh files" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meshes"]


def test_resume_auto_of_a_finished_run_says_so_and_a_refused_resume_keeps_the_run(tmp_path, debug_run, data_cache):
    run_dir = tmp_path / "run"
    shutil.copytree(debug_run[0], run_dir)
    proc = run_train(["resume=auto", f"hydra.run.dir={run_dir}", f"paths.data_dir={data_cache}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = proc.stdout + proc.stderr
    assert (f"run {run_dir} is finished: it has trained all trainer.epochs=2 epochs, so nothing is trained" in said
            and f"python train.py resume={run_dir} trainer.epochs=4" in said), said[-3000:]
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2  # nothing trained

    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    proc = run_train([f"resume={run_dir}", "model.hidden_dim=8", f"paths.data_dir={data_cache}"], cwd=tmp_path)
    assert proc.returncode == 2 and "cannot change model.hidden_dim when resuming" in proc.stderr, proc.stderr
    assert set(before) <= {p.relative_to(run_dir) for p in run_dir.rglob("*")}  # the refusal removed nothing
