"""Download OpenNeuro BIDS datasets, one verified file at a time.

OpenNeuro publishes every dataset in the public S3 bucket ``openneuro.org``, one object
per file under ``<dataset_id>/``. The current files are listed with S3 ListObjectsV2; a
tagged snapshot is listed through OpenNeuro's GraphQL API, whose URLs pin the S3
``versionId`` of each file. Transfers are resumable (``<file>.part`` plus an HTTP
``Range`` request), verified (size, and MD5 when the listing knows it) and atomic (only a
verified file is renamed to its final name). Only :mod:`urllib.request` and :mod:`tqdm`
(for the progress bar) are used. Why this is not openneuro-py (fixed endpoints, in-place
resumption, GPL) or DataLad (git-annex): docs/download.md.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode
from urllib.request import Request, urlopen

from tqdm import tqdm

from .errors import DownloadError

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_GRAPHQL_URL",
    "MANIFEST_PATH",
    "RemoteFile",
    "download_dataset",
    "list_remote_files",
    "select_files",
]

DEFAULT_BASE_URL = "https://s3.amazonaws.com/openneuro.org"
DEFAULT_GRAPHQL_URL = "https://openneuro.org/crn/graphql"
#: Where :func:`download_dataset` records what it fetched, relative to ``dest``.
MANIFEST_PATH = PurePosixPath(".barista/manifest.tsv")

_S3_NS = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
_SNAPSHOT_QUERY = (
    "query($id: ID!, $tag: String!) { snapshot(datasetId: $id, tag: $tag) "
    "{ files(recursive: true) { filename size urls directory } } }"
)
_DESCRIPTION = "dataset_description.json"
_NOT_SUBJECT_SCOPED = ("derivatives", "sourcedata")
_MANIFEST_COLUMNS = ("path", "size", "md5", "url")
_HEADERS = {"User-Agent": "barista-download"}
_MD5_RE = re.compile(r"[0-9a-fA-F]{32}")
_DATASET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_LABEL_RE = re.compile(r"[A-Za-z0-9]+")
_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-")
_CHUNK_BYTES = 1 << 16
_BACKOFF_S = 0.1
_LIST_RETRIES = 3


class _IncompleteTransfer(ConnectionError):
    """The connection ended before the announced body was complete."""


# URLError covers refused connections and DNS failures; HTTPException covers a server that
# hangs up mid-response. HTTPError (a URLError) is handled before these, by status code.
_TRANSIENT = (URLError, ConnectionError, TimeoutError, http.client.HTTPException)


@dataclass(frozen=True)
class RemoteFile:
    """One file of a remote dataset.

    Attributes
    ----------
    path : str
        Path relative to the dataset root, with ``/`` separators.
    size : int
        Size in bytes.
    md5 : str | None
        Lower-case hex MD5 of the content, or None when the listing does not give it
        (an S3 multipart ETag such as ``"…-3"``, or a GraphQL snapshot listing).
    url : str
        Where to fetch the content; pins the S3 ``versionId`` for a snapshot.
    """

    path: str
    size: int
    md5: str | None
    url: str


# --------------------------------------------------------------------------- listing


def list_remote_files(
    dataset_id: str,
    *,
    version: str | None = None,
    base_url: str = DEFAULT_BASE_URL,
    graphql_url: str = DEFAULT_GRAPHQL_URL,
    timeout: float = 60.0,
) -> list[RemoteFile]:
    """List the files of an OpenNeuro dataset.

    Parameters
    ----------
    dataset_id : str
        OpenNeuro accession number, e.g. ``"ds003708"``.
    version : str | None
        Snapshot tag such as ``"1.0.2"``. None lists the current files in the S3 bucket.
    base_url : str
        Root URL of the S3 bucket; used when ``version`` is None.
    graphql_url : str
        OpenNeuro GraphQL endpoint; used when ``version`` is given.
    timeout : float
        Seconds to wait on each network operation.

    Returns
    -------
    files : list of RemoteFile
        The files, sorted by path. Directory placeholders are left out.

    Raises
    ------
    DownloadError
        If the dataset or snapshot does not exist, or the server cannot be reached.
    """
    _check_dataset_id(dataset_id)
    if version is None:
        files = _list_bucket(dataset_id, base_url.rstrip("/"), timeout)
    else:
        files = _list_snapshot(dataset_id, version, graphql_url, timeout)
    if not files:
        what = f"dataset {dataset_id}" + (f" version {version}" if version else "")
        raise DownloadError(f"{what}: no files found; check the dataset id on openneuro.org")
    return sorted(files, key=lambda remote: remote.path)


def _check_dataset_id(dataset_id: str) -> None:
    """Refuse ids that would escape the ``<dataset_id>/`` prefix."""
    if (
        not isinstance(dataset_id, str)
        or not _DATASET_RE.fullmatch(dataset_id)
        or (".." in dataset_id)
    ):
        raise DownloadError(f"dataset {dataset_id!r}: not a valid OpenNeuro dataset id")


def _list_bucket(dataset_id: str, base_url: str, timeout: float) -> list[RemoteFile]:
    """Page through S3 ListObjectsV2 under ``<dataset_id>/``."""
    prefix = f"{dataset_id}/"
    files: list[RemoteFile] = []
    token: str | None = None
    while True:
        query = {"list-type": "2", "prefix": prefix}
        if token is not None:
            query["continuation-token"] = token
        request = Request(f"{base_url}?{urlencode(query, safe='/')}", headers=_HEADERS)
        what = f"dataset {dataset_id}: listing {prefix}"
        root = _parse_xml(_read_url(request, what=what, timeout=timeout), what)
        files.extend(_parse_contents(root, dataset_id, base_url))
        if root.findtext("s3:IsTruncated", "false", _S3_NS).strip().lower() != "true":
            return files
        next_token = root.findtext("s3:NextContinuationToken", None, _S3_NS)
        # A missing or repeated token would make this loop run forever.
        if not next_token or next_token == token:
            raise DownloadError(f"{what}: truncated listing without a new continuation token")
        token = next_token


def _parse_xml(body: bytes, what: str) -> ET.Element:
    """Parse an S3 XML answer, naming the request when it is not XML."""
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise DownloadError(f"{what}: the bucket listing is not valid XML ({exc})") from None


def _parse_contents(root: ET.Element, dataset_id: str, base_url: str) -> list[RemoteFile]:
    """Turn the ``<Contents>`` entries of one listing page into remote files."""
    prefix = f"{dataset_id}/"
    files = []
    for item in root.iterfind("s3:Contents", _S3_NS):
        key = item.findtext("s3:Key", None, _S3_NS)
        size = item.findtext("s3:Size", None, _S3_NS)
        if key is None or size is None or not size.strip().isdigit():
            raise DownloadError(f"dataset {dataset_id}: listing entry without a Key or Size")
        if key.endswith("/"):  # a "folder" placeholder object, not a file
            continue
        if not key.startswith(prefix):
            raise DownloadError(f"dataset {dataset_id}: {key}: listed outside {prefix}")
        etag = item.findtext("s3:ETag", "", _S3_NS).strip().strip('"')
        # Only a single-part upload has an ETag that is the MD5; multipart ones end in -N.
        md5 = etag.lower() if _MD5_RE.fullmatch(etag) else None
        url = f"{base_url}/{_quote_key(key)}"
        files.append(RemoteFile(key[len(prefix) :], int(size), md5, url))
    return files


def _quote_key(key: str) -> str:
    """Percent-encode an S3 key for a URL, keeping its ``/`` separators."""
    return quote(key, safe="/")


def _list_snapshot(
    dataset_id: str, version: str, graphql_url: str, timeout: float
) -> list[RemoteFile]:
    """Ask OpenNeuro's GraphQL API for the files of one snapshot."""
    what = f"dataset {dataset_id} version {version}"
    payload = {"query": _SNAPSHOT_QUERY, "variables": {"id": dataset_id, "tag": version}}
    request = Request(
        graphql_url,
        data=json.dumps(payload).encode(),
        headers={**_HEADERS, "Content-Type": "application/json"},
        method="POST",
    )
    reply = _parse_json(_read_url(request, what=what, timeout=timeout), what)
    if reply.get("errors"):
        messages = "; ".join(_error_message(error) for error in reply["errors"])
        raise DownloadError(f"{what}: OpenNeuro answered: {messages}")
    snapshot = (reply.get("data") or {}).get("snapshot")
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("files"), list):
        raise DownloadError(f"{what}: no such snapshot on OpenNeuro")
    return [_snapshot_file(entry, what) for entry in snapshot["files"] if not _is_dir(entry)]


