"""Tests of barista.download against a fake OpenNeuro served on 127.0.0.1."""

from __future__ import annotations

import hashlib
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the helper module lives next to this file

from openneuro_server import FakeOpenNeuro  # noqa: E402

from barista.download import (  # noqa: E402
    MANIFEST_PATH,
    RemoteFile,
    download_dataset,
    list_remote_files,
    select_files,
)
from barista.errors import DownloadError  # noqa: E402

DS = "ds000001"
OTHER = "ds000002"
EDF_01 = "sub-01/ieeg/sub-01_task-rest_ieeg.edf"
EDF_02 = "sub-02/ieeg/sub-02_task-rest_ieeg.edf"


def _bids_files() -> dict[str, bytes]:
    """A small iEEG BIDS layout; the EDF files are big enough to cut in the middle."""
    return {
        "dataset_description.json": b'{"Name": "fake ieeg", "BIDSVersion": "1.8.0"}\n',
        "participants.tsv": b"participant_id\tage\nsub-01\t30\nsub-02\t41\n",
        "README": b"A fake intracranial EEG dataset.\n",
        "sub-01/": b"",  # an S3 folder placeholder, not a file
        EDF_01: bytes(range(256)) * 40,
        "sub-01/ieeg/sub-01_task-rest_channels.tsv": b"name\ttype\nLA1\tSEEG\nLA2\tSEEG\n",
        "sub-01/ieeg/sub-01_task-rest_ieeg.json": b'{"SamplingFrequency": 512}\n',
        EDF_02: bytes(reversed(range(256))) * 30,
        "sub-02/ieeg/sub-02_task-rest_channels.tsv": b"name\ttype\nRH1\tECOG\n",
        "derivatives/freesurfer/sub-01/lh.pial.txt": b"surface\n",
        "sourcedata/sub-01/raw.bin": b"\x00\x01\x02raw",
    }


def _snapshot_files() -> dict[str, bytes]:
    """Snapshot 1.0.0: older content for some files, README unchanged."""
    files = _bids_files()
    del files["sub-01/"]
    files["dataset_description.json"] = b'{"Name": "fake ieeg v1", "BIDSVersion": "1.6.0"}\n'
    files[EDF_01] = b"old recording" * 100
    return files


def _data_files() -> dict[str, bytes]:
    """The current files that a full download should produce."""
    return {path: data for path, data in _bids_files().items() if not path.endswith("/")}


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def openneuro() -> Iterator[FakeOpenNeuro]:
    """A running fake OpenNeuro with two datasets, listing three keys a page."""
    fake = FakeOpenNeuro({DS: _bids_files(), OTHER: {"README": b"other\n"}}, max_keys=3)
    fake.add_snapshot(DS, "1.0.0", _snapshot_files())
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
    assert not fake.running
    assert not _server_threads(), "the fake server left threads behind"


def _server_threads() -> list[threading.Thread]:
    """Live threads of fake servers: the serving loop and its request handlers."""
    return [
        thread
        for thread in threading.enumerate()
        if thread.name == "fake-openneuro" or "process_request" in thread.name
    ]


def _get(fake: FakeOpenNeuro, dest: Path, **kwargs) -> Path:
    """Download DS from the fake server without a progress bar."""
    kwargs.setdefault("progress", False)
    return download_dataset(
        DS, dest, base_url=fake.base_url, graphql_url=fake.graphql_url, **kwargs
    )


def _tree(dest: Path) -> dict[str, bytes]:
    """Every file under ``dest`` except barista's own folder, by relative posix path."""
    return {
        path.relative_to(dest).as_posix(): path.read_bytes()
        for path in sorted(dest.rglob("*"))
        if path.is_file() and MANIFEST_PATH.parts[0] not in path.relative_to(dest).parts
    }


def _manifest(dest: Path) -> list[list[str]]:
    """The manifest rows, header first."""
    text = (dest / MANIFEST_PATH).read_text(encoding="utf-8")
    return [line.split("\t") for line in text.splitlines()]


def _remote(paths: list[str]) -> list[RemoteFile]:
    """Remote files for selection tests, which need no server."""
    return [RemoteFile(path, 1, None, f"http://example/{path}") for path in paths]


ALL_PATHS = sorted(_data_files())


# ---------------------------------------------------------------------------- listing


