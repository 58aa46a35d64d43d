"""Regular expressions users write (metric patterns, ignore rules), on a linear-time engine.

Python's `re` backtracks: `(a+)+$` against a long line of a's, or an ignore rule
with a dozen `*`, runs for minutes, and the process matching it (the web server,
the run monitor) with it. RE2 matches in time linear in the text, so a pattern
costs at most a pass over the line; it lacks look-around and back-references,
which a pattern that uses them is told.
"""

from __future__ import annotations

import re2

_OPTIONS = re2.Options()
# A pattern RE2 refuses is reported to the user; the library's own log line is noise.
_OPTIONS.log_errors = False


class PatternError(ValueError):
    """The pattern cannot be compiled; the message says why."""


def compile(pattern: str):  # noqa: A001 - read as linear_regex.compile
    """`pattern` compiled by RE2: `.search`, `.match` and `.groupdict` as `re` has them."""
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "not a valid regular expression"
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise PatternError(
            f"{reason} (patterns run on RE2, which has no look-around or back-references)"
        ) from None