def _parse_json(body: bytes, what: str) -> dict[str, Any]:
    """Decode a GraphQL answer, which must be a JSON object."""
    try:
        reply = json.loads(body)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        raise DownloadError(f"{what}: the GraphQL answer is not a JSON object")
    return reply


def _error_message(error: object) -> str:
    """The human part of one GraphQL error."""
    return str(error.get("message", error)) if isinstance(error, dict) else str(error)


def _is_dir(entry: object) -> bool:
    """Whether a GraphQL file entry is a directory (which has no content to fetch)."""
    return isinstance(entry, dict) and bool(entry.get("directory"))


def _snapshot_file(entry: object, what: str) -> RemoteFile:
    """Validate one GraphQL file entry and turn it into a remote file."""
    if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str):
        raise DownloadError(f"{what}: file entry without a filename: {entry!r}")
    path = entry["filename"]
    urls = entry.get("urls")
    if not isinstance(urls, list) or not urls or not isinstance(urls[0], str):
        raise DownloadError(f"{what}: {path}: OpenNeuro gives no download URL for this file")
    try:
        size = int(entry.get("size"))
    except (TypeError, ValueError):
        raise DownloadError(f"{what}: {path}: invalid size {entry.get('size')!r}") from None
    # The snapshot API gives no checksum; the size is still verified.
    return RemoteFile(path, size, None, urls[0])


