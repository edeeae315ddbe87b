"""DDP gives a single process's results: evaluation shards hold every sample exactly once and
epoch metrics are sums over the ranks (fast tests); with real two-process DDP (gloo on the CPU,
slow tests), the same checkpoint's val and test metrics equal one process's, training on the
same global batch gives the same weights, and a multirun writes one folder per job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from nnlab import cli
from nnlab.core import ConfigError
from nnlab.data.loaders import BatchOrder, EpochPermutation, HostBatches, TensorBatches
from nnlab.ddp import check_shared_folder, job_command, launch_arguments
from nnlab.tasks.metrics import EpochSums
from nnlab.train import train
from tests.conftest import ROOT, run_script

# The digits split sizes these tests rely on (seed 42, val_fraction 0.1495): odd val and test
# splits, so that padded shards would count a sample twice.
VAL, TEST = 215, 359


# -- fast: shards and sums ------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "ranks"), [(359, 2), (10, 3), (2, 3)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_unpadded_shards_hold_every_sample_exactly_once(n, ranks, shuffle):
    shards = []
    for rank in range(ranks):
        order = BatchOrder(shuffle, seed=3, num_replicas=ranks, rank=rank, pad=False)
        permutation = EpochPermutation(n, order)
        indices = permutation.indices()
        assert indices is not None and len(indices) == len(permutation)
        shards.append(indices.tolist())
    assert sorted(i for shard in shards for i in shard) == list(range(n))
    assert [len(s) for s in shards] == [len(range(r, n, ranks)) for r in range(ranks)]


def test_padding_stays_for_training_shards():
    """Training still pads (every rank takes as many steps); 359 over 2: one duplicate."""
    lengths = [len(EpochPermutation(359, BatchOrder(True, 0, 2, r))) for r in range(2)]
    assert lengths == [180, 180]


@pytest.mark.parametrize("loader", [TensorBatches, HostBatches])
def test_both_loaders_read_an_unpadded_shard(loader):
    x = torch.arange(7, dtype=torch.float32)[:, None]
    seen = []
    for rank in range(2):
        order = BatchOrder(num_replicas=2, rank=rank, pad=False)
        seen.append([int(v) for xb, _ in loader(x, torch.zeros(7), 2, order) for v in xb[:, 0]])
    assert seen == [[0, 2, 4, 6], [1, 3, 5]]


def _sums(batches: list[tuple[float, int, float]]) -> EpochSums:
    """EpochSums of "val" batches given as (mean loss, samples, correct)."""
    sums = EpochSums(["val"])
    for loss, n, correct in batches:
        sums.add("val", torch.tensor(loss), n, {"acc": torch.tensor(correct)})
        sums.samples["val"] += n
    return sums


def _two_ranks(rank0: EpochSums, rank1: EpochSums) -> dict[str, torch.Tensor]:
    """Rank 0's means when the all-reduce adds rank 1's packed totals to its own."""
    packed: list[torch.Tensor] = []
    rank1.means("val", lambda t: packed.append(t.clone()) or t)
    return rank0.means("val", lambda t: t + packed[0])


def test_epoch_means_under_ddp_are_sums_over_ranks_not_means_of_means():
    one = _sums([(0.5, 100, 80.0), (0.25, 100, 90.0), (1.0, 79, 40.0)])
    # The same batches on two ranks with different sample counts (100 against 179).
    rank0, rank1 = _sums([(0.5, 100, 80.0)]), _sums([(0.25, 100, 90.0), (1.0, 79, 40.0)])
    ddp, single = _two_ranks(rank0, rank1), one.means("val")
    assert ddp["val/acc"].item() == single["val/acc"].item() == pytest.approx(210 / 279)
    assert ddp["val/loss"].item() == single["val/loss"].item()
    # The mean of the per-rank means (what averaging logged means gave) would differ.
    assert pytest.approx(210 / 279) != (0.8 + 130 / 179) / 2


def test_a_rank_without_samples_takes_part_and_gets_everyone_s_means():
    """Evaluation shards are uneven: a split smaller than the number of ranks leaves one empty.
    It still joins the all-reduce (a collective), with the same layout: evaluation sums only
    the loss."""
    empty, sent = EpochSums(["val"]), []
    others = torch.tensor([1.5, 3.0], dtype=torch.float64)  # loss × samples, samples

    def reduce(t: torch.Tensor) -> torch.Tensor:
        sent.append(t.tolist())
        return t + others

    assert empty.means("val", reduce) == {"val/loss": pytest.approx(0.5)}
    assert sent == [[0.0, 0.0]]  # no loss, no samples


def test_a_torchrun_single_run_must_name_its_folder(make_cfg, monkeypatch):
    """Each process torchrun starts names its own run folder unless hydra.run.dir names one."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    make_cfg()
    with pytest.raises(ConfigError, match=r"hydra\.run\.dir="):
        check_shared_folder()
    make_cfg("hydra.run.dir=somewhere")
    check_shared_folder()
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process: nothing to share
    make_cfg()
    check_shared_folder()


