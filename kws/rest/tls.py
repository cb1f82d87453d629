"""HTTPS for the waitress-served Big service: TLS over memory BIOs, so the I/O loop stays asynchronous.

Waitress has no TLS of its own (its documentation sends TLS to a proxy, and
``deploy/nginx`` is that recipe). ``big_service.py --certfile`` still serves
HTTPS by itself, for a deployment without a proxy, without giving up what makes
waitress resist slow clients: the socket is read and written by waitress's one
I/O loop exactly as for plain HTTP, and the bytes pass through an
:class:`ssl.SSLObject` working on two :class:`ssl.MemoryBIO` buffers (the
standard library's "sans-I/O" TLS, made for event loops). A client that stalls
its handshake therefore holds a socket, never a thread, and falls under the
same read deadline as a slow plain-HTTP client.

One lock guards the TLS state: waitress sends from its I/O thread and, for a
long answer, from the worker thread that writes it.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Encrypted bytes waiting for the socket beyond which :meth:`TlsChannelMixin.send` takes no more plaintext.
CIPHERTEXT_HIGH_WATER = 256 * 1024


def server_context(certfile: Path | str, keyfile: Path | str | None = None) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2 or newer) for a PEM certificate chain and key.

    Raises OSError when a file cannot be read and ssl.SSLError when it holds no
    usable certificate or key, or the key does not match the certificate.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(certfile), None if keyfile is None else str(keyfile))
    return context


class TlsChannelMixin:
    """Put before :class:`kws.rest.server.LimitedChannel`: the channel's socket then speaks TLS.

    Waitress's own code reads plaintext (``received``) and writes plaintext
    (``send``); this mixin turns socket bytes into plaintext in
    :meth:`handle_read` and plaintext into socket bytes in :meth:`send`, and
    holds back the closing of a connection until its last encrypted bytes are sent.
    """

    def __init__(self, server: Any, sock: Any, addr: Any, adj: Any, map: Any = None) -> None:
        self._tls_lock = threading.RLock()
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = server.ssl_context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._ciphertext = bytearray()  # encrypted, not yet taken by the socket
        self._handshake_done = False
        self._broken = False  # the socket failed: nothing more can be sent
        self._close_when_sent = False
        super().__init__(server, sock, addr, adj, map)

    # ------------------------------------------------------------------ reading
    def handle_read(self) -> None:
        try:
            raw = self.socket.recv(self.adj.recv_bytes)
        except BlockingIOError:
            return
        except OSError:
            self._close_now()
            return
        if not raw:  # the client closed the connection
            self._close_now()
            return
        with self._tls_lock:
            self._incoming.write(raw)
            try:
                plaintext = self._decrypt()
            except ssl.SSLError as error:  # a failed handshake, or garbage: send the alert, then close
                log.debug("TLS with %s failed: %s", self.addr, error)
                plaintext = b""
                self.will_close = True
            self._ciphertext += self._outgoing.read()
            self._send_ciphertext()
        if plaintext:
            self.last_activity = time.time()
            self.received(plaintext)

    def _decrypt(self) -> bytes:
        """All the plaintext the bytes received so far hold (completing the handshake first)."""
        if not self._handshake_done:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            self._handshake_done = True
        chunks = []
        while True:
            try:
                chunk = self._tls.read(self.adj.recv_bytes)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # the client's close_notify
                self.will_close = True
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def receiving_since(self) -> float | None:
        """A connection still shaking hands is receiving its first request (see the read deadline)."""
        if not self._handshake_done:
            return self.connected_at
        return super().receiving_since()

    # ------------------------------------------------------------------ writing
    def send(self, data: bytes, do_close: bool = True) -> int:
        """Encrypt what waitress sends; the plaintext bytes taken (0: try again when writable)."""
        with self._tls_lock:
            if self._broken or not self._handshake_done:
                taken = 0
            elif len(self._ciphertext) >= CIPHERTEXT_HIGH_WATER and not self._send_ciphertext():
                taken = 0
            elif len(self._ciphertext) >= CIPHERTEXT_HIGH_WATER:
                taken = 0  # the client is not reading: take more once the socket drains
            else:
                taken = self._tls.write(data)
                self._ciphertext += self._outgoing.read()
                self._send_ciphertext()
            broken = self._broken
        if broken and do_close:
            self._close_now()
        return taken

    def _send_ciphertext(self) -> bool:
        """Give the socket what it takes now; False once the connection is gone (call with the lock)."""
        while self._ciphertext and not self._broken:
            try:
                sent = self.socket.send(self._ciphertext[: self.sendbuf_len])
            except BlockingIOError:
                return True
            except OSError:
                self._ciphertext.clear()
                self._broken = True
                return False
            del self._ciphertext[:sent]
        return not self._broken

    def writable(self) -> bool:
        return bool(self._ciphertext) or super().writable()

    def handle_write(self) -> None:
        with self._tls_lock:
            alive = self._send_ciphertext()
            pending = bool(self._ciphertext)
        if not alive or (self._close_when_sent and not pending):
            self._close_now()
        elif not pending:  # waitress's own output goes out once the earlier records have
            super().handle_write()

    # ------------------------------------------------------------------ closing
    def handle_close(self) -> None:
        with self._tls_lock:
            pending = bool(self._ciphertext) and not self._broken
        if pending and not self._close_when_sent:  # the answer's last records first (asked once only)
            self._close_when_sent = True
            self.will_close = True
            return
        self._close_now()

    def _close_now(self) -> None:
        with self._tls_lock:
            self._ciphertext.clear()
            self._broken = True
        super().handle_close()
