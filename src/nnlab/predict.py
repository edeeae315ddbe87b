"""Predictions of a checkpoint on new inputs: `python predict.py ckpt_path=<ckpt> input=<file or
folder>` writes one CSV row per input. The inputs get exactly the preprocessing fitted at
training time, read from the checkpoint (the datamodule's `preprocessing()`, saved as plain
data): normalization statistics, image size and colour mode, or a table's feature pipeline; so
a row gets the output eval.py saw for it. Inputs are read and predicted in batches.

Nothing a user has is replaced by accident: the predictions are written under a temporary name
beside their file and renamed onto it when complete (a failed run leaves the old file as it
was), never onto the input, the checkpoint or an existing file without `overwrite=true`; an
input that is not a finite number becomes an error row, not a prediction of nan."""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from nnlab.checkpoints import fetch_checkpoint_url
from nnlab.console import print_config_tree, setup_console
from nnlab.core import ConfigError, is_int
from nnlab.data.base import PREPROCESSING_KEY
from nnlab.data.csv_reader import read_csv_chunks
from nnlab.data.derived import derivation
from nnlab.data.features import TablePipeline
from nnlab.data.images import IMAGE_EXTENSIONS, decode_image
from nnlab.data.loaders import Normalize
from nnlab.data.spec import DataSpec
from nnlab.data.tables import table_pipeline_from_state
from nnlab.tasks.base import TaskModule
from nnlab.tasks.loading import module_from, read_checked

log = logging.getLogger(__name__)

# The suffixes of files read as CSV tables (the separator is sniffed: commas, semicolons, tabs).
TABLE_SUFFIXES = (".csv", ".tsv", ".txt")
# The preprocessing kinds whose inputs may be image files (nnlab.data.base.preprocessing).
IMAGE_KINDS = ("array", "image")
# The error column of an image file that does not decode.
UNDECODABLE = "the file does not decode as an image"
# The error column of an input holding NaN or ±inf (e.g. in a .npy), or a number beyond float32.
NOT_FINITE = "holds a value that is not a finite number (NaN, inf, or beyond float32's ±3.4e38)"
# The error column of an input whose output is not a finite number.
NO_OUTPUT = "the model's output is not a finite number (the input lies far outside training's)"
# The file written into a folder given as `output` (and into the run folder by default).
PREDICTIONS = "predictions.csv"
# What a spreadsheet reads as a formula when a cell starts with it (OWASP, "CSV injection").
FORMULA_START = "=+-@\t\r"
# A number as written in a CSV cell (kept as it is, even when it starts with - or +).
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
# What stat says a path is, when it is not a regular file.
FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)
# What a .npy array of another kind than real numbers holds, by numpy's dtype kind.
NOT_NUMBERS = {
    "b": "booleans",
    "c": "complex numbers",
    "O": "Python objects",
    "U": "text",
    "S": "bytes",
    "V": "records",
    "M": "dates",
    "m": "time spans",
}
# The largest integer float32 holds exactly (and every smaller one): 2**24.
FLOAT32_EXACT = 2**24


@dataclass
class Chunk:
    """A batch of inputs: each one's name (a file, a row number), the model inputs of those that
    could be read (in order, before normalization), and for the others why not."""

    names: list[str]
    x: torch.Tensor
    errors: list[str | None]


