"""The one error boundary (meshgnn.boundary): what a user sees for each kind of exception."""

import pytest

from meshgnn.boundary import BUG_LINE, EXIT_BUG, guarded
from meshgnn.errors import EXIT_STORAGE, EXIT_USER_ERROR, Interrupted, StorageError, UserError


def outcome(capsys, entry):
    with pytest.raises(SystemExit) as caught:
        guarded(entry)
    return caught.value.code, capsys.readouterr().err


def raise_(exc):
    raise exc


def test_user_errors_are_their_line_and_exit_code(capsys):
    assert outcome(capsys, lambda: raise_(UserError("model.x=1 is bad; set model.x=2"))) == (
        EXIT_USER_ERROR, "error: model.x=1 is bad; set model.x=2\n")
    assert outcome(capsys, lambda: raise_(StorageError("/d: no space")))[0] == EXIT_STORAGE
    assert outcome(capsys, lambda: raise_(Interrupted("stopped; resume with ..."))) == (3, "stopped; resume with ...\n")


def test_library_errors_a_user_causes_are_one_line(capsys, tmp_path):
    from sqlalchemy.engine import make_url

    code, err = outcome(capsys, lambda: make_url("not a url"))
    assert code == EXIT_USER_ERROR and err.startswith("error: sqlalchemy: ") and err.count("\n") == 1, err
    code, err = outcome(capsys, lambda: open(tmp_path / "missing.vtu"))
    assert (code, err) == (EXIT_USER_ERROR, f"error: {tmp_path / 'missing.vtu'}: No such file or directory; "
                                            "check the path and its permissions\n")


def test_a_bug_keeps_its_traceback_and_says_so(capsys):
    code, err = outcome(capsys, lambda: {}["missing"])
    assert code == EXIT_BUG
    assert "Traceback" in err and "KeyError: 'missing'" in err and err.rstrip().endswith(BUG_LINE)
