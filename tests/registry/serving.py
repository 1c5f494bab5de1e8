"""A threaded HTTP server on a free loopback port, started and stopped by the test session.

The token issuer and the fault proxy both run on it. It is bounded: at most `max_connections`
connections are served at once (a further one waits a little, then is closed), each handler
gives up on a connection that stays silent for `idle_timeout` seconds, and `stop()` returns
without waiting for a client that holds a connection open.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"


class _BoundedServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for a client's idle keep-alive connection

    def __init__(self, handler: type[BaseHTTPRequestHandler], max_connections: int) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__((LOOPBACK, 0), handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(timeout=5):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class LoopbackServer:
    """Serves `handler` on 127.0.0.1:<free port> in a background thread until `stop()`.

    The handler reaches its owner as `self.server.owner`.
    """

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], owner: object, *, max_connections: int = 32
    ) -> None:
        self._server = _BoundedServer(handler, max_connections)
        self._server.owner = owner  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def free_port() -> int:
    """A loopback port that was free a moment ago (for servers that must bind it themselves)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])