def predict(cfg: DictConfig) -> str:
    """Writes the predictions of checkpoint `cfg.ckpt_path` on `cfg.input` to `cfg.output`
    (null: predictions.csv in the run folder; a folder: predictions.csv in it); returns that
    file's path. The file appears complete or not at all (see AtomicCSV)."""
    device = check_options(cfg)
    output, key = output_file(cfg)
    fetch_checkpoint_url(cfg)  # a URL is downloaded now, then read like a local file
    check_not_checkpoint(output, key, str(cfg.ckpt_path))  # a downloaded one too
    setup_console()
    if cfg.get("print_config"):
        print_config_tree(cfg, cfg.paths.output_dir)
    module, prep = load_checkpoint(cfg.ckpt_path)
    module.to(device).eval()
    id_column = cfg.get("id_column")
    total, chunks = read_inputs(Path(cfg.input), prep, module.spec, cfg.batch_size, id_column)
    columns = Columns(module, cfg.all_probabilities, id_column or "input")
    norm = normalizer(prep)
    failed = count = 0  # counted as read: a table's count above is an estimate for the bar
    with (
        AtomicCSV(output, key) as out,
        tqdm(total=total, desc="predicting", unit="input", disable=not cfg.progress) as bar,
    ):
        out.write([columns.header])
        for chunk in chunks:
            rows = columns.rows(*outputs(module, chunk, norm, device))
            out.write(rows)
            failed += sum(row[-1] != "" for row in rows)
            count += len(rows)
            bar.update(len(rows))
        if count == 0:  # the temporary file goes: no file at all
            raise ConfigError(f"input={cfg.input} holds no inputs (no rows): nothing to predict")
    log.info("%d predictions written to %s", count - failed, output)
    if failed:
        log.warning("%d of %d inputs could not be read (see the error column)", failed, count)
    inputs = f"{count} input" + ("" if count == 1 else "s")
    print(f"predictions: {output} ({inputs}, {failed} unreadable)")
    return str(output)


def check_options(cfg: DictConfig) -> torch.device:
    """predict.yaml's options: a batch size, an input that exists, a device that is there
    (returned; auto: a GPU if there is one)."""
    if not (is_int(cfg.batch_size) and cfg.batch_size >= 1):
        raise ConfigError(f"batch_size must be a positive int, got {cfg.batch_size!r}")
    for flag in ("overwrite", "all_probabilities", "progress", "print_config"):
        if not isinstance(cfg.get(flag), bool):
            raise ConfigError(f"{flag} must be true or false, got {cfg.get(flag)!r}")
    path = Path(str(cfg.input))
    if not path.exists():
        raise FileNotFoundError(f"input={cfg.input}: no such file or folder")
    kind = file_kind(path)
    if kind is not None and not path.is_dir():  # never opened: a FIFO would block the read
        raise ConfigError(
            f"input={cfg.input} is {kind}, not a regular file: give a CSV file, a .npy array, "
            "an image or a folder of images"
        )
    device = str(cfg.device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device != "cpu" and not (device == "cuda" or device.startswith("cuda:")):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:<n>, got {cfg.device!r}")
    if device != "cpu" and not torch.cuda.is_available():
        raise ConfigError(f"device={device}: no GPU is available here; use device=cpu")
    return torch.device(device)


# -- where the predictions go ----------------------------------------------------------------
def output_file(cfg: DictConfig) -> tuple[Path, str]:
    """The predictions file, and how messages name it (the key the user typed): `output`
    (a folder, or a path ending in /: predictions.csv in it), or predictions.csv in the run
    folder. Refused before anything is read: the input itself or a file in the input folder,
    the checkpoint or a file in its checkpoints folder, a path under a file, something that
    is not a regular file (a folder, /dev/full, a FIFO), an existing file unless
    overwrite=true."""
    given = cfg.get("output")
    if given is None:
        path, key = Path(cfg.paths.output_dir) / PREDICTIONS, f"output=null ({PREDICTIONS})"
    else:
        text = str(given)
        if not text.strip():
            raise ConfigError("output must be a file or a folder, or null (the run folder)")
        key, path = f"output={text}", Path(text)
        if text.endswith(("/", os.sep)) or path.is_dir():
            path /= PREDICTIONS
        check_not_input(path, key, Path(str(cfg.input)))
    check_not_checkpoint(path, key, str(cfg.ckpt_path))
    under = path.parent
    while not os.path.lexists(under):
        under = under.parent
    if not under.is_dir():
        raise ConfigError(f"{key}: {under} is a file, not a folder")
    if os.path.lexists(path):
        kind = file_kind(path)
        if kind is not None:
            raise ConfigError(f"{key}: {path} is {kind}, not a regular file; give a file path")
        if not cfg.overwrite:
            raise ConfigError(
                f"{key}: {path} exists; set overwrite=true to replace it, or give another output"
            )
    return path, key


def check_not_input(path: Path, key: str, input_path: Path) -> None:
    """Refuses an output that is the input (also through a link), or inside the input folder."""
    target, source = path.resolve(), input_path.resolve()
    if target == source or same_file(path, input_path):
        raise ConfigError(f"{key} is the input (input={input_path}): give another output")
    if input_path.is_dir() and source in target.parents:
        raise ConfigError(
            f"{key} is inside the input folder (input={input_path}): write the predictions "
            "elsewhere"
        )


def check_not_checkpoint(path: Path, key: str, ckpt_path: str) -> None:
    """Refuses an output that is the checkpoint (also through a link), or any file in the
    `checkpoints` folder of its run."""
    ckpt = Path(ckpt_path)
    if path.resolve() == ckpt.resolve() or same_file(path, ckpt):
        raise ConfigError(f"{key} is the checkpoint (ckpt_path={ckpt_path}): give another output")
    for folder in {ckpt.absolute().parent, ckpt.resolve().parent}:
        if folder.name == "checkpoints" and folder.resolve() in path.resolve().parents:
            raise ConfigError(
                f"{key} is in the checkpoints folder of ckpt_path ({folder}): write the "
                "predictions elsewhere"
            )


def same_file(a: Path, b: Path) -> bool:
    """Whether two existing paths are one file (hard links included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def file_kind(path: Path) -> str | None:
    """What `path` is when it is not a regular file (a folder, a FIFO, a socket, a device, a
    broken link), found by stat, without opening it; None for a regular file or a link to one."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        return f"unreadable ({e.strerror})"
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in FILE_KINDS if test(mode)), "not a regular file")


