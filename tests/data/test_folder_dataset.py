"""Datasets from mesh folders: the same graphs as the built-in path, per-file caching, errors."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from conftest import compose_config
from meshgnn.data.cache import MANIFEST, save_entry, write_manifest
from meshgnn.data.dataset import load_datasets
from meshgnn.data.features import SPLITS
from meshgnn.data.export import export_samples
from meshgnn.data.folder_dataset import _file_key
from meshgnn.data.hierarchy import HierarchySpec
from meshgnn.data.features import ModelInputs
from meshgnn.data.sources import get_source
from meshgnn.errors import Interrupted, UserError

NUM, MESH_SIZE, MAX_HOLES = 8, 0.15, 2
INPUTS = ["boundary_temperature", "heat_source", "conductivity"]
TARGETS = ["temperature", "heat_flux"]
MODEL_INPUTS = ModelInputs(broadcast_globals=True, residual=False, hierarchy=HierarchySpec(2, 2.0))


def folder_config(folder: Path, *extra: str):
    names = ",".join(get_source("heat2d").spec.global_names)
    return compose_config(["data=mesh_folder", f"data.path={folder}", f"data.inputs=[{','.join(INPUTS)}]",
                           f"data.targets=[{','.join(TARGETS)}]", "data.node_type_field=node_type",
                           "data.node_type_values=[0,1,2]", f"data.globals=[{names}]",
                           "data.process_workers=1", *extra]).data


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("meshes")
    export_samples("heat2d", folder, NUM, seed=0, mesh_size=MESH_SIZE, max_holes=MAX_HOLES, workers=1)
    return folder


def test_folder_of_exported_samples_gives_the_built_in_graphs(exported, tmp_path):
    builtin = load_datasets(compose_config(["data=heat2d", f"data.num_samples={NUM}",
                                            f"data.mesh_size={MESH_SIZE}", f"data.max_holes={MAX_HOLES}",
                                            "data.baseline_input=false", "data.generate_workers=1"]).data,
                            tmp_path / "cache", MODEL_INPUTS)
    folder = load_datasets(folder_config(exported), tmp_path / "cache", MODEL_INPUTS)
    for key in ("x", "edge_attr", "y"):
        torch.testing.assert_close(folder.normalizer.mean[key], builtin.normalizer.mean[key])
        torch.testing.assert_close(folder.normalizer.std[key], builtin.normalizer.std[key])
    for split in SPLITS:
        assert len(folder.splits[split]) == len(builtin.splits[split])
        for a, b in zip(folder.splits[split], builtin.splits[split]):
            for key in ("x", "edge_index", "edge_attr", "y", "node_type", "cluster_1", "edge_index_2",
                        "offset_2", "num_coarse_2"):
                torch.testing.assert_close(a[key], b[key], msg=key)


def test_files_are_converted_once_and_again_only_when_changed(exported, tmp_path, caplog):
    cfg = folder_config(exported)
    with caplog.at_level(logging.INFO, logger="meshgnn.data.folder_dataset"):
        load_datasets(cfg, tmp_path, MODEL_INPUTS)
    assert f"converted {NUM} mesh files" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="meshgnn.data.folder_dataset"):
        first = load_datasets(cfg, tmp_path, MODEL_INPUTS)
    assert "mesh files" not in caplog.text
    changed = sorted(exported.glob("*.vtu"))[0]
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="meshgnn.data.folder_dataset"):
        again = load_datasets(cfg, tmp_path, MODEL_INPUTS)
    assert "converted 1 mesh files" in caplog.text
    assert again.fingerprint != first.fingerprint  # a resumed run must notice changed data


def test_split_globs_choose_the_files(exported, tmp_path):
    data = load_datasets(folder_config(exported, "data.split_globs.train='sample_0000[0-5].vtu'",
                                       "data.split_globs.val=sample_00006.vtu",
                                       "data.split_globs.test=sample_00007.vtu"), tmp_path, MODEL_INPUTS)
    assert [len(data.splits[s]) for s in SPLITS] == [6, 1, 1]
    with pytest.raises(UserError, match="split_globs.test"):
        load_datasets(folder_config(exported, "data.split_globs.train=*.vtu", "data.split_globs.val=*.vtu",
                                    "data.split_globs.test=nothing*"), tmp_path, MODEL_INPUTS)


def test_a_missing_field_stops_before_any_conversion(exported, tmp_path):
    with pytest.raises(UserError, match="pressure") as info:
        load_datasets(folder_config(exported, "data.targets=[pressure]"), tmp_path, MODEL_INPUTS)
    assert "sample_00000.vtu" in str(info.value)
    assert not list(tmp_path.glob("mesh_folder-*/graphs/*.pt"))


def _flip_middle_byte(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))


def _truncate_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _valid_checksum_without_edges(path: Path) -> None:
    """A graph whose manifest record matches but which lacks edge_index (a foreign writer)."""
    raw = torch.load(path, weights_only=True)
    del raw["edge_index"]
    manifest = json.loads((path.parent.parent / MANIFEST).read_text())
    manifest["files"][f"graphs/{path.name}"] = save_entry(raw, path)
    write_manifest(path.parent.parent, {k: v for k, v in manifest.items() if k != "checksum"})


FOLDER_DAMAGE = {  # what to hurt: a graph (the one of the first mesh file) or the manifest
    "graph bit flip": ("graph", _flip_middle_byte, "checksum mismatch"),
    "graph truncation": ("graph", _truncate_half, "truncated or changed"),
    "graph of wrong structure": ("graph", _valid_checksum_without_edges, "wrong structure: no edge_index tensor"),
    "manifest bit flip": ("manifest", _flip_middle_byte, "manifest.json"),
    "manifest truncation": ("manifest", _truncate_half, "manifest.json: unreadable"),
}


@pytest.fixture(scope="module")
def folder_reference(exported, tmp_path_factory):
    return load_datasets(folder_config(exported), tmp_path_factory.mktemp("reference"), MODEL_INPUTS)


def _graph_of_first_file(cache: Path, exported: Path) -> Path:
    return cache / "graphs" / f"{_file_key(exported, sorted(exported.glob('*.vtu'))[0])}.pt"


@pytest.mark.parametrize("damage", FOLDER_DAMAGE)
def test_a_damaged_graph_cache_is_named_once_and_rebuilt_from_the_mesh_file(exported, folder_reference, tmp_path,
                                                                            caplog, damage):
    what, hurt, reason = FOLDER_DAMAGE[damage]
    cfg = folder_config(exported)
    cache = load_datasets(cfg, tmp_path, MODEL_INPUTS).cache_dir
    target = _graph_of_first_file(cache, exported) if what == "graph" else cache / MANIFEST
    hurt(target)
    with caplog.at_level(logging.WARNING):
        data = load_datasets(cfg, tmp_path, MODEL_INPUTS)
        graphs = {split: list(data.splits[split]) for split in SPLITS}  # reading verifies each graph
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert str(target) in line and reason in line and "rebuilding it" in line
    for split in SPLITS:
        for a, b in zip(graphs[split], folder_reference.splits[split]):
            for key in ("x", "edge_index", "edge_attr", "y", "cluster_1", "edge_index_2"):
                torch.testing.assert_close(a[key], b[key], msg=key)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = load_datasets(cfg, tmp_path, MODEL_INPUTS)
        for split in SPLITS:
            list(again.splits[split])
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    assert not list(cache.glob("graphs/.*.tmp"))


def _load_in_process(folder: str, data_dir: str, out) -> None:
    converted = []
    handler = logging.Handler()
    handler.emit = lambda record: converted.append(record.getMessage()) if "converted" in record.getMessage() else None
    logging.getLogger("meshgnn.data.folder_dataset").addHandler(handler)
    logging.getLogger("meshgnn.data.folder_dataset").setLevel(logging.INFO)
    data = load_datasets(folder_config(Path(folder)), Path(data_dir), MODEL_INPUTS)
    out.put((converted, [g.y.sum().item() for g in data.splits["train"]]))


def test_concurrent_processes_convert_a_folder_once(exported, tmp_path):
    ctx = multiprocessing.get_context("spawn")  # a fork of a process that ran torch may hang in OpenMP
    out = ctx.Queue()
    procs = [ctx.Process(target=_load_in_process, args=(str(exported), str(tmp_path), out)) for _ in range(2)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    assert sorted(len(converted) for converted, _ in results) == [0, 1]  # the second waited, then loaded
    assert results[0][1] == results[1][1]


def test_sigterm_while_converting_keeps_the_finished_graphs(exported, tmp_path, caplog):
    links = tmp_path / "links"  # hard links: distinct paths, so every one is converted
    links.mkdir()
    for copy in range(20):
        for vtu in sorted(exported.glob("*.vtu")):
            os.link(vtu, links / f"c{copy:02d}_{vtu.name}")
            os.link(vtu.with_suffix(".json"), links / f"c{copy:02d}_{vtu.stem}.json")
    cfg = folder_config(links, "data.process_workers=2")
    graphs = tmp_path / "cache"

    def stop_at_the_first_graph() -> None:
        while not list(graphs.glob("mesh_folder-*/graphs/*.pt")):
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_at_the_first_graph, daemon=True).start()
    with pytest.raises(Interrupted) as info:
        load_datasets(cfg, graphs, MODEL_INPUTS)
    message = str(info.value)
    kept = int(message.split("); the ")[1].split()[0])
    assert message.startswith(f"stopped by SIGTERM while converting the mesh files of {links} (")
    assert f"({kept}/160 files); the {kept} graphs converted so far are cached" in message and kept < 160
    assert not multiprocessing.active_children()
    with caplog.at_level(logging.INFO, logger="meshgnn.data.folder_dataset"):
        data = load_datasets(cfg, graphs, MODEL_INPUTS)
        list(data.splits["train"])
    assert f"converted {160 - kept} mesh files" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
