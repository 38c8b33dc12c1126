"""Column types the models share beyond peewee's own."""

from __future__ import annotations

import json
from typing import Any, overload

import peewee as pw


class JsonField(pw.TextField):
    """A JSON value in a TEXT column: code reads and writes Python values, and the table keeps
    byte for byte the text it always held (``json.dumps`` defaults; ``sort_keys`` only for the
    columns always written sorted), so databases written before read the same."""

    def __init__(self, *, sort_keys: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sort_keys = sort_keys

    @overload
    def db_value(self, value: None) -> None: ...
    @overload
    def db_value(self, value: object) -> str: ...
    def db_value(self, value: object) -> str | None:
        return None if value is None else json.dumps(value, sort_keys=self.sort_keys)

    def python_value(self, value: Any) -> Any:
        return None if value is None else json.loads(value)

    def _operand(self, rhs: Any) -> Any:
        # peewee would send a list as an IN-style tuple of parameters: make it one JSON value.
        return rhs if rhs is None or isinstance(rhs, pw.Node) else self.to_value(rhs)

    def __eq__(self, rhs: Any) -> Any:
        return super().__eq__(self._operand(rhs))

    def __ne__(self, rhs: Any) -> Any:
        return super().__ne__(self._operand(rhs))

    __hash__ = pw.TextField.__hash__

    def contains(self, rhs: str) -> Any:
        """A LIKE on the stored text: the pattern is text to find, not a value to encode."""
        found = super().contains(rhs)
        if isinstance(found.rhs, str):  # peewee leaves an unescaped pattern to our db_value
            found.rhs = pw.Value(found.rhs, converter=False)
        return found
