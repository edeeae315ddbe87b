"""The bad-input catalogue: every input nnlab refuses, in one table, each run as a user would run
it. A refused input ends with exit code 1 and exactly one `error: …` line (no traceback) that
says what is wrong, and leaves nothing behind: no run folder, no results, no checkpoint, and the
user's own files untouched. Legitimate but suspicious inputs log one `warning:` and run.

Most cases run in-process (the `make_cfg` fixture and nnlab.cli.run, as train.py and eval.py
call it); the ones that only a real process shows (Hydra making the run folder, the exit code)
run train.py and eval.py as subprocesses."""

from __future__ import annotations

import gzip
import logging
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from nnlab import cli
from nnlab.core import DataUnavailableError
from nnlab.data.download import make_folder
from nnlab.data.toy import XORDataModule
from nnlab.data.vision import CIFAR10CatsDogsDataModule, MNISTDataModule
from nnlab.evaluate import evaluate
from nnlab.train import train
from nnlab.validation import validate

from .conftest import run_script
from .helpers.data_formats import idx_gz

QUIET = ("logger=none",)
# What a refused run may leave in its folder (nnlab.cli removes a folder holding only these).
ALLOWED = (".hydra", "train.log", "eval.log")
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")


@dataclass(frozen=True)
class Bad:
    """One refused input: command-line overrides ({name} placeholders name the files of the
    `files` fixture) and a substring of the error line."""

    overrides: tuple[str, ...]
    message: str
    config: str = "train"


def bad(*overrides: str, message: str, config: str = "train", marks=()) -> pytest.param:
    name = " ".join(overrides) if config == "train" else f"eval.py {' '.join(overrides)}"
    return pytest.param(Bad(overrides, message, config), id=name.strip(), marks=marks)


def fill(text: str, files: dict[str, str]) -> str:
    """`text` with each {name} of `files` replaced by its path (other braces kept)."""
    for name, path in files.items():
        text = text.replace(f"{{{name}}}", path)
    return text


MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

