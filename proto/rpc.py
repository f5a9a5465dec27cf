"""The RPC every daemon uses: re-exports of the server and client halves.

See ``proto.rpc_wire`` for the message format and flow control, ``proto.rpc_server`` for
serving and authorization, ``proto.rpc_client`` for the connection pool.
"""

from proto.rpc_client import RpcClient, RpcPool, StreamReply, open_rpc_pool
from proto.rpc_server import Call, Handler, RpcServer, Streamed
from proto.rpc_wire import BodyStream, WireLimits

__all__ = [
    "BodyStream", "Call", "Handler", "RpcClient", "RpcPool", "RpcServer", "StreamReply",
    "Streamed", "WireLimits", "open_rpc_pool",
]
