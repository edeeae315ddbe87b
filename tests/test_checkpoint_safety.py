"""Checkpoints never run code: every load reads weights only, and a ckpt_path URL is downloaded
into the cache and then checked like a local file. A crafted checkpoint whose pickle would
create a marker file is served from a real loopback HTTP server (and given as a local file);
the marker must never appear."""

from __future__ import annotations

import hashlib
import pathlib
import shutil
from pathlib import Path

import pytest
import torch

from nnlab.checkpoints import download_checkpoint
from nnlab.core import ConfigError

from .conftest import run_script
from .helpers import http_fixtures
from .helpers.http_fixtures import FileServer

file_server = http_fixtures.file_server

XOR = ("data=xor", "model=mlp", "model.hidden_sizes=[4]", "diagnostics=none", "logger=none")


class Payload:
    """Unpickling this calls Path.touch(marker): what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def evil_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    """A checkpoint-shaped file whose full unpickling would create `marker`."""
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "nnlab_module": Payload(marker)}, path)
    # The file really is a code-running pickle: a full (unsafe) load runs it.
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    return path, marker


def test_download_checks_the_hash_and_leaves_nothing_on_mismatch(
    file_server: FileServer, tmp_path: Path
) -> None:
    body = b"not really a checkpoint"
    url = file_server.add("runs/best.ckpt", body)
    good = hashlib.sha256(body).hexdigest()
    path = Path(download_checkpoint(url, tmp_path, sha256=good))
    assert path.read_bytes() == body
    assert path.is_relative_to(tmp_path / "checkpoints")
    # A cached copy with the right hash is reused, not fetched again.
    assert download_checkpoint(url, tmp_path, sha256=good) == str(path)
    assert file_server.requests["runs/best.ckpt"] == 1

    other = file_server.add("runs/other.ckpt", body)
    with pytest.raises(ConfigError, match="SHA256 hash of downloaded file"):
        download_checkpoint(other, tmp_path, sha256="0" * 64)
    files = [p.name for p in (tmp_path / "checkpoints").rglob("*") if p.is_file()]
    assert files == ["best.ckpt"]


def test_download_refuses_other_schemes_and_names_a_dead_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ftp:// is not supported"):
        download_checkpoint("ftp://example.invalid/x.ckpt", tmp_path)
    with pytest.raises(ConfigError, match="cannot be downloaded"):
        download_checkpoint(http_fixtures.closed_port_url("x.ckpt"), tmp_path)


@pytest.mark.parametrize("script", ["train.py", "eval.py"])
@pytest.mark.parametrize("where", ["url", "local"])
def test_a_crafted_checkpoint_never_runs_its_code(
    script: str, where: str, file_server: FileServer, tmp_path: Path
) -> None:
    path, marker = evil_checkpoint(tmp_path)
    ckpt = file_server.add("evil.ckpt", path) if where == "url" else str(path)
    args = (*XOR, "trainer.max_epochs=1") if script == "train.py" else ()
    proc = run_script(
        script,
        *args,
        f"ckpt_path={ckpt}",
        f"paths.log_dir={tmp_path / 'logs'}",
        f"paths.data_dir={tmp_path / 'data'}",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0
    assert not marker.exists(), "the checkpoint's pickle ran"
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ckpt_path=") and "is not a readable checkpoint" in last, last
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_checkpoint_url_is_tested_and_resumed_like_a_local_file(
    file_server: FileServer, tmp_path: Path
) -> None:
    common = (f"paths.log_dir={tmp_path / 'logs'}", f"paths.data_dir={tmp_path / 'data'}")
    run_script("train.py", *XOR, "trainer.max_epochs=2", "test=false", *common, cwd=tmp_path)
    (best,) = (tmp_path / "logs").rglob("best.ckpt")
    served = tmp_path / "served.ckpt"
    shutil.copy(best, served)
    url = file_server.add("models/best.ckpt", served)
    sha = hashlib.sha256(served.read_bytes()).hexdigest()

    proc = run_script("eval.py", f"ckpt_path={url}", f"ckpt_sha256={sha}", *common, cwd=tmp_path)
    assert "test/acc" in proc.stdout
    resumed = run_script(
        "train.py", *XOR, "trainer.max_epochs=3", f"ckpt_path={url}", *common, cwd=tmp_path
    )
    assert "Restored all states" in resumed.stdout + resumed.stderr
    # Another network is refused before training, exactly as for a local file.
    refused = run_script(
        "train.py",
        *XOR[:2],
        "model.hidden_sizes=[8]",
        *XOR[3:],
        f"ckpt_path={url}",
        *common,
        cwd=tmp_path,
        check=False,
    )
    assert refused.returncode != 0
    assert "was trained with model.hidden_sizes=[4]" in refused.stderr
