"""A TLS-terminating TCP proxy on loopback, in front of a plaintext service such as the
machine's RabbitMQ: clients do a real TLS handshake (with the test CA's server
certificate, optionally requiring a client certificate) and then talk the real protocol
to the real service, without its configuration being touched.

Threads with blocking sockets rather than asyncio: asyncio's TLS server drops the
connection when a handshake fails without sending OpenSSL's alert, so a client would
only see the connection close, not "certificate required" as from a real broker."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from pathlib import Path
from typing import Any


class TlsProxy:
    def __init__(
        self,
        pki: Any,
        upstream: tuple[str, int],
        require_certificate: bool = False,
        cert: Path | None = None,
        key: Path | None = None,
    ) -> None:
        self.upstream = upstream
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(cert or pki.server_cert), str(key or pki.server_key))
        if require_certificate:
            self.context.load_verify_locations(str(pki.ca))
            self.context.verify_mode = ssl.CERT_REQUIRED
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.connections = 0  # TLS sessions that got as far as the service
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = False

    async def start(self) -> TlsProxy:
        threading.Thread(target=self._accept, daemon=True, name=f"tls-proxy-{self.port}").start()
        return self

    def _accept(self) -> None:
        while not self._stopping:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _track(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._sockets.update(sockets)

    def _serve(self, raw: socket.socket) -> None:
        self._track(raw)
        raw.settimeout(10)
        try:
            client = self.context.wrap_socket(raw, server_side=True)  # a failed handshake sends its alert
        except (OSError, ssl.SSLError):
            raw.close()
            return
        client.settimeout(None)
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self._track(client, upstream)
        with self._lock:
            self.connections += 1
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        self._pipe(client, upstream)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    async def stop(self) -> None:
        self._stopping = True
        self.listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
