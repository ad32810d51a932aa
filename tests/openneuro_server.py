"""A fake OpenNeuro on 127.0.0.1, so download tests run offline.

It serves, from in-memory bytes, what :mod:`barista.download` talks to:

* ``GET /?list-type=2&prefix=...``: S3 ListObjectsV2 XML, paginated with continuation
  tokens (``max_keys`` entries a page);
* ``GET /<dataset_id>/<path>``: the object, honouring ``Range: bytes=N-`` with a 206;
* ``GET /<dataset_id>/<path>?versionId=<v>``: the content of an older snapshot;
* ``POST /crn/graphql``: the snapshot file list of OpenNeuro's GraphQL API.

Switches on :class:`FakeOpenNeuro` simulate faults, and every request is recorded.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
GRAPHQL_PATH = "/crn/graphql"


@dataclass(frozen=True)
class Seen:
    """One request the fake server answered.

    Attributes
    ----------
    method : str
        ``"GET"`` or ``"POST"``.
    path : str
        Decoded URL path, e.g. ``"/ds000001/sub-01/ieeg/x.edf"``; ``"/"`` for a listing.
    query : dict of str to str
        Query parameters, first value of each.
    range : str | None
        The ``Range`` header the client sent, if any.
    """

    method: str
    path: str
    query: dict[str, str]
    range: str | None


class FakeOpenNeuro:
    """An in-memory OpenNeuro: S3 bucket plus GraphQL snapshot listing.

    Parameters
    ----------
    datasets : mapping of str to mapping of str to bytes
        ``{dataset_id: {relative path: content}}``; a path ending in ``/`` is listed as
        an S3 folder placeholder.
    max_keys : int
        Listing entries per page, small to exercise continuation tokens.

    Attributes
    ----------
    honour_range : bool
        When False, a ``Range`` request gets the whole object with a 200, like a server
        that does not support ranges.
    truncate_after : dict of str to int
        ``{"<id>/<path>": n}``: the next response for that object announces its full
        length but hangs up after ``n`` body bytes (one shot).
    served_body : dict of str to bytes
        ``{"<id>/<path>": content}`` served instead of the listed content, whose size and
        ETag stay in the listing (a corrupt object).
    multipart : set of str
        Objects listed with a multipart ETag (``"<hex>-2"``), which is no MD5.
    statuses : dict of str to list of int
        ``{"<id>/<path>": [503, ...]}``: statuses answered to the next requests.
    seen : list of Seen
        Every request, in order.
    graphql_payloads : list of dict
        Every JSON body posted to the GraphQL endpoint.
    """

    def __init__(
        self, datasets: Mapping[str, Mapping[str, bytes]], *, max_keys: int = 1000
    ) -> None:
        self.datasets = {name: dict(files) for name, files in datasets.items()}
        self.max_keys = max_keys
        self.honour_range = True
        self.truncate_after: dict[str, int] = {}
        self.served_body: dict[str, bytes] = {}
        self.multipart: set[str] = set()
        self.statuses: dict[str, list[int]] = {}
        self.seen: list[Seen] = []
        self.graphql_payloads: list[dict[str, Any]] = []
        self._snapshots: dict[tuple[str, str], dict[str, bytes]] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- setup
    def add_snapshot(self, dataset_id: str, tag: str, files: Mapping[str, bytes]) -> None:
        """Serve ``files`` as snapshot ``tag`` of a dataset, through GraphQL and versionId."""
        self._snapshots[(dataset_id, tag)] = dict(files)

    @staticmethod
    def version_id(tag: str) -> str:
        """The S3 versionId the snapshot ``tag`` pins its files to."""
        return f"version-{tag}"

    @property
    def base_url(self) -> str:
        """Root URL of the fake S3 bucket."""
        if self._server is None:
            raise RuntimeError("the fake OpenNeuro is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def graphql_url(self) -> str:
        """URL of the fake GraphQL endpoint."""
        return self.base_url + GRAPHQL_PATH

    # -------------------------------------------------------------- lifecycle
    def start(self) -> FakeOpenNeuro:
        """Listen on a free port of 127.0.0.1 in a background thread."""
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-openneuro",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and join the server and handler threads."""
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()  # joins the handler threads (they are not daemons)
        self._thread.join(timeout=5)

    @property
    def running(self) -> bool:
        """Whether the serving thread is still alive."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> FakeOpenNeuro:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ inspection
    def object_gets(self, key: str | None = None) -> list[Seen]:
        """GET requests for objects (not listings), optionally of one ``<id>/<path>``."""
        return [
            seen
            for seen in self.seen
            if seen.method == "GET" and seen.path != "/" and (key is None or seen.path == "/" + key)
        ]

    def listing_gets(self) -> list[Seen]:
        """GET requests for bucket listings."""
        return [seen for seen in self.seen if seen.method == "GET" and seen.path == "/"]

    # ------------------------------------------------- used by the handler
    def record(self, seen: Seen) -> None:
        """Remember a request."""
        with self._lock:
            self.seen.append(seen)

    def pop_status(self, key: str) -> int | None:
        """The fault status queued for an object, if any."""
        with self._lock:
            queued = self.statuses.get(key)
            return queued.pop(0) if queued else None

    def pop_truncation(self, key: str) -> int | None:
        """The byte count after which to hang up on an object, if any (one shot)."""
        with self._lock:
            return self.truncate_after.pop(key, None)

    def listed_objects(self) -> dict[str, bytes]:
        """Every current object by key, with its listed (not served) content."""
        return {
            f"{dataset_id}/{path}": content
            for dataset_id, files in self.datasets.items()
            for path, content in files.items()
        }

    def etag(self, key: str, content: bytes) -> str:
        """The S3 ETag of an object: its MD5, or a multipart hash when so configured."""
        digest = hashlib.md5(content).hexdigest()
        return f'"{digest}-2"' if key in self.multipart else f'"{digest}"'

    def content(self, key: str, version_id: str | None) -> bytes | None:
        """What a GET of ``key`` returns, or None for a missing object."""
        dataset_id, _, path = key.partition("/")
        if version_id is not None:
            files = next(
                (
                    files
                    for (name, tag), files in self._snapshots.items()
                    if name == dataset_id and self.version_id(tag) == version_id
                ),
                {},
            )
            return files.get(path)
        if key in self.served_body:
            return self.served_body[key]
        return self.datasets.get(dataset_id, {}).get(path)

    def snapshot_files(self, dataset_id: str, tag: str) -> list[dict[str, Any]] | None:
        """The GraphQL ``files`` of a snapshot, directories included, or None."""
        files = self._snapshots.get((dataset_id, tag))
        if files is None:
            return None
        folders = sorted({path.rsplit("/", 1)[0] for path in files if "/" in path.strip("/")})
        entries: list[dict[str, Any]] = [
            {"filename": folder, "size": 0, "urls": [], "directory": True} for folder in folders
        ]
        for path, content in sorted(files.items()):
            url = f"{self.base_url}/{dataset_id}/{quote(path)}?versionId={self.version_id(tag)}"
            entries.append(
                {"filename": path, "size": len(content), "urls": [url], "directory": False}
            )
        return entries


class _Server(ThreadingHTTPServer):
    """The HTTP server, holding a reference to its fake."""

    # Non-daemon handler threads are joined by server_close(), so none outlives a test.
    daemon_threads = False
    block_on_close = True

    def __init__(self, fake: FakeOpenNeuro) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    """Answers S3 and GraphQL requests from the fake's state."""

    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""

    # ---------------------------------------------------------------- GET
    def do_GET(self) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = {name: values[0] for name, values in parse_qs(url.query).items()}
        fake.record(Seen("GET", path, query, self.headers.get("Range")))
        if path == "/":
            self._send_listing(query)
            return
        key = path[1:]
        status = fake.pop_status(key)
        if status is not None:
            self._send_error(status, "Fault", f"simulated {status} for {key}")
            return
        content = fake.content(key, query.get("versionId"))
        if content is None:
            self._send_error(404, "NoSuchKey", f"no object {key}")
            return
        self._send_object(key, content, query.get("versionId"))

    def _send_listing(self, query: dict[str, str]) -> None:
        """One page of ListObjectsV2."""
        fake = self.server.fake
        if query.get("list-type") != "2":
            self._send_error(400, "InvalidArgument", "only ListObjectsV2 is served")
            return
        prefix = query.get("prefix", "")
        objects = fake.listed_objects()
        keys = sorted(key for key in objects if key.startswith(prefix))
        token = query.get("continuation-token")
        start = int(token.removeprefix("token-")) if token else 0
        page = keys[start : start + fake.max_keys]
        truncated = start + fake.max_keys < len(keys)

        root = ET.Element(f"{{{S3_NS}}}ListBucketResult")
        for name, value in (
            ("Name", "openneuro.org"),
            ("Prefix", prefix),
            ("KeyCount", str(len(page))),
            ("MaxKeys", str(fake.max_keys)),
            ("IsTruncated", "true" if truncated else "false"),
        ):
            ET.SubElement(root, f"{{{S3_NS}}}{name}").text = value
        for key in page:
            entry = ET.SubElement(root, f"{{{S3_NS}}}Contents")
            ET.SubElement(entry, f"{{{S3_NS}}}Key").text = key
            ET.SubElement(entry, f"{{{S3_NS}}}Size").text = str(len(objects[key]))
            ET.SubElement(entry, f"{{{S3_NS}}}ETag").text = fake.etag(key, objects[key])
            ET.SubElement(entry, f"{{{S3_NS}}}StorageClass").text = "STANDARD"
        if token:
            ET.SubElement(root, f"{{{S3_NS}}}ContinuationToken").text = token
        if truncated:
            next_token = f"token-{start + fake.max_keys}"
            ET.SubElement(root, f"{{{S3_NS}}}NextContinuationToken").text = next_token
        ET.register_namespace("", S3_NS)
        body = ET.tostring(root, encoding="utf-8", xml_declaration=True)
        self._send_body(200, body, {"Content-Type": "application/xml"})

    def _send_object(self, key: str, content: bytes, version_id: str | None) -> None:
        """An object, partial when asked with a Range the fake honours."""
        fake = self.server.fake
        # The ETag is that of the listed content, so a corrupt body does not match it.
        listed = content if version_id else fake.listed_objects().get(key, content)
        headers = {"Content-Type": "application/octet-stream", "ETag": fake.etag(key, listed)}
        status, start = 200, 0
        requested = self.headers.get("Range")
        if requested is not None and fake.honour_range:
            match = re.fullmatch(r"bytes=(\d+)-", requested.strip())
            if match is None:
                self._send_error(400, "InvalidRange", f"unsupported Range {requested!r}")
                return
            start = int(match.group(1))
            if start >= len(content):
                headers = {"Content-Range": f"bytes */{len(content)}"}
                self._send_error(416, "InvalidRange", "range not satisfiable", headers)
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(content) - 1}/{len(content)}"
        headers["Accept-Ranges"] = "bytes" if fake.honour_range else "none"
        body = content[start:]
        self._send_body(status, body, headers, cut=fake.pop_truncation(key))

    # --------------------------------------------------------------- POST
    def do_POST(self) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        fake.record(Seen("POST", url.path, {}, None))
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        if url.path != GRAPHQL_PATH:
            self._send_error(404, "NotFound", f"nothing at {url.path}")
            return
        try:
            payload = json.loads(raw)
        except ValueError:
            self._send_error(400, "BadRequest", "body is not JSON")
            return
        with fake._lock:
            fake.graphql_payloads.append(payload)
        variables = payload.get("variables") or {}
        dataset_id, tag = variables.get("id"), variables.get("tag")
        files = fake.snapshot_files(dataset_id, tag)
        if files is None or "snapshot(" not in payload.get("query", ""):
            reply: dict[str, Any] = {
                "errors": [{"message": f"Snapshot {dataset_id}:{tag} not found"}],
                "data": {"snapshot": None},
            }
        else:
            reply = {"data": {"snapshot": {"files": files}}}
        body = json.dumps(reply).encode()
        self._send_body(200, body, {"Content-Type": "application/json"})

    # ------------------------------------------------------------ helpers
    def _send_error(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        """An S3-style XML error document."""
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
        ).encode()
        self._send_body(status, body, {"Content-Type": "application/xml", **(headers or {})})

    def _send_body(
        self, status: int, body: bytes, headers: dict[str, str], cut: int | None = None
    ) -> None:
        """Send a response; with ``cut``, hang up after that many body bytes."""
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body if cut is None else body[:cut])
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first; nothing to do
        # HTTP/1.0: the connection closes once this handler returns, which is the hang-up.
        self.close_connection = True
