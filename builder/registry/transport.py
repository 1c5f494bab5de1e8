"""HTTP to one registry host, over urllib3: the scheme, TLS trust, retries, plain errors.

One PoolManager per process (pooled keep-alive connections, safe across the threads that
move layers), made on the first request: urllib3 is imported only by a build or a verb that
talks to a registry, never by a cached build. Requests are retried with backoff on
connection errors, 5xx and 429, within a bounded time; what fails in the end is one
RegistryError whose message says what happened in words (unknown host, refused, timed out,
which CA was tried), not a stack of library exceptions.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import IO, TYPE_CHECKING, Protocol, cast
from urllib.parse import urljoin, urlsplit

from builder.errors import RegistryError
from builder.record import dataclass
from builder.registry.settings import (
    HostSettings,
    Settings,
    allows_http,
    ssl_context,
    trust_hint,
)

if TYPE_CHECKING:
    import urllib3
    from urllib3 import BaseHTTPResponse


class Stream(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


# A request body: bytes, or a callable that opens a fresh stream for each attempt.
Body = bytes | Callable[[], Stream] | None

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
TIMEOUT_ENV = "BUILDER_REGISTRY_TIMEOUT"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    first_delay: float = 0.5  # doubled after each failure, with jitter
    max_delay: float = 8.0
    deadline: float = 120.0  # seconds across all attempts of one request
    connect_timeout: float = 15.0
    read_timeout: float = 60.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> RetryPolicy:
        """$BUILDER_REGISTRY_TIMEOUT=SECONDS bounds each wait and the whole retry budget
        (CI jobs with a tight limit; tests of a registry that never answers)."""
        raw = environ.get(TIMEOUT_ENV, "")
        if not raw:
            return cls()
        try:
            seconds = float(raw)
        except ValueError:
            raise RegistryError(f"${TIMEOUT_ENV}={raw!r}: expected a number of seconds") from None
        if seconds <= 0:
            raise RegistryError(f"${TIMEOUT_ENV}={raw!r}: expected a positive number of seconds")
        return cls(
            deadline=seconds,
            connect_timeout=min(cls.connect_timeout, seconds),
            read_timeout=min(cls.read_timeout, seconds),
            max_delay=min(cls.max_delay, seconds / 4),
            first_delay=min(cls.first_delay, seconds / 8),
        )


class Attempts:
    """The retry budget of one request: a count, exponential backoff, a deadline."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.started = time.monotonic()
        self.count = 1

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def pause(self, retry_after: float | None = None) -> bool:
        """Sleep before another attempt and return True, or False when the budget is spent."""
        p = self.policy
        if self.count >= p.attempts:
            return False
        delay = min(p.max_delay, p.first_delay * 2 ** (self.count - 1))
        delay *= 1 + random.random() / 4  # jitter, not cryptography
        if retry_after is not None:
            delay = max(delay, min(retry_after, p.max_delay))
        if self.elapsed + delay > p.deadline:
            return False
        time.sleep(delay)
        self.count += 1
        return True

    def tried(self) -> str:
        return f"{self.count} attempt{'s' if self.count != 1 else ''} in {self.elapsed:.1f}s"


class Interrupted(RegistryError):
    """A transfer that broke off (reset, timeout, short body): another attempt may work."""


# -- the process's pool and TLS contexts ----------------------------------------------------

_lock = threading.Lock()
_manager: urllib3.PoolManager | None = None
_contexts: dict[str, tuple[ssl.SSLContext, tuple[str, ...]]] = {}
_schemes: dict[str, str] = {}  # host -> the scheme that answered (https, or http fallback)
_probe_lock = threading.Lock()


def _pool_manager() -> urllib3.PoolManager:
    global _manager
    with _lock:
        if _manager is None:
            import urllib3

            # 4 MiB socket writes: uploads stream from the store's files at disk speed, in
            # few enough reads that handing each to the blob's verifying hash is no cost.
            _manager = urllib3.PoolManager(num_pools=32, maxsize=8, blocksize=4 << 20)
        return _manager


def _context(host: str, settings: HostSettings) -> tuple[ssl.SSLContext, tuple[str, ...]]:
    with _lock:
        if host not in _contexts:
            _contexts[host] = ssl_context(host, settings)
            if _contexts[host][0].verify_mode == ssl.CERT_NONE:
                import urllib3

                # `insecure = true` was asked for in the config; warning on each request
                # would only repeat it.
                urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        return _contexts[host]


