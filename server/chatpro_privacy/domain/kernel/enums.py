"""A rule for every request: an enum field holds one of its enum's numbers.

proto3 enums are open: a number the schema does not name still parses, and a servicer that
maps names would silently drop it (ListRightsRequests with ``states=[99]`` listed every
state). Refused before any handler runs, naming the field, like the NUL rule beside it
(``text.py``); read through the protobuf runtime only, never a generated module.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from chatpro_privacy.domain.kernel.errors import FieldViolation, InvalidArgument


def _named(field: FieldDescriptor, values: Iterable[Any]) -> bool:
    if field.enum_type is None:
        return True
    known = field.enum_type.values_by_number
    return all(isinstance(v, int) and v in known for v in values)


def _unknown_paths(message: Message, prefix: str = "") -> list[str]:
    found: list[str] = []
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if field.type == FieldDescriptor.TYPE_ENUM:
            if not _named(field, list(value) if field.is_repeated else [value]):
                found.append(path)
        elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                entry = field.message_type.fields_by_name["value"]
                if entry.type == FieldDescriptor.TYPE_ENUM and not _named(entry, value.values()):
                    found.append(path)
                elif entry.type == FieldDescriptor.TYPE_MESSAGE:
                    for key, item in value.items():
                        found += _unknown_paths(item, f"{path}[{key}].")
            elif field.is_repeated:
                for index, item in enumerate(value):
                    found += _unknown_paths(item, f"{path}[{index}].")
            else:
                found += _unknown_paths(value, f"{path}.")
    return found


def refuse_unknown_enums(message: Message) -> None:
    paths = _unknown_paths(message)
    if paths:
        raise InvalidArgument(
            [
                FieldViolation(p, "is not a value this API defines", "UNKNOWN_ENUM_VALUE")
                for p in paths
            ]
        )