CASES = [
    # -- data ----------------------------------------------------------------------------------
    bad("data=xor", "data.samples_per_corner=1", message="data.samples_per_corner must be >= 3"),
    bad(
        "data=xor",
        "data.samples_per_corner=4",
        "data.test_fraction=0.8",
        message="data.samples_per_corner must be >= 8 for data.test_fraction=0.8",
    ),
    bad("data=xor", "data.noise=-1", message="data.noise must be >= 0"),
    bad("data=separable", "data.n_features=0", message="data.n_features must be >= 1"),
    bad("data=separable", "data.margin=-1", message="data.margin must be >= 0"),
    bad(
        "data=separable", "data.margin=7", message="data.margin=7 keeps 5.1e-04 of the points drawn"
    ),
    bad(
        "data=separable",
        "data.n_samples=3",
        message="cannot hold out 20% of only 3 samples",
    ),
    bad("data=linear_regression", "data.n_features=0", message="data.n_features must be >= 1"),
    bad("data=linear_regression", "data.noise=-0.5", message="data.noise must be >= 0"),
    bad(
        "data=linear_regression",
        "data.outlier_fraction=1",
        message="data.outlier_fraction must be in [0, 1), got 1",
    ),
    bad("data.batch_size=0", message="batch_size must be a positive int or 'full'"),
    bad("data.val_fraction=1.5", message="data.val_fraction must be in (0, 1), got 1.5"),
    bad("data.val_fraction=x", message="data.val_fraction must be float, got 'x'"),
    bad("data.test_fraction=0", message="data.test_fraction must be in (0, 1), got 0"),
    bad("data.normalize=zscore", message="data.normalize must be one of global, feature, none"),
    bad("+data.bogus=1", message="data.bogus is not an option of nnlab.data.toy.DigitsData"),
    bad("data.seed=abc", message="data.seed must be int, got 'abc'"),
    bad("data=image_folder", message="data.root must be set, e.g. data.root=..."),
    bad("data=csv_classification", message="data.path must be set, e.g. data.path=..."),
    bad(
        "data=house_prices_csv",
        "data.path={huge_target}",
        "data.target=y",
        message="data.target=y in {huge_target} holds 1e+300, beyond float32's range (3.4e38)",
    ),
    bad("data=mnist", "data.variant=emnist", message="data.variant='emnist' is not an MNIST"),
    bad("data=mnist", "data.root={tmp}/nowhere", message="nowhere: no such folder"),
    bad("data=mnist", "data.root={no_labels}", message="lacks train-labels-idx1-ubyte.gz"),
    bad(
        "data=mnist",
        "data.root={damaged_gz}",
        message="train-images-idx3-ubyte.gz is damaged (Not a gzipped file (b'PK')): delete it",
    ),
    bad(
        "data=mnist",
        "data.root={cut_gz}",
        message="train-images-idx3-ubyte.gz is damaged (EOFError: Compressed file ended",
    ),
    # -- model, activation, init ---------------------------------------------------------------
    bad("data=digits", "model=perceptron", message="model=perceptron cannot train data=digits"),
    bad("data=linear_regression", "model=perceptron", message="model=perceptron cannot train"),
    bad("model.hidden_sizes=[0]", message="model.hidden_sizes must be ints >= 1, got [0]"),
    bad("model.hidden_sizes=abc", message="model.hidden_sizes must be a list of int, got 'abc'"),
    bad("model.dropout=1.5", message="model.dropout must be in [0, 1), got 1.5"),
    bad("model.norm=groupnorm", message="model.norm must be null or one of batchnorm, layernorm"),
    bad("activation.name=swish", message="unknown activation 'swish'; valid: identity"),
    bad("model.activation=swish", message="unknown activation 'swish'; valid: identity"),
    bad("activation=maxout", "activation.k=0", message="activation.k: maxout needs k >= 1"),
    bad("activation=prelu", "activation.init=abc", message="activation.init must be float"),
    bad("activation=elu", "+activation.beta=2", message="activation.beta is not an option of elu"),
    bad("init.name=orthogonal", message="unknown init 'orthogonal'; valid: default, zeros"),
    bad("init=normal", "init.std=-1", message="init.std must be >= 0, got -1"),
    bad("init=kaiming", "init.mode=fan_avg", message="init.mode must be fan_in or fan_out"),
    bad("+init.std=0.1", message="init=default takes no options, got std"),
    bad("init=xavier", "init.bias=abc", message="init.bias must be a number, got 'abc'"),
    # -- loss ------------------------------------------------------------------------------------
    bad("data=digits", "loss=mse", message="valid losses for multiclass: auto, cross_entropy"),
    bad(
        "data=linear_regression",
        "loss=cross_entropy",
        message="valid losses for regression: auto, mse, l1, huber",
    ),
    bad("data=xor", "loss=huber", message="valid losses for binary: auto, bce_with_logits"),
    bad(
        "data=linear_regression",
        "loss=huber",
        "loss.delta=-1",
        message="loss.delta must be > 0, got -1",
    ),
    bad("loss=cross_entropy", "loss.label_smoothing=2", message="loss.label_smoothing must be in"),
    bad(
        "loss=cross_entropy",
        "loss.weight=[1,2]",
        message="loss.weight has 2 entries but the data has 10 classes",
    ),
    # -- optimizer -------------------------------------------------------------------------------
    bad("optimizer.lr=0", message="optimizer.lr must be > 0 (a zero learning rate trains nothing)"),
    bad("optimizer.lr=-1", message="optimizer=adam: Invalid learning rate: -1"),
    bad("optimizer.lr=abc", message="optimizer.lr must be a number, got 'abc'"),
    bad("+optimizer.foo=1", message="optimizer.foo is not an option of torch.optim.Adam"),
    bad("optimizer.betas=[0.9]", message="optimizer.betas must be a list of 2 (float or Tensor"),
    # -- scheduler -------------------------------------------------------------------------------
    bad("scheduler=step", "scheduler.step_size=0", message="scheduler.step_size must be >= 1"),
    bad("scheduler=step", "scheduler.gamma=abc", message="scheduler.gamma must be float"),
    bad("scheduler=step", "scheduler.gamma=0", message="scheduler.gamma must be > 0"),
    bad("scheduler=cosine", "scheduler.T_max=0", message="scheduler.T_max must be >= 1"),
    bad(
        "scheduler=cosine",
        "trainer.max_epochs=-1",
        message="scheduler.T_max must be >= 1 (epochs of the decay), got -1 (from "
        "${trainer.max_epochs}: set scheduler.T_max itself)",
    ),
    bad(
        "scheduler=plateau",
        "scheduler.patience=-3",
        message="scheduler.patience must be >= 0 (epochs without improvement",
    ),
    bad("scheduler=plateau", "scheduler.factor=2", message="scheduler=plateau: Factor should be"),
    # -- trainer ---------------------------------------------------------------------------------
    bad("trainer.max_epochs=0", message="trainer.max_epochs must be >= 1, or -1 for no limit"),
    bad("trainer.max_epochs=-5", message="`max_epochs` must be a non-negative integer or -1"),
    bad("trainer.max_epochs=abc", message="trainer.max_epochs must be int or null, got 'abc'"),
    bad("+trainer.max_epoch=3", message="did you mean trainer.max_epochs? valid: accelerator"),
    bad("+trainer.max_steps=0", message="trainer.max_steps must be >= 1, or -1 for no limit"),
    bad("+trainer.limit_train_batches=0", message="trainer.limit_train_batches must be > 0"),
    bad("trainer.check_val_every_n_epoch=0", message="check_val_every_n_epoch must be >= 1"),
    bad("trainer.val_check_interval=0", message="trainer.val_check_interval must be > 0"),
    bad("+trainer.accumulate_grad_batches=0", message="accumulate_grad_batches must be >= 1"),
    bad("trainer.precision=bf17", message="trainer.precision must be one of 64, 32, 16, "),
    bad(
        "trainer=cpu",
        "trainer.precision=16-mixed",
        message="trainer.precision=16-mixed (fp16 autocast with gradient scaling) needs a CUDA "
        "GPU; on the CPU use trainer.precision=bf16-mixed or 32-true",
    ),
    bad(
        "trainer.precision=64-true",
        message="does not work with grouped training steps (speed.steps_per_batch=auto)",
    ),
    bad("trainer.devices=0", message="`Trainer(devices=0)` value is not a valid input"),
    bad("trainer.accelerator=tpu", message="Requirement 'torch_xla"),
    bad("trainer=gpu", message="trainer.accelerator=gpu, but torch", marks=NO_GPU),
    # -- speed -----------------------------------------------------------------------------------
    bad("speed.resident=sometimes", message="speed.resident must be one of auto, True, False"),
    bad("speed.optimizer_impl=fast", message="speed.optimizer_impl must be one of null, fused"),
    bad("speed.matmul_precision=low", message="speed.matmul_precision must be one of highest"),
    bad("speed.steps_per_batch=0", message="speed.steps_per_batch must be auto or an int >= 1"),
    bad("speed.cuda_graph=maybe", message="speed.cuda_graph must be true or false"),
    bad("speed.write_checkpoints_every_s=-1", message="write_checkpoints_every_s must be a number"),
    bad("speed.sanity_val_steps=-2", message="speed.sanity_val_steps must be null, -1"),
    # -- callbacks, diagnostics, logger, the optimized metric ------------------------------------
    bad("callbacks.model_checkpoint.mode=avg", message="`mode` can be min, max but got avg"),
    bad("diagnostics.layers.every_n_steps=0", message="diagnostics.layers.every_n_steps must be"),
    bad("logger=csv", "+logger.csv.bogus=1", message="logger.csv.bogus is not an option of"),
    bad(
        "logger=tensorboard",
        "+logger.tensorboard.bogus=1",
        message="logger.tensorboard.bogus is not an option of lightning.pytorch.loggers."
        "TensorBoardLogger (or SummaryWriter); valid: comment",
    ),
    bad(
        "optimized_metric=val/f00",
        "optimized_mode=max",
        message="valid: val/acc, val/acc_best, val/f1, val/loss",
    ),
    bad("optimized_metric=val/nope", message="cannot tell whether 'val/nope' should go up or down"),
    bad("optimized_mode=sideways", message="`mode` can be min, max but got sideways"),
    # -- paths -----------------------------------------------------------------------------------
    bad("paths.data_dir={notes}/data", message="paths.data_dir={notes}/data: {notes} is a file"),
    bad("paths.root_dir={notes}/x", message="paths.root_dir={notes}/x: {notes} is a file, not a"),
    bad("task_name=../../../escaped", message="task_name='../../../escaped' is not a name: it"),
    bad("task_name=", message="task_name='' is not a name: it names a folder, so it must be a"),
    # -- ckpt_path -------------------------------------------------------------------------------
    bad("ckpt_path=/no/such.ckpt", message="ckpt_path=/no/such.ckpt: no such file"),
    bad("ckpt_path={empty_ckpt}", message="is not a readable checkpoint: it is empty (0 bytes)"),
    bad("ckpt_path={cut_ckpt}", message="it is truncated: a checkpoint cut short at 1,004 bytes"),
    bad("ckpt_path={notes}", message="it is not a PyTorch checkpoint (torch.save writes a zip"),
    bad("ckpt_path={zip_ckpt}", message="zip.ckpt is not a readable checkpoint"),
    bad("ckpt_path=last", message="ckpt_path=last: there is no checkpoints/last.ckpt"),
    bad("ckpt_path=ftp://x/y.ckpt", message="ftp:// is not supported; use a local file or an"),
    bad("ckpt_path=http://127.0.0.1:9/y.ckpt", message="y.ckpt cannot be downloaded"),
    bad("ckpt_path=http://127.0.0.1:9/x/..", message="x/.. cannot be downloaded"),
    bad("ckpt_path={tmp}", message="is a folder, not a checkpoint file"),
    bad("model._target_=os.system", message="model._target_='os.system' is not a registered"),
    # -- seed and top-level switches -------------------------------------------------------------
    bad("seed=abc", message="seed must be an int in [0, 4294967295] or null, got 'abc'"),
    bad("seed=-1", message="seed must be an int in [0, 4294967295] or null, got -1"),
    bad("seed=4294967296", message="seed must be an int in [0, 4294967295] or null"),
    bad("test=maybe", message="test must be true or false, got 'maybe'"),
    bad("print_config=no", message="print_config must be true or false, got 'no'"),
    # -- eval.py ---------------------------------------------------------------------------------
    bad(config="eval", message="ckpt_path must be set, e.g. ckpt_path=..."),
    bad("ckpt_path=/no/such.ckpt", config="eval", message="ckpt_path=/no/such.ckpt: no such"),
    bad("ckpt_path={cut_ckpt}", config="eval", message="it is truncated: a checkpoint cut short"),
    bad("ckpt_path={notes}", config="eval", message="it is not a PyTorch checkpoint"),
    bad("ckpt_path={zip_ckpt}", "+trainer.max_epoch=1", config="eval", message="trainer.max_ep"),
    bad("ckpt_path={zip_ckpt}", "seed=abc", config="eval", message="seed must be an int in"),
    bad("ckpt_path={zip_ckpt}", "data=digits", "+data.foo=1", config="eval", message="data.foo"),
    bad("ckpt_path={zip_ckpt}", "paths.data_dir={notes}/d", config="eval", message="is a file"),
    bad("ckpt_path={tmp}", config="eval", message="is a folder, not a checkpoint file"),
    # Checkpoints that name a foreign part (nnlab.tasks.loading; more: test_checkpoint_payloads).
    bad("ckpt_path={foreign_module}", config="eval", message="nnlab_module='os.system' is not"),
    bad("ckpt_path={foreign_loss}", config="eval", message="its loss config is refused: unknown"),
    bad("ckpt_path={other_task}", config="eval", message="its spec is a binary task, but its"),
]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """The user's files the cases name: a text file, broken checkpoints, MNIST folders with a
    missing or damaged file."""
    made = tmp_path / "mine"
    made.mkdir()
    (made / "notes.txt").write_text("not a folder, not a checkpoint\n")
    rows = "".join(f"{i},{i % 7}\n" for i in range(40))
    (made / "huge_target.csv").write_text(f"x,y\n{rows}99,1e300\n")
    (made / "empty.ckpt").write_bytes(b"")
    # What torch.save writes starts as a zip archive; cut short, its directory is missing.
    (made / "cut.ckpt").write_bytes(b"PK\x03\x04" + bytes(1000))
    zipfile_ckpt = made / "zip.ckpt"
    with zipfile.ZipFile(zipfile_ckpt, "w") as zf:
        zf.writestr("notes.txt", "a zip archive, but no checkpoint")
    for name, damaged in (
        ("no_labels", None),
        ("damaged_gz", b"PK\x03\x04 a zip, not a gzip"),
        ("cut_gz", idx_gz(np.zeros((60, 28, 28), np.uint8))[:200]),
    ):
        folder = made / name
        folder.mkdir()
        for file in MNIST_FILES:
            (folder / file).write_bytes(gzip.compress(b""))
        if damaged is None:
            (folder / "train-labels-idx1-ubyte.gz").unlink()
        else:
            (folder / "train-images-idx3-ubyte.gz").write_bytes(damaged)
    return {
        "tmp": str(tmp_path),
        "notes": str(made / "notes.txt"),
        "huge_target": str(made / "huge_target.csv"),
        "empty_ckpt": str(made / "empty.ckpt"),
        "cut_ckpt": str(made / "cut.ckpt"),
        "zip_ckpt": str(zipfile_ckpt),
        **crafted_checkpoints(made),
        **{name: str(made / name) for name in ("no_labels", "damaged_gz", "cut_gz")},
    }


