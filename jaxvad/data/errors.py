"""Data errors: re-exported from :mod:`jaxvad.errors` (the one hierarchy of user errors)."""

from jaxvad.errors import DataError

__all__ = ["DataError"]
