"""What every servicer method receives besides its request."""

from __future__ import annotations

import grpc
from google.protobuf.message import Message

# Servicers read the peer and nothing else here; the edge owns status and metadata.
Context = grpc.aio.ServicerContext[Message, Message]