def crafted_checkpoints(made: Path) -> dict[str, str]:
    """Checkpoints whose task module, loss or spec is foreign or does not fit (no weights: they
    are refused before any are read)."""
    spec = {"task": "binary", "input_shape": [2], "num_outputs": 1}
    hparams = {"spec": spec, "model": {"_target_": "nnlab.nn.networks.MLP"}}
    cases = {
        "foreign_module": {"nnlab_module": "os.system", "hyper_parameters": hparams},
        "foreign_loss": {
            "nnlab_module": "BinaryTask",
            "hyper_parameters": {**hparams, "loss": {"name": "builtins.open"}},
        },
        "other_task": {"nnlab_module": "MulticlassTask", "hyper_parameters": hparams},
    }
    for name, checkpoint in cases.items():
        torch.save({"state_dict": {}, **checkpoint}, made / f"{name}.ckpt")
    return {name: str(made / f"{name}.ckpt") for name in cases}


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its contents."""
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_refused(message: str, printed: str, expected: str) -> None:
    """One `error:` line, saying `expected`, and no traceback anywhere in the output."""
    assert message.startswith("error: "), message
    assert [line for line in message.splitlines() if line.startswith("error:")] == [
        message.splitlines()[0]
    ]
    assert expected in message, message
    assert "Traceback" not in printed and "Traceback" not in message


@pytest.mark.parametrize("case", CASES)
def test_a_bad_input_is_refused_with_one_error_line_and_leaves_nothing(
    make_cfg, files, tmp_path, capsys, monkeypatch, case
):
    monkeypatch.setenv("NNLAB_DATA_MIRROR", "http://127.0.0.1:9")  # nothing is downloaded
    monkeypatch.setenv("NNLAB_DATA_DIR", str(tmp_path / "data"))
    overrides = [fill(o, files) for o in case.overrides]
    quiet = () if any(o.lstrip("+").startswith("logger") for o in overrides) else QUIET
    cfg = make_cfg(*overrides, *quiet, config_name=case.config)
    mine = snapshot(tmp_path / "mine")
    main = train if case.config == "train" else evaluate
    with pytest.raises(SystemExit) as refused:
        cli.run(main, cfg)
    # SystemExit with a message: Python prints it to stderr and exits with status 1.
    assert isinstance(refused.value.code, str)
    printed = capsys.readouterr()
    assert_refused(refused.value.code, printed.out + printed.err, fill(case.message, files))
    # Nothing left behind: no run folder, no results or checkpoints, the user's files as they were.
    run = Path(cfg.paths.output_dir)
    left = {p.name for p in run.iterdir()} if run.exists() else set()
    assert not left, left
    assert snapshot(tmp_path / "mine") == mine
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "mine" not in p.parts]
    assert not [p for p in written if p.suffix in (".json", ".ckpt", ".csv")], written


def test_the_catalogue_holds_at_least_50_cases_over_every_group():
    assert len(CASES) >= 50
    text = " ".join(" ".join(p.values[0].overrides) for p in CASES)
    for group in (
        "data",
        "model",
        "activation",
        "init",
        "loss",
        "optimizer",
        "scheduler",
        "trainer",
        "speed",
        "callbacks",
        "diagnostics",
        "logger",
        "paths",
        "ckpt_path",
        "seed",
    ):
        assert f"{group}." in text or f"{group}=" in text, group
    assert any(p.values[0].config == "eval" for p in CASES)


# -- legitimate but suspicious: a warning, and the run goes on -----------------------------------
WARNINGS = [
    (("optimizer.lr=1",), "optimizer.lr=1 is large for Adam, which moves every weight by about"),
    (("optimizer=adamw", "optimizer.lr=3.0"), "optimizer.lr=3.0 is large for AdamW"),
    (("trainer.max_epochs=-1",), "trainer.max_epochs=-1 and no trainer.max_steps: training goes"),
    (
        ("scheduler=step", "trainer.max_epochs=5"),
        "scheduler.step_size=10 >= trainer.max_epochs=5: the learning rate never drops",
    ),
    (
        ("scheduler=cosine", "scheduler.T_max=3", "trainer.max_epochs=10"),
        "scheduler.T_max=3 < trainer.max_epochs=10: the cosine schedule is periodic",
    ),
    (("optimizer=sgd", "optimizer.lr=1"), None),  # SGD's step scales with the gradient
    (("scheduler=step", "scheduler.step_size=3", "trainer.max_epochs=10"), None),
    (("scheduler=cosine",), None),  # T_max follows max_epochs
]


@pytest.mark.parametrize(("overrides", "warning"), WARNINGS, ids=lambda v: " ".join(v or ""))
def test_a_suspicious_input_warns_and_runs_on(make_cfg, caplog, overrides, warning):
    with caplog.at_level(logging.WARNING, logger="nnlab.validation"):
        assert validate(make_cfg(*overrides, *QUIET)) == "multiclass"  # not refused
    lines = [r.getMessage() for r in caplog.records if r.name == "nnlab.validation"]
    if warning is None:
        assert lines == []
    else:
        assert len(lines) == 1 and warning in lines[0], lines


# -- damaged downloads are removed from the cache; data folders that cannot be made ------------
def test_a_damaged_file_in_the_download_cache_is_removed_for_the_next_run(tmp_path):
    dm = MNISTDataModule(data_dir=tmp_path, progress=False)
    dm.folder.mkdir(parents=True)
    cached = dm.folder / "train-images-idx3-ubyte.gz"
    cached.write_bytes(idx_gz(np.zeros((60, 28, 28), np.uint8))[:200])
    with pytest.raises(DataUnavailableError, match="it was removed, so the next run downloads"):
        dm.read(cached)
    assert not cached.exists()


def test_a_damaged_cifar_batch_removes_the_unpacked_folder(tmp_path):
    dm = CIFAR10CatsDogsDataModule(data_dir=tmp_path, progress=False)
    dm.batches_dir.mkdir(parents=True)
    (dm.batches_dir / "data_batch_1.bin").write_bytes(bytes(3073 + 5))
    with pytest.raises(DataUnavailableError, match="so the next run unpacks the archive again"):
        dm.read(dm.batches_dir / "data_batch_1.bin")
    assert not dm.batches_dir.parent.exists()


def test_a_data_folder_under_a_file_is_one_error(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataUnavailableError, match=r"cannot make the data folder .*notes\.txt/d"):
        make_folder(tmp_path / "notes.txt" / "d")


def test_xor_needs_a_point_per_corner_in_every_split():
    """The smallest samples_per_corner XOR takes is the smallest that leaves training points."""
    assert XORDataModule(samples_per_corner=3).corner_sizes(3) == {"train": 1, "val": 1, "test": 1}
    dm = XORDataModule(samples_per_corner=3)
    dm.setup()
    assert {k: len(v[0]) for k, v in dm.splits.items()} == {"train": 4, "val": 4, "test": 4}


# -- as a user runs them: real processes, Hydra making the run folder ---------------------------
def only_error_line(proc) -> str:
    """The process's one `error:` line, after checking the exit code and that no traceback was
    printed."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def runs_left(logs: Path) -> list[Path]:
    """Run folders holding more than a refused run may leave (nnlab.cli removes those)."""
    folders = [*logs.glob("*/runs/*"), *logs.glob("*/multiruns/*/*")]
    return [f for f in folders if any(p.name not in ALLOWED for p in f.iterdir())]


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("train.py", ("hydra.run.dir={notes}/run",), "hydra.run.dir={notes}/run: {notes} is a"),
        ("train.py", ("paths.log_dir={notes}/logs",), "paths.log_dir={notes}/logs: {notes} is a"),
        ("eval.py", ("ckpt_path=x.ckpt", "paths.log_dir={notes}/l"), "paths.log_dir={notes}/l:"),
        (
            "train.py",
            ("-m", "hydra.sweep.dir={notes}/sweep", "seed=1,2"),
            "hydra.sweep.dir={notes}/sweep: {notes} is a file, not a folder",
        ),
    ],
    ids=["run dir", "log_dir", "eval log_dir", "sweep dir"],
)
def test_a_run_folder_under_a_file_is_one_error_line_before_hydra_makes_it(
    tmp_path, script, args, message
):
    notes = tmp_path / "notes.txt"
    notes.write_text("a file\n")
    proc = run_script(script, *(a.format(notes=notes) for a in args), cwd=tmp_path, check=False)
    assert message.format(notes=notes) in only_error_line(proc)
    assert notes.read_text() == "a file\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "notes.txt"
    ]


