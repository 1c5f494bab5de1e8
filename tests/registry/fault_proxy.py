"""A reverse proxy in front of a real registry that injects the faults a test scripts.

The client talks to the proxy's address as if it were the registry; every request is passed on
to the upstream registry unchanged (the Host header too, so the upload URLs the registry hands
out point back at the proxy), unless a rule matches it. A rule matches on the method (or any)
and a regular expression searched in the request target (path and query), applies `times`
times (or always) and then lets requests through again:

- `fail(...)`: answer with a status of our own (500, 503, 429 with Retry-After, …);
- `unauthorized(...)`: answer 401 with a Basic challenge, whatever the credentials;
- `truncate(...)`: pass the response on, but close the connection after K bytes of its body;
- `corrupt(...)`: pass the response on with every byte of its body changed (same length,
  same headers, so the Docker-Content-Digest no longer matches the bytes);
- `hang(...)`: hold the request for some seconds (past a client's timeout) before passing it on.

Every request is recorded in `requests` with the status the client got and the fault applied.
The proxy listens on loopback only and forwards to a loopback upstream only; every loop ends at
the end of its input, and `stop()` releases any request that is being held.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.registry.serving import LoopbackServer

# Headers that describe one hop, not the message (RFC 9110 §7.6.1): never forwarded as they are.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_CHUNK = 64 * 1024
_INVERT = bytes(255 - b for b in range(256))  # corrupt: every byte changes, the length does not
_ERROR_CODES = {401: "UNAUTHORIZED", 429: "TOOMANYREQUESTS", 503: "UNAVAILABLE"}


@dataclass
class Rule:
    """One scripted fault. `used` counts the requests it has been applied to."""

    kind: str  # "status", "truncate", "corrupt" or "hang"
    path: re.Pattern[str]
    method: str | None = None  # None: any method
    times: int | None = None  # None: every matching request
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    after: int = 0  # truncate: body bytes sent before the connection is closed
    seconds: float = 0.0  # hang: how long the request is held
    used: int = 0

    def matches(self, method: str, target: str) -> bool:
        if self.times is not None and self.used >= self.times:
            return False
        return (self.method is None or self.method == method) and bool(self.path.search(target))


@dataclass(frozen=True)
class Seen:
    """A request the proxy answered: what the client asked and what it got."""

    method: str
    path: str
    status: int
    fault: str | None  # the rule's kind, or None when passed through untouched


class FaultProxy:
    """The proxy; `FaultProxy(upstream).start()` serves it on a free loopback port."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the fault proxy forwards to loopback only, not {upstream}")
        self.upstream = upstream
        self.upstream_host, self.upstream_port = host, int(port)
        self.rules: list[Rule] = []
        self.requests: list[Seen] = []
        self.stopping = threading.Event()
        self.generation = 0  # bumped by reset(): a request from before it is not recorded
        self._lock = threading.Lock()
        self._server: LoopbackServer | None = None

    @property
    def address(self) -> str:
        assert self._server, "the proxy is not started"
        return self._server.address

    def start(self) -> FaultProxy:
        self.stopping.clear()
        self._server = LoopbackServer(_Handler, self, max_connections=32)
        return self

    def stop(self) -> None:
        self.stopping.set()  # release held requests first, so that shutdown is quick
        if self._server:
            self._server.stop()
            self._server = None

    def reset(self) -> None:
        """No rules and no record: what each test starts from."""
        with self._lock:
            self.rules.clear()
            self.requests.clear()
            self.generation += 1

    # -- scripting ------------------------------------------------------------------------

    def _add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def fail(
        self,
        path: str,
        *,
        status: int = 500,
        method: str | None = None,
        times: int | None = 1,
        retry_after: int | None = None,
    ) -> Rule:
        """Answer `status` (500 by default) `times` times, then pass through."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return self._add(Rule("status", re.compile(path), method, times, status, headers))

    def unauthorized(
        self, path: str = "", *, method: str | None = None, times: int | None = None
    ) -> Rule:
        """Answer 401 with a Basic challenge, as a registry does to a wrong password."""
        challenge = {"WWW-Authenticate": 'Basic realm="fault-proxy"'}
        return self._add(Rule("status", re.compile(path), method, times, 401, challenge))

    def truncate(
        self, path: str, *, after: int, method: str | None = "GET", times: int | None = None
    ) -> Rule:
        """Send the full headers, `after` bytes of the body, then close the connection."""
        return self._add(Rule("truncate", re.compile(path), method, times, after=after))

    def corrupt(self, path: str, *, method: str | None = "GET", times: int | None = None) -> Rule:
        """Send a body of the same length whose every byte differs from the registry's."""
        return self._add(Rule("corrupt", re.compile(path), method, times))

    def hang(
        self, path: str, *, seconds: float, method: str | None = None, times: int | None = None
    ) -> Rule:
        """Hold matching requests `seconds` seconds before passing them on."""
        return self._add(Rule("hang", re.compile(path), method, times, seconds=seconds))

    def seen(self, method: str | None = None, path: str = "") -> list[Seen]:
        """The recorded requests with that method (any, if None) whose path matches `path`."""
        pattern = re.compile(path)
        with self._lock:
            return [
                s
                for s in self.requests
                if (method is None or s.method == method) and pattern.search(s.path)
            ]

    # -- used by the handler --------------------------------------------------------------

    def take(self, method: str, target: str) -> Rule | None:
        """The first rule that matches, counted as used; None to pass the request through."""
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, target):
                    rule.used += 1
                    return rule
        return None

    def record(self, seen: Seen, generation: int) -> None:
        with self._lock:
            if generation == self.generation:
                self.requests.append(seen)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a registry client's pool expects
    timeout = 30  # an idle keep-alive connection does not hold a thread for long

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def proxy(self) -> FaultProxy:
        return self.server.owner  # type: ignore[attr-defined, no-any-return]

    def _request_body(self) -> Iterator[bytes]:
        """The request's body as it arrives, de-chunked; empty when it has none."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size_line = self.rfile.readline(1024)
                if not size_line:
                    raise ConnectionError("the client closed the connection mid-body")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers: dropped
                    return
                yield from self._read_exactly(size)
                self.rfile.readline(1024)  # the CRLF after the chunk
        else:
            yield from self._read_exactly(int(self.headers.get("Content-Length") or 0))

    def _read_exactly(self, remaining: int) -> Iterator[bytes]:
        while remaining > 0:
            data = self.rfile.read(min(remaining, _CHUNK))
            if not data:
                raise ConnectionError("the client closed the connection mid-body")
            remaining -= len(data)
            yield data

    def _inject(self, rule: Rule) -> None:
        for _ in self._request_body():  # read it, so that the connection stays usable
            pass
        code = _ERROR_CODES.get(rule.status, "UNKNOWN")
        body = json.dumps(
            {"errors": [{"code": code, "message": "injected by the fault proxy", "detail": None}]}
        ).encode()
        self.responded = True
        self.send_response_only(rule.status)
        for name, value in rule.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._record(rule.status, rule)
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self, rule: Rule | None) -> None:
        """Pass the request to the registry and its response back (faulted by `rule`)."""
        proxy = self.proxy
        chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
        upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
        try:
            # Header by header: a client may send one name several times (skopeo's Accept).
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    upstream.putheader(name, value)
            if chunked:
                upstream.putheader("Transfer-Encoding", "chunked")
            upstream.endheaders()
            for piece in self._request_body():
                upstream.send(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                upstream.send(b"0\r\n\r\n")
            self._relay(upstream.getresponse(), rule)
        finally:
            upstream.close()

    def _relay(self, response: http.client.HTTPResponse, rule: Rule | None) -> None:
        kind = rule.kind if rule else None
        length = response.length  # None when the registry streams without a Content-Length
        body: bytes | None = None
        if length is None and self.command != "HEAD":
            body = response.read()  # re-framed with a Content-Length below
        self.responded = True
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP and not (
                body is not None and name.lower() == "content-length"
            ):
                self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Length", str(len(body)))
        if kind == "truncate":
            self.send_header("Connection", "close")
        self.end_headers()
        self._record(response.status, rule)
        if self.command == "HEAD":
            return
        chunks = iter([body]) if body is not None else iter(lambda: response.read(_CHUNK), b"")
        sent = 0
        for chunk in chunks:
            if kind == "corrupt":
                chunk = chunk.translate(_INVERT)
            if kind == "truncate" and rule is not None:
                chunk = chunk[: max(0, rule.after - sent)]
            self.wfile.write(chunk)
            sent += len(chunk)
            if kind == "truncate" and rule is not None and sent >= rule.after:
                break
        if kind == "truncate":
            self.wfile.flush()
            self.close_connection = True

    def _record(self, status: int, rule: Rule | None) -> None:
        """Put the request in the record, once, as soon as its status is sent (before the body:
        a client that has read the body finds its request recorded)."""
        if not self.recorded:
            self.recorded = True
            seen = Seen(self.command, self.path, status, rule.kind if rule else None)
            self.proxy.record(seen, self.generation)

    def _handle(self) -> None:
        proxy = self.proxy
        self.generation = proxy.generation
        self.responded = self.recorded = False
        rule = proxy.take(self.command, self.path)
        try:
            if rule and rule.kind == "hang":
                proxy.stopping.wait(rule.seconds)
            if rule and rule.kind == "status":
                self._inject(rule)
            else:
                self._forward(rule)
        except (ConnectionError, TimeoutError, http.client.HTTPException):
            self.close_connection = True
            self._record(502, rule)
            try:  # tell the client, if it is still there and nothing was sent yet
                if not self.responded:
                    self.send_response_only(502)
                    self.send_header("Content-Length", "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
            except OSError:
                pass

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle
