"""Reading a YAML file a user gave (runconfig, hdconfig, pipeline definition) safely.

An alias repeats the node its anchor names without copying it, so a kilobyte of
nested aliases (a "billion laughs") loads quickly and then expands to gigabytes
when the studio walks, dumps or stores the result. None of the studio's files
needs them, so anchors, aliases and merge keys are refused outright, as are
documents too big or too deeply nested to be one of those small files.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_BYTES = 1024 * 1024
# Deeper nesting would exhaust the parser's recursion long before any real file needs it.
MAX_DEPTH = 50


class YamlError(ValueError):
    """The document cannot be read; the message names the file and what to change."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that stops at the first anchor or alias and at deep nesting."""

    what = "the file"

    def __init__(self, stream: str | bytes) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise YamlError(
                f"{_capital(self.what)} uses a YAML anchor or alias (& or *) at line "
                f"{event.start_mark.line + 1}: write the value out in full instead."
            )
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise YamlError(
                f"{_capital(self.what)} nests more than {MAX_DEPTH} levels deep at line "
                f"{event.start_mark.line + 1}: flatten it."
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def load(text: str | bytes, *, what: str) -> Any:
    """The document in `text`, or YamlError naming `what` ("the runconfig") and the problem."""
    size = len(text.encode()) if isinstance(text, str) else len(text)
    if size > MAX_BYTES:
        raise YamlError(
            f"{_capital(what)} is larger than {MAX_BYTES // (1024 * 1024)} MB: it is a small "
            "YAML file, so check that the right file was chosen."
        )
    loader = None
    try:
        # Reading starts in the constructor, which refuses characters YAML does not allow.
        loader = _Loader(text)
        loader.what = what
        return loader.get_single_data()
    except yaml.reader.ReaderError as exc:
        raise YamlError(
            f"{_capital(what)} holds a character YAML does not allow (code {exc.character:#x} "
            f"at position {exc.position}): save it as plain UTF-8 text."
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise YamlError(
            f"{_capital(what)} is not valid YAML{where}: fix the syntax and try again."
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
