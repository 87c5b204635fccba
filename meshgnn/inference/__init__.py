"""Using trained models: packages, prediction on mesh files, ensembles, faster inference."""

from meshgnn.inference.package import Package, load_model, load_package

__all__ = ["Package", "load_model", "load_package"]
