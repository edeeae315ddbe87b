"""predict.py: a checkpoint predicts new inputs with the preprocessing it was trained with, so
its predictions are the outputs the model gave the same rows in evaluation."""

from __future__ import annotations

import csv
import itertools
import os
import resource
import socket
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict
from PIL import Image

from nnlab.core import ConfigError
from nnlab.core.hydra import register_resolvers
from nnlab.data.base import PREPROCESSING_KEY
from nnlab.data.csv_reader import read_csv, read_csv_chunks
from nnlab.data.images import find_images
from nnlab.evaluate import load_module
from nnlab.predict import NOT_FINITE, UNDECODABLE, count_rows, predict
from nnlab.train import train

from .conftest import CONFIG_DIR, ROOT, run_script
from .helpers.data_formats import california_rows

QUIET = ("logger=none", "diagnostics=none", "trainer.max_epochs=1")


def predict_cfg(tmp_path: Path, *overrides: str) -> DictConfig:
    """configs/predict.yaml with overrides, a new run folder in tmp_path (as Hydra gives each
    run), no progress bar nor config tree."""
    register_resolvers()
    GlobalHydra.instance().clear()
    run = next(i for i in itertools.count() if not (tmp_path / f"predict{i}").exists())
    overrides = (*overrides, f"paths.output_dir={tmp_path}/predict{run}")
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("predict", overrides=list(overrides))
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.progress = cfg.print_config = False
    return cfg


def fit(make_cfg, *overrides: str) -> tuple[str, object]:
    """Trains a small model in-process; returns its best checkpoint and the datamodule built
    again from the run's data config (its splits are the ones the run used)."""
    from hydra.utils import instantiate

    cfg = make_cfg(*QUIET, "model.hidden_sizes=[16]", *overrides)
    train(cfg)
    (ckpt,) = Path(cfg.paths.output_dir, "checkpoints").glob("best.ckpt")
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup()
    return str(ckpt), datamodule


