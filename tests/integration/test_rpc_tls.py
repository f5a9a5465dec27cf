"""RPC over mutual TLS: principals from certificates, ACLs, and server identity checks."""

import pytest
import trio

from proto import errors
from proto.rpc import RpcServer, open_rpc_pool


async def whoami(call):
    return {"principal": call.principal}


async def test_mtls_principal_and_acl(nursery, tls_for):
    srv = RpcServer({"whoami": whoami, "secret": whoami},
                    acl={"whoami": ["node-*", "gateway"], "secret": ["coordinator"]},
                    ssl_context=tls_for("kms").server_context(), name="kms")
    host, port = await nursery.start(srv.serve, "127.0.0.1", 0)
    async with open_rpc_pool(tls_for("node-1").client_context()) as pool:
        c = pool.client(host, port, "kms")
        assert await c.call("whoami") == {"principal": "node-1"}
        with pytest.raises(errors.AccessDenied):
            await c.call("secret")
    async with open_rpc_pool(tls_for("intruder").client_context()) as pool:
        with pytest.raises(errors.AccessDenied):
            await pool.client(host, port, "kms").call("whoami")
    # the server is not who we expect: the hostname check fails, nothing is sent
    async with open_rpc_pool(tls_for("node-1").client_context()) as pool:
        with pytest.raises(errors.Unavailable):
            await pool.client(host, port, "coordinator").call("whoami")


async def test_plaintext_client_is_refused(nursery, tls_for):
    srv = RpcServer({"whoami": whoami}, acl={"whoami": ["*"]},
                    ssl_context=tls_for("kms").server_context(), name="kms", handshake_timeout_s=2)
    host, port = await nursery.start(srv.serve, "127.0.0.1", 0)
    async with open_rpc_pool(None, connect_timeout_s=2, default_timeout_s=3) as pool:
        with pytest.raises((errors.Unavailable, errors.DeadlineExceeded)):
            await pool.client(host, port, "kms").call("whoami")
