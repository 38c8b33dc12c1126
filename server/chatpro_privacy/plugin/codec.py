"""How plugin values cross between the server and an organisation's worker process.

Frames are a 4-byte big-endian length and a JSON document. JSON, not pickle, in both
directions: the server reads what a worker sends, and unpickling a worker's bytes would run
whatever code the plugin chose inside the server. A value is rebuilt only as one of the
types plugins may see or return (``types``), with each plain field's type checked, so a
worker can answer wrong but can make the server build nothing else.

Tagged JSON objects carry what JSON has no form for: ``{"$t": name, "f": {...}}`` a value
type, ``{"$e": [enum, value]}`` an enum member, ``{"$T": [...]}`` a tuple, ``{"$b": base64}``
bytes, ``{"$dt": iso}`` a datetime, ``{"$d": {...}}`` a dict whose keys start with "$".
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import json
import os
import struct
import typing
from dataclasses import fields
from types import MappingProxyType
from typing import Any

from chatpro_privacy.domain.kernel.vocabulary import MemberRole
from chatpro_privacy.plugin import types

MAX_FRAME = 64 * 1024 * 1024
_HEADER = struct.Struct(">I")

_VALUE_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        types.OrganisationView,
        types.ContentRef,
        types.ContentView,
        types.Flag,
        types.RetentionVeto,
        types.AccessRequest,
        types.AccessDecision,
        types.ExportRecord,
        types.Withheld,
        types.ExportFormat,
        types.MemberView,
        types.ContentDisposition,
    )
}
_ENUMS: dict[str, type[enum.Enum]] = {
    cls.__name__: cls for cls in (types.ContentKind, types.Disposition, MemberRole)
}
_PLAIN = (str, int, float, bool)


class CodecError(ValueError):
    """A value that cannot cross: a type plugins may not send, or a malformed document."""


def _field_types(cls: type) -> dict[str, Any]:
    """Each field's expected type where it is a plain one or an enum (checked on arrival)."""
    hints = typing.get_type_hints(cls)
    return {
        name: hint
        for name, hint in hints.items()
        if hint in _PLAIN or (isinstance(hint, type) and issubclass(hint, enum.Enum))
    }


_FIELDS = {name: _field_types(cls) for name, cls in _VALUE_TYPES.items()}


_FIELD_NAMES = {cls: tuple(f.name for f in fields(cls)) for cls in _VALUE_TYPES.values()}
_ENUM_NAMES = {cls: name for name, cls in _ENUMS.items()}


def encode(value: Any) -> Any:
    """A JSON-ready form of ``value``; CodecError for a type that may not cross."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    names = _FIELD_NAMES.get(kind)
    if names is not None:
        return {"$t": kind.__name__, "f": {n: encode(getattr(value, n)) for n in names}}
    if isinstance(value, enum.Enum):
        enum_name = _ENUM_NAMES.get(kind)
        if enum_name is not None:
            return {"$e": [enum_name, value.value]}
        if isinstance(value, str):  # the server's own string sets cross as strings
            return str(value.value)
        raise CodecError(f"{kind.__name__} values cannot be sent")
    if isinstance(value, str | int | float):  # subclasses of the plain types
        return value
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {"$T": [encode(v) for v in value]}
    if isinstance(value, dict | MappingProxyType):
        return _encode_dict(value)
    if isinstance(value, bytes):
        return {"$b": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dt.datetime):
        return {"$dt": value.isoformat()}
    raise CodecError(f"a {kind.__name__} cannot be sent between the server and a plugin")


def _encode_dict(value: Any) -> Any:
    out = {}
    tagged = False
    for key, item in value.items():
        if not isinstance(key, str):
            raise CodecError("mapping keys must be strings")
        tagged = tagged or key.startswith("$")
        out[key] = encode(item)
    return {"$d": out} if tagged else out


def decode(value: Any) -> Any:
    """The value ``encode`` gave, rebuilt; CodecError if it is not one it could give."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "$t" in value:
        return _decode_value_type(value)
    if "$e" in value:
        name, raw = value["$e"]
        cls = _ENUMS.get(name)
        if cls is None:
            raise CodecError(f"unknown enum {name!r}")
        try:
            return cls(raw)
        except ValueError:
            raise CodecError(f"{raw!r} is not a {name}") from None
    if "$T" in value:
        return tuple(decode(v) for v in value["$T"])
    if "$b" in value:
        return base64.b64decode(value["$b"], validate=True)
    if "$dt" in value:
        return dt.datetime.fromisoformat(value["$dt"])
    if "$d" in value:
        value = value["$d"]
    return {k: decode(v) for k, v in value.items()}


def _decode_value_type(value: dict[str, Any]) -> Any:
    name = value["$t"]
    cls = _VALUE_TYPES.get(name)
    if cls is None:
        raise CodecError(f"unknown type {name!r}")
    arguments = {k: decode(v) for k, v in value["f"].items()}
    for field_name, hint in _FIELDS[name].items():
        if field_name not in arguments:
            continue
        given = arguments[field_name]
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            try:
                arguments[field_name] = hint(given)
            except ValueError:
                raise CodecError(
                    f"{name}.{field_name}: {given!r} is not a {hint.__name__}"
                ) from None
        elif not isinstance(given, hint) or (hint is int and isinstance(given, bool)):
            raise CodecError(f"{name}.{field_name} must be a {hint.__name__}")
    try:
        return cls(**arguments)
    except TypeError as exc:
        raise CodecError(f"{name}: {exc}") from None


# -- frames ------------------------------------------------------------------------------


def dumps(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return _HEADER.pack(len(body)) + body


def loads(body: bytes) -> dict[str, Any]:
    message = json.loads(body)
    if not isinstance(message, dict):
        raise CodecError("a frame must hold a JSON object")
    return message


def read_frame(fd: int) -> bytes | None:
    """The next frame's body from ``fd``, or None at end of file."""
    header = _read_exactly(fd, _HEADER.size)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise CodecError(f"a frame of {length} bytes is over the limit")
    body = _read_exactly(fd, length)
    if body is None:
        raise CodecError("the stream ended inside a frame")
    return body


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks = []
    left = size
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