class AtomicCSV:
    """A CSV file written under a temporary name beside its target (.<name>.<random>.tmp) and
    renamed onto it when complete: a reader, or a run that fails on the way, never sees half
    a file. On any failure the temporary file, and the folders made for it, are removed, and
    the target is as it was. A write error (a full disk, a file-size limit) is a ConfigError
    naming `key`. The file gets the mode of the file it replaces, else the umask's."""

    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = path, key
        self.temp: str | None = None
        self.made = path.parent  # the topmost folder this writer makes, if any
        while not os.path.lexists(self.made.parent):
            self.made = self.made.parent

    def __enter__(self) -> AtomicCSV:
        if os.path.lexists(self.made):
            self.made = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, self.temp = tempfile.mkstemp(
                dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
            )
        except OSError as e:
            self._remove()
            raise self._failed(e) from None
        self.file = os.fdopen(fd, "w", newline="", encoding="utf-8")
        self.writer = csv.writer(self.file)
        return self

    def write(self, rows: list[list]) -> None:
        """Appends rows to the temporary file."""
        try:
            self.writer.writerows(rows)
        except OSError as e:
            raise self._failed(e) from None

    def __exit__(self, kind: type | None, error: BaseException | None, tb: Any) -> None:
        if kind is not None:
            self._remove()
            return
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            os.fchmod(self.file.fileno(), self._mode())
            self.file.close()
            os.replace(self.temp, self.path)
        except OSError as e:
            self._remove()
            raise self._failed(e) from None

    def _mode(self) -> int:
        try:
            return stat.S_IMODE(self.path.stat().st_mode)
        except OSError:
            mask = os.umask(0o022)
            os.umask(mask)
            return 0o666 & ~mask

    def _remove(self) -> None:
        if self.temp is not None:
            with contextlib.suppress(OSError):
                self.file.close()  # a failed flush raises again, but the file is closed
            with contextlib.suppress(OSError):
                os.unlink(self.temp)
        if self.made is not None:
            shutil.rmtree(self.made, ignore_errors=True)

    def _failed(self, e: OSError) -> ConfigError:
        kept = f"{self.path} is as it was" if self.path.exists() else "no file was written"
        return ConfigError(f"{self.key}: cannot write {self.path} ({e.strerror or e}); {kept}")


