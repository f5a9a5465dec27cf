"""TLS for the RPC connections: a trio Stream over a non-blocking ``ssl.SSLSocket``.

Why not ``trio.SSLStream``: it runs OpenSSL over memory BIOs and moves every byte between them
and the socket in Python, several method calls and conflict checks per operation; for the
small messages of the RPC (a KMS Decrypt is ~300 bytes each way) that overhead is most of the
cost of a call. Here OpenSSL reads and writes the socket itself, and Python only waits for
readiness when OpenSSL says it must (``SSLWantReadError`` / ``SSLWantWriteError``).

The stream keeps trio's contract: every operation is a checkpoint (cancellable before it
starts, yielding after it finishes), ``receive_some`` returns ``b""`` at end of stream,
failures of the transport raise ``trio.BrokenResourceError``, use after ``aclose`` raises
``trio.ClosedResourceError``, and two tasks receiving (or sending) at once is a bug reported
with ``trio.BusyResourceError``. One task may send while another receives.

Certificates are checked by OpenSSL during ``do_handshake`` exactly as with ``SSLStream`` (the
context decides: the cluster CA, the client certificate required, the server's name).
"""

from __future__ import annotations

import socket
import ssl

import trio
from trio.lowlevel import (
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
    notify_closing,
    wait_readable,
    wait_writable,
)

__all__ = ["TlsStream", "wrap_tls"]

_BROKEN = (ssl.SSLError, OSError)


def wrap_tls(tcp: trio.SocketStream, ctx: ssl.SSLContext, *, server_side: bool = False,
             server_hostname: str | None = None) -> TlsStream:
    """Take over ``tcp``'s socket (the SocketStream must not be used afterwards) and wrap it.

    Call ``await stream.do_handshake()`` next; on failure ``aclose`` the returned stream.
    """
    fd = tcp.socket.detach()
    raw = socket.socket(fileno=fd)
    try:
        raw.setblocking(False)
        sock = ctx.wrap_socket(raw, server_side=server_side, server_hostname=server_hostname,
                               do_handshake_on_connect=False, suppress_ragged_eofs=True)
    except BaseException:
        raw.close()  # the SocketStream no longer owns it
        raise
    return TlsStream(sock)


class TlsStream(trio.abc.Stream):
    """See the module docstring; build with ``wrap_tls``."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self._sock = sock
        self._closed = False
        self._receiving = False
        self._sending = False
        self._waiting_readable = False
        self._waiting_writable = False

    # -- helpers -------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the TLS stream was closed")

    async def _wait(self, readable: bool) -> None:
        """Wait until the socket is readable (or writable). trio allows one waiter per direction
        per socket, and OpenSSL may need to read while sending or write while receiving: if the
        other task already waits for the same readiness, poll briefly instead (rare)."""
        if (self._waiting_readable if readable else self._waiting_writable):
            await trio.sleep(0.001)
            self._check_open()
            return
        if readable:
            self._waiting_readable = True
            try:
                await wait_readable(self._sock)
            finally:
                self._waiting_readable = False
        else:
            self._waiting_writable = True
            try:
                await wait_writable(self._sock)
            finally:
                self._waiting_writable = False
        self._check_open()

    # -- trio.abc.Stream -------------------------------------------------------------------------
    async def do_handshake(self) -> None:
        """Run the TLS handshake (certificate checks included).

        Raises:
            trio.BrokenResourceError: the handshake failed (its cause is the ``ssl.SSLError``).
        """
        self._check_open()
        await checkpoint_if_cancelled()
        while True:
            try:
                self._sock.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._wait(True)
            except ssl.SSLWantWriteError:
                await self._wait(False)
            except _BROKEN as exc:
                raise trio.BrokenResourceError(f"TLS handshake failed: {exc}") from exc
        await cancel_shielded_checkpoint()

    def getpeercert(self) -> dict | None:
        return self._sock.getpeercert()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self._check_open()
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this TLS stream")
        self._receiving = True
        try:
            await checkpoint_if_cancelled()
            n = max_bytes or 65536
            while True:
                try:
                    data = self._sock.recv(n)
                    break
                except ssl.SSLWantReadError:
                    await self._wait(True)
                except ssl.SSLWantWriteError:
                    await self._wait(False)
                except ssl.SSLZeroReturnError:
                    data = b""  # the peer sent close_notify
                    break
                except _BROKEN as exc:
                    if self._closed:
                        raise trio.ClosedResourceError("the TLS stream was closed") from None
                    raise trio.BrokenResourceError(str(exc)) from exc
        finally:
            self._receiving = False
        await cancel_shielded_checkpoint()
        return data

    def try_send(self, data: bytes) -> int:
        """One write attempt that never waits (and is not a checkpoint): how many bytes of
        ``data`` were handed to the kernel. When it is less than ``len(data)`` the caller must
        finish with ``await send_all(data[n:])`` before sending anything else (OpenSSL expects
        the same bytes again after a write that would block).

        Raises:
            trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError.
        """
        self._check_open()
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this TLS stream")
        try:
            return self._sock.send(data)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return 0
        except _BROKEN as exc:
            raise trio.BrokenResourceError(str(exc)) from exc

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check_open()
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this TLS stream")
        self._sending = True
        try:
            await checkpoint_if_cancelled()
            with memoryview(data) as view:
                total, size = 0, len(view)
                while total < size:
                    try:
                        # OpenSSL accepts the same buffer at a new address on retry
                        # (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER) and writes it whole
                        total += self._sock.send(view[total:])
                    except ssl.SSLWantWriteError:
                        await self._wait(False)
                    except ssl.SSLWantReadError:
                        await self._wait(True)
                    except _BROKEN as exc:
                        if self._closed:
                            raise trio.ClosedResourceError("the TLS stream was closed") from None
                        raise trio.BrokenResourceError(str(exc)) from exc
        finally:
            self._sending = False
        await cancel_shielded_checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        self._check_open()
        await self._wait(False)

    async def aclose(self) -> None:
        """Close at once (no close_notify wait: the RPC frames say when a call is complete)."""
        if not self._closed:
            self._closed = True
            notify_closing(self._sock)
            try:
                self._sock.close()
            except OSError:
                pass
        await trio.lowlevel.checkpoint()
