"""conf_dir(): the checkout's top-level conf/, or the meshgnn/conf an installed wheel carries."""

from meshgnn import conf_location
from meshgnn.cli import DEFAULT_CONF

from conftest import CONF


def test_a_checkout_reads_the_top_level_conf():
    assert conf_location.conf_dir() == CONF == DEFAULT_CONF


def test_the_packaged_conf_wins_when_installed(tmp_path, monkeypatch):
    package = tmp_path / "site-packages" / "meshgnn"
    (package / "conf").mkdir(parents=True)
    (package.parent / "conf").mkdir()  # another distribution's top-level conf/ next to the package
    monkeypatch.setattr(conf_location, "PACKAGE_DIR", package)
    assert conf_location.conf_dir() == package.parent / "conf"  # no config.yaml in the packaged folder yet
    (package / "conf" / "config.yaml").write_text("defaults: []\n")
    assert conf_location.conf_dir() == package / "conf"
