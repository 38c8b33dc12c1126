"""The gRPC health service: grpc_health's asyncio servicer, with ``List`` answered.

``List`` was added to health.proto after grpc_health's servicer was written; left alone it
raises NotImplementedError, which a caller saw as INTERNAL (found by the fuzz test, which
calls every method the server serves).
"""

from __future__ import annotations

from typing import Any

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer


class Health(HealthServicer):  # type: ignore[misc]  # grpc_health ships no types
    async def List(
        self, request: health_pb2.HealthListRequest, context: Any
    ) -> health_pb2.HealthListResponse:
        """Every service's status, the server's own ("") included."""
        return health_pb2.HealthListResponse(
            statuses={
                name: health_pb2.HealthCheckResponse(status=status)
                for name, status in self._server_status.items()
            }
        )
