"""User-facing errors: one line that names the file/field and what was expected.

The CLI prints ``str(err)`` and exits non-zero without a traceback; anything else that escapes
is a bug in zeroforge and keeps its traceback.
"""


class ZeroforgeError(Exception):
    """An error caused by the user's input (a file, a config field, an argument)."""


class ConfigError(ZeroforgeError):
    """A recipe or config field is unknown, missing or has a bad value."""


class DataError(ZeroforgeError):
    """A data file is missing, empty, malformed or not what the recipe expects."""