def load_checkpoint(ckpt_path: str) -> tuple[TaskModule, dict[str, Any]]:
    """The task module a checkpoint written by train.py holds (on the CPU), and the
    preprocessing of its data; both read as weights and plain data only."""
    checkpoint = read_checked(ckpt_path)  # nothing but nnlab's classes named (tasks.loading)
    prep = stored_preprocessing(checkpoint, ckpt_path)
    return module_from(checkpoint, ckpt_path), prep


def stored_preprocessing(checkpoint: dict[str, Any], ckpt_path: str) -> dict[str, Any]:
    """The datamodule's preprocessing saved in a checkpoint (Lightning keeps a datamodule's
    state_dict under its class name)."""
    for value in checkpoint.values():
        if isinstance(value, dict) and PREPROCESSING_KEY in value:
            return value[PREPROCESSING_KEY]
    raise ConfigError(
        f"ckpt_path={ckpt_path} holds no preprocessing (it was saved before predict.py "
        "existed, or not by train.py): train it again to predict with it"
    )


def normalizer(prep: dict[str, Any]) -> Normalize | None:
    """The training split's normalization, rebuilt from its saved statistics."""
    stats = prep.get("normalize")
    if not stats:
        return None
    mean, std = (torch.tensor(stats[k], dtype=torch.float32) for k in ("mean", "std"))
    return Normalize.from_stats(mean, std)


# -- reading the inputs ---------------------------------------------------------------------
def read_inputs(
    path: Path, prep: dict[str, Any], spec: DataSpec, batch_size: int, id_column: str | None
) -> tuple[int, Iterator[Chunk]]:
    """How many inputs `path` holds, and their chunks: a folder of images (searched
    recursively, in sorted order), an image file, a CSV file (a table's columns; for other
    models one number per input feature) or a .npy array of inputs. Inputs are named by their
    file, or by their row number (0: the first under the header) or `id_column`'s value."""
    kind = prep.get("kind")
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in IMAGE_EXTENSIONS:
        image = prep.get("image") if kind in IMAGE_KINDS else None
        if image is None:
            raise ConfigError(
                f"input={path}: this model does not take images (its inputs are {kind} data "
                f"of shape {list(spec.input_shape)}); give a CSV file"
            )
        files = image_files(path)
        names = [str(f.relative_to(path)) if path.is_dir() else str(f) for f in files]
        return len(files), image_chunks(files, names, image, batch_size)
    if suffix in TABLE_SUFFIXES and kind == "table":
        pipeline = table_pipeline_from_state(prep)
        text = [*pipeline.text_columns, *([id_column] if id_column else [])]
        frames = read_csv_chunks(path, batch_size, text=text)
        derive = derivation(prep.get("derived"))  # features made from the file's own columns
        if derive is not None:
            frames = map(derive, frames)
        return count_rows(path), csv_chunks(frames, id_column, path, table_inputs(pipeline))
    if suffix not in (*TABLE_SUFFIXES, ".npy"):
        raise ConfigError(
            f"input={path}: give a CSV file, a .npy array, an image or a folder of images"
        )
    if kind not in IMAGE_KINDS:
        raise ConfigError(f"input={path}: this checkpoint's data ({kind}) needs a CSV table")
    if suffix in TABLE_SUFFIXES:
        frames = read_csv_chunks(path, batch_size, text=[id_column] if id_column else [])
        ids = [id_column] if id_column else []

        def numbers(frame: pd.DataFrame) -> tuple[np.ndarray, list[str | None]]:
            return csv_array(frame.drop(columns=ids), path, spec)

        return count_rows(path), csv_chunks(frames, id_column, path, numbers)
    x = npy_array(path, spec)
    return len(x), array_chunks(x, [str(i) for i in range(len(x))], batch_size)


def row_names(frame: pd.DataFrame, id_column: str | None, path: Path, start: int = 0) -> list[str]:
    """The names of a table's rows: their numbers (the first being `start`), or the cells of
    `id_column`."""
    if id_column is None:
        return [str(i) for i in range(start, start + len(frame))]
    if id_column not in frame.columns:
        raise ConfigError(
            f"id_column={id_column} is not a column of {path}; its columns: "
            f"{', '.join(frame.columns)}"
        )
    return [str(v) for v in frame[id_column].tolist()]


