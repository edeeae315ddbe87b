"""The base of every data set that is downloaded: where its files go, and downloading them once
per machine before any process parses them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nnlab.core import ConfigError
from nnlab.core.paths import check_name
from nnlab.data.base import ArrayDataModule
from nnlab.data.download import folder_lock


class RemoteDataModule(ArrayDataModule):
    """A data set whose files are fetched into `<data_dir>/<name>/`.

    Args:
        name: the data config's name (configs/data/<name>.yaml). It names the download folder
            and the folder under an NNLAB_DATA_MIRROR; passed explicitly (never read from Hydra)
            so the datamodule can be rebuilt from a saved config alone.
        data_dir: where downloaded data sets live (paths.data_dir).
        progress: show progress bars while downloading, extracting and decoding.
    """

    def __init__(
        self, name: str, data_dir: str | Path = "data", progress: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not name:
            raise ConfigError("data.name must name the data set (its config name, e.g. mnist)")
        check_name("data.name", name)  # <data_dir>/<name>: never a folder elsewhere
        self.name, self.data_dir, self.progress = name, Path(data_dir), progress
        # Lightning calls prepare_data once per machine (local rank 0) under DDP: a data_dir on
        # local disk needs it on every node. The folder lock covers the rest: several runs on
        # one machine, or nodes sharing one file system.
        self.prepare_data_per_node = True

    @property
    def folder(self) -> Path:
        """This data set's download folder."""
        return self.data_dir / self.name

    def prepare_data(self) -> None:
        with folder_lock(self.folder):
            self.prepare_files()

    def prepare_files(self) -> None:
        """Fetches, unpacks or caches whatever of the data set is not on disk yet. Runs under
        the folder's lock, once per machine before any process loads the data."""
        raise NotImplementedError
