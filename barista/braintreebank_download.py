"""Download the Brain Treebank release (braintreebank.dev) and extract it in place.

The release is a set of static files, so there is no listing to ask: the files are the table
below, under ``base_url`` (``https://braintreebank.dev/data`` by default; the names follow the
public download scripts of the dataset's users and are not checked against a listing):

================================================================  ============================
``localization.zip``, ``electrode_labels.zip``,                   shared metadata, always
``subject_timings.zip``, ``subject_metadata.zip``,                fetched
``transcripts.zip``, ``corrupted_elec.json``
``subject_data/sub_S/trialTTT/sub_S_trialTTT.h5.zip``             one per trial of the chosen
                                                                  subjects and sessions
================================================================  ============================

The release publishes no checksums. Each file is fetched with the resumable, size-verified
transfer of :mod:`barista.download` (``<file>.part``, HTTP ``Range``, atomic rename); the size
is the server's ``Content-Length`` (asked with ``HEAD``), and every zip is then checked member
by member against the CRC-32 values it carries before it is extracted. The MD5 of each verified
file is recorded in ``.barista/braintreebank-manifest.tsv``, so a rerun skips what is done
without a request. Zips are deleted after extraction unless ``keep_zips``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zipfile
from pathlib import Path, PurePosixPath
from urllib.error import HTTPError
from urllib.request import Request, urlopen

from tqdm import tqdm

from .braintreebank import RELEASE_TRIALS, parse_session, parse_subject
from .download import (
    _HEADERS,
    _TRANSIENT,
    RemoteFile,
    _backoff,
    _describe_exception,
    _fetch,
    _is_transient_status,
)
from .errors import ConfigError, DownloadError

DEFAULT_BASE_URL = "https://braintreebank.dev/data"
SHARED_FILES = ("localization.zip", "electrode_labels.zip", "subject_timings.zip",
                "subject_metadata.zip", "transcripts.zip", "corrupted_elec.json")
MANIFEST = PurePosixPath(".barista/braintreebank-manifest.tsv")
#: Written last by a complete download: the workflow's proof that the folder is ready.
COMPLETE = PurePosixPath(".barista/braintreebank.json")
_WHERE = "Brain Treebank"
_COLUMNS = ("path", "size", "md5", "url", "extracted")


def trial_zip(subject: int, trial: int) -> str:
    return f"subject_data/sub_{subject}/trial{trial:03d}/sub_{subject}_trial{trial:03d}.h5.zip"


def release_files(subjects=(), sessions=()) -> list[str]:
    """Paths (relative to the base URL) of the shared files and of the chosen trials.

    Raises
    ------
    DownloadError
        When a subject or session filter names none of the release's subject-trials.
    """
    try:
        wanted = [parse_subject(s, "dataset.braintreebank.subjects") for s in subjects]
    except ConfigError as err:
        raise DownloadError(str(err)) from None
    unknown = [s for s in wanted if s not in RELEASE_TRIALS]
    if unknown:
        raise DownloadError(f"{_WHERE}: subject filter (config key "
                            f"'dataset.braintreebank.subjects') names {unknown}, which the "
                            f"release does not have (subjects: {sorted(RELEASE_TRIALS)})")
    keys = []
    for key in sessions:
        try:
            s, t = parse_session(key, "dataset.braintreebank.sessions")
        except ConfigError as err:
            raise DownloadError(str(err)) from None
        if t not in RELEASE_TRIALS.get(s, ()):
            raise DownloadError(f"{_WHERE}: session filter (config key "
                                f"'dataset.braintreebank.sessions') names {key}, which the "
                                f"release does not have")
        keys.append((s, t))
    trials = [(s, t) for s, ts in sorted(RELEASE_TRIALS.items()) for t in ts
              if (not wanted or s in wanted) and (not keys or (s, t) in keys)]
    if not trials:
        raise DownloadError(f"{_WHERE}: subjects {wanted} and sessions {list(sessions)} "
                            "together select no trial")
    return list(SHARED_FILES) + [trial_zip(s, t) for s, t in trials]


def remote_size(url: str, *, timeout: float = 60.0, retries: int = 3) -> int:
    """Size of a remote file from a ``HEAD`` request's ``Content-Length``."""
    reason = ""
    for attempt in range(1, retries + 1):
        try:
            with urlopen(Request(url, headers=_HEADERS, method="HEAD"), timeout=timeout) as r:
                value = r.headers.get("Content-Length")
                if value is None or not value.strip().isdigit():
                    raise DownloadError(f"{_WHERE}: {url}: the server gives no Content-Length, "
                                        "so the download cannot be verified")
                return int(value)
        except HTTPError as exc:
            exc.close()
            if not _is_transient_status(exc.code):
                raise DownloadError(f"{_WHERE}: HTTP {exc.code} {exc.reason} for {url}") from None
            reason = f"HTTP {exc.code} {exc.reason}"
        except _TRANSIENT as exc:
            reason = _describe_exception(exc)
        _backoff(attempt, retries)
    raise DownloadError(f"{_WHERE}: {url} failed after {retries} attempts: {reason}")


def _read_manifest(path: Path) -> dict[str, dict]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    if not lines or tuple(lines[0].split("\t")) != _COLUMNS:
        return {}  # damaged: files are re-verified, nothing is lost
    rows = {}
    for line in lines[1:]:
        fields = line.split("\t")
        if len(fields) == len(_COLUMNS):
            rows[fields[0]] = dict(zip(_COLUMNS, fields, strict=True))
    return rows