def test_list_remote_files_follows_continuation_tokens(openneuro: FakeOpenNeuro) -> None:
    files = list_remote_files(DS, base_url=openneuro.base_url)

    assert [remote.path for remote in files] == ALL_PATHS  # no placeholder, no other dataset
    expected = _data_files()
    for remote in files:
        assert remote.size == len(expected[remote.path])
        assert remote.md5 == _md5(expected[remote.path])
        assert remote.url == f"{openneuro.base_url}/{DS}/{quote(remote.path)}"
    listings = openneuro.listing_gets()
    assert len(listings) == 4  # 11 keys, 3 a page
    assert all(seen.query["prefix"] == f"{DS}/" for seen in listings)
    assert "continuation-token" not in listings[0].query
    assert [seen.query["continuation-token"] for seen in listings[1:]] == [
        "token-3",
        "token-6",
        "token-9",
    ]


def test_multipart_etag_gives_no_md5(openneuro: FakeOpenNeuro) -> None:
    openneuro.multipart.add(f"{DS}/{EDF_01}")

    files = {remote.path: remote for remote in list_remote_files(DS, base_url=openneuro.base_url)}

    assert files[EDF_01].md5 is None
    assert files[EDF_02].md5 == _md5(_data_files()[EDF_02])


def test_unknown_dataset_raises_naming_it(openneuro: FakeOpenNeuro) -> None:
    with pytest.raises(DownloadError, match="ds009999: no files found"):
        list_remote_files("ds009999", base_url=openneuro.base_url)


def test_invalid_dataset_id_is_refused_before_any_request(openneuro: FakeOpenNeuro) -> None:
    with pytest.raises(DownloadError, match="not a valid OpenNeuro dataset id"):
        list_remote_files("../ds000001", base_url=openneuro.base_url)
    assert openneuro.seen == []


def test_snapshot_listing_uses_graphql(openneuro: FakeOpenNeuro) -> None:
    files = list_remote_files(DS, version="1.0.0", graphql_url=openneuro.graphql_url)

    assert [remote.path for remote in files] == sorted(_snapshot_files())  # no directories
    assert all(remote.md5 is None for remote in files)
    assert all(remote.url.endswith("?versionId=version-1.0.0") for remote in files)
    (payload,) = openneuro.graphql_payloads
    assert payload["variables"] == {"id": DS, "tag": "1.0.0"}
    assert "snapshot(datasetId: $id, tag: $tag)" in payload["query"]
    assert "files(recursive: true)" in payload["query"]


def test_unknown_snapshot_raises_naming_dataset_and_tag(openneuro: FakeOpenNeuro) -> None:
    with pytest.raises(DownloadError, match=r"ds000001 version 9\.9\.9.*not found"):
        list_remote_files(DS, version="9.9.9", graphql_url=openneuro.graphql_url)


# -------------------------------------------------------------------------- selection


def test_include_and_exclude_are_globs_on_the_path() -> None:
    files = _remote(ALL_PATHS)

    tsv = select_files(files, include=["*.tsv"])
    no_edf = select_files(files, exclude=["*.edf", "derivatives/*", "sourcedata/*"])

    assert [remote.path for remote in tsv] == [
        "dataset_description.json",  # always kept
        "participants.tsv",
        "sub-01/ieeg/sub-01_task-rest_channels.tsv",
        "sub-02/ieeg/sub-02_task-rest_channels.tsv",
    ]
    assert [remote.path for remote in no_edf] == [
        "README",
        "dataset_description.json",
        "participants.tsv",
        "sub-01/ieeg/sub-01_task-rest_channels.tsv",
        "sub-01/ieeg/sub-01_task-rest_ieeg.json",
        "sub-02/ieeg/sub-02_task-rest_channels.tsv",
    ]


def test_a_single_string_is_one_pattern_not_its_characters() -> None:
    selected = select_files(_remote(ALL_PATHS), include="*.edf")

    assert [remote.path for remote in selected] == ["dataset_description.json", EDF_01, EDF_02]


def test_dataset_description_survives_exclude() -> None:
    selected = select_files(_remote(ALL_PATHS), exclude=["*.json"])

    assert "dataset_description.json" in [remote.path for remote in selected]
    assert "sub-01/ieeg/sub-01_task-rest_ieeg.json" not in [remote.path for remote in selected]


