"""Predictions of a checkpoint on new inputs: `python predict.py ckpt_path=<ckpt> input=<file or
folder>` writes one CSV row per input. The inputs get exactly the preprocessing fitted at
training time, read from the checkpoint (the datamodule's `preprocessing()`, saved as plain
data): normalization statistics, image size and colour mode, or a table's feature pipeline; so
a row gets the output eval.py saw for it. Inputs are read and predicted in batches."""

from __future__ import annotations

import csv
import itertools
import logging
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


@dataclass
class Chunk:
    """A batch of inputs: each one's name (a file, a row number), the model inputs of those that
    could be read (in order, before normalization), and for the others why not."""

    names: list[str]
    x: torch.Tensor
    errors: list[str | None]


def predict(cfg: DictConfig) -> str:
    """Writes the predictions of checkpoint `cfg.ckpt_path` on `cfg.input` to `cfg.output`
    (null: predictions.csv in the run folder); returns that file's path."""
    device = check_options(cfg)
    fetch_checkpoint_url(cfg)  # a URL is downloaded now, then read like a local file
    setup_console()
    if cfg.get("print_config"):
        print_config_tree(cfg, cfg.paths.output_dir)
    module, prep = load_checkpoint(cfg.ckpt_path)
    module.to(device).eval()
    id_column = cfg.get("id_column")
    total, chunks = read_inputs(Path(cfg.input), prep, module.spec, cfg.batch_size, id_column)
    # The first chunk is read (a table's columns checked) before any file is written.
    first = next(chunks, None)
    chunks = itertools.chain([] if first is None else [first], chunks)
    output = Path(cfg.output or Path(cfg.paths.output_dir) / "predictions.csv")
    output.parent.mkdir(parents=True, exist_ok=True)
    columns = Columns(module.spec, cfg.all_probabilities, id_column or "input")
    norm = normalizer(prep)
    failed = 0
    with (
        output.open("w", newline="", encoding="utf-8") as f,
        tqdm(total=total, desc="predicting", unit="input", disable=not cfg.progress) as bar,
    ):
        writer = csv.writer(f)
        writer.writerow(columns.header)
        count = 0  # counted as read: a table's count above is an estimate for the bar
        for chunk in chunks:
            writer.writerows(columns.rows(chunk, *outputs(module, chunk.x, norm, device)))
            failed += sum(e is not None for e in chunk.errors)
            count += len(chunk.names)
            bar.update(len(chunk.names))
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
    if not Path(cfg.input).exists():
        raise FileNotFoundError(f"input={cfg.input}: no such file or folder")
    device = str(cfg.device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device != "cpu" and not (device == "cuda" or device.startswith("cuda:")):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:<n>, got {cfg.device!r}")
    if device != "cpu" and not torch.cuda.is_available():
        raise ConfigError(f"device={device}: no GPU is available here; use device=cpu")
    return torch.device(device)


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
        # transform checks the columns, on the first chunk before any file is written.
        return count_rows(path), csv_chunks(frames, id_column, path, pipeline.transform)
    if suffix not in (*TABLE_SUFFIXES, ".npy"):
        raise ConfigError(
            f"input={path}: give a CSV file, a .npy array, an image or a folder of images"
        )
    if kind not in IMAGE_KINDS:
        raise ConfigError(f"input={path}: this checkpoint's data ({kind}) needs a CSV table")
    if suffix in TABLE_SUFFIXES:
        frames = read_csv_chunks(path, batch_size, text=[id_column] if id_column else [])
        ids = [id_column] if id_column else []

        def numbers(frame: pd.DataFrame) -> np.ndarray:
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
    """`path` itself, or the image files under the folder `path`, sorted."""
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise ConfigError(f"input={path} holds no image files ({extensions})")
    return files


def image_chunks(
    files: list[Path], names: list[str], image: dict[str, Any], batch_size: int
) -> Iterator[Chunk]:
    """The images decoded batch by batch (in threads) as the training images were: cropped to
    a square, resized, in the training colour mode; grey levels mapped onto the training
    inputs' value range. A file that does not decode is an error row."""
    low, high = image["range"]
    size, channels = image["size"], 1 if image["grayscale"] else 3
    with ThreadPoolExecutor() as pool:
        for start in range(0, len(files), batch_size):
            batch = files[start : start + batch_size]
            arrays = list(pool.map(lambda p: decode_image(p, size, image["grayscale"]), batch))
            decoded = [a for a in arrays if a is not None]
            if decoded:
                x = torch.from_numpy(np.stack(decoded))
            else:
                x = torch.empty((0, channels, size, size), dtype=torch.uint8)
            if (low, high) != (0.0, 255.0):  # pixels stored as other numbers (digits: 0..16)
                x = low + x.float() * ((high - low) / 255.0)
            errors = [None if a is not None else UNDECODABLE for a in arrays]
            yield Chunk(names[start : start + batch_size], x, errors)


def csv_array(frame: pd.DataFrame, path: Path, spec: DataSpec) -> np.ndarray:
    """A CSV file's table of numbers (`path`'s), one column per input feature, as the raw
    inputs (N, *input_shape) of a model trained on array data (e.g. pixels 0..255)."""
    text = [c for c in frame.columns if frame[c].dtype.kind not in "iuf"]
    if text:
        raise ConfigError(f"input={path}: column {text[0]} holds text; this model takes numbers")
    if frame.shape[1] != spec.in_features:
        raise ConfigError(
            f"input={path} has {frame.shape[1]} columns; the model takes {spec.in_features} "
            f"numbers per input (shape {list(spec.input_shape)})"
        )
    if frame.isna().any().any():
        raise ConfigError(f"input={path} has missing cells; the model needs every number")
    return frame.to_numpy(np.float32).reshape(-1, *spec.input_shape)


def npy_array(path: Path, spec: DataSpec) -> np.ndarray:
    """A .npy array of raw inputs, (N, *input_shape) or one input (*input_shape), read lazily
    (memory-mapped: batches are read as they are predicted)."""
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ConfigError(f"input={path} is not a readable .npy array ({e})") from None
    shape = tuple(spec.input_shape)
    if x.shape == shape:
        x = x[None]
    if x.shape[1:] != shape:
        raise ConfigError(
            f"input={path} has shape {list(x.shape)}; the model takes inputs of shape "
            f"{list(shape)} (one, or N of them: [N, {', '.join(map(str, shape))}])"
        )
    return x


def csv_chunks(
    frames: Iterator[pd.DataFrame],
    id_column: str | None,
    path: Path,
    inputs: Callable[[pd.DataFrame], np.ndarray],
) -> Iterator[Chunk]:
    """The rows of a CSV read chunk by chunk, as model inputs (`inputs` of each chunk); rows are
    named by their number from 0, or by `id_column`."""
    start = 0
    for frame in frames:
        names = row_names(frame, id_column, path, start)
        x = torch.from_numpy(np.ascontiguousarray(inputs(frame), dtype=np.float32))
        yield Chunk(names, x, [None] * len(frame))
        start += len(frame)


def array_chunks(x: np.ndarray, names: list[str], batch_size: int) -> Iterator[Chunk]:
    """Rows of an array, batch by batch (a memory-mapped array is read batch by batch)."""
    for start in range(0, len(x), batch_size):
        batch = torch.from_numpy(np.array(x[start : start + batch_size]))
        if batch.dtype != torch.uint8:
            batch = batch.float()
        yield Chunk(names[start : start + batch_size], batch, [None] * len(batch))


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
    module: TaskModule, x: torch.Tensor, norm: Normalize | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The module's outputs and predictions (class indices; for regression the outputs) for
    the inputs x, normalized as in training."""
    x = x.to(device)
    x = norm.to(device)(x) if norm is not None else x.float()
    if len(x) == 0:
        empty = torch.empty(0, module.spec.num_outputs)
        return empty, empty
    return module(x).float().cpu(), module.predict(x).cpu()


class Columns:
    """The predictions CSV's columns and rows: input (or `first`: the id column's name),
    prediction (a class name, or a value in the target's own units), for classification the
    predicted class's probability (and with `all_probabilities` one column per class), and
    error (empty for a read input)."""

    def __init__(self, spec: DataSpec, all_probabilities: bool, first: str = "input") -> None:
        self.spec, self.all = spec, all_probabilities
        self.classes = list(spec.class_names) or [str(c) for c in range(max(spec.num_outputs, 2))]
        if spec.task == "regression":
            k = spec.num_outputs
            values = ["prediction"] if k == 1 else [f"prediction_{i}" for i in range(k)]
        else:
            values = ["prediction", "probability"]
            if all_probabilities:
                values += [f"probability_{c}" for c in self.classes]
        self.header = [first, *values, "error"]

    def rows(self, chunk: Chunk, output: torch.Tensor, predicted: torch.Tensor) -> list[list]:
        """One row per input of the chunk, from the outputs of those that were read."""
        values = iter(self.values(output, predicted))
        blank = [""] * (len(self.header) - 2)
        return [
            [name, *(blank if error else next(values)), error or ""]
            for name, error in zip(chunk.names, chunk.errors, strict=True)
        ]

    def values(self, output: torch.Tensor, predicted: torch.Tensor) -> list[list]:
        """The value columns of each output row."""
        spec = self.spec
        if spec.task == "regression":
            # float64, as the metrics in the target's units: exp of a float32 log price would
            # cost dollars of rounding.
            y = output.double()
            return (y if spec.target_scale is None else spec.target_scale.to_original(y)).tolist()
        if spec.task == "binary":
            p1 = torch.sigmoid(output.squeeze(-1).double())
            probabilities = torch.stack([1 - p1, p1], dim=-1)
        else:
            probabilities = torch.softmax(output.double(), dim=-1)
        rows = []
        for p, label in zip(probabilities.tolist(), predicted.tolist(), strict=True):
            row = [self.classes[label], p[label]]
            rows.append(row + p if self.all else row)
        return rows