def _write_manifest(path: Path, rows: dict[str, dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    lines = ["\t".join(_COLUMNS)] + ["\t".join(str(rows[k][c]) for c in _COLUMNS)
                                      for k in sorted(rows)]
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _extracted_exists(dest: Path, path: str) -> bool:
    """Whether what a release file unpacks to is in place."""
    name = PurePosixPath(path).name
    if name.endswith(".h5.zip"):
        return (dest / name.removesuffix(".zip")).is_file()
    if name.endswith(".zip"):
        return (dest / name.removesuffix(".zip")).is_dir()
    return (dest / name).is_file()


def _safe_members(archive: zipfile.ZipFile, where: str) -> list[zipfile.ZipInfo]:
    members = []
    for info in archive.infolist():
        parts = PurePosixPath(info.filename).parts
        if info.is_dir() or not parts or parts[0] == "__MACOSX":
            continue
        if info.filename.startswith("/") or ".." in parts or "\\" in info.filename:
            raise DownloadError(f"{where}: member {info.filename!r} would be written outside "
                                "the destination; refusing to extract")
        members.append(info)
    return members


def _extract(archive_path: Path, dest: Path, path: str) -> None:
    """Unpack a verified zip: a trial's HDF5 file to ``dest``, a metadata folder to
    ``dest/<name>/`` (whether or not the zip holds that folder itself)."""
    where = f"{_WHERE}: {path}"
    name = PurePosixPath(path).name
    staging = dest / ".barista" / f"extract-{name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with zipfile.ZipFile(archive_path) as archive:
            members = _safe_members(archive, where)
            if name.endswith(".h5.zip"):
                h5 = [m for m in members if m.filename.endswith(".h5")]
                if len(h5) != 1:
                    raise DownloadError(f"{where}: expected one .h5 member, found "
                                        f"{[m.filename for m in h5]}")
                archive.extract(h5[0], staging)
                os.replace(staging / h5[0].filename, dest / name.removesuffix(".zip"))
                return
            folder = name.removesuffix(".zip")
            tops = {PurePosixPath(m.filename).parts[0] for m in members}
            nested = tops == {folder} and all(len(PurePosixPath(m.filename).parts) > 1
                                              for m in members)
            for m in members:
                archive.extract(m, staging)
            source = staging / folder if nested else staging
            target = dest / folder
            for file in sorted(p for p in source.rglob("*") if p.is_file()):
                out = target / file.relative_to(source)
                out.parent.mkdir(parents=True, exist_ok=True)
                os.replace(file, out)
    except zipfile.BadZipFile as err:
        raise DownloadError(f"{where}: not a readable zip file: {err}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_zip(archive_path: Path, path: str) -> None:
    """Every member's CRC-32 (the zip's own checksum), since the release publishes none."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile as err:
        raise DownloadError(f"{_WHERE}: {path}: not a readable zip file ({err}); deleted, the "
                            "next run fetches it again") from None
    if bad is not None:
        raise DownloadError(f"{_WHERE}: {path}: member {bad} fails its CRC check; deleted, "
                            "the next run fetches it again")


def download_release(dest: str | Path, *, subjects=(), sessions=(),
                     base_url: str = DEFAULT_BASE_URL, keep_zips: bool = False,
                     progress: bool = True, timeout: float = 60.0, retries: int = 3) -> Path:
    """Download and extract the shared files and the chosen trials into ``dest``.

    ``dest`` then has the release's layout (trial files at its top). A rerun resumes an
    interrupted transfer and skips extracted files; the subject and session filters can
    grow between runs. Returns ``dest``; writes :data:`COMPLETE` last.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    paths = release_files(subjects, sessions)
    manifest_path = dest / MANIFEST
    rows = _read_manifest(manifest_path)
    base = base_url.rstrip("/")
    started = time.monotonic()
    try:
        with tqdm(total=len(paths), unit="file", desc=_WHERE, disable=not progress) as bar:
            for path in paths:
                row = rows.get(path)
                if row and row["extracted"] == "yes" and _extracted_exists(dest, path):
                    bar.update(1)
                    continue
                rows[path] = _fetch_one(dest, path, f"{base}/{path}", row, keep_zips,
                                        timeout, retries)
                bar.update(1)
    finally:
        _write_manifest(manifest_path, rows)
    complete = dest / COMPLETE
    complete.write_text(json.dumps({"base_url": base, "subjects": list(subjects),
                                    "sessions": list(sessions), "files": paths,
                                    "seconds": round(time.monotonic() - started, 1)},
                                   indent=1) + "\n", encoding="utf-8")
    return dest


def _fetch_one(dest: Path, path: str, url: str, row: dict | None, keep_zips: bool,
               timeout: float, retries: int) -> dict:
    size = remote_size(url, timeout=timeout, retries=retries)
    is_zip = path.endswith(".zip")
    target = dest / "zips" / path if is_zip else dest / PurePosixPath(path).name
    md5 = row["md5"] if row and row["size"] == str(size) and target.is_file() \
        and target.stat().st_size == size else ""
    if not md5:
        with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=path,
                  disable=True) as bar:
            fetched = _fetch(RemoteFile(path, size, None, url), target, dataset_id=_WHERE,
                             timeout=timeout, retries=retries, bar=bar)
        md5 = fetched.md5 or ""
    if is_zip:
        try:
            _check_zip(target, path)
        except DownloadError:
            target.unlink(missing_ok=True)
            raise
        _extract(target, dest, path)
        if not keep_zips:
            target.unlink()
    return {"path": path, "size": size, "md5": md5, "url": url, "extracted": "yes"}
