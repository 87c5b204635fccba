"""The exception types for what a user can fix, and the exit code each one ends a command with.

Entry points (train.py, every `meshgnn` subcommand) catch `UserError` and print its message
as a single `error:` line (no traceback), then exit with its `exit_code`; so every message
must name the key, file or field that is wrong and say how to fix it. Any other exception is
a bug in meshgnn: it keeps its traceback, followed by a line saying so.
"""

import errno

EXIT_USER_ERROR = 2  # a bad config value, path, data file or checkpoint; also a diverged run
EXIT_INTERRUPTED = 3  # a stop request (SIGTERM, SIGINT, max_time): resume continues
EXIT_STORAGE = 4  # a write failed (disk full, no permission): the last good state is kept

# errnos that mean "this storage cannot take the write", as opposed to a bug in the caller.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS})


class UserError(Exception):
    """A problem in the user's config, data, checkpoint or paths."""

    exit_code = EXIT_USER_ERROR


class StorageError(UserError):
    """A write failed for lack of space or permission; names the path and what to do."""

    exit_code = EXIT_STORAGE


class Interrupted(Exception):
    """A launch stopped early on request (signal or max_time) with its state kept; the
    message says how to continue. Raised by training and by dataset generation alike."""

    exit_code = EXIT_INTERRUPTED