def image_files(path: Path) -> list[Path]:
    """`path` itself, or the files named as images under the folder `path`, sorted (whatever
    they are: FIFOs, sockets and devices among them become error rows)."""
    if path.is_file():
        return [path]
    files = sorted(
        p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and not p.is_dir()
    )
    if not files:
        extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise ConfigError(f"input={path} holds no image files ({extensions})")
    return files


def image_chunks(
    files: list[Path], names: list[str], image: dict[str, Any], batch_size: int
) -> Iterator[Chunk]:
    """The images decoded batch by batch (in threads) as the training images were: cropped to
    a square, resized, in the training colour mode; grey levels mapped onto the training
    inputs' value range. A file that does not decode is an error row, and so is one that is
    not a regular file (a FIFO, a socket, a device: never opened, so never waited on)."""
    low, high = image["range"]
    size, channels = image["size"], 1 if image["grayscale"] else 3

    def read(path: Path) -> np.ndarray | str:
        kind = file_kind(path)
        if kind is not None:
            return f"{kind}, not an image file: not read"
        array = decode_image(path, size, image["grayscale"])
        return UNDECODABLE if array is None else array

    with ThreadPoolExecutor() as pool:
        for start in range(0, len(files), batch_size):
            batch = files[start : start + batch_size]
            arrays = list(pool.map(read, batch))
            decoded = [a for a in arrays if not isinstance(a, str)]
            if decoded:
                x = torch.from_numpy(np.stack(decoded))
            else:
                x = torch.empty((0, channels, size, size), dtype=torch.uint8)
            if (low, high) != (0.0, 255.0):  # pixels stored as other numbers (digits: 0..16)
                x = low + x.float() * ((high - low) / 255.0)
            errors = [a if isinstance(a, str) else None for a in arrays]
            yield Chunk(names[start : start + batch_size], x, errors)


def csv_array(
    frame: pd.DataFrame, path: Path, spec: DataSpec
) -> tuple[np.ndarray, list[str | None]]:
    """A CSV file's table of numbers (`path`'s), one column per input feature, as the raw
    inputs (N, *input_shape) of a model trained on array data (e.g. pixels 0..255), and each
    row's error: its first missing or infinite cell."""
    text = [c for c in frame.columns if frame[c].dtype.kind not in "iuf"]
    if text:
        raise ConfigError(f"input={path}: column {text[0]} holds text; this model takes numbers")
    if frame.shape[1] != spec.in_features:
        raise ConfigError(
            f"input={path} has {frame.shape[1]} columns; the model takes {spec.in_features} "
            f"numbers per input (shape {list(spec.input_shape)})"
        )
    errors = cell_errors(frame, list(frame.columns), missing_ok=False)
    return frame.to_numpy(np.float64).reshape(-1, *spec.input_shape), errors


def table_inputs(
    pipeline: TablePipeline,
) -> Callable[[pd.DataFrame], tuple[np.ndarray, list[str | None]]]:
    """How a chunk of a table becomes model inputs: the training pipeline's features (it
    checks the columns), and each row's error: its first infinite cell in a number column (a
    missing cell is imputed, as in training)."""

    def inputs(frame: pd.DataFrame) -> tuple[np.ndarray, list[str | None]]:
        errors = cell_errors(frame, [c for c in pipeline.numbers if c in frame], missing_ok=True)
        if any(errors):  # rows not predicted: no warning about imputing their infinities
            frame = frame.replace([np.inf, -np.inf], np.nan)
        return pipeline.transform(frame), errors

    return inputs


def cell_errors(frame: pd.DataFrame, columns: list[str], missing_ok: bool) -> list[str | None]:
    """Why each row of `frame` cannot be predicted, from its number cells in `columns`: the
    first infinite one (e.g. 1e400), or unless `missing_ok` missing one; None for a good row."""
    numbers = [c for c in columns if frame[c].dtype.kind in "iuf"]
    values = frame[numbers].to_numpy(np.float64)
    bad = np.isinf(values) if missing_ok else ~np.isfinite(values)
    errors: list[str | None] = [None] * len(frame)
    for i in np.flatnonzero(bad.any(axis=1)):
        j = int(np.argmax(bad[i]))
        value = values[i, j]
        errors[i] = f"column {numbers[j]} is " + (
            "missing" if np.isnan(value) else f"{value}, not a finite number"
        )
    return errors


