"""logger=mlflow against a real `mlflow server` (SQLite backend, loopback port) started here,
the run read back through MlflowClient; the local store; a server that cannot be reached."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from nnlab.core import ConfigError
from nnlab.train import train

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
from mlflow import MlflowClient  # noqa: E402

TINY = ("data=xor", "model=mlp", "print_config=false", "trainer.max_epochs=3")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a real MLflow tracking server on 127.0.0.1 with a SQLite backend and its
    own artifact store (uploads go over HTTP), stopped after the module's tests."""
    folder = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        *(sys.executable, "-m", "mlflow", "server"),
        *("--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"),
        *("--artifacts-destination", str(folder / "artifacts")),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
    ]
    log = open(folder / "server.log", "wb")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start:\n{(folder / 'server.log').read_text()}")
            time.sleep(1)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its worker processes
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def csv_histories(output_dir: str) -> dict[str, list[tuple[int, float]]]:
    """metrics.csv as (step, value) per metric, every row with a value (the per-epoch rows and
    the best checkpoint's evaluation)."""
    with open(Path(output_dir) / "csv" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keys = [k for k in rows[0] if k != "step"]
    return {k: [(int(r["step"]), float(r[k])) for r in rows if r[k] != ""] for k in keys}


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    paths = set()
    for item in client.list_artifacts(run_id, path):
        paths |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return paths


def test_a_run_round_trips_through_a_real_tracking_server(make_cfg, mlflow_server, tmp_path):
    cfg = make_cfg(
        *TINY,
        "logger=[csv,mlflow]",
        f"logger.mlflow.tracking_uri={mlflow_server}",
        "logger.mlflow.experiment_name=roundtrip",
        "logger.mlflow.log_checkpoint=true",
        "+logger.mlflow.tags.course=nn101",
    )
    train(cfg)
    output = Path(cfg.paths.output_dir)
    results = json.loads((output / "results.json").read_text())

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("roundtrip")
    (run,) = client.search_runs([experiment.experiment_id])
    run_id = run.info.run_id
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "xor-mlp-relu-default-adam"
    tags = run.data.tags
    assert (tags["data"], tags["model"], tags["activation"], tags["optimizer"]) == (
        "xor",
        "mlp",
        "relu",
        "adam",
    )
    assert tags["course"] == "nn101" and tags["job_type"] == "train"
    # The resolved config as dotted params, with the chosen options.
    params = run.data.params
    assert params["trainer.max_epochs"] == "3" and params["choices.data"] == "xor"
    assert params["optimized_metric"] == "val/acc"

    # Every per-epoch metric equals metrics.csv's column, step for step.
    expected = csv_histories(cfg.paths.output_dir)
    assert set(run.data.metrics) == set(expected)
    for key, history in expected.items():
        logged = [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        if key == "epoch":  # sent with the train and with the val metrics; one CSV row holds both
            logged = list(dict.fromkeys(logged))
        assert sorted(logged) == history, key
    assert len(expected["train/loss"]) == 3  # one per epoch

    artifacts = artifact_paths(client, run_id)
    assert {"run/results.json", "checkpoints/best.ckpt"} <= artifacts
    figures = {p for p in artifacts if p.startswith("diagnostics/") and p.endswith(".png")}
    assert figures == {f"diagnostics/{p.name}" for p in (output / "diagnostics").glob("*.png")}
    assert figures  # diagnostics=basic draws some
    downloaded = Path(client.download_artifacts(run_id, "checkpoints/best.ckpt", str(tmp_path)))
    assert downloaded.read_bytes() == Path(results["ckpt_path"]).read_bytes()
    results_copy = client.download_artifacts(run_id, "run/results.json", str(tmp_path))
    assert json.loads(Path(results_copy).read_text()) == results


def test_without_a_server_runs_go_to_a_local_store_under_the_log_dir(make_cfg, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = make_cfg(*TINY, "logger=mlflow", "diagnostics=none", "trainer.max_epochs=1")
    train(cfg)
    store = Path(cfg.paths.log_dir) / "mlflow"
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("nnlab").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith((store / "artifacts").as_uri())
    assert "run/results.json" in artifact_paths(client, run.info.run_id)
    assert "checkpoints/best.ckpt" not in artifact_paths(client, run.info.run_id)  # not asked


def test_a_server_that_cannot_be_reached_is_one_error_before_training(make_cfg, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)  # as a .env would set it
    cfg = make_cfg(*TINY, "logger=mlflow", "diagnostics=none")
    with pytest.raises(ConfigError, match=f"cannot start a run at tracking_uri {dead}"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()  # no training happened
