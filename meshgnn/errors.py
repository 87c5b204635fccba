"""The one exception type for mistakes a user can fix.

Entry points catch it and print its message as a single line (no traceback), so every
message must name the key, file or field that is wrong and say how to fix it.
"""


class UserError(Exception):
    """A problem in the user's config, data, checkpoint or paths."""
