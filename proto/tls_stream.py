"""TLS for the RPC connections: a trio Stream over a non-blocking ``ssl.SSLSocket``.

Why not ``trio.SSLStream``: it runs OpenSSL over memory BIOs and moves every byte between them
and the socket in Python, several method calls and conflict checks per operation; for the
small messages of the RPC (a KMS Decrypt is ~300 bytes each way) that overhead is most of the
cost of a call. Here OpenSSL reads and writes the socket itself, and Python only waits for
readiness when OpenSSL says it must (``SSLWantReadError`` / ``SSLWantWriteError``).

The stream keeps trio's contract: every operation is a checkpoint (cancellable before it
starts, and it yields: by waiting for readiness, or, when it completed without waiting, by a
checkpoint after it finished, as trio's own socket streams do), ``receive_some`` returns ``b""`` at end of stream,
failures of the transport raise ``trio.BrokenResourceError``, use after ``aclose`` raises
``trio.ClosedResourceError``, and two tasks receiving (or sending) at once is a bug reported
with ``trio.BusyResourceError``. One task may send while another receives.

Receiving avoids a doomed read. After a read that returned less than a full TLS record the
peer has most likely sent everything it had (a request, a reply), so the next ``receive_some``
first asks the kernel how many bytes are queued (``FIONREAD``, far cheaper than an OpenSSL read
that fails and raises ``SSLWantReadError``): none, and nothing decrypted but unread inside
OpenSSL (``pending()``), means wait for readability at once. Both checks err only towards
reading, so no received byte is ever left waiting.

Certificates are checked by OpenSSL during ``do_handshake`` exactly as with ``SSLStream`` (the
context decides: the cluster CA, the client certificate required, the server's name).
"""

from __future__ import annotations

import array
import fcntl
import socket
import ssl
import termios

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
_TLS_RECORD_MAX = 16384  # plaintext bytes in a full TLS record: a shorter read ended a burst


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
        self._fd = sock.fileno()
        self._queued = array.array("i", [0])  # FIONREAD's answer
        self._drained = False  # the last read returned a short record: the kernel is likely empty

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
                await wait_readable(self._fd)
            finally:
                self._waiting_readable = False
        else:
            self._waiting_writable = True
            try:
                await wait_writable(self._fd)
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
        waited = False
        try:
            await checkpoint_if_cancelled()
            n = max_bytes or 65536
            if self._drained and self._nothing_to_read():
                await self._wait(True)
                waited = True
            while True:
                try:
                    data = self._sock.recv(n)
                    break
                except ssl.SSLWantReadError:
                    await self._wait(True)
                    waited = True
                except ssl.SSLWantWriteError:
                    await self._wait(False)
                    waited = True
                except ssl.SSLZeroReturnError:
                    data = b""  # the peer sent close_notify
                    break
                except _BROKEN as exc:
                    if self._closed:
                        raise trio.ClosedResourceError("the TLS stream was closed") from None
                    raise trio.BrokenResourceError(str(exc)) from exc
        finally:
            self._receiving = False
        self._drained = 0 < len(data) < min(n, _TLS_RECORD_MAX)
        if not waited:  # waiting was the yield; an immediate answer still owes one
            await cancel_shielded_checkpoint()
        return data

    def _nothing_to_read(self) -> bool:
        """True when neither OpenSSL nor the kernel holds a received byte (see the module
        docstring); any doubt answers False, which costs one read attempt."""
        if self._sock.pending():
            return False
        try:
            fcntl.ioctl(self._fd, termios.FIONREAD, self._queued, True)
        except OSError:
            return False
        return self._queued[0] == 0

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
        waited = False
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
                        waited = True
                    except ssl.SSLWantReadError:
                        await self._wait(True)
                        waited = True
                    except _BROKEN as exc:
                        if self._closed:
                            raise trio.ClosedResourceError("the TLS stream was closed") from None
                        raise trio.BrokenResourceError(str(exc)) from exc
        finally:
            self._sending = False
        if not waited:
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
