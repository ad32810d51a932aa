"""A static file server on 127.0.0.1 (like braintreebank.dev), so downloads are tested offline.

It answers ``HEAD`` (size) and ``GET`` (content, honouring ``Range: bytes=N-`` with a 206) for
in-memory files, and can hang up once after a number of bytes of a file, or serve other bytes
than it announces (a corrupt transfer). Every request is recorded.
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


class StaticServer:
    """Files ``{path: bytes}`` served under ``http://127.0.0.1:<port>/<prefix>/<path>``."""

    def __init__(self, files: dict[str, bytes], prefix: str = "data"):
        self.files = dict(files)
        self.prefix = prefix.strip("/")
        self.truncate_after: dict[str, int] = {}
        self.served_body: dict[str, bytes] = {}
        self.seen: list[tuple[str, str, str | None]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/{self.prefix}"

    def __enter__(self) -> StaticServer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def gets(self, path: str) -> list[str | None]:
        """Range headers of the GET requests for ``path``."""
        return [r for m, p, r in self.seen if m == "GET" and p == path]


def _handler(fake: StaticServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _path(self) -> str | None:
            path = unquote(urlsplit(self.path).path).lstrip("/")
            head = fake.prefix + "/"
            return path[len(head):] if path.startswith(head) else None

        def do_HEAD(self) -> None:
            path = self._path()
            with fake._lock:
                fake.seen.append(("HEAD", path, None))
            if path not in fake.files:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(fake.files[path])))
            self.end_headers()

        def do_GET(self) -> None:
            path = self._path()
            rng = self.headers.get("Range")
            with fake._lock:
                fake.seen.append(("GET", path, rng))
                cut = fake.truncate_after.pop(path, None)
            if path not in fake.files:
                self.send_error(404)
                return
            body = fake.served_body.get(path, fake.files[path])
            start = 0
            m = re.match(r"bytes=(\d+)-$", rng or "")
            if m:
                start = int(m.group(1))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            part = body[start:]
            self.send_header("Content-Length", str(len(part)))
            self.end_headers()
            self.wfile.write(part if cut is None else part[:cut])
            if cut is not None:
                self.close_connection = True

    return Handler