# ------------------------------------------------------------------------- selection


def select_files(
    files: Iterable[RemoteFile],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    subjects: Sequence[str] = (),
) -> list[RemoteFile]:
    """Keep the files a download asks for.

    Parameters
    ----------
    files : iterable of RemoteFile
        Files of one dataset, as given by :func:`list_remote_files`.
    include : sequence of str
        :func:`fnmatch.fnmatchcase` globs on the relative path; a file must match one.
        Empty keeps every file. ``*`` also matches ``/``, so ``"*.edf"`` finds EDF files
        at any depth.
    exclude : sequence of str
        Globs like ``include``; a file matching any of them is dropped.
    subjects : sequence of str
        Subject labels, with or without the ``sub-`` prefix. When given, files under
        other ``sub-*/`` folders, ``derivatives/`` and ``sourcedata/`` are dropped; other
        files (``participants.tsv``, ``README``, …) are kept.

    Returns
    -------
    selected : list of RemoteFile
        The kept files, in input order. ``dataset_description.json`` is always kept.

    Raises
    ------
    DownloadError
        If a subject has no folder in the dataset, or the filters keep no file besides
        ``dataset_description.json``.
    """
    return _select(list(files), include, exclude, subjects, where="the file list")


def _select(
    files: list[RemoteFile],
    include: Sequence[str],
    exclude: Sequence[str],
    subjects: Sequence[str],
    *,
    where: str,
) -> list[RemoteFile]:
    """Apply the filters of :func:`select_files`; ``where`` names the dataset in errors."""
    include, exclude = _as_patterns(include), _as_patterns(exclude)
    labels = _subject_labels(_as_patterns(subjects), where)
    _check_subjects_present(files, labels, where)
    kept = [
        remote
        for remote in files
        if remote.path == _DESCRIPTION or _wanted(remote.path, include, exclude, labels)
    ]
    if (include or exclude or labels) and all(remote.path == _DESCRIPTION for remote in kept):
        raise DownloadError(
            f"{where}: the filter {_describe_filter(include, exclude, labels)} selects no data file"
        )
    return kept


def _as_patterns(values: Sequence[str] | None) -> tuple[str, ...]:
    """Accept a single string where a sequence is expected, rather than its characters.

    None (a ``null`` in a config file) means no filter.
    """
    if values is None:
        return ()
    return (values,) if isinstance(values, str) else tuple(values)


