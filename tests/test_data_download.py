"""Downloads against a real HTTP server on loopback: checksums, mirrors, faults, the offline
message, the NNLAB_DATA_MIRROR layout, safe extraction and one download per machine."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from nnlab.data.download import (
    MIRROR_ENV,
    DataUnavailableError,
    Remote,
    UnsafeArchiveError,
    extract,
    extract_fetched,
    fetch,
    folder_lock,
    verify_zip,
)

from .helpers import http_fixtures
from .helpers.data_formats import digest, tar_gz, zip_bytes
from .helpers.http_fixtures import FileServer, closed_port_url

file_server = http_fixtures.file_server
REPO = Path(__file__).parents[1]
PAYLOAD = os.urandom(50_000)


@pytest.fixture(autouse=True)
def no_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MIRROR_ENV, raising=False)


def leftovers(folder: Path) -> list[str]:
    """Files in `folder` besides the lock: temporary or partial downloads would show here."""
    return sorted(p.name for p in folder.iterdir() if p.name != ".lock")


def get(remote: Remote, folder: Path, source: str = "demo") -> Path:
    with folder_lock(folder):
        return fetch([remote], folder, source, progress=False)[remote.name]


def test_download_verifies_and_skips_present_file(file_server: FileServer, tmp_path: Path) -> None:
    url = file_server.add("a/f.bin", PAYLOAD)
    remote = Remote("f.bin", (url,), digest(PAYLOAD, "sha256"))
    path = get(remote, tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert leftovers(tmp_path) == ["f.bin"]
    get(remote, tmp_path)  # already there and valid: no second request
    assert file_server.requests["a/f.bin"] == 1


def test_checksum_mismatch_deletes_retries_once_then_next_mirror(
    file_server: FileServer, tmp_path: Path
) -> None:
    bad = file_server.add("m1/f.bin", PAYLOAD, fault="corrupt")
    good = file_server.add("m2/f.bin", PAYLOAD)
    path = get(Remote("f.bin", (bad, good), digest(PAYLOAD)), tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert file_server.requests["m1/f.bin"] == 2  # the mismatch is retried once
    assert file_server.requests["m2/f.bin"] == 1
    assert leftovers(tmp_path) == ["f.bin"]


def test_checksum_mismatch_everywhere_fails_clearly(
    file_server: FileServer, tmp_path: Path
) -> None:
    bad = file_server.add("m1/f.bin", PAYLOAD, fault="corrupt")
    with pytest.raises(DataUnavailableError) as e:
        get(Remote("f.bin", (bad,), digest(PAYLOAD)), tmp_path)
    assert "f.bin" in str(e.value) and "does not match the known hash" in str(e.value)
    assert file_server.requests["m1/f.bin"] == 2
    assert leftovers(tmp_path) == []  # the damaged file is deleted


def test_flaky_checksum_mismatch_succeeds_on_retry(file_server: FileServer, tmp_path: Path) -> None:
    url = file_server.add("m1/f.bin", PAYLOAD, fault="corrupt", times=1)
    assert get(Remote("f.bin", (url,), digest(PAYLOAD)), tmp_path).read_bytes() == PAYLOAD
    assert file_server.requests["m1/f.bin"] == 2


def test_truncated_transfer_leaves_no_file_and_falls_back(
    file_server: FileServer, tmp_path: Path
) -> None:
    cut = file_server.add("m1/f.bin", PAYLOAD, fault="truncate")
    with pytest.raises(DataUnavailableError, match="truncated download, discarded"):
        get(Remote("f.bin", (cut,), digest(PAYLOAD)), tmp_path)
    assert leftovers(tmp_path) == []  # a partial download never takes the file's name
    good = file_server.add("m2/f.bin", PAYLOAD)
    assert get(Remote("f.bin", (cut, good), digest(PAYLOAD)), tmp_path).read_bytes() == PAYLOAD


def test_404_on_first_mirror_then_success(file_server: FileServer, tmp_path: Path) -> None:
    missing = file_server.url("m1/f.bin")  # nothing registered: 404
    good = file_server.add("m2/f.bin", PAYLOAD)
    assert get(Remote("f.bin", (missing, good), digest(PAYLOAD)), tmp_path).exists()
    assert file_server.requests["m1/f.bin"] == 1  # a 404 is not retried
    with pytest.raises(DataUnavailableError, match=r"m1/g\.bin: HTTP 404 Not Found"):
        get(Remote("g.bin", (file_server.url("m1/g.bin"),), digest(PAYLOAD)), tmp_path)


def test_offline_error_lists_files_folder_and_urls(tmp_path: Path) -> None:
    remotes = [
        Remote(
            "one.gz", (closed_port_url("x/one.gz"), closed_port_url("y/one.gz")), "md5:" + "0" * 32
        ),
        Remote("two.csv", (closed_port_url("two.csv"),), "sha1:" + "1" * 40),
    ]
    with pytest.raises(DataUnavailableError) as e, folder_lock(tmp_path / "demo"):
        fetch(remotes, tmp_path / "demo", "demo", progress=False)
    text = str(e.value)
    assert "2 file(s)" in text
    assert str((tmp_path / "demo").resolve()) in text and "paths.data_dir" in text
    for r in remotes:
        assert r.name in text and r.known_hash in text
        assert all(u in text for u in r.urls)
    assert MIRROR_ENV in text and "connection refused" in text


def test_mirror_override_layout_and_checksum(
    file_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MIRROR_ENV, file_server.base_url.rstrip("/"))
    file_server.add("ames_house_prices/f.csv", PAYLOAD)
    upstream = closed_port_url("f.csv")  # never used while the mirror is set
    assert get(Remote("f.csv", (upstream,), digest(PAYLOAD)), tmp_path, "ames_house_prices")
    assert file_server.requests["ames_house_prices/f.csv"] == 1
    # The mirror's bytes are still checked against the canonical checksum.
    file_server.add("ames_house_prices/g.csv", PAYLOAD, fault="corrupt")
    with pytest.raises(DataUnavailableError) as e:
        get(Remote("g.csv", (upstream,), digest(PAYLOAD)), tmp_path, "ames_house_prices")
    assert file_server.url("ames_house_prices/g.csv") in str(e.value)
    assert upstream in str(e.value)  # the upstream URL is named too, for reference


def test_size_pinned_file_checked_before_taking_its_name(
    file_server: FileServer, tmp_path: Path
) -> None:
    archive = zip_bytes({"PetImages/Cat/0.jpg": b"x" * 1000})
    url = file_server.add("z.zip", archive)
    wrong = Remote("z.zip", (url,), size=len(archive) + 1, verify=lambda p: verify_zip(p, False))
    with pytest.raises(DataUnavailableError, match="size is"):
        get(wrong, tmp_path)
    assert leftovers(tmp_path) == []
    # A zip whose member fails its CRC: the right size, damaged content.
    damaged = archive.replace(b"x" * 1000, b"y" * 1000)
    url = file_server.add("d.zip", damaged)
    with pytest.raises(DataUnavailableError, match="BadZipFile"):
        get(
            Remote("d.zip", (url,), size=len(damaged), verify=lambda p: verify_zip(p, False)),
            tmp_path,
        )
    assert leftovers(tmp_path) == []
    right = Remote("z.zip", (url.replace("d.zip", "z.zip"),), size=len(archive), verify=verify_zip)
    assert get(right, tmp_path).stat().st_size == len(archive)


@pytest.mark.parametrize("name", ["../escape.txt", "/tmp/nnlab-abs-escape.txt", "a/../../up.txt"])
def test_extract_refuses_escaping_members(tmp_path: Path, name: str) -> None:
    for kind, data in (
        ("tar", tar_gz({"ok.txt": b"1", name: b"2"})),
        ("zip", zip_bytes({"ok.txt": b"1", name: b"2"})),
    ):
        archive = tmp_path / f"evil.{kind}"
        archive.write_bytes(data)
        with pytest.raises(UnsafeArchiveError, match="outside"):
            extract(archive, tmp_path / "out" / "x", progress=False)
        assert not (tmp_path / "out" / "x").exists()
        assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "out" / "up.txt").exists()
    assert not Path("/tmp/nnlab-abs-escape.txt").exists()


def test_extract_refuses_links_and_is_all_or_nothing(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("inside/link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    archive = tmp_path / "link.tar.gz"
    archive.write_bytes(buf.getvalue())
    with pytest.raises(UnsafeArchiveError, match="link"):
        extract(archive, tmp_path / "dest", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.tar.gz"]  # no temp folder left
    good = tmp_path / "good.zip"
    good.write_bytes(zip_bytes({"d/a.txt": b"a", "d/b.txt": b"b"}))
    dest = extract(good, tmp_path / "dest", progress=False)
    assert (dest / "d" / "b.txt").read_bytes() == b"b"
    assert zipfile.is_zipfile(good)


def test_a_fetched_archive_that_is_refused_leaves_the_cache(
    file_server: FileServer, tmp_path: Path
) -> None:
    data = tar_gz({"ok.txt": b"1", "../escape.txt": b"2"})
    url = file_server.add("evil.tar.gz", data)
    # Pinned by size only, as a file with no published checksum is: it downloads as complete.
    archive = get(Remote("evil.tar.gz", (url,), size=len(data)), tmp_path / "cache")
    with pytest.raises(DataUnavailableError, match=r"evil.tar.gz cannot be unpacked .*outside"):
        extract_fetched(archive, tmp_path / "cache" / "out", progress=False)
    assert leftovers(tmp_path / "cache") == []  # neither the archive nor a half extraction
    assert not (tmp_path / "escape.txt").exists()
    # The next run downloads it again instead of taking the refused copy as complete.
    get(Remote("evil.tar.gz", (url,), size=len(data)), tmp_path / "cache")
    assert file_server.requests["evil.tar.gz"] == 2


RACE = """
import sys
from pathlib import Path
from nnlab.data.download import Remote, fetch, folder_lock
folder, url, known_hash = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
with folder_lock(folder):
    fetch([Remote("f.bin", (url,), known_hash)], folder, "demo", progress=False)
print("fetched")
"""


def test_two_processes_download_once(file_server: FileServer, tmp_path: Path) -> None:
    """Two processes (as two DDP ranks, or two runs, on one machine) race for the same file:
    the folder lock makes it be downloaded exactly once. (test_data_train.py races two real
    DDP ranks through train.py.)"""
    url = file_server.add("demo/f.bin", PAYLOAD)
    # The first download stays in flight for a while, so the second process meets the lock.
    file_server.delays["demo/f.bin"] = 1.5
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    args = [sys.executable, "-c", RACE, str(tmp_path), url, digest(PAYLOAD)]
    procs = [
        subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0 and "fetched" in out, err
    assert file_server.requests["demo/f.bin"] == 1
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
