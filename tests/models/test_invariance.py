"""The model's prediction on a mesh does not depend on where the mesh lies: a rigid
translation of its points gives the same fields, through the real prediction path
(`predict_sample`: mesh -> features, coarse levels, normalisation -> model), for the default
multi-scale model and the classic single-level one.

Uniform rescaling is not tested: the built-in physics is not scale-invariant (the heat
source and conductivity of heat2d, the tractions of elasticity carry lengths), so a larger
part is another problem, and the features stay in physical units (docs/design-notes.md)."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_config
from meshgnn.data.dataset import load_datasets
from meshgnn.data.features import ModelInputs
from meshgnn.inference.mesh_input import read_mesh
from meshgnn.inference.package import Package, mesh_reader
from meshgnn.inference.predict import predict_sample
from meshgnn.models import build_model

# a heat2d sample file (mesh, fields, globals sidecar), off the origin
PLATE = Path(__file__).resolve().parents[1] / "fixtures" / "old_package_v1" / "plate.vtu"
CPU = torch.device("cpu")


@pytest.fixture(scope="module", params=["multiscale_gnn", "meshgraphnet"])
def package(request, data_cache) -> Package:
    """A package of the model (seeded, untrained: any dependence on the position shows) with
    the features and normaliser of a tiny heat2d dataset."""
    cfg = compose_config(["debug=default", f"model={request.param}", "data.num_samples=10"])
    data = load_datasets(cfg.data, data_cache, ModelInputs.of_model(cfg.model))
    torch.manual_seed(0)
    targets = [(f.name, f.dim) for f in data.features.source.targets]
    model = build_model(cfg.model, data.node_dim, data.edge_dim, targets, residual=data.features.residual)
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    return Package(model.eval(), data.normalizer, data.features, mesh_reader(data_cfg, data.features),
                   OmegaConf.to_container(cfg.model, resolve=True), data_cfg, {}, name=request.param)


def predictions(package: Package, shift: tuple[float, float]) -> dict[str, torch.Tensor]:
    sample, _ = read_mesh(package, PLATE, PLATE.parent)
    moved = replace(sample, points=sample.points + np.asarray(shift))
    (pred,) = predict_sample([package], moved, CPU)
    return pred


def test_prediction_is_invariant_under_a_rigid_translation(package):
    here, there = predictions(package, (0.0, 0.0)), predictions(package, (3.7, -2.2))
    for name, values in here.items():
        scale = float(values.abs().max())
        torch.testing.assert_close(there[name], values, rtol=0, atol=1e-4 * scale, msg=name)
    # the control: the raw coordinates of layout 1 are seen, so the same model moves its answer
    legacy = replace(package, features=replace(package.features,
                                               model_inputs=replace(package.features.model_inputs, layout=1)))
    moved = predictions(legacy, (3.7, -2.2))
    assert float((moved["temperature"] - predictions(legacy, (0.0, 0.0))["temperature"]).abs().max()) > 1e-3
