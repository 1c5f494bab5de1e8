"""A tiny HTTP server whose answers a test scripts: for faults a real registry never makes
(a 500 then success, a 429, a body cut short, bytes that do not match their digest) and for
auth flows, without a proxy in front of a real registry."""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    length: int | None = None  # a Content-Length that lies (a body cut short)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Handler = Callable[[Seen], Answer]


class Script:
    """Routes "METHOD /path" to handlers; a list of answers is played in order, its last
    answer repeating. Every request is recorded in `seen`."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler | list[Answer]] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()

    def on(self, route: str, answer: Handler | list[Answer] | Answer) -> None:
        self.routes[route] = [answer] if isinstance(answer, Answer) else answer

    def answer(self, seen: Seen) -> Answer:
        with self._lock:
            self.seen.append(seen)
            route = self.routes.get(f"{seen.method} {seen.path.split('?', 1)[0]}")
            if route is None:
                return Answer(404, b'{"errors":[{"code":"NOT_FOUND","message":"not scripted"}]}')
            if callable(route):
                return route(seen)
            return route.pop(0) if len(route) > 1 else route[0]

    def count(self, route: str) -> int:
        method, path = route.split(" ", 1)
        return sum(1 for s in self.seen if s.method == method and s.path.split("?")[0] == path)


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handle(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(size) if size else b""
            seen = Seen(self.command, self.path, dict(self.headers.items()), body)
            answer = script.answer(seen)
            self.send_response(answer.status)
            for key, value in answer.headers.items():
                self.send_header(key, value)
            length = answer.length if answer.length is not None else len(answer.body)
            self.send_header("Content-Length", str(length))
            if answer.length is not None:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.body)
            if answer.length is not None:
                self.close_connection = True

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _serve

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handle


@contextmanager
def serve(script: Script, tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """Serve SCRIPT on a free loopback port (over TLS with a server context); yields
    "127.0.0.1:PORT"."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class FakeImage:
    """A one-layer image as a registry serves it: the bytes and their digests."""

    layer: bytes
    config: bytes
    manifest: bytes

    @classmethod
    def make(cls, layer: bytes, *, diff_id: str | None = None) -> FakeImage:
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [diff_id or digest(layer)]},
            }
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": digest(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": digest(layer),
                        "size": len(layer),
                    }
                ],
            }
        ).encode()
        return cls(layer, config, manifest)

    def serve_on(self, script: Script, repo: str, tag: str = "latest") -> None:
        headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
        script.on(f"GET /v2/{repo}/manifests/{tag}", Answer(200, self.manifest, headers))
        script.on(f"GET /v2/{repo}/blobs/{digest(self.config)}", Answer(200, self.config))
        script.on(f"GET /v2/{repo}/blobs/{digest(self.layer)}", Answer(200, self.layer))
