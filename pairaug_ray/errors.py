"""The one base class of errors a person can fix.

Every error the project raises for bad input, a bad config, a missing model or secret, or a job that
stopped on purpose derives from `UserError`. The CLI catches it once, prints the message (written for
a person, naming the key, row or file) and exits with status 2; anything else is a bug and keeps its
traceback. Subclasses keep a standard base as well (ValueError, FileNotFoundError, ...) so callers that
catch those still do. Ray re-raises a worker's exception as an instance of its original class, so a
`UserError` raised inside a stage reaches the CLI as one.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message says what and where."""