def test_refused_in_a_real_process(tmp_path):
    """train.py and eval.py themselves: exit code 1, the one line, no run folder left."""
    proc = run_script(
        "train.py", "data=xor", "data.samples_per_corner=2", cwd=tmp_path, check=False
    )
    assert "data.samples_per_corner must be >= 3" in only_error_line(proc)
    (tmp_path / "cut.ckpt").write_bytes(b"PK\x03\x04" + bytes(60))
    proc = run_script("eval.py", "ckpt_path=cut.ckpt", cwd=tmp_path, check=False)
    assert "ckpt_path=cut.ckpt is not a readable checkpoint: it is truncated" in only_error_line(
        proc
    )
    assert runs_left(tmp_path / "logs") == []
    proc = run_script("train.py", "model._target_=os.system", cwd=tmp_path, check=False)
    assert "model._target_='os.system' is not a registered network" in only_error_line(proc)
    assert not list((tmp_path / "logs").glob("train/runs/*")), "its .hydra/ and train.log stay"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("data=digit",), "Could not find 'data/digit'"),
        (("trainer.max_epoch=3",), "To append to your config use +trainer.max_epoch=3"),
        (("model.hidden_sizes=[1,",), "no viable alternative at input '[1,'"),
    ],
    ids=["unknown option", "unknown key", "override syntax"],
)
def test_what_hydra_refuses_while_composing_is_its_own_message_without_a_traceback(
    tmp_path, args, message
):
    """Hydra composes the config before nnlab sees it: its message, exit code 1, no run."""
    proc = run_script("train.py", *args, cwd=tmp_path, check=False)
    assert proc.returncode == 1 and message in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "logs").exists()