def _subject_labels(subjects: tuple[str, ...], where: str) -> frozenset[str]:
    """Strip the ``sub-`` prefix and check each label is a BIDS label."""
    labels = set()
    for subject in subjects:
        label = subject.removeprefix("sub-")
        if not _LABEL_RE.fullmatch(label):
            raise DownloadError(f"{where}: {subject!r} is not a BIDS subject label")
        labels.add(label)
    return frozenset(labels)


def _subject_of(path: str) -> str | None:
    """The label of the ``sub-<label>/`` folder a path lies in, if any."""
    top, sep, _ = path.partition("/")
    return top.removeprefix("sub-") if sep and top.startswith("sub-") else None


def _check_subjects_present(files: list[RemoteFile], labels: frozenset[str], where: str) -> None:
    """Name the requested subjects that have no folder, so a typo is not silent."""
    present = {_subject_of(remote.path) for remote in files} - {None}
    missing = sorted(labels - present)
    if missing:
        known = ", ".join(f"sub-{label}" for label in sorted(present)) or "none"
        wanted = ", ".join(f"sub-{label}" for label in missing)
        raise DownloadError(f"{where}: subject filter: no folder for {wanted} (found: {known})")


def _wanted(
    path: str, include: tuple[str, ...], exclude: tuple[str, ...], labels: frozenset[str]
) -> bool:
    """Whether a path passes the include, exclude and subject filters."""
    if include and not any(fnmatchcase(path, pattern) for pattern in include):
        return False
    if any(fnmatchcase(path, pattern) for pattern in exclude):
        return False
    return not labels or _in_subject_scope(path, labels)


def _in_subject_scope(path: str, labels: frozenset[str]) -> bool:
    """Keep the listed subjects' folders and the dataset-level files, drop the rest."""
    top, sep, _ = path.partition("/")
    if not sep:
        return True
    if top.startswith("sub-"):
        return top.removeprefix("sub-") in labels
    # Derivatives and source data hold every subject; they are not dataset-level files.
    return top not in _NOT_SUBJECT_SCOPED


def _describe_filter(
    include: tuple[str, ...], exclude: tuple[str, ...], labels: frozenset[str]
) -> str:
    """Spell out the active filters for an error message."""
    parts = []
    if include:
        parts.append(f"include={list(include)}")
    if exclude:
        parts.append(f"exclude={list(exclude)}")
    if labels:
        parts.append(f"subjects={sorted(labels)}")
    return " ".join(parts)


# -------------------------------------------------------------------------- download


def download_dataset(
    dataset_id: str,
    dest: str | Path,
    *,
    version: str | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    subjects: Sequence[str] = (),
    base_url: str = DEFAULT_BASE_URL,
    graphql_url: str = DEFAULT_GRAPHQL_URL,
    progress: bool = True,
    timeout: float = 60.0,
    retries: int = 3,
) -> Path:
    """Download an OpenNeuro dataset, or part of it, into a folder.

    Each file is streamed into ``<file>.part``, checked against the listed size (and MD5
    when known) and only then renamed to its final name, so an interrupted run never
    leaves a file that looks complete. A rerun resumes ``.part`` files with an HTTP
    ``Range`` request and skips final files that are already right, without a request.

    Parameters
    ----------
    dataset_id : str
        OpenNeuro accession number, e.g. ``"ds003708"``.
    dest : str | Path
        Folder to write the dataset into; file ``<path>`` goes to ``dest/<path>``.
    version : str | None
        Snapshot tag such as ``"1.0.2"``; None downloads the current files.
    include, exclude, subjects : sequence of str
        Filters, see :func:`select_files`.
    base_url : str
        Root URL of the S3 bucket.
    graphql_url : str
        OpenNeuro GraphQL endpoint, used to list a snapshot.
    progress : bool
        Whether to show a progress bar of the bytes to fetch.
    timeout : float
        Seconds to wait on each network operation.
    retries : int
        Attempts per file before giving up on connection failures, HTTP 5xx answers and
        verification failures; HTTP 403 and 404 fail at once. Listing requests are tried
        three times.

    Returns
    -------
    dest : Path
        The destination folder. It holds the manifest ``.barista/manifest.tsv``
        (columns path, size, md5, url) of every file downloaded there.

    Raises
    ------
    DownloadError
        If listing, a transfer or a verification fails; the message names the dataset,
        the file and the cause.
    """
    if not isinstance(retries, int) or retries < 1:
        raise DownloadError(f"dataset {dataset_id}: retries must be at least 1, got {retries!r}")
    dest = Path(dest)
    remote = list_remote_files(
        dataset_id, version=version, base_url=base_url, graphql_url=graphql_url, timeout=timeout
    )
    selected = _select(remote, include, exclude, subjects, where=f"dataset {dataset_id}")
    # Every path is checked before the first byte is written.
    targets = [(item, _target_path(dest, item.path, dataset_id)) for item in selected]

    manifest = dest / MANIFEST_PATH
    recorded = _read_manifest(manifest)
    rows = {path: row for path, row in recorded.items() if (dest / path).is_file()}
    pending = []
    for item, target in targets:
        row = _local_copy(item, target, recorded.get(item.path))
        if row is None:
            pending.append((item, target))
        else:
            rows[item.path] = row
    try:
        _fetch_all(
            pending, dataset_id, progress=progress, timeout=timeout, retries=retries, rows=rows
        )
    finally:
        # Also on failure, so the next run need not re-hash the files already verified.
        _write_manifest(manifest, rows.values(), dataset_id)
    return dest


