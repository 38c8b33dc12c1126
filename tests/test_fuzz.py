"""Property-based tests (SEC-3): random and malformed requests to every RPC of every service
get a proper status, never INTERNAL or UNKNOWN, and a refused call changes nothing."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from chatpro.privacy.v1 import (
    account_service_pb2,
    audit_service_pb2,
    breach_service_pb2,
    consent_service_pb2,
    disclosure_service_pb2,
    organisation_service_pb2,
    outbox_service_pb2,
    policy_service_pb2,
)
from chatpro_privacy.domain.accounts import roles
from google.protobuf import descriptor, message_factory
from google.protobuf.message import Message
from helpers import Api, database_fingerprint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MODULES = (
    account_service_pb2,
    audit_service_pb2,
    breach_service_pb2,
    consent_service_pb2,
    disclosure_service_pb2,
    organisation_service_pb2,
    outbox_service_pb2,
    policy_service_pb2,
)
METHODS = [
    (service.full_name, method)
    for module in MODULES
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
    if method.name != "SignOut"  # it would end the session the other examples use
]
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
    response_cls = message_factory.GetMessageClass(method.output_type)
    path = f"/{service}/{method.name}"
    if method.server_streaming:
        pytest.skip("no streaming methods yet")
    call: grpc.UnaryUnaryMultiCallable[Message, Message] = api.channel.unary_unary(
        path,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_cls.FromString,
    )

    @settings(
        max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(request=messages(method.input_type), who=st.sampled_from(tokens))
    def check(request: Message, who: str) -> None:
        before = database_fingerprint()
        metadata = (("authorization", f"Bearer {who}"),) if who else ()
        try:
            call(request, metadata=metadata, timeout=30)
        except grpc.RpcError as error:
            code = error.code()
            assert code in PROPER, f"{path} answered {code}: {error.details()}"
            assert database_fingerprint() == before, f"a refused {path} changed the database"

    check()