# -- predict.py: inputs and outputs it refuses (real processes, a real trained checkpoint) ------
PREDICT_CASES = [
    ("output={points}", "output={points} is the input (input={points}): give another output"),
    ("output={points} overwrite=true", "output={points} is the input"),
    ("input={pictures} output={pictures}/p.csv", "is inside the input folder (input={pictures})"),
    ("output={old}", "output={old}: {old} exists; set overwrite=true to replace it"),
    ("output={ckpt} overwrite=true", "output={ckpt} is the checkpoint (ckpt_path={ckpt})"),
    ("output={ckpt_dir}/p.csv", "output={ckpt_dir}/p.csv is in the checkpoints folder"),
    ("output=/dev/full", "/dev/full is a character device, not a regular file"),
    ("output=/dev/full overwrite=true", "/dev/full is a character device, not a regular file"),
    ("output={notes}/p.csv", "output={notes}/p.csv: {notes} is a file, not a folder"),
    ("output=", "output must be a file or a folder, or null (the run folder)"),
    ("overwrite=maybe", "overwrite must be true or false, got 'maybe'"),
    ("input={pipe}", "input={pipe} is a FIFO (named pipe), not a regular file"),
    ("input={header}", "input={header} holds no inputs (no rows)"),
    ("input={none_npy}", "input={none_npy} holds no inputs (no rows)"),
    ("input={text_npy}", "input={text_npy} holds text (dtype <U3)"),
    ("input={complex_npy}", "input={complex_npy} holds complex numbers (dtype complex128)"),
    ("input={bool_npy}", "input={bool_npy} holds booleans (dtype bool)"),
    ("input={object_npy}", "input={object_npy} holds Python objects (dtype object)"),
    ("input={big_npy}", "holds integers up to 4,611,686,018,427,387,904 (dtype int64), beyond"),
]