def _speaks_tls(netloc: str, timeout: float) -> bool | None:
    """Whether a registry that may speak plain HTTP (loopback) answers a TLS handshake:
    False when it answers in plain text, None when it cannot be told (refused, silent).

    The full context (the system CAs: ~0.1 s to load) is built only for a registry that
    does speak TLS; a plain-HTTP loopback registry, the common local case, never pays for
    it. The handshake is not trusted for anything: the request that follows verifies."""
    host, port = split_host(netloc)
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port or 443), timeout=timeout) as sock:
            sock.settimeout(min(timeout, 2.0))  # a TLS server on loopback answers at once
            with probe.wrap_socket(sock, server_hostname=host):
                return True
    except ssl.SSLError:
        return False  # a plain-HTTP server's answer is not a ServerHello
    except OSError:
        return None  # refused or timed out: the request says so, in its words


def split_host(host: str) -> tuple[str, int | None]:
    """ "host:port" -> (host, port); "[::1]:5000" -> ("::1", 5000)."""
    parts = urlsplit(f"//{host}")
    return parts.hostname or host, parts.port


def _retry_after(response: BaseHTTPResponse) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _is_verification_failure(err: Exception) -> bool:
    cause = err.args[0] if err.args else None
    return isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(
        err
    )


class Transport:
    """Requests to one registry host (`host` or `host:port`), with retries and plain errors.

    Targets are paths ("/v2/...", maybe with a query) on this host, or absolute URLs (an
    upload's Location, a redirect). HTTPS always, except plain HTTP when the settings allow
    it: `http = true` speaks plain HTTP only; a loopback host is tried over HTTPS first and
    over plain HTTP when it does not speak TLS at all, as docker does for insecure hosts.
    """

    def __init__(self, host: str, settings: Settings, policy: RetryPolicy | None = None) -> None:
        self.host = host
        self.settings = settings
        self.host_settings = settings.for_host(host)
        self.policy = policy or RetryPolicy.from_env()

    # -- public ----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        target: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        stream: bool = False,
    ) -> BaseHTTPResponse:
        """Send, retrying on connection errors, 5xx and 429; follow GET/HEAD redirects.

        A streamed response must be released by the caller (release_conn); read its body
        inside `reading()` so a broken transfer becomes an Interrupted error."""
        attempts = Attempts(self.policy)
        while True:
            try:
                response = self._exchange(method, target, dict(headers or {}), body, stream)
            except _Transient as err:
                if attempts.pause():
                    continue
                raise self._failure(err.cause, attempts) from None
            if response.status in RETRY_STATUSES:
                retry_after = _retry_after(response)
                _discard(response)
                if attempts.pause(retry_after):
                    continue
                status = f"{response.status} {response.reason or ''}".strip()
                raise RegistryError(
                    f"registry {self.host} answered {status} to {method} {_path(target)}"
                    f" (gave up after {attempts.tried()})"
                )
            return response

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Around reading a streamed body: a broken transfer raises Interrupted."""
        import urllib3

        try:
            yield
        except (
            urllib3.exceptions.ProtocolError,
            urllib3.exceptions.ReadTimeoutError,
            urllib3.exceptions.SSLError,
            OSError,
        ) as err:
            raise Interrupted(
                f"the transfer from registry {self.host} broke off: {_reason(err)}"
            ) from None

    # -- one attempt -----------------------------------------------------------------------

    def _exchange(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: Body,
        stream: bool,
    ) -> BaseHTTPResponse:
        url = target
        for _ in range(_MAX_REDIRECTS + 1):
            response = self._send(method, url, headers, body, stream)
            location = response.headers.get("Location")
            if method not in ("GET", "HEAD") or response.status not in REDIRECTS or not location:
                return response
            _discard(response)
            next_url = urljoin(self._absolute(url), location)
            if urlsplit(next_url).netloc != self.host:
                # Blob storage elsewhere (a CDN, S3): the registry's credentials stay home.
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            url = next_url
        raise RegistryError(f"registry {self.host}: too many redirects for {_path(target)}")

    def _absolute(self, target: str) -> str:
        if "://" in target:
            return target
        return f"{self._scheme_order()[0]}://{self.host}{target}"

    def _scheme_order(self) -> tuple[str, ...]:
        known = _schemes.get(self.host)
        if known is not None:
            return (known,)
        if self.host_settings.http:
            return ("http",)
        if allows_http(self.host, self.host_settings):
            with _probe_lock:  # a push's first requests come at once: one probe serves all
                if _schemes.get(self.host) == "http":
                    return ("http",)
                if _speaks_tls(self.host, self.policy.connect_timeout) is False:
                    _schemes[self.host] = "http"
                    return ("http",)
            return ("https", "http")
        return ("https",)

    def _send(
        self, method: str, url: str, headers: dict[str, str], body: Body, stream: bool
    ) -> BaseHTTPResponse:
        import urllib3

        if "://" in url:
            parts = urlsplit(url)
            schemes: tuple[str, ...] = (parts.scheme,)
            netloc = parts.netloc
            path = parts.path + (f"?{parts.query}" if parts.query else "")
        else:
            schemes, netloc, path = self._scheme_order(), self.host, url
        host, port = split_host(netloc)
        timeout = urllib3.Timeout(
            connect=self.policy.connect_timeout, read=self.policy.read_timeout
        )
        for i, scheme in enumerate(schemes):
            kwargs: dict[str, object] = {}
            if scheme == "https":
                kwargs["ssl_context"] = _context(netloc, self.settings.for_host(netloc))[0]
            pool = _pool_manager().connection_from_host(
                host, port, scheme, pool_kwargs=kwargs or None
            )
            opened = body() if callable(body) else body
            try:
                response = pool.urlopen(
                    method,
                    path,
                    body=cast("IO[bytes] | bytes | None", opened),  # urllib3 needs .read()
                    headers=headers,
                    retries=False,
                    redirect=False,
                    timeout=timeout,
                    preload_content=not stream,
                    decode_content=False,
                )
            except urllib3.exceptions.SSLError as err:
                if i + 1 < len(schemes) and not _is_verification_failure(err):
                    continue  # a loopback registry that speaks plain HTTP
                raise self._failure(err, None) from None
            except urllib3.exceptions.NameResolutionError as err:
                raise self._failure(err, None) from None
            except (
                urllib3.exceptions.NewConnectionError,
                urllib3.exceptions.TimeoutError,
                urllib3.exceptions.ProtocolError,
            ) as err:
                raise _Transient(err) from None
            finally:
                if opened is not None and not isinstance(opened, bytes):
                    opened.close()
            if netloc == self.host and self.host not in _schemes:
                _schemes[self.host] = scheme
            return response
        raise AssertionError("no scheme to try")  # pragma: no cover

    # -- errors ----------------------------------------------------------------------------

    def _failure(self, err: Exception, attempts: Attempts | None) -> RegistryError:
        import urllib3

        after = f" (gave up after {attempts.tried()})" if attempts else ""
        if isinstance(err, urllib3.exceptions.NameResolutionError):
            return RegistryError(
                f"cannot reach registry {self.host}: unknown host {split_host(self.host)[0]}"
            )
        if isinstance(err, urllib3.exceptions.SSLError):
            return RegistryError(self._tls_message(err))
        if isinstance(err, urllib3.exceptions.NewConnectionError):
            cause = err.__context__
            if isinstance(cause, ConnectionRefusedError):
                return RegistryError(
                    f"cannot reach registry {self.host}: connection refused{after}"
                )
            if isinstance(cause, TimeoutError):
                return RegistryError(f"cannot reach registry {self.host}: timed out{after}")
            return RegistryError(f"cannot reach registry {self.host}: {_reason(err)}{after}")
        if isinstance(err, urllib3.exceptions.TimeoutError):
            return RegistryError(f"registry {self.host} did not answer in time{after}")
        return RegistryError(f"the connection to registry {self.host} broke: {_reason(err)}{after}")

    def _tls_message(self, err: Exception) -> str:
        sources = _context(self.host, self.host_settings)[1]
        reason = _reason(err)
        if not _is_verification_failure(err):
            return f"TLS with registry {self.host} failed: {reason}"
        return (
            f"TLS verification of registry {self.host} failed ({reason}); CAs tried: "
            f"{', '.join(sources)}. {trust_hint(self.host, self.host_settings)}"
        )


class _Transient(Exception):
    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _reason(err: BaseException) -> str:
    """The innermost useful words of a library error."""
    inner: BaseException = err
    while True:
        nxt = inner.args[0] if inner.args and isinstance(inner.args[0], BaseException) else None
        nxt = nxt or getattr(inner, "reason", None) or inner.__context__
        if not isinstance(nxt, BaseException) or nxt is inner:
            break
        inner = nxt
    text = str(inner)
    if isinstance(inner, ssl.SSLCertVerificationError) and inner.verify_message:
        text = inner.verify_message
    return text or type(inner).__name__


def _discard(response: BaseHTTPResponse) -> None:
    with contextlib.suppress(Exception):
        response.drain_conn()
    response.release_conn()


def _path(target: str) -> str:
    if "://" in target:
        parts = urlsplit(target)
        return parts.path
    return target.split("?", 1)[0]
