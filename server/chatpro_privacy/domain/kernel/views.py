"""Views: what a use case hands the servicers of a stored row.

Servicers import nothing from storage (issue 13), so each use case copies the rows it returns
into a frozen dataclass of its own, holding only what the replies read. One copier keeps each
view's field list the single place that says what leaves the domain.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Self

# The metadata of a field whose column holds JSON text, ``field(metadata=JSON)``: the view
# carries the value parsed, so that no servicer decodes it.
JSON: Mapping[str, bool] = MappingProxyType({"json": True})


class View:
    """Base of the frozen dataclasses that stand for rows outside the domain."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    @classmethod
    def from_row(cls, row: object) -> Self:
        """Each field read from the row's attribute of the same name."""
        values = {}
        for f in dataclasses.fields(cls):
            value = getattr(row, f.name)
            values[f.name] = json.loads(value) if f.metadata.get("json") else value
        return cls(**values)