@pytest.fixture(scope="module")
def xor_ckpt(tmp_path_factory) -> Path:
    """A real checkpoint: train.py's best.ckpt after one epoch on XOR (2 numbers per input)."""
    folder = tmp_path_factory.mktemp("xor")
    run_script(
        "train.py", "data=xor", "logger=none", "diagnostics=none", "trainer.max_epochs=1",
        "model.hidden_sizes=[4]", "hydra.run.dir=run", cwd=folder,
    )  # fmt: skip
    return folder / "run" / "checkpoints" / "best.ckpt"


@pytest.fixture
def predict_files(tmp_path: Path, xor_ckpt: Path) -> dict[str, str]:
    """The user's files the predict cases name: inputs of every refused kind, an earlier
    output, a text file, a folder of pictures; and the checkpoint."""
    from PIL import Image

    made = tmp_path / "mine"
    (made / "pictures").mkdir(parents=True)
    Image.new("L", (4, 4)).save(made / "pictures" / "a.png")
    (made / "points.csv").write_text("x1,x2\n0,1\n1,0\n")
    (made / "header.csv").write_text("x1,x2\n")
    (made / "old.csv").write_text("precious\n")
    (made / "notes.txt").write_text("not a folder\n")
    os.mkfifo(made / "pipe.csv")  # a reader would wait for a writer forever
    arrays = {
        "none_npy": np.zeros((0, 2), np.float32),
        "text_npy": np.array([["abc", "d"]]),
        "complex_npy": np.ones((3, 2), complex),
        "bool_npy": np.ones((3, 2), bool),
        "big_npy": np.array([[1, 2**62]], np.int64),
    }
    for name, array in arrays.items():
        np.save(made / f"{name}.npy", array)
    np.save(made / "object_npy.npy", np.array([[1, "x"]], object), allow_pickle=True)
    names = ("points.csv", "header.csv", "old.csv", "notes.txt", "pipe.csv", "pictures")
    return {
        **{name.split(".")[0]: str(made / name) for name in names},
        **{name: str(made / f"{name}.npy") for name in [*arrays, "object_npy"]},
        "ckpt": str(xor_ckpt),
        "ckpt_dir": str(xor_ckpt.parent),
    }