def test_a_parallel_launcher_cannot_start_ddp_processes(make_cfg):
    """Its jobs run in worker processes, whose command line is not the script's."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    make_cfg("hydra/launcher=local_parallel")
    with pytest.raises(ConfigError, match="hydra/launcher=local_parallel runs jobs in worker"):
        job_command(1)


def test_multirun_command_keeps_flags_and_drops_the_sweep():
    argv = ["-m", "--config-name", "train", "seed=1,2", "+x=3", "~y", "-cd=conf", "--multirun"]
    assert launch_arguments(argv) == ["--config-name", "train", "-cd=conf"]


# -- slow: real two-process DDP (gloo on the CPU) ----------------------------------------------
EVAL_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import lightning as L
    from hydra.utils import instantiate
    from nnlab.evaluate import load_module

    ckpt, devices, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    module = load_module(ckpt)
    # 179 per batch: the 359 test samples split 180/179, so rank 0 takes 2 batches, rank 1 one.
    options = {"val_fraction": 0.1495, "eval_batch_size": 179}
    data = instantiate({**module.hparams.data, **options}, _convert_="all")
    data.setup()
    trainer = L.Trainer(accelerator="cpu", devices=devices,
                        strategy="ddp" if devices > 1 else "auto", logger=False,
                        enable_progress_bar=False, enable_model_summary=False)
    val = trainer.validate(module, datamodule=data, verbose=False)[0]
    test = trainer.test(module, datamodule=data, verbose=False)[0]
    if trainer.is_global_zero:
        sizes = {k: len(v[0]) for k, v in data.splits.items()}
        json.dump({"val": val, "test": test, "sizes": sizes}, open(out, "w"))
    """
)


def _evaluate(script: Path, ckpt: Path, devices: int, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), str(ckpt), str(devices), str(out)],
        env=env,
        cwd=script.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_two_processes_evaluate_a_checkpoint_exactly_like_one(make_cfg, tmp_path):
    cfg = make_cfg("trainer=cpu", "trainer.max_epochs=1", "logger=none", "diagnostics=none")
    cli.run(train, cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
    script = tmp_path / "evaluate.py"
    script.write_text(EVAL_SCRIPT)
    one, two = (_evaluate(script, ckpt, n, tmp_path / f"{n}.json") for n in (1, 2))
    assert one["sizes"]["val"] == VAL and one["sizes"]["test"] == TEST
    for stage, n in (("val", VAL), ("test", TEST)):
        acc = one[stage][f"{stage}/acc"]
        assert acc * n == pytest.approx(round(acc * n), abs=1e-3)  # a count over n samples
        # Counts-based metrics exactly; the loss sums the same per-sample losses in another
        # order of batches: equal to float32 rounding.
        assert two[stage][f"{stage}/acc"] == acc
        assert two[stage][f"{stage}/f1"] == one[stage][f"{stage}/f1"]
        loss = one[stage][f"{stage}/loss"]
        assert two[stage][f"{stage}/loss"] == pytest.approx(loss, rel=1e-6)


@pytest.mark.slow
def test_two_processes_train_like_one_on_the_same_global_batch(tmp_path):
    """1 process at batch 26 against 2 at 13 each (DDP averages their gradients): the same
    samples per step, since 2-rank shards interleave the epoch's permutation; the 1,222
    training samples make 47 whole batches, so no rank pads. Plain SGD, 2 epochs (94 steps)."""
    common = ("optimizer=sgd", "trainer.max_epochs=2", "logger=none", "diagnostics=none")
    common += ("callbacks.progress_bar=null",)
    runs = {}
    for name, args in {
        "one": ("trainer=cpu", "data.batch_size=26"),
        "two": ("trainer=ddp_cpu", "data.batch_size=13"),
    }.items():
        run_dir = tmp_path / name
        run_script("train.py", *common, *args, f"hydra.run.dir={run_dir}", cwd=tmp_path)
        ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
        runs[name] = (ckpt, json.loads((run_dir / "results.json").read_text()))
    (one, one_results), (two, two_results) = runs["one"], runs["two"]
    assert one["global_step"] == two["global_step"] == 94
    for name, value in one["state_dict"].items():
        torch.testing.assert_close(two["state_dict"][name], value, rtol=1e-5, atol=1e-6)
    for stage in ("val", "test"):
        for metric, value in one_results[stage].items():
            assert two_results[stage][metric] == pytest.approx(value, rel=1e-5), metric


@pytest.mark.slow
def test_a_ddp_multirun_writes_one_folder_per_job(tmp_path):
    args = ("-m", "trainer=ddp_cpu", "seed=1,2", "trainer.max_epochs=1", "logger=none")
    args += ("diagnostics=none", "callbacks.progress_bar=null", "test=false")
    run_script("train.py", *args, cwd=tmp_path)
    logs = tmp_path / "logs" / "train"
    assert [p.name for p in logs.iterdir()] == ["multiruns"]  # no single-run folder either
    (sweep,) = (logs / "multiruns").iterdir()  # one sweep folder, not one per rank
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]
    for seed, job in zip((1, 2), jobs, strict=True):
        assert json.loads((job / "results.json").read_text())["seed"] == seed
        # The job's second process ran there (and only that job: each job started its own).
        assert "GLOBAL_RANK: 1" in (job / "train_ddp_process_1.log").read_text()
        assert [p.name for p in job.glob("**/.hydra")] == [".hydra"]
