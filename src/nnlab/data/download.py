"""Getting data files onto this machine: checksummed downloads that fall back across mirrors, an
internal-mirror override, clear errors when offline, safe archive extraction, and a file lock so
that several processes on one machine download once.

Retrieval is pooch's (`pooch.retrieve`): it streams to a temporary file in the target folder,
checks the hash and only then moves the file to its name, so a partial or corrupt download is
never taken for a complete one. This module adds what pooch leaves to its caller: the mirror
list and override, one retry after a checksum mismatch, files with a pinned size but no
published checksum, the lock and the offline message.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pooch
import requests
from filelock import FileLock
from tqdm.auto import tqdm

from nnlab.core import DataUnavailableError

log = logging.getLogger(__name__)

MIRROR_ENV = "NNLAB_DATA_MIRROR"
# Seconds without a byte before a connection counts as dead (requests' connect and read timeout).
TIMEOUT_S = 60
# A checksum mismatch may be a flaky transfer: one more try from the same URL, then the next.
ATTEMPTS_PER_URL = 2


class UnsafeArchiveError(RuntimeError):
    """An archive member would be written outside the folder it is extracted into."""


@dataclass(frozen=True)
class Remote:
    """One upstream file.

    Args:
        name: the upstream file name; also its name on disk and under a mirror.
        urls: where to fetch it, tried in order.
        known_hash: "md5:…", "sha1:…" or "sha256:…" as the publisher gives it; None when no
            checksum is published (then `size` and `verify` must pin the file instead).
        size: the exact size in bytes, when known.
        verify: a check of the complete file (e.g. an archive's own CRCs) that raises on damage.
    """

    name: str
    urls: tuple[str, ...]
    known_hash: str | None = None
    size: int | None = None
    verify: Callable[[Path], None] | None = None

    def __post_init__(self) -> None:
        if self.known_hash is None and self.size is None:
            raise ValueError(f"{self.name}: give a known_hash or at least a size to pin it")

    def describe(self) -> str:
        return self.known_hash or f"{self.size:,} bytes, no published checksum"


def source_urls(remote: Remote, source: str) -> list[str]:
    """The URLs to try for `remote` of data set `source` (its data config name).

    With NNLAB_DATA_MIRROR=<base> set, only `<base>/<source>/<file name>`; else the upstream list.
    """
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if mirror:
        return [f"{mirror.rstrip('/')}/{source}/{remote.name}"]
    return list(remote.urls)


def is_complete(path: Path, remote: Remote) -> bool:
    """Whether `path` holds the verified file (by checksum, else by size)."""
    if not path.is_file():
        return False
    if remote.known_hash is not None:
        alg, _, expected = remote.known_hash.partition(":")
        return pooch.file_hash(str(path), alg) == expected.lower()
    return path.stat().st_size == remote.size


def fetch(
    remotes: Sequence[Remote], folder: str | Path, source: str, progress: bool = True
) -> dict[str, Path]:
    """Makes sure every file of `remotes` is in `folder`, downloading what is missing.

    Call it inside `folder_lock(folder)`. Raises DataUnavailableError naming every file that
    could not be had, where to put it and the URLs that were tried.
    """
    folder = make_folder(folder)
    paths = {r.name: folder / r.name for r in remotes}
    failures: list[tuple[Remote, list[str]]] = []
    for remote in remotes:
        if is_complete(paths[remote.name], remote):
            continue
        errors = _download(remote, folder, source, progress)
        if errors:
            failures.append((remote, errors))
    if failures:
        raise DataUnavailableError(_unavailable_message(failures, folder, source))
    return paths


@contextmanager
def folder_lock(folder: str | Path) -> Iterator[None]:
    """An exclusive lock on a data folder across processes of this machine (and of others that
    share the file system), held while its files are downloaded and unpacked: concurrent
    processes (DDP ranks, parallel runs) then download once, and the ones that waited find the
    files complete."""
    folder = Path(folder)
    if folder.is_dir() and not os.access(folder, os.W_OK):
        # A read-only folder (populated by an admin for an offline cluster): nothing will be
        # written there, so there is nothing to race on; missing files still raise clearly.
        yield
        return
    make_folder(folder)
    lock = FileLock(str(folder / ".lock"))
    try:
        lock.acquire(timeout=1)
    except TimeoutError:  # filelock.Timeout subclasses TimeoutError
        log.info("waiting for another process to finish preparing %s", folder)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def make_folder(folder: str | Path) -> Path:
    """Makes a data folder (and its parents); one that cannot be made (no permission, a file
    in the way, a read-only disk) is a DataUnavailableError saying where to put data instead."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataUnavailableError(
            f"cannot make the data folder {folder}: {e.strerror or e}; put data sets where you "
            "can write with paths.data_dir=<folder> or NNLAB_DATA_DIR"
        ) from None
    return folder


