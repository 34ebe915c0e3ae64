"""Errors a user can act on.

Anything raised as a `MisrError` is printed by the CLI as one clear message (no traceback):
it names the thing that is wrong and, where there is one, what to do about it.
"""

from __future__ import annotations


class MisrError(Exception):
    """A problem with the user's input, files or configuration (not a bug in misr)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(MisrError):
    """params.yaml (or an override) is missing, unreadable or invalid."""


class StoreError(MisrError):
    """The feature store is missing, corrupt or inconsistent."""