@pytest.mark.parametrize("label", ["01", "sub-01"])
def test_subjects_keep_dataset_level_files_and_listed_subjects(label: str) -> None:
    selected = select_files(_remote(ALL_PATHS), subjects=[label])

    assert [remote.path for remote in selected] == [
        "README",
        "dataset_description.json",
        "participants.tsv",
        "sub-01/ieeg/sub-01_task-rest_channels.tsv",
        EDF_01,
        "sub-01/ieeg/sub-01_task-rest_ieeg.json",
    ]


def test_unknown_subject_raises_naming_it_and_the_known_ones() -> None:
    with pytest.raises(DownloadError, match=r"sub-03 \(found: sub-01, sub-02\)"):
        select_files(_remote(ALL_PATHS), subjects=["01", "03"])


def test_invalid_subject_label_raises() -> None:
    with pytest.raises(DownloadError, match="not a BIDS subject label"):
        select_files(_remote(ALL_PATHS), subjects=["01/../02"])


def test_include_matching_no_data_file_raises_naming_the_filter() -> None:
    with pytest.raises(DownloadError, match=r"include=\['\*\.nii\.gz'\] selects no data file"):
        select_files(_remote(ALL_PATHS), include=["*.nii.gz"])


# --------------------------------------------------------------------------- download