def _fetch_all(
    pending: list[tuple[RemoteFile, Path]],
    dataset_id: str,
    *,
    progress: bool,
    timeout: float,
    retries: int,
    rows: dict[str, RemoteFile],
) -> None:
    """Fetch the pending files in order, recording each verified one in ``rows``."""
    total = sum(item.size for item, _ in pending)
    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=dataset_id,
        disable=not progress,
    ) as bar:
        for item, target in pending:
            rows[item.path] = _fetch(
                item, target, dataset_id=dataset_id, timeout=timeout, retries=retries, bar=bar
            )


def _target_path(dest: Path, path: str, dataset_id: str) -> Path:
    """Where a remote path goes under ``dest``, refusing paths that would leave it."""
    if not _is_safe(path):
        raise DownloadError(
            f"dataset {dataset_id}: {path!r}: unsafe remote path (absolute, '..', or "
            "reserved); refusing to write outside the destination"
        )
    return dest.joinpath(*PurePosixPath(path).parts)


def _is_safe(path: str) -> bool:
    """Whether a relative path stays inside the destination and fits the manifest."""
    pure = PurePosixPath(path)
    return bool(
        path
        and not pure.is_absolute()
        and ".." not in pure.parts
        # Windows reads a backslash or a drive letter as a way out of the folder.
        and "\\" not in path
        and not re.match(r"[A-Za-z]:", path)
        # Control characters would break the tab-separated manifest.
        and not any(ord(char) < 32 for char in path)
        and bool(pure.parts)
        and pure.parts[0] != MANIFEST_PATH.parts[0]
    )


def _local_copy(remote: RemoteFile, target: Path, recorded: RemoteFile | None) -> RemoteFile | None:
    """Return the manifest row of a final file that is already right, else None.

    The recorded MD5 of the manifest saves re-hashing; without a record, a known MD5 is
    checked by hashing the local file, which still needs no request.
    """
    if not target.is_file() or target.stat().st_size != remote.size:
        return None
    if recorded is not None and recorded.size != remote.size:
        return None
    if remote.md5 is None:
        # Without a checksum only the URL tells two snapshots of a file apart.
        if recorded is not None and recorded.url != remote.url:
            return None
        return RemoteFile(remote.path, remote.size, recorded.md5 if recorded else None, remote.url)
    if recorded is not None and recorded.md5 == remote.md5:
        return RemoteFile(remote.path, remote.size, remote.md5, remote.url)
    if _md5_of(target).hexdigest() == remote.md5:
        return RemoteFile(remote.path, remote.size, remote.md5, remote.url)
    return None


