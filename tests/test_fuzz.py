"""Property-based tests (SEC-3, issue 19): random and malformed requests to every RPC of
every service the server serves, streaming ones included, get a proper status, never
INTERNAL or UNKNOWN, and a refused call changes nothing.

The RPCs come from the server's own list of services (the one its reflection serves), and
a test asks the running server for that list, so a service added and not fuzzed fails here.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from chatpro_privacy.app import SERVED_SERVICES
from chatpro_privacy.domain.accounts import roles
from chatpro_privacy.edge import reflection
from google.protobuf import descriptor, descriptor_pool, message_factory
from google.protobuf.message import Message
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from helpers import Api, database_fingerprint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

reflection.register_v1_descriptor()  # the v1 reflection service, described before serving
METHODS = [
    (service, method)
    for service in SERVED_SERVICES
    for method in descriptor_pool.Default().FindServiceByName(service).methods
]
# A server stream is read this far, then cancelled: Health/Watch never ends by itself.
STREAM_ITEMS = 3
STREAM_QUIET_SECONDS = 2.0
PROPER = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.OUT_OF_RANGE,
}
STRINGS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["", " ", "me", "x" * 5000, "\x00", "💥" * 50, "../../etc", "' OR 1=1 --", "2023-02-12"]
    ),
)
FD = descriptor.FieldDescriptor


def _scalar(field: descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type == FD.TYPE_STRING:
        return STRINGS
    if field.type == FD.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.just(b"\xff\xd8\xff" + b"0" * 300_000))
    if field.type == FD.TYPE_BOOL:
        return st.booleans()
    if field.type == FD.TYPE_ENUM:
        return st.integers(-3, 20)  # open enums: unknown numbers are legal on the wire
    if field.type in (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32):
        return st.integers(-(2**31), 2**31 - 1)
    if field.type in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64):
        return st.integers(-(2**63), 2**63 - 1)
    if field.type in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if field.type in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    return st.floats(allow_nan=False)


def messages(desc: descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Random instances of a message type, fields set or left unset at random."""
    cls = message_factory.GetMessageClass(desc)
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for field in desc.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key, value = (
                field.message_type.fields_by_name["key"],
                field.message_type.fields_by_name["value"],
            )
            parts[field.name] = st.dictionaries(_scalar(key), _scalar(value), max_size=3)
        elif field.message_type is not None:
            if depth >= 2:
                continue
            inner = messages(field.message_type, depth + 1)
            parts[field.name] = st.lists(inner, max_size=2) if field.is_repeated else inner
        elif field.is_repeated:
            parts[field.name] = st.lists(_scalar(field), max_size=4)
        else:
            parts[field.name] = _scalar(field)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        for name, strategy in parts.items():
            if not draw(st.booleans()):
                continue
            value = draw(strategy)
            field = desc.fields_by_name[name]
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                getattr(message, name).update(value)
            elif (field.is_repeated and field.message_type is not None) or field.is_repeated:
                getattr(message, name).extend(value)
            elif field.message_type is not None:
                getattr(message, name).CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return build()


def _requests(method: descriptor.MethodDescriptor) -> st.SearchStrategy[Any]:
    """A request: a random message, or random bytes (most of which do not parse); a list of
    them for a client stream."""
    one = st.one_of(messages(method.input_type), st.binary(max_size=64))
    if method.client_streaming:
        return st.lists(one, min_size=0, max_size=3)
    return one


def _serialize(request: Any) -> bytes:
    return request if isinstance(request, bytes) else request.SerializeToString()


def _invoke(
    channel: grpc.Channel, path: str, method: descriptor.MethodDescriptor, request: Any, who: str
) -> None:
    """One call of any shape; a server stream is read for a few items, then cancelled."""
    response = message_factory.GetMessageClass(method.output_type).FromString
    metadata = (("authorization", f"Bearer {who}"),) if who else ()
    shape = (method.client_streaming, method.server_streaming)
    if shape == (False, False):
        channel.unary_unary(path, _serialize, response)(request, metadata=metadata, timeout=30)
        return
    if shape == (True, False):
        channel.stream_unary(path, _serialize, response)(
            iter(request), metadata=metadata, timeout=30
        )
        return
    if shape == (False, True):
        call = channel.unary_stream(path, _serialize, response)(
            request, metadata=metadata, timeout=30
        )
    else:
        call = channel.stream_stream(path, _serialize, response)(
            iter(request), metadata=metadata, timeout=30
        )
    _read_some(call)


def _read_some(call: Any) -> None:
    """Read a server stream for a few items or a couple of seconds, whichever ends first
    (an open Health/Watch sends nothing after its first item), then cancel it."""
    quiet = threading.Timer(STREAM_QUIET_SECONDS, call.cancel)
    quiet.start()
    try:
        items: Iterator[Any] = call
        for count, _ in enumerate(items, start=1):
            if count >= STREAM_ITEMS:
                call.cancel()
                return
    finally:
        quiet.cancel()


def test_the_fuzzed_methods_are_every_method_the_server_serves(api: Api) -> None:
    """Asked over gRPC, the server names its services; each one is fuzzed, every method of
    it, streaming ones included."""
    served = set(ProtoReflectionDescriptorDatabase(api.channel).get_services())
    fuzzed = {service for service, _ in METHODS}
    assert served == fuzzed, f"served but not fuzzed: {sorted(served - fuzzed)}"
    pool = descriptor_pool.Default()
    every = {(s, m.full_name) for s in served for m in pool.FindServiceByName(s).methods}
    assert every == {(s, m.full_name) for s, m in METHODS}
    assert any(m.client_streaming for _, m in METHODS)
    assert any(m.server_streaming for _, m in METHODS)
    # Every service the protos define is served (so listed, so fuzzed).
    package = importlib.import_module("chatpro.privacy.v1")
    defined = {
        service.full_name
        for info in pkgutil.iter_modules(package.__path__)
        if info.name.endswith("_pb2")
        for service in importlib.import_module(
            f"chatpro.privacy.v1.{info.name}"
        ).DESCRIPTOR.services_by_name.values()
    }
    assert len(defined) >= 12 and defined <= served, sorted(defined - served)


@pytest.mark.parametrize(
    ("service", "method"), METHODS, ids=[f"{s.split('.')[-1]}.{m.name}" for s, m in METHODS]
)
def test_random_requests_get_a_proper_status_and_refusals_change_nothing(
    api: Api, service: str, method: descriptor.MethodDescriptor
) -> None:
    api.register(username="staff")
    roles.grant_role("staff", "operator", "test")
    roles.grant_role("staff", "data_privacy_manager", "test")
    tokens = [api.sign_in("staff"), api.service_token("notifications"), ""]
    path = f"/{service}/{method.name}"

    @settings(
        max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(request=_requests(method), who=st.sampled_from(tokens))
    def check(request: Any, who: str) -> None:
        before = database_fingerprint()
        try:
            _invoke(api.channel, path, method, request, who)
        except grpc.RpcError as error:
            code = error.code()
            if code == grpc.StatusCode.CANCELLED and method.server_streaming:
                return  # the test's own cancel after a few items
            assert code in PROPER, f"{path} answered {code}: {error.details()}"
            assert database_fingerprint() == before, f"a refused {path} changed the database"

    check()
