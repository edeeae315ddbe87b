"""Crafted checkpoints: a checkpoint names its parts, and nothing in it is followed as an import
path (issue 19, item 1).

Each payload is a Hydra config that writes a file when instantiated: through builtins.open,
builtins.print(file=open(…)), shutil.copy, torch.save, numpy.save, OmegaConf.save and
os.makedirs (`test_every_payload_is_live` proves each one really writes its marker). Each is
put into a real checkpoint (a tiny XOR run of train.py) at every position a saved config has:
the top `_target_` of the model, data, optimizer and scheduler configs, nested in a mapping
and in a list of each of model, data, loss, optimizer, scheduler and speed, and at the top
of loss and speed (which name no class). Every case must be refused before anything is built,
with one `error:` line naming the key, and no marker file may ever appear.

- `nnlab.tasks.loading.read_checked`, the one check that eval.py, predict.py and a resume go
  through, gets every payload at every position (in-process: fast);
- the three entry points, run in-process as train.py, eval.py and predict.py run them
  (nnlab.cli.run), get every position;
- real subprocesses of eval.py, predict.py and train.py (resume) get a crafted checkpoint from
  a file and from a loopback HTTP URL: exit code 1, one error line, no traceback.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.utils import instantiate

from nnlab import cli
from nnlab.core import ConfigError
from nnlab.evaluate import evaluate
from nnlab.predict import predict
from nnlab.tasks.loading import read_checked
from nnlab.train import train

from .conftest import run_script
from .helpers import http_fixtures
from .helpers.http_fixtures import FileServer

file_server = http_fixtures.file_server

# The run the crafted checkpoints start from, and a resume of it (same network and data).
TRAIN = (
    "data=xor",
    "model=mlp",
    "model.hidden_sizes=[4]",
    "scheduler=step",
    "diagnostics=none",
    "logger=none",
    "print_config=false",
)
RESUME = (*TRAIN, "trainer.max_epochs=2")


# -- payloads: configs that write `marker` when Hydra instantiates them ---------------------------
def _open(marker: Path, source: Path) -> dict[str, Any]:
    return {"_target_": "builtins.open", "_args_": [str(marker), "w"]}


def _print(marker: Path, source: Path) -> dict[str, Any]:
    return {"_target_": "builtins.print", "_args_": ["pwned"], "file": _open(marker, source)}


def _copy(marker: Path, source: Path) -> dict[str, Any]:
    return {"_target_": "shutil.copy", "_args_": [str(source), str(marker)]}


def _torch_save(marker: Path, source: Path) -> dict[str, Any]:
    return {"_target_": "torch.save", "obj": [1, 2], "f": str(marker)}


def _numpy_save(marker: Path, source: Path) -> dict[str, Any]:
    return {"_target_": "numpy.save", "file": str(marker), "arr": [1, 2]}


def _omegaconf_save(marker: Path, source: Path) -> dict[str, Any]:
    return {"_target_": "omegaconf.OmegaConf.save", "config": {"a": 1}, "f": str(marker)}


def _makedirs(marker: Path, source: Path) -> dict[str, Any]:
    return {"_target_": "os.makedirs", "name": str(marker)}


PAYLOADS: dict[str, Callable[[Path, Path], dict[str, Any]]] = {
    "builtins.open": _open,
    "builtins.print": _print,
    "shutil.copy": _copy,
    "torch.save": _torch_save,
    "numpy.save": _numpy_save,
    "OmegaConf.save": _omegaconf_save,
    "os.makedirs": _makedirs,
}

# -- positions: where in the saved hyper-parameters a payload goes --------------------------------
GROUPS = ("model", "data", "loss", "optimizer", "scheduler", "speed")


def _place(hparams: dict[str, Any], position: str, payload: dict[str, Any]) -> str:
    """Puts `payload` into saved hyper-parameters at `position` ("model.top", "loss.dict",
    "speed.list"); returns the key path the refusal must name."""
    group, where = position.split(".")
    config = hparams[group]
    if where == "top":  # the group's own class (if any) replaced by the payload
        config.pop("_partial_", None)
        config.update(payload)
        return f"{group}._target_"
    if where == "dict":  # an option whose value is a config
        config["extra"] = payload
        return f"{group}.extra._target_"
    config["extra"] = [1, {"inner": [payload]}]  # deep inside lists
    return f"{group}.extra[1].inner[0]._target_"


POSITIONS = [f"{g}.{where}" for g in GROUPS for where in ("top", "dict", "list")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real checkpoint of a tiny XOR run of train.py, read back as data."""
    folder = tmp_path_factory.mktemp("trained")
    run_script(
        "train.py",
        *TRAIN,
        "trainer.max_epochs=1",
        "test=false",
        f"paths.log_dir={folder / 'logs'}",
        f"paths.data_dir={folder / 'data'}",
        cwd=folder,
    )
    (best,) = (folder / "logs").rglob("best.ckpt")
    checkpoint = torch.load(best, weights_only=True)
    assert checkpoint["hyper_parameters"]["scheduler"]["_target_"].endswith("StepLR")
    return checkpoint