def npy_array(path: Path, spec: DataSpec) -> np.ndarray:
    """A .npy array of raw inputs, (N, *input_shape) or one input (*input_shape) (one-channel
    images also without the channel axis: (N, H, W) or (H, W)), read lazily
    (memory-mapped: batches are read as they are predicted). It must hold real numbers:
    integers within float32's exact range (±2**24) or floats (NaN and inf: error rows)."""
    dtype = npy_dtype(path)
    if dtype is not None and dtype.kind in NOT_NUMBERS:
        raise ConfigError(
            f"input={path} holds {NOT_NUMBERS[dtype.kind]} (dtype {dtype}); the model takes "
            "real numbers: give an array of integers or floats"
        )
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ConfigError(f"input={path} is not a readable .npy array ({e})") from None
    if x.dtype.kind in NOT_NUMBERS:  # a header npy_dtype could not read
        raise ConfigError(f"input={path} holds {NOT_NUMBERS[x.dtype.kind]} (dtype {x.dtype})")
    if x.dtype.kind in "iu" and x.dtype.itemsize > 2 and x.size:
        big = max(abs(int(x.min())), abs(int(x.max())))  # one pass over the file
        if big > FLOAT32_EXACT:
            raise ConfigError(
                f"input={path} holds integers up to {big:,} (dtype {x.dtype}), beyond float32's "
                f"exact range (±2**24 = {FLOAT32_EXACT:,}): the model would see other numbers; "
                "convert them to floats first"
            )
    shape = tuple(spec.input_shape)
    # One-channel images may come without their channel axis: (H, W) or (N, H, W).
    grey = len(shape) == 3 and shape[0] == 1
    if x.shape == shape or (grey and x.shape == shape[1:]):
        x = x[None]
    if grey and x.shape[1:] == shape[1:]:
        x = x[:, None]  # a view: the memory map is still read lazily
    if x.shape[1:] != shape:
        also = f", or [N, {shape[1]}, {shape[2]}] without the channel axis" if grey else ""
        raise ConfigError(
            f"input={path} has shape {list(x.shape)}; the model takes inputs of shape "
            f"{list(shape)} (one, or N of them: [N, {', '.join(map(str, shape))}]{also})"
        )
    return x


