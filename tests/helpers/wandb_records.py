"""Reads the records of an offline W&B run file (`run-<id>.wandb`) for tests.

wandb ≥ 0.2x writes these files from its Go core and no longer ships a Python reader, so this
follows the documented format: a 7-byte header (":W&B", magic 0xBEE1, version), then leveldb-log
framing (32 KiB blocks; each chunk = crc32 (seeded by the chunk type), length, type, data; a record
split over blocks as FIRST, MIDDLE..., LAST). The record bytes are parsed by wandb's own protobuf
`Record` message, so every field is read the way wandb defines it.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[wandb_internal_pb2.Record]:
    """Every record of the run file, checked against its checksum."""
    data = Path(path).read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:HEADER])
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path} is not a W&B run file")
    out, pos, pending = [], HEADER, b""
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # the block's tail is padding
            pos += BLOCK - pos % BLOCK
            continue
        checksum, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:  # zero fill at the end of a preallocated block
            break
        if zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != checksum:
            raise ValueError(f"{path}: bad checksum at byte {pos}")
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out


@dataclass
class OfflineRun:
    """What an offline run file says about its run."""

    run: Any = None  # the RunRecord: name, group, job_type, tags...
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    files: list[str] = field(default_factory=list)
    artifacts: list[Any] = field(default_factory=list)  # ArtifactRecords: type, name, manifest


def read_run(run_dir: Path, timeout: float = 30.0) -> OfflineRun:
    """The finished run in an `offline-run-*` folder. wandb's service process writes the file
    and `finish()` can return before its last writes land (seen on a loaded 2-core machine), so
    this waits up to `timeout` seconds for the run's exit record."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = _parse_run(run_dir)
        except ValueError:  # a record still being written fails its checksum
            if time.monotonic() > deadline:
                raise
        else:
            if result.exit_code is not None or time.monotonic() > deadline:
                return result
        time.sleep(0.2)


def _parse_run(run_dir: Path) -> OfflineRun:
    (path,) = Path(run_dir).glob("run-*.wandb")
    result = OfflineRun()
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            result.run = record.run
            result.config.update(_items(record.run.config.update))
        elif kind == "config":
            result.config.update(_items(record.config.update))
        elif kind == "history":
            result.history.append(_items(record.history.item))
        elif kind == "summary":
            result.summary.update(_items(record.summary.update))
        elif kind == "exit":
            result.exit_code = record.exit.exit_code
        elif kind == "files":
            result.files += [f.path for f in record.files.files]
        elif kind == "artifact":
            result.artifacts.append(record.artifact)
    return result


def _items(items: Any) -> dict[str, Any]:
    """Key/value items (key or nested_key, JSON value) as a dict."""
    out = {}
    for item in items:
        key = item.key or "/".join(item.nested_key)
        out[key] = json.loads(item.value_json)
    return out
