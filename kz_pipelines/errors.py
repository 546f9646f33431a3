"""The base class of errors a user can fix from their side (configuration, paths, ports, inputs).

The `kz` command prints these as one line and exits non-zero; anything else is a bug and keeps its
traceback.
"""

__all__ = ["UserFacingError"]


class UserFacingError(Exception):
    """An error whose message alone tells the user what to fix."""