def _fetch(
    remote: RemoteFile, target: Path, *, dataset_id: str, timeout: float, retries: int, bar: tqdm
) -> RemoteFile:
    """Download one file with retries and move it into place once verified."""
    where = f"dataset {dataset_id}: {remote.path}"
    part = target.with_name(target.name + ".part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"{where}: cannot create {target.parent}: {exc}") from None
    bar.update(_size_of(part))
    reason = ""
    for attempt in range(1, retries + 1):
        try:
            md5 = _transfer(remote, part, timeout=timeout, bar=bar)
        except HTTPError as exc:
            exc.close()
            if exc.code == 416:  # the partial file is past the remote end: start over
                _discard(part, bar)
            elif not _is_transient_status(exc.code):
                raise DownloadError(
                    f"{where}: HTTP {exc.code} {exc.reason} for {remote.url}"
                ) from None
            reason = f"HTTP {exc.code} {exc.reason}"
        except _TRANSIENT as exc:
            reason = _describe_exception(exc)
        except OSError as exc:  # the local disk, not the network: retrying will not help
            raise DownloadError(f"{where}: cannot write {part}: {exc}") from None
        else:
            problem = _mismatch(remote, part, md5)
            if problem is None:
                _publish(part, target, where)
                return RemoteFile(remote.path, remote.size, md5, remote.url)
            _discard(part, bar)
            reason = problem
        _backoff(attempt, retries)
    raise DownloadError(f"{where}: failed after {retries} attempt(s) from {remote.url}: {reason}")


def _publish(part: Path, target: Path, where: str) -> None:
    """Give a verified file its final name in one atomic rename."""
    try:
        os.replace(part, target)
    except OSError as exc:
        raise DownloadError(f"{where}: cannot move {part} to {target}: {exc}") from None


def _transfer(remote: RemoteFile, part: Path, *, timeout: float, bar: tqdm) -> str:
    """Stream a file into ``part``, continuing what is there, and return its MD5."""
    offset = _size_of(part)
    if offset > remote.size:  # not a prefix of this file: nothing to resume
        _discard(part, bar)
        offset = 0
    if offset and offset == remote.size:  # every byte arrived before; only verify
        return _md5_of(part).hexdigest()
    # Hash what is already there so the MD5 covers the whole file, not the new bytes.
    digest = _md5_of(part) if offset else _new_md5()
    headers = dict(_HEADERS)
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with urlopen(Request(remote.url, headers=headers), timeout=timeout) as response:
        if offset and not _resumes_at(response, offset):
            bar.update(-offset)  # the server ignored Range and sends the whole file
            offset, digest = 0, _new_md5()
        expected = _content_length(response)
        received = _stream(
            response, part, append=offset > 0, digest=digest, limit=remote.size - offset, bar=bar
        )
    if offset + received < remote.size and (expected is None or received < expected):
        raise _IncompleteTransfer(
            f"connection closed after {offset + received} of {remote.size} bytes"
        )
    return digest.hexdigest()


def _resumes_at(response: http.client.HTTPResponse, offset: int) -> bool:
    """True for a 206 continuing at ``offset``, False for a 200 holding the whole file."""
    if response.status == 200:
        return False
    content_range = response.headers.get("Content-Range", "")
    match = _CONTENT_RANGE_RE.match(content_range)
    if response.status == 206 and match and int(match.group(1)) == offset:
        return True
    raise _IncompleteTransfer(
        f"asked for bytes={offset}-, got HTTP {response.status} with "
        f"Content-Range {content_range!r}"
    )


def _content_length(response: http.client.HTTPResponse) -> int | None:
    """The announced body size, or None when the server does not say."""
    value = response.headers.get("Content-Length")
    return int(value) if value is not None and value.strip().isdigit() else None


def _stream(
    response: http.client.HTTPResponse,
    part: Path,
    *,
    append: bool,
    digest: Any,
    limit: int,
    bar: tqdm,
) -> int:
    """Copy the response body into ``part`` while hashing it; return the bytes read."""
    received = 0
    with open(part, "ab" if append else "wb") as out:
        while chunk := response.read(_CHUNK_BYTES):
            out.write(chunk)
            digest.update(chunk)
            bar.update(len(chunk))
            received += len(chunk)
            if received > limit:  # longer than listed: verification will reject it
                break
        out.flush()
        # The rename that follows must not publish a file whose bytes are not on disk.
        os.fsync(out.fileno())
    return received


def _mismatch(remote: RemoteFile, part: Path, md5: str) -> str | None:
    """Describe how a downloaded file differs from its listing, or None if it does not."""
    size = _size_of(part)
    if size != remote.size:
        return f"size mismatch: expected {remote.size} bytes, got {size}"
    if remote.md5 is not None and md5 != remote.md5:
        return f"MD5 mismatch: expected {remote.md5}, got {md5}"
    return None


def _is_transient_status(code: int) -> bool:
    """HTTP statuses worth retrying: server errors, timeouts and throttling."""
    return code >= 500 or code in (408, 429)


def _describe_exception(exc: BaseException) -> str:
    """A short cause for an error message."""
    if isinstance(exc, URLError):
        return f"cannot connect: {exc.reason}"
    return str(exc) or type(exc).__name__


def _backoff(attempt: int, retries: int) -> None:
    """Wait a little longer after each failed attempt, not after the last one."""
    if attempt < retries:
        time.sleep(_BACKOFF_S * attempt)


def _read_url(request: Request, *, what: str, timeout: float) -> bytes:
    """Return a small response body (a listing page), retrying transient failures."""
    reason = ""
    for attempt in range(1, _LIST_RETRIES + 1):
        try:
            with urlopen(request, timeout=timeout) as response:
                return response.read()
        except HTTPError as exc:
            exc.close()
            if not _is_transient_status(exc.code):
                raise DownloadError(
                    f"{what}: HTTP {exc.code} {exc.reason} for {request.full_url}"
                ) from None
            reason = f"HTTP {exc.code} {exc.reason}"
        except _TRANSIENT as exc:
            reason = _describe_exception(exc)
        _backoff(attempt, _LIST_RETRIES)
    raise DownloadError(
        f"{what}: {request.full_url} failed after {_LIST_RETRIES} attempts: {reason}"
    )


# ------------------------------------------------------------------ files and manifest


def _new_md5() -> Any:
    """An MD5 hasher; MD5 is a checksum here, which FIPS builds must be told."""
    return hashlib.md5(usedforsecurity=False)


def _md5_of(path: Path) -> Any:
    """An MD5 hasher fed with the content of ``path``."""
    digest = _new_md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest


def _size_of(path: Path) -> int:
    """Size of a file, 0 when it does not exist."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _discard(part: Path, bar: tqdm) -> None:
    """Delete a partial file and take its bytes back off the progress bar."""
    bar.update(-_size_of(part))
    part.unlink(missing_ok=True)


def _read_manifest(manifest: Path) -> dict[str, RemoteFile]:
    """Rows of an earlier manifest by path; a missing or damaged one counts as empty.

    A damaged manifest only costs re-hashing the local files, so it is not an error.
    """
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, UnicodeDecodeError):
        return {}
    if not lines or tuple(lines[0].split("\t")) != _MANIFEST_COLUMNS:
        return {}
    rows = {}
    for line in lines[1:]:
        fields = line.split("\t")
        if len(fields) != len(_MANIFEST_COLUMNS) or not fields[1].isdigit():
            return {}
        path, size, md5, url = fields
        if _is_safe(path):
            rows[path] = RemoteFile(path, int(size), md5 or None, url)
    return rows


def _write_manifest(manifest: Path, rows: Iterable[RemoteFile], dataset_id: str) -> None:
    """Write the manifest sorted by path, through a temporary file and a rename."""
    lines = ["\t".join(_MANIFEST_COLUMNS)]
    for row in sorted(rows, key=lambda remote: remote.path):
        lines.append("\t".join((row.path, str(row.size), row.md5 or "", row.url)))
    temporary = None
    try:
        manifest.parent.mkdir(parents=True, exist_ok=True)
        # A unique temporary name, so two runs never write into the same file.
        with tempfile.NamedTemporaryFile(
            "w",
            encoding="utf-8",
            newline="\n",
            dir=manifest.parent,
            prefix=manifest.name,
            suffix=".tmp",
            delete=False,
        ) as handle:
            temporary = Path(handle.name)
            handle.write("\n".join(lines) + "\n")
        os.replace(temporary, manifest)
    except OSError as exc:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        raise DownloadError(f"dataset {dataset_id}: cannot write {manifest}: {exc}") from None
