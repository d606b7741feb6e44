"""One URL, checked within hard bounds: status, bytes and timing, or why it could not be.

Safety comes from where the connection goes, not from the URL's text: the host name is
resolved here, every address it resolves to must pass the :class:`AddressPolicy`, and the
connection is made to that checked address (TLS still verifies the host name), so DNS cannot
answer differently between the check and the connect. Every redirect is a new URL, checked
the same way. One deadline covers resolving, connecting, TLS, every redirect and the body;
at most ``max_bytes`` of the body are read. No proxy, no cookies, no credentials in URLs.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

from url_check.addresses import AddressPolicy, IPAddress

MAX_URL_CHARS = 2048
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
READ_BYTES = 64 * 1024
USER_AGENT = "taskqueue-url-check/1.0"
Method = Literal["GET", "HEAD"]
Resolver = Callable[..., Sequence[tuple[Any, ...]]]


class FetchError(Exception):
    """A check that ended without an HTTP answer; ``code`` is what the result says."""

    code = "fetch_error"


class InvalidUrl(FetchError):
    code = "invalid_url"


class BlockedAddress(FetchError):
    code = "blocked_address"


class TooManyRedirects(FetchError):
    code = "too_many_redirects"


class DeadlineExceeded(FetchError):
    code = "timeout"


# Exceptions of the standard library by the code a result shows, in order: the first class
# that matches names it (ssl and socket errors are OSErrors, so they come before OSError).
ERROR_CODES: tuple[tuple[type[BaseException], str], ...] = (
    (socket.gaierror, "dns_error"),
    (TimeoutError, "timeout"),
    (ssl.SSLError, "tls_error"),
    (ssl.CertificateError, "tls_error"),
    (http.client.HTTPException, "bad_response"),
    (UnicodeError, "invalid_url"),
    (OSError, "connection_error"),
)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, FetchError):
        return exc.code
    return next((code for kind, code in ERROR_CODES if isinstance(exc, kind)), "error")


@dataclass(frozen=True)
class Target:
    """A URL reduced to what a request needs, after the checks of :func:`parse_target`."""

    url: str
    https: bool
    host: str  # ASCII (IDNA), without brackets
    port: int
    path: str  # path and query, as sent


def parse_target(url: str) -> Target:
    """The request a URL stands for; InvalidUrl saying why it is not one we fetch."""
    if len(url) > MAX_URL_CHARS:
        raise InvalidUrl(f"longer than {MAX_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise InvalidUrl("contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidUrl(str(exc)) from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidUrl("only http and https URLs are checked")
    if parts.username is not None or parts.password is not None:
        raise InvalidUrl("credentials in a URL are not sent")
    host = parts.hostname or ""
    if not host:
        raise InvalidUrl("no host")
    try:
        ascii_host = host if _is_ip_literal(host) else host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise InvalidUrl(f"host {host!r} is not a valid name") from exc
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(
        url=url,
        https=scheme == "https",
        host=ascii_host,
        port=port or (443 if scheme == "https" else 80),
        path=path,
    )


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def checked_addresses(target: Target, policy: AddressPolicy, resolve: Resolver) -> list[str]:
    """Every address the host resolves to, if all of them pass the policy; else the refusal.

    One refused address refuses the host: a name that answers with a public and a private
    address is an attack or a mistake, not a URL to check."""
    infos = resolve(target.host, target.port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for info in infos:
        text = str(info[4][0])
        address: IPAddress = ipaddress.ip_address(text.split("%", 1)[0])
        reason = policy.refusal(address)
        if reason is not None:
            raise BlockedAddress(f"{target.host} resolves to {reason}")
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise socket.gaierror(f"{target.host} has no address")
    return addresses


class _PinnedConnect:
    """Connects to a checked address whatever the host name would resolve to now."""

    def __init__(self, address: str) -> None:
        self.address = address

    def __call__(
        self,
        host_and_port: tuple[str, int],
        timeout: float | None = None,
        source_address: tuple[str, int] | None = None,
    ) -> socket.socket:
        return socket.create_connection((self.address, host_and_port[1]), timeout, source_address)


def _connection(target: Target, address: str, timeout: float) -> http.client.HTTPConnection:
    connection: http.client.HTTPConnection
    if target.https:
        connection = http.client.HTTPSConnection(
            target.host, target.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    # http.client makes its socket through this attribute (HTTPS wraps it afterwards, with
    # the host name for SNI and certificate checks): the connection goes to `address`.
    connection._create_connection = _PinnedConnect(address)  # type: ignore[attr-defined]
    return connection


@dataclass(frozen=True)
class Limits:
    timeout_seconds: float
    max_bytes: int
    method: Method = "GET"
    follow_redirects: bool = True
    max_redirects: int = 5


@dataclass(frozen=True)
class Fetched:
    """What one check found: an HTTP answer, or an error code and message."""

    url: str
    final_url: str
    status: int | None
    bytes: int
    truncated: bool
    content_length: int | None
    elapsed_ms: int
    redirects: int
    address: str | None
    error_code: str | None = None
    error: str | None = None

    @classmethod
    def failure(
        cls,
        url: str,
        code: str,
        message: str,
        *,
        final_url: str | None = None,
        elapsed_ms: int = 0,
        redirects: int = 0,
        address: str | None = None,
    ) -> Fetched:
        return cls(
            url=url,
            final_url=final_url or url,
            status=None,
            bytes=0,
            truncated=False,
            content_length=None,
            elapsed_ms=elapsed_ms,
            redirects=redirects,
            address=address,
            error_code=code,
            error=message[:300],
        )

    @property
    def ok(self) -> bool:
        """An answer below 400 (a redirect not followed counts as an answer)."""
        return self.status is not None and self.status < 400


@dataclass
class _Answer:
    status: int
    location: str | None
    content_length: int | None
    bytes: int = 0
    truncated: bool = False


def fetch(
    url: str,
    limits: Limits,
    policy: AddressPolicy,
    resolve: Resolver = socket.getaddrinfo,
    clock: Callable[[], float] = time.monotonic,
) -> Fetched:
    """Check `url`: never raises for anything the URL or its server does."""
    started = clock()
    deadline = started + limits.timeout_seconds
    current, redirects, address = url, 0, None
    try:
        target = parse_target(url)
        while True:
            answer, address = _exchange(target, limits, policy, resolve, deadline, clock)
            moved = answer.status in REDIRECT_STATUSES and answer.location
            if not (moved and limits.follow_redirects):
                return Fetched(
                    url=url,
                    final_url=current,
                    status=answer.status,
                    bytes=answer.bytes,
                    truncated=answer.truncated,
                    content_length=answer.content_length,
                    elapsed_ms=_millis(clock() - started),
                    redirects=redirects,
                    address=address,
                )
            redirects += 1
            if redirects > limits.max_redirects:
                raise TooManyRedirects(f"more than {limits.max_redirects} redirects")
            current = urljoin(current, str(answer.location))
            target = parse_target(current)
    except Exception as exc:  # every failure of one URL is that URL's result, not the chunk's
        return Fetched.failure(
            url,
            error_code(exc),
            str(exc) or type(exc).__name__,
            final_url=current,
            elapsed_ms=_millis(clock() - started),
            redirects=redirects,
            address=address,
        )


def _left(deadline: float, clock: Callable[[], float]) -> float:
    left = deadline - clock()
    if left <= 0:
        raise DeadlineExceeded("no answer within the timeout")
    return left


class _Watchdog:
    """Shuts the connection's socket down at the deadline.

    Socket timeouts bound each read, not their sum: a server that sends its headers (or TLS
    handshake, or chunk sizes) a byte at a time would keep a check alive for as long as it
    likes. A shut-down socket ends whatever read is waiting, and the check is a timeout."""

    def __init__(self, connection: http.client.HTTPConnection, seconds: float) -> None:
        self.connection = connection
        self.fired = threading.Event()
        self.timer = threading.Timer(seconds, self._fire)
        self.timer.daemon = True

    def _fire(self) -> None:
        self.fired.set()
        sock = self.connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Watchdog:
        self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timer.cancel()
        self.connection.close()


def _exchange(
    target: Target,
    limits: Limits,
    policy: AddressPolicy,
    resolve: Resolver,
    deadline: float,
    clock: Callable[[], float],
) -> tuple[_Answer, str]:
    """One request to the first checked address that accepts a connection."""
    addresses = checked_addresses(target, policy, resolve)
    refused: OSError = ConnectionRefusedError(f"no address of {target.host} accepts connections")
    for address in addresses:
        left = _left(deadline, clock)
        connection = _connection(target, address, left)
        with _Watchdog(connection, left) as watchdog:
            try:
                connection.connect()
            except OSError as exc:
                if watchdog.fired.is_set():
                    raise DeadlineExceeded("no answer within the timeout") from exc
                if isinstance(exc, TimeoutError | ssl.SSLError):
                    raise  # the address answered, or is too slow: another would not help
                refused = exc
                continue
            try:
                answer = _request(connection, target, limits, deadline, clock)
            except Exception as exc:
                if watchdog.fired.is_set():
                    raise DeadlineExceeded("no complete answer within the timeout") from exc
                raise
            if watchdog.fired.is_set():  # the shut-down socket looked like the end of the body
                raise DeadlineExceeded("no complete answer within the timeout")
            return answer, address
    raise refused


def _request(
    connection: http.client.HTTPConnection,
    target: Target,
    limits: Limits,
    deadline: float,
    clock: Callable[[], float],
) -> _Answer:
    headers = {
        "User-Agent": USER_AGENT,
        "Accept": "*/*",
        "Accept-Encoding": "identity",  # bytes as sent: no decompression bomb to inflate
        "Connection": "close",
    }
    connection.request(limits.method, target.path, headers=headers)
    response = connection.getresponse()
    length_header = response.getheader("Content-Length")
    answer = _Answer(
        status=response.status,
        location=response.getheader("Location"),
        content_length=int(length_header) if length_header and length_header.isdigit() else None,
    )
    if answer.status in REDIRECT_STATUSES and limits.follow_redirects:
        return answer  # the body of a redirect is not what was asked for
    while True:
        _left(deadline, clock)
        # One system call a read at most, so the counting stops as soon as the limit is passed.
        piece = response.read1(min(READ_BYTES, limits.max_bytes - answer.bytes + 1))
        if not piece:
            return answer
        answer.bytes += len(piece)
        if answer.bytes > limits.max_bytes:
            answer.bytes, answer.truncated = limits.max_bytes, True
            return answer


def _millis(seconds: float) -> int:
    return max(0, round(seconds * 1000))
