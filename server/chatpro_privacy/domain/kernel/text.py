"""A rule for every request: no string may hold a NUL character.

PostgreSQL cannot store one (SQLite can), and no field of this API has a use for one, so a
request carrying one is refused before any handler sees it, the same on either database.
A domain rule, so the edge (every unary request) and servicers (the first message of a
client stream) share it without services importing the edge. It reads messages through the
protobuf runtime only, never a generated module.
"""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from chatpro_privacy.domain.kernel.errors import FieldViolation, InvalidArgument


def _nul_paths(message: Message, prefix: str = "") -> list[str]:
    found: list[str] = []
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if field.type == FieldDescriptor.TYPE_STRING:
            values = list(value.keys()) + list(value.values()) if hasattr(value, "keys") else (
                list(value) if field.is_repeated else [value]
            )  # fmt: skip
            if any(isinstance(v, str) and "\x00" in v for v in values):
                found.append(path)
        elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                entries = value.items()
                if any(
                    "\x00" in str(k) or (isinstance(v, str) and "\x00" in v) for k, v in entries
                ):
                    found.append(path)
            elif field.is_repeated:
                for index, item in enumerate(value):
                    found += _nul_paths(item, f"{path}[{index}].")
            else:
                found += _nul_paths(value, f"{path}.")
    return found


def refuse_nul(message: Message) -> None:
    paths = _nul_paths(message)
    if paths:
        raise InvalidArgument(
            [
                FieldViolation(p, "must not contain a NUL character", "INVALID_CHARACTERS")
                for p in paths
            ]
        )
