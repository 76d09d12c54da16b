"""The one base class of errors that are the user's input or a limit the run declared, not bugs.

The CLI prints such an error as one line (secrets masked) and exits 1; `--debug` or JALIGN_DEBUG=1
shows the traceback. Each concrete error also subclasses the builtin it used to be (ValueError,
RuntimeError), so callers that catch those keep working.
"""


class JalignError(Exception):
    """An error to report as one line naming what is wrong (file, line, field, or param key)."""