def crafted(trained: dict[str, Any], folder: Path, position: str, payload: str) -> tuple[Path, str]:
    """The trained checkpoint with `payload` at `position`, saved in `folder`; and the key the
    refusal must name. Markers would be written into `folder/markers`."""
    checkpoint = {**trained, "hyper_parameters": _copy_tree(trained["hyper_parameters"])}
    markers, source = folder / "markers", folder / "victim.txt"
    markers.mkdir(exist_ok=True)
    source.write_text("a user's file\n")
    key = _place(checkpoint["hyper_parameters"], position, PAYLOADS[payload](markers / "x", source))
    path = folder / f"{position}-{payload}.ckpt"
    torch.save(checkpoint, path)
    return path, key


def _copy_tree(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _copy_tree(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_copy_tree(v) for v in node]
    return node


def assert_no_marker(folder: Path) -> None:
    assert not any((folder / "markers").iterdir()), "a payload ran"
    assert (folder / "victim.txt").read_text() == "a user's file\n"


@pytest.mark.parametrize("payload", PAYLOADS)
def test_every_payload_is_live(payload: str, tmp_path: Path) -> None:
    """What the suite refuses would really write a file if it were instantiated."""
    source, markers = tmp_path / "victim.txt", tmp_path / "markers"
    source.write_text("x")
    markers.mkdir()
    made = instantiate(PAYLOADS[payload](markers / "x", source))
    if hasattr(made, "close"):
        made.close()
    assert [p.name for p in markers.iterdir()] in (["x"], ["x.npy"])


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_check_refuses_every_payload_everywhere(
    trained: dict[str, Any], tmp_path: Path, position: str, payload: str
) -> None:
    path, key = crafted(trained, tmp_path, position, payload)
    with pytest.raises(ConfigError) as refused:
        read_checked(str(path))
    message = str(refused.value)
    assert f"ckpt_path={path}: {key}=" in message, message
    assert "\n" not in message
    assert_no_marker(tmp_path)


def _entry_config(make_cfg, entry: str, ckpt: str, folder: Path):
    """The composed config of an entry point given checkpoint `ckpt`, as its script makes it."""
    common = (f"ckpt_path={ckpt}", f"paths.data_dir={folder / 'data'}")
    if entry == "eval":
        return evaluate, make_cfg(*common, "logger=none", config_name="eval")
    if entry == "predict":
        (folder / "in.csv").write_text("a,b\n0,1\n1,1\n")
        cfg = make_cfg(
            *common, f"input={folder / 'in.csv'}", "progress=false", config_name="predict"
        )
        return predict, cfg
    return train, make_cfg(*RESUME, *common)


def _entry_given(make_cfg, trained, change: Callable[[dict[str, Any]], None], entry, folder):
    """An entry point and its config, given the trained checkpoint as `change` leaves it."""
    path = folder / "changed.ckpt"
    torch.save(_modified(trained, change), path)
    return _entry_config(make_cfg, entry, str(path), folder)


ENTRIES = ("eval", "predict", "resume")
# Every position through every entry point, the payloads taken in turn.
ENTRY_CASES = [
    pytest.param(entry, position, payload, id=f"{entry}-{position}-{payload}")
    for (entry, position), payload in zip(
        itertools.product(ENTRIES, POSITIONS), itertools.cycle(PAYLOADS), strict=False
    )
]


@pytest.mark.parametrize(("entry", "position", "payload"), ENTRY_CASES)
def test_each_entry_point_refuses_a_payload_at_every_position(
    make_cfg, trained, tmp_path, capsys, entry, position, payload
) -> None:
    path, key = crafted(trained, tmp_path, position, payload)
    main, cfg = _entry_config(make_cfg, entry, str(path), tmp_path)
    with pytest.raises(SystemExit) as refused:
        cli.run(main, cfg)
    message = refused.value.code
    assert isinstance(message, str) and message.startswith("error: ckpt_path="), message
    assert f": {key}=" in message and "\n" not in message, message
    printed = capsys.readouterr()
    assert "Traceback" not in printed.out + printed.err
    assert_no_marker(tmp_path)
    assert not Path(cfg.paths.output_dir).exists()  # nothing left behind


# In real processes: each entry point, from a file and from a loopback URL, a payload each.
PROCESS_CASES = [
    ("eval.py", "file", "model.dict", "builtins.print"),
    ("eval.py", "url", "data.top", "shutil.copy"),
    ("predict.py", "file", "model.top", "builtins.open"),
    ("predict.py", "url", "speed.list", "torch.save"),
    ("train.py", "file", "optimizer.dict", "numpy.save"),
    ("train.py", "url", "scheduler.top", "os.makedirs"),
]


@pytest.mark.parametrize(("script", "where", "position", "payload"), PROCESS_CASES)
def test_a_crafted_checkpoint_is_one_error_line_in_a_real_process(
    trained, file_server: FileServer, tmp_path, script, where, position, payload
) -> None:
    path, key = crafted(trained, tmp_path, position, payload)
    ckpt = file_server.add(path.name, path) if where == "url" else str(path)
    args = {"eval.py": (), "train.py": RESUME, "predict.py": ("input=in.csv",)}[script]
    (tmp_path / "in.csv").write_text("a,b\n0,1\n")
    logs = tmp_path / "logs"
    proc = run_script(
        script,
        *args,
        f"ckpt_path={ckpt}",
        f"paths.log_dir={logs}",
        f"paths.data_dir={tmp_path / 'data'}",
        cwd=tmp_path,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f": {key}=" in errors[0], output
    assert "Traceback" not in output
    assert_no_marker(tmp_path)
    assert not list(logs.glob("*/runs/*")), "a refused run left its folder"


# -- what else a checkpoint may not say -----------------------------------------------------------
def _modified(trained: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict:
    checkpoint = {**trained, "hyper_parameters": _copy_tree(trained["hyper_parameters"])}
    checkpoint["state_dict"] = dict(trained["state_dict"])
    change(checkpoint)
    return checkpoint


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(checkpoint: dict[str, Any]) -> None:
        node = checkpoint
        *parents, last = path.split("/")
        for part in parents:
            node = node[part]
        node[last] = value

    return change


def _nan_weight(checkpoint: dict[str, Any]) -> None:
    name = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point())
    weight = checkpoint["state_dict"][name].clone()
    weight.view(-1)[0] = float("nan")
    checkpoint["state_dict"][name] = weight


def _inf_weight(checkpoint: dict[str, Any]) -> None:
    name = [k for k, v in checkpoint["state_dict"].items() if v.is_floating_point()][-1]
    checkpoint["state_dict"][name] = torch.full_like(checkpoint["state_dict"][name], float("inf"))


REFUSED = {
    "foreign nnlab_module": (_set("nnlab_module", "os.system"), "nnlab_module='os.system' is not"),
    "nnlab_module of an old path elsewhere": (
        _set("nnlab_module", "mypkg.tasks.BinaryTask"),
        "is not one of nnlab's task modules",
    ),
    "Lightning's _instantiator": (
        _set("hyper_parameters/_instantiator", "builtins.print"),
        "hyper-parameter _instantiator is not one a task module takes",
    ),
    "foreign loss name": (_set("hyper_parameters/loss", {"name": "os.system"}), "unknown loss"),
    "loss option not taken": (
        _set("hyper_parameters/loss", {"name": "bce_with_logits", "file": "/etc/passwd"}),
        "loss.file is not an option of bce_with_logits",
    ),
    "loss for another task": (
        _set("hyper_parameters/loss", {"name": "mse"}),
        "loss=mse cannot train a binary task",
    ),
    "spec of another task": (
        _set("hyper_parameters/spec/task", "regression"),
        "its spec is a regression task, but its nnlab_module BinaryTask trains binary tasks",
    ),
    "spec that is not one": (_set("hyper_parameters/spec", {"task": "binary"}), "not a data spec"),
    "model of another module": (
        _set("hyper_parameters/model", {"_target_": "nnlab.nn.networks.Perceptron"}),
        "nnlab_module BinaryTask does not train model._target_=nnlab.nn.networks.Perceptron",
    ),
    "unregistered network": (
        _set("hyper_parameters/model/_target_", "mypkg.nets.Net"),
        "model._target_='mypkg.nets.Net' is not a registered network",
    ),
    "hydra _args_ on an allowed class": (
        _set("hyper_parameters/optimizer/_args_", [1]),
        "optimizer._args_=[1] is refused",
    ),
    "_target_ inside a spec": (
        _set("hyper_parameters/spec/class_names", [{"_target_": "os.getcwd"}]),
        "spec.class_names[0]._target_='os.getcwd' is refused",
    ),
    "a key that spans lines": (
        _set("hyper_parameters/model/a\nb", {"_target_": "os.getcwd"}),
        "model['a\\nb']._target_='os.getcwd' is refused",
    ),
    "NaN weights": (_nan_weight, "its weights are not finite"),
    "infinite weights": (_inf_weight, "its weights are not finite"),
    "weights that are no tensors": (_set("state_dict/net.1.weight", [1.0]), "is not a tensor"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_checkpoint_that_says_more_than_data_is_refused(trained, tmp_path, case) -> None:
    change, message = REFUSED[case]
    path = tmp_path / "odd.ckpt"
    torch.save(_modified(trained, change), path)
    with pytest.raises(ConfigError, match=None) as refused:
        read_checked(str(path))
    assert message in str(refused.value), str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("entry", ENTRIES)
def test_non_finite_weights_are_refused_by_every_entry_point(
    make_cfg, trained, tmp_path, entry
) -> None:
    main, cfg = _entry_given(make_cfg, trained, _nan_weight, entry, tmp_path)
    with pytest.raises(SystemExit, match="its weights are not finite"):
        cli.run(main, cfg)


def test_the_unmodified_checkpoint_loads_and_old_class_paths_still_do(trained, tmp_path) -> None:
    """The control: the trained checkpoint passes the check and rebuilds, also as an earlier
    nnlab wrote it (nnlab_module a dotted path)."""
    from nnlab.tasks.loading import module_from

    for name in ("BinaryTask", "nnlab.tasks.binary.BinaryTask"):
        path = tmp_path / "ok.ckpt"
        torch.save(_modified(trained, _set("nnlab_module", name)), path)
        module = module_from(read_checked(str(path)), str(path))
        assert type(module).__name__ == "BinaryTask"
        weights = {k: v for k, v in module.state_dict().items() if k in trained["state_dict"]}
        assert all(torch.equal(v, trained["state_dict"][k]) for k, v in weights.items())


def _older_spec(checkpoint: dict[str, Any]) -> None:
    """The spec as nnlab wrote it before the task modules sized the network: the network's
    outputs (num_outputs), no num_targets."""
    spec = checkpoint["hyper_parameters"]["spec"]
    spec["num_outputs"] = 1
    del spec["num_targets"]


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_checkpoint_with_an_older_spec_is_evaluated_predicted_and_resumed(
    make_cfg, trained, tmp_path, entry
) -> None:
    main, cfg = _entry_given(make_cfg, trained, _older_spec, entry, tmp_path)
    cli.run(main, cfg)  # no error: the spec is read as this version writes it
    if entry == "predict":
        rows = (Path(cfg.paths.output_dir) / "predictions.csv").read_text().splitlines()
        assert rows[0] == "input,prediction,probability,error" and len(rows) == 3
    else:
        results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
        assert "test/acc" in results["test"]  # tested (and, resumed, trained on first)
        if entry == "resume":
            assert results["epochs"] == 2


def test_a_url_ending_in_dot_dot_is_one_error_and_leaves_nothing_in_the_cache(
    file_server: FileServer, tmp_path: Path
) -> None:
    url = file_server.url("x/..")
    proc = run_script(
        "eval.py",
        f"ckpt_path={url}",
        f"paths.log_dir={tmp_path / 'logs'}",
        f"paths.data_dir={tmp_path / 'data'}",
        cwd=tmp_path,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in output, output
    (error,) = [line for line in output.splitlines() if line.startswith("error:")]
    assert f"ckpt_path={url} cannot be downloaded" in error, error
    left = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert left == [], left


def test_a_folder_as_ckpt_path_says_it_is_a_folder(trained, tmp_path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save(trained, run / "checkpoints" / "best.ckpt")
    with pytest.raises(ConfigError, match=r"is a folder, not a checkpoint file: did you mean"):
        read_checked(str(run))
    shutil.rmtree(run)


def test_a_checkpoints_data_config_cannot_choose_where_files_are_written(tmp_path) -> None:
    """Its data_dir is replaced by this run's paths.data_dir; a data set name that climbs out of
    it is refused."""
    from nnlab.evaluate import with_local_data_dir
    from nnlab.tasks.loading import datamodule_from

    saved = {"_target_": "nnlab.data.vision.MNISTDataModule", "name": "mnist", "data_dir": "/"}
    here = with_local_data_dir(saved, str(tmp_path))
    assert datamodule_from(here, "ckpt_path=x.ckpt").folder == tmp_path / "mnist"
    with pytest.raises(ConfigError, match=r"data.name='../../home' is not a name"):
        datamodule_from({**here, "name": "../../home"}, "ckpt_path=x.ckpt")


def test_a_users_network_loads_once_registered_and_its_module_is_never_imported_by_a_checkpoint(
    trained, tmp_path, monkeypatch
) -> None:
    """The registration API: a checkpoint naming a class of the user's module is refused (saying
    how to register it) without importing that module; once `plugins` imports it, it loads."""
    import sys

    from nnlab.core.components import NETWORKS, import_plugins
    from nnlab.tasks.loading import module_from

    package = tmp_path / "userpkg_a"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(
        "from nnlab import register_network\n"
        "from nnlab.nn.networks import MLP\n\n\n"
        "@register_network\n"
        "class TinyNet(MLP):\n"
        '    """An MLP of the user\'s own."""\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "user.ckpt"
    torch.save(
        _modified(trained, _set("hyper_parameters/model/_target_", "userpkg_a.nets.TinyNet")), path
    )

    with pytest.raises(ConfigError) as refused:
        read_checked(str(path))
    assert "model._target_='userpkg_a.nets.TinyNet' is not a registered network" in str(
        refused.value
    )
    assert "@nnlab.register_network" in str(refused.value)
    assert "plugins=[userpkg_a.nets]" in str(refused.value)
    assert "userpkg_a.nets" not in sys.modules  # the checkpoint's string was never imported

    try:
        import_plugins(["userpkg_a.nets"])
        module = module_from(read_checked(str(path)), str(path))
        assert type(module.net).__name__ == "TinyNet"
    finally:
        NETWORKS._classes.pop("userpkg_a.nets.TinyNet", None)
        sys.modules.pop("userpkg_a.nets", None)
        sys.modules.pop("userpkg_a", None)
    with pytest.raises(ConfigError, match=r"plugins: cannot import userpkg_nowhere"):
        import_plugins(["userpkg_nowhere"])


def test_a_checkpoints_callback_state_never_copies_a_file_that_is_no_checkpoint(tmp_path) -> None:
    """Resuming in a new folder copies the files the saved ModelCheckpoint state names: only
    `*.ckpt` files, so a crafted state cannot bring a user's other files into the run."""
    from nnlab.checkpoints import moved_state

    old, new = tmp_path / "elsewhere", tmp_path / "run" / "checkpoints"
    old.mkdir()
    new.mkdir(parents=True)
    (old / "id_rsa").write_text("secret")
    (old / "best.ckpt").write_bytes(b"weights")
    state = {
        "dirpath": str(old),
        "best_model_path": str(old / "id_rsa"),
        "best_k_models": {str(old / "id_rsa"): 1.0, str(old / "best.ckpt"): 0.5},
        "kth_best_model_path": str(old / "best.ckpt"),
        "last_model_path": "",
    }
    moved, lost = moved_state(state, str(new), "max")
    assert lost == [str(old / "id_rsa")]
    assert sorted(p.name for p in new.iterdir()) == ["best.ckpt"]
    assert moved["best_model_path"] == str(new / "best.ckpt")
