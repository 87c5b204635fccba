"""The one error boundary of every entry point: train.py, each `meshgnn` subcommand, and a
training launch inside Hydra (meshgnn.experiment.main_task).

- `UserError` (and subclasses: `StorageError`) and `Interrupted` end in their one line and
  exit code (2, 4, 3);
- errors a user can cause inside a library (Hydra's composition, Optuna, SQLAlchemy, meshio,
  an OSError on a path) end in one `error:` line naming what and where, exit 2 (4 when a
  write failed for lack of space or permission);
- anything else is a bug in meshgnn: its traceback stays, followed by one line saying so.

Import-light: the library types are recognised by their module, so nothing is imported here.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, Callable, Optional

from meshgnn.errors import EXIT_STORAGE, EXIT_USER_ERROR, STORAGE_ERRNOS, Interrupted, UserError

EXIT_BUG = 1
# Libraries whose exceptions come from what a user passed them (a URL, a file, an override).
USER_FACING_LIBRARIES = ("hydra", "omegaconf", "optuna", "sqlalchemy", "meshio")
BUG_LINE = ("error: this is a bug in meshgnn, not in your config or data; please report it with the "
            "traceback above and the command that ran")


def one_line(exc: BaseException) -> str:
    """An exception's message and its causes' (Hydra wraps the reason), on one line."""
    parts: list[str] = []
    while exc is not None:
        for line in str(exc).splitlines():
            line = line.strip()
            if line and not line.startswith(("full_key:", "object_type", "reference_type")) and line not in parts:
                parts.append(line.rstrip("."))
        exc = exc.__cause__
    return "; ".join(parts) or "(no message)"


def user_caused(exc: BaseException) -> Optional[tuple[str, int]]:
    """(one line, exit code) for an exception a user can fix, or None for a bug."""
    if isinstance(exc, UserError):
        return str(exc), exc.exit_code
    if isinstance(exc, OSError) and exc.filename is not None:
        code = EXIT_STORAGE if exc.errno in STORAGE_ERRNOS else EXIT_USER_ERROR
        reason = exc.strerror or os.strerror(exc.errno or 0)
        return f"{exc.filename}: {reason}; check the path and its permissions", code
    library = type(exc).__module__.split(".")[0]
    if library in USER_FACING_LIBRARIES:
        return f"{library}: {one_line(exc)}", EXIT_USER_ERROR
    return None


def report(exc: BaseException) -> int:
    """Print what the user sees for `exc` on stderr; return the exit code."""
    if isinstance(exc, Interrupted):
        print(str(exc), file=sys.stderr, flush=True)
        return exc.exit_code
    known = user_caused(exc)
    if known is not None:
        print(f"error: {known[0]}", file=sys.stderr, flush=True)
        return known[1]
    traceback.print_exception(exc)
    print(BUG_LINE, file=sys.stderr, flush=True)
    return EXIT_BUG


def guarded(entry: Callable[[], Any]) -> Any:
    """Run `entry`; an exception ends the process through `report` (SystemExit, an entry
    point's own exit code, and KeyboardInterrupt pass through)."""
    try:
        return entry()
    except BrokenPipeError:  # the reader of stdout went away (`| head`): nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        sys.exit(EXIT_BUG)
    except Exception as exc:  # the boundary: every exception is reported once, here
        sys.exit(report(exc))
