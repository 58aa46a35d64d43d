"""The errors the run services raise for a request that cannot be done as asked."""

from __future__ import annotations


class RunError(Exception):
    """A request that cannot be done as asked; the message says what to do instead."""


class FieldError(RunError):
    """A RunError that belongs to one submit field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
