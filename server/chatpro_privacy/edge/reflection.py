"""Server reflection under ``grpc.reflection.v1`` as well as ``v1alpha``.

grpcio-reflection (1.85) serves only ``grpc.reflection.v1alpha.ServerReflection``; tools
such as ``buf curl`` and grpcurl ask for ``grpc.reflection.v1`` first. The v1 protocol is
v1alpha's under a new package name, field for field, so the same servicer answers both: its
messages are decoded and encoded with v1alpha's classes, and the v1 file itself is added to
the descriptor pool (as v1alpha's with the package renamed) so that reflection can describe
the reflection service too.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer

V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE_NAME = f"{V1_PACKAGE}.ServerReflection"
_V1ALPHA_PACKAGE = "grpc.reflection.v1alpha"
SERVICE_NAMES = (reflection.SERVICE_NAME, V1_SERVICE_NAME)
"""Both reflection services ``enable`` serves."""


def _renamed(type_name: str) -> str:
    prefix = f".{_V1ALPHA_PACKAGE}."
    if not type_name.startswith(prefix):
        return type_name
    return f".{V1_PACKAGE}." + type_name[len(prefix) :]


def _v1_file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = "grpc/reflection/v1/reflection.proto"
    proto.package = V1_PACKAGE
    proto.ClearField("options")  # v1alpha's are deprecated and name v1alpha's packages
    for message in proto.message_type:
        for field in message.field:
            if field.type_name:  # assigning "" would mark a scalar as typed
                field.type_name = _renamed(field.type_name)
    for service in proto.service:
        for method in service.method:
            method.input_type = _renamed(method.input_type)
            method.output_type = _renamed(method.output_type)
    return proto


def _register_v1_file(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindServiceByName(V1_SERVICE_NAME)
    except KeyError:
        pool.AddSerializedFile(_v1_file().SerializeToString())


def register_v1_descriptor() -> None:
    """Describe the v1 service in the default pool (``enable`` does it), for code that reads
    the served methods before any server starts, such as the fuzz test."""
    _register_v1_file(descriptor_pool.Default())


def enable(server: grpc.aio.Server, service_names: Sequence[str]) -> None:
    """Serve reflection for ``service_names`` (plus both reflection services) on ``server``,
    under v1alpha and v1."""
    _register_v1_file(descriptor_pool.Default())
    names = (*service_names, *SERVICE_NAMES)
    reflection.enable_server_reflection(names, server)
    servicer = ReflectionServicer(names)
    handler = grpc.method_handlers_generic_handler(
        V1_SERVICE_NAME,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