@pytest.mark.parametrize(("args", "message"), PREDICT_CASES, ids=[a for a, _ in PREDICT_CASES])
def test_predict_refuses_with_one_error_line_and_leaves_nothing(
    tmp_path, xor_ckpt, predict_files, args, message
):
    mine, checkpoints = snapshot(tmp_path / "mine"), snapshot(xor_ckpt.parent)
    args = fill(args, predict_files).split(" ")
    if not any(a.startswith("input=") for a in args):
        args.append(f"input={predict_files['points']}")
    proc = run_script(
        "predict.py", f"ckpt_path={xor_ckpt}", *args, cwd=tmp_path, check=False, timeout=240
    )
    assert fill(message, predict_files) in only_error_line(proc)
    # The user's files as they were (none added: no output, no temporary file), no run folder.
    assert snapshot(tmp_path / "mine") == mine and snapshot(xor_ckpt.parent) == checkpoints
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and "mine" not in p.parts]


# -- run folders, resumes and writes that cannot be, in real processes ---------------------------
LONG_NAME = "x" * 400


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("task_name=../../../escaped",), "task_name='../../../escaped' is not a name"),
        (("task_name=",), "task_name='' is not a name: it names a folder"),
        (("task_name=a\\\\b",), "is not a name: it names a folder"),
        (
            (f"hydra.run.dir={{tmp}}/{LONG_NAME}",),
            f"hydra.run.dir={{tmp}}/{LONG_NAME}: cannot make this folder (File name too long)",
        ),
        (
            ("paths.log_dir=/proc/nnlab_x",),
            "paths.log_dir=/proc/nnlab_x: cannot make this folder (No such file or directory)",
        ),
    ],
    ids=["task_name climbs out", "empty task_name", "backslash", "400-byte run dir", "/proc"],
)
def test_a_run_folder_that_cannot_be_made_is_one_error_line_and_leaves_nothing(
    tmp_path, args, message
):
    if "/proc" in message and not Path("/proc/self").is_dir():
        pytest.skip("no /proc on this system")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = run_script("train.py", *(a.format(tmp=tmp_path) for a in args), cwd=cwd, check=False)
    assert message.format(tmp=tmp_path) in only_error_line(proc)
    assert list(tmp_path.iterdir()) == [cwd] and list(cwd.iterdir()) == []
    assert not (tmp_path.parent / "escaped").exists()


