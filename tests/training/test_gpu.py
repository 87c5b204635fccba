"""GPU paths (skipped without CUDA; CI has none): mixed precision, compilation and the dataset
held on the GPU, through train.py as a user runs them. Run on a GPU machine with
`pytest -m gpu tests/training/test_gpu.py`."""

import json

import pytest
import torch

from conftest import run_train

pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

# bf16 must reach fp32's accuracy: test rel L2 within this factor of fp32's (run-to-run
# differences of two fp32 seeds are of the same order at this training budget).
BF16_TOLERANCE = 1.10
BUDGET = ["data.num_samples=400", "trainer.epochs=6", "data.batch_size=8", "trainer.image_every=0"]


def _results(run_dir):
    return json.loads((run_dir / "results.json").read_text())["model"]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_reaches_fp32_accuracy_on_heat2d(tmp_path, data_cache, precision):
    runs = {}
    for name in ("fp32", precision):
        runs[name] = tmp_path / name
        proc = run_train([*BUDGET, f"trainer.precision={name}", "trainer.device=cuda",
                          f"hydra.run.dir={runs[name]}", f"paths.data_dir={data_cache}"], cwd=tmp_path,
                         timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
    reference, mixed = _results(runs["fp32"]), _results(runs[precision])
    for target in ("temperature", "heat_flux"):
        key = f"test/{target}/rel_l2"
        assert mixed[key] <= BF16_TOLERANCE * reference[key], (target, mixed[key], reference[key])
    assert "dataset held on cuda" in (runs[precision] / "train.log").read_text()


def test_compiled_training_matches_eager(tmp_path, data_cache):
    runs = {}
    for compiled in (False, True):
        runs[compiled] = tmp_path / f"compile_{compiled}"
        proc = run_train(["trainer=debug", f"trainer.compile={str(compiled).lower()}", "trainer.device=cuda",
                          f"hydra.run.dir={runs[compiled]}", f"paths.data_dir={data_cache}"], cwd=tmp_path,
                         timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
    eager, compiled = _results(runs[False]), _results(runs[True])
    for key, value in eager.items():
        assert compiled[key] == pytest.approx(value, rel=0.05), key
