"""Server-side RPC (ThingsBoard's "RPC both ways"), transport-neutral: requests and their
status life cycle (:mod:`.model`), persistent requests in ``rpc.sqlite`` (:mod:`.repository`),
the sessions that can take requests (:mod:`.sessions`) and the service that drives them
(:mod:`.service`). The transports (``transports/mqtt_rpc.py``, ``transports/coap.py``,
``api/device_rpc.py``) and the REST routes (``api/rpc.py``) sit on top; nothing here imports
tornado or Panel."""

from .model import (
    DELIVERED,
    EXPIRED,
    FAILED,
    FINAL,
    QUEUED,
    SENT,
    STATUSES,
    SUCCESSFUL,
    TIMEOUT,
    DeviceNotConnected,
    RpcRequest,
    parse_request,
)
from .service import NOT_HANDLED, RpcCall, RpcService
from .sessions import RpcSession, SessionRegistry

__all__ = [
    "DELIVERED",
    "EXPIRED",
    "FAILED",
    "FINAL",
    "NOT_HANDLED",
    "QUEUED",
    "SENT",
    "STATUSES",
    "SUCCESSFUL",
    "TIMEOUT",
    "DeviceNotConnected",
    "RpcCall",
    "RpcRequest",
    "RpcService",
    "RpcSession",
    "SessionRegistry",
    "parse_request",
]