def test_full_download_reproduces_the_bytes_and_writes_the_manifest(
    openneuro: FakeOpenNeuro, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "bids"

    result = _get(openneuro, dest, progress=True)

    assert result == dest
    assert _tree(dest) == _data_files()
    assert not list(dest.rglob("*.part"))
    expected = _data_files()
    assert _manifest(dest) == [["path", "size", "md5", "url"]] + [
        [path, str(len(expected[path])), _md5(expected[path]), f"{openneuro.base_url}/{DS}/{path}"]
        for path in ALL_PATHS
    ]
    assert DS in capsys.readouterr().err  # the progress bar names the dataset
    assert not [path for path in (dest / ".barista").iterdir() if path.suffix == ".tmp"]


def test_subject_download_fetches_only_that_subject(
    openneuro: FakeOpenNeuro, tmp_path: Path
) -> None:
    _get(openneuro, tmp_path, subjects=["02"])

    assert sorted(_tree(tmp_path)) == [
        "README",
        "dataset_description.json",
        "participants.tsv",
        "sub-02/ieeg/sub-02_task-rest_channels.tsv",
        EDF_02,
    ]
    assert not any("sub-01" in seen.path for seen in openneuro.object_gets())


def test_manifest_keeps_files_of_earlier_runs(openneuro: FakeOpenNeuro, tmp_path: Path) -> None:
    _get(openneuro, tmp_path, subjects=["01"])
    _get(openneuro, tmp_path, subjects=["02"])

    recorded = [row[0] for row in _manifest(tmp_path)[1:]]
    assert recorded == sorted(
        set(ALL_PATHS) - {"derivatives/freesurfer/sub-01/lh.pial.txt", "sourcedata/sub-01/raw.bin"}
    )


def test_rerun_of_a_complete_download_fetches_no_data(
    openneuro: FakeOpenNeuro, tmp_path: Path
) -> None:
    _get(openneuro, tmp_path)
    manifest = (tmp_path / MANIFEST_PATH).read_text()
    openneuro.seen.clear()

    _get(openneuro, tmp_path)

    assert openneuro.object_gets() == []
    assert openneuro.listing_gets()  # the listing is still asked for
    assert (tmp_path / MANIFEST_PATH).read_text() == manifest


def test_rerun_replaces_a_local_file_whose_md5_differs(
    openneuro: FakeOpenNeuro, tmp_path: Path
) -> None:
    _get(openneuro, tmp_path)
    (tmp_path / MANIFEST_PATH).unlink()  # no record: the local files must be hashed
    tampered = tmp_path / EDF_02
    tampered.write_bytes(b"\xff" * tampered.stat().st_size)
    openneuro.seen.clear()

    _get(openneuro, tmp_path)

    assert [seen.path for seen in openneuro.object_gets()] == [f"/{DS}/{EDF_02}"]
    assert _tree(tmp_path) == _data_files()


def test_truncated_transfer_leaves_a_part_and_a_rerun_resumes_it(
    openneuro: FakeOpenNeuro, tmp_path: Path
) -> None:
    content = _data_files()[EDF_01]
    openneuro.truncate_after[f"{DS}/{EDF_01}"] = 4000

    with pytest.raises(DownloadError, match=rf"{DS}: {EDF_01}: .*closed after 4000 of 10240"):
        _get(openneuro, tmp_path, retries=1)

    part = tmp_path / (EDF_01 + ".part")
    assert part.read_bytes() == content[:4000]
    assert not (tmp_path / EDF_01).exists()  # nothing that looks complete
    done = [row[0] for row in _manifest(tmp_path)[1:]]
    assert EDF_01 not in done and "README" in done  # files before the failure are recorded
    openneuro.seen.clear()

    _get(openneuro, tmp_path)

    (resumed,) = openneuro.object_gets(f"{DS}/{EDF_01}")
    assert resumed.range == "bytes=4000-"
    assert openneuro.object_gets(f"{DS}/README") == []  # finished files are not fetched again
    assert (tmp_path / EDF_01).read_bytes() == content
    assert not part.exists()
    assert _tree(tmp_path) == _data_files()


def test_truncated_transfer_is_resumed_within_the_same_call(
    openneuro: FakeOpenNeuro, tmp_path: Path
) -> None:
    openneuro.truncate_after[f"{DS}/{EDF_01}"] = 1234

    _get(openneuro, tmp_path, retries=2)

    first, second = openneuro.object_gets(f"{DS}/{EDF_01}")
    assert (first.range, second.range) == (None, "bytes=1234-")
    assert (tmp_path / EDF_01).read_bytes() == _data_files()[EDF_01]


def test_server_ignoring_range_restarts_the_file(openneuro: FakeOpenNeuro, tmp_path: Path) -> None:
    openneuro.honour_range = False
    part = tmp_path / (EDF_01 + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"not a prefix of the file" * 10)  # appending to it would corrupt the file

    _get(openneuro, tmp_path, retries=1)

    (request,) = openneuro.object_gets(f"{DS}/{EDF_01}")
    assert request.range == "bytes=240-"
    assert (tmp_path / EDF_01).read_bytes() == _data_files()[EDF_01]
    assert not part.exists()


def test_stale_part_is_caught_by_md5_and_fetched_again(
    openneuro: FakeOpenNeuro, tmp_path: Path
) -> None:
    part = tmp_path / (EDF_01 + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\x00" * 100)

    _get(openneuro, tmp_path, retries=2)

    ranges = [seen.range for seen in openneuro.object_gets(f"{DS}/{EDF_01}")]
    assert ranges == ["bytes=100-", None]
    assert (tmp_path / EDF_01).read_bytes() == _data_files()[EDF_01]


def test_md5_mismatch_raises_naming_the_file_and_both_values(
    openneuro: FakeOpenNeuro, tmp_path: Path
) -> None:
    content = _data_files()[EDF_02]
    corrupt = bytes(byte ^ 0x55 for byte in content)
    openneuro.served_body[f"{DS}/{EDF_02}"] = corrupt

    with pytest.raises(DownloadError) as raised:
        _get(openneuro, tmp_path, retries=2)

    message = str(raised.value)
    assert DS in message and EDF_02 in message
    assert f"MD5 mismatch: expected {_md5(content)}, got {_md5(corrupt)}" in message
    assert "after 2 attempt(s)" in message
    assert len(openneuro.object_gets(f"{DS}/{EDF_02}")) == 2
    assert not (tmp_path / EDF_02).exists()
    assert not (tmp_path / (EDF_02 + ".part")).exists()


def test_multipart_etag_falls_back_to_size_only(openneuro: FakeOpenNeuro, tmp_path: Path) -> None:
    key = f"{DS}/{EDF_02}"
    openneuro.multipart.add(key)
    served = bytes(byte ^ 0x55 for byte in _data_files()[EDF_02])  # same size, other bytes
    openneuro.served_body[key] = served

    _get(openneuro, tmp_path)

    assert (tmp_path / EDF_02).read_bytes() == served  # accepted: no MD5 to catch it
    row = next(row for row in _manifest(tmp_path) if row[0] == EDF_02)
    assert row[2] == _md5(served)  # the manifest records what is on disk


def test_size_mismatch_is_caught_without_md5(openneuro: FakeOpenNeuro, tmp_path: Path) -> None:
    key = f"{DS}/{EDF_02}"
    openneuro.multipart.add(key)
    openneuro.served_body[key] = b"too short"

    with pytest.raises(DownloadError, match=rf"{EDF_02}: .*expected 7680 bytes, got 9"):
        _get(openneuro, tmp_path, retries=1)

    assert not (tmp_path / EDF_02).exists()
    assert not (tmp_path / (EDF_02 + ".part")).exists()


@pytest.mark.parametrize("status", [403, 404])
def test_forbidden_or_missing_file_raises_at_once_naming_the_url(
    openneuro: FakeOpenNeuro, tmp_path: Path, status: int
) -> None:
    openneuro.statuses[f"{DS}/{EDF_01}"] = [status]
    url = f"{openneuro.base_url}/{DS}/{EDF_01}"

    with pytest.raises(DownloadError, match=rf"{DS}: {EDF_01}: HTTP {status} .* for {url}$"):
        _get(openneuro, tmp_path, retries=3)

    assert len(openneuro.object_gets(f"{DS}/{EDF_01}")) == 1  # no retry


def test_server_error_is_retried(openneuro: FakeOpenNeuro, tmp_path: Path) -> None:
    openneuro.statuses[f"{DS}/{EDF_01}"] = [503]

    _get(openneuro, tmp_path, retries=2)

    assert len(openneuro.object_gets(f"{DS}/{EDF_01}")) == 2
    assert (tmp_path / EDF_01).read_bytes() == _data_files()[EDF_01]


def test_server_errors_give_up_after_the_retries(openneuro: FakeOpenNeuro, tmp_path: Path) -> None:
    openneuro.statuses[f"{DS}/{EDF_01}"] = [500, 502, 503]

    with pytest.raises(DownloadError, match=rf"{EDF_01}: failed after 3 attempt\(s\).*HTTP 503"):
        _get(openneuro, tmp_path, retries=3)

    assert len(openneuro.object_gets(f"{DS}/{EDF_01}")) == 3


def test_unreachable_server_raises_naming_the_dataset(tmp_path: Path) -> None:
    with FakeOpenNeuro({}) as fake:
        base_url = fake.base_url  # a port that is closed once the server stops

    with pytest.raises(DownloadError, match=rf"dataset {DS}: listing .*failed after"):
        download_dataset(DS, tmp_path, base_url=base_url, progress=False)


def test_version_download_gets_the_snapshot_content(
    openneuro: FakeOpenNeuro, tmp_path: Path
) -> None:
    _get(openneuro, tmp_path, version="1.0.0")

    assert _tree(tmp_path) == _snapshot_files()
    assert openneuro.listing_gets() == []  # the snapshot comes from GraphQL, not the bucket
    assert all(seen.query == {"versionId": "version-1.0.0"} for seen in openneuro.object_gets())
    urls = [row[3] for row in _manifest(tmp_path)[1:]]
    assert all(url.endswith("?versionId=version-1.0.0") for url in urls)


def test_switching_from_a_snapshot_to_latest_fetches_only_changed_files(
    openneuro: FakeOpenNeuro, tmp_path: Path
) -> None:
    _get(openneuro, tmp_path, version="1.0.0")
    openneuro.seen.clear()

    _get(openneuro, tmp_path)

    fetched = sorted(seen.path.removeprefix(f"/{DS}/") for seen in openneuro.object_gets())
    assert fetched == ["dataset_description.json", EDF_01]  # the others have the same MD5
    assert _tree(tmp_path) == _data_files()


@pytest.mark.parametrize("bad", ["../escape.txt", "/escape.txt", "sub-01/../../escape.txt"])
def test_path_traversal_in_the_bucket_is_refused(
    openneuro: FakeOpenNeuro, tmp_path: Path, bad: str
) -> None:
    openneuro.datasets[DS][bad] = b"gotcha"
    dest = tmp_path / "dest"

    with pytest.raises(DownloadError, match=rf"{DS}: '{bad}': unsafe remote path"):
        _get(openneuro, dest)

    assert openneuro.object_gets() == []  # refused before any transfer
    assert not list(tmp_path.rglob("escape.txt"))


def test_path_traversal_in_a_snapshot_is_refused(openneuro: FakeOpenNeuro, tmp_path: Path) -> None:
    openneuro.add_snapshot(DS, "2.0.0", {**_snapshot_files(), "../escape.txt": b"gotcha"})

    with pytest.raises(DownloadError, match="unsafe remote path"):
        _get(openneuro, tmp_path / "dest", version="2.0.0")

    assert not list(tmp_path.rglob("escape.txt"))


def test_retries_below_one_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="retries must be at least 1"):
        download_dataset(DS, tmp_path, retries=0, progress=False)
