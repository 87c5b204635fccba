"""Package layout that pyproject.toml cannot express: conf/ stays at the repository's top level
(Hydra's config folder for `python train.py`) and ships in the wheel as package data of
`meshgnn.conf`, which meshgnn.conf_location finds. Everything else is in pyproject.toml."""

from setuptools import find_namespace_packages, setup

CONF_PACKAGES = ["meshgnn.conf"] + [f"meshgnn.conf.{name}" for name in find_namespace_packages(where="conf")]

setup(
    packages=find_namespace_packages(include=["meshgnn*", "hydra_plugins*"]) + CONF_PACKAGES,
    package_dir={"meshgnn.conf": "conf"},
    package_data={name: ["*.yaml"] for name in CONF_PACKAGES},
)
