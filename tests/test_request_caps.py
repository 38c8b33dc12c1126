"""Every request's work is bounded by caps on its repeated fields, checked before any work
(issue 15, SEC-3): each cap is stated in the field's comment in the protos, a request over
one is refused INVALID_ARGUMENT naming the field and changes nothing. That the largest
request allowed is answered quickly, holding no one up, is timed in tests/stress_capacity.py."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chatpro.privacy.v1 as v1
import grpc
import pytest
from chatpro_privacy.edge.request_caps import CAPS
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from helpers import Api, Unchanged

PROTOS = Path(__file__).resolve().parents[1] / "protos" / "chatpro" / "privacy" / "v1"


@dataclass(frozen=True)
class Capped:
    method: MethodDescriptor
    path: tuple[FieldDescriptor, ...]  # from the request down to the repeated field

    @property
    def field(self) -> FieldDescriptor:
        return self.path[-1]

    @property
    def name(self) -> str:
        return ".".join(f.name for f in self.path)


def _repeated(
    message: Descriptor, path: tuple[FieldDescriptor, ...]
) -> Iterator[tuple[FieldDescriptor, ...]]:
    for field in message.fields:
        here = (*path, field)
        if field.is_repeated:
            yield here
        elif field.message_type is not None and field.message_type.full_name.startswith("chatpro."):
            yield from _repeated(field.message_type, here)


def _capped_fields() -> list[Capped]:
    """Every repeated field reachable from every RPC's request, with an RPC that takes it."""
    found: dict[str, Capped] = {}
    for module in pkgutil.iter_modules(v1.__path__):
        if not module.name.endswith("_pb2"):
            continue
        descriptor = importlib.import_module(f"chatpro.privacy.v1.{module.name}").DESCRIPTOR
        for service in descriptor.services_by_name.values():
            for method in service.methods:
                for path in _repeated(method.input_type, ()):
                    found.setdefault(path[-1].full_name, Capped(method, path))
    return sorted(found.values(), key=lambda c: c.field.full_name)


CAPPED = _capped_fields()


def _comment(field: FieldDescriptor) -> str:
    """The comment lines right above the field's declaration in its .proto file."""
    message = field.containing_type
    assert message is not None
    lines = (PROTOS / Path(message.file.name).name).read_text().splitlines()
    start = next(
        i for i, line in enumerate(lines) if re.search(rf"\bmessage {message.name} \{{", line)
    )
    declared = next(
        i for i in range(start, len(lines)) if re.search(rf"\s{field.name} = \d+;", lines[i])
    )
    comment: list[str] = []
    for line in reversed(lines[:declared]):
        if not line.strip().startswith("//"):
            break
        comment.insert(0, line.strip().removeprefix("//").strip())
    return " ".join(comment)


def test_every_repeated_field_of_every_request_has_a_cap_its_comment_states() -> None:
    assert {c.field.full_name for c in CAPPED} == set(CAPS)
    for capped in CAPPED:
        cap = CAPS[capped.field.full_name]
        assert f"at most {cap:,}" in _comment(capped.field).lower(), capped.field.full_name


def _fill(message: Message, field: FieldDescriptor, count: int) -> None:
    container: Any = getattr(message, field.name)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        for i in range(count):
            container[f"kind{i}"] = 12
    elif field.message_type is not None:
        for _ in range(count):
            container.add()
    elif field.type == FieldDescriptor.TYPE_ENUM:
        container.extend([1] * count)
    else:
        container.extend([f"x{i:08d}" for i in range(count)])


def _request(capped: Capped, count: int) -> Message:
    request = GetMessageClass(capped.method.input_type)()
    target = request
    for step in capped.path[:-1]:
        target = getattr(target, step.name)
    _fill(target, capped.field, count)
    return request


def _call(channel: grpc.Channel, capped: Capped, request: Message) -> None:
    method = f"/{capped.method.containing_service.full_name}/{capped.method.name}"
    response = GetMessageClass(capped.method.output_type)
    serialized = request.SerializeToString()
    if capped.method.server_streaming:
        stream: grpc.UnaryStreamMultiCallable[bytes, Message] = channel.unary_stream(
            method, request_serializer=bytes, response_deserializer=response.FromString
        )
        list(stream(serialized, timeout=10))
    else:
        unary: grpc.UnaryUnaryMultiCallable[bytes, Message] = channel.unary_unary(
            method, request_serializer=bytes, response_deserializer=response.FromString
        )
        unary(serialized, timeout=10)


@pytest.mark.parametrize("capped", CAPPED, ids=lambda c: c.field.full_name.split(".", 3)[-1])
def test_a_request_over_a_cap_is_refused_naming_the_field_and_changes_nothing(
    api: Api, unchanged: Unchanged, capped: Capped
) -> None:
    """Checked before authentication: no credentials are sent, and the caps answer first."""
    cap = CAPS[capped.field.full_name]
    over = unchanged(lambda: _call(api.channel, capped, _request(capped, cap + 1)))
    assert over.code == grpc.StatusCode.INVALID_ARGUMENT
    assert over.violations == {capped.name: "TOO_MANY"}
    assert f"{capped.name}: at most {cap} entries, not {cap + 1}" in over.message
    # At the cap the edge lets it through (the domain may still find fewer allowed).
    at_cap = unchanged(lambda: _call(api.channel, capped, _request(capped, cap)))
    assert "entries, not" not in at_cap.message
