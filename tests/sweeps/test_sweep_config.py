"""The sweeper's config helpers (meshgnn.sweeps.config)."""

from meshgnn.sweeps.config import shown_url


def test_a_storage_password_never_reaches_logs_or_result_files():
    assert shown_url("postgresql://meshgnn:s3cret@db.lab:5432/optuna") == "postgresql://meshgnn:***@db.lab:5432/optuna"
    assert shown_url("postgresql://meshgnn@db.lab/optuna") == "postgresql://meshgnn@db.lab/optuna"  # ~/.pgpass
    assert shown_url("sqlite:///multirun/optuna.db") == "sqlite:///multirun/optuna.db"
    assert shown_url(None) is None