def read_rows(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def model_probabilities(ckpt: str, x: torch.Tensor, datamodule) -> torch.Tensor:
    """The class probabilities the trained module gives the inputs x as its datamodule
    normalizes them: what eval.py sees."""
    module = load_module(ckpt).eval()
    with torch.no_grad():
        norm = datamodule.normalizer
        out = module(x if norm is None else norm(x)).double()
    if module.spec.task == "binary":
        p1 = torch.sigmoid(out.squeeze(-1))
        return torch.stack([1 - p1, p1], dim=-1)
    return torch.softmax(out, dim=-1)


def probabilities(rows: list[dict[str, str]], classes: list[str]) -> torch.Tensor:
    return torch.tensor(
        [[float(r[f"probability_{c}"]) for c in classes] for r in rows], dtype=torch.float64
    )


def test_mnist_style_images_predict_what_the_model_gave_the_test_split(make_cfg, tmp_path):
    ckpt, dm = fit(
        make_cfg, "data=synthetic_mnist", "data.n_train=400", "data.n_test=60", "model=mlp"
    )
    x_test = dm.splits["test"][0]  # (60, 1, 28, 28) uint8
    folder = tmp_path / "digits"
    (folder / "more").mkdir(parents=True)
    for i, image in enumerate(x_test):
        sub = folder / "more" if i % 2 else folder
        Image.fromarray(image[0].numpy()).save(sub / f"{i:03d}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "chosen" / "preds.csv"
    cfg = predict_cfg(
        tmp_path, f"ckpt_path={ckpt}", f"input={folder}", "all_probabilities=true",
        f"output={out}", "batch_size=16",
    )  # fmt: skip
    assert predict(cfg) == str(out)
    rows = {r["input"]: r for r in read_rows(out)}
    assert rows.pop("broken.png")["error"] == UNDECODABLE
    names = [f"{'more/' if i % 2 else ''}{i:03d}.png" for i in range(len(x_test))]
    ordered = [rows[n] for n in names]
    classes = [str(c) for c in range(10)]
    expected = model_probabilities(ckpt, x_test, dm)
    got = probabilities(ordered, classes)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert [r["prediction"] for r in ordered] == [classes[i] for i in expected.argmax(-1)]
    assert [float(r["probability"]) for r in ordered] == pytest.approx(
        expected.max(-1).values.tolist(), rel=1e-5
    )
    assert all(r["error"] == "" for r in ordered)
    assert not list(tmp_path.glob("predict*"))  # output= chose the file


def test_arrays_and_csv_of_numbers_predict_what_the_model_gave(make_cfg, tmp_path):
    ckpt, dm = fit(make_cfg, "data=digits")
    x_test = dm.splits["test"][0]  # (N, 1, 8, 8) floats 0..16
    np.save(tmp_path / "digits.npy", x_test.numpy())
    np.save(tmp_path / "no_channel.npy", x_test[:, 0].numpy())  # (N, 8, 8): grey, as is usual
    table = tmp_path / "digits.csv"
    header = ",".join(f"pixel{i}" for i in range(64))
    np.savetxt(
        table, x_test.reshape(len(x_test), -1).numpy(), "%g", ",", header=header, comments=""
    )
    expected = model_probabilities(ckpt, x_test, dm)
    for name in ("digits.npy", "no_channel.npy", "digits.csv"):
        cfg = predict_cfg(tmp_path, f"ckpt_path={ckpt}", f"input={tmp_path / name}")
        rows = read_rows(predict(cfg))
        assert [r["input"] for r in rows] == [str(i) for i in range(len(x_test))]
        assert [r["prediction"] for r in rows] == [str(int(i)) for i in expected.argmax(-1)]
        assert [float(r["probability"]) for r in rows] == pytest.approx(
            expected.max(-1).values.tolist(), rel=1e-5
        )
        assert "probability_0" not in rows[0]  # all_probabilities=false
    # An image of a digit: 0..255 grey levels mapped onto the training range 0..16.
    png = tmp_path / "seven.png"
    Image.fromarray((x_test[0, 0] * 255 / 16).round().byte().numpy()).save(png)
    (row,) = read_rows(predict(predict_cfg(tmp_path, f"ckpt_path={ckpt}", f"input={png}")))
    assert row["input"] == str(png) and row["prediction"] == str(int(expected[0].argmax()))

    short = tmp_path / "short.csv"
    short.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="has 2 columns; the model takes 64 numbers per input"):
        predict(predict_cfg(tmp_path, f"ckpt_path={ckpt}", f"input={short}"))
    np.save(tmp_path / "wrong.npy", np.zeros((3, 7)))
    with pytest.raises(ConfigError, match=r"shape \[3, 7\]; the model takes inputs of shape"):
        predict(predict_cfg(tmp_path, f"ckpt_path={ckpt}", f"input={tmp_path / 'wrong.npy'}"))


def make_pets(root: Path) -> None:
    """Small photos of two classes, of other sizes and shapes than the model's input (cropped
    and resized as in training), and a file that does not decode (skipped by training)."""
    g = np.random.default_rng(0)
    for label, (name, tint) in enumerate((("cat", (200, 80, 40)), ("dog", (40, 90, 200)))):
        (root / name).mkdir(parents=True)
        for i in range(24):
            size = (20 + 3 * i % 17, 18 + i % 9)  # (width, height)
            noise = g.integers(0, 120, (size[1], size[0], 3))
            pixels = np.clip(np.array(tint) + noise - 60 * label, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}{i}.{'png' if i % 2 else 'jpg'}")
    (root / "dog" / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")


def test_image_folder_predictions_equal_the_decoded_training_images(make_cfg, tmp_path):
    root = tmp_path / "pets"
    make_pets(root)
    ckpt, dm = fit(
        make_cfg, "data=cats_vs_dogs", f"data.root={root}", "data.image_size=12",
        f"paths.data_dir={tmp_path / 'data'}",
    )  # fmt: skip
    checkpoint = torch.load(ckpt, weights_only=True)
    prep = checkpoint["CatsVsDogsDataModule"][PREPROCESSING_KEY]
    assert prep["kind"] == "image" and prep["image"] == {
        "size": 12, "grayscale": False, "range": [0.0, 255.0]
    }  # fmt: skip
    rows = read_rows(predict(predict_cfg(tmp_path, f"ckpt_path={ckpt}", f"input={root}")))
    by_name = {r["input"]: r for r in rows}
    assert by_name.pop("dog/truncated.jpg")["error"] == UNDECODABLE
    # Every image the training run decoded (its cache, in find_images' order), as eval sees it.
    decoded = dm._cached()["splits"]["train"]["x"]
    files = [f for f in find_images(root).files if f.name != "truncated.jpg"]
    expected = model_probabilities(ckpt, decoded, dm)
    names = [str(f.relative_to(root)) for f in files]
    assert [by_name[n]["prediction"] for n in names] == [
        ("cat", "dog")[i] for i in expected.argmax(-1)
    ]
    got = [float(by_name[n]["probability"]) for n in names]
    assert got == pytest.approx(expected.max(-1).values.tolist(), rel=1e-5)


def test_refusals_name_the_problem(make_cfg, tmp_path):
    ckpt, _ = fit(make_cfg, "data=xor")
    with pytest.raises(ConfigError, match="this model does not take images"):
        png = tmp_path / "x.png"
        Image.new("L", (4, 4)).save(png)
        predict(predict_cfg(tmp_path, f"ckpt_path={ckpt}", f"input={png}"))
    with pytest.raises(FileNotFoundError, match=r"input=nowhere\.csv: no such file or folder"):
        predict(predict_cfg(tmp_path, f"ckpt_path={ckpt}", "input=nowhere.csv"))
    # A checkpoint saved without the preprocessing (before predict.py existed).
    old = torch.load(ckpt, weights_only=True)
    del old["XORDataModule"]
    torch.save(old, tmp_path / "old.ckpt")
    with pytest.raises(ConfigError, match="holds no preprocessing"):
        predict(predict_cfg(tmp_path, f"ckpt_path={tmp_path / 'old.ckpt'}", f"input={png}"))


def test_options_are_checked_before_the_checkpoint_is_read(tmp_path):
    common = ("ckpt_path=never_read.ckpt", f"input={tmp_path}")
    with pytest.raises(ConfigError, match="batch_size must be a positive int, got 0"):
        predict(predict_cfg(tmp_path, *common, "batch_size=0"))
    with pytest.raises(ConfigError, match="device must be auto, cpu, cuda or cuda:<n>"):
        predict(predict_cfg(tmp_path, *common, "device=tpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no GPU is available here; use device=cpu"):
            predict(predict_cfg(tmp_path, *common, "device=cuda"))
    with pytest.raises(FileNotFoundError, match=r"ckpt_path=never_read\.ckpt: no such file"):
        predict(predict_cfg(tmp_path, *common))


def test_predict_py_writes_predictions_into_its_run_folder(make_cfg, tmp_path):
    ckpt, _ = fit(make_cfg, "data=xor")
    points = tmp_path / "points.csv"
    points.write_text("x1,x2\n0,1\n1,1\n0.05,-0.02\n")
    proc = run_script(
        "predict.py", f"ckpt_path={ckpt}", f"input={points}", "progress=false", cwd=tmp_path
    )
    (run,) = (tmp_path / "logs" / "predict" / "runs").iterdir()
    assert f"predictions: {run / 'predictions.csv'} (3 inputs, 0 unreadable)" in proc.stdout
    assert (run / "config_tree.txt").is_file() and (run / ".hydra" / "config.yaml").is_file()
    rows = read_rows(run / "predictions.csv")
    assert [r["input"] for r in rows] == ["0", "1", "2"]
    assert all(r["prediction"] in ("0", "1") and 0.5 <= float(r["probability"]) <= 1 for r in rows)


def make_houses(path: Path, rows: int = 80) -> None:
    """A small table of houses: numbers with gaps, a text column, a price and a class."""
    g = np.random.default_rng(1)
    lines = ["Id,area,rooms,city,price,kind"]
    for i in range(rows):
        area = "" if i % 9 == 0 else f"{g.uniform(40, 200):.1f}"
        rooms, city = g.integers(1, 6), ("north", "south", "east")[i % 3]
        price = 1000 * (50 + 2 * float(area or 100) + 20 * rooms) * (1.3 if city == "south" else 1)
        kind = ("flat", "house")[int(float(area or 100) > 110)]
        lines.append(f"{1000 + i},{area},{rooms},{city},{price:.0f},{kind}")
    path.write_text("\n".join(lines) + "\n")


def split_rows(dm, split: str) -> list[int]:
    """The table rows (0: the first under the header) of one of the datamodule's splits: the
    seeded split TableDataModule.load makes of the row indices."""
    from nnlab.data.splits import seeded_splits

    n = sum(len(x) for x, _ in dm.splits.values())
    idx = torch.arange(n)
    parts = seeded_splits({"train": (idx, idx)}, dm.val_fraction, dm.test_fraction, dm.seed)
    return parts[split][0].tolist()


def test_table_regression_predicts_the_test_split_in_dollars(make_cfg, tmp_path, caplog):
    table = tmp_path / "houses.csv"
    make_houses(table)
    ckpt, dm = fit(
        make_cfg, "data=house_prices_csv", f"data.path={table}", "data.target=price",
        "data.log_target=true", "data.drop=[kind]",
    )  # fmt: skip
    prep = torch.load(ckpt, weights_only=True)["CSVRegressionDataModule"][PREPROCESSING_KEY]
    assert prep["kind"] == "table" and prep["target_scale"]["log"] is True
    rows = read_rows(predict(predict_cfg(tmp_path, f"ckpt_path={ckpt}", f"input={table}")))
    assert len(rows) == 80 and rows[0].keys() == {"input", "prediction", "error"}
    module = load_module(ckpt).eval()
    with torch.no_grad():
        out = module(dm.splits["test"][0]).squeeze(-1).double()
    dollars = module.spec.target_scale.to_original(out)  # what eval's rmse_orig compares
    test_rows = split_rows(dm, "test")
    got = [float(rows[i]["prediction"]) for i in test_rows]
    assert got == pytest.approx(dollars.tolist(), rel=1e-6)
    assert min(got) > 1000  # dollars, not standardized log prices
    # Rows named by a column (Kaggle's submission layout: Id,prediction); the table read 7 rows
    # at a time predicts as read whole.
    cfg = predict_cfg(
        tmp_path, f"ckpt_path={ckpt}", f"input={table}", "id_column=Id", "batch_size=7"
    )
    named = read_rows(predict(cfg))
    assert list(named[0]) == ["Id", "prediction", "error"]
    assert [r["Id"] for r in named] == [str(1000 + i) for i in range(80)]
    # Equal up to float32 rounding: a matrix product's sums may group differently by batch size.
    chunked = [float(r["prediction"]) for r in named]
    assert chunked == pytest.approx([float(r["prediction"]) for r in rows], rel=1e-6)

    # A table without a column the model needs: refused, naming it; an unknown one: a warning.
    lines = table.read_text().splitlines()
    short = tmp_path / "no_rooms.csv"
    short.write_text("\n".join(",".join(c for j, c in enumerate(line.split(",")) if j != 2)
                               for line in lines) + "\n")  # fmt: skip
    with pytest.raises(ConfigError, match=r"lacks column\(s\) rooms"):
        predict(predict_cfg(tmp_path, f"ckpt_path={ckpt}", f"input={short}"))
    extra = tmp_path / "extra.csv"
    extra.write_text("\n".join(f"{line},{'garden' if i == 0 else i}" for i, line in
                               enumerate(lines)) + "\n")  # fmt: skip
    rows = read_rows(predict(predict_cfg(tmp_path, f"ckpt_path={ckpt}", f"input={extra}")))
    assert "never seen in training, not used: garden" in caplog.text
    assert [float(rows[i]["prediction"]) for i in test_rows] == pytest.approx(got, rel=1e-6)


def test_california_predicts_from_the_files_own_columns(make_cfg, tmp_path):
    """The model is trained on scikit-learn's features derived from housing.csv (rooms per
    household, …): predict.py derives them from new rows in the file's own columns, and takes a
    table in scikit-learn's columns as it is."""
    from nnlab.data.derived import CALIFORNIA_FEATURES, california_features

    rows = california_rows(120)
    header = "longitude,latitude,housing_median_age,total_rooms,total_bedrooms,population,"
    header += "households,median_income,median_house_value,ocean_proximity"
    raw = tmp_path / "housing.csv"
    raw.write_text(
        "\n".join([header, *(",".join(f"{v:.6f}" for v in r) + ",INLAND" for r in rows)]) + "\n"
    )
    ckpt, dm = fit(make_cfg, "data=california_housing", f"data.path={raw}")
    module = load_module(ckpt).eval()
    with torch.no_grad():
        out = module(dm.splits["test"][0]).squeeze(-1).double()
    dollars = module.spec.target_scale.to_original(out).tolist()
    test_rows = split_rows(dm, "test")
    got = read_rows(predict(predict_cfg(tmp_path, f"ckpt_path={ckpt}", f"input={raw}")))
    assert [float(got[i]["prediction"]) for i in test_rows] == pytest.approx(dollars, rel=1e-5)
    # The same rows in scikit-learn's columns (no target), with an id: the same predictions.
    derived = california_features(read_csv(raw)).drop(columns=["MedHouseVal", "ocean_proximity"])
    assert list(derived.columns) == list(CALIFORNIA_FEATURES)
    households = rows[:, 6]
    assert derived["AveRooms"].to_numpy() == pytest.approx(rows[:, 3] / households, rel=1e-5)
    assert derived["AveOccup"].to_numpy() == pytest.approx(rows[:, 5] / households, rel=1e-5)
    sk = tmp_path / "sklearn_columns.csv"
    derived.insert(0, "district", [f"d{i}" for i in range(len(derived))])
    derived.to_csv(sk, index=False)
    cfg = predict_cfg(tmp_path, f"ckpt_path={ckpt}", f"input={sk}", "id_column=district")
    same = read_rows(predict(cfg))
    assert [r["district"] for r in same] == [f"d{i}" for i in range(120)]
    assert [float(r["prediction"]) for r in same] == pytest.approx(
        [float(r["prediction"]) for r in got], rel=1e-5
    )
    # Neither set of columns: one error naming what is missing.
    bad = tmp_path / "bad.csv"
    bad.write_text("longitude,latitude\n1,2\n")
    with pytest.raises(ConfigError, match=r"lacks housing_median_age, total_rooms"):
        predict(predict_cfg(tmp_path, f"ckpt_path={ckpt}", f"input={bad}"))


def test_table_classification_predicts_class_names_and_probabilities(make_cfg, tmp_path):
    table = tmp_path / "houses.csv"
    make_houses(table)
    ckpt, dm = fit(
        make_cfg, "data=csv_classification", f"data.path={table}", "data.target=kind",
        "data.drop=[price]",
    )  # fmt: skip
    cfg = predict_cfg(tmp_path, f"ckpt_path={ckpt}", f"input={table}", "all_probabilities=true")
    rows = read_rows(predict(cfg))
    assert list(rows[0]) == [
        "input", "prediction", "probability", "probability_flat", "probability_house", "error"
    ]  # fmt: skip
    test = [rows[i] for i in split_rows(dm, "test")]
    expected = model_probabilities(ckpt, dm.splits["test"][0], dm)
    assert torch.allclose(probabilities(test, ["flat", "house"]), expected, rtol=1e-6)
    assert [r["prediction"] for r in test] == [("flat", "house")[i] for i in expected.argmax(-1)]
    # An infinite area is an error row, not a prediction; a missing one is imputed as in
    # training (row 0's); the other rows are predicted as before.
    lines = table.read_text().splitlines()
    lines[4] = lines[4].replace(lines[4].split(",")[1], "1e400")
    broken = tmp_path / "broken.csv"
    broken.write_text("\n".join(lines) + "\n")
    cfg = predict_cfg(tmp_path, f"ckpt_path={ckpt}", f"input={broken}", "all_probabilities=true")
    again = read_rows(predict(cfg))
    assert again[3]["error"] == "column area is inf, not a finite number"
    assert again[3]["prediction"] == again[3]["probability"] == ""
    assert again[0]["error"] == "" and again[0]["prediction"] in ("flat", "house")
    assert again[:3] + again[4:] == rows[:3] + rows[4:]


def test_a_csv_is_read_chunk_by_chunk_as_it_is_read_whole(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id;area;city\n1;1,5;Paris\n2;;Lyon\n3;2,25; Nice\n4;3;NA\n5;4,5;Paris")
    whole = read_csv(path, text=["id"])
    parts = list(read_csv_chunks(path, 2, text=["id"]))
    assert [len(p) for p in parts] == [2, 2, 1] and count_rows(path) == 5
    joined = pd.concat(parts, ignore_index=True)
    assert joined.astype(object).equals(whole.astype(object))  # the same cells, NaN included
    path.write_text("a,b\n1,2\n3,4\n")
    assert count_rows(path) == 2


# -- predict never destroys a file; garbage in is an error row or one error line ----------------
def tiny_checkpoint(folder: Path, data: str) -> Path:
    """A real checkpoint: train.py's best.ckpt after one epoch of a small MLP on `data`."""
    run_script(
        "train.py", f"data={data}", *QUIET, "model.hidden_sizes=[8]", "hydra.run.dir=run",
        cwd=folder,
    )  # fmt: skip
    return folder / "run" / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="module")
def xor_ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("xor"), "xor")


@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("digits"), "digits")


def temporary_files(folder: Path) -> list[Path]:
    """What a predictions file being written leaves beside it (.<name>.<random>.tmp)."""
    return list(folder.rglob(".*.tmp"))


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The failed process's one `error:` line (exit code 1, no traceback)."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    return line


def test_an_existing_file_is_replaced_only_with_overwrite_whole_and_keeping_its_mode(
    xor_ckpt, tmp_path
):
    points = tmp_path / "points.csv"
    points.write_text("x1,x2\n0,1\n1,1\n")
    old = tmp_path / "old.csv"
    old.write_text("precious\n")
    old.chmod(0o640)
    common = (f"ckpt_path={xor_ckpt}", f"input={points}")
    with pytest.raises(ConfigError, match=r"old\.csv exists; set overwrite=true to replace it"):
        predict(predict_cfg(tmp_path, *common, f"output={old}"))
    assert old.read_text() == "precious\n"
    assert predict(predict_cfg(tmp_path, *common, f"output={old}", "overwrite=true")) == str(old)
    assert [r["input"] for r in read_rows(old)] == ["0", "1"]
    assert stat.S_IMODE(old.stat().st_mode) == 0o640
    # A new file follows the umask, as the other files a run writes.
    new = Path(predict(predict_cfg(tmp_path, *common, f"output={tmp_path / 'new.csv'}")))
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(new.stat().st_mode) == 0o666 & ~mask
    # A folder gets predictions.csv; a path ending in / is a folder, made.
    folder = tmp_path / "out"
    folder.mkdir()
    into = predict(predict_cfg(tmp_path, *common, f"output={folder}"))
    assert into == str(folder / "predictions.csv")
    made = predict(predict_cfg(tmp_path, *common, f"output={tmp_path}/a/b/"))
    assert made == str(tmp_path / "a" / "b" / "predictions.csv")
    assert read_rows(into) == read_rows(made) == read_rows(old)
    assert not temporary_files(tmp_path)


def test_a_run_failing_midway_leaves_the_old_file_and_no_temporary_file(xor_ckpt, tmp_path):
    rows = [f"{i % 2},{i % 3}" for i in range(400)]
    rows[300] = "0,abc"  # read in the fourth chunk of 100, after three were written
    points = tmp_path / "points.csv"
    points.write_text("x1,x2\n" + "\n".join(rows) + "\n")
    old = tmp_path / "old.csv"
    old.write_text("precious\n")
    common = (f"ckpt_path={xor_ckpt}", f"input={points}", "batch_size=100")
    with pytest.raises(ConfigError, match="column x2 holds text"):
        predict(predict_cfg(tmp_path, *common, f"output={old}", "overwrite=true"))
    assert old.read_text() == "precious\n" and not temporary_files(tmp_path)
    # Into folders that did not exist: they go too.
    with pytest.raises(ConfigError, match="column x2 holds text"):
        predict(predict_cfg(tmp_path, *common, f"output={tmp_path}/new/deeper/p.csv"))
    assert not (tmp_path / "new").exists()


def test_a_write_error_is_one_error_line_and_the_old_file_stays(xor_ckpt, tmp_path):
    """A real write error: predict.py may write no file over 64 KiB (ulimit -f), so writing
    20,000 predictions fails with EFBIG, as it would with ENOSPC on a full disk."""
    many = tmp_path / "many.npy"
    np.save(many, np.random.default_rng(0).normal(size=(20_000, 2)).astype(np.float32))
    old = tmp_path / "old.csv"
    old.write_text("precious\n")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    proc = subprocess.run(
        [sys.executable, str(ROOT / "predict.py"), f"ckpt_path={xor_ckpt}", f"input={many}",
         f"output={old}", "overwrite=true", "progress=false"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, preexec_fn=limit,
    )  # fmt: skip
    line = one_error_line(proc)
    assert f"error: output={old}: cannot write {old} (File too large); {old} is as it was" == line
    assert old.read_text() == "precious\n" and not temporary_files(tmp_path)
    assert not [p for p in (tmp_path / "logs").rglob("*") if p.is_file()]  # no run folder left


def test_what_is_not_a_regular_file_in_an_input_folder_is_an_error_row_never_opened(
    digits_ckpt, tmp_path, monkeypatch
):
    """A FIFO named like an image would block the reader forever: it is never opened (the
    process's timeout would fail this test), nor a socket, a device or a broken link."""
    folder = tmp_path / "pictures"
    (folder / "folder.png").mkdir(parents=True)
    Image.new("L", (8, 8), 128).save(folder / "good.png")
    Image.new("L", (8, 8), 30).save(folder / "folder.png" / "inside.png")
    os.mkfifo(folder / "pipe.png")
    (folder / "device.png").symlink_to("/dev/zero")
    (folder / "gone.png").symlink_to(folder / "nowhere.png")
    monkeypatch.chdir(folder)  # a socket's path has at most 108 bytes: bound relatively
    out = tmp_path / "p.csv"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("socket.png")
        proc = run_script(
            "predict.py", f"ckpt_path={digits_ckpt}", f"input={folder}", f"output={out}",
            "progress=false", cwd=tmp_path, timeout=240,
        )  # fmt: skip
    assert "(6 inputs, 4 unreadable)" in proc.stdout
    rows = {r["input"]: r for r in read_rows(out)}
    assert {name: rows[name]["error"] for name in rows} == {
        "device.png": "a character device, not an image file: not read",
        "folder.png/inside.png": "",
        "gone.png": "unreadable (No such file or directory), not an image file: not read",
        "good.png": "",
        "pipe.png": "a FIFO (named pipe), not an image file: not read",
        "socket.png": "a socket, not an image file: not read",
    }
    for name in ("good.png", "folder.png/inside.png"):
        assert rows[name]["prediction"] in [str(c) for c in range(10)]
        assert 0.1 <= float(rows[name]["probability"]) <= 1
    assert all(r["prediction"] == r["probability"] == "" for r in rows.values() if r["error"])


def test_text_cells_a_spreadsheet_would_run_are_escaped_and_numbers_kept(xor_ckpt, tmp_path):
    ids = ['=HYPERLINK("http://x","y")', "+SUM(A1)", "-2+3", "@cmd", "-1.5", "+7", "1e5",
           "-", "plain", "a=b"]  # fmt: skip
    table = tmp_path / "ids.csv"
    with table.open("w", newline="") as f:
        csv.writer(f).writerows([["=id", "x1", "x2"], *[[i, 0, 1] for i in ids]])
    out = predict(predict_cfg(tmp_path, f"ckpt_path={xor_ckpt}", f"input={table}",
                              "id_column='=id'"))  # fmt: skip
    with open(out, newline="") as f:
        header, *rows = list(csv.reader(f))
    assert header[0] == "'=id"
    assert [r[0] for r in rows] == [
        "'=HYPERLINK(\"http://x\",\"y\")", "'+SUM(A1)", "'-2+3", "'@cmd", "-1.5", "+7", "1e5",
        "'-", "plain", "a=b",
    ]  # fmt: skip
    assert all(r[1] in ("0", "1") and r[-1] == "" for r in rows)


def test_inputs_that_are_not_finite_numbers_are_error_rows(xor_ckpt, tmp_path):
    table = tmp_path / "cells.csv"
    table.write_text("x1,x2\n0,1\n1e400,0\n0,-inf\n,1\nNaN,0\n1e39,0\n1,1\n")
    rows = read_rows(predict(predict_cfg(tmp_path, f"ckpt_path={xor_ckpt}", f"input={table}")))
    assert [r["error"] for r in rows] == [
        "",
        "column x1 is inf, not a finite number",
        "column x2 is -inf, not a finite number",
        "column x1 is missing",
        "column x1 is missing",
        NOT_FINITE,  # finite as float64, infinite as the model's float32
        "",
    ]
    assert [r["input"] for r in rows] == [str(i) for i in range(7)]
    for r in rows:
        assert (r["prediction"] == r["probability"] == "") == (r["error"] != "")
    good = [float(rows[i]["probability"]) for i in (0, 6)]
    assert all(0.5 <= p <= 1 for p in good)
    # Two rows at a time: chunks of error rows alone ([1, 2], [3, 4]) predict nothing.
    cfg = predict_cfg(tmp_path, f"ckpt_path={xor_ckpt}", f"input={table}", "batch_size=2")
    assert read_rows(predict(cfg)) == rows
    array = tmp_path / "cells.npy"
    np.save(array, np.array([[0, 1], [np.nan, 0], [np.inf, 1], [1e300, 0], [1, 1]]))
    rows = read_rows(predict(predict_cfg(tmp_path, f"ckpt_path={xor_ckpt}", f"input={array}")))
    assert [r["error"] for r in rows] == ["", NOT_FINITE, NOT_FINITE, NOT_FINITE, ""]
    assert [float(rows[i]["probability"]) for i in (0, 4)] == pytest.approx(good, rel=1e-6)
