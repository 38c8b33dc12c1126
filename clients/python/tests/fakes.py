"""Statuses as the service sends them (google.rpc.Status in the trailers), for fake servers."""

from __future__ import annotations

from dataclasses import dataclass

import chatpro_privacy_client as cp
import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped, unused-ignore]


@dataclass(frozen=True)
class _Status(grpc.Status):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, bytes], ...]


def rich_status(
    code: grpc.StatusCode, request_id: str, retry_after: float | None = None
) -> _Status:
    """A failure with the service's ErrorInfo (reason TEST_<CODE>) and, if asked, RetryInfo."""
    info = error_details_pb2.ErrorInfo(
        reason=f"TEST_{code.name}", domain=cp.DOMAIN, metadata={"request_id": request_id}
    )
    details = [info]
    if retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    packed = []
    for detail in details:
        item = any_pb2.Any()
        item.Pack(detail)
        packed.append(item)
    status = status_pb2.Status(code=code.value[0], message="scripted", details=packed)
    return _Status(code, "scripted", (("grpc-status-details-bin", status.SerializeToString()),))
