"""The HParams tab as TensorBoard's own hparams plugin builds it from a folder of runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tensorboard import context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, list_session_groups

from meshgnn.loggers.base import RunInfo, Status, run_name
from meshgnn.loggers.tensorboard_logger import TensorBoardLogger

HEAT = {"data.name": "heat2d", "data.fourier_features": 4, "trainer.compile": False, "data.path": None}
ELASTICITY = {"data.name": "elasticity2d", "data.youngs_modulus": 200.0, "trainer.compile": True}


def hparams_tab(logdir: Path) -> tuple[api_pb2.Experiment, list[api_pb2.SessionGroup]]:
    """What the HParams tab shows: the experiment (columns) and the session groups (rows)."""
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    tb = backend_context.Context(base_plugin.TBContext(
        logdir=str(logdir), multiplexer=mux,
        data_provider=data_provider.MultiplexerDataProvider(mux, str(logdir))))
    request = context.RequestContext()
    experiment = get_experiment.Handler(request, tb, "", api_pb2.GetExperimentRequest()).run()
    rows = list_session_groups.Handler(request, tb, "", api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=100, allowed_statuses=list(api_pb2.Status.values()))).run()
    return experiment, list(rows.session_groups)


def launch(run_dir: Path, hparams: dict, metrics: dict, status: Status | None, first_new_epoch: int = 1) -> None:
    logger = TensorBoardLogger(RunInfo(run_dir, run_name(run_dir), first_new_epoch, hparams=hparams))
    logger.log_metrics(metrics, first_new_epoch)
    logger.log_image("fields/u", np.zeros((4, 4, 3), np.uint8), first_new_epoch)
    if status is not None:
        logger.finish(status)


def test_a_mixed_folder_shows_every_runs_keys_and_metrics_with_readable_names(tmp_path):
    outputs = tmp_path / "outputs"
    launch(outputs / "2026-12-02" / "10-00-00_heat", HEAT, {"val/temperature/rel_l2": 0.1}, Status.SUCCESS)
    launch(outputs / "2026-12-02" / "10-05-00_elasticity", ELASTICITY, {"val/displacement/rel_l2": 0.2},
           Status.SUCCESS)
    experiment, rows = hparams_tab(outputs)
    columns = {h.name: api_pb2.DataType.Name(h.type) for h in experiment.hparam_infos}
    assert columns["data.fourier_features"] == columns["data.youngs_modulus"] == "DATA_TYPE_FLOAT64"
    assert columns["trainer.compile"] == "DATA_TYPE_BOOL"  # shown as true/false, not 1.0000
    assert "data.path" in columns and columns["status"] == "DATA_TYPE_STRING"
    assert {m.name.tag for m in experiment.metric_infos} >= {"val/temperature/rel_l2", "val/displacement/rel_l2"}
    assert sorted(row.name for row in rows) == ["10-00-00_heat · 2026-12-02", "10-05-00_elasticity · 2026-12-02"]


def test_crashed_stopped_and_running_runs_are_listed_with_their_status(tmp_path):
    runs = tmp_path / "multirun" / "2026-12-02" / "10-00-00_train"
    launch(runs / "0_lr=0.1", HEAT, {"val/loss/total": 1.0}, Status.FAILED)
    launch(runs / "1_lr=0.01", HEAT, {"val/loss/total": 1.0}, Status.KILLED)
    launch(runs / "2_lr=0.001", HEAT, {"val/loss/total": 1.0}, None)  # still running (or killed -9)
    _, rows = hparams_tab(tmp_path / "multirun")
    status = {row.name: (api_pb2.Status.Name(row.sessions[0].status), row.hparams["status"].string_value)
              for row in rows}
    assert status == {"0_lr=0.1 · 10-00-00_train · 2026-12-02": ("STATUS_FAILURE", "failed"),
                      "1_lr=0.01 · 10-00-00_train · 2026-12-02": ("STATUS_UNKNOWN", "stopped"),
                      "2_lr=0.001 · 10-00-00_train · 2026-12-02": ("STATUS_UNKNOWN", "running")}


def test_a_resumed_runs_last_launch_gives_its_status(tmp_path):
    run_dir = tmp_path / "outputs" / "2026-12-02" / "10-00-00"
    launch(run_dir, HEAT, {"val/loss/total": 1.0}, Status.KILLED)
    launch(run_dir, HEAT, {"val/loss/total": 0.5}, Status.SUCCESS, first_new_epoch=2)
    _, (row,) = hparams_tab(tmp_path / "outputs")
    assert row.sessions[0].status == api_pb2.STATUS_SUCCESS and row.hparams["status"].string_value == "finished"
    assert row.metric_values[0].value == 0.5