def npy_dtype(path: Path) -> np.dtype | None:
    """The dtype a .npy file's header declares, read without loading the array (None when the
    header is not one numpy's public readers know; np.load then says what is wrong)."""
    try:
        with path.open("rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                return np.lib.format.read_array_header_1_0(f)[2]
            if version == (2, 0):
                return np.lib.format.read_array_header_2_0(f)[2]
    except (ValueError, OSError):
        pass
    return None


def csv_chunks(
    frames: Iterator[pd.DataFrame],
    id_column: str | None,
    path: Path,
    inputs: Callable[[pd.DataFrame], tuple[np.ndarray, list[str | None]]],
) -> Iterator[Chunk]:
    """The rows of a CSV read chunk by chunk, as model inputs (`inputs` of each chunk gives
    them and each row's error: such rows are left out of the inputs); rows are named by their
    number from 0, or by `id_column`."""
    start = 0
    for frame in frames:
        names = row_names(frame, id_column, path, start)
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: error rows
            x, errors = inputs(frame)
            x = np.ascontiguousarray(x[np.array([e is None for e in errors], bool)], np.float32)
        yield Chunk(names, torch.from_numpy(x), errors)
        start += len(frame)


def array_chunks(x: np.ndarray, names: list[str], batch_size: int) -> Iterator[Chunk]:
    """Rows of an array, batch by batch (a memory-mapped array is read batch by batch)."""
    for start in range(0, len(x), batch_size):
        batch = np.array(x[start : start + batch_size])
        if batch.dtype != np.uint8:
            with np.errstate(over="ignore"):  # beyond float32: inf, an error row
                batch = batch.astype(np.float32)
        yield Chunk(names[start : start + batch_size], torch.from_numpy(batch), [None] * len(batch))


def count_rows(path: Path) -> int:
    """The rows under a CSV file's header, counted by line ends for the progress bar (a cell
    holding a line break counts twice): one quick pass over the bytes."""
    lines, last = 0, b"\n"
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    return max(lines - 1 + (last != b"\n"), 0)


# -- the model's outputs, as CSV rows -------------------------------------------------------
@torch.no_grad()
def outputs(
    module: TaskModule, chunk: Chunk, norm: Normalize | None, device: torch.device
) -> tuple[Chunk, torch.Tensor, torch.Tensor]:
    """The chunk, the module's outputs and its predictions (class indices; for regression the
    outputs) for the chunk's inputs, normalized as in training. An input holding a value that
    is not a finite number (NaN, inf, or one beyond float32) gets none: the chunk returned has
    it as an error row (checked on the CPU, where the chunk was read)."""
    if chunk.x.is_floating_point():
        finite = finite_rows(chunk.x)
        if not finite.all():
            ok = iter(finite.tolist())
            errors = [e if e is not None or next(ok) else NOT_FINITE for e in chunk.errors]
            chunk = Chunk(chunk.names, chunk.x[torch.from_numpy(finite)], errors)
    x = chunk.x.to(device)
    x = norm.to(device)(x) if norm is not None else x.float()
    if len(x) == 0:
        empty = torch.empty(0, module.num_outputs)
        return chunk, empty, empty
    return chunk, module(x).float().cpu(), module.predict(x).cpu()


def finite_rows(values: torch.Tensor) -> np.ndarray:
    """Whether each row of a CPU tensor holds only finite numbers (in numpy, which spends no
    time waking a thread pool for a small check)."""
    return np.isfinite(values.numpy()).all(axis=tuple(range(1, values.dim())))


def text_cell(value: str) -> str:
    """A text cell of the predictions CSV (a file's or id_column's name, a class name): one a
    spreadsheet would run as a formula (starting with =, +, -, @, a tab or a carriage return)
    gets a leading ', as OWASP advises against CSV injection; a number (-1.5) stays as it is."""
    if value[:1] and value[:1] in FORMULA_START and not NUMBER.fullmatch(value):
        return "'" + value
    return value


class Columns:
    """The predictions CSV's columns and rows: input (or `first`: the id column's name), the
    task's value columns (its `prediction_columns`: a value in the target's own units, or a
    class name and its probability, with `all_probabilities` one column per class), and error
    (empty for a read input)."""

    def __init__(self, module: TaskModule, all_probabilities: bool, first: str = "input") -> None:
        self.module, self.all = module, all_probabilities
        spec = module.spec
        self.classes = list(spec.class_names)  # none for regression
        self.labels = [text_cell(c) for c in self.classes]  # as written in the prediction column
        values = module.prediction_columns(all_probabilities, self.classes)
        self.header = [text_cell(first), *values, "error"]

    def rows(self, chunk: Chunk, output: torch.Tensor, predicted: torch.Tensor) -> list[list]:
        """One row per input of the chunk, from the outputs of those that were read; a row
        whose values are not finite numbers is an error row."""
        values, finite = self.values(output, predicted)
        values, finite = iter(values), iter(finite)
        blank = [""] * (len(self.header) - 2)
        rows = []
        for name, error in zip(chunk.names, chunk.errors, strict=True):
            row = blank if error else next(values)
            if not error and not next(finite):
                row, error = blank, NO_OUTPUT
            name = text_cell(name) if name[:1] in FORMULA_START else name  # the common case: fast
            rows.append([name, *row, error or ""])
        return rows

    def values(self, output: torch.Tensor, predicted: torch.Tensor) -> tuple[list[list], list]:
        """The value columns of each output row, and whether they are finite numbers."""
        rows, numbers = self.module.prediction_values(output, predicted, self.labels, self.all)
        return rows, finite_rows(numbers).tolist()