QUICK_XOR = ("data=xor", "logger=none", "diagnostics=none", "model.hidden_sizes=[4]")


def test_a_resume_with_nothing_left_to_fit_is_one_error_line(tmp_path, xor_ckpt):
    """The checkpoint has trained 1 epoch: trainer.max_epochs=1 leaves nothing to fit."""
    before = snapshot(xor_ckpt.parent.parent)
    proc = run_script(
        "train.py", *QUICK_XOR, f"ckpt_path={xor_ckpt}", "trainer.max_epochs=1",
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert only_error_line(proc) == (
        f"error: ckpt_path={xor_ckpt} has trained 1 epoch already, and trainer.max_epochs=1 "
        "asks for no more: nothing is left to fit. Raise it to train on, or evaluate the "
        "checkpoint with eval.py"
    )
    assert runs_left(tmp_path / "logs") == [] and snapshot(xor_ckpt.parent.parent) == before


def test_a_resume_past_the_file_size_limit_is_one_error_line(tmp_path, xor_ckpt):
    """`ulimit -f` below a checkpoint's size: the resume cannot copy best.ckpt into its new
    folder (Python ignores SIGXFSZ, so the write fails with EFBIG)."""
    resource = pytest.importorskip("resource")
    before = snapshot(xor_ckpt.parent.parent)
    limit = xor_ckpt.stat().st_size // 2

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parents[1] / "train.py"), *QUICK_XOR,
         f"ckpt_path={xor_ckpt}", "trainer.max_epochs=3"],
        cwd=tmp_path, env=env, preexec_fn=limited, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert "File too large (the file-size limit of this shell: `ulimit -f`)" in only_error_line(
        proc
    )
    assert runs_left(tmp_path / "logs") == [] and snapshot(xor_ckpt.parent.parent) == before
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix not in (".log", ".yaml")]


def test_a_lecture_option_of_the_wrong_type_is_one_error_line(tmp_path):
    """`python -m nnlab.lecture init_variance -o depth=abc`: refused before the study runs
    (the lecture CLI's usage errors exit with 2)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "nnlab.lecture", "init_variance", "--fast", "--out",
         str(tmp_path / "lecture"), "-o", "depth=abc"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr.strip() == "error: -o depth='abc' must be an int > 0 or null"
    assert list(tmp_path.iterdir()) == []
