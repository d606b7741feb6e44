"""A local HTTP server whose paths answer as the tests need (``/ok``, ``/status/404``,
``/bytes/N``, ``/redirect?to=URL``, ``/loop``, ``/slow?seconds=S``, ``/chunked``, ``/drip``),
recording the Host header of every request it gets."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Web:
    """The local server: its base URL, and the Host header of every request it got."""

    base: str
    hosts: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


class _Handler(BaseHTTPRequestHandler):
    web: Web
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: pytest shows what a failing test needs."""

    def _answer(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        self.web.hosts.append(self.headers.get("Host", ""))
        parts = urlsplit(self.path)
        query = {name: values[0] for name, values in parse_qs(parts.query).items()}
        segments = parts.path.strip("/").split("/")
        if parts.path == "/ok":
            self._answer(200, b"hello", {"Content-Type": "text/plain"})
        elif segments[0] == "bytes":
            self._answer(200, b"x" * int(segments[1]))
        elif segments[0] == "status":
            self._answer(int(segments[1]), b"status page")
        elif parts.path == "/redirect":
            self._answer(302, b"", {"Location": query["to"]})
        elif parts.path == "/loop":
            self._answer(301, b"", {"Location": "/loop"})
        elif parts.path == "/slow":
            time.sleep(float(query["seconds"]))
            self._answer(200, b"late")
        elif parts.path == "/chunked":
            self._chunked([b"a" * 1000, b"b" * 2000, b"c" * 3])
        elif parts.path == "/drip":
            self._drip()
        else:
            self._answer(404, b"not here")

    do_HEAD = do_GET

    def _chunked(self, pieces: list[bytes]) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in pieces:
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def _drip(self) -> None:
        """A status line, then a header a byte every 0.2 s, for as long as the client listens:
        every read gets a byte within any socket timeout."""
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        try:
            for _ in range(600):
                self.wfile.write(b"X")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            return


@contextmanager
def serving() -> Iterator[Web]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    served = Web(f"http://{host!s}:{port}")

    class Handler(_Handler):
        web = served

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