def _download(remote: Remote, folder: Path, source: str, progress: bool) -> list[str]:
    """Downloads one file into `folder`; returns the reasons of failed tries ([] on success)."""
    errors = []
    final = folder / remote.name
    # Files pinned only by size are downloaded under another name, checked, then renamed, so
    # the real name never holds an unchecked file. pooch's own hash check covers the others.
    target = final if remote.known_hash else folder / f"{remote.name}.unverified"
    for url in source_urls(remote, source):
        for attempt in range(1, ATTEMPTS_PER_URL + 1):
            log.info("downloading %s from %s", remote.name, url)
            try:
                pooch.retrieve(
                    url,
                    known_hash=remote.known_hash,
                    fname=target.name,
                    path=folder,
                    downloader=pooch.HTTPDownloader(progressbar=progress, timeout=TIMEOUT_S),
                )
                if target != final:
                    _check_unhashed(target, remote)
                    os.replace(target, final)
                make_readable(final)
                return []
            except (ValueError, zipfile.BadZipFile, tarfile.TarError) as e:
                # pooch raises ValueError on a hash mismatch and has already deleted the file.
                target.unlink(missing_ok=True)
                errors.append(f"{url}: {_first_line(e)} (try {attempt} of {ATTEMPTS_PER_URL})")
                log.warning("%s from %s is damaged, deleted: %s", remote.name, url, _first_line(e))
            except requests.RequestException as e:
                # HTTP errors, refused connections, timeouts, truncated bodies: the next URL.
                errors.append(f"{url}: {_reason(e)}")
                log.warning("cannot download %s from %s: %s", remote.name, url, _reason(e))
                break
    return errors


def make_readable(path: str | Path) -> None:
    """Temporary files are created private (0600); a data folder may be shared, so give the
    finished file the permissions the umask grants to new files."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _check_unhashed(path: Path, remote: Remote) -> None:
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        raise ValueError(f"size is {size:,} bytes, expected {remote.size:,}")
    if remote.verify is not None:
        remote.verify(path)


def _reason(e: Exception) -> str:
    """A short reason for a failed request (requests' own messages run to several lines)."""
    text = str(e)
    if isinstance(e, requests.HTTPError) and e.response is not None:
        return f"HTTP {e.response.status_code} {e.response.reason}"
    if isinstance(e, requests.Timeout):
        return f"no answer within {TIMEOUT_S} s"
    if isinstance(e, requests.exceptions.ChunkedEncodingError):
        return "the connection broke mid-transfer (truncated download, discarded)"
    if "NameResolutionError" in text or "Name or service not known" in text:
        return "cannot resolve the host name (no network or no DNS?)"
    if "Connection refused" in text:
        return "connection refused"
    return _first_line(e)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def _unavailable_message(
    failures: list[tuple[Remote, list[str]]], folder: Path, source: str
) -> str:
    lines = [
        f"data={source}: {len(failures)} file(s) are missing and could not be downloaded.",
        f"Put these exact files in {folder.resolve()}",
        f"  (= <paths.data_dir>/{folder.name}; move it with paths.data_dir=... or NNLAB_DATA_DIR),",
        f"or serve them from a mirror: {MIRROR_ENV}=<base url> fetches "
        f"<base url>/{source}/<file name>.",
    ]
    for remote, errors in failures:
        existing = folder / remote.name
        note = " (a file of that name is there but fails the check)" if existing.exists() else ""
        lines.append(f"  - {remote.name}{note}  [{remote.describe()}]")
        lines.extend(f"      tried {e}" for e in errors)
        if os.environ.get(MIRROR_ENV, "").strip():
            lines.append(f"      upstream: {', '.join(remote.urls)}")
    return "\n".join(lines)


# -- archives ----------------------------------------------------------------------------------
def _check_member(root: Path, name: str) -> None:
    """Refuses an archive member whose name would put it outside `root`."""
    if not (root / name).resolve().is_relative_to(root.resolve()):
        raise UnsafeArchiveError(f"archive member {name!r} would be written outside {root}")


def extract(archive: str | Path, dest: str | Path, progress: bool = True) -> Path:
    """Unpacks a .zip or .tar(.gz) archive into the folder `dest`, all or nothing.

    Members go to a temporary sibling folder that is renamed to `dest` only once complete, so an
    interrupted extraction leaves no half-filled `dest`. Every member name is checked before
    anything is written: one that would land outside `dest` (absolute, `..`, or a link) raises
    UnsafeArchiveError.
    """
    archive, dest = Path(archive), Path(dest)
    make_folder(dest.parent)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                members = zf.infolist()
                for m in members:
                    _check_member(tmp, m.filename)
                for m in tqdm(members, desc=f"extracting {archive.name}", disable=not progress):
                    zf.extract(m, tmp)
        else:
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for m in members:
                    _check_member(tmp, m.name)
                    if m.issym() or m.islnk():
                        raise UnsafeArchiveError(f"archive member {m.name!r} is a link")
                # Python's own "data" filter (3.10.12+, 3.11.4+) as a second line of defence.
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                for m in tqdm(members, desc=f"extracting {archive.name}", disable=not progress):
                    tf.extract(m, tmp, **safe)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest


def extract_fetched(archive: Path, dest: str | Path, progress: bool = True) -> Path:
    """`extract` for an archive that `fetch` put in the cache. One it refuses (unsafe members, or
    damaged past what its checks saw) is deleted, so that the next run downloads it again instead
    of taking it as complete, and reported as a DataUnavailableError (one error line)."""
    try:
        return extract(archive, dest, progress)
    except (UnsafeArchiveError, tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        archive.unlink(missing_ok=True)
        raise DataUnavailableError(
            f"{archive.name} cannot be unpacked ({e}); it was removed from {archive.parent}, "
            "so the next run downloads it again"
        ) from None


def verify_zip(path: Path, progress: bool = True) -> None:
    """Reads every member of a zip archive to its end, which checks each one's CRC-32."""
    with zipfile.ZipFile(path) as zf:
        members = zf.infolist()
        total = sum(m.file_size for m in members)
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"checking {path.name}",
                  disable=not progress) as bar:  # fmt: skip
            for m in members:
                with zf.open(m) as f:
                    while chunk := f.read(1 << 20):
                        bar.update(len(chunk))
