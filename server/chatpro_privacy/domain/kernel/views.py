"""Views: what a use case hands the servicers of a stored row.

Servicers import nothing from storage (issue 13), so each use case copies the rows it returns
into a frozen dataclass of its own, holding only what the replies read. One copier keeps each
view's field list the single place that says what leaves the domain.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Self


class View:
    """Base of the frozen dataclasses that stand for rows outside the domain."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    @classmethod
    def from_row(cls, row: object) -> Self:
        """Each field read from the row's attribute of the same name."""
        return cls(**{f.name: getattr(row, f.name) for f in dataclasses.fields(cls)})
